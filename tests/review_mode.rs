//! Review mode against the running server, a real `git daemon` remote and a local HTTP server
//! answering as GitHub's (and GitLab's) REST API documents: each change gets its own branch
//! and pull request; a merge commit, a squash merge and a cherry-pick made with the git CLI are
//! each detected as merged; a newer change supersedes an open one; a closed pull request
//! abandons its change. `git fsck --strict` afterwards.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::Json;
use common::git_cli::{fresh_clone, git_as};
use common::review::{quota_on_main, templates_copy, upgrade_quota_template, wait_until};
use common::{Backend, TestServer};
use serde_json::{json, Value};

/// A request the fake forge received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    auth: String,
    body: Value,
}

#[derive(Default)]
struct Forge {
    seen: Vec<Seen>,
    /// Pull request number -> state (`open`, `closed`; GitLab: `opened`, `closed`).
    states: Vec<String>,
}

type Shared = Arc<Mutex<Forge>>;

/// Answers the calls the service makes, in GitHub's shapes under `/repos/acme/tenants/pulls`
/// and GitLab's under `/projects/acme%2Ftenants/merge_requests`.
async fn forge(State(forge): State<Shared>, req: Request) -> (StatusCode, Json<Value>) {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let auth = ["authorization", "private-token"]
        .iter()
        .filter_map(|h| req.headers().get(*h))
        .map(|v| v.to_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut f = forge.lock().unwrap();
    f.seen.push(Seen {
        method: method.clone(),
        path: path.clone(),
        auth,
        body: body.clone(),
    });
    let number = path
        .rsplit('/')
        .next()
        .and_then(|n| n.parse::<usize>().ok());
    let github = path.starts_with("/repos/acme/tenants/pulls");
    match (method.as_str(), number) {
        ("POST", None) => {
            f.states.push(if github { "open" } else { "opened" }.into());
            let n = f.states.len();
            let answer = if github {
                json!({ "number": n, "state": "open", "html_url": format!("https://github.example/acme/tenants/pull/{n}"),
                        "head": { "ref": body["head"] }, "base": { "ref": body["base"] } })
            } else {
                json!({ "iid": n, "id": 1000 + n, "state": "opened", "web_url": format!("https://gitlab.example/acme/tenants/-/merge_requests/{n}"),
                        "source_branch": body["source_branch"], "target_branch": body["target_branch"] })
            };
            (StatusCode::CREATED, Json(answer))
        }
        ("GET", Some(n)) => {
            let state = f.states[n - 1].clone();
            (
                StatusCode::OK,
                Json(
                    json!({ "number": n, "iid": n, "state": state, "merged": false, "merged_at": null }),
                ),
            )
        }
        ("PATCH" | "PUT", Some(n)) => {
            f.states[n - 1] = "closed".into();
            (
                StatusCode::OK,
                Json(json!({ "number": n, "iid": n, "state": "closed", "merged": false })),
            )
        }
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({ "message": "Not Found" })),
        ),
    }
}

async fn start_forge() -> (String, Shared) {
    let shared = Shared::default();
    let app = axum::Router::new()
        .fallback(forge)
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, shared)
}

/// Runs git in `dir` as carol, the reviewer.
fn git(dir: &Path, args: &[&str]) -> String {
    git_as(dir, "carol", args)
}

fn remote_branches(remote: &git2::Repository) -> Vec<String> {
    remote
        .branches(Some(git2::BranchType::Local))
        .unwrap()
        .map(|b| b.unwrap().0.name().unwrap().unwrap().to_string())
        .filter(|n| n != "main")
        .collect()
}

async fn awaiting(s: &TestServer, id: &str) -> Value {
    wait_until(s, id, "awaited review", |st| {
        st["status"] == "awaiting_review" && st["pending_changes"] == 0
    })
    .await
}

/// Awaiting review with its pull request opened (the forge is called once the review is
/// recorded, so the two are seen a moment apart).
async fn awaiting_request(s: &TestServer, id: &str) -> Value {
    wait_until(s, id, "awaited review with a pull request", |st| {
        st["status"] == "awaiting_review"
            && st["pending_changes"] == 0
            && st["review_url"].is_string()
    })
    .await
}

