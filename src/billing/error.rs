//! What billing refuses or fails with (a bad request, Stripe's refusal, a missing setting).
//! `http` maps each to a status and the JSON error body; nothing here knows status codes.

use super::stripe::api::StripeError;

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// A field is missing or malformed.
    #[error("{message}")]
    Validation {
        code: &'static str,
        message: String,
        field: Option<&'static str>,
    },
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    NotFound(&'static str),
    /// The request is valid but the subscription's state does not allow it.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// A part billing needs is not configured (Stripe's key).
    #[error("{0}")]
    Unavailable(String),
    /// A Stripe webhook whose `Stripe-Signature` does not verify (missing, wrong, stale).
    #[error("{0}")]
    InvalidSignature(String),
    /// Stripe did not answer, or refused: nothing of ours was changed.
    #[error("{0}; nothing was changed")]
    Stripe(#[from] StripeError),
    /// A query failed; `http` tells an outage or a full disk from a bug.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl BillingError {
    pub fn validation(code: &'static str, field: &'static str, message: impl Into<String>) -> Self {
        BillingError::Validation {
            code,
            message: message.into(),
            field: Some(field),
        }
    }
}
