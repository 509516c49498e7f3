//! A rollout as operators see it: its waves with their commits and progress, the tenants that
//! failed or were skipped with why, and how many are behind.

use serde::Serialize;

use super::{short, Handles, RolloutError};
use crate::db::rollouts::{
    self, RolloutRow, RolloutStatus, TenantStatus, WaveReviewState, WaveStatus,
};

/// `rollout status`: the policy, the templates this process renders, and a rollout.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub policy: &'static str,
    /// The digest of this process's templates, plans and render settings (short).
    pub templates: String,
    /// Tenants whose files the current templates would change and no rollout has reached
    /// (None before the policy first looked).
    pub behind: Option<i64>,
    pub rollout: Option<RolloutView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RolloutView {
    pub id: String,
    pub status: RolloutStatus,
    /// `policy` (started by ROLLOUT_POLICY=waves) or `operator`.
    pub origin: String,
    pub templates: String,
    pub waves_spec: String,
    pub order: String,
    pub auto_rollback: bool,
    pub current_wave: i64,
    pub wave_count: i64,
    /// Tenants in its waves.
    pub tenants: i64,
    pub ready: i64,
    pub failed: i64,
    pub skipped: i64,
    pub rolled_back: i64,
    /// Tenants its waves have not reached yet.
    pub behind: i64,
    /// Why it is paused, or how it ended.
    pub reason: Option<String>,
    pub waves: Vec<WaveView>,
    pub failed_tenants: Vec<TenantNote>,
    pub skipped_tenants: Vec<TenantNote>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct WaveView {
    pub wave: i64,
    pub size: i64,
    pub status: WaveStatus,
    pub revision: Option<String>,
    pub rollback_revision: Option<String>,
    pub ready: i64,
    pub failed: i64,
    /// Committed, not reported ready yet.
    pub waiting: i64,
    pub committed_at: Option<String>,
    pub finished_at: Option<String>,
    /// Review mode: the wave's pull request (its latest proposal), if proposed.
    pub review: Option<WaveReviewView>,
}

/// A wave's proposal in review mode: its branch, its pull request and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct WaveReviewView {
    pub branch: String,
    pub state: WaveReviewState,
    pub number: Option<i64>,
    pub url: Option<String>,
    /// The commit on main that took it in.
    pub merged_revision: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TenantNote {
    pub customer_id: String,
    pub wave: i64,
    pub note: Option<String>,
}

pub(crate) async fn view(h: &Handles<'_>, r: &RolloutRow) -> Result<RolloutView, RolloutError> {
    let tenants = rollouts::tenants(&h.db.pool, &r.id, None).await?;
    let count = |wave: Option<i64>, status: TenantStatus| {
        tenants
            .iter()
            .filter(|t| wave.is_none_or(|w| t.wave == w) && t.status() == status)
            .count() as i64
    };
    let notes = |status: TenantStatus| {
        tenants
            .iter()
            .filter(|t| t.status() == status)
            .map(|t| TenantNote {
                customer_id: t.customer_id.clone(),
                wave: t.wave,
                note: t.note.clone(),
            })
            .collect::<Vec<_>>()
    };
    let reviews = rollouts::reviews_of(&h.db.pool, &r.id).await?;
    // The latest proposal of each wave (they come by wave and attempt).
    let review_of = |wave: i64| {
        reviews
            .iter()
            .rfind(|p| p.wave == wave)
            .map(|p| WaveReviewView {
                branch: p.branch.clone(),
                state: p.state(),
                number: p.forge_number,
                url: p.forge_url.clone(),
                merged_revision: p.merged_revision.clone(),
            })
    };
    let waves = rollouts::waves(&h.db.pool, &r.id)
        .await?
        .into_iter()
        .map(|w| WaveView {
            review: review_of(w.wave),
            wave: w.wave,
            size: w.size,
            status: w.status(),
            revision: w.revision.clone(),
            rollback_revision: w.rollback_revision.clone(),
            ready: count(Some(w.wave), TenantStatus::Ready),
            failed: count(Some(w.wave), TenantStatus::Failed),
            waiting: count(Some(w.wave), TenantStatus::Committed),
            committed_at: w.committed_at,
            finished_at: w.finished_at,
        })
        .collect();
    Ok(RolloutView {
        id: r.id.clone(),
        status: r.status(),
        origin: r.origin.clone(),
        templates: short(&r.templates).to_string(),
        waves_spec: r.waves.clone(),
        order: r.ordering.clone(),
        auto_rollback: r.auto_rollback != 0,
        current_wave: r.current_wave,
        wave_count: r.wave_count,
        tenants: tenants.iter().filter(|t| t.wave > 0).count() as i64,
        ready: count(None, TenantStatus::Ready),
        failed: count(None, TenantStatus::Failed),
        skipped: count(None, TenantStatus::Skipped),
        rolled_back: count(None, TenantStatus::RolledBack),
        behind: count(None, TenantStatus::Pending),
        reason: r.reason.clone(),
        waves,
        failed_tenants: notes(TenantStatus::Failed),
        skipped_tenants: notes(TenantStatus::Skipped),
        created_at: r.created_at.clone(),
        updated_at: r.updated_at.clone(),
    })
}
