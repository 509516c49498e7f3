//! What a kill at each step of a pack write leaves, and that `repair` makes the repository
//! whole again: the next commit succeeds, `git fsck --strict` is clean, `git count-objects -v`
//! shows no garbage.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::super::tests::{assert_git_fsck, author, packs};
use super::super::{Changes, Entry, GitOpsRepo};
use super::*;

fn change(i: usize) -> Changes {
    let mut c = Changes::new();
    c.insert(
        format!("tenants/t{i}"),
        Entry::Dir([("a.yaml".into(), format!("value {i}\n").into_bytes())].into()),
    );
    c
}

/// `git count-objects -v`'s `garbage:` line (None without a git CLI outside CI).
fn garbage(gitdir: &Path) -> Option<u64> {
    let out = match std::process::Command::new("git")
        .args(["count-objects", "-v"])
        .current_dir(gitdir)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            crate::skip::skip_unless_ci("git count-objects", format!("no git CLI: {e}"));
            return None;
        }
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("garbage: ")?.trim().parse().ok())
}

fn age(path: &Path, by: Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - by).unwrap();
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The state libgit2's own indexer leaves when killed between its two renames: the commit's
/// index in place, its pack still under the temporary name, the branch not moved.
fn kill_between_libgit2_renames(repo: &mut GitOpsRepo, path: &Path) -> git2::Oid {
    let before = repo.head().unwrap().unwrap();
    let old_packs = packs(&path.join("objects"));
    repo.commit(&change(1), "killed").unwrap().unwrap();
    let new_pack = packs(&path.join("objects"))
        .difference(&old_packs)
        .next()
        .cloned()
        .expect("the commit wrote a pack");
    std::fs::rename(&new_pack, path.join("objects/pack/pack_git2_a1b2c3")).unwrap();
    repo.repository()
        .reference("refs/heads/main", before, true, "the ref never moved")
        .unwrap();
    before
}

#[test]
fn an_index_without_its_pack_is_removed_and_the_commit_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.git");
    let mut repo = GitOpsRepo::open_or_init(&path, "main", author()).unwrap();
    repo.commit(&change(0), "first").unwrap().unwrap();
    kill_between_libgit2_renames(&mut repo, &path);
    drop(repo);
    if let Some(g) = garbage(&path) {
        assert!(g > 0, "git sees the index without its pack as garbage");
    }

    // A young orphan may be a live writer's: a reopen (the CLI beside a server) leaves it, and
    // the job redone meanwhile commits, reads back and repacks all the same.
    let mut repo = GitOpsRepo::open_or_init(&path, "main", author()).unwrap();
    repo.commit(&change(1), "again")
        .unwrap()
        .expect("a new commit");
    assert_eq!(
        repo.read("tenants/t1/a.yaml").unwrap().as_deref(),
        Some(&b"value 1\n"[..])
    );
    repo.repack().unwrap();
    assert_git_fsck(&path);
    drop(repo);

    // Serve's start-up repair (age zero), or one past the stale age, takes it away.
    assert!(repair(&path, Duration::from_secs(3600)).unwrap().is_empty());
    let repaired = repair(&path, Duration::ZERO).unwrap();
    let name = |p: &std::path::PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
    let mut removed: Vec<String> = repaired.iter().map(name).collect();
    removed.sort();
    assert_eq!(
        removed.len(),
        2,
        "the index without its pack, the temporary pack: {removed:?}"
    );
    assert!(removed[0].ends_with(".idx"), "{removed:?}");
    assert_eq!(removed[1], "pack_git2_a1b2c3", "{removed:?}");
    assert_eq!(garbage(&path).unwrap_or(0), 0);
    assert_git_fsck(&path);
    let mut repo = GitOpsRepo::open_or_init(&path, "main", author()).unwrap();
    repo.commit(&change(3), "after the repair")
        .unwrap()
        .unwrap();
    repo.repack().unwrap();
    assert_eq!(garbage(&path).unwrap_or(0), 0);
}

#[test]
fn a_kill_inside_our_own_write_leaves_nothing_a_reader_trusts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.git");
    let mut repo = GitOpsRepo::open_or_init(&path, "main", author()).unwrap();
    let before = repo.head().unwrap().unwrap();
    let pack_dir = path.join("objects/pack");
    let sound = files(&pack_dir);

    // Killed while indexing: a staging directory with a partial pack, nothing in objects/pack.
    let staging = path.join("objects").join(STAGING).join("4242-0");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("pack_git2_x"), b"PACK partial").unwrap();
    // Killed between our two renames: the pack in place, its index not.
    std::fs::write(
        pack_dir.join("pack-0123456789012345678901234567890123456789.pack"),
        b"PACK",
    )
    .unwrap();
    // A killed push's lock on a pack index, as a path remote shows.
    std::fs::write(pack_dir.join("pack_git2_9f8e.idx.lock"), b"").unwrap();
    for leftover in files(&pack_dir).iter().filter(|f| !sound.contains(f)) {
        age(&pack_dir.join(leftover), Duration::from_secs(120));
    }

    // Nothing there is trusted: the next commit writes everything it needs and reads back.
    repo.commit(&change(2), "after the kill").unwrap().unwrap();
    assert_eq!(
        repo.read("tenants/t2/a.yaml").unwrap().as_deref(),
        Some(&b"value 2\n"[..])
    );
    assert!(repo.head().unwrap() != Some(before));

    // A repack tidies what is older than the stale age; the staging directory too.
    let staging_dir = path.join("objects").join(STAGING);
    for entry in std::fs::read_dir(&staging_dir).unwrap().flatten() {
        let dir = std::fs::File::open(entry.path()).unwrap();
        dir.set_modified(SystemTime::now() - Duration::from_secs(120))
            .unwrap();
    }
    repo.repack().unwrap();
    assert_eq!(files(&staging_dir), Vec::<String>::new());
    let left = files(&pack_dir);
    assert!(
        left.iter()
            .all(|f| f.starts_with("pack-") && !f.ends_with(".lock")),
        "{left:?}"
    );
    for pack in left.iter().filter(|f| f.ends_with(".pack")) {
        let idx = pack.replace(".pack", ".idx");
        assert!(left.contains(&idx), "{pack} has no index: {left:?}");
    }
    assert_eq!(garbage(&path).unwrap_or(0), 0);
    assert_git_fsck(&path);
}

#[test]
fn commits_leave_no_staging_behind_and_every_index_has_its_pack() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.git");
    let mut repo = GitOpsRepo::open_or_init(&path, "main", author()).unwrap();
    for i in 0..5 {
        repo.commit(&change(i), &format!("c{i}")).unwrap().unwrap();
    }
    repo.repack().unwrap();
    let staging = path.join("objects").join(STAGING);
    assert_eq!(files(&staging), Vec::<String>::new());
    let names = files(&path.join("objects/pack"));
    assert!(!names.is_empty());
    for name in &names {
        let dir = path.join("objects/pack");
        assert!(!left_over(&dir, name), "{name} in {names:?}");
    }
    assert_eq!(garbage(&path).unwrap_or(0), 0);
}
