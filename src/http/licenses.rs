//! License endpoints: the public key, the JWKS, and online verification.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::extract::JsonBody;
use crate::accounts::domain::Fields;
use crate::app::SharedApp;
use crate::http::error::Result;
use crate::license;

#[utoipa::path(
    get, path = "/api/licenses/public-key", tag = "licenses",
    responses((status = 200, description = "The current signing key", body = crate::http::openapi::PublicKey))
)]
pub async fn public_key(State(app): State<SharedApp>) -> Json<serde_json::Value> {
    let current = &app.keys.verifying[0];
    Json(json!({ "public_key": current.public_pem, "algorithm": "RS256", "kid": current.kid }))
}

#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "licenses",
    responses((status = 200, description = "Every key that verifies licenses", body = crate::http::openapi::Jwks))
)]
pub async fn jwks(State(app): State<SharedApp>) -> Json<serde_json::Value> {
    let keys: Vec<_> = app.keys.verifying.iter().map(|k| k.jwk()).collect();
    Json(json!({ "keys": keys }))
}

#[utoipa::path(
    post, path = "/api/licenses/verify", tag = "licenses",
    request_body = crate::http::openapi::VerifyBody,
    responses(
        (status = 200, description = "Valid, with its claims", body = crate::http::openapi::LicenseValid),
        (status = 401, description = "Invalid, and why", body = crate::http::openapi::LicenseInvalid),
        (status = 400, description = "No license field", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn verify(State(app): State<SharedApp>, JsonBody(body): JsonBody) -> Result<Response> {
    let token = Fields::from_value(body)?.required("license")?;
    Ok(
        match license::verify(&app.keys, &app.config.license_issuer, token.trim()) {
            Ok(claims) => Json(json!({ "valid": true, "data": claims })).into_response(),
            Err(why) => (
                StatusCode::UNAUTHORIZED,
                Json(json!({ "valid": false, "error": why.to_string() })),
            )
                .into_response(),
        },
    )
}
