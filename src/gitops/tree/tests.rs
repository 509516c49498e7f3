//! Tree updates against libgit2's own trees, including a property test.

use super::*;
use git2::{FileMode, Repository, Tree};
use proptest::prelude::*;

fn read(repo: &Repository, tree: Oid, path: &str) -> Option<String> {
    let tree = repo.find_tree(tree).unwrap();
    let e = tree.get_path(std::path::Path::new(path)).ok()?;
    Some(String::from_utf8(repo.find_blob(e.id()).unwrap().content().to_vec()).unwrap())
}

fn apply(repo: &Repository, trees: &Trees, base: Option<Oid>, c: &Changes) -> Option<Oid> {
    let odb = repo.odb().unwrap();
    trees.apply(&odb, &Sink::Write(&odb), base, c).unwrap()
}

#[test]
fn replaces_directories_and_removes_empty_parents() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init_bare(dir.path()).unwrap();
    let trees = Trees::default();
    let mut c = Changes::new();
    c.insert(
        "tenants/a".into(),
        Entry::Dir(
            [
                ("x.yaml".into(), b"1".to_vec()),
                ("y.yaml".into(), b"2".to_vec()),
            ]
            .into(),
        ),
    );
    c.insert(
        "tenants/b".into(),
        Entry::Dir([("x.yaml".into(), b"3".to_vec())].into()),
    );
    c.insert("README.md".into(), Entry::File(b"hi".to_vec()));
    let t1 = apply(&repo, &trees, None, &c).unwrap();
    assert_eq!(read(&repo, t1, "tenants/a/y.yaml").as_deref(), Some("2"));

    // Replacing a directory drops files no longer rendered; siblings are untouched.
    let mut c = Changes::new();
    c.insert(
        "tenants/a".into(),
        Entry::Dir([("x.yaml".into(), b"9".to_vec())].into()),
    );
    let t2 = apply(&repo, &trees, Some(t1), &c).unwrap();
    assert_eq!(read(&repo, t2, "tenants/a/x.yaml").as_deref(), Some("9"));
    assert_eq!(read(&repo, t2, "tenants/a/y.yaml"), None);
    assert_eq!(read(&repo, t2, "tenants/b/x.yaml").as_deref(), Some("3"));
    let odb = repo.odb().unwrap();
    assert_eq!(
        trees
            .changed_children(&odb, Some(t1), t2, "tenants")
            .unwrap(),
        vec!["a".to_string()]
    );

    // Same content, same tree id: this is how "nothing changed" is detected.
    assert_eq!(apply(&repo, &trees, Some(t2), &c), Some(t2));
    assert_eq!(
        trees
            .entry(&odb, t2, "tenants/a")
            .unwrap()
            .map(|(id, _)| id),
        trees.entry_id_of(&c["tenants/a"]).unwrap(),
        "a directory's id is known without writing it"
    );

    let mut c = Changes::new();
    c.insert("tenants/a".into(), Entry::Removed);
    c.insert("tenants/b".into(), Entry::Removed);
    let t3 = apply(&repo, &trees, Some(t2), &c).unwrap();
    let t3 = repo.find_tree(t3).unwrap();
    assert!(
        t3.get_name("tenants").is_none(),
        "an emptied directory disappears"
    );
    assert!(t3.get_name("README.md").is_some());
    assert!(trees
        .apply(
            &odb,
            &Sink::Write(&odb),
            None,
            &[("a/../b".to_string(), Entry::File(vec![]))].into()
        )
        .is_err());
}

