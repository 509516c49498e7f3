//! The API error type: every failure a client can see, mapped to a status and one JSON shape
//! `{error, message, code, field}` that the old service's clients already parse. The workflows'
//! own errors (`AccountError`, `BillingError`, `DeployError`) become one here, and only here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::accounts::AccountError;
use crate::billing::BillingError;
use crate::deploy::DeployError;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Validation {
        code: &'static str,
        message: String,
        field: Option<&'static str>,
    },
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("an account with this email, or one that looks the same, already exists")]
    EmailTaken,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("too many failed login attempts")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("admin API is disabled: ADMIN_API_TOKEN is not set")]
    AdminDisabled,
    #[error("{0}")]
    Unavailable(String),
    /// The request is valid but the resource's state does not allow it.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Stripe did not answer, or refused: a 502, and nothing of ours was changed.
    #[error("{0}; nothing was changed")]
    Stripe(#[from] crate::billing::stripe::api::StripeError),
    /// The database cannot be reached (pool timeout, refused or dropped connection): the
    /// client may retry; the detail is logged, never sent.
    #[error("the database is unavailable; retry shortly")]
    DatabaseUnavailable(String),
    /// The database's disk is full: nothing was stored; the detail is logged, never sent.
    #[error("the service's storage is full; nothing was stored, retry later")]
    StorageFull(String),
    /// A Stripe webhook whose `Stripe-Signature` does not verify (missing, wrong, stale).
    #[error("{0}")]
    InvalidSignature(String),
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// A response axum or a layer produced without the JSON body (405, a bad query string),
    /// re-dressed in it by `http::rejections`.
    #[error("{message}")]
    Rejected { status: StatusCode, message: String },
    #[error(transparent)]
    Internal(anyhow::Error),
}

/// How long a client should wait before retrying after a database outage.
const DATABASE_RETRY_AFTER_SECS: u64 = 5;
/// A full disk needs an operator: a retry within seconds would fail the same way.
const STORAGE_RETRY_AFTER_SECS: u64 = 60;

impl ApiError {
    pub fn validation(code: &'static str, field: &'static str, message: impl Into<String>) -> Self {
        ApiError::Validation {
            code,
            message: message.into(),
            field: Some(field),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str, Option<&'static str>) {
        use ApiError::*;
        match self {
            Validation { code, field, .. } => {
                (StatusCode::BAD_REQUEST, "Validation failed", code, *field)
            }
            MalformedJson(_) => (
                StatusCode::BAD_REQUEST,
                "Malformed JSON",
                "invalid_json",
                None,
            ),
            PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload too large",
                "payload_too_large",
                None,
            ),
            EmailTaken => (
                StatusCode::CONFLICT,
                "Email already registered",
                "email_taken",
                Some("email"),
            ),
            InvalidCredentials => (
                StatusCode::UNAUTHORIZED,
                "Invalid credentials",
                "invalid_credentials",
                None,
            ),
            TooManyAttempts { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                "too_many_attempts",
                None,
            ),
            Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "unauthorized",
                None,
            ),
            NotFound(_) => (StatusCode::NOT_FOUND, "Not found", "not_found", None),
            AdminDisabled => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "admin_disabled",
                None,
            ),
            Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service unavailable",
                "unavailable",
                None,
            ),
            Conflict { code, .. } => (StatusCode::CONFLICT, "Conflict", code, None),
            Stripe(crate::billing::stripe::api::StripeError::Unavailable(_)) => (
                StatusCode::BAD_GATEWAY,
                "Bad gateway",
                "stripe_unavailable",
                None,
            ),
            Stripe(crate::billing::stripe::api::StripeError::Api { .. }) => {
                (StatusCode::BAD_GATEWAY, "Bad gateway", "stripe_error", None)
            }
            DatabaseUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service unavailable",
                "database_unavailable",
                None,
            ),
            StorageFull(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service unavailable",
                "storage_full",
                None,
            ),
            InvalidSignature(_) => (
                StatusCode::BAD_REQUEST,
                "Invalid signature",
                "invalid_signature",
                Some("Stripe-Signature"),
            ),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type",
                "unsupported_media_type",
                None,
            ),
            Rejected { status, .. } => (
                *status,
                status.canonical_reason().unwrap_or("Error"),
                rejection_code(*status),
                None,
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error",
                "internal_error",
                None,
            ),
        }
    }
}

#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
    pub message: String,
    pub code: &'a str,
    pub field: Option<&'a str>,
}

/// Carried on 500 responses so the logging middleware can record the cause
/// without ever sending it to the client.
#[derive(Clone, Debug)]
pub struct InternalErrorDetail(pub String);

