//! Flux: notification-controller events (Provider type `generic-hmac`) and the Kustomization
//! status the poller reads.
//!
//! The body is fluxcd/pkg `runtime/events.Event` as JSON: `involvedObject` (a core/v1
//! ObjectReference: kind, namespace, name, uid, apiVersion, resourceVersion), `severity`
//! (`info` | `error`), `timestamp`, `message`, `reason`, `metadata` (string map),
//! `reportingController`, `reportingInstance`. notification-controller's forwarder signs the
//! JSON it posts: `X-Signature: sha256=<hex HMAC-SHA256(body, token)>` (internal/notifier/
//! forwarder.go); the prefix names the hash, so it is parsed (the Provider docs' verification
//! example accepts sha224/sha256/sha384/sha512, the generic-hmac Receiver sha1/sha256/sha512).
//!
//! The revision is `metadata.revision` (notification-controller strips the involved object's
//! API group from metadata keys) or, from older controllers, the unstripped
//! `metadata["kustomize.toolkit.fluxcd.io/revision"]`.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;

use super::{tenant_of, Report, Source, SyncState};

/// Where the per-tenant Kustomizations live (templates/flux-kustomization.yaml).
pub const NAMESPACE: &str = "flux-system";
pub const GROUP: &str = "kustomize.toolkit.fluxcd.io";
pub const SIGNATURE_HEADER: &str = "x-signature";

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectReference {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub api_version: String,
    pub resource_version: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Event {
    pub involved_object: ObjectReference,
    pub severity: String,
    pub timestamp: String,
    pub message: String,
    pub reason: String,
    pub metadata: BTreeMap<String, String>,
    pub reporting_controller: String,
    pub reporting_instance: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("X-Signature header required")]
    Missing,
    #[error("X-Signature must be <hash>=<hex>")]
    Malformed,
    #[error("unsupported signature hash {0:?}")]
    Unsupported(String),
    #[error("signature does not match the body")]
    Mismatch,
}

fn verify_with<M: Mac + hmac::digest::KeyInit>(key: &[u8], body: &[u8], sig: &[u8]) -> bool {
    let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
        return false;
    };
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(sig).is_ok()
}

/// Checks `X-Signature: <hash>=<hex>` against the raw body and the shared key.
pub fn verify_signature(
    header: Option<&str>,
    body: &[u8],
    key: &[u8],
) -> Result<(), SignatureError> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    let (hash, digits) = header.split_once('=').ok_or(SignatureError::Malformed)?;
    let sig = hex::decode(digits)
        .ok()
        .filter(|sig| !sig.is_empty())
        .ok_or(SignatureError::Malformed)?;
    let ok = match hash.to_ascii_lowercase().as_str() {
        "sha1" => verify_with::<Hmac<sha1::Sha1>>(key, body, &sig),
        "sha224" => verify_with::<Hmac<sha2::Sha224>>(key, body, &sig),
        "sha256" => verify_with::<Hmac<sha2::Sha256>>(key, body, &sig),
        "sha384" => verify_with::<Hmac<sha2::Sha384>>(key, body, &sig),
        "sha512" => verify_with::<Hmac<sha2::Sha512>>(key, body, &sig),
        other => {
            return Err(SignatureError::Unsupported(
                other.chars().take(16).collect(),
            ))
        }
    };
    ok.then_some(()).ok_or(SignatureError::Mismatch)
}

/// The header value notification-controller would send for `body` (tests and tools).
pub fn sign(body: &[u8], key: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(key)
        .expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The reported revision, under the key of either controller generation.
pub fn revision(event: &Event) -> Option<&str> {
    event
        .metadata
        .get("revision")
        .or_else(|| event.metadata.get(&format!("{GROUP}/revision")))
        .map(String::as_str)
}

fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(g, _)| g)
}

/// The tenant a per-tenant Kustomization `flux-system/tenant-<id>` belongs to.
fn tenant_kustomization(
    kind: &str,
    api_version: &str,
    namespace: &str,
    name: &str,
) -> Option<String> {
    let group_ok = api_version.is_empty() || group_of(api_version) == GROUP;
    (kind == "Kustomization" && group_ok && namespace == NAMESPACE)
        .then(|| tenant_of(name))
        .flatten()
}

fn health_of(state: SyncState) -> &'static str {
    match state {
        SyncState::Ready => "Healthy",
        SyncState::Failed => "Degraded",
        SyncState::Progressing => "Progressing",
    }
}

fn with_reason(reason: &str, message: &str) -> Option<String> {
    match (reason.trim(), message.trim()) {
        ("", "") => None,
        ("", m) => Some(m.to_string()),
        (r, "") => Some(r.to_string()),
        (r, m) => Some(format!("{r}: {m}")),
    }
}

/// The report an event makes, or why it is about no tenant.
pub fn event_report(event: &Event) -> Result<Report, &'static str> {
    let o = &event.involved_object;
    let customer_id = tenant_kustomization(&o.kind, &o.api_version, &o.namespace, &o.name)
        .ok_or("not a per-tenant Kustomization")?;
    // kustomize-controller reports a finished, health-checked apply as ReconciliationSucceeded;
    // every error-severity event is a failed reconciliation (HealthCheckFailed, BuildFailed, ...).
    let state = match (event.severity.as_str(), event.reason.as_str()) {
        ("error", _) => SyncState::Failed,
        (_, "ReconciliationSucceeded") => SyncState::Ready,
        _ => SyncState::Progressing,
    };
    Ok(Report {
        customer_id,
        revision: revision(event).map(str::to_string),
        source: Source::FluxEvent,
        state,
        health: Some(health_of(state).to_string()),
        message: with_reason(&event.reason, &event.message),
        cluster: None,
    })
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn field<'a>(condition: Option<&'a Value>, key: &str) -> &'a str {
    condition.map_or("", |c| text(c, &[key]))
}

/// The report one Kustomization object (an item of a KustomizationList) makes: its Ready
/// condition, with `status.lastAppliedRevision` when ready and `lastAttemptedRevision` else.
pub fn kustomization_report(object: &Value) -> Option<Report> {
    // List items of custom resources carry kind and apiVersion; tolerate their absence.
    let kind = Some(text(object, &["kind"])).filter(|k| !k.is_empty());
    let customer_id = tenant_kustomization(
        kind.unwrap_or("Kustomization"),
        text(object, &["apiVersion"]),
        text(object, &["metadata", "namespace"]),
        text(object, &["metadata", "name"]),
    )?;
    let ready = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"));
    let (status, reason) = (field(ready, "status"), field(ready, "reason"));
    // DependencyNotReady is a wait, not a failure of this tenant's revision.
    let state = match status {
        "True" => SyncState::Ready,
        "False" if reason != "DependencyNotReady" => SyncState::Failed,
        _ => SyncState::Progressing,
    };
    let revision = match state {
        SyncState::Ready => text(object, &["status", "lastAppliedRevision"]),
        _ => text(object, &["status", "lastAttemptedRevision"]),
    };
    Some(Report {
        customer_id,
        revision: (!revision.is_empty()).then(|| revision.to_string()),
        source: Source::KubePoller,
        state,
        health: Some(health_of(state).to_string()),
        message: with_reason(reason, field(ready, "message")),
        cluster: None,
    })
}

#[cfg(test)]
#[path = "flux_tests.rs"]
mod tests;
