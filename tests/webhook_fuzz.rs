//! Property tests on the webhook parsers: arbitrary headers, bodies and JSON never panic, a
//! signature only verifies for the exact body and key, and events about anything but a tenant's
//! own Kustomization or Application never produce a report for some other tenant.

use billing::watcher::{argocd, flux, poller};
use proptest::prelude::*;
use serde_json::{json, Value};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
        Just(json!("flux-system")),
        Just(json!("tenant-demo")),
        Just(json!("main@sha1:0123456789abcdef0123456789abcdef01234567")),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    "[a-zA-Z]{1,12}",
                    Just("involvedObject".to_string()),
                    Just("metadata".to_string()),
                    Just("status".to_string()),
                    Just("revision".to_string()),
                    Just("name".to_string()),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn signature_checks_never_panic_and_bind_body_and_key(
        header in proptest::option::of("\\PC{0,80}"),
        body in prop::collection::vec(any::<u8>(), 0..200),
        key in prop::collection::vec(any::<u8>(), 0..40),
        flip in any::<usize>(),
    ) {
        let _ = flux::verify_signature(header.as_deref(), &body, &key);
        let good = flux::sign(&body, &key);
        prop_assert!(flux::verify_signature(Some(&good), &body, &key).is_ok());
        if !body.is_empty() {
            let mut other = body.clone();
            let i = flip % other.len();
            other[i] ^= 0x01;
            prop_assert!(flux::verify_signature(Some(&good), &other, &key).is_err());
        }
        let mut other_key = key.clone();
        other_key.push(1);
        prop_assert!(flux::verify_signature(Some(&good), &body, &other_key).is_err());
    }

    #[test]
    fn arbitrary_json_never_panics_any_parser(doc in arb_json()) {
        if let Ok(event) = serde_json::from_value::<flux::Event>(doc.clone()) {
            let _ = flux::revision(&event);
            if let Ok(report) = flux::event_report(&event) {
                // A report always names a tenant taken from a tenant's own Kustomization.
                prop_assert_eq!(event.involved_object.namespace.as_str(), flux::NAMESPACE);
                prop_assert!(event.involved_object.name.starts_with("tenant-"));
                let _ = report;
            }
        }
        let _ = flux::kustomization_report(&doc);
        let _ = argocd::AppStatus::from_webhook(&doc).report(billing::watcher::Source::ArgoEvent);
        let _ = argocd::AppStatus::from_application(&doc).report(billing::watcher::Source::KubePoller);
        let _ = poller::reports(poller::Kind::Kustomization, &doc);
        let _ = poller::reports(poller::Kind::Application, &doc);
    }

    #[test]
    fn bearer_tokens_match_only_exactly(given in proptest::option::of("\\PC{0,40}"), expected in "[ -~]{1,40}") {
        let header = given.as_ref().map(|g| format!("Bearer {g}"));
        let matches = argocd::bearer_matches(header.as_deref(), &expected);
        // Surrounding whitespace in the header is forgiven; nothing else is.
        prop_assert_eq!(matches, given.as_deref().map(str::trim) == Some(expected.as_str()));
    }
}
