//! The outbox of Stripe subscriptions to cancel (a deleted customer's): queued in the
//! deletion's transaction, claimed under a lease by the canceller in `billing serve`. States are
//! [`Status`]; no query spells them itself.

use chrono::{DateTime, Duration, Utc};
use sqlx::{Any, Executor, FromRow};

use crate::db::queue::{Backoff, Item, Lease, Queue};
use crate::db::Db;

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

/// The cancellations' queue, oldest first.
const CANCELLATIONS: Queue = Queue {
    lease: Lease::of_queue("stripe_cancellations", "subscription_id"),
    returning: "subscription_id, attempts",
    order: "created_at",
    pending: Status::Pending.as_str(),
    done: Status::Done.as_str(),
    failed: Status::Failed.as_str(),
    stamp: Some("updated_at"),
    forget: &[],
    max_attempts: 10,
    backoff: Backoff {
        base: Duration::seconds(1),
        cap: Duration::seconds(512),
    },
};

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

/// A cancellation claimed: the subscription, and how many attempts failed before.
#[derive(Debug, Clone, FromRow)]
pub struct Due {
    pub subscription_id: String,
    pub attempts: i64,
}

impl Item for Due {
    type Key = String;
    fn key(&self) -> String {
        self.subscription_id.clone()
    }
}

/// Takes up to `limit` pending cancellations whose lease is free or expired.
pub async fn claim(
    db: &Db,
    owner: &str,
    limit: i64,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<Due>, sqlx::Error> {
    CANCELLATIONS.claim(db, owner, limit, lease, now).await
}

/// Records an attempt of a cancellation `owner` holds: done, or failed with `error` (given up
/// after the queue's attempts, else claimable again after the backoff). True when given up.
pub async fn finish(
    db: &Db,
    due: &Due,
    owner: &str,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let id = due.subscription_id.clone();
    match error {
        None => {
            CANCELLATIONS
                .complete(&db.pool, id, owner, None, &[], now)
                .await?;
            Ok(false)
        }
        Some(error) => {
            CANCELLATIONS
                .retry(&db.pool, id, owner, due.attempts, error, now)
                .await
        }
    }
}
