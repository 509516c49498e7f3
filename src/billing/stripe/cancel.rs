//! Cancels at Stripe the subscriptions of deleted customers, from the `stripe_cancellations`
//! outbox the deletion filled: `DELETE /v1/subscriptions/:id`, retried with backoff; an already
//! canceled or unknown subscription counts as done. Runs in `billing serve` when
//! `STRIPE_SECRET_KEY` is set (without it the rows wait).

use chrono::{Duration, Utc};

use super::api::StripeError;
use crate::billing::BillingHandles;
use crate::db::cancellations;

/// One pass: returns how many cancellations it handled.
pub async fn pass(handles: &BillingHandles) -> anyhow::Result<usize> {
    let Some(client) = super::client(handles) else {
        return Ok(0);
    };
    let now = Utc::now();
    let due = cancellations::claim(
        &handles.db,
        &handles.worker_id,
        20,
        Duration::seconds(60),
        now,
    )
    .await?;
    for one in &due {
        let subscription_id = &one.subscription_id;
        let error = match client.cancel_subscription(subscription_id).await {
            Ok(_) => None,
            // Canceled already (by the customer in the portal, or a retry after a lost answer).
            Err(StripeError::Api { status: 404, .. }) => None,
            Err(StripeError::Api { message, .. }) if message.contains("canceled") => None,
            Err(e) => Some(e.to_string()),
        };
        let give_up = cancellations::finish(
            &handles.db,
            one,
            &handles.worker_id,
            error.as_deref(),
            Utc::now(),
        )
        .await?;
        match error {
            None => tracing::info!(%subscription_id, "Stripe subscription canceled"),
            Some(e) => {
                tracing::warn!(%subscription_id, error = %e, give_up, "cancelling a Stripe subscription failed")
            }
        }
    }
    Ok(due.len())
}

/// The canceller loop of `billing serve`: a pass every 5 seconds.
pub async fn run(handles: BillingHandles, stop: tokio_util::sync::CancellationToken) {
    loop {
        if let Err(err) = pass(&handles).await {
            tracing::warn!(error = %format!("{err:#}"), "Stripe cancellation pass failed");
        }
        let pause = tokio::time::sleep(std::time::Duration::from_secs(5));
        if stop.run_until_cancelled(pause).await.is_none() {
            return;
        }
    }
}
