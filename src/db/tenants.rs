//! The operator's view of many tenants at once: customer, subscription and deployment in one
//! row, filtered by deployment state, plan and subscription status, paged by id (keyset: a
//! page does not shift when tenants sign up meanwhile).

use sqlx::{Any, Executor, FromRow};

use crate::billing::SubscriptionStatus;
use crate::status::DeploymentStatus;

/// Which tenants to list. Deleted customers only show when `deployment` asks for `deleted`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub deployment: Option<DeploymentStatus>,
    pub plan: Option<String>,
    pub subscription: Option<SubscriptionStatus>,
    /// The start of an id or of an email (case-insensitive), as the admin page's search box.
    pub search: Option<String>,
}

#[derive(Debug, Clone, FromRow)]
struct Row {
    id: String,
    email: String,
    company_name: String,
    created_at: String,
    plan: Option<String>,
    subscription_status: Option<String>,
    deployment_status: Option<String>,
    committed_revision: Option<String>,
    applied_revision: Option<String>,
    message: Option<String>,
    updated_at: Option<String>,
}

/// One tenant as `billing tenant list` shows it.
#[derive(Debug, Clone)]
pub struct TenantRow {
    pub id: String,
    pub email: String,
    pub company_name: String,
    pub created_at: String,
    pub plan: Option<String>,
    pub subscription: Option<SubscriptionStatus>,
    pub deployment: Option<DeploymentStatus>,
    pub committed_revision: Option<String>,
    pub applied_revision: Option<String>,
    /// The cluster's last sync message.
    pub message: Option<String>,
    /// When the deployment row last changed.
    pub updated_at: Option<String>,
}

impl TryFrom<Row> for TenantRow {
    type Error = sqlx::Error;

    fn try_from(r: Row) -> Result<Self, sqlx::Error> {
        let decode = |e: String| sqlx::Error::Decode(e.into());
        Ok(TenantRow {
            subscription: r
                .subscription_status
                .map(|s| s.parse())
                .transpose()
                .map_err(decode)?,
            deployment: r
                .deployment_status
                .map(|s| s.parse())
                .transpose()
                .map_err(decode)?,
            id: r.id,
            email: r.email,
            company_name: r.company_name,
            created_at: r.created_at,
            plan: r.plan,
            committed_revision: r.committed_revision,
            applied_revision: r.applied_revision,
            message: r.message,
            updated_at: r.updated_at,
        })
    }
}

/// Up to `limit` tenants matching `filter` whose id sorts after `after`, by id.
pub async fn list<'c>(
    db: impl Executor<'c, Database = Any>,
    filter: &Filter,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<TenantRow>, sqlx::Error> {
    let mut conditions: Vec<String> = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    if filter.deployment != Some(DeploymentStatus::Deleted) {
        conditions.push("c.deleted_at IS NULL".into());
    }
    let wanted = [
        ("d.status", filter.deployment.map(DeploymentStatus::as_str)),
        ("s.plan", filter.plan.as_deref()),
        (
            "s.status",
            filter.subscription.map(SubscriptionStatus::as_str),
        ),
    ];
    for (column, value) in wanted {
        if let Some(value) = value {
            binds.push(value.to_string());
            conditions.push(format!("{column} = ${}", binds.len()));
        }
    }
    if let Some(search) = &filter.search {
        // A prefix match, with LIKE's own wildcards taken literally.
        let escaped = search
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        binds.push(format!("{escaped}%"));
        let n = binds.len();
        conditions.push(format!(
            "(c.id LIKE ${n} ESCAPE '\\' OR c.email_normalized LIKE ${n} ESCAPE '\\')"
        ));
    }
    if let Some(after) = after {
        binds.push(after.to_string());
        conditions.push(format!("c.id > ${}", binds.len()));
    }
    if conditions.is_empty() {
        conditions.push("1 = 1".into());
    }
    let sql = format!(
        "SELECT c.id, c.email, c.company_name, c.created_at, s.plan, \
         s.status AS subscription_status, d.status AS deployment_status, \
         d.committed_revision, d.applied_revision, d.message, d.updated_at \
         FROM customers c \
         LEFT JOIN subscriptions s ON s.customer_id = c.id \
         LEFT JOIN deployments d ON d.customer_id = c.id \
         WHERE {} ORDER BY c.id LIMIT ${}",
        conditions.join(" AND "),
        binds.len() + 1
    );
    let mut query = sqlx::query_as::<_, Row>(&sql);
    for value in binds {
        query = query.bind(value);
    }
    query
        .bind(limit)
        .fetch_all(db)
        .await?
        .into_iter()
        .map(TenantRow::try_from)
        .collect()
}

/// Whether a customer with this id was ever signed up (deleted ones included: their audit
/// trail and history stay).
pub async fn exists<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<bool, sqlx::Error> {
    let row: Option<(String,)> = sqlx::query_as("SELECT id FROM customers WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?;
    Ok(row.is_some())
}
