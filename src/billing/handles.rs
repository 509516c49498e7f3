//! What billing (subscription changes, Stripe, the lifecycle clock) uses, built once by the
//! composition root (`app`).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::accounts::AccountsHandles;
use crate::config::Config;
use crate::db::Db;
use crate::license::keys::KeyRing;
use crate::plans::Catalogue;
use crate::seal::SealingKey;

#[derive(Clone)]
pub struct BillingHandles {
    pub db: Db,
    pub config: Arc<Config>,
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
