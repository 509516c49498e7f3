//! Review mode: tenant changes proposed on their own branch (`tenant/<id>/<change-id>`) and
//! merged by people. The worker proposes (`deploy::propose`); after each fetch `merge` finds
//! what reached main (merge commit, squash, rebase or cherry-pick, by ancestry or by the
//! `Change-Id` in the message) and what was closed unmerged. `forge` opens the pull requests.

mod config;
pub mod forge;
pub mod merge;

pub use config::{ChangeKind, CommitMode, Policy, ReviewConfig};

use std::sync::Arc;

use chrono::Utc;

use crate::app::App;
use crate::db::{self, reviews};

/// Review mode's parts the service holds.
pub struct Review {
    pub policy: Policy,
    pub forge: Option<forge::Forge>,
}

impl Review {
    pub fn from_config(config: &ReviewConfig) -> anyhow::Result<Self> {
        Ok(Review {
            policy: config.policy()?,
            forge: config.forge()?,
        })
    }
}

/// The branch a change of a tenant is proposed on.
pub fn branch_name(customer_id: &str, change_id: &str) -> String {
    format!("tenant/{customer_id}/{change_id}")
}

/// Closes the tenant's open review, if any, because a newer change replaces it: its pull
/// request is closed and its branch deleted (best effort, logged).
pub async fn supersede(app: &Arc<App>, customer_id: &str) -> anyhow::Result<()> {
    let Some(old) = reviews::open_of(&app.db.pool, customer_id).await? else {
        return Ok(());
    };
    let now = db::ts(Utc::now());
    if reviews::close(
        &app.db.pool,
        &old.change_id,
        reviews::ReviewState::Superseded,
        None,
        &now,
    )
    .await?
    {
        tracing::info!(%customer_id, branch = %old.branch, "review superseded by a newer change");
        retire(app, &old, true).await;
    }
    Ok(())
}

/// Deletes a finished review's branch, and closes its pull request when `close_request` (a
/// superseded one; a merged or closed one is done on the forge already).
pub(crate) async fn retire(app: &Arc<App>, review: &reviews::Review, close_request: bool) {
    let forge = app.review.forge.as_ref().filter(|_| close_request);
    if let (Some(forge), Some(number)) = (forge, review.forge_number) {
        if let Err(e) = forge.close(&app.http, number).await {
            tracing::warn!(error = %e, branch = %review.branch, "closing the pull request failed");
        }
    }
    let branch = review.branch.clone();
    let deleted = match app.gitops.remote {
        // Here and there, from the network thread.
        Some(_) => app
            .gitops
            .with_remote("branch deletion", move |repo, remote| {
                repo.delete_branch(Some(remote), &branch)
            })
            .await
            .map(|_| ()),
        None => {
            app.gitops
                .run(move |repo| repo.delete_branch(None, &branch))
                .await
        }
    };
    if let Err(e) = deleted {
        tracing::warn!(error = %format!("{e:#}"), branch = %review.branch, "deleting the review branch failed");
    }
}

/// Opens the review's pull request when a forge is configured and none is recorded.
pub(crate) async fn open_request(app: &App, review: &reviews::Review) {
    let Some(forge) = &app.review.forge else {
        return;
    };
    if review.forge_number.is_some() {
        return;
    }
    let proposal = forge::Proposal {
        branch: &review.branch,
        base: &app.config.gitops_branch,
        title: &review.title,
        body: &review.body,
    };
    match forge.open(&app.http, &proposal).await {
        Ok(opened) => {
            let now = db::ts(Utc::now());
            match reviews::set_forge(
                &app.db.pool,
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
