//! What the account workflows (signup, login, deletion, the login limits) use, built once by the
//! composition root (`app`): the pool, the keys they sign and seal with, the plans, and the
//! wakers of the workers their changes concern.

use std::sync::Arc;

use tokio::sync::Notify;

use super::session::SessionKeys;
use crate::config::LoginConfig;
use crate::db::Db;
use crate::license::keys::KeyRing;
use crate::metrics::Metrics;
use crate::placement::PlacementHandles;
use crate::plans::Catalogue;
use crate::seal::SealingKey;

#[derive(Clone)]
pub struct AccountsHandles {
    pub db: Db,
    pub settings: Arc<AccountSettings>,
    pub plans: Arc<Catalogue>,
    pub keys: Arc<KeyRing>,
    pub sessions: Arc<SessionKeys>,
    /// The cluster's sealed-secrets key: a new tenant's secrets are sealed with it at once.
    pub sealing: SealingKey,
    pub metrics: Arc<Metrics>,
    /// Woken when a job is queued, so the deploy worker need not wait for its next poll.
    pub worker_wake: Arc<Notify>,
    /// Woken after an erasure, so no copy of the erased data waits in SQLite's WAL.
    pub wal_scrub: Arc<Notify>,
    /// Where a new tenant goes (its region, a cluster with room): signup places it.
    pub placement: PlacementHandles,
}

/// The settings the account workflows read.
pub struct AccountSettings {
    /// The per-account login limit.
    pub login: LoginConfig,
    /// The `From` of customer emails.
    pub smtp_from: String,
    /// `iss` of licenses and session tokens.
    pub license_issuer: String,
    pub session_ttl_minutes: i64,
    /// Instances are served at `https://<id>.<base domain>`.
    pub base_domain: String,
}
