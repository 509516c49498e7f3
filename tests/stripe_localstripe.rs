//! A real, stateful fake of Stripe (`localstripe` from PyPI) delivers its own signed webhooks
//! to the running server: a subscription created in "Stripe" upgrades the tenant in Git.

mod common;

use std::time::{Duration, Instant};

use common::localstripe::LocalStripe;
use common::{TestServer, ADMIN_TOKEN};

const SECRET: &str = "whsec_localstripe_0123456789";
const ENV: &[(&str, &str)] = &[
    ("STRIPE_WEBHOOK_SECRET", SECRET),
    ("STRIPE_PRICE_PROFESSIONAL", "price_professional_monthly"),
];

on_both_backends!(env = ENV; a_subscription_made_in_stripe_upgrades_the_tenant);

async fn a_subscription_made_in_stripe_upgrades_the_tenant(s: TestServer) {
    let Some(stripe) = LocalStripe::start().await else {
        return;
    };
    let id = s.signed_up("sales@example.com", "Sold Co").await;
    s.wait_queue_drained(Duration::from_secs(30)).await;

    // Sales sets the customer up in the Stripe dashboard, outside Checkout: only the
    // metadata links it to us.
    let hook = s.url("/api/webhooks/stripe");
    stripe.deliver_webhooks_to(&hook, SECRET).await;
    stripe
        .professional_plan("prod_pro", "price_professional_monthly")
        .await;
    let customer = stripe.customer_with_card("sales@example.com", &id).await;
    let subscription = stripe
        .post(
            "/v1/subscriptions",
            &[
                ("customer", customer["id"].as_str().unwrap()),
                ("items[0][plan]", "price_professional_monthly"),
                ("metadata[customer_id]", &id),
            ],
        )
        .await;
    assert_eq!(subscription["status"], "active", "{subscription}");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, view) = s
            .get_json(&format!("/api/customers/{id}"), Some(ADMIN_TOKEN))
            .await;
        if view["subscription"]["plan"] == "professional" {
            assert_eq!(view["subscription"]["status"], "active");
            assert_eq!(view["license"]["features"]["maxDevices"], 50);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never upgraded: {view}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.wait_queue_drained(Duration::from_secs(30)).await;
    let repo = git2::Repository::open_bare(s.data_dir().join("gitops.git")).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_head().unwrap();
    let messages: Vec<String> = walk
        .map(|oid| {
            repo.find_commit(oid.unwrap())
                .unwrap()
                .message()
                .unwrap()
                .to_string()
        })
        .collect();
    let wanted = format!("tenant {id}: upgrade starter → professional");
    let upgrade = messages.iter().find(|m| m.starts_with(&wanted));
    assert!(
        upgrade.is_some_and(|m| m.contains("(Stripe evt_")),
        "no upgrade commit naming the event: {messages:#?}"
    );
    // Its ids are Stripe's, its signature localstripe's own: our Stripe customer id is stored.
    let db = s.db().await;
    let linked = common::count(
        &db,
        "SELECT COUNT(*) FROM customers WHERE stripe_customer_id = $1",
        customer["id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(linked, 1);
}
