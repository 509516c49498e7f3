//! A unified diff of one file, as `git diff` prints it, for a dry run's sample.

/// The unified diff from `old` (None: the file is new) to `new` (None: removed) at `path`.
pub(crate) fn unified(path: &str, old: Option<&[u8]>, new: Option<&[u8]>) -> String {
    let mut opts = git2::DiffOptions::new();
    opts.context_lines(3);
    let patch = git2::Patch::from_buffers(
        old.unwrap_or_default(),
        Some(std::path::Path::new(path)),
        new.unwrap_or_default(),
        Some(std::path::Path::new(path)),
        Some(&mut opts),
    );
    match patch.and_then(|mut p| p.to_buf()) {
        Ok(buf) => String::from_utf8_lossy(&buf).into_owned(),
        Err(e) => format!("--- {path}\n(no diff: {e})\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::unified;

    #[test]
    fn a_changed_line_shows_as_removed_and_added_under_file_headers() {
        let diff = unified(
            "tenants/a/b/c/abc/quota.yaml",
            Some(b"kind: ResourceQuota\npods: \"10\"\n"),
            Some(b"kind: ResourceQuota\npods: \"12\"\n"),
        );
        assert!(
            diff.contains("--- a/tenants/a/b/c/abc/quota.yaml\n"),
            "{diff}"
        );
        assert!(
            diff.contains("+++ b/tenants/a/b/c/abc/quota.yaml\n"),
            "{diff}"
        );
        assert!(diff.contains("-pods: \"10\"\n+pods: \"12\"\n"), "{diff}");
        assert!(diff.contains(" kind: ResourceQuota\n"), "{diff}");
    }
}
