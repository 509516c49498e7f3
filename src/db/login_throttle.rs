//! Failed-login bookkeeping, kept in the database so that every replica sees the same count.

use sqlx::{Any, Executor, Row};

pub async fn record_failure<'c>(
    db: impl Executor<'c, Database = Any>,
    email_normalized: &str,
    at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO login_failures (email_normalized, at) VALUES ($1, $2)")
        .bind(email_normalized)
        .bind(at)
        .execute(db)
        .await?;
    Ok(())
}

/// Failures since `since`: their count and the oldest one's time.
pub async fn failures_since<'c>(
    db: impl Executor<'c, Database = Any>,
    email_normalized: &str,
    since: &str,
) -> Result<(i64, Option<String>), sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, MIN(at) AS oldest FROM login_failures \
         WHERE email_normalized = $1 AND at >= $2",
    )
    .bind(email_normalized)
    .bind(since)
    .fetch_one(db)
    .await?;
    Ok((row.try_get("n")?, row.try_get("oldest")?))
}

pub async fn clear<'c>(
    db: impl Executor<'c, Database = Any>,
    email_normalized: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_failures WHERE email_normalized = $1")
        .bind(email_normalized)
        .execute(db)
        .await?;
    Ok(())
}
