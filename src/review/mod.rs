//! Review mode: tenant changes proposed on their own branch (`tenant/<id>/<change-id>`) and
//! merged by people. The worker proposes (`deploy::propose`); after each fetch `merge` finds
//! what reached main (merge commit, squash, rebase or cherry-pick, by ancestry or by the
//! `Change-Id` in the message) and what was closed unmerged. `forge` opens the pull requests.

mod config;
pub mod content;
pub mod forge;
mod handles;
pub mod merge;

pub use config::{ChangeKind, CommitMode, Policy, ReviewConfig};
pub use handles::ReviewHandles;

use std::collections::HashSet;
use std::sync::Mutex;

use chrono::Utc;

use crate::db::{self, reviews};

/// Review mode's parts the service holds.
pub struct Review {
    pub policy: Policy,
    pub forge: Option<forge::Forge>,
    /// Changes whose pull request this process is opening: the proposal and the fetch loop's
    /// settling may both find one without a number at the same moment, and only one may open
    /// it (a second request would be a duplicate pull request).
    opening: Mutex<HashSet<String>>,
}

impl Review {
    pub fn from_config(config: &ReviewConfig) -> anyhow::Result<Self> {
        Ok(Review {
            policy: config.policy()?,
            forge: config.forge()?,
            opening: Mutex::default(),
        })
    }
}

/// A change's place in [`Review::opening`], given back when dropped.
struct Opening<'a> {
    set: &'a Mutex<HashSet<String>>,
    change_id: String,
}

impl<'a> Opening<'a> {
    /// None when another task of this process is opening the change's pull request now.
    fn claim(set: &'a Mutex<HashSet<String>>, change_id: &str) -> Option<Self> {
        let mut held = set.lock().unwrap_or_else(|e| e.into_inner());
        held.insert(change_id.to_string()).then(|| Opening {
            set,
            change_id: change_id.to_string(),
        })
    }
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        let mut held = self.set.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(&self.change_id);
    }
}

/// The branch a change of a tenant is proposed on.
pub fn branch_name(customer_id: &str, change_id: &str) -> String {
    format!("tenant/{customer_id}/{change_id}")
}

/// Closes the tenant's open review, if any, because a newer change replaces it: its pull
/// request is closed and its branch deleted (best effort, logged).
pub async fn supersede(handles: &ReviewHandles, customer_id: &str) -> anyhow::Result<()> {
    let Some(old) = reviews::open_of(&handles.db.pool, customer_id).await? else {
        return Ok(());
    };
    let now = db::ts(Utc::now());
    if reviews::close(
        &handles.db.pool,
        &old.change_id,
        reviews::ReviewState::Superseded,
        None,
        &now,
    )
    .await?
    {
        tracing::info!(%customer_id, branch = %old.branch, "review superseded by a newer change");
        retire(handles, &old, true).await;
    }
    Ok(())
}

/// Deletes a finished review's branch, and closes its pull request when `close_request` (a
/// superseded one; a merged or closed one is done on the forge already).
pub(crate) async fn retire(handles: &ReviewHandles, review: &reviews::Review, close_request: bool) {
    let forge = handles.mode.forge.as_ref().filter(|_| close_request);
    if let (Some(forge), Some(number)) = (forge, review.forge_number) {
        if let Err(e) = forge.close(&handles.http, number).await {
            tracing::warn!(error = %e, branch = %review.branch, "closing the pull request failed");
        }
    }
    let branch = review.branch.clone();
    let deleted = match handles.gitops.remote {
        // Here and there, from the network thread.
        Some(_) => handles
            .gitops
            .with_remote("branch deletion", move |repo, remote| {
                repo.delete_branch(Some(remote), &branch)
            })
            .await
            .map(|_| ()),
        None => {
            handles
                .gitops
                .run(move |repo| repo.delete_branch(None, &branch))
                .await
        }
    };
    if let Err(e) = deleted {
        tracing::warn!(error = %format!("{e:#}"), branch = %review.branch, "deleting the review branch failed");
    }
}

/// Opens the review's pull request when a forge is configured and none is recorded.
pub(crate) async fn open_request(handles: &ReviewHandles, review: &reviews::Review) {
    let Some(forge) = &handles.mode.forge else {
        return;
    };
    if review.forge_number.is_some() {
        return;
    }
    let Some(_opening) = Opening::claim(&handles.mode.opening, &review.change_id) else {
        return;
    };
    // The other opener may have recorded its number since `review` was read.
    match reviews::open_of(&handles.db.pool, &review.customer_id).await {
        Ok(Some(now)) if now.change_id == review.change_id && now.forge_number.is_none() => {}
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(error = %e, "reading the review before opening its pull request failed");
            return;
        }
    }
    let proposal = forge::Proposal {
        branch: &review.branch,
        base: &handles.branch,
        title: &review.title,
        body: &review.body,
    };
    match forge.open(&handles.http, &proposal).await {
        Ok(opened) => {
            let now = db::ts(Utc::now());
            match reviews::set_forge(
                &handles.db.pool,
                &review.change_id,
                opened.number,
                &opened.url,
                &now,
            )
            .await
            {
                Ok(()) => {
                    tracing::info!(url = %opened.url, branch = %review.branch, "pull request opened")
                }
                Err(e) => tracing::warn!(error = %e, "recording the pull request failed"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, branch = %review.branch, "opening the pull request failed; retried after the next fetch")
        }
    }
}
