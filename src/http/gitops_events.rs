//! Sync reports pushed by the cluster: Flux notification-controller events
//! (`POST /api/gitops/flux/events`, HMAC-signed) and argocd-notifications webhooks
//! (`POST /api/gitops/argocd/events`, bearer token). Authentication comes first and works on
//! the raw body, so nothing about an unauthenticated request is parsed or recorded. Events
//! about objects that are no tenant's, or about unknown tenants, are answered 202 `ignored`
//! (the senders retry on errors, and there is nothing to retry).

use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::extract::{SignedBody, MAX_BODY_BYTES};
use crate::app::SharedApp;
use crate::http::error::ApiError;
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
    let signature = headers
        .get(flux::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    if let Err(err) = flux::verify_signature(signature, &body, secret.as_bytes()) {
        tracing::debug!(error = %err, "Flux event refused");
        return Err(ApiError::Unauthorized(match err {
            flux::SignatureError::Missing => "X-Signature header required",
            _ => "invalid X-Signature",
        }));
    }
    let event: flux::Event =
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    answer(&app, flux::event_report(&event)).await
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
    let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !argocd::bearer_matches(authorization, token) {
        return Err(ApiError::Unauthorized("invalid or missing bearer token"));
    }
    let body: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    answer(
        &app,
        argocd::AppStatus::from_webhook(&body).report(Source::ArgoEvent),
    )
    .await
}
