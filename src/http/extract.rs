//! Request extractors: JSON bodies with the API's error shape, request metadata for the
//! audit log, and the two kinds of caller authentication (admin token, customer session).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::accounts::RequestMeta;
use crate::app::SharedApp;
use crate::http::error::ApiError;

pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Whether `Content-Type` is `application/json` or an `application/*+json` type, with any
/// parameters (`charset=utf-8`). Requiring it makes a cross-origin browser POST need a CORS
/// preflight: a `text/plain` form post can no longer reach a JSON endpoint.
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let subtype = subtype.to_ascii_lowercase();
    kind.eq_ignore_ascii_case("application") && (subtype == "json" || subtype.ends_with("+json"))
}

/// Refuses a request body that is not declared as JSON (415).
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    if is_json(headers) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// A JSON body of at most [`MAX_BODY_BYTES`], sent as `application/json` (see [`is_json`]).
pub struct JsonBody(pub serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        require_json(req.headers())?;
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::MalformedJson(e.to_string()))
    }
}

/// A body of at most [`MAX_BODY_BYTES`] that may be empty, for routes where only some callers
/// must send JSON ([`RawBody::json`] checks it then).
pub struct RawBody(pub Bytes);

impl RawBody {
    /// The body as JSON, declared so (see [`is_json`]).
    pub fn json(&self, headers: &HeaderMap) -> Result<serde_json::Value, ApiError> {
        require_json(headers)?;
        serde_json::from_slice(&self.0).map_err(|e| ApiError::MalformedJson(e.to_string()))
    }
}

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        read_body(req, state, MAX_BODY_BYTES).await.map(RawBody)
    }
}

/// A body declared as JSON, exactly as sent (signatures are over these bytes, not over a
/// re-serialisation), within the route's `DefaultBodyLimit`, which is `LIMIT`.
pub struct SignedBody<const LIMIT: usize>(pub Bytes);

impl<S: Send + Sync, const LIMIT: usize> FromRequest<S> for SignedBody<LIMIT> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        require_json(req.headers())?;
        read_body(req, state, LIMIT).await.map(SignedBody)
    }
}

/// The body, within the `DefaultBodyLimit` of its route, which is `limit`: the number the
/// 413 names.
pub async fn read_body<S: Send + Sync>(
    req: Request,
    state: &S,
    limit: usize,
) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::MalformedJson(e.body_text())
        }
    })
}

impl FromRequestParts<SharedApp> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &SharedApp,
    ) -> Result<Self, Self::Rejection> {
        // The last entry is the one the trusted proxy appended (the peer it saw); earlier ones
        // are whatever the client sent, so they cannot key the login throttle.
        let forwarded = app
            .config
            .trust_forwarded_for
            .then(|| parts.headers.get_all("x-forwarded-for").iter().next_back())
            .flatten()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(512).collect());
        Ok(RequestMeta {
            client_ip: forwarded.or(peer),
            user_agent,
        })
    }
}

pub use crate::model::bearer::bearer_credentials;

fn bearer(parts: &Parts) -> Option<&str> {
    bearer_credentials(parts.headers.get(AUTHORIZATION)?.to_str().ok()?)
}

/// Proof that the caller presented `ADMIN_API_TOKEN`.
pub struct Admin;

impl FromRequestParts<SharedApp> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, ApiError> {
        let Some(expected) = app.config.admin_token() else {
            return Err(ApiError::AdminDisabled);
        };
        let given = bearer(parts).ok_or(ApiError::Unauthorized("admin bearer token required"))?;
        if bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes())) {
            Ok(Admin)
        } else {
            Err(ApiError::Unauthorized("invalid admin token"))
        }
    }
}

/// A caller allowed to read `/metrics`: the admin, or a scraper with `METRICS_TOKEN` (so
/// Prometheus does not need the admin token).
pub struct MetricsReader;

impl FromRequestParts<SharedApp> for MetricsReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, ApiError> {
        let scraper = app.config.metrics_token.as_ref().is_some_and(|expected| {
            !expected.expose_secret().is_empty()
                && bearer(parts).is_some_and(|given| {
                    bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes()))
                })
        });
        if scraper {
            return Ok(MetricsReader);
        }
        Admin::from_request_parts(parts, app)
            .await
            .map(|Admin| MetricsReader)
    }
}

/// The customer whose valid session token was presented, and who is not deleted.
pub struct CustomerSession(pub String);

impl FromRequestParts<SharedApp> for CustomerSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized("session token required"))?;
        let invalid = ApiError::Unauthorized("invalid or expired session token");
        let id = app
            .sessions
            .verify(&app.config.license_issuer, token)
            .ok_or(invalid)?;
        // The signature outlives the account: a deleted customer's token must stop working.
        if !crate::db::erasure::is_live(&app.db.pool, &id).await? {
            return Err(ApiError::Unauthorized("invalid or expired session token"));
        }
        Ok(CustomerSession(id))
    }
}

/// Either the admin or a customer with a session: for resources both may read.
pub enum Caller {
    Admin,
    Customer(String),
}

impl Caller {
    /// Admins see every tenant; a customer only their own (others look nonexistent).
    pub fn may_see(&self, customer_id: &str) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Customer(own) if own == customer_id => Ok(()),
            Caller::Customer(_) => Err(ApiError::NotFound("no such customer")),
        }
    }
}

impl FromRequestParts<SharedApp> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, ApiError> {
        if Admin::from_request_parts(parts, app).await.is_ok() {
            return Ok(Caller::Admin);
        }
        CustomerSession::from_request_parts(parts, app)
            .await
            .map(|CustomerSession(id)| Caller::Customer(id))
    }
}
