//! Committing one wave: its tenants checked again (drifted, under review, a change queued or
//! deleted since the plan: skipped and listed), rendered with the current templates, and
//! committed together as one commit naming the rollout and the wave (in review mode, on the
//! wave's own branch, as one pull request: `review`).

use std::collections::BTreeMap;

use super::commit::{self, find_or_commit, Kind, Marks};
use super::plan::skip_reason;
use super::render::render;
use super::review;
use super::{Handles, RolloutError};
use crate::db::outbox::Action;
use crate::db::rollouts::{self, RolloutRow, TenantStatus, WaveRow, WaveStatus, WaveUpdate};
use crate::gitops::Changes;

/// What became of a wave's commit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Committed (or found committed): the wave waits for the cluster.
    Committed(String),
    /// None of its tenants still needed a change: nothing to wait for.
    Empty,
    /// Review mode: committed on its own branch, offered as a pull request.
    Proposed,
}

pub(crate) async fn commit_wave(
    h: &Handles<'_>,
    r: &RolloutRow,
    w: &WaveRow,
) -> Result<Outcome, RolloutError> {
    let marks = || Marks::new(&r.id, &[w.wave], Kind::Wave);
    let tenants: Vec<rollouts::TenantRow> = rollouts::tenants(&h.db.pool, &r.id, Some(w.wave))
        .await?
        .into_iter()
        .filter(|t| t.status() == TenantStatus::Pending)
        .collect();
    let ids: Vec<String> = tenants.iter().map(|t| t.customer_id.clone()).collect();
    // Review mode finds a crashed proposal by its branch, in `review::propose`.
    if w.status() == WaveStatus::Committing && h.review.is_none() {
        // A crash after the commit and before its bookkeeping: the commit is in Git.
        let found = find_or_commit(h, w.base_revision.clone(), marks(), None, ids.clone()).await?;
        if let Some(made) = found {
            return finish(h, r, w, made).await;
        }
    }

    let live: BTreeMap<String, rollouts::Candidate> = rollouts::candidates(h.db, Some(&ids))
        .await?
        .into_iter()
        .map(|c| (c.customer_id.clone(), c))
        .collect();
    let mut eligible = Vec::new();
    for t in &tenants {
        let why = match live.get(&t.customer_id) {
            None => Some("deleted".to_string()),
            Some(c) => skip_reason(c),
        };
        match why {
            Some(why) => {
                rollouts::set_tenant(
                    &h.db.pool,
                    &r.id,
                    &t.customer_id,
                    TenantStatus::Skipped,
                    Some(&why),
                )
                .await?
            }
            None => eligible.push(t.customer_id.clone()),
        }
    }
    let renders = render(h, &eligible, true).await?;
    if let Some((id, why)) = renders.failed.first() {
        return Err(RolloutError::Render(format!(
            "wave {}: tenant {id} does not render: {why}",
            w.wave
        )));
    }
    for id in &renders.unchanged {
        rollouts::set_tenant(&h.db.pool, &r.id, id, TenantStatus::Unchanged, None).await?;
    }
    if renders.changed.is_empty() {
        return Ok(Outcome::Empty);
    }

    let base = h
        .gitops
        .run(|repo| repo.head())
        .await?
        .map(|oid| oid.to_string());
    let existing: BTreeMap<&str, Option<String>> = tenants
        .iter()
        .map(|t| (t.customer_id.as_str(), t.change_id.clone()))
        .collect();
    let staged: Vec<(String, Option<String>)> = renders
        .changed
        .iter()
        .map(|c| {
            (
                c.customer_id.clone(),
                existing[c.customer_id.as_str()].clone(),
            )
        })
        .collect();
    let reason = format!("rollout {} wave {}/{}", r.id, w.wave, r.wave_count);
    let mut tx = h.db.pool.begin().await?;
    let change_ids = commit::stage(&mut tx, &staged, Action::Update, &reason).await?;
    for (customer_id, change_id) in &change_ids {
        rollouts::set_tenant_change(&mut *tx, &r.id, customer_id, change_id).await?;
    }
    let update = WaveUpdate {
        base_revision: base.as_deref(),
        ..WaveUpdate::default()
    };
    rollouts::update_wave(&mut *tx, &r.id, w.wave, WaveStatus::Committing, &update).await?;
    tx.commit().await?;

    let subject = format!(
        "rollout {}: wave {}/{}, {} tenants",
        r.id,
        w.wave,
        r.wave_count,
        change_ids.len()
    );
    let message = commit::message(r, &subject, "template update", marks(), &change_ids);
    let mut changes = Changes::new();
    for c in renders.changed {
        changes.extend(c.changes);
    }
    if let Some(rh) = h.review {
        let proposal = review::Proposal {
            changes,
            message,
            subject,
            change_ids,
            base,
        };
        return review::propose(h, rh, r, w, proposal).await;
    }
    let tenants = change_ids.keys().cloned().collect();
    match find_or_commit(h, base, marks(), Some((changes, message)), tenants).await? {
        Some(made) => finish(h, r, w, made).await,
        None => Ok(Outcome::Empty),
    }
}

/// The wave's commit is in Git: its tenants committed at its revision, the wave waiting.
async fn finish(
    h: &Handles<'_>,
    r: &RolloutRow,
    w: &WaveRow,
    mut made: commit::Made,
) -> Result<Outcome, RolloutError> {
    // Pushed first: the tenants wait for the revision the cluster will see.
    made.revision = commit::push(h, &made.revision).await;
    let tenants = commit::record(h, &r.id, &made, TenantStatus::Committed).await?;
    let now = rollouts::now();
    let update = WaveUpdate {
        revision: Some(&made.revision),
        committed_at: Some(&now),
        ..WaveUpdate::default()
    };
    rollouts::update_wave(&h.db.pool, &r.id, w.wave, WaveStatus::Waiting, &update).await?;
    tracing::info!(rollout = %r.id, wave = w.wave, tenants = tenants.len(), revision = %made.revision, "rollout wave committed");
    Ok(Outcome::Committed(made.revision))
}
