//! What the deploy requests (status, redeploy, rollback) refuse or fail with. `http` maps each
//! to a status and the JSON error body; nothing here knows status codes.

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A field is missing or malformed (an unknown revision to roll back to).
    #[error("{message}")]
    Validation {
        code: &'static str,
        message: String,
        field: Option<&'static str>,
    },
    #[error("{0}")]
    NotFound(&'static str),
    /// The request is valid but the tenant's state does not allow it.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// A query failed; `http` tells an outage or a full disk from a bug.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl DeployError {
    pub fn validation(code: &'static str, field: &'static str, message: impl Into<String>) -> Self {
        DeployError::Validation {
            code,
            message: message.into(),
            field: Some(field),
        }
    }
}
