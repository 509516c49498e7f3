//! Review mode where it used to stick, on SQLite and PostgreSQL with a path remote: a first run
//! on an empty remote publishes main; a review push that fails shows on the tenant and in
//! `/readyz`; a dead writer's lock on a review branch is removed; a signup whose proposal is
//! closed unmerged says that nothing is deployed.

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::{Backend, TestServer};
use serde_json::Value;

for_each_backend!(an_empty_remote_a_failing_push_a_dead_lock_and_a_closed_signup);

/// Polls the tenant's status until `ok` holds (60 s at most).
async fn wait_until(s: &TestServer, id: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = s.deployment_status(id).await;
        if ok(&st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never {what}: {st}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn bare_remote(path: &Path) -> git2::Repository {
    git2::Repository::init_opts(
        path,
        git2::RepositoryInitOptions::new()
            .bare(true)
            .initial_head("main"),
    )
    .unwrap()
}

async fn an_empty_remote_a_failing_push_a_dead_lock_and_a_closed_signup(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let remote_dir = dir.path().join("tenants.git");
    let url = remote_dir.to_str().unwrap().to_string();
    let env = [
        ("GITOPS_REMOTE", url.as_str()),
        ("COMMIT_MODE", "review"),
        ("GITOPS_FETCH_INTERVAL_SECONDS", "1"),
        ("GITOPS_STALE_LOCK_SECONDS", "3"),
    ];
    // The remote does not exist yet: every review push fails.
    let Some(mut s) = TestServer::start_with(backend, &env).await else {
        return;
    };
    let id = s.signed_up("review@acme.example", "Review Co").await;
    let st = wait_until(&s, &id, "showed the failing push", |st| {
        st["error"]
            .as_str()
            .is_some_and(|e| e.contains("review branch"))
    })
    .await;
    assert_eq!(st["status"], "pending", "{st}");
    let (_, ready) = s.get_json("/readyz", None).await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert!(
        ready["gitops"]["remote_error"]
            .as_str()
            .is_some_and(|e| e.contains("push of review branch")),
        "{ready}"
    );

    // The remote appears, empty, with a lock a killed push left on the tenant's review branch.
    s.stop();
    let db = s.db().await;
    let (change_id,): (String,) =
        sqlx::query_as("SELECT change_id FROM render_jobs WHERE customer_id = $1")
            .bind(&id)
            .fetch_one(&db)
            .await
            .unwrap();
    db.close().await;
    let remote = bare_remote(&remote_dir);
    let lock = remote_dir.join(format!("refs/heads/tenant/{id}/{change_id}.lock"));
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(&lock, b"").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(30))
        .unwrap();
    s.restart().await;

    let st = wait_until(&s, &id, "awaited review", |st| {
        st["status"] == "awaiting_review" && st["pending_changes"] == 0
    })
    .await;
    assert!(
        !st["error"].as_str().unwrap_or_default().contains("failed"),
        "the push error cleared: {st}"
    );
    assert!(!lock.exists(), "the dead writer's lock is gone");
    let branch = st["review_branch"].as_str().unwrap().to_string();
    assert_eq!(branch, format!("tenant/{id}/{change_id}"));

    // Main was published, and the review branch grows from it: a pull request has its base.
    let main = remote
        .refname_to_id("refs/heads/main")
        .expect("main published on the empty remote");
    let tip = remote
        .refname_to_id(&format!("refs/heads/{branch}"))
        .unwrap();
    let proposal = remote.find_commit(tip).unwrap();
    assert_eq!(proposal.parent_id(0).unwrap(), main, "branched from main");
    let main_tree = remote.find_commit(main).unwrap().tree().unwrap();
    assert!(main_tree.get_path(Path::new("README.md")).is_ok());
    let (_, ready) = s.get_json("/readyz", None).await;
    assert_eq!(ready["status"], "ready", "{ready}");

    // Nobody merges: the branch is deleted unmerged. Nothing of the tenant was ever on main.
    remote
        .find_reference(&format!("refs/heads/{branch}"))
        .unwrap()
        .delete()
        .unwrap();
    let st = wait_until(&s, &id, "was abandoned", |st| st["status"] == "abandoned").await;
    assert!(st["committed_revision"].is_null(), "{st}");
    assert!(st["review_branch"].is_null(), "{st}");
    assert_eq!(st["customer"]["deploymentStatus"], "failed", "{st}");
    assert!(
        st["error"]
            .as_str()
            .is_some_and(|e| e.contains("closed unmerged")),
        "{st}"
    );
    let main_tree = remote
        .find_commit(remote.refname_to_id("refs/heads/main").unwrap())
        .unwrap()
        .tree()
        .unwrap();
    assert!(
        main_tree
            .get_path(Path::new(&billing::render::tenant_dir(&id)))
            .is_err(),
        "nothing of the tenant is on main"
    );
    common::assert_git_fsck_strict(&remote_dir);
}
