//! In-memory tree surgery: rewrite only the trees on the changed paths, never an index or a
//! work tree. Only the flat listings (`tenants/`, `flux-tenants/`) grow with the tenant count;
//! they are kept serialised in memory and spliced.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use git2::{ObjectType, Odb, Oid};

use super::listing::{corrupt, git_order, Listing, RawEntry, BLOB_MODE, TREE_MODE};
use super::packfile::{object_id, BlobPut, NewPack};

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
type Leaf = Option<(Oid, &'static [u8])>;

/// Trees at least this large (serialised) stay in memory: the flat `tenants/` and
/// `flux-tenants/` listings, rewritten by nearly every commit, are then spliced in memory
/// instead of being inflated, hash-verified and parsed from the object store each time.
const CACHED_TREE_BYTES: usize = 32 * 1024;
/// How many large trees stay in memory (the most recently used; each listing is about 60 bytes
/// a tenant).
const CACHED_TREES: usize = 6;

/// Reads and writes Git trees as raw bytes (`<mode> <name>\0<20-byte id>`, sorted the way Git
/// sorts them), keeping the newest large ones in memory. libgit2's tree builder would copy,
/// re-sort and allocate every entry of a 10,000-entry tree for a one-tenant change.
#[derive(Default)]
pub struct Trees {
    cache: RefCell<VecDeque<(Oid, Arc<Listing>)>>,
}

fn check_name(name: &str) -> Result<(), git2::Error> {
    if name.is_empty() || matches!(name, "." | ".." | ".git") || name.contains(['/', '\0']) {
        return Err(git2::Error::from_str(&format!(
            "invalid path component {name:?}"
        )));
    }
    Ok(())
}

/// Where new objects go: a repository's object store (loose), a new pack, or nowhere (only
/// hashed).
pub enum Sink<'a> {
    Write(&'a Odb<'a>),
    Pack(&'a NewPack<'a>),
    HashOnly,
}

impl Sink<'_> {
    /// Stores an object; `name` is its file name, a hint for delta compression.
    fn put(&self, kind: ObjectType, bytes: &[u8], name: Option<&str>) -> Result<Oid, git2::Error> {
        match self {
            // `Odb::write` hashes first and skips objects already stored; `Repository::blob`
            // streams through a temporary file even when the blob exists.
            Sink::Write(odb) => odb.write(kind, bytes),
            Sink::Pack(pack) => Ok(pack.put(kind, bytes, name)),
            Sink::HashOnly => Ok(object_id(kind, bytes)),
        }
    }

    /// Stores blobs and returns their ids in order.
    fn put_blobs(&self, blobs: &[BlobPut<'_>]) -> Result<Vec<Oid>, git2::Error> {
        match self {
            Sink::Pack(pack) => Ok(pack.put_blobs(blobs)),
            _ => blobs
                .iter()
                .map(|b| self.put(ObjectType::Blob, b.bytes, b.name))
                .collect(),
        }
    }

    fn writes(&self) -> bool {
        !matches!(self, Sink::HashOnly)
    }
}

impl Trees {
    /// The tree `id`, indexed.
    fn listing(&self, odb: &Odb<'_>, id: Oid) -> Result<Arc<Listing>, git2::Error> {
        {
            // Least recently used goes first: the `flux-tenants/` listing, read by every commit
            // but rarely rewritten, must not be pushed out by six new `tenants/` listings.
            let mut cache = self.cache.borrow_mut();
            if let Some(at) = cache.iter().position(|(oid, _)| *oid == id) {
                let hit = cache.remove(at).expect("position is in range");
                let listing = hit.1.clone();
                cache.push_back(hit);
                return Ok(listing);
            }
        }
        let object = odb.read(id)?;
        if object.kind() != ObjectType::Tree {
            return Err(corrupt(&format!("{id} is a {}", object.kind())));
        }
        let listing = Arc::new(Listing::parse(object.data().to_vec())?);
        self.remember(id, &listing);
        Ok(listing)
    }

    fn remember(&self, id: Oid, listing: &Arc<Listing>) {
        if listing.bytes().len() < CACHED_TREE_BYTES {
            return;
        }
        let mut cache = self.cache.borrow_mut();
        if cache.iter().any(|(oid, _)| *oid == id) {
            return;
        }
        if cache.len() == CACHED_TREES {
            cache.pop_front();
        }
        cache.push_back((id, listing.clone()));
    }

