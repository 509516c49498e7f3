//! Review mode where it used to stick, on SQLite and PostgreSQL with a path remote: a first run
//! on an empty remote publishes main; a review push that fails shows on the tenant and in
//! `/readyz`; a dead writer's lock on a review branch is removed; a signup whose proposal is
//! closed unmerged says that nothing is deployed; a squash merged while the service was down
//! with its repository lost is recognised by its files; a squash is no drift, and a hand edit
//! that copies our commit message (Change-Id and all) is.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::git_cli::{fresh_clone, git_as};
use common::review::{quota_on_main, templates_copy, upgrade_quota_template, wait_until};
use common::{Backend, TestServer};
use serde_json::Value;

for_each_backend!(
    an_empty_remote_a_failing_push_a_dead_lock_and_a_closed_signup,
    a_squash_while_down_with_the_repository_lost_is_a_merge,
    a_squash_is_no_drift_and_a_copied_change_id_is,
);

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
        // Per-tenant proposals, not a rollout's waves.
        ("ROLLOUT_POLICY", "manual"),
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

/// Runs git in `dir` as dave, who merges by hand.
fn git(dir: &Path, args: &[&str]) -> String {
    git_as(dir, "dave", args)
}

/// Squash-merges `branch` into the remote's main with a message of dave's own (no Change-Id:
/// only the files can tell it is the proposal); returns the new main.
fn squash_merge(url: &str, work: &Path, branch: &str) -> String {
    let clone = work.join("dave");
    fresh_clone(url, &clone);
    git(&clone, &["fetch", "-q", "origin", branch]);
    git(&clone, &["merge", "-q", "--squash", "FETCH_HEAD"]);
    git(
        &clone,
        &["commit", "-q", "-m", "Apply the proposal, squashed"],
    );
    git(&clone, &["push", "-q", "origin", "main"]);
    git(&clone, &["rev-parse", "HEAD"])
}

async fn a_squash_while_down_with_the_repository_lost_is_a_merge(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let remote_dir = dir.path().join("tenants.git");
    bare_remote(&remote_dir);
    let url = remote_dir.to_str().unwrap().to_string();
    let env = [
        ("GITOPS_REMOTE", url.as_str()),
        ("COMMIT_MODE", "review"),
        // Per-tenant proposals, not a rollout's waves.
        ("ROLLOUT_POLICY", "manual"),
        ("GITOPS_FETCH_INTERVAL_SECONDS", "1"),
    ];
    let Some(mut s) = TestServer::start_with(backend, &env).await else {
        return;
    };
    let id = s.signed_up("squash@acme.example", "Squash Co").await;
    let st = wait_until(&s, &id, "awaited review", |st| {
        st["status"] == "awaiting_review" && st["pending_changes"] == 0
    })
    .await;
    let branch = st["review_branch"].as_str().unwrap().to_string();

    // The service is down, its local repository lost (an ephemeral volume), when a person
    // squash-merges the proposal: the new repository never sees the branch's commit.
    s.stop();
    let merged = squash_merge(&url, dir.path(), &branch);
    std::fs::remove_dir_all(s.data_dir().join("gitops.git")).unwrap();
    s.restart().await;
    let st = wait_until(&s, &id, "was merged", |st| st["status"] == "committed").await;
    assert_eq!(st["committed_revision"], merged.as_str(), "{st}");
    assert!(st["review_branch"].is_null(), "{st}");
    common::assert_git_fsck_strict(&remote_dir);
}

async fn a_squash_is_no_drift_and_a_copied_change_id_is(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let remote_dir = dir.path().join("tenants.git");
    let remote = bare_remote(&remote_dir);
    let url = remote_dir.to_str().unwrap().to_string();
    let templates = templates_copy(dir.path());
    let templates_text = templates.to_str().unwrap().to_string();
    let env = [
        ("GITOPS_REMOTE", url.as_str()),
        ("COMMIT_MODE", "review"),
        // Per-tenant proposals, not a rollout's waves.
        ("ROLLOUT_POLICY", "manual"),
        ("COMMIT_MODE_OVERRIDES", "signup=direct"),
        ("GITOPS_FETCH_INTERVAL_SECONDS", "1"),
        ("TEMPLATES_DIR", templates_text.as_str()),
    ];
    let Some(mut s) = TestServer::start_with(backend, &env).await else {
        return;
    };
    let id = s.signed_up("drift@acme.example", "Drift Co").await;
    let st = s
        .wait_for_status(&id, "committed", Duration::from_secs(60))
        .await;
    let ours = st["committed_revision"].as_str().unwrap().to_string();

    // A template upgrade proposed for review, squash-merged by hand: a merge, not drift.
    upgrade_quota_template(&templates, "reviewed quota");
    s.restart().await;
    let (code, body) = s.admin_post("/api/admin/tenants/redeploy").await;
    assert_eq!(code, 202, "{body}");
    let st = wait_until(&s, &id, "awaited review", |st| {
        st["status"] == "awaiting_review" && st["pending_changes"] == 0
    })
    .await;
    let branch = st["review_branch"].as_str().unwrap().to_string();
    let squash = squash_merge(&url, dir.path(), &branch);
    let st = wait_until(&s, &id, "was merged", |st| {
        st["status"] == "committed" && st["review_branch"].is_null()
    })
    .await;
    assert_eq!(st["committed_revision"], squash.as_str(), "{st}");
    assert!(quota_on_main(&remote, &id).contains("reviewed quota"));

    // A hand edit that copies our signup commit's message, Change-Id and all: drift.
    let clone = dir.path().join("mallory");
    fresh_clone(&url, &clone);
    let quota = clone.join(format!("{}/quota.yaml", billing::render::tenant_dir(&id)));
    let text = std::fs::read_to_string(&quota).unwrap();
    std::fs::write(&quota, text.replace("reviewed quota", "raised by hand")).unwrap();
    git_as(&clone, "mallory", &["commit", "-q", "-a", "-C", &ours]);
    git_as(&clone, "mallory", &["push", "-q", "origin", "main"]);
    let spoof = git_as(&clone, "mallory", &["rev-parse", "HEAD"]);
    let st = wait_until(&s, &id, "drifted", |st| st["status"] == "drifted").await;
    let drifts: Vec<&Value> = st["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["state"] == "drifted")
        .collect();
    assert_eq!(drifts.len(), 1, "only the copied message drifted: {st}");
    assert_eq!(drifts[0]["revision"], spoof.as_str(), "{st}");
}
