//! The rollouts page: the policy, how many tenants are behind, the current rollout's waves and
//! progress, and start / resume / abort through the same functions as `billing rollout`.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use minijinja::context;

use super::pages::page;
use super::{csrf_refused, AdminPage};
use crate::app::SharedApp;
use crate::rollout::{self, RolloutError, StartOptions, WavePlan};

/// The page, with `error` from a refused button (and its status).
async fn rollouts_page(
    app: &SharedApp,
    admin: &AdminPage,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    match rollout::status(&app.rollout_handles(), None).await {
        Ok(report) => page(
            status,
            "rollouts.html",
            context! { csrf_token => admin.csrf_token(), report, error },
        ),
        Err(err) => failed(err),
    }
}

pub async fn show(State(app): State<SharedApp>, admin: AdminPage) -> Response {
    rollouts_page(&app, &admin, StatusCode::OK, None).await
}

/// A refusal as the page shows it: the workflow's own words, with a fitting status.
async fn refused(app: &SharedApp, admin: &AdminPage, err: RolloutError) -> Response {
    let status = match &err {
        RolloutError::NotFound(_) => StatusCode::NOT_FOUND,
        RolloutError::WrongState { .. } | RolloutError::OtherTemplates(_) => StatusCode::CONFLICT,
        RolloutError::BadWaves(_) | RolloutError::BadOrder(_) => StatusCode::BAD_REQUEST,
        _ => return failed(err),
    };
    rollouts_page(app, admin, status, Some(err.to_string())).await
}

/// A failure that is not the operator's to fix (the database, Git): logged, never shown.
fn failed(err: RolloutError) -> Response {
    tracing::error!(error = %err, "admin page: rollout action failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "the rollout action failed; see the log",
    )
        .into_response()
}

fn done() -> Response {
    Redirect::to("/admin/rollouts").into_response()
}

/// Waves from the form: `canary` (a count) and `waves` (`10%,50%,100%`), both optional.
fn options(form: &HashMap<String, String>) -> Result<StartOptions, RolloutError> {
    let field = |name: &str| form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let canary = field("canary")
        .map(|n| {
            n.parse::<u64>()
                .map_err(|_| RolloutError::BadWaves(format!("canary {n:?}")))
        })
        .transpose()?;
    let waves = field("waves").map(str::parse::<WavePlan>).transpose()?;
    Ok(StartOptions {
        waves: WavePlan::of(canary, waves)?,
        auto_rollback: form.contains_key("auto_rollback"),
        ..StartOptions::default()
    })
}

pub async fn start(
    State(app): State<SharedApp>,
    admin: AdminPage,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !admin.csrf_ok(&form) {
        return csrf_refused();
    }
    let started = match options(&form) {
        Ok(opts) => rollout::start(&app.rollout_handles(), &opts).await,
        Err(err) => Err(err),
    };
    match started {
        Ok(_) => done(),
        Err(err) => refused(&app, &admin, err).await,
    }
}

pub async fn resume(
    State(app): State<SharedApp>,
    admin: AdminPage,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !admin.csrf_ok(&form) {
        return csrf_refused();
    }
    match rollout::resume(&app.rollout_handles(), &id).await {
        Ok(_) => done(),
        Err(err) => refused(&app, &admin, err).await,
    }
}

pub async fn abort(
    State(app): State<SharedApp>,
    admin: AdminPage,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !admin.csrf_ok(&form) {
        return csrf_refused();
    }
    let rollback = form.contains_key("rollback");
    match rollout::abort(&app.rollout_handles(), &id, rollback).await {
        Ok(_) => done(),
        Err(err) => refused(&app, &admin, err).await,
    }
}
