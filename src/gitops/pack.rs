//! Keeping the repository packed. Each small commit writes a small pack of its own (at 10,000
//! tenants with the two ~0.4 MB listings stored whole), and re-applied commits write loose
//! objects; [`GitOpsRepo::repack`] moves everything written since the last repack into one
//! delta-compressed pack and deletes the small packs and loose copies it supersedes, the way
//! `git gc` would, without a work tree or the git CLI.

use std::collections::HashSet;
use std::path::Path;

use git2::{Oid, PackBuilder, Repository};

use super::series::{Segment, Series};
use super::write::Written;
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

    /// Writes every object new since the last repack into one pack, folding in the newest
    /// consolidated packs as the series requires (see `series`), and removes the packs and
    /// loose copies it supersedes. Cheap when there is nothing to do.
    pub fn repack(&mut self) -> Result<Repacked> {
        let Some(head) = self.head()? else {
            return Ok(Repacked::default());
        };
        self.consolidate(head, false)
    }

    /// Writes every object into one pack, as a repack does when the series record is missing
    /// (`git repack -a -d`, unreachable objects kept).
    pub fn repack_all(&mut self) -> Result<Repacked> {
        let Some(head) = self.head()? else {
            return Ok(Repacked::default());
        };
        self.consolidate(head, true)
    }

    fn consolidate(&mut self, head: Oid, all: bool) -> Result<Repacked> {
        let done = consolidate(&self.repo, &self.path, head, all)?;
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
fn mark_packed(repo: &Repository, commit: Oid) -> Result<()> {
    repo.reference(PACKED_REF, commit, true, "billing: packed")?;
    Ok(())
}

/// The recorded series, if it ends where the pack mark is.
fn recorded_series(repo: &Repository, path: &Path) -> Option<Series> {
    let mark = repo.refname_to_id(PACKED_REF).ok()?;
    Series::load(path).filter(|s| s.newest_tips().contains(&mark))
}

/// Records a bulk commit's own pack (`pack`, holding `objects`) as the newest consolidated one,
/// its commit as packed. Called once the branch points at `commit`.
pub(super) fn record_bulk(
    repo: &Repository,
    path: &Path,
    commit: Oid,
    pack: Written,
) -> Result<()> {
    let series = recorded_series(repo, path);
    mark_packed(repo, commit)?;
    if let Some(mut series) = series {
        series.fold(
            0,
            Segment {
                pack: pack.name,
                objects: pack.objects,
                tips: ref_tips(repo)?,
            },
        );
        series.save(path)?;
    }
    Ok(())
}

/// Every commit a ref points at (branches, review branches, remote-tracking refs, the
/// service's marks): what a repack must keep readable by name.
fn ref_tips(repo: &Repository) -> Result<Vec<Oid>> {
    let mut tips = std::collections::BTreeSet::new();
    for reference in repo.references()? {
        if let Ok(commit) = reference?.peel_to_commit() {
            tips.insert(commit.id());
        }
    }
    Ok(tips.into_iter().collect())
}

/// A pack builder holding what is reachable from `tips` but not from `hide` (None: all of it),
/// with the file names libgit2 sorts delta candidates by.
fn walk<'r>(repo: &'r Repository, tips: &[Oid], hide: Option<&[Oid]>) -> Result<PackBuilder<'r>> {
    let mut walk = repo.revwalk()?;
    for tip in tips {
        walk.push(*tip)?;
    }
    for id in hide.unwrap_or_default() {
        // A mark whose commit is gone hides nothing: more is packed, nothing is missed.
        if repo.find_commit(*id).is_ok() {
            walk.hide(*id)?;
        }
    }
    let mut builder = repo.packbuilder()?;
    builder.set_threads(0);
    builder.insert_walk(&mut walk)?;
    Ok(builder)
}

