//! What `GET /api/subscriptions/me` and `/api/subscriptions/:customer_id` show: the
//! subscription as held, the Stripe customer it is linked to, and its transition history.

use serde::Serialize;

use crate::billing::BillingError;
use crate::billing::BillingHandles;
use crate::billing::SubscriptionStatus;
use crate::db::{accounts, erasure, subscriptions};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    pub customer_id: String,
    pub plan: String,
    pub status: &'static str,
    pub trial_ends_at: Option<String>,
    pub current_period_ends_at: Option<String>,
    pub stripe_customer_id: Option<String>,
    pub history: Vec<subscriptions::HistoryRow>,
}

/// The subscription of a live customer (404 for an unknown or deleted one).
pub async fn load(
    handles: &BillingHandles,
    customer_id: &str,
) -> Result<SubscriptionView, BillingError> {
    let pool = &handles.db.pool;
    let missing = BillingError::NotFound("no such customer");
    if !erasure::is_live(pool, customer_id).await? {
        return Err(missing);
    }
    let sub = accounts::subscription(pool, customer_id)
        .await?
        .ok_or(missing)?;
    let stripe_customer_id = subscriptions::stripe_id_of(pool, customer_id)
        .await?
        .flatten();
    Ok(SubscriptionView {
        customer_id: customer_id.to_string(),
        plan: sub.plan,
        status: sub
            .status
            .parse::<SubscriptionStatus>()
            .map_err(anyhow::Error::msg)?
            .as_str(),
        trial_ends_at: sub.trial_ends_at,
        current_period_ends_at: sub.current_period_ends_at,
        stripe_customer_id,
        history: subscriptions::history(pool, customer_id).await?,
    })
}
