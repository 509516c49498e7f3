//! The repository against libgit2 and the git CLI: commits, reads, fsync, leftovers.

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
    let mut repo = GitOpsRepo::open_or_init(&dir.path().join("r.git"), "main", author()).unwrap();
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
    let before = packs(&objects);
    let packed = repo.commit(&bulk, "bulk").unwrap().expect("bulk commit");
    let after = packs(&objects);
    assert_eq!(count_loose(&objects), 0);
    assert_eq!(
        after.difference(&before).count(),
        1,
        "the bulk change is one pack of its own"
    );
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
    let mut repo = GitOpsRepo::open_or_init(&dir.path().join("r.git"), "main", author()).unwrap();
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
    let mut repo = GitOpsRepo::open_or_init(&dir.path().join("r.git"), "main", author()).unwrap();
    let first = repo.head().unwrap().expect("layout commit");
    assert!(repo.read("README.md").unwrap().is_some());

    let mut c = Changes::new();
    c.insert(
        "tenants/t1".into(),
        Entry::Dir([("a.yaml".into(), b"a: 1\n".to_vec())].into()),
    );
    let msg = "tenant t1: create\n\nTenant-Id: t1\n";
    let second = repo.commit(&c, msg).unwrap().expect("a change commits");
    assert!(repo.contains(second, first).unwrap());
    assert!(repo.unchanged(&c).unwrap());
    assert_eq!(
        repo.commit(&c, msg).unwrap(),
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

    let reopened = GitOpsRepo::open_or_init(&dir.path().join("r.git"), "main", author()).unwrap();
    assert_eq!(reopened.head().unwrap(), Some(second));
    let commit = reopened.repository().find_commit(second).unwrap();
    assert_eq!(
        commit.message().unwrap(),
        "tenant t1: create\n\nTenant-Id: t1\n"
    );
}

#[test]
fn a_commit_on_another_branch_leaves_main_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut repo = GitOpsRepo::open_or_init(&dir.path().join("r.git"), "main", author()).unwrap();
    repo.set_fsync(false).unwrap();
    let main = repo.head().unwrap();
    let mut changes = Changes::new();
    changes.insert(
        "tenants/a/b/c/abc/x.yaml".into(),
        Entry::File(b"x: 1\n".to_vec()),
    );
    let tip = repo
        .commit_on(
            "tenant/abc/change-1",
            main,
            &changes,
            "proposed\n\nChange-Id: change-1\n",
        )
        .unwrap()
        .unwrap();
    assert_eq!(repo.head().unwrap(), main, "main did not move");
    assert_eq!(repo.tip("tenant/abc/change-1").unwrap(), Some(tip));
    assert!(repo.commits_since(main).unwrap().is_empty());
    assert!(!repo.contains(main.unwrap(), tip).unwrap());
}

#[test]
fn a_pushed_branch_does_not_reach_main_through_a_sync() {
    let dir = tempfile::tempdir().unwrap();
    let remote_path = dir.path().join("remote.git");
    git2::Repository::init_opts(
        &remote_path,
        git2::RepositoryInitOptions::new()
            .bare(true)
            .initial_head("main"),
    )
    .unwrap();
    let remote = Remote {
        url: remote_path.to_str().unwrap().to_string(),
        auth: PushAuth::default(),
    };
    let mut repo = GitOpsRepo::open_or_init(&dir.path().join("r.git"), "main", author()).unwrap();
    repo.set_fsync(false).unwrap();
    repo.push(&remote, 1).unwrap();
    let main = repo.head().unwrap();
    let mut changes = Changes::new();
    changes.insert(
        "tenants/a/b/c/abc/x.yaml".into(),
        Entry::File(b"x: 1\n".to_vec()),
    );
    repo.commit_on("tenant/abc/change-1", main, &changes, "proposed\n")
        .unwrap()
        .unwrap();
    repo.push_branch(&remote, "tenant/abc/change-1").unwrap();
    let served = git2::Repository::open_bare(&remote_path).unwrap();
    assert!(served
        .refname_to_id("refs/heads/tenant/abc/change-1")
        .is_ok());
    repo.sync_from(&remote).unwrap();
    assert_eq!(repo.head().unwrap(), main, "main did not move");
    repo.repack().unwrap();
    repo.sync_from(&remote).unwrap();
    assert_eq!(repo.head().unwrap(), main, "main did not move");
    repo.delete_branch(Some(&remote), "tenant/abc/change-1")
        .unwrap();
    assert!(served
        .refname_to_id("refs/heads/tenant/abc/change-1")
        .is_err());
    assert_eq!(repo.tip("tenant/abc/change-1").unwrap(), None);
}
