//! The Git side of a batch: fold the jobs' changes into one commit, push it, tell the cluster,
//! and keep the repository packed.

use chrono::Utc;

use super::changes::{commit_message, Prepared};
use crate::db;
use crate::deploy::DeployHandles;
use crate::gitops::{self, Changes, GitOpsRepo};

/// Tells Flux or Argo CD that the branch moved, so it syncs now rather than at its next
/// interval. Best effort: the interval is the fallback, so a failure is only logged.
pub(super) async fn poke_cluster(handles: &DeployHandles, revision: &str) {
    let Some(target) = handles.settings.sync_webhook.clone() else {
        return;
    };
    if let Err(err) = crate::poke::poke(
        &handles.http,
        &target,
        &handles.settings.gitops_branch,
        revision,
    )
    .await
    {
        tracing::warn!(error = %format!("{err:#}"), "sync webhook poke failed");
    }
}

/// A batch in Git: the revision that contains its changes, and what each job's tenant holds
/// there (`content::fingerprint`, in job order).
pub(super) struct Committed {
    pub revision: String,
    pub contents: Vec<String>,
}

/// Commits the batch on the Git thread (a no-op when nothing changed), then pushes it from the
/// network thread, so a slow remote holds up no commit or read. Errors are strings: they are
/// stored on the jobs and shown to operators. The jobs' changes are moved into the commit (a
/// batch of rendered tenants is the worker's largest allocation; it is not copied).
pub(super) async fn commit_and_push(
    handles: &DeployHandles,
    prepared: &mut Vec<Prepared>,
) -> Result<Committed, String> {
    let gitops = &handles.gitops;
    let batch = std::mem::take(prepared);
    let started = std::time::Instant::now();
    let (batch, outcome) = gitops
        .run(move |repo| {
            let mut batch = batch;
            let outcome = commit_locally(repo, &mut batch);
            Ok::<_, gitops::GitOpsError>((batch, outcome))
        })
        .await
        .map_err(|e| format!("commit failed: {e}"))?;
    *prepared = batch;
    handles
        .metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    let (head, contents, made) = match outcome {
        Ok(done) => done,
        Err(msg) => {
            handles.metrics.gitops_commit_failures.inc();
            gitops.set_health(|h| h.commit_error = Some(msg.clone()));
            return Err(msg);
        }
    };
    if made {
        handles.metrics.gitops_commits.inc();
    }
    gitops.set_health(|h| h.commit_error = None);
    let started = std::time::Instant::now();
    let pushed = push(gitops, head.to_string()).await;
    // Without a remote nothing was pushed: no sample.
    if gitops.remote.is_some() {
        handles
            .metrics
            .push_seconds
            .observe(started.elapsed().as_secs_f64());
    }
    let revision = match pushed {
        Ok(revision) => revision,
        Err(msg) => {
            handles.metrics.gitops_push_failures.inc();
            return Err(msg);
        }
    };
    Ok(Committed { revision, contents })
}

/// Pushes main (whose tip is `head`) when a remote is configured, recording the outcome in the
/// repository's health. Returns the revision main is at (the remote's tip after a re-apply).
pub(crate) async fn push(gitops: &gitops::GitOps, head: String) -> Result<String, String> {
    let pushed = gitops
        .with_remote("push", |repo, remote| repo.push(remote, 5))
        .await;
    match pushed {
        Ok(None) => {
            gitops.set_health(|h| h.last_commit = Some(head.clone()));
            Ok(head)
        }
        Ok(Some(gitops::PushOutcome::Pushed(tip) | gitops::PushOutcome::UpToDate(tip))) => {
            let tip = tip.to_string();
            gitops.set_health(|h| {
                h.last_commit = Some(tip.clone());
                h.last_push_at = Some(db::ts(Utc::now()));
                h.remote_error = None;
            });
            Ok(tip)
        }
        Err(err) => {
            let msg = format!("push to the GitOps remote failed: {err}");
            gitops.set_health(|h| {
                h.last_commit = Some(head.clone());
                h.remote_error = Some(msg.clone());
            });
            Err(msg)
        }
    }
}

/// Folds the jobs' changes into one commit on main. Returns main's tip, what each job's tenant
/// holds there, and whether a commit was made.
fn commit_locally(
    repo: &mut GitOpsRepo,
    prepared: &mut [Prepared],
) -> Result<(git2::Oid, Vec<String>, bool), String> {
    // Jobs whose change is already in Git (a retry after a crash between commit and
    // bookkeeping) are done without being named again: each change is in exactly one commit.
    let mut effective = Vec::new();
    for p in prepared.iter_mut() {
        super::roots::place(repo, &p.job.customer_id, &p.root, &mut p.changes)
            .map_err(|e| e.to_string())?;
    }
    for (i, p) in prepared.iter().enumerate() {
        if !repo.unchanged(&p.changes).map_err(|e| e.to_string())? {
            effective.push(i);
        }
    }
    if !effective.is_empty() {
        // Later jobs of the same tenant win: changes are applied in job order.
        let mut changes = Changes::new();
        for &i in &effective {
            let p = &mut prepared[i];
            // A later job of a tenant replaces everything an earlier one wrote for it (one may
            // be a whole directory, the other single files in it).
            let dir = crate::render::tenant_dir(&p.job.customer_id);
            let under = format!("{dir}/");
            changes.retain(|path, _| *path != dir && !path.starts_with(&under));
            changes.extend(std::mem::take(&mut p.changes));
        }
        let described: Vec<&Prepared> = effective.iter().map(|&i| &prepared[i]).collect();
        repo.commit(&changes, &commit_message(&described))
            .map_err(|e| format!("commit failed: {e}"))?;
    }
    let head = repo
        .head()
        .map_err(|e| e.to_string())?
        .ok_or("the branch is empty")?;
    // Taken before the push: a re-application on another writer's tip keeps these files.
    let contents = prepared
        .iter()
        .map(|p| crate::review::content::fingerprint(repo, head, &p.job.customer_id))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok((head, contents, !effective.is_empty()))
}

/// Each small commit writes a small pack; a busy worker consolidates them after this many
/// commits, an idle one after a second without work.
pub(super) const REPACK_WHEN_BUSY: usize = 64;

/// Packs loose objects when at least `min_commits` commits are unpacked. Maintenance: a
/// failure is logged and retried later, never surfaced to a job.
pub(super) async fn repack(handles: &DeployHandles, min_commits: usize) {
    let remote = handles.gitops.remote.clone();
    let outcome = handles
        .gitops
        .run(move |repo| {
            if repo.unpacked_commits() < min_commits.max(1) {
                return Ok(None);
            }
            if let Some(remote) = &remote {
                repo.tidy_remote(remote)?;
            }
            repo.repack().map(Some)
        })
        .await;
    match outcome {
        Ok(Some(done)) => {
            tracing::info!(
                packs_before = done.packs_before,
                packs_after = done.packs_after,
                "repacked"
            )
        }
        Ok(None) => {}
        Err(err) => tracing::warn!(error = %err, "repack failed"),
    }
}
