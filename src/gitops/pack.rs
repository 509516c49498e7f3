//! Keeping the repository packed. Each small commit writes a small pack of its own (at 10,000
//! tenants with the two ~0.4 MB listings stored whole), and re-applied commits write loose
//! objects; [`GitOpsRepo::repack`] moves everything written since the last repack into one
//! delta-compressed pack and deletes the small packs and loose copies it supersedes, the way
//! `git gc` would, without a work tree or the git CLI.

use std::collections::HashSet;
use std::path::Path;

use git2::{Oid, Repository};

use super::{GitOpsRepo, Result};

/// Marks what is already packed: a repack packs only what is reachable from the branch (and its
/// remote-tracking ref) but not from here. Local only: never pushed.
const PACKED_REF: &str = "refs/billing/packed";

/// What a repack did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repacked {
    pub objects: usize,
    pub loose_removed: usize,
    pub packs_removed: usize,
}

impl GitOpsRepo {
    /// Commits made since the last repack (or since this handle was opened, with leftovers from
    /// before counted once at open).
    pub fn unpacked_commits(&self) -> usize {
        self.unpacked.get()
    }

    /// Writes every object new since the last repack into one pack and removes the small packs
    /// and loose copies it supersedes. Cheap when there is nothing to do.
    pub fn repack(&mut self) -> Result<Repacked> {
        let Some(head) = self.head()? else {
            return Ok(Repacked::default());
        };
        let mut tips = vec![head];
        tips.extend(self.repo.refname_to_id(&self.remote_tracking_ref()).ok());
        let done = write_new_objects(&self.repo, &self.path, &tips)?;
        if done.packs_removed > 0 {
            // libgit2 keeps every pack it has seen open, deleted or not; a fresh handle lets go
            // of the removed ones.
            self.repo = Repository::open_bare(&self.path)?;
        }
        self.unpacked.set(0);
        Ok(done)
    }
}

/// Temporary files a killed writer left in `objects/pack` (libgit2's indexer names them
/// `pack_git2_*`; older versions of this service wrote `tmp_billing_*`): removed once older than
/// `age`, so a live writer's are kept.
pub fn remove_leftovers(repo_path: &Path, age: std::time::Duration) -> std::io::Result<()> {
    let Ok(entries) = std::fs::read_dir(repo_path.join("objects/pack")) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|e| e >= age));
        let name = entry.file_name().to_string_lossy().into_owned();
        if stale && (name.starts_with("pack_git2_") || name.starts_with("tmp_billing_")) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Records that everything reachable from `commit` is in consolidated packs.
pub(super) fn mark_packed(repo: &Repository, commit: Oid) -> Result<()> {
    repo.reference(PACKED_REF, commit, true, "billing: packed")?;
    Ok(())
}

/// Packs the objects reachable from `tips` but not from the last pack mark, deletes the loose
/// copies and small packs that pack supersedes, and moves the mark to the first tip.
fn write_new_objects(repo: &Repository, path: &Path, tips: &[Oid]) -> Result<Repacked> {
    let mut walk = repo.revwalk()?;
    for tip in tips {
        walk.push(*tip)?;
    }
    let packed = repo.refname_to_id(PACKED_REF).ok();
    if let Some(packed) = packed.filter(|id| repo.find_commit(*id).is_ok()) {
        walk.hide(packed)?;
    }
    let mut builder = repo.packbuilder()?;
    builder.set_threads(0);
    builder.insert_walk(&mut walk)?;
    let objects = builder.object_count();
    let mut loose_removed = 0;
    let mut packs_removed = 0;
    if objects > 0 {
        let odb = repo.odb()?;
        let pack = super::write::store_pack(&odb, &mut builder)?;
        // The indexer names the pack after its trailing checksum.
        let checksum = Oid::from_bytes(&pack[pack.len() - 20..])?;
        let name = format!("pack-{checksum}");
        let idx = path.join(format!("objects/pack/{name}.idx"));
        // With fsync on (`GitOpsRepo::set_fsync`), libgit2's indexer has synced the new pack,
        // its index and their directory by now: before what they supersede is deleted.
        let in_pack = pack_index_ids(&std::fs::read(idx)?)?;
        loose_removed = remove_loose(&path.join("objects"), &in_pack)?;
        packs_removed = remove_superseded_packs(&path.join("objects/pack"), &name, &in_pack)?;
        odb.refresh()?;
    }
    if let Some(first) = tips.first() {
        mark_packed(repo, *first)?;
    }
    Ok(Repacked {
        objects,
        loose_removed,
        packs_removed,
    })
}

