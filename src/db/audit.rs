//! The audit log. Callers pass only non-secret details: no password, hash, token or key.

use sqlx::{Any, Executor};

/// Who did what, from where. `details` is a JSON object.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    pub action: &'static str,
    pub customer_id: Option<String>,
    pub actor: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: serde_json::Value,
}

pub async fn record<'c>(
    db: impl Executor<'c, Database = Any>,
    at: &str,
    e: &AuditEntry,
) -> Result<(), sqlx::Error> {
    let details = if e.details.is_null() {
        "{}".to_string()
    } else {
        e.details.to_string()
    };
    sqlx::query(
        "INSERT INTO audit_log (at, action, customer_id, actor, client_ip, user_agent, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(at)
    .bind(e.action)
    .bind(&e.customer_id)
    .bind(&e.actor)
    .bind(&e.client_ip)
    .bind(&e.user_agent)
    .bind(details)
    .execute(db)
    .await?;
    Ok(())
}

/// One row of a customer's audit trail (without `details`, which may hold their email).
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AuditRow {
    pub at: String,
    pub action: String,
    pub actor: String,
    pub client_ip: Option<String>,
}

/// A customer's audit trail, newest first.
pub async fn for_customer<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT at, action, actor, client_ip FROM audit_log WHERE customer_id = $1 \
         ORDER BY id DESC LIMIT $2",
    )
    .bind(customer_id)
    .bind(limit)
    .fetch_all(db)
    .await
}
