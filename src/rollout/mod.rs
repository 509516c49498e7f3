//! Template rollouts: a change of templates, plan file or render settings reaches the tenants
//! whose files it changes in waves (a canary, then growing shares), each wave one commit with
//! `Rollout-Id:` and `Rollout-Wave:` trailers. The next wave is committed only once the watcher
//! has reported every tenant of the last one ready at (a descendant of) its revision; a failed
//! or stalled tenant pauses the rollout, or with auto-rollback reverts its wave.
//!
//! The state lives in the database (`db::rollouts`); the server's supervised worker
//! ([`run`]) drives it; the CLI (and later the admin page and HTTP) call [`start`],
//! [`status`], [`resume`] and [`abort`], which take only the handles they use.

mod commit;
mod control;
mod diff;
mod driver;
mod health;
mod order;
mod plan;
mod policy;
mod render;
mod revert;
mod review;
mod view;
mod wave;
mod waves;

pub use control::{abort, resume, start, status, StartOptions, Started};
pub use driver::{run, tick};
pub use order::Order;
pub use plan::{FileCount, Plan, Skipped};
pub use view::{RolloutView, StatusReport, TenantNote, WaveReviewView, WaveView};
pub use waves::WavePlan;

use crate::config::rollout::RolloutPolicy;
use crate::db::Db;
use crate::gitops::{GitOps, GitOpsError};
use crate::plans::Catalogue;
use crate::render::{RenderSettings, Renderer};

/// What the rollout workflow uses: the database, the repository, what renders tenants and the
/// policy. Borrowed from whoever composed them (the server, a CLI command).
#[derive(Clone)]
pub struct Handles<'a> {
    pub db: &'a Db,
    pub gitops: &'a GitOps,
    pub renderer: &'a Renderer,
    pub plans: &'a Catalogue,
    pub render_settings: &'a RenderSettings,
    pub policy: RolloutPolicy,
    /// Review mode's parts (the forge, the branch pull requests target) when template changes
    /// wait for review: each wave is then one pull request.
    pub review: Option<&'a crate::review::ReviewHandles>,
    /// This process's name on the rollouts' lease.
    pub worker_id: &'a str,
    /// Seals the backup credential into tenants that lack it, as the deploy worker does.
    pub backup: crate::deploy::BackupSealing<'a>,
    /// Who to tell that the branch moved (`SYNC_WEBHOOK_URL`), so the cluster syncs a wave now.
    pub poke: Option<Poke<'a>>,
}

/// The sync webhook poked after each rollout commit is pushed.
#[derive(Clone)]
pub struct Poke<'a> {
    pub http: &'a reqwest::Client,
    pub target: crate::poke::PokeTarget,
    pub branch: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("no rollout {0}")]
    NotFound(String),
    #[error("rollout {id} is {status}: {what}")]
    WrongState {
        id: String,
        status: String,
        what: &'static str,
    },
    #[error("invalid --waves {0}")]
    BadWaves(String),
    #[error("invalid --order: {0}")]
    BadOrder(String),
    #[error(
        "rollout {0} was planned with other templates than this process has (TEMPLATES_DIR, \
         PLANS_FILE, BASE_DOMAIN); abort it and start a new one"
    )]
    OtherTemplates(String),
    #[error("{0}")]
    Render(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Git(#[from] GitOpsError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The digest of everything a tenant's files are rendered from besides its own data: the
/// templates, what the plans give the templates, and the render settings. A rollout renders
/// one digest; the policy acts once per digest.
pub fn templates_digest(h: &Handles<'_>) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(h.renderer.fingerprint());
    for (name, plan) in &h.plans.plans {
        let rendered = serde_json::json!([name, plan.display_name, plan.resources]);
        hasher.update(rendered.to_string());
    }
    hasher.update(serde_json::to_vec(h.render_settings).unwrap_or_default());
    hex::encode(hasher.finalize())
}

/// The short form of a digest or revision shown to people.
pub(crate) fn short(text: &str) -> &str {
    &text[..text.len().min(12)]
}
