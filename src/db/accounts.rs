//! Queries on customers, their subscription and their deployment status.

use sqlx::{Any, Executor, FromRow};

#[derive(Debug, Clone, FromRow)]
pub struct CustomerRow {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub company_name: String,
    pub full_name: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, FromRow)]
pub struct SubscriptionRow {
    pub plan: String,
    pub status: String,
    pub trial_ends_at: Option<String>,
    pub current_period_ends_at: Option<String>,
}

#[derive(Debug, Clone, FromRow)]
pub struct DeploymentRow {
    pub status: String,
    pub instance_url: String,
    pub committed_revision: Option<String>,
    pub error: Option<String>,
    pub updated_at: String,
}

pub struct NewCustomer<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub email_normalized: &'a str,
    /// The look of the email (TS #39 skeleton): unique among live customers.
    pub email_skeleton: &'a str,
    pub password_hash: &'a str,
    pub company_name: &'a str,
    pub full_name: Option<&'a str>,
    pub now: &'a str,
}

const CUSTOMER_COLUMNS: &str = "id, email, password_hash, company_name, full_name, created_at";

/// Inserts the customer; false (and nothing written) when the normalised email, or its
/// skeleton, is taken. The unique indexes decide, also between two concurrent signups: no
/// error text is matched.
pub async fn insert_customer<'c>(
    db: impl Executor<'c, Database = Any>,
    c: &NewCustomer<'_>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO customers (id, email, email_normalized, email_skeleton, password_hash, \
         company_name, full_name, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT DO NOTHING",
    )
    .bind(c.id)
    .bind(c.email)
    .bind(c.email_normalized)
    .bind(c.email_skeleton)
    .bind(c.password_hash)
    .bind(c.company_name)
    .bind(c.full_name)
    .bind(c.now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn customer_by_email<'c>(
    db: impl Executor<'c, Database = Any>,
    email_normalized: &str,
) -> Result<Option<CustomerRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE email_normalized = $1"
    ))
    .bind(email_normalized)
    .fetch_optional(db)
    .await
}

pub async fn customer_by_id<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Option<CustomerRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

pub async fn list_customers<'c>(
    db: impl Executor<'c, Database = Any>,
    limit: i64,
    offset: i64,
) -> Result<Vec<CustomerRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {CUSTOMER_COLUMNS} FROM customers ORDER BY created_at, id LIMIT $1 OFFSET $2"
    ))
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await
}

pub async fn update_password_hash<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    password_hash: &str,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE customers SET password_hash = $1, updated_at = $2 WHERE id = $3")
        .bind(password_hash)
        .bind(now)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn insert_subscription<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
    sub: &SubscriptionRow,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO subscriptions (customer_id, plan, status, trial_ends_at, \
         current_period_ends_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(customer_id)
    .bind(&sub.plan)
    .bind(&sub.status)
    .bind(&sub.trial_ends_at)
    .bind(&sub.current_period_ends_at)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn subscription<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<Option<SubscriptionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT plan, status, trial_ends_at, current_period_ends_at \
         FROM subscriptions WHERE customer_id = $1",
    )
    .bind(customer_id)
    .fetch_optional(db)
    .await
}

pub async fn insert_deployment<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
    status: &str,
    instance_url: &str,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO deployments (customer_id, status, instance_url, updated_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(customer_id)
    .bind(status)
    .bind(instance_url)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn deployment<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<Option<DeploymentRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT status, instance_url, committed_revision, error, updated_at \
         FROM deployments WHERE customer_id = $1",
    )
    .bind(customer_id)
    .fetch_optional(db)
    .await
}

/// Live customers stored before emails had a skeleton: `(id, normalised email)`.
pub async fn without_skeleton<'c>(
    db: impl Executor<'c, Database = Any>,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, email_normalized FROM customers \
         WHERE email_skeleton IS NULL AND deleted_at IS NULL ORDER BY created_at, id",
    )
    .fetch_all(db)
    .await
}

/// Stores a customer's skeleton unless another live customer has it: false then.
pub async fn set_skeleton<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    skeleton: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE customers SET email_skeleton = $1 WHERE id = $2 AND email_skeleton IS NULL \
         AND NOT EXISTS (SELECT 1 FROM customers WHERE email_skeleton = $1)",
    )
    .bind(skeleton)
    .bind(id)
    .execute(db)
    .await;
    match done {
        Ok(done) => Ok(done.rows_affected() == 1),
        // Another replica starting at the same time stored the look first.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e),
    }
}