/// Deletes every pack other than `kept` whose objects all are in `packed` (the small packs of
/// single commits); returns how many. Packs with objects found nowhere else stay.
fn remove_superseded_packs(dir: &Path, kept: &str, packed: &HashSet<Oid>) -> Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_none_or(|e| e != "idx")
            || stem == kept
            || dir.join(format!("{stem}.keep")).exists()
        {
            continue;
        }
        let Ok(ids) = std::fs::read(&path)
            .map_err(Into::into)
            .and_then(|b| pack_index_ids(&b))
        else {
            continue;
        };
        if ids.iter().all(|id| packed.contains(id)) {
            // The index first: without it the pack is invisible, so no reader is left half-way.
            std::fs::remove_file(&path)?;
            for ext in ["pack", "rev"] {
                let _ = std::fs::remove_file(dir.join(format!("{stem}.{ext}")));
            }
            removed += 1;
        }
    }
    Ok(removed)
}

/// How many commits are reachable from the branch but not from the last repack, counted
/// when a repository is opened so leftovers from an earlier process are packed too.
pub(super) fn count_unpacked(repo: &Repository, branch_ref: &str) -> usize {
    let Ok(head) = repo.refname_to_id(branch_ref) else {
        return 0;
    };
    let Ok(mut walk) = repo.revwalk() else {
        return 0;
    };
    if walk.push(head).is_err() {
        return 0;
    }
    if let Ok(packed) = repo.refname_to_id(PACKED_REF) {
        let _ = walk.hide(packed);
    }
    walk.take(10_000).count()
}

/// The object ids listed in a version-2 pack index.
fn pack_index_ids(idx: &[u8]) -> Result<HashSet<Oid>> {
    let bad = || super::GitOpsError::CorruptPackIndex;
    if idx.get(..8) != Some(&[0xff, b't', b'O', b'c', 0, 0, 0, 2][..]) {
        return Err(bad());
    }
    let count = idx
        .get(8 + 255 * 4..8 + 256 * 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(bad)?;
    let ids = idx
        .get(8 + 256 * 4..8 + 256 * 4 + count * 20)
        .ok_or_else(bad)?;
    ids.chunks_exact(20)
        .map(|id| Oid::from_bytes(id).map_err(Into::into))
        .collect()
}

/// Deletes loose objects (`objects/xx/<38 hex>`) that `packed` holds; returns how many.
fn remove_loose(objects: &Path, packed: &HashSet<Oid>) -> Result<usize> {
    let mut removed = 0;
    for dir in std::fs::read_dir(objects)?.flatten() {
        let prefix = dir.file_name().to_string_lossy().into_owned();
        if prefix.len() != 2 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        for file in std::fs::read_dir(dir.path())?.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let Ok(id) = Oid::from_str(&format!("{prefix}{name}")) else {
                continue;
            };
            if packed.contains(&id) && std::fs::remove_file(file.path()).is_ok() {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
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
            let commit = other.repository().find_commit(*id).unwrap();
            assert_eq!(commit.summary(), Some(format!("c{i}").as_str()));
            assert!(other.contains(last, *id).unwrap());
        }
        super::super::tests::assert_git_fsck(&path);
    }
}
