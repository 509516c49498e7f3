//! Which sync root applies a tenant's Flux Kustomization. With an empty cluster catalogue it is
//! the single-cluster root, `flux-tenants/` (the layout of older versions, unchanged); with
//! clusters, the tenant's placement (`db::clusters`, the truth) names `clusters/<name>/`, whose
//! `kustomization.yaml` is a directory index the Git layer recomputes on every commit, and an
//! unplaced tenant is in no root. The tenant's own directory never moves: only its
//! Kustomization (the same bytes in every root) does.

use crate::db::{self, clusters};
use crate::gitops::{self, Changes, Entry, GitOpsRepo};
use crate::render::{cluster_index_path, cluster_kustomization_path, flux_kustomization_path};
use crate::render::{tenant_dir, tenant_of_path, CLUSTER_TENANTS};

/// Where a tenant's Kustomization belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// No cluster catalogue, or a tenant placed before it existed: `flux-tenants/`, as before
    /// clusters existed.
    Single,
    /// `clusters/<name>/`.
    Cluster(String),
    /// Waiting for room: in no root.
    Unplaced,
}

impl Root {
    pub fn cluster(&self) -> Option<&str> {
        match self {
            Root::Cluster(name) => Some(name),
            _ => None,
        }
    }
}

/// The root of `customer_id` as the database says.
pub async fn root_of(db: &db::Db, customer_id: &str) -> Result<Root, sqlx::Error> {
    if !clusters::any(&db.pool).await? {
        return Ok(Root::Single);
    }
    // A tenant from before the catalogue has no placement at all: it stays in `flux-tenants/`
    // (which the running cluster still syncs) until `migrate-layout --cluster` places it, so
    // adding the first cluster never takes a running stack out of Git.
    Ok(match clusters::placement(&db.pool, customer_id).await? {
        None => Root::Single,
        Some(placed) => match placed.cluster {
            Some(name) => Root::Cluster(name),
            None => Root::Unplaced,
        },
    })
}

/// Rewrites a job's changes so the tenant's Kustomization is in `root` and in no other, with
/// the index of every cluster root it enters or leaves. The render writes it at its
/// `flux-tenants/` path; a render that left it out (only other templates changed) still moves
/// it when it is not where it belongs. Other roots are searched only then (a first placement, a
/// move, a removal), so a tenant staying put costs one lookup and no index.
pub fn place(
    repo: &GitOpsRepo,
    id: &str,
    root: &Root,
    changes: &mut Changes,
) -> gitops::Result<()> {
    if *root == Root::Single {
        return Ok(());
    }
    let flux = flux_kustomization_path(id);
    let rendered = changes.remove(&flux);
    // A deletion removes the tenant's directory too; placing twice changes nothing more.
    let removal = matches!(changes.get(&tenant_dir(id)), Some(Entry::Removed));
    let target = match (root.cluster(), removal) {
        (Some(cluster), false) => Some((cluster, cluster_kustomization_path(cluster, id))),
        _ => None,
    };
    let mut bytes = match rendered {
        Some(Entry::File(bytes)) => Some(bytes),
        _ => None,
    };
    if let Some((_, path)) = &target {
        if let (None, Some(Entry::File(placed))) = (&bytes, changes.get(path)) {
            bytes = Some(placed.clone());
        }
        if repo.read(path)?.is_some() {
            // Already in its root (and so in no other): the index lists it already, and only
            // adding or removing a name changes it.
            changes.insert(flux, Entry::Removed);
            if let Some(bytes) = bytes {
                changes.insert(path.clone(), Entry::File(bytes));
            }
            return Ok(());
        }
    }
    let elsewhere = located(repo, id, target.as_ref().map(|(c, _)| *c))?;
    if bytes.is_none() {
        // Same bytes in every root: carried over from where it is.
        bytes = match repo.read(&flux)? {
            Some(found) => Some(found),
            None => match elsewhere.first() {
                Some((_, path)) => repo.read(path)?,
                None => None,
            },
        };
    }
    changes.insert(flux, Entry::Removed);
    for (cluster, path) in elsewhere {
        changes.insert(path, Entry::Removed);
        changes.insert(cluster_index_path(&cluster), index());
    }
    if let (Some((cluster, path)), Some(bytes)) = (target, bytes) {
        changes.insert(path, Entry::File(bytes));
        changes.insert(cluster_index_path(cluster), index());
    }
    Ok(())
}

/// The index entry of a cluster root: every Kustomization under its `tenants/`.
pub fn index() -> Entry {
    Entry::Index {
        dir: CLUSTER_TENANTS.to_string(),
    }
}

/// The cluster roots (other than `except`) that hold `id`'s Kustomization, with its path there.
fn located(
    repo: &GitOpsRepo,
    id: &str,
    except: Option<&str>,
) -> gitops::Result<Vec<(String, String)>> {
    let candidates: Vec<(String, String)> = repo
        .list_dir("clusters")?
        .into_iter()
        .filter(|(name, is_dir)| *is_dir && Some(name.as_str()) != except)
        .map(|(name, _)| {
            let path = cluster_kustomization_path(&name, id);
            (name, path)
        })
        .collect();
    let paths: Vec<String> = candidates.iter().map(|(_, p)| p.clone()).collect();
    let found = repo.read_many(&paths)?;
    Ok(candidates
        .into_iter()
        .zip(found)
        .filter(|((_, path), bytes)| bytes.is_some() && tenant_of_path(path) == Some(id))
        .map(|(candidate, _)| candidate)
        .collect())
}
