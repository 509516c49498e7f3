//! Login: throttled per email and client address (see `throttle`), constant-shape failures, legacy bcrypt upgraded to argon2id.

use chrono::{Duration, Utc};
use serde::Serialize;
use serde_json::json;

use super::domain::{Email, Fields};
use super::password::{self, Verdict};
use super::view::{self, AccountView};
use super::{account_limit, throttle, RequestMeta};
use crate::accounts::AccountError;
use crate::accounts::AccountsHandles;
use crate::db::{self, accounts, audit};

pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

impl LoginRequest {
    pub fn from_json(body: serde_json::Value) -> Result<Self, AccountError> {
        let f = Fields::from_value(body)?;
        Ok(LoginRequest {
            email: f.required("email")?,
            password: f.required("password")?,
        })
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    pub message: &'static str,
    pub token: String,
    pub token_expires_at: String,
    #[serde(flatten)]
    pub account: AccountView,
}

fn entry(
    action: &'static str,
    customer_id: Option<&str>,
    meta: &RequestMeta,
    details: serde_json::Value,
) -> audit::AuditEntry {
    audit::AuditEntry {
        action,
        customer_id: customer_id.map(str::to_string),
        actor: customer_id.map_or_else(|| "anonymous".to_string(), |id| format!("customer:{id}")),
        client_ip: meta.client_ip.clone(),
        user_agent: meta.user_agent.clone(),
        details,
    }
}

pub async fn login(
    handles: &AccountsHandles,
    req: LoginRequest,
    meta: &RequestMeta,
) -> Result<LoginResponse, AccountError> {
    let now = Utc::now();
    // A malformed email cannot belong to anyone: it fails like a wrong password.
    let normalized = Email::parse(&req.email)
        .map(|e| e.normalized)
        .unwrap_or_else(|_| req.email.trim().to_lowercase());

    let addr = throttle::client_key(meta.client_ip.as_deref());
    if let Some((locked, retry_after_secs)) =
        throttle::locked_out(handles, &normalized, &addr, now).await?
    {
        handles.metrics.login_failed(locked.metric_reason());
        audit::record(
            &handles.db.pool,
            &db::ts(now),
            &entry(
                "customer.login_locked",
                None,
                meta,
                json!({ "email": normalized, "limit": locked.as_str() }),
            ),
        )
        .await?;
        return Err(AccountError::TooManyAttempts { retry_after_secs });
    }

    let customer = accounts::customer_by_email(&handles.db.pool, &normalized).await?;
    let stored = customer.as_ref().map_or_else(
        || password::dummy_hash().to_string(),
        |c| c.password_hash.clone(),
    );
    let password = req.password;
    let (verdict, password) = super::password::HASHING
        .run(move || {
            let verdict = password::verify(&password, &stored);
            (verdict, password)
        })
        .await?;

    let (customer, needs_rehash) = match (customer, verdict) {
        (Some(c), Verdict::Match { needs_rehash }) => (c, needs_rehash),
        (customer, _) => {
            let at = db::ts(now);
            throttle::record_failure(handles, &normalized, &addr, now).await?;
            let reason = match &customer {
                Some(c) => {
                    account_limit::warn_owner(handles, c, &normalized, meta, now).await?;
                    "wrong_password"
                }
                None => "unknown_email",
            };
            handles.metrics.login_failed(reason);
            let id = customer.as_ref().map(|c| c.id.as_str());
            audit::record(
                &handles.db.pool,
                &at,
                &entry(
                    "customer.login_failed",
                    id,
                    meta,
                    json!({ "email": normalized }),
                ),
            )
            .await?;
            return Err(AccountError::InvalidCredentials);
        }
    };

    let at = db::ts(now);
    if needs_rehash {
        let new_hash = super::password::HASHING
            .run(move || password::hash(&password))
            .await??;
        accounts::update_password_hash(&handles.db.pool, &customer.id, &new_hash, &at).await?;
        audit::record(
            &handles.db.pool,
            &at,
            &entry(
                "customer.password_rehashed",
                Some(&customer.id),
                meta,
                json!({ "to": "argon2id" }),
            ),
        )
        .await?;
    }
    throttle::forget_pair(handles, &normalized, &addr).await?;
    account_limit::remember(handles, &customer.id, &addr, now).await?;
    audit::record(
        &handles.db.pool,
        &at,
        &entry("customer.login", Some(&customer.id), meta, json!({})),
    )
    .await?;

    let (token, expires) = handles.sessions.issue(
        &handles.settings.license_issuer,
        &customer.id,
        now,
        Duration::minutes(handles.settings.session_ttl_minutes),
    )?;
    Ok(LoginResponse {
        message: "Login successful",
        token,
        token_expires_at: db::ts(expires),
        account: view::load(handles, &customer.id, now).await?,
    })
}
