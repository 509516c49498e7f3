//! The JSON shapes returned to clients (snake_case, as the old service returned them) and the
//! query that assembles them for one customer.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::accounts::AccountError;
use crate::accounts::AccountsHandles;
use crate::db::{self, accounts, licenses};
use crate::plans::{Features, Limits};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomerView {
    pub customer_id: String,
    pub email: String,
    pub company_name: String,
    pub full_name: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AccountSubscription)]
pub struct SubscriptionView {
    pub plan: String,
    pub status: String,
    pub trial_ends_at: Option<String>,
    pub trial_days_remaining: i64,
    pub current_period_ends_at: Option<String>,
}

/// A license as clients see it. The JWT itself is only returned when it is issued:
/// the database keeps its hash, never the token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LicenseView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<String>,
    pub plan: String,
    pub issued_at: String,
    pub expires_at: String,
    pub features: Option<Features>,
    pub limits: Option<Limits>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeploymentView {
    pub status: String,
    pub instance_url: String,
    pub committed_revision: Option<String>,
    pub error: Option<String>,
    pub updated_at: String,
    /// The region the tenant was placed in (null without a cluster catalogue).
    pub region: Option<String>,
    /// Its cluster; null while it waits for room (`unplaced`) or without a catalogue.
    pub cluster: Option<String>,
}

/// Everything `me`, login and the admin view return about a customer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    pub customer: CustomerView,
    pub subscription: Option<SubscriptionView>,
    pub license: Option<LicenseView>,
    pub deployment: Option<DeploymentView>,
}

impl From<accounts::CustomerRow> for CustomerView {
    fn from(c: accounts::CustomerRow) -> Self {
        CustomerView {
            customer_id: c.id,
            email: c.email,
            company_name: c.company_name,
            full_name: c.full_name,
            created_at: c.created_at,
        }
    }
}

/// Whole days left in the trial, rounded up, never negative.
pub fn trial_days_remaining(trial_ends_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> i64 {
    trial_ends_at.map_or(0, |end| {
        let secs = (end - now).num_seconds().max(0);
        (secs + 86_399) / 86_400
    })
}

pub fn subscription_view(
    s: accounts::SubscriptionRow,
    now: DateTime<Utc>,
) -> anyhow::Result<SubscriptionView> {
    let trial_end = s.trial_ends_at.as_deref().map(db::parse_ts).transpose()?;
    Ok(SubscriptionView {
        trial_days_remaining: trial_days_remaining(trial_end, now),
        plan: s.plan,
        status: s.status,
        trial_ends_at: s.trial_ends_at,
        current_period_ends_at: s.current_period_ends_at,
    })
}

pub fn deployment_view(d: accounts::DeploymentRow) -> DeploymentView {
    DeploymentView {
        status: d.status,
        instance_url: d.instance_url,
        committed_revision: d.committed_revision,
        error: d.error,
        updated_at: d.updated_at,
        region: None,
        cluster: None,
    }
}

pub async fn load(
    handles: &AccountsHandles,
    customer_id: &str,
    now: DateTime<Utc>,
) -> Result<AccountView, AccountError> {
    let pool = &handles.db.pool;
    let customer = accounts::customer_by_id(pool, customer_id)
        .await?
        .ok_or(AccountError::NotFound("no such customer"))?;
    let subscription = accounts::subscription(pool, customer_id)
        .await?
        .map(|s| subscription_view(s, now))
        .transpose()?;
    let license = licenses::latest(pool, customer_id).await?.map(|l| {
        let plan = handles.plans.get(&l.plan);
        LicenseView {
            jwt: None,
            features: plan.map(|p| p.features.clone()),
            limits: plan.map(|p| p.limits.clone()),
            plan: l.plan,
            issued_at: l.issued_at,
            expires_at: l.expires_at,
        }
    });
    let placement = crate::db::clusters::placement(pool, customer_id).await?;
    let deployment = accounts::deployment(pool, customer_id)
        .await?
        .map(deployment_view)
        .map(|d| DeploymentView {
            region: placement.as_ref().map(|p| p.region.clone()),
            cluster: placement.and_then(|p| p.cluster),
            ..d
        });
    Ok(AccountView {
        customer: customer.into(),
        subscription,
        license,
        deployment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn trial_days_round_up_and_stop_at_zero() {
        let now = Utc::now();
        assert_eq!(
            trial_days_remaining(Some(now + Duration::days(14)), now),
            14
        );
        assert_eq!(trial_days_remaining(Some(now + Duration::hours(1)), now), 1);
        assert_eq!(trial_days_remaining(Some(now - Duration::days(3)), now), 0);
        assert_eq!(trial_days_remaining(None, now), 0);
    }
}
