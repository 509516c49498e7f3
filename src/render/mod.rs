//! Pure tenant renderer: (tenant, plan, cluster settings, sealed secrets) -> the files of the
//! tenant's GitOps directory, `tenants/<id>/*.yaml`, plus its Flux reconciler at
//! `flux-tenants/<id>.yaml`. No clock, randomness or IO while rendering: same inputs, same bytes.
//!
//! Customer text only ever reaches YAML through the JSON-escaping formatter (`escape`), and every
//! rendered document is parsed back and checked (`check`) before anything is returned.

mod check;
mod escape;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};

use crate::plans::{Plan, Resources};

pub use check::parse_documents;

/// Name of the Secret (and of the SealedSecret that produces it) every workload reads.
pub const SECRET_NAME: &str = "tenant-secrets";
/// Keys of [`SealedValues::encrypted`] the templates reference.
pub const REQUIRED_SECRET_KEYS: [&str; 3] =
    ["DATABASE_PASSWORD", "MQTT_ADMIN_PASSWORD", "LICENSE_KEY"];
/// Namespace of the ingress controller allowed to reach the API and the dashboard.
pub const INGRESS_NAMESPACE: &str = "ingress-nginx";
/// Namespace of the Prometheus that scrapes the exporter.
pub const MONITORING_NAMESPACE: &str = "monitoring";
/// Database and role of the tenant's PostgreSQL (fixed: nothing outside the namespace uses them).
const DATABASE: &str = "iotistic";

/// Manifests of `tenants/<id>/`, in kustomization order; each is rendered from the template of the
/// same name in `templates/`.
pub const TENANT_MANIFESTS: [&str; 12] = [
    "namespace.yaml",
    "quota.yaml",
    "rbac.yaml",
    "networkpolicies.yaml",
    "sealedsecret.yaml",
    "postgres.yaml",
    "mosquitto.yaml",
    "api.yaml",
    "dashboard.yaml",
    "exporter.yaml",
    "ingress.yaml",
    "backup.yaml",
];
const KUSTOMIZATION_TEMPLATE: &str = "kustomization.yaml";
const FLUX_TEMPLATE: &str = "flux-kustomization.yaml";

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

/// Repo-relative path -> file bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RenderedTenant {
    pub files: BTreeMap<String, Vec<u8>>,
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

/// `tenants/<id>`: the tenant's directory in the GitOps repository.
pub fn tenant_dir(id: &str) -> String {
    format!("tenants/{id}")
}

/// `customer-<id>`: the tenant's Kubernetes namespace.
pub fn namespace_of(id: &str) -> String {
    format!("customer-{id}")
}

/// `flux-tenants/<id>.yaml`: the tenant's Flux Kustomization, beside (not inside) its directory.
pub fn flux_kustomization_path(id: &str) -> String {
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

/// The loaded templates.
pub struct Renderer {
    env: Environment<'static>,
}

macro_rules! builtin_templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../templates/", $name)))),*]
    };
}

/// Templates compiled into the binary, so `billing` renders without the source tree.
const BUILTIN_TEMPLATES: &[(&str, &str)] = builtin_templates!(
    "_macros.jinja",
    "namespace.yaml",
    "quota.yaml",
    "rbac.yaml",
    "networkpolicies.yaml",
    "sealedsecret.yaml",
    "postgres.yaml",
    "mosquitto.yaml",
    "api.yaml",
    "dashboard.yaml",
    "exporter.yaml",
    "ingress.yaml",
    "backup.yaml",
    "kustomization.yaml",
    "flux-kustomization.yaml",
);

#[derive(Serialize)]
struct TenantView<'a> {
    id: &'a str,
    namespace: String,
    dir: String,
    host: String,
    plan: &'a str,
    subscription_status: &'a str,
    company_name: &'a str,
    email: &'a str,
    full_name: Option<&'a str>,
}

#[derive(Serialize)]
struct Database {
    name: &'static str,
    user: &'static str,
}

