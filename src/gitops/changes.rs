//! What a commit changes, as paths and bytes, and how that compares with a tree already in Git.

use std::collections::BTreeMap;
use std::path::Path;

use git2::{ObjectType, Oid, Repository, Tree};

use super::{Found, Result};

/// The new content at one path: a file, a whole directory (replacing what was there), nothing,
/// or a directory index (see `index`): a file listing every `*.yaml` under `dir` (relative to
/// the index's own directory), computed from the tree the commit produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File(Vec<u8>),
    Dir(BTreeMap<String, Vec<u8>>),
    Removed,
    Index { dir: String },
}

/// What a commit changes: repo-relative path -> new entry.
pub type Changes = BTreeMap<String, Entry>;

/// The bytes of the file at `path` in `root` (None when there is no file there).
pub(super) fn file_at(repo: &Repository, root: &Tree<'_>, path: &str) -> Result<Option<Vec<u8>>> {
    match root.get_path(Path::new(path)).found()? {
        Some(entry) if entry.kind() == Some(ObjectType::Blob) => {
            Ok(Some(repo.find_blob(entry.id())?.content().to_vec()))
        }
        _ => Ok(None),
    }
}

/// Whether `root` already holds exactly `entry` at `path` (hashing, writing nothing).
pub(super) fn same(repo: &Repository, root: &Tree<'_>, path: &str, entry: &Entry) -> Result<bool> {
    if let Entry::Index { dir } = entry {
        let bytes = super::index::compute(repo, root, path, dir)?;
        return Ok(file_at(repo, root, path)?.as_deref() == Some(bytes.as_slice()));
    }
    let current = root.get_path(Path::new(path)).found()?;
    let blob_id = |bytes: &[u8]| Oid::hash_object(ObjectType::Blob, bytes);
    Ok(
        match (entry, current.map(|found| (found.id(), found.kind()))) {
            (Entry::Removed, None) => true,
            (Entry::Dir(files), None) => files.is_empty(),
            (Entry::File(bytes), Some((id, Some(ObjectType::Blob)))) => id == blob_id(bytes)?,
            (Entry::Dir(files), Some((id, Some(ObjectType::Tree)))) => {
                let hashed = files
                    .iter()
                    .map(|(name, bytes)| Ok((name.clone(), blob_id(bytes)?)));
                files_of(repo, id)? == hashed.collect::<Result<BTreeMap<_, _>>>()?
            }
            _ => false,
        },
    )
}

/// Every file under the tree `id`, by its path below it.
pub(super) fn files_of(repo: &Repository, id: Oid) -> Result<BTreeMap<String, Oid>> {
    let mut files = BTreeMap::new();
    repo.find_tree(id)?
        .walk(git2::TreeWalkMode::PreOrder, |dir, e| {
            if let (Some(ObjectType::Blob), Some(name)) = (e.kind(), e.name()) {
                files.insert(format!("{dir}{name}"), e.id());
            }
            git2::TreeWalkResult::Ok
        })?;
    Ok(files)
}
