//! Repacking with git: small packs rolled together geometrically, nothing lost (unreachable
//! objects too), and an operator's `git gc` in between costs nothing special.

use super::super::tests::{assert_git_fsck, author, count_loose, packs};
use super::super::{Changes, Entry};
use super::*;

fn change(i: usize) -> Changes {
    let mut c = Changes::new();
    c.insert(
        format!("tenants/t{}/a.yaml", i % 10),
        Entry::File(format!("v{i}\n").into_bytes()),
    );
    c
}

#[test]
fn packs_stay_few_over_many_repacks_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.git");
    let mut repo = GitOpsRepo::open_or_init(&path, "main", author()).unwrap();
    repo.set_fsync(false).unwrap();
    let objects = path.join("objects");
    let mut made = Vec::new();
    let mut most = 0;
    for i in 0..200 {
        // Every tenth change goes to a review branch that is then deleted, as an
        // abandoned or squash-merged review's is: its objects are reachable from no ref.
        let on = if i % 10 == 9 {
            format!("tenant/t/{i}")
        } else {
            "main".into()
        };
        made.push(
            repo.commit_on(&on, None, &change(i), &format!("c{i}"))
                .unwrap()
                .unwrap(),
        );
        assert!(repo.unpacked_commits() >= 1);
        if on != "main" {
            repo.delete_branch(None, &on).unwrap();
        }
        let done = repo.repack().unwrap();
        assert_eq!(done.packs_after, packs(&objects).len());
        assert_eq!(repo.unpacked_commits(), 0);
        most = most.max(done.packs_after);
    }
    // 200 commits of a few objects each: a geometric series keeps about log2 of that.
    assert!(most <= 12, "{most} packs at most");
    assert_eq!(count_loose(&objects), 0);
    let other = GitOpsRepo::open_or_init(&path, "main", author()).unwrap();
    for (i, id) in made.iter().enumerate() {
        let commit = other
            .repository()
            .find_commit(*id)
            .unwrap_or_else(|e| panic!("c{i}: {e}"));
        assert_eq!(commit.summary(), Some(format!("c{i}").as_str()));
    }
    assert_git_fsck(&path);
}

#[test]
fn after_an_operators_gc_a_repack_goes_on_cheaply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.git");
    let mut repo = GitOpsRepo::open_or_init(&path, "main", author()).unwrap();
    for i in 0..20 {
        repo.commit(&change(i), &format!("c{i}")).unwrap().unwrap();
    }
    let all = repo.repack_all().unwrap();
    assert_eq!((all.packs_before, all.packs_after), (21, 1));
    let gc = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(&path)
        .args(["gc", "-q"])
        .status();
    match gc {
        Ok(status) => assert!(status.success()),
        Err(e) => return crate::skip::skip_unless_ci("git gc", format!("no git CLI: {e}")),
    }
    let big = packs(&path.join("objects"));
    repo.commit(&change(99), "after gc").unwrap().unwrap();
    let done = repo.repack().unwrap();
    assert_eq!(done.packs_before, 2);
    assert!(
        packs(&path.join("objects")).is_superset(&big),
        "the one large pack is not rewritten for one small commit"
    );
    assert_eq!(
        repo.read("tenants/t9/a.yaml").unwrap().as_deref(),
        Some(&b"v99\n"[..])
    );
    assert_git_fsck(&path);
}
