//! What became of the open reviews, read after each fetch: main holds the tenant's files as
//! the proposal has them (any merge: a merge commit, a squash, a rebase, a cherry-pick, also
//! one that landed before the first scan or while the local repository was lost), main
//! contains the branch's commit, or a new commit on main names the change's `Change-Id`:
//! merged, and the tenant is `committed` at that revision for the watcher. A pull request
//! closed unmerged abandons it; without a forge, so does deleting the branch.

use chrono::Utc;
use git2::Oid;
use serde_json::json;

use super::forge::RequestState;
use super::ReviewHandles;
use crate::db::reviews::{self, Review, ReviewState};
use crate::db::{self, audit, deployments};
use crate::gitops::CommitInfo;
use crate::status::Event;

/// Settles every open review against main after a fetch; `new_commits` are main's commits since
/// the last look, oldest first.
pub async fn settle(handles: &ReviewHandles, new_commits: &[CommitInfo]) -> anyhow::Result<()> {
    let open = reviews::open(&handles.db.pool).await?;
    if open.is_empty() {
        return Ok(());
    }
    // Without a forge, deleting a review branch unmerged is how a person closes it.
    let pushed = match &handles.mode.forge {
        Some(_) => None,
        None => Some(review_branches(handles).await?),
    };
    for review in open {
        if let Some(merged) = merged_at(handles, &review, new_commits).await? {
            finish(handles, &review, ReviewState::Merged, Some(&merged)).await?;
            continue;
        }
        let Some(forge) = &handles.mode.forge else {
            if pushed.as_ref().is_some_and(|b| !b.contains(&review.branch)) {
                finish(handles, &review, ReviewState::Abandoned, None).await?;
            }
            continue;
        };
        let Some(number) = review.forge_number else {
            super::open_request(handles, &review).await;
            continue;
        };
        match forge.state(&handles.http, number).await {
            Ok(RequestState::Closed) => {
                finish(handles, &review, ReviewState::Abandoned, None).await?
            }
            // Merged on the forge but not fetched yet: the next fetch sees it in Git.
            Ok(RequestState::Open | RequestState::Merged) => {}
            Err(e) => {
                tracing::warn!(error = %e, branch = %review.branch, "reading the pull request failed")
            }
        }
    }
    Ok(())
}

/// The review branches the remote (or, without one, this repository) has.
async fn review_branches(handles: &ReviewHandles) -> anyhow::Result<Vec<String>> {
    let listed = match handles.gitops.remote {
        // `ls-remote`, from the network thread.
        Some(_) => handles
            .gitops
            .with_remote("ls-remote", |repo, remote| {
                repo.branches_under(Some(remote), "tenant/")
            })
            .await?
            .unwrap_or_default(),
        None => {
            handles
                .gitops
                .run(|repo| repo.branches_under(None, "tenant/"))
                .await?
        }
    };
    Ok(listed)
}

/// The commit on main that took the review in, if any.
async fn merged_at(
    handles: &ReviewHandles,
    review: &Review,
    new_commits: &[CommitInfo],
) -> anyhow::Result<Option<String>> {
    let proposed = Oid::from_str(&review.revision)?;
    let change_id = review.change_id.clone();
    let customer_id = review.customer_id.clone();
    let content = review.tree_fingerprint.clone();
    let candidates: Vec<(Oid, bool)> = new_commits
        .iter()
        .filter(|c| c.mainline)
        .map(|c| (c.revision, c.trailers("Change-Id").contains(&change_id)))
        .collect();
    handles
        .gitops
        .run(move |repo| -> anyhow::Result<Option<String>> {
            let Some(head) = repo.head()? else {
                return Ok(None);
            };
            // A branch commit this repository never had (it was lost and fetched main
            // only) can only be recognised by its files or its Change-Id.
            let known = repo.has_commit(proposed);
            let holds = |revision: Oid| -> anyhow::Result<bool> {
                Ok(match &content {
                    Some(content) => {
                        super::content::fingerprint(repo, revision, &customer_id)? == *content
                    }
                    None => false,
                })
            };
            for (revision, names_it) in candidates {
                if names_it || holds(revision)? || (known && repo.contains(revision, proposed)?) {
                    tracing::debug!(%revision, %proposed, names_it, "review found on main");
                    return Ok(Some(revision.to_string()));
                }
            }
            // Merged before the last look (before the first scan, or a restart in between):
            // main's tip holds its files or contains its commit.
            if holds(head)? || (known && repo.contains(head, proposed)?) {
                tracing::debug!(%head, %proposed, "review found at main's tip");
                return Ok(Some(head.to_string()));
            }
            Ok(None)
        })
        .await
}

async fn finish(
    handles: &ReviewHandles,
    review: &Review,
    state: ReviewState,
    merged: Option<&str>,
) -> anyhow::Result<()> {
    let now = db::ts(Utc::now());
    let mut tx = handles.db.pool.begin().await?;
    if !reviews::close(&mut *tx, &review.change_id, state, merged, &now).await? {
        return Ok(());
    }
    let (event, note, action) = match state {
        ReviewState::Merged => (Event::Committed, None, "deployment.review_merged"),
        _ => (
            Event::ReviewClosed,
            Some(format!(
                "review {} closed unmerged: the change was abandoned",
                review.branch
            )),
            "deployment.review_abandoned",
        ),
    };
    deployments::apply_event(
        &mut tx,
        &review.customer_id,
        event,
        merged,
        note.as_deref(),
        &now,
    )
    .await?;
    audit::record(
        &mut *tx,
        &now,
        &audit::AuditEntry {
            action,
            customer_id: Some(review.customer_id.clone()),
            actor: "git".into(),
            details: json!({
                "change_id": review.change_id,
                "branch": review.branch,
                "merged_revision": merged,
                "pull_request": review.forge_url,
            }),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(customer_id = %review.customer_id, branch = %review.branch, state = state.as_str(), "review settled");
    if state == ReviewState::Abandoned {
        resume_ready(handles, &review.customer_id).await?;
    }
    super::retire(handles, review, false).await;
    Ok(())
}

/// After an abandoned review the tenant runs main's version as before: ready again when the
/// cluster already reported a revision that contains its commit.
async fn resume_ready(handles: &ReviewHandles, customer_id: &str) -> anyhow::Result<()> {
    let Some(row) = deployments::watch_row(&handles.db.pool, customer_id).await? else {
        return Ok(());
    };
    let (Some(applied), Some(committed)) = (row.applied_revision, row.committed_revision) else {
        return Ok(());
    };
    let (applied, committed) = (Oid::from_str(&applied)?, Oid::from_str(&committed)?);
    let synced = handles
        .gitops
        .run(move |repo| -> anyhow::Result<bool> { Ok(repo.contains(applied, committed)?) })
        .await?;
    if synced {
        let now = db::ts(Utc::now());
        let mut tx = handles.db.pool.begin().await?;
        deployments::apply_event(&mut tx, customer_id, Event::Synced, None, None, &now).await?;
        tx.commit().await?;
    }
    Ok(())
}
