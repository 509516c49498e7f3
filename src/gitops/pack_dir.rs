//! The files of `objects/pack`, kept sound across kills. A reader trusts an index (`.idx`) to
//! mean its pack (`.pack`) is there: libgit2's indexer renames the index into place first and
//! the pack after it, so a kill between the two leaves an index whose objects libgit2 believes
//! it has and cannot read. [`install`] writes the pack as git does instead: indexed in a staging
//! directory, then the pack moved into place, then its index. [`repair`] removes what a killed
//! writer left: an index without its pack, temporary packs, stale pack-index locks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::Indexer;

use super::Result;

/// Where packs are indexed before they are moved into `objects/pack`: beside it, so the moves
/// are renames, and outside it, so no reader (nor `git count-objects`) sees a half-made pack.
const STAGING: &str = "billing-incoming";

/// Writes the whole pack `bytes` into the repository at `gitdir`:
/// indexed in the staging directory, then the pack renamed into `objects/pack`, then its
/// index, so that no instant shows an index without its pack. With `fsync`, the indexer has
/// synced both files, and each rename is synced before the next step.
pub(super) fn install(gitdir: &Path, bytes: &[u8], fsync: bool) -> Result<()> {
    let staging_root = gitdir.join("objects").join(STAGING);
    std::fs::create_dir_all(&staging_root)?;
    // Removed when dropped; a killed writer's is left for `repair`.
    let staging = tempfile::tempdir_in(&staging_root)?;
    let mut indexer = Indexer::new(None, staging.path(), 0o444, false)?;
    // The io::Error carries libgit2's own reason (e.g. "No space left on device").
    std::io::Write::write_all(&mut indexer, bytes)?;
    let name = format!("pack-{}", indexer.commit()?);
    let dir = gitdir.join("objects/pack");
    // The pack first: a pack without its index is invisible to every reader.
    for ext in ["pack", "idx"] {
        let file = format!("{name}.{ext}");
        std::fs::rename(staging.path().join(&file), dir.join(&file))?;
        if fsync {
            std::fs::File::open(&dir)?.sync_all()?;
        }
    }
    Ok(())
}

/// What [`repair`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Repaired {
    /// Indexes whose pack was missing (their objects were never reachable from a ref: the ref
    /// moves only after the pack is whole).
    pub orphan_indexes: Vec<PathBuf>,
    /// Temporary packs and indexes, pack-index locks and staging directories of dead writers.
    pub leftovers: Vec<PathBuf>,
}

impl Repaired {
    pub fn is_empty(&self) -> bool {
        self.orphan_indexes.is_empty() && self.leftovers.is_empty()
    }
}

/// Removes from the repository at `gitdir` what killed writers left in `objects/pack`, once
/// older than `age` (younger ones may be a live writer's, mid-way): an index without its pack
/// (or a reverse index, bitmap or keep file without one), a pack without its index, libgit2's
/// and git's temporary packs (`pack_git2_*`, `tmp_pack_*`, `tmp_idx_*`), pack-index locks, and
/// this module's staging directories. For our own repository at start-up `age` is zero; for a
/// repository others write too (a path remote), the stale-lock age. Logs what it removed.
pub fn repair(gitdir: &Path, age: Duration) -> std::io::Result<Repaired> {
    let mut repaired = Repaired::default();
    let old = |path: &Path| {
        std::fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|e| e >= age))
    };
    let dir = gitdir.join("objects/pack");
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let kind = classify(&dir, &entry.file_name().to_string_lossy());
        if kind == Kind::Sound || !old(&path) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) if kind == Kind::OrphanIndex => repaired.orphan_indexes.push(path),
            Ok(()) => repaired.leftovers.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let staging = gitdir.join("objects").join(STAGING);
    for entry in std::fs::read_dir(&staging).into_iter().flatten().flatten() {
        if old(&entry.path()) && std::fs::remove_dir_all(entry.path()).is_ok() {
            repaired.leftovers.push(entry.path());
        }
    }
    if !repaired.is_empty() {
        tracing::warn!(
            repository = %gitdir.display(),
            orphan_indexes = ?repaired.orphan_indexes,
            leftovers = ?repaired.leftovers,
            "removed what killed writers left in objects/pack"
        );
    }
    Ok(repaired)
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Sound,
    OrphanIndex,
    Leftover,
}

/// What `name` in the pack directory `dir` is.
fn classify(dir: &Path, name: &str) -> Kind {
    let temporary = ["pack_git2_", "tmp_pack_", "tmp_idx_", "tmp_billing_"];
    if temporary.iter().any(|t| name.starts_with(t)) || name.ends_with(".lock") {
        return Kind::Leftover;
    }
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return Kind::Sound;
    };
    let has = |ext: &str| dir.join(format!("{stem}.{ext}")).exists();
    match ext {
        "idx" if !has("pack") => Kind::OrphanIndex,
        "rev" | "bitmap" | "keep" | "promisor" | "mtimes" if !has("pack") => Kind::Leftover,
        "pack" if !has("idx") => Kind::Leftover,
        _ => Kind::Sound,
    }
}

#[cfg(test)]
mod tests;
