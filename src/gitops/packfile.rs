//! Writing a commit's new objects straight into one pack file (format 2) with its version-2
//! index, instead of one loose file per object through libgit2.
//!
//! Why by hand: file creation is the dominant cost of a small commit on our disks (a loose
//! object is a file, a directory entry and a rename), libgit2's object writer and pack builder
//! hash with collision-detecting SHA-1 and search deltas across everything, and neither libgit2
//! nor gitoxide offers a pack writer that takes known-similar objects as delta bases. The format
//! is small and fixed (gitformat-pack(5)); the tests read every object back through libgit2 and
//! run `git fsck` and `git verify-pack` on the output.
//!
//! Objects we create need no collision detection (that protects readers of foreign objects), so
//! ids come from the `sha1` crate, which uses the CPU's SHA instructions where present.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::{Compress, Compression, FlushCompress, Status};
use git2::{ObjectType, Odb, OdbLookupFlags, Oid};
use sha1::{Digest, Sha1};

/// Blobs at least this large are stored, not deflated (trees always are): at 10,000 tenants the
/// two listings are ~0.4 MB each and rewritten by every commit, and deflating them would cost
/// more than the rest of the commit. The periodic repack (`pack.rs`) re-packs them as deltas.
const STORE_WHOLE_BYTES: usize = 64 * 1024;

/// Packs at least this large are hashed on a second thread while being written.
const HASH_BESIDE_BYTES: usize = 256 * 1024;

/// A delta is kept only when it is at most this fraction (1/n) of the object it rebuilds.
const DELTA_MAX_FRACTION: usize = 2;

/// Lines shorter than this start no copy of their own: the copy instruction would cost as much.
const MIN_COPY_LINE: usize = 8;

/// The Git object id of `data` as an object of `kind`.
pub fn object_id(kind: ObjectType, data: &[u8]) -> Oid {
    let mut hasher = Sha1::new();
    hasher.update(kind.str().as_bytes());
    hasher.update(b" ");
    hasher.update(data.len().to_string().as_bytes());
    hasher.update([0]);
    hasher.update(data);
    Oid::from_bytes(&hasher.finalize()).expect("SHA-1 is 20 bytes")
}

/// Objects collected for one new pack. Objects the repository already has are skipped.
pub struct NewPack<'a> {
    odb: &'a Odb<'a>,
    state: RefCell<State>,
}

struct State {
    /// Pack entries after the 12-byte header.
    body: Vec<u8>,
    index: Vec<IndexEntry>,
    /// Object ids are hashes already: a fast hasher will do (a bulk pack holds ~150,000).
    ids: HashSet<Oid, Fast>,
    bases: HashMap<String, Base, Fast>,
    compress: Compress,
    /// A bulk pack is kept as it is (not re-packed later): blobs are delta-compressed against
    /// the first blob of the same file name in it, and whole objects are deflated.
    bulk: bool,
}

struct IndexEntry {
    id: Oid,
    offset: u64,
    crc: u32,
}

/// A blob other blobs of the same name are delta-encoded against.
struct Base {
    offset: u64,
    data: Vec<u8>,
    /// First offset of each line of `data`.
    lines: HashMap<Vec<u8>, usize, Fast>,
}

type Fast = foldhash::fast::RandomState;

const PACK_HEADER: usize = 12;

fn type_code(kind: ObjectType) -> u8 {
    match kind {
        ObjectType::Commit => 1,
        ObjectType::Tree => 2,
        ObjectType::Blob => 3,
        _ => 4,
    }
}
const OFS_DELTA: u8 = 6;

impl<'a> NewPack<'a> {
    pub fn new(odb: &'a Odb<'a>, bulk: bool) -> Self {
        NewPack {
            odb,
            state: RefCell::new(State {
                body: Vec::new(),
                index: Vec::new(),
                ids: HashSet::default(),
                bases: HashMap::default(),
                compress: Compress::new(Compression::fast(), true),
                bulk,
            }),
        }
    }

