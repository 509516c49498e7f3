//! The outbox of Stripe subscriptions to cancel (a deleted customer's): queued in the
//! deletion's transaction, claimed under a lease by the canceller in `billing serve`. States are
//! [`Status`]; no query spells them itself.

use chrono::{DateTime, Duration, Utc};
use sqlx::{Any, Executor};

use crate::db::{self, Db};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Done,
    Failed,
}

impl Status {
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Done => "done",
            Status::Failed => "failed",
        }
    }
}

/// Queues the cancellation of `subscription_id` (once: a second deletion attempt changes
/// nothing).
pub async fn queue<'c>(
    db: impl Executor<'c, Database = Any>,
    subscription_id: &str,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO stripe_cancellations (subscription_id, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $3) ON CONFLICT (subscription_id) DO NOTHING",
    )
    .bind(subscription_id)
    .bind(Status::Pending.as_str())
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// Takes up to `limit` pending cancellations whose lease is free or expired.
pub async fn claim(
    db: &Db,
    owner: &str,
    limit: i64,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let lock = db.backend.skip_locked();
    let sql = format!(
        "UPDATE stripe_cancellations SET lease_owner = $1, lease_until = $2 \
         WHERE subscription_id IN (SELECT subscription_id FROM stripe_cancellations \
             WHERE status = $5 AND (lease_until IS NULL OR lease_until < $3) \
             ORDER BY created_at LIMIT $4 {lock}) \
         RETURNING subscription_id, attempts"
    );
    sqlx::query_as(&sql)
        .bind(owner)
        .bind(db::ts(now + lease))
        .bind(db::ts(now))
        .bind(limit)
        .bind(Status::Pending.as_str())
        .fetch_all(&db.pool)
        .await
}

/// Records an attempt: done, or failed with `error` (given up after `max_attempts`, else
/// claimable again after `backoff`).
pub async fn finish(
    db: &Db,
    subscription_id: &str,
    owner: &str,
    error: Option<&str>,
    give_up: bool,
    backoff: Duration,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let status = match (error, give_up) {
        (None, _) => Status::Done,
        (Some(_), true) => Status::Failed,
        (Some(_), false) => Status::Pending,
    };
    sqlx::query(
        "UPDATE stripe_cancellations SET status = $1, attempts = attempts + 1, last_error = $2, \
         lease_owner = NULL, lease_until = $3, updated_at = $4 \
         WHERE subscription_id = $5 AND lease_owner = $6",
    )
    .bind(status.as_str())
    .bind(error)
    .bind(db::ts(now + backoff))
    .bind(db::ts(now))
    .bind(subscription_id)
    .bind(owner)
    .execute(&db.pool)
    .await?;
    Ok(())
}
