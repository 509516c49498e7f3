//! The one state machine of a tenant's deployment, used by the outbox worker (and the watcher):
//! pending -> committed -> ready, or failed / stalled, or deleted; drifted when Git holds a
//! tenant the service did not render (a person's revert or edit, or a rollback); in review mode
//! awaiting_review, and abandoned when a tenant's only proposal was closed unmerged.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentStatus {
    /// Accepted; its stack is not in Git yet.
    Pending,
    /// Its stack is committed (and pushed, when a remote is configured).
    Committed,
    /// The cluster reports it synced and healthy at (a descendant of) the committed revision.
    Ready,
    /// Rendering failed past the retry budget, or the cluster reported a failure.
    Failed,
    /// Committed, but no success reported in time.
    Stalled,
    /// Removed from Git.
    Deleted,
    /// Main holds a version of the stack the service did not render from the database (a
    /// person's commit, or a rollback). Nothing but a forced deploy or a deletion overwrites it.
    Drifted,
    /// The change is on its own branch (`tenant/<id>/<change-id>`), waiting for a person to
    /// merge it into main (review mode).
    AwaitingReview,
    /// The tenant's proposal was closed unmerged and nothing of it is on main: nothing is
    /// deployed until a new change is proposed and merged (review mode).
    Abandoned,
    /// Signed up while no cluster of its region has room: its stack waits, held out of Git,
    /// until a cluster is found (`cluster add`, `uncordon`, a tenant leaving).
    Unplaced,
}

/// What happened to a tenant's deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A change was queued (signup, redeploy, deletion).
    Queued,
    /// The stack was committed.
    Committed,
    /// The worker finished a job whose tree was already at the tenant's committed revision (a
    /// no-op redeploy, a retried job): nothing new reaches the cluster, so a ready, failed or
    /// stalled tenant keeps its status (and a committed one its stall clock).
    CommittedUnchanged,
    /// The removal was committed.
    Removed,
    /// Rendering or committing gave up.
    GaveUp,
    /// The cluster reports the tenant synced and healthy at (a descendant of) its commit.
    Synced,
    /// The cluster reports a failure on a revision that contains the tenant's commit.
    SyncFailed,
    /// No success was reported within the stall timeout after the commit.
    TimedOut,
    /// A commit the service did not make changed the tenant on main, or a rollback was
    /// committed.
    Drifted,
    /// The change was committed on a review branch instead of main.
    Proposed,
    /// The review was closed unmerged (or its branch deleted): main keeps what it had.
    ReviewClosed,
    /// Likewise, for a tenant of which main has nothing (its signup's review was closed).
    ReviewClosedNothingOnMain,
    /// A cluster was found for an unplaced tenant: its held change goes to Git.
    Placed,
}

