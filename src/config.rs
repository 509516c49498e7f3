//! All runtime settings: one clap struct, every field with a flag and an environment fallback.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use secrecy::SecretString;

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

    /// Take the client IP for the audit log from `X-Forwarded-For` (only behind a trusted proxy).
    #[arg(
        long,
        env = "TRUST_FORWARDED_FOR",
        default_value_t = false,
        global = true
    )]
    pub trust_forwarded_for: bool,
}

impl Config {
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("billing.db").display()
            )
        })
    }

    /// The admin token, if one is configured; an empty value counts as none.
    pub fn admin_token(&self) -> Option<&SecretString> {
        use secrecy::ExposeSecret;
        self.admin_api_token
            .as_ref()
            .filter(|t| !t.expose_secret().is_empty())
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.data_dir.join("keys")
    }

    pub fn license_private_key_path(&self) -> PathBuf {
        self.license_private_key_path
            .clone()
            .unwrap_or_else(|| self.keys_dir().join("license-private.pem"))
    }

    pub fn license_public_key_path(&self) -> PathBuf {
        self.license_public_key_path
            .clone()
            .unwrap_or_else(|| self.keys_dir().join("license-public.pem"))
    }

    pub fn license_retired_keys_dir(&self) -> PathBuf {
        self.license_retired_keys_dir
            .clone()
            .unwrap_or_else(|| self.keys_dir().join("retired"))
    }

    pub fn instance_url(&self, customer_id: &str) -> String {
        format!("https://{customer_id}.{}", self.base_domain)
    }
}
