//! A tenant's history as Git holds it: its commits on main (path-filtered), each with its
//! change id, the reason its message gives, the author, and whether the cluster has synced it.

use serde::Serialize;

use super::rollback::tenant_paths;
use crate::db::{deployments, outbox};
use crate::deploy::DeployHandles;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = TenantCommit)]
pub struct HistoryItem {
    pub revision: String,
    pub short_revision: String,
    /// The commit's `Change-Id` of one of this tenant's jobs; None for a commit the service
    /// did not make.
    pub change_id: Option<String>,
    /// This tenant's line of the message (`upgrade starter → professional (Stripe evt_…)`).
    pub reason: String,
    pub author: String,
    pub committed_at: String,
    /// `synced` once the cluster reported a revision that contains the commit, else `pending`.
    pub sync: &'static str,
}

/// The tenant's newest `limit` commits on main, newest first.
pub async fn tenant_history(
    handles: &DeployHandles,
    customer_id: &str,
    limit: usize,
) -> anyhow::Result<Vec<HistoryItem>> {
    let applied = deployments::watch_row(&handles.db.pool, customer_id)
        .await?
        .and_then(|w| w.applied_revision);
    let ours = outbox::change_ids_of(&handles.db.pool, customer_id).await?;
    let id = customer_id.to_string();
    handles
        .gitops
        .run(move |repo| -> anyhow::Result<Vec<HistoryItem>> {
            let applied = applied.and_then(|rev| git2::Oid::from_str(&rev).ok());
            let commits = repo.log_paths(&tenant_paths(&id), limit)?;
            let mut items = Vec::with_capacity(commits.len());
            for c in commits {
                let synced = match applied {
                    Some(applied) => repo.contains(applied, c.revision).unwrap_or(false),
                    None => false,
                };
                let revision = c.revision.to_string();
                items.push(HistoryItem {
                    short_revision: revision[..12].to_string(),
                    change_id: c
                        .trailers("Change-Id")
                        .into_iter()
                        .find(|t| ours.contains(t)),
                    reason: reason_for(&id, &c.message),
                    author: format!("{} <{}>", c.author_name, c.author_email),
                    committed_at: chrono::DateTime::from_timestamp(c.time, 0)
                        .map(crate::db::ts)
                        .unwrap_or_default(),
                    sync: if synced { "synced" } else { "pending" },
                    revision,
                });
            }
            Ok(items)
        })
        .await
}

/// The tenant's `tenant <id>: …` line of a commit message, without the prefix; else the subject.
fn reason_for(id: &str, message: &str) -> String {
    let prefix = format!("tenant {id}: ");
    message
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| message.lines().next().unwrap_or_default())
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_reason_is_the_tenants_own_line() {
        let batch = "tenants: create 2\n\ntenant a1: create (starter)\ntenant b2: upgrade x\n";
        assert_eq!(super::reason_for("b2", batch), "upgrade x");
        assert_eq!(
            super::reason_for("c3", "Revert \"tenant b2: upgrade x\"\n"),
            "Revert \"tenant b2: upgrade x\""
        );
    }
}
