//! Pushing to the remote the cluster syncs from. A non-fast-forward (libgit2's local check or
//! the server's, reported through the push-update-reference callback) is resolved by fetching
//! and re-applying our own commits on the new tip: we own only the tenant directories under
//! `tenants/`, the Kustomizations under `flux-tenants/` and the sync roots under `clusters/`,
//! so another writer's changes elsewhere are kept as they are; directory indexes are recomputed
//! on the new tip (see `index`).

use std::cell::RefCell;
use std::path::PathBuf;

use git2::{Cred, CredentialType, ErrorCode, FetchOptions, Oid, PushOptions, RemoteCallbacks};
use git2::{Diff, Signature, Sort, Tree};
use secrecy::{ExposeSecret, SecretString};

use super::{Changes, Entry, Found, GitOpsError, GitOpsRepo, Result};

/// The directories whose children the service owns (one child per tenant).
/// `clusters/` holds one sync root per cluster (its tenants' Kustomizations and the directory
/// index listing them).
pub const OWNED_DIRS: [&str; 3] = ["tenants", "flux-tenants", "clusters"];

#[derive(Debug, Clone, Default)]
pub struct PushAuth {
    pub ssh_key_path: Option<PathBuf>,
    pub ssh_key_passphrase: Option<SecretString>,
    pub https_username: Option<String>,
    pub https_token: Option<SecretString>,
}

#[derive(Debug, Clone)]
pub struct Remote {
    pub url: String,
    pub auth: PushAuth,
}

impl Remote {
    /// The remote's directory when it is a repository on this machine (a path or `file://`).
    pub fn local_dir(&self) -> Option<PathBuf> {
        let path = match self.url.strip_prefix("file://") {
            Some(path) => path,
            // `host:path` is scp-like SSH; a path has no colon before its first slash.
            None if self.url.contains("://") => return None,
            None if self.url.split('/').next().is_some_and(|h| h.contains(':')) => return None,
            None => self.url.as_str(),
        };
        let dir = PathBuf::from(path);
        dir.is_dir().then_some(dir)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The remote branch now points at this commit.
    Pushed(Oid),
    /// The remote already had it.
    UpToDate(Oid),
}

/// The credentials for `auth`, and the remote's refusal of a ref update into `rejection`.
pub(super) fn callbacks<'a>(
    auth: &'a PushAuth,
    rejection: Option<&'a RefCell<Option<String>>>,
) -> RemoteCallbacks<'a> {
    let mut cbs = RemoteCallbacks::new();
    let mut tries = 0;
    cbs.credentials(move |_url, username, allowed| {
        tries += 1;
        if tries > 3 {
            return Err(git2::Error::from_str("remote refused our credentials"));
        }
        if let (true, Some(key)) = (
            allowed.contains(CredentialType::SSH_KEY),
            &auth.ssh_key_path,
        ) {
            let passphrase = auth.ssh_key_passphrase.as_ref().map(|p| p.expose_secret());
            return Cred::ssh_key(username.unwrap_or("git"), None, key, passphrase);
        }
        let plaintext = allowed.contains(CredentialType::USER_PASS_PLAINTEXT);
        if let (true, Some(token)) = (plaintext, &auth.https_token) {
            let user = auth.https_username.as_deref().unwrap_or("x-access-token");
            return Cred::userpass_plaintext(user, token.expose_secret());
        }
        Cred::default()
    });
    if let Some(cell) = rejection {
        cbs.push_update_reference(move |_refname, status| {
            if let Some(msg) = status {
                *cell.borrow_mut() = Some(msg.to_string());
            }
            Ok(())
        });
    }
    cbs
}

impl GitOpsRepo {
    pub(super) fn remote_tracking_ref(&self) -> String {
        format!("refs/remotes/origin/{}", self.branch)
    }

    /// Repairs a path remote's `objects/pack` (`pack_dir::repair`), at the stale-lock age.
    pub fn tidy_remote(&self, remote: &Remote) -> Result<()> {
        if let Some(dir) = remote.local_dir() {
            super::pack_dir::repair(&dir, self.stale_lock_after)?;
        }
        Ok(())
    }

    /// Fetches the remote branch; returns its tip, if it exists.
    pub fn fetch(&self, remote: &Remote) -> Result<Option<Oid>> {
        let refspec = format!("+{}:{}", self.branch_ref(), self.remote_tracking_ref());
        self.unlocked(Some(remote), || {
            let mut opts = FetchOptions::new();
            opts.remote_callbacks(callbacks(&remote.auth, None));
            let mut anonymous = self.repo.remote_anonymous(&remote.url)?;
            anonymous.fetch(&[refspec.as_str()], Some(&mut opts), None)?;
            self.repo.refname_to_id(&self.remote_tracking_ref()).found()
        })
    }

    /// Pushes `refspec`. Ok(Some(why)) when libgit2's non-fast-forward check (by its code) or
    /// the remote (through the push-update-reference callback) refused it.
    pub(super) fn push_refspec(&self, remote: &Remote, refspec: &str) -> Result<Option<String>> {
        let rejection = RefCell::new(None);
        let mut opts = PushOptions::new();
        opts.remote_callbacks(callbacks(&remote.auth, Some(&rejection)));
        let pushed = self
            .repo
            .remote_anonymous(&remote.url)?
            .push(&[refspec], Some(&mut opts));
        drop(opts);
        match pushed {
            Err(e) if e.code() == ErrorCode::NotFastForward => Ok(Some(e.message().to_string())),
            Err(e) => Err(e.into()),
            Ok(()) => Ok(rejection.into_inner()),
        }
    }

