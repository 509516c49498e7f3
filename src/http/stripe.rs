//! `POST /api/webhooks/stripe`: Stripe's event deliveries, verified on the raw body.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;

use super::extract::SignedBody;
use crate::app::SharedApp;
use crate::billing::stripe::{self, Receipt};
use crate::http::error::ApiError;

/// This route's body limit, above the API's 64 KiB: a Stripe event embeds whole objects (an
/// invoice with its lines, a subscription with its items) and reaches several hundred KB. One
/// it cannot take is answered 413 on every retry and is lost once Stripe stops retrying.
pub const MAX_EVENT_BYTES: usize = 2 * 1024 * 1024;

#[utoipa::path(
    post, path = "/api/webhooks/stripe", tag = "webhooks",
    params(("Stripe-Signature" = String, Header, description = "Stripe's `t=...,v1=...` signature")),
    request_body(content = Object, description = "A Stripe event, up to 2 MiB"),
    responses(
        (status = 200, description = "Received (applied, unchanged, ignored or duplicate)", body = crate::billing::stripe::Receipt),
        (status = 400, description = "Bad signature or malformed event", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn webhook(
    State(app): State<SharedApp>,
    headers: HeaderMap,
    SignedBody(body): SignedBody<MAX_EVENT_BYTES>,
) -> Result<Json<Receipt>, ApiError> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    Ok(Json(
        stripe::receive(&app.billing, signature, &body, chrono::Utc::now()).await?,
    ))
}
