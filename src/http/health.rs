//! Liveness (`/health`, `/healthz`) and readiness (`/readyz`: the database answers).

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::app::SharedApp;
use crate::error::{ApiError, Result};

pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn ready(State(app): State<SharedApp>) -> Result<Json<Value>> {
    app.db
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(format!("database unreachable: {e}")))?;
    Ok(Json(json!({ "status": "ready", "database": "ok" })))
}
