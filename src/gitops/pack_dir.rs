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

/// Removes what killed writers left in `objects/pack` once older than `age` (a younger one may
/// be a live writer's): an index (or reverse index, bitmap, keep file) without its pack, a pack
/// without its index, temporary packs, pack-index locks, our staging directories. `age` is zero
/// for our own repository at start-up, the stale-lock age where others write too. Logged.
pub fn repair(gitdir: &Path, age: Duration) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let dir = gitdir.join("objects/pack");
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if !left_over(&dir, &entry.file_name().to_string_lossy()) || !older_than(&path, age) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let staging = gitdir.join("objects").join(STAGING);
    for entry in std::fs::read_dir(&staging).into_iter().flatten().flatten() {
        if older_than(&entry.path(), age) && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    if !removed.is_empty() {
        let repository = gitdir.display();
        tracing::warn!(%repository, ?removed, "removed what killed writers left in objects/pack");
    }
    Ok(removed)
}

/// Whether `name` in the pack directory `dir` is a dead writer's: a temporary file, a lock, or
/// a pack's file without its pack (or a pack without its index).
fn left_over(dir: &Path, name: &str) -> bool {
    let temporary = ["pack_git2_", "tmp_pack_", "tmp_idx_", "tmp_billing_"];
    if temporary.iter().any(|t| name.starts_with(t)) || name.ends_with(".lock") {
        return true;
    }
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    let has = |ext: &str| dir.join(format!("{stem}.{ext}")).exists();
    match ext {
        "idx" | "rev" | "bitmap" | "keep" | "promisor" | "mtimes" => !has("pack"),
        "pack" => !has("idx"),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
