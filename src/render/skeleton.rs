//! Checked skeletons: the post-render check parses a template's output once per *shape*, not
//! once per tenant.
//!
//! Every printed value reaches the output as one JSON literal between the private-use marks
//! [`VALUE_START`] and [`VALUE_END`] (see `escape`). Splitting there gives the file (`clean`)
//! and its skeleton: the text with every string literal replaced by a placeholder. Tenants of
//! one plan share a skeleton per template; only their strings differ.
//!
//! A skeleton is learnt from a probe: the skeleton with each string replaced by a unique marked
//! string, parsed as YAML. It is cached only when every probe comes back as one whole scalar
//! exactly once. A canonical JSON string literal (no line break, YAML-safe escapes) swapped for
//! another at such a place leaves the token stream unchanged, so a later file with the same
//! skeleton needs no parse: its checked fields are the probe's, with each probe replaced by the
//! file's own string. Two things could still differ between strings, so they are pinned:
//! - the length of a simple key, limited to 1024 characters by YAML: strings over
//!   [`SHORT`] bytes are a separate placeholder whose probe is longer than that limit, so a
//!   long string is only cached where length does not matter;
//! - equality of mapping keys (two equal keys): a string that is a key must be the same as in
//!   the file the skeleton was learnt from.
//!
//! Anything else (an odd literal, a probe split or repeated, a full cache) falls back to
//! parsing the file, as before. Files checked as a whole (the kustomization, the same text for
//! every tenant) are remembered by their exact text once they pass.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, RwLock};

use serde_norway::Value;

use super::escape::{is_reserved, yaml_safe, VALUE_END, VALUE_START};
use super::objects::{self, Object};

const PROBE_START: char = '\u{e002}';
const PROBE_END: char = '\u{e003}';
/// String literals up to this many bytes share the short placeholder.
const SHORT: usize = 256;
/// Padding of long probes: longer than YAML's 1024-character simple key limit.
const LONG_PROBE_PAD: usize = 1100;
/// Skeletons remembered per template (a few per plan are expected).
const MAX_PER_TEMPLATE: usize = 64;

/// One template's output, split at its printed values.
#[derive(Debug)]
pub(super) struct Split {
    /// The file as written to the repository.
    pub clean: String,
    /// `clean` with each string literal replaced by [`VALUE_START`] and `S` or `L` (its class).
    pub skeleton: String,
    /// Where each string literal (quotes included) is in `clean`, in order.
    pub strings: Vec<Range<usize>>,
}

impl Split {
    /// Splits raw template output. Fails on marks that are not around a canonical literal
    /// (only a template printing reserved characters with `|safe` can cause that).
    pub fn new(marked: &str) -> Result<Self, String> {
        let mut split = Split {
            clean: String::with_capacity(marked.len()),
            skeleton: String::with_capacity(marked.len()),
            strings: Vec::new(),
        };
        let mut rest = marked;
        while let Some(start) = find(rest, VALUE_START) {
            let (text, after) = rest.split_at(start);
            split.push_text(text);
            let after = &after[VALUE_START.len_utf8()..];
            let end = find(after, VALUE_END).ok_or("a value mark is not closed")?;
            split.push_literal(&after[..end])?;
            rest = &after[end + VALUE_END.len_utf8()..];
        }
        split.push_text(rest);
        Ok(split)
    }

    fn push_text(&mut self, text: &str) {
        self.clean.push_str(text);
        self.skeleton.push_str(text);
    }

    fn push_literal(&mut self, literal: &str) -> Result<(), String> {
        if literal.contains(is_reserved) {
            return Err("value marks are nested".into());
        }
        if !literal.starts_with('"') {
            // Numbers, booleans, null: few distinct values, kept in the skeleton as they are.
            self.push_text(literal);
            return Ok(());
        }
        if !is_canonical_string(literal) {
            return Err(format!(
                "{literal:?} is not a string as the renderer prints it"
            ));
        }
        let from = self.clean.len();
        self.clean.push_str(literal);
        self.strings.push(from..self.clean.len());
        self.skeleton.push(VALUE_START);
        self.skeleton
            .push(if literal.len() > SHORT { 'L' } else { 'S' });
        Ok(())
    }

