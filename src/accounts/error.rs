//! What the account workflows refuse or fail with. `http` maps each to a status and the JSON
//! error body; nothing here knows status codes.

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// A field is missing or malformed.
    #[error("{message}")]
    Validation {
        code: &'static str,
        message: String,
        field: Option<&'static str>,
    },
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("an account with this email, or one that looks the same, already exists")]
    EmailTaken,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("too many failed login attempts")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error("{0}")]
    NotFound(&'static str),
    /// A query failed; `http` tells an outage or a full disk from a bug.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AccountError {
    pub fn validation(code: &'static str, field: &'static str, message: impl Into<String>) -> Self {
        AccountError::Validation {
            code,
            message: message.into(),
            field: Some(field),
        }
    }
}
