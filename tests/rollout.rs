//! Template rollouts in waves through the real server, its CLI and its Git repository: 200
//! tenants, a template change, waves committed one at a time and gated on recorded Flux
//! events (signed as notification-controller signs them); a failed event pauses, resume
//! finishes, a restart in the middle goes on at the right wave, abort --rollback restores the
//! old files, and auto-rollback after a failed canary touches no other tenant. Every claim is
//! checked in the repository itself (commits, trailers, files), not only through the API.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use cluster::{fixture, flux_event, FLUX_SECRET};
use common::review::{templates_copy, upgrade_quota_template};
use common::{Backend, TestServer};
use git2::{Oid, Repository};
use serde_json::Value;

for_each_backend!(
    waves_pause_resume_restart_abort_and_auto_rollback,
    the_waves_policy_starts_a_rollout_by_itself_and_skips_a_drifted_tenant,
);

/// The environment of the server, which its CLI commands share (same templates, same policy).
type Env<'a> = &'a [(&'a str, &'a str)];

/// Tenants on SQLite (the 200); fewer on PostgreSQL, where each signup costs more.
fn tenant_count(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 200,
        Backend::Postgres => 24,
    }
}

async fn waves_pause_resume_restart_abort_and_auto_rollback(backend: Backend) {
    let (_work, templates, templates_text) = own_templates();
    let env = [
        ("TEMPLATES_DIR", templates_text.as_str()),
        ("ROLLOUT_POLICY", "manual"),
        ("FLUX_WEBHOOK_SECRET", FLUX_SECRET),
        ("WATCHER_KUBE_POLL", "off"),
        ("WATCHER_STALL_SECONDS", "3600"),
    ];
    let Some(mut s) = TestServer::start_with(backend, &env).await else {
        return;
    };
    let n = tenant_count(backend);
    let ids = sign_up(&s, n).await;
    s.wait_queue_drained(Duration::from_secs(300)).await;
    let repo = Repository::open_bare(s.data_dir().join("gitops.git")).unwrap();
    let before = head(&repo);

    // A template change: under ROLLOUT_POLICY=manual nothing is committed, the tenants are behind.
    upgrade_quota_template(&templates, "rollout one");
    s.restart().await;
    let report = wait_cli(&s, &env, &["rollout", "status"], |r| r["behind"] == n).await;
    assert_eq!(report["policy"], "manual", "{report}");
    assert_eq!(head(&repo), before, "manual: nothing committed by itself");

    // The dry run: how many, which files, a sample diff; nothing committed.
    let dry = cli_json(&s, &env, &["rollout", "start", "--dry-run"]);
    assert_eq!(dry["tenants"], n, "{dry}");
    assert_eq!(dry["rollout_id"], Value::Null);
    let files: BTreeSet<&str> = dry["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        BTreeSet::from(["quota.yaml", "render.json"]),
        "{dry}"
    );
    let diff = dry["sample_diff"].as_str().unwrap();
    assert!(diff.contains("+# rollout one\n"), "{diff}");
    assert!(diff.contains("--- a/tenants/"), "{diff}");
    let table = cli_text(&s, &env, &["rollout", "start", "--dry-run", "-o", "table"]);
    let cells: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(cells[0], n.to_string(), "{table}");
    assert_eq!(head(&repo), before, "a dry run commits nothing");

    // The rollout: default waves, a canary first.
    let started = cli_json(&s, &env, &["rollout", "start"]);
    let id = started["rollout_id"].as_str().unwrap().to_string();
    let sizes: Vec<usize> = serde_json::from_value(started["waves"].clone()).unwrap();
    assert_eq!(sizes.iter().sum::<usize>(), n);
    assert_eq!(sizes[0], 1, "a canary of one");
    let refused = s
        .command()
        .envs(env)
        .args(["rollout", "start"])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "one active rollout at a time");

    let mut parent = before;
    let wave1 = wave_commit(&s, &env, &repo, &id, 1, parent, sizes[0]).await;
    // The next wave waits for the cluster.
    let st = status(&s, &env, &id);
    assert_eq!(st["rollout"]["waves"][1]["status"], "pending", "{st}");
    assert_eq!(
        head(&repo),
        wave1.oid,
        "wave 2 is not committed before wave 1 is ready"
    );
    ready(&s, &wave1).await;
    parent = wave1.oid;

    // Wave 2: one tenant fails, the rollout pauses and says which and why.
    let wave2 = wave_commit(&s, &env, &repo, &id, 2, parent, sizes[1]).await;
    let (bad, good) = wave2.tenants.split_last().unwrap();
    for t in good {
        event(
            &s,
            "flux-event-reconciliation-succeeded.json",
            t,
            &wave2.revision,
        )
        .await;
    }
    event(
        &s,
        "flux-event-health-check-failed.json",
        bad,
        &wave2.revision,
    )
    .await;
    let st = wait_cli(&s, &env, &["rollout", "status", &id], |r| {
        r["rollout"]["status"] == "paused"
    })
    .await;
    let reason = st["rollout"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(bad.as_str()) && reason.contains("health check failed"),
        "{st}"
    );
    assert_eq!(
        st["rollout"]["failed_tenants"][0]["customer_id"],
        bad.as_str()
    );
    assert_eq!(head(&repo), wave2.oid, "a paused rollout commits nothing");

    // Resume: the failed tenant no longer holds the wave; wave 3 follows.
    let resumed = cli_json(&s, &env, &["rollout", "resume", &id]);
    assert_eq!(resumed["status"], "running", "{resumed}");
    let wave3 = wave_commit(&s, &env, &repo, &id, 3, wave2.oid, sizes[2]).await;

    // A restart in the middle: the rollout goes on at wave 4, wave 3 is not committed twice.
    s.stop();
    s.restart().await;
    ready(&s, &wave3).await;
    let wave4 = wave_commit(&s, &env, &repo, &id, 4, wave3.oid, sizes[3]).await;
    ready(&s, &wave4).await;
    let done = wait_cli(&s, &env, &["rollout", "status", &id], |r| {
        r["rollout"]["status"] == "completed"
    })
    .await;
    assert_eq!(done["behind"], 0, "{done}");
    assert_eq!(
        rollout_commits(&repo, &id, before).len(),
        4,
        "one commit per wave"
    );
    for t in &ids {
        assert!(
            quota(&repo, head(&repo), t).starts_with("# rollout one\n"),
            "{t}"
        );
    }
    common::assert_git_fsck_strict(&s.data_dir().join("gitops.git"));

    // Abort with --rollback: every committed wave's files back as they were.
    let before_two = head(&repo);
    upgrade_quota_template(&templates, "rollout two");
    s.restart().await;
    let started = cli_json(&s, &env, &["rollout", "start", "--waves", "1,50%"]);
    let id2 = started["rollout_id"].as_str().unwrap().to_string();
    let w1 = wave_commit(&s, &env, &repo, &id2, 1, before_two, 1).await;
    ready(&s, &w1).await;
    let w2 = wave_commit(&s, &env, &repo, &id2, 2, w1.oid, n / 2 - 1).await;
    let aborted = cli_json(&s, &env, &["rollout", "abort", &id2, "--rollback"]);
    assert_eq!(aborted["status"], "rolling_back", "{aborted}");
    wait_cli(&s, &env, &["rollout", "status", &id2], |r| {
        r["rollout"]["status"] == "rolled_back"
    })
    .await;
    let tip = head(&repo);
    let back = repo.find_commit(tip).unwrap();
    assert_eq!(back.parent_id(0).unwrap(), w2.oid);
    assert_eq!(trailer(&back, "Rollout-Id"), [id2.as_str()]);
    assert_eq!(trailer(&back, "Rollout-Action"), ["rollback"]);
    assert_eq!(
        owned_tree(&repo, tip),
        owned_tree(&repo, before_two),
        "old files restored"
    );

    // Auto-rollback after a failed canary: only the canary's files move, and back.
    let before_three = head(&repo);
    upgrade_quota_template(&templates, "rollout three");
    s.restart().await;
    let started = cli_json(&s, &env, &["rollout", "start", "--auto-rollback"]);
    let id3 = started["rollout_id"].as_str().unwrap().to_string();
    let canary = wave_commit(&s, &env, &repo, &id3, 1, before_three, 1).await;
    let victim = &canary.tenants[0];
    event(
        &s,
        "flux-event-health-check-failed.json",
        victim,
        &canary.revision,
    )
    .await;
    let st = wait_cli(&s, &env, &["rollout", "status", &id3], |r| {
        r["rollout"]["status"] == "rolled_back"
    })
    .await;
    assert!(
        st["rollout"]["reason"]
            .as_str()
            .unwrap()
            .contains(victim.as_str()),
        "{st}"
    );
    let tip = head(&repo);
    let revert = repo.find_commit(tip).unwrap();
    assert_eq!(
        revert.parent_id(0).unwrap(),
        canary.oid,
        "nothing else committed"
    );
    assert_eq!(
        changed_tenants(&repo, tip),
        BTreeSet::from([victim.clone()])
    );
    assert_eq!(owned_tree(&repo, tip), owned_tree(&repo, before_three));
    // The tenant is held at its previous files: committed there, and ready once reported.
    let held = s.deployment_status(victim).await;
    assert_eq!(
        held["committed_revision"],
        tip.to_string().as_str(),
        "{held}"
    );
    common::assert_git_fsck_strict(&s.data_dir().join("gitops.git"));
}

