//! Reading the main branch's history: which commits changed given paths, which owned files a
//! commit changed, what paths held at a revision, and marks of how far the service has looked.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use git2::{Commit, ObjectType, Oid, Sort, Tree, TreeEntry};

use super::{Changes, Entry, Found, GitOpsError, GitOpsRepo, Result};

/// One commit as history shows it.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    pub revision: Oid,
    pub summary: String,
    pub message: String,
    pub author_name: String,
    pub author_email: String,
    /// Author time, seconds since the epoch.
    pub time: i64,
    /// On the branch's first-parent line, not brought in by a merge.
    pub mainline: bool,
}

impl CommitInfo {
    fn of(commit: &Commit<'_>) -> Self {
        let author = commit.author();
        CommitInfo {
            revision: commit.id(),
            summary: commit.summary().unwrap_or_default().to_string(),
            message: commit.message().unwrap_or_default().to_string(),
            author_name: author.name().unwrap_or_default().to_string(),
            author_email: author.email().unwrap_or_default().to_string(),
            time: author.when().seconds(),
            mainline: true,
        }
    }

    /// The values of the message's `key: value` lines, anywhere and indented or not: a squash
    /// merge quotes the squashed commits' trailers in its body.
    pub fn trailers(&self, key: &str) -> Vec<String> {
        self.message
            .lines()
            .filter_map(|line| line.trim().split_once(": "))
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
}

/// What is at `path` in `tree` (None when nothing is, or without a tree).
fn entry_at(tree: Option<&Tree<'_>>, path: &str) -> Result<Option<TreeEntry<'static>>> {
    tree.map_or(Ok(None), |tree| tree.get_path(Path::new(path)).found())
}

fn entry_id(tree: Option<&Tree<'_>>, path: &str) -> Result<Option<Oid>> {
    Ok(entry_at(tree, path)?.map(|entry| entry.id()))
}

fn is_tree(entry: &TreeEntry<'_>) -> bool {
    entry.kind() == Some(ObjectType::Tree)
}

impl GitOpsRepo {
    /// The commit a revision names (a full or short hash, `main~2`, a tag), or a clear error.
    pub fn resolve(&self, revision: &str) -> Result<Oid> {
        let object = self
            .repo
            .revparse_single(revision)
            .map_err(|_| GitOpsError::UnknownRevision(revision.to_string()))?;
        Ok(object.peel_to_commit()?.id())
    }

    /// The id of each of `paths`' blob or tree at `revision` (None where nothing is).
    pub fn entry_ids(&self, revision: Oid, paths: &[String]) -> Result<Vec<Option<Oid>>> {
        let tree = self.repo.find_commit(revision)?.tree()?;
        paths
            .iter()
            .map(|path| entry_id(Some(&tree), path))
            .collect()
    }

    /// Whether this repository has the commit `revision`.
    pub fn has_commit(&self, revision: Oid) -> bool {
        self.repo.find_commit(revision).is_ok()
    }

    /// The main branch's commits that changed any of `paths`, newest first, at most `limit`; a
    /// merge only where it differs from every parent (the merged commits are listed themselves).
    pub fn log_paths(&self, paths: &[String], limit: usize) -> Result<Vec<CommitInfo>> {
        let Some(head) = self.head()? else {
            return Ok(Vec::new());
        };
        let mut walk = self.repo.revwalk()?;
        walk.push(head)?;
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)?;
        let mut found = Vec::new();
        for oid in walk {
            if found.len() >= limit {
                break;
            }
            let commit = self.repo.find_commit(oid?)?;
            if self.changed_any(&commit, paths)? {
                found.push(CommitInfo::of(&commit));
            }
        }
        Ok(found)
    }

    /// Whether `commit` changed any of `paths` against every parent.
    fn changed_any(&self, commit: &Commit<'_>, paths: &[String]) -> Result<bool> {
        let tree = commit.tree()?;
        let parents = parent_trees(commit)?;
        for path in paths {
            let now = entry_id(Some(&tree), path)?;
            let mut changed = true;
            for parent in &parents {
                changed &= entry_id(parent.as_ref(), path)? != now;
            }
            if changed {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The main branch's commits after `since` (or all), oldest first, merged ones included.
    pub fn commits_since(&self, since: Option<Oid>) -> Result<Vec<CommitInfo>> {
        let Some(head) = self.head()? else {
            return Ok(Vec::new());
        };
        let walk = |first_parent: bool| -> Result<git2::Revwalk<'_>> {
            let mut walk = self.repo.revwalk()?;
            walk.push(head)?;
            if let Some(since) = since {
                walk.hide(since)?;
            }
            if first_parent {
                walk.simplify_first_parent()?;
            }
            walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)?;
            Ok(walk)
        };
        let mainline: HashSet<Oid> = walk(true)?.collect::<std::result::Result<_, _>>()?;
        let mut out = Vec::new();
        for oid in walk(false)? {
            let mut info = CommitInfo::of(&self.repo.find_commit(oid?)?);
            info.mainline = mainline.contains(&info.revision);
            out.push(info);
        }
        Ok(out)
    }

    /// Owned files the commit `revision` changed against its parent (for a merge: against every
    /// parent, what the merge itself did).
    pub fn owned_paths_changed(&self, revision: Oid) -> Result<Vec<String>> {
        let commit = self.repo.find_commit(revision)?;
        let tree = commit.tree()?;
        let parents = parent_trees(&commit)?;
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for parent in &parents {
            for delta in self.owned_diff(parent.as_ref(), &tree)?.deltas() {
                let file = match delta.status() {
                    git2::Delta::Deleted => delta.old_file(),
                    _ => delta.new_file(),
                };
                if let Some(path) = file.path().and_then(|p| p.to_str()) {
                    *counts.entry(path.to_string()).or_default() += 1;
                }
            }
        }
        Ok(counts
            .into_iter()
            .filter(|(_, n)| *n == parents.len())
            .map(|(path, _)| path)
            .collect())
    }

    /// The changes that put each of `paths` back as it was at `revision` (removed where absent).
    pub fn restore(&self, revision: Oid, paths: &[String]) -> Result<Changes> {
        let tree = self.repo.find_commit(revision)?.tree()?;
        let mut changes = Changes::new();
        for path in paths {
            let entry = match entry_at(Some(&tree), path)? {
                None => Entry::Removed,
                Some(found) if is_tree(&found) => Entry::Dir(self.files_under(found.id())?),
                Some(found) => Entry::File(self.blob(found.id())?),
            };
            changes.insert(path.clone(), entry);
        }
        Ok(changes)
    }

    /// Every file below the tree `id` with its bytes.
    fn files_under(&self, id: Oid) -> Result<BTreeMap<String, Vec<u8>>> {
        super::changes::files_of(&self.repo, id)?
            .into_iter()
            .map(|(path, id)| Ok((path, self.blob(id)?)))
            .collect()
    }

    /// The tree at `dir` on the main branch, if there is one.
    fn head_dir(&self, dir: &str) -> Result<Option<Oid>> {
        let root = self.head_tree()?;
        let entry = entry_at(root.as_ref(), dir)?;
        Ok(entry.filter(is_tree).map(|e| e.id()))
    }

    /// The names directly under `dir` on the main branch, with whether each is a directory.
    pub fn list_dir(&self, dir: &str) -> Result<Vec<(String, bool)>> {
        let Some(id) = self.head_dir(dir)? else {
            return Ok(Vec::new());
        };
        let tree = self.repo.find_tree(id)?;
        let names = tree
            .iter()
            .filter_map(|e| Some((e.name()?.to_string(), is_tree(&e))));
        Ok(names.collect())
    }

    /// The files under `dir` on the main branch by their path below it (None without `dir`).
    pub fn read_dir(&self, dir: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
        self.head_dir(dir)?
            .map(|id| self.files_under(id))
            .transpose()
    }

    /// The commit the mark `name` points at, if set: a ref, so it moves with the repository.
    pub fn mark(&self, name: &str) -> Result<Option<Oid>> {
        let refname = format!("refs/billing/{name}");
        self.repo.refname_to_id(&refname).found()
    }

    pub fn set_mark(&self, name: &str, oid: Oid) -> Result<()> {
        self.repo
            .reference(&format!("refs/billing/{name}"), oid, true, "mark")?;
        Ok(())
    }
}

/// The trees of `commit`'s parents; for a root commit, one missing tree (it added everything).
fn parent_trees<'r>(commit: &Commit<'r>) -> Result<Vec<Option<Tree<'r>>>> {
    if commit.parent_count() == 0 {
        return Ok(vec![None]);
    }
    let trees = commit.parents().map(|p| p.tree().map(Some));
    Ok(trees.collect::<std::result::Result<_, _>>()?)
}
