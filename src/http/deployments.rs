//! Deployment endpoints: status (admin or the customer), redeploy and delete (admin).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::extract::{Admin, Caller};
use crate::accounts::domain::CustomerId;
use crate::accounts::RequestMeta;
use crate::app::SharedApp;
use crate::deploy::requests::{self, Accepted, AcceptedAll, DeploymentStatusView};
use crate::error::{ApiError, Result};
use crate::outbox::Action;

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
    accept(&app, &id, Action::Update, &meta).await
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
pub async fn redeploy_all(
    State(app): State<SharedApp>,
    _: Admin,
    meta: RequestMeta,
) -> Result<(StatusCode, Json<AcceptedAll>)> {
    let accepted = requests::redeploy_all(&app, &meta).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}
