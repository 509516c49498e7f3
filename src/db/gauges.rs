//! The counts `/metrics` computes at scrape time: tenants by deployment and by subscription
//! state, and the age of the oldest render job still waiting for Git.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::{Any, Executor};

use crate::db::outbox::JobStatus;
use crate::model::subscription::SubscriptionStatus;
use crate::status::DeploymentStatus;

/// Tenants per deployment state (states without tenants are absent).
pub async fn tenants_by_deployment_state<'c>(
    db: impl Executor<'c, Database = Any>,
) -> anyhow::Result<Vec<(DeploymentStatus, i64)>> {
    count_by_status(
        db,
        "SELECT status, COUNT(*) FROM deployments GROUP BY status",
    )
    .await
}

/// Customers per subscription state (states without customers are absent).
pub async fn tenants_by_subscription_state<'c>(
    db: impl Executor<'c, Database = Any>,
) -> anyhow::Result<Vec<(SubscriptionStatus, i64)>> {
    count_by_status(
        db,
        "SELECT status, COUNT(*) FROM subscriptions GROUP BY status",
    )
    .await
}

/// The `(status, count)` rows of `sql`, each status parsed into its type.
async fn count_by_status<'c, S: FromStr<Err = String>>(
    db: impl Executor<'c, Database = Any>,
    sql: &'static str,
) -> anyhow::Result<Vec<(S, i64)>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(sql).fetch_all(db).await?;
    rows.into_iter()
        .map(|(status, n)| Ok((status.parse().map_err(anyhow::Error::msg)?, n)))
        .collect()
}

/// When the oldest render job still waiting for Git was queued; None when none waits.
pub async fn oldest_pending_job<'c>(
    db: impl Executor<'c, Database = Any>,
) -> anyhow::Result<Option<DateTime<Utc>>> {
    // Timestamps are stored as RFC 3339 in UTC with a fixed precision: MIN orders them by time.
    let oldest: Option<String> =
        sqlx::query_scalar("SELECT MIN(created_at) FROM render_jobs WHERE status = $1")
            .bind(JobStatus::Pending.as_str())
            .fetch_one(db)
            .await?;
    oldest.as_deref().map(crate::db::parse_ts).transpose()
}
