//! Deployment endpoints: status (admin or the customer), redeploy and delete (admin).

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;

use super::extract::{Admin, Caller, RawBody};
use crate::accounts::domain::CustomerId;
use crate::accounts::RequestMeta;
use crate::app::SharedApp;
use crate::db::outbox::Action;
use crate::deploy::requests::{self, Accepted, AcceptedAll, DeploymentStatusView};
use crate::http::error::{ApiError, Result};

fn customer_id(raw: &str) -> Result<CustomerId> {
    CustomerId::parse(raw).ok_or(ApiError::NotFound("no such customer"))
}

#[utoipa::path(
    get, path = "/api/customers/{id}/deployment/status", operation_id = "get_deployment_status", tag = "deployments", security(("admin" = []), ("session" = [])),
    params(("id" = String, Path, description = "The customer id")),
    responses(
        (status = 200, description = "The deployment, its history, Git's health and the legacy dashboard's fields",
            body = crate::deploy::requests::DeploymentStatusView),
        (status = 401, description = "No valid token", body = crate::http::openapi::ApiErrorBody),
        (status = 404, description = "No such customer (or another customer's)", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn status(
    State(app): State<SharedApp>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeploymentStatusView>> {
    let id = customer_id(&id)?;
    caller.may_see(id.as_str())?;
    Ok(Json(requests::status(&app.deploy, id.as_str()).await?))
}

async fn accept(
    app: &SharedApp,
    raw_id: &str,
    action: Action,
    meta: &RequestMeta,
) -> Result<(StatusCode, Json<Accepted>)> {
    let id = customer_id(raw_id)?;
    let accepted = requests::request(&app.deploy, id.as_str(), action, meta).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Renders everything of one tenant. A drifted tenant (changed by hand, or rolled back) is a
/// 409 unless `?force=true`, which overwrites what Git holds with the database's rendering.
#[utoipa::path(
    post, path = "/api/customers/{id}/deploy", tag = "deployments", security(("admin" = [])),
    params(
        ("id" = String, Path, description = "The customer id"),
        ("force" = Option<bool>, Query, description = "Overwrite a drifted tenant's files"),
    ),
    responses(
        (status = 202, description = "A re-render is queued", body = crate::deploy::requests::Accepted),
        (status = 401, description = "No or a wrong admin token", body = crate::http::openapi::ApiErrorBody),
        (status = 404, description = "No such customer", body = crate::http::openapi::ApiErrorBody),
        (status = 409, description = "The tenant drifted: deploy with ?force=true to overwrite", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn deploy(
    State(app): State<SharedApp>,
    _: Admin,
    meta: RequestMeta,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<(StatusCode, Json<Accepted>)> {
    let action = if bool_param(query.as_deref(), "force")? {
        Action::Force
    } else {
        Action::Rebuild
    };
    accept(&app, &id, action, &meta).await
}

/// Restores the tenant's files as they were before its last change, or at the body's `to` (a
/// revision; the body may be empty), as a commit.
#[utoipa::path(
    post, path = "/api/customers/{id}/rollback", tag = "deployments", security(("admin" = [])),
    params(("id" = String, Path, description = "The customer id")),
    request_body(content = Option<crate::http::openapi::RollbackBody>, description = "Optional; may be empty"),
    responses(
        (status = 202, description = "The rollback commit is queued", body = crate::deploy::requests::Accepted),
        (status = 400, description = "`to` is not a revision", body = crate::http::openapi::ApiErrorBody),
        (status = 401, description = "No or a wrong admin token", body = crate::http::openapi::ApiErrorBody),
        (status = 404, description = "No such customer, or nothing to roll back to", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn rollback(
    State(app): State<SharedApp>,
    _: Admin,
    meta: RequestMeta,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<(StatusCode, Json<Accepted>)> {
    let id = customer_id(&id)?;
    let to = if body.0.is_empty() {
        None
    } else {
        match body.json(&headers)?.get("to") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(rev)) => Some(rev.clone()),
            Some(_) => {
                return Err(ApiError::validation(
                    "invalid_field",
                    "to",
                    "to must be a revision (a string)",
                ))
            }
        }
    };
    let accepted = requests::rollback(&app.deploy, id.as_str(), to.as_deref(), &meta).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// The tenant's commits on main, newest first (`?limit=`, default 50).
#[utoipa::path(
    get, path = "/api/customers/{id}/history", operation_id = "get_tenant_history", tag = "deployments", security(("admin" = []), ("session" = [])),
    params(("id" = String, Path, description = "The customer id")),
    responses(
        (status = 200, description = "The tenant's commits on main, newest first (50)", body = crate::http::openapi::TenantHistory),
        (status = 401, description = "No valid token", body = crate::http::openapi::ApiErrorBody),
        (status = 404, description = "No such customer", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn history(
    State(app): State<SharedApp>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>> {
    let id = customer_id(&id)?;
    caller.may_see(id.as_str())?;
    let commits = crate::deploy::history::tenant_history(&app.deploy, id.as_str(), 50).await?;
    Ok(Json(
        serde_json::json!({ "customer_id": id.as_str(), "commits": commits }),
    ))
}

/// A `true`/`false` query parameter (absent: false), or a 400 that names it.
fn bool_param(query: Option<&str>, name: &'static str) -> Result<bool> {
    let mut value = false;
    for (key, raw) in query
        .iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|p| p.split_once('='))
        .filter(|(key, _)| *key == name)
    {
        value = match raw {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                return Err(ApiError::validation(
                    "invalid_query",
                    name,
                    format!("{key} must be true or false"),
                ))
            }
        };
    }
    Ok(value)
}

#[utoipa::path(
    delete, path = "/api/customers/{id}/deployment", operation_id = "delete_deployment", tag = "deployments", security(("admin" = [])),
    params(("id" = String, Path, description = "The customer id")),
    responses(
        (status = 202, description = "The stack's removal is queued", body = crate::deploy::requests::Accepted),
        (status = 401, description = "No or a wrong admin token", body = crate::http::openapi::ApiErrorBody),
        (status = 404, description = "No such customer", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn delete(
    State(app): State<SharedApp>,
    _: Admin,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Accepted>)> {
    accept(&app, &id, Action::Delete, &meta).await
}

/// Re-render every tenant (after a template or plan change); unchanged tenants make no commit.
/// `?full=true` renders every template, not only those changed since each tenant's lock.
#[utoipa::path(
    post, path = "/api/admin/tenants/redeploy", tag = "deployments", security(("admin" = [])),
    params(("full" = Option<bool>, Query, description = "Render every template, not only those changed")),
    responses(
        (status = 202, description = "A re-render of every live tenant is queued", body = crate::deploy::requests::AcceptedAll),
        (status = 401, description = "No or a wrong admin token", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn redeploy_all(
    State(app): State<SharedApp>,
    _: Admin,
    meta: RequestMeta,
    RawQuery(query): RawQuery,
) -> Result<(StatusCode, Json<AcceptedAll>)> {
    let full = bool_param(query.as_deref(), "full")?;
    let accepted = requests::redeploy_all(&app.deploy, &meta, full).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}
