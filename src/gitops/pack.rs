//! Keeping the repository packed. Each small commit writes a small pack of its own, and
//! re-applied commits write loose objects; [`GitOpsRepo::repack`] moves everything written
//! since the last repack into one delta-compressed pack, folding in the newest consolidated
//! packs as `series` decides, and deletes the packs and loose copies it supersedes, the way
//! `git repack --geometric=2 -d` would, without a work tree or the git CLI.

use std::collections::HashSet;
use std::path::Path;

use git2::{Oid, PackBuilder, Repository};

use super::pack_dir::Written;
use super::series::{Segment, Series};
use super::{GitOpsRepo, Result};

/// The branch's tip at the last repack: commits since are counted as unpacked, and a series
/// record that does not end here is stale. Local only: never pushed.
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
        let repaired = super::pack_dir::repair(&self.path, self.stale_lock_after)?;
        super::log_repaired(&self.path, &repaired);
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

/// A pack builder holding what is reachable from `tips` but not from `hide`, with the file
/// names libgit2 sorts delta candidates by.
fn walk<'r>(repo: &'r Repository, tips: &[Oid], hide: &[Oid]) -> Result<PackBuilder<'r>> {
    let mut walk = repo.revwalk()?;
    for tip in tips {
        walk.push(*tip)?;
    }
    for id in hide {
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
    // An empty series hides nothing: everything goes into the new pack.
    let mut series = recorded_series(repo, path)
        .filter(|_| !all)
        .unwrap_or_default();
    let in_series: HashSet<&str> = series.packs().collect();
    let mut absorbed: Vec<String> = pack_names(&dir)?
        .into_iter()
        .filter(|name| !in_series.contains(name.as_str()))
        .collect();
    let mut ids = HashSet::new();
    for name in &absorbed {
        ids.extend(index_ids(&dir, name)?);
    }
    let mut builder = walk(repo, &tips, series.newest_tips())?;
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
        builder = walk(repo, &tips, series.tips_below(merged).unwrap_or_default())?;
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
    let pack = super::write::store_pack(path, &odb, &mut builder)?;
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

/// The packs under `dir` by file stem (`pack-<checksum>`), those with a `.keep` left out, and
/// an index without its pack too (a killed writer's, which git and libgit2 skip as well).
fn pack_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "idx")
            && dir.join(format!("{stem}.pack")).exists()
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
mod tests;
