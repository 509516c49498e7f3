//! Review mode's waves: a wave is committed on its own branch (`rollout/<id>/wave-<n>`) from
//! main's tip, pushed, recorded (`db::rollouts::WaveReview`) and offered as one pull request
//! naming the rollout, the wave, its tenants and files. The wave waits until main takes it in
//! (read from Git after each fetch, as `review::merge` does: a commit on main's first-parent
//! line containing the branch's commit or naming the wave in its trailers); its revision is
//! then that commit and the health gate goes on as for a direct wave. A pull request closed
//! unmerged pauses the rollout; an aborted rollout's open pull request is closed by the worker.

use std::collections::BTreeMap;

use git2::Oid;

use super::commit::{self, Made, ROLLOUT_ACTION, ROLLOUT_ID, ROLLOUT_WAVE};
use super::wave::Outcome;
use super::{short, Handles, RolloutError};
use crate::db::rollouts::{
    self, RolloutRow, TenantStatus, WaveReview, WaveReviewState, WaveRow, WaveStatus, WaveUpdate,
};
use crate::gitops::{Changes, GitOpsError};
use crate::review::{forge, ReviewHandles};

/// The forge is asked about an open pull request at most this often (the worker ticks every
/// second; merges themselves are read from Git).
const FORGE_POLL_SECONDS: i64 = 5;

/// The branch of a wave's proposal; a wave proposed again after a closed pull request gets a
/// branch of its own, so the forge never mixes the two.
pub(crate) fn branch_name(rollout_id: &str, wave: i64, attempt: i64) -> String {
    match attempt {
        1 => format!("rollout/{rollout_id}/wave-{wave}"),
        n => format!("rollout/{rollout_id}/wave-{wave}-{n}"),
    }
}

/// The attempt a new proposal of the wave is: the recorded open one (a retry after a crash),
/// or one past a closed one.
async fn attempt(h: &Handles<'_>, r: &RolloutRow, wave: i64) -> Result<i64, RolloutError> {
    Ok(match rollouts::review_of(&h.db.pool, &r.id, wave).await? {
        None => 1,
        Some(old) if old.state() == WaveReviewState::Open => old.attempt,
        Some(old) => old.attempt + 1,
    })
}

/// What a proposal says and writes.
pub(crate) struct Proposal {
    pub changes: Changes,
    pub message: String,
    pub subject: String,
    pub change_ids: BTreeMap<String, String>,
    pub base: Option<String>,
}

/// Commits the wave on its branch (or finds it there after a crash), pushes it, records it and
/// opens its pull request. The wave is then `in_review`.
pub(crate) async fn propose(
    h: &Handles<'_>,
    rh: &ReviewHandles,
    r: &RolloutRow,
    w: &WaveRow,
    p: Proposal,
) -> Result<Outcome, RolloutError> {
    let attempt = attempt(h, r, w.wave).await?;
    let branch = branch_name(&r.id, w.wave, attempt);
    let files: Vec<String> = p.changes.keys().cloned().collect();
    let (name, base, message) = (branch.clone(), p.base.clone(), p.message.clone());
    let tip = h
        .gitops
        .run(move |repo| -> Result<Option<Oid>, GitOpsError> {
            if let Some(tip) = repo.tip(&name)? {
                return Ok(Some(tip));
            }
            let start = base.as_deref().and_then(|b| Oid::from_str(b).ok());
            repo.commit_on(&name, start, &p.changes, &message)
        })
        .await?;
    let Some(tip) = tip else {
        return Ok(Outcome::Empty);
    };
    push_branch(h, &branch).await?;
    let review = WaveReview {
        rollout_id: r.id.clone(),
        wave: w.wave,
        attempt,
        branch: branch.clone(),
        revision: tip.to_string(),
        base_revision: p.base.clone(),
        state: WaveReviewState::Open.as_str().into(),
        forge_number: None,
        forge_url: None,
        title: p.subject.clone(),
        body: body(r, w, &p.change_ids, &files, &branch),
        merged_revision: None,
        checked_at: None,
    };
    let now = rollouts::now();
    let mut tx = h.db.pool.begin().await?;
    rollouts::insert_review(&mut *tx, &review, &now).await?;
    let update = WaveUpdate {
        base_revision: p.base.as_deref(),
        ..WaveUpdate::default()
    };
    rollouts::update_wave(&mut *tx, &r.id, w.wave, WaveStatus::InReview, &update).await?;
    tx.commit().await?;
    tracing::info!(rollout = %r.id, wave = w.wave, %branch, revision = %tip, "rollout wave proposed for review");
    open_request(rh, &review).await?;
    Ok(Outcome::Proposed)
}