impl DeploymentStatus {
    pub const ALL: [DeploymentStatus; 10] = [
        Self::Pending,
        Self::Committed,
        Self::Ready,
        Self::Failed,
        Self::Stalled,
        Self::Deleted,
        Self::Drifted,
        Self::AwaitingReview,
        Self::Abandoned,
        Self::Unplaced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Committed => "committed",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Stalled => "stalled",
            Self::Deleted => "deleted",
            Self::Drifted => "drifted",
            Self::AwaitingReview => "awaiting_review",
            Self::Abandoned => "abandoned",
            Self::Unplaced => "unplaced",
        }
    }

    /// The status in the old service's vocabulary, which its admin dashboard reads as
    /// `customer.deploymentStatus`: pending → `pending`, committed (in Git, the cluster has not
    /// reported it ready yet) → `deploying`, ready → `deployed`, failed and stalled → `failed`
    /// (stalled carries its timeout as the error), deleted → `deleted`; drifted (running what
    /// Git holds, by hand) → `deployed`; awaiting review → `deploying`; abandoned (nothing
    /// deployed, its proposal closed) → `failed`, with the closing as its error; unplaced
    /// (waiting for a cluster with room) → `pending`.
    pub fn legacy_name(self) -> &'static str {
        match self {
            Self::Pending | Self::Unplaced => "pending",
            Self::Committed | Self::AwaitingReview => "deploying",
            Self::Ready | Self::Drifted => "deployed",
            Self::Failed | Self::Stalled | Self::Abandoned => "failed",
            Self::Deleted => "deleted",
        }
    }

    /// The next status, or None when the event does not apply in this status (e.g. a late
    /// sync report for a deleted tenant): callers then leave the status alone.
    pub fn on(self, event: Event) -> Option<Self> {
        use DeploymentStatus::*;
        match (self, event) {
            (Deleted, Event::Queued) => Some(Pending),
            (Deleted, Event::Removed) => Some(Deleted),
            (Deleted, _) => None,
            (Unplaced, Event::Placed) => Some(Pending),
            (_, Event::Placed) => None,
            // Nothing of it is in Git: only a removal (its deletion) moves it.
            (Unplaced, Event::Removed) => Some(Deleted),
            (Unplaced, _) => None,
            (_, Event::Drifted) => Some(Drifted),
            (_, Event::Proposed) => Some(AwaitingReview),
            (AwaitingReview, Event::ReviewClosed) => Some(Committed),
            (AwaitingReview, Event::ReviewClosedNothingOnMain) => Some(Abandoned),
            (_, Event::ReviewClosed | Event::ReviewClosedNothingOnMain) => None,
            // What runs is main's version until the review is merged.
            (AwaitingReview, Event::Synced | Event::SyncFailed | Event::TimedOut) => None,
            (_, Event::Queued) => Some(self),
            // Only a forced deploy commits for a drifted tenant: it takes over again.
            (Drifted, Event::CommittedUnchanged) => Some(Committed),
            (_, Event::Committed) => Some(Committed),
            (Pending, Event::CommittedUnchanged) => Some(Committed),
            (_, Event::CommittedUnchanged) => Some(self),
            (_, Event::Removed) => Some(Deleted),
            (Pending, Event::GaveUp) => Some(Failed),
            (_, Event::GaveUp) => Some(self),
            (Committed | Stalled | Failed | Ready, Event::Synced) => Some(Ready),
            (Committed | Stalled | Ready, Event::SyncFailed) => Some(Failed),
            (Committed, Event::TimedOut) => Some(Stalled),
            _ => None,
        }
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeploymentStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        DeploymentStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown deployment status {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::DeploymentStatus::*;
    use super::*;

    #[test]
    fn the_happy_path_and_its_detours() {
        assert_eq!(Pending.on(Event::Committed), Some(Committed));
        assert_eq!(Committed.on(Event::Synced), Some(Ready));
        assert_eq!(Committed.on(Event::TimedOut), Some(Stalled));
        assert_eq!(Stalled.on(Event::Synced), Some(Ready));
        assert_eq!(Pending.on(Event::GaveUp), Some(Failed));
        assert_eq!(
            Committed.on(Event::GaveUp),
            Some(Committed),
            "a failed redeploy keeps what runs"
        );
        assert_eq!(Ready.on(Event::Removed), Some(Deleted));
        assert_eq!(
            Deleted.on(Event::Synced),
            None,
            "late reports do not resurrect a deleted tenant"
        );
        assert_eq!(
            Pending.on(Event::Synced),
            None,
            "nothing can be synced before it is committed"
        );
        assert_eq!(Ready.on(Event::TimedOut), None);
        assert_eq!(
            Ready.on(Event::CommittedUnchanged),
            Some(Ready),
            "a no-op redeploy does not send a ready tenant back to waiting"
        );
        assert_eq!(Pending.on(Event::CommittedUnchanged), Some(Committed));
        assert_eq!(Deleted.on(Event::CommittedUnchanged), None);
        assert_eq!(Failed.on(Event::SyncFailed), None);
    }

    #[test]
    fn a_drifted_tenant_stays_so_until_a_forced_deploy_or_deletion() {
        for s in [Committed, Ready, Stalled, Failed, Pending] {
            assert_eq!(s.on(Event::Drifted), Some(Drifted));
        }
        assert_eq!(Deleted.on(Event::Drifted), None);
        assert_eq!(Drifted.on(Event::Queued), Some(Drifted));
        assert_eq!(
            Drifted.on(Event::Synced),
            None,
            "the cluster running the hand edit does not make it ours"
        );
        assert_eq!(Drifted.on(Event::TimedOut), None);
        assert_eq!(Drifted.on(Event::Committed), Some(Committed));
        assert_eq!(Drifted.on(Event::CommittedUnchanged), Some(Committed));
        assert_eq!(Drifted.on(Event::Removed), Some(Deleted));
    }

    #[test]
    fn a_review_waits_for_its_merge_or_its_closing() {
        assert_eq!(Ready.on(Event::Proposed), Some(AwaitingReview));
        assert_eq!(AwaitingReview.on(Event::Proposed), Some(AwaitingReview));
        assert_eq!(AwaitingReview.on(Event::Synced), None);
        assert_eq!(AwaitingReview.on(Event::Committed), Some(Committed));
        assert_eq!(AwaitingReview.on(Event::ReviewClosed), Some(Committed));
        assert_eq!(Ready.on(Event::ReviewClosed), None);
        assert_eq!(Deleted.on(Event::Proposed), None);
        assert_eq!(
            AwaitingReview.on(Event::ReviewClosedNothingOnMain),
            Some(Abandoned),
            "a signup closed unmerged has nothing deployed"
        );
        assert_eq!(Abandoned.on(Event::Synced), None, "nothing of it runs");
        assert_eq!(Abandoned.on(Event::Queued), Some(Abandoned));
        assert_eq!(Abandoned.on(Event::Proposed), Some(AwaitingReview));
        assert_eq!(Abandoned.on(Event::Committed), Some(Committed));
        assert_eq!(Abandoned.on(Event::Removed), Some(Deleted));
    }

    #[test]
    fn an_unplaced_tenant_waits_for_its_cluster() {
        assert_eq!(Unplaced.on(Event::Placed), Some(Pending));
        assert_eq!(Unplaced.on(Event::Queued), None, "still waiting");
        assert_eq!(Unplaced.on(Event::Synced), None);
        assert_eq!(Unplaced.on(Event::Removed), Some(Deleted));
        assert_eq!(Ready.on(Event::Placed), None);
    }

    #[test]
    fn parses_what_it_prints() {
        for s in DeploymentStatus::ALL {
            assert_eq!(s.as_str().parse::<DeploymentStatus>().unwrap(), s);
        }
        assert!("bogus".parse::<DeploymentStatus>().is_err());
    }

    #[test]
    fn the_old_dashboard_vocabulary() {
        let legacy: Vec<&str> = DeploymentStatus::ALL
            .into_iter()
            .map(DeploymentStatus::legacy_name)
            .collect();
        assert_eq!(
            legacy,
            [
                "pending",
                "deploying",
                "deployed",
                "failed",
                "failed",
                "deleted",
                "deployed",
                "deploying",
                "failed",
                "pending"
            ]
        );
    }
}
