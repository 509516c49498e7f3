//! Post-render checks: every file is parsed back as YAML and must contain exactly the expected
//! objects, each well-formed and in its namespace. A template bug or an escaping hole fails the
//! render instead of reaching the GitOps repository.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_norway::Value;

use super::{
    flux_kustomization_path, namespace_of, tenant_dir, validate, RenderError, RenderSettings,
    TenantSpec, SECRET_NAME, TENANT_MANIFESTS,
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

/// The parts of a manifest the checks read. Deserialising only these (everything else is
/// skipped by serde, not built into a tree) keeps the full YAML parse at a fraction of the
/// cost of a generic `Value`; the parse itself still covers every byte.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: Metadata,
    spec: Option<WorkloadSpec>,
}

#[derive(Deserialize, Default)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WorkloadSpec {
    template: Option<PodTemplate>,
    job_template: Option<JobTemplate>,
}

#[derive(Deserialize)]
struct JobTemplate {
    spec: Option<JobSpec>,
}

#[derive(Deserialize)]
struct JobSpec {
    template: Option<PodTemplate>,
}

#[derive(Deserialize)]
struct PodTemplate {
    spec: Option<PodSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(default)]
    containers: Vec<Container>,
    #[serde(default)]
    init_containers: Vec<Container>,
}

#[derive(Deserialize)]
struct Container {
    image: Option<String>,
}

/// A document is either a manifest or empty (a bare `---`).
fn parse_manifests(bytes: &[u8]) -> Result<Vec<Manifest>, serde_norway::Error> {
    let mut docs = Vec::new();
    for de in serde_norway::Deserializer::from_slice(bytes) {
        if let Some(doc) = Option::<Manifest>::deserialize(de)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

impl Manifest {
    /// Every container image of a pod-owning object (workloads and CronJob).
    fn images(&self) -> impl Iterator<Item = Option<&str>> {
        let spec = self.spec.as_ref();
        let pod = match self.kind.as_deref() {
            Some("CronJob") => {
                spec.and_then(|s| s.job_template.as_ref()?.spec.as_ref()?.template.as_ref())
            }
            _ => spec.and_then(|s| s.template.as_ref()),
        }
        .and_then(|t| t.spec.as_ref());
        pod.into_iter()
            .flat_map(|p| p.containers.iter().chain(&p.init_containers))
            .map(|c| c.image.as_deref())
    }
}

/// (kind, name) of the objects in each file.
pub(super) type ObjectsByFile = BTreeMap<String, Vec<(String, String)>>;

/// Checks rendered `files`; `kept` are the objects of the tenant's files not rendered this time
/// (checked when they were). Together they must be exactly the expected objects.
pub(super) fn rendered(
    files: &BTreeMap<String, Vec<u8>>,
    spec: &TenantSpec,
    settings: &RenderSettings,
    kept: BTreeSet<(String, String)>,
) -> Result<ObjectsByFile, RenderError> {
    let namespace = namespace_of(&spec.id);
    let dir = tenant_dir(&spec.id);
    let flux_path = flux_kustomization_path(&spec.id);
    let kustomization_path = format!("{dir}/kustomization.yaml");
    let mut seen = kept;
    let mut by_file = ObjectsByFile::new();

    for (file, bytes) in files {
        let fail = |doc: usize, reason: String| RenderError::Check {
            file: file.clone(),
            doc,
            reason,
        };
        let invalid = |e: serde_norway::Error| fail(0, format!("not valid YAML: {e}"));
        if *file == kustomization_path {
            let docs = parse_documents(bytes).map_err(invalid)?;
            check_kustomization(&docs).map_err(|reason| fail(1, reason))?;
            continue;
        }
        let docs = parse_manifests(bytes).map_err(invalid)?;
        if *file == flux_path && docs.len() != 1 {
            return Err(fail(0, format!("{} documents, expected 1", docs.len())));
        }
        for (i, doc) in docs.iter().enumerate() {
            let fail = |reason: String| fail(i + 1, reason);
            let api = doc
                .api_version
                .as_deref()
                .ok_or_else(|| fail("no apiVersion".into()))?;
            let kind = doc.kind.as_deref().ok_or_else(|| fail("no kind".into()))?;
            let name = doc
                .metadata
                .name
                .as_deref()
                .ok_or_else(|| fail(format!("{kind} without metadata.name")))?;
            let ns = doc.metadata.namespace.as_deref();
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
            if let Some(image) = doc
                .images()
                .find(|i| !i.is_some_and(validate::is_pinned_image))
            {
                return Err(fail(format!("{kind}/{name} uses unpinned image {image:?}")));
            }
            let object = (kind.to_string(), name.to_string());
            if !seen.insert(object.clone()) {
                return Err(fail(format!("{kind}/{name} is rendered twice")));
            }
            by_file.entry(file.clone()).or_default().push(object);
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
    Ok(by_file)
}

fn str_at<'a>(doc: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(doc, |v, key| v.get(key))?.as_str()
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
