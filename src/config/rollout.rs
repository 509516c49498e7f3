//! `ROLLOUT_POLICY`: what happens when the templates, the plan file or the render settings
//! differ from what tenants were last rendered with.

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RolloutPolicy {
    /// A rollout starts by itself: a canary of one tenant, then 10%, 50% and 100% of the
    /// tenants that change, each wave once the last is healthy; a failed wave is reverted.
    Waves,
    /// Nothing is committed until an operator runs `billing rollout start`; `rollout status`
    /// shows how many tenants are behind.
    Manual,
    /// Every tenant is re-rendered at once (the group commits of `POST /api/admin/tenants/redeploy`).
    AllAtOnce,
}

impl RolloutPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutPolicy::Waves => "waves",
            RolloutPolicy::Manual => "manual",
            RolloutPolicy::AllAtOnce => "all-at-once",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RolloutConfig {
    /// What a change of templates or plans does to existing tenants: `waves` (a health-gated
    /// rollout starts by itself, with auto-rollback), `manual` (wait for `billing rollout
    /// start`) or `all-at-once` (every tenant in one go). Signups and single customers' plan
    /// changes always use the current templates.
    #[arg(
        long,
        env = "ROLLOUT_POLICY",
        value_enum,
        default_value = "waves",
        global = true
    )]
    pub rollout_policy: RolloutPolicy,
}
