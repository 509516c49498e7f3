//! What Git says about a reported revision: does this repository know it, does it contain the
//! tenant's committed revision, does it contain the revision last reported applied. Checked in
//! the local GitOps repository (on the Git thread, under the repository's lock). A revision
//! the repository has not seen yet is fetched (from the network thread, not under that lock)
//! when a remote is configured (another replica, or a commit made elsewhere); still unknown,
//! it contains nothing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use git2::Oid;

use crate::db::deployments::WatchRow;
use crate::gitops::{GitOpsError, GitOpsRepo};
use crate::watcher::WatcherHandles;

/// Facts about one reported commit, relative to one tenant's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The reported commit, lowercase hex.
    pub commit: String,
    /// This repository has the commit.
    pub known: bool,
    /// It is the tenant's committed revision or a descendant of it.
    pub contains_commit: bool,
    /// It is the last applied revision or a descendant (true when nothing was applied yet).
    pub contains_applied: bool,
}

/// Fetches for unknown revisions at most this often: a burst of reports about a revision the
/// remote does not have either must not turn into a burst of fetches.
const FETCH_EVERY: Duration = Duration::from_secs(5);

static LAST_FETCH: Mutex<Option<Instant>> = Mutex::new(None);

fn fetch_allowed() -> bool {
    let Ok(mut last) = LAST_FETCH.lock() else {
        return false;
    };
    match *last {
        Some(at) if at.elapsed() < FETCH_EVERY => false,
        _ => {
            *last = Some(Instant::now());
            true
        }
    }
}

pub async fn facts(
    handles: &WatcherHandles,
    commit: &str,
    row: &WatchRow,
) -> anyhow::Result<Facts> {
    let commit = commit.to_string();
    let committed = row.committed_revision.clone();
    let applied = row.applied_revision.clone();
    let revisions: Vec<String> = [Some(commit.clone()), committed.clone(), applied.clone()]
        .into_iter()
        .flatten()
        .collect();
    let missing = handles
        .gitops
        .run(move |repo| {
            let missing = revisions.iter().any(|rev| !has_commit(repo, rev));
            Ok::<_, GitOpsError>(missing)
        })
        .await?;
    if missing && handles.gitops.remote.is_some() && fetch_allowed() {
        // On the network thread, not under the repository's lock.
        if let Err(err) = handles
            .gitops
            .with_remote("fetch", |repo, remote| repo.fetch(remote))
            .await
        {
            tracing::warn!(error = %err, "fetching an unknown reported revision failed");
        }
    }
    handles
        .gitops
        .run(move |repo| judge(repo, &commit, committed.as_deref(), applied.as_deref()))
        .await
}

fn oid(hex: &str) -> Option<Oid> {
    Oid::from_str(hex).ok()
}

fn has_commit(repo: &GitOpsRepo, hex: &str) -> bool {
    oid(hex).is_some_and(|o| repo.repository().find_commit(o).is_ok())
}

/// The facts for `reported` against the tenant's `committed` and `applied` revisions.
pub fn judge(
    repo: &GitOpsRepo,
    reported: &str,
    committed: Option<&str>,
    applied: Option<&str>,
) -> anyhow::Result<Facts> {
    let known = has_commit(repo, reported);
    let contains = |ancestor: &str| -> anyhow::Result<bool> {
        match (oid(reported), oid(ancestor)) {
            (Some(d), Some(a)) if known && has_commit(repo, ancestor) => Ok(repo.contains(d, a)?),
            _ => Ok(false),
        }
    };
    Ok(Facts {
        commit: reported.to_string(),
        known,
        contains_commit: match committed {
            Some(c) => contains(c)?,
            None => false,
        },
        contains_applied: match applied {
            Some(a) => contains(a)?,
            None => true,
        },
    })
}