/// The reference: libgit2's own tree builder, one change at a time.
fn reference(repo: &Repository, base: Option<&Tree<'_>>, changes: &Changes) -> Option<Oid> {
    fn put(
        repo: &Repository,
        base: Option<&Tree<'_>>,
        parts: &[&str],
        leaf: Option<(Oid, i32)>,
    ) -> Option<Oid> {
        let mut builder = repo.treebuilder(base).unwrap();
        match parts {
            [name] => match leaf {
                Some((id, mode)) => {
                    builder.insert(name, id, mode).unwrap();
                }
                None => {
                    let _ = builder.remove(name);
                }
            },
            [name, rest @ ..] => {
                let sub = base
                    .and_then(|t| t.get_name(name))
                    .filter(|e| e.kind() == Some(ObjectType::Tree))
                    .map(|e| repo.find_tree(e.id()).unwrap());
                match put(repo, sub.as_ref(), rest, leaf) {
                    Some(id) => {
                        builder.insert(name, id, 0o040000).unwrap();
                    }
                    None => {
                        let _ = builder.remove(name);
                    }
                }
            }
            [] => unreachable!(),
        }
        (!builder.is_empty()).then(|| builder.write().unwrap())
    }
    let mut tree = base.map(|t| t.id());
    for (path, entry) in changes {
        let parts = split(path);
        let leaf = match entry {
            Entry::File(b) => Some((repo.blob(b).unwrap(), i32::from(FileMode::Blob))),
            Entry::Dir(files) => {
                let mut sub = None;
                for (name, b) in files {
                    let t = sub.map(|id| repo.find_tree(id).unwrap());
                    let id = repo.blob(b).unwrap();
                    sub = put(repo, t.as_ref(), &split(name), Some((id, 0o100644)));
                }
                sub.map(|id| (id, 0o040000))
            }
            Entry::Removed => None,
        };
        let t = tree.map(|id| repo.find_tree(id).unwrap());
        tree = put(repo, t.as_ref(), &parts, leaf);
    }
    tree
}

fn name() -> impl Strategy<Value = String> {
    // Names that sort around each other: prefixes, '.', '-', '/'-adjacent bytes.
    prop::sample::select(vec![
        "a", "a.b", "a-b", "a0", "ab", "b", "t1", "t1.yaml", "t10", "z",
    ])
    .prop_map(str::to_string)
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        "[a-c]{0,3}".prop_map(|s| Entry::File(s.into_bytes())),
        prop::collection::btree_map(name(), "[a-c]{0,3}", 0..3).prop_map(|files| {
            Entry::Dir(
                files
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect(),
            )
        }),
        Just(Entry::Removed),
    ]
}

fn changes() -> impl Strategy<Value = Changes> {
    let path = prop::collection::vec(name(), 1..3).prop_map(|p| p.join("/"));
    prop::collection::btree_map(path, entry(), 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Raw tree splicing gives exactly the trees libgit2's tree builder gives.
    #[test]
    fn raw_trees_match_libgit2(steps in prop::collection::vec(changes(), 1..5)) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let trees = Trees::default();
        let (mut ours, mut theirs) = (None, None);
        for step in &steps {
            // Paths where one change is below another are ambiguous; the service never
            // sends them (tenant directories and Flux files are disjoint).
            let nested = step.keys().any(|a| step.keys().any(|b| b.starts_with(&format!("{a}/"))));
            prop_assume!(!nested);
            ours = apply(&repo, &trees, ours, step);
            let base = theirs.map(|id| repo.find_tree(id).unwrap());
            theirs = reference(&repo, base.as_ref(), step);
            prop_assert_eq!(ours, theirs);
        }
    }
}

#[test]
fn large_trees_are_spliced_in_memory_and_git_accepts_them() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init_bare(dir.path()).unwrap();
    let trees = Trees::default();
    let mut all = Changes::new();
    for i in 0..1500 {
        all.insert(
            format!("tenants/t{i}/a.yaml"),
            Entry::File(format!("{i}").into_bytes()),
        );
        all.insert(
            format!("flux/t{i}.yaml"),
            Entry::File(format!("f{i}").into_bytes()),
        );
    }
    let mut root = apply(&repo, &trees, None, &all).unwrap();
    assert!(
        trees.cache.borrow().len() >= 2,
        "the big listings are cached"
    );
    for i in 0..20 {
        let mut one = Changes::new();
        one.insert(
            format!("tenants/t{}", i * 7),
            Entry::Dir([("b.yaml".into(), b"x".to_vec())].into()),
        );
        one.insert(format!("flux/n{i}.yaml"), Entry::File(b"n".to_vec()));
        let base = repo.find_tree(root).unwrap();
        let want = reference(&repo, Some(&base), &one);
        root = apply(&repo, &trees, Some(root), &one).unwrap();
        assert_eq!(Some(root), want);
    }
    let sig = git2::Signature::now("t", "t@localhost").unwrap();
    let tree = repo.find_tree(root).unwrap();
    repo.commit(Some("refs/heads/main"), &sig, &sig, "m", &tree, &[])
        .unwrap();
    super::super::tests::assert_git_fsck(dir.path());
}