    /// Adds an object unless the repository or this pack has it; returns its id. `name` (a file
    /// name) groups blobs that are likely similar, for delta compression.
    pub fn put(&self, kind: ObjectType, data: &[u8], name: Option<&str>) -> Oid {
        if kind == ObjectType::Blob && self.is_bulk() {
            // One blob the way many are: perhaps as a delta against its name's base.
            let blob = BlobPut {
                bytes: data,
                name,
                new_path: false,
            };
            return self.put_blobs(&[blob])[0];
        }
        let id = object_id(kind, data);
        let mut state = self.state.borrow_mut();
        // NO_REFRESH: a miss must not rescan the pack directory for every new object.
        if state.ids.contains(&id) || self.odb.exists_ext(id, OdbLookupFlags::NO_REFRESH) {
            return id;
        }
        state.ids.insert(id);
        let offset = (PACK_HEADER + state.body.len()) as u64;
        let crc = state.entry(type_code(kind), data);
        state.index.push(IndexEntry { id, offset, crc });
        id
    }

    /// Whether this pack is written for a large change set (see [`BULK_FILES`]).
    ///
    /// [`BULK_FILES`]: super::BULK_FILES
    pub fn is_bulk(&self) -> bool {
        self.state.borrow().bulk
    }

    /// Adds blobs as [`put`](Self::put) would one by one, and returns their ids in order.
    ///
    /// A bulk pack does the costly part (hashing, delta encoding, deflating) on every core and
    /// only lays the results out in order. It also does not ask the store whether it has a blob
    /// at a `new_path` (libgit2 stats a loose path for every miss, ~0.4 s for the 140,000 files
    /// of 10,000 new tenants); at worst a blob is stored twice, in a pack that stays anyway. A
    /// small pack always asks: one holding an object packed elsewhere before would never be
    /// superseded by a repack.
    pub fn put_blobs(&self, blobs: &[BlobPut<'_>]) -> Vec<Oid> {
        if !self.is_bulk() {
            return blobs
                .iter()
                .map(|b| self.put(ObjectType::Blob, b.bytes, b.name))
                .collect();
        }
        let ids = on_every_core(
            blobs,
            || (),
            |blob, _| object_id(ObjectType::Blob, blob.bytes),
        );
        let mut state = self.state.borrow_mut();
        // Which blobs are new here, and which of those become their name's delta base: the
        // first new blob of a name that has none yet, so every base precedes its deltas.
        let mut written = vec![false; blobs.len()];
        let mut fresh: HashMap<&str, (usize, Base), Fast> = HashMap::default();
        let mut in_store: HashSet<Oid, Fast> = HashSet::default();
        for (i, (blob, id)) in blobs.iter().zip(&ids).enumerate() {
            let known = state.ids.contains(id)
                || in_store.contains(id)
                || (!blob.new_path
                    && self.odb.exists_ext(*id, OdbLookupFlags::NO_REFRESH)
                    && in_store.insert(*id));
            if known {
                continue;
            }
            state.ids.insert(*id);
            written[i] = true;
            if let Some(name) = blob.name.filter(|n| !state.bases.contains_key(*n)) {
                fresh
                    .entry(name)
                    .or_insert_with(|| (i, Base::new(0, blob.bytes)));
            }
        }
        let bases = &state.bases;
        let deflater = || Compress::new(Compression::fast(), true);
        let indices: Vec<usize> = (0..blobs.len()).collect();
        let encoded = on_every_core(&indices, deflater, |&i, compress| {
            if !written[i] {
                return None;
            }
            let blob = &blobs[i];
            let base = blob.name.and_then(|n| match fresh.get(n) {
                Some((first, _)) if *first == i => None,
                Some((_, base)) => Some(base),
                None => bases.get(n),
            });
            Some(Encoded::new(base, blob.bytes, compress))
        });
        for ((i, blob), encoded) in blobs.iter().enumerate().zip(encoded) {
            let Some(encoded) = encoded else { continue };
            let offset = (PACK_HEADER + state.body.len()) as u64;
            let base_offset = match blob.name {
                Some(name) if encoded.code == OFS_DELTA => Some(match fresh.get(name) {
                    Some((_, base)) => base.offset,
                    None => state.bases[name].offset,
                }),
                _ => None,
            };
            if let Some((first, base)) = blob.name.and_then(|n| fresh.get_mut(n)) {
                if *first == i {
                    base.offset = offset;
                }
            }
            let crc = state.entry_encoded(&encoded, base_offset.map(|b| offset - b));
            state.index.push(IndexEntry {
                id: ids[i],
                offset,
                crc,
            });
        }
        for (name, (_, base)) in fresh {
            state.bases.insert(name.to_string(), base);
        }
        ids
    }

    pub fn is_empty(&self) -> bool {
        self.state.borrow().index.is_empty()
    }

    /// Writes the pack and its index into `objects/pack` of the repository at `repo_path` and
    /// makes the object store see them; with `fsync`, both files and their directory entries
    /// are on disk before this returns. Returns the pack's path (None when it would be empty).
    pub fn write(self, repo_path: &Path, fsync: bool) -> std::io::Result<Option<PathBuf>> {
        let state = self.state.into_inner();
        if state.index.is_empty() {
            return Ok(None);
        }
        let mut header = Vec::with_capacity(PACK_HEADER);
        header.extend_from_slice(b"PACK");
        header.extend_from_slice(&2u32.to_be_bytes());
        header.extend_from_slice(&(state.index.len() as u32).to_be_bytes());
        let dir = repo_path.join("objects/pack");
        std::fs::create_dir_all(&dir)?;
        // A large pack (a 10,000-entry listing) is hashed on another core while it is written:
        // hashing and copying it into the page cache take about as long each.
        let (checksum, staged) = side_by_side(
            state.body.len() >= HASH_BESIDE_BYTES,
            || pack_checksum(&header, &state.body),
            || Staged::new(&dir, &[&header, &state.body]),
        );
        let name = format!("pack-{}", Oid::from_bytes(&checksum).expect("20 bytes"));
        let pack_path = dir.join(format!("{name}.pack"));
        let idx_path = dir.join(format!("{name}.idx"));
        let idx_bytes = index_bytes(state.index, &checksum);
        let (mut pack, mut idx) = (staged?, Staged::new(&dir, &[&idx_bytes])?);
        // The pack first, then its index: Git and libgit2 look for packs by their index. A pack
        // whose index could not follow is taken away again.
        pack.seal(&checksum)?;
        idx.seal(&[])?;
        if fsync {
            // Each fsync waits for the disk; the two files' wait at once.
            let (pack_synced, idx_synced) =
                side_by_side(true, || pack.file.sync_all(), || idx.file.sync_all());
            pack_synced.and(idx_synced)?;
        }
        pack.rename_to(&pack_path)?;
        if let Err(error) = idx.rename_to(&idx_path) {
            if !idx_path.exists() {
                let _ = std::fs::remove_file(&pack_path);
            }
            return Err(error);
        }
        if fsync {
            sync_path(&dir)?;
        }
        self.odb.refresh().map_err(std::io::Error::other)?;
        Ok(Some(pack_path))
    }
}

impl State {
    /// Appends one whole object (header, deflated or stored data); returns its CRC-32.
    fn entry(&mut self, code: u8, data: &[u8]) -> u32 {
        let start = self.body.len();
        self.entry_header(code, data.len(), None);
        // A commit's pack (re-packed later) deflates only blobs below STORE_WHOLE_BYTES; a bulk
        // pack, which stays, deflates every object.
        let deflated =
            self.bulk || (code == type_code(ObjectType::Blob) && data.len() < STORE_WHOLE_BYTES);
        if deflated {
            deflate(&mut self.compress, data, &mut self.body);
        } else {
            store(data, &mut self.body);
        }
        crc32fast::hash(&self.body[start..])
    }

