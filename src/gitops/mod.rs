//! The GitOps repository: a bare repository written with git2 through in-memory tree updates.
//! It knows Git, not HTTP and not customers: it takes "these paths, these bytes, this message"
//! and returns a revision.

mod listing;
pub mod locks;
pub mod pack;
pub mod packfile;
pub mod push;
mod shared;
pub mod tree;

use std::path::{Path, PathBuf};

use git2::{Oid, Repository, RepositoryInitOptions, Signature};

use packfile::NewPack;
pub use push::{PushAuth, PushOutcome, Remote};
pub use shared::{GitHealth, SharedRepo};
pub use tree::{Changes, Entry};
use tree::{Sink, Trees};

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
    /// A pack index on disk is not a version-2 index (a truncated or foreign file).
    #[error("unreadable pack index")]
    CorruptPackIndex,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = GitOpsError> = std::result::Result<T, E>;

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
    trees: Trees,
    /// Commits not yet in a pack written by [`GitOpsRepo::repack`].
    unpacked: std::cell::Cell<usize>,
    /// Whether what a commit writes is on disk (fsync) before the branch moves.
    fsync: bool,
    /// A lock file older than this is a dead writer's and is removed when it blocks us.
    stale_lock_after: std::time::Duration,
}

/// How old a lock file must be before it is taken for a dead writer's (a live one holds it for
/// milliseconds).
pub const DEFAULT_STALE_LOCK_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Sets libgit2's process-wide fsync option, only when it changes: the service sets it once at
/// start-up, before any thread writes.
fn set_libgit2_fsync(on: bool) -> Result<()> {
    static CURRENT: std::sync::Mutex<Option<bool>> = std::sync::Mutex::new(None);
    let mut current = CURRENT
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

/// A repository setting this code wrote for a while (`core.fsyncObjectFiles`): libgit2 ORs it
/// with its own option, so it would keep syncing with `GITOPS_FSYNC=false`, and git warns that
/// it is deprecated. Removed on open.
const OLD_FSYNC_CONFIG: &str = "core.fsyncObjectFiles";

/// The top-level README that `billing init` and the first commit put in a new repository.
pub const OPERATOR_README: &str = include_str!("operator_readme.md");

impl GitOpsRepo {
    /// Opens the bare repository at `path`, creating it (with the layout's README) if missing.
    pub fn open_or_init(path: &Path, branch: &str, author: Author) -> Result<Self> {
        let repo = match Repository::open_bare(path) {
            Ok(repo) => repo,
            Err(_) => {
                std::fs::create_dir_all(path)?;
                let mut opts = RepositoryInitOptions::new();
                opts.bare(true).initial_head(branch).mkpath(true);
                Repository::init_opts(path, &opts)?
            }
        };
        packfile::remove_leftovers(path, std::time::Duration::from_secs(600))?;
        if let Ok(mut local) = repo.config()?.open_level(git2::ConfigLevel::Local) {
            if local.get_entry(OLD_FSYNC_CONFIG).is_ok() {
                local.remove(OLD_FSYNC_CONFIG)?;
            }
        }
        let mut this = GitOpsRepo {
            repo,
            path: path.to_path_buf(),
            branch: branch.to_string(),
            author,
            trees: Trees::default(),
            unpacked: std::cell::Cell::new(0),
            fsync: false,
            stale_lock_after: DEFAULT_STALE_LOCK_AFTER,
        };
        this.set_fsync(true)?;
        this.unpacked
            .set(pack::count_unpacked(&this.repo, &this.branch_ref()));
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
    /// (the default), each commit's pack, index and branch update are fsync'ed in that order,
    /// and so are the consolidated packs before what they supersede is deleted. Off is for
    /// scratch repositories. The part libgit2 writes (refs, the repack's pack, loose objects)
    /// follows libgit2's process-wide fsync option, so this sets it for every repository of the
    /// process; `core.fsyncObjectFiles` would do it per repository, but makes every git
    /// command on the repository warn that the setting is deprecated.
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

    /// When `err` is a lock file older than the stale age blocking a write, removes it and says
    /// so: the caller tries once more.
    fn removed_stale_lock(&self, err: &dyn std::fmt::Display) -> bool {
        let removed = locks::remove_if_stale(&err.to_string(), self.stale_lock_after);
        if let Some(lock) = &removed {
            tracing::warn!(lock = %lock.display(), "removed a stale Git lock file left by a dead writer");
        }
        removed.is_some()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn branch_ref(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }

    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// The branch tip, or None in an empty repository.
    pub fn head(&self) -> Result<Option<Oid>> {
        match self.repo.refname_to_id(&self.branch_ref()) {
            Ok(oid) => Ok(Some(oid)),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Commits `changes` on top of the branch tip. Returns None, and writes no commit, when the
    /// resulting tree is the tip's tree: re-applying what is already there is free.
    ///
    /// The commit's new objects are written as one pack (two files, not one per object). Large
    /// change sets (a full re-render, a big group commit) are delta-compressed in that pack and
    /// count as packed; small ones wait for [`GitOpsRepo::repack`].
    pub fn commit(&mut self, changes: &Changes, message: &str) -> Result<Option<Oid>> {
        match self.commit_once(changes, message) {
            Err(e) if self.removed_stale_lock(&e) => self.commit_once(changes, message),
            done => done,
        }
    }

    fn commit_once(&mut self, changes: &Changes, message: &str) -> Result<Option<Oid>> {
        let bulk = tree::file_count(changes) >= BULK_FILES;
        if bulk && self.unpacked.get() > 0 {
            // Everything before a bulk pack is consolidated first, so the pack mark can move
            // past it.
            self.repack()?;
        }
        let parent = self.head()?;
        let odb = self.repo.odb()?;
        let pack = NewPack::new(&odb, bulk);
        let built = build_commit(
            &self.repo,
            &self.trees,
            &self.author,
            parent,
            changes,
            message,
            &pack,
        )?;
        let Some(oid) = built else { return Ok(None) };
        pack.write(&self.path, self.fsync)?;
        // Compare-and-swap on the tip: if it moved meanwhile the update fails, nothing is lost.
        match parent {
            Some(old) => self.repo.reference_matching(
                &self.branch_ref(),
                oid,
                true,
                old,
                message_subject(message),
            )?,
            None => {
                self.repo
                    .reference(&self.branch_ref(), oid, false, message_subject(message))?
            }
        };
        if bulk {
            pack::mark_packed(&self.repo, oid)?;
            self.unpacked.set(0);
        } else {
            self.unpacked.set(self.unpacked.get() + 1);
        }
        Ok(Some(oid))
    }

    /// Whether committing `changes` would leave the tip's tree as it is. Hashes only: writes
    /// nothing, so a later packed commit is not defeated by loose copies.
    pub fn unchanged(&self, changes: &Changes) -> Result<bool> {
        let Some(root) = self.head_tree()? else {
            return Ok(changes.is_empty());
        };
        let odb = self.repo.odb()?;
        for (path, entry) in changes {
            let current = self.trees.entry(&odb, root, path)?.map(|(id, _)| id);
            if current != self.trees.entry_id_of(entry)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A file's bytes at the branch tip.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let Some(root) = self.head_tree()? else {
            return Ok(None);
        };
        let odb = self.repo.odb()?;
        match self.trees.entry(&odb, root, path)? {
            Some((id, false)) => Ok(Some(odb.read(id)?.data().to_vec())),
            _ => Ok(None),
        }
    }

    /// The bytes of each file in `paths` at the branch tip (None where there is no file).
    pub fn read_many(&self, paths: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        let Some(root) = self.head_tree()? else {
            return Ok(vec![None; paths.len()]);
        };
        let odb = self.repo.odb()?;
        self.trees
            .entries(&odb, root, paths)?
            .into_iter()
            .map(|entry| match entry {
                Some((id, false)) => Ok(Some(odb.read(id)?.data().to_vec())),
                _ => Ok(None),
            })
            .collect()
    }

    fn head_tree(&self) -> Result<Option<Oid>> {
        let Some(head) = self.head()? else {
            return Ok(None);
        };
        Ok(Some(self.repo.find_commit(head)?.tree_id()))
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

/// Change sets with at least this many files are written as one packfile.
pub const BULK_FILES: usize = 256;

fn message_subject(message: &str) -> &str {
    message.lines().next().unwrap_or("commit")
}

/// Puts the trees and the commit object for `changes` on `parent` into `pack`, moving no ref.
/// None when the tree would not change.
fn build_commit(
    repo: &Repository,
    trees: &Trees,
    author: &Author,
    parent: Option<Oid>,
    changes: &Changes,
    message: &str,
    pack: &NewPack<'_>,
) -> Result<Option<Oid>> {
    let base = parent
        .map(|oid| repo.find_commit(oid).map(|c| c.tree_id()))
        .transpose()?;
    let odb = repo.odb()?;
    let sink = Sink::Pack(pack);
    let tree_id = match trees.apply(&odb, &sink, base, changes)? {
        Some(id) => id,
        None => pack.put(git2::ObjectType::Tree, &[], None),
    };
    if base == Some(tree_id) {
        return Ok(None);
    }
    let sig = Signature::now(&author.name, &author.email)?;
    let body = commit_object(tree_id, parent, &sig, message);
    Ok(Some(pack.put(git2::ObjectType::Commit, &body, None)))
}

/// A commit object's bytes, exactly as `git commit-tree` (and libgit2) would write them.
fn commit_object(tree: Oid, parent: Option<Oid>, sig: &Signature<'_>, message: &str) -> Vec<u8> {
    let when = sig.when();
    let minutes = when.offset_minutes();
    let person = format!(
        "{} <{}> {} {}{:02}{:02}",
        String::from_utf8_lossy(sig.name_bytes()),
        String::from_utf8_lossy(sig.email_bytes()),
        when.seconds(),
        if minutes < 0 { '-' } else { '+' },
        minutes.abs() / 60,
        minutes.abs() % 60
    );
    let mut body = format!("tree {tree}\n");
    if let Some(parent) = parent {
        body.push_str(&format!("parent {parent}\n"));
    }
    body.push_str(&format!("author {person}\ncommitter {person}\n\n{message}"));
    body.into_bytes()
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
mod tests {
    use super::*;

    pub fn count_loose(objects: &std::path::Path) -> usize {
        std::fs::read_dir(objects)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().len() == 2)
            .map(|e| std::fs::read_dir(e.path()).unwrap().count())
            .sum()
    }

    /// `git fsck --strict` finds nothing wrong in the repository at `path` (skipped without a
    /// git CLI outside CI; libgit2 has read everything back in the callers already).
    pub fn assert_git_fsck(path: &std::path::Path) {
        let out = match std::process::Command::new("git")
            .args(["fsck", "--strict", "--no-dangling"])
            .current_dir(path)
            .output()
        {
            Ok(out) => out,
            Err(e) => return crate::skip::skip_unless_ci("git fsck", format!("no git CLI: {e}")),
        };
        assert!(
            out.status.success(),
            "git fsck: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Pack files (by name) under `objects/pack`.
    pub fn packs(objects: &std::path::Path) -> std::collections::BTreeSet<std::path::PathBuf> {
        std::fs::read_dir(objects.join("pack"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pack"))
            .collect()
    }

    pub fn author() -> Author {
        Author {
            name: "billing".into(),
            email: "billing@localhost".into(),
        }
    }

    #[test]
    fn commits_are_synced_unless_turned_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.git");
        let mut repo = GitOpsRepo::open_or_init(&path, "main", author()).unwrap();
        assert!(repo.fsync, "on by default");
        let mut one = Changes::new();
        one.insert("tenants/a/x.yaml".into(), Entry::File(b"synced\n".to_vec()));
        repo.commit(&one, "synced").unwrap().expect("a commit");
        repo.repack().unwrap();

        repo.set_fsync(false).unwrap();
        one.insert("tenants/a/x.yaml".into(), Entry::File(b"not\n".to_vec()));
        repo.commit(&one, "not synced").unwrap().expect("a commit");
        assert_eq!(repo.read("tenants/a/x.yaml").unwrap().unwrap(), b"not\n");
        let config = std::fs::read_to_string(path.join("config")).unwrap();
        assert!(
            !config.contains("fsync"),
            "nothing in the config for git to warn about: {config}"
        );
        assert_git_fsck(&path);
        drop(repo);
        // A repository an earlier build marked with the deprecated setting is cleaned on open.
        git2::Repository::open_bare(&path)
            .unwrap()
            .config()
            .unwrap()
            .set_bool(OLD_FSYNC_CONFIG, true)
            .unwrap();
        let reopened = GitOpsRepo::open_or_init(&path, "main", author()).unwrap();
        let config = std::fs::read_to_string(path.join("config")).unwrap();
        assert!(!config.contains("fsync"), "{config}");
        assert!(reopened.fsync, "each open starts synced");
        assert_eq!(
            reopened.read("tenants/a/x.yaml").unwrap().unwrap(),
            b"not\n"
        );
    }

    #[test]
    fn large_change_sets_are_written_as_one_pack() {
        let dir = tempfile::tempdir().unwrap();
        let mut repo =
            GitOpsRepo::open_or_init(&dir.path().join("r.git"), "main", author()).unwrap();
        let first = repo.head().unwrap().unwrap();
        let objects = dir.path().join("r.git/objects");
        assert_eq!(count_loose(&objects), 0, "even the first commit is a pack");
        let mut bulk = Changes::new();
        for i in 0..40 {
            let files = (0..10)
                .map(|f| (format!("f{f}.yaml"), format!("t{i} f{f}\n").into_bytes()))
                .collect();
            bulk.insert(format!("tenants/b{i}"), Entry::Dir(files));
        }
        assert!(tree::file_count(&bulk) >= BULK_FILES);
        let before = packs(&objects);
        let packed = repo.commit(&bulk, "bulk").unwrap().expect("bulk commit");
        let after = packs(&objects);
        assert_eq!(count_loose(&objects), 0);
        assert_eq!(
            after.difference(&before).count(),
            2,
            "what came before was consolidated into one pack, the bulk change is another"
        );
        assert_eq!(repo.unpacked_commits(), 0, "a bulk pack needs no repack");
        assert_eq!(repo.head().unwrap(), Some(packed));
        assert_eq!(
            repo.read("tenants/b39/f9.yaml").unwrap().as_deref(),
            Some(&b"t39 f9\n"[..])
        );
        assert!(repo.contains(packed, first).unwrap());
        assert_eq!(
            repo.commit(&bulk, "bulk").unwrap(),
            None,
            "same content, no commit"
        );
        // A second bulk change packs only what is new, not every tenant again.
        let objects_in = |pack: &std::path::PathBuf| {
            // A version-2 index: 1,072 header and trailer bytes, 28 per object.
            (std::fs::metadata(pack.with_extension("idx")).unwrap().len() - 1072) / 28
        };
        let first_pack = after.iter().map(objects_in).max().unwrap();
        let mut small = Changes::new();
        for i in 0..26 {
            let mut files: std::collections::BTreeMap<String, Vec<u8>> = (0..10)
                .map(|f| (format!("f{f}.yaml"), format!("t{i} f{f}\n").into_bytes()))
                .collect();
            files.insert("f0.yaml".into(), format!("changed {i}\n").into_bytes());
            small.insert(format!("tenants/b{i}"), Entry::Dir(files));
        }
        assert!(tree::file_count(&small) >= BULK_FILES);
        repo.commit(&small, "small bulk").unwrap().expect("changed");
        let last = packs(&objects);
        let new: Vec<_> = last.difference(&after).collect();
        assert_eq!(new.len(), 1);
        assert_eq!(
            first_pack,
            400 + 40 + 3,
            "blobs, tenant trees, listing, root, commit"
        );
        assert_eq!(
            objects_in(new[0]),
            26 * 2 + 3,
            "only the changed blobs and trees"
        );

        // A fresh handle (another process) sees the packed objects too.
        let other = git2::Repository::open_bare(dir.path().join("r.git")).unwrap();
        assert_eq!(other.find_commit(packed).unwrap().summary(), Some("bulk"));
    }

    #[test]
    fn read_many_reads_files_across_directories_in_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let mut repo =
            GitOpsRepo::open_or_init(&dir.path().join("r.git"), "main", author()).unwrap();
        let mut c = Changes::new();
        for t in ["t1", "t2"] {
            c.insert(
                format!("tenants/{t}"),
                Entry::Dir([("lock.json".into(), format!("{t}\n").into_bytes())].into()),
            );
        }
        repo.commit(&c, "two tenants").unwrap().unwrap();
        let paths: Vec<String> = [
            "tenants/t2/lock.json",
            "tenants/t1/lock.json",
            "tenants/t3/lock.json",
            "tenants/t1",
            "README.md/x",
        ]
        .map(String::from)
        .to_vec();
        let read = repo.read_many(&paths).unwrap();
        assert_eq!(
            read,
            vec![
                Some(b"t2\n".to_vec()),
                Some(b"t1\n".to_vec()),
                None,
                None,
                None
            ],
            "files by path; missing paths, directories and paths below files are None"
        );
    }

    #[test]
    fn init_commits_layout_and_unchanged_content_makes_no_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut repo =
            GitOpsRepo::open_or_init(&dir.path().join("r.git"), "main", author()).unwrap();
        let first = repo.head().unwrap().expect("layout commit");
        assert!(repo.read("README.md").unwrap().is_some());

        let mut c = Changes::new();
        c.insert(
            "tenants/t1".into(),
            Entry::Dir([("a.yaml".into(), b"a: 1\n".to_vec())].into()),
        );
        let msg = message("tenant t1: create", &[], &[("Tenant-Id", "t1".into())]);
        let second = repo.commit(&c, &msg).unwrap().expect("a change commits");
        assert!(repo.contains(second, first).unwrap());
        assert!(repo.unchanged(&c).unwrap());
        assert_eq!(
            repo.commit(&c, &msg).unwrap(),
            None,
            "same content, no commit"
        );
        let mut other = c.clone();
        other.insert(
            "tenants/t1".into(),
            Entry::Dir([("a.yaml".into(), b"a: 2\n".to_vec())].into()),
        );
        assert!(!repo.unchanged(&other).unwrap());
        let mut extra = c.clone();
        extra.insert(
            "tenants/t1".into(),
            Entry::Dir(
                [
                    ("a.yaml".into(), b"a: 1\n".to_vec()),
                    ("b.yaml".into(), b"b\n".to_vec()),
                ]
                .into(),
            ),
        );
        assert!(
            !repo.unchanged(&extra).unwrap(),
            "an added file is a change"
        );
        let mut gone = Changes::new();
        gone.insert("tenants/t1".into(), Entry::Removed);
        assert!(!repo.unchanged(&gone).unwrap());
        gone.insert("tenants/t1".into(), Entry::Removed);
        let mut absent = Changes::new();
        absent.insert("tenants/nope".into(), Entry::Removed);
        assert!(repo.unchanged(&absent).unwrap());
        assert_eq!(repo.head().unwrap(), Some(second));

        let reopened =
            GitOpsRepo::open_or_init(&dir.path().join("r.git"), "main", author()).unwrap();
        assert_eq!(reopened.head().unwrap(), Some(second));
        let commit = reopened.repository().find_commit(second).unwrap();
        assert_eq!(
            commit.message().unwrap(),
            "tenant t1: create\n\nTenant-Id: t1\n"
        );
    }
}
