//! Repacking against libgit2 and the git CLI: small packs folded, nothing lost.

use super::super::tests::{author, count_loose, packs};
use super::super::{Changes, Entry};
use super::*;

#[test]
fn repack_packs_small_commits_and_keeps_history_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.git");
    let mut repo = GitOpsRepo::open_or_init(&path, "main", author()).unwrap();
    let objects = path.join("objects");
    let mut commits = Vec::new();
    for i in 0..12 {
        let mut c = Changes::new();
        c.insert(
            format!("tenants/t{}", i % 4),
            Entry::Dir([("a.yaml".into(), format!("v{i}\n").into_bytes())].into()),
        );
        commits.push(repo.commit(&c, &format!("c{i}")).unwrap().unwrap());
    }
    assert_eq!(
        repo.unpacked_commits(),
        13,
        "the layout commit and twelve more"
    );
    assert_eq!(count_loose(&objects), 0, "each commit wrote a pack");
    assert_eq!(packs(&objects).len(), 13);

    let first = repo.repack().unwrap();
    assert_eq!(packs(&objects).len(), 1, "one pack replaced them all");
    assert!(
        first.objects >= 12 * 4 && first.packs_removed == 13,
        "{first:?}"
    );
    assert_eq!(repo.unpacked_commits(), 0);
    assert_eq!(
        repo.repack().unwrap().objects,
        0,
        "nothing new, nothing packed"
    );

    // Later commits are packed on their own, not with everything again. A new tenant
    // whose file the repository already has (packed before) must not leave its commit's
    // pack behind (`tenants/t3` holds the same file at the tip).
    let mut c = Changes::new();
    c.insert(
        "tenants/t9".into(),
        Entry::Dir([("a.yaml".into(), b"new\n".to_vec())].into()),
    );
    c.insert(
        "tenants/t8".into(),
        Entry::Dir([("a.yaml".into(), b"v11\n".to_vec())].into()),
    );
    let last = repo.commit(&c, "c12").unwrap().unwrap();
    let second = repo.repack().unwrap();
    assert!(second.objects <= 6, "{second:?}");
    assert_eq!(
        (packs(&objects).len(), second.packs_removed),
        (2, 1),
        "the first repack's pack stays, the commit's goes"
    );

    // Another process sees the whole history, and Git itself finds nothing missing.
    let other = GitOpsRepo::open_or_init(&path, "main", author()).unwrap();
    assert_eq!(other.unpacked_commits(), 0);
    assert_eq!(
        other.read("tenants/t9/a.yaml").unwrap().as_deref(),
        Some(&b"new\n"[..])
    );
    for (i, id) in commits.iter().enumerate() {
        let commit = other
            .repository()
            .find_commit(*id)
            .unwrap_or_else(|e| panic!("c{i}: {e}"));
        assert_eq!(commit.summary(), Some(format!("c{i}").as_str()));
        assert!(other.contains(last, *id).unwrap());
    }
    super::super::tests::assert_git_fsck(&path);
}

#[test]
fn packs_stay_few_over_many_repacks_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.git");
    let mut repo = GitOpsRepo::open_or_init(&path, "main", author()).unwrap();
    repo.set_fsync(false).unwrap();
    let objects = path.join("objects");
    let mut made = Vec::new();
    for i in 0..300 {
        let mut c = Changes::new();
        c.insert(
            format!("tenants/t{}/a.yaml", i % 10),
            Entry::File(format!("v{i}\n").into_bytes()),
        );
        // Every tenth change goes to a review branch that is then deleted, as an
        // abandoned or squash-merged review's is: its objects are reachable from no ref.
        let on = if i % 10 == 9 {
            format!("tenant/t/{i}")
        } else {
            "main".into()
        };
        made.push(
            repo.commit_on(&on, None, &c, &format!("c{i}"))
                .unwrap()
                .unwrap(),
        );
        if on != "main" {
            repo.delete_branch(None, &on).unwrap();
        }
        repo.repack().unwrap();
        assert!(
            packs(&objects).len() <= 10,
            "{} packs after {i} repacks",
            packs(&objects).len()
        );
    }
    assert_eq!(count_loose(&objects), 0);
    let other = GitOpsRepo::open_or_init(&path, "main", author()).unwrap();
    for (i, id) in made.iter().enumerate() {
        let commit = other
            .repository()
            .find_commit(*id)
            .unwrap_or_else(|e| panic!("c{i}: {e}"));
        assert_eq!(commit.summary(), Some(format!("c{i}").as_str()));
    }
    super::super::tests::assert_git_fsck(&path);

    // Without its record (a repository from before it, or a crash in between), the next
    // repack puts everything in one pack, and the series starts again.
    std::fs::remove_file(path.join("billing-packs")).unwrap();
    let mut c = Changes::new();
    c.insert("tenants/t0/a.yaml".into(), Entry::File(b"last\n".to_vec()));
    repo.commit(&c, "last").unwrap().unwrap();
    repo.repack().unwrap();
    assert_eq!(packs(&objects).len(), 1, "one pack holds everything");
    for id in &made {
        assert!(repo.repository().find_commit(*id).is_ok(), "{id} kept");
    }
    super::super::tests::assert_git_fsck(&path);
}