    /// Appends an entry encoded beforehand; returns its CRC-32.
    fn entry_encoded(&mut self, encoded: &Encoded, base_distance: Option<u64>) -> u32 {
        let start = self.body.len();
        self.entry_header(encoded.code, encoded.size, base_distance);
        self.body.extend_from_slice(&encoded.zlib);
        crc32fast::hash(&self.body[start..])
    }

    /// The type and size varint, then the distance back to an OFS_DELTA's base.
    fn entry_header(&mut self, code: u8, mut size: usize, base_distance: Option<u64>) {
        let mut byte = (code << 4) | (size & 0x0f) as u8;
        size >>= 4;
        while size > 0 {
            self.body.push(byte | 0x80);
            byte = (size & 0x7f) as u8;
            size >>= 7;
        }
        self.body.push(byte);
        if let Some(distance) = base_distance {
            self.body.extend_from_slice(&ofs_distance(distance));
        }
    }
}

/// A blob for [`NewPack::put_blobs`]: its bytes, its file name (a delta base hint) and whether
/// the repository has nothing at its path yet.
pub struct BlobPut<'a> {
    pub bytes: &'a [u8],
    pub name: Option<&'a str>,
    pub new_path: bool,
}

/// A bulk pack's blob, encoded off the layout thread: a stored delta against its name's base
/// when that is small enough, else the whole blob deflated.
struct Encoded {
    code: u8,
    /// The size the entry header gives: the delta's or the blob's.
    size: usize,
    zlib: Vec<u8>,
}

