//! Liveness (`/health`, `/healthz`) and readiness (`/readyz`: the database answers; Git and the
//! background workers are well, or it says `degraded` and why).

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::app::SharedApp;
use crate::http::error::{ApiError, Result};

#[utoipa::path(
    get, path = "/health", tag = "health",
    responses((status = 200, description = "The process is up", body = crate::http::openapi::Liveness))
)]
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready, or degraded and why", body = crate::http::openapi::Readiness),
        (status = 503, description = "The database does not answer", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn ready(State(app): State<SharedApp>) -> Result<Json<Value>> {
    // Bounded well under the pool's acquire timeout: probes want an answer, not a wait.
    app.db
        .ping(Duration::from_secs(1))
        .await
        .map_err(|e| ApiError::DatabaseUnavailable(format!("readiness ping: {e}")))?;
    // A failing GitOps remote or commit does not stop signups (they queue), so it degrades
    // readiness rather than failing it; monitoring reads `reason`.
    // So is a full disk under the database: reads and logins of known sessions still work,
    // and the outage is one an operator must fix, not one a restart would.
    let storage = crate::db::storage::problem(&app.db);
    let gitops = app.gitops.health();
    // So does a worker that panicked and waits to be restarted: its jobs wait meanwhile.
    let workers = app.workers.states();
    let problems: Vec<String> = storage
        .clone()
        .into_iter()
        .chain(gitops.problem().map(str::to_string))
        .chain(app.workers.problem())
        .collect();
    let (status, reason) = if problems.is_empty() {
        ("ready", None)
    } else {
        ("degraded", Some(problems.join("; ")))
    };
    let database = if storage.is_some() {
        "storage_full"
    } else {
        "ok"
    };
    let pending = crate::db::outbox::pending_count(&app.db).await?;
    Ok(Json(
        json!({ "status": status, "reason": reason, "database": database, "gitops": gitops, "workers": workers, "pending_render_jobs": pending }),
    ))
}
