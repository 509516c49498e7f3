//! The one way into the service's local GitOps repository. Local work (commits, reads,
//! ancestry) runs on the Git thread under the repository's lock; work against the remote
//! (fetch, push, ls-remote) runs on the network thread with a handle of its own on the same
//! directory, never under that lock, so a remote that stalls delays no commit, read or status
//! answer. Ref updates made there are compare-and-swaps. Also how Git is doing, for `/readyz`.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use serde::Serialize;

use super::{GitOpsError, GitOpsRepo, Remote};

/// What the GitOps side looks like from outside: shown by `/readyz` and the status endpoint.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
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
    /// Set while a fetch or push has been waiting on the remote for longer than
    /// [`STALLED_AFTER`] (it fails at `GITOPS_NETWORK_TIMEOUT_SECONDS`).
    pub network_stalled: Option<String>,
}

impl GitHealth {
    /// Why Git is not taking work, if it is not: the commit's failure first, then a stalled
    /// remote, then the last push's failure, then the fetch's.
    pub fn problem(&self) -> Option<&str> {
        self.commit_error
            .as_deref()
            .or(self.network_stalled.as_deref())
            .or(self.remote_error.as_deref())
            .or(self.fetch_error.as_deref())
    }
}

/// How long a fetch or push may wait on the remote before `/readyz` names it.
pub const STALLED_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// The network work under way: what, and since when.
type InFlight = Arc<Mutex<Option<(&'static str, Instant)>>>;

/// Opens the network thread's own handle on the repository.
type Opener = Arc<dyn Fn() -> Result<GitOpsRepo, GitOpsError> + Send + Sync>;

pub struct GitOps {
    repo: Arc<Mutex<GitOpsRepo>>,
    pub remote: Option<Remote>,
    health: RwLock<GitHealth>,
    opener: Opener,
    in_flight: InFlight,
}

impl GitOps {
    pub fn new(repo: GitOpsRepo, remote: Option<Remote>, health: GitHealth) -> Self {
        let opener = Arc::new(repo.opener());
        GitOps {
            repo: Arc::new(Mutex::new(repo)),
            remote,
            health: RwLock::new(health),
            opener,
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
                let mut repo = repo.lock().unwrap_or_else(PoisonError::into_inner);
                work(&mut repo)
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
        let opener = self.opener.clone();
        let in_flight = self.in_flight.clone();
        crate::pool::NET
            .run(move || {
                let _under_way = UnderWay::start(in_flight, what);
                work(&mut opener()?, &remote).map(Some)
            })
            .await
            .map_err(|e| E::from(GitOpsError::Task(e.to_string())))?
    }

    pub fn health(&self) -> GitHealth {
        let mut health = self.health.read().map(|h| h.clone()).unwrap_or_default();
        let under_way = *self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        health.network_stalled = under_way
            .map(|(what, since)| (what, since.elapsed()))
            .filter(|(_, waited)| *waited > STALLED_AFTER)
            .map(|(what, waited)| {
                format!(
                    "{what} of the GitOps remote has waited {} s for an answer",
                    waited.as_secs()
                )
            });
        health
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
