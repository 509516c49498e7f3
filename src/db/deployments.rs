//! Deployment status updates, always through the state machine in `status`, and the status
//! history (`deployment_history`) that billing's transitions and the sync watcher's reports
//! write.

use sqlx::{Any, Executor, FromRow, Transaction};

use super::accounts;
use crate::status::{DeploymentStatus, Event};

/// Source of the history rows billing writes about its own transitions.
pub const BILLING_SOURCE: &str = "billing";

/// Applies `event` to the customer's deployment. Returns the new status, or None when the
/// event does not apply (the row is left unchanged). Transitions other than queueing are
/// recorded in the history with source `billing`.
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
    // The worker reports every finished job as committed, also when its tree was already at the
    // tenant's revision: that must not send a ready tenant back to waiting for a sync report.
    let event = match event {
        Event::Committed if revision.is_some() && revision == row.committed_revision.as_deref() => {
            Event::CommittedUnchanged
        }
        // A review closed unmerged leaves main as it was: for a tenant never committed there
        // (its signup was the proposal), that is nothing at all.
        Event::ReviewClosed if row.committed_revision.is_none() => Event::ReviewClosedNothingOnMain,
        other => other,
    };
    let Some(next) = current.on(event) else {
        return Ok(None);
    };
    if event == Event::CommittedUnchanged && next == current {
        if row.error.is_some() {
            // The change is in Git after all: an earlier commit failure no longer applies.
            sqlx::query(
                "UPDATE deployments SET error = NULL, updated_at = $1 WHERE customer_id = $2",
            )
            .bind(now)
            .bind(customer_id)
            .execute(&mut **tx)
            .await?;
        }
        return Ok(Some(next));
    }
    // The stall clock starts when a tenant starts waiting for the cluster.
    let restart_clock = next == DeploymentStatus::Committed
        && (event == Event::Committed || current != DeploymentStatus::Committed);
    sqlx::query(
        "UPDATE deployments SET status = $1, committed_revision = COALESCE($2, committed_revision), \
         error = $3, updated_at = $4, \
         committed_at = CASE WHEN $5 = 1 THEN $4 ELSE committed_at END \
         WHERE customer_id = $6",
    )
    .bind(next.as_str())
    .bind(revision)
    .bind(error)
    .bind(now)
    .bind(i64::from(restart_clock))
    .bind(customer_id)
    .execute(&mut **tx)
    .await?;
    let transition =
        next != current || matches!(event, Event::Committed | Event::Removed | Event::Drifted);
    if event != Event::Queued && transition {
        let revision = revision.or(row.committed_revision.as_deref());
        insert_history(
            &mut **tx,
            &HistoryEntry {
                customer_id,
                revision,
                source: BILLING_SOURCE,
                state: next.as_str(),
                message: error,
                at: now,
                cluster: None,
            },
        )
        .await?;
    }
    Ok(Some(next))
}

/// What the watcher needs to judge a report: the status, the commit it waits for, and the
/// newest revision the cluster reported applied.
#[derive(Debug, Clone, FromRow)]
pub struct WatchRow {
    pub status: String,
    pub committed_revision: Option<String>,
    pub applied_revision: Option<String>,
    pub health: Option<String>,
    pub message: Option<String>,
    pub error: Option<String>,
    pub committed_at: Option<String>,
    /// When the tenant last became ready (set by [`update_from_report`]).
    pub ready_at: Option<String>,
}

pub async fn watch_row<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<Option<WatchRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT status, committed_revision, applied_revision, health, message, error, \
         committed_at, ready_at FROM deployments WHERE customer_id = $1",
    )
    .bind(customer_id)
    .fetch_optional(db)
    .await
}

/// The watcher's write: the new status, applied revision, health and message, only if the row
/// still is what the decision was based on (status, committed and applied revision). Returns
/// false when another writer got there first; the caller decides again. Becoming ready (from
/// any other status) stamps `ready_at`.
pub struct ReportUpdate<'a> {
    pub customer_id: &'a str,
    pub seen: &'a WatchRow,
    pub status: DeploymentStatus,
    pub applied_revision: Option<&'a str>,
    pub health: Option<&'a str>,
    pub message: Option<&'a str>,
    pub error: Option<&'a str>,
    pub now: &'a str,
}

