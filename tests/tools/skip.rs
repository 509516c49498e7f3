//! What a test does when something it needs is missing (the git CLI, kubectl, Python with
//! `cryptography`, PostgreSQL): skip with a note locally, fail under CI, so a CI run without the
//! tool can never pass silently. Included with `#[path]` by `src/lib.rs` (unit tests),
//! `tests/common` and the integration tests that do without it.

/// Whether this is a CI run: `CI` set to anything but empty, `0` or `false`.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
}

/// `what` cannot run because of `problem`: panics under CI, else says SKIPPED and returns, for
/// the caller to return early.
pub fn skip_unless_ci(what: &str, problem: impl std::fmt::Display) {
    if in_ci() {
        panic!("CI requires {what}, which cannot run: {problem}");
    }
    eprintln!("SKIPPED {what}: {problem}");
}
