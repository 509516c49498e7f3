//! The pull requests of rollout waves (review mode, migration 0018): one row per proposal of
//! a wave, its branch, its forge number once opened, and what became of it.

use sqlx::{Any, Executor, FromRow};

use super::WaveReviewState;

#[derive(Debug, Clone, FromRow)]
pub struct WaveReview {
    pub rollout_id: String,
    pub wave: i64,
    pub attempt: i64,
    pub branch: String,
    pub revision: String,
    pub base_revision: Option<String>,
    pub state: String,
    pub forge_number: Option<i64>,
    pub forge_url: Option<String>,
    pub title: String,
    pub body: String,
    pub merged_revision: Option<String>,
    pub checked_at: Option<String>,
}

impl WaveReview {
    pub fn state(&self) -> WaveReviewState {
        WaveReviewState::parse(&self.state).unwrap_or(WaveReviewState::Open)
    }
}

const COLUMNS: &str = "rollout_id, wave, attempt, branch, revision, base_revision, state, \
     forge_number, forge_url, title, body, merged_revision, checked_at";

/// Records an open proposal; false when it was recorded already (a retry after a crash).
pub async fn insert_review<'c>(
    db: impl Executor<'c, Database = Any>,
    r: &WaveReview,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO rollout_reviews (rollout_id, wave, attempt, branch, revision, base_revision, \
         state, title, body, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) ON CONFLICT DO NOTHING",
    )
    .bind(&r.rollout_id)
    .bind(r.wave)
    .bind(r.attempt)
    .bind(&r.branch)
    .bind(&r.revision)
    .bind(&r.base_revision)
    .bind(WaveReviewState::Open.as_str())
    .bind(&r.title)
    .bind(&r.body)
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The wave's latest proposal, if any.
pub async fn review_of<'c>(
    db: impl Executor<'c, Database = Any>,
    rollout_id: &str,
    wave: i64,
) -> Result<Option<WaveReview>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM rollout_reviews WHERE rollout_id = $1 AND wave = $2 \
         ORDER BY attempt DESC LIMIT 1"
    ))
    .bind(rollout_id)
    .bind(wave)
    .fetch_optional(db)
    .await
}

/// Every proposal of the rollout, by wave and attempt.
pub async fn reviews_of<'c>(
    db: impl Executor<'c, Database = Any>,
    rollout_id: &str,
) -> Result<Vec<WaveReview>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM rollout_reviews WHERE rollout_id = $1 ORDER BY wave, attempt"
    ))
    .bind(rollout_id)
    .fetch_all(db)
    .await
}

/// The proposals of aborted rollouts whose pull requests the worker still has to close.
pub async fn closing<'c>(
    db: impl Executor<'c, Database = Any>,
) -> Result<Vec<WaveReview>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM rollout_reviews WHERE state = $1 ORDER BY created_at"
    ))
    .bind(WaveReviewState::Closing.as_str())
    .fetch_all(db)
    .await
}

/// An aborted rollout: its open proposals are to be closed (by the worker, which has the
/// forge). Returns how many.
pub async fn close_requested<'c>(
    db: impl Executor<'c, Database = Any>,
    rollout_id: &str,
    now: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE rollout_reviews SET state = $1, updated_at = $2 \
         WHERE rollout_id = $3 AND state = $4",
    )
    .bind(WaveReviewState::Closing.as_str())
    .bind(now)
    .bind(rollout_id)
    .bind(WaveReviewState::Open.as_str())
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

pub async fn set_review_forge<'c>(
    db: impl Executor<'c, Database = Any>,
    r: &WaveReview,
    number: i64,
    url: &str,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE rollout_reviews SET forge_number = $1, forge_url = $2, updated_at = $3 \
         WHERE rollout_id = $4 AND wave = $5 AND attempt = $6",
    )
    .bind(number)
    .bind(url)
    .bind(now)
    .bind(&r.rollout_id)
    .bind(r.wave)
    .bind(r.attempt)
    .execute(db)
    .await?;
    Ok(())
}

/// Moves a proposal from `from` to `to` (with the merge's revision); false when it had moved.
pub async fn set_review_state<'c>(
    db: impl Executor<'c, Database = Any>,
    r: &WaveReview,
    from: WaveReviewState,
    to: WaveReviewState,
    merged_revision: Option<&str>,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE rollout_reviews SET state = $1, merged_revision = COALESCE($2, merged_revision), \
         updated_at = $3 WHERE rollout_id = $4 AND wave = $5 AND attempt = $6 AND state = $7",
    )
    .bind(to.as_str())
    .bind(merged_revision)
    .bind(now)
    .bind(&r.rollout_id)
    .bind(r.wave)
    .bind(r.attempt)
    .bind(from.as_str())
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Notes that the forge was asked about the proposal now.
pub async fn touch_review<'c>(
    db: impl Executor<'c, Database = Any>,
    r: &WaveReview,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE rollout_reviews SET checked_at = $1 \
         WHERE rollout_id = $2 AND wave = $3 AND attempt = $4",
    )
    .bind(now)
    .bind(&r.rollout_id)
    .bind(r.wave)
    .bind(r.attempt)
    .execute(db)
    .await?;
    Ok(())
}
