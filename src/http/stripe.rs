//! `POST /api/webhooks/stripe`: Stripe's event deliveries, verified on the raw body.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;

use super::gitops_events::RawBody;
use crate::app::SharedApp;
use crate::billing::stripe::{self, Receipt};
use crate::error::ApiError;

pub async fn webhook(
    State(app): State<SharedApp>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<Receipt>, ApiError> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    Ok(Json(
        stripe::receive(&app, signature, &body, chrono::Utc::now()).await?,
    ))
}
