//! A subscription sales made in Stripe (localstripe, PyPI: a real, stateful fake) without our
//! id on it: its webhook names only the Stripe customer, whose metadata the server reads
//! through the API to link it. Deleting that customer then cancels the subscription at Stripe
//! through the cancellation outbox.

mod common;

use std::time::{Duration, Instant};

use common::localstripe::LocalStripe;
use common::{Backend, TestServer, ADMIN_TOKEN};

const SECRET: &str = "whsec_localstripe_sales_0123";

for_each_backend!(a_dashboard_subscription_links_by_customer_metadata_and_deletion_cancels_it);

async fn a_dashboard_subscription_links_by_customer_metadata_and_deletion_cancels_it(
    backend: Backend,
) {
    let Some(stripe) = LocalStripe::start().await else {
        return;
    };
    let env = [
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("STRIPE_PRICE_PROFESSIONAL", "price_pro_sales"),
        ("STRIPE_SECRET_KEY", "sk_test_sales"),
        ("STRIPE_API_BASE", stripe.base.as_str()),
    ];
    let Some(s) = TestServer::start_with(backend, &env).await else {
        return;
    };
    let id = s.signed_up("dash@example.com", "Dashboard Co").await;
    s.wait_queue_drained(Duration::from_secs(30)).await;
    let hook = s.url("/api/webhooks/stripe");
    stripe.deliver_webhooks_to(&hook, SECRET).await;
    stripe
        .professional_plan("prod_sales", "price_pro_sales")
        .await;
    // Only the Stripe customer carries our id; the subscription has no metadata.
    let customer = stripe.customer_with_card("dash@example.com", &id).await;
    let subscription = stripe
        .post(
            "/v1/subscriptions",
            &[
                ("customer", customer["id"].as_str().unwrap()),
                ("items[0][plan]", "price_pro_sales"),
            ],
        )
        .await;
    let sub_id = subscription["id"].as_str().unwrap().to_string();
    assert!(subscription["metadata"]
        .as_object()
        .is_none_or(|m| m.is_empty()));

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, view) = s
            .get_json(&format!("/api/customers/{id}"), Some(ADMIN_TOKEN))
            .await;
        if view["subscription"]["plan"] == "professional" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never linked: {view}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Deleting the customer cancels what Stripe would go on charging.
    let resp = s
        .client
        .delete(s.url(&format!("/api/customers/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sub = stripe.get(&format!("/v1/subscriptions/{sub_id}")).await;
        if sub["status"] == "canceled" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never canceled at Stripe: {sub}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let db = s.db().await;
    let done =
        "SELECT COUNT(*) FROM stripe_cancellations WHERE subscription_id = $1 AND status = 'done'";
    assert_eq!(common::count(&db, done, &sub_id).await, 1);
}
