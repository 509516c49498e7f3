//! The application's shared state: everything a request handler or CLI command needs,
//! built once from the configuration.

use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::accounts::session::SessionKeys;
use crate::config::Config;
use crate::db::Db;
use crate::gitops::{Author, GitHealth, GitOps, GitOpsRepo, PushAuth, Remote};
use crate::license::keys::{KeyPaths, KeyRing};
use crate::plans::Catalogue;
use crate::render::{RenderSettings, Renderer};
use crate::seal::SealingKey;
use crate::watcher::pods::PodStore;

pub struct App {
    pub config: Config,
    pub db: Db,
    pub keys: KeyRing,
    pub plans: Catalogue,
    pub sessions: SessionKeys,
    pub gitops: GitOps,
    /// The cluster's sealed-secrets key: tenant secrets are sealed with it at once.
    pub sealing: SealingKey,
    pub renderer: Renderer,
    pub render_settings: RenderSettings,
    /// Woken when a job is queued, so the worker need not wait for its next poll.
    pub worker_wake: tokio::sync::Notify,
    /// Woken after a push, so the drift scan looks at the remote at once.
    pub scan_wake: tokio::sync::Notify,
    /// Woken after an erasure, so no copy of the erased data waits in SQLite's WAL.
    pub wal_scrub: tokio::sync::Notify,
    /// This process's name on the job leases.
    pub worker_id: String,
    /// For outgoing calls (the sync webhook poke, Stripe).
    pub http: reqwest::Client,
    pub metrics: crate::metrics::Metrics,
    /// The background workers (started by `http::serve`) and their shutdown.
    pub workers: crate::supervisor::Supervisor,
    /// Tenant pods as the Kubernetes poller last listed them (none without a poller).
    pub pods: PodStore,
    /// Stripe price id -> plan name.
    pub stripe_prices: std::collections::BTreeMap<String, String>,
    /// Which changes wait for review, and the forge of their pull requests.
    pub review: crate::review::Review,
}

pub type SharedApp = Arc<App>;

pub fn key_paths(config: &Config) -> KeyPaths {
    KeyPaths {
        private: config.license_private_key_path(),
        public: config.license_public_key_path(),
        retired_dir: config.license_retired_keys_dir(),
    }
}

impl App {
    /// Connects, migrates, loads (or generates) keys and the plan catalogue.
    pub async fn start(config: Config) -> anyhow::Result<SharedApp> {
        let plans = Catalogue::load(config.plans_file.as_deref())?;
        // Off-cluster backups without their credential would fail every night: refuse to start.
        config.backup.credentials()?;
        let stripe_prices = config.stripe_price_map(&plans)?;
        let review = crate::review::Review::from_config(&config.review)?;
        let db = Db::connect(&config.database_url(), config.database_acquire_timeout()).await?;
        db.migrate().await?;
        crate::accounts::signup::backfill_skeletons(&db).await?;
        let paths = key_paths(&config);
        let keys = tokio::task::spawn_blocking(move || KeyRing::load_or_generate(&paths))
            .await
            .context("key loading task")??;
        let sessions = match &config.session_secret {
            Some(secret) => SessionKeys::from_secret(secret.expose_secret().as_bytes())?,
            None => SessionKeys::load_or_generate(&config.keys_dir().join("session.key"))?,
        };
        let gitops = open_gitops(&config)?;
        let sealing =
            SealingKey::load_or_generate(config.sealed_secrets_cert.as_deref(), &config.data_dir)?;
        let metrics = crate::metrics::Metrics::default();
        Ok(Arc::new(App {
            renderer: renderer(&config)?,
            render_settings: render_settings(&config),
            config,
            db,
            keys,
            plans,
            sessions,
            gitops,
            sealing,
            worker_wake: tokio::sync::Notify::new(),
            scan_wake: tokio::sync::Notify::new(),
            wal_scrub: tokio::sync::Notify::new(),
            worker_id: format!("worker-{}", uuid::Uuid::new_v4()),
            http: reqwest::Client::new(),
            workers: crate::supervisor::Supervisor::new(metrics.worker_restarts.clone()),
            metrics,
            pods: PodStore::default(),
            stripe_prices,
            review,
        }))
    }
}

pub fn remote(config: &Config) -> Option<Remote> {
    let url = config
        .gitops_remote
        .clone()
        .filter(|u| !u.trim().is_empty())?;
    Some(Remote {
        url,
        auth: PushAuth {
            ssh_key_path: config.gitops_ssh_key_path.clone(),
            ssh_key_passphrase: config
                .gitops_ssh_key_passphrase
                .as_ref()
                .map(|s| s.expose_secret().to_string()),
            https_username: config.gitops_https_username.clone(),
            https_token: config
                .gitops_https_token
                .as_ref()
                .map(|s| s.expose_secret().to_string()),
        },
    })
}

pub fn open_repo(config: &Config) -> anyhow::Result<GitOpsRepo> {
    let author = Author {
        name: config.gitops_author_name.clone(),
        email: config.gitops_author_email.clone(),
    };
    let path = config.gitops_repo();
    let mut repo = GitOpsRepo::open_or_init(&path, &config.gitops_branch, author)
        .with_context(|| format!("opening the GitOps repository {}", path.display()))?;
    repo.set_fsync(config.gitops_fsync)?;
    repo.set_stale_lock_after(std::time::Duration::from_secs(
        config.gitops_stale_lock_seconds,
    ));
    Ok(repo)
}

pub fn renderer(config: &Config) -> anyhow::Result<Renderer> {
    Ok(match &config.templates_dir {
        Some(dir) => Renderer::from_dir(dir)?,
        None => Renderer::builtin(),
    })
}

pub fn render_settings(config: &Config) -> RenderSettings {
    RenderSettings {
        base_domain: config.base_domain.clone(),
        backup_s3: config.backup.render_settings(),
        ..RenderSettings::default()
    }
}

/// Opens the repository. Nothing here waits on the remote: the first fetch is the scan loop's
/// first pass, so the service listens even while the remote is down or stalls.
fn open_gitops(config: &Config) -> anyhow::Result<GitOps> {
    let repo = open_repo(config)?;
    let remote = remote(config);
    let health = GitHealth {
        remote_configured: remote.is_some(),
        last_commit: repo.head()?.map(|o| o.to_string()),
        ..GitHealth::default()
    };
    if let Some(remote) = &remote {
        if let Err(e) = repo.tidy_remote(remote) {
            tracing::warn!(error = %e, "could not tidy the path remote's packs");
        }
    }
    Ok(GitOps::new(repo, remote, health))
}
