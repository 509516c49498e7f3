//! `billing gitops migrate-layout`: moves a repository written by older versions (a flat
//! `tenants/<id>/` and `flux-tenants/<id>.yaml`) to the sharded layout in one commit, bytes
//! unchanged except each Kustomization's `path:`, so the diff reviews as renames.

use crate::gitops::{self, Changes, Entry, GitOpsRepo};
use crate::render::{flat_flux_kustomization_path, flat_tenant_dir, flux_kustomization_path};
use crate::render::{tenant_dir, tenant_shard};

/// The trailer of a migration commit: the drift scan knows it for the service's own.
pub const TRAILER: &str = "Layout-Migration";

/// What a migration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub tenants: Vec<String>,
    pub revision: Option<git2::Oid>,
}

/// Ids of the tenants still in the flat layout: a directory under `tenants/` or a file under
/// `flux-tenants/` whose name is not a two-character shard.
pub fn flat_tenants(repo: &GitOpsRepo) -> gitops::Result<Vec<String>> {
    let mut ids: Vec<String> = repo
        .list_dir("tenants")?
        .into_iter()
        .filter(|(name, is_dir)| *is_dir && name.len() > 2)
        .map(|(name, _)| name)
        .collect();
    ids.extend(
        repo.list_dir("flux-tenants")?
            .into_iter()
            .filter(|(_, is_dir)| !is_dir)
            .filter_map(|(name, _)| name.strip_suffix(".yaml").map(str::to_string))
            .filter(|id| id.len() > 2),
    );
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// The changes that move `id` from its flat paths to its sharded ones.
fn move_tenant(repo: &GitOpsRepo, id: &str, changes: &mut Changes) -> gitops::Result<()> {
    if let Some(files) = repo.read_dir(&flat_tenant_dir(id))? {
        changes.insert(tenant_dir(id), Entry::Dir(files));
        changes.insert(flat_tenant_dir(id), Entry::Removed);
    }
    if let Some(bytes) = repo.read(&flat_flux_kustomization_path(id))? {
        let text = String::from_utf8_lossy(&bytes);
        let (old, new) = (
            format!("path: ./{}\n", flat_tenant_dir(id)),
            format!("path: ./{}\n", tenant_dir(id)),
        );
        changes.insert(
            flux_kustomization_path(id),
            Entry::File(text.replace(&old, &new).into_bytes()),
        );
        changes.insert(flat_flux_kustomization_path(id), Entry::Removed);
    }
    Ok(())
}

/// Moves every flat tenant in one commit on the main branch (none when there is nothing to
/// move).
pub fn migrate(repo: &mut GitOpsRepo) -> gitops::Result<Moved> {
    let tenants = flat_tenants(repo)?;
    if tenants.is_empty() {
        return Ok(Moved {
            tenants,
            revision: None,
        });
    }
    let mut changes = Changes::new();
    for id in &tenants {
        move_tenant(repo, id, &mut changes)?;
    }
    let body: Vec<String> = tenants
        .iter()
        .map(|id| format!("tenants/{id} -> tenants/{}/{id}", tenant_shard(id)))
        .collect();
    let message = super::changes::message(
        &format!(
            "gitops: move {} tenants to the sharded layout",
            tenants.len()
        ),
        &body,
        &[(TRAILER, "sharded".to_string())],
    );
    let revision = repo.commit(&changes, &message)?;
    Ok(Moved { tenants, revision })
}

/// Ids of the tenants whose Kustomization the single-cluster root holds
/// (`flux-tenants/a/b/c/<id>.yaml`).
pub fn single_root_tenants(repo: &GitOpsRepo) -> gitops::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut dirs = vec![("flux-tenants".to_string(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        for (name, is_dir) in repo.list_dir(&dir)? {
            let path = format!("{dir}/{name}");
            if is_dir && depth < 3 {
                dirs.push((path, depth + 1));
            } else if let Some(id) = crate::render::tenant_of_path(&path) {
                ids.push(id.to_string());
            }
        }
    }
    ids.sort();
    Ok(ids)
}

/// Moves the single-cluster root (`flux-tenants/`) under the sync root of a first cluster,
/// `clusters/<cluster>/`, in one commit: each Kustomization keeps its bytes (the diff reviews
/// as renames) and the root's index lists them all. The tenants' own directories stay. The
/// caller places `tenants` on the cluster in the database first: the placement is the truth
/// the next render follows.
pub fn migrate_to_cluster(
    repo: &mut GitOpsRepo,
    cluster: &str,
    tenants: &[String],
) -> gitops::Result<Moved> {
    let mut changes = Changes::new();
    let mut moved = Vec::new();
    let paths: Vec<String> = tenants
        .iter()
        .map(|id| flux_kustomization_path(id))
        .collect();
    for ((id, from), bytes) in tenants.iter().zip(&paths).zip(repo.read_many(&paths)?) {
        let Some(bytes) = bytes else { continue };
        let to = crate::render::cluster_kustomization_path(cluster, id);
        changes.insert(to, Entry::File(bytes));
        changes.insert(from.clone(), Entry::Removed);
        moved.push(id.clone());
    }
    if moved.is_empty() {
        return Ok(Moved {
            tenants: moved,
            revision: None,
        });
    }
    changes.insert(
        crate::render::cluster_index_path(cluster),
        super::roots::index(),
    );
    let message = super::changes::message(
        &format!(
            "gitops: move {} tenants under the sync root of cluster {cluster}",
            moved.len()
        ),
        &[format!("flux-tenants/ -> clusters/{cluster}/tenants/")],
        &[
            (TRAILER, format!("cluster {cluster}")),
            ("Cluster", cluster.to_string()),
        ],
    );
    let revision = repo.commit(&changes, &message)?;
    Ok(Moved {
        tenants: moved,
        revision,
    })
}
