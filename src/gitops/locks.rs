//! Lock files a killed process leaves behind. Git and libgit2 take a ref, the config or a pack
//! index by creating `<name>.lock` and renaming it into place; a SIGKILL between the two leaves
//! the lock, and every later writer fails (libgit2's `GIT_ELOCKED`) until someone removes it.
//! Git never removes them by itself: this module does, when it is safe.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every lock file under a repository directory (refs, packed-refs, config, HEAD, pack indexes).
fn lock_files(gitdir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![gitdir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
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

/// Removes every lock file in our own repository. Only for start-up, before any thread of this
/// process writes: the service is the only writer of its local repository, so a lock found then
/// belongs to a process that died. Returns what it removed.
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

/// Removes the lock files under `gitdir` older than `stale_after` (a live writer holds one
/// for milliseconds, so an old one is a dead writer's); returns what it removed. Younger
/// locks are other writers' and are left alone.
pub fn remove_stale(gitdir: &Path, stale_after: Duration) -> Vec<PathBuf> {
    lock_files(gitdir)
        .into_iter()
        .filter(|lock| {
            std::fs::metadata(lock)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= stale_after))
        })
        .filter(|lock| std::fs::remove_file(lock).is_ok())
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
