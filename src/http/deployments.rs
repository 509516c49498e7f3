//! Deployment endpoints: status (admin or the customer), redeploy and delete (admin).

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;

use super::extract::{Admin, Caller};
use crate::accounts::domain::CustomerId;
use crate::accounts::RequestMeta;
use crate::app::SharedApp;
use crate::db::outbox::Action;
use crate::deploy::requests::{self, Accepted, AcceptedAll, DeploymentStatusView};
use crate::error::{ApiError, Result};

fn customer_id(raw: &str) -> Result<CustomerId> {
    CustomerId::parse(raw).ok_or(ApiError::NotFound("no such customer"))
}

pub async fn status(
    State(app): State<SharedApp>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeploymentStatusView>> {
    let id = customer_id(&id)?;
    caller.may_see(id.as_str())?;
    Ok(Json(requests::status(&app, id.as_str()).await?))
}

async fn accept(
    app: &SharedApp,
    raw_id: &str,
    action: Action,
    meta: &RequestMeta,
) -> Result<(StatusCode, Json<Accepted>)> {
    let id = customer_id(raw_id)?;
    let accepted = requests::request(app, id.as_str(), action, meta).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

pub async fn deploy(
    State(app): State<SharedApp>,
    _: Admin,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Accepted>)> {
    // An explicit deploy of one tenant renders everything: it also repairs hand edits.
    accept(&app, &id, Action::Rebuild, &meta).await
}

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
pub async fn redeploy_all(
    State(app): State<SharedApp>,
    _: Admin,
    meta: RequestMeta,
    RawQuery(query): RawQuery,
) -> Result<(StatusCode, Json<AcceptedAll>)> {
    let mut full = false;
    for (key, value) in query
        .iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|p| p.split_once('='))
    {
        match (key, value) {
            ("full", "true" | "1") => full = true,
            ("full", "false" | "0") => full = false,
            ("full", _) => {
                return Err(ApiError::validation(
                    "invalid_query",
                    "full",
                    "full must be true or false",
                ))
            }
            _ => {}
        }
    }
    let accepted = requests::redeploy_all(&app, &meta, full).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}
