//! Directory indexes: a `kustomization.yaml` listing every `*.yaml` file below a directory,
//! computed from the tree it is committed into. Several writers add files to the same directory
//! concurrently; an index stored as plain bytes would be replayed stale on a re-application
//! (`rebase_onto`) and drop the other writer's files, so an index is an entry kind of its own
//! ([`Entry::Index`](super::Entry)) that every commit, and every re-application, recomputes
//! from the listing. The file names what it indexes on its first line, so a re-application
//! recognises it from the commit alone: no bookkeeping beside what Git keeps.

use std::path::Path;

use git2::{ObjectType, Repository, Tree};

use super::{Found, Result};

/// The first line of an index file, followed by the indexed directory (relative to the index's
/// own directory) and a `/`.
const MARKER: &str = "# directory-index: ";

/// The directory an index file lists, when `bytes` are an index (its first line says so).
pub fn indexed_dir(bytes: &[u8]) -> Option<String> {
    let first = bytes.split(|b| *b == b'\n').next()?;
    let dir = std::str::from_utf8(first).ok()?.strip_prefix(MARKER)?;
    let dir = dir.trim_end().trim_end_matches('/');
    (!dir.is_empty()).then(|| dir.to_string())
}

/// The index file's bytes for `files` (paths relative to the index's directory, sorted).
/// Kustomize resolves each resource relative to the kustomization's directory and refuses
/// files outside it, so the listed files always live below it.
pub fn render(dir: &str, files: &[String]) -> Vec<u8> {
    let mut out = format!(
        "{MARKER}{dir}/\n# Generated: every *.yaml file under {dir}/, recomputed on each commit.\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
    );
    if files.is_empty() {
        out.push_str("resources: []\n");
    } else {
        out.push_str("resources:\n");
        for file in files {
            out.push_str(&format!("  - {file}\n"));
        }
    }
    out.into_bytes()
}

/// The bytes of the index at `path` listing `dir` (relative to `path`'s directory) as `root`
/// holds it: every `*.yaml` blob below it, at any depth, in path order.
pub(super) fn compute(
    repo: &Repository,
    root: &Tree<'_>,
    path: &str,
    dir: &str,
) -> Result<Vec<u8>> {
    let base = match path.rsplit_once('/') {
        Some((parent, _)) => format!("{parent}/{dir}"),
        None => dir.to_string(),
    };
    let mut files = Vec::new();
    if let Some(entry) = root.get_path(Path::new(&base)).found()? {
        if entry.kind() == Some(ObjectType::Tree) {
            repo.find_tree(entry.id())?
                .walk(git2::TreeWalkMode::PreOrder, |sub, e| {
                    if let (Some(ObjectType::Blob), Some(name)) = (e.kind(), e.name()) {
                        if name.ends_with(".yaml") {
                            files.push(format!("{dir}/{sub}{name}"));
                        }
                    }
                    git2::TreeWalkResult::Ok
                })?;
        }
    }
    files.sort();
    Ok(render(dir, &files))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_index_names_its_directory_on_its_first_line() {
        let bytes = super::render("tenants", &["tenants/a.yaml".into()]);
        assert_eq!(super::indexed_dir(&bytes).as_deref(), Some("tenants"));
        assert!(String::from_utf8(bytes)
            .unwrap()
            .ends_with("resources:\n  - tenants/a.yaml\n"));
        assert_eq!(super::indexed_dir(b"apiVersion: v1\n"), None);
        let empty = String::from_utf8(super::render("tenants", &[])).unwrap();
        assert!(empty.ends_with("resources: []\n"));
    }
}
