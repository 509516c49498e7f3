//! `/api/subscriptions/*`: Checkout and Billing Portal sessions, and the subscription view.

use axum::extract::{Path, State};
use axum::Json;

use super::extract::{Caller, CustomerSession, JsonBody};
use crate::accounts::domain::CustomerId;
use crate::accounts::RequestMeta;
use crate::app::SharedApp;
use crate::billing::checkout::{self, CheckoutStarted, PortalOpened, Requester};
use crate::billing::view::{self, SubscriptionView};
use crate::http::error::{ApiError, Result};

#[utoipa::path(
    post, path = "/api/subscriptions/checkout", tag = "subscriptions", security(("admin" = []), ("session" = [])),
    request_body = crate::http::openapi::CheckoutBody,
    responses(
        (status = 200, description = "A Stripe Checkout Session to redirect to", body = crate::billing::checkout::CheckoutStarted),
        (status = 400, description = "A missing or invalid field", body = crate::http::openapi::ApiErrorBody),
        (status = 401, description = "No valid token", body = crate::http::openapi::ApiErrorBody),
        (status = 503, description = "Stripe is not configured or does not answer", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn checkout(
    State(app): State<SharedApp>,
    caller: Caller,
    meta: RequestMeta,
    JsonBody(body): JsonBody,
) -> Result<Json<CheckoutStarted>> {
    let by = requester(caller);
    Ok(Json(
        checkout::checkout(&app.billing, &by, &meta, &body).await?,
    ))
}

#[utoipa::path(
    post, path = "/api/subscriptions/portal", tag = "subscriptions", security(("admin" = []), ("session" = [])),
    request_body = crate::http::openapi::PortalBody,
    responses(
        (status = 200, description = "A Billing Portal session", body = crate::billing::checkout::PortalOpened),
        (status = 401, description = "No valid token", body = crate::http::openapi::ApiErrorBody),
        (status = 503, description = "Stripe is not configured or does not answer", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn portal(
    State(app): State<SharedApp>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Json<PortalOpened>> {
    Ok(Json(
        checkout::portal(&app.billing, &requester(caller), &body).await?,
    ))
}

fn requester(caller: Caller) -> Requester {
    match caller {
        Caller::Admin => Requester::Admin,
        Caller::Customer(id) => Requester::Customer(id),
    }
}

#[utoipa::path(
    get, path = "/api/subscriptions/me", operation_id = "get_own_subscription", tag = "subscriptions", security(("session" = [])),
    responses(
        (status = 200, description = "The caller's subscription and its history", body = crate::billing::view::SubscriptionView),
        (status = 401, description = "No valid session token", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn me(
    State(app): State<SharedApp>,
    CustomerSession(id): CustomerSession,
) -> Result<Json<SubscriptionView>> {
    Ok(Json(view::load(&app.billing, &id).await?))
}

/// The admin reads anyone's; a customer only their own (another's looks nonexistent).
#[utoipa::path(
    get, path = "/api/subscriptions/{customer_id}", operation_id = "get_subscription", tag = "subscriptions", security(("admin" = []), ("session" = [])),
    params(("customer_id" = String, Path, description = "The customer id")),
    responses(
        (status = 200, description = "The subscription and its history", body = crate::billing::view::SubscriptionView),
        (status = 401, description = "No valid token", body = crate::http::openapi::ApiErrorBody),
        (status = 404, description = "No such customer (or another customer's)", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn get(
    State(app): State<SharedApp>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SubscriptionView>> {
    caller.may_see(&id)?;
    let id = CustomerId::parse(&id).ok_or(ApiError::NotFound("no such customer"))?;
    Ok(Json(view::load(&app.billing, id.as_str()).await?))
}
