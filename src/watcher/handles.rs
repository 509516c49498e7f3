//! What the watcher (sync events, the Kubernetes poller, the stall sweep) uses, built once by
//! the composition root (`app`).

use std::sync::Arc;

use super::pods::PodStore;
use crate::config::Config;
use crate::db::Db;
use crate::gitops::GitOps;

#[derive(Clone)]
pub struct WatcherHandles {
    pub db: Db,
    pub config: Arc<Config>,
    pub gitops: Arc<GitOps>,
    /// Tenant pods as the Kubernetes poller last listed them.
    pub pods: Arc<PodStore>,
}
