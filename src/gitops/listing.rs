//! A Git tree object as raw bytes plus where each entry starts: entries are found by binary
//! search and a change is a splice of byte runs, so updating one entry of the 10,000-entry
//! `tenants/` listing neither parses nor re-serialises the other 9,999.

use std::cmp::Ordering;

use git2::Oid;

pub(super) const TREE_MODE: &[u8] = b"40000";
pub(super) const BLOB_MODE: &[u8] = b"100644";

/// One entry of a raw tree, borrowing its bytes (the id too: building an `Oid` for each of
/// 10,000 entries that are only copied is measurable).
#[derive(Debug, Clone, Copy)]
pub(super) struct RawEntry<'a> {
    pub mode: &'a [u8],
    pub name: &'a [u8],
    pub id: &'a [u8],
}

impl RawEntry<'_> {
    pub fn is_tree(&self) -> bool {
        self.mode == TREE_MODE
    }

    pub fn oid(&self) -> Oid {
        Oid::from_bytes(self.id).expect("listings hold 20-byte ids")
    }

    fn len(&self) -> usize {
        self.mode.len() + self.name.len() + 22
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.mode);
        out.push(b' ');
        out.extend_from_slice(self.name);
        out.push(0);
        out.extend_from_slice(self.id);
    }
}

pub(super) fn corrupt(what: &str) -> git2::Error {
    git2::Error::from_str(&format!("malformed tree object: {what}"))
}

/// Git's entry order: names compared bytewise, a tree's name as if it ended in '/'.
pub(super) fn git_order(a: &[u8], a_tree: bool, b: &[u8], b_tree: bool) -> Ordering {
    let n = a.len().min(b.len());
    a[..n].cmp(&b[..n]).then_with(|| {
        let end =
            |name: &[u8], tree: bool| name.get(n).copied().unwrap_or(if tree { b'/' } else { 0 });
        end(a, a_tree).cmp(&end(b, b_tree))
    })
}

/// A serialised tree (`<mode> <name>\0<20-byte id>` per entry, in Git order).
#[derive(Debug, Default)]
pub(super) struct Listing {
    raw: Vec<u8>,
    /// Offset of each entry in `raw`.
    starts: Vec<u32>,
}

impl Listing {
    /// Indexes a tree object's bytes, checking their format.
    pub fn parse(raw: Vec<u8>) -> Result<Self, git2::Error> {
        if u32::try_from(raw.len()).is_err() {
            return Err(corrupt("over 4 GiB"));
        }
        let mut starts = Vec::with_capacity(raw.len() / 40);
        let mut at = 0;
        while at < raw.len() {
            starts.push(at as u32);
            at += entry_len(&raw[at..])?;
        }
        Ok(Self { raw, starts })
    }

    fn push(&mut self, e: &RawEntry<'_>) {
        self.starts.push(self.raw.len() as u32);
        e.write_to(&mut self.raw);
    }

