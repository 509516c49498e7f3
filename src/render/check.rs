//! Post-render checks: every file is parsed back as YAML and must contain exactly the expected
//! objects, each well-formed and in its namespace. A template bug or an escaping hole fails the
//! render instead of reaching the GitOps repository.

use std::collections::{BTreeMap, BTreeSet};

use serde_norway::Value;

use super::objects::parse_documents;
use super::skeleton::{Skeletons, Split};
use super::{
    flux_kustomization_path, namespace_of, tenant_dir, validate, RenderError, RenderSettings,
    TenantSpec, KUSTOMIZATION_TEMPLATE, SECRET_NAME, TENANT_MANIFESTS,
};

const FLUX_KUSTOMIZATION_API: &str = "kustomize.toolkit.fluxcd.io/v1";

/// (kind, name) of every object a tenant renders to.
pub(super) fn expected_objects(
    spec: &TenantSpec,
    settings: &RenderSettings,
) -> BTreeSet<(String, String)> {
    let id = spec.id.as_str();
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
        ("ConfigMap", "suspended-page".into()),
        ("Service", "suspended".into()),
        ("Deployment", "suspended".into()),
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
        "suspended",
        "backup",
    ];
    let moving = spec
        .restore_from
        .into_iter()
        .flat_map(super::restore::job_names);
    fixed
        .into_iter()
        .map(|(kind, name)| (kind.to_string(), name))
        .chain(
            policies
                .iter()
                .map(|p| ("NetworkPolicy".to_string(), p.to_string())),
        )
        .chain(moving.map(|name| ("Job".to_string(), name)))
        .collect()
}

/// (kind, name) of the objects in each file.
pub(super) type ObjectsByFile = BTreeMap<String, Vec<(String, String)>>;

/// One rendered file: where it goes, its template, and its text split at printed values.
pub(super) struct RenderedFile {
    pub path: String,
    pub template: &'static str,
    pub split: Split,
}

/// Checks rendered `files`; `kept` are the objects of the tenant's files not rendered this time
/// (checked when they were). Together they must be exactly the expected objects.
pub(super) fn rendered(
    files: &[RenderedFile],
    spec: &TenantSpec,
    settings: &RenderSettings,
    kept: BTreeSet<(String, String)>,
    skeletons: &Skeletons,
) -> Result<ObjectsByFile, RenderError> {
    let namespace = namespace_of(&spec.id);
    let dir = tenant_dir(&spec.id);
    let flux_path = flux_kustomization_path(&spec.id);
    let kustomization_path = format!("{dir}/{KUSTOMIZATION_TEMPLATE}");
    let mut seen = kept;
    let mut by_file = ObjectsByFile::new();

    for RenderedFile {
        path: file,
        template,
        split,
    } in files
    {
        let fail = |doc: usize, reason: String| RenderError::Check {
            file: file.clone(),
            doc,
            reason,
        };
        let invalid = |e: serde_norway::Error| fail(0, format!("not valid YAML: {e}"));
        if *file == kustomization_path {
            if !skeletons.passed(&split.clean) {
                let docs = parse_documents(split.clean.as_bytes()).map_err(invalid)?;
                check_kustomization(&docs).map_err(|reason| fail(1, reason))?;
                skeletons.remember_passed(&split.clean);
            }
            continue;
        }
        let docs = skeletons.objects(template, split).map_err(invalid)?;
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
                .name
                .as_deref()
                .ok_or_else(|| fail(format!("{kind} without metadata.name")))?;
            let ns = doc.namespace.as_deref();
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
                .images
                .iter()
                .find(|i| !i.as_deref().is_some_and(validate::is_pinned_image))
            {
                let image = image.as_deref();
                return Err(fail(format!("{kind}/{name} uses unpinned image {image:?}")));
            }
            let object = (kind.to_string(), name.to_string());
            if !seen.insert(object.clone()) {
                return Err(fail(format!("{kind}/{name} is rendered twice")));
            }
            by_file.entry(file.clone()).or_default().push(object);
        }
    }

    let expected = expected_objects(spec, settings);
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
