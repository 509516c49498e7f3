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
