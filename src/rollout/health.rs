//! Is a committed wave healthy? Every tenant of it must be reported ready (by Flux, Argo CD or
//! the poller, through the watcher) at the wave's revision or a descendant of it. A tenant
//! reported failed or stalled fails the wave; one that drifted, got a review or was deleted
//! meanwhile leaves it (skipped, with why).

use git2::Oid;

use super::{Handles, RolloutError};
use crate::db::rollouts::{self, TenantStatus, WaveRow};
use crate::status::DeploymentStatus;

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Some tenants are not ready yet.
    Waiting(usize),
    Passed,
    /// Tenants reported failed or stalled, with the cluster's message.
    Failed(Vec<(String, String)>),
}

pub(crate) async fn judge(
    h: &Handles<'_>,
    rollout_id: &str,
    w: &WaveRow,
) -> Result<Verdict, RolloutError> {
    let Some(revision) = w.revision.clone() else {
        return Ok(Verdict::Waiting(0));
    };
    // Failed tenants an operator resumed past no longer hold the wave.
    let watched: Vec<String> = rollouts::tenants(&h.db.pool, rollout_id, Some(w.wave))
        .await?
        .into_iter()
        .filter(|t| t.status() == TenantStatus::Committed)
        .map(|t| t.customer_id)
        .collect();
    let rows = rollouts::candidates(h.db, Some(&watched)).await?;
    let applied: Vec<Option<String>> = rows.iter().map(|c| c.applied_revision.clone()).collect();
    let at_wave = h
        .gitops
        .run(move |repo| -> Result<Vec<bool>, RolloutError> {
            let wave = Oid::from_str(&revision).map_err(crate::gitops::GitOpsError::from)?;
            applied
                .iter()
                .map(|a| {
                    let Some(a) = a.as_deref().and_then(|a| Oid::from_str(a).ok()) else {
                        return Ok(false);
                    };
                    Ok(repo.has_commit(a) && repo.contains(a, wave)?)
                })
                .collect()
        })
        .await?;
    let mut waiting = 0;
    let mut failed = Vec::new();
    for id in watched
        .iter()
        .filter(|id| !rows.iter().any(|c| &c.customer_id == *id))
    {
        rollouts::set_tenant(
            &h.db.pool,
            rollout_id,
            id,
            TenantStatus::Skipped,
            Some("deleted"),
        )
        .await?;
    }
    for (c, at_wave) in rows.iter().zip(at_wave) {
        let set = |status, note: Option<String>| async move {
            rollouts::set_tenant(
                &h.db.pool,
                rollout_id,
                &c.customer_id,
                status,
                note.as_deref(),
            )
            .await
        };
        match c.deployment() {
            Some(DeploymentStatus::Ready) if at_wave => set(TenantStatus::Ready, None).await?,
            Some(status @ (DeploymentStatus::Failed | DeploymentStatus::Stalled)) => {
                let why = format!(
                    "{status}: {}",
                    c.error
                        .as_deref()
                        .unwrap_or("the cluster reported a failure")
                );
                set(TenantStatus::Failed, Some(why.clone())).await?;
                failed.push((c.customer_id.clone(), why));
            }
            Some(status @ (DeploymentStatus::Drifted | DeploymentStatus::AwaitingReview)) => {
                let why = format!("{status} during the rollout");
                set(TenantStatus::Skipped, Some(why)).await?;
            }
            _ => waiting += 1,
        }
    }
    Ok(if !failed.is_empty() {
        Verdict::Failed(failed)
    } else if waiting > 0 {
        Verdict::Waiting(waiting)
    } else {
        Verdict::Passed
    })
}
