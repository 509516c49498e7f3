//! The application's shared state: everything a request handler or CLI command needs,
//! built once from the configuration.

use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::accounts::session::SessionKeys;
use crate::config::Config;
use crate::db::Db;
use crate::license::keys::{KeyPaths, KeyRing};
use crate::plans::Catalogue;

pub struct App {
    pub config: Config,
    pub db: Db,
    pub keys: KeyRing,
    pub plans: Catalogue,
    pub sessions: SessionKeys,
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
        let db = Db::connect(&config.database_url()).await?;
        db.migrate().await?;
        let paths = key_paths(&config);
        let keys = tokio::task::spawn_blocking(move || KeyRing::load_or_generate(&paths))
            .await
            .context("key loading task")??;
        let sessions = match &config.session_secret {
            Some(secret) => SessionKeys::from_secret(secret.expose_secret().as_bytes())?,
            None => SessionKeys::load_or_generate(&config.keys_dir().join("session.key"))?,
        };
        Ok(Arc::new(App {
            config,
            db,
            keys,
            plans,
            sessions,
        }))
    }
}
