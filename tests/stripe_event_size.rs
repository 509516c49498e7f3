//! Stripe events above the API's 64 KiB body limit: the webhook route has its own (2 MiB), so
//! an event of several hundred KB is taken and applied instead of answered 413 until Stripe
//! gives up on it; beyond that the 413 names the route's limit, and other routes keep 64 KiB.

mod common;
#[path = "common/stripe_events.rs"]
mod stripe_events;

use common::{TestServer, ADMIN_TOKEN};
use serde_json::json;
use stripe_events::{
    deliver, now, send_signed, stripe_signature, subscription_updated, ENV, SECRET,
};

on_both_backends!(env = ENV; an_event_of_several_hundred_kb_is_applied);

async fn an_event_of_several_hundred_kb_is_applied(s: TestServer) {
    let id = s.signed_up("big@example.com", "Big Invoices Ltd").await;

    // As large as an invoice or subscription with many lines makes an event.
    let mut event = subscription_updated("evt_1Large", &id, "price_professional_monthly", now());
    event["data"]["object"]["description"] = json!("line item ".repeat(60_000));
    assert!(serde_json::to_vec(&event).unwrap().len() > 512 * 1024);
    let receipt = send_signed(&s, &event).await;
    assert_eq!(receipt["outcome"], "applied", "{receipt}");
    let (code, view) = s
        .get_json(&format!("/api/customers/{id}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(code, 200, "{view}");
    assert_eq!(view["subscription"]["plan"], "professional", "{view}");

    // Beyond the route's limit: a JSON 413 that says which limit.
    event["id"] = json!("evt_1TooLarge");
    event["data"]["object"]["description"] = json!("x".repeat(3 * 1024 * 1024));
    let body = serde_json::to_vec(&event).unwrap();
    let (code, error) = deliver(&s, &body, Some(stripe_signature(SECRET, now(), &body))).await;
    assert_eq!(code, 413, "{error}");
    assert_eq!(error["code"], "payload_too_large", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("2097152"),
        "{error}"
    );

    // Every other route keeps the API's 64 KiB.
    let company = "x".repeat(100 * 1024);
    let (code, error) = s
        .post_json(
            "/api/customers/signup",
            &json!({"email": "huge@example.com", "password": common::PASSWORD, "companyName": company}),
        )
        .await;
    assert_eq!(code, 413, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("65536"),
        "{error}"
    );
}
