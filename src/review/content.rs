//! What a tenant's files are at a revision, as Git names them: the id of its directory's tree
//! and of its Kustomization's blob. The same ids mean the same bytes, so whether main holds
//! what the service wrote (or proposed) is told by content, never by a commit message, whose
//! `Change-Id:` line anyone can copy.

use git2::Oid;

use crate::gitops::{GitOpsRepo, Result};
use crate::render::{flux_kustomization_path, tenant_dir};

/// The tenant's content at `revision`: `<tree id>:<blob id>`, `-` for what is not there.
pub fn fingerprint(repo: &GitOpsRepo, revision: Oid, customer_id: &str) -> Result<String> {
    let paths = [
        tenant_dir(customer_id),
        flux_kustomization_path(customer_id),
    ];
    let ids = repo.entry_ids(revision, &paths)?;
    Ok(ids
        .iter()
        .map(|id| id.map_or_else(|| "-".to_string(), |id| id.to_string()))
        .collect::<Vec<_>>()
        .join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::{Author, Changes, Entry};

    #[test]
    fn the_same_files_have_the_same_fingerprint_whoever_committed_them() {
        let dir = tempfile::tempdir().unwrap();
        let author = Author {
            name: "t".into(),
            email: "t@localhost".into(),
        };
        let mut repo = GitOpsRepo::open_or_init(&dir.path().join("r.git"), "main", author).unwrap();
        let files = |text: &str| {
            let mut c = Changes::new();
            c.insert(
                tenant_dir("acme"),
                Entry::Dir([("a.yaml".into(), text.as_bytes().to_vec())].into()),
            );
            c.insert(
                flux_kustomization_path("acme"),
                Entry::File(b"kind: Kustomization\n".to_vec()),
            );
            c
        };
        let empty = repo.head().unwrap().unwrap();
        let first = repo.commit(&files("one\n"), "ours").unwrap().unwrap();
        let second = repo.commit(&files("two\n"), "an edit").unwrap().unwrap();
        let back = repo.commit(&files("one\n"), "a revert").unwrap().unwrap();
        let at = |rev| fingerprint(&repo, rev, "acme").unwrap();
        assert_eq!(at(empty), "-:-");
        assert_ne!(at(first), at(second));
        assert_eq!(at(first), at(back), "content, not the commit, decides");
        assert!(!at(first).contains('-'));
    }
}
