//! One JSON error body for every error response: what axum itself answers (405 with an empty
//! body, a bad query string or path as `text/plain` 400) is re-dressed as an [`ApiError`].

use axum::body::to_bytes;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use super::extract::is_json;
use crate::error::ApiError;

/// Framework rejection texts are one short line; anything longer is cut, not buffered.
const MAX_REJECTION_BYTES: usize = 4096;

/// Leaves successes and JSON errors alone; turns any other 4xx/5xx into the JSON body, keeping
/// its status and headers (`Allow` on a 405) and its text as the message.
/// The admin pages answer errors as pages: a browser shows them, no client parses them.
fn is_html(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}

pub async fn json_error_bodies(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || is_json(response.headers())
        || is_html(response.headers())
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = to_bytes(body, MAX_REJECTION_BYTES)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase()
    } else {
        text
    };
    let mut fresh = ApiError::Rejected { status, message }.into_response();
    let own = fresh.headers().clone();
    for (name, value) in &parts.headers {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH && !own.contains_key(name) {
            fresh.headers_mut().append(name, value.clone());
        }
    }
    fresh
}
