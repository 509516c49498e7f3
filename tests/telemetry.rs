//! What operators read, through the real server: `/metrics` parsed with a Prometheus text
//! parser after a signup, a failed login and webhooks (pushing to a real `git daemon`), and
//! the JSON log lines of `LOG_FORMAT=json` with the request id every line of a request carries.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use cluster::{fixture, flux_event, post, FLUX_SECRET};
use common::{Backend, TestServer, ADMIN_TOKEN, PASSWORD};
use prometheus_parse::{Scrape, Value};

for_each_backend!(metrics_count_what_the_requests_did);

/// The scrape, parsed: every sample by name and labels (`name{a="x",b="y"}`), and the families
/// the exposition declares.
struct Exposition {
    samples: BTreeMap<String, f64>,
    families: Vec<String>,
}

impl Exposition {
    async fn scrape(s: &TestServer) -> Exposition {
        let resp = s
            .client
            .get(s.url("/metrics"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
        let mut samples = BTreeMap::new();
        for sample in scrape.samples {
            let mut labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            labels.sort();
            let value = match sample.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                Value::Histogram(buckets) => {
                    // The +Inf bucket: how many observations.
                    buckets.last().map_or(0.0, |b| b.count)
                }
                Value::Summary(_) => continue,
            };
            let key = if labels.is_empty() {
                sample.metric
            } else {
                format!("{}{{{}}}", sample.metric, labels.join(","))
            };
            samples.insert(key, value);
        }
        Exposition {
            samples,
            families: scrape.docs.keys().cloned().collect(),
        }
    }

    fn get(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("{key} not in the scrape: {:#?}", self.samples))
    }
}

