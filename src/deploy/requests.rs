//! Operator requests on a tenant's deployment (redeploy, delete) and its status view.

use chrono::Utc;
use serde::Serialize;
use serde_json::json;

use crate::accounts::RequestMeta;
use crate::db::outbox::{self, Action};
use crate::db::{self, accounts, audit, deployments};
use crate::deploy::DeployError;
use crate::deploy::DeployHandles;
use crate::gitops::GitOpsError;
use crate::model::git::GitHealth;
use crate::render::namespace_of;
use crate::status::{DeploymentStatus, Event};
use crate::watcher::pods::PodView;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeploymentStatusView {
    pub customer_id: String,
    pub status: String,
    pub instance_url: String,
    pub committed_revision: Option<String>,
    /// The newest revision the cluster reported ready (Flux, Argo CD or the poller).
    pub applied_revision: Option<String>,
    /// The cluster's last word on health (Argo CD's vocabulary: Healthy, Progressing, Degraded).
    pub health: Option<String>,
    /// The last accepted sync report's message.
    pub message: Option<String>,
    pub error: Option<String>,
    pub updated_at: String,
    /// The region the tenant was placed in (null without a cluster catalogue).
    pub region: Option<String>,
    /// Its cluster; null while it waits for room (`unplaced`) or without a catalogue.
    pub cluster: Option<String>,
    /// Its cluster lacks room for its current footprint (after a plan change); it stays there.
    pub placement_warning: Option<String>,
    /// Jobs of this tenant not yet in Git.
    pub pending_changes: i64,
    /// The branch of the change waiting for review (`tenant/<id>/<change-id>`), if any.
    pub review_branch: Option<String>,
    /// Its pull (merge) request on the forge, once opened.
    pub review_url: Option<String>,
    /// The GitOps side as a whole: a failing remote shows here, never silently.
    pub gitops: GitHealth,
    /// Sync reports and billing's own transitions, newest first.
    pub history: Vec<deployments::HistoryRow>,
    /// The old admin dashboard's fields, in its names and vocabulary.
    pub customer: LegacyCustomer,
    /// The tenant's pods as the Kubernetes poller last listed them; empty without a poller.
    pub pods: Vec<PodView>,
}

/// The customer as the old service's status answer showed it (camelCase, its own vocabulary).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegacyCustomer {
    pub id: String,
    pub email: String,
    /// [`DeploymentStatus::legacy_name`]: pending, deploying, deployed, failed or deleted.
    pub deployment_status: &'static str,
    pub instance_url: String,
    /// When the running stack was deployed: when the tenant last became ready, else when its
    /// stack was last committed; null before the first commit and once deleted.
    pub deployed_at: Option<String>,
    /// The error of a `failed` tenant (failed or stalled), else null.
    pub deployment_error: Option<String>,
}

/// How many history rows the status view shows.
const HISTORY_SHOWN: i64 = 50;