pub async fn update_from_report(
    tx: &mut Transaction<'_, Any>,
    u: &ReportUpdate<'_>,
) -> Result<bool, sqlx::Error> {
    // COALESCE(x, '') = COALESCE($n, ''): null-safe equality that both backends understand.
    // SET expressions read the row before the update, so `status` there is the old one.
    let done = sqlx::query(
        "UPDATE deployments SET status = $1, applied_revision = $2, health = $3, message = $4, \
         error = $5, updated_at = $6, \
         ready_at = CASE WHEN $1 = $11 AND status <> $11 THEN $6 ELSE ready_at END \
         WHERE customer_id = $7 AND status = $8 \
         AND COALESCE(committed_revision, '') = COALESCE($9, '') \
         AND COALESCE(applied_revision, '') = COALESCE($10, '')",
    )
    .bind(u.status.as_str())
    .bind(u.applied_revision)
    .bind(u.health)
    .bind(u.message)
    .bind(u.error)
    .bind(u.now)
    .bind(u.customer_id)
    .bind(&u.seen.status)
    .bind(u.seen.committed_revision.as_deref())
    .bind(u.seen.applied_revision.as_deref())
    .bind(DeploymentStatus::Ready.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Committed tenants whose commit is older than `cutoff`: candidates for `stalled`.
pub async fn stall_candidates<'c>(
    db: impl Executor<'c, Database = Any>,
    cutoff: &str,
) -> Result<Vec<(String, Option<String>, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT customer_id, committed_revision, committed_at FROM deployments \
         WHERE status = $2 AND committed_at IS NOT NULL AND committed_at < $1 \
         ORDER BY committed_at LIMIT 500",
    )
    .bind(cutoff)
    .bind(DeploymentStatus::Committed.as_str())
    .fetch_all(db)
    .await
}

/// Moves one committed tenant to the status the machine gives for `TimedOut`, if its clock is
/// still the one that ran out (a new commit meanwhile restarted it). Records the transition.
pub async fn time_out(
    tx: &mut Transaction<'_, Any>,
    customer_id: &str,
    committed_at: &str,
    message: &str,
    now: &str,
) -> anyhow::Result<Option<DeploymentStatus>> {
    let current = DeploymentStatus::Committed;
    let Some(next) = current.on(Event::TimedOut) else {
        return Ok(None);
    };
    let done = sqlx::query(
        "UPDATE deployments SET status = $1, error = $2, updated_at = $3 \
         WHERE customer_id = $4 AND status = $5 AND committed_at = $6",
    )
    .bind(next.as_str())
    .bind(message)
    .bind(now)
    .bind(customer_id)
    .bind(current.as_str())
    .bind(committed_at)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    let revision: Option<String> =
        sqlx::query_scalar("SELECT committed_revision FROM deployments WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_one(&mut **tx)
            .await?;
    insert_history(
        &mut **tx,
        &HistoryEntry {
            customer_id,
            revision: revision.as_deref(),
            source: BILLING_SOURCE,
            state: next.as_str(),
            message: Some(message),
            at: now,
            cluster: None,
        },
    )
    .await?;
    Ok(Some(next))
}

/// Shows why a tenant's change is not in Git yet (the commit or the push failed) without
/// changing its status: the change is retried, and the next transition clears the error.
pub async fn record_error<'c>(
    db: impl Executor<'c, Database = Any> + Copy,
    customer_ids: &[&str],
    error: &str,
    now: &str,
) -> Result<(), sqlx::Error> {
    for id in customer_ids {
        sqlx::query("UPDATE deployments SET error = $1, updated_at = $2 WHERE customer_id = $3")
            .bind(error)
            .bind(now)
            .bind(id)
            .execute(db)
            .await?;
    }
    Ok(())
}

pub struct HistoryEntry<'a> {
    pub customer_id: &'a str,
    pub revision: Option<&'a str>,
    pub source: &'a str,
    pub state: &'a str,
    pub message: Option<&'a str>,
    pub at: &'a str,
    /// The cluster that reported (per-cluster endpoints and pollers), else None.
    pub cluster: Option<&'a str>,
}

pub async fn insert_history<'c>(
    db: impl Executor<'c, Database = Any>,
    e: &HistoryEntry<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO deployment_history (customer_id, revision, source, state, message, at, \
         cluster) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(e.customer_id)
    .bind(e.revision)
    .bind(e.source)
    .bind(e.state)
    .bind(e.message)
    .bind(e.at)
    .bind(e.cluster)
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize, utoipa::ToSchema)]
#[schema(as = DeploymentHistoryRow)]
pub struct HistoryRow {
    pub revision: Option<String>,
    pub source: String,
    pub state: String,
    pub message: Option<String>,
    pub at: String,
    /// The cluster that reported it, when a per-cluster endpoint or poller did.
    pub cluster: Option<String>,
}

/// The newest history row of a tenant, whoever wrote it: a report repeating it (same source,
/// revision, state and message) is not recorded again.
pub async fn newest_history<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<Option<HistoryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT revision, source, state, message, at, cluster FROM deployment_history \
         WHERE customer_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(customer_id)
    .fetch_optional(db)
    .await
}

/// The newest `limit` history rows of a tenant, newest first.
pub async fn history<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
    limit: i64,
) -> Result<Vec<HistoryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT revision, source, state, message, at, cluster FROM deployment_history \
         WHERE customer_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(customer_id)
    .bind(limit)
    .fetch_all(db)
    .await
}
