//! The API error type: every failure a client can see, mapped to a status and one JSON shape
//! `{error, message, code, field}` that the old service's clients already parse.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

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
    #[error("an account with this email already exists")]
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
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, title, code, field) = self.parts();
        let message = match &self {
            ApiError::Internal(_) => "an unexpected error occurred".to_string(),
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: title,
            message,
            code,
            field,
        };
        let mut response = (status, axum::Json(body)).into_response();
        match &self {
            ApiError::TooManyAttempts { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::Internal(err) => {
                response
                    .extensions_mut()
                    .insert(InternalErrorDetail(format!("{err:#}")));
            }
            _ => {}
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        ApiError::Internal(err.into())
    }
}

/// True when a database error is a unique-constraint violation (either backend).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
