//! Pure tenant renderer: (tenant, plan, cluster settings, sealed secrets) -> the files of the
//! tenant's GitOps directory, `tenants/a/b/c/<id>/*.yaml` (see `tenant_dir`), plus its Flux
//! reconciler at `flux-tenants/a/b/c/<id>.yaml`. No clock, randomness or IO while rendering: same inputs, same bytes.
//!
//! Customer text only ever reaches YAML through the JSON-escaping formatter (`escape`), and every
//! rendered document is parsed back and checked (`check`) before anything is returned.

mod backup;
mod check;
mod escape;
pub mod footprint;
mod objects;
mod restore;
mod skeleton;
mod spec;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

use crate::model::subscription::SubscriptionStatus;
use crate::plans::{Plan, Resources};
use check::RenderedFile;
use skeleton::{Skeletons, Split};

pub use backup::{
    endpoint_port, BackupS3, BACKUP_SECRET_KEYS, DEFAULT_RETENTION_DAYS, DEFAULT_UPLOAD_IMAGE,
};
pub use objects::parse_documents;
pub use spec::{
    cluster_index_path, cluster_kustomization_path, cluster_root, demo_sealed_values, demo_spec,
    flat_flux_kustomization_path, flat_tenant_dir, flux_kustomization_path, namespace_of,
    tenant_dir, tenant_of_path, tenant_shard, Images, LockedTemplate, RenderError, RenderLock,
    RenderSettings, RenderedTenant, SealedValues, TenantSpec, CLUSTER_TENANTS,
};
pub use validate::untransportable;

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

