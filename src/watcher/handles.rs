//! What the watcher (sync events, the Kubernetes poller, the stall sweep) uses, built once by
//! the composition root (`app`).

use std::sync::Arc;

use super::pods::PodStore;
use crate::config::ClusterConfig;
use crate::db::Db;
use crate::gitops::GitOps;

#[derive(Clone)]
pub struct WatcherHandles {
    pub db: Db,
    /// Where sync events come from and how the poller and the stall sweep run.
    pub cluster: Arc<ClusterConfig>,
    /// The `From` of the instance-ready email.
    pub smtp_from: String,
    pub gitops: Arc<GitOps>,
    /// Tenant pods as the Kubernetes poller last listed them.
    pub pods: Arc<PodStore>,
    /// Opens each cluster's event secret (the per-cluster endpoints).
    pub event_key: Arc<crate::event_secret::EventKey>,
}
