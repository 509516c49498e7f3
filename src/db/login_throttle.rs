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

/// One email's failures in the per-account window, whatever the addresses.
#[derive(Debug, Clone, Default)]
pub struct AccountFailures {
    pub count: i64,
    /// Distinct client addresses they came from.
    pub addresses: i64,
    /// The newest one's time.
    pub latest: Option<String>,
}

/// The failures of `email_normalized` since `since`, from any address. Asked for every email,
/// with or without an account, so the answer takes the same path for both.
pub async fn account_failures<'c>(
    db: impl Executor<'c, Database = Any>,
    email_normalized: &str,
    since: &str,
) -> Result<AccountFailures, sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT client_addr) AS addrs, MAX(at) AS latest \
         FROM login_failures WHERE email_normalized = $1 AND at >= $2",
    )
    .bind(email_normalized)
    .bind(since)
    .fetch_one(db)
    .await?;
    Ok(AccountFailures {
        count: row.try_get("n")?,
        addresses: row.try_get("addrs")?,
        latest: row.try_get("latest")?,
    })
}

/// How many emails had at least `limit` failures since `since` (those under the per-account
/// limit, for /metrics).
pub async fn emails_over_limit<'c>(
    db: impl Executor<'c, Database = Any>,
    since: &str,
    limit: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT email_normalized FROM login_failures WHERE at >= $1 \
         GROUP BY email_normalized HAVING COUNT(*) >= $2) AS over_limit",
    )
    .bind(since)
    .bind(limit)
    .fetch_one(db)
    .await
}

/// Whether the account of `email_normalized` logged in from `client_addr` since `since`. An
/// email without an account is known nowhere (same query, no row).
pub async fn is_known_address<'c>(
    db: impl Executor<'c, Database = Any>,
    email_normalized: &str,
    client_addr: &str,
    since: &str,
) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM login_addresses a JOIN customers c ON c.id = a.customer_id \
         WHERE c.email_normalized = $1 AND a.client_addr = $2 AND a.last_login_at >= $3",
    )
    .bind(email_normalized)
    .bind(client_addr)
    .bind(since)
    .fetch_one(db)
    .await?;
    Ok(n > 0)
}

/// Records a successful login of the customer from `client_addr`, and forgets the addresses
/// it has not logged in from since `forget_before`.
pub async fn remember_address<'c>(
    tx: &mut sqlx::Transaction<'c, Any>,
    customer_id: &str,
    client_addr: &str,
    at: &str,
    forget_before: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO login_addresses (customer_id, client_addr, last_login_at) \
         VALUES ($1, $2, $3) ON CONFLICT (customer_id, client_addr) \
         DO UPDATE SET last_login_at = excluded.last_login_at",
    )
    .bind(customer_id)
    .bind(client_addr)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM login_addresses WHERE customer_id = $1 AND last_login_at < $2")
        .bind(customer_id)
        .bind(forget_before)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
