//! Stripe event deliveries for the webhook tests: events shaped like Stripe's (fixtures),
//! signed with the test's own copy of the endpoint secret exactly as Stripe signs them.
#![allow(dead_code)]

use serde_json::{json, Value};

use crate::common::TestServer;

/// The secret being rotated in, after the old one (both are accepted).
pub const SECRET: &str = "whsec_test_0123456789abcdef";
pub const ENV: &[(&str, &str)] = &[
    (
        "STRIPE_WEBHOOK_SECRET",
        "whsec_retiring_secret,whsec_test_0123456789abcdef",
    ),
    ("STRIPE_PRICE_STARTER", "price_starter_monthly"),
    ("STRIPE_PRICE_PROFESSIONAL", "price_professional_monthly"),
];

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/stripe-{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// `customer.subscription.updated` for our customer, on `price`, created at `created`.
pub fn subscription_updated(id: &str, customer_id: &str, price: &str, created: i64) -> Value {
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
pub fn stripe_signature(secret: &str, t: i64, body: &[u8]) -> String {
    let hex = crate::common::hmac_sha256_hex(secret, &[format!("{t}.").as_bytes(), body]);
    format!("t={t},v1={hex}")
}

pub async fn deliver(s: &TestServer, body: &[u8], signature: Option<String>) -> (u16, Value) {
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
pub async fn send_signed(s: &TestServer, event: &Value) -> Value {
    let body = serde_json::to_vec(event).unwrap();
    let (code, receipt) = deliver(s, &body, Some(stripe_signature(SECRET, now(), &body))).await;
    assert_eq!(code, 200, "{receipt}\n{}", s.log());
    receipt
}
