//! The service's one local GitOps repository as the worker, the handlers and the watcher share
//! it: the repository behind a lock (libgit2 handles are not shared between threads), the
//! remote it pushes to, and how Git is doing, for `/readyz` and the status view.

use std::sync::{Mutex, RwLock};

use serde::Serialize;

use super::{GitOpsRepo, Remote};

/// What the GitOps side looks like from outside: shown by `/readyz` and the status endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GitHealth {
    pub remote_configured: bool,
    pub last_commit: Option<String>,
    pub last_push_at: Option<String>,
    /// Set while the last push (of main or of a review branch) failed: the remote is
    /// unreachable, refuses us or diverged.
    pub remote_error: Option<String>,
    /// Set while the last fetch from the remote (at start-up, then every fetch interval)
    /// failed: merges, closed reviews and drift are not seen until it clears.
    pub fetch_error: Option<String>,
    /// Set while the last commit failed (a full disk, an unwritable repository): nothing
    /// reaches Git until it clears.
    pub commit_error: Option<String>,
}

impl GitHealth {
    /// Why Git is not taking work, if it is not: the commit's failure first, then the push's,
    /// then the fetch's.
    pub fn problem(&self) -> Option<&str> {
        self.commit_error
            .as_deref()
            .or(self.remote_error.as_deref())
            .or(self.fetch_error.as_deref())
    }
}

pub struct SharedRepo {
    pub repo: Mutex<GitOpsRepo>,
    pub remote: Option<Remote>,
    health: RwLock<GitHealth>,
}

impl SharedRepo {
    pub fn new(repo: GitOpsRepo, remote: Option<Remote>, health: GitHealth) -> Self {
        SharedRepo {
            repo: Mutex::new(repo),
            remote,
            health: RwLock::new(health),
        }
    }

    pub fn health(&self) -> GitHealth {
        self.health.read().map(|h| h.clone()).unwrap_or_default()
    }

    pub fn set_health(&self, update: impl FnOnce(&mut GitHealth)) {
        if let Ok(mut h) = self.health.write() {
            update(&mut h);
        }
    }
}