    pub fn bytes(&self) -> &[u8] {
        &self.raw
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    fn end(&self, i: usize) -> usize {
        self.starts.get(i).map_or(self.raw.len(), |&s| s as usize)
    }

    pub fn get(&self, i: usize) -> RawEntry<'_> {
        let bytes = &self.raw[self.starts[i] as usize..self.end(i + 1)];
        // Checked by `parse` (or written by `push`).
        let space = bytes.iter().position(|&b| b == b' ').unwrap_or(0);
        let nul = bytes.len() - 21;
        RawEntry {
            mode: &bytes[..space],
            name: &bytes[space + 1..nul],
            id: &bytes[nul + 1..],
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = RawEntry<'_>> {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Index of the first entry not before (`name`, `tree`) in Git order.
    fn position(&self, name: &[u8], tree: bool) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let e = self.get(mid);
            if git_order(e.name, e.is_tree(), name, tree) == Ordering::Less {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The entry called `name`, as a tree or as a file.
    pub fn find(&self, name: &[u8], tree: bool) -> Option<usize> {
        let i = self.position(name, tree);
        (i < self.len() && self.get(i).name == name && self.get(i).is_tree() == tree).then_some(i)
    }

    /// The entry called `name`, whatever its mode.
    pub fn find_any(&self, name: &[u8]) -> Option<usize> {
        self.find(name, true).or_else(|| self.find(name, false))
    }

    /// A new listing without the entries at `removed` (sorted indexes) and with `added` (in Git
    /// order, none equal to a kept entry). Kept runs are copied as bytes.
    pub fn splice(&self, removed: &[usize], added: &[RawEntry<'_>]) -> Self {
        let added_bytes: usize = added.iter().map(RawEntry::len).sum();
        let mut out = Self {
            raw: Vec::with_capacity(self.raw.len() + added_bytes),
            starts: Vec::with_capacity(self.len() + added.len()),
        };
        let inserts: Vec<usize> = added
            .iter()
            .map(|a| self.position(a.name, a.is_tree()))
            .collect();
        let (mut kept_from, mut r, mut a) = (0, 0, 0);
        loop {
            let next = [removed.get(r), inserts.get(a)]
                .into_iter()
                .flatten()
                .min()
                .copied()
                .unwrap_or(self.len());
            out.copy_run(self, kept_from, next);
            kept_from = next;
            if inserts.get(a) == Some(&next) {
                out.push(&added[a]);
                a += 1;
            } else if removed.get(r) == Some(&next) {
                kept_from += 1;
                r += 1;
            } else {
                return out;
            }
        }
    }

    /// Appends entries `from..to` of `other`.
    fn copy_run(&mut self, other: &Self, from: usize, to: usize) {
        if from >= to {
            return;
        }
        let (start, end) = (other.starts[from] as usize, other.end(to));
        let shift = self.raw.len() as i64 - start as i64;
        self.raw.extend_from_slice(&other.raw[start..end]);
        self.starts.extend(
            other.starts[from..to]
                .iter()
                .map(|&s| (s as i64 + shift) as u32),
        );
    }
}

/// Length of the entry at the start of `bytes`.
fn entry_len(bytes: &[u8]) -> Result<usize, git2::Error> {
    let space = bytes
        .iter()
        .take(7)
        .position(|&b| b == b' ')
        .ok_or_else(|| corrupt("no mode"))?;
    let nul = space
        + bytes[space..]
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| corrupt("no name"))?;
    if nul == space + 1 {
        return Err(corrupt("empty name"));
    }
    if bytes.len() < nul + 21 {
        return Err(corrupt("truncated id"));
    }
    Ok(nul + 21)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(name: &'a str, tree: bool, id: &'a [u8; 20]) -> RawEntry<'a> {
        let mode = if tree { TREE_MODE } else { BLOB_MODE };
        RawEntry {
            mode,
            name: name.as_bytes(),
            id,
        }
    }

    #[test]
    fn malformed_trees_are_refused() {
        let mut good = b"100644 a\0".to_vec();
        good.extend([7; 20]);
        assert_eq!(Listing::parse(good.clone()).unwrap().len(), 1);
        for bad in [
            &good[..good.len() - 1],
            b"100644a\0xxxxxxxxxxxxxxxxxxxx".as_slice(),
            b"100644 \0xxxxxxxxxxxxxxxxxxxx".as_slice(),
            b"100644 a".as_slice(),
        ] {
            assert!(Listing::parse(bad.to_vec()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn splice_keeps_git_order_and_finds_by_mode() {
        let (x, y) = ([1; 20], [2; 20]);
        let mut base = Listing::default();
        for e in [
            entry("a", false, &x),
            entry("b", true, &x),
            entry("c", false, &x),
        ] {
            base.push(&e);
        }
        // "b" becomes a file (sorted before the tree name "b/"), "a" goes, "d" is new.
        let b = base.find(b"b", true).unwrap();
        let a = base.find_any(b"a").unwrap();
        let out = base.splice(&[a, b], &[entry("b", false, &y), entry("d", true, &y)]);
        let names: Vec<_> = out.iter().map(|e| (e.name, e.is_tree(), e.id[0])).collect();
        assert_eq!(
            names,
            [(&b"b"[..], false, 2), (b"c", false, 1), (b"d", true, 2)]
        );
        assert_eq!(out.find(b"b", true), None);
        assert_eq!(out.find(b"b", false), Some(0));
        assert_eq!(Listing::parse(out.bytes().to_vec()).unwrap().len(), 3);
    }
}