    /// Writes the blobs and sub-trees of `changes` on top of the tree `base` and returns the
    /// new root tree (None when it would be empty). With [`Sink::HashOnly`] nothing is written:
    /// the result is the id the tree would have.
    pub fn apply(
        &self,
        odb: &Odb<'_>,
        sink: &Sink<'_>,
        base: Option<Oid>,
        changes: &Changes,
    ) -> Result<Option<Oid>, git2::Error> {
        let mut leaves: Vec<(Vec<&str>, Leaf)> = Vec::with_capacity(changes.len());
        // Only a bulk pack writes blobs at paths the repository lacks without asking the store
        // (`NewPack::put_blobs`), so only then are those paths looked up.
        let bulk = matches!(sink, Sink::Pack(pack) if pack.is_bulk());
        let new_paths: Vec<bool> = match base {
            Some(root) if bulk => {
                let paths: Vec<String> = changes.keys().cloned().collect();
                let present = self.entries(odb, root, &paths)?;
                present.iter().map(Option::is_none).collect()
            }
            _ => vec![bulk; changes.len()],
        };
        // Every blob first, in one call: a bulk pack encodes them on all cores.
        let mut blobs = Vec::new();
        for ((path, entry), new_path) in changes.iter().zip(new_paths) {
            let put = |bytes, name| BlobPut {
                bytes,
                name,
                new_path,
            };
            match entry {
                Entry::File(bytes) => blobs.push(put(bytes, path.rsplit('/').next())),
                Entry::Dir(files) => {
                    blobs.extend(files.iter().map(|(name, bytes)| put(bytes, Some(name))))
                }
                Entry::Removed => {}
            }
        }
        let mut blob_ids = sink.put_blobs(&blobs)?.into_iter();
        for (path, entry) in changes {
            let leaf = match entry {
                Entry::File(_) => blob_ids.next().map(|id| (id, BLOB_MODE)),
                Entry::Dir(files) => self
                    .dir(sink, files, &mut blob_ids)?
                    .map(|id| (id, TREE_MODE)),
                Entry::Removed => None,
            };
            leaves.push((split(path), leaf));
        }
        self.update_paths(Some(odb), sink, base, &leaves)
    }

    /// The tree of a directory holding exactly `files` (None when empty), whose blobs are
    /// stored already with the next ids of `blob_ids`.
    fn dir(
        &self,
        sink: &Sink<'_>,
        files: &BTreeMap<String, Vec<u8>>,
        blob_ids: &mut impl Iterator<Item = Oid>,
    ) -> Result<Option<Oid>, git2::Error> {
        let mut leaves: Vec<(Vec<&str>, Leaf)> = Vec::with_capacity(files.len());
        for (path, blob) in files.keys().zip(blob_ids) {
            leaves.push((split(path), Some((blob, BLOB_MODE))));
        }
        // A new directory has no base, so no object store is read.
        self.update_paths(None, sink, None, &leaves)
    }

    fn update_paths(
        &self,
        odb: Option<&Odb<'_>>,
        sink: &Sink<'_>,
        base: Option<Oid>,
        leaves: &[(Vec<&str>, Leaf)],
    ) -> Result<Option<Oid>, git2::Error> {
        let refs: Vec<(&[&str], Leaf)> = leaves.iter().map(|(p, l)| (p.as_slice(), *l)).collect();
        self.update(odb, sink, base, &refs)
    }

    /// Applies leaves (paths relative to `base`) in one pass: each touched tree is rebuilt once.
    /// Reading `base` needs the object store; a tree built from nothing does not.
    fn update(
        &self,
        odb: Option<&Odb<'_>>,
        sink: &Sink<'_>,
        base: Option<Oid>,
        leaves: &[(&[&str], Leaf)],
    ) -> Result<Option<Oid>, git2::Error> {
        let listing = match (base, odb) {
            (Some(id), Some(odb)) => self.listing(odb, id)?,
            (Some(id), None) => return Err(corrupt(&format!("{id} read without a store"))),
            (None, _) => Arc::default(),
        };
        // Last change to a name wins, as with a sequence of inserts.
        let mut direct: BTreeMap<&str, Leaf> = BTreeMap::new();
        let mut nested: BTreeMap<&str, Vec<(&[&str], Leaf)>> = BTreeMap::new();
        for (parts, leaf) in leaves {
            match parts {
                [] => {}
                [name] => {
                    nested.remove(name);
                    direct.insert(name, *leaf);
                }
                [name, rest @ ..] => nested.entry(name).or_default().push((rest, *leaf)),
            }
        }
        for (name, children) in nested {
            // A file or removal at `name` followed by paths below it: start from nothing.
            let child_base = match direct.remove(name) {
                Some(_) => None,
                None => listing
                    .find(name.as_bytes(), true)
                    .map(|i| listing.get(i).oid()),
            };
            let merged = self.update(odb, sink, child_base, &children)?;
            direct.insert(name, merged.map(|id| (id, TREE_MODE)));
        }
        for name in direct.keys() {
            check_name(name)?;
        }
        if let Some(id) = base.filter(|_| !listing.is_empty() && unchanged(&listing, &direct)) {
            // Same entries: same tree. Saves copying and hashing a 10,000-entry listing when a
            // tenant's change leaves its `flux-tenants/` file as it was.
            return Ok(Some(id));
        }
        let mut added: Vec<RawEntry<'_>> = direct
            .iter()
            .filter_map(|(name, leaf)| {
                leaf.as_ref().map(|(id, mode)| RawEntry {
                    mode,
                    name: name.as_bytes(),
                    id: id.as_bytes(),
                })
            })
            .collect();
        added.sort_by(|a, b| git_order(a.name, a.is_tree(), b.name, b.is_tree()));
        let mut removed: Vec<usize> = direct
            .keys()
            .flat_map(|name| [true, false].map(|tree| listing.find(name.as_bytes(), tree)))
            .flatten()
            .collect();
        removed.sort_unstable();
        let spliced = listing.splice(&removed, &added);
        if spliced.is_empty() {
            return Ok(None);
        }
        let id = sink.put(ObjectType::Tree, spliced.bytes(), None)?;
        if sink.writes() {
            self.remember(id, &Arc::new(spliced));
        }
        Ok(Some(id))
    }

