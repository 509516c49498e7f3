//! Queries of the lifecycle scheduler: its lease (one process runs a pass at a time) and the
//! subscriptions the clock has overtaken.

use chrono::{DateTime, Duration, Utc};
use sqlx::{Any, Executor};

use crate::db::queue::Lease;

use crate::model::subscription::SubscriptionStatus;

/// The lease row of the lifecycle scheduler (created by migration 0007).
const LIFECYCLE_LEASE: &str = "lifecycle";

/// The scheduler's leases: one row per name.
const LEASES: Lease = Lease {
    table: "scheduler_leases",
    key: "name",
    owner: "owner",
    until: "lease_until",
};

/// Takes the lifecycle lease for `owner` for `lease`, if nobody else holds it at `now`; false
/// when another process does.
pub async fn take_lease<'c>(
    db: impl Executor<'c, Database = Any>,
    owner: &str,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    LEASES
        .take(db, LIFECYCLE_LEASE.to_string(), owner, lease, now)
        .await
}

/// Gives the lifecycle lease back, if `owner` still holds it.
pub async fn release_lease<'c>(
    db: impl Executor<'c, Database = Any>,
    owner: &str,
) -> Result<(), sqlx::Error> {
    LEASES.release(db, LIFECYCLE_LEASE.to_string(), owner).await
}

/// Customers in a trial that ended at or before `now`, oldest end first.
pub async fn trials_ended<'c>(
    db: impl Executor<'c, Database = Any>,
    now: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT customer_id FROM subscriptions \
         WHERE status = $1 AND trial_ends_at IS NOT NULL AND trial_ends_at <= $2 \
         ORDER BY trial_ends_at, customer_id",
    )
    .bind(SubscriptionStatus::Trialing.as_str())
    .bind(now)
    .fetch_all(db)
    .await
}

/// Customers past due since before `since`: since their latest transition into past_due (the
/// failed payment), or, without one in the history, since the row last changed.
pub async fn past_due_since<'c>(
    db: impl Executor<'c, Database = Any>,
    since: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let past_due = SubscriptionStatus::PastDue.as_str();
    sqlx::query_scalar(
        "SELECT s.customer_id FROM subscriptions s \
         WHERE s.status = $1 AND COALESCE( \
             (SELECT MAX(h.at) FROM subscription_history h \
              WHERE h.customer_id = s.customer_id AND h.to_status = $1 AND h.from_status <> $1), \
             s.updated_at) < $2 \
         ORDER BY s.customer_id",
    )
    .bind(past_due)
    .bind(since)
    .fetch_all(db)
    .await
}

/// A customer a reminder goes to, and the time it is about (a trial's end, a cancellation).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Reminded {
    pub customer_id: String,
    pub email: String,
    pub company_name: String,
    pub at: String,
}

/// Live customers whose trial ends after `after` and at or before `until`.
pub async fn trials_ending<'c>(
    db: impl Executor<'c, Database = Any>,
    after: &str,
    until: &str,
) -> Result<Vec<Reminded>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.customer_id, c.email, c.company_name, s.trial_ends_at AS at \
         FROM subscriptions s JOIN customers c ON c.id = s.customer_id \
         WHERE s.status = $1 AND c.deleted_at IS NULL \
         AND s.trial_ends_at > $2 AND s.trial_ends_at <= $3 ORDER BY s.customer_id",
    )
    .bind(SubscriptionStatus::Trialing.as_str())
    .bind(after)
    .bind(until)
    .fetch_all(db)
    .await
}

/// Live customers whose subscription is canceled, with when it was: their latest transition
/// into canceled, or, without one in the history, when the row last changed.
pub async fn canceled<'c>(
    db: impl Executor<'c, Database = Any>,
) -> Result<Vec<Reminded>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.customer_id, c.email, c.company_name, COALESCE( \
             (SELECT MAX(h.at) FROM subscription_history h \
              WHERE h.customer_id = s.customer_id AND h.to_status = $1 AND h.from_status <> $1), \
             s.updated_at) AS at \
         FROM subscriptions s JOIN customers c ON c.id = s.customer_id \
         WHERE s.status = $1 AND c.deleted_at IS NULL ORDER BY s.customer_id",
    )
    .bind(SubscriptionStatus::Canceled.as_str())
    .fetch_all(db)
    .await
}