impl Encoded {
    fn new(base: Option<&Base>, data: &[u8], compress: &mut Compress) -> Self {
        if let Some(delta) = base
            .map(|base| encode_delta(base, data))
            .filter(|delta| delta.len() * DELTA_MAX_FRACTION <= data.len())
        {
            let mut zlib = Vec::with_capacity(delta.len() + 16);
            store(&delta, &mut zlib);
            return Encoded {
                code: OFS_DELTA,
                size: delta.len(),
                zlib,
            };
        }
        let mut zlib = Vec::new();
        deflate(compress, data, &mut zlib);
        Encoded {
            code: type_code(ObjectType::Blob),
            size: data.len(),
            zlib,
        }
    }
}

/// `work` applied to each item, the items split across the machine's cores (each thread with
/// its own state from `init`); results in order. Runs here when no thread can be had.
fn on_every_core<T: Sync, S, R: Send>(
    items: &[T],
    init: impl Fn() -> S + Sync,
    work: impl Fn(&T, &mut S) -> R + Sync,
) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // A thread gets at least 64 items: fewer are not worth spawning it.
    let chunk = items.len().div_ceil(cores).max(64);
    let run = |part: &[T]| -> Vec<R> {
        let mut state = init();
        part.iter().map(|item| work(item, &mut state)).collect()
    };
    if items.len() <= chunk {
        return run(items);
    }
    let run = &run;
    std::thread::scope(|scope| {
        let parts: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                std::thread::Builder::new()
                    .spawn_scoped(scope, move || run(part))
                    .map_err(|_| run(part))
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|part| match part {
                Ok(thread) => thread.join().expect("encoding does not panic"),
                Err(done) => done,
            })
            .collect()
    })
}

/// `beside` and `here` at once, `beside` on another thread, when `parallel`; one after the
/// other on this thread otherwise, or when no thread can be had.
fn side_by_side<A: Send, B>(
    parallel: bool,
    beside: impl Fn() -> A + Sync,
    here: impl FnOnce() -> B,
) -> (A, B) {
    std::thread::scope(|scope| {
        let thread = parallel
            .then(|| {
                std::thread::Builder::new()
                    .spawn_scoped(scope, &beside)
                    .ok()
            })
            .flatten();
        let here = here();
        let beside = match thread {
            Some(thread) => thread.join().expect("the other thread does not panic"),
            None => beside(),
        };
        (beside, here)
    })
}

/// The SHA-1 trailer of a pack made of `header` and `body`.
fn pack_checksum(header: &[u8], body: &[u8]) -> [u8; 20] {
    let mut hasher = Sha1::new();
    hasher.update(header);
    hasher.update(body);
    hasher.finalize().into()
}

/// The negative offset of an OFS_DELTA base, in Git's big-endian "minus one" varint.
fn ofs_distance(mut distance: u64) -> Vec<u8> {
    let mut bytes = vec![(distance & 0x7f) as u8];
    distance >>= 7;
    while distance > 0 {
        distance -= 1;
        bytes.push(0x80 | (distance & 0x7f) as u8);
        distance >>= 7;
    }
    bytes.reverse();
    bytes
}

/// Appends `data` to `out` as a zlib stream of stored (uncompressed) blocks. Written by hand:
/// zlib implementations clear their match tables (64 KiB and more) on every reset, which costs
/// more than storing a small delta or tree.
fn store(data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x78, 0x01]);
    let mut blocks = data.chunks(0xffff).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let len = block.len() as u16;
        out.push(u8::from(blocks.peek().is_none()));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
}

