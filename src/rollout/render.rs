//! Renders tenants for a rollout with this process's templates, against what Git holds: which
//! tenants' files change, and which files.

use anyhow::Context;

use super::{Handles, RolloutError};
use crate::gitops::{Changes, Entry, GitOpsRepo};
use crate::render::{render_lock_path, RenderLock};

/// How many tenants are rendered between two visits to the repository.
const CHUNK: usize = 200;

/// A tenant whose files the current templates change.
#[derive(Debug)]
pub(crate) struct Rendered {
    pub customer_id: String,
    pub changes: Changes,
    /// The paths whose bytes differ from main's (added, changed or removed files).
    pub files: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Renders {
    pub changed: Vec<Rendered>,
    pub unchanged: Vec<String>,
    /// Tenants that could not be rendered, with why: a template that fails must stop a rollout.
    pub failed: Vec<(String, String)>,
}

/// Renders `ids` (only what changed since each one's render lock, as the worker does) and
/// compares the result with main. Without `keep`, each tenant's changes are dropped once
/// compared (a plan of 10,000 tenants keeps only which files change).
pub(crate) async fn render(
    h: &Handles<'_>,
    ids: &[String],
    keep: bool,
) -> Result<Renders, RolloutError> {
    let mut out = Renders::default();
    for chunk in ids.chunks(CHUNK) {
        let paths: Vec<String> = chunk.iter().map(|id| render_lock_path(id)).collect();
        let locks = h.gitops.run(move |repo| repo.read_many(&paths)).await?;
        let mut rendered = Vec::with_capacity(chunk.len());
        for (id, lock) in chunk.iter().zip(locks) {
            let lock = lock.and_then(|bytes| RenderLock::from_bytes(&bytes));
            match render_one(h, id, lock.as_ref()).await {
                Ok(changes) => rendered.push((id.clone(), changes)),
                Err(err) => out.failed.push((id.clone(), format!("{err:#}"))),
            }
            // Rendering is CPU work: let the runtime's other tasks in between tenants.
            tokio::task::yield_now().await;
        }
        let compared = h
            .gitops
            .run(move |repo| {
                rendered
                    .into_iter()
                    .map(|(customer_id, changes)| {
                        let files = changed_files(repo, &changes)?;
                        Ok(Rendered {
                            customer_id,
                            changes: if keep { changes } else { Changes::new() },
                            files,
                        })
                    })
                    .collect::<crate::gitops::Result<Vec<_>>>()
            })
            .await?;
        for r in compared {
            if r.files.is_empty() {
                out.unchanged.push(r.customer_id);
            } else {
                out.changed.push(r);
            }
        }
    }
    Ok(out)
}

async fn render_one(
    h: &Handles<'_>,
    customer_id: &str,
    lock: Option<&RenderLock>,
) -> anyhow::Result<Changes> {
    let (spec, sealed) = crate::deploy::load_tenant(h.db, h.backup, customer_id).await?;
    let plan = h
        .plans
        .get(&spec.plan)
        .with_context(|| format!("unknown plan {:?}", spec.plan))?;
    let rendered = h
        .renderer
        .render_update(&spec, plan, h.render_settings, &sealed, lock)?;
    Ok(crate::deploy::tenant_changes(customer_id, rendered))
}

/// The paths `changes` would change on main: files written with other bytes, files of a
/// replaced directory that it drops, and paths removed that exist.
pub(crate) fn changed_files(
    repo: &GitOpsRepo,
    changes: &Changes,
) -> crate::gitops::Result<Vec<String>> {
    let mut files = Vec::new();
    for (path, entry) in changes {
        match entry {
            Entry::File(bytes) => {
                if repo.read(path)?.as_deref() != Some(bytes.as_slice()) {
                    files.push(path.clone());
                }
            }
            Entry::Dir(new) => {
                let old = repo.read_dir(path)?.unwrap_or_default();
                for (name, bytes) in new {
                    if old.get(name) != Some(bytes) {
                        files.push(format!("{path}/{name}"));
                    }
                }
                files.extend(
                    old.keys()
                        .filter(|name| !new.contains_key(*name))
                        .map(|name| format!("{path}/{name}")),
                );
            }
            Entry::Removed | Entry::Index { .. } => {
                let one = Changes::from([(path.clone(), entry.clone())]);
                if !repo.unchanged(&one)? {
                    files.push(path.clone());
                }
            }
        }
    }
    Ok(files)
}