/// Pushes the wave's branch from the network thread; a failure shows in `/readyz` and the
/// worker tries again (the branch is found, not committed twice).
async fn push_branch(h: &Handles<'_>, branch: &str) -> Result<(), RolloutError> {
    if h.gitops.remote.is_none() {
        return Ok(());
    }
    let name = branch.to_string();
    let pushed = h
        .gitops
        .with_remote("push of a rollout review branch", move |repo, remote| {
            repo.push_branch(remote, &name)
        })
        .await;
    match pushed {
        Ok(_) => {
            h.gitops.set_health(|g| g.remote_error = None);
            Ok(())
        }
        Err(e) => {
            let msg = format!("push of review branch {branch} failed: {e}");
            h.gitops.set_health(|g| g.remote_error = Some(msg));
            Err(e.into())
        }
    }
}

/// Opens the proposal's pull request unless one is recorded (or no forge is configured).
async fn open_request(rh: &ReviewHandles, review: &WaveReview) -> Result<(), RolloutError> {
    let Some(forge) = &rh.mode.forge else {
        return Ok(());
    };
    if review.forge_number.is_some() {
        return Ok(());
    }
    let proposal = forge::Proposal {
        branch: &review.branch,
        base: &rh.branch,
        title: &review.title,
        body: &review.body,
    };
    match forge.open(&rh.http, &proposal).await {
        Ok(opened) => {
            let now = rollouts::now();
            rollouts::set_review_forge(&rh.db.pool, review, opened.number, &opened.url, &now)
                .await?;
            tracing::info!(url = %opened.url, branch = %review.branch, "rollout pull request opened");
        }
        Err(e) => {
            tracing::warn!(error = %e, branch = %review.branch, "opening the rollout's pull request failed; retried")
        }
    }
    Ok(())
}

/// What became of a wave's proposal.
pub(crate) enum Settled {
    /// Still waiting for a person.
    Open,
    /// Main took it in: the wave waits for the cluster at this revision.
    Merged,
    /// Closed unmerged: the rollout pauses with this reason.
    Closed(String),
    /// Its last proposal was closed and the rollout resumed: the wave is proposed again.
    Again,
}

