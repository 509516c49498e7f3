//! Input validation before rendering: identifiers that become names, labels or hosts must be valid
//! Kubernetes/DNS names; images must be pinned; sealed values must cover what templates read.
//! Customer text is escaped, not restricted: only its size and a few control characters that
//! kustomize cannot round-trip are refused.

use crate::billing::subscription::SubscriptionStatus;
use crate::plans::Resources;

use super::{
    RenderError, RenderSettings, SealedValues, TenantSpec, BACKUP_SECRET_KEYS,
    REQUIRED_SECRET_KEYS, SECRET_NAME,
};

/// Longest tenant id: keeps `customer-<id>` and `tenant-<id>` within the 63-character label limit.
pub(super) const MAX_ID_LEN: usize = 42;
/// Bound on each customer text field: three of them stay far below the API server's 256 KiB
/// annotation budget.
pub(super) const MAX_TEXT_LEN: usize = 64 * 1024;

fn spec_err(field: &'static str, reason: impl Into<String>) -> RenderError {
    RenderError::InvalidSpec {
        field,
        reason: reason.into(),
    }
}

fn settings_err(field: &'static str, reason: impl Into<String>) -> RenderError {
    RenderError::InvalidSettings {
        field,
        reason: reason.into(),
    }
}

/// `^[a-z][a-z0-9-]{0,40}[a-z0-9]$`: a DNS-1123 label that starts with a letter.
pub(super) fn is_tenant_id(id: &str) -> bool {
    let b = id.as_bytes();
    (2..=MAX_ID_LEN).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// DNS-1123 label: lowercase alphanumerics and '-', alphanumeric at both ends, at most 63.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// DNS-1123 subdomain: dot-separated labels, at most 253.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Characters kustomize (kyaml/go-yaml, used by Flux and Argo CD) cannot round-trip however they
/// are escaped: it re-emits them raw and then rejects its own output (DEL, C1 controls,
/// U+FFFE/U+FFFF) or folds them into a space (U+0085). Nothing legitimate in a name or an email.
pub fn untransportable(c: char) -> bool {
    matches!(c, '\u{7f}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}')
}

/// Kubernetes label value (non-empty here): alphanumerics, '-', '_', '.', alphanumeric ends.
fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
}

/// Kubernetes quantity in the forms plans use: `4`, `500m`, `1.5`, `16Gi`, `10G`.
pub(super) fn is_quantity(s: &str) -> bool {
    const SUFFIXES: [&str; 13] = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "m", "k", "M", "G", "T", "P", "E",
    ];
    let number = SUFFIXES
        .iter()
        .find_map(|suffix| s.strip_suffix(suffix))
        .unwrap_or(s);
    let mut parts = number.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit());
    digits(whole) && parts.next().is_none_or(digits)
}

/// A pullable reference that pins a version: `name:tag` (tag not `latest`) or `name@sha256:...`.
pub(super) fn is_pinned_image(image: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "./:@_-".contains(c);
    if image.is_empty() || !image.chars().all(allowed) {
        return false;
    }
    if let Some((name, digest)) = image.split_once('@') {
        return !name.is_empty() && digest.starts_with("sha256:") && digest.len() == 71;
    }
    // The tag follows the last ':' after the last '/' (a ':' before it is a registry port).
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((repo, tag)) => !repo.is_empty() && !tag.is_empty() && tag != "latest",
        None => false,
    }
}

pub(super) fn spec(spec: &TenantSpec) -> Result<(), RenderError> {
    if !is_tenant_id(&spec.id) {
        return Err(spec_err(
            "id",
            format!(
                "{:?} is not a tenant id (^[a-z][a-z0-9-]{{0,40}}[a-z0-9]$)",
                spec.id
            ),
        ));
    }
    if !is_label_value(&spec.plan) {
        return Err(spec_err(
            "plan",
            format!("{:?} is not a valid label value", spec.plan),
        ));
    }
    if !is_label_value(&spec.subscription_status) {
        return Err(spec_err(
            "subscription_status",
            format!("{:?} is not a valid label value", spec.subscription_status),
        ));
    }
    // Whether the workloads run follows from the status: an unknown one is a caller's bug.
    if spec
        .subscription_status
        .parse::<SubscriptionStatus>()
        .is_err()
    {
        return Err(spec_err(
            "subscription_status",
            format!(
                "{:?} is not a subscription status",
                spec.subscription_status
            ),
        ));
    }
    let texts = [
        ("company_name", Some(&spec.company_name)),
        ("email", Some(&spec.email)),
        ("full_name", spec.full_name.as_ref()),
    ];
    for (field, text) in texts {
        let Some(text) = text else { continue };
        if text.len() > MAX_TEXT_LEN {
            return Err(spec_err(field, format!("longer than {MAX_TEXT_LEN} bytes")));
        }
        if let Some(c) = text.chars().find(|c| untransportable(*c)) {
            let reason = format!(
                "contains U+{:04X}, which GitOps tooling cannot carry",
                c as u32
            );
            return Err(spec_err(field, reason));
        }
    }
    Ok(())
}

