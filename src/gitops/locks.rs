//! Lock files a killed process leaves behind. Git and libgit2 take a ref, the config or a pack
//! index by creating `<name>.lock` and renaming it into place; a SIGKILL between the two leaves
//! the lock, and every later writer fails with "failed to lock file" until someone removes it.
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

/// The lock file named by libgit2's "failed to lock file '<path>' for writing" (or git's
/// "Unable to create '<path>': File exists").
pub fn named_lock(message: &str) -> Option<PathBuf> {
    let start = message
        .find("failed to lock file '")
        .map(|i| i + "failed to lock file '".len())
        .or_else(|| {
            message
                .find("Unable to create '")
                .map(|i| i + "Unable to create '".len())
        })?;
    let end = message[start..].find('\'')? + start;
    let path = PathBuf::from(&message[start..end]);
    path.extension()
        .is_some_and(|e| e == "lock")
        .then_some(path)
}

/// Removes the lock file an error names when it is older than `stale_after`: a live writer
/// holds a lock for milliseconds, so an old one belongs to a writer that died. Returns the
/// removed path. A younger lock is another writer's and is left alone (its caller retries).
pub fn remove_if_stale(message: &str, stale_after: Duration) -> Option<PathBuf> {
    let lock = named_lock(message)?;
    let age = std::fs::metadata(&lock)
        .ok()?
        .modified()
        .ok()?
        .elapsed()
        .ok()?;
    if age < stale_after {
        return None;
    }
    std::fs::remove_file(&lock).ok()?;
    Some(lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_lock_libgit2_names() {
        let msg = "failed to lock file '/tmp/x/gitops.git/refs/remotes/origin/main.lock' for \
                   writing: ; class=Os (2); code=Locked (-14)";
        assert_eq!(
            named_lock(msg),
            Some(PathBuf::from(
                "/tmp/x/gitops.git/refs/remotes/origin/main.lock"
            ))
        );
        assert_eq!(
            named_lock("Unable to create '/r/refs/heads/main.lock': File exists."),
            Some(PathBuf::from("/r/refs/heads/main.lock"))
        );
        assert_eq!(
            named_lock("failed to lock file '/etc/passwd' for writing"),
            None
        );
        assert_eq!(named_lock("non-fast-forward"), None);
    }

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
        let lock = dir.path().join("main.lock");
        std::fs::write(&lock, b"").unwrap();
        let msg = format!("failed to lock file '{}' for writing", lock.display());
        assert_eq!(remove_if_stale(&msg, Duration::from_secs(3600)), None);
        assert!(lock.exists(), "a young lock is another writer's");
        assert_eq!(remove_if_stale(&msg, Duration::ZERO), Some(lock.clone()));
        assert!(!lock.exists());
    }
}