/// Looks at a wave `in_review`: merged into main, closed unmerged, or still open.
pub(crate) async fn settle(
    h: &Handles<'_>,
    rh: &ReviewHandles,
    r: &RolloutRow,
    w: &WaveRow,
) -> Result<Settled, RolloutError> {
    let Some(review) = rollouts::review_of(&h.db.pool, &r.id, w.wave).await? else {
        return again(h, r, w).await;
    };
    match review.state() {
        WaveReviewState::Open => {}
        WaveReviewState::Closed => return again(h, r, w).await,
        _ => return Ok(Settled::Open),
    }
    if let Some(merged) = merged_at(h, r, &review).await? {
        return merged_wave(h, r, w, &review, merged).await;
    }
    let Some(forge) = &rh.mode.forge else {
        return Ok(Settled::Open);
    };
    let Some(number) = review.forge_number else {
        open_request(rh, &review).await?;
        return Ok(Settled::Open);
    };
    let now = chrono::Utc::now();
    let due = review
        .checked_at
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_none_or(|t| (now - t.to_utc()).num_seconds() >= FORGE_POLL_SECONDS);
    if !due {
        return Ok(Settled::Open);
    }
    rollouts::touch_review(&h.db.pool, &review, &rollouts::now()).await?;
    match forge.state(&rh.http, number).await {
        Ok(forge::RequestState::Closed) => {
            let now = rollouts::now();
            let (open, closed) = (WaveReviewState::Open, WaveReviewState::Closed);
            rollouts::set_review_state(&h.db.pool, &review, open, closed, None, &now).await?;
            delete_branch(h, &review.branch).await;
            let url = review.forge_url.as_deref().unwrap_or(&review.branch);
            Ok(Settled::Closed(format!(
                "wave {}: pull request #{number} ({url}) was closed unmerged; `rollout resume` \
                 proposes the wave again, `rollout abort` ends the rollout",
                w.wave
            )))
        }
        // Merged on the forge and not fetched yet: the next fetch shows it in Git.
        Ok(_) => Ok(Settled::Open),
        Err(e) => {
            tracing::warn!(error = %e, branch = %review.branch, "reading the rollout's pull request failed");
            Ok(Settled::Open)
        }
    }
}

/// The wave goes back to pending: its tenants (still pending, their jobs staged) are proposed
/// again on a new branch.
async fn again(h: &Handles<'_>, r: &RolloutRow, w: &WaveRow) -> Result<Settled, RolloutError> {
    let update = WaveUpdate::default();
    rollouts::update_wave(&h.db.pool, &r.id, w.wave, WaveStatus::Pending, &update).await?;
    Ok(Settled::Again)
}

/// The commit on main's first-parent line that took the proposal in, if any: it contains the
/// branch's commit (a merge commit, a fast-forward) or names the rollout and the wave (a
/// squash or a rebase keeps the message's trailers).
async fn merged_at(
    h: &Handles<'_>,
    r: &RolloutRow,
    review: &WaveReview,
) -> Result<Option<String>, RolloutError> {
    let proposed = Oid::from_str(&review.revision).map_err(GitOpsError::from)?;
    let base = review.base_revision.clone();
    let (id, wave) = (r.id.clone(), review.wave.to_string());
    let found = h
        .gitops
        .run(move |repo| -> Result<Option<String>, GitOpsError> {
            let since = base.as_deref().and_then(|b| Oid::from_str(b).ok());
            let known = repo.has_commit(proposed);
            for c in repo
                .commits_since(since)?
                .into_iter()
                .filter(|c| c.mainline)
            {
                let names_it = c.trailers(ROLLOUT_ID).contains(&id)
                    && c.trailers(ROLLOUT_WAVE).contains(&wave)
                    && c.trailers(ROLLOUT_ACTION).iter().any(|a| a == "wave");
                if names_it || (known && repo.contains(c.revision, proposed)?) {
                    return Ok(Some(c.revision.to_string()));
                }
            }
            Ok(None)
        })
        .await?;
    Ok(found)
}

/// Main took the wave in: its tenants committed at `merged`, the wave waiting for them.
async fn merged_wave(
    h: &Handles<'_>,
    r: &RolloutRow,
    w: &WaveRow,
    review: &WaveReview,
    merged: String,
) -> Result<Settled, RolloutError> {
    let tenants: Vec<(String, String)> = rollouts::tenants(&h.db.pool, &r.id, Some(w.wave))
        .await?
        .into_iter()
        .filter(|t| t.status() == TenantStatus::Pending)
        .filter_map(|t| Some((t.customer_id, t.change_id?)))
        .collect();
    let ids = tenants.iter().map(|(id, _)| id.clone()).collect();
    let change_ids = tenants.into_iter().map(|(_, c)| c).collect();
    let made: Made = commit::made_at(h, merged.clone(), change_ids, ids).await?;
    let recorded = commit::record(h, &r.id, &made, TenantStatus::Committed).await?;
    let now = rollouts::now();
    let mut tx = h.db.pool.begin().await?;
    let (open, to) = (WaveReviewState::Open, WaveReviewState::Merged);
    rollouts::set_review_state(&mut *tx, review, open, to, Some(&merged), &now).await?;
    let update = WaveUpdate {
        revision: Some(&merged),
        committed_at: Some(&now),
        ..WaveUpdate::default()
    };
    rollouts::update_wave(&mut *tx, &r.id, w.wave, WaveStatus::Waiting, &update).await?;
    tx.commit().await?;
    tracing::info!(rollout = %r.id, wave = w.wave, tenants = recorded.len(), revision = %merged, "rollout wave merged");
    // Best effort: the cluster syncs at its interval otherwise.
    commit::poke(h, &merged).await;
    delete_branch(h, &review.branch).await;
    Ok(Settled::Merged)
}

