//! The old admin dashboard's three deployment calls replayed against the real server, reading
//! the fields it reads: deploy `{success, namespace, instanceUrl}`, delete `{success,
//! namespace}`, status `{customer: {id, email, deploymentStatus, instanceUrl, deployedAt,
//! deploymentError}, pods}`, through pending/deploying, deployed (a signed Flux event), failed,
//! stalled and deleted, and pods from a poller pass over a recorded PodList.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::time::{Duration, Instant};

use cluster::{fixture, flux_event, FakeApi, FLUX_SECRET};
use common::{Backend, TestServer, ADMIN_TOKEN};
use serde_json::{json, Value};

const PASSWORD: &str = "correct-horse-battery";

for_each_backend!(
    the_three_calls_through_a_deployment_s_life,
    a_stalled_tenant_reads_as_failed_with_its_error,
    pods_come_from_the_poller,
);

async fn start(backend: Backend, extra: &[(&str, &str)]) -> Option<TestServer> {
    let mut env = vec![
        ("FLUX_WEBHOOK_SECRET", FLUX_SECRET),
        ("BASE_DOMAIN", "iot.example.net"),
    ];
    env.extend_from_slice(extra);
    if !env.iter().any(|(k, _)| *k == "WATCHER_KUBE_POLL") {
        env.push(("WATCHER_KUBE_POLL", "off"));
    }
    TestServer::start_with(backend, &env).await
}

