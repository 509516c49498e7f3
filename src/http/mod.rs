//! The HTTP layer: routes, middleware and the server loop. Handlers stay thin; the work lives
//! in `accounts`, `license` and friends.

pub mod admin;
pub mod customers;
pub mod deployments;
pub mod error;
pub mod extract;
pub mod gitops_events;
pub mod health;
pub mod licenses;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod rejections;
pub mod stripe;
pub mod subscriptions;
pub mod wire;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::serve::ListenerExt;
use axum::Router;

use crate::app::SharedApp;
use crate::http::error::{ApiError, InternalErrorDetail};

/// Every route here is described in `openapi::ApiDoc` (a `#[utoipa::path]` on its handler):
/// tests/openapi.rs reads these `.route(` calls and fails on one the document lacks.
pub fn router(app: SharedApp) -> Router {
    let observe = axum::middleware::from_fn_with_state(app.clone(), observe::observe);
    Router::new()
        .route("/health", get(health::live))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(metrics::metrics))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .route("/api/customers/signup", post(customers::signup))
        .route("/api/customers/login", post(customers::login))
        .route("/api/customers/me", get(customers::me))
        .route("/api/customers", get(customers::list))
        .route(
            "/api/customers/{id}",
            get(customers::get).delete(customers::delete),
        )
        .route(
            "/api/customers/{id}/deployment/status",
            get(deployments::status),
        )
        .route("/api/customers/{id}/deploy", post(deployments::deploy))
        .route("/api/customers/{id}/rollback", post(deployments::rollback))
        .route("/api/customers/{id}/history", get(deployments::history))
        .route(
            "/api/admin/tenants/redeploy",
            post(deployments::redeploy_all),
        )
        .route(
            "/api/customers/{id}/deployment",
            delete(deployments::delete),
        )
        .route("/api/gitops/flux/events", post(gitops_events::flux_event))
        .route(
            "/api/gitops/argocd/events",
            post(gitops_events::argocd_event),
        )
        .route(
            "/api/gitops/clusters/{name}/flux/events",
            post(gitops_events::cluster_flux_event),
        )
        .route(
            "/api/gitops/clusters/{name}/argocd/events",
            post(gitops_events::cluster_argocd_event),
        )
        // Its own, larger limit: the route's layer runs inside the router's and so overrides it.
        .route(
            "/api/webhooks/stripe",
            post(stripe::webhook).layer(DefaultBodyLimit::max(stripe::MAX_EVENT_BYTES)),
        )
        .route("/api/subscriptions/checkout", post(subscriptions::checkout))
        .route("/api/subscriptions/portal", post(subscriptions::portal))
        .route("/api/subscriptions/me", get(subscriptions::me))
        .route("/api/subscriptions/{customer_id}", get(subscriptions::get))
        .route("/api/licenses/public-key", get(licenses::public_key))
        .route("/api/licenses/verify", post(licenses::verify))
        .route("/.well-known/jwks.json", get(licenses::jwks))
        .merge(admin::router())
        .fallback(|| async { ApiError::NotFound("no such endpoint") })
        .layer(axum::middleware::map_response(
            rejections::json_error_bodies,
        ))
        .layer(axum::middleware::map_response(log_internal_errors))
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        // Outermost: its span covers every other layer, and it sees the final status.
        .layer(observe)
        .with_state(app)
}

/// 500s carry their cause in an extension; it is logged here and never sent to the client.
async fn log_internal_errors(response: Response) -> Response {
    if let Some(InternalErrorDetail(detail)) = response.extensions().get::<InternalErrorDetail>() {
        tracing::error!(error = %detail, "request failed");
    }
    response
}

