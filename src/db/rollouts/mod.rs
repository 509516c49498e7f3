//! Template rollouts in the database: the rollout, its waves and its tenants (see migration
//! 0016), the policy's record of each digest of templates it met (`candidates`), and the
//! driving worker's lease.

mod candidates;
mod reviews;
mod status;

pub use candidates::{candidates, check, insert_check, Candidate, Check};
pub use reviews::{
    close_requested, closing, insert_review, review_of, reviews_of, set_review_forge,
    set_review_state, touch_review, WaveReview,
};
pub use status::{RolloutStatus, TenantStatus, WaveReviewState, WaveStatus};

use sqlx::{Any, Executor, FromRow};

use crate::db::queue::Lease;
use crate::db::{self, Db};

/// The driving worker's lease on a rollout.
const LEASE: Lease = Lease::of_queue("rollouts", "id");

#[derive(Debug, Clone, FromRow)]
pub struct RolloutRow {
    pub id: String,
    pub status: String,
    pub templates: String,
    pub origin: String,
    pub waves: String,
    pub ordering: String,
    pub auto_rollback: i64,
    pub current_wave: i64,
    pub wave_count: i64,
    pub reason: Option<String>,
    pub rollback_requested: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl RolloutRow {
    pub fn status(&self) -> RolloutStatus {
        RolloutStatus::parse(&self.status).unwrap_or(RolloutStatus::Paused)
    }
}

const ROLLOUT_COLUMNS: &str = "id, status, templates, origin, waves, ordering, auto_rollback, \
     current_wave, wave_count, reason, rollback_requested, created_at, updated_at";

#[derive(Debug, Clone, FromRow)]
pub struct WaveRow {
    pub wave: i64,
    pub size: i64,
    pub status: String,
    pub base_revision: Option<String>,
    pub revision: Option<String>,
    pub rollback_revision: Option<String>,
    pub committed_at: Option<String>,
    pub finished_at: Option<String>,
}

impl WaveRow {
    pub fn status(&self) -> WaveStatus {
        WaveStatus::parse(&self.status).unwrap_or(WaveStatus::Pending)
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct TenantRow {
    pub customer_id: String,
    pub wave: i64,
    pub status: String,
    pub change_id: Option<String>,
    pub note: Option<String>,
}

impl TenantRow {
    pub fn status(&self) -> TenantStatus {
        TenantStatus::parse(&self.status).unwrap_or(TenantStatus::Pending)
    }
}

pub async fn insert<'c>(
    db: impl Executor<'c, Database = Any>,
    r: &RolloutRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO rollouts ({ROLLOUT_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
    .bind(&r.id)
    .bind(&r.status)
    .bind(&r.templates)
    .bind(&r.origin)
    .bind(&r.waves)
    .bind(&r.ordering)
    .bind(r.auto_rollback)
    .bind(r.current_wave)
    .bind(r.wave_count)
    .bind(&r.reason)
    .bind(r.rollback_requested)
    .bind(&r.created_at)
    .bind(&r.updated_at)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn insert_wave<'c>(
    db: impl Executor<'c, Database = Any>,
    rollout_id: &str,
    wave: i64,
    size: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO rollout_waves (rollout_id, wave, size, status) VALUES ($1, $2, $3, $4)",
    )
    .bind(rollout_id)
    .bind(wave)
    .bind(size)
    .bind(WaveStatus::Pending.as_str())
    .execute(db)
    .await?;
    Ok(())
}

/// Adds a tenant to a rollout (wave 0 for one skipped from the start).
pub async fn insert_tenant<'c>(
    db: impl Executor<'c, Database = Any>,
    rollout_id: &str,
    customer_id: &str,
    (wave, position): (i64, i64),
    status: TenantStatus,
    note: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO rollout_tenants (rollout_id, customer_id, wave, position, status, note) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(rollout_id)
    .bind(customer_id)
    .bind(wave)
    .bind(position)
    .bind(status.as_str())
    .bind(note)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn get<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Option<RolloutRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// The active rollout (running, paused or rolling back), if any; else, with `or_latest`, the
/// newest one.
pub async fn current<'c>(
    db: impl Executor<'c, Database = Any> + Copy,
    or_latest: bool,
) -> Result<Option<RolloutRow>, sqlx::Error> {
    let [a, b, c] = RolloutStatus::ACTIVE.map(RolloutStatus::as_str);
    let active = sqlx::query_as(&format!(
        "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE status IN ($1, $2, $3) \
         ORDER BY created_at LIMIT 1"
    ))
    .bind(a)
    .bind(b)
    .bind(c)
    .fetch_optional(db)
    .await?;
    if active.is_some() || !or_latest {
        return Ok(active);
    }
    sqlx::query_as(&format!(
        "SELECT {ROLLOUT_COLUMNS} FROM rollouts ORDER BY created_at DESC, id LIMIT 1"
    ))
    .fetch_optional(db)
    .await
}

/// Moves a rollout from one of `from` to `to` with `reason`; false when it was in none of them.
pub async fn set_status<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    from: &[RolloutStatus],
    to: RolloutStatus,
    reason: Option<&str>,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let marks: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 5)).collect();
    let sql = format!(
        "UPDATE rollouts SET status = $1, reason = $2, updated_at = $3 \
         WHERE id = $4 AND status IN ({})",
        marks.join(", ")
    );
    let mut query = sqlx::query(&sql)
        .bind(to.as_str())
        .bind(reason)
        .bind(now)
        .bind(id);
    for status in from {
        query = query.bind(status.as_str());
    }
    Ok(query.execute(db).await?.rows_affected() == 1)
}