impl ApiError {
    /// The status and the body a client gets (a 500's cause stays out of it).
    pub fn body(&self) -> (StatusCode, ErrorBody<'static>) {
        let (status, title, code, field) = self.parts();
        let message = match self {
            ApiError::Internal(_) => "an unexpected error occurred".to_string(),
            ApiError::Rejected { status, .. } if status.is_server_error() => {
                "an unexpected error occurred".to_string()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: title,
            message,
            code,
            field,
        };
        (status, body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.body();
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 9110 §11.6.1: a 401 names the scheme that would work (RFC 6750's Bearer).
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"billing\""),
            );
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The body is left unread, so the connection ends with this answer: say so, or a
            // client may send its next request on it and lose that one.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let retry_after = match &self {
            ApiError::TooManyAttempts { retry_after_secs } => Some(*retry_after_secs),
            ApiError::DatabaseUnavailable(_) => Some(DATABASE_RETRY_AFTER_SECS),
            ApiError::StorageFull(_) => Some(STORAGE_RETRY_AFTER_SECS),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        let detail = match &self {
            ApiError::Internal(err) => Some(format!("{err:#}")),
            ApiError::DatabaseUnavailable(detail) | ApiError::StorageFull(detail) => {
                Some(detail.clone())
            }
            ApiError::Stripe(err) => Some(err.to_string()),
            ApiError::Rejected { status, message } if status.is_server_error() => {
                Some(message.clone())
            }
            _ => None,
        };
        if let Some(detail) = detail {
            response
                .extensions_mut()
                .insert(InternalErrorDetail(detail));
        }
        response
    }
}

/// The `code` of a re-dressed framework response, by status.
fn rejection_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable_entity",
        s if s.is_server_error() => "internal_error",
        _ => "invalid_request",
    }
}

// The one place database errors become API errors, whichever way they travel (directly or
// wrapped in anyhow by a lower layer): an outage is a 503 the client may retry, never a 500.
// A full disk is a 503 too, told apart so that clients and operators see why.
impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&err) {
            ApiError::DatabaseUnavailable(err.to_string())
        } else if crate::db::storage::is_full(&err) {
            crate::db::storage::note_full();
            ApiError::StorageFull(err.to_string())
        } else {
            ApiError::Internal(err.into())
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        let cause = |test: fn(&sqlx::Error) -> bool| {
            err.chain()
                .any(|c| c.downcast_ref::<sqlx::Error>().is_some_and(test))
        };
        if cause(crate::db::is_unavailable) {
            ApiError::DatabaseUnavailable(format!("{err:#}"))
        } else if cause(crate::db::storage::is_full) {
            crate::db::storage::note_full();
            ApiError::StorageFull(format!("{err:#}"))
        } else {
            ApiError::Internal(err)
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::Validation {
                code,
                message,
                field,
            } => ApiError::Validation {
                code,
                message,
                field,
            },
            AccountError::MalformedJson(m) => ApiError::MalformedJson(m),
            AccountError::EmailTaken => ApiError::EmailTaken,
            AccountError::InvalidCredentials => ApiError::InvalidCredentials,
            AccountError::TooManyAttempts { retry_after_secs } => {
                ApiError::TooManyAttempts { retry_after_secs }
            }
            AccountError::NotFound(what) => ApiError::NotFound(what),
            AccountError::Database(e) => e.into(),
            AccountError::Internal(e) => e.into(),
        }
    }
}

impl From<BillingError> for ApiError {
    fn from(err: BillingError) -> Self {
        match err {
            BillingError::Validation {
                code,
                message,
                field,
            } => ApiError::Validation {
                code,
                message,
                field,
            },
            BillingError::MalformedJson(m) => ApiError::MalformedJson(m),
            BillingError::NotFound(what) => ApiError::NotFound(what),
            BillingError::Conflict { code, message } => ApiError::Conflict { code, message },
            BillingError::Unavailable(m) => ApiError::Unavailable(m),
            BillingError::InvalidSignature(m) => ApiError::InvalidSignature(m),
            BillingError::Stripe(e) => ApiError::Stripe(e),
            BillingError::Database(e) => e.into(),
            BillingError::Internal(e) => e.into(),
        }
    }
}

impl From<DeployError> for ApiError {
    fn from(err: DeployError) -> Self {
        match err {
            DeployError::Validation {
                code,
                message,
                field,
            } => ApiError::Validation {
                code,
                message,
                field,
            },
            DeployError::NotFound(what) => ApiError::NotFound(what),
            DeployError::Conflict { code, message } => ApiError::Conflict { code, message },
            DeployError::Database(e) => e.into(),
            DeployError::Internal(e) => e.into(),
        }
    }
}