fn adler32(data: &[u8]) -> u32 {
    // SIMD: the stored listings are ~0.9 MB a commit at 10,000 tenants.
    let mut adler = simd_adler32::Adler32::new();
    adler.write(data);
    adler.finish()
}

/// Appends the zlib stream of `data` to `out`. Deflates into the bytes just past the end: flate2's
/// `compress_vec` would zero-fill the whole spare capacity of the growing body on every call.
fn deflate(compress: &mut Compress, data: &[u8], out: &mut Vec<u8>) {
    compress.reset();
    let start = out.len();
    let mut room = data.len() + data.len() / 8 + 64;
    loop {
        let written = compress.total_out() as usize;
        let consumed = compress.total_in() as usize;
        out.resize(start + room, 0);
        let status = compress
            .compress(
                &data[consumed..],
                &mut out[start + written..],
                FlushCompress::Finish,
            )
            .expect("deflate into memory cannot fail");
        if status == Status::StreamEnd {
            out.truncate(start + compress.total_out() as usize);
            return;
        }
        room *= 2;
    }
}

impl Base {
    fn new(offset: u64, data: &[u8]) -> Self {
        let mut lines = HashMap::default();
        let mut at = 0;
        for line in data.split_inclusive(|b| *b == b'\n') {
            lines.entry(line.to_vec()).or_insert(at);
            at += line.len();
        }
        Base {
            offset,
            data: data.to_vec(),
            lines,
        }
    }
}

