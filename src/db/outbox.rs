//! The transactional outbox of render jobs: inserted in the same transaction as the change
//! that needs them, claimed under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several
//! replicas never take the same job), completed with the commit that contains them.

use chrono::{DateTime, Duration, Utc};
use sqlx::{Any, Executor, FromRow};

use crate::db::queue::{Backoff, Item, Lease, Queue};
use crate::db::{self, Db};
use crate::status::DeploymentStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    /// Re-render what changed since the tenant's render lock.
    Update,
    /// Re-render everything, ignoring the render lock (repairs hand edits in the repository).
    Rebuild,
    Delete,
    /// A rebuild that also overwrites a drifted tenant (a person's edit or a rollback).
    Force,
    /// Restore the tenant's files as they were at the job's target revision.
    Rollback,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Rebuild => "rebuild",
            Action::Delete => "delete",
            Action::Force => "force",
            Action::Rollback => "rollback",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Action::Create,
            Action::Update,
            Action::Rebuild,
            Action::Delete,
            Action::Force,
            Action::Rollback,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// Where a job is: waiting (or leased) to reach Git, in Git, or given up. Stored as its
/// `as_str`; no query spells these words itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Done,
    Failed,
    /// Written by a rollout wave whose commit is being made: never claimed by the worker,
    /// taken at its word by the drift scan like a pending job, done once the commit exists.
    Staged,
    /// The tenant waits for a cluster with room (unplaced): never claimed; pending again once
    /// the tenant is placed ([`release_placed`]).
    Held,
}

impl JobStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
            JobStatus::Staged => "staged",
            JobStatus::Held => "held",
        }
    }
}

const PENDING: &str = JobStatus::Pending.as_str();
const STAGED: &str = JobStatus::Staged.as_str();
const HELD: &str = JobStatus::Held.as_str();

/// The render jobs' queue. Attempts are `GITOPS_MAX_ATTEMPTS` (see [`retry`]).
const JOBS: Queue = Queue {
    lease: Lease::of_queue("render_jobs", "id"),
    returning: "id, change_id, customer_id, action, attempts, reason, target_revision",
    order: "id",
    pending: PENDING,
    done: JobStatus::Done.as_str(),
    failed: JobStatus::Failed.as_str(),
    stamp: Some("updated_at"),
    forget: &[],
    max_attempts: 5,
    backoff: Backoff {
        base: Duration::seconds(1),
        cap: Duration::seconds(256),
    },
};

#[derive(Debug, Clone, FromRow)]
pub struct Job {
    pub id: i64,
    pub change_id: String,
    pub customer_id: String,
    pub action: String,
    pub attempts: i64,
    /// Why the change was queued, worded for the commit message (e.g. a plan upgrade).
    pub reason: Option<String>,
    /// A rollback's revision (None: the parent of the tenant's last change).
    pub target_revision: Option<String>,
}

impl Item for Job {
    type Key = i64;
    fn key(&self) -> i64 {
        self.id
    }
}

/// Queues a change; returns its change id (the `Change-Id:` trailer of the commit).
pub async fn enqueue<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
    action: Action,
    now: DateTime<Utc>,
) -> Result<String, sqlx::Error> {
    enqueue_because(db, customer_id, action, None, now).await
}

/// Queues a change whose commit message says `reason` (e.g. `upgrade starter → professional
/// (Stripe evt_…)`) instead of the action and the tenant's plan.
pub async fn enqueue_because<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
    action: Action,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<String, sqlx::Error> {
    insert(db, customer_id, action, reason, None, now).await
}

/// Queues a rollback of the tenant to `target` (None: to before its last change).
pub async fn enqueue_rollback<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
    target: Option<&str>,
    now: DateTime<Utc>,
) -> Result<String, sqlx::Error> {
    insert(db, customer_id, Action::Rollback, None, target, now).await
}

async fn insert<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
    action: Action,
    reason: Option<&str>,
    target: Option<&str>,
    now: DateTime<Utc>,
) -> Result<String, sqlx::Error> {
    let change_id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO render_jobs (change_id, customer_id, action, status, attempts, reason, \
         target_revision, created_at, updated_at) VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $7)",
    )
    .bind(&change_id)
    .bind(customer_id)
    .bind(action.as_str())
    .bind(PENDING)
    .bind(reason)
    .bind(target)
    .bind(db::ts(now))
    .execute(db)
    .await?;
    Ok(change_id)
}

