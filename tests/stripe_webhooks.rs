//! Stripe webhooks through the running server: events shaped like Stripe's (fixtures), signed
//! with the test's own copy of the endpoint secret exactly as Stripe signs them.

mod common;

use std::time::Duration;

use common::{TestServer, ADMIN_TOKEN};
use git2::Repository;
use serde_json::{json, Value};

/// The secret being rotated in, after the old one (both are accepted).
const SECRET: &str = "whsec_test_0123456789abcdef";
const ENV: &[(&str, &str)] = &[
    (
        "STRIPE_WEBHOOK_SECRET",
        "whsec_retiring_secret,whsec_test_0123456789abcdef",
    ),
    ("STRIPE_PRICE_STARTER", "price_starter_monthly"),
    ("STRIPE_PRICE_PROFESSIONAL", "price_professional_monthly"),
];
const STRIPE_CUSTOMER: &str = "cus_QexampleCustomer";

on_both_backends!(
    env = ENV;
    a_signed_upgrade_is_one_commit_and_a_new_license,
    bad_stale_or_unsigned_deliveries_change_nothing
);

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/stripe-{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// `customer.subscription.updated` for our customer, on `price`, created at `created`.
fn subscription_updated(id: &str, customer_id: &str, price: &str, created: i64) -> Value {
    let mut e = fixture("customer.subscription.updated");
    e["id"] = json!(id);
    e["created"] = json!(created);
    let sub = &mut e["data"]["object"];
    sub["metadata"]["customer_id"] = json!(customer_id);
    sub["items"]["data"][0]["price"]["id"] = json!(price);
    sub["items"]["data"][0]["plan"]["id"] = json!(price);
    sub["plan"]["id"] = json!(price);
    sub["current_period_start"] = json!(created);
    sub["current_period_end"] = json!(created + 30 * 86400);
    e
}

/// What Stripe puts in `Stripe-Signature` for `body` sent at `t`.
fn stripe_signature(secret: &str, t: i64, body: &[u8]) -> String {
    let hex = common::hmac_sha256_hex(secret, &[format!("{t}.").as_bytes(), body]);
    format!("t={t},v1={hex}")
}

async fn deliver(s: &TestServer, body: &[u8], signature: Option<String>) -> (u16, Value) {
    let mut req = s
        .client
        .post(s.url("/api/webhooks/stripe"))
        .header("content-type", "application/json; charset=utf-8")
        .header(
            "user-agent",
            "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        )
        .body(body.to_vec());
    if let Some(sig) = signature {
        req = req.header("stripe-signature", sig);
    }
    let resp = req.send().await.expect("webhook request");
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// Sends `event` signed now with the test's secret; expects 200 and returns the receipt.
async fn send_signed(s: &TestServer, event: &Value) -> Value {
    let body = serde_json::to_vec(event).unwrap();
    let (code, receipt) = deliver(s, &body, Some(stripe_signature(SECRET, now(), &body))).await;
    assert_eq!(code, 200, "{receipt}\n{}", s.log());
    receipt
}

async fn signup(s: &TestServer, email: &str) -> String {
    let (code, body) = s.signup(email, "correct-horse-battery", "Acme GmbH").await;
    assert_eq!(code, 201, "{body}");
    let id = body["customer"]["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_queue_drained(Duration::from_secs(30)).await;
    id
}

fn repo(s: &TestServer) -> Repository {
    Repository::open_bare(s.data_dir().join("gitops.git")).unwrap()
}

fn head(repo: &Repository) -> git2::Commit<'_> {
    repo.head().unwrap().peel_to_commit().unwrap()
}

fn file_at(repo: &Repository, commit: &git2::Commit<'_>, path: &str) -> String {
    let entry = commit
        .tree()
        .unwrap()
        .get_path(std::path::Path::new(path))
        .unwrap();
    let blob = repo.find_blob(entry.id()).unwrap();
    String::from_utf8(blob.content().to_vec()).unwrap()
}

async fn account(s: &TestServer, id: &str) -> Value {
    let (code, body) = s
        .get_json(&format!("/api/customers/{id}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(code, 200, "{body}");
    body
}

/// The license the cluster gets: the tenant's sealed Secret at `commit`, unsealed as the
/// sealed-secrets controller would.
fn committed_license(repo: &Repository, commit: &git2::Commit<'_>, id: &str) -> String {
    let dir = billing::render::tenant_dir(id);
    let sealed: Value =
        serde_norway::from_str(&file_at(repo, commit, &format!("{dir}/sealedsecret.yaml")))
            .unwrap();
    let bytes = billing::seal::unseal(
        &common::sealing_private_key(),
        &format!("customer-{id}"),
        "tenant-secrets",
        sealed["spec"]["encryptedData"]["LICENSE_KEY"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    String::from_utf8(bytes).unwrap()
}

async fn a_signed_upgrade_is_one_commit_and_a_new_license(s: TestServer) {
    let id = signup(&s, "ops@example.com").await;
    let repo = repo(&s);
    let before = head(&repo).id();
    let quota_path = format!("{}/quota.yaml", billing::render::tenant_dir(&id));
    let old_quota = file_at(&repo, &head(&repo), &quota_path);
    assert!(old_quota.contains(r#"requests.cpu: "4""#), "{old_quota}");

    // Linked by metadata.customer_id (no Stripe customer stored yet): trialing starter ->
    // active professional.
    let t0 = now();
    let upgrade = subscription_updated("evt_1Upgrade", &id, "price_professional_monthly", t0);
    let receipt = send_signed(&s, &upgrade).await;
    assert_eq!(receipt["outcome"], "applied", "{receipt}");
    assert_eq!(receipt["customer_id"], id.as_str());
    s.wait_queue_drained(Duration::from_secs(30)).await;

    let after = head(&repo);
    assert_eq!(after.parent_id(0).unwrap(), before, "exactly one commit");
    let message = after.message().unwrap();
    assert!(
        message.starts_with(&format!(
            "tenant {id}: upgrade starter → professional, subscription trialing → active (Stripe evt_1Upgrade)"
        )),
        "{message}"
    );
    let new_quota = file_at(&repo, &after, &quota_path);
    assert!(new_quota.contains(r#"requests.cpu: "8""#), "{new_quota}");
    assert!(
        new_quota.contains(r#"requests.memory: "16Gi""#),
        "{new_quota}"
    );

    let view = account(&s, &id).await;
    assert_eq!(view["subscription"]["plan"], "professional", "{view}");
    assert_eq!(view["subscription"]["status"], "active");
    assert_eq!(view["license"]["plan"], "professional");
    assert_eq!(view["license"]["features"]["maxDevices"], 50);

    // The license the tenant now runs with verifies with the new plan's features, until the
    // paid period's end.
    let jwt = committed_license(&repo, &after, &id);
    let (code, verified) = s
        .post_json("/api/licenses/verify", &json!({ "license": jwt }))
        .await;
    assert_eq!(code, 200, "{verified}");
    let claims = &verified["data"];
    assert_eq!(claims["plan"], "professional");
    assert_eq!(claims["features"]["maxDevices"], 50);
    assert_eq!(claims["features"]["canScheduleJobs"], true);
    assert_eq!(claims["subscription"]["status"], "active");
    assert_eq!(claims["trial"]["isTrialMode"], false);
    assert_eq!(claims["exp"], t0 + 30 * 86400);

    // Stripe redelivers: acknowledged, nothing done twice.
    let receipt = send_signed(&s, &upgrade).await;
    assert_eq!(receipt["outcome"], "duplicate", "{receipt}");
    // An older event arriving late (the earlier downgrade it replaced) moves nothing back.
    let stale = subscription_updated("evt_0Older", &id, "price_starter_monthly", t0 - 100);
    let receipt = send_signed(&s, &stale).await;
    assert_eq!(receipt["outcome"], "ignored", "{receipt}");
    s.wait_queue_drained(Duration::from_secs(30)).await;
    assert_eq!(
        head(&repo).id(),
        after.id(),
        "no commit for a replay or a stale event"
    );
    assert_eq!(
        account(&s, &id).await["subscription"]["plan"],
        "professional"
    );

    // A failed renewal, linked by the Stripe customer id stored from the first event.
    let mut failed = fixture("invoice.payment_failed");
    failed["created"] = json!(t0 + 1);
    assert_eq!(failed["data"]["object"]["customer"], STRIPE_CUSTOMER);
    let receipt = send_signed(&s, &failed).await;
    assert_eq!(receipt["outcome"], "applied", "{receipt}");
    assert_eq!(receipt["customer_id"], id.as_str());
    s.wait_queue_drained(Duration::from_secs(30)).await;
    assert_eq!(account(&s, &id).await["subscription"]["status"], "past_due");
    let failed_commit = head(&repo);
    assert_eq!(failed_commit.parent_id(0).unwrap(), after.id());
    assert!(
        failed_commit
            .message()
            .unwrap()
            .contains("subscription active → past_due (Stripe evt_1QexampleInvoiceFailed)"),
        "{:?}",
        failed_commit.message()
    );

    let db = s.db().await;
    let history: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT from_status, to_status, to_plan, reference FROM subscription_history \
         WHERE customer_id = $1 ORDER BY id",
    )
    .bind(&id)
    .fetch_all(&db)
    .await
    .unwrap();
    let expected = [
        ("trialing", "active", "professional", "evt_1Upgrade"),
        (
            "active",
            "past_due",
            "professional",
            "evt_1QexampleInvoiceFailed",
        ),
    ];
    let got: Vec<(&str, &str, &str, &str)> = history
        .iter()
        .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.as_str()))
        .collect();
    assert_eq!(got, expected);
    let audited = common::count(
        &db,
        "SELECT COUNT(*) FROM audit_log WHERE action = 'subscription.changed' AND customer_id = $1",
        &id,
    )
    .await;
    assert_eq!(audited, 2);
    let processed = common::count(
        &db,
        "SELECT COUNT(*) FROM stripe_events WHERE customer_id = $1",
        &id,
    )
    .await;
    assert_eq!(
        processed, 3,
        "the upgrade, the stale event and the failure, once each"
    );
}

async fn bad_stale_or_unsigned_deliveries_change_nothing(s: TestServer) {
    let id = signup(&s, "ops@example.com").await;
    let repo = repo(&s);
    let before = head(&repo).id();
    let event = subscription_updated("evt_1Forged", &id, "price_professional_monthly", now());
    let body = serde_json::to_vec(&event).unwrap();
    let t = now();
    let mut tampered = body.clone();
    let at = tampered.len() - 2;
    tampered[at] = b' ';
    let attempts: Vec<(&str, Vec<u8>, Option<String>)> = vec![
        ("unsigned", body.clone(), None),
        ("garbage header", body.clone(), Some("nonsense".into())),
        (
            "wrong secret",
            body.clone(),
            Some(stripe_signature("whsec_other", t, &body)),
        ),
        (
            "tampered body",
            tampered,
            Some(stripe_signature(SECRET, t, &body)),
        ),
        (
            "stale",
            body.clone(),
            Some(stripe_signature(SECRET, t - 301, &body)),
        ),
        (
            "only v0",
            body.clone(),
            Some(stripe_signature(SECRET, t, &body).replace("v1=", "v0=")),
        ),
    ];
    for (what, bytes, signature) in attempts {
        let (code, err) = deliver(&s, &bytes, signature).await;
        assert_eq!(code, 400, "{what}: {err}");
        assert_eq!(err["code"], "invalid_signature", "{what}: {err}");
        assert_eq!(err["field"], "Stripe-Signature", "{what}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let stale = deliver(&s, &body, Some(stripe_signature(SECRET, t - 301, &body))).await;
    assert!(
        stale.1["message"].as_str().unwrap().contains("tolerance"),
        "{}",
        stale.1
    );

    s.wait_queue_drained(Duration::from_secs(10)).await;
    assert_eq!(head(&repo).id(), before, "nothing committed");
    let view = account(&s, &id).await;
    assert_eq!(view["subscription"]["plan"], "starter");
    assert_eq!(view["subscription"]["status"], "trialing");
    let db = s.db().await;
    assert_eq!(
        common::count(&db, "SELECT COUNT(*) FROM stripe_events WHERE id <> $1", "").await,
        0,
        "a refused delivery is not even recorded as seen"
    );
    // The same event, once properly signed, does apply: nothing above consumed its id.
    assert_eq!(send_signed(&s, &event).await["outcome"], "applied");
}
