//! Customer endpoints: signup, login, me, and the admin listing.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{Admin, CustomerSession, JsonBody};
use crate::accounts::domain::CustomerId;
use crate::accounts::login::{self, LoginRequest, LoginResponse};
use crate::accounts::signup::{self, SignupRequest, SignupResponse};
use crate::accounts::view::{self, AccountView, CustomerView};
use crate::accounts::RequestMeta;
use crate::app::SharedApp;
use crate::db::accounts;
use crate::error::{ApiError, Result};

pub async fn signup(
    State(app): State<SharedApp>,
    meta: RequestMeta,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<SignupResponse>)> {
    let req = SignupRequest::from_json(body)?;
    let response = signup::signup(&app, req, &meta).await?;
    Ok((StatusCode::CREATED, Json(response)))
}

pub async fn login(
    State(app): State<SharedApp>,
    meta: RequestMeta,
    JsonBody(body): JsonBody,
) -> Result<Json<LoginResponse>> {
    let req = LoginRequest::from_json(body)?;
    Ok(Json(login::login(&app, req, &meta).await?))
}

pub async fn me(
    State(app): State<SharedApp>,
    CustomerSession(id): CustomerSession,
) -> Result<Json<AccountView>> {
    Ok(Json(view::load(&app, &id, Utc::now()).await?))
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
    Ok(Json(view::load(&app, id.as_str(), Utc::now()).await?))
}
