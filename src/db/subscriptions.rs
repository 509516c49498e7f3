//! Queries on the subscription state (its row, its transition history), the Stripe ids linking
//! it to Stripe, and the Stripe events already processed.

use sqlx::{Any, Executor, FromRow};

use crate::model::subscription::SubscriptionStatus;

/// The subscription as the state machine sees it.
#[derive(Debug, Clone)]
pub struct SubscriptionState {
    pub plan: String,
    pub status: SubscriptionStatus,
    pub trial_ends_at: Option<String>,
    pub current_period_ends_at: Option<String>,
    pub stripe_subscription_id: Option<String>,
    /// `created` of the newest Stripe event applied (Unix seconds).
    pub stripe_event_at: Option<i64>,
}

#[derive(FromRow)]
struct StateRow {
    plan: String,
    status: String,
    trial_ends_at: Option<String>,
    current_period_ends_at: Option<String>,
    stripe_subscription_id: Option<String>,
    stripe_event_at: Option<i64>,
}

/// The subscription as held, locked for the rest of the transaction on PostgreSQL (`FOR
/// UPDATE`), so a Stripe event and a clock pass deciding at the same moment take turns instead
/// of one overwriting the other (SQLite's single writer already serialises them).
pub async fn state<'c>(
    db: impl Executor<'c, Database = Any>,
    backend: super::Backend,
    customer_id: &str,
) -> anyhow::Result<Option<SubscriptionState>> {
    let lock = backend.for_update();
    let row: Option<StateRow> = sqlx::query_as(&format!(
        "SELECT plan, status, trial_ends_at, current_period_ends_at, stripe_subscription_id, \
         stripe_event_at FROM subscriptions WHERE customer_id = $1 {lock}"
    ))
    .bind(customer_id)
    .fetch_optional(db)
    .await?;
    row.map(|r| {
        Ok(SubscriptionState {
            status: r.status.parse().map_err(anyhow::Error::msg)?,
            plan: r.plan,
            trial_ends_at: r.trial_ends_at,
            current_period_ends_at: r.current_period_ends_at,
            stripe_subscription_id: r.stripe_subscription_id,
            stripe_event_at: r.stripe_event_at,
        })
    })
    .transpose()
}

pub async fn update<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
    s: &SubscriptionState,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE subscriptions SET plan = $1, status = $2, trial_ends_at = $3, \
         current_period_ends_at = $4, stripe_subscription_id = $5, stripe_event_at = $6, \
         updated_at = $7 WHERE customer_id = $8",
    )
    .bind(&s.plan)
    .bind(s.status.as_str())
    .bind(&s.trial_ends_at)
    .bind(&s.current_period_ends_at)
    .bind(&s.stripe_subscription_id)
    .bind(s.stripe_event_at)
    .bind(now)
    .bind(customer_id)
    .execute(db)
    .await?;
    Ok(())
}

/// One transition of the state machine (or a plan change within a status).
pub struct Transition<'a> {
    pub customer_id: &'a str,
    pub event: &'a str,
    pub from_status: SubscriptionStatus,
    pub to_status: SubscriptionStatus,
    pub from_plan: &'a str,
    pub to_plan: &'a str,
    pub source: &'a str,
    pub reference: Option<&'a str>,
    pub at: &'a str,
}

pub async fn record_transition<'c>(
    db: impl Executor<'c, Database = Any>,
    t: &Transition<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO subscription_history (customer_id, event, from_status, to_status, \
         from_plan, to_plan, source, reference, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(t.customer_id)
    .bind(t.event)
    .bind(t.from_status.as_str())
    .bind(t.to_status.as_str())
    .bind(t.from_plan)
    .bind(t.to_plan)
    .bind(t.source)
    .bind(t.reference)
    .bind(t.at)
    .execute(db)
    .await?;
    Ok(())
}

/// Our customer id for a Stripe customer id, if one is linked.
pub async fn customer_of_stripe<'c>(
    db: impl Executor<'c, Database = Any>,
    stripe_customer_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM customers WHERE stripe_customer_id = $1")
        .bind(stripe_customer_id)
        .fetch_optional(db)
        .await
}

/// Whether the customer exists, and the Stripe customer id stored on it.
pub async fn stripe_id_of<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<Option<Option<String>>, sqlx::Error> {
    sqlx::query_scalar("SELECT stripe_customer_id FROM customers WHERE id = $1")
        .bind(customer_id)
        .fetch_optional(db)
        .await
}

/// Stores the Stripe customer id on our customer, unless one is stored already.
pub async fn link_stripe_customer<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
    stripe_customer_id: &str,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE customers SET stripe_customer_id = $1, updated_at = $2 \
         WHERE id = $3 AND stripe_customer_id IS NULL",
    )
    .bind(stripe_customer_id)
    .bind(now)
    .bind(customer_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Claims a Stripe event id for this transaction; false when it was processed before (or is
/// being processed by a concurrent delivery, which then wins).
pub async fn claim_event<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    kind: &str,
    created: i64,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO stripe_events (id, type, created, outcome, received_at) \
         VALUES ($1, $2, $3, 'processing', $4) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(kind)
    .bind(created)
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn finish_event<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    customer_id: Option<&str>,
    outcome: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE stripe_events SET customer_id = $1, outcome = $2 WHERE id = $3")
        .bind(customer_id)
        .bind(outcome)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// One row of `subscription_history`, as the API shows it.
#[derive(Debug, Clone, FromRow, serde::Serialize, utoipa::ToSchema)]
#[schema(as = SubscriptionHistoryRow)]
pub struct HistoryRow {
    pub event: String,
    pub from_status: String,
    pub to_status: String,
    pub from_plan: String,
    pub to_plan: String,
    pub source: String,
    pub reference: Option<String>,
    pub at: String,
}

/// The customer's subscription transitions, oldest first.
pub async fn history<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<Vec<HistoryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT event, from_status, to_status, from_plan, to_plan, source, reference, at \
         FROM subscription_history WHERE customer_id = $1 ORDER BY id",
    )
    .bind(customer_id)
    .fetch_all(db)
    .await
}
