//! The GitOps repository: a bare repository written with libgit2's own parts (see `write`).
//! It knows Git, not HTTP and not customers: it takes "these paths, these bytes, this message"
//! on a branch and returns a revision.

mod branches;
mod changes;
mod history;
pub mod locks;
pub mod pack;
pub mod pack_dir;
pub mod push;
mod shared;
mod write;

use std::path::{Path, PathBuf};

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
    unpacked: std::cell::Cell<usize>,
    /// The fsync setting this handle was opened with (see [`GitOpsRepo::set_fsync`]).
    fsync: bool,
    /// A lock file older than this is a dead writer's and is removed when it blocks us.
    stale_lock_after: std::time::Duration,
}

/// How old a lock file must be before it is taken for a dead writer's (a live one holds it for
/// milliseconds).
pub const DEFAULT_STALE_LOCK_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Says what [`pack_dir::repair`] removed from the repository at `gitdir`, if anything.
pub fn log_repaired(gitdir: &Path, repaired: &pack_dir::Repaired) {
    if !repaired.is_empty() {
        tracing::warn!(
            repository = %gitdir.display(),
            orphan_indexes = ?repaired.orphan_indexes,
            leftovers = ?repaired.leftovers,
            "removed what killed writers left in objects/pack"
        );
    }
}

static FSYNC: std::sync::Mutex<Option<bool>> = std::sync::Mutex::new(None);

/// Whether libgit2's process-wide fsync option is on: our own renames follow it.
fn fsync_on() -> bool {
    FSYNC
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .unwrap_or(false)
}

/// Sets libgit2's process-wide fsync option, only when it changes: the service sets it once at
/// start-up, before any thread writes.
fn set_libgit2_fsync(on: bool) -> Result<()> {
    let mut current = FSYNC
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if *current == Some(on) {
        return Ok(());
    }
    // SAFETY: this option takes exactly one int (settings.c reads `va_arg(ap, int)`); libgit2
    // was initialised by git2 when a repository was opened.
    let status = unsafe {
        libgit2_sys::git_libgit2_opts(
            libgit2_sys::GIT_OPT_ENABLE_FSYNC_GITDIR as std::ffi::c_int,
            std::ffi::c_int::from(on),
        )
    };
    if status < 0 {
        return Err(git2::Error::from_str("libgit2 refused its fsync option").into());
    }
    *current = Some(on);
    Ok(())
}

/// Sets libgit2's process-wide object cache once. Trees of any size may be cached (its
/// default caches trees up to 4 KiB, so a large directory would be parsed again for every path
/// looked up under it), but the whole cache stays under 8 MiB (its default, 256 MiB, let a
/// server holding 10,000 tenants keep every tree it ever read). libgit2's pack windows keep
/// their defaults: with packs mapped in 2 MiB windows, 4 MiB at most, its indexer rejected a
/// sound 1.8-million-object pack ("unexpected data at the end of the pack"), and 4 / 16 MiB
/// made that repack twice as slow.
fn limit_libgit2_memory() -> Result<()> {
    const CACHE: usize = 8 << 20;
    static DONE: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        // SAFETY: global options read by libgit2 as (int, size_t) and (ssize_t); set once,
        // before any repository is opened.
        let set = || unsafe {
            git2::opts::set_cache_object_limit(git2::ObjectType::Tree, 4 << 20)?;
            if libgit2_sys::git_libgit2_opts(
                libgit2_sys::GIT_OPT_SET_CACHE_MAX_SIZE as std::ffi::c_int,
                CACHE as isize,
            ) < 0
            {
                return Err(git2::Error::from_str("libgit2 refused its cache size"));
            }
            Ok(())
        };
        set().map_err(|e: git2::Error| e.to_string())
    })
    .clone()
    .map_err(|e| git2::Error::from_str(&e).into())
}

/// A repository setting this code wrote for a while (`core.fsyncObjectFiles`): libgit2 ORs it
/// with its own option, so it would keep syncing with `GITOPS_FSYNC=false`, and git warns that
/// it is deprecated. Removed on open.
const OLD_FSYNC_CONFIG: &str = "core.fsyncObjectFiles";

/// The top-level README that `billing init` and the first commit put in a new repository.
pub const OPERATOR_README: &str = include_str!("operator_readme.md");

