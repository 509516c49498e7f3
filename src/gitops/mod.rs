//! The GitOps repository: a bare repository written with libgit2's own parts (see `write`).
//! It knows Git, not HTTP and not customers: it takes "these paths, these bytes, this message"
//! on a branch and returns a revision.

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
pub use shared::{GitHealth, GitOps};

#[derive(Debug, thiserror::Error)]
pub enum GitOpsError {
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    /// The remote refused or kept rejecting the push.
    #[error("{0}")]
    Remote(String),
    /// There is no commit on the branch to push.
    #[error("nothing to push: the branch is empty")]
    EmptyBranch,
    /// A git command (`git repack`) could not run or failed.
    #[error("{0}")]
    Tool(String),
    /// A revision that names no commit here.
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
    /// A lock file was in the way (libgit2's `GIT_ELOCKED`), told by its code.
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

/// Who commits.
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
    /// The fsync setting this handle was opened with (see [`GitOpsRepo::set_fsync`]).
    fsync: bool,
    /// A lock file older than this is a dead writer's and is removed when it blocks us.
    stale_lock_after: Duration,
}

/// How old a lock file must be before it is taken for a dead writer's (a live one holds it for
/// milliseconds).
pub const DEFAULT_STALE_LOCK_AFTER: Duration = Duration::from_secs(60);

/// libgit2's process-wide fsync option as last set: off, libgit2's default, until then.
static FSYNC: Mutex<bool> = Mutex::new(false);

