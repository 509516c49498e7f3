//! What the deploy worker, the drift scan and the deploy requests use, built once by the
//! composition root (`app`).

use std::sync::Arc;

use tokio::sync::Notify;

use crate::db::Db;
use crate::gitops::GitOps;
use crate::metrics::Metrics;
use crate::plans::Catalogue;
use crate::poke::PokeTarget;
use crate::render::{RenderSettings, Renderer};
use crate::review::ReviewHandles;
use crate::watcher::pods::PodStore;

#[derive(Clone)]
pub struct DeployHandles {
    pub db: Db,
    pub settings: Arc<DeploySettings>,
    pub gitops: Arc<GitOps>,
    pub plans: Arc<Catalogue>,
    pub renderer: Arc<Renderer>,
    pub render_settings: Arc<RenderSettings>,
    pub metrics: Arc<Metrics>,
    /// Woken when a job is queued, so the worker need not wait for its next poll.
    pub worker_wake: Arc<Notify>,
    /// Woken after a push, so the drift scan looks at the remote at once.
    pub scan_wake: Arc<Notify>,
    /// This process's name on the job leases.
    pub worker_id: String,
    /// For the sync webhook poke.
    pub http: reqwest::Client,
    /// Tenant pods as the Kubernetes poller last listed them.
    pub pods: Arc<PodStore>,
    /// Review mode: proposals, merges, pull requests.
    pub review: ReviewHandles,
    /// Seals values a tenant lacks at render time (the backup uploader's credential).
    pub sealing: crate::seal::SealingKey,
}

/// The settings the deploy worker and the drift scan read.
pub struct DeploySettings {
    /// The branch Flux or Argo CD syncs.
    pub gitops_branch: String,
    pub gitops_batch_max: i64,
    pub gitops_lease_seconds: i64,
    pub gitops_max_attempts: i64,
    pub gitops_fetch_interval_seconds: u64,
    /// The Flux Receiver or Argo CD webhook poked after each push.
    pub sync_webhook: Option<PokeTarget>,
    /// Off-cluster backups: the uploader credential each tenant's Secret must hold.
    pub backup: crate::config::BackupConfig,
}