/// Records a rollout's change of a tenant before its commit is made (see
/// [`JobStatus::Staged`]); returns its change id.
pub async fn stage<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
    action: Action,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<String, sqlx::Error> {
    let change_id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO render_jobs (change_id, customer_id, action, status, attempts, reason, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, 0, $5, $6, $6)",
    )
    .bind(&change_id)
    .bind(customer_id)
    .bind(action.as_str())
    .bind(STAGED)
    .bind(reason)
    .bind(db::ts(now))
    .execute(db)
    .await?;
    Ok(change_id)
}

/// Marks a staged job done with the commit that holds its change and what the tenant's files
/// are there.
pub async fn complete_staged<'c>(
    db: impl Executor<'c, Database = Any>,
    change_id: &str,
    commit_id: &str,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE render_jobs SET status = $1, commit_id = $2, tree_fingerprint = $3, \
         updated_at = $4 WHERE change_id = $5 AND status = $6",
    )
    .bind(JobStatus::Done.as_str())
    .bind(commit_id)
    .bind(fingerprint)
    .bind(db::ts(now))
    .bind(change_id)
    .bind(STAGED)
    .execute(db)
    .await?;
    Ok(())
}

/// Takes up to `limit` pending jobs whose lease is free or expired, oldest first.
pub async fn claim(
    db: &Db,
    owner: &str,
    limit: i64,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<Job>, sqlx::Error> {
    JOBS.claim(db, owner, limit, lease, now).await
}

/// Marks a job done with the commit that contains its change (only while we hold its lease);
/// `fingerprint` is what the tenant's files are there (see `tree_fingerprint` in the
/// migrations).
pub async fn complete<'c>(
    db: impl Executor<'c, Database = Any>,
    job: &Job,
    owner: &str,
    commit_id: &str,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let set = [
        ("commit_id", Some(commit_id)),
        ("tree_fingerprint", Some(fingerprint)),
    ];
    JOBS.complete(db, job.id, owner, None, &set, now).await
}

/// Marks a job done without a commit: its tenant has drifted, and only a forced deploy (or a
/// deletion) overwrites that. `note` says so on the job.
pub async fn complete_held<'c>(
    db: impl Executor<'c, Database = Any>,
    job: &Job,
    owner: &str,
    note: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    JOBS.complete(db, job.id, owner, Some(note), &[], now).await
}

/// One of this service's jobs, as a commit naming its change id finds it.
#[derive(Debug, Clone, FromRow)]
pub struct NamedJob {
    pub change_id: String,
    pub customer_id: String,
    pub status: String,
    pub commit_id: Option<String>,
    /// What the job wrote for its tenant; None while it is in flight (or from before).
    pub tree_fingerprint: Option<String>,
}

impl NamedJob {
    /// Whether `content` (a tenant's files at a commit naming this job) is what the job wrote.
    /// A job still in flight, or committed before contents were recorded, is taken at its
    /// word; a job done without a commit (held) wrote nothing.
    pub fn wrote(&self, content: &str) -> bool {
        match &self.tree_fingerprint {
            Some(wrote) => wrote == content,
            None => self.status == PENDING || self.status == STAGED || self.commit_id.is_some(),
        }
    }
}

/// The jobs among `change_ids` (a commit's `Change-Id`s: one, or thousands for a batch),
/// read 500 at a time.
pub async fn named_jobs<'c>(
    db: impl Executor<'c, Database = Any> + Copy,
    change_ids: &[String],
) -> Result<Vec<NamedJob>, sqlx::Error> {
    let mut found = Vec::new();
    for chunk in change_ids.chunks(500) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT change_id, customer_id, status, commit_id, tree_fingerprint FROM render_jobs \
             WHERE change_id IN ({})",
            marks.join(", ")
        );
        let mut query = sqlx::query_as(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        found.extend(query.fetch_all(db).await?);
    }
    Ok(found)
}

/// The change ids of a tenant's jobs, newest first (history names each commit's).
pub async fn change_ids_of<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT change_id FROM render_jobs WHERE customer_id = $1 ORDER BY id DESC")
            .bind(customer_id)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Records a failed attempt of a job `owner` holds. Past `max_attempts` the job is failed for
/// good; otherwise it is retried after the backoff. Returns true when the job gave up.
pub async fn retry<'c>(
    db: impl Executor<'c, Database = Any>,
    job: &Job,
    owner: &str,
    error: &str,
    max_attempts: i64,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let jobs = Queue {
        max_attempts,
        ..JOBS
    };
    jobs.retry(db, job.id, owner, job.attempts, error, now)
        .await
}

/// Puts jobs `owner` holds back without counting an attempt (Git or the remote was
/// unavailable): they are claimable again after `delay`.
pub async fn postpone(
    db: &Db,
    jobs: &[Job],
    owner: &str,
    error: &str,
    delay: Duration,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
    JOBS.postpone(db, &ids, owner, error, delay, now).await
}

