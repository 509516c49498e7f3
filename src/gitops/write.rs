//! One commit, one pack, from libgit2's own parts: the commit's objects are built in memory,
//! `TreeUpdateBuilder` rewrites only the trees on the changed paths, and exactly the objects
//! the commit created are written as one pack. Nothing loose, never the whole tree.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use git2::build::TreeUpdateBuilder;
use git2::{FileMode, ObjectType, Odb, OdbLookupFlags, Oid, Repository, Signature};

use super::pack_dir;
use super::{Changes, Entry, GitOpsRepo, Result};

/// An object the commit may have created, with its file name (a delta-compression hint).
type Candidate = (Oid, Option<String>);

/// A repository whose writes go to memory, opened on `disk`'s directory for its configuration
/// (the `PackBuilder` reads [`DELTA_WINDOW_MEMORY`] there).
fn scratch_in_memory(disk: &Repository) -> Result<Repository> {
    let odb = Odb::new()?;
    // The mempack backend is owned (and freed) by the odb; the handle is not needed.
    odb.add_new_mempack_backend(1000)?;
    let scratch = Repository::open_bare(disk.path())?;
    scratch.set_odb(&odb)?;
    Ok(scratch)
}

/// Each object delta-tried against the one before it only: the same file of another tenant
/// (docs/internals.md, "Commits").
pub(super) const DELTA_WINDOW_MEMORY: (&str, i64) = ("pack.windowMemory", 1);

/// Adds `disk`'s object store behind the scratch repository's memory, only once the new blobs
/// are written: before, every new object would rescan `objects/pack` on its miss.
fn attach_store(scratch: &Repository, disk: &Repository) -> Result<()> {
    let objects = disk.path().join("objects");
    let objects = objects
        .to_str()
        .ok_or_else(|| git2::Error::from_str("repository path is not UTF-8"))?;
    scratch.odb()?.add_disk_alternate(objects)?;
    Ok(())
}

impl GitOpsRepo {
    /// Builds the commit of `changes` on `parent` and writes what it created as one pack. None,
    /// and nothing written, when the tree would not change.
    pub(super) fn write_commit(
        &self,
        parent: Option<Oid>,
        changes: &Changes,
        message: &str,
        author: &Signature<'_>,
        committer: &Signature<'_>,
    ) -> Result<Option<Oid>> {
        let disk = &self.repo;
        let scratch = scratch_in_memory(disk)?;
        let mut candidates = Vec::new();
        let mut written = Vec::with_capacity(changes.len());
        for (path, entry) in changes {
            check_path(path)?;
            let object = match entry {
                Entry::File(bytes) => Some((
                    blob(&scratch, bytes, path, &mut candidates)?,
                    FileMode::Blob,
                )),
                Entry::Dir(files) if !files.is_empty() => Some((
                    dir_tree(&scratch, path, files, &mut candidates)?,
                    FileMode::Tree,
                )),
                Entry::Dir(_) | Entry::Removed => None,
                // Computed below, from the tree the other changes make.
                Entry::Index { .. } => continue,
            };
            written.push((path, object));
        }
        attach_store(&scratch, disk)?;
        let base = match parent {
            Some(id) => scratch.find_commit(id)?.tree()?,
            // Only the baseline: packed only if the commit's tree is empty too.
            None => scratch.find_tree(scratch.treebuilder(None)?.write()?)?,
        };
        let mut update = TreeUpdateBuilder::new();
        for (path, object) in written {
            match object {
                Some((id, mode)) => update.upsert(path.as_str(), id, mode),
                // libgit2 refuses to remove what is not there; an emptied directory goes too.
                None if base.get_path(Path::new(path)).is_ok() => update.remove(path.as_str()),
                None => &mut update,
            };
        }
        let mut tree = update.create_updated(&scratch, &base)?;
        tree = self.write_indexes(&scratch, tree, changes, &mut candidates)?;
        if parent.is_some() && tree == base.id() {
            return Ok(None);
        }
        let new_tree = scratch.find_tree(tree)?;
        candidates.push((tree, None));
        let mut visited = HashSet::new();
        for path in changes.keys() {
            trees_on_path(&new_tree, path, &mut visited, &mut candidates);
        }
        let parent = parent.map(|id| scratch.find_commit(id)).transpose()?;
        let parents = parent.iter().collect::<Vec<_>>();
        let commit = scratch.commit(None, author, committer, message, &new_tree, &parents)?;
        candidates.push((commit, None));
        write_pack(&scratch, disk, &candidates)?;
        self.unpacked.set(self.unpacked.get() + 1);
        Ok(Some(commit))
    }
}

