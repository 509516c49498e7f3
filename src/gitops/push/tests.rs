//! Pushes to bare remotes: non-fast-forward re-application, other writers kept.

use super::super::Author;
use super::*;

fn author(name: &str) -> Author {
    Author {
        name: name.into(),
        email: format!("{name}@localhost"),
    }
}

fn tenant(id: &str, body: &str) -> Changes {
    let mut c = Changes::new();
    c.insert(
        format!("tenants/{id}"),
        Entry::Dir([("a.yaml".into(), body.as_bytes().to_vec())].into()),
    );
    c.insert(
        format!("flux-tenants/{id}.yaml"),
        Entry::File(format!("name: {id}\n").into_bytes()),
    );
    c
}

fn files_at(repo: &git2::Repository, commit: Oid) -> Vec<String> {
    let tree = repo.find_commit(commit).unwrap().tree().unwrap();
    let mut out = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |root, e| {
        if e.kind() == Some(git2::ObjectType::Blob) {
            out.push(format!("{root}{}", e.name().unwrap()));
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    out
}

#[test]
fn two_writers_race_and_both_changes_land() {
    let dir = tempfile::tempdir().unwrap();
    let remote_path = dir.path().join("remote.git");
    let bare = git2::Repository::init_bare(&remote_path).unwrap();
    let remote = Remote {
        url: remote_path.display().to_string(),
        auth: PushAuth::default(),
    };

    let mut a = GitOpsRepo::open_or_init(&dir.path().join("a.git"), "main", author("a")).unwrap();
    a.sync_from(&remote).unwrap();
    a.commit(&tenant("t1", "one"), "tenant t1: create\n\nTenant-Id: t1\n")
        .unwrap();
    assert!(matches!(
        a.push(&remote, 3).unwrap(),
        PushOutcome::Pushed(_)
    ));

    let mut b = GitOpsRepo::open_or_init(&dir.path().join("b.git"), "main", author("b")).unwrap();
    b.sync_from(&remote).unwrap();
    assert_eq!(
        b.head().unwrap(),
        a.head().unwrap(),
        "a new writer starts from the remote tip"
    );

    // Both commit on the same base; A pushes first, B is rejected as non-fast-forward.
    b.commit(&tenant("t2", "two"), "tenant t2: create\n\nTenant-Id: t2\n")
        .unwrap();
    a.commit(
        &tenant("t3", "three"),
        "tenant t3: create\n\nTenant-Id: t3\n",
    )
    .unwrap();
    a.push(&remote, 3).unwrap();
    let PushOutcome::Pushed(tip) = b.push(&remote, 3).unwrap() else {
        panic!("B should push")
    };

    let remote_tip = bare.refname_to_id("refs/heads/main").unwrap();
    assert_eq!(remote_tip, tip);
    let files = files_at(&bare, remote_tip);
    for f in [
        "tenants/t1/a.yaml",
        "tenants/t2/a.yaml",
        "tenants/t3/a.yaml",
        "flux-tenants/t2.yaml",
        "README.md",
    ] {
        assert!(files.contains(&f.to_string()), "{f} missing from {files:?}");
    }
    let head = bare.find_commit(remote_tip).unwrap();
    assert!(
        head.message().unwrap().contains("Tenant-Id: t2"),
        "the re-applied commit keeps its message"
    );
    // History is linear: three tenant commits and one layout commit, nothing duplicated.
    let mut walk = bare.revwalk().unwrap();
    walk.push(remote_tip).unwrap();
    let subjects: Vec<String> = walk
        .map(|o| {
            bare.find_commit(o.unwrap())
                .unwrap()
                .summary()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        subjects,
        [
            "tenant t2: create",
            "tenant t3: create",
            "tenant t1: create",
            "Initialise the GitOps repository layout"
        ]
    );
}

#[test]
fn unreachable_remote_is_an_error_and_local_commits_stay() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Remote {
        url: dir.path().join("missing.git").display().to_string(),
        auth: PushAuth::default(),
    };
    let mut a = GitOpsRepo::open_or_init(&dir.path().join("a.git"), "main", author("a")).unwrap();
    let c = a
        .commit(&tenant("t1", "one"), "tenant t1: create")
        .unwrap()
        .unwrap();
    assert!(a.push(&remote, 3).is_err());
    assert_eq!(a.head().unwrap(), Some(c));
}