/// `abort --rollback`: an active rollout starts rolling back its committed waves.
pub async fn request_rollback<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    reason: &str,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let [a, b, c] = RolloutStatus::ACTIVE.map(RolloutStatus::as_str);
    let done = sqlx::query(
        "UPDATE rollouts SET status = $1, rollback_requested = 1, reason = $2, updated_at = $3 \
         WHERE id = $4 AND status IN ($5, $6, $7)",
    )
    .bind(RolloutStatus::RollingBack.as_str())
    .bind(reason)
    .bind(now)
    .bind(id)
    .bind(a)
    .bind(b)
    .bind(c)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_current_wave<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    wave: i64,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE rollouts SET current_wave = $1, updated_at = $2 WHERE id = $3")
        .bind(wave)
        .bind(now)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn waves<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Vec<WaveRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT wave, size, status, base_revision, revision, rollback_revision, committed_at, \
         finished_at FROM rollout_waves WHERE rollout_id = $1 ORDER BY wave",
    )
    .bind(id)
    .fetch_all(db)
    .await
}

/// What a wave's row becomes: its status, and the revisions and times known by then (None
/// keeps what is stored).
#[derive(Debug, Default)]
pub struct WaveUpdate<'a> {
    pub base_revision: Option<&'a str>,
    pub revision: Option<&'a str>,
    pub rollback_revision: Option<&'a str>,
    pub committed_at: Option<&'a str>,
    pub finished_at: Option<&'a str>,
}

pub async fn update_wave<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    wave: i64,
    status: WaveStatus,
    u: &WaveUpdate<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE rollout_waves SET status = $1, base_revision = COALESCE($2, base_revision), \
         revision = COALESCE($3, revision), rollback_revision = COALESCE($4, rollback_revision), \
         committed_at = COALESCE($5, committed_at), finished_at = COALESCE($6, finished_at) \
         WHERE rollout_id = $7 AND wave = $8",
    )
    .bind(status.as_str())
    .bind(u.base_revision)
    .bind(u.revision)
    .bind(u.rollback_revision)
    .bind(u.committed_at)
    .bind(u.finished_at)
    .bind(id)
    .bind(wave)
    .execute(db)
    .await?;
    Ok(())
}

/// The rollout's tenants in wave order (`wave` None: all of them, skipped ones first).
pub async fn tenants<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    wave: Option<i64>,
) -> Result<Vec<TenantRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT customer_id, wave, status, change_id, note FROM rollout_tenants \
         WHERE rollout_id = $1 AND ($2 < 0 OR wave = $2) ORDER BY wave, position",
    )
    .bind(id)
    .bind(wave.unwrap_or(-1))
    .fetch_all(db)
    .await
}

pub async fn set_tenant<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    customer_id: &str,
    status: TenantStatus,
    note: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE rollout_tenants SET status = $1, note = COALESCE($2, note) \
         WHERE rollout_id = $3 AND customer_id = $4",
    )
    .bind(status.as_str())
    .bind(note)
    .bind(id)
    .bind(customer_id)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn set_tenant_change<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    customer_id: &str,
    change_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE rollout_tenants SET change_id = $1 WHERE rollout_id = $2 AND customer_id = $3",
    )
    .bind(change_id)
    .bind(id)
    .bind(customer_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Takes (or renews) the driving lease on a rollout; false while another worker holds it.
pub async fn take_lease(
    db: &Db,
    id: &str,
    owner: &str,
    lease: chrono::Duration,
) -> Result<bool, sqlx::Error> {
    LEASE
        .take(&db.pool, id.to_string(), owner, lease, chrono::Utc::now())
        .await
}

/// Frees every rollout's lease: only for a single-process SQLite deployment starting up,
/// where a lease left behind is a killed run's.
pub async fn release_all_leases(db: &Db) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE rollouts SET lease_owner = NULL, lease_until = NULL")
        .execute(&db.pool)
        .await?;
    Ok(())
}

pub async fn release_lease(db: &Db, id: &str, owner: &str) -> Result<(), sqlx::Error> {
    LEASE.release(&db.pool, id.to_string(), owner).await
}

/// Now, as the rollout tables store it.
pub fn now() -> String {
    db::ts(chrono::Utc::now())
}
