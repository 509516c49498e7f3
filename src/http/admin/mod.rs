//! `/admin`: the platform team's pages, server-rendered, behind the admin token. Log in at
//! `/admin/login` with the token (a form with a CSRF token), then an HttpOnly, SameSite=Strict
//! session cookie; every form carries the session's CSRF token. Buttons call the same code
//! as the API's endpoints.

mod clusters;
mod pages;
mod rollouts;
mod session;
mod tenants;

use std::collections::HashMap;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::context;
use secrecy::ExposeSecret;

use crate::app::SharedApp;
use pages::page;
use session::{AdminKeys, AdminSession, LOGIN_CSRF_COOKIE, SESSION_COOKIE};

pub fn router() -> Router<SharedApp> {
    Router::new()
        .route("/admin", get(|| async { Redirect::to("/admin/tenants") }))
        .route("/admin/login", get(login_form).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/tenants", get(tenants::list))
        .route("/admin/tenants/{id}", get(tenants::show))
        .route("/admin/tenants/{id}/redeploy", post(tenants::redeploy))
        .route("/admin/tenants/{id}/rollback", post(tenants::rollback))
        .route("/admin/clusters", get(clusters::list))
        .route("/admin/rollouts", get(rollouts::show))
        .route("/admin/rollouts/start", post(rollouts::start))
        .route("/admin/rollouts/{id}/resume", post(rollouts::resume))
        .route("/admin/rollouts/{id}/abort", post(rollouts::abort))
}

fn keys(app: &SharedApp) -> Option<AdminKeys> {
    let token = app.config.admin_token()?;
    Some(AdminKeys::from_admin_token(token.expose_secret()))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Cookies get `Secure` when the request reached us over TLS (as a trusted proxy says).
fn over_tls(app: &SharedApp, headers: &HeaderMap) -> bool {
    app.config.trust_forwarded_for
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn disabled() -> Response {
    let error = "The admin page is disabled: ADMIN_API_TOKEN is not set.";
    page(StatusCode::FORBIDDEN, "login.html", context! { error })
}

/// A logged-in admin: pages without one send the browser to the login form.
pub struct AdminPage {
    keys: AdminKeys,
    session: AdminSession,
}

impl AdminPage {
    pub fn csrf_token(&self) -> String {
        self.keys.csrf_token(&self.session)
    }

    /// Whether a form's `csrf_token` is this session's (if not, answer [`csrf_refused`]).
    pub fn csrf_ok(&self, form: &HashMap<String, String>) -> bool {
        let given = form.get("csrf_token").map(String::as_str).unwrap_or("");
        self.keys.csrf_matches(&self.session, given)
    }
}

pub fn csrf_refused() -> Response {
    (StatusCode::FORBIDDEN, "invalid CSRF token: reload the page").into_response()
}

impl FromRequestParts<SharedApp> for AdminPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, Response> {
        let keys = keys(app).ok_or_else(disabled)?;
        let session = session::cookie(&parts.headers, SESSION_COOKIE)
            .and_then(|cookie| keys.verify(cookie, now()));
        match session {
            Some(session) => Ok(AdminPage { keys, session }),
            None if parts.method == axum::http::Method::GET => {
                Err(Redirect::to("/admin/login").into_response())
            }
            None => Err((StatusCode::UNAUTHORIZED, "log in first").into_response()),
        }
    }
}

async fn login_form(State(app): State<SharedApp>, headers: HeaderMap) -> Response {
    if keys(&app).is_none() {
        return disabled();
    }
    login_page(&app, &headers, StatusCode::OK, None)
}

/// The form, with a fresh login CSRF token in a cookie and the hidden field (double submit).
fn login_page(
    app: &SharedApp,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let login_csrf = session::random_hex();
    let mut response = page(status, "login.html", context! { login_csrf, error });
    session::set_cookie(
        response.headers_mut(),
        LOGIN_CSRF_COOKIE,
        &login_csrf,
        3600,
        over_tls(app, headers),
    );
    response
}

async fn login(
    State(app): State<SharedApp>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(keys) = keys(&app) else {
        return disabled();
    };
    let expected_csrf = session::cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    let given_csrf = form.get("csrf_token").map(String::as_str).unwrap_or("");
    if !session::same(expected_csrf, given_csrf) {
        let error = Some("The form expired or came from elsewhere: log in again.");
        return login_page(&app, &headers, StatusCode::FORBIDDEN, error);
    }
    let token = form.get("token").map(String::as_str).unwrap_or("");
    let expected = app
        .config
        .admin_token()
        .map(|t| t.expose_secret().to_string());
    if !expected.is_some_and(|expected| session::same(&expected, token)) {
        tracing::warn!("admin page login with a wrong token");
        return login_page(
            &app,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("Wrong admin token."),
        );
    }
    let tls = over_tls(&app, &headers);
    let mut response = Redirect::to("/admin/tenants").into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    let cookie = keys.issue(now());
    session::set_cookie(
        response.headers_mut(),
        SESSION_COOKIE,
        &cookie,
        session::session_seconds(),
        tls,
    );
    session::set_cookie(response.headers_mut(), LOGIN_CSRF_COOKIE, "", 0, tls);
    response
}

async fn logout(
    State(app): State<SharedApp>,
    admin: AdminPage,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !admin.csrf_ok(&form) {
        return csrf_refused();
    }
    let mut response = Redirect::to("/admin/login").into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    session::set_cookie(
        response.headers_mut(),
        SESSION_COOKIE,
        "",
        0,
        over_tls(&app, &headers),
    );
    response
}