    /// [`Trees::entry`] for many paths at once: each tree on the way is parsed once, so looking
    /// up one file in each of 10,000 tenant directories reads the listing once, not 10,000 times.
    pub fn entries(
        &self,
        odb: &Odb<'_>,
        root: Oid,
        paths: &[String],
    ) -> Result<Vec<Option<(Oid, bool)>>, git2::Error> {
        let mut read: std::collections::HashMap<Oid, Arc<Listing>> = Default::default();
        let mut found = Vec::with_capacity(paths.len());
        'paths: for path in paths {
            let mut current = (root, true);
            for part in split(path) {
                if !current.1 {
                    found.push(None);
                    continue 'paths;
                }
                let listing = match read.entry(current.0) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(self.listing(odb, current.0)?)
                    }
                };
                match listing.find_any(part.as_bytes()) {
                    Some(i) => {
                        let entry = listing.get(i);
                        current = (entry.oid(), entry.is_tree());
                    }
                    None => {
                        found.push(None);
                        continue 'paths;
                    }
                }
            }
            found.push(Some(current));
        }
        Ok(found)
    }

    /// The id and mode of the entry at `path` below the tree `root`.
    pub fn entry(
        &self,
        odb: &Odb<'_>,
        root: Oid,
        path: &str,
    ) -> Result<Option<(Oid, bool)>, git2::Error> {
        let mut tree = root;
        let parts = split(path);
        for (i, part) in parts.iter().enumerate() {
            let listing = self.listing(odb, tree)?;
            let Some(found) = listing.find_any(part.as_bytes()).map(|i| listing.get(i)) else {
                return Ok(None);
            };
            if i + 1 == parts.len() {
                return Ok(Some((found.oid(), found.is_tree())));
            }
            if !found.is_tree() {
                return Ok(None);
            }
            tree = found.oid();
        }
        Ok(Some((root, true)))
    }

    /// Names of entries directly under `dir` whose ids differ between the trees `old` and `new`.
    pub fn changed_children(
        &self,
        odb: &Odb<'_>,
        old: Option<Oid>,
        new: Oid,
        dir: &str,
    ) -> Result<Vec<String>, git2::Error> {
        let children = |root: Option<Oid>| -> Result<BTreeMap<String, Oid>, git2::Error> {
            let Some(root) = root else {
                return Ok(BTreeMap::new());
            };
            let Some((id, true)) = self.entry(odb, root, dir)? else {
                return Ok(BTreeMap::new());
            };
            Ok(self
                .listing(odb, id)?
                .iter()
                .map(|e| (String::from_utf8_lossy(e.name).into_owned(), e.oid()))
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

    /// The id an [`Entry`] would have once written (None for a removal or an empty directory).
    pub fn entry_id_of(&self, entry: &Entry) -> Result<Option<Oid>, git2::Error> {
        match entry {
            Entry::File(bytes) => Ok(Some(object_id(ObjectType::Blob, bytes))),
            Entry::Dir(files) => {
                let mut ids = files.values().map(|b| object_id(ObjectType::Blob, b));
                self.dir(&Sink::HashOnly, files, &mut ids)
            }
            Entry::Removed => Ok(None),
        }
    }
}

/// Whether `listing` already holds exactly what `direct` asks for at each name: the same id and
/// mode, or nothing for a removal.
fn unchanged(listing: &Listing, direct: &BTreeMap<&str, Leaf>) -> bool {
    direct.iter().all(|(name, leaf)| {
        let at = |tree| listing.find(name.as_bytes(), tree).map(|i| listing.get(i));
        match leaf {
            None => at(true).is_none() && at(false).is_none(),
            Some((id, mode)) => {
                let tree = *mode == TREE_MODE;
                at(!tree).is_none()
                    && at(tree).is_some_and(|e| e.mode == *mode && e.id == id.as_bytes())
            }
        }
    })
}

fn split(path: &str) -> Vec<&str> {
    path.split('/').filter(|p| !p.is_empty()).collect()
}

#[cfg(test)]
mod tests;
