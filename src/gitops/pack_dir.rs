//! The files of `objects/pack`, kept sound across kills. libgit2's indexer renames a pack's
//! index into place before the pack, so a kill between the two leaves an index whose objects
//! cannot be read. [`install`] writes a pack as git does instead; [`repair`] removes what a
//! killed writer left.

use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::Indexer;

use super::locks::older_than;
use super::Result;

/// Where packs are indexed: beside `objects/pack` (so the moves are renames) and outside it (so
/// no reader sees a half-made pack).
const STAGING: &str = "billing-incoming";

/// Writes the whole pack `bytes` into the repository at `gitdir`: indexed in the staging
/// directory, then moved into `objects/pack` pack first, index second, so that no instant shows
/// an index without its pack. With `fsync`, each rename is synced before the next.
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
    /// Indexes whose pack was missing (never reachable: a ref moves only once its pack is whole).
    pub orphan_indexes: Vec<PathBuf>,
    /// Temporary packs and indexes, pack-index locks and staging directories of dead writers.
    pub leftovers: Vec<PathBuf>,
}

impl Repaired {
    pub fn is_empty(&self) -> bool {
        self.orphan_indexes.is_empty() && self.leftovers.is_empty()
    }
}

/// Removes what killed writers left in `objects/pack` once older than `age` (a younger one may
/// be a live writer's): an index (or reverse index, bitmap, keep file) without its pack, a pack
/// without its index, temporary packs, pack-index locks, our staging directories. `age` is zero
/// for our own repository at start-up, the stale-lock age where others write too. Logged.
pub fn repair(gitdir: &Path, age: Duration) -> std::io::Result<Repaired> {
    let mut repaired = Repaired::default();
    let dir = gitdir.join("objects/pack");
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let kind = classify(&dir, &entry.file_name().to_string_lossy());
        if kind == Kind::Sound || !older_than(&path, age) {
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
        if older_than(&entry.path(), age) && std::fs::remove_dir_all(entry.path()).is_ok() {
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
