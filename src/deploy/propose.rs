//! Review mode's side of the worker: a change committed on its own branch from main's tip,
//! pushed, recorded as an open review (superseding the tenant's older one) and offered as a
//! pull request. The job is done once its branch is in Git; the merge is a person's.

use chrono::{Duration, Utc};
use serde_json::json;

use super::changes::{commit_message, Prepared};
use crate::db::reviews::{self, Review};
use crate::db::{self, audit, deployments, outbox};
use crate::deploy::DeployHandles;
use crate::gitops::{DiffStat, GitOpsError, GitOpsRepo};
use crate::status::Event;

/// Proposes `p` on its branch. Gives the change back when it changes nothing on main (it is
/// then done like a direct one, without a commit).
pub(super) async fn propose(
    handles: &DeployHandles,
    p: Prepared,
) -> anyhow::Result<Option<Prepared>> {
    let branch = crate::review::branch_name(&p.job.customer_id, &p.job.change_id);
    let message = commit_message(&[&p]);
    let branch2 = branch.clone();
    let message2 = message.clone();
    let (p, outcome) = handles
        .gitops
        .run(move |repo| {
            let mut p = p;
            // In its cluster's root on the branch too (idempotent: main's commit places again).
            let root = p.root.clone();
            let outcome = super::roots::place(repo, &p.job.customer_id, &root, &mut p.changes)
                .map_err(anyhow::Error::from)
                .and_then(|()| commit_branch(repo, &branch2, &p, &message2));
            Ok::<_, GitOpsError>((p, outcome))
        })
        .await?;
    let outcome = match outcome {
        Ok(Some(done)) => push_branch(handles, &branch).await.map(|()| Some(done)),
        other => other,
    };
    let (tip, stat, content) = match outcome {
        Ok(Some(done)) => done,
        Ok(None) => return Ok(Some(p)),
        Err(err) => {
            let err = format!("review branch {branch}: {err:#}");
            let now = Utc::now();
            // Shown on the tenant's status (and, for a push, by /readyz) until it goes through.
            deployments::record_error(&handles.db.pool, &[&p.job.customer_id], &err, &db::ts(now))
                .await?;
            let owner = &handles.worker_id;
            outbox::postpone(
                &handles.db,
                &[p.job],
                owner,
                &err,
                Duration::seconds(5),
                now,
            )
            .await?;
            return Ok(None);
        }
    };
    crate::review::supersede(&handles.review, &p.job.customer_id).await?;
    let review = Review {
        change_id: p.job.change_id.clone(),
        customer_id: p.job.customer_id.clone(),
        branch: branch.clone(),
        revision: tip.clone(),
        forge_number: None,
        forge_url: None,
        title: message.lines().next().unwrap_or_default().to_string(),
        body: body(&p, &branch, stat),
        tree_fingerprint: Some(content.clone()),
    };
    let now = db::ts(Utc::now());
    let mut tx = handles.db.pool.begin().await?;
    if outbox::complete(
        &mut *tx,
        &p.job,
        &handles.worker_id,
        &tip,
        &content,
        Utc::now(),
    )
    .await?
    {
        reviews::insert(&mut *tx, &review, &now).await?;
        let note = format!("awaiting review on {branch}");
        deployments::apply_event(
            &mut tx,
            &p.job.customer_id,
            Event::Proposed,
            None,
            Some(&note),
            &now,
        )
        .await?;
        audit::record(
            &mut *tx,
            &now,
            &audit::AuditEntry {
                action: "deployment.review_proposed",
                customer_id: Some(p.job.customer_id.clone()),
                actor: "billing".into(),
                details: json!({ "change_id": p.job.change_id, "branch": branch, "revision": tip }),
                ..Default::default()
            },
        )
        .await?;
    }
    tx.commit().await?;
    tracing::info!(customer_id = %p.job.customer_id, %branch, revision = %tip, "change proposed for review");
    crate::review::open_request(&handles.review, &review).await;
    Ok(None)
}

/// Commits the change on its branch from main's tip (or finds it there after a crash). None
/// when it changes nothing on main; else the branch's tip, its diff and what it holds for the
/// tenant.
fn commit_branch(
    repo: &mut GitOpsRepo,
    branch: &str,
    p: &Prepared,
    message: &str,
) -> anyhow::Result<Option<(String, DiffStat, String)>> {
    if repo.unchanged(&p.changes)? {
        return Ok(None);
    }
    let base = repo.head()?;
    let tip = match repo.tip(branch)? {
        Some(tip) => tip,
        None => match repo.commit_on(branch, base, &p.changes, message)? {
            Some(tip) => tip,
            None => return Ok(None),
        },
    };
    let stat = repo.diff_stat(base, tip)?;
    let content = crate::review::content::fingerprint(repo, tip, &p.job.customer_id)?;
    Ok(Some((tip.to_string(), stat, content)))
}

/// Pushes the review branch from the network thread; a failure shows in `/readyz`.
async fn push_branch(handles: &DeployHandles, branch: &str) -> anyhow::Result<()> {
    let name = branch.to_string();
    match handles
        .gitops
        .with_remote("push of a review branch", move |repo, remote| {
            repo.push_branch(remote, &name)
        })
        .await
    {
        Ok(_) => {
            handles.gitops.set_health(|h| h.remote_error = None);
            Ok(())
        }
        Err(e) => {
            handles.metrics.gitops_push_failures.inc();
            let msg = format!("push of review branch {branch} failed: {e}");
            handles.gitops.set_health(|h| h.remote_error = Some(msg));
            Err(e.into())
        }
    }
}

/// The pull request's description: what the change is and how to apply or drop it.
fn body(p: &Prepared, branch: &str, stat: DiffStat) -> String {
    let reason = p.job.reason.as_deref().unwrap_or(p.job.action.as_str());
    format!(
        "Tenant: `{}`\nPlan and status: {}\nReason: {reason}\nChange-Id: {}\nBranch: `{branch}`\n\
         Diff: {} files changed, {} insertions(+), {} deletions(-)\n\n\
         Merging applies this change to the tenant (a merge commit, squash or rebase all work); \
         closing it unmerged abandons it. A newer change of the tenant supersedes it.\n",
        p.job.customer_id, p.summary, p.job.change_id, stat.files, stat.insertions, stat.deletions
    )
}
