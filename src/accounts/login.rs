//! Login: throttled per email, constant-shape failures, legacy bcrypt upgraded to argon2id.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::json;

use super::domain::{Email, Fields};
use super::password::{self, Verdict};
use super::view::{self, AccountView};
use super::RequestMeta;
use crate::app::App;
use crate::db::{self, accounts, audit, login_throttle};
use crate::error::ApiError;

pub const MAX_FAILURES: i64 = 5;
pub const FAILURE_WINDOW_MINUTES: i64 = 15;

pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

impl LoginRequest {
    pub fn from_json(body: serde_json::Value) -> Result<Self, ApiError> {
        let f = Fields::from_value(body)?;
        Ok(LoginRequest {
            email: f.required("email")?,
            password: f.required("password")?,
        })
    }
}

#[derive(Debug, Serialize)]
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

/// Seconds until the oldest failure in the window leaves it, when the email is locked out.
async fn lockout(
    app: &App,
    email_normalized: &str,
    now: DateTime<Utc>,
) -> Result<Option<u64>, ApiError> {
    let window = Duration::minutes(FAILURE_WINDOW_MINUTES);
    let (count, oldest) =
        login_throttle::failures_since(&app.db.pool, email_normalized, &db::ts(now - window))
            .await?;
    if count < MAX_FAILURES {
        return Ok(None);
    }
    let oldest = oldest
        .as_deref()
        .map(db::parse_ts)
        .transpose()?
        .unwrap_or(now);
    let wait = (oldest + window - now).num_seconds().max(1);
    Ok(Some(wait as u64))
}

pub async fn login(
    app: &App,
    req: LoginRequest,
    meta: &RequestMeta,
) -> Result<LoginResponse, ApiError> {
    let now = Utc::now();
    // A malformed email cannot belong to anyone: it fails like a wrong password.
    let normalized = Email::parse(&req.email)
        .map(|e| e.normalized)
        .unwrap_or_else(|_| req.email.trim().to_lowercase());

    if let Some(retry_after_secs) = lockout(app, &normalized, now).await? {
        audit::record(
            &app.db.pool,
            &db::ts(now),
            &entry(
                "customer.login_locked",
                None,
                meta,
                json!({ "email": normalized }),
            ),
        )
        .await?;
        return Err(ApiError::TooManyAttempts { retry_after_secs });
    }

    let customer = accounts::customer_by_email(&app.db.pool, &normalized).await?;
    let stored = customer.as_ref().map_or_else(
        || password::dummy_hash().to_string(),
        |c| c.password_hash.clone(),
    );
    let password = req.password;
    let (verdict, password) = crate::pool::HASHING
        .run(move || {
            let verdict = password::verify(&password, &stored);
            (verdict, password)
        })
        .await?;

    let (customer, needs_rehash) = match (customer, verdict) {
        (Some(c), Verdict::Match { needs_rehash }) => (c, needs_rehash),
        (customer, _) => {
            let at = db::ts(now);
            login_throttle::record_failure(&app.db.pool, &normalized, &at).await?;
            let id = customer.as_ref().map(|c| c.id.as_str());
            audit::record(
                &app.db.pool,
                &at,
                &entry(
                    "customer.login_failed",
                    id,
                    meta,
                    json!({ "email": normalized }),
                ),
            )
            .await?;
            return Err(ApiError::InvalidCredentials);
        }
    };

    let at = db::ts(now);
    if needs_rehash {
        let new_hash = crate::pool::HASHING
            .run(move || password::hash(&password))
            .await??;
        accounts::update_password_hash(&app.db.pool, &customer.id, &new_hash, &at).await?;
        audit::record(
            &app.db.pool,
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
    login_throttle::clear(&app.db.pool, &normalized).await?;
    audit::record(
        &app.db.pool,
        &at,
        &entry("customer.login", Some(&customer.id), meta, json!({})),
    )
    .await?;

    let (token, expires) = app.sessions.issue(
        &app.config.license_issuer,
        &customer.id,
        now,
        Duration::minutes(app.config.session_ttl_minutes),
    )?;
    Ok(LoginResponse {
        message: "Login successful",
        token,
        token_expires_at: db::ts(expires),
        account: view::load(app, &customer.id, now).await?,
    })
}