impl GitOpsRepo {
    /// Opens the existing bare repository at `path` as it is: a second handle beside the one
    /// [`GitOpsRepo::open_or_init`] made (the network thread's), with the fsync setting in force.
    pub fn open_existing(path: &Path, branch: &str, author: Author) -> Result<Self> {
        Ok(GitOpsRepo {
            repo: Repository::open_bare(path)?,
            path: path.to_path_buf(),
            branch: branch.to_string(),
            author,
            unpacked: std::cell::Cell::new(0),
            fsync: fsync_on(),
            stale_lock_after: DEFAULT_STALE_LOCK_AFTER,
        })
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
        let repaired = pack_dir::repair(path, DEFAULT_STALE_LOCK_AFTER)?;
        log_repaired(path, &repaired);
        if let Ok(mut local) = repo.config()?.open_level(git2::ConfigLevel::Local) {
            if local.get_entry(OLD_FSYNC_CONFIG).is_ok() {
                local.remove(OLD_FSYNC_CONFIG)?;
            }
            let (key, value) = write::DELTA_WINDOW_MEMORY;
            if local.get_i64(key).ok() != Some(value) {
                local.set_i64(key, value)?;
            }
        }
        let mut this = GitOpsRepo {
            repo,
            path: path.to_path_buf(),
            branch: branch.to_string(),
            author,
            unpacked: std::cell::Cell::new(0),
            fsync: false,
            stale_lock_after: DEFAULT_STALE_LOCK_AFTER,
        };
        this.set_fsync(true)?;
        // More than one pack: leftovers of an earlier process, for the first idle repack.
        this.unpacked
            .set(pack::pack_count(path).saturating_sub(1).min(1));
        if this.head()?.is_none() {
            let mut layout = Changes::new();
            layout.insert(
                "README.md".into(),
                Entry::File(OPERATOR_README.as_bytes().to_vec()),
            );
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

    pub fn set_stale_lock_after(&mut self, age: std::time::Duration) {
        self.stale_lock_after = age;
    }

    /// After a write that a lock may have blocked (libgit2's `Locked`, or a path remote's
    /// refused ref update), removes the lock files older than the stale age here and, for a
    /// path remote, there: a live writer holds one for milliseconds, so an old one is a dead
    /// writer's. Says whether it removed any: the caller then tries once more.
    fn removed_stale_locks(&self, remote: Option<&Remote>) -> bool {
        let mut dirs = vec![self.path.clone()];
        dirs.extend(remote.and_then(Remote::local_dir));
        let mut removed = false;
        for dir in dirs {
            for lock in locks::remove_stale(&dir, self.stale_lock_after) {
                tracing::warn!(lock = %lock.display(), "removed a stale Git lock file left by a dead writer");
                removed = true;
            }
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
        match self.repo.refname_to_id(&branch_refname(branch)) {
            Ok(oid) => Ok(Some(oid)),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
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
        match self.commit_once(branch, start, changes, message) {
            Err(e) if e.is_locked() && self.removed_stale_locks(None) => {
                self.commit_once(branch, start, changes, message)
            }
            done => done,
        }
    }

    fn commit_once(
        &mut self,
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
        let Some(built) = write::build(&self.repo, parent, changes, message, &sig, &sig)? else {
            return Ok(None);
        };
        built.write(&self.repo)?;
        let oid = built.commit;
        let refname = branch_refname(branch);
        // Compare-and-swap on the tip: if it moved meanwhile the update fails, nothing is lost.
        match current {
            Some(old) => {
                self.repo
                    .reference_matching(&refname, oid, true, old, message_subject(message))?
            }
            None => self
                .repo
                .reference(&refname, oid, false, message_subject(message))?,
        };
        self.unpacked.set(self.unpacked.get() + 1);
        Ok(Some(oid))
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

/// Bounds how many pack files libgit2 keeps open at once: every commit adds a small pack until
/// the next repack. Call once, before any repository is opened.
pub fn limit_open_packs() -> Result<()> {
    // SAFETY: sets a global option; called at start-up, before other threads use libgit2.
    unsafe { git2::opts::set_mwindow_file_limit(128)? };
    Ok(())
}

/// Bounds every fetch and push: connecting, and each wait for the remote to send or take
/// data, give up after `timeout` (libgit2 waits forever by default, so a remote that accepts
/// a connection and never answers held a push for good). Process-wide; call at start-up.
pub fn limit_network_waits(timeout: std::time::Duration) -> Result<()> {
    let ms = std::ffi::c_int::try_from(timeout.as_millis()).unwrap_or(std::ffi::c_int::MAX);
    // SAFETY: global options read by libgit2 as one int each; set before network use.
    unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(ms)?;
        git2::opts::set_server_timeout_in_milliseconds(ms)?;
    }
    Ok(())
}

fn branch_refname(branch: &str) -> String {
    format!("refs/heads/{branch}")
}

fn message_subject(message: &str) -> &str {
    message.lines().next().unwrap_or("commit")
}

/// Builds a commit message with the trailers later tools parse (`Tenant-Id:`, `Change-Id:`).
pub fn message(subject: &str, body: &[String], trailers: &[(&str, String)]) -> String {
    let mut msg = subject.trim().to_string();
    msg.push('\n');
    if !body.is_empty() {
        msg.push('\n');
        for line in body {
            msg.push_str(line);
            msg.push('\n');
        }
    }
    if !trailers.is_empty() {
        msg.push('\n');
        for (key, value) in trailers {
            msg.push_str(&format!("{key}: {value}\n"));
        }
    }
    msg
}

#[cfg(test)]
mod tests;
