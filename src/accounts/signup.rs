//! Signup: validate, hash, then write customer, trial subscription, license record, deployment
//! status and audit entry in one transaction.

use chrono::{Duration, Utc};
use serde::Serialize;
use serde_json::json;

use super::domain::{parse_name, CustomerId, Email, Fields};
use super::view::{CustomerView, DeploymentView, LicenseView, SubscriptionView};
use super::{password, RequestMeta};
use crate::accounts::AccountError;
use crate::accounts::AccountsHandles;
use crate::db::outbox;
use crate::db::{self, accounts, audit, licenses};
use crate::license::{self, LicenseSubject};
use crate::model::subscription::SubscriptionStatus;
use crate::placement::{self, PlacementError};
use crate::render::{SealedValues, TenantSpec, SECRET_NAME};
use crate::status::DeploymentStatus;

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A validated signup request.
pub struct SignupRequest {
    pub email: Email,
    pub password: String,
    pub company_name: String,
    pub full_name: Option<String>,
    /// Where the tenant should run; `DEFAULT_REGION` when absent (checked against the cluster
    /// catalogue at signup).
    pub region: Option<String>,
}

impl SignupRequest {
    pub fn from_json(body: serde_json::Value) -> Result<Self, AccountError> {
        let f = Fields::from_value(body)?;
        let email = Email::parse(&f.required("email")?)?;
        let password = parse_password(f.required("password")?)?;
        let company_name = parse_name("company_name", &f.required("company_name")?, 200)?;
        let full_name = f
            .optional("full_name")?
            .map(|n| parse_name("full_name", &n, 200))
            .transpose()?
            .filter(|n| !n.is_empty());
        let region = f
            .optional("region")?
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        Ok(SignupRequest {
            email,
            password,
            company_name,
            full_name,
            region,
        })
    }
}

