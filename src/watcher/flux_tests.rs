//! Flux protocol tests, built from notification-controller's own test vector and from events
//! recorded in kustomize-controller's documented format (tests/fixtures/flux-*.json).

use super::*;
use crate::watcher::commit_of;

const REV: &str = "5d0c1f7a3be8e2a94d6c0b7f18e3a2c9d4b6f071";

fn fixture(name: &str) -> Event {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn matches_notification_controllers_own_signature_vector() {
    // internal/notifier/forwarder_test.go: testEvent() at Timestamp 1664520029, marshalled by
    // encoding/json, signed with this key, must carry exactly this header.
    let key = b"7152fed34dd6149a7c75a276c510da27cb6f82b0";
    let body = br#"{"involvedObject":{"kind":"GitRepository","namespace":"gitops-system","name":"webapp"},"severity":"info","timestamp":"2022-09-30T06:40:29Z","message":"message","reason":"reason","metadata":{"test":"metadata"},"reportingController":"source-controller","reportingInstance":"source-controller-xyz"}"#;
    let header = "sha256=65b018549b1254e7226d1c08f9567ee45bc9de0fc4e7b1a40253f9a018b08be7";
    assert_eq!(sign(body, key), header);
    assert_eq!(verify_signature(Some(header), body, key), Ok(()));
    let event: Event = serde_json::from_slice(body).unwrap();
    assert_eq!(event.involved_object.name, "webapp");
    assert_eq!(event.reporting_instance, "source-controller-xyz");
}

#[test]
fn refuses_missing_malformed_foreign_and_wrong_signatures() {
    let (key, body) = (b"k3y", br#"{"a":1}"#);
    let good = sign(body, key);
    assert_eq!(
        verify_signature(None, body, key),
        Err(SignatureError::Missing)
    );
    assert_eq!(
        verify_signature(Some(" "), body, key),
        Err(SignatureError::Missing)
    );
    for bad in ["sha256", "sha256=", "sha256=zz", "sha256=abc"] {
        assert_eq!(
            verify_signature(Some(bad), body, key),
            Err(SignatureError::Malformed),
            "{bad}"
        );
    }
    assert!(matches!(
        verify_signature(Some("md5=00ff"), body, key),
        Err(SignatureError::Unsupported(_))
    ));
    assert_eq!(
        verify_signature(Some(&good), br#"{"a":2}"#, key),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_signature(Some(&good), body, b"other"),
        Err(SignatureError::Mismatch)
    );
    // Upper-case hex is the same signature.
    assert_eq!(
        verify_signature(
            Some(&good.to_uppercase().replacen("SHA256", "sha256", 1)),
            body,
            key
        ),
        Ok(())
    );
}

#[test]
fn parses_the_hash_prefix() {
    use hmac::digest::KeyInit;
    let (key, body) = (b"secret", b"payload");
    macro_rules! signed {
        ($name:literal, $d:ty) => {{
            let mut m = <Hmac<$d> as KeyInit>::new_from_slice(key).unwrap();
            m.update(body);
            format!("{}={}", $name, hex::encode(m.finalize().into_bytes()))
        }};
    }
    for header in [
        signed!("sha1", sha1::Sha1),
        signed!("sha224", sha2::Sha224),
        signed!("sha256", sha2::Sha256),
        signed!("sha384", sha2::Sha384),
        signed!("sha512", sha2::Sha512),
    ] {
        assert_eq!(
            verify_signature(Some(&header), body, key),
            Ok(()),
            "{header}"
        );
        // The same digest under another name is refused.
        let (_, digest) = header.split_once('=').unwrap();
        let renamed = if header.starts_with("sha512") {
            format!("sha384={digest}")
        } else {
            format!("sha512={digest}")
        };
        assert_eq!(
            verify_signature(Some(&renamed), body, key),
            Err(SignatureError::Mismatch)
        );
    }
}

#[test]
fn reads_the_revision_in_every_documented_form() {
    let ok = fixture("flux-event-reconciliation-succeeded.json");
    assert_eq!(revision(&ok), Some(format!("main@sha1:{REV}").as_str()));
    let legacy = fixture("flux-event-legacy-revision.json");
    assert_eq!(revision(&legacy), Some(format!("main/{REV}").as_str()));
    for form in [
        format!("main@sha1:{REV}"),
        format!("sha1:{REV}"),
        format!("main/{REV}"),
        format!("refs/heads/main@sha1:{REV}"),
        REV.to_uppercase(),
    ] {
        assert_eq!(commit_of(&form).as_deref(), Some(REV), "{form}");
    }
    for foreign in [
        "latest@sha256:0f3c",
        "sha256:5d0c1f7a3be8e2a94d6c0b7f18e3a2c9d4b6f0715d0c1f7a3be8e2a94d6c0b71",
        "main",
        "",
    ] {
        assert_eq!(commit_of(foreign), None, "{foreign}");
    }
}

#[test]
fn maps_events_to_tenant_reports() {
    let ok = event_report(&fixture("flux-event-reconciliation-succeeded.json")).unwrap();
    assert_eq!(ok.customer_id, "k3x9m2p7q4wz");
    assert_eq!((ok.state, ok.source), (SyncState::Ready, Source::FluxEvent));
    assert_eq!(ok.health.as_deref(), Some("Healthy"));
    assert_eq!(
        ok.message.as_deref(),
        Some("ReconciliationSucceeded: Reconciliation finished in 38.213s, next run in 5m0s")
    );

    let failed = event_report(&fixture("flux-event-health-check-failed.json")).unwrap();
    assert_eq!(failed.state, SyncState::Failed);
    assert!(failed
        .message
        .unwrap()
        .starts_with("HealthCheckFailed: health check failed after 5m0.014s"));

    let progressing = event_report(&fixture("flux-event-progressing.json")).unwrap();
    assert_eq!(progressing.state, SyncState::Progressing);

    let legacy = event_report(&fixture("flux-event-legacy-revision.json")).unwrap();
    assert_eq!(
        (
            legacy.state,
            legacy.revision.as_deref().and_then(commit_of).as_deref()
        ),
        (SyncState::Ready, Some(REV))
    );

    for (kind, ns, name) in [
        ("GitRepository", "flux-system", "tenant-k3x9m2p7q4wz"),
        ("Kustomization", "apps", "tenant-k3x9m2p7q4wz"),
        ("Kustomization", "flux-system", "tenants"),
        ("Kustomization", "flux-system", "tenant-NotAnId"),
    ] {
        let mut e = fixture("flux-event-reconciliation-succeeded.json");
        e.involved_object.kind = kind.into();
        e.involved_object.namespace = ns.into();
        e.involved_object.name = name.into();
        assert!(event_report(&e).is_err(), "{kind} {ns}/{name}");
    }
}

#[test]
fn reads_kustomization_status_from_a_list_response() {
    let path = format!(
        "{}/tests/fixtures/kube-kustomization-list.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let list: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let reports: Vec<Report> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(kustomization_report)
        .collect();
    let summary: Vec<(&str, SyncState, Option<String>)> = reports
        .iter()
        .map(|r| {
            (
                r.customer_id.as_str(),
                r.state,
                r.revision.as_deref().and_then(commit_of),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "demo",
                SyncState::Ready,
                Some("9a41e07c2b6d5f83e1c4a7b90d2f6e58c3a1b7d4".into())
            ),
            ("k3x9m2p7q4wz", SyncState::Ready, Some(REV.into())),
            // Failed: the revision it attempted, not the one still applied.
            ("m8q2v5t1r6ye", SyncState::Failed, Some(REV.into())),
        ]
    );
    assert!(reports[2]
        .message
        .as_deref()
        .unwrap()
        .starts_with("HealthCheckFailed: health check failed"));
    assert!(reports.iter().all(|r| r.source == Source::KubePoller));
}