impl GitOpsRepo {
    /// The tree `tree` with every directory index among `changes` recomputed from its listing
    /// there (see `index`).
    fn write_indexes(
        &self,
        scratch: &Repository,
        tree: Oid,
        changes: &Changes,
        candidates: &mut Vec<Candidate>,
    ) -> Result<Oid> {
        let mut update = TreeUpdateBuilder::new();
        let mut any = false;
        let listed = scratch.find_tree(tree)?;
        for (path, entry) in changes {
            if let Entry::Index { dir } = entry {
                check_path(dir)?;
                let bytes = super::index::compute(scratch, &listed, path, dir)?;
                let id = blob(scratch, &bytes, path, candidates)?;
                update.upsert(path.as_str(), id, FileMode::Blob);
                any = true;
            }
        }
        if !any {
            return Ok(tree);
        }
        Ok(update.create_updated(scratch, &listed)?)
    }
}

/// Writes the objects among `candidates` that `disk` does not hold yet as one pack.
fn write_pack(scratch: &Repository, disk: &Repository, candidates: &[Candidate]) -> Result<()> {
    let store = disk.odb()?;
    let mut builder = scratch.packbuilder()?;
    builder.set_threads(0);
    let mut seen = HashSet::new();
    for (id, name) in candidates {
        // Without NO_REFRESH every miss would rescan objects/pack.
        if seen.insert(*id) && !store.exists_ext(*id, OdbLookupFlags::NO_REFRESH) {
            builder.insert_object(*id, name.as_deref())?;
        }
    }
    if builder.object_count() == 0 {
        return Ok(());
    }
    // Whole, not chunk by chunk: the indexer would remap the growing file for every object.
    let mut pack = git2::Buf::new();
    builder.write_buf(&mut pack)?;
    pack_dir::install(disk.path(), &pack, super::fsync_on())?;
    store.refresh()?;
    Ok(())
}

/// A blob, remembered as a candidate with its file name (a delta-compression hint).
fn blob(
    scratch: &Repository,
    bytes: &[u8],
    path: &str,
    candidates: &mut Vec<Candidate>,
) -> Result<Oid> {
    let id = scratch.odb()?.write(ObjectType::Blob, bytes)?;
    candidates.push((id, Some(path.to_string())));
    Ok(id)
}

/// The tree of a directory given whole (`name` or `sub/name` -> bytes).
fn dir_tree(
    scratch: &Repository,
    dir: &str,
    files: &BTreeMap<String, Vec<u8>>,
    candidates: &mut Vec<Candidate>,
) -> Result<Oid> {
    let mut here = scratch.treebuilder(None)?;
    let mut subdirs: BTreeMap<&str, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for (name, bytes) in files {
        match name.split_once('/') {
            Some((sub, rest)) => {
                subdirs
                    .entry(sub)
                    .or_default()
                    .insert(rest.to_string(), bytes.clone());
            }
            None => {
                check_path(name)?;
                let id = blob(scratch, bytes, &format!("{dir}/{name}"), candidates)?;
                here.insert(name, id, FileMode::Blob.into())?;
            }
        }
    }
    for (sub, files) in subdirs {
        check_path(sub)?;
        let id = dir_tree(scratch, &format!("{dir}/{sub}"), &files, candidates)?;
        here.insert(sub, id, FileMode::Tree.into())?;
    }
    let id = here.write()?;
    candidates.push((id, None));
    Ok(id)
}

/// The trees from `root` down to `path` (the ones a change at `path` rewrote); directories in
/// `visited` were looked up for an earlier path already.
fn trees_on_path<'a>(
    root: &git2::Tree<'_>,
    path: &'a str,
    visited: &mut HashSet<&'a str>,
    candidates: &mut Vec<Candidate>,
) {
    for (end, _) in path.match_indices('/').chain([(path.len(), "")]) {
        let at = &path[..end];
        if !visited.insert(at) {
            continue;
        }
        match root.get_path(Path::new(at)) {
            Ok(entry) if entry.kind() == Some(ObjectType::Tree) => {
                candidates.push((entry.id(), None))
            }
            _ => return,
        }
    }
}

/// Refuses a path Git would not store or a checkout would misplace.
fn check_path(path: &str) -> Result<(), git2::Error> {
    let bad = path.is_empty()
        || path.contains('\0')
        || path
            .split('/')
            .any(|part| matches!(part, "" | "." | ".." | ".git"));
    if bad {
        return Err(git2::Error::from_str(&format!("invalid path {path:?}")));
    }
    Ok(())
}
