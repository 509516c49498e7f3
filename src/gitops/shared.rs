//! The one way into the service's local GitOps repository. Local work (commits, reads,
//! ancestry) runs on the Git thread under the repository's lock; work against the remote
//! (fetch, push, ls-remote) runs on the network thread with a handle of its own on the same
//! directory, never under that lock, so a remote that stalls delays no commit, read or status
//! answer. Ref updates made there are compare-and-swaps.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use super::{GitOpsError, GitOpsRepo, Remote};
use crate::model::git::GitHealth;

/// The network work under way: what, and since when.
type InFlight = Arc<Mutex<Option<(&'static str, Instant)>>>;

pub struct GitOps {
    repo: Arc<Mutex<GitOpsRepo>>,
    pub remote: Option<Remote>,
    health: RwLock<GitHealth>,
    /// Opens the network thread's own handle on the repository.
    opener: Arc<dyn Fn() -> Result<GitOpsRepo, GitOpsError> + Send + Sync>,
    in_flight: InFlight,
}

impl GitOps {
    pub fn new(repo: GitOpsRepo, remote: Option<Remote>, health: GitHealth) -> Self {
        GitOps {
            opener: Arc::new(repo.opener()),
            repo: Arc::new(Mutex::new(repo)),
            remote,
            health: RwLock::new(health),
            in_flight: InFlight::default(),
        }
    }

    /// Runs `work` with the repository, on the Git thread, under its lock.
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<GitOpsError> + Send + 'static,
        F: FnOnce(&mut GitOpsRepo) -> Result<T, E> + Send + 'static,
    {
        let repo = self.repo.clone();
        crate::pool::GIT
            .run(move || {
                // A panic in an earlier job leaves nothing half-done that matters here: what
                // is on disk is transactional, and the handle holds no other state of note.
                work(&mut repo.lock().unwrap_or_else(PoisonError::into_inner))
            })
            .await
            .map_err(|e| E::from(GitOpsError::Task(e.to_string())))?
    }

    /// Runs `work` (a `what`: "push", "fetch") against the remote on the network thread, with a
    /// handle of its own on the repository's directory and not under its lock. None without a
    /// remote.
    pub async fn with_remote<T, E, F>(&self, what: &'static str, work: F) -> Result<Option<T>, E>
    where
        T: Send + 'static,
        E: From<GitOpsError> + Send + 'static,
        F: FnOnce(&mut GitOpsRepo, &Remote) -> Result<T, E> + Send + 'static,
    {
        let Some(remote) = self.remote.clone() else {
            return Ok(None);
        };
        let (opener, in_flight) = (self.opener.clone(), self.in_flight.clone());
        crate::pool::NET
            .run(move || {
                let _under_way = UnderWay::start(in_flight, what);
                work(&mut opener()?, &remote).map(Some)
            })
            .await
            .map_err(|e| E::from(GitOpsError::Task(e.to_string())))?
    }

    /// The health as last set, with the network work under way and how long it has waited.
    pub fn health(&self) -> GitHealth {
        let health = self.health.read().map(|h| h.clone()).unwrap_or_default();
        let under_way = *self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        health.with_network_wait(under_way.map(|(what, since)| (what, since.elapsed())))
    }

    pub fn set_health(&self, update: impl FnOnce(&mut GitHealth)) {
        if let Ok(mut h) = self.health.write() {
            update(&mut h);
        }
    }
}

/// Marks network work under way for as long as it lives.
struct UnderWay(InFlight);

impl UnderWay {
    fn start(slot: InFlight, what: &'static str) -> Self {
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some((what, Instant::now()));
        UnderWay(slot)
    }
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}
