#!/usr/bin/env python3
"""Counts the non-test lines of the Rust files under a directory (default src/gitops): every line
(code, comments, blanks) except files named tests.rs and the `#[cfg(test)]` items (a `mod tests;`
line or a whole `mod tests { ... }` block, braces matched)."""
import pathlib
import sys


def non_test_lines(text):
    lines = text.splitlines()
    kept, i = 0, 0
    while i < len(lines):
        if lines[i].strip() == "#[cfg(test)]":
            i += 1
            depth, opened = 0, False
            while i < len(lines):
                depth += lines[i].count("{") - lines[i].count("}")
                opened = opened or "{" in lines[i]
                i += 1
                if (opened and depth <= 0) or (not opened and lines[i - 1].rstrip().endswith(";")):
                    break
            continue
        kept += 1
        i += 1
    return kept


root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "src/gitops")
total = 0
for path in sorted(root.rglob("*.rs")):
    if path.name == "tests.rs":
        continue
    n = non_test_lines(path.read_text())
    total += n
    print(f"{n:6} {path}")
print(f"{total:6} total")