/// Declares every template once: the constants naming them and the copies compiled into the
/// binary (`include_str!` needs the literal names, so the constants cannot feed it).
macro_rules! templates {
    (
        $(#[$manifests_doc:meta])* manifests: [$($manifest:literal),* $(,)?],
        kustomization: $kustomization:literal,
        flux: $flux:literal,
        helpers: [$($helper:literal),* $(,)?] $(,)?
    ) => {
        $(#[$manifests_doc])*
        pub const TENANT_MANIFESTS: &[&str] = &[$($manifest),*];
        const KUSTOMIZATION_TEMPLATE: &str = $kustomization;
        const FLUX_TEMPLATE: &str = $flux;
        /// Templates compiled into the binary, so `billing` renders without the source tree.
        const BUILTIN_TEMPLATES: &[(&str, &str)] = &[
            $(($manifest, include_str!(concat!("../../templates/", $manifest))),)*
            ($kustomization, include_str!(concat!("../../templates/", $kustomization))),
            ($flux, include_str!(concat!("../../templates/", $flux))),
            $(($helper, include_str!(concat!("../../templates/", $helper))),)*
        ];
    };
}

templates! {
    /// Manifests of `tenants/<id>/`, in kustomization order; each is rendered from the template
    /// of the same name in `templates/`.
    manifests: [
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
        "suspended.yaml",
        "backup.yaml",
    ],
    kustomization: "kustomization.yaml",
    flux: "flux-kustomization.yaml",
    helpers: ["_macros.jinja"],
}

/// File of each tenant directory recording what rendered it (not a manifest: kustomize reads
/// only what `kustomization.yaml` lists).
pub const RENDER_LOCK: &str = "render.json";
/// Part of every inputs digest: bump it when escaping or checks change, so every tenant is
/// rendered in full again.
const RENDER_FORMAT: &str = "billing-render/1";

/// The loaded templates.
pub struct Renderer {
    env: Environment<'static>,
    /// Per output template: SHA-256 of its source and of every helper template (`_macros`).
    digests: BTreeMap<String, String>,
    /// Output shapes already parsed by the post-render check.
    skeletons: Skeletons,
}

/// Templates rendered into files, in kustomization order, then the Flux reconciler.
fn output_templates() -> impl Iterator<Item = &'static str> {
    TENANT_MANIFESTS
        .iter()
        .copied()
        .chain([KUSTOMIZATION_TEMPLATE, FLUX_TEMPLATE])
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

/// Everything the templates see, so any change of it renders everything again.
fn inputs_digest(ctx: &Context) -> String {
    let context_json = serde_json::to_vec(ctx).expect("the context serialises");
    sha256_hex(&[RENDER_FORMAT.as_bytes(), &context_json])
}

/// Where a tenant's render lock lives in the repository.
pub fn render_lock_path(id: &str) -> String {
    format!("{}/{RENDER_LOCK}", tenant_dir(id))
}

#[derive(Serialize)]
struct TenantView<'a> {
    id: &'a str,
    namespace: String,
    dir: String,
    host: String,
    plan: &'a str,
    subscription_status: &'a str,
    /// False when the subscription is suspended, canceled or deleted: every workload is scaled
    /// to zero (volumes kept) and the Ingress serves the suspended page.
    running: bool,
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
    /// Off-cluster backups, when configured (absent from the inputs otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    backup: Option<backup::BackupView<'a>>,
    /// A move in progress (absent from the inputs otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    restore: Option<restore::RestoreView>,
}

impl<'a> Context<'a> {
    fn new(
        spec: &'a TenantSpec,
        plan: &'a Plan,
        settings: &'a RenderSettings,
        sealed: &'a SealedValues,
    ) -> Self {
        Context {
            tenant: TenantView {
                id: &spec.id,
                namespace: namespace_of(&spec.id),
                dir: tenant_dir(&spec.id),
                host: format!("{}.{}", spec.id, settings.base_domain),
                plan: &spec.plan,
                subscription_status: &spec.subscription_status,
                running: spec
                    .subscription_status
                    .parse::<SubscriptionStatus>()
                    .is_ok_and(SubscriptionStatus::runs),
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
            resource_files: TENANT_MANIFESTS,
            backup: settings
                .backup_s3
                .as_ref()
                .map(|s3| backup::BackupView::new(s3, &plan.resources, &spec.id)),
            restore: spec.restore_from.map(restore::RestoreView::new),
        }
    }
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

    /// One digest of every output template's source (and the helpers): two renderers with
    /// the same fingerprint render the same files from the same inputs.
    pub fn fingerprint(&self) -> String {
        let parts: Vec<&[u8]> = self
            .digests
            .iter()
            .flat_map(|(name, digest)| [name.as_bytes(), digest.as_bytes()])
            .chain([RENDER_FORMAT.as_bytes()])
            .collect();
        sha256_hex(&parts)
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
        let sources: BTreeMap<String, String> = sources.into_iter().collect();
        let helpers: Vec<&[u8]> = sources
            .iter()
            .filter(|(name, _)| !output_templates().any(|o| o == name.as_str()))
            .flat_map(|(name, text)| [name.as_bytes(), text.as_bytes()])
            .collect();
        let digests = sources
            .iter()
            .filter(|(name, _)| output_templates().any(|o| o == name.as_str()))
            .map(|(name, text)| {
                let mut parts = vec![name.as_bytes(), text.as_bytes()];
                parts.extend(&helpers);
                (name.clone(), sha256_hex(&parts))
            })
            .collect();
        for (name, text) in sources {
            if text.contains(escape::is_reserved) {
                return Err(RenderError::Template {
                    template: name,
                    source: minijinja::Error::new(
                        minijinja::ErrorKind::SyntaxError,
                        "U+E000..U+E003 are reserved for the renderer",
                    ),
                });
            }
            env.add_template_owned(name.clone(), text)
                .map_err(|source| RenderError::Template {
                    template: name,
                    source,
                })?;
        }
        for name in output_templates() {
            if let Err(source) = env.get_template(name) {
                return Err(RenderError::Template {
                    template: name.to_string(),
                    source,
                });
            }
        }
        Ok(Self {
            env,
            digests,
            skeletons: Skeletons::default(),
        })
    }

    /// Renders one template into its file, split at the printed values.
    fn render_file(
        &self,
        template: &'static str,
        id: &str,
        ctx: &minijinja::Value,
    ) -> Result<RenderedFile, RenderError> {
        let path = match template {
            FLUX_TEMPLATE => flux_kustomization_path(id),
            _ => format!("{}/{template}", tenant_dir(id)),
        };
        let text = self
            .env
            .get_template(template)
            .and_then(|t| t.render(ctx))
            .map_err(|source| RenderError::Template {
                template: template.to_string(),
                source,
            })?;
        let split = Split::new(&text).map_err(|reason| RenderError::Check {
            file: path.clone(),
            doc: 0,
            reason,
        })?;
        Ok(RenderedFile {
            path,
            template,
            split,
        })
    }

    /// Renders one tenant in full. PURE: same inputs, byte-identical output.
    pub fn render(
        &self,
        spec: &TenantSpec,
        plan: &Plan,
        settings: &RenderSettings,
        sealed: &SealedValues,
    ) -> Result<RenderedTenant, RenderError> {
        self.render_update(spec, plan, settings, sealed, None)
    }

    /// Whether `lock` records a render of these inputs by the templates loaded now: false
    /// when a template, the plan file's entry, the settings or the tenant's data changed since
    /// (the tenant is behind: a redeploy or rollout would change its files). PURE.
    pub fn is_current(
        &self,
        spec: &TenantSpec,
        plan: &Plan,
        settings: &RenderSettings,
        sealed: &SealedValues,
        lock: &RenderLock,
    ) -> bool {
        lock.inputs == inputs_digest(&Context::new(spec, plan, settings, sealed))
            && output_templates().all(|template| {
                lock.templates
                    .get(template)
                    .is_some_and(|locked| locked.digest == self.digests[template])
            })
    }

    /// Renders one tenant whose files were last rendered as `previous` records (its lock in the
    /// repository). When the template inputs are the same, only templates whose source changed
    /// are rendered and checked; the others' files are already in the repository, checked when
    /// they were rendered. Otherwise, or without a lock, everything is. PURE like [`render`].
    ///
    /// [`render`]: Renderer::render
    pub fn render_update(
        &self,
        spec: &TenantSpec,
        plan: &Plan,
        settings: &RenderSettings,
        sealed: &SealedValues,
        previous: Option<&RenderLock>,
    ) -> Result<RenderedTenant, RenderError> {
        validate::spec(spec)?;
        validate::settings(settings, &spec.id)?;
        backup::validate(settings)?;
        restore::validate(spec, settings)?;
        validate::resources(&plan.resources)?;
        validate::sealed(sealed, settings.backup_s3.is_some())?;

        let ctx = Context::new(spec, plan, settings, sealed);
        let inputs = inputs_digest(&ctx);
        let previous = previous.filter(|lock| lock.inputs == inputs);
        // Converted once for all templates (each render would convert the context again).
        let values = minijinja::Value::from_serialize(&ctx);

        let mut rendered = Vec::new();
        let mut lock = RenderLock {
            inputs,
            templates: BTreeMap::new(),
        };
        for template in output_templates() {
            let digest = &self.digests[template];
            let unchanged = previous
                .and_then(|p| p.templates.get(template))
                .filter(|locked| locked.digest == *digest);
            if let Some(locked) = unchanged {
                lock.templates.insert(template.to_string(), locked.clone());
                continue;
            }
            rendered.push(self.render_file(template, &spec.id, &values)?);
        }
        let kept = lock
            .templates
            .values()
            .flat_map(|t| t.objects.iter().cloned())
            .collect();
        let mut objects = check::rendered(&rendered, spec, settings, kept, &self.skeletons)?;
        let mut files = BTreeMap::new();
        for RenderedFile {
            path,
            template,
            split,
        } in rendered
        {
            lock.templates.insert(
                template.to_string(),
                LockedTemplate {
                    digest: self.digests[template].clone(),
                    objects: objects.remove(&path).unwrap_or_default(),
                },
            );
            files.insert(path, split.clean.into_bytes());
        }
        Ok(RenderedTenant {
            files,
            lock,
            complete: previous.is_none(),
        })
    }
}

#[cfg(test)]
mod tests;