/// Closes the pull requests of aborted rollouts and deletes their branches; one the forge
/// refuses now is tried again on the next tick.
pub(crate) async fn withdraw(h: &Handles<'_>, rh: &ReviewHandles) -> Result<(), RolloutError> {
    for review in rollouts::closing(&h.db.pool).await? {
        if let (Some(forge), Some(number)) = (&rh.mode.forge, review.forge_number) {
            if let Err(e) = forge.close(&rh.http, number).await {
                tracing::warn!(error = %e, branch = %review.branch, "closing the aborted rollout's pull request failed; retried");
                continue;
            }
        }
        delete_branch(h, &review.branch).await;
        let (from, to) = (WaveReviewState::Closing, WaveReviewState::Withdrawn);
        rollouts::set_review_state(&h.db.pool, &review, from, to, None, &rollouts::now()).await?;
        tracing::info!(rollout = %review.rollout_id, wave = review.wave, branch = %review.branch, "aborted rollout's pull request closed");
    }
    Ok(())
}

/// Deletes a finished proposal's branch here and on the remote (best effort, logged).
async fn delete_branch(h: &Handles<'_>, branch: &str) {
    let name = branch.to_string();
    let deleted = match h.gitops.remote {
        Some(_) => h
            .gitops
            .with_remote("branch deletion", move |repo, remote| {
                repo.delete_branch(Some(remote), &name)
            })
            .await
            .map(|_| ()),
        None => {
            h.gitops
                .run(move |repo| repo.delete_branch(None, &name))
                .await
        }
    };
    if let Err(e) = deleted {
        tracing::warn!(error = %format!("{e:#}"), %branch, "deleting the rollout's review branch failed");
    }
}

/// The pull request's description: the rollout, the wave, its tenants and files, and what
/// merging or closing it does.
fn body(
    r: &RolloutRow,
    w: &WaveRow,
    change_ids: &BTreeMap<String, String>,
    files: &[String],
    branch: &str,
) -> String {
    const LISTED: usize = 200;
    let list = |items: Vec<String>| -> String {
        let more = items.len().saturating_sub(LISTED);
        let mut text: Vec<String> = items.into_iter().take(LISTED).collect();
        if more > 0 {
            text.push(format!("- … and {more} more"));
        }
        text.join("\n")
    };
    let tenants = list(
        change_ids
            .iter()
            .map(|(t, c)| format!("- `{t}` (Change-Id {c})"))
            .collect(),
    );
    let paths = list(files.iter().map(|f| format!("- `{f}`")).collect());
    format!(
        "Rollout: `{}`\nWave: {} of {}\nTemplates: {}\nBranch: `{branch}`\n\n\
         Tenants ({}):\n{tenants}\n\nFiles ({}):\n{paths}\n\n\
         Merging this (a merge commit, squash or rebase) lets the wave go on: the rollout waits \
         until every tenant of it is ready at the merge, then proposes the next wave. Closing \
         it unmerged pauses the rollout.\n",
        r.id,
        w.wave,
        r.wave_count,
        short(&r.templates),
        change_ids.len(),
        files.len(),
    )
}