    fn literal(&self, i: usize) -> &str {
        &self.clean[self.strings[i].clone()]
    }
}

/// Where `mark` is in `text`: SIMD search for its encoding (`str::find` scans a word at a time
/// for a three-byte character, ~5% of a render here).
fn find(text: &str, mark: char) -> Option<usize> {
    let mut encoded = [0; 4];
    memchr::memmem::find(text.as_bytes(), mark.encode_utf8(&mut encoded).as_bytes())
}

/// Whether `literal` is exactly what the formatter prints for some string.
fn is_canonical_string(literal: &str) -> bool {
    let plain = |b: u8| (b' '..0x7f).contains(&b) && b != b'"' && b != b'\\';
    if let Some(inner) = literal.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        if inner.bytes().all(plain) {
            return true;
        }
    }
    serde_json::from_str::<String>(literal)
        .ok()
        .and_then(|text| serde_json::to_string(&text).ok())
        .is_some_and(|json| yaml_safe(&json) == literal)
}

/// The text of the `i`th probe.
fn probe(i: usize, long: bool) -> String {
    let pad = if long { LONG_PROBE_PAD } else { 0 };
    format!("{PROBE_START}{i}{PROBE_END}{}", "x".repeat(pad))
}

/// The skeleton as YAML with probes for strings, and each string's class (long or not).
fn probe_text(skeleton: &str) -> Option<(String, Vec<bool>)> {
    let mut text = String::with_capacity(skeleton.len());
    let mut long = Vec::new();
    let mut parts = skeleton.split(VALUE_START);
    text.push_str(parts.next()?);
    for part in parts {
        let mut chars = part.chars();
        let is_long = chars.next()? == 'L';
        text.push('"');
        text.push_str(&probe(long.len(), is_long));
        text.push('"');
        text.push_str(chars.as_str());
        long.push(is_long);
    }
    Some((text, long))
}

/// Where a checked field comes from in a file with the skeleton.
#[derive(Debug)]
pub(super) enum Field {
    Static(String),
    /// The `i`th string of the file.
    String(usize),
}

/// What is known about every file with one skeleton.
#[derive(Debug)]
struct Learnt {
    objects: Vec<Object<Field>>,
    /// Strings that are mapping keys, as they were when learnt.
    pinned: Vec<(usize, String)>,
}

impl Learnt {
    /// Parses the skeleton's probe; None when the skeleton cannot be cached.
    fn from(split: &Split) -> Option<Self> {
        let (text, long) = probe_text(&split.skeleton)?;
        let index = |s: &str| -> Option<usize> {
            let i = s
                .strip_prefix(PROBE_START)?
                .split(PROBE_END)
                .next()?
                .parse::<usize>()
                .ok()?;
            (i < long.len() && s == probe(i, long[i])).then_some(i)
        };
        let mut found = vec![None; long.len()];
        for doc in objects::parse_documents(text.as_bytes()).ok()? {
            find_probes(&doc, false, &index, &mut found)?;
        }
        let mut pinned = Vec::new();
        for (i, key) in found.into_iter().enumerate() {
            if key? {
                pinned.push((i, split.literal(i).to_owned()));
            }
        }
        let field = |s: String| match s.contains(is_reserved) {
            false => Some(Field::Static(s)),
            true => index(&s).map(Field::String),
        };
        let objects = objects::objects(text.as_bytes())
            .ok()?
            .into_iter()
            .map(|object| object.try_map(|s| field(s).ok_or(())))
            .collect::<Result<_, _>>()
            .ok()?;
        Some(Self { objects, pinned })
    }

    /// The checked fields of `split` (same skeleton); None when a pinned string differs.
    fn objects(&self, split: &Split) -> Option<Vec<Object>> {
        if self.pinned.iter().any(|(i, s)| split.literal(*i) != s) {
            return None;
        }
        self.objects
            .iter()
            .map(|object| {
                object.as_ref().try_map(|field| match field {
                    Field::Static(s) => Ok(s.clone()),
                    Field::String(i) => serde_json::from_str::<String>(split.literal(*i)),
                })
            })
            .collect::<Result<_, _>>()
            .ok()
    }
}

