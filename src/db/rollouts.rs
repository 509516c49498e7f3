//! Template rollouts in the database: the rollout, its waves and its tenants (see migration
//! 0016), the policy's record of each digest of templates it met, and the driving worker's
//! lease. Statuses are the typed enums below; no query spells them itself.

use sqlx::{Any, Executor, FromRow};

use crate::db::queue::Lease;
use crate::db::reviews::ReviewState;
use crate::db::{self, outbox::JobStatus, Db};
use crate::status::DeploymentStatus;

/// A status column's typed values: `as_str` for binding, `parse` for reading.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vdoc])* $variant),* }

        impl $name {
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)* _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Where a rollout is.
    RolloutStatus {
        /// The worker commits its waves, each after the last is healthy.
        Running = "running",
        /// Stopped by a failed or stalled tenant (or by hand); `rollout resume` goes on.
        Paused = "paused",
        /// The worker is reverting its committed waves (`abort --rollback`, auto-rollback).
        RollingBack = "rolling_back",
        Completed = "completed",
        /// Stopped for good; what was committed stays.
        Aborted = "aborted",
        /// Stopped for good; its failed wave (or every wave) was reverted.
        RolledBack = "rolled_back",
    }
);

impl RolloutStatus {
    /// Running, paused or rolling back: at most one rollout is.
    pub const ACTIVE: [RolloutStatus; 3] = [Self::Running, Self::Paused, Self::RollingBack];
}

text_enum!(
    /// Where one wave is.
    WaveStatus {
        Pending = "pending",
        /// Its commit is being made (found again by its trailers after a crash).
        Committing = "committing",
        /// Committed: waiting for the cluster to report every tenant ready.
        Waiting = "waiting",
        Passed = "passed",
        RolledBack = "rolled_back",
    }
);

text_enum!(
    /// What became of one tenant of a rollout.
    TenantStatus {
        Pending = "pending",
        /// In its wave's commit, not reported ready yet.
        Committed = "committed",
        Ready = "ready",
        /// Reported failed or stalled at the wave's revision (`note` says why).
        Failed = "failed",
        /// Left out: drifted, an open review, a queued change, deleted (`note` says which).
        Skipped = "skipped",
        /// Its files already were what the wave would write.
        Unchanged = "unchanged",
        /// Its wave was reverted: held at its previous files until a later rollout.
        RolledBack = "rolled_back",
    }
);

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

/// A live tenant as a rollout plans it: what may keep it out of one.
#[derive(Debug, Clone, FromRow)]
pub struct Candidate {
    pub customer_id: String,
    pub plan: String,
    pub subscription_status: String,
    pub deployment_status: String,
    pub committed_revision: Option<String>,
    pub applied_revision: Option<String>,
    pub error: Option<String>,
    /// Open reviews of the tenant (review mode).
    pub open_reviews: i64,
    /// Its changes queued for the worker, not yet in Git.
    pub queued_jobs: i64,
}

impl Candidate {
    pub fn deployment(&self) -> Option<DeploymentStatus> {
        self.deployment_status.parse().ok()
    }
}

/// Every tenant that is not deleted (or, with `only`, those of them), by id.
pub async fn candidates(db: &Db, only: Option<&[String]>) -> Result<Vec<Candidate>, sqlx::Error> {
    let mut sql = String::from(
        "SELECT c.id AS customer_id, s.plan, s.status AS subscription_status, \
         d.status AS deployment_status, d.committed_revision, d.applied_revision, d.error, \
         (SELECT COUNT(*) FROM reviews r WHERE r.customer_id = c.id AND r.state = $1) \
           AS open_reviews, \
         (SELECT COUNT(*) FROM render_jobs j WHERE j.customer_id = c.id \
           AND j.status = $2) AS queued_jobs \
         FROM customers c JOIN subscriptions s ON s.customer_id = c.id \
         JOIN deployments d ON d.customer_id = c.id \
         WHERE c.deleted_at IS NULL AND d.status <> $3",
    );
    if let Some(ids) = only {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 4)).collect();
        sql.push_str(&format!(" AND c.id IN ({})", marks.join(", ")));
    }
    sql.push_str(" ORDER BY c.id");
    let mut query = sqlx::query_as(&sql)
        .bind(ReviewState::Open.as_str())
        .bind(JobStatus::Pending.as_str())
        .bind(DeploymentStatus::Deleted.as_str());
    for id in only.unwrap_or_default() {
        query = query.bind(id);
    }
    query.fetch_all(&db.pool).await
}

/// What the policy did about a digest of templates.
#[derive(Debug, Clone, FromRow)]
pub struct Check {
    pub policy: String,
    pub behind: i64,
    pub rollout_id: Option<String>,
    pub checked_at: String,
}

/// Records the policy's decision on `templates`; false when another process recorded one first.
pub async fn insert_check<'c>(
    db: impl Executor<'c, Database = Any>,
    templates: &str,
    policy: &str,
    behind: i64,
    rollout_id: Option<&str>,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO rollout_checks (templates, policy, behind, rollout_id, checked_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (templates) DO NOTHING",
    )
    .bind(templates)
    .bind(policy)
    .bind(behind)
    .bind(rollout_id)
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn check<'c>(
    db: impl Executor<'c, Database = Any>,
    templates: &str,
) -> Result<Option<Check>, sqlx::Error> {
    sqlx::query_as(
        "SELECT policy, behind, rollout_id, checked_at FROM rollout_checks WHERE templates = $1",
    )
    .bind(templates)
    .fetch_optional(db)
    .await
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

pub async fn release_lease(db: &Db, id: &str, owner: &str) -> Result<(), sqlx::Error> {
    LEASE.release(&db.pool, id.to_string(), owner).await
}

/// Now, as the rollout tables store it.
pub fn now() -> String {
    db::ts(chrono::Utc::now())
}
