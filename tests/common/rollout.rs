//! What the rollout tests do to the server, its CLI and its repository: sign tenants up,
//! change templates, wait for a wave's commit and check it in Git, report tenants ready or
//! failed with recorded Flux events, edit main by hand.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use git2::{Oid, Repository};
use serde_json::Value;

use crate::cluster::{fixture, flux_event};
use crate::common::review::templates_copy;
use crate::common::{self, TestServer};

/// The environment of the server, which its CLI commands share (same templates, same policy).
pub type Env<'a> = &'a [(&'a str, &'a str)];

/// A copy of the templates the test changes (kept while the directory lives), its path, and
/// that path as TEMPLATES_DIR takes it.
pub fn own_templates() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let work = tempfile::tempdir().unwrap();
    let templates = templates_copy(work.path());
    let text = templates.to_str().unwrap().to_string();
    (work, templates, text)
}

/// A person's commit on main changing the tenant's quota.yaml to `text`.
pub fn hand_edit(repo: &Repository, id: &str, text: &str) {
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
pub async fn sign_up(s: &TestServer, n: usize) -> Vec<String> {
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
pub struct Wave {
    pub oid: Oid,
    pub revision: String,
    pub tenants: Vec<String>,
}

/// Waits for the rollout's wave `wave` to be committed, then checks the commit: its parent,
/// its trailers, and that it changes exactly its `size` tenants' files.
pub async fn wave_commit(
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
pub async fn ready(s: &TestServer, wave: &Wave) {
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

pub async fn event(s: &TestServer, name: &str, id: &str, revision: &str) {
    let (code, body) = flux_event(s, &fixture(name, id, revision)).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["outcome"], "recorded", "{id}: {body}");
}

pub fn status(s: &TestServer, env: Env<'_>, id: &str) -> Value {
    cli_json(s, env, &["rollout", "status", id])
}

/// Runs a CLI command with `-o json` and parses its output.
pub fn cli_json(s: &TestServer, env: Env<'_>, args: &[&str]) -> Value {
    let text = cli_text(s, env, &[args, &["-o", "json"]].concat());
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

pub fn cli_text(s: &TestServer, env: Env<'_>, args: &[&str]) -> String {
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
pub async fn wait_cli(
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

pub fn head(repo: &Repository) -> Oid {
    repo.refname_to_id("refs/heads/main").unwrap()
}

pub fn trailer(commit: &git2::Commit<'_>, key: &str) -> Vec<String> {
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
pub fn rollout_commits(repo: &Repository, id: &str, since: Oid) -> Vec<(String, String)> {
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
pub fn changed_tenants(repo: &Repository, oid: Oid) -> BTreeSet<String> {
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
pub fn owned_tree(repo: &Repository, oid: Oid) -> Vec<Option<Oid>> {
    let tree = repo.find_commit(oid).unwrap().tree().unwrap();
    ["tenants", "flux-tenants"]
        .iter()
        .map(|dir| tree.get_path(Path::new(dir)).ok().map(|e| e.id()))
        .collect()
}

pub fn has_quota(repo: &Repository, id: &str) -> bool {
    let Ok(tip) = repo.refname_to_id("refs/heads/main") else {
        return false;
    };
    let path = format!("{}/quota.yaml", billing::render::tenant_dir(id));
    let tree = repo.find_commit(tip).unwrap().tree().unwrap();
    tree.get_path(Path::new(&path)).is_ok()
}

pub fn quota(repo: &Repository, at: Oid, id: &str) -> String {
    let tree = repo.find_commit(at).unwrap().tree().unwrap();
    let path = format!("{}/quota.yaml", billing::render::tenant_dir(id));
    let entry = tree.get_path(Path::new(&path)).unwrap();
    String::from_utf8_lossy(repo.find_blob(entry.id()).unwrap().content()).into_owned()
}
