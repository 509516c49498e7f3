//! In-memory tree surgery with git2: rewrite only the trees on the changed paths, never an
//! index or a work tree, so committing one tenant costs the same in a repo of any size
//! (except the one `tenants/` tree that lists every tenant).

use std::collections::BTreeMap;

use git2::{FileMode, ObjectType, Oid, Repository, Tree};

/// The new content at one path: a file, a whole directory (replacing what was there), or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File(Vec<u8>),
    Dir(BTreeMap<String, Vec<u8>>),
    Removed,
}

/// What a commit changes: repo-relative path -> new entry.
pub type Changes = BTreeMap<String, Entry>;

/// How many files a change set writes.
pub fn file_count(changes: &Changes) -> usize {
    changes
        .values()
        .map(|e| match e {
            Entry::File(_) => 1,
            Entry::Dir(files) => files.len(),
            Entry::Removed => 0,
        })
        .sum()
}

/// A resolved leaf: an object id and its mode, or removal.
type Leaf = Option<(Oid, i32)>;

const TREE_MODE: i32 = 0o040000;

/// Writes the blobs and sub-trees of `changes` and returns the new root tree (None when empty).
pub fn apply(
    repo: &Repository,
    base: Option<&Tree<'_>>,
    changes: &Changes,
) -> Result<Option<Oid>, git2::Error> {
    let mut leaves: Vec<(Vec<&str>, Leaf)> = Vec::with_capacity(changes.len());
    for (path, entry) in changes {
        let leaf = match entry {
            Entry::File(bytes) => Some((repo.blob(bytes)?, i32::from(FileMode::Blob))),
            Entry::Dir(files) => {
                let nested: Changes = files
                    .iter()
                    .map(|(p, b)| (p.clone(), Entry::File(b.clone())))
                    .collect();
                apply(repo, None, &nested)?.map(|oid| (oid, TREE_MODE))
            }
            Entry::Removed => None,
        };
        leaves.push((split(path), leaf));
    }
    let refs: Vec<(&[&str], Leaf)> = leaves.iter().map(|(p, l)| (p.as_slice(), *l)).collect();
    update(repo, base, &refs)
}

fn split(path: &str) -> Vec<&str> {
    path.split('/').filter(|p| !p.is_empty()).collect()
}

/// Applies leaves (paths relative to `base`) in one pass: each touched tree is rebuilt once.
fn update(
    repo: &Repository,
    base: Option<&Tree<'_>>,
    leaves: &[(&[&str], Leaf)],
) -> Result<Option<Oid>, git2::Error> {
    let mut builder = repo.treebuilder(base)?;
    let mut nested: BTreeMap<&str, Vec<(&[&str], Leaf)>> = BTreeMap::new();
    for (parts, leaf) in leaves {
        match parts {
            [] => continue,
            [name] => match leaf {
                Some((oid, mode)) => {
                    builder.insert(name, *oid, *mode)?;
                }
                None => {
                    if builder.get(name)?.is_some() {
                        builder.remove(name)?;
                    }
                }
            },
            [name, rest @ ..] => nested.entry(name).or_default().push((rest, *leaf)),
        }
    }
    for (name, children) in nested {
        let child_base = match base.and_then(|t| t.get_name(name)) {
            Some(e) if e.kind() == Some(ObjectType::Tree) => Some(repo.find_tree(e.id())?),
            _ => None,
        };
        match update(repo, child_base.as_ref(), &children)? {
            Some(oid) => {
                builder.insert(name, oid, TREE_MODE)?;
            }
            None => {
                if builder.get(name)?.is_some() {
                    builder.remove(name)?;
                }
            }
        }
    }
    if builder.is_empty() {
        return Ok(None);
    }
    builder.write().map(Some)
}

/// The id of the entry at `path` in `tree`, if any.
pub fn entry_id(tree: &Tree<'_>, path: &str) -> Option<Oid> {
    tree.get_path(std::path::Path::new(path))
        .ok()
        .map(|e| e.id())
}

/// Names of entries directly under `dir` whose ids differ between two trees.
pub fn changed_children(
    repo: &Repository,
    old: Option<&Tree<'_>>,
    new: &Tree<'_>,
    dir: &str,
) -> Result<Vec<String>, git2::Error> {
    let children = |tree: Option<&Tree<'_>>| -> Result<BTreeMap<String, Oid>, git2::Error> {
        let Some(id) = tree.and_then(|t| entry_id(t, dir)) else {
            return Ok(BTreeMap::new());
        };
        let Ok(sub) = repo.find_tree(id) else {
            return Ok(BTreeMap::new());
        };
        Ok(sub
            .iter()
            .filter_map(|e| Some((e.name()?.to_string(), e.id())))
            .collect())
    };
    let (a, b) = (children(old)?, children(Some(new))?);
    let mut names: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|n| a.get(*n) != b.get(*n))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(repo: &Repository, tree: Oid, path: &str) -> Option<String> {
        let tree = repo.find_tree(tree).unwrap();
        let e = tree.get_path(std::path::Path::new(path)).ok()?;
        Some(String::from_utf8(repo.find_blob(e.id()).unwrap().content().to_vec()).unwrap())
    }

    #[test]
    fn replaces_directories_and_removes_empty_parents() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
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
        let t1 = apply(&repo, None, &c).unwrap().unwrap();
        assert_eq!(read(&repo, t1, "tenants/a/y.yaml").as_deref(), Some("2"));

        // Replacing a directory drops files no longer rendered; siblings are untouched.
        let mut c = Changes::new();
        c.insert(
            "tenants/a".into(),
            Entry::Dir([("x.yaml".into(), b"9".to_vec())].into()),
        );
        let base = repo.find_tree(t1).unwrap();
        let t2 = apply(&repo, Some(&base), &c).unwrap().unwrap();
        assert_eq!(read(&repo, t2, "tenants/a/x.yaml").as_deref(), Some("9"));
        assert_eq!(read(&repo, t2, "tenants/a/y.yaml"), None);
        assert_eq!(read(&repo, t2, "tenants/b/x.yaml").as_deref(), Some("3"));
        let new = repo.find_tree(t2).unwrap();
        assert_eq!(
            changed_children(&repo, Some(&base), &new, "tenants").unwrap(),
            vec!["a".to_string()]
        );

        // Same content, same tree id: this is how "nothing changed" is detected.
        assert_eq!(apply(&repo, Some(&new), &c).unwrap(), Some(t2));

        let mut c = Changes::new();
        c.insert("tenants/a".into(), Entry::Removed);
        c.insert("tenants/b".into(), Entry::Removed);
        let t3 = apply(&repo, Some(&new), &c).unwrap().unwrap();
        let t3 = repo.find_tree(t3).unwrap();
        assert!(
            t3.get_name("tenants").is_none(),
            "an emptied directory disappears"
        );
        assert!(t3.get_name("README.md").is_some());
    }
}
