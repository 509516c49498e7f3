//! The composition root: builds the shared parts once from the configuration (pool, keys,
//! plans, the GitOps handle, wakers) and cuts from them each workflow's narrow handles. Only
//! `main`, `cli/` and `http/` see `App`; every other module takes the handles it uses.

use std::sync::Arc;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

use tokio::sync::Notify;

use crate::accounts::session::SessionKeys;
use crate::accounts::{AccountSettings, AccountsHandles};
use crate::billing::{BillingHandles, BillingSettings};
use crate::config::Config;
use crate::db::Db;
use crate::deploy::{DeployHandles, DeploySettings};
use crate::gitops::{Author, GitOps, GitOpsRepo, PushAuth, Remote};
use crate::license::keys::{KeyPaths, KeyRing};
use crate::model::git::GitHealth;
use crate::notify::sender::SenderHandles;
use crate::plans::Catalogue;
use crate::render::{RenderSettings, Renderer};
use crate::review::{Review, ReviewHandles};
use crate::seal::SealingKey;
use crate::watcher::pods::PodStore;
use crate::watcher::WatcherHandles;

pub struct App {
    pub config: Config,
    pub db: Db,
    pub keys: Arc<KeyRing>,
    pub plans: Arc<Catalogue>,
    pub sessions: Arc<SessionKeys>,
    pub gitops: Arc<GitOps>,
    /// The cluster's sealed-secrets key: tenant secrets are sealed with it at once.
    pub sealing: SealingKey,
    pub renderer: Arc<Renderer>,
    pub render_settings: Arc<RenderSettings>,
    /// Woken when a job is queued, so the worker need not wait for its next poll.
    pub worker_wake: Arc<Notify>,
    /// Woken after a push, so the drift scan looks at the remote at once.
    pub scan_wake: Arc<Notify>,
    /// Woken after an erasure, so no copy of the erased data waits in SQLite's WAL.
    pub wal_scrub: Arc<Notify>,
    /// This process's name on the job leases.
    pub worker_id: String,
    /// For outgoing calls (the sync webhook poke, Stripe).
    pub http: reqwest::Client,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The background workers (started by `http::serve`) and their shutdown.
    pub workers: crate::supervisor::Supervisor,
    /// Tenant pods as the Kubernetes poller last listed them (none without a poller).
    pub pods: Arc<PodStore>,
    /// Stripe price id -> plan name.
    pub stripe_prices: Arc<std::collections::BTreeMap<String, String>>,
    /// Which changes wait for review, and the forge of their pull requests.
    pub review: Arc<Review>,
    /// The narrow handles each workflow takes, cut from the parts above (shared, not copied).
    pub accounts: AccountsHandles,
    pub billing: BillingHandles,
    pub deploy: DeployHandles,
    pub watcher: WatcherHandles,
    pub mail: SenderHandles,
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
        let review = Review::from_config(&config.review)?;
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
        let event_key = crate::event_secret::EventKey::configured(
            config.cluster.cluster_secrets_key.as_ref(),
            &config.keys_dir(),
        )?;
        let gitops = open_gitops(&config)?;
        let sealing =
            SealingKey::load_or_generate(config.sealed_secrets_cert.as_deref(), &config.data_dir)?;
        let metrics = crate::metrics::Metrics::default();
        let workers = crate::supervisor::Supervisor::new(metrics.worker_restarts.clone());
        let parts = Parts {
            renderer: Arc::new(renderer(&config)?),
            render_settings: Arc::new(render_settings(&config)),
            config: Arc::new(config),
            db,
            keys: Arc::new(keys),
            plans: Arc::new(plans),
            sessions: Arc::new(sessions),
            gitops: Arc::new(gitops),
            sealing,
            worker_wake: Arc::new(Notify::new()),
            scan_wake: Arc::new(Notify::new()),
            wal_scrub: Arc::new(Notify::new()),
            worker_id: format!("worker-{}", uuid::Uuid::new_v4()),
            http: reqwest::Client::new(),
            metrics: Arc::new(metrics),
            pods: Arc::new(PodStore::default()),
            event_key: Arc::new(event_key),
            stripe_prices: Arc::new(stripe_prices),
            review: Arc::new(review),
        };
        Ok(Arc::new(parts.wire(workers)))
    }
}

/// The shared parts, before they are cut into each workflow's handles.
struct Parts {
    config: Arc<Config>,
    db: Db,
    keys: Arc<KeyRing>,
    plans: Arc<Catalogue>,
    sessions: Arc<SessionKeys>,
    gitops: Arc<GitOps>,
    sealing: SealingKey,
    renderer: Arc<Renderer>,
    render_settings: Arc<RenderSettings>,
    worker_wake: Arc<Notify>,
    scan_wake: Arc<Notify>,
    wal_scrub: Arc<Notify>,
    worker_id: String,
    http: reqwest::Client,
    metrics: Arc<crate::metrics::Metrics>,
    pods: Arc<PodStore>,
    event_key: Arc<crate::event_secret::EventKey>,
    stripe_prices: Arc<std::collections::BTreeMap<String, String>>,
    review: Arc<Review>,
}