/// Records in `found[i]` whether probe `i` is a mapping key; None when a probe is not a whole
/// scalar or appears twice.
fn find_probes(
    value: &Value,
    key: bool,
    index: &impl Fn(&str) -> Option<usize>,
    found: &mut [Option<bool>],
) -> Option<()> {
    match value {
        Value::String(s) if s.contains(is_reserved) => {
            let i = index(s)?;
            found[i].replace(key).is_none().then_some(())
        }
        Value::Sequence(items) => items
            .iter()
            .try_for_each(|item| find_probes(item, key, index, found)),
        Value::Mapping(map) => map.iter().try_for_each(|(k, v)| {
            find_probes(k, true, index, found)?;
            find_probes(v, key, index, found)
        }),
        Value::Tagged(tagged) => find_probes(&tagged.value, key, index, found),
        _ => Some(()),
    }
}

type BySkeleton = HashMap<Box<str>, Option<Arc<Learnt>>, foldhash::fast::RandomState>;

/// Learnt skeletons per template; `None` marks a skeleton that cannot be cached.
#[derive(Default)]
pub(super) struct Skeletons {
    by_template: RwLock<HashMap<&'static str, BySkeleton>>,
    /// Whole files that passed their check (the kustomization: the same for every tenant).
    passed: RwLock<HashSet<Box<str>, foldhash::fast::RandomState>>,
}

impl Skeletons {
    /// The checked fields of every document in a template's output: from its learnt skeleton,
    /// or by parsing the file (then learning its skeleton).
    pub fn objects(
        &self,
        template: &'static str,
        split: &Split,
    ) -> Result<Vec<Object>, serde_norway::Error> {
        let known = self.lookup(template, &split.skeleton);
        if let Some(objects) = known
            .as_ref()
            .and_then(|learnt| learnt.as_ref()?.objects(split))
        {
            return Ok(objects);
        }
        let objects = objects::objects(split.clean.as_bytes())?;
        if known.is_none() {
            self.learn(template, split);
        }
        Ok(objects)
    }

    /// The checked fields from a learnt skeleton only; None when it would parse.
    #[cfg(test)]
    pub fn learnt_objects(&self, template: &str, split: &Split) -> Option<Vec<Object>> {
        self.lookup(template, &split.skeleton)??.objects(split)
    }

    /// Whether exactly this text passed its (pure) check before.
    pub fn passed(&self, text: &str) -> bool {
        let passed = self.passed.read().unwrap_or_else(|e| e.into_inner());
        passed.contains(text)
    }

    pub fn remember_passed(&self, text: &str) {
        let mut passed = self.passed.write().unwrap_or_else(|e| e.into_inner());
        if passed.len() < MAX_PER_TEMPLATE {
            passed.insert(text.into());
        }
    }

    fn lookup(&self, template: &str, skeleton: &str) -> Option<Option<Arc<Learnt>>> {
        let by_template = self.by_template.read().unwrap_or_else(|e| e.into_inner());
        by_template.get(template)?.get(skeleton).cloned()
    }

    fn learn(&self, template: &'static str, split: &Split) {
        let full = |by_template: &HashMap<_, BySkeleton>| {
            by_template
                .get(template)
                .is_some_and(|known| known.len() >= MAX_PER_TEMPLATE)
        };
        if full(&self.by_template.read().unwrap_or_else(|e| e.into_inner())) {
            return;
        }
        let learnt = Learnt::from(split).map(Arc::new);
        let mut by_template = self.by_template.write().unwrap_or_else(|e| e.into_inner());
        if !full(&by_template) {
            by_template
                .entry(template)
                .or_default()
                .insert(split.skeleton.as_str().into(), learnt);
        }
    }

    /// (learnt, not cacheable) skeletons, for tests.
    #[cfg(test)]
    pub fn counts(&self) -> (usize, usize) {
        let by_template = self.by_template.read().unwrap();
        let all = by_template.values().flat_map(|known| known.values());
        all.fold((0, 0), |(ok, not), learnt| match learnt {
            Some(_) => (ok + 1, not),
            None => (ok, not + 1),
        })
    }
}