/// What the templates see. Customer text is in `tenant.{company_name,email,full_name}` only.
#[derive(Serialize)]
struct Context<'a> {
    tenant: TenantView<'a>,
    resources: &'a Resources,
    plan_display_name: &'a str,
    settings: &'a RenderSettings,
    secret_name: &'static str,
    encrypted: &'a BTreeMap<String, String>,
    database: Database,
    ingress_namespace: &'static str,
    monitoring_namespace: &'static str,
    resource_files: &'static [&'static str],
}

impl Renderer {
    /// Loads every file of `dir` as a template (by file name).
    pub fn from_dir(dir: &Path) -> Result<Self, RenderError> {
        let io = |source| RenderError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut sources = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if !path.is_file() {
                continue;
            }
            let name = path.file_name().and_then(|n| n.to_str()).map(str::to_owned);
            let text = std::fs::read_to_string(&path).map_err(|source| RenderError::Io {
                path: path.clone(),
                source,
            })?;
            if let Some(name) = name {
                sources.push((name, text));
            }
        }
        Self::from_sources(sources)
    }

    /// The templates embedded in the binary.
    pub fn builtin() -> Self {
        let sources = BUILTIN_TEMPLATES
            .iter()
            .map(|(name, text)| (name.to_string(), text.to_string()));
        Self::from_sources(sources).expect("built-in templates compile (checked by tests)")
    }

    fn from_sources(
        sources: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, RenderError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(true);
        // Every template here emits YAML, whatever its file name: JSON-escape all of them.
        env.set_auto_escape_callback(|_| AutoEscape::Json);
        env.set_formatter(escape::yaml_formatter);
        for (name, text) in sources {
            env.add_template_owned(name.clone(), text)
                .map_err(|source| RenderError::Template {
                    template: name,
                    source,
                })?;
        }
        let required = TENANT_MANIFESTS
            .iter()
            .chain([&KUSTOMIZATION_TEMPLATE, &FLUX_TEMPLATE]);
        for name in required {
            if let Err(source) = env.get_template(name) {
                return Err(RenderError::Template {
                    template: name.to_string(),
                    source,
                });
            }
        }
        Ok(Self { env })
    }

    /// Renders one tenant. PURE: same inputs, byte-identical output.
    pub fn render(
        &self,
        spec: &TenantSpec,
        plan: &Plan,
        settings: &RenderSettings,
        sealed: &SealedValues,
    ) -> Result<RenderedTenant, RenderError> {
        validate::spec(spec)?;
        validate::settings(settings, &spec.id)?;
        validate::resources(&plan.resources)?;
        validate::sealed(sealed)?;

        let dir = tenant_dir(&spec.id);
        let ctx = Context {
            tenant: TenantView {
                id: &spec.id,
                namespace: namespace_of(&spec.id),
                dir: dir.clone(),
                host: format!("{}.{}", spec.id, settings.base_domain),
                plan: &spec.plan,
                subscription_status: &spec.subscription_status,
                company_name: &spec.company_name,
                email: &spec.email,
                full_name: spec.full_name.as_deref(),
            },
            resources: &plan.resources,
            plan_display_name: &plan.display_name,
            settings,
            secret_name: SECRET_NAME,
            encrypted: &sealed.encrypted,
            database: Database {
                name: DATABASE,
                user: DATABASE,
            },
            ingress_namespace: INGRESS_NAMESPACE,
            monitoring_namespace: MONITORING_NAMESPACE,
            resource_files: &TENANT_MANIFESTS,
        };

        let mut files = BTreeMap::new();
        let outputs = TENANT_MANIFESTS
            .iter()
            .chain([&KUSTOMIZATION_TEMPLATE])
            .map(|name| (*name, format!("{dir}/{name}")))
            .chain([(FLUX_TEMPLATE, flux_kustomization_path(&spec.id))]);
        for (template, path) in outputs {
            let text = self
                .env
                .get_template(template)
                .and_then(|t| t.render(&ctx))
                .map_err(|source| RenderError::Template {
                    template: template.to_string(),
                    source,
                })?;
            files.insert(path, text.into_bytes());
        }
        let rendered = RenderedTenant { files };
        check::rendered(&rendered, spec, settings)?;
        Ok(rendered)
    }
}

#[cfg(test)]
mod tests;
