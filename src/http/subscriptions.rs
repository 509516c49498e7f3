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

pub async fn me(
    State(app): State<SharedApp>,
    CustomerSession(id): CustomerSession,
) -> Result<Json<SubscriptionView>> {
    Ok(Json(view::load(&app.billing, &id).await?))
}

/// The admin reads anyone's; a customer only their own (another's looks nonexistent).
pub async fn get(
    State(app): State<SharedApp>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SubscriptionView>> {
    caller.may_see(&id)?;
    let id = CustomerId::parse(&id).ok_or(ApiError::NotFound("no such customer"))?;
    Ok(Json(view::load(&app.billing, id.as_str()).await?))
}
