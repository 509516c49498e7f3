//! What every request leaves behind: an `X-Request-Id` (the client's when it is sane, else a
//! fresh UUID) echoed on the response; a `request` span carrying it, entered for everything
//! the request does, so each log line it causes names it; one `info` line when it is answered
//! (method, route pattern, status, latency); and the per-route counters of `/metrics`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::app::SharedApp;
use crate::metrics::Metrics;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A client's id longer than this, or with other characters than [`id_char`], is replaced:
/// it ends up in every log line, so it must not be able to forge or bloat them.
pub const MAX_REQUEST_ID_LEN: usize = 128;

fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/' | '+' | '=')
}

/// The client's `X-Request-Id`, when there is exactly one and it is 1 to 128 of [`id_char`].
fn client_request_id(headers: &HeaderMap) -> Option<String> {
    let mut values = headers.get_all(&REQUEST_ID).iter();
    let (value, None) = (values.next()?, values.next()) else {
        return None;
    };
    let id = value.to_str().ok()?;
    (!id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.chars().all(id_char))
        .then(|| id.to_string())
}

/// The middleware: outermost, so it sees the final status and spans every other layer.
pub async fn observe(State(app): State<SharedApp>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id =
        client_request_id(request.headers()).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // The pattern (`/api/customers/{id}`), never the raw path: ids stay out of the line, and
    // one route is one value. No pattern: nothing matched (the 404 fallback).
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string());
    let method = request.method().clone();
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    // Microsecond precision: more digits are float noise.
    let latency_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1000.0;
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            route = route.as_deref().unwrap_or("(unmatched)"),
            status = status.as_u16(),
            latency_ms,
            "request answered"
        );
    });
    if let Some(route) = &route {
        count(&app.metrics, route, status);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// The counters that are a route's answers: signups, logins and webhook deliveries by result.
fn count(metrics: &Metrics, route: &str, status: StatusCode) {
    match route {
        "/api/customers/signup" => {
            let named = [(201, "created"), (409, "conflict"), (429, "throttled")];
            let label = [("result", result(status, &named))];
            metrics.signups.get_or_create(&label).inc();
        }
        "/api/customers/login" => {
            let named = [
                (200, "success"),
                (401, "invalid_credentials"),
                (429, "locked"),
            ];
            let label = [("result", result(status, &named))];
            metrics.logins.get_or_create(&label).inc();
        }
        "/api/webhooks/stripe" => webhook(metrics, "stripe", status),
        "/api/gitops/flux/events" => webhook(metrics, "flux", status),
        "/api/gitops/argocd/events" => webhook(metrics, "argocd", status),
        _ => {}
    }
}

/// The `result` label of an answer: its name in `named`, else `rejected` (another 4xx) or
/// `error`.
fn result(status: StatusCode, named: &[(u16, &'static str)]) -> &'static str {
    match named.iter().find(|(code, _)| *code == status.as_u16()) {
        Some((_, name)) => name,
        None if status.is_client_error() => "rejected",
        None => "error",
    }
}

fn webhook(metrics: &Metrics, source: &'static str, status: StatusCode) {
    let result = if status.is_success() {
        "accepted"
    } else {
        result(status, &[(401, "unauthorized")])
    };
    metrics
        .webhook_events
        .get_or_create(&[("source", source), ("result", result)])
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(REQUEST_ID, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn only_sane_client_ids_are_kept() {
        assert_eq!(
            client_request_id(&headers(&["abc-123_x.y:z"])).as_deref(),
            Some("abc-123_x.y:z")
        );
        let longest = "a".repeat(MAX_REQUEST_ID_LEN);
        assert_eq!(client_request_id(&headers(&[&longest])), Some(longest));
        for refused in [
            &["a".repeat(MAX_REQUEST_ID_LEN + 1)][..],
            &["".to_string()],
            &["two words".to_string()],
            &["quote\"d".to_string()],
            &["a".to_string(), "b".to_string()],
        ] {
            let values: Vec<&str> = refused.iter().map(String::as_str).collect();
            assert_eq!(client_request_id(&headers(&values)), None, "{refused:?}");
        }
        assert_eq!(client_request_id(&HeaderMap::new()), None);
    }
}