async fn metrics_count_what_the_requests_did(backend: Backend) {
    let daemon = common::GitDaemon::start("tenants.git").expect("git daemon");
    let url = daemon.url("tenants.git");
    let env = [
        ("GITOPS_REMOTE", url.as_str()),
        ("FLUX_WEBHOOK_SECRET", FLUX_SECRET),
        ("WATCHER_KUBE_POLL", "off"),
    ];
    let Some(s) = TestServer::start_with(backend, &env).await else {
        return;
    };
    let id = s.signed_up("metrics@acme.example", "Metrics Co").await;
    let (code, _) = s.signup("metrics@acme.example", PASSWORD, "Again").await;
    assert_eq!(code, 409, "the same email twice");
    let wrong = serde_json::json!({ "email": "metrics@acme.example", "password": "not-it-at-all" });
    let (code, _) = s.post_json("/api/customers/login", &wrong).await;
    assert_eq!(code, 401);
    s.wait_for_status(&id, "committed", Duration::from_secs(30))
        .await;
    let rev = s.deployment_status(&id).await["committed_revision"]
        .as_str()
        .unwrap()
        .to_string();
    let event = fixture("flux-event-reconciliation-succeeded.json", &id, &rev);
    let (code, body) = flux_event(&s, &event).await;
    assert_eq!(
        (code, &body["outcome"]),
        (202, &"recorded".into()),
        "{body}"
    );
    let (code, _) = post(&s, "/api/gitops/flux/events", &event, &[]).await;
    assert_eq!(code, 401, "unsigned");

    let m = Exposition::scrape(&s).await;
    assert_eq!(m.get(r#"billing_signups_total{result="created"}"#), 1.0);
    assert_eq!(m.get(r#"billing_signups_total{result="conflict"}"#), 1.0);
    assert_eq!(
        m.get(r#"billing_logins_total{result="invalid_credentials"}"#),
        1.0
    );
    assert_eq!(
        m.get(r#"billing_login_failures_total{reason="wrong_password"}"#),
        1.0
    );
    assert_eq!(
        m.get(r#"billing_webhook_events_total{result="accepted",source="flux"}"#),
        1.0
    );
    assert_eq!(
        m.get(r#"billing_webhook_events_total{result="unauthorized",source="flux"}"#),
        1.0
    );
    // The event made the one tenant ready; its subscription is a trial.
    assert_eq!(
        m.get(r#"billing_tenants_by_deployment_state{state="ready"}"#),
        1.0
    );
    assert!(
        !m.samples.keys().any(|k| k.contains(r#"state="committed""#)),
        "no committed tenant left: {:#?}",
        m.samples
    );
    assert_eq!(
        m.get(r#"billing_tenants_by_subscription_state{state="trialing"}"#),
        1.0
    );
    assert_eq!(m.get("billing_render_jobs_pending"), 0.0);
    assert_eq!(m.get("billing_outbox_oldest_job_age_seconds"), 0.0);
    // One tenant rendered, one commit written and pushed to the daemon.
    assert!(m.get("billing_render_duration_seconds") >= 1.0);
    assert!(m.get("billing_gitops_commit_duration_seconds") >= 1.0);
    assert!(m.get("billing_gitops_push_duration_seconds") >= 1.0);
    assert_eq!(m.get("billing_gitops_push_failures_total"), 0.0);
    assert_eq!(m.get("billing_rollout_tenants_behind"), 0.0);
    assert_eq!(m.get("billing_rollout_wave"), 0.0);
    for family in ["billing_worker_restarts", "billing_rollout_waves"] {
        assert!(
            m.families.iter().any(|f| f == family),
            "{family}: {:?}",
            m.families
        );
    }
}

/// The server's log lines so far, each parsed as JSON (a line that is not fails the test).
fn json_lines(s: &TestServer) -> Vec<serde_json::Value> {
    s.log()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id() {
    let s = TestServer::start_with(Backend::Sqlite, &[("LOG_FORMAT", "json")])
        .await
        .unwrap();
    let body = serde_json::json!({
        "email": "logs@acme.example", "password": PASSWORD, "company_name": "Logs Co"
    });
    let resp = s
        .client
        .post(s.url("/api/customers/signup"))
        .header("X-Request-Id", "client-chosen.id-42")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-request-id"], "client-chosen.id-42");
    let created: serde_json::Value = resp.json().await.unwrap();
    let id = created["customer"]["customer_id"].as_str().unwrap();

    // Without an id (or with one that is not sane) the server makes one up.
    let path = format!("/api/customers/{id}");
    let mut generated = Vec::new();
    for sent in [None, Some("x".repeat(200)), Some("no spaces".to_string())] {
        let mut req = s.client.get(s.url(&path)).bearer_auth(ADMIN_TOKEN);
        if let Some(sent) = &sent {
            req = req.header("X-Request-Id", sent);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let echoed = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "{sent:?}: {echoed}");
        generated.push(echoed);
    }
    generated.dedup();
    assert_eq!(generated.len(), 3, "a fresh id each time: {generated:?}");

    let lines = json_lines(&s);
    let of = |request_id: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|l| l["request_id"] == request_id)
            .collect()
    };
    let signup = of("client-chosen.id-42");
    let answered: Vec<_> = signup
        .iter()
        .filter(|l| l["message"] == "request answered")
        .collect();
    assert_eq!(answered.len(), 1, "logged once: {signup:#?}");
    let line = answered[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["method"], "POST");
    assert_eq!(line["route"], "/api/customers/signup");
    assert_eq!(line["status"], 201);
    assert!(line["latency_ms"].as_f64().unwrap() > 0.0, "{line}");
    assert!(
        signup
            .iter()
            .any(|l| l["message"] == "customer signed up" && l["customer_id"] == id),
        "the handler's own line carries the request id: {signup:#?}"
    );
    // The route is the pattern, not the path with the customer's id.
    let read = of(&generated[0]);
    let answered = read
        .iter()
        .find(|l| l["message"] == "request answered")
        .unwrap();
    assert_eq!(answered["route"], "/api/customers/{id}");
    assert_eq!(answered["status"], 200);
}
