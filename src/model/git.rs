//! How the GitOps side looks from outside, for `/readyz` and the status endpoint: what the
//! service last saw of its commits, pushes and fetches. Service policy, not Git: the Git
//! handle only keeps it and says which network work is under way.

use std::time::Duration;

use serde::Serialize;

/// How long a fetch or push may wait on the remote before `/readyz` names it.
pub const STALLED_AFTER: Duration = Duration::from_secs(5);

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

    /// Sets `network_stalled` from the network work under way (what, and how long it has
    /// waited), once it has waited longer than [`STALLED_AFTER`].
    pub fn with_network_wait(mut self, under_way: Option<(&str, Duration)>) -> Self {
        self.network_stalled =
            under_way
                .filter(|(_, waited)| *waited > STALLED_AFTER)
                .map(|(what, waited)| {
                    let secs = waited.as_secs();
                    format!("{what} of the GitOps remote has waited {secs} s for an answer")
                });
        self
    }
}
