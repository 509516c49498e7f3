//! The outbox of customer emails: queued in the transaction of the change that causes them
//! (at most once per customer, kind and dedupe key), claimed under a lease like render jobs,
//! and stripped of recipient and body once sent.

use chrono::{DateTime, Duration, Utc};
use sqlx::{Any, Executor, FromRow};

use crate::db::queue::{Backoff, Item, Lease, Queue};
use crate::db::{self, Db};
use crate::model::email::{Kind, Status};

/// The emails' queue; a settled email keeps no personal data.
const EMAILS: Queue = Queue {
    lease: Lease::of_queue("notifications", "id"),
    returning: "id, customer_id, kind, recipient, subject, body, message_id, attempts",
    order: "id",
    pending: Status::Pending.as_str(),
    done: Status::Sent.as_str(),
    failed: Status::Failed.as_str(),
    stamp: None,
    forget: &["recipient", "body"],
    max_attempts: 10,
    backoff: Backoff {
        base: Duration::seconds(1),
        cap: Duration::seconds(4096),
    },
};

/// An email to queue.
pub struct NewNotification<'a> {
    pub customer_id: &'a str,
    pub kind: Kind,
    pub dedupe_key: &'a str,
    pub recipient: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    pub message_id: &'a str,
}

#[derive(Debug, Clone, FromRow)]
pub struct Pending {
    pub id: i64,
    pub customer_id: String,
    pub kind: String,
    pub recipient: Option<String>,
    pub subject: String,
    pub body: Option<String>,
    pub message_id: String,
    pub attempts: i64,
}

impl Item for Pending {
    type Key = i64;
    fn key(&self) -> i64 {
        self.id
    }
}

/// Queues an email; false when one of that kind and dedupe key is queued or sent already.
pub async fn enqueue<'c>(
    db: impl Executor<'c, Database = Any>,
    n: &NewNotification<'_>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO notifications (customer_id, kind, dedupe_key, recipient, subject, body, \
         message_id, status, attempts, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9) \
         ON CONFLICT (customer_id, kind, dedupe_key) DO NOTHING",
    )
    .bind(n.customer_id)
    .bind(n.kind.as_str())
    .bind(n.dedupe_key)
    .bind(n.recipient)
    .bind(n.subject)
    .bind(n.body)
    .bind(n.message_id)
    .bind(Status::Pending.as_str())
    .bind(db::ts(now))
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Takes up to `limit` pending emails whose lease is free or expired, oldest first.
pub async fn claim(
    db: &Db,
    owner: &str,
    limit: i64,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<Pending>, sqlx::Error> {
    EMAILS.claim(db, owner, limit, lease, now).await
}

/// Marks an email sent (while we hold its lease) and drops its recipient and body: the row
/// stays as proof of what was sent when, without personal data.
pub async fn mark_sent(
    db: &Db,
    id: i64,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let sent_at = db::ts(now);
    let set = [("sent_at", Some(sent_at.as_str()))];
    EMAILS.complete(&db.pool, id, owner, None, &set, now).await
}

/// Records a failed attempt of an email `owner` holds; past the queue's attempts it is given
/// up (and its recipient and body dropped too). Otherwise it is claimable again after the
/// backoff. True when given up.
pub async fn retry(
    db: &Db,
    row: &Pending,
    owner: &str,
    error: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    EMAILS
        .retry(&db.pool, row.id, owner, row.attempts, error, now)
        .await
}

/// Drops a customer's unsent emails (a deletion: nothing but the farewell goes out after it).
pub async fn drop_pending<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM notifications WHERE customer_id = $1 AND status = $2")
            .bind(customer_id)
            .bind(Status::Pending.as_str())
            .execute(db)
            .await?
            .rows_affected(),
    )
}

/// Whether an email of `kind` was queued for the customer since `since` (sent or not).
pub async fn queued_since<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
    kind: Kind,
    since: &str,
) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM notifications \
         WHERE customer_id = $1 AND kind = $2 AND created_at >= $3",
    )
    .bind(customer_id)
    .bind(kind.as_str())
    .bind(since)
    .fetch_one(db)
    .await?;
    Ok(n > 0)
}
