//! License history: one row per license issued. Only the token's SHA-256 is kept, never the token.

use sqlx::{Any, Executor, FromRow};

#[derive(Debug, Clone, FromRow)]
pub struct LicenseRecord {
    pub customer_id: String,
    pub action: String,
    pub plan: String,
    pub kid: String,
    pub jti: String,
    pub token_sha256: String,
    pub issued_at: String,
    pub expires_at: String,
}

pub async fn insert<'c>(
    db: impl Executor<'c, Database = Any>,
    r: &LicenseRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO license_history (customer_id, action, plan, kid, jti, token_sha256, \
         issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&r.customer_id)
    .bind(&r.action)
    .bind(&r.plan)
    .bind(&r.kid)
    .bind(&r.jti)
    .bind(&r.token_sha256)
    .bind(&r.issued_at)
    .bind(&r.expires_at)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn latest<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<Option<LicenseRecord>, sqlx::Error> {
    sqlx::query_as(
        "SELECT customer_id, action, plan, kid, jti, token_sha256, issued_at, expires_at \
         FROM license_history WHERE customer_id = $1 ORDER BY issued_at DESC, id DESC LIMIT 1",
    )
    .bind(customer_id)
    .fetch_optional(db)
    .await
}
