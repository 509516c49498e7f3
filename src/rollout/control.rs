//! What operators do with rollouts (the CLI today; the admin page and HTTP later call the
//! same functions): start one (or plan it: a dry run), see it, resume it, abort it.

use serde::Serialize;
use serde_json::json;

use super::plan::{plan, Plan};
use super::view::{view, StatusReport};
use super::{templates_digest, Handles, Order, RolloutError, RolloutView, WavePlan};
use crate::db::audit;
use crate::db::rollouts::{self, RolloutRow, RolloutStatus, TenantStatus};

#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    pub waves: WavePlan,
    pub order: Order,
    /// Revert a wave in which a tenant fails, instead of pausing.
    pub auto_rollback: bool,
    /// Plan only: commit nothing, store nothing.
    pub dry_run: bool,
}

/// A started (or planned) rollout.
#[derive(Debug, Clone, Serialize)]
pub struct Started {
    /// None for a dry run, or when no tenant changes.
    pub rollout_id: Option<String>,
    pub dry_run: bool,
    #[serde(flatten)]
    pub plan: Plan,
}

/// Plans a rollout of this process's templates and, unless a dry run, stores it for the
/// server's worker, which commits its first wave at once. One rollout is active at a time.
pub async fn start(h: &Handles<'_>, opts: &StartOptions) -> Result<Started, RolloutError> {
    if !opts.dry_run {
        refuse_if_active(h).await?;
    }
    let plan = plan(h, &opts.waves, &opts.order).await?;
    let rollout_id = if opts.dry_run || plan.tenants == 0 {
        None
    } else {
        create(h, &plan, opts, "operator", None).await?
    };
    Ok(Started {
        rollout_id,
        dry_run: opts.dry_run,
        plan,
    })
}

async fn refuse_if_active(h: &Handles<'_>) -> Result<(), RolloutError> {
    match rollouts::current(&h.db.pool, false).await? {
        Some(r) => Err(RolloutError::WrongState {
            id: r.id,
            status: r.status,
            what: "resume or abort it before starting another",
        }),
        None => Ok(()),
    }
}

