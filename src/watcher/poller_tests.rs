//! The poller's Kubernetes path, protocol-exact: kube's client against a local API server on
//! 127.0.0.1 that serves the recorded list responses at the real API paths.

use std::sync::{Arc, Mutex};

use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use super::*;
use crate::watcher::{commit_of, SyncState};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

type Seen = Arc<Mutex<Vec<String>>>;

/// Serves the KustomizationList in two pages (as the API server does with `limit`) and answers
/// the Argo CD path like a cluster without that CRD.
async fn api_server() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let list = fixture("kube-kustomization-list.json");
    let page = move |State(seen): State<Seen>, OriginalUri(uri): OriginalUri| {
        let list = list.clone();
        async move {
            seen.lock().unwrap().push(uri.to_string());
            let mut page = list.clone();
            let items = list["items"].as_array().unwrap();
            if uri.query().unwrap_or_default().contains("continue=page2") {
                page["items"] = items[1..].to_vec().into();
                page["metadata"]["continue"] = "".into();
            } else {
                page["items"] = items[..1].to_vec().into();
                page["metadata"]["continue"] = "page2".into();
            }
            Json(page)
        }
    };
    let not_found = |OriginalUri(uri): OriginalUri| async move {
        let status = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "the server could not find the requested resource", "reason": "NotFound",
            "details": {}, "code": 404
        });
        let _ = uri;
        (StatusCode::NOT_FOUND, Json(status)).into_response()
    };
    let app = Router::new()
        .route(
            "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations",
            get(page),
        )
        .fallback(not_found)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn lists_kustomizations_through_kube_and_skips_a_missing_crd() {
    let (url, seen) = api_server().await;
    let config = kube::Config::new(url.parse::<axum::http::Uri>().unwrap());
    let client = Client::try_from(config).unwrap();

    let list = list(&client, Kind::Kustomization).await.unwrap().unwrap();
    let got: Vec<(String, SyncState, Option<String>)> = reports(Kind::Kustomization, &list)
        .into_iter()
        .map(|r| {
            (
                r.customer_id,
                r.state,
                r.revision.as_deref().and_then(commit_of),
            )
        })
        .collect();
    let rev = "5d0c1f7a3be8e2a94d6c0b7f18e3a2c9d4b6f071".to_string();
    assert_eq!(
        got,
        [
            (
                "demo".into(),
                SyncState::Ready,
                Some("9a41e07c2b6d5f83e1c4a7b90d2f6e58c3a1b7d4".into())
            ),
            ("k3x9m2p7q4wz".into(), SyncState::Ready, Some(rev.clone())),
            ("m8q2v5t1r6ye".into(), SyncState::Failed, Some(rev)),
        ],
        "both pages, in order"
    );
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    for r in &requests {
        assert!(
            r.starts_with(
                "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations?"
            ),
            "{r}"
        );
        assert!(
            r.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dbilling"),
            "{r}"
        );
        assert!(r.contains("limit=500"), "{r}");
    }
    assert!(requests[1].contains("continue=page2"));

    assert!(
        list_or_none(&client, Kind::Application).await,
        "no Argo CD CRD: skipped, not an error"
    );
}

async fn list_or_none(client: &Client, kind: Kind) -> bool {
    list(client, kind).await.unwrap().is_none()
}

#[test]
fn reads_a_recorded_application_list() {
    let got: Vec<(String, SyncState)> =
        reports(Kind::Application, &fixture("kube-application-list.json"))
            .into_iter()
            .map(|r| (r.customer_id, r.state))
            .collect();
    assert_eq!(
        got,
        [
            ("k3x9m2p7q4wz".into(), SyncState::Ready),
            ("m8q2v5t1r6ye".into(), SyncState::Failed)
        ]
    );
    assert!(reports(Kind::Application, &serde_json::json!({"items": null})).is_empty());
}

/// An API server that accepts and never answers: the list is abandoned after its limit, so one
/// cluster's hung API server delays only its own poller's pass.
#[tokio::test]
async fn a_hanging_api_server_is_abandoned_after_the_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            open.push(socket); // kept open, never answered
        }
    });
    let config = kube::Config::new(format!("http://{addr}").parse::<axum::http::Uri>().unwrap());
    let client = Client::try_from(config).unwrap();
    let err = bounded(
        std::time::Duration::from_secs(1),
        "a list",
        list(&client, Kind::Kustomization),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("took longer than 1s"), "{err:#}");
    held.abort();
}
