//! Stripe events as the webhook receives them (an Event object whose `data.object` is a
//! Subscription, an Invoice or a Checkout Session), read down to what billing acts on.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::billing::Event;

/// An Event object (`id`, `type`, `created`, `data.object`); unknown fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct StripeEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created: i64,
    pub data: EventData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventData {
    pub object: Value,
}

/// What an event says about a subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// None: an event type billing does not act on.
    pub event: Option<Event>,
    pub stripe_customer_id: Option<String>,
    /// Our customer id, from `metadata.customer_id` (or a Checkout's `client_reference_id`).
    pub customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    /// The plan, mapped from the price id (or named by a Checkout's `metadata.plan`).
    pub plan: Option<String>,
    /// A price id no `STRIPE_PRICE_<PLAN>` maps: the plan is left as it is.
    pub unknown_price: Option<String>,
    pub current_period_end: Option<i64>,
    pub trial_end: Option<i64>,
}

/// The id of a field that is either an id or an expanded object.
fn id_of(v: &Value) -> Option<String> {
    v.as_str()
        .or_else(|| v["id"].as_str())
        .filter(|s| !s.is_empty())
        .map(String::from)
}

fn text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(String::from)
}

impl StripeEvent {
    /// `prices` maps Stripe price ids to plan names.
    pub fn facts(&self, prices: &BTreeMap<String, String>) -> Facts {
        let o = &self.data.object;
        let mut f = Facts {
            stripe_customer_id: id_of(&o["customer"]),
            ..Facts::default()
        };
        let price = match self.kind.as_str() {
            "customer.subscription.created" | "customer.subscription.updated" => {
                f.event = o["status"].as_str().and_then(Event::of_stripe_status);
                self.subscription(&mut f);
                subscription_price(o)
            }
            "customer.subscription.deleted" => {
                f.event = Some(Event::Canceled);
                self.subscription(&mut f);
                subscription_price(o)
            }
            "invoice.paid" | "invoice.payment_succeeded" | "invoice.payment_failed" => {
                f.event = Some(if self.kind == "invoice.payment_failed" {
                    Event::PaymentFailed
                } else {
                    Event::Paid
                });
                // Since API version 2025-03-31 the subscription sits under `parent`.
                let details = match &o["parent"]["subscription_details"] {
                    Value::Null => &o["subscription_details"],
                    d => d,
                };
                f.stripe_subscription_id =
                    id_of(&o["subscription"]).or_else(|| id_of(&details["subscription"]));
                f.customer_id = text(&details["metadata"]["customer_id"]);
                let line = &o["lines"]["data"][0];
                f.current_period_end = line["period"]["end"].as_i64();
                id_of(&line["price"]).or_else(|| text(&line["pricing"]["price_details"]["price"]))
            }
            "checkout.session.completed" => {
                f.event = Some(match o["payment_status"].as_str() {
                    Some("paid") => Event::Paid,
                    _ => Event::PlanChanged,
                });
                f.stripe_subscription_id = id_of(&o["subscription"]);
                f.customer_id =
                    text(&o["metadata"]["customer_id"]).or_else(|| text(&o["client_reference_id"]));
                f.plan = text(&o["metadata"]["plan"]);
                None
            }
            _ => None,
        };
        if let Some(price) = price {
            match prices.get(&price) {
                Some(plan) => f.plan = Some(plan.clone()),
                None => f.unknown_price = Some(price),
            }
        }
        f
    }

    fn subscription(&self, f: &mut Facts) {
        let o = &self.data.object;
        f.stripe_subscription_id = id_of(&o["id"]);
        f.customer_id = text(&o["metadata"]["customer_id"]);
        // Since API version 2025-03-31 the period is per item.
        f.current_period_end = o["current_period_end"]
            .as_i64()
            .or_else(|| o["items"]["data"][0]["current_period_end"].as_i64());
        f.trial_end = o["trial_end"].as_i64();
    }
}

/// The subscription's price: its first item's, or the legacy `plan` Stripe still sends.
fn subscription_price(o: &Value) -> Option<String> {
    id_of(&o["items"]["data"][0]["price"]).or_else(|| id_of(&o["plan"]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, object: Value) -> StripeEvent {
        serde_json::from_value(json!({
            "id": "evt_1", "object": "event", "type": kind, "created": 1_700_000_000,
            "data": { "object": object }
        }))
        .unwrap()
    }

    fn prices() -> BTreeMap<String, String> {
        [("price_pro".to_string(), "professional".to_string())].into()
    }

    #[test]
    fn a_subscription_update_names_status_plan_and_period() {
        let f = event(
            "customer.subscription.updated",
            json!({
                "id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active",
                "current_period_end": 1_702_592_000, "trial_end": null,
                "metadata": { "customer_id": "c1" },
                "items": { "object": "list", "data": [{ "price": { "id": "price_pro" } }] }
            }),
        )
        .facts(&prices());
        assert_eq!(f.event, Some(Event::Paid));
        assert_eq!(f.plan.as_deref(), Some("professional"));
        assert_eq!(f.stripe_customer_id.as_deref(), Some("cus_1"));
        assert_eq!(f.customer_id.as_deref(), Some("c1"));
        assert_eq!(f.current_period_end, Some(1_702_592_000));
    }

    #[test]
    fn legacy_plan_and_unknown_prices() {
        let f = event(
            "customer.subscription.created",
            json!({ "id": "sub_1", "customer": { "id": "cus_1" }, "status": "trialing",
                    "plan": { "id": "price_pro" } }),
        )
        .facts(&prices());
        assert_eq!(f.event, Some(Event::TrialStarted));
        assert_eq!(f.plan.as_deref(), Some("professional"));
        assert_eq!(f.stripe_customer_id.as_deref(), Some("cus_1"));
        let f = event(
            "customer.subscription.updated",
            json!({ "id": "sub_1", "status": "active",
                    "items": { "data": [{ "price": { "id": "price_other" } }] } }),
        )
        .facts(&prices());
        assert_eq!(f.plan, None);
        assert_eq!(f.unknown_price.as_deref(), Some("price_other"));
    }

    #[test]
    fn invoices_old_and_new_shapes() {
        let old = event(
            "invoice.payment_failed",
            json!({ "customer": "cus_1", "subscription": "sub_1",
                    "lines": { "data": [{ "period": { "end": 5 }, "price": { "id": "price_pro" } }] } }),
        )
        .facts(&prices());
        assert_eq!(old.event, Some(Event::PaymentFailed));
        assert_eq!(old.stripe_subscription_id.as_deref(), Some("sub_1"));
        assert_eq!(old.current_period_end, Some(5));
        let new = event(
            "invoice.paid",
            json!({ "customer": "cus_1", "parent": { "subscription_details": {
                        "subscription": "sub_2", "metadata": { "customer_id": "c1" } } },
                    "lines": { "data": [{ "period": { "end": 6 },
                        "pricing": { "price_details": { "price": "price_pro" } } }] } }),
        )
        .facts(&prices());
        assert_eq!(new.event, Some(Event::Paid));
        assert_eq!(new.stripe_subscription_id.as_deref(), Some("sub_2"));
        assert_eq!(new.customer_id.as_deref(), Some("c1"));
        assert_eq!(new.plan.as_deref(), Some("professional"));
    }

    #[test]
    fn other_events_are_not_acted_on() {
        let f = event("charge.succeeded", json!({ "customer": "cus_1" })).facts(&prices());
        assert_eq!(f.event, None);
    }
}
