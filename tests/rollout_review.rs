//! Template rollouts in review mode through the real server and CLI, a real `git daemon`
//! remote and a local HTTP server answering as GitHub's pull request API documents: the
//! `waves` policy starts the rollout by itself and each wave is one pull request, opened in
//! order, the next only once the last was merged (with the git CLI) and its tenants reported
//! ready at the merge by recorded Flux events; a pull request closed unmerged pauses the
//! rollout, `resume` proposes the wave again, and `abort` closes the open pull request.

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/rollout.rs"]
mod rollouts;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::Json;
use cluster::FLUX_SECRET;
use common::git_cli::{fresh_clone, git_as};
use common::review::upgrade_quota_template;
use common::{Backend, TestServer};
use git2::{Oid, Repository};
use rollouts::*;
use serde_json::{json, Value};

for_each_backend!(each_wave_is_one_pull_request_a_closed_one_pauses_and_abort_closes_it);

/// What the fake GitHub saw and holds: requests as (method, path, body), and each pull
/// request's state by number (1-based).
#[derive(Default)]
struct Forge {
    seen: Vec<(String, String, Value)>,
    states: Vec<&'static str>,
    /// While set, opening a pull request fails with a 502 (counted, not seen).
    down: bool,
    refused: usize,
}

type Shared = Arc<Mutex<Forge>>;

