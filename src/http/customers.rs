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

#[utoipa::path(
    post, path = "/api/customers/signup", tag = "customers",
    request_body = crate::http::openapi::SignupBody,
    responses(
        (status = 201, description = "Customer, trial subscription, license and queued deployment",
            body = crate::accounts::signup::SignupResponse),
        (status = 400, description = "A missing or invalid field", body = crate::http::openapi::ApiErrorBody),
        (status = 409, description = "The email is taken", body = crate::http::openapi::ApiErrorBody),
        (status = 415, description = "The body is not declared as JSON", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn signup(
    State(app): State<SharedApp>,
    meta: RequestMeta,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<SignupResponse>)> {
    let req = SignupRequest::from_json(body)?;
    let response = signup::signup(&app.accounts, req, &meta).await?;
    Ok((StatusCode::CREATED, Json(response)))
}

#[utoipa::path(
    post, path = "/api/customers/login", tag = "customers",
    request_body = crate::http::openapi::LoginBody,
    responses(
        (status = 200, description = "A session token and the account", body = crate::accounts::login::LoginResponse),
        (status = 401, description = "Wrong email or password", body = crate::http::openapi::ApiErrorBody),
        (status = 429, description = "Too many failures: see Retry-After", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn login(
    State(app): State<SharedApp>,
    meta: RequestMeta,
    JsonBody(body): JsonBody,
) -> Result<Json<LoginResponse>> {
    let req = LoginRequest::from_json(body)?;
    Ok(Json(login::login(&app.accounts, req, &meta).await?))
}

#[utoipa::path(
    get, path = "/api/customers/me", operation_id = "get_own_account", tag = "customers", security(("session" = [])),
    responses(
        (status = 200, description = "The caller's account", body = crate::accounts::view::AccountView),
        (status = 401, description = "No valid session token", body = crate::http::openapi::ApiErrorBody),
    )
)]
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

#[utoipa::path(
    get, path = "/api/customers", operation_id = "list_customers", tag = "customers", security(("admin" = [])),
    params(
        ("limit" = Option<i64>, Query, description = "1 to 1000, default 100"),
        ("offset" = Option<i64>, Query, description = "Default 0"),
    ),
    responses(
        (status = 200, description = "A page of customers, oldest first", body = crate::http::openapi::CustomerList),
        (status = 401, description = "No or a wrong admin token", body = crate::http::openapi::ApiErrorBody),
    )
)]
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

#[utoipa::path(
    get, path = "/api/customers/{id}", operation_id = "get_customer", tag = "customers", security(("admin" = [])),
    params(("id" = String, Path, description = "The customer id")),
    responses(
        (status = 200, description = "The account", body = crate::accounts::view::AccountView),
        (status = 401, description = "No or a wrong admin token", body = crate::http::openapi::ApiErrorBody),
        (status = 404, description = "No such customer", body = crate::http::openapi::ApiErrorBody),
    )
)]
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
#[utoipa::path(
    delete, path = "/api/customers/{id}", operation_id = "delete_customer", tag = "customers", security(("admin" = []), ("session" = [])),
    params(("id" = String, Path, description = "The customer id")),
    request_body(content = Option<crate::http::openapi::DeleteBody>, description = "A customer confirms with their password; the admin sends no body"),
    responses(
        (status = 202, description = "Deleted; the stack's removal is queued", body = crate::accounts::deletion::Deleted),
        (status = 401, description = "Not the admin nor the customer, or a wrong password", body = crate::http::openapi::ApiErrorBody),
        (status = 404, description = "No such customer", body = crate::http::openapi::ApiErrorBody),
    )
)]
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
