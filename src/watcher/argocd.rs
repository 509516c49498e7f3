//! Argo CD: argocd-notifications webhook posts and the Application status the poller reads.
//!
//! Argo CD's webhook service has no signature; it sends the headers configured on
//! `service.webhook.<name>`, so `flux/argocd/notifications.yaml` configures
//! `Authorization: Bearer $billing-token` and this side compares it, in constant time, with
//! `ARGOCD_WEBHOOK_TOKEN`. The body is what that file's `template.billing-sync` renders
//! (Go text/template with Sprig, `dig` so absent fields render as ""):
//!
//! ```json
//! {"app": "tenant-<id>",
//!  "sync": {"status": "Synced", "revision": "<commit>"},
//!  "health": {"status": "Healthy"},
//!  "operation": {"phase": "Succeeded", "message": "...", "revision": "<commit>"}}
//! ```
//!
//! mirroring `app.metadata.name`, `app.status.sync.{status,revision}`,
//! `app.status.health.status` and `app.status.operationState.{phase,message,
//! syncResult.revision}` of the Application, which is also what the poller reads.

use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{tenant_of, Report, Source, SyncState};

/// Where the ApplicationSet creates the per-tenant Applications (flux/argocd/applicationset.yaml).
pub const NAMESPACE: &str = "argocd";

/// The fields of an Application that decide its report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppStatus {
    pub name: String,
    /// Synced | OutOfSync | Unknown
    pub sync_status: String,
    pub sync_revision: String,
    /// Healthy | Progressing | Degraded | Suspended | Missing | Unknown
    pub health_status: String,
    /// Running | Succeeded | Failed | Error | Terminating ("" before the first operation)
    pub operation_phase: String,
    pub operation_message: String,
    pub operation_revision: String,
}

fn text(v: &Value, path: &str) -> String {
    v.pointer(path)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl AppStatus {
    /// From the body `template.billing-sync` renders.
    pub fn from_webhook(body: &Value) -> AppStatus {
        AppStatus {
            name: text(body, "/app"),
            sync_status: text(body, "/sync/status"),
            sync_revision: text(body, "/sync/revision"),
            health_status: text(body, "/health/status"),
            operation_phase: text(body, "/operation/phase"),
            operation_message: text(body, "/operation/message"),
            operation_revision: text(body, "/operation/revision"),
        }
    }

    /// From an Application object (an item of an ApplicationList).
    pub fn from_application(app: &Value) -> AppStatus {
        AppStatus {
            name: text(app, "/metadata/name"),
            sync_status: text(app, "/status/sync/status"),
            sync_revision: text(app, "/status/sync/revision"),
            health_status: text(app, "/status/health/status"),
            operation_phase: text(app, "/status/operationState/phase"),
            operation_message: text(app, "/status/operationState/message"),
            operation_revision: text(app, "/status/operationState/syncResult/revision"),
        }
    }

    /// The report, or why the Application is no tenant's.
    pub fn report(&self, source: Source) -> Result<Report, &'static str> {
        let customer_id = tenant_of(&self.name).ok_or("not a per-tenant Application")?;
        let op_failed = matches!(self.operation_phase.as_str(), "Failed" | "Error");
        // Synced and Healthy means the live state is the desired state at sync.revision,
        // whatever an earlier operation said; a failed operation names its own revision.
        let (state, revision) = if self.sync_status == "Synced" && self.health_status == "Healthy" {
            (SyncState::Ready, &self.sync_revision)
        } else if op_failed {
            let rev = Some(&self.operation_revision).filter(|r| !r.is_empty());
            (SyncState::Failed, rev.unwrap_or(&self.sync_revision))
        } else if self.health_status == "Degraded" {
            (SyncState::Failed, &self.sync_revision)
        } else {
            (SyncState::Progressing, &self.sync_revision)
        };
        let mut message = format!(
            "sync {}, health {}",
            or_unknown(&self.sync_status),
            or_unknown(&self.health_status)
        );
        if !self.operation_message.trim().is_empty() {
            message.push_str(&format!(
                " ({}): {}",
                or_unknown(&self.operation_phase),
                self.operation_message.trim()
            ));
        }
        Ok(Report {
            customer_id,
            revision: (!revision.is_empty()).then(|| revision.clone()),
            source,
            state,
            health: Some(self.health_status.clone()).filter(|h| !h.is_empty()),
            message: Some(message),
            cluster: None,
        })
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        "Unknown"
    } else {
        s
    }
}

/// Whether `Authorization` carries `Bearer <expected>`. Both sides are hashed first, so the
/// comparison is constant-time and leaks not even the token's length.
pub fn bearer_matches(authorization: Option<&str>, expected: &str) -> bool {
    let Some(given) = authorization.and_then(crate::model::bearer::bearer_credentials) else {
        return false;
    };
    let (a, b) = (
        Sha256::digest(given.trim().as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    !expected.is_empty() && bool::from(a.ct_eq(&b))
}

#[cfg(test)]
#[path = "argocd_tests.rs"]
mod tests;
