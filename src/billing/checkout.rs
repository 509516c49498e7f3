//! Paying through Stripe: a Checkout Session for a plan (creating and linking the Stripe
//! customer first if we have none), and a Billing Portal session where customers change plan or
//! card or cancel. Stripe is asked before anything is stored, so a failed call changes nothing.

use serde::Serialize;
use serde_json::Value;

use super::stripe::api::{self, NewCheckout, NewCustomer};
use crate::accounts::domain::CustomerId;
use crate::accounts::RequestMeta;
use crate::billing::BillingError;
use crate::billing::BillingHandles;
use crate::db::{self, accounts, audit, erasure, subscriptions};

/// Who asks: a customer for themselves (by session), or the admin for any customer.
pub enum Requester {
    Admin,
    Customer(String),
}

impl Requester {
    fn actor(&self) -> String {
        match self {
            Requester::Admin => "admin".into(),
            Requester::Customer(id) => format!("customer:{id}"),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckoutStarted {
    pub session_id: String,
    pub checkout_url: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PortalOpened {
    pub url: String,
}

/// `{plan, success_url, cancel_url}` (and `customer_id` for the admin) → a Checkout Session.
pub async fn checkout(
    handles: &BillingHandles,
    by: &Requester,
    meta: &RequestMeta,
    body: &Value,
) -> Result<CheckoutStarted, BillingError> {
    let plan = string_field(body, "plan")?
        .ok_or_else(|| BillingError::validation("missing_field", "plan", "plan is required"))?;
    let price = price_of(handles, plan)?;
    let success_url = url_field(body, "success_url")?;
    let cancel_url = url_field(body, "cancel_url")?;
    let customer_id = target(handles, by, body).await?;
    let stripe = client(handles)?;
    let stripe_customer_id =
        ensure_stripe_customer(handles, &stripe, by, meta, &customer_id).await?;
    let session = stripe
        .create_checkout_session(&NewCheckout {
            customer_id: &customer_id,
            stripe_customer_id: &stripe_customer_id,
            plan,
            price,
            success_url,
            cancel_url,
        })
        .await?;
    tracing::info!(customer_id, plan, session_id = %session.id, "Stripe Checkout Session created");
    Ok(CheckoutStarted {
        session_id: session.id,
        checkout_url: session.url,
    })
}

/// `{return_url}` (and `customer_id` for the admin) → a Billing Portal session's URL.
pub async fn portal(
    handles: &BillingHandles,
    by: &Requester,
    body: &Value,
) -> Result<PortalOpened, BillingError> {
    let return_url = url_field(body, "return_url")?;
    let customer_id = target(handles, by, body).await?;
    let stripe = client(handles)?;
    let stripe_customer_id = subscriptions::stripe_id_of(&handles.db.pool, &customer_id)
        .await?
        .flatten()
        .ok_or_else(|| BillingError::Conflict {
            code: "no_stripe_customer",
            message: "the customer has no Stripe customer yet: start a checkout first".into(),
        })?;
    let session = stripe
        .create_portal_session(&stripe_customer_id, return_url)
        .await?;
    Ok(PortalOpened { url: session.url })
}

/// The Stripe customer stored on ours; else one created in Stripe (with our id in its
/// metadata) and stored. When two checkouts race, the first stored id wins and is returned.
async fn ensure_stripe_customer(
    handles: &BillingHandles,
    stripe: &api::Client<'_>,
    by: &Requester,
    meta: &RequestMeta,
    customer_id: &str,
) -> Result<String, BillingError> {
    let pool = &handles.db.pool;
    if let Some(id) = subscriptions::stripe_id_of(pool, customer_id)
        .await?
        .flatten()
    {
        return Ok(id);
    }
    let row = accounts::customer_by_id(pool, customer_id)
        .await?
        .ok_or(BillingError::NotFound("no such customer"))?;
    let created = stripe
        .create_customer(&NewCustomer {
            customer_id,
            email: &row.email,
            name: &row.company_name,
        })
        .await?;
    let now = db::ts(chrono::Utc::now());
    let mut tx = pool.begin().await?;
    subscriptions::link_stripe_customer(&mut *tx, customer_id, &created.id, &now).await?;
    let entry = audit::AuditEntry {
        action: "stripe.customer_created",
        customer_id: Some(customer_id.to_string()),
        actor: by.actor(),
        client_ip: meta.client_ip.clone(),
        user_agent: meta.user_agent.clone(),
        details: serde_json::json!({ "stripe_customer_id": created.id }),
    };
    audit::record(&mut *tx, &now, &entry).await?;
    tx.commit().await?;
    tracing::info!(customer_id, stripe_customer_id = %created.id, "Stripe customer created");
    subscriptions::stripe_id_of(pool, customer_id)
        .await?
        .flatten()
        .ok_or(BillingError::NotFound("no such customer"))
}

/// Whose subscription: the customer's own, or for the admin the body's `customer_id`. A live
/// customer only; another customer's id looks nonexistent to a customer.
async fn target(
    handles: &BillingHandles,
    by: &Requester,
    body: &Value,
) -> Result<String, BillingError> {
    let named = string_field(body, "customer_id")?;
    let id = match (by, named) {
        (Requester::Customer(own), Some(named)) if named != own => {
            return Err(BillingError::NotFound("no such customer"))
        }
        (Requester::Customer(own), _) => own.clone(),
        (Requester::Admin, Some(named)) => named.to_string(),
        (Requester::Admin, None) => {
            return Err(BillingError::validation(
                "missing_field",
                "customer_id",
                "customer_id is required with the admin token",
            ))
        }
    };
    let id = CustomerId::parse(&id).ok_or(BillingError::NotFound("no such customer"))?;
    if !erasure::is_live(&handles.db.pool, id.as_str()).await? {
        return Err(BillingError::NotFound("no such customer"));
    }
    Ok(id.as_str().to_string())
}

fn client(handles: &BillingHandles) -> Result<api::Client<'_>, BillingError> {
    super::stripe::client(handles).ok_or_else(|| {
        BillingError::Unavailable("Stripe is not configured: STRIPE_SECRET_KEY is not set".into())
    })
}

/// The Stripe price of a plan (`STRIPE_PRICE_<PLAN>`, `--stripe-price`).
fn price_of<'a>(handles: &'a BillingHandles, plan: &str) -> Result<&'a str, BillingError> {
    if handles.plans.get(plan).is_none() {
        return Err(BillingError::validation(
            "unknown_plan",
            "plan",
            format!("no plan named {plan:?}"),
        ));
    }
    handles
        .stripe_prices
        .iter()
        .find(|(_, p)| p.as_str() == plan)
        .map(|(price, _)| price.as_str())
        .ok_or_else(|| {
            BillingError::validation(
                "plan_not_for_sale",
                "plan",
                format!("plan {plan:?} has no Stripe price (STRIPE_PRICE_<PLAN>)"),
            )
        })
}

fn string_field<'a>(body: &'a Value, name: &'static str) -> Result<Option<&'a str>, BillingError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(BillingError::validation(
            "invalid_field",
            name,
            format!("{name} must be a string"),
        )),
    }
}

/// A required absolute http(s) URL: Stripe sends the customer's browser there.
fn url_field<'a>(body: &'a Value, name: &'static str) -> Result<&'a str, BillingError> {
    let text = string_field(body, name)?.ok_or_else(|| {
        BillingError::validation("missing_field", name, format!("{name} is required"))
    })?;
    match reqwest::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(text),
        _ => Err(BillingError::validation(
            "invalid_url",
            name,
            format!("{name} must be an absolute http(s) URL"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_http_urls_are_accepted() {
        let ok = |u: &str| url_field(&serde_json::json!({ "u": u }), "u").is_ok();
        assert!(ok("https://app.example.com/billing?done=1"));
        assert!(ok("http://localhost:3000/back"));
        assert!(!ok("/billing"));
        assert!(!ok("javascript:alert(1)"));
        assert!(!ok("ftp://example.com/"));
        assert!(!ok(""));
        assert!(url_field(&serde_json::json!({ "u": 1 }), "u").is_err());
    }
}