/// Stores a planned rollout (running, at its first wave). With `check` (the policy's
/// `(policy, behind)`), only if no other process acted on these templates first: None then.
pub(crate) async fn create(
    h: &Handles<'_>,
    plan: &Plan,
    opts: &StartOptions,
    origin: &str,
    check: Option<(&str, i64)>,
) -> Result<Option<String>, RolloutError> {
    let id = format!("ro-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let digest = templates_digest(h);
    let now = rollouts::now();
    let mut tx = h.db.pool.begin().await?;
    if let Some((policy, behind)) = check {
        if !rollouts::insert_check(&mut *tx, &digest, policy, behind, Some(&id), &now).await? {
            return Ok(None);
        }
    }
    let row = RolloutRow {
        id: id.clone(),
        status: RolloutStatus::Running.as_str().into(),
        templates: digest,
        origin: origin.into(),
        waves: opts.waves.to_string(),
        ordering: opts.order.to_string(),
        auto_rollback: i64::from(opts.auto_rollback),
        current_wave: 1,
        wave_count: plan.waves.len() as i64,
        reason: None,
        rollback_requested: 0,
        created_at: now.clone(),
        updated_at: now.clone(),
    };
    rollouts::insert(&mut *tx, &row).await?;
    let mut tenants = plan.ordered.iter();
    for (i, size) in plan.waves.iter().enumerate() {
        let wave = i as i64 + 1;
        rollouts::insert_wave(&mut *tx, &id, wave, *size as i64).await?;
        for (position, customer_id) in tenants.by_ref().take(*size).enumerate() {
            let at = (wave, position as i64);
            rollouts::insert_tenant(&mut *tx, &id, customer_id, at, TenantStatus::Pending, None)
                .await?;
        }
    }
    for (position, s) in plan.skipped.iter().enumerate() {
        let at = (0, position as i64);
        let status = TenantStatus::Skipped;
        rollouts::insert_tenant(&mut *tx, &id, &s.customer_id, at, status, Some(&s.reason)).await?;
    }
    let entry = audit::AuditEntry {
        action: "rollout.started",
        actor: origin.into(),
        details: json!({
            "rollout_id": id, "tenants": plan.tenants, "waves": plan.waves,
            "order": row.ordering, "auto_rollback": opts.auto_rollback,
            "skipped": plan.skipped.len(),
        }),
        ..Default::default()
    };
    audit::record(&mut *tx, &now, &entry).await?;
    tx.commit().await?;
    tracing::info!(rollout = %id, tenants = plan.tenants, waves = ?plan.waves, "rollout started");
    Ok(Some(id))
}

/// The rollout `id`, or the active one (else the newest), and how many tenants are behind.
pub async fn status(h: &Handles<'_>, id: Option<&str>) -> Result<StatusReport, RolloutError> {
    let row = match id {
        Some(id) => Some(find(h, id).await?),
        None => rollouts::current(&h.db.pool, true).await?,
    };
    let rollout = match row {
        Some(r) => Some(view(h, &r).await?),
        None => None,
    };
    let digest = templates_digest(h);
    let check = rollouts::check(&h.db.pool, &digest).await?;
    // Behind: those a rollout of these templates has not reached yet; else what the policy
    // found when it met them.
    let behind = match &rollout {
        Some(v) if v.templates == super::short(&digest) => Some(v.behind),
        _ => check.as_ref().map(|c| c.behind),
    };
    Ok(StatusReport {
        policy: h.policy.as_str(),
        templates: super::short(&digest).to_string(),
        behind,
        rollout,
    })
}

async fn find(h: &Handles<'_>, id: &str) -> Result<RolloutRow, RolloutError> {
    rollouts::get(&h.db.pool, id)
        .await?
        .ok_or_else(|| RolloutError::NotFound(id.to_string()))
}

/// Goes on with a paused rollout: tenants that failed stay failed and no longer hold their
/// wave; the worker waits for the others, then commits the next wave.
pub async fn resume(h: &Handles<'_>, id: &str) -> Result<RolloutView, RolloutError> {
    let r = find(h, id).await?;
    if r.status() != RolloutStatus::Paused {
        return Err(RolloutError::WrongState {
            id: r.id,
            status: r.status,
            what: "only a paused rollout resumes",
        });
    }
    if r.templates != templates_digest(h) {
        return Err(RolloutError::OtherTemplates(r.id));
    }
    let now = rollouts::now();
    let from = [RolloutStatus::Paused];
    rollouts::set_status(&h.db.pool, id, &from, RolloutStatus::Running, None, &now).await?;
    audited(h, "rollout.resumed", id, false).await?;
    view(h, &find(h, id).await?).await
}

/// Stops a rollout for good. With `rollback`, the worker reverts every wave it committed
/// (one commit restoring exactly the files they changed). In review mode a wave's open pull
/// request is closed by the worker.
pub async fn abort(h: &Handles<'_>, id: &str, rollback: bool) -> Result<RolloutView, RolloutError> {
    let r = find(h, id).await?;
    let now = rollouts::now();
    let done = if rollback {
        let reason = "aborted by an operator; rolling back its waves";
        rollouts::request_rollback(&h.db.pool, id, reason, &now).await?
    } else {
        let reason = Some("aborted by an operator");
        let to = RolloutStatus::Aborted;
        rollouts::set_status(&h.db.pool, id, &RolloutStatus::ACTIVE, to, reason, &now).await?
    };
    if !done {
        return Err(RolloutError::WrongState {
            id: r.id,
            status: r.status,
            what: "it has ended",
        });
    }
    // Review mode: the server's worker closes the open pull request (the forge is its to call,
    // and it retries while the forge refuses).
    let closing = rollouts::close_requested(&h.db.pool, id, &now).await?;
    if closing > 0 {
        tracing::info!(rollout = %id, closing, "the aborted rollout's pull request will be closed");
    }
    audited(h, "rollout.aborted", id, rollback).await?;
    view(h, &find(h, id).await?).await
}

async fn audited(
    h: &Handles<'_>,
    action: &'static str,
    id: &str,
    rollback: bool,
) -> Result<(), RolloutError> {
    let entry = audit::AuditEntry {
        action,
        actor: "admin".into(),
        details: json!({ "rollout_id": id, "rollback": rollback }),
        ..Default::default()
    };
    audit::record(&h.db.pool, &rollouts::now(), &entry).await?;
    Ok(())
}
