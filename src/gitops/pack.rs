//! Keeping the repository packed, with git itself. Each commit writes a small pack of its
//! own; [`GitOpsRepo::repack`] runs `git repack --geometric=2 -d`, which rolls the smallest
//! packs together until each holds at least twice the objects of all the smaller ones, so a
//! repository of n objects keeps about log2(n) packs and each object is rewritten about as
//! often. Git decides from the packs on disk alone: no record of ours to lose, and an
//! operator's `git gc` or `git repack` in between costs nothing special.

use std::path::Path;
use std::process::Command;

use git2::Repository;

use super::{GitOpsError, GitOpsRepo, Result};

/// What a repack did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repacked {
    pub packs_before: usize,
    pub packs_after: usize,
}

impl GitOpsRepo {
    /// Commits since the last repack (for a handle just opened: one if there are many packs).
    pub fn unpacked_commits(&self) -> usize {
        self.unpacked.get()
    }

    /// Rolls the small packs into larger ones geometrically: only the packs it merges are
    /// rewritten.
    pub fn repack(&mut self) -> Result<Repacked> {
        self.run_repack(&["--geometric=2"])
    }

    /// Writes every object into one pack (`git repack -a -d`), unreachable ones kept.
    pub fn repack_all(&mut self) -> Result<Repacked> {
        self.run_repack(&["-a"])
    }

    /// Runs `git repack -d <how>`; no bitmaps, as nobody serves fetches from here.
    fn run_repack(&mut self, how: &[&str]) -> Result<Repacked> {
        super::pack_dir::repair(&self.path, self.stale_lock_after)?;
        let packs_before = pack_count(&self.path);
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(&self.path)
            .args(["-c", "repack.writeBitmaps=false", "repack", "-d", "-q"])
            .args(how)
            .env_remove("GIT_DIR")
            .env_remove("GIT_OBJECT_DIRECTORY")
            .output()
            .map_err(|e| GitOpsError::Tool(format!("cannot run git (is it installed?): {e}")))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = format!("git repack {}: {}", out.status, stderr.trim());
            return Err(GitOpsError::Tool(why));
        }
        // A fresh handle lets go of the removed packs libgit2 keeps open.
        self.repo = Repository::open_bare(&self.path)?;
        self.unpacked.set(0);
        Ok(Repacked {
            packs_before,
            packs_after: pack_count(&self.path),
        })
    }
}

/// The packs in the repository at `gitdir`: how many a reader searches.
pub fn pack_count(gitdir: &Path) -> usize {
    std::fs::read_dir(gitdir.join("objects/pack"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .count()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
