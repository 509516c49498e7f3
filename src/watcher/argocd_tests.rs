//! Argo CD protocol tests: the body `template.billing-sync` renders (tests/fixtures/argocd-*.json),
//! Application objects of a recorded ApplicationList, and the bearer check.

use super::*;
use crate::watcher::commit_of;

const REV: &str = "5d0c1f7a3be8e2a94d6c0b7f18e3a2c9d4b6f071";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn synced_and_healthy_is_ready_at_the_sync_revision() {
    let report = AppStatus::from_webhook(&fixture("argocd-notification-deployed.json"))
        .report(Source::ArgoEvent)
        .unwrap();
    assert_eq!(report.customer_id, "k3x9m2p7q4wz");
    assert_eq!(report.state, SyncState::Ready);
    assert_eq!(
        report.revision.as_deref().and_then(commit_of).as_deref(),
        Some(REV)
    );
    assert_eq!(report.health.as_deref(), Some("Healthy"));
}

#[test]
fn a_failed_operation_or_degraded_health_is_a_failure_with_its_message() {
    let report = AppStatus::from_webhook(&fixture("argocd-notification-sync-failed.json"))
        .report(Source::ArgoEvent)
        .unwrap();
    assert_eq!(report.state, SyncState::Failed);
    let message = report.message.unwrap();
    assert!(
        message.contains("one or more objects failed to apply"),
        "{message}"
    );
    assert!(
        message.starts_with("sync OutOfSync, health Degraded (Failed): "),
        "{message}"
    );

    let degraded = AppStatus {
        name: "tenant-k3x9m2p7q4wz".into(),
        sync_status: "Synced".into(),
        sync_revision: REV.into(),
        health_status: "Degraded".into(),
        ..AppStatus::default()
    };
    assert_eq!(
        degraded.report(Source::ArgoEvent).unwrap().state,
        SyncState::Failed
    );
    for (sync, health, phase) in [
        ("OutOfSync", "Healthy", "Running"),
        ("Synced", "Progressing", "Succeeded"),
        ("Unknown", "Missing", ""),
        ("Synced", "Suspended", ""),
    ] {
        let s = AppStatus {
            sync_status: sync.into(),
            health_status: health.into(),
            operation_phase: phase.into(),
            ..degraded.clone()
        };
        assert_eq!(
            s.report(Source::ArgoEvent).unwrap().state,
            SyncState::Progressing,
            "{sync} {health} {phase}"
        );
    }
    let other = AppStatus {
        name: "guestbook".into(),
        ..degraded
    };
    assert!(other.report(Source::ArgoEvent).is_err());
}

#[test]
fn reads_applications_of_a_list_response() {
    let list = fixture("kube-application-list.json");
    let states: Vec<(String, SyncState)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            AppStatus::from_application(a)
                .report(Source::KubePoller)
                .unwrap()
        })
        .map(|r| (r.customer_id, r.state))
        .collect();
    assert_eq!(
        states,
        [
            ("k3x9m2p7q4wz".to_string(), SyncState::Ready),
            ("m8q2v5t1r6ye".to_string(), SyncState::Failed)
        ]
    );
    let failed = AppStatus::from_application(&list["items"][1]);
    assert_eq!(failed.operation_phase, "Failed");
    assert_eq!(failed.operation_revision, REV);
}

#[test]
fn bearer_token_is_compared_exactly() {
    // The scheme is case-insensitive (RFC 9110 §11.1); the token is not.
    for right in [
        "Bearer s3cret-token",
        "bearer s3cret-token",
        "BEARER  s3cret-token ",
    ] {
        assert!(bearer_matches(Some(right), "s3cret-token"), "{right:?}");
    }
    for wrong in [
        None,
        Some("Bearer nope"),
        Some("Bearer S3CRET-TOKEN"),
        Some("Basic s3cret-token"),
        Some("s3cret-token"),
        Some("Bearer s3cret-token-x"),
        Some("Bearer "),
    ] {
        assert!(!bearer_matches(wrong, "s3cret-token"), "{wrong:?}");
    }
    assert!(
        !bearer_matches(Some("Bearer "), ""),
        "an empty token never matches"
    );
}
