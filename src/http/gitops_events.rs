//! Sync reports pushed by the cluster: Flux notification-controller events
//! (`POST /api/gitops/flux/events`, HMAC-signed) and argocd-notifications webhooks
//! (`POST /api/gitops/argocd/events`, bearer token). Authentication comes first and works on
//! the raw body, so nothing about an unauthenticated request is parsed or recorded. Events
//! about objects that are no tenant's, or about unknown tenants, are answered 202 `ignored`
//! (the senders retry on errors, and there is nothing to retry).
//!
//! Many clusters: `/api/gitops/clusters/<name>/{flux,argocd}/events` verify the same schemes
//! with that cluster's own secret (`billing cluster add|rotate-secret`), record which cluster
//! spoke, and refuse (409, logged, not applied) a report about a tenant placed elsewhere.

use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::extract::{SignedBody, MAX_BODY_BYTES};
use crate::app::SharedApp;
use crate::http::error::ApiError;
use crate::watcher::clusters::{self, Credential, Placed};
use crate::watcher::{self, argocd, flux, Outcome, Report, Source};

/// The report as sent, declared as JSON, as notification-controller and argocd-notifications
/// (with the shipped `flux/argocd/notifications.yaml`) send it.
type RawBody = SignedBody<MAX_BODY_BYTES>;

fn configured(secret: &Option<SecretString>) -> Option<&str> {
    secret
        .as_ref()
        .map(|s| s.expose_secret())
        .filter(|s| !s.is_empty())
}

type Answer = (StatusCode, Json<Value>);

/// Records the report (if it is about a tenant) and says what became of it: always 202, as
/// the senders retry anything else and an ignored report is not worth retrying.
async fn answer(app: &SharedApp, report: Result<Report, &'static str>) -> Result<Answer, ApiError> {
    let (customer_id, outcome) = match report {
        Ok(report) => {
            let outcome = watcher::record(&app.watcher, &report).await?;
            if let Outcome::Ignored { reason } = &outcome {
                tracing::debug!(customer_id = %report.customer_id, source = report.source.as_str(), reason, "sync report ignored");
            }
            (Some(report.customer_id), outcome)
        }
        Err(reason) => {
            tracing::debug!(reason, "sync report about no tenant ignored");
            (None, Outcome::Ignored { reason })
        }
    };
    let mut body = serde_json::to_value(&outcome).map_err(anyhow::Error::from)?;
    body["customer_id"] = json!(customer_id);
    Ok((StatusCode::ACCEPTED, Json(body)))
}

