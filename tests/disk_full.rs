//! A full disk under the GitOps repository: commits fail, and operators see it where they look
//! (`/readyz` degraded with the reason, the tenant's status error, the failed-commit metric);
//! once space returns every signup is committed and the signs clear. The disk is a small tmpfs
//! mounted by the test (root only).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Backend, TestServer};

/// A tmpfs mounted for the test's lifetime; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            failed => {
                let problem = format!("cannot mount a tmpfs here (needs root): {failed:?}");
                common::skip::skip_unless_ci("the disk-full tests", problem);
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the file system holding `dir` until writes fail; returns the filler file.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    // Whatever a smaller write can still take.
    while file.write_all(&chunk[..512]).is_ok() {}
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_shows_in_readiness_status_and_metrics_and_loses_nothing() {
    let Some(disk) = Tmpfs::mount("16m") else {
        return;
    };
    let repo = disk.path().join("gitops.git");
    let repo_env = repo.to_str().unwrap().to_string();
    let s = TestServer::start_with(Backend::Sqlite, &[("GITOPS_REPO", &repo_env)])
        .await
        .unwrap();
    let failures_before = s.metric("billing_gitops_commit_failures_total").await;

    let filler = fill(disk.path());
    let (code, body) = s
        .signup("full@acme.example", "correct-horse-battery", "Full Disk")
        .await;
    assert_eq!(
        code, 201,
        "signup is accepted while Git cannot commit: {body}"
    );
    let id = body["customer"]["customer_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Each place an operator looks says why nothing reaches Git.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (ready, status) = loop {
        let (_, ready) = s.get_json("/readyz", None).await;
        let status = s.deployment_status(&id).await;
        if ready["status"] == "degraded" && status["error"].is_string() {
            break (ready, status);
        }
        assert!(Instant::now() < deadline, "{ready}\n{status}\n{}", s.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = ready["reason"].as_str().unwrap();
    assert!(reason.contains("No space left on device"), "{ready}");
    assert_eq!(status["status"], "pending", "{status}");
    assert!(
        status["error"].as_str().unwrap().contains("No space left"),
        "{status}"
    );
    assert!(s.metric("billing_gitops_commit_failures_total").await > failures_before);

    // Space returns: the signup is committed, and the signs clear.
    std::fs::remove_file(filler).unwrap();
    let status = s
        .wait_for_status(&id, "committed", Duration::from_secs(60))
        .await;
    assert!(status["error"].is_null(), "{status}");
    let (_, ready) = s.get_json("/readyz", None).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(ready["reason"].is_null(), "{ready}");
    assert!(s.metric("billing_gitops_commits_total").await >= 1);
    let git = git2::Repository::open_bare(&repo).unwrap();
    let head = git.refname_to_id("refs/heads/main").unwrap();
    let tree = git.find_commit(head).unwrap().tree().unwrap();
    assert!(tree
        .get_path(Path::new(&format!(
            "{}/kustomization.yaml",
            billing::render::tenant_dir(&id)
        )))
        .is_ok());
    drop(s);
}