/// One repack: the objects reachable from every ref and not below the newest consolidated
/// pack, plus every object of the packs outside the series (each commit's own pack, fetched
/// packs) and of the consolidated packs folded in, so that deleting those packs loses nothing,
/// reachable or not. With `all`, or without a usable series record, everything goes into one
/// pack.
fn consolidate(repo: &Repository, path: &Path, head: Oid, all: bool) -> Result<Repacked> {
    let dir = path.join("objects/pack");
    let tips = ref_tips(repo)?;
    let recorded = recorded_series(repo, path).filter(|_| !all);
    let full = recorded.is_none();
    let mut series = recorded.unwrap_or_default();
    let in_series: HashSet<&str> = series.packs().collect();
    let mut absorbed: Vec<String> = pack_names(&dir)?
        .into_iter()
        .filter(|name| !in_series.contains(name.as_str()))
        .collect();
    let mut ids = HashSet::new();
    for name in &absorbed {
        ids.extend(index_ids(&dir, name)?);
    }
    let hide = (!full).then(|| series.newest_tips().to_vec());
    let mut builder = walk(repo, &tips, hide.as_deref())?;
    let new = builder.object_count() + ids.len();
    if new == 0 {
        // Everything the refs reach is packed already (a branch moved back, say).
        series.retip(tips);
        series.save(path)?;
        mark_packed(repo, head)?;
        return Ok(Repacked::default());
    }
    let merged = series.to_merge(new);
    if merged > 0 {
        builder = walk(repo, &tips, series.tips_below(merged))?;
        for name in series.newest_packs(merged) {
            ids.extend(index_ids(&dir, name)?);
            absorbed.push(name.to_string());
        }
    }
    for id in ids {
        // The builder skips what the walk put in already.
        builder.insert_object(id, None)?;
    }
    let odb = repo.odb()?;
    let pack = super::write::store_pack(&odb, &mut builder)?;
    // With fsync on (`GitOpsRepo::set_fsync`), libgit2's indexer has synced the new pack, its
    // index and their directory by now: before what they supersede is deleted.
    let in_pack = index_ids(&dir, &pack.name)?;
    let loose_removed = remove_loose(&path.join("objects"), &in_pack)?;
    // A pack written again byte for byte (the same objects in the same order) has the same
    // name: that one is the new pack, not a superseded one.
    absorbed.retain(|name| *name != pack.name);
    let packs_removed = remove_packs(&dir, &absorbed, &in_pack)?;
    odb.refresh()?;
    mark_packed(repo, head)?;
    series.fold(
        merged,
        Segment {
            pack: pack.name,
            objects: pack.objects,
            tips,
        },
    );
    series.save(path)?;
    Ok(Repacked {
        objects: pack.objects,
        loose_removed,
        packs_removed,
    })
}

/// The packs under `dir` by file stem (`pack-<checksum>`), those with a `.keep` left out.
fn pack_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "idx")
            && !dir.join(format!("{stem}.keep")).exists()
        {
            names.push(stem.to_string());
        }
    }
    Ok(names)
}

fn index_ids(dir: &Path, name: &str) -> Result<HashSet<Oid>> {
    pack_index_ids(&std::fs::read(dir.join(format!("{name}.idx")))?)
}

/// Deletes each pack in `names` whose objects all are in `packed`; returns how many. A pack
/// with an object found nowhere else stays.
fn remove_packs(dir: &Path, names: &[String], packed: &HashSet<Oid>) -> Result<usize> {
    let mut removed = 0;
    for name in names {
        let idx = dir.join(format!("{name}.idx"));
        let Ok(ids) = std::fs::read(&idx)
            .map_err(Into::into)
            .and_then(|b| pack_index_ids(&b))
        else {
            continue;
        };
        if ids.iter().all(|id| packed.contains(id)) {
            // The index first: without it the pack is invisible, so no reader is left half-way.
            std::fs::remove_file(&idx)?;
            for ext in ["pack", "rev"] {
                let _ = std::fs::remove_file(dir.join(format!("{name}.{ext}")));
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
}
