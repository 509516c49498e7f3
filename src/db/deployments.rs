//! Deployment status updates, always through the state machine in `status`.

use sqlx::{Any, Transaction};

use super::accounts;
use crate::status::{DeploymentStatus, Event};

/// Applies `event` to the customer's deployment. Returns the new status, or None when the
/// event does not apply (the row is left unchanged).
pub async fn apply_event(
    tx: &mut Transaction<'_, Any>,
    customer_id: &str,
    event: Event,
    revision: Option<&str>,
    error: Option<&str>,
    now: &str,
) -> anyhow::Result<Option<DeploymentStatus>> {
    let Some(row) = accounts::deployment(&mut **tx, customer_id).await? else {
        return Ok(None);
    };
    let current: DeploymentStatus = row.status.parse().map_err(anyhow::Error::msg)?;
    let Some(next) = current.on(event) else {
        return Ok(None);
    };
    sqlx::query(
        "UPDATE deployments SET status = $1, committed_revision = COALESCE($2, committed_revision), \
         error = $3, updated_at = $4 WHERE customer_id = $5",
    )
    .bind(next.as_str())
    .bind(revision)
    .bind(error)
    .bind(now)
    .bind(customer_id)
    .execute(&mut **tx)
    .await?;
    Ok(Some(next))
}