/// From SIGTERM to the end of `serve`: open requests and the workers' current jobs get this
/// long, so the process exits well within the 10 s an orchestrator usually allows.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Starts every background worker under the supervisor, by name (the names `/readyz` and
/// `billing_worker_restarts_total` use).
fn start_workers(app: &SharedApp, mail: crate::notify::sender::Sender) {
    let workers = &app.workers;
    let deploy = app.deploy.clone();
    workers.spawn("deploy", move |stop| {
        crate::deploy::run_worker(deploy.clone(), stop)
    });
    let deploy = app.deploy.clone();
    workers.spawn("drift_scan", move |stop| {
        crate::deploy::drift::run(deploy.clone(), stop)
    });
    let billing = app.billing.clone();
    workers.spawn("stripe_cancellations", move |stop| {
        crate::billing::stripe::cancel::run(billing.clone(), stop)
    });
    let handles = app.mail.clone();
    let mail = std::sync::Arc::new(mail);
    workers.spawn("email_sender", move |stop| {
        crate::notify::sender::run(handles.clone(), mail.clone(), stop)
    });
    let watcher = app.watcher.clone();
    workers.spawn("stall_sweep", move |stop| {
        crate::watcher::stall::run(watcher.clone(), stop)
    });
    match &app.config.cluster.kube_contexts {
        None => {
            let watcher = app.watcher.clone();
            workers.spawn("kube_poller", move |stop| {
                crate::watcher::poller::run(watcher.clone(), stop)
            });
        }
        Some(contexts) => {
            for (context, cluster) in &contexts.0 {
                // Worker names are static: leaked once per configured context, at start.
                let name: &'static str =
                    Box::leak(format!("kube_poller:{cluster}").into_boxed_str());
                let (watcher, context, cluster) =
                    (app.watcher.clone(), context.clone(), cluster.clone());
                workers.spawn(name, move |stop| {
                    crate::watcher::poller::run_context(
                        watcher.clone(),
                        context.clone(),
                        cluster.clone(),
                        stop,
                    )
                });
            }
        }
    }
    let billing = app.billing.clone();
    workers.spawn("lifecycle", move |stop| {
        crate::billing::lifecycle::run(billing.clone(), stop)
    });
    let a = app.clone();
    workers.spawn("rollouts", move |stop| {
        let a = a.clone();
        async move { crate::rollout::run(a.rollout_handles(), stop).await }
    });
    let placement = app.accounts.placement.clone();
    workers.spawn("placement", move |stop| {
        crate::placement::waiting::run(placement.clone(), stop)
    });
    let accounts = app.accounts.clone();
    workers.spawn("wal_checkpoints", move |stop| {
        let accounts = accounts.clone();
        async move {
            stop.run_until_cancelled(crate::accounts::deletion::run_wal_checkpoints(accounts))
                .await;
        }
    });
}

pub async fn serve(app: SharedApp) -> anyhow::Result<()> {
    if app.config.admin_token().is_none() {
        tracing::warn!("ADMIN_API_TOKEN is not set: admin endpoints will refuse every request");
    }
    let mail = crate::notify::sender::Sender::from_config(&app.config)?;
    start_workers(&app, mail);
    let listener = tokio::net::TcpListener::bind(app.config.listen_addr).await?;
    let addr = listener.local_addr()?;
    tracing::info!("listening on http://{addr}");
    // The tap (no delay for small responses) also gives the wrapped listener axum's
    // connect info.
    let listener = wire::JsonListener(listener).tap_io(|io| {
        let _ = io.get_mut().set_nodelay(true);
    });
    let server = axum::serve(
        listener,
        router(app.clone()).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(app.workers.stopping().cancelled_owned());
    let mut server = tokio::spawn(server.into_future());
    let ended_early = tokio::select! {
        () = shutdown_signal() => None,
        ended = &mut server => Some(ended),
    };
    // Cancelling the workers' token also starts axum's graceful shutdown.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    let drained = async {
        match ended_early {
            Some(ended) => Some(ended),
            None => tokio::time::timeout_at(deadline, &mut server).await.ok(),
        }
    };
    let (http, late) = tokio::join!(drained, app.workers.shutdown(deadline));
    if !late.is_empty() {
        tracing::warn!(workers = ?late, "workers still busy at the shutdown deadline: their claimed jobs wait for their leases to expire");
    }
    match http {
        Some(ended) => ended??,
        None => {
            tracing::warn!("requests still open at the shutdown deadline");
            server.abort();
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
