//! Post-render checks: every file is parsed back as YAML and must contain exactly the expected
//! objects, each well-formed and in its namespace. A template bug or an escaping hole fails the
//! render instead of reaching the GitOps repository.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_norway::Value;

use super::{
    flux_kustomization_path, namespace_of, tenant_dir, validate, RenderError, RenderSettings,
    RenderedTenant, TenantSpec, SECRET_NAME, TENANT_MANIFESTS,
};

const FLUX_KUSTOMIZATION_API: &str = "kustomize.toolkit.fluxcd.io/v1";

/// (kind, name) of every object a tenant renders to.
pub(super) fn expected_objects(id: &str, settings: &RenderSettings) -> BTreeSet<(String, String)> {
    let sa = &settings.reconciler_service_account;
    let fixed = [
        ("Namespace", namespace_of(id)),
        ("ResourceQuota", "tenant-quota".into()),
        ("LimitRange", "tenant-limits".into()),
        ("ServiceAccount", sa.clone()),
        ("RoleBinding", format!("{sa}-admin")),
        ("SealedSecret", SECRET_NAME.into()),
        ("Service", "postgres".into()),
        ("StatefulSet", "postgres".into()),
        ("ConfigMap", "mosquitto-config".into()),
        ("Service", "mosquitto".into()),
        ("Deployment", "mosquitto".into()),
        ("Service", "api".into()),
        ("Deployment", "api".into()),
        ("Service", "dashboard".into()),
        ("Deployment", "dashboard".into()),
        ("Service", "exporter".into()),
        ("Deployment", "exporter".into()),
        ("Ingress", "tenant".into()),
        ("PersistentVolumeClaim", "backups".into()),
        ("CronJob", "postgres-backup".into()),
        ("Kustomization", format!("tenant-{id}")),
    ];
    let policies = [
        "default-deny",
        "allow-dns",
        "postgres",
        "mosquitto",
        "api",
        "dashboard",
        "exporter",
        "backup",
    ];
    fixed
        .into_iter()
        .map(|(kind, name)| (kind.to_string(), name))
        .chain(
            policies
                .iter()
                .map(|p| ("NetworkPolicy".to_string(), p.to_string())),
        )
        .collect()
}

/// Splits a multi-document YAML file into parsed documents, skipping empty ones.
pub fn parse_documents(bytes: &[u8]) -> Result<Vec<Value>, serde_norway::Error> {
    let mut docs = Vec::new();
    for de in serde_norway::Deserializer::from_slice(bytes) {
        let value = Value::deserialize(de)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

fn str_at<'a>(doc: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(doc, |v, key| v.get(key))?.as_str()
}

/// Every container image in a pod-owning object (workloads and CronJob).
fn images(doc: &Value) -> Vec<&str> {
    let pod = match doc.get("kind").and_then(Value::as_str) {
        Some("CronJob") => ["spec", "jobTemplate", "spec", "template", "spec"].as_slice(),
        _ => ["spec", "template", "spec"].as_slice(),
    };
    let Some(pod) = pod.iter().try_fold(doc, |v, key| v.get(key)) else {
        return Vec::new();
    };
    ["containers", "initContainers"]
        .iter()
        .filter_map(|list| pod.get(list)?.as_sequence())
        .flatten()
        .filter_map(|c| c.get("image")?.as_str())
        .collect()
}

pub(super) fn rendered(
    out: &RenderedTenant,
    spec: &TenantSpec,
    settings: &RenderSettings,
) -> Result<(), RenderError> {
    let namespace = namespace_of(&spec.id);
    let dir = tenant_dir(&spec.id);
    let flux_path = flux_kustomization_path(&spec.id);
    let kustomization_path = format!("{dir}/kustomization.yaml");
    let mut seen = BTreeSet::new();

    for (file, bytes) in &out.files {
        let fail = |doc: usize, reason: String| RenderError::Check {
            file: file.clone(),
            doc,
            reason,
        };
        let docs = parse_documents(bytes).map_err(|e| fail(0, format!("not valid YAML: {e}")))?;
        if *file == kustomization_path {
            check_kustomization(&docs).map_err(|reason| fail(1, reason))?;
            continue;
        }
        if *file == flux_path && docs.len() != 1 {
            return Err(fail(0, format!("{} documents, expected 1", docs.len())));
        }
        for (i, doc) in docs.iter().enumerate() {
            let fail = |reason: String| fail(i + 1, reason);
            let api = str_at(doc, &["apiVersion"]).ok_or_else(|| fail("no apiVersion".into()))?;
            let kind = str_at(doc, &["kind"]).ok_or_else(|| fail("no kind".into()))?;
            let name = str_at(doc, &["metadata", "name"])
                .ok_or_else(|| fail(format!("{kind} without metadata.name")))?;
            let ns = str_at(doc, &["metadata", "namespace"]);
            let is_flux = api == FLUX_KUSTOMIZATION_API && kind == "Kustomization";
            let expected_ns = match kind {
                "Namespace" => None,
                _ if is_flux => Some("flux-system"),
                _ => Some(namespace.as_str()),
            };
            if ns != expected_ns {
                return Err(fail(format!(
                    "{kind}/{name} has namespace {ns:?}, expected {expected_ns:?}"
                )));
            }
            if is_flux != (*file == flux_path) {
                return Err(fail(format!("{kind}/{name} is not allowed in this file")));
            }
            if let Some(image) = images(doc)
                .into_iter()
                .find(|i| !validate::is_pinned_image(i))
            {
                return Err(fail(format!("{kind}/{name} uses unpinned image {image:?}")));
            }
            if !seen.insert((kind.to_string(), name.to_string())) {
                return Err(fail(format!("{kind}/{name} is rendered twice")));
            }
        }
    }

    let expected = expected_objects(&spec.id, settings);
    if seen != expected {
        let missing: Vec<_> = expected.difference(&seen).collect();
        let unexpected: Vec<_> = seen.difference(&expected).collect();
        return Err(RenderError::Check {
            file: dir,
            doc: 0,
            reason: format!("object set differs: missing {missing:?}, unexpected {unexpected:?}"),
        });
    }
    Ok(())
}

/// The kustomize entry point must list exactly the rendered manifests and nothing else.
fn check_kustomization(docs: &[Value]) -> Result<(), String> {
    let [doc] = docs else {
        return Err(format!("{} documents, expected 1", docs.len()));
    };
    if str_at(doc, &["apiVersion"]) != Some("kustomize.config.k8s.io/v1beta1")
        || str_at(doc, &["kind"]) != Some("Kustomization")
    {
        return Err("not a kustomize.config.k8s.io/v1beta1 Kustomization".into());
    }
    let keys: Vec<_> = doc
        .as_mapping()
        .map(|m| m.keys().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if keys != ["apiVersion", "kind", "resources"] {
        return Err(format!(
            "unexpected fields {keys:?}: only resources are allowed"
        ));
    }
    let resources: Vec<_> = doc["resources"]
        .as_sequence()
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if resources != TENANT_MANIFESTS {
        return Err(format!("resources {resources:?} != {TENANT_MANIFESTS:?}"));
    }
    Ok(())
}
