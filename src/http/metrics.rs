//! `GET /metrics`: the Prometheus text exposition, for the admin token or `METRICS_TOKEN`. The
//! gauges of what the database holds (queue, tenants by state) are counted at each scrape.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::extract::MetricsReader;
use crate::app::SharedApp;
use crate::db::gauges;
use crate::http::error::Result;
use crate::metrics::Metrics;

/// OpenMetrics' content type, which `prometheus-client` writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[utoipa::path(
    get, path = "/metrics", tag = "health", security(("metrics" = []), ("admin" = [])),
    responses(
        (status = 200, description = "Prometheus/OpenMetrics text exposition (docs/operations.md lists the metrics)",
            body = String, content_type = "application/openmetrics-text"),
        (status = 401, description = "No or a wrong token", body = crate::http::openapi::ApiErrorBody),
    )
)]
pub async fn metrics(State(app): State<SharedApp>, _: MetricsReader) -> Result<impl IntoResponse> {
    let now = chrono::Utc::now();
    let m = &app.metrics;
    let pending = crate::db::outbox::pending_count(&app.db).await?;
    m.render_jobs_pending.set(pending);
    let oldest = gauges::oldest_pending_job(&app.db.pool).await?;
    m.outbox_oldest_job_age
        .set(oldest.map_or(0, |at| (now - at).num_seconds().max(0)));
    let deployments = gauges::tenants_by_deployment_state(&app.db.pool).await?;
    let deployments: Vec<_> = deployments.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    Metrics::set_states(&m.tenants_by_deployment_state, &deployments);
    let subscriptions = gauges::tenants_by_subscription_state(&app.db.pool).await?;
    let subscriptions: Vec<_> = subscriptions
        .iter()
        .map(|(s, n)| (s.as_str(), *n))
        .collect();
    Metrics::set_states(&m.tenants_by_subscription_state, &subscriptions);
    let limited = crate::accounts::account_limit::limited_count(&app.accounts, now).await?;
    m.login_accounts_limited.set(limited);
    m.tenants_unplaced
        .set(crate::db::placements::unplaced_count(&app.db.pool).await?);
    // Read at each scrape from the rollouts' own state, as `billing rollout status` reads it.
    let report = crate::rollout::status(&app.rollout_handles(), None)
        .await
        .map_err(anyhow::Error::from)?;
    let active = report.rollout.as_ref().filter(|r| {
        use crate::db::rollouts::RolloutStatus::{Paused, RollingBack, Running};
        matches!(r.status, Running | Paused | RollingBack)
    });
    let wave = |n: i64| u32::try_from(n).unwrap_or(0);
    m.set_rollout_progress(
        u64::try_from(report.behind.unwrap_or(0)).unwrap_or(0),
        active.map(|r| (wave(r.current_wave), wave(r.wave_count))),
    );
    let in_review = active.is_some_and(|r| {
        r.waves.iter().any(|w| {
            w.wave == r.current_wave && w.status == crate::db::rollouts::WaveStatus::InReview
        })
    });
    m.rollout_wave_in_review.set(i64::from(in_review));
    let clusters = crate::db::clusters::list(&app.db.pool).await?;
    let figures: Vec<_> = clusters
        .iter()
        .map(|c| crate::metrics::ClusterFigures {
            name: &c.name,
            region: &c.region,
            cpu_capacity_millis: c.cpu_millis,
            memory_capacity_bytes: c.memory_bytes,
            cpu_allocated_millis: c.allocated_cpu_millis,
            memory_allocated_bytes: c.allocated_memory_bytes,
            tenants: c.tenants,
        })
        .collect();
    m.set_clusters(&figures);
    Ok(([(CONTENT_TYPE, OPENMETRICS)], m.render()))
}