    /// Pushes the branch. On a non-fast-forward, fetches, re-applies our commits on the remote
    /// tip and tries again (up to `max_rebases` times). Every update of the local branch is a
    /// compare-and-swap on the tip read before: this runs beside the handle that commits.
    pub fn push(&self, remote: &Remote, max_rebases: usize) -> Result<PushOutcome> {
        let refspec = format!("{0}:{0}", self.branch_ref());
        self.unlocked(Some(remote), || {
            self.push_once(remote, &refspec, max_rebases)
        })
    }

    fn push_once(&self, remote: &Remote, refspec: &str, max_rebases: usize) -> Result<PushOutcome> {
        let mut last_rejection = String::new();
        for _ in 0..=max_rebases {
            let Some(tip) = self.head()? else {
                return Err(GitOpsError::EmptyBranch);
            };
            last_rejection = match self.push_refspec(remote, refspec) {
                Ok(None) => {
                    self.repo
                        .reference(&self.remote_tracking_ref(), tip, true, "pushed")?;
                    return Ok(PushOutcome::Pushed(tip));
                }
                // Another writer moved the branch first, or a dead writer's lock holds it in a
                // path remote: whatever the wording, the attempts are bounded.
                Ok(Some(why)) => {
                    self.removed_stale_locks(Some(remote));
                    why
                }
                // A dead writer's lock here: gone now, so simply try again.
                Err(e) if e.is_locked() && self.removed_stale_locks(Some(remote)) => e.to_string(),
                Err(e) => return Err(e),
            };
            let Some(upstream) = self.fetch(remote)? else {
                continue;
            };
            if self.contains(upstream, tip)? {
                // Someone (another replica) already pushed everything we have.
                let why = "fast-forward to remote";
                let branch = self.branch_ref();
                self.repo
                    .reference_matching(&branch, upstream, true, tip, why)?;
                return Ok(PushOutcome::UpToDate(upstream));
            }
            self.rebase_onto(upstream)?;
        }
        Err(GitOpsError::Remote(format!(
            "push still rejected after {max_rebases} re-applications: {last_rejection}"
        )))
    }

    /// Brings the local branch up to date with the remote. A remote without the branch is given
    /// ours: review branches and a forge's pull requests need a base.
    pub fn sync_from(&self, remote: &Remote) -> Result<Option<Oid>> {
        let Some(upstream) = self.fetch(remote)? else {
            if self.head()?.is_some() {
                self.push(remote, 1)?;
            }
            return self.head();
        };
        match self.head()? {
            Some(local) if self.contains(local, upstream)? => self.head(),
            // Without a local branch yet, it starts at the remote's tip.
            _ => self.rebase_onto(upstream).map(Some),
        }
    }

    /// Re-creates the local-only commits on top of `upstream`, each carrying only the owned
    /// files it changed. Commits whose change is already upstream vanish. Returns the new tip.
    pub fn rebase_onto(&self, upstream: Oid) -> Result<Oid> {
        let Some(local) = self.head()? else {
            self.repo
                .reference(&self.branch_ref(), upstream, false, "reset to remote")?;
            return Ok(upstream);
        };
        let mut walk = self.repo.revwalk()?;
        walk.push(local)?;
        walk.hide(upstream)?;
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)?;
        let mut tip = upstream;
        let committer = Signature::now(&self.author.name, &self.author.email)?;
        for oid in walk {
            let commit = self.repo.find_commit(oid?)?;
            let changes = self.owned_changes(&commit)?;
            let msg = commit.message().unwrap_or_default();
            let author = commit.author();
            if let Some(new) = self.write_commit(Some(tip), &changes, msg, &author, &committer)? {
                tip = new;
            }
        }
        self.repo.reference_matching(
            &self.branch_ref(),
            tip,
            true,
            local,
            "re-applied on the remote tip",
        )?;
        Ok(tip)
    }

    /// The files under the owned directories that `commit` changed against its first parent.
    fn owned_changes(&self, commit: &git2::Commit<'_>) -> Result<Changes> {
        let old = commit.parent(0).ok().map(|p| p.tree()).transpose()?;
        let mut changes = Changes::new();
        for delta in self.owned_diff(old.as_ref(), &commit.tree()?)?.deltas() {
            let Some(path) = delta.new_file().path().and_then(|p| p.to_str()) else {
                continue;
            };
            let entry = match delta.status() {
                git2::Delta::Deleted => Entry::Removed,
                _ => {
                    let bytes = self.blob(delta.new_file().id())?;
                    // An index is recomputed on the new tip, never replayed as stale bytes:
                    // another writer's files in its directory stay listed.
                    match super::index::indexed_dir(&bytes) {
                        Some(dir) => Entry::Index { dir },
                        None => Entry::File(bytes),
                    }
                }
            };
            changes.insert(path.to_string(), entry);
        }
        Ok(changes)
    }

    /// What `new` changes against `old` (or against nothing) under the owned directories.
    pub(super) fn owned_diff(&self, old: Option<&Tree<'_>>, new: &Tree<'_>) -> Result<Diff<'_>> {
        let mut opts = git2::DiffOptions::new();
        for dir in OWNED_DIRS {
            opts.pathspec(format!("{dir}/"));
        }
        Ok(self
            .repo
            .diff_tree_to_tree(old, Some(new), Some(&mut opts))?)
    }
}

#[cfg(test)]
mod tests;
