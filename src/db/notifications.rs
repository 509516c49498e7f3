//! The outbox of customer emails: queued in the transaction of the change that causes them
//! (at most once per customer, kind and dedupe key), claimed under a lease like render jobs,
//! and stripped of recipient and body once sent.

use chrono::{DateTime, Duration, Utc};
use sqlx::{Any, Executor, FromRow};

use crate::db::{self, Db};
use crate::notify::{Kind, Status};

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
    let lock = db.backend.skip_locked();
    let sql = format!(
        "UPDATE notifications SET lease_owner = $1, lease_until = $2 \
         WHERE id IN (SELECT id FROM notifications WHERE status = $5 \
                      AND (lease_until IS NULL OR lease_until < $3) ORDER BY id LIMIT $4 {lock}) \
         RETURNING id, customer_id, kind, recipient, subject, body, message_id, attempts"
    );
    let mut rows: Vec<Pending> = sqlx::query_as(&sql)
        .bind(owner)
        .bind(db::ts(now + lease))
        .bind(db::ts(now))
        .bind(limit)
        .bind(Status::Pending.as_str())
        .fetch_all(&db.pool)
        .await?;
    rows.sort_by_key(|r| r.id);
    Ok(rows)
}

/// Marks an email sent (while we hold its lease) and drops its recipient and body: the row
/// stays as proof of what was sent when, without personal data.
pub async fn mark_sent(
    db: &Db,
    id: i64,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE notifications SET status = $1, sent_at = $2, recipient = NULL, body = NULL, \
         lease_owner = NULL, lease_until = NULL, last_error = NULL \
         WHERE id = $3 AND lease_owner = $4 AND status = $5",
    )
    .bind(Status::Sent.as_str())
    .bind(db::ts(now))
    .bind(id)
    .bind(owner)
    .bind(Status::Pending.as_str())
    .execute(&db.pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Records a failed attempt; past `max_attempts` the email is given up (and its recipient and
/// body dropped too). Otherwise it is claimable again after `backoff`. True when given up.
pub async fn retry(
    db: &Db,
    row: &Pending,
    error: &str,
    max_attempts: i64,
    backoff: Duration,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let attempts = row.attempts + 1;
    let gave_up = attempts >= max_attempts;
    let status = if gave_up {
        Status::Failed
    } else {
        Status::Pending
    };
    // A given-up email keeps no personal data either.
    let clear = if gave_up {
        ", recipient = NULL, body = NULL"
    } else {
        ""
    };
    sqlx::query(&format!(
        "UPDATE notifications SET attempts = $1, last_error = $2, status = $3, lease_owner = NULL, \
         lease_until = $4{clear} WHERE id = $5 AND status = $6"
    ))
    .bind(attempts)
    .bind(error)
    .bind(status.as_str())
    .bind(db::ts(now + backoff))
    .bind(row.id)
    .bind(Status::Pending.as_str())
    .execute(&db.pool)
    .await?;
    Ok(gave_up)
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
