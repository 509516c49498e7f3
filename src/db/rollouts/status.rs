//! The typed statuses of rollouts, waves and their tenants: stored as their `as_str`, read
//! with `parse`; no query spells them itself.

/// A status column's typed values: `as_str` for binding, `parse` for reading.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vdoc])* $variant),* }

        impl $name {
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)* _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Where a rollout is.
    RolloutStatus {
        /// The worker commits its waves, each after the last is healthy.
        Running = "running",
        /// Stopped by a failed or stalled tenant (or by hand); `rollout resume` goes on.
        Paused = "paused",
        /// The worker is reverting its committed waves (`abort --rollback`, auto-rollback).
        RollingBack = "rolling_back",
        Completed = "completed",
        /// Stopped for good; what was committed stays.
        Aborted = "aborted",
        /// Stopped for good; its failed wave (or every wave) was reverted.
        RolledBack = "rolled_back",
    }
);

impl RolloutStatus {
    /// Running, paused or rolling back: at most one rollout is.
    pub const ACTIVE: [RolloutStatus; 3] = [Self::Running, Self::Paused, Self::RollingBack];
}

text_enum!(
    /// Where one wave is.
    WaveStatus {
        Pending = "pending",
        /// Its commit is being made (found again by its trailers after a crash).
        Committing = "committing",
        /// Review mode: committed on its own branch, its pull request waiting for a merge.
        InReview = "in_review",
        /// Committed: waiting for the cluster to report every tenant ready.
        Waiting = "waiting",
        Passed = "passed",
        RolledBack = "rolled_back",
    }
);

text_enum!(
    /// What became of one tenant of a rollout.
    TenantStatus {
        Pending = "pending",
        /// In its wave's commit, not reported ready yet.
        Committed = "committed",
        Ready = "ready",
        /// Reported failed or stalled at the wave's revision (`note` says why).
        Failed = "failed",
        /// Left out: drifted, an open review, a queued change, deleted (`note` says which).
        Skipped = "skipped",
        /// Its files already were what the wave would write.
        Unchanged = "unchanged",
        /// Its wave was reverted: held at its previous files until a later rollout.
        RolledBack = "rolled_back",
    }
);

text_enum!(
    /// Where the pull request of a wave (review mode) is.
    WaveReviewState {
        /// Its branch is pushed, waiting for a person to merge it.
        Open = "open",
        /// Main took it in: the wave waits for the cluster.
        Merged = "merged",
        /// Closed unmerged by a person: the rollout paused.
        Closed = "closed",
        /// The rollout was aborted: the worker closes the pull request and deletes its branch.
        Closing = "closing",
        /// Closed by the service after an abort.
        Withdrawn = "withdrawn",
    }
);
