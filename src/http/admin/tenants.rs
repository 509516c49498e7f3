//! The tenants pages: the list (filter, search, paging) and one tenant (deployment and Git
//! history, audit trail, redeploy and rollback through the API's own code).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use minijinja::context;

use super::pages::page;
use super::AdminPage;
use crate::accounts::domain::CustomerId;
use crate::accounts::RequestMeta;
use crate::app::SharedApp;
use crate::db::outbox::Action;
use crate::db::tenants;
use crate::deploy::requests;
use crate::status::DeploymentStatus;

fn not_found(admin: &AdminPage) -> Response {
    let error = "No such tenant.";
    let csrf_token = admin.csrf_token();
    page(
        StatusCode::NOT_FOUND,
        "tenants.html",
        context! { error, csrf_token },
    )
}

/// One tenant's page; `notice`/`error` come from the button that led here.
async fn tenant_page(
    app: &SharedApp,
    admin: &AdminPage,
    id: &CustomerId,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let id = id.as_str();
    let loaded = async {
        let account = crate::accounts::view::load(app, id, chrono::Utc::now()).await?;
        let deployment = requests::status(app, id).await?;
        let git_history = crate::deploy::history::tenant_history(app, id, 20)
            .await
            .unwrap_or_default();
        let audit = crate::db::audit::for_customer(&app.db.pool, id, 50).await?;
        Ok::<_, crate::error::ApiError>((account, deployment, git_history, audit))
    };
    let (account, deployment, git_history, audit) = match loaded.await {
        Ok(loaded) => loaded,
        Err(crate::error::ApiError::NotFound(_)) => return not_found(admin),
        Err(err) => return err.into_response(),
    };
    let tenant = context! {
        customer_id => id,
        email => account.customer.email,
        company_name => account.customer.company_name,
        plan => account.subscription.as_ref().map(|s| s.plan.clone()),
        subscription => account.subscription.as_ref().map(|s| s.status.clone()),
    };
    page(
        status,
        "tenant.html",
        context! {
            csrf_token => admin.csrf_token(),
            deployment_history => &deployment.history,
            deployment,
            git_history,
            audit,
            tenant,
            notice,
            error,
        },
    )
}

pub async fn show(
    State(app): State<SharedApp>,
    admin: AdminPage,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(id) = CustomerId::parse(&id) else {
        return not_found(&admin);
    };
    // Only fixed notices: a query parameter never puts its own text on the page.
    let notice = match query.get("done").map(String::as_str) {
        Some("redeploy") => Some("Redeploy queued: the worker commits it shortly.".to_string()),
        Some("rollback") => Some("Rollback queued: the worker commits it shortly.".to_string()),
        _ => None,
    };
    tenant_page(&app, &admin, &id, StatusCode::OK, notice, None).await
}

/// A button's POST: checks the CSRF token, runs `action`, then shows the tenant again (a
/// redirect on success, so a reload does not repeat it; the error on the page otherwise).
async fn button<F, Fut>(
    app: SharedApp,
    admin: AdminPage,
    raw_id: String,
    form: HashMap<String, String>,
    done: &str,
    action: F,
) -> Response
where
    F: FnOnce(SharedApp, CustomerId) -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::error::ApiError>>,
{
    if !admin.csrf_ok(&form) {
        return super::csrf_refused();
    }
    let Some(id) = CustomerId::parse(&raw_id) else {
        return not_found(&admin);
    };
    match action(app.clone(), id.clone()).await {
        Ok(()) => {
            Redirect::to(&format!("/admin/tenants/{}?done={done}", id.as_str())).into_response()
        }
        Err(err) => {
            let (status, body) = err.body();
            tenant_page(&app, &admin, &id, status, None, Some(body.message)).await
        }
    }
}

pub async fn redeploy(
    State(app): State<SharedApp>,
    admin: AdminPage,
    meta: RequestMeta,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    button(
        app,
        admin,
        id,
        form,
        "redeploy",
        move |app, id| async move {
            requests::request(&app, id.as_str(), Action::Rebuild, &meta)
                .await
                .map(|_| ())
        },
    )
    .await
}

pub async fn rollback(
    State(app): State<SharedApp>,
    admin: AdminPage,
    meta: RequestMeta,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    button(
        app,
        admin,
        id,
        form,
        "rollback",
        move |app, id| async move {
            requests::rollback(&app, id.as_str(), None, &meta)
                .await
                .map(|_| ())
        },
    )
    .await
}

/// Tenants per page.
const PAGE: i64 = 50;

/// The list: `?q=` (an email or an id, exact or the start of one), `?status=` (deployment
/// state), `?after=` (paging by id).
pub async fn list(
    State(app): State<SharedApp>,
    admin: AdminPage,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let text = |key: &str| {
        query
            .get(key)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let (q, status, after) = (text("q"), text("status"), text("after"));
    let deployment = match status.as_str() {
        "" => None,
        s => match s.parse::<DeploymentStatus>() {
            Ok(state) => Some(state),
            Err(_) => return (StatusCode::BAD_REQUEST, "unknown deployment state").into_response(),
        },
    };
    let filter = tenants::Filter {
        deployment,
        search: (!q.is_empty()).then(|| q.clone()),
        ..Default::default()
    };
    let after_id = (!after.is_empty()).then_some(after.as_str());
    let rows = match tenants::list(&app.db.pool, &filter, after_id, PAGE + 1).await {
        Ok(rows) => rows,
        Err(err) => return crate::error::ApiError::from(err).into_response(),
    };
    let more = rows.len() as i64 > PAGE;
    let shown: Vec<_> = rows.into_iter().take(PAGE as usize).map(row).collect();
    let next_after = more.then(|| shown.last().map(|r| r.id.clone())).flatten();
    let states: Vec<&str> = DeploymentStatus::ALL.iter().map(|s| s.as_str()).collect();
    page(
        StatusCode::OK,
        "tenants.html",
        context! { csrf_token => admin.csrf_token(), tenants => shown, q, status, after, next_after, states },
    )
}

#[derive(serde::Serialize)]
struct Row {
    id: String,
    email: String,
    company_name: String,
    plan: Option<String>,
    subscription: Option<&'static str>,
    deployment: Option<&'static str>,
    committed_revision: Option<String>,
    applied_revision: Option<String>,
    message: Option<String>,
}

fn row(t: tenants::TenantRow) -> Row {
    Row {
        subscription: t.subscription.map(|s| s.as_str()),
        deployment: t.deployment.map(|d| d.as_str()),
        id: t.id,
        email: t.email,
        company_name: t.company_name,
        plan: t.plan,
        committed_revision: t.committed_revision,
        applied_revision: t.applied_revision,
        message: t.message,
    }
}
