//! The GitOps repository, bare, written with libgit2's own parts. It knows Git, not HTTP nor
//! customers: it takes "these paths, these bytes, this message" and returns a revision.

mod branches;
mod changes;
mod history;
pub mod index;
pub mod locks;
pub mod pack;
pub mod pack_dir;
pub mod push;
mod shared;
mod write;

use std::cell::Cell;
use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use git2::{Oid, Repository, RepositoryInitOptions, Signature};

pub use branches::DiffStat;
pub use changes::{Changes, Entry};
pub use history::CommitInfo;
pub use push::{PushAuth, PushOutcome, Remote};
pub use shared::GitOps;

#[derive(Debug, thiserror::Error)]
pub enum GitOpsError {
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    /// The remote refused or kept rejecting the push.
    #[error("{0}")]
    Remote(String),
    #[error("nothing to push: the branch is empty")]
    EmptyBranch,
    /// A git command (`git repack`) could not run or failed.
    #[error("{0}")]
    Tool(String),
    #[error("no commit {0:?} in the GitOps repository")]
    UnknownRevision(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The thread running the work panicked or stopped.
    #[error("git task failed: {0}")]
    Task(String),
}

pub type Result<T, E = GitOpsError> = std::result::Result<T, E>;

impl GitOpsError {
    /// A lock file was in the way (libgit2's `GIT_ELOCKED`).
    pub fn is_locked(&self) -> bool {
        matches!(self, GitOpsError::Git(e) if e.code() == git2::ErrorCode::Locked)
    }
}

/// libgit2's lookups with "not found" as None.
trait Found<T> {
    fn found(self) -> Result<Option<T>>;
}

impl<T> Found<T> for std::result::Result<T, git2::Error> {
    fn found(self) -> Result<Option<T>> {
        match self {
            Ok(found) => Ok(Some(found)),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Author {
    pub name: String,
    pub email: String,
}

pub struct GitOpsRepo {
    repo: Repository,
    path: PathBuf,
    branch: String,
    author: Author,
    /// Commits not yet in a pack written by [`GitOpsRepo::repack`].
    unpacked: Cell<usize>,
    /// The fsync setting this handle was opened with.
    fsync: bool,
    /// A lock file older than this is a dead writer's, removed when it blocks us.
    stale_lock_after: Duration,
}

/// The age at which a lock file is taken for a dead writer's (a live one holds it for ms).
pub const DEFAULT_STALE_LOCK_AFTER: Duration = Duration::from_secs(60);

/// libgit2's process-wide fsync option as last set (off, its default, until then); our own
/// renames follow it.
static FSYNC: Mutex<bool> = Mutex::new(false);

fn fsync_on() -> bool {
    *FSYNC.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sets libgit2's fsync option, only when it changes: the service sets it once at start-up.
fn set_libgit2_fsync(on: bool) -> Result<()> {
    let mut current = FSYNC.lock().unwrap_or_else(PoisonError::into_inner);
    let option = libgit2_sys::GIT_OPT_ENABLE_FSYNC_GITDIR as c_int;
    // SAFETY: this option takes exactly one int; libgit2 was initialised by git2 on open.
    if *current != on && unsafe { libgit2_sys::git_libgit2_opts(option, c_int::from(on)) } < 0 {
        return Err(git2::Error::from_str("libgit2 refused its fsync option").into());
    }
    *current = on;
    Ok(())
}

/// Sets libgit2's process-wide memory limits once, before a repository is opened: trees of any
/// size cached, the whole cache under 8 MiB, at most 128 packs open (docs/internals.md, "Memory").
fn limit_libgit2_memory() -> Result<()> {
    const CACHE: isize = 8 << 20;
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    // SAFETY: options read as (int, size_t), (ssize_t) and (size_t), set before any open.
    let set = || unsafe {
        git2::opts::set_cache_object_limit(git2::ObjectType::Tree, 4 << 20)?;
        git2::opts::set_mwindow_file_limit(128)?;
        let max_size = libgit2_sys::GIT_OPT_SET_CACHE_MAX_SIZE as c_int;
        if libgit2_sys::git_libgit2_opts(max_size, CACHE) < 0 {
            return Err(git2::Error::from_str("libgit2 refused its cache size"));
        }
        Ok(())
    };
    let done = DONE.get_or_init(|| set().map_err(|e| e.to_string()));
    done.clone().map_err(|e| git2::Error::from_str(&e).into())
}

/// Bounds every fetch and push: connecting, and each wait for the remote to send or take
/// data, give up after `timeout` (libgit2 waits forever by default). Process-wide; at start-up.
pub fn limit_network_waits(timeout: Duration) -> Result<()> {
    let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    // SAFETY: global options read by libgit2 as one int each; set before network use.
    unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(ms)?;
        git2::opts::set_server_timeout_in_milliseconds(ms)?;
    }
    Ok(())
}

/// A setting older versions wrote: libgit2 ORs it with its own option (so `GITOPS_FSYNC=false`
/// would still sync) and git warns it is deprecated. Removed on open.
const OLD_FSYNC_CONFIG: &str = "core.fsyncObjectFiles";

/// The README of a new repository's first commit.
const OPERATOR_README: &str = include_str!("operator_readme.md");

impl GitOpsRepo {
    fn new(repo: Repository, path: &Path, branch: &str, author: Author, stale: Duration) -> Self {
        GitOpsRepo {
            repo,
            path: path.to_path_buf(),
            branch: branch.to_string(),
            author,
            unpacked: Cell::new(0),
            fsync: fsync_on(),
            stale_lock_after: stale,
        }
    }

    /// How to open a second handle (the network thread's) set up like this one.
    fn opener(&self) -> impl Fn() -> Result<GitOpsRepo> + Send + Sync + 'static {
        let (path, branch) = (self.path.clone(), self.branch.clone());
        let (author, stale) = (self.author.clone(), self.stale_lock_after);
        move || {
            let repo = Repository::open_bare(&path)?;
            Ok(GitOpsRepo::new(repo, &path, &branch, author.clone(), stale))
        }
    }

    /// Opens the bare repository at `path`, creating it (with the layout's README) if missing.
    pub fn open_or_init(path: &Path, branch: &str, author: Author) -> Result<Self> {
        limit_libgit2_memory()?;
        let repo = match Repository::open_bare(path) {
            Ok(repo) => repo,
            Err(_) => {
                std::fs::create_dir_all(path)?;
                let mut opts = RepositoryInitOptions::new();
                opts.bare(true).initial_head(branch).mkpath(true);
                Repository::init_opts(path, &opts)?
            }
        };
        // Another process may be writing (the CLI beside the server): only what is older than a
        // live writer's work is repaired here; `serve` repairs everything before it starts.
        pack_dir::repair(path, DEFAULT_STALE_LOCK_AFTER)?;
        if let Ok(mut local) = repo.config()?.open_level(git2::ConfigLevel::Local) {
            if local.get_entry(OLD_FSYNC_CONFIG).is_ok() {
                local.remove(OLD_FSYNC_CONFIG)?;
            }
            let (key, value) = write::DELTA_WINDOW_MEMORY;
            if local.get_i64(key).ok() != Some(value) {
                local.set_i64(key, value)?;
            }
        }
        let mut this = GitOpsRepo::new(repo, path, branch, author, DEFAULT_STALE_LOCK_AFTER);
        this.set_fsync(true)?;
        // More than one pack: an earlier process's leftovers, for the first idle repack.
        this.unpacked
            .set(pack::pack_count(path).saturating_sub(1).min(1));
        if this.head()?.is_none() {
            let readme = Entry::File(OPERATOR_README.as_bytes().to_vec());
            let layout = Changes::from([("README.md".to_string(), readme)]);
            this.commit(&layout, "Initialise the GitOps repository layout")?;
        }
        Ok(this)
    }

    /// Whether commits are durable against a crash of the machine (on by default; off for
    /// scratch repositories). libgit2's option is process-wide: this sets it for every
    /// repository of the process (docs/internals.md, "fsync").
    pub fn set_fsync(&mut self, on: bool) -> Result<()> {
        set_libgit2_fsync(on)?;
        if self.fsync != on {
            // libgit2's ref store reads the option once, when it is first used.
            self.repo = Repository::open_bare(&self.path)?;
        }
        self.fsync = on;
        Ok(())
    }

    pub fn set_stale_lock_after(&mut self, age: Duration) {
        self.stale_lock_after = age;
    }

    /// Runs `attempt`, and once more when a lock blocked it (libgit2's `Locked`, or a path
    /// remote's refusal) and a dead writer's lock was removed.
    fn unlocked<T>(&self, remote: Option<&Remote>, attempt: impl Fn() -> Result<T>) -> Result<T> {
        match attempt() {
            Err(e)
                if (e.is_locked() || matches!(e, GitOpsError::Remote(_)))
                    && self.removed_stale_locks(remote) =>
            {
                tracing::debug!(error = %e, "trying again without the stale lock");
                attempt()
            }
            done => done,
        }
    }

    /// Removes the lock files older than the stale age here and, for a path remote, there (a
    /// live writer holds one for milliseconds). Says whether it removed any.
    fn removed_stale_locks(&self, remote: Option<&Remote>) -> bool {
        let dirs = [Some(self.path.clone()), remote.and_then(Remote::local_dir)];
        let mut removed = false;
        for lock in dirs
            .iter()
            .flatten()
            .flat_map(|dir| locks::remove_stale(dir, self.stale_lock_after))
        {
            tracing::warn!(lock = %lock.display(), "removed a stale Git lock file left by a dead writer");
            removed = true;
        }
        removed
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn branch_ref(&self) -> String {
        branch_refname(&self.branch)
    }

    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// The main branch's tip, or None in an empty repository.
    pub fn head(&self) -> Result<Option<Oid>> {
        self.tip(&self.branch)
    }

    pub fn tip(&self, branch: &str) -> Result<Option<Oid>> {
        self.repo.refname_to_id(&branch_refname(branch)).found()
    }

    /// Commits `changes` on the main branch; None, and no commit, when the tree stays the same.
    pub fn commit(&mut self, changes: &Changes, message: &str) -> Result<Option<Oid>> {
        let branch = self.branch.clone();
        self.commit_on(&branch, None, changes, message)
    }

    /// Commits `changes` on `branch`, a new one starting at `start` (or the main branch's tip).
    pub fn commit_on(
        &mut self,
        branch: &str,
        start: Option<Oid>,
        changes: &Changes,
        message: &str,
    ) -> Result<Option<Oid>> {
        let (refname, subject) = (branch_refname(branch), message.lines().next());
        self.unlocked(None, || {
            let current = self.tip(branch)?;
            let parent = match current {
                Some(tip) => Some(tip),
                None => start.or(self.head()?),
            };
            let sig = Signature::now(&self.author.name, &self.author.email)?;
            let Some(commit) = self.write_commit(parent, changes, message, &sig, &sig)? else {
                return Ok(None);
            };
            let subject = subject.unwrap_or("commit");
            // Compare-and-swap on the tip: if it moved meanwhile the update fails, nothing is lost.
            match current {
                Some(old) => self
                    .repo
                    .reference_matching(&refname, commit, true, old, subject)?,
                None => self.repo.reference(&refname, commit, false, subject)?,
            };
            Ok(Some(commit))
        })
    }

    /// Whether committing `changes` would leave the main branch's tree as it is (hashes only).
    pub fn unchanged(&self, changes: &Changes) -> Result<bool> {
        let Some(root) = self.head_tree()? else {
            return Ok(changes.is_empty());
        };
        for (path, entry) in changes {
            if !changes::same(&self.repo, &root, path, entry)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A file's bytes at the main branch's tip.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.read_many(&[path.to_string()])?.pop().flatten())
    }

    /// The bytes of each file in `paths` at the main branch's tip (None where there is no file).
    pub fn read_many(&self, paths: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        let Some(root) = self.head_tree()? else {
            return Ok(vec![None; paths.len()]);
        };
        paths
            .iter()
            .map(|path| changes::file_at(&self.repo, &root, path))
            .collect()
    }

    fn blob(&self, id: Oid) -> Result<Vec<u8>> {
        Ok(self.repo.find_blob(id)?.content().to_vec())
    }

    fn head_tree(&self) -> Result<Option<git2::Tree<'_>>> {
        let Some(head) = self.head()? else {
            return Ok(None);
        };
        Ok(Some(self.repo.find_commit(head)?.tree()?))
    }

    /// Whether `descendant` is `ancestor` or has it in its history.
    pub fn contains(&self, descendant: Oid, ancestor: Oid) -> Result<bool> {
        Ok(descendant == ancestor || self.repo.graph_descendant_of(descendant, ancestor)?)
    }
}

fn branch_refname(branch: &str) -> String {
    format!("refs/heads/{branch}")
}

#[cfg(test)]
mod tests;
