//! The house's layering, checked on the source itself: no import cycle between `src/`'s
//! top-level modules (`use crate::x`, grouped `use crate::{x::a, y}` and `crate::x::` paths in
//! non-test code), the application state (`crate::app`) seen only by the entry points and the
//! composition root, and the HTTP error type only under `src/http/`. Only std: it reads files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Who may see `crate::app`: the entry points and the composition root itself.
const SEES_APP: [&str; 4] = ["main.rs", "cli/", "http/", "app.rs"];

/// Module -> module it uses -> the files that use it.
type Edges = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, as paths relative to `src/`.
fn rust_files(dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(src()).unwrap();
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The top-level module a file belongs to (`billing/stripe/mod.rs` -> `billing`).
fn module_of(rel: &str) -> String {
    let first = rel.split('/').next().unwrap();
    first.strip_suffix(".rs").unwrap_or(first).to_string()
}

/// The source with comments, string and char literals blanked (newlines kept), so braces and
/// paths are only what the compiler sees.
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < c.len() {
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && matches!(c.get(i + 1), Some('"') | Some('#'))
            && !ident(c.get(i.wrapping_sub(1)))
        {
            // A raw string r"…" or r#"…"#: ends at the quote followed by as many hashes.
            let mut j = i + 1;
            while c.get(j) == Some(&'#') {
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            let hashes = j - i - 1;
            i = j + 1;
            while i < c.len()
                && !(c[i] == '"' && (0..hashes).all(|k| c.get(i + 1 + k) == Some(&'#')))
            {
                out.push(blank(c[i]));
                i += 1;
            }
            i += 1 + hashes;
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                out.push(blank(c[i]));
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c[i] == '\'' && (c.get(i + 2) == Some(&'\'') || c.get(i + 1) == Some(&'\\')) {
            // A char literal ('x', '\n', '\u{..}'); a lifetime ('a) has no closing quote.
            i += 1;
            while i < c.len() && c[i] != '\'' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

fn ident(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

/// The code without `#[cfg(test)]` items (a `mod tests { … }`, a `mod tests;`, a test helper).
fn without_test_items(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let mut item = &rest[at + "#[cfg(test)]".len()..];
        // Further attributes of the same item.
        while let Some(attr) = item.trim_start().strip_prefix("#[") {
            item = &attr[attr.find(']').map_or(attr.len(), |e| e + 1)..];
        }
        let end = match item.find([';', '{']) {
            Some(i) if item.as_bytes()[i] == b';' => i + 1,
            Some(i) => {
                let mut depth = 0;
                let mut end = item.len();
                for (j, b) in item.bytes().enumerate().skip(i) {
                    depth += i32::from(b == b'{') - i32::from(b == b'}');
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                end
            }
            None => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// The top-level modules a piece of code names after `crate::`, grouped uses included.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        if ident(code[..at].chars().last().as_ref()) {
            continue; // `$crate::`, `mycrate::`
        }
        let after = code[at + "crate::".len()..].trim_start();
        match after.strip_prefix('{') {
            Some(group) => found.extend(group_names(group)),
            None => found.extend(first_name(after)),
        }
    }
    found
}

fn first_name(text: &str) -> Option<String> {
    let name: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// The first name of each item of a `{…}` use group (the text after its opening brace):
/// `a::x, b, c::{d, e}}` -> a, b, c.
fn group_names(group: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (i, ch) in group.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if c.is_whitespace() => {}
            _ if item_start && depth == 0 => {
                names.extend(first_name(&group[i..]).filter(|n| n != "self"));
                item_start = false;
            }
            _ => {}
        }
    }
    names
}

/// Every edge between top-level modules in non-test code, with the files that make it.
fn edges() -> (BTreeSet<String>, Edges) {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| module_of(f))
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut edges = Edges::new();
    for file in files.iter().filter(|f| !f.ends_with("tests.rs")) {
        let from = module_of(file);
        if !modules.contains(&from) {
            continue;
        }
        let text = std::fs::read_to_string(src().join(file)).unwrap();
        for to in crate_paths(&without_test_items(&code_only(&text))) {
            if to != from && modules.contains(&to) {
                edges
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(file.clone());
            }
        }
    }
    (modules, edges)
}

/// Every module reachable from `start` by one or more edges.
fn reachable(start: &str, edges: &Edges) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![start.to_string()];
    while let Some(at) = todo.pop() {
        for next in edges.get(&at).into_iter().flat_map(|e| e.keys()) {
            if seen.insert(next.clone()) {
                todo.push(next.clone());
            }
        }
    }
    seen
}

/// One shortest loop from `start` back to itself, through `within`.
fn shortest_cycle(start: &str, within: &BTreeSet<String>, edges: &Edges) -> Vec<String> {
    let mut came_from: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.to_string()]);
    while let Some(at) = queue.pop_front() {
        for next in edges.get(&at).into_iter().flat_map(|e| e.keys()) {
            if next == start {
                let mut path = vec![at.clone()];
                while let Some(prev) = came_from.get(path.last().unwrap()) {
                    path.push(prev.clone());
                }
                path.reverse();
                return path;
            }
            if within.contains(next) && !came_from.contains_key(next) {
                came_from.insert(next.clone(), at.clone());
                queue.push_back(next.clone());
            }
        }
    }
    unreachable!("{start} is on a loop")
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let (modules, edges) = edges();
    assert!(
        modules.len() > 10 && edges.len() > 10,
        "the source was not read: {modules:?}"
    );
    let reach: BTreeMap<&String, BTreeSet<String>> =
        modules.iter().map(|m| (m, reachable(m, &edges))).collect();
    let mut knots: Vec<BTreeSet<String>> = Vec::new();
    for m in &modules {
        if reach[m].contains(m) && !knots.iter().any(|k| k.contains(m)) {
            // The module's knot: every module it reaches that reaches it back.
            knots.push(
                reach[m]
                    .iter()
                    .filter(|x| reach[x].contains(m))
                    .cloned()
                    .collect(),
            );
        }
    }
    let report: Vec<String> = knots
        .iter()
        .map(|knot| {
            let first = knot.iter().next().unwrap();
            let mut lines = vec![format!(
                "{} modules in one knot: {}\n  e.g. {} -> {first}\n  its edges:",
                knot.len(),
                knot.iter().cloned().collect::<Vec<_>>().join(", "),
                shortest_cycle(first, knot, &edges).join(" -> "),
            )];
            for from in knot {
                for (to, files) in edges.get(from).into_iter().flatten() {
                    if knot.contains(to) {
                        let files: Vec<_> = files.iter().map(String::as_str).collect();
                        lines.push(format!("    {from} -> {to}   ({})", files.join(", ")));
                    }
                }
            }
            lines.join("\n")
        })
        .collect();
    assert!(
        report.is_empty(),
        "import cycles between top-level modules of src/ (break each edge that points up: move \
         the shared piece down, or pass a handle):\n{}",
        report.join("\n")
    );
}

#[test]
fn app_state_and_http_errors_stay_at_the_edge() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let code = code_only(&std::fs::read_to_string(src().join(file)).unwrap());
        if !SEES_APP.iter().any(|p| file.starts_with(p)) && crate_paths(&code).contains("app") {
            wrong.push(format!(
                "  {file} uses crate::app: take the handles you use (see app.rs) instead"
            ));
        }
        if !file.starts_with("http/") && contains_word(&code, "ApiError") {
            wrong.push(format!(
                "  {file} names ApiError: return the module's own error; http/ maps it"
            ));
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

fn contains_word(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(at, _)| {
        !ident(code[..at].chars().last().as_ref())
            && !ident(code[at + word.len()..].chars().next().as_ref())
    })
}

/// The reader itself: grouped and nested uses, full paths, and test code left out.
#[test]
fn the_reader_sees_what_the_compiler_sees() {
    let source = r##"
        use crate::{db::{self, Db}, model, render::tenant_dir};
        use crate::status::Event as E;
        // use crate::commented;
        const S: &str = "crate::in_a_string";
        const R: &str = r#"crate::in_a_raw_string"#;
        fn f<'a>(x: &'a str) -> char { let _ = crate::gitops::open(x); '{' }
        #[cfg(test)]
        mod tests { use crate::only_in_tests; }
        #[cfg(test)]
        #[path = "x.rs"]
        mod helper;
        fn g() { crate::poke::poke(); }
    "##;
    let found = crate_paths(&without_test_items(&code_only(source)));
    let expected: BTreeSet<String> = ["db", "model", "render", "status", "gitops", "poke"]
        .map(String::from)
        .into();
    assert_eq!(found, expected);
}
