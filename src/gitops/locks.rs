//! Lock files a killed process leaves behind. Git and libgit2 take a ref, the config or a pack
//! index by creating `<name>.lock` and renaming it into place; a SIGKILL between the two leaves
//! the lock, and every later writer fails (`GIT_ELOCKED`). Git never removes them; this does.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every lock file under a repository directory (refs, packed-refs, config, HEAD, pack indexes).
fn lock_files(gitdir: &Path) -> Vec<PathBuf> {
    let (mut found, mut stack) = (Vec::new(), vec![gitdir.to_path_buf()]);
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                // Loose objects never carry locks; their 256 directories need no walk.
                if !(dir.ends_with("objects") && path.file_name().is_some_and(|n| n.len() == 2)) {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "lock") {
                found.push(path);
            }
        }
    }
    found
}

/// Whether the file at `path` was last changed at least `age` ago.
pub(super) fn older_than(path: &Path, age: Duration) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|e| e >= age))
}

/// Removes every lock file in our own repository. Only at start-up, before this process
/// writes: the service is its only writer, so a lock found then is a dead process's.
pub fn remove_all(gitdir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for lock in lock_files(gitdir) {
        match std::fs::remove_file(&lock) {
            Ok(()) => removed.push(lock),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// Removes the lock files under `gitdir` older than `stale_after` (a live writer holds one for
/// milliseconds, so an old one is a dead writer's); returns what it removed.
pub fn remove_stale(gitdir: &Path, stale_after: Duration) -> Vec<PathBuf> {
    lock_files(gitdir)
        .into_iter()
        .filter(|lock| older_than(lock, stale_after) && std::fs::remove_file(lock).is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_up_removes_every_lock_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let git = dir.path();
        for d in [
            "refs/heads",
            "refs/remotes/origin",
            "objects/pack",
            "objects/ab",
        ] {
            std::fs::create_dir_all(git.join(d)).unwrap();
        }
        for f in [
            "refs/heads/main.lock",
            "refs/remotes/origin/main.lock",
            "packed-refs.lock",
            "objects/pack/pack-1.idx.lock",
        ] {
            std::fs::write(git.join(f), b"").unwrap();
        }
        std::fs::write(git.join("refs/heads/main"), b"x").unwrap();
        let mut removed = remove_all(git).unwrap();
        removed.sort();
        assert_eq!(removed.len(), 4, "{removed:?}");
        assert!(lock_files(git).is_empty());
        assert!(git.join("refs/heads/main").exists());
    }

    #[test]
    fn only_an_old_lock_is_taken_for_stale() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("refs/heads")).unwrap();
        let lock = dir.path().join("refs/heads/main.lock");
        std::fs::write(&lock, b"").unwrap();
        assert!(remove_stale(dir.path(), Duration::from_secs(3600)).is_empty());
        assert!(lock.exists(), "a young lock is another writer's");
        assert_eq!(remove_stale(dir.path(), Duration::ZERO), vec![lock.clone()]);
        assert!(!lock.exists());
    }
}