/// Frees every lease: only for a single-process SQLite deployment starting up, where no other
/// worker can hold one.
pub async fn release_all_leases(db: &Db) -> Result<u64, sqlx::Error> {
    JOBS.release_all(db).await
}

pub async fn pending_count(db: &Db) -> Result<i64, sqlx::Error> {
    JOBS.pending_count(db).await
}

/// Jobs of one tenant not yet in Git.
pub async fn pending_for<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<i64, sqlx::Error> {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) FROM render_jobs WHERE customer_id = $1 AND status = $2")
        .bind(customer_id)
        .bind(PENDING)
        .fetch_one(db)
        .await?
        .try_get(0)
}

/// How many jobs of a change set ([`enqueue_all_live`]'s) are still pending, and how many
/// gave up: what `billing tenant deploy --all --wait` watches drain.
pub async fn change_set_progress<'c>(
    db: impl Executor<'c, Database = Any>,
    change_set: &str,
) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN status = $2 THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN status = $3 THEN 1 ELSE 0 END), 0) \
         FROM render_jobs WHERE change_id LIKE $1",
    )
    .bind(format!("{change_set}-%"))
    .bind(PENDING)
    .bind(JobStatus::Failed.as_str())
    .fetch_one(db)
    .await
}

/// Queues `action` for every tenant that is not deleted (nor its customer), as one change set (change ids
/// `<change_set>-<customer id>`); returns how many.
pub async fn enqueue_all_live<'c>(
    db: impl Executor<'c, Database = Any>,
    change_set: &str,
    action: Action,
    now: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "INSERT INTO render_jobs (change_id, customer_id, action, status, attempts, created_at, updated_at) \
         SELECT $1 || '-' || customer_id, customer_id, $3, $4, 0, $2, $2 \
         FROM deployments WHERE status <> $5 \
         AND customer_id IN (SELECT id FROM customers WHERE deleted_at IS NULL)",
    )
    .bind(change_set)
    .bind(now)
    .bind(action.as_str())
    .bind(PENDING)
    .bind(DeploymentStatus::Deleted.as_str())
    .execute(db)
    .await?
    .rows_affected())
}

/// Holds the not yet claimed jobs of a tenant that waits for a cluster (its signup's, in the
/// signup's transaction).
pub async fn hold_for<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE render_jobs SET status = $1 WHERE customer_id = $2 AND status = $3 \
         AND lease_owner IS NULL",
    )
    .bind(HELD)
    .bind(customer_id)
    .bind(PENDING)
    .execute(db)
    .await?
    .rows_affected())
}

/// Holds a claimed job whose tenant turned out to wait for a cluster, giving its lease back;
/// false when `owner` no longer holds it or the tenant is placed after all.
pub async fn hold_claimed<'c>(
    db: impl Executor<'c, Database = Any>,
    job: &Job,
    owner: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE render_jobs SET status = $1, lease_owner = NULL, lease_until = NULL \
         WHERE id = $2 AND lease_owner = $3 AND status = $4 AND EXISTS (SELECT 1 FROM placements p \
         WHERE p.customer_id = render_jobs.customer_id AND p.cluster IS NULL)",
    )
    .bind(HELD)
    .bind(job.id)
    .bind(owner)
    .bind(PENDING)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sends the held jobs of every placed tenant (or one whose placement is gone) back to the
/// queue: run where a tenant is placed, and by the placement worker on every pass, so a job
/// held while its tenant was being placed elsewhere never stays held.
pub async fn release_placed<'c>(db: impl Executor<'c, Database = Any>) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE render_jobs SET status = $1 WHERE status = $2 AND customer_id NOT IN \
         (SELECT customer_id FROM placements WHERE cluster IS NULL)",
    )
    .bind(PENDING)
    .bind(HELD)
    .execute(db)
    .await?
    .rows_affected())
}

/// Forgets the held jobs of a tenant deleted before it was placed: nothing of it is in Git.
pub async fn drop_held<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM render_jobs WHERE customer_id = $1 AND status = $2")
            .bind(customer_id)
            .bind(HELD)
            .execute(db)
            .await?
            .rows_affected(),
    )
}

/// Sends one placed tenant's held jobs back to the queue (in the placing transaction).
pub async fn release_held_of<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("UPDATE render_jobs SET status = $1 WHERE customer_id = $2 AND status = $3")
            .bind(PENDING)
            .bind(customer_id)
            .bind(HELD)
            .execute(db)
            .await?
            .rows_affected(),
    )
}
