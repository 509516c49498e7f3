//! The sync watcher through the real server: Flux notification-controller events (signed
//! exactly as its generic-hmac forwarder signs), argocd-notifications webhooks (the body
//! flux/argocd/notifications.yaml renders) and a Kubernetes API poller pass over a recorded
//! KustomizationList served on 127.0.0.1, each judged against the tenant's commit in Git.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::time::Duration;

use cluster::{fixture, flux_event, flux_signature, post, FakeApi, FLUX_SECRET};
use common::{Backend, TestServer};
use serde_json::Value;

const ARGO_TOKEN: &str = "argocd-test-token-0123456789abcdef";
const PASSWORD: &str = "correct-horse-battery";

const WEBHOOKS: &[(&str, &str)] = &[
    ("FLUX_WEBHOOK_SECRET", FLUX_SECRET),
    ("ARGOCD_WEBHOOK_TOKEN", ARGO_TOKEN),
    ("WATCHER_KUBE_POLL", "off"),
];

for_each_backend!(
    signed_flux_event_makes_the_tenant_ready,
    unsigned_or_badly_signed_events_are_refused_and_not_recorded,
    success_on_an_older_revision_does_not_count,
    failure_on_the_tenant_revision_fails_it_with_the_message,
    out_of_order_events_never_move_a_tenant_back,
    no_report_in_time_is_stalled,
    argocd_notification_with_the_bearer_token,
    poller_pass_over_a_recorded_list_response,
);

async fn start(backend: Backend, extra: &[(&str, &str)]) -> Option<TestServer> {
    let env: Vec<(&str, &str)> = WEBHOOKS.iter().chain(extra).copied().collect();
    TestServer::start_with(backend, &env).await
}

