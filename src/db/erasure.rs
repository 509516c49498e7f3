//! Queries that erase a customer's personal data (see `accounts::deletion` for the policy):
//! the customer row is scrubbed in place, never deleted, so the billing records and the audit
//! trail that reference it stay.

use sqlx::{Any, Executor, FromRow};

/// What replaces the customer's personal data: non-identifying, yet NOT NULL and unique.
pub struct Scrubbed<'a> {
    pub id: &'a str,
    /// The normalised email the row held, so that a concurrent change is not scrubbed blindly.
    pub old_email_normalized: &'a str,
    pub placeholder_email: &'a str,
    pub placeholder_hash: &'a str,
    pub now: &'a str,
}

/// Scrubs the customer row and marks it deleted; false when it is gone or deleted already (or
/// its email changed meanwhile). The first statement of the deletion: on SQLite it takes the
/// write lock before anything is read.
pub async fn scrub_customer<'c>(
    db: impl Executor<'c, Database = Any>,
    s: &Scrubbed<'_>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE customers SET email = $1, email_normalized = $1, email_skeleton = NULL, \
         password_hash = $2, company_name = '', full_name = NULL, deleted_at = $3, updated_at = $3 \
         WHERE id = $4 AND email_normalized = $5 AND deleted_at IS NULL",
    )
    .bind(s.placeholder_email)
    .bind(s.placeholder_hash)
    .bind(s.now)
    .bind(s.id)
    .bind(s.old_email_normalized)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The normalised email of a customer that exists and is not deleted.
pub async fn live_email<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT email_normalized FROM customers WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Takes a live customer's row for a change: on SQLite the write lock, before the transaction
/// reads anything (a read first fails with SQLITE_BUSY_SNAPSHOT when another writer commits in
/// between); on PostgreSQL the row lock, so it waits for a deletion in flight. False when the
/// customer is missing or deleted.
pub async fn lock_live<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE customers SET updated_at = updated_at WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether the customer exists and is not deleted (a session of a deleted one is refused).
pub async fn is_live<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<bool, sqlx::Error> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT id FROM customers WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .fetch_optional(db)
            .await?;
    Ok(found.is_some())
}

/// Forgets the failed logins of the email and the addresses the customer logged in from.
pub async fn forget_login_history(
    tx: &mut sqlx::Transaction<'_, Any>,
    email_normalized: &str,
    customer_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_failures WHERE email_normalized = $1")
        .bind(email_normalized)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM login_addresses WHERE customer_id = $1")
        .bind(customer_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn drop_secrets<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM tenant_secrets WHERE customer_id = $1")
        .bind(customer_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

#[derive(Debug, FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub customer_id: Option<String>,
    pub details: String,
}

/// The audit rows of the customer, and those of nobody that mention `needle` (e.g. a failed
/// login with their email before they signed up). A superset: the caller decides per row.
pub async fn audit_rows_of<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
    needle: &str,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, customer_id, details FROM audit_log \
         WHERE customer_id = $1 OR (customer_id IS NULL AND LOWER(details) LIKE $2) ORDER BY id",
    )
    .bind(customer_id)
    .bind(format!("%{}%", needle.to_lowercase()))
    .fetch_all(db)
    .await
}

/// Drops the client address and user agent of an audit row and replaces its details.
pub async fn scrub_audit_row<'c>(
    db: impl Executor<'c, Database = Any>,
    id: i64,
    details: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE audit_log SET client_ip = NULL, user_agent = NULL, details = $1 WHERE id = $2",
    )
    .bind(details)
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// Fails the customer's pending render jobs: after a deletion only the removal may reach Git
/// (a retried create would bring the stack back).
pub async fn cancel_pending_jobs<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
    now: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE render_jobs SET status = 'failed', last_error = 'superseded: customer deleted', \
         lease_owner = NULL, lease_until = NULL, updated_at = $1 \
         WHERE customer_id = $2 AND status = 'pending'",
    )
    .bind(now)
    .bind(customer_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// SQLite: copies the WAL into the database file and truncates it to nothing, so the
/// pre-erasure pages it holds are gone (`secure_delete` already zeroed them in the file). False
/// when a reader or writer kept it from finishing. PostgreSQL: nothing to do, true.
pub async fn checkpoint_wal(db: &super::Db) -> Result<bool, sqlx::Error> {
    if db.backend != super::Backend::Sqlite {
        return Ok(true);
    }
    // While it waits for readers a TRUNCATE checkpoint holds off every writer, so it waits
    // briefly and is retried rather than stalling signups for the usual busy timeout.
    let mut conn = db.pool.acquire().await?;
    sqlx::query("PRAGMA busy_timeout = 250")
        .execute(&mut *conn)
        .await?;
    // Columns: busy (1 when blocked), frames in the WAL, frames checkpointed.
    let busy = sqlx::query_scalar::<_, i64>("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(&mut *conn)
        .await;
    let restore = format!("PRAGMA busy_timeout = {}", super::SQLITE_BUSY_TIMEOUT_MS);
    if let Err(e) = sqlx::query(&restore).execute(&mut *conn).await {
        // Not back in the pool with the short timeout.
        conn.detach();
        return Err(e);
    }
    Ok(busy? == 0)
}
