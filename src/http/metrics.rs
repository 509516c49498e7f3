//! `GET /metrics`: the Prometheus text exposition, for the admin token or `METRICS_TOKEN`.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::extract::MetricsReader;
use crate::app::SharedApp;
use crate::http::error::Result;

/// OpenMetrics' content type, which `prometheus-client` writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub async fn metrics(State(app): State<SharedApp>, _: MetricsReader) -> Result<impl IntoResponse> {
    let pending = crate::db::outbox::pending_count(&app.db).await?;
    app.metrics.render_jobs_pending.set(pending);
    let limited =
        crate::accounts::account_limit::limited_count(&app.accounts, chrono::Utc::now()).await?;
    app.metrics.login_accounts_limited.set(limited);
    Ok(([(CONTENT_TYPE, OPENMETRICS)], app.metrics.render()))
}
