//! A rollback job's changes, read from Git rather than rendered: the tenant's directory and
//! Kustomization as they were before its last change (a tenant-scoped revert), or at a named
//! revision.

use anyhow::Context;

use crate::db::outbox::Job;
use crate::deploy::DeployHandles;
use crate::gitops::Changes;
use crate::render::{flux_kustomization_path, tenant_dir};

/// The paths a tenant owns in the repository.
pub fn tenant_paths(customer_id: &str) -> Vec<String> {
    vec![
        tenant_dir(customer_id),
        flux_kustomization_path(customer_id),
    ]
}

/// The changes that restore the job's tenant, and the commit message's summary of them.
pub(super) async fn changes(
    handles: &DeployHandles,
    job: &Job,
) -> anyhow::Result<(Changes, String)> {
    let customer_id = job.customer_id.clone();
    let target = job.target_revision.clone();
    handles
        .gitops
        .run(move |repo| {
            let paths = tenant_paths(&customer_id);
            let (to, summary) = match target {
                Some(rev) => {
                    let to = repo.resolve(&rev)?;
                    (to, format!("to {}", short(&to.to_string())))
                }
                None => {
                    let last = repo
                        .log_paths(&paths, 1)?
                        .pop()
                        .context("the tenant has no commit to roll back")?;
                    let commit = repo.repository().find_commit(last.revision)?;
                    let parent = commit
                        .parent_id(0)
                        .context("the tenant's last change is the first commit")?;
                    let summary = format!(
                        "to {}, reverting {} \"{}\"",
                        short(&parent.to_string()),
                        last.revision,
                        last.summary
                    );
                    (parent, summary)
                }
            };
            anyhow::Ok((repo.restore(to, &paths)?, summary))
        })
        .await
}

/// What the tenant's status says after its rollback is committed.
pub(super) fn note(summary: &str) -> String {
    format!("rolled back {summary}; the database's rendering returns with a forced deploy")
}

fn short(revision: &str) -> &str {
    &revision[..revision.len().min(12)]
}
