//! Customer endpoints: signup, login, me, the admin listing, and deletion.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{Admin, Caller, CustomerSession, JsonBody, RawBody};
use crate::accounts::deletion::{self, By, Deleted};
use crate::accounts::domain::CustomerId;
use crate::accounts::login::{self, LoginRequest, LoginResponse};
use crate::accounts::signup::{self, SignupRequest, SignupResponse};
use crate::accounts::view::{self, AccountView, CustomerView};
use crate::accounts::RequestMeta;
use crate::app::SharedApp;
use crate::db::accounts;
use crate::http::error::{ApiError, Result};

pub async fn signup(
    State(app): State<SharedApp>,
    meta: RequestMeta,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<SignupResponse>)> {
    let req = SignupRequest::from_json(body)?;
    let response = signup::signup(&app.accounts, req, &meta).await?;
    Ok((StatusCode::CREATED, Json(response)))
}

pub async fn login(
    State(app): State<SharedApp>,
    meta: RequestMeta,
    JsonBody(body): JsonBody,
) -> Result<Json<LoginResponse>> {
    let req = LoginRequest::from_json(body)?;
    Ok(Json(login::login(&app.accounts, req, &meta).await?))
}

pub async fn me(
    State(app): State<SharedApp>,
    CustomerSession(id): CustomerSession,
) -> Result<Json<AccountView>> {
    Ok(Json(view::load(&app.accounts, &id, Utc::now()).await?))
}

#[derive(Deserialize)]
pub struct Page {
    #[serde(default = "default_limit")]
    limit: i64,
    #[serde(default)]
    offset: i64,
}

fn default_limit() -> i64 {
    100
}

pub async fn list(
    State(app): State<SharedApp>,
    _: Admin,
    Query(page): Query<Page>,
) -> Result<Json<Value>> {
    let limit = page.limit.clamp(1, 1000);
    let offset = page.offset.max(0);
    let rows = accounts::list_customers(&app.db.pool, limit, offset).await?;
    let customers: Vec<CustomerView> = rows.into_iter().map(Into::into).collect();
    Ok(Json(
        json!({ "customers": customers, "limit": limit, "offset": offset }),
    ))
}

pub async fn get(
    State(app): State<SharedApp>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<AccountView>> {
    let id = CustomerId::parse(&id).ok_or(ApiError::NotFound("no such customer"))?;
    Ok(Json(
        view::load(&app.accounts, id.as_str(), Utc::now()).await?,
    ))
}

/// Deletes the customer: the admin, or the customer themself with `{password}`.
pub async fn delete(
    State(app): State<SharedApp>,
    caller: Caller,
    meta: RequestMeta,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<(StatusCode, Json<Deleted>)> {
    let id = CustomerId::parse(&id).ok_or(ApiError::NotFound("no such customer"))?;
    caller.may_see(id.as_str())?;
    let (by, password) = match caller {
        Caller::Admin => (By::Admin, None),
        Caller::Customer(_) => (
            By::Customer,
            Some(deletion::password_from_json(body.json(&headers)?)?),
        ),
    };
    let deleted = deletion::delete(&app.accounts, id.as_str(), by, password, &meta).await?;
    Ok((StatusCode::ACCEPTED, Json(deleted)))
}