async fn committed_at(s: &TestServer, id: &str, revision: &str) {
    wait_until(s, id, "was committed at the merge", |st| {
        st["status"] == "committed"
            && st["committed_revision"] == revision
            && st["review_branch"].is_null()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_pull_requests_merged_squashed_cherry_picked_superseded_and_closed() {
    let daemon = common::GitDaemon::start("tenants.git").expect("git daemon");
    let remote = daemon.repo("tenants.git");
    let url = daemon.url("tenants.git");
    let (forge_base, forge) = start_forge().await;
    let work = tempfile::tempdir().unwrap();
    let templates = templates_copy(work.path());
    let templates_text = templates.to_str().unwrap().to_string();
    let env = [
        ("GITOPS_REMOTE", url.as_str()),
        ("GITOPS_FETCH_INTERVAL_SECONDS", "1"),
        ("COMMIT_MODE", "review"),
        ("COMMIT_MODE_OVERRIDES", "signup=direct"),
        ("GITHUB_API_BASE", forge_base.as_str()),
        ("GITHUB_REPO", "acme/tenants"),
        ("GITHUB_TOKEN", "ghp_test_token"),
        ("TEMPLATES_DIR", templates_text.as_str()),
        // Per-tenant proposals (the admin redeploy), not a rollout's waves.
        ("ROLLOUT_POLICY", "manual"),
    ];
    let mut s = TestServer::start_with(Backend::Sqlite, &env).await.unwrap();
    let mut ids = Vec::new();
    for name in ["merge", "squash", "pick", "close"] {
        ids.push(
            s.signed_up(&format!("{name}@acme.example"), &format!("{name} Co"))
                .await,
        );
    }
    for id in &ids {
        s.wait_for_status(id, "committed", Duration::from_secs(60))
            .await;
    }
    assert!(
        forge.lock().unwrap().seen.is_empty(),
        "signups go straight to main"
    );
    let before = quota_on_main(&remote, &ids[0]);

    // A template upgrade: one branch and one pull request per tenant; main does not move.
    upgrade_quota_template(&templates, "reviewed upgrade");
    s.restart().await;
    let (code, body) = s.admin_post("/api/admin/tenants/redeploy").await;
    assert_eq!(code, 202, "{body}");
    let mut branches = Vec::new();
    let mut pulls = Vec::new();
    for id in &ids {
        let st = awaiting_request(&s, id).await;
        let branch = st["review_branch"].as_str().unwrap().to_string();
        let pull = st["review_url"].as_str().unwrap_or_default();
        pulls.push(pull.rsplit('/').next().unwrap().to_string());
        assert!(branch.starts_with(&format!("tenant/{id}/")), "{st}");
        assert!(
            st["review_url"].as_str().unwrap().contains("/pull/"),
            "{st}"
        );
        branches.push(branch);
    }
    assert_eq!(
        quota_on_main(&remote, &ids[0]),
        before,
        "main waits for the merge"
    );
    let mut on_remote = remote_branches(&remote);
    on_remote.sort();
    let mut expected = branches.clone();
    expected.sort();
    assert_eq!(on_remote, expected);
    let posts: Vec<Seen> = forge
        .lock()
        .unwrap()
        .seen
        .iter()
        .filter(|r| r.method == "POST")
        .cloned()
        .collect();
    assert_eq!(posts.len(), 4, "{posts:?}");
    for (id, branch) in ids.iter().zip(&branches) {
        let post = posts
            .iter()
            .find(|p| p.body["head"] == branch.as_str())
            .expect("a pull request per branch");
        assert_eq!(post.path, "/repos/acme/tenants/pulls");
        assert_eq!(post.auth, "Bearer ghp_test_token");
        assert_eq!(post.body["head"], branch.as_str());
        assert_eq!(post.body["base"], "main");
        assert!(
            post.body["title"].as_str().unwrap().contains(id.as_str()),
            "{post:?}"
        );
        assert!(
            post.body["body"]
                .as_str()
                .unwrap()
                .contains("files changed"),
            "{post:?}"
        );
    }

    // A second change of the last tenant supersedes its open one.
    let close_id = &ids[3];
    let (code, body) = s
        .admin_post(&format!("/api/customers/{close_id}/deploy?force=true"))
        .await;
    assert_eq!(code, 202, "{body}");
    let newer = wait_until(&s, close_id, "got a newer review", |st| {
        st["status"] == "awaiting_review"
            && st["review_branch"].is_string()
            && st["review_branch"] != branches[3].as_str()
    })
    .await;
    assert!(forge
        .lock()
        .unwrap()
        .seen
        .iter()
        .any(|r| r.method == "PATCH"
            && r.path == format!("/repos/acme/tenants/pulls/{}", pulls[3])
            && r.body["state"] == "closed"));
    assert!(
        !remote_branches(&remote).contains(&branches[3]),
        "the superseded branch is gone"
    );

    // People merge three ways with the git CLI.
    let clone = work.path().join("c");
    fresh_clone(&url, &clone);
    git(
        &clone,
        &[
            "merge",
            "--no-ff",
            "-m",
            "Merge pull request #1",
            &format!("origin/{}", branches[0]),
        ],
    );
    let squash_msg = git(
        &clone,
        &[
            "log",
            "-1",
            "--format=%B",
            &format!("origin/{}", branches[1]),
        ],
    );
    git(
        &clone,
        &["merge", "--squash", &format!("origin/{}", branches[1])],
    );
    git(
        &clone,
        &[
            "commit",
            "-q",
            "-m",
            &format!("Squashed upgrade (#2)\n\n* {squash_msg}"),
        ],
    );
    let squashed = git(&clone, &["rev-parse", "HEAD"]);
    git(
        &clone,
        &["cherry-pick", "-x", &format!("origin/{}", branches[2])],
    );
    let picked = git(&clone, &["rev-parse", "HEAD"]);
    let merged = git(&clone, &["rev-parse", "HEAD~2"]);
    git(&clone, &["push", "-q", "origin", "main"]);
    committed_at(&s, &ids[0], &merged).await;
    committed_at(&s, &ids[1], &squashed).await;
    committed_at(&s, &ids[2], &picked).await;
    for id in &ids[..3] {
        assert!(quota_on_main(&remote, id).starts_with("# reviewed upgrade"));
    }

    // The last pull request is closed unmerged: the change is abandoned.
    let newer: usize = newer["review_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    forge.lock().unwrap().states[newer - 1] = "closed".into();
    let st = wait_until(&s, close_id, "was abandoned", |st| {
        st["review_branch"].is_null()
    })
    .await;
    assert_eq!(st["status"], "committed", "{st}");
    assert!(
        !quota_on_main(&remote, close_id).contains("reviewed upgrade"),
        "main kept its version"
    );
    assert!(
        remote_branches(&remote).is_empty(),
        "{:?}",
        remote_branches(&remote)
    );
    common::assert_git_fsck_strict(&daemon.dir.path().join("tenants.git"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_merge_request_opened_and_fast_forward_detected() {
    let daemon = common::GitDaemon::start("tenants.git").expect("git daemon");
    let remote = daemon.repo("tenants.git");
    let url = daemon.url("tenants.git");
    let (forge_base, forge) = start_forge().await;
    let work = tempfile::tempdir().unwrap();
    let templates = templates_copy(work.path());
    let templates_text = templates.to_str().unwrap().to_string();
    let env = [
        ("GITOPS_REMOTE", url.as_str()),
        ("GITOPS_FETCH_INTERVAL_SECONDS", "1"),
        ("COMMIT_MODE_OVERRIDES", "template=review"),
        ("GITLAB_API_BASE", forge_base.as_str()),
        ("GITLAB_PROJECT", "acme/tenants"),
        ("GITLAB_TOKEN", "glpat-test"),
        ("TEMPLATES_DIR", templates_text.as_str()),
        // Per-tenant proposals (the admin redeploy), not a rollout's waves.
        ("ROLLOUT_POLICY", "manual"),
    ];
    let mut s = TestServer::start_with(Backend::Sqlite, &env).await.unwrap();
    let id = s.signed_up("gl@acme.example", "Lab Co").await;
    s.wait_for_status(&id, "committed", Duration::from_secs(60))
        .await;
    upgrade_quota_template(&templates, "reviewed on gitlab");
    s.restart().await;
    let (code, _) = s.admin_post("/api/admin/tenants/redeploy").await;
    assert_eq!(code, 202);
    let st = awaiting_request(&s, &id).await;
    let branch = st["review_branch"].as_str().unwrap().to_string();
    assert!(
        st["review_url"]
            .as_str()
            .unwrap()
            .contains("/merge_requests/1"),
        "{st}"
    );
    let post = forge.lock().unwrap().seen[0].clone();
    assert_eq!(post.method, "POST");
    assert_eq!(post.path, "/projects/acme%2Ftenants/merge_requests");
    assert_eq!(post.auth, "glpat-test");
    assert_eq!(post.body["source_branch"], branch.as_str());
    assert_eq!(post.body["target_branch"], "main");

    // A fast-forward merge (GitLab's "rebase" merge method) keeps the branch's own commit.
    let clone = work.path().join("c");
    fresh_clone(&url, &clone);
    git(&clone, &["merge", "--ff-only", &format!("origin/{branch}")]);
    git(&clone, &["push", "-q", "origin", "main"]);
    let tip = git(&clone, &["rev-parse", "HEAD"]);
    committed_at(&s, &id, &tip).await;
    assert!(quota_on_main(&remote, &id).starts_with("# reviewed on gitlab"));
    common::assert_git_fsck_strict(&daemon.dir.path().join("tenants.git"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_forge_deleting_the_branch_abandons_the_change() {
    let daemon = common::GitDaemon::start("tenants.git").expect("git daemon");
    let remote = daemon.repo("tenants.git");
    let url = daemon.url("tenants.git");
    let work = tempfile::tempdir().unwrap();
    let templates = templates_copy(work.path());
    let templates_text = templates.to_str().unwrap().to_string();
    let env = [
        ("GITOPS_REMOTE", url.as_str()),
        ("GITOPS_FETCH_INTERVAL_SECONDS", "1"),
        ("COMMIT_MODE_OVERRIDES", "template=review"),
        ("TEMPLATES_DIR", templates_text.as_str()),
        // Per-tenant proposals (the admin redeploy), not a rollout's waves.
        ("ROLLOUT_POLICY", "manual"),
    ];
    let mut s = TestServer::start_with(Backend::Sqlite, &env).await.unwrap();
    let id = s.signed_up("noforge@acme.example", "Plain Git Co").await;
    s.wait_for_status(&id, "committed", Duration::from_secs(60))
        .await;
    let before = quota_on_main(&remote, &id);
    upgrade_quota_template(&templates, "never merged");
    s.restart().await;
    let (code, _) = s.admin_post("/api/admin/tenants/redeploy").await;
    assert_eq!(code, 202);
    let st = awaiting(&s, &id).await;
    let branch = st["review_branch"].as_str().unwrap().to_string();
    assert!(
        st["review_url"].is_null(),
        "no forge, no pull request: {st}"
    );
    assert_eq!(remote_branches(&remote), vec![branch.clone()]);

    let clone = work.path().join("c");
    fresh_clone(&url, &clone);
    git(&clone, &["push", "-q", "origin", "--delete", &branch]);
    let st = wait_until(&s, &id, "was abandoned", |st| st["review_branch"].is_null()).await;
    assert_eq!(st["status"], "committed", "{st}");
    assert_eq!(quota_on_main(&remote, &id), before, "main kept its version");
    let history = st["history"].as_array().unwrap();
    assert!(
        history[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("closed unmerged")),
        "{st}"
    );
    common::assert_git_fsck_strict(&daemon.dir.path().join("tenants.git"));
}
