//! What follows from the settings: the database URL and paths under the data directory, the
//! secrets in the shapes their users need, the Stripe price map, the sync webhook target.

use std::path::PathBuf;

use secrecy::SecretString;

use super::Config;

impl Config {
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("billing.db").display()
            )
        })
    }

    pub fn database_acquire_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.database_acquire_timeout_seconds.max(1))
    }

    /// The admin token, if one is configured; an empty value counts as none.
    pub fn admin_token(&self) -> Option<&SecretString> {
        use secrecy::ExposeSecret;
        self.admin_api_token
            .as_ref()
            .filter(|t| !t.expose_secret().is_empty())
    }

    /// The Stripe webhook secrets, in order (empty entries dropped).
    pub fn stripe_webhook_secrets(&self) -> Vec<&str> {
        use secrecy::ExposeSecret;
        self.stripe_webhook_secret
            .as_ref()
            .map(|s| s.expose_secret().split(',').map(str::trim))
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Stripe price id -> plan name, from `--stripe-price` and `STRIPE_PRICE_<PLAN>`; a price
    /// for a plan the catalogue lacks is a start-up error, not a silently ignored upgrade.
    pub fn stripe_price_map(
        &self,
        plans: &crate::plans::Catalogue,
    ) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
        let mut map = std::collections::BTreeMap::new();
        for name in plans.plans.keys() {
            let var = format!("STRIPE_PRICE_{}", name.to_uppercase().replace('-', "_"));
            if let Ok(price) = std::env::var(&var) {
                if !price.trim().is_empty() {
                    map.insert(price.trim().to_string(), name.clone());
                }
            }
        }
        for pair in &self.stripe_prices {
            let (plan, price) = pair
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--stripe-price {pair:?} is not PLAN=PRICE"))?;
            if plans.get(plan).is_none() {
                anyhow::bail!("--stripe-price names unknown plan {plan:?}");
            }
            map.insert(price.to_string(), plan.to_string());
        }
        Ok(map)
    }

    pub fn gitops_repo(&self) -> PathBuf {
        self.gitops_repo
            .clone()
            .unwrap_or_else(|| self.data_dir.join("gitops.git"))
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
        super::instance_url(&self.base_domain, customer_id)
    }

    /// Where to announce pushes, if SYNC_WEBHOOK_URL is set (an empty value counts as unset).
    pub fn sync_webhook(&self) -> Option<crate::poke::PokeTarget> {
        use secrecy::ExposeSecret;
        let url = self
            .cluster
            .sync_webhook_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())?;
        let non_empty = |s: &Option<String>| {
            s.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        Some(crate::poke::PokeTarget {
            url: url.to_string(),
            kind: self.cluster.sync_webhook_kind,
            secret: self
                .cluster
                .sync_webhook_secret
                .clone()
                .filter(|s| !s.expose_secret().is_empty()),
            repo_url: non_empty(&self.cluster.sync_webhook_repo_url)
                .or_else(|| non_empty(&self.gitops_remote)),
        })
    }
}