/// `POST /api/gitops/flux/events`: one notification-controller event.
#[utoipa::path(
    post, path = "/api/gitops/flux/events", tag = "webhooks",
    params(("X-Signature" = String, Header, description = "`sha256=<HMAC-SHA256 of the body under FLUX_WEBHOOK_SECRET>`")),
    request_body(content = Object, description = "A notification-controller event (generic-hmac provider)"),
    responses(
        (status = 202, description = "Recorded, or ignored and why", body = crate::http::openapi::SyncAnswer),
        (status = 401, description = "Missing or wrong signature, or FLUX_WEBHOOK_SECRET unset", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn flux_event(
    State(app): State<SharedApp>,
    headers: HeaderMap,
    SignedBody(body): RawBody,
) -> Result<Answer, ApiError> {
    let Some(secret) = configured(&app.config.cluster.flux_webhook_secret) else {
        return Err(ApiError::Unauthorized(
            "FLUX_WEBHOOK_SECRET is not set: Flux events are refused",
        ));
    };
    let event = verified_flux(&headers, &body, secret)?;
    answer(&app, flux::event_report(&event)).await
}

/// The event, once its `X-Signature` checks out under `secret`.
fn verified_flux(headers: &HeaderMap, body: &[u8], secret: &str) -> Result<flux::Event, ApiError> {
    let signature = headers
        .get(flux::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    if let Err(err) = flux::verify_signature(signature, body, secret.as_bytes()) {
        tracing::debug!(error = %err, "Flux event refused");
        return Err(ApiError::Unauthorized(match err {
            flux::SignatureError::Missing => "X-Signature header required",
            _ => "invalid X-Signature",
        }));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

/// `POST /api/gitops/argocd/events`: one argocd-notifications webhook (`template.billing-sync`).
#[utoipa::path(
    post, path = "/api/gitops/argocd/events", tag = "webhooks", security(("argocd" = [])),
    request_body(content = Object, description = "An argocd-notifications webhook (template billing-sync)"),
    responses(
        (status = 202, description = "Recorded, or ignored and why", body = crate::http::openapi::SyncAnswer),
        (status = 401, description = "Missing or wrong bearer token, or ARGOCD_WEBHOOK_TOKEN unset", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn argocd_event(
    State(app): State<SharedApp>,
    headers: HeaderMap,
    SignedBody(body): RawBody,
) -> Result<Answer, ApiError> {
    let Some(token) = configured(&app.config.cluster.argocd_webhook_token) else {
        return Err(ApiError::Unauthorized(
            "ARGOCD_WEBHOOK_TOKEN is not set: Argo CD events are refused",
        ));
    };
    let body = verified_argocd(&headers, &body, token)?;
    answer(
        &app,
        argocd::AppStatus::from_webhook(&body).report(Source::ArgoEvent),
    )
    .await
}

/// The body, once its bearer token matches `token`.
fn verified_argocd(headers: &HeaderMap, body: &[u8], token: &str) -> Result<Value, ApiError> {
    let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !argocd::bearer_matches(authorization, token) {
        return Err(ApiError::Unauthorized("invalid or missing bearer token"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

/// The secret of cluster `name`: 404 for an unknown cluster, 401 for one without a secret.
async fn cluster_secret(app: &SharedApp, name: &str) -> Result<SecretString, ApiError> {
    match clusters::credential(&app.watcher, name).await? {
        Credential::Secret(secret) => Ok(secret),
        Credential::NoSuchCluster => Err(ApiError::NotFound("no such cluster")),
        Credential::NoSecret => Err(ApiError::Unauthorized(
            "this cluster has no event secret yet: run `billing cluster rotate-secret`",
        )),
    }
}

/// Records a verified report from cluster `name`, unless it is about a tenant placed elsewhere.
async fn answer_from(
    app: &SharedApp,
    name: &str,
    report: Result<Report, &'static str>,
) -> Result<Answer, ApiError> {
    let report = match report {
        Ok(report) => report.said_by(Some(name)),
        Err(reason) => return answer(app, Err(reason)).await,
    };
    match clusters::placed(&app.watcher, &report.customer_id, name).await? {
        Placed::Here | Placed::UnknownTenant => answer(app, Ok(report)).await,
        Placed::Elsewhere(placed_on) => {
            tracing::warn!(
                cluster = name, customer_id = %report.customer_id,
                placed_on = placed_on.as_deref().unwrap_or("none"),
                source = report.source.as_str(),
                "sync report refused: the tenant is not placed on the reporting cluster"
            );
            Err(ApiError::Conflict {
                code: "tenant_not_on_cluster",
                message: format!(
                    "tenant {} is not placed on cluster {name}; the report was not applied",
                    report.customer_id
                ),
            })
        }
    }
}

/// `POST /api/gitops/clusters/{name}/flux/events`: one cluster's notification-controller event.
#[utoipa::path(
    post, path = "/api/gitops/clusters/{name}/flux/events", tag = "webhooks",
    params(
        ("name" = String, Path, description = "The cluster, as in `billing cluster list`"),
        ("X-Signature" = String, Header, description = "`sha256=<HMAC-SHA256 of the body under the cluster's event secret>`"),
    ),
    request_body(content = Object, description = "A notification-controller event (generic-hmac provider)"),
    responses(
        (status = 202, description = "Recorded (with the cluster), or ignored and why", body = crate::http::openapi::SyncAnswer),
        (status = 401, description = "Missing or wrong signature, or the cluster has no event secret", body = crate::http::openapi::ApiErrorBody),
        (status = 404, description = "No such cluster", body = crate::http::openapi::ApiErrorBody),
        (status = 409, description = "The tenant is not placed on this cluster: not applied", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn cluster_flux_event(
    State(app): State<SharedApp>,
    Path(name): Path<String>,
    headers: HeaderMap,
    SignedBody(body): RawBody,
) -> Result<Answer, ApiError> {
    let secret = cluster_secret(&app, &name).await?;
    let event = verified_flux(&headers, &body, secret.expose_secret())?;
    answer_from(&app, &name, flux::event_report(&event)).await
}

/// `POST /api/gitops/clusters/{name}/argocd/events`: one cluster's argocd-notifications webhook.
#[utoipa::path(
    post, path = "/api/gitops/clusters/{name}/argocd/events", tag = "webhooks", security(("argocd" = [])),
    params(("name" = String, Path, description = "The cluster, as in `billing cluster list`")),
    request_body(content = Object, description = "An argocd-notifications webhook (template billing-sync), `Authorization: Bearer <the cluster's event secret>`"),
    responses(
        (status = 202, description = "Recorded (with the cluster), or ignored and why", body = crate::http::openapi::SyncAnswer),
        (status = 401, description = "Missing or wrong bearer token, or the cluster has no event secret", body = crate::http::openapi::ApiErrorBody),
        (status = 404, description = "No such cluster", body = crate::http::openapi::ApiErrorBody),
        (status = 409, description = "The tenant is not placed on this cluster: not applied", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn cluster_argocd_event(
    State(app): State<SharedApp>,
    Path(name): Path<String>,
    headers: HeaderMap,
    SignedBody(body): RawBody,
) -> Result<Answer, ApiError> {
    let secret = cluster_secret(&app, &name).await?;
    let body = verified_argocd(&headers, &body, secret.expose_secret())?;
    let report = argocd::AppStatus::from_webhook(&body).report(Source::ArgoEvent);
    answer_from(&app, &name, report).await
}
