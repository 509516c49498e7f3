//! The server's rollout worker (supervised as `rollouts`): once a second it applies the policy
//! to new templates, then moves the active rollout on under its lease: commits the current
//! wave (review mode: proposes it and waits for its merge), judges its health, passes to the
//! next wave, pauses, or reverts.

use std::time::Duration;

use super::health::{judge, Verdict};
use super::revert::revert;
use super::review::{self, Settled};
use super::wave::{commit_wave, Outcome};
use super::{policy, templates_digest, Handles, RolloutError};
use crate::db::rollouts::{self, RolloutRow, RolloutStatus, WaveRow, WaveStatus, WaveUpdate};

/// How long the worker holds a rollout: longer than any one step takes.
const LEASE_SECONDS: i64 = 120;

pub async fn run(h: Handles<'_>, stop: tokio_util::sync::CancellationToken) {
    if h.db.backend == crate::db::Backend::Sqlite {
        // One server owns a SQLite database: a lease found now is a killed run's, and would
        // hold the rollout up until it expired.
        if let Err(err) = rollouts::release_all_leases(h.db).await {
            tracing::warn!(error = %err, "could not free the rollouts' leases");
        }
    }
    loop {
        if let Err(err) = tick(&h).await {
            tracing::warn!(error = %err, "rollout worker");
        }
        let pause = tokio::time::sleep(Duration::from_secs(1));
        if stop.run_until_cancelled(pause).await.is_none() {
            return;
        }
    }
}

/// One pass: the policy, then as many steps of the active rollout as can be taken now.
pub async fn tick(h: &Handles<'_>) -> Result<(), RolloutError> {
    policy::apply(h).await?;
    if let Some(rh) = h.review {
        review::withdraw(h, rh).await?;
    }
    let Some(r) = rollouts::current(&h.db.pool, false).await? else {
        return Ok(());
    };
    let lease = chrono::Duration::seconds(LEASE_SECONDS);
    if !rollouts::take_lease(h.db, &r.id, h.worker_id, lease).await? {
        return Ok(());
    }
    let driven = drive(h, &r.id).await;
    rollouts::release_lease(h.db, &r.id, h.worker_id).await?;
    driven
}

async fn drive(h: &Handles<'_>, id: &str) -> Result<(), RolloutError> {
    // Each step reads the rollout again: an operator may have paused or aborted it.
    loop {
        let Some(r) = rollouts::get(&h.db.pool, id).await? else {
            return Ok(());
        };
        let moved = match r.status() {
            RolloutStatus::RollingBack => roll_back(h, &r).await?,
            RolloutStatus::Running if r.templates != templates_digest(h) => {
                let why = "this server renders other templates than the rollout was planned with; abort it and start a new one";
                pause(h, &r, why).await?
            }
            RolloutStatus::Running => step(h, &r).await?,
            _ => false,
        };
        if !moved {
            return Ok(());
        }
    }
}

/// One step of a running rollout; true when it moved on (another step may follow at once).
async fn step(h: &Handles<'_>, r: &RolloutRow) -> Result<bool, RolloutError> {
    let waves = rollouts::waves(&h.db.pool, &r.id).await?;
    let Some(w) = waves.iter().find(|w| w.wave == r.current_wave) else {
        return finish(h, r, "every wave healthy").await;
    };
    match w.status() {
        WaveStatus::Pending | WaveStatus::Committing => match commit_wave(h, r, w).await {
            Ok(Outcome::Committed(_) | Outcome::Proposed) => Ok(true),
            Ok(Outcome::Empty) => pass(h, r, w).await,
            Err(RolloutError::Render(why)) => pause(h, r, &why).await,
            Err(err) => Err(err),
        },
        WaveStatus::InReview => {
            let Some(rh) = h.review else {
                let why = "a wave waits for its pull request, and this server is not in review mode (COMMIT_MODE)";
                return pause(h, r, why).await;
            };
            match review::settle(h, rh, r, w).await? {
                Settled::Open => Ok(false),
                Settled::Merged | Settled::Again => Ok(true),
                Settled::Closed(why) => pause(h, r, &why).await,
            }
        }
        WaveStatus::Waiting => {
            if h.gitops.remote.is_some() && h.gitops.health().remote_error.is_some() {
                if let Some(revision) = &w.revision {
                    super::commit::push(h, revision).await;
                }
            }
            match judge(h, &r.id, w).await? {
                Verdict::Waiting(_) => Ok(false),
                Verdict::Passed => pass(h, r, w).await,
                Verdict::Failed(tenants) => fail(h, r, w, &tenants).await,
            }
        }
        WaveStatus::Passed => pass(h, r, w).await,
        WaveStatus::RolledBack => finish(h, r, "its wave was rolled back").await,
    }
}