/// A Git delta rebuilding `target` from `base`, line by line. A line found in the base becomes a
/// copy (runs of them one copy); a line that differs from the base line at the same place in
/// the sequence (a tenant id in a name, say) copies their common prefix and suffix and inserts
/// only the middle; anything else is inserted.
fn encode_delta(base: &Base, target: &[u8]) -> Vec<u8> {
    let mut ops = DeltaOps::default();
    varint(&mut ops.out, base.data.len());
    varint(&mut ops.out, target.len());
    // Where the base line aligned with the next target line starts.
    let mut aligned = 0;
    for line in target.split_inclusive(|b| *b == b'\n') {
        let continued = ops
            .copy
            .map(|(at, len)| at + len)
            .filter(|end| base.data[*end..].starts_with(line));
        let exact = continued.or_else(|| match line.len() >= MIN_COPY_LINE {
            true => base.lines.get(line).copied(),
            false => None,
        });
        if let Some(at) = exact {
            ops.copy(at, line.len());
            aligned = at + line.len();
            continue;
        }
        let base_line = base.data[aligned.min(base.data.len())..]
            .split_inclusive(|b| *b == b'\n')
            .next()
            .unwrap_or_default();
        let prefix = common_prefix(line, base_line);
        let suffix = common_prefix_rev(&line[prefix..], &base_line[prefix..]);
        if prefix + suffix >= MIN_COPY_LINE {
            ops.copy(aligned, prefix);
            ops.insert(&line[prefix..line.len() - suffix]);
            ops.copy(aligned + base_line.len() - suffix, suffix);
            aligned += base_line.len();
        } else {
            ops.insert(line);
        }
    }
    ops.finish()
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn common_prefix_rev(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

/// Delta instructions with adjacent copies merged and inserts buffered.
#[derive(Default)]
struct DeltaOps {
    out: Vec<u8>,
    copy: Option<(usize, usize)>,
    literal: Vec<u8>,
}

impl DeltaOps {
    fn copy(&mut self, at: usize, len: usize) {
        if len == 0 {
            return;
        }
        self.flush_literal();
        match &mut self.copy {
            Some((start, run)) if *start + *run == at => *run += len,
            _ => {
                self.flush_copy();
                self.copy = Some((at, len));
            }
        }
    }

    fn insert(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.flush_copy();
        self.literal.extend_from_slice(bytes);
    }

    fn flush_copy(&mut self) {
        if let Some((at, len)) = self.copy.take() {
            copy_op(&mut self.out, at, len);
        }
    }

    fn flush_literal(&mut self) {
        insert_op(&mut self.out, &self.literal);
        self.literal.clear();
    }

    fn finish(mut self) -> Vec<u8> {
        self.flush_copy();
        self.flush_literal();
        self.out
    }
}

fn varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn copy_op(out: &mut Vec<u8>, mut at: usize, mut len: usize) {
    // One instruction copies at most 0xffffff bytes from an offset below 2^32.
    while len > 0 {
        let chunk = len.min(0xff_ffff);
        let mut cmd = 0x80u8;
        let mut args = Vec::with_capacity(7);
        for i in 0..4 {
            let b = (at >> (8 * i)) as u8;
            if b != 0 {
                cmd |= 1 << i;
                args.push(b);
            }
        }
        for i in 0..3 {
            let b = (chunk >> (8 * i)) as u8;
            if b != 0 {
                cmd |= 0x10 << i;
                args.push(b);
            }
        }
        out.push(cmd);
        out.extend_from_slice(&args);
        at += chunk;
        len -= chunk;
    }
}

fn insert_op(out: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in bytes.chunks(0x7f) {
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
}

/// The version-2 index of a pack whose trailing checksum is `checksum`.
fn index_bytes(mut entries: Vec<IndexEntry>, checksum: &[u8; 20]) -> Vec<u8> {
    entries.sort_by_key(|e| e.id);
    let mut idx = Vec::with_capacity(8 + 1024 + entries.len() * 28 + 40);
    idx.extend_from_slice(&[0xff, b't', b'O', b'c', 0, 0, 0, 2]);
    let mut fanout = [0u32; 256];
    for entry in &entries {
        fanout[entry.id.as_bytes()[0] as usize] += 1;
    }
    let mut total = 0;
    for count in fanout {
        total += count;
        idx.extend_from_slice(&total.to_be_bytes());
    }
    for entry in &entries {
        idx.extend_from_slice(entry.id.as_bytes());
    }
    for entry in &entries {
        idx.extend_from_slice(&entry.crc.to_be_bytes());
    }
    // Offsets from 2^31 up live in a table of 64-bit offsets.
    let mut large = Vec::new();
    for entry in &entries {
        let small = match u32::try_from(entry.offset) {
            Ok(offset) if offset < 0x8000_0000 => offset,
            _ => {
                large.push(entry.offset);
                0x8000_0000 | (large.len() as u32 - 1)
            }
        };
        idx.extend_from_slice(&small.to_be_bytes());
    }
    for offset in large {
        idx.extend_from_slice(&offset.to_be_bytes());
    }
    idx.extend_from_slice(checksum);
    let own: [u8; 20] = Sha1::digest(&idx).into();
    idx.extend_from_slice(&own);
    idx
}

const TMP_PREFIX: &str = "tmp_billing_";

/// Deletes temporary pack files older than `age` that a killed process left in `objects/pack`
/// of `repo_path` (younger ones may belong to a writer at work).
pub fn remove_leftovers(repo_path: &Path, age: std::time::Duration) -> std::io::Result<()> {
    let Ok(entries) = std::fs::read_dir(repo_path.join("objects/pack")) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|e| e >= age));
        if stale && entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// A temporary file in `objects/pack`, renamed into place once complete; deleted if dropped
/// before that (an error or a panic on the way).
struct Staged {
    tmp: PathBuf,
    file: std::fs::File,
    renamed: bool,
}

impl Staged {
    /// Writes `parts` to a new temporary file in `dir`.
    fn new(dir: &Path, parts: &[&[u8]]) -> std::io::Result<Self> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!("{TMP_PREFIX}{}_{n}", std::process::id()));
        let mut staged = Staged {
            file: std::fs::File::create(&tmp)?,
            tmp,
            renamed: false,
        };
        for part in parts {
            staged.file.write_all(part)?;
        }
        Ok(staged)
    }

    /// Appends `tail` and makes the file read-only, like Git's.
    fn seal(&mut self, tail: &[u8]) -> std::io::Result<()> {
        self.file.write_all(tail)?;
        let mut perms = self.file.metadata()?.permissions();
        perms.set_readonly(true);
        self.file.set_permissions(perms)
    }

    /// Gives the file its final name.
    fn rename_to(mut self, path: &Path) -> std::io::Result<()> {
        std::fs::rename(&self.tmp, path)?;
        self.renamed = true;
        Ok(())
    }
}

/// fsync(2) of a file or (on Unix) a directory, whose entries it makes durable.
fn sync_path(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests;