/// A new tenant, committed: its id and committed revision.
async fn committed_tenant(s: &TestServer, email: &str) -> (String, String) {
    let (code, body) = s.signup(email, PASSWORD, "Watcher Co").await;
    assert_eq!(code, 201, "{body}");
    let id = body["customer"]["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let st = s
        .wait_for_status(&id, "committed", Duration::from_secs(30))
        .await;
    (id, st["committed_revision"].as_str().unwrap().to_string())
}

async fn history_rows(s: &TestServer, id: &str) -> i64 {
    let sql = "SELECT COUNT(*) FROM deployment_history WHERE customer_id = $1";
    common::count(&s.db().await, sql, id).await
}

async fn signed_flux_event_makes_the_tenant_ready(backend: Backend) {
    let Some(s) = start(backend, &[]).await else {
        return;
    };
    let (id, rev) = committed_tenant(&s, "ready@acme.example").await;
    let before = s.deployment_status(&id).await;
    assert_eq!(before["history"][0]["source"], "billing");
    assert_eq!(before["history"][0]["state"], "committed");
    assert_eq!(before["applied_revision"], Value::Null);

    let (code, body) = flux_event(
        &s,
        &fixture("flux-event-reconciliation-succeeded.json", &id, &rev),
    )
    .await;
    assert_eq!(
        (code, &body["outcome"]),
        (202, &Value::from("recorded")),
        "{body}"
    );
    let st = s.deployment_status(&id).await;
    assert_eq!(st["status"], "ready", "{st}");
    assert_eq!(st["applied_revision"], rev.as_str());
    assert_eq!(st["health"], "Healthy");
    assert_eq!(
        st["message"],
        "ReconciliationSucceeded: Reconciliation finished in 38.213s, next run in 5m0s"
    );
    let newest = &st["history"][0];
    assert_eq!(
        (&newest["source"], &newest["state"]),
        (&"flux-event".into(), &"ready".into())
    );
    assert_eq!(newest["revision"], rev.as_str());
    assert!(newest["at"].as_str().unwrap() >= st["history"][1]["at"].as_str().unwrap());

    // Redelivery of the same event changes nothing; an event about no tenant is ignored.
    let again = fixture("flux-event-reconciliation-succeeded.json", &id, &rev);
    assert_eq!(flux_event(&s, &again).await.1["outcome"], "ignored");
    let stranger = fixture(
        "flux-event-reconciliation-succeeded.json",
        "zzzzzzzzzzzz",
        &rev,
    );
    let (code, body) = flux_event(&s, &stranger).await;
    assert_eq!(
        (code, &body["outcome"]),
        (202, &Value::from("ignored")),
        "{body}"
    );
    assert_eq!(history_rows(&s, "zzzzzzzzzzzz").await, 0);
    assert_eq!(history_rows(&s, &id).await, 2);
}

async fn unsigned_or_badly_signed_events_are_refused_and_not_recorded(backend: Backend) {
    let Some(s) = start(backend, &[]).await else {
        return;
    };
    let (id, rev) = committed_tenant(&s, "unsigned@acme.example").await;
    let body = fixture("flux-event-reconciliation-succeeded.json", &id, &rev);
    let rows = history_rows(&s, &id).await;
    let good = flux_signature(body.as_bytes(), FLUX_SECRET);
    let tampered = body.replace("Reconciliation finished", "Reconciliation finishe");
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        (&body, vec![]),
        (
            &body,
            vec![(
                "X-Signature",
                flux_signature(body.as_bytes(), "another-secret"),
            )],
        ),
        (
            &body,
            vec![("X-Signature", "sha256=".to_string() + &"0".repeat(64))],
        ),
        (
            &body,
            vec![("X-Signature", good.replace("sha256=", "sha512="))],
        ),
        (&body, vec![("X-Signature", "garbage".into())]),
        (&tampered, vec![("X-Signature", good.clone())]),
    ];
    for (payload, headers) in cases {
        let (code, answer) = post(&s, "/api/gitops/flux/events", payload, &headers).await;
        assert_eq!(code, 401, "{headers:?}: {answer}");
        assert_eq!(
            (&answer["error"], &answer["code"]),
            (&"Unauthorized".into(), &"unauthorized".into())
        );
        assert!(
            answer["message"].as_str().unwrap().contains("X-Signature"),
            "{answer}"
        );
    }
    assert_eq!(history_rows(&s, &id).await, rows, "nothing recorded");
    assert_eq!(s.deployment_status(&id).await["status"], "committed");

    // Without FLUX_WEBHOOK_SECRET (or ARGOCD_WEBHOOK_TOKEN) every request is refused.
    let Some(bare) = TestServer::start_with(backend, &[("WATCHER_KUBE_POLL", "off")]).await else {
        return;
    };
    let (code, answer) = post(
        &bare,
        "/api/gitops/flux/events",
        &body,
        &[("X-Signature", good)],
    )
    .await;
    assert_eq!(code, 401, "{answer}");
    let argo = fixture("argocd-notification-deployed.json", &id, &rev);
    let auth = [("Authorization", format!("Bearer {ARGO_TOKEN}"))];
    assert_eq!(
        post(&bare, "/api/gitops/argocd/events", &argo, &auth)
            .await
            .0,
        401
    );
}

fn parent_of(s: &TestServer, rev: &str) -> String {
    let repo = git2::Repository::open_bare(s.data_dir().join("gitops.git")).unwrap();
    let commit = repo.find_commit(git2::Oid::from_str(rev).unwrap()).unwrap();
    commit.parent_id(0).unwrap().to_string()
}

async fn success_on_an_older_revision_does_not_count(backend: Backend) {
    let Some(s) = start(backend, &[]).await else {
        return;
    };
    let (id, rev) = committed_tenant(&s, "older@acme.example").await;
    // The parent of the tenant's commit (here the layout commit): everything but the tenant.
    let parent = parent_of(&s, &rev);
    // In the legacy form older notification-controllers send: `<branch>/<sha>`, unstripped key.
    let (code, body) = flux_event(
        &s,
        &fixture("flux-event-legacy-revision.json", &id, &parent),
    )
    .await;
    assert_eq!(
        (code, &body["outcome"]),
        (202, &Value::from("recorded")),
        "{body}"
    );
    let st = s.deployment_status(&id).await;
    assert_eq!(st["status"], "committed", "{st}");
    assert_eq!(
        st["applied_revision"],
        parent.as_str(),
        "what the cluster runs is shown"
    );
    assert_eq!(st["history"][0]["revision"], parent.as_str());

    let (code, _) = flux_event(&s, &fixture("flux-event-legacy-revision.json", &id, &rev)).await;
    assert_eq!(code, 202);
    assert_eq!(s.deployment_status(&id).await["status"], "ready");
}

