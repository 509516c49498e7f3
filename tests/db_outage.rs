//! A database outage through the running server: with the test's own PostgreSQL cluster
//! stopped, signup and login fail fast with 503 `database_unavailable` and `Retry-After`, and
//! `/readyz` says 503 within about a second; once the cluster is back, signups work again
//! without restarting billing.

mod common;
#[path = "common/pg_cluster.rs"]
mod pg_cluster;

use std::time::{Duration, Instant};

use common::TestServer;
use pg_cluster::PgCluster;
use serde_json::{json, Value};

struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<String>,
    took: Duration,
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let started = Instant::now();
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        body,
        retry_after,
        took: started.elapsed(),
    }
}

fn signup_body(email: &str) -> Value {
    json!({ "email": email, "password": "correct horse battery", "company_name": "Outage Ltd" })
}

fn login_body(email: &str) -> Value {
    json!({ "email": email, "password": "correct horse battery" })
}

/// Well under the 30 s a stopped database used to cost; the default acquire timeout is 3 s.
const FAST: Duration = Duration::from_secs(5);

fn assert_unavailable(what: &str, a: &Answer, within: Duration) {
    assert_eq!(a.status, 503, "{what}: {}", a.body);
    assert_eq!(a.body["code"], "database_unavailable", "{what}: {}", a.body);
    assert!(a.body["message"].as_str().is_some_and(|m| !m.is_empty()));
    let retry: u64 = a
        .retry_after
        .as_deref()
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry >= 1, "{what}: Retry-After {retry}");
    assert!(a.took < within, "{what} took {:?}", a.took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_database_fails_fast_with_503_and_recovers_without_restart() {
    let Some(cluster) = PgCluster::init() else {
        return;
    };
    cluster.start();
    let s = TestServer::start_on(cluster.url(), &[]).await;
    let post = |path: &str, body: Value| s.client.post(s.url(path)).json(&body);

    let a = send(post(
        "/api/customers/signup",
        signup_body("before@outage.example"),
    ))
    .await;
    assert_eq!(a.status, 201, "{}", a.body);

    cluster.stop();
    let a = send(post(
        "/api/customers/signup",
        signup_body("during@outage.example"),
    ))
    .await;
    assert_unavailable("signup", &a, FAST);
    let a = send(post(
        "/api/customers/login",
        login_body("before@outage.example"),
    ))
    .await;
    assert_unavailable("login", &a, FAST);
    let a = send(s.client.get(s.url("/readyz"))).await;
    assert_unavailable("/readyz", &a, Duration::from_secs(2));

    // Back up: the same billing process serves again, no restart.
    cluster.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    let a = loop {
        let a = send(post(
            "/api/customers/signup",
            signup_body("after@outage.example"),
        ))
        .await;
        if a.status != 503 || Instant::now() > deadline {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(a.status, 201, "{}\n{}", a.body, s.log());
    let a = send(post(
        "/api/customers/login",
        login_body("before@outage.example"),
    ))
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = send(s.client.get(s.url("/readyz"))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(!s.log().contains("panicked"), "{}", s.log());
}
