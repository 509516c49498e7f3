//! All runtime settings: one clap struct, every field with a flag and an environment fallback.

use std::net::SocketAddr;
use std::path::PathBuf;

mod backup;
mod cluster;
pub use cluster::{ClusterConfig, KubeContexts};
mod derived;
mod login;
pub use login::LoginConfig;
pub mod review;
pub mod rollout;

pub use backup::{BackupConfig, BackupCredentials};
use clap::Args;
use secrecy::SecretString;

/// Stripe's libraries' default tolerance of a `Stripe-Signature` timestamp, in seconds.
pub const STRIPE_DEFAULT_TOLERANCE_SECONDS: i64 = 300;

/// Where a customer's instance is served: `https://<id>.<base domain>`.
pub fn instance_url(base_domain: &str, customer_id: &str) -> String {
    format!("https://{customer_id}.{base_domain}")
}

/// Settings shared by every subcommand. Defaults make `billing serve` work on a fresh machine:
/// SQLite and generated keys under `--data-dir`.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Directory for embedded defaults (SQLite database, generated keys).
    #[arg(long, env = "DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,

    /// sqlx database URL: `sqlite://...` or `postgres://...`. Default: SQLite file in the data dir.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Seconds a request waits for a database connection before it is answered 503
    /// `database_unavailable`: an outage fails fast instead of holding clients for 30 s.
    #[arg(
        long,
        env = "DATABASE_ACQUIRE_TIMEOUT_SECONDS",
        default_value_t = 3,
        global = true
    )]
    pub database_acquire_timeout_seconds: u64,

    /// PEM private key that signs licenses. Default: `<data-dir>/keys/license-private.pem`,
    /// generated (RSA-2048) on first run.
    #[arg(long, env = "LICENSE_PRIVATE_KEY_PATH", global = true)]
    pub license_private_key_path: Option<PathBuf>,

    /// PEM public key matching the private key. Default: `<data-dir>/keys/license-public.pem`.
    #[arg(long, env = "LICENSE_PUBLIC_KEY_PATH", global = true)]
    pub license_public_key_path: Option<PathBuf>,

    /// Directory of retired public keys (PEM) that still verify licenses they signed.
    /// Default: `<data-dir>/keys/retired`.
    #[arg(long, env = "LICENSE_RETIRED_KEYS_DIR", global = true)]
    pub license_retired_keys_dir: Option<PathBuf>,

    /// `iss` claim of licenses and session tokens.
    #[arg(
        long,
        env = "LICENSE_ISSUER",
        default_value = "iotistic-billing",
        global = true
    )]
    pub license_issuer: String,

    /// Domain under which each customer's instance is served: `https://<id>.<BASE_DOMAIN>`.
    #[arg(
        long,
        env = "BASE_DOMAIN",
        default_value = "iotistic.cloud",
        global = true
    )]
    pub base_domain: String,

    /// The region a signup without `region` is placed in, once the cluster catalogue has
    /// clusters (`billing cluster add`). Unset: such a signup must name its region.
    #[arg(long, env = "DEFAULT_REGION", global = true)]
    pub default_region: Option<String>,

    /// Seconds between the placement worker's looks for room for unplaced tenants (a cluster
    /// added, uncordoned or freed by another process sharing the database).
    #[arg(
        long,
        env = "PLACEMENT_INTERVAL_SECONDS",
        default_value_t = 2,
        global = true
    )]
    pub placement_interval_seconds: u64,

    /// Address the HTTP API listens on.
    #[arg(
        long,
        env = "LISTEN_ADDR",
        default_value = "0.0.0.0:3100",
        global = true
    )]
    pub listen_addr: SocketAddr,

    /// Bearer token for admin endpoints. Unset: admin endpoints refuse every request.
    #[arg(long, env = "ADMIN_API_TOKEN", global = true, hide_env_values = true)]
    pub admin_api_token: Option<SecretString>,

    /// Bearer token that may read `/metrics` (besides the admin token), for a Prometheus
    /// scraper.
    #[arg(long, env = "METRICS_TOKEN", global = true, hide_env_values = true)]
    pub metrics_token: Option<SecretString>,

    /// HMAC secret for customer session tokens. Default: generated into
    /// `<data-dir>/keys/session.key`. Replicas must share it.
    #[arg(long, env = "SESSION_SECRET", global = true, hide_env_values = true)]
    pub session_secret: Option<SecretString>,

    /// Lifetime of a customer session token, in minutes.
    #[arg(long, env = "SESSION_TTL_MINUTES", default_value_t = 60, global = true)]
    pub session_ttl_minutes: i64,

    /// Plan catalogue (YAML). Default: the `plans.yaml` built into the binary.
    #[arg(long, env = "PLANS_FILE", global = true)]
    pub plans_file: Option<PathBuf>,

    /// The GitOps repository (bare; created with its layout on first run).
    /// Default: `<data-dir>/gitops.git`.
    #[arg(long, env = "GITOPS_REPO", global = true)]
    pub gitops_repo: Option<PathBuf>,

    /// Branch that Flux or Argo CD syncs.
    #[arg(long, env = "GITOPS_BRANCH", default_value = "main", global = true)]
    pub gitops_branch: String,

    /// Remote to push to (ssh://, https://, file:// or a path). Unset: commit locally only.
    #[arg(long, env = "GITOPS_REMOTE", global = true)]
    pub gitops_remote: Option<String>,

    /// SSH private key for the remote.
    #[arg(long, env = "GITOPS_SSH_KEY_PATH", global = true)]
    pub gitops_ssh_key_path: Option<PathBuf>,

    /// Passphrase of that SSH key.
    #[arg(
        long,
        env = "GITOPS_SSH_KEY_PASSPHRASE",
        global = true,
        hide_env_values = true
    )]
    pub gitops_ssh_key_passphrase: Option<SecretString>,

    /// HTTPS user name for the remote (token auth; default `x-access-token`).
    #[arg(long, env = "GITOPS_HTTPS_USERNAME", global = true)]
    pub gitops_https_username: Option<String>,

    /// HTTPS token (password) for the remote.
    #[arg(
        long,
        env = "GITOPS_HTTPS_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub gitops_https_token: Option<SecretString>,

    /// Commit author name.
    #[arg(
        long,
        env = "GITOPS_AUTHOR_NAME",
        default_value = "billing",
        global = true
    )]
    pub gitops_author_name: String,

    /// Commit author email.
    #[arg(
        long,
        env = "GITOPS_AUTHOR_EMAIL",
        default_value = "billing@iotistic.cloud",
        global = true
    )]
    pub gitops_author_email: String,

    /// Most render jobs folded into one commit.
    #[arg(long, env = "GITOPS_BATCH_MAX", default_value_t = 250, global = true)]
    pub gitops_batch_max: i64,

    /// fsync each commit's pack, index and branch update, in that order, so a crash of the
    /// machine cannot leave the branch naming objects that never reached the disk. `false` is
    /// for scratch repositories (tests, a tmpfs).
    #[arg(
        long,
        env = "GITOPS_FSYNC",
        default_value_t = true,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub gitops_fsync: bool,

    /// Seconds after which a Git lock file blocking a write (in the local repository while the
    /// service runs, or in a path remote) is taken for a dead writer's and removed. At start-up
    /// every lock in the local repository is removed: the service is its only writer.
    #[arg(
        long,
        env = "GITOPS_STALE_LOCK_SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub gitops_stale_lock_seconds: u64,

    /// Seconds a fetch or push waits to connect to the remote, and for each answer from it,
    /// before it fails (and is retried later): a remote that stalls never holds the service.
    #[arg(
        long,
        env = "GITOPS_NETWORK_TIMEOUT_SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600),
        global = true
    )]
    pub gitops_network_timeout_seconds: u64,

    /// How often the service fetches the remote and looks for commits it did not make (a
    /// person's revert or edit of a tenant marks it `drifted`). Also right after each push.
    #[arg(
        long,
        env = "GITOPS_FETCH_INTERVAL_SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub gitops_fetch_interval_seconds: u64,

    /// Review mode and the forge its pull requests go to.
    #[command(flatten)]
    pub review: review::ReviewConfig,

    /// What the cluster side talks to: sync pokes, sync event webhooks, the watcher.
    #[command(flatten)]
    pub cluster: cluster::ClusterConfig,

    /// What a change of templates or plans does to existing tenants.
    #[command(flatten)]
    pub rollout: rollout::RolloutConfig,

    /// Attempts before a job that fails to render is given up (`failed`).
    #[arg(long, env = "GITOPS_MAX_ATTEMPTS", default_value_t = 5, global = true)]
    pub gitops_max_attempts: i64,

    /// Seconds a worker holds a claimed job before another may take it over.
    #[arg(
        long,
        env = "GITOPS_LEASE_SECONDS",
        default_value_t = 60,
        global = true
    )]
    pub gitops_lease_seconds: i64,

    /// PEM certificate of the cluster's sealed-secrets controller (`kubeseal --fetch-cert`).
    /// Default: a local sealing key pair generated under `<data-dir>/sealing/`.
    #[arg(long, env = "SEALED_SECRETS_CERT", global = true)]
    pub sealed_secrets_cert: Option<PathBuf>,

    /// Off-cluster copies of the tenants' nightly backups.
    #[command(flatten)]
    pub backup: BackupConfig,

    /// Directory of tenant templates. Default: the templates built into the binary.
    #[arg(long, env = "TEMPLATES_DIR", global = true)]
    pub templates_dir: Option<PathBuf>,

    /// Take the client IP for the audit log from `X-Forwarded-For` (only behind a trusted proxy).
    #[arg(
        long,
        env = "TRUST_FORWARDED_FOR",
        default_value_t = false,
        global = true
    )]
    pub trust_forwarded_for: bool,

    /// The per-account login limit, across client addresses.
    #[command(flatten)]
    pub login: login::LoginConfig,

    /// Signing secret(s) of the Stripe webhook endpoint (`whsec_…`), comma-separated while a
    /// secret is rotated. Unset: `/api/webhooks/stripe` refuses every request.
    #[arg(
        long,
        env = "STRIPE_WEBHOOK_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub stripe_webhook_secret: Option<SecretString>,

    /// Seconds a `Stripe-Signature` timestamp may be from now.
    #[arg(
        long,
        env = "STRIPE_WEBHOOK_TOLERANCE_SECONDS",
        default_value_t = STRIPE_DEFAULT_TOLERANCE_SECONDS,
        global = true
    )]
    pub stripe_webhook_tolerance_seconds: i64,

    /// Stripe price of a plan, `<plan>=<price id>` (repeatable). Besides, `STRIPE_PRICE_<PLAN>`
    /// (e.g. STRIPE_PRICE_PROFESSIONAL=price_…) is read for every plan of the catalogue.
    #[arg(long = "stripe-price", global = true, value_name = "PLAN=PRICE")]
    pub stripe_prices: Vec<String>,

    /// Secret API key (`sk_…`) for Checkout and Billing Portal sessions. Unset:
    /// `/api/subscriptions/checkout` and `/portal` answer 503.
    #[arg(long, env = "STRIPE_SECRET_KEY", global = true, hide_env_values = true)]
    pub stripe_secret_key: Option<SecretString>,

    /// Base URL of Stripe's API (a test double in tests).
    #[arg(
        long,
        env = "STRIPE_API_BASE",
        default_value = "https://api.stripe.com",
        global = true
    )]
    pub stripe_api_base: String,

    /// Seconds a Stripe API call may take before it is a 502 `stripe_unavailable`.
    #[arg(
        long,
        env = "STRIPE_TIMEOUT_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=120),
        global = true
    )]
    pub stripe_timeout_seconds: u64,

    /// Days a past-due subscription keeps running, counted from the failed payment that made it
    /// past due; then the lifecycle scheduler suspends it.
    #[arg(
        long,
        env = "LIFECYCLE_GRACE_DAYS",
        default_value_t = 7,
        value_parser = clap::value_parser!(u32).range(0..=3650),
        global = true
    )]
    pub lifecycle_grace_days: u32,

    /// Seconds between two passes of the lifecycle scheduler in `billing serve`.
    #[arg(
        long,
        env = "LIFECYCLE_INTERVAL_SECONDS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub lifecycle_interval_seconds: u64,

    /// Days a canceled customer's account and stack are kept before the scheduler deletes them
    /// (a reminder email goes 7 days before, or at once when the retention is shorter).
    #[arg(
        long,
        env = "DELETION_RETENTION_DAYS",
        default_value_t = 30,
        global = true
    )]
    pub deletion_retention_days: u32,

    /// Where customer emails go: `smtp://host:port` (plain), `smtp://host?tls=required`
    /// (STARTTLS) or `smtps://user:password@host` (TLS). Unset: emails are written to the log.
    #[arg(long, env = "SMTP_URL", global = true, hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// The From address of customer emails; its domain also names their Message-IDs.
    #[arg(
        long,
        env = "SMTP_FROM",
        default_value = "billing@iotistic.cloud",
        global = true
    )]
    pub smtp_from: String,
}

/// Whether the sync watcher polls the Kubernetes API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KubePoll {
    Auto,
    Off,
}
