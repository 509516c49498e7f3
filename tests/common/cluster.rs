//! What the cluster sends billing, for the tests that replay it: recorded Flux events signed
//! exactly as notification-controller's generic-hmac forwarder signs them, and a stand-in
//! Kubernetes API server on 127.0.0.1 (with a kubeconfig pointing at it) for the poller.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::common::TestServer;

pub const FLUX_SECRET: &str = "flux-hmac-test-secret-0123456789abcdef";
/// The tenant id and revision the recorded fixtures name; replaced by the test tenant's.
pub const FIXTURE_ID: &str = "k3x9m2p7q4wz";
pub const FIXTURE_REV: &str = "5d0c1f7a3be8e2a94d6c0b7f18e3a2c9d4b6f071";

/// A recorded fixture about tenant `id` at revision `rev`.
pub fn fixture(name: &str, id: &str, rev: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .unwrap()
        .replace(FIXTURE_ID, id)
        .replace(FIXTURE_REV, rev)
}

/// `X-Signature` as notification-controller computes it: HMAC-SHA256 of the body, hex.
pub fn flux_signature(body: &[u8], key: &str) -> String {
    format!("sha256={}", crate::common::hmac_sha256_hex(key, &[body]))
}

/// POSTs a raw JSON body with `headers`: the status and the JSON answer.
pub async fn post(
    s: &TestServer,
    path: &str,
    body: &str,
    headers: &[(&str, String)],
) -> (u16, Value) {
    let mut req = s.client.post(s.url(path)).body(body.to_string());
    req = req.header("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// Posts a Flux event signed with [`FLUX_SECRET`] to the real webhook endpoint.
pub async fn flux_event(s: &TestServer, body: &str) -> (u16, Value) {
    let sig = flux_signature(body.as_bytes(), FLUX_SECRET);
    let headers = [
        ("X-Signature", sig),
        ("Gotk-Component", "kustomize-controller".into()),
    ];
    post(s, "/api/gitops/flux/events", body, &headers).await
}

/// A stand-in Kubernetes API server: answers each path in `lists` with the list the test set
/// there, every other path 404 like a cluster without that CRD. `seen` holds every request URI.
pub struct FakeApi {
    pub url: String,
    pub lists: Arc<Mutex<HashMap<String, String>>>,
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        use axum::extract::OriginalUri;
        let lists: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (l, sn) = (lists.clone(), seen.clone());
        let app = axum::Router::new().fallback(move |OriginalUri(uri): OriginalUri| {
            let (lists, seen) = (l.clone(), sn.clone());
            async move {
                seen.lock().unwrap().push(uri.to_string());
                let (code, body) = match lists.lock().unwrap().get(uri.path()) {
                    Some(list) => (200, list.clone()),
                    None => (404, r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","details":{},"code":404}"#.to_string()),
                };
                let status = axum::http::StatusCode::from_u16(code).unwrap();
                (status, [("content-type", "application/json")], body)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeApi {
            url: format!("http://{addr}"),
            lists,
            seen,
        }
    }

    /// Serves `list` at `path` from now on.
    pub fn serve(&self, path: &str, list: String) {
        self.lists.lock().unwrap().insert(path.to_string(), list);
    }

    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Writes a kubeconfig pointing at this server into `dir`; returns its path.
    pub fn kubeconfig(&self, dir: &Path) -> String {
        let path = dir.join("kubeconfig");
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\ncurrent-context: test\nusers:\n- name: test\n  user:\n    token: local-test-token\n",
            self.url
        );
        std::fs::write(&path, config).unwrap();
        path.to_str().unwrap().to_string()
    }
}
