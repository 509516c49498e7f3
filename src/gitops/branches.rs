//! Branches other than main (review mode): push one, delete one here and on the remote, and
//! the diff stat a pull request shows.

use git2::Oid;

use super::push::{callbacks, Remote};
use super::{branch_refname, GitOpsError, GitOpsRepo, Result};

/// Files changed, lines added, lines removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiffStat {
    pub files: usize,
    pub insertions: usize,
    pub deletions: usize,
}

impl GitOpsRepo {
    /// Pushes `branch` (ours alone, so forced: a retry after a crash overwrites its own try).
    pub fn push_branch(&self, remote: &Remote, branch: &str) -> Result<()> {
        let refname = branch_refname(branch);
        self.push_forced(remote, &format!("+{refname}:{refname}"))
    }

    /// Deletes `branch` here and, with a remote, there (a branch already gone is fine).
    pub fn delete_branch(&self, remote: Option<&Remote>, branch: &str) -> Result<()> {
        if let Ok(mut local) = self.repo.find_branch(branch, git2::BranchType::Local) {
            local.delete()?;
        }
        match remote {
            Some(remote) => self.push_forced(remote, &format!(":{}", branch_refname(branch))),
            None => Ok(()),
        }
    }

    /// Pushes `refspec`, a refusal being an error (tried once more without a stale lock).
    fn push_forced(&self, remote: &Remote, refspec: &str) -> Result<()> {
        self.unlocked(Some(remote), || {
            match self.push_refspec(remote, refspec)? {
                None => Ok(()),
                Some(why) => Err(GitOpsError::Remote(format!(
                    "remote rejected {refspec}: {why}"
                ))),
            }
        })
    }

    /// The branches under `prefix` on the remote (`ls-remote`), or here without a remote.
    pub fn branches_under(&self, remote: Option<&Remote>, prefix: &str) -> Result<Vec<String>> {
        let want = branch_refname(prefix);
        let names: Vec<String> = match remote {
            None => self
                .repo
                .references_glob(&format!("{want}*"))?
                .filter_map(|r| r.ok()?.name().map(str::to_string))
                .collect(),
            Some(remote) => {
                let mut anonymous = self.repo.remote_anonymous(&remote.url)?;
                let connection = anonymous.connect_auth(
                    git2::Direction::Fetch,
                    Some(callbacks(&remote.auth, None)),
                    None,
                )?;
                connection
                    .list()?
                    .iter()
                    .map(|head| head.name().to_string())
                    .filter(|name| name.starts_with(&want))
                    .collect()
            }
        };
        Ok(names
            .into_iter()
            .filter_map(|n| n.strip_prefix("refs/heads/").map(str::to_string))
            .collect())
    }

    /// What `to` changes against `from`.
    pub fn diff_stat(&self, from: Option<Oid>, to: Oid) -> Result<DiffStat> {
        let old = from
            .map(|id| self.repo.find_commit(id).and_then(|c| c.tree()))
            .transpose()?;
        let new = self.repo.find_commit(to)?.tree()?;
        let stats = self
            .repo
            .diff_tree_to_tree(old.as_ref(), Some(&new), None)?
            .stats()?;
        Ok(DiffStat {
            files: stats.files_changed(),
            insertions: stats.insertions(),
            deletions: stats.deletions(),
        })
    }
}
