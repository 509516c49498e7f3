//! A small client of Stripe's REST API: form-encoded requests (bracket notation for nested
//! params, `metadata[customer_id]`), the secret key as a bearer token, a short timeout, and
//! Stripe's error JSON `{error: {type, message, code}}` as a typed error.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Stripe's `error.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Stripe's `api_error` (a shorter name here; serde keeps Stripe's).
    #[serde(rename = "api_error")]
    Api,
    CardError,
    IdempotencyError,
    InvalidRequestError,
    #[serde(other)]
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// No answer: refused, reset, timed out, or not Stripe's JSON.
    #[error("Stripe did not answer: {0}")]
    Unavailable(String),
    /// Stripe answered with an error.
    #[error("Stripe refused the request ({status}, {kind:?}, {code:?}): {message}")]
    Api {
        status: u16,
        kind: ErrorKind,
        message: String,
        code: Option<String>,
    },
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorObject,
}

#[derive(Deserialize)]
struct ErrorObject {
    #[serde(rename = "type")]
    kind: ErrorKind,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

/// A created object: only what we keep of it.
#[derive(Debug, Deserialize)]
pub struct Customer {
    pub id: String,
    /// `metadata.customer_id`: our id, set by us or by whoever made the customer in Stripe.
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub status: String,
}

#[derive(Debug, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    pub url: String,
}

#[derive(Debug, Deserialize)]
pub struct PortalSession {
    pub url: String,
}

/// The customer fields Stripe gets when we create its customer.
pub struct NewCustomer<'a> {
    pub customer_id: &'a str,
    pub email: &'a str,
    pub name: &'a str,
}

/// A Checkout Session in subscription mode for one price.
pub struct NewCheckout<'a> {
    pub customer_id: &'a str,
    pub stripe_customer_id: &'a str,
    pub plan: &'a str,
    pub price: &'a str,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
}

pub struct Client<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    key: &'a SecretString,
    /// Per call: short, so a checkout click gets an answer while Stripe is slow.
    timeout: Duration,
}

impl<'a> Client<'a> {
    pub fn new(
        http: &'a reqwest::Client,
        base: &'a str,
        key: &'a SecretString,
        timeout: Duration,
    ) -> Self {
        Client {
            http,
            base: base.trim_end_matches('/'),
            key,
            timeout,
        }
    }

    /// `POST /v1/customers`, linked back to us by `metadata[customer_id]`. The idempotency key
    /// makes a retry after a lost answer return the same Stripe customer, not a second one.
    pub async fn create_customer(&self, c: &NewCustomer<'_>) -> Result<Customer, StripeError> {
        let form = [
            ("email", c.email),
            ("name", c.name),
            ("metadata[customer_id]", c.customer_id),
        ];
        let key = format!("billing-customer-{}", c.customer_id);
        self.post("/v1/customers", &form, Some(&key)).await
    }

    /// `POST /v1/checkout/sessions` in `mode=subscription`.
    pub async fn create_checkout_session(
        &self,
        c: &NewCheckout<'_>,
    ) -> Result<CheckoutSession, StripeError> {
        let form = [
            ("mode", "subscription"),
            ("customer", c.stripe_customer_id),
            ("line_items[0][price]", c.price),
            ("line_items[0][quantity]", "1"),
            ("success_url", c.success_url),
            ("cancel_url", c.cancel_url),
            ("client_reference_id", c.customer_id),
            ("metadata[customer_id]", c.customer_id),
            ("metadata[plan]", c.plan),
            ("subscription_data[metadata][customer_id]", c.customer_id),
        ];
        self.post("/v1/checkout/sessions", &form, None).await
    }

    /// `POST /v1/billing_portal/sessions`.
    pub async fn create_portal_session(
        &self,
        stripe_customer_id: &str,
        return_url: &str,
    ) -> Result<PortalSession, StripeError> {
        let form = [("customer", stripe_customer_id), ("return_url", return_url)];
        self.post("/v1/billing_portal/sessions", &form, None).await
    }

    /// `GET /v1/customers/:id`: how a subscription made outside Checkout, whose event names
    /// only the Stripe customer, is linked to us through that customer's metadata.
    pub async fn customer(&self, stripe_customer_id: &str) -> Result<Customer, StripeError> {
        let path = format!("/v1/customers/{stripe_customer_id}");
        self.send(reqwest::Method::GET, &path, &[], None).await
    }

    /// `DELETE /v1/subscriptions/:id`: cancels it at once (a deleted customer pays no more).
    pub async fn cancel_subscription(&self, id: &str) -> Result<Subscription, StripeError> {
        let path = format!("/v1/subscriptions/{id}");
        self.send(reqwest::Method::DELETE, &path, &[], None).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &[(&str, &str)],
        idempotency_key: Option<&str>,
    ) -> Result<T, StripeError> {
        self.send(reqwest::Method::POST, path, form, idempotency_key)
            .await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, &str)],
        idempotency_key: Option<&str>,
    ) -> Result<T, StripeError> {
        let verb = method.to_string();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.key.expose_secret())
            .timeout(self.timeout);
        if !form.is_empty() {
            req = req.form(form);
        }
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        // Without the URL: reqwest's message names it, and it is noise in a client's 502.
        let unavailable = |e: reqwest::Error| StripeError::Unavailable(e.without_url().to_string());
        let resp = req.send().await.map_err(unavailable)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(unavailable)?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                StripeError::Unavailable(format!("unexpected answer to {verb} {path}: {e}"))
            });
        }
        match serde_json::from_slice::<ErrorEnvelope>(&body) {
            Ok(ErrorEnvelope { error }) => Err(StripeError::Api {
                status: status.as_u16(),
                kind: error.kind,
                message: error.message.unwrap_or_else(|| status.to_string()),
                code: error.code,
            }),
            // Not Stripe's error shape: a proxy or load balancer answered.
            Err(_) => Err(StripeError::Unavailable(format!(
                "{verb} {path} answered {status} without Stripe's error body"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_error_bodies_parse_with_unknown_types() {
        let e: ErrorEnvelope = serde_json::from_str(
            r#"{"error":{"type":"invalid_request_error","message":"No such price","code":"resource_missing","param":"line_items[0][price]"}}"#,
        )
        .unwrap();
        assert_eq!(e.error.kind, ErrorKind::InvalidRequestError);
        assert_eq!(e.error.code.as_deref(), Some("resource_missing"));
        let e: ErrorEnvelope =
            serde_json::from_str(r#"{"error":{"type":"rate_limit_error"}}"#).unwrap();
        assert_eq!(e.error.kind, ErrorKind::Other);
    }
}