/// Whether libgit2's fsync option is on: our own renames follow it.
fn fsync_on() -> bool {
    *FSYNC.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sets libgit2's process-wide fsync option, only when it changes: the service sets it once at
/// start-up, before any thread writes.
fn set_libgit2_fsync(on: bool) -> Result<()> {
    let mut current = FSYNC.lock().unwrap_or_else(PoisonError::into_inner);
    if *current != on {
        // SAFETY: this option takes exactly one int (settings.c reads `va_arg(ap, int)`);
        // libgit2 was initialised by git2 when a repository was opened.
        let status = unsafe {
            libgit2_sys::git_libgit2_opts(
                libgit2_sys::GIT_OPT_ENABLE_FSYNC_GITDIR as c_int,
                c_int::from(on),
            )
        };
        if status < 0 {
            return Err(git2::Error::from_str("libgit2 refused its fsync option").into());
        }
        *current = on;
    }
    Ok(())
}

/// Sets libgit2's process-wide memory limits once, before a repository is opened. Trees of any
/// size may be cached (its default caches trees up to 4 KiB, so a large directory would be
/// parsed again for every path looked up under it), but the whole cache stays under 8 MiB (its
/// default, 256 MiB, let a server holding 10,000 tenants keep every tree it ever read). At most
/// 128 packs are open at once: every commit adds a small pack until the next repack. The pack
/// windows keep their defaults: with 2 MiB windows, 4 MiB at most, its indexer rejected a
/// sound 1.8-million-object pack, and 4 / 16 MiB made that repack twice as slow.
fn limit_libgit2_memory() -> Result<()> {
    const CACHE: isize = 8 << 20;
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    // SAFETY: global options read by libgit2 as (int, size_t), (ssize_t) and (size_t); set
    // once, before this process opens a repository.
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
/// data, give up after `timeout` (libgit2 waits forever by default, so a remote that accepts
/// a connection and never answers held a push for good). Process-wide; call at start-up.
pub fn limit_network_waits(timeout: Duration) -> Result<()> {
    let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    // SAFETY: global options read by libgit2 as one int each; set before network use.
    unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(ms)?;
        git2::opts::set_server_timeout_in_milliseconds(ms)?;
    }
    Ok(())
}

/// A repository setting this code wrote for a while (`core.fsyncObjectFiles`): libgit2 ORs it
/// with its own option, so it would keep syncing with `GITOPS_FSYNC=false`, and git warns that
/// it is deprecated. Removed on open.
const OLD_FSYNC_CONFIG: &str = "core.fsyncObjectFiles";

/// The top-level README that the first commit puts in a new repository.
const OPERATOR_README: &str = include_str!("operator_readme.md");

impl GitOpsRepo {
    fn new(repo: Repository, path: &Path, branch: &str, author: Author) -> Self {
        GitOpsRepo {
            repo,
            path: path.to_path_buf(),
            branch: branch.to_string(),
            author,
            unpacked: Cell::new(0),
            fsync: fsync_on(),
            stale_lock_after: DEFAULT_STALE_LOCK_AFTER,
        }
    }

    /// How to open a second handle on this repository as this one is set up (the network
    /// thread's), with the fsync setting in force.
    fn opener(&self) -> impl Fn() -> Result<GitOpsRepo> + Send + Sync + 'static {
        let (path, branch) = (self.path.clone(), self.branch.clone());
        let (author, stale_lock_after) = (self.author.clone(), self.stale_lock_after);
        move || {
            let repo = Repository::open_bare(&path)?;
            let mut handle = GitOpsRepo::new(repo, &path, &branch, author.clone());
            handle.stale_lock_after = stale_lock_after;
            Ok(handle)
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
        // Another process may be writing (the CLI beside the server): only what is older than
        // a live writer's work is repaired here; `serve` repairs everything before it starts.
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
        let mut this = GitOpsRepo::new(repo, path, branch, author);
        this.set_fsync(true)?;
        // More than one pack: leftovers of an earlier process, for the first idle repack.
        this.unpacked
            .set(pack::pack_count(path).saturating_sub(1).min(1));
        if this.head()?.is_none() {
            let readme = Entry::File(OPERATOR_README.as_bytes().to_vec());
            let layout = Changes::from([("README.md".to_string(), readme)]);
            this.commit(&layout, "Initialise the GitOps repository layout")?;
        }
        Ok(this)
    }

    /// Whether commits are durable against a crash of the machine, not only of the process: on
    /// (the default), libgit2's indexer syncs each commit's pack and index before the branch
    /// moves, the ref update is synced, and so are the consolidated packs before what they
    /// supersede is deleted. Off is for scratch repositories. It is libgit2's process-wide
    /// option, so this sets it for every repository of the process; `core.fsyncObjectFiles`
    /// would do it per repository, but makes every git command on the repository warn that the
    /// setting is deprecated.
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
    /// remote's refusal) and a dead writer's lock was removed (see `removed_stale_locks`).
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

    /// Removes the lock files older than the stale age here and, for a path remote, there: a
    /// live writer holds one for milliseconds, so an old one is a dead writer's. Says whether
    /// it removed any: the caller then tries once more.
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

    /// The branch the service works on (`main`).
    pub fn branch(&self) -> &str {
        &self.branch
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

    /// The tip of `branch`, or None when it does not exist.
    pub fn tip(&self, branch: &str) -> Result<Option<Oid>> {
        self.repo.refname_to_id(&branch_refname(branch)).found()
    }

    /// Commits `changes` on top of the main branch. Returns None, and writes no commit, when
    /// the resulting tree is the tip's tree: re-applying what is already there is free.
    pub fn commit(&mut self, changes: &Changes, message: &str) -> Result<Option<Oid>> {
        let branch = self.branch.clone();
        self.commit_on(&branch, None, changes, message)
    }

    /// Commits `changes` on `branch`; a branch that does not exist yet starts at `start` (or
    /// at the main branch's tip). The commit's new objects are written as one pack.
    pub fn commit_on(
        &mut self,
        branch: &str,
        start: Option<Oid>,
        changes: &Changes,
        message: &str,
    ) -> Result<Option<Oid>> {
        self.unlocked(None, || self.commit_once(branch, start, changes, message))
    }

    fn commit_once(
        &self,
        branch: &str,
        start: Option<Oid>,
        changes: &Changes,
        message: &str,
    ) -> Result<Option<Oid>> {
        let current = self.tip(branch)?;
        let parent = match current {
            Some(tip) => Some(tip),
            None => start.or(self.head()?),
        };
        let sig = Signature::now(&self.author.name, &self.author.email)?;
        let Some(commit) = self.write_commit(parent, changes, message, &sig, &sig)? else {
            return Ok(None);
        };
        let refname = branch_refname(branch);
        let subject = message.lines().next().unwrap_or("commit");
        // Compare-and-swap on the tip: if it moved meanwhile the update fails, nothing is lost.
        match current {
            Some(old) => self
                .repo
                .reference_matching(&refname, commit, true, old, subject)?,
            None => self.repo.reference(&refname, commit, false, subject)?,
        };
        Ok(Some(commit))
    }

    /// Whether committing `changes` would leave the main branch's tree as it is. Hashes only:
    /// writes nothing.
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

    /// The bytes of the blob `id`.
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
