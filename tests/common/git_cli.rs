//! The git CLI as a person at the terminal uses it: commands run as a named author, and fresh
//! clones of the remote's main.

use std::path::Path;
use std::process::Command;

/// Runs git in `dir` as `who` (`who@ops.example`); panics with its stderr when it fails.
pub fn git_as(dir: &Path, who: &str, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", &format!("user.name={who}")])
        .args(["-c", &format!("user.email={who}@ops.example")])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A fresh clone of the remote's main in `dir` (whatever was there is removed).
pub fn fresh_clone(url: &str, dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let out = Command::new("git")
        .args(["clone", "-q", "-b", "main", url])
        .arg(dir)
        .output()
        .expect("git clone");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
