//! The sync watcher: reads what Flux and Argo CD report about each tenant back into the
//! billing database. Each protocol lives in its own module (`flux`: notification-controller
//! events and their HMAC; `argocd`: argocd-notifications webhooks; `poller`: the Kubernetes
//! API fallback) and is turned into a [`Report`]; this module judges reports against Git.
//!
//! The rule: a tenant becomes `ready` only when a Ready/Healthy report names its committed
//! revision or a descendant of it (checked with git2 in the local GitOps repository), and a
//! failure counts only on a revision that contains the tenant's commit. Reports whose revision
//! does not contain the last applied one are out of order and ignored, so nothing ever moves
//! a tenant backwards. Statuses change only through the state machine in `crate::status`.

pub mod ancestry;
pub mod argocd;
pub mod clusters;
pub mod flux;
mod handles;
pub mod pods;
pub mod poller;
pub mod stall;

pub use handles::WatcherHandles;

use chrono::Utc;
use serde::Serialize;

use crate::accounts::domain::CustomerId;
use crate::db::{self, deployments};
use crate::status::{DeploymentStatus, Event};

pub use ancestry::Facts;

/// Who reported. Stored in the history's `source` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    FluxEvent,
    ArgoEvent,
    KubePoller,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::FluxEvent => "flux-event",
            Source::ArgoEvent => "argocd-event",
            Source::KubePoller => "kube-poller",
        }
    }
}

/// What the reporter says about the tenant at `revision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// Applied and healthy.
    Ready,
    /// Applying or health-checking failed.
    Failed,
    /// Anything in between (reconciling, out of sync, waiting for dependencies).
    Progressing,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Ready => "ready",
            SyncState::Failed => "failed",
            SyncState::Progressing => "progressing",
        }
    }
}

/// One report about one tenant, whatever protocol it came by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub customer_id: String,
    /// The revision as the reporter wrote it (`main@sha1:<hex>`, `sha1:<hex>`, `main/<hex>`,
    /// or a bare commit id); None when the report named none.
    pub revision: Option<String>,
    pub source: Source,
    pub state: SyncState,
    /// Health in Argo CD's words (Healthy, Progressing, Degraded, ...).
    pub health: Option<String>,
    pub message: Option<String>,
    /// The cluster that spoke (per-cluster endpoints, per-context pollers); None for the
    /// single-cluster endpoints and the context-less poller.
    pub cluster: Option<String>,
}

impl Report {
    /// The same report, as said by `cluster`.
    pub fn said_by(self, cluster: Option<&str>) -> Report {
        Report {
            cluster: cluster.map(str::to_string),
            ..self
        }
    }
}

/// What became of a report; the webhook answers say it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = SyncOutcome)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Recorded in the history; `status` is the tenant's status afterwards.
    Recorded { status: String },
    /// Not recorded, and why.
    Ignored { reason: &'static str },
}

/// Stored messages are bounded: Flux allows 39,000 characters per event.
const MAX_MESSAGE_CHARS: usize = 2000;

/// Per-tenant objects are `tenant-<customer id>` in Flux (templates/flux-kustomization.yaml) and
/// in Argo CD (the ApplicationSet's `tenant-{{path.basename}}`).
pub fn tenant_of(object_name: &str) -> Option<String> {
    let id = object_name.strip_prefix("tenant-")?;
    (id == crate::render::demo_spec().id || CustomerId::parse(id).is_some()).then(|| id.to_string())
}