pub fn parse_password(password: String) -> Result<String, AccountError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::validation(
            "weak_password",
            "password",
            format!("password must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::validation(
            "password_too_long",
            "password",
            format!("password must be at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(password)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignupResponse {
    pub message: &'static str,
    pub customer: CustomerView,
    pub subscription: SubscriptionView,
    pub license: LicenseView,
    pub deployment: DeploymentView,
}

pub async fn signup(
    handles: &AccountsHandles,
    req: SignupRequest,
    meta: &RequestMeta,
) -> Result<SignupResponse, AccountError> {
    // Before any work: an unknown region is the customer's mistake, answered at once.
    let region = handles
        .placement
        .region_for(req.region.as_deref())
        .await
        .map_err(refused_region)?;
    let password = req.password;
    let password_hash = super::password::HASHING
        .run(move || password::hash(&password))
        .await??;

    let now = Utc::now();
    let now_text = db::ts(now);
    let id = CustomerId::generate();
    let (plan_name, plan) = handles.plans.default_plan();
    let trial_ends_at = now + Duration::days(handles.plans.trial_days);
    let status = SubscriptionStatus::Trialing.as_str();
    let issued = license::issue(
        &handles.keys,
        &handles.settings.license_issuer,
        &LicenseSubject {
            customer_id: id.as_str(),
            customer_name: &req.company_name,
            plan_name,
            plan,
            subscription_status: status,
            trial_ends_at: Some(trial_ends_at),
            current_period_ends_at: None,
            grace_after_period: Duration::zero(),
        },
        now,
    )?;
    let sealed_secrets = crate::secrets::initial(&handles.sealing, id.as_str(), &issued.jwt)?;
    let instance_url = crate::config::instance_url(&handles.settings.base_domain, id.as_str());
    let footprint = match &region {
        Some(_) => Some(
            handles
                .placement
                .footprint(
                    &TenantSpec {
                        id: id.as_str().to_string(),
                        plan: plan_name.to_string(),
                        subscription_status: status.to_string(),
                        company_name: req.company_name.clone(),
                        email: req.email.display.clone(),
                        full_name: req.full_name.clone(),
                        restore_from: None,
                    },
                    &SealedValues {
                        secret_name: SECRET_NAME.to_string(),
                        encrypted: sealed_secrets
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.clone()))
                            .collect(),
                    },
                )
                .await?,
        ),
        None => None,
    };
    let subscription = accounts::SubscriptionRow {
        plan: plan_name.to_string(),
        status: status.to_string(),
        trial_ends_at: Some(db::ts(trial_ends_at)),
        current_period_ends_at: None,
    };
    let license_record = licenses::LicenseRecord {
        customer_id: id.as_str().to_string(),
        action: "issued".into(),
        plan: plan_name.to_string(),
        kid: issued.kid.clone(),
        jti: issued.claims.jti.clone(),
        token_sha256: issued.token_sha256.clone(),
        issued_at: now_text.clone(),
        expires_at: db::ts(trial_ends_at),
    };
    let entry = audit::AuditEntry {
        action: "customer.signup",
        customer_id: Some(id.as_str().to_string()),
        actor: format!("customer:{}", id.as_str()),
        client_ip: meta.client_ip.clone(),
        user_agent: meta.user_agent.clone(),
        details: json!({
            "email": req.email.display,
            "company_name": req.company_name,
            "plan": plan_name,
            "subscription_status": status,
            "trial_ends_at": subscription.trial_ends_at,
            "license_jti": issued.claims.jti,
            "license_kid": issued.kid,
            "region": region,
        }),
    };

    let mut tx = handles.db.pool.begin().await?;
    // The customer row goes first: it takes SQLite's write lock before any read, and its
    // unique email and skeleton indexes are what turn a concurrent duplicate or look-alike
    // into a clean 409.
    let inserted = accounts::insert_customer(
        &mut *tx,
        &accounts::NewCustomer {
            id: id.as_str(),
            email: &req.email.display,
            email_normalized: &req.email.normalized,
            email_skeleton: &req.email.skeleton,
            password_hash: &password_hash,
            company_name: &req.company_name,
            full_name: req.full_name.as_deref(),
            now: &now_text,
        },
    )
    .await?;
    if !inserted {
        return Err(AccountError::EmailTaken);
    }
    accounts::insert_subscription(&mut *tx, id.as_str(), &subscription, &now_text).await?;
    licenses::insert(&mut *tx, &license_record).await?;
    // Placed in this transaction, with the region's clusters locked: concurrent signups on
    // several replicas never overbook a cluster.
    let cluster = match (&region, footprint) {
        (Some(region), Some(need)) => {
            let backend = handles.db.backend;
            placement::place(&mut tx, backend, id.as_str(), region, need, &now_text).await?
        }
        _ => None,
    };
    let unplaced = region.is_some() && cluster.is_none();
    let deployment_status = if unplaced {
        DeploymentStatus::Unplaced
    } else {
        DeploymentStatus::Pending
    };
    accounts::insert_deployment(
        &mut *tx,
        id.as_str(),
        deployment_status.as_str(),
        &instance_url,
        &now_text,
    )
    .await?;
    for (name, sealed) in &sealed_secrets {
        db::secrets::upsert(&mut *tx, id.as_str(), name, sealed, &now_text).await?;
    }
    // The outbox job commits with the customer: a 201 always comes with a stack to build.
    outbox::enqueue(&mut *tx, id.as_str(), outbox::Action::Create, now).await?;
    if unplaced {
        // Not in Git until a cluster has room for it (the placement worker releases it).
        outbox::hold_for(&mut *tx, id.as_str()).await?;
    }
    let trial_end_day = trial_ends_at.format("%Y-%m-%d").to_string();
    crate::notify::queue(
        &mut *tx,
        &handles.settings.smtp_from,
        id.as_str(),
        &req.email.display,
        &crate::notify::Email::Welcome {
            company_name: &req.company_name,
            trial_ends_at: &trial_end_day,
            instance_url: &instance_url,
        },
        "",
        now,
    )
    .await?;
    audit::record(&mut *tx, &now_text, &entry).await?;
    tx.commit().await?;
    handles.worker_wake.notify_one();
    tracing::info!(
        customer_id = id.as_str(),
        plan = plan_name,
        cluster = cluster.as_deref().unwrap_or("-"),
        "customer signed up"
    );

    Ok(SignupResponse {
        message: "Signup successful",
        customer: CustomerView {
            customer_id: id.as_str().to_string(),
            email: req.email.display,
            company_name: req.company_name,
            full_name: req.full_name,
            created_at: now_text.clone(),
        },
        subscription: SubscriptionView {
            plan: subscription.plan,
            status: subscription.status,
            trial_ends_at: subscription.trial_ends_at,
            trial_days_remaining: handles.plans.trial_days,
            current_period_ends_at: None,
        },
        license: LicenseView {
            jwt: Some(issued.jwt),
            plan: plan_name.to_string(),
            issued_at: now_text.clone(),
            expires_at: license_record.expires_at,
            features: Some(plan.features.clone()),
            limits: Some(plan.limits.clone()),
        },
        deployment: DeploymentView {
            status: deployment_status.as_str().into(),
            instance_url,
            committed_revision: None,
            error: None,
            updated_at: now_text,
            region,
            cluster,
        },
    })
}

/// A region the catalogue does not know is the customer's mistake: a 400 naming the known
/// regions (field `region`).
fn refused_region(err: PlacementError) -> AccountError {
    match err {
        PlacementError::UnknownRegion { .. } => {
            AccountError::validation("unknown_region", "region", err.to_string())
        }
        PlacementError::MissingRegion { .. } => {
            AccountError::validation("region_required", "region", err.to_string())
        }
        PlacementError::Database(e) => AccountError::Database(e),
        PlacementError::Internal(e) => AccountError::Internal(e),
    }
}

/// Gives the live customers stored before emails had a skeleton theirs, at start. Of two
/// earlier accounts that look alike the older keeps the look; the other stays without one
/// (it logs in as before) and is logged, for an operator to settle.
pub async fn backfill_skeletons(db: &crate::db::Db) -> anyhow::Result<()> {
    for (id, email) in accounts::without_skeleton(&db.pool).await? {
        let skeleton = super::text::skeleton(&email);
        if !accounts::set_skeleton(&db.pool, &id, &skeleton).await? {
            tracing::warn!(customer_id = %id, "an earlier customer's email looks like another's");
        }
    }
    Ok(())
}