async fn the_waves_policy_starts_a_rollout_by_itself_and_skips_a_drifted_tenant(backend: Backend) {
    let (_work, templates, templates_text) = own_templates();
    // A remote the waves are pushed to, where the person's edit below is made.
    let Some(daemon) = common::GitDaemon::start("tenants.git") else {
        return;
    };
    let url = daemon.url("tenants.git");
    // ROLLOUT_POLICY unset: `waves`, the default.
    let env = [
        ("TEMPLATES_DIR", templates_text.as_str()),
        ("FLUX_WEBHOOK_SECRET", FLUX_SECRET),
        ("WATCHER_KUBE_POLL", "off"),
        ("GITOPS_REMOTE", url.as_str()),
        ("GITOPS_FETCH_INTERVAL_SECONDS", "1"),
    ];
    let Some(mut s) = TestServer::start_with(backend, &env).await else {
        return;
    };
    let ids = sign_up(&s, 4).await;
    s.wait_queue_drained(Duration::from_secs(120)).await;
    let repo = daemon.repo("tenants.git");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ids.iter().all(|t| has_quota(&repo, t)) {
        assert!(Instant::now() < deadline, "{}", s.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A person edits one tenant's quota on the remote's main: that tenant has drifted.
    let drifted = &ids[3];
    let edited = format!("{}# raised by hand\n", quota(&repo, head(&repo), drifted));
    hand_edit(&repo, drifted, &edited);
    s.wait_for_status(drifted, "drifted", Duration::from_secs(60))
        .await;
    let before = head(&repo);

    upgrade_quota_template(&templates, "by itself");
    s.restart().await;
    let st = wait_cli(&s, &env, &["rollout", "status"], |r| {
        r["rollout"].is_object()
    })
    .await;
    let r = &st["rollout"];
    assert_eq!(
        (&r["origin"], &r["auto_rollback"]),
        (&"policy".into(), &true.into()),
        "{st}"
    );
    assert_eq!(r["tenants"], 3, "{st}");
    assert_eq!(
        r["skipped_tenants"][0]["customer_id"],
        drifted.as_str(),
        "{st}"
    );
    assert!(
        r["skipped_tenants"][0]["note"]
            .as_str()
            .unwrap()
            .contains("drifted"),
        "{st}"
    );
    let id = r["id"].as_str().unwrap().to_string();
    let mut parent = before;
    for wave in 1..=3 {
        let w = wave_commit(&s, &env, &repo, &id, wave, parent, 1).await;
        ready(&s, &w).await;
        parent = w.oid;
    }
    wait_cli(&s, &env, &["rollout", "status", &id], |r| {
        r["rollout"]["status"] == "completed"
    })
    .await;
    assert_eq!(
        quota(&repo, head(&repo), drifted),
        edited,
        "the drifted tenant is left alone"
    );
    for t in &ids[..3] {
        assert!(
            quota(&repo, head(&repo), t).starts_with("# by itself\n"),
            "{t}"
        );
    }
    // The policy acts once per change of templates: a restart starts nothing new.
    s.restart().await;
    let st = wait_cli(&s, &env, &["rollout", "status"], |r| r["behind"] == 0).await;
    assert_eq!(st["rollout"]["id"], id.as_str(), "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_at_once_re_renders_every_tenant_without_waves() {
    let (_work, templates, templates_text) = own_templates();
    let env = [
        ("TEMPLATES_DIR", templates_text.as_str()),
        ("ROLLOUT_POLICY", "all-at-once"),
    ];
    let mut s = TestServer::start_with(Backend::Sqlite, &env).await.unwrap();
    let ids = sign_up(&s, 3).await;
    s.wait_queue_drained(Duration::from_secs(120)).await;
    let repo = Repository::open_bare(s.data_dir().join("gitops.git")).unwrap();
    let before = head(&repo);
    upgrade_quota_template(&templates, "everyone");
    s.restart().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ids
        .iter()
        .all(|t| quota(&repo, head(&repo), t).starts_with("# everyone\n"))
    {
        assert!(Instant::now() < deadline, "{}", s.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut walk = repo.revwalk().unwrap();
    walk.push(head(&repo)).unwrap();
    walk.hide(before).unwrap();
    for oid in walk {
        let commit = repo.find_commit(oid.unwrap()).unwrap();
        assert!(
            trailer(&commit, "Rollout-Id").is_empty(),
            "no rollout: {:?}",
            commit.message()
        );
    }
    let st = cli_json(&s, &env, &["rollout", "status"]);
    assert_eq!(st["rollout"], Value::Null, "{st}");
}

/// A copy of the templates the test changes (kept while the directory lives), its path, and
/// that path as TEMPLATES_DIR takes it.
fn own_templates() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let work = tempfile::tempdir().unwrap();
    let templates = templates_copy(work.path());
    let text = templates.to_str().unwrap().to_string();
    (work, templates, text)
}

/// A person's commit on main changing the tenant's quota.yaml to `text`.
fn hand_edit(repo: &Repository, id: &str, text: &str) {
    let tip = repo.find_commit(head(repo)).unwrap();
    let path = format!("{}/quota.yaml", billing::render::tenant_dir(id));
    let blob = repo.blob(text.as_bytes()).unwrap();
    let mut index = git2::Index::new().unwrap();
    index.read_tree(&tip.tree().unwrap()).unwrap();
    let mut entry = index.get_path(Path::new(&path), 0).unwrap();
    entry.id = blob;
    entry.file_size = text.len() as u32;
    index.add(&entry).unwrap();
    let tree = repo.find_tree(index.write_tree_to(repo).unwrap()).unwrap();
    let who = git2::Signature::now("Alice", "alice@acme.example").unwrap();
    repo.commit(
        Some("refs/heads/main"),
        &who,
        &who,
        "raise a quota by hand",
        &tree,
        &[&tip],
    )
    .unwrap();
}

/// Signs up `n` customers, four at a time; their ids.
async fn sign_up(s: &TestServer, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(4) {
        let calls: Vec<_> = chunk
            .iter()
            .map(|i| {
                let (client, url) = (s.client.clone(), s.url("/api/customers/signup"));
                let body = serde_json::json!({
                    "email": format!("wave{i}@acme.example"),
                    "password": common::PASSWORD,
                    "company_name": format!("Wave {i}"),
                });
                tokio::spawn(async move {
                    let resp = client.post(url).json(&body).send().await.unwrap();
                    assert_eq!(resp.status().as_u16(), 201);
                    let created: Value = resp.json().await.unwrap();
                    created["customer"]["customer_id"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
            })
            .collect();
        for call in calls {
            ids.push(call.await.unwrap());
        }
    }
    ids
}

/// A wave's commit as the repository holds it.
struct Wave {
    oid: Oid,
    revision: String,
    tenants: Vec<String>,
}

/// Waits for the rollout's wave `wave` to be committed, then checks the commit: its parent,
/// its trailers, and that it changes exactly its `size` tenants' files.
async fn wave_commit(
    s: &TestServer,
    env: Env<'_>,
    repo: &Repository,
    id: &str,
    wave: usize,
    parent: Oid,
    size: usize,
) -> Wave {
    let st = wait_cli(s, env, &["rollout", "status", id], |r| {
        r["rollout"]["waves"][wave - 1]["revision"].is_string()
    })
    .await;
    let revision = st["rollout"]["waves"][wave - 1]["revision"]
        .as_str()
        .unwrap()
        .to_string();
    let oid = Oid::from_str(&revision).unwrap();
    let commit = repo.find_commit(oid).unwrap();
    assert_eq!(
        commit.parent_id(0).unwrap(),
        parent,
        "wave {wave} follows the last commit"
    );
    assert_eq!(trailer(&commit, "Rollout-Id"), [id]);
    assert_eq!(trailer(&commit, "Rollout-Wave"), [wave.to_string()]);
    let tenants: Vec<String> = trailer(&commit, "Tenant-Id");
    assert_eq!(tenants.len(), size, "wave {wave}");
    assert_eq!(trailer(&commit, "Change-Id").len(), size);
    let changed = changed_tenants(repo, oid);
    assert_eq!(
        changed,
        tenants.iter().cloned().collect::<BTreeSet<_>>(),
        "wave {wave} touches its tenants only"
    );
    Wave {
        oid,
        revision,
        tenants,
    }
}

/// Every tenant of the wave reported ready at its revision by a recorded Flux event.
async fn ready(s: &TestServer, wave: &Wave) {
    for t in &wave.tenants {
        event(
            s,
            "flux-event-reconciliation-succeeded.json",
            t,
            &wave.revision,
        )
        .await;
    }
}

async fn event(s: &TestServer, name: &str, id: &str, revision: &str) {
    let (code, body) = flux_event(s, &fixture(name, id, revision)).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["outcome"], "recorded", "{id}: {body}");
}

fn status(s: &TestServer, env: Env<'_>, id: &str) -> Value {
    cli_json(s, env, &["rollout", "status", id])
}

/// Runs a CLI command with `-o json` and parses its output.
fn cli_json(s: &TestServer, env: Env<'_>, args: &[&str]) -> Value {
    let text = cli_text(s, env, &[args, &["-o", "json"]].concat());
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

fn cli_text(s: &TestServer, env: Env<'_>, args: &[&str]) -> String {
    let out = s
        .command()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Polls a CLI command (JSON) until `ok` holds; two minutes at most.
async fn wait_cli(
    s: &TestServer,
    env: Env<'_>,
    args: &[&str],
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let value = cli_json(s, env, args);
        if ok(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{args:?} never got there: {value}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn head(repo: &Repository) -> Oid {
    repo.refname_to_id("refs/heads/main").unwrap()
}

fn trailer(commit: &git2::Commit<'_>, key: &str) -> Vec<String> {
    let prefix = format!("{key}: ");
    commit
        .message()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
        .collect()
}

/// The commits after `since` naming the rollout, as `(wave, action)`.
fn rollout_commits(repo: &Repository, id: &str, since: Oid) -> Vec<(String, String)> {
    let mut walk = repo.revwalk().unwrap();
    walk.push(head(repo)).unwrap();
    walk.hide(since).unwrap();
    walk.map(|oid| repo.find_commit(oid.unwrap()).unwrap())
        .filter(|c| trailer(c, "Rollout-Id") == [id])
        .map(|c| {
            (
                trailer(&c, "Rollout-Wave").concat(),
                trailer(&c, "Rollout-Action").concat(),
            )
        })
        .collect()
}

/// The tenants whose files the commit changed (by `git diff` against its parent).
fn changed_tenants(repo: &Repository, oid: Oid) -> BTreeSet<String> {
    let commit = repo.find_commit(oid).unwrap();
    let parent = commit.parent(0).unwrap().tree().unwrap();
    let diff = repo
        .diff_tree_to_tree(Some(&parent), Some(&commit.tree().unwrap()), None)
        .unwrap();
    diff.deltas()
        .map(|d| {
            let path = d.new_file().path().unwrap().to_str().unwrap().to_string();
            billing::render::tenant_of_path(&path)
                .unwrap_or_else(|| panic!("{path} is no tenant's file"))
                .to_string()
        })
        .collect()
}

/// The ids of the trees holding every tenant's files at `oid`.
fn owned_tree(repo: &Repository, oid: Oid) -> Vec<Option<Oid>> {
    let tree = repo.find_commit(oid).unwrap().tree().unwrap();
    ["tenants", "flux-tenants"]
        .iter()
        .map(|dir| tree.get_path(Path::new(dir)).ok().map(|e| e.id()))
        .collect()
}

fn has_quota(repo: &Repository, id: &str) -> bool {
    let Ok(tip) = repo.refname_to_id("refs/heads/main") else {
        return false;
    };
    let path = format!("{}/quota.yaml", billing::render::tenant_dir(id));
    let tree = repo.find_commit(tip).unwrap().tree().unwrap();
    tree.get_path(Path::new(&path)).is_ok()
}

fn quota(repo: &Repository, at: Oid, id: &str) -> String {
    let tree = repo.find_commit(at).unwrap().tree().unwrap();
    let path = format!("{}/quota.yaml", billing::render::tenant_dir(id));
    let entry = tree.get_path(Path::new(&path)).unwrap();
    String::from_utf8_lossy(repo.find_blob(entry.id()).unwrap().content()).into_owned()
}