/// `POST /repos/acme/tenants/pulls`, `GET` and `PATCH …/pulls/{number}` in GitHub's shapes.
async fn github(State(forge): State<Shared>, req: Request) -> (StatusCode, Json<Value>) {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut f = forge.lock().unwrap();
    if f.down && method == "POST" {
        f.refused += 1;
        return (
            StatusCode::BAD_GATEWAY,
            Json(json!({ "message": "Server Error" })),
        );
    }
    f.seen.push((method.clone(), path.clone(), body.clone()));
    let number = path.strip_prefix("/repos/acme/tenants/pulls/");
    let number = number.and_then(|n| n.parse::<usize>().ok());
    let pull = |n: usize, state: &str| {
        json!({ "number": n, "state": state, "merged": false, "merged_at": null,
                "html_url": format!("https://github.example/acme/tenants/pull/{n}") })
    };
    match (method.as_str(), number) {
        ("POST", None) if path == "/repos/acme/tenants/pulls" => {
            f.states.push("open");
            let n = f.states.len();
            let mut answer = pull(n, "open");
            answer["head"] = json!({ "ref": body["head"] });
            answer["base"] = json!({ "ref": body["base"] });
            (StatusCode::CREATED, Json(answer))
        }
        ("GET", Some(n)) if n <= f.states.len() => (StatusCode::OK, Json(pull(n, f.states[n - 1]))),
        ("PATCH", Some(n)) if n <= f.states.len() => {
            f.states[n - 1] = "closed";
            (StatusCode::OK, Json(pull(n, "closed")))
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
        .fallback(github)
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, shared)
}

/// The pull requests opened so far: (head branch, title, body).
fn opened(forge: &Shared) -> Vec<(String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    forge
        .lock()
        .unwrap()
        .seen
        .iter()
        .filter(|(m, _, _)| m == "POST")
        .map(|(_, _, b)| (text(&b["head"]), text(&b["title"]), text(&b["body"])))
        .collect()
}

fn remote_branches(remote: &Repository) -> Vec<String> {
    remote
        .branches(Some(git2::BranchType::Local))
        .unwrap()
        .map(|b| b.unwrap().0.name().unwrap().unwrap().to_string())
        .filter(|n| n != "main")
        .collect()
}

/// Checks the wave's pull request (the `nth` opened) and its branch's commit on the remote;
/// returns the wave's tenants.
fn check_proposal(
    forge: &Shared,
    remote: &Repository,
    nth: usize,
    (id, wave, branch): (&str, usize, &str),
    size: usize,
) -> Vec<String> {
    let pulls = opened(forge);
    assert_eq!(
        pulls.len(),
        nth,
        "one pull request per wave, in order: {pulls:?}"
    );
    let (head, title, body) = &pulls[nth - 1];
    assert_eq!(head, branch);
    assert!(
        title.contains(id) && title.contains(&format!("wave {wave}/")),
        "{title}"
    );
    let tip = remote
        .refname_to_id(&format!("refs/heads/{branch}"))
        .unwrap();
    let commit = remote.find_commit(tip).unwrap();
    assert_eq!(trailer(&commit, "Rollout-Id"), [id]);
    assert_eq!(trailer(&commit, "Rollout-Wave"), [wave.to_string()]);
    let tenants = trailer(&commit, "Tenant-Id");
    assert_eq!(tenants.len(), size, "wave {wave}");
    assert_eq!(changed_tenants(remote, tip).len(), size);
    assert!(body.contains(&format!("Rollout: `{id}`")), "{body}");
    assert!(body.contains(&format!("Wave: {wave} of ")), "{body}");
    assert!(body.contains("/quota.yaml`"), "{body}");
    for t in &tenants {
        assert!(body.contains(t.as_str()), "the body names {t}: {body}");
    }
    tenants
}

/// A person merges the branch with a merge commit and pushes; returns the new main.
fn merge(url: &str, dir: &std::path::Path, branch: &str) -> Oid {
    fresh_clone(url, dir);
    let git = |args: &[&str]| git_as(dir, "carol", args);
    git(&["fetch", "-q", "origin", branch]);
    git(&["merge", "--no-ff", "-m", "Merge pull request", "FETCH_HEAD"]);
    git(&["push", "-q", "origin", "main"]);
    Oid::from_str(&git(&["rev-parse", "HEAD"])).unwrap()
}

async fn each_wave_is_one_pull_request_a_closed_one_pauses_and_abort_closes_it(backend: Backend) {
    let daemon = common::GitDaemon::start("tenants.git").expect("git daemon");
    let remote = daemon.repo("tenants.git");
    let url = daemon.url("tenants.git");
    let (forge_base, forge) = start_forge().await;
    let (work, templates, templates_text) = own_templates();
    let env = [
        ("GITOPS_REMOTE", url.as_str()),
        ("GITOPS_FETCH_INTERVAL_SECONDS", "1"),
        ("COMMIT_MODE", "review"),
        ("COMMIT_MODE_OVERRIDES", "signup=direct"),
        ("GITHUB_API_BASE", forge_base.as_str()),
        ("GITHUB_REPO", "acme/tenants"),
        ("GITHUB_TOKEN", "ghp_test_token"),
        ("TEMPLATES_DIR", templates_text.as_str()),
        ("ROLLOUT_POLICY", "waves"),
        ("FLUX_WEBHOOK_SECRET", FLUX_SECRET),
        ("WATCHER_KUBE_POLL", "off"),
        ("WATCHER_STALL_SECONDS", "3600"),
    ];
    let Some(mut s) = TestServer::start_with(backend, &env).await else {
        return;
    };
    sign_up(&s, 8).await;
    s.wait_queue_drained(Duration::from_secs(120)).await;
    assert!(opened(&forge).is_empty(), "signups go straight to main");

    // New templates: the policy starts a rollout by itself and proposes its canary. The forge
    // is down: the branch is pushed and the wave waits; a restart then finds the branch
    // again (nothing committed twice) and opens the pull request once the forge answers.
    forge.lock().unwrap().down = true;
    upgrade_quota_template(&templates, "reviewed rollout");
    s.restart().await;
    let before = remote.refname_to_id("refs/heads/main").unwrap();
    let st = wait_cli(&s, &env, &["rollout", "status"], |r| {
        r["rollout"]["waves"][0]["status"] == "in_review"
    })
    .await;
    assert!(
        st["rollout"]["waves"][0]["review"]["number"].is_null(),
        "{st}"
    );
    let pushed = remote_branches(&remote);
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    let pushed_tip = remote
        .refname_to_id(&format!("refs/heads/{}", pushed[0]))
        .unwrap();
    while forge.lock().unwrap().refused == 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.restart().await;
    forge.lock().unwrap().down = false;
    let st = wait_cli(&s, &env, &["rollout", "status"], |r| {
        r["rollout"]["waves"][0]["review"]["number"] == 1
    })
    .await;
    let rollout = &st["rollout"];
    let id = rollout["id"].as_str().unwrap().to_string();
    assert_eq!(rollout["origin"], "policy", "{st}");
    assert_eq!(rollout["waves"][0]["status"], "in_review", "{st}");
    assert_eq!(rollout["waves"][1]["status"], "pending", "{st}");
    let sizes: Vec<usize> = rollout["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["size"].as_u64().unwrap() as usize)
        .collect();
    assert_eq!(sizes[0], 1, "a canary of one: {st}");
    let branch1 = format!("rollout/{id}/wave-1");
    assert_eq!(rollout["waves"][0]["review"]["branch"], branch1.as_str());
    let canary = check_proposal(&forge, &remote, 1, (&id, 1, &branch1), sizes[0]);
    assert_eq!(pushed, std::slice::from_ref(&branch1));
    assert_eq!(
        remote
            .refname_to_id(&format!("refs/heads/{branch1}"))
            .unwrap(),
        pushed_tip,
        "the restart reused the branch"
    );
    assert_eq!(
        remote.refname_to_id("refs/heads/main").unwrap(),
        before,
        "main waits for the merge"
    );

    // A person merges it: the wave's revision is the merge commit; the next wave waits for
    // the cluster to report the canary ready there.
    let merged = merge(&url, &work.path().join("clone"), &branch1);
    let st = wait_cli(&s, &env, &["rollout", "status", &id], |r| {
        r["rollout"]["waves"][0]["revision"] == merged.to_string().as_str()
    })
    .await;
    assert_eq!(st["rollout"]["waves"][0]["status"], "waiting", "{st}");
    assert_eq!(
        st["rollout"]["waves"][0]["review"]["state"], "merged",
        "{st}"
    );
    assert_eq!(
        opened(&forge).len(),
        1,
        "wave 2 waits for the canary's health"
    );
    let revision = merged.to_string();
    for t in &canary {
        event(&s, "flux-event-reconciliation-succeeded.json", t, &revision).await;
    }

    // Wave 2 is proposed once the canary is ready; a person closes it unmerged: paused.
    let st = wait_cli(&s, &env, &["rollout", "status", &id], |r| {
        r["rollout"]["waves"][1]["review"]["number"] == 2
    })
    .await;
    assert_eq!(st["rollout"]["waves"][0]["status"], "passed", "{st}");
    let branch2 = format!("rollout/{id}/wave-2");
    check_proposal(&forge, &remote, 2, (&id, 2, &branch2), sizes[1]);
    forge.lock().unwrap().states[1] = "closed";
    let st = wait_cli(&s, &env, &["rollout", "status", &id], |r| {
        r["rollout"]["status"] == "paused"
    })
    .await;
    let reason = st["rollout"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("pull request #2") && reason.contains("closed unmerged"),
        "{st}"
    );
    assert_eq!(
        st["rollout"]["waves"][1]["review"]["state"], "closed",
        "{st}"
    );
    let gone = Instant::now() + Duration::from_secs(60);
    while remote_branches(&remote).contains(&branch2) {
        assert!(
            Instant::now() < gone,
            "the closed proposal's branch is deleted"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Resume proposes the wave again on a branch of its own; abort closes that pull request.
    cli_json(&s, &env, &["rollout", "resume", &id]);
    let branch3 = format!("rollout/{id}/wave-2-2");
    wait_cli(&s, &env, &["rollout", "status", &id], |r| {
        r["rollout"]["waves"][1]["review"]["number"] == 3
    })
    .await;
    check_proposal(&forge, &remote, 3, (&id, 2, &branch3), sizes[1]);
    let aborted = cli_json(&s, &env, &["rollout", "abort", &id]);
    assert_eq!(aborted["status"], "aborted", "{aborted}");
    let st = wait_cli(&s, &env, &["rollout", "status", &id], |r| {
        r["rollout"]["waves"][1]["review"]["state"] == "withdrawn"
    })
    .await;
    assert_eq!(st["rollout"]["status"], "aborted", "{st}");
    let closed: Vec<_> = forge
        .lock()
        .unwrap()
        .seen
        .iter()
        .filter(|(m, _, b)| m == "PATCH" && b["state"] == "closed")
        .map(|(_, p, _)| p.clone())
        .collect();
    assert_eq!(
        closed,
        ["/repos/acme/tenants/pulls/3"],
        "abort closes the open pull request"
    );
    assert!(
        !remote_branches(&remote).contains(&branch3),
        "its branch is deleted"
    );
    assert_eq!(opened(&forge).len(), 3, "nothing more is proposed");
    assert_eq!(
        remote.refname_to_id("refs/heads/main").unwrap(),
        merged,
        "only the merged wave reached main"
    );
    common::assert_git_fsck_strict(&daemon.dir.path().join("tenants.git"));
    s.stop();
}