pub async fn status(
    handles: &DeployHandles,
    customer_id: &str,
) -> Result<DeploymentStatusView, DeployError> {
    let row = accounts::deployment(&handles.db.pool, customer_id)
        .await?
        .ok_or(DeployError::NotFound("no such customer"))?;
    let pending = outbox::pending_for(&handles.db.pool, customer_id).await?;
    let review = db::reviews::open_of(&handles.db.pool, customer_id).await?;
    let watch = deployments::watch_row(&handles.db.pool, customer_id).await?;
    let history = deployments::history(&handles.db.pool, customer_id, HISTORY_SHOWN).await?;
    let placement = db::clusters::placement(&handles.db.pool, customer_id).await?;
    let placement_warning = db::placements::warning(&handles.db.pool, customer_id).await?;
    let (applied_revision, health, message, deployed_at) = watch
        .map(|w| {
            (
                w.applied_revision,
                w.health,
                w.message,
                w.ready_at.or(w.committed_at),
            )
        })
        .unwrap_or_default();
    let email = accounts::customer_by_id(&handles.db.pool, customer_id)
        .await?
        .ok_or(DeployError::NotFound("no such customer"))?
        .email;
    let state: DeploymentStatus = row.status.parse().map_err(anyhow::Error::msg)?;
    let customer = LegacyCustomer {
        id: customer_id.to_string(),
        email,
        deployment_status: state.legacy_name(),
        instance_url: row.instance_url.clone(),
        deployed_at: deployed_at.filter(|_| state != DeploymentStatus::Deleted),
        deployment_error: row
            .error
            .clone()
            .filter(|_| state.legacy_name() == "failed"),
    };
    Ok(DeploymentStatusView {
        customer_id: customer_id.to_string(),
        status: row.status,
        instance_url: row.instance_url,
        committed_revision: row.committed_revision,
        applied_revision,
        health,
        message,
        error: row.error,
        updated_at: row.updated_at,
        region: placement.as_ref().map(|p| p.region.clone()),
        cluster: placement.and_then(|p| p.cluster),
        placement_warning,
        pending_changes: pending,
        review_branch: review.as_ref().map(|r| r.branch.clone()),
        review_url: review.and_then(|r| r.forge_url),
        gitops: handles.gitops.health(),
        history,
        customer,
        pods: handles.pods.of(customer_id),
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub customer_id: String,
    pub change_id: String,
    pub action: &'static str,
    pub status: String,
    /// The old service's answer: `success` (always true here; failures are errors),
    /// `namespace` (`customer-<id>`) and, for a deploy, `instanceUrl`.
    pub success: bool,
    pub namespace: String,
    #[serde(rename = "instanceUrl", skip_serializing_if = "Option::is_none")]
    pub instance_url: Option<String>,
}

/// Queues a re-render or a removal of the tenant's stack; the worker commits it. A plain
/// rebuild of a drifted tenant is refused: only `Action::Force` overwrites what a person did.
pub async fn request(
    handles: &DeployHandles,
    customer_id: &str,
    action: Action,
    meta: &RequestMeta,
) -> Result<Accepted, DeployError> {
    queue(handles, customer_id, action, None, meta).await
}

/// Queues a rollback of the tenant to `to` (a revision), or to before its last change.
pub async fn rollback(
    handles: &DeployHandles,
    customer_id: &str,
    to: Option<&str>,
    meta: &RequestMeta,
) -> Result<Accepted, DeployError> {
    let to = match to {
        None => None,
        Some(rev) => Some(resolve(handles, rev).await?),
    };
    queue(handles, customer_id, Action::Rollback, to, meta).await
}

/// The full hash of a revision in the repository, or a 422 that names it.
async fn resolve(handles: &DeployHandles, revision: &str) -> Result<String, DeployError> {
    let revision = revision.to_string();
    let resolved = handles
        .gitops
        .run(move |repo| Ok::<_, GitOpsError>(repo.resolve(&revision)))
        .await
        .map_err(anyhow::Error::from)?;
    resolved
        .map(|oid| oid.to_string())
        .map_err(|e| DeployError::validation("unknown_revision", "to", e.to_string()))
}

async fn queue(
    handles: &DeployHandles,
    customer_id: &str,
    action: Action,
    target: Option<String>,
    meta: &RequestMeta,
) -> Result<Accepted, DeployError> {
    let now = Utc::now();
    let now_text = db::ts(now);
    let mut tx = handles.db.pool.begin().await?;
    // A deleted customer is gone for operators too: a redeploy must not bring the stack back.
    if !db::erasure::lock_live(&mut *tx, customer_id).await? {
        return Err(DeployError::NotFound("no such customer"));
    }
    let deployment = accounts::deployment(&mut *tx, customer_id).await?;
    let drifted =
        deployment.as_ref().map(|d| d.status.as_str()) == Some(DeploymentStatus::Drifted.as_str());
    if drifted && matches!(action, Action::Rebuild | Action::Update | Action::Create) {
        return Err(DeployError::Conflict {
            code: "tenant_drifted",
            message: format!(
                "tenant {customer_id} was changed outside the service (see its status); \
                 deploy with force=true to overwrite that with the database's rendering"
            ),
        });
    }
    let instance_url = match action {
        Action::Delete => None,
        _ => deployment.map(|d| d.instance_url),
    };
    let change_id = match action {
        Action::Rollback => {
            outbox::enqueue_rollback(&mut *tx, customer_id, target.as_deref(), now).await?
        }
        _ => outbox::enqueue(&mut *tx, customer_id, action, now).await?,
    };
    let status =
        deployments::apply_event(&mut tx, customer_id, Event::Queued, None, None, &now_text)
            .await?
            .map(|s| s.to_string())
            .unwrap_or_default();
    audit::record(
        &mut *tx,
        &now_text,
        &audit::AuditEntry {
            action: match action {
                Action::Delete => "deployment.delete_requested",
                Action::Rollback => "deployment.rollback_requested",
                Action::Force => "deployment.forced_deploy_requested",
                _ => "deployment.redeploy_requested",
            },
            customer_id: Some(customer_id.to_string()),
            actor: "admin".into(),
            client_ip: meta.client_ip.clone(),
            user_agent: meta.user_agent.clone(),
            details: json!({ "change_id": change_id, "to": target }),
        },
    )
    .await?;
    tx.commit().await?;
    handles.worker_wake.notify_one();
    Ok(Accepted {
        customer_id: customer_id.to_string(),
        change_id,
        action: action.as_str(),
        status,
        success: true,
        namespace: namespace_of(customer_id),
        instance_url,
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AcceptedAll {
    /// Prefix of the queued jobs' change ids (`<change_set>-<customer_id>`).
    pub change_set: String,
    pub queued: u64,
}

/// Queues a re-render of every tenant that is not deleted: how a template upgrade reaches all
/// tenants. Tenants whose manifests do not change are done without a commit. Only templates
/// changed since each tenant's render lock are rendered, unless `full`.
pub async fn redeploy_all(
    handles: &DeployHandles,
    meta: &RequestMeta,
    full: bool,
) -> Result<AcceptedAll, DeployError> {
    let now_text = db::ts(Utc::now());
    let change_set = uuid::Uuid::new_v4().to_string();
    let action = if full {
        Action::Rebuild
    } else {
        Action::Update
    };
    let mut tx = handles.db.pool.begin().await?;
    let queued = outbox::enqueue_all_live(&mut *tx, &change_set, action, &now_text).await?;
    audit::record(
        &mut *tx,
        &now_text,
        &audit::AuditEntry {
            action: "deployment.redeploy_all_requested",
            customer_id: None,
            actor: "admin".into(),
            client_ip: meta.client_ip.clone(),
            user_agent: meta.user_agent.clone(),
            details: json!({ "change_set": change_set, "queued": queued, "full": full }),
        },
    )
    .await?;
    tx.commit().await?;
    handles.worker_wake.notify_one();
    Ok(AcceptedAll { change_set, queued })
}