async fn signup(s: &TestServer, email: &str) -> String {
    let (code, body) = s.signup(email, PASSWORD, "Legacy Co").await;
    assert_eq!(code, 201, "{body}");
    body["customer"]["customer_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The dashboard's status call: the whole answer (its `customer` and `pods` are checked).
async fn status(s: &TestServer, id: &str) -> Value {
    let body = s.deployment_status(id).await;
    assert_eq!(body["customer"]["id"], id, "{body}");
    assert_eq!(body["customer"]["instanceUrl"], body["instance_url"]);
    body
}

async fn delete(s: &TestServer, id: &str) -> (u16, Value) {
    let path = format!("/api/customers/{id}/deployment");
    let resp = s
        .client
        .delete(s.url(&path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

fn assert_rfc3339(text: &Value) {
    let t = text
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {text}"));
    assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
}

/// The `at` of the newest history row in `state` from `source`.
fn history_at(st: &Value, source: &str, state: &str) -> Value {
    st["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["source"] == source && h["state"] == state)
        .unwrap_or_else(|| panic!("no {source} {state} row: {st}"))["at"]
        .clone()
}

async fn the_three_calls_through_a_deployment_s_life(backend: Backend) {
    let Some(s) = start(backend, &[]).await else {
        return;
    };
    let id = signup(&s, "Legacy.Admin@acme.example").await;

    let (code, deployed) = s.admin_post(&format!("/api/customers/{id}/deploy")).await;
    assert_eq!(code, 202, "{deployed}");
    let url = format!("https://{id}.iot.example.net");
    assert_eq!(deployed["success"], true);
    assert_eq!(deployed["namespace"], format!("customer-{id}").as_str());
    assert_eq!(deployed["instanceUrl"], url.as_str());
    assert_eq!(
        (&deployed["customer_id"], &deployed["action"]),
        (&json!(id), &json!("rebuild")),
        "our fields stay"
    );

    // Right after the call the worker may or may not have committed yet.
    let st = status(&s, &id).await;
    let c = &st["customer"];
    let expected = match st["status"].as_str().unwrap() {
        "pending" => "pending",
        "committed" => "deploying",
        other => panic!("right after a deploy: {other}"),
    };
    assert_eq!(c["deploymentStatus"], expected, "{st}");
    assert_eq!(c["email"], "Legacy.Admin@acme.example");
    assert_eq!(c["instanceUrl"], url.as_str());
    assert_eq!(c["deploymentError"], Value::Null);
    assert_eq!(st["pods"], json!([]), "no poller: no pods");

    // Committed, the cluster has not said anything: deploying since the commit.
    let st = s
        .wait_for_status(&id, "committed", Duration::from_secs(30))
        .await;
    let c = &st["customer"];
    assert_eq!(c["deploymentStatus"], "deploying", "{st}");
    assert_rfc3339(&c["deployedAt"]);
    assert_eq!(c["deployedAt"], history_at(&st, "billing", "committed"));
    let rev = st["committed_revision"].as_str().unwrap().to_string();

    // Flux reports it ready through the signed webhook: deployed, at that moment.
    let (code, body) = flux_event(
        &s,
        &fixture("flux-event-reconciliation-succeeded.json", &id, &rev),
    )
    .await;
    assert_eq!((code, &body["status"]), (202, &json!("ready")), "{body}");
    let st = status(&s, &id).await;
    let c = &st["customer"];
    assert_eq!(
        (&st["status"], &c["deploymentStatus"]),
        (&json!("ready"), &json!("deployed"))
    );
    let ready_at = history_at(&st, "flux-event", "ready");
    assert_eq!(c["deployedAt"], ready_at, "{st}");
    assert_eq!(c["deploymentError"], Value::Null);

    // The same revision then fails its health check: failed, with Flux's message.
    let (code, _) = flux_event(
        &s,
        &fixture("flux-event-health-check-failed.json", &id, &rev),
    )
    .await;
    assert_eq!(code, 202);
    let st = status(&s, &id).await;
    let c = &st["customer"];
    assert_eq!(c["deploymentStatus"], "failed", "{st}");
    let message = format!("HealthCheckFailed: health check failed after 5m0.014s: timeout waiting for: [Deployment/customer-{id}/api status: 'InProgress']");
    assert_eq!(c["deploymentError"], message.as_str());
    assert_eq!(st["error"], message.as_str(), "ours unchanged");
    assert_eq!(c["deployedAt"], ready_at, "what runs was deployed then");

    let (code, removed) = delete(&s, &id).await;
    assert_eq!(code, 202, "{removed}");
    assert_eq!(removed["success"], true);
    assert_eq!(removed["namespace"], format!("customer-{id}").as_str());
    assert!(removed.get("instanceUrl").is_none(), "{removed}");
    assert_eq!(removed["action"], "delete");
    let st = s
        .wait_for_status(&id, "deleted", Duration::from_secs(30))
        .await;
    let c = &st["customer"];
    assert_eq!(c["deploymentStatus"], "deleted", "{st}");
    assert_eq!(
        (&c["deployedAt"], &c["deploymentError"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(st["pods"], json!([]));

    let (code, body) = s.admin_post("/api/customers/zzzzzzzzzzzz/deploy").await;
    assert_eq!((code, &body["code"]), (404, &json!("not_found")), "{body}");
}

async fn a_stalled_tenant_reads_as_failed_with_its_error(backend: Backend) {
    let Some(s) = start(backend, &[("WATCHER_STALL_SECONDS", "1")]).await else {
        return;
    };
    let id = signup(&s, "stalled@acme.example").await;
    let st = s
        .wait_for_status(&id, "stalled", Duration::from_secs(30))
        .await;
    let c = &st["customer"];
    assert_eq!(c["deploymentStatus"], "failed", "{st}");
    assert!(
        c["deploymentError"].as_str().unwrap().contains("within 1s"),
        "{st}"
    );
    assert_eq!(c["deploymentError"], st["error"]);
    assert_eq!(c["deployedAt"], history_at(&st, "billing", "committed"));

    // A late success: deployed, no error, deployed at the report.
    let rev = st["committed_revision"].as_str().unwrap().to_string();
    flux_event(
        &s,
        &fixture("flux-event-reconciliation-succeeded.json", &id, &rev),
    )
    .await;
    let st = status(&s, &id).await;
    let c = &st["customer"];
    assert_eq!(c["deploymentStatus"], "deployed", "{st}");
    assert_eq!(c["deploymentError"], Value::Null);
    assert_eq!(c["deployedAt"], history_at(&st, "flux-event", "ready"));
}

const PODS_PATH: &str = "/api/v1/pods";

/// Polls the status until its pods are `want`.
async fn wait_for_pods(s: &TestServer, id: &str, want: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = status(s, id).await;
        if st["pods"] == *want {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "pods never became {want}: {st}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn pods_come_from_the_poller(backend: Backend) {
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let env = [
        ("WATCHER_KUBE_POLL", "auto"),
        ("WATCHER_POLL_INTERVAL_SECONDS", "1"),
        ("KUBECONFIG", kubeconfig.as_str()),
    ];
    let Some(s) = start(backend, &env).await else {
        return;
    };
    let id = signup(&s, "pods@acme.example").await;
    let other = signup(&s, "nopods@acme.example").await;
    api.serve(PODS_PATH, fixture("kube-pod-list.json", &id, ""));

    let want = json!([
        {"name": "api-6d8f9c7b5-7xk2q", "status": "Running", "ready": true},
        {"name": "backup-29112340-hx8sd", "status": "Succeeded", "ready": false},
        {"name": "dashboard-5b7c6d9f8-m4n2p", "status": "Running", "ready": false},
        {"name": "exporter-7f6b5c4d9-q2w8e", "status": "Pending", "ready": false},
    ]);
    wait_for_pods(&s, &id, &want).await;
    assert_eq!(status(&s, &other).await["pods"], json!([]));
    let requests = api.requests();
    assert!(
        requests.iter().any(|r| r.starts_with("/api/v1/pods?")
            && r.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dbilling")),
        "{requests:?}"
    );

    // The next pass replaces the list: the pods are gone.
    api.serve(
        PODS_PATH,
        r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1844511"},"items":[]}"#
            .into(),
    );
    wait_for_pods(&s, &id, &json!([])).await;
}
