//! The renderer's inputs and outputs: tenant, cluster settings, sealed values, rendered files,
//! errors, repository paths, and the fixed demo tenant.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{BackupS3, REQUIRED_SECRET_KEYS, SECRET_NAME};

/// Everything about one tenant that the manifests depend on. Customer text: company_name, email,
/// full_name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSpec {
    pub id: String,
    pub plan: String,
    pub subscription_status: String,
    pub company_name: String,
    pub email: String,
    pub full_name: Option<String>,
    /// Set while the tenant moves in to a new cluster: its database is restored from the newest
    /// off-cluster dump taken at or after this instant before its API starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<chrono::DateTime<chrono::Utc>>,
}

/// Container images of a tenant stack; each must carry a tag other than `latest` or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Images {
    pub postgres: String,
    pub mosquitto: String,
    pub api: String,
    pub dashboard: String,
    pub exporter: String,
    pub backup: String,
    /// The static web server answering a suspended tenant's Ingress.
    pub suspended_page: String,
}

impl Default for Images {
    fn default() -> Self {
        // The backup job only needs pg_dump of the same major version: reuse the database image.
        let postgres = "docker.io/library/postgres:15.10-alpine".to_string();
        Self {
            backup: postgres.clone(),
            postgres,
            mosquitto: "docker.io/iegomez/mosquitto-go-auth:3.0.0-mosquitto_2.0.18".into(),
            api: "ghcr.io/iotistic/api:1.0.0".into(),
            dashboard: "ghcr.io/iotistic/dashboard:1.0.0".into(),
            exporter: "ghcr.io/iotistic/billing-exporter:1.0.0".into(),
            suspended_page: "docker.io/nginxinc/nginx-unprivileged:1.27.3-alpine".into(),
        }
    }
}

/// Cluster-wide settings (from config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderSettings {
    pub base_domain: String,
    pub images: Images,
    pub cluster_issuer: String,
    pub ingress_class: String,
    pub storage_class: Option<String>,
    /// Name of the Flux GitRepository (in flux-system) holding the tenants repository.
    pub gitops_source_name: String,
    /// ServiceAccount Flux impersonates (in flux-system), also the namespace-admin account
    /// created inside each tenant namespace.
    pub reconciler_service_account: String,
    /// Off-cluster backups; None keeps dumps on the tenant's claim only. Left out of the render
    /// inputs when None, so tenants rendered before it existed keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_s3: Option<BackupS3>,
}

impl Default for RenderSettings {
    fn default() -> Self {
        Self {
            base_domain: "iotistic.cloud".into(),
            images: Images::default(),
            cluster_issuer: "letsencrypt-prod".into(),
            ingress_class: "nginx".into(),
            storage_class: None,
            gitops_source_name: "tenants".into(),
            reconciler_service_account: "tenant-reconciler".into(),
            backup_s3: None,
        }
    }
}

/// Already-sealed secret values (base64 ciphertexts from kubeseal-compatible sealing, strict
/// scope) for Secret `secret_name` in the tenant namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedValues {
    pub secret_name: String,
    pub encrypted: BTreeMap<String, String>,
}

/// A render: repo-relative path -> file bytes, and the record of what produced them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RenderedTenant {
    pub files: BTreeMap<String, Vec<u8>>,
    /// Saved next to the manifests (`tenants/a/b/c/<id>/render.json`), so the next render can skip
    /// the templates that did not change.
    pub lock: RenderLock,
    /// False when only changed templates were rendered: `files` then holds just those, and
    /// the tenant's other files in the repository stay as they are.
    pub complete: bool,
}

impl RenderedTenant {
    /// The files as the tenant's directory in the repository holds them: the rendered ones and
    /// the lock (`tenants/a/b/c/<id>/render.json`).
    pub fn into_repository_files(self, id: &str) -> BTreeMap<String, Vec<u8>> {
        let mut files = self.files;
        files.insert(super::render_lock_path(id), self.lock.to_bytes());
        files
    }
}

/// What rendered a tenant's files: a digest of the template inputs, and per template the digest
/// of its source and the objects (kind, name) its output holds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RenderLock {
    pub inputs: String,
    pub templates: BTreeMap<String, LockedTemplate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LockedTemplate {
    pub digest: String,
    pub objects: Vec<(String, String)>,
}

