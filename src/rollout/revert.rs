//! Reverting waves: one commit putting back, as they were before each wave, exactly the files
//! the wave's commit changed. The tenants are then held at those files (committed there; the
//! watcher reports them as usual) until a later rollout; no other tenant is touched.

use git2::Oid;

use super::commit::{self, find_or_commit, Kind, Marks};
use super::{Handles, RolloutError};
use crate::db::outbox::Action;
use crate::db::rollouts::{self, RolloutRow, TenantStatus, WaveRow, WaveStatus, WaveUpdate};
use crate::gitops::Changes;

/// Reverts `waves` (committed ones) of the rollout in one commit; returns its revision (None
/// when there was nothing to revert).
pub(crate) async fn revert(
    h: &Handles<'_>,
    r: &RolloutRow,
    waves: &[WaveRow],
) -> Result<Option<String>, RolloutError> {
    let waves: Vec<&WaveRow> = waves
        .iter()
        .filter(|w| w.revision.is_some() && w.status() != WaveStatus::RolledBack)
        .collect();
    let numbers: Vec<i64> = waves.iter().map(|w| w.wave).collect();
    let revisions: Vec<String> = waves.iter().filter_map(|w| w.revision.clone()).collect();
    let Some(base) = revisions.last().cloned() else {
        return Ok(None);
    };
    let marks = || Marks::new(&r.id, &numbers, Kind::Rollback);
    let mut tenants = Vec::new();
    for w in &waves {
        for t in rollouts::tenants(&h.db.pool, &r.id, Some(w.wave)).await? {
            if matches!(
                t.status(),
                TenantStatus::Committed | TenantStatus::Ready | TenantStatus::Failed
            ) {
                tenants.push(t.customer_id);
            }
        }
    }
    let found = find_or_commit(h, Some(base.clone()), marks(), None, tenants.clone()).await?;
    let mut made = match found {
        Some(made) => made,
        None => {
            let changes = restoring(h, revisions).await?;
            let staged: Vec<(String, Option<String>)> =
                tenants.iter().map(|id| (id.clone(), None)).collect();
            let waves_text: Vec<String> = numbers.iter().map(i64::to_string).collect();
            let reason = format!("rollout {} wave {} rolled back", r.id, waves_text.join(","));
            let mut tx = h.db.pool.begin().await?;
            let change_ids = commit::stage(&mut tx, &staged, Action::Rollback, &reason).await?;
            tx.commit().await?;
            let subject = format!(
                "rollout {}: roll back wave {} ({} tenants)",
                r.id,
                waves_text.join(", "),
                change_ids.len()
            );
            let line = "previous files restored";
            let message = commit::message(r, &subject, line, marks(), &change_ids);
            let work = Some((changes, message));
            match find_or_commit(h, Some(base), marks(), work, tenants).await? {
                Some(made) => made,
                None => return Ok(None),
            }
        }
    };
    made.revision = commit::push(h, &made.revision).await;
    commit::record(h, &r.id, &made, TenantStatus::RolledBack).await?;
    let now = rollouts::now();
    for w in &waves {
        let update = WaveUpdate {
            rollback_revision: Some(&made.revision),
            finished_at: Some(&now),
            ..WaveUpdate::default()
        };
        rollouts::update_wave(&h.db.pool, &r.id, w.wave, WaveStatus::RolledBack, &update).await?;
    }
    tracing::warn!(rollout = %r.id, waves = ?numbers, revision = %made.revision, "rollout waves rolled back");
    Ok(Some(made.revision))
}

/// The changes that put every file each commit in `revisions` changed back as it was in that
/// commit's parent.
async fn restoring(h: &Handles<'_>, revisions: Vec<String>) -> Result<Changes, RolloutError> {
    h.gitops
        .run(move |repo| -> Result<Changes, RolloutError> {
            let mut changes = Changes::new();
            for revision in revisions.iter().rev() {
                let oid = Oid::from_str(revision).map_err(crate::gitops::GitOpsError::from)?;
                let paths = repo.owned_paths_changed(oid)?;
                let commit = repo
                    .repository()
                    .find_commit(oid)
                    .map_err(crate::gitops::GitOpsError::from)?;
                let parent = commit
                    .parent_id(0)
                    .map_err(crate::gitops::GitOpsError::from)?;
                changes.extend(repo.restore(parent, &paths)?);
            }
            Ok(changes)
        })
        .await
}