impl Parts {
    /// Cuts each workflow's handles from the parts; every handle shares the same pool, repository
    /// and wakers.
    fn wire(self, workers: crate::supervisor::Supervisor) -> App {
        let config = &self.config;
        let placement = crate::placement::PlacementHandles::new(
            self.db.clone(),
            self.renderer.clone(),
            self.render_settings.clone(),
            self.plans.clone(),
            config.default_region.clone(),
            self.worker_wake.clone(),
            std::time::Duration::from_secs(config.placement_interval_seconds.max(1)),
        );
        let accounts = AccountsHandles {
            db: self.db.clone(),
            settings: Arc::new(AccountSettings {
                login: config.login.clone(),
                smtp_from: config.smtp_from.clone(),
                license_issuer: config.license_issuer.clone(),
                session_ttl_minutes: config.session_ttl_minutes,
                base_domain: config.base_domain.clone(),
            }),
            plans: self.plans.clone(),
            keys: self.keys.clone(),
            sessions: self.sessions.clone(),
            sealing: self.sealing.clone(),
            metrics: self.metrics.clone(),
            worker_wake: self.worker_wake.clone(),
            wal_scrub: self.wal_scrub.clone(),
            placement,
        };
        let billing = BillingHandles {
            db: self.db.clone(),
            settings: Arc::new(BillingSettings {
                smtp_from: config.smtp_from.clone(),
                license_issuer: config.license_issuer.clone(),
                lifecycle_grace_days: config.lifecycle_grace_days,
                lifecycle_interval_seconds: config.lifecycle_interval_seconds,
                deletion_retention_days: config.deletion_retention_days,
                stripe_api_base: config.stripe_api_base.clone(),
                stripe_secret_key: config.stripe_secret_key.clone(),
                stripe_timeout_seconds: config.stripe_timeout_seconds,
                stripe_webhook_secrets: config
                    .stripe_webhook_secrets()
                    .into_iter()
                    .map(|s| SecretString::from(s.to_string()))
                    .collect(),
                stripe_webhook_tolerance_seconds: config.stripe_webhook_tolerance_seconds,
            }),
            plans: self.plans.clone(),
            keys: self.keys.clone(),
            sealing: self.sealing.clone(),
            worker_wake: self.worker_wake.clone(),
            worker_id: self.worker_id.clone(),
            http: self.http.clone(),
            stripe_prices: self.stripe_prices.clone(),
            accounts: accounts.clone(),
        };
        let review = ReviewHandles {
            db: self.db.clone(),
            branch: config.gitops_branch.clone(),
            gitops: self.gitops.clone(),
            http: self.http.clone(),
            mode: self.review.clone(),
        };
        let deploy = DeployHandles {
            db: self.db.clone(),
            settings: Arc::new(DeploySettings {
                gitops_branch: config.gitops_branch.clone(),
                gitops_batch_max: config.gitops_batch_max,
                gitops_lease_seconds: config.gitops_lease_seconds,
                gitops_max_attempts: config.gitops_max_attempts,
                gitops_fetch_interval_seconds: config.gitops_fetch_interval_seconds,
                sync_webhook: config.sync_webhook(),
                backup: config.backup.clone(),
            }),
            gitops: self.gitops.clone(),
            plans: self.plans.clone(),
            renderer: self.renderer.clone(),
            render_settings: self.render_settings.clone(),
            metrics: self.metrics.clone(),
            worker_wake: self.worker_wake.clone(),
            scan_wake: self.scan_wake.clone(),
            worker_id: self.worker_id.clone(),
            http: self.http.clone(),
            pods: self.pods.clone(),
            review,
            sealing: self.sealing.clone(),
        };
        let watcher = WatcherHandles {
            db: self.db.clone(),
            cluster: Arc::new(config.cluster.clone()),
            smtp_from: config.smtp_from.clone(),
            gitops: self.gitops.clone(),
            pods: self.pods.clone(),
            event_key: self.event_key.clone(),
        };
        let mail = SenderHandles {
            db: self.db.clone(),
            worker_id: self.worker_id.clone(),
            wal_scrub: self.wal_scrub.clone(),
        };
        App {
            config: (*self.config).clone(),
            db: self.db,
            keys: self.keys,
            plans: self.plans,
            sessions: self.sessions,
            gitops: self.gitops,
            sealing: self.sealing,
            renderer: self.renderer,
            render_settings: self.render_settings,
            worker_wake: self.worker_wake,
            scan_wake: self.scan_wake,
            wal_scrub: self.wal_scrub,
            worker_id: self.worker_id,
            http: self.http,
            metrics: self.metrics,
            workers,
            pods: self.pods,
            stripe_prices: self.stripe_prices,
            review: self.review,
            accounts,
            billing,
            deploy,
            watcher,
            mail,
        }
    }
}

impl App {
    /// Whether template changes wait for review (review mode): each rollout wave is then one
    /// pull request.
    fn templates_reviewed(&self) -> bool {
        self.review
            .policy
            .reviewed(crate::db::outbox::Action::Update, None)
    }

    /// The handles the rollout workflow takes, borrowed from here.
    pub fn rollout_handles(&self) -> crate::rollout::Handles<'_> {
        crate::rollout::Handles {
            db: &self.db,
            gitops: &self.gitops,
            renderer: &self.renderer,
            plans: &self.plans,
            render_settings: &self.render_settings,
            policy: self.config.rollout.rollout_policy,
            review: self.templates_reviewed().then_some(&self.deploy.review),
            worker_id: &self.worker_id,
            backup: crate::deploy::BackupSealing {
                sealing: &self.sealing,
                config: &self.config.backup,
            },
            poke: self
                .config
                .sync_webhook()
                .map(|target| crate::rollout::Poke {
                    http: &self.http,
                    target,
                    branch: &self.config.gitops_branch,
                }),
        }
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
            ssh_key_passphrase: config.gitops_ssh_key_passphrase.clone(),
            https_username: config.gitops_https_username.clone(),
            https_token: config.gitops_https_token.clone(),
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
