//! The gitops bench's cluster-roots rows: a one-tenant commit when every tenant's Kustomization
//! sits in its cluster's sync root (`clusters/<name>/tenants/<id>.yaml`, 200 clusters) and the
//! root's index is recomputed by the commit, at 100 tenants and at the large sizes. The
//! commit includes `roots::place` (one lookup of where the tenant is), as the worker does.

use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

use billing::deploy::roots::{index, place, Root};
use billing::gitops::{Author, Changes, GitOpsRepo};
use billing::render::{cluster_index_path, cluster_kustomization_path, tenant_of_path};

/// Clusters the tenants are spread over.
pub const CLUSTERS: usize = 200;

/// The cluster of tenant `id`: spread evenly by its characters.
pub fn cluster_of(id: &str) -> String {
    let sum: usize = id.bytes().map(usize::from).sum();
    format!("c{:03}", sum % CLUSTERS)
}

/// `all` with each tenant's Kustomization moved into its cluster's root, every root indexed.
fn into_roots(all: Changes) -> Changes {
    let mut out = Changes::new();
    for (path, entry) in all {
        match tenant_of_path(&path) {
            Some(id) if path.starts_with("flux-tenants/") => {
                let cluster = cluster_of(id);
                out.insert(cluster_kustomization_path(&cluster, id), entry);
                out.insert(cluster_index_path(&cluster), index());
            }
            _ => {
                out.insert(path, entry);
            }
        }
    }
    out
}

/// A repository of `n` tenants in cluster roots, built in commits of 10,000, repacked whole.
pub fn build(
    dir: &Path,
    n: usize,
    author: Author,
    all_changes: impl Fn(Range<usize>) -> Changes,
) -> GitOpsRepo {
    let path = dir.join(format!("clusters{n}.git"));
    let mut repo = GitOpsRepo::open_or_init(&path, "main", author).unwrap();
    for start in (0..n).step_by(10_000) {
        let all = into_roots(all_changes(start..n.min(start + 10_000)));
        repo.commit(&all, "tenants: create").unwrap();
    }
    repo.repack_all().unwrap();
    repo
}

/// Median time of `rounds` one-tenant changes placed in their root and committed (render
/// excluded); `round` makes each round's changes new. `changes` gives a tenant's id and render.
pub fn one_tenant_commit(
    repo: &mut GitOpsRepo,
    rounds: usize,
    round: usize,
    changes: impl Fn(usize, &str) -> (String, Changes),
) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|r| {
            let (id, mut changes) = changes(r % 7, &format!("Clustered {round}-{r}"));
            let started = Instant::now();
            place(repo, &id, &Root::Cluster(cluster_of(&id)), &mut changes).unwrap();
            repo.commit(&changes, "tenant: update")
                .unwrap()
                .expect("a real change");
            started.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}
