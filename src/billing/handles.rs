//! What billing (subscription changes, Stripe, the lifecycle clock) uses, built once by the
//! composition root (`app`).

use std::collections::BTreeMap;
use std::sync::Arc;

use secrecy::SecretString;
use tokio::sync::Notify;

use crate::accounts::AccountsHandles;
use crate::db::Db;
use crate::license::keys::KeyRing;
use crate::plans::Catalogue;
use crate::seal::SealingKey;

#[derive(Clone)]
pub struct BillingHandles {
    pub db: Db,
    pub settings: Arc<BillingSettings>,
    pub plans: Arc<Catalogue>,
    pub keys: Arc<KeyRing>,
    pub sealing: SealingKey,
    /// Woken when a job is queued, so the deploy worker need not wait for its next poll.
    pub worker_wake: Arc<Notify>,
    /// This process's name on the cancellation leases.
    pub worker_id: String,
    /// For Stripe's API.
    pub http: reqwest::Client,
    /// Stripe price id -> plan name.
    pub stripe_prices: Arc<BTreeMap<String, String>>,
    /// The end of the retention period erases the account.
    pub accounts: AccountsHandles,
}

/// The settings billing reads.
pub struct BillingSettings {
    /// The `From` of customer emails.
    pub smtp_from: String,
    /// `iss` of the licenses a change reissues.
    pub license_issuer: String,
    pub lifecycle_grace_days: u32,
    pub lifecycle_interval_seconds: u64,
    pub deletion_retention_days: u32,
    pub stripe_api_base: String,
    /// Unset: Checkout and the Billing Portal answer 503, cancellations wait.
    pub stripe_secret_key: Option<SecretString>,
    pub stripe_timeout_seconds: u64,
    /// The webhook's signing secrets, in order (several during a rotation).
    pub stripe_webhook_secrets: Vec<SecretString>,
    pub stripe_webhook_tolerance_seconds: i64,
}
