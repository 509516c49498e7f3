//! What review mode uses (the pool, the repository, the forge), built once by the composition
//! root (`app`).

use std::sync::Arc;

use super::Review;
use crate::db::Db;
use crate::gitops::GitOps;

#[derive(Clone)]
pub struct ReviewHandles {
    pub db: Db,
    /// The branch Flux or Argo CD syncs, which pull requests target.
    pub branch: String,
    pub gitops: Arc<GitOps>,
    /// For the forge's API.
    pub http: reqwest::Client,
    /// Which changes wait for review, and the forge of their pull requests.
    pub mode: Arc<Review>,
}
