//! Stripe's door: a verified webhook event, processed once, linked to our customer and
//! turned into one subscription change (see `billing::change`), all in one transaction.

pub mod api;
pub mod cancel;
pub mod event;
pub mod signature;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::billing::BillingError;
use crate::billing::BillingHandles;
use crate::billing::{self, Change, Outcome, Source};
use crate::db::{self, subscriptions};
use event::StripeEvent;

/// What became of a delivery; always answered 200 (Stripe retries anything else).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = StripeReceipt)]
pub struct Receipt {
    pub received: bool,
    pub event_id: String,
    /// applied | unchanged | ignored | duplicate
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub customer_id: Option<String>,
    /// The tenant's cluster lacks room for its new footprint (it stays there, said here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement_warning: Option<String>,
}

/// The Stripe API client, when `STRIPE_SECRET_KEY` is set.
pub fn client(handles: &BillingHandles) -> Option<api::Client<'_>> {
    let key = handles.settings.stripe_secret_key.as_ref()?;
    let timeout = std::time::Duration::from_secs(handles.settings.stripe_timeout_seconds);
    Some(api::Client::new(
        &handles.http,
        &handles.settings.stripe_api_base,
        key,
        timeout,
    ))
}

/// Verifies, de-duplicates and applies one webhook delivery.
pub async fn receive(
    handles: &BillingHandles,
    signature_header: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Receipt, BillingError> {
    signature::verify(
        &handles
            .settings
            .stripe_webhook_secrets
            .iter()
            .map(|s| s.expose_secret())
            .collect::<Vec<_>>(),
        signature_header,
        body,
        now.timestamp(),
        handles.settings.stripe_webhook_tolerance_seconds,
    )
    .map_err(|e| BillingError::InvalidSignature(e.to_string()))?;
    let event: StripeEvent =
        serde_json::from_slice(body).map_err(|e| BillingError::MalformedJson(e.to_string()))?;
    let now_text = db::ts(now);
    let mut receipt = Receipt {
        received: true,
        event_id: event.id.clone(),
        outcome: "duplicate",
        reason: None,
        customer_id: None,
        placement_warning: None,
    };

    let mut facts = event.facts(&handles.stripe_prices);
    // Read before the transaction: a Stripe call must not hold the database.
    facts.customer_id = match facts.customer_id.take() {
        Some(id) => Some(id),
        None => metadata_of_stripe_customer(handles, &facts).await?,
    };
    let mut tx = handles.db.pool.begin().await?;
    if !subscriptions::claim_event(&mut *tx, &event.id, &event.kind, event.created, &now_text)
        .await?
    {
        // Processed before: its effects are committed already.
        return Ok(receipt);
    }
    if let Some(price) = &facts.unknown_price {
        tracing::warn!(event_id = %event.id, price, "Stripe price maps to no plan (STRIPE_PRICE_<PLAN>); plan left as it is");
    }
    let customer_id = link_customer(&mut tx, &facts, &now_text).await?;
    let outcome = match (&customer_id, facts.event) {
        (None, _) => Outcome::Ignored("no customer of ours is linked to it".into()),
        (Some(_), None) => Outcome::Ignored(format!("{} is not acted on", event.kind)),
        (Some(id), Some(ev)) => {
            let at = |t: Option<i64>| t.and_then(|t| DateTime::<Utc>::from_timestamp(t, 0));
            let change = Change {
                event: ev,
                plan: facts.plan.as_deref(),
                trial_ends_at: at(facts.trial_end),
                current_period_ends_at: at(facts.current_period_end),
                source: Source::Stripe,
                reference: Some(&event.id),
                stripe_subscription_id: facts.stripe_subscription_id.as_deref(),
                stripe_event_at: Some(event.created),
            };
            billing::apply(handles, &mut tx, id, &change, now).await?
        }
    };
    (receipt.outcome, receipt.reason) = match outcome {
        Outcome::Applied {
            reason,
            placement_warning,
            ..
        } => {
            receipt.placement_warning = placement_warning;
            ("applied", Some(reason))
        }
        Outcome::Unchanged => ("unchanged", None),
        Outcome::Ignored(why) => ("ignored", Some(why)),
    };
    subscriptions::finish_event(&mut *tx, &event.id, customer_id.as_deref(), receipt.outcome)
        .await?;
    tx.commit().await?;
    if receipt.outcome == "applied" {
        handles.worker_wake.notify_one();
    }
    tracing::info!(event_id = %event.id, kind = %event.kind, customer_id = ?customer_id, outcome = receipt.outcome, reason = ?receipt.reason, "Stripe event");
    receipt.customer_id = customer_id;
    Ok(receipt)
}

/// `metadata.customer_id` of the event's Stripe customer, read through the API when the event
/// does not carry it and the Stripe customer is not linked to us yet (a subscription sales made
/// in the dashboard). A Stripe failure is a 502: Stripe delivers the event again later.
async fn metadata_of_stripe_customer(
    handles: &BillingHandles,
    facts: &event::Facts,
) -> Result<Option<String>, BillingError> {
    let (Some(stripe_id), Some(client)) = (&facts.stripe_customer_id, client(handles)) else {
        return Ok(None);
    };
    if subscriptions::customer_of_stripe(&handles.db.pool, stripe_id)
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let customer = client.customer(stripe_id).await?;
    Ok(customer.metadata.get("customer_id").cloned())
}

/// Our customer: by the Stripe customer id stored on it, else by the `metadata.customer_id`
/// the event carries (then the Stripe customer id is stored for next time).
async fn link_customer(
    tx: &mut db::Tx<'_>,
    facts: &event::Facts,
    now: &str,
) -> Result<Option<String>, BillingError> {
    if let Some(stripe_id) = &facts.stripe_customer_id {
        if let Some(id) = subscriptions::customer_of_stripe(&mut **tx, stripe_id).await? {
            return Ok(Some(id));
        }
    }
    let Some(id) = &facts.customer_id else {
        return Ok(None);
    };
    match subscriptions::stripe_id_of(&mut **tx, id).await? {
        None => Ok(None),
        Some(stored) => {
            if let (None, Some(stripe_id)) = (stored, &facts.stripe_customer_id) {
                subscriptions::link_stripe_customer(&mut **tx, id, stripe_id, now).await?;
            }
            Ok(Some(id.clone()))
        }
    }
}