impl RenderLock {
    /// The lock as stored in the repository (stable JSON: same lock, same bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a lock serialises");
        bytes.push(b'\n');
        bytes
    }

    /// A stored lock; None when unreadable (then everything is rendered again).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("invalid tenant spec: {field}: {reason}")]
    InvalidSpec { field: &'static str, reason: String },
    #[error("invalid render settings: {field}: {reason}")]
    InvalidSettings { field: &'static str, reason: String },
    #[error("invalid plan resources: {field}: {reason}")]
    InvalidPlan { field: &'static str, reason: String },
    #[error("template {template}: {source}")]
    Template {
        template: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("reading templates from {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("post-render check failed in {file} (document {doc}): {reason}")]
    Check {
        file: String,
        doc: usize,
        reason: String,
    },
}

/// Where a tenant lives under a root, from its id alone, the way Git spreads `objects/xx/`:
/// `a/b/c/abc…` (the id's first three characters, one directory each; `_` pads a shorter id).
/// Ids start with a letter and go on with `[a-z0-9]`, so the levels hold at most 26, 36 and 36
/// directories, and a million random ids leave about 30 tenants per leaf. Every directory stays
/// far under 1,000 entries (the most a Git host's web view lists), and a one-tenant commit
/// rewrites four small trees whatever the tenant count: with two characters at the first level
/// (936 entries) its cost doubled from 100 to 10,000 tenants.
pub fn tenant_shard(id: &str) -> String {
    let chars: Vec<String> = id
        .chars()
        .chain(std::iter::repeat('_'))
        .take(3)
        .map(String::from)
        .collect();
    chars.join("/")
}

/// `tenants/a/b/c/<id>`: the tenant's directory in the GitOps repository. It depends on the id
/// only, so it stays put whichever cluster syncs the tenant.
pub fn tenant_dir(id: &str) -> String {
    format!("tenants/{}/{id}", tenant_shard(id))
}

/// The tenant a repository path belongs to, in the sharded layout: `tenants/a/b/c/<id>/…`,
/// `flux-tenants/a/b/c/<id>.yaml` or `clusters/<name>/tenants/<id>.yaml` (None for anything
/// else).
pub fn tenant_of_path(path: &str) -> Option<&str> {
    let parts: Vec<&str> = path.split('/').collect();
    if let ["clusters", _, CLUSTER_TENANTS, file] = parts.as_slice() {
        return file.strip_suffix(".yaml").filter(|id| !id.is_empty());
    }
    let id = match parts.as_slice() {
        ["tenants", _, _, _, id, _, ..] => *id,
        ["flux-tenants", _, _, _, file] => file.strip_suffix(".yaml")?,
        _ => return None,
    };
    let shard = parts[1..4].join("/");
    (!id.is_empty() && tenant_shard(id) == shard).then_some(id)
}

/// `tenants/<id>`: where older versions' flat layout kept a tenant.
pub fn flat_tenant_dir(id: &str) -> String {
    format!("tenants/{id}")
}

/// `customer-<id>`: the tenant's Kubernetes namespace.
pub fn namespace_of(id: &str) -> String {
    format!("customer-{id}")
}

/// `flux-tenants/a/b/c/<id>.yaml`: the tenant's Flux Kustomization, beside (not inside) its
/// directory, spread the same way. `flux-tenants/` is the cluster's sync root.
pub fn flux_kustomization_path(id: &str) -> String {
    format!("flux-tenants/{}/{id}.yaml", tenant_shard(id))
}

/// The directory of a cluster's sync root holding its tenants' Kustomizations.
pub const CLUSTER_TENANTS: &str = "tenants";

/// `clusters/<name>`: the sync root of one cluster, which its Flux applies (`path:
/// ./clusters/<name>`) and `kubectl kustomize` builds into its tenants' Kustomizations.
pub fn cluster_root(cluster: &str) -> String {
    format!("clusters/{cluster}")
}

/// `clusters/<name>/tenants/<id>.yaml`: a placed tenant's Flux Kustomization (the same bytes as
/// in `flux-tenants/`), inside its cluster's root because kustomize refuses files outside a
/// kustomization's directory. Not sharded: a cluster runs tens of tenants, a few hundred at
/// most, far under the 1,000 entries a Git host lists, and the root's index is then computed
/// from one tree.
pub fn cluster_kustomization_path(cluster: &str, id: &str) -> String {
    format!("clusters/{cluster}/{CLUSTER_TENANTS}/{id}.yaml")
}

/// `clusters/<name>/kustomization.yaml`: the root's index, listing exactly its tenants.
pub fn cluster_index_path(cluster: &str) -> String {
    format!("clusters/{cluster}/kustomization.yaml")
}

/// `flux-tenants/<id>.yaml`: the flat layout's Kustomization path.
pub fn flat_flux_kustomization_path(id: &str) -> String {
    format!("flux-tenants/{id}.yaml")
}

/// The fixed demo customer used by golden tests and local demos.
pub fn demo_spec() -> TenantSpec {
    TenantSpec {
        id: "demo".into(),
        plan: "starter".into(),
        subscription_status: "trialing".into(),
        company_name: "Demo Industries".into(),
        email: "demo@example.com".into(),
        full_name: None,
        restore_from: None,
    }
}

/// Fixed, obviously fake ciphertexts for the required keys: deterministic input for golden tests
/// (real sealing is randomised).
pub fn demo_sealed_values() -> SealedValues {
    let encrypted = REQUIRED_SECRET_KEYS
        .iter()
        .map(|key| (key.to_string(), format!("AgDEMO{}==", key.replace('_', ""))))
        .collect();
    SealedValues {
        secret_name: SECRET_NAME.into(),
        encrypted,
    }
}
