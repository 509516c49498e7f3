//! Failed-login bookkeeping, kept in the database so that every replica sees the same count.
//! Each failure records the email tried and the client address it came from; the policy that
//! reads the counts lives in `accounts::throttle`.

use sqlx::{Any, Executor, Row};

/// Which failures to count.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// One email tried from one client address.
    Pair { email: &'a str, addr: &'a str },
    /// Every email tried from one client address.
    Address(&'a str),
}

pub async fn record_failure<'c>(
    db: impl Executor<'c, Database = Any>,
    email_normalized: &str,
    client_addr: &str,
    at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO login_failures (email_normalized, client_addr, at) VALUES ($1, $2, $3)",
    )
    .bind(email_normalized)
    .bind(client_addr)
    .bind(at)
    .execute(db)
    .await?;
    Ok(())
}

/// Failures in `scope` since `since`: their count and the oldest one's time.
pub async fn failures_since<'c>(
    db: impl Executor<'c, Database = Any>,
    scope: Scope<'_>,
    since: &str,
) -> Result<(i64, Option<String>), sqlx::Error> {
    let row = match scope {
        Scope::Pair { email, addr } => {
            sqlx::query(
                "SELECT COUNT(*) AS n, MIN(at) AS oldest FROM login_failures \
                 WHERE email_normalized = $1 AND client_addr = $2 AND at >= $3",
            )
            .bind(email)
            .bind(addr)
            .bind(since)
            .fetch_one(db)
            .await?
        }
        Scope::Address(addr) => {
            sqlx::query(
                "SELECT COUNT(*) AS n, MIN(at) AS oldest FROM login_failures \
                 WHERE client_addr = $1 AND at >= $2",
            )
            .bind(addr)
            .bind(since)
            .fetch_one(db)
            .await?
        }
    };
    Ok((row.try_get("n")?, row.try_get("oldest")?))
}

/// Forgets the failures of one email from one address (after a successful login there).
pub async fn clear_pair<'c>(
    db: impl Executor<'c, Database = Any>,
    email_normalized: &str,
    client_addr: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_failures WHERE email_normalized = $1 AND client_addr = $2")
        .bind(email_normalized)
        .bind(client_addr)
        .execute(db)
        .await?;
    Ok(())
}

/// Drops failures older than `before`: they count for nothing any more.
pub async fn prune<'c>(
    db: impl Executor<'c, Database = Any>,
    before: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_failures WHERE at < $1")
        .bind(before)
        .execute(db)
        .await?;
    Ok(())
}