/// The Git commit a reported revision names, as lowercase hex: Flux writes `<ref>@sha1:<hex>`
/// (source-controller v1), `sha1:<hex>`, or the legacy `<branch>/<hex>`; Argo CD the bare hex.
/// Anything else (an OCI digest, a SHA-256 repository) names no commit this repository has.
pub fn commit_of(revision: &str) -> Option<String> {
    let r = revision.trim();
    let hex = match r.rsplit_once('@') {
        Some((_, digest)) => digest.strip_prefix("sha1:")?,
        None => match r.strip_prefix("sha1:") {
            Some(hex) => hex,
            None => r.rsplit_once('/').map_or(r, |(_, hex)| hex),
        },
    };
    (hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

pub(crate) fn bounded(message: Option<&str>) -> Option<String> {
    let m = message?.trim();
    (!m.is_empty()).then(|| m.chars().take(MAX_MESSAGE_CHARS).collect())
}

/// The judgement on one report, given the row and the Git facts. Pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Ignore(&'static str),
    Record {
        status: DeploymentStatus,
        applied_revision: Option<String>,
        error: Option<String>,
    },
}

pub fn decide(row: &deployments::WatchRow, report: &Report, facts: &Facts) -> Decision {
    let Ok(current) = row.status.parse::<DeploymentStatus>() else {
        return Decision::Ignore("unknown deployment status");
    };
    if matches!(
        current,
        DeploymentStatus::Pending | DeploymentStatus::Deleted
    ) {
        return Decision::Ignore("tenant has no live commit");
    }
    if !facts.contains_applied {
        return Decision::Ignore("revision does not contain the applied revision (out of order)");
    }
    let event = match report.state {
        SyncState::Ready if facts.contains_commit => Some(Event::Synced),
        SyncState::Failed if facts.contains_commit => Some(Event::SyncFailed),
        _ => None,
    };
    // None: the event does not apply in this status (e.g. a second failure): keep the status.
    let status = event.and_then(|e| current.on(e)).unwrap_or(current);
    // The cluster runs what it last reported ready, also when that is older than our commit;
    // only revisions this repository knows can become the out-of-order fence.
    let applied_revision = match report.state {
        SyncState::Ready if facts.known => Some(facts.commit.clone()),
        _ => row.applied_revision.clone(),
    };
    let error = match status {
        DeploymentStatus::Ready => None,
        DeploymentStatus::Failed if event == Some(Event::SyncFailed) => Some(
            bounded(report.message.as_deref())
                .unwrap_or_else(|| "the cluster reported a failure".into()),
        ),
        _ => row.error.clone(),
    };
    Decision::Record {
        status,
        applied_revision,
        error,
    }
}

/// Judges and records one report. Reports about unknown tenants, without a commit revision,
/// older than what was applied, or repeating the reporter's last word are ignored.
pub async fn record(handles: &WatcherHandles, report: &Report) -> anyhow::Result<Outcome> {
    let commit = report.revision.as_deref().and_then(commit_of);
    let message = bounded(report.message.as_deref());
    let state = report.state.as_str();
    // A writer racing us (the worker, another report) makes the guarded update miss: decide again.
    for _ in 0..5 {
        let Some(row) = deployments::watch_row(&handles.db.pool, &report.customer_id).await? else {
            return Ok(Outcome::Ignored {
                reason: "unknown tenant",
            });
        };
        let Some(commit) = commit.clone() else {
            return Ok(Outcome::Ignored {
                reason: "the report names no Git commit",
            });
        };
        // Polls repeat themselves every pass; only a change is history. Compared with the
        // newest row of any source, so a poll contradicting a later webhook is still heard.
        let newest = deployments::newest_history(&handles.db.pool, &report.customer_id).await?;
        if newest.as_ref().is_some_and(|h| {
            h.source == report.source.as_str()
                && h.revision.as_deref() == Some(commit.as_str())
                && h.state == state
                && h.message == message
                && h.cluster == report.cluster
        }) {
            return Ok(Outcome::Ignored {
                reason: "repeats the newest report",
            });
        }
        let facts = ancestry::facts(handles, &commit, &row).await?;
        let (status, applied_revision, error) = match decide(&row, report, &facts) {
            Decision::Ignore(reason) => return Ok(Outcome::Ignored { reason }),
            Decision::Record {
                status,
                applied_revision,
                error,
            } => (status, applied_revision, error),
        };
        let now = db::ts(Utc::now());
        let mut tx = handles.db.pool.begin().await?;
        let update = deployments::ReportUpdate {
            customer_id: &report.customer_id,
            seen: &row,
            status,
            applied_revision: applied_revision.as_deref(),
            health: report.health.as_deref().or(row.health.as_deref()),
            message: message.as_deref(),
            error: error.as_deref(),
            now: &now,
        };
        if !deployments::update_from_report(&mut tx, &update).await? {
            tx.rollback().await?;
            continue;
        }
        if status == DeploymentStatus::Ready && row.status != DeploymentStatus::Ready.as_str() {
            crate::notify::instance_ready(
                &mut tx,
                &handles.smtp_from,
                &report.customer_id,
                Utc::now(),
            )
            .await?;
        }
        deployments::insert_history(
            &mut *tx,
            &deployments::HistoryEntry {
                customer_id: &report.customer_id,
                revision: Some(&commit),
                source: report.source.as_str(),
                state,
                message: message.as_deref(),
                at: &now,
                cluster: report.cluster.as_deref(),
            },
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            customer_id = %report.customer_id, source = report.source.as_str(), state,
            cluster = report.cluster.as_deref().unwrap_or(""), revision = %commit, status = %status, "sync report recorded"
        );
        return Ok(Outcome::Recorded {
            status: status.to_string(),
        });
    }
    anyhow::bail!(
        "the deployment of {} kept changing while a sync report was recorded",
        report.customer_id
    )
}

#[cfg(test)]
mod tests;