pub(super) fn settings(s: &RenderSettings, id: &str) -> Result<(), RenderError> {
    // `mqtt.<id>.<base_domain>` is the longest host rendered.
    if !is_dns_subdomain(&s.base_domain) || format!("mqtt.{id}.{}", s.base_domain).len() > 253 {
        return Err(settings_err(
            "base_domain",
            format!("{:?} is not a DNS name", s.base_domain),
        ));
    }
    let names = [
        ("cluster_issuer", Some(&s.cluster_issuer)),
        ("ingress_class", Some(&s.ingress_class)),
        ("storage_class", s.storage_class.as_ref()),
        ("gitops_source_name", Some(&s.gitops_source_name)),
    ];
    for (field, name) in names {
        if let Some(name) = name.filter(|n| !is_dns_subdomain(n)) {
            return Err(settings_err(
                field,
                format!("{name:?} is not a DNS subdomain name"),
            ));
        }
    }
    // It also prefixes the RoleBinding name `<sa>-admin`.
    if !is_dns_label(&s.reconciler_service_account) || s.reconciler_service_account.len() > 57 {
        return Err(settings_err(
            "reconciler_service_account",
            format!(
                "{:?} is not a DNS label of at most 57 characters",
                s.reconciler_service_account
            ),
        ));
    }
    let i = &s.images;
    let images = [
        ("images.postgres", &i.postgres),
        ("images.mosquitto", &i.mosquitto),
        ("images.api", &i.api),
        ("images.dashboard", &i.dashboard),
        ("images.exporter", &i.exporter),
        ("images.backup", &i.backup),
        ("images.suspended_page", &i.suspended_page),
    ];
    for (field, image) in images {
        if !is_pinned_image(image) {
            return Err(settings_err(
                field,
                format!("{image:?} is not pinned (needs a tag other than `latest`, or a digest)"),
            ));
        }
    }
    Ok(())
}

pub(super) fn resources(r: &Resources) -> Result<(), RenderError> {
    let err = |field, reason: String| RenderError::InvalidPlan { field, reason };
    let quantities = [
        ("quota_cpu", &r.quota_cpu),
        ("quota_memory", &r.quota_memory),
        ("quota_storage", &r.quota_storage),
        ("postgres_storage", &r.postgres_storage),
        ("backup_storage", &r.backup_storage),
    ];
    for (field, q) in quantities {
        if !is_quantity(q) {
            return Err(err(field, format!("{q:?} is not a Kubernetes quantity")));
        }
    }
    if let Some(days) = r
        .backup_retention_days
        .filter(|d| *d > super::backup::MAX_RETENTION_DAYS)
    {
        let max = super::backup::MAX_RETENTION_DAYS;
        return Err(err(
            "backup_retention_days",
            format!("{days} is outside 0..={max}"),
        ));
    }
    let counts = [
        ("quota_pods", r.quota_pods, 1),
        ("api_replicas", r.api_replicas, 1),
        ("dashboard_replicas", r.dashboard_replicas, 1),
    ];
    for (field, n, min) in counts {
        if !(min..=1000).contains(&n) {
            return Err(err(field, format!("{n} is outside {min}..=1000")));
        }
    }
    Ok(())
}

/// `with_backup`: the uploader's keys are read too (off-cluster backups are on).
pub(super) fn sealed(s: &SealedValues, with_backup: bool) -> Result<(), RenderError> {
    // Strict-scope sealing binds the ciphertext to the Secret name the workloads reference.
    if s.secret_name != SECRET_NAME {
        return Err(spec_err(
            "sealed.secret_name",
            format!("{:?}: workloads read Secret {SECRET_NAME:?}", s.secret_name),
        ));
    }
    let backup_keys = BACKUP_SECRET_KEYS.iter().filter(|_| with_backup);
    for key in REQUIRED_SECRET_KEYS.iter().chain(backup_keys) {
        if !s.encrypted.contains_key(*key) {
            return Err(spec_err("sealed.encrypted", format!("missing key {key}")));
        }
    }
    for (key, value) in &s.encrypted {
        let key_ok = !key.is_empty()
            && key.len() <= 253
            && key
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-._".contains(&c));
        if !key_ok {
            return Err(spec_err(
                "sealed.encrypted",
                format!("{key:?} is not a Secret key"),
            ));
        }
        let value_ok = !value.is_empty()
            && value
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c));
        if !value_ok {
            return Err(spec_err(
                "sealed.encrypted",
                format!("value of {key} is not base64"),
            ));
        }
    }
    Ok(())
}
