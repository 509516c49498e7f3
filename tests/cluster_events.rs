//! Status from many clusters through the real server: each cluster gets its own event secret
//! from `billing cluster add` (printed once), recorded Flux and Argo CD payloads posted to
//! `/api/gitops/clusters/<name>/…` with that secret are recorded with the cluster, another
//! cluster's secret is 401, a report about a tenant placed elsewhere is 409 and not applied,
//! `cluster rotate-secret` retires the old secret, and /metrics shows each cluster's figures.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::time::Duration;

use cluster::{fixture, flux_signature, post};
use common::{Backend, TestServer};
use serde_json::Value;

const PASSWORD: &str = "correct-horse-battery";

for_each_backend!(clusters_report_with_their_own_secrets);

/// `billing <args>` beside the server; its stdout.
fn cli(s: &TestServer, args: &[&str]) -> String {
    let (ok, out, err) = common::cli::run(s, args, &[]);
    assert!(ok, "billing {args:?}: {err}");
    out
}

/// The secret a `cluster add|rotate-secret` printed.
fn secret_in(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("event secret (shown once): "))
        .unwrap_or_else(|| panic!("no secret in {out}"))
        .trim()
        .to_string()
}

/// A signup in `region`, committed: its id, revision and the cluster it was placed on.
async fn committed_tenant(s: &TestServer, email: &str, region: &str) -> (String, String, String) {
    let signup = serde_json::json!({
        "email": email, "password": PASSWORD, "company_name": "Clusters Co", "region": region,
    });
    let (code, body) = s.post_json("/api/customers/signup", &signup).await;
    assert_eq!(code, 201, "{body}");
    let id = body["customer"]["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let st = s
        .wait_for_status(&id, "committed", Duration::from_secs(30))
        .await;
    let cluster = st["cluster"].as_str().unwrap_or_default().to_string();
    (
        id,
        st["committed_revision"].as_str().unwrap().to_string(),
        cluster,
    )
}

async fn flux(s: &TestServer, cluster: &str, body: &str, secret: &str) -> (u16, Value) {
    let headers = [("X-Signature", flux_signature(body.as_bytes(), secret))];
    let path = format!("/api/gitops/clusters/{cluster}/flux/events");
    post(s, &path, body, &headers).await
}

async fn argocd(s: &TestServer, cluster: &str, body: &str, secret: &str) -> (u16, Value) {
    let headers = [("Authorization", format!("Bearer {secret}"))];
    let path = format!("/api/gitops/clusters/{cluster}/argocd/events");
    post(s, &path, body, &headers).await
}

async fn history_rows(s: &TestServer, id: &str) -> i64 {
    let sql = "SELECT COUNT(*) FROM deployment_history WHERE customer_id = $1";
    common::count(&s.db().await, sql, id).await
}

async fn clusters_report_with_their_own_secrets(backend: Backend) {
    let env = [("WATCHER_KUBE_POLL", "off")];
    let Some(s) = TestServer::start_with(backend, &env).await else {
        return;
    };
    let eu = secret_in(&cli(
        &s,
        &[
            "cluster", "add", "eu-1", "--region", "eu", "--cpu", "4", "--memory", "8Gi",
        ],
    ));
    let us = secret_in(&cli(
        &s,
        &[
            "cluster", "add", "us-1", "--region", "us", "--cpu", "2", "--memory", "4Gi",
        ],
    ));
    assert_ne!(eu, us);
    // Only the ciphertext is stored.
    let stored = common::count(
        &s.db().await,
        "SELECT COUNT(*) FROM clusters WHERE event_secret LIKE '%' || $1 || '%'",
        &eu,
    )
    .await;
    assert_eq!(stored, 0, "the plain secret is in the database");

    let (a, rev_a, on_a) = committed_tenant(&s, "a@clusters.example", "eu").await;
    let (b, rev_b, on_b) = committed_tenant(&s, "b@clusters.example", "us").await;
    assert_eq!((on_a.as_str(), on_b.as_str()), ("eu-1", "us-1"));
    let flux_a = fixture("flux-event-reconciliation-succeeded.json", &a, &rev_a);
    let argo_b = fixture("argocd-notification-deployed.json", &b, &rev_b);

    // Another cluster's secret, a wrong one, none: 401 with the JSON body, nothing recorded.
    let before = history_rows(&s, &a).await;
    for secret in [us.as_str(), "not-the-secret"] {
        let (code, body) = flux(&s, "eu-1", &flux_a, secret).await;
        assert_eq!(
            (code, &body["code"]),
            (401, &"unauthorized".into()),
            "{body}"
        );
    }
    let (code, _) = post(&s, "/api/gitops/clusters/eu-1/flux/events", &flux_a, &[]).await;
    assert_eq!(code, 401);
    let (code, body) = argocd(&s, "us-1", &argo_b, &eu).await;
    assert_eq!(
        (code, &body["code"]),
        (401, &"unauthorized".into()),
        "{body}"
    );
    assert_eq!(history_rows(&s, &a).await, before);

    // An unknown cluster: 404 JSON.
    let (code, body) = flux(&s, "nowhere", &flux_a, &eu).await;
    assert_eq!((code, &body["code"]), (404, &"not_found".into()), "{body}");

    // Each cluster with its own secret, about its own tenant: recorded with the cluster.
    let (code, body) = flux(&s, "eu-1", &flux_a, &eu).await;
    assert_eq!((code, &body["status"]), (202, &"ready".into()), "{body}");
    let (code, body) = argocd(&s, "us-1", &argo_b, &us).await;
    assert_eq!((code, &body["status"]), (202, &"ready".into()), "{body}");
    for (id, source, cluster) in [(&a, "flux-event", "eu-1"), (&b, "argocd-event", "us-1")] {
        let st = s.deployment_status(id).await;
        assert_eq!(st["status"], "ready", "{st}");
        let newest = &st["history"][0];
        assert_eq!(
            (&newest["source"], &newest["cluster"]),
            (&source.into(), &cluster.into()),
            "{st}"
        );
    }

    // A cluster speaking about a tenant placed elsewhere: 409, logged, not applied.
    let failed_a = fixture("flux-event-health-check-failed.json", &a, &rev_a);
    let before = history_rows(&s, &a).await;
    let (code, body) = flux(&s, "us-1", &failed_a, &us).await;
    assert_eq!(
        (code, &body["code"]),
        (409, &"tenant_not_on_cluster".into()),
        "{body}"
    );
    assert_eq!(history_rows(&s, &a).await, before);
    assert_eq!(s.deployment_status(&a).await["status"], "ready");
    assert!(s.log().contains("not placed on the reporting cluster"));

    // Rotation: the old secret stops at once, the new one works.
    let eu2 = secret_in(&cli(&s, &["cluster", "rotate-secret", "eu-1"]));
    assert_ne!(eu2, eu);
    let (code, _) = flux(&s, "eu-1", &failed_a, &eu).await;
    assert_eq!(code, 401, "the rotated-out secret still works");
    let (code, body) = flux(&s, "eu-1", &failed_a, &eu2).await;
    assert_eq!((code, &body["status"]), (202, &"failed".into()), "{body}");
    let (ok, _, err) = common::cli::run(&s, &["cluster", "rotate-secret", "nowhere"], &[]);
    assert!(!ok && err.contains("no cluster nowhere"), "{err}");

    // /metrics: each cluster's capacity, allocation and tenants, labelled by cluster and region.
    let labels = |c: &str, r: &str| format!("{{cluster=\"{c}\",region=\"{r}\"}}");
    // What a's footprint books on eu-1 (its only tenant).
    let db = s.db().await;
    let booked = |column: &str| format!("SELECT {column} FROM placements WHERE customer_id = $1");
    let cpu = common::count(&db, &booked("cpu_millis"), &a).await;
    let memory = common::count(&db, &booked("memory_bytes"), &a).await;
    assert!(cpu > 0 && memory > 0, "{cpu} {memory}");
    for (name, value) in [
        ("billing_cluster_cpu_capacity_millicores", 4000),
        ("billing_cluster_memory_capacity_bytes", 8 << 30),
        ("billing_cluster_cpu_allocated_millicores", cpu),
        ("billing_cluster_memory_allocated_bytes", memory),
        ("billing_cluster_tenants", 1),
    ] {
        assert_eq!(
            s.metric(&format!("{name}{}", labels("eu-1", "eu"))).await as i64,
            value,
            "{name}"
        );
    }
    assert_eq!(
        s.metric(&format!(
            "billing_cluster_cpu_capacity_millicores{}",
            labels("us-1", "us")
        ))
        .await,
        2000
    );
}