async fn failure_on_the_tenant_revision_fails_it_with_the_message(backend: Backend) {
    let Some(s) = start(backend, &[]).await else {
        return;
    };
    let (id, rev) = committed_tenant(&s, "failing@acme.example").await;
    // Progress reports are recorded but change nothing.
    let (code, _) = flux_event(&s, &fixture("flux-event-progressing.json", &id, &rev)).await;
    assert_eq!(code, 202);
    assert_eq!(s.deployment_status(&id).await["status"], "committed");

    let (code, body) = flux_event(
        &s,
        &fixture("flux-event-health-check-failed.json", &id, &rev),
    )
    .await;
    assert_eq!(
        (code, &body["status"]),
        (202, &Value::from("failed")),
        "{body}"
    );
    let st = s.deployment_status(&id).await;
    assert_eq!(st["status"], "failed");
    let expected = format!("HealthCheckFailed: health check failed after 5m0.014s: timeout waiting for: [Deployment/customer-{id}/api status: 'InProgress']");
    assert_eq!(st["error"], expected.as_str());
    assert_eq!(st["message"], expected.as_str());
    assert_eq!(st["health"], "Degraded");
    assert_eq!(
        st["applied_revision"],
        Value::Null,
        "a failure applies nothing"
    );
    let states: Vec<&str> = st["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["failed", "progressing", "committed"]);
}

async fn out_of_order_events_never_move_a_tenant_back(backend: Backend) {
    let Some(s) = start(backend, &[]).await else {
        return;
    };
    let (id, rev_n) = committed_tenant(&s, "order@acme.example").await;
    // Another tenant's signup makes revision N+1, which still contains this tenant's stack.
    let (_, rev_n1) = committed_tenant(&s, "later@acme.example").await;
    assert_eq!(parent_of(&s, &rev_n1), rev_n);

    flux_event(
        &s,
        &fixture("flux-event-reconciliation-succeeded.json", &id, &rev_n1),
    )
    .await;
    let st = s.deployment_status(&id).await;
    assert_eq!(
        (&st["status"], &st["applied_revision"]),
        (&"ready".into(), &rev_n1.as_str().into())
    );
    let rows = history_rows(&s, &id).await;

    // A failure (and a success) about revision N arrive late: ignored, nothing regresses.
    let late_failure = fixture("flux-event-health-check-failed.json", &id, &rev_n);
    let (code, body) = flux_event(&s, &late_failure).await;
    assert_eq!(
        (code, &body["outcome"]),
        (202, &Value::from("ignored")),
        "{body}"
    );
    let late_ok = fixture("argocd-notification-deployed.json", &id, &rev_n);
    let auth = [("Authorization", format!("Bearer {ARGO_TOKEN}"))];
    assert_eq!(
        post(&s, "/api/gitops/argocd/events", &late_ok, &auth)
            .await
            .1["outcome"],
        "ignored"
    );
    let st = s.deployment_status(&id).await;
    assert_eq!(
        (&st["status"], &st["applied_revision"]),
        (&"ready".into(), &rev_n1.as_str().into())
    );
    assert_eq!(st["error"], Value::Null);
    assert_eq!(history_rows(&s, &id).await, rows);
}

async fn no_report_in_time_is_stalled(backend: Backend) {
    let Some(s) = start(backend, &[("WATCHER_STALL_SECONDS", "1")]).await else {
        return;
    };
    let (code, body) = s.signup("stall@acme.example", PASSWORD, "Stall Co").await;
    assert_eq!(code, 201, "{body}");
    let id = body["customer"]["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let st = s
        .wait_for_status(&id, "stalled", Duration::from_secs(30))
        .await;
    assert_eq!(st["history"][0]["state"], "stalled");
    assert_eq!(st["history"][0]["source"], "billing");
    assert!(st["error"].as_str().unwrap().contains("within 1s"), "{st}");
    // A late success still makes it ready.
    let rev = st["committed_revision"].as_str().unwrap().to_string();
    flux_event(
        &s,
        &fixture("flux-event-reconciliation-succeeded.json", &id, &rev),
    )
    .await;
    let st = s.deployment_status(&id).await;
    assert_eq!(
        (&st["status"], &st["error"]),
        (&"ready".into(), &Value::Null)
    );
}

async fn argocd_notification_with_the_bearer_token(backend: Backend) {
    let Some(s) = start(backend, &[]).await else {
        return;
    };
    let (id, rev) = committed_tenant(&s, "argo@acme.example").await;
    let body = fixture("argocd-notification-deployed.json", &id, &rev);
    for auth in [
        vec![],
        vec![("Authorization", "Bearer wrong-token".to_string())],
        vec![("Authorization", ARGO_TOKEN.to_string())],
    ] {
        let (code, answer) = post(&s, "/api/gitops/argocd/events", &body, &auth).await;
        assert_eq!(
            (code, &answer["code"]),
            (401, &"unauthorized".into()),
            "{auth:?}"
        );
    }
    assert_eq!(s.deployment_status(&id).await["status"], "committed");

    let auth = [("Authorization", format!("Bearer {ARGO_TOKEN}"))];
    let (code, answer) = post(&s, "/api/gitops/argocd/events", &body, &auth).await;
    assert_eq!(
        (code, &answer["status"]),
        (202, &"ready".into()),
        "{answer}"
    );
    let st = s.deployment_status(&id).await;
    assert_eq!(
        (&st["health"], &st["applied_revision"]),
        (&"Healthy".into(), &rev.as_str().into())
    );
    assert_eq!(st["history"][0]["source"], "argocd-event");

    // The same revision later fails to sync: the tenant is failed, with Argo CD's message.
    let failed = fixture("argocd-notification-sync-failed.json", &id, &rev);
    let (code, _) = post(&s, "/api/gitops/argocd/events", &failed, &auth).await;
    assert_eq!(code, 202);
    let st = s.deployment_status(&id).await;
    assert_eq!(st["status"], "failed");
    assert!(
        st["error"]
            .as_str()
            .unwrap()
            .contains("one or more objects failed to apply"),
        "{st}"
    );
}

async fn poller_pass_over_a_recorded_list_response(backend: Backend) {
    let api = FakeApi::start().await;
    let kustomizations =
        "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations";
    let empty = r#"{"apiVersion":"kustomize.toolkit.fluxcd.io/v1","kind":"KustomizationList","metadata":{"resourceVersion":"1"},"items":[]}"#;
    api.serve(kustomizations, empty.into());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let env = [
        ("WATCHER_KUBE_POLL", "auto"),
        ("WATCHER_POLL_INTERVAL_SECONDS", "1"),
        ("KUBECONFIG", kubeconfig.as_str()),
    ];
    let Some(s) = TestServer::start_with(backend, &env).await else {
        return;
    };
    let (id, rev) = committed_tenant(&s, "poller@acme.example").await;
    api.serve(
        kustomizations,
        fixture("kube-kustomization-list.json", &id, &rev),
    );
    let st = s
        .wait_for_status(&id, "ready", Duration::from_secs(30))
        .await;
    assert_eq!(st["applied_revision"], rev.as_str());
    assert_eq!(
        (&st["history"][0]["source"], &st["history"][0]["state"]),
        (&"kube-poller".into(), &"ready".into())
    );
    assert_eq!(
        st["message"],
        format!("ReconciliationSucceeded: Applied revision: main@sha1:{rev}").as_str()
    );

    // Later passes repeat the same status: recorded once. The other items are no tenant of ours.
    let passes = || {
        let listed = format!("{kustomizations}?");
        api.requests()
            .iter()
            .filter(|r| r.starts_with(&listed))
            .count()
    };
    let (seen, deadline) = (
        passes(),
        std::time::Instant::now() + Duration::from_secs(30),
    );
    while passes() < seen + 2 {
        assert!(std::time::Instant::now() < deadline, "the poller stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(history_rows(&s, &id).await, 2);
    let requests = api.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("{kustomizations}?"))
                && r.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dbilling")),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/apis/argoproj.io/v1alpha1/namespaces/argocd/applications?")),
        "{requests:?}"
    );
    assert!(s.log().contains("Kubernetes poller on"));
}