async fn pass(h: &Handles<'_>, r: &RolloutRow, w: &WaveRow) -> Result<bool, RolloutError> {
    let now = rollouts::now();
    let update = WaveUpdate {
        finished_at: Some(&now),
        ..WaveUpdate::default()
    };
    rollouts::update_wave(&h.db.pool, &r.id, w.wave, WaveStatus::Passed, &update).await?;
    tracing::info!(rollout = %r.id, wave = w.wave, "rollout wave healthy");
    if w.wave >= r.wave_count {
        return finish(h, r, "every wave healthy").await;
    }
    rollouts::set_current_wave(&h.db.pool, &r.id, w.wave + 1, &now).await?;
    Ok(true)
}

async fn finish(h: &Handles<'_>, r: &RolloutRow, why: &str) -> Result<bool, RolloutError> {
    let now = rollouts::now();
    let from = [RolloutStatus::Running];
    let to = RolloutStatus::Completed;
    rollouts::set_status(&h.db.pool, &r.id, &from, to, Some(why), &now).await?;
    tracing::info!(rollout = %r.id, "rollout completed");
    Ok(false)
}

/// A tenant failed or stalled: the rollout pauses, saying which and why, or with
/// auto-rollback reverts the wave.
async fn fail(
    h: &Handles<'_>,
    r: &RolloutRow,
    w: &WaveRow,
    tenants: &[(String, String)],
) -> Result<bool, RolloutError> {
    let listed: Vec<String> = tenants
        .iter()
        .map(|(id, why)| format!("{id} ({why})"))
        .collect();
    let why = format!(
        "wave {}: {} failed: {}",
        w.wave,
        tenants.len(),
        listed.join("; ")
    );
    if r.auto_rollback == 0 {
        return pause(h, r, &why).await;
    }
    let now = rollouts::now();
    let from = [RolloutStatus::Running];
    let to = RolloutStatus::RollingBack;
    Ok(rollouts::set_status(&h.db.pool, &r.id, &from, to, Some(&why), &now).await?)
}

async fn pause(h: &Handles<'_>, r: &RolloutRow, why: &str) -> Result<bool, RolloutError> {
    let now = rollouts::now();
    let from = [RolloutStatus::Running];
    rollouts::set_status(
        &h.db.pool,
        &r.id,
        &from,
        RolloutStatus::Paused,
        Some(why),
        &now,
    )
    .await?;
    tracing::warn!(rollout = %r.id, reason = why, "rollout paused");
    Ok(false)
}

/// Reverts the failed wave (auto-rollback) or every committed wave (`abort --rollback`).
async fn roll_back(h: &Handles<'_>, r: &RolloutRow) -> Result<bool, RolloutError> {
    let waves = rollouts::waves(&h.db.pool, &r.id).await?;
    let targets: Vec<WaveRow> = waves
        .into_iter()
        .filter(|w| r.rollback_requested != 0 || w.wave == r.current_wave)
        .collect();
    let revision = revert(h, r, &targets).await?;
    let before = r.reason.clone().unwrap_or_default();
    let why = match revision {
        Some(rev) => format!("{before}; rolled back in {}", super::short(&rev)),
        None => format!("{before}; nothing was committed to roll back"),
    };
    let now = rollouts::now();
    let from = [RolloutStatus::RollingBack];
    let to = RolloutStatus::RolledBack;
    rollouts::set_status(&h.db.pool, &r.id, &from, to, Some(&why), &now).await?;
    Ok(false)
}
