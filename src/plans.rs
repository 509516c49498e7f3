//! The plan catalogue, loaded from the plans data file (`plans.yaml`), never hard-coded.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// The catalogue shipped with the binary; `PLANS_FILE` replaces it.
const BUILTIN_PLANS: &str = include_str!("../plans.yaml");

/// Feature flags of a plan, serialised with the claim names license verifiers read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Features {
    pub max_devices: i64,
    pub can_execute_jobs: bool,
    pub can_schedule_jobs: bool,
    pub can_remote_access: bool,
    pub can_ota_updates: bool,
    pub can_export_data: bool,
    pub has_advanced_alerts: bool,
    pub has_custom_dashboards: bool,
    pub has_dedicated_prometheus: bool,
    pub has_dedicated_grafana: bool,
    pub prometheus_retention_days: i64,
    pub prometheus_storage_gb: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    pub max_job_templates: i64,
    pub max_alert_rules: i64,
    pub max_users: i64,
}

/// What a tenant's Kubernetes stack gets on this plan (quantities in Kubernetes notation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub quota_cpu: String,
    pub quota_memory: String,
    pub quota_storage: String,
    pub quota_pods: i64,
    pub postgres_storage: String,
    pub backup_storage: String,
    pub api_replicas: i64,
    pub dashboard_replicas: i64,
    /// Days an off-cluster backup is kept (the newest always is); default 30. Left out of the
    /// render inputs when unset, so plans without it render as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_retention_days: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub display_name: String,
    pub features: Features,
    pub limits: Limits,
    pub resources: Resources,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    pub trial_days: i64,
    pub default_plan: String,
    pub plans: BTreeMap<String, Plan>,
}

impl Catalogue {
    pub fn builtin() -> anyhow::Result<Self> {
        Self::parse(BUILTIN_PLANS).context("built-in plans.yaml")
    }

    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        match path {
            None => Self::builtin(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading plans file {}", path.display()))?;
                Self::parse(&text).with_context(|| format!("plans file {}", path.display()))
            }
        }
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let catalogue: Catalogue = serde_norway::from_str(text)?;
        if !catalogue.plans.contains_key(&catalogue.default_plan) {
            bail!(
                "default_plan {:?} is not among the plans",
                catalogue.default_plan
            );
        }
        if !(1..=365).contains(&catalogue.trial_days) {
            bail!("trial_days must be between 1 and 365");
        }
        Ok(catalogue)
    }

    pub fn get(&self, name: &str) -> Option<&Plan> {
        self.plans.get(name)
    }

    pub fn default_plan(&self) -> (&str, &Plan) {
        let plan = &self.plans[&self.default_plan];
        (&self.default_plan, plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_matches_the_contract() {
        let c = Catalogue::builtin().unwrap();
        assert_eq!(c.trial_days, 14);
        let (name, starter) = c.default_plan();
        assert_eq!(name, "starter");
        assert_eq!(starter.features.max_devices, 5);
        assert!(!starter.features.can_schedule_jobs);
        let pro = c.get("professional").unwrap();
        assert_eq!(
            (pro.limits.max_job_templates, pro.limits.max_users),
            (100, 10)
        );
        let ent = c.get("enterprise").unwrap();
        assert_eq!(ent.features.max_devices, -1);
        assert!(ent.features.has_dedicated_grafana);
        assert_eq!(ent.features.prometheus_storage_gb, 50);
    }

    #[test]
    fn features_serialise_with_license_claim_names() {
        let c = Catalogue::builtin().unwrap();
        let json = serde_json::to_value(&c.get("starter").unwrap().features).unwrap();
        assert_eq!(json["maxDevices"], 5);
        assert_eq!(json["hasDedicatedPrometheus"], false);
        assert_eq!(json["prometheusRetentionDays"], 7);
    }

    #[test]
    fn rejects_unknown_default_plan() {
        let err = Catalogue::parse("trial_days: 14\ndefault_plan: gold\nplans: {}\n").unwrap_err();
        assert!(err.to_string().contains("gold"));
    }
}
