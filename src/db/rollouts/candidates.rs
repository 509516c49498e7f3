//! What a rollout plans from: the live tenants with what may keep each out of a rollout, and
//! the policy's record of each digest of templates it met.

use sqlx::{Any, Executor, FromRow};

use crate::db::reviews::ReviewState;
use crate::db::{outbox::JobStatus, Db};
use crate::status::DeploymentStatus;

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
