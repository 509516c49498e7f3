//! Review branches (review mode): one row per change proposed on its own branch, with its
//! pull request once opened. States are [`ReviewState`]; no query spells them itself.

use sqlx::{Any, Executor, FromRow};

/// Where a proposed change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewState {
    /// Its branch is pushed, waiting for a person.
    Open,
    /// Main contains it (a merge commit, a squash, a rebase or a cherry-pick).
    Merged,
    /// Closed unmerged: main keeps what it had.
    Abandoned,
    /// A newer change of the same tenant replaced it.
    Superseded,
}

impl ReviewState {
    pub const fn as_str(self) -> &'static str {
        match self {
            ReviewState::Open => "open",
            ReviewState::Merged => "merged",
            ReviewState::Abandoned => "abandoned",
            ReviewState::Superseded => "superseded",
        }
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct Review {
    pub change_id: String,
    pub customer_id: String,
    pub branch: String,
    pub revision: String,
    pub forge_number: Option<i64>,
    pub forge_url: Option<String>,
    pub title: String,
    pub body: String,
    /// What the proposal holds for the tenant (see `tree_fingerprint` in the migrations).
    pub tree_fingerprint: Option<String>,
}

const COLUMNS: &str = "change_id, customer_id, branch, revision, forge_number, forge_url, title, \
                       body, tree_fingerprint";

pub async fn insert<'c>(
    db: impl Executor<'c, Database = Any>,
    review: &Review,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO reviews (change_id, customer_id, branch, revision, state, title, body, \
         created_at, updated_at, tree_fingerprint) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)",
    )
    .bind(&review.change_id)
    .bind(&review.customer_id)
    .bind(&review.branch)
    .bind(&review.revision)
    .bind(ReviewState::Open.as_str())
    .bind(&review.title)
    .bind(&review.body)
    .bind(now)
    .bind(&review.tree_fingerprint)
    .execute(db)
    .await?;
    Ok(())
}

/// Every open review, oldest first.
pub async fn open<'c>(db: impl Executor<'c, Database = Any>) -> Result<Vec<Review>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM reviews WHERE state = $1 ORDER BY created_at, change_id"
    ))
    .bind(ReviewState::Open.as_str())
    .fetch_all(db)
    .await
}

/// The tenant's open review, if any.
pub async fn open_of<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<Option<Review>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM reviews WHERE state = $1 AND customer_id = $2"
    ))
    .bind(ReviewState::Open.as_str())
    .bind(customer_id)
    .fetch_optional(db)
    .await
}

/// What the tenant's newest review proposed, when that review is open or merged: main holding
/// exactly that is the service's doing (a person's squash of the proposal), not drift.
pub async fn proposed_content<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT state, tree_fingerprint FROM reviews WHERE customer_id = $1 \
         ORDER BY created_at DESC, change_id DESC LIMIT 1",
    )
    .bind(customer_id)
    .fetch_optional(db)
    .await?;
    Ok(row
        .filter(|(state, _)| {
            [ReviewState::Open, ReviewState::Merged]
                .iter()
                .any(|s| s.as_str() == state)
        })
        .and_then(|(_, fingerprint)| fingerprint))
}

/// Moves an open review to `state`; false when it was no longer open (another replica won).
pub async fn close<'c>(
    db: impl Executor<'c, Database = Any>,
    change_id: &str,
    state: ReviewState,
    merged_revision: Option<&str>,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE reviews SET state = $1, merged_revision = $2, updated_at = $3 \
         WHERE change_id = $4 AND state = $5",
    )
    .bind(state.as_str())
    .bind(merged_revision)
    .bind(now)
    .bind(change_id)
    .bind(ReviewState::Open.as_str())
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records the pull request opened for a review.
pub async fn set_forge<'c>(
    db: impl Executor<'c, Database = Any>,
    change_id: &str,
    number: i64,
    url: &str,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE reviews SET forge_number = $1, forge_url = $2, updated_at = $3 WHERE change_id = $4",
    )
    .bind(number)
    .bind(url)
    .bind(now)
    .bind(change_id)
    .execute(db)
    .await?;
    Ok(())
}
