//! Tenant changes the Git way, against the running server and a real `git daemon` remote: a
//! person's edit and `git revert` pushed to the remote are detected as `drifted` and survive a
//! redeploy; a forced deploy re-applies the rendering; rollback makes revert commits; history
//! lists every commit of the tenant; a flat repository moves to the sharded layout in one
//! commit. `git fsck --strict` after each.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::git_cli::{fresh_clone, git_as as git};
use common::{Backend, TestServer, ADMIN_TOKEN};
use serde_json::Value;

fn remote_file(remote: &git2::Repository, path: &str) -> Option<String> {
    let tip = remote.refname_to_id("refs/heads/main").ok()?;
    let tree = remote.find_commit(tip).ok()?.tree().ok()?;
    let entry = tree.get_path(Path::new(path)).ok()?;
    let blob = remote.find_blob(entry.id()).ok()?;
    Some(String::from_utf8_lossy(blob.content()).into_owned())
}

/// Waits until the tenant's status is `want` with nothing pending, and its status view.
async fn wait_status(s: &TestServer, id: &str, want: &str) -> Value {
    s.wait_for_status(id, want, Duration::from_secs(60)).await
}

/// Waits until the remote's copy of `path` is `want`.
async fn wait_remote(remote: &git2::Repository, path: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while remote_file(remote, path).as_deref() != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{path} never became the expected bytes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn history(s: &TestServer, id: &str) -> Vec<Value> {
    let (code, body) = s
        .get_json(&format!("/api/customers/{id}/history"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(code, 200, "{body}");
    body["commits"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_edits_and_reverts_drift_force_reapplies_and_rollback_reverts() {
    let daemon = common::GitDaemon::start("tenants.git").expect("git daemon");
    let remote = daemon.repo("tenants.git");
    let url = daemon.url("tenants.git");
    let env = [
        ("GITOPS_REMOTE", url.as_str()),
        ("GITOPS_FETCH_INTERVAL_SECONDS", "1"),
    ];
    let s = TestServer::start_with(Backend::Sqlite, &env).await.unwrap();
    let id = s.signed_up("drift@acme.example", "Drift Co").await;
    let other = s.signed_up("calm@acme.example", "Calm Co").await;
    let created = wait_status(&s, &id, "committed").await;
    wait_status(&s, &other, "committed").await;
    let quota = format!("{}/quota.yaml", billing::render::tenant_dir(&id));
    let rendered = remote_file(&remote, &quota).expect("quota committed");

    // History: the signup commit, ours, with its change id.
    let h = history(&s, &id).await;
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["revision"], created["committed_revision"]);
    assert!(h[0]["change_id"].is_string(), "{h:?}");
    assert!(
        h[0]["reason"].as_str().unwrap().starts_with("create"),
        "{h:?}"
    );

    // A person edits the tenant's quota on the remote.
    let work = tempfile::tempdir().unwrap();
    let clone = work.path().join("c");
    fresh_clone(&url, &clone);
    let edited = rendered.replace(
        "name: tenant-quota",
        "name: tenant-quota\n  # raised by hand",
    );
    std::fs::write(clone.join(&quota), &edited).unwrap();
    git(
        &clone,
        "alice",
        &["commit", "-qam", "raise the quota of one tenant"],
    );
    git(&clone, "alice", &["push", "-q", "origin", "main"]);
    let hand = git(&clone, "alice", &["rev-parse", "HEAD"]);
    let st = wait_status(&s, &id, "drifted").await;
    assert_eq!(st["committed_revision"], hand.as_str(), "{st}");
    assert!(st["error"].as_str().unwrap().contains("alice"), "{st}");
    assert_eq!(
        s.deployment_status(&other).await["status"],
        "committed",
        "an untouched tenant is not drifted"
    );

    // A redeploy of everyone leaves the hand edit alone; a plain deploy is refused.
    let (code, body) = s.admin_post("/api/admin/tenants/redeploy?full=true").await;
    assert_eq!(code, 202, "{body}");
    s.wait_queue_drained(Duration::from_secs(30)).await;
    assert_eq!(
        remote_file(&remote, &quota).as_deref(),
        Some(edited.as_str())
    );
    assert_eq!(s.deployment_status(&id).await["status"], "drifted");
    let (code, body) = s.admin_post(&format!("/api/customers/{id}/deploy")).await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["code"], "tenant_drifted", "{body}");

    // --force re-applies the rendering.
    let out = s
        .command()
        .args(["tenant", "deploy", &id, "--force"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let forced = wait_status(&s, &id, "committed").await;
    wait_remote(&remote, &quota, &rendered).await;

    // A person's `git revert` of that commit is respected too.
    fresh_clone(&url, &clone);
    let forced_rev = forced["committed_revision"].as_str().unwrap();
    git(&clone, "bob", &["revert", "--no-edit", forced_rev]);
    git(&clone, "bob", &["push", "-q", "origin", "main"]);
    let revert = git(&clone, "bob", &["rev-parse", "HEAD"]);
    let st = wait_status(&s, &id, "drifted").await;
    assert_eq!(st["committed_revision"], revert.as_str(), "{st}");
    let (code, _) = s.admin_post("/api/admin/tenants/redeploy").await;
    assert_eq!(code, 202);
    s.wait_queue_drained(Duration::from_secs(30)).await;
    assert_eq!(
        remote_file(&remote, &quota).as_deref(),
        Some(edited.as_str())
    );

    let (code, body) = s
        .admin_post(&format!("/api/customers/{id}/deploy?force=true"))
        .await;
    assert_eq!(code, 202, "{body}");
    wait_status(&s, &id, "committed").await;
    wait_remote(&remote, &quota, &rendered).await;

    // Rollback of the last change: a revert commit, and the tenant is held as drifted.
    let (code, body) = s.admin_post(&format!("/api/customers/{id}/rollback")).await;
    assert_eq!(code, 202, "{body}");
    let st = wait_status(&s, &id, "drifted").await;
    assert!(
        st["error"].as_str().unwrap().contains("rolled back"),
        "{st}"
    );
    wait_remote(&remote, &quota, &edited).await;

    // Rollback to the signup's revision, from the command line.
    let to = created["committed_revision"].as_str().unwrap();
    let out = s
        .command()
        .args(["tenant", "rollback", &id, "--to", &to[..10]])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_remote(&remote, &quota, &rendered).await;
    let out = s
        .command()
        .args(["tenant", "rollback", &id, "--to", "no-such-rev"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "an unknown revision is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-rev"));

    // History lists every commit of the tenant, newest first; a person's carry no change id.
    s.wait_queue_drained(Duration::from_secs(30)).await;
    let h = history(&s, &id).await;
    let authors: Vec<&str> = h.iter().map(|c| c["author"].as_str().unwrap()).collect();
    assert_eq!(h.len(), 7, "{h:#?}");
    assert!(
        authors[3].starts_with("bob") && authors[5].starts_with("alice"),
        "{authors:?}"
    );
    for (i, c) in h.iter().enumerate() {
        let ours = ![3, 5].contains(&i);
        assert_eq!(c["change_id"].is_string(), ours, "{c}");
    }
    assert!(
        h[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("rollback (to "),
        "{h:#?}"
    );
    assert!(
        h[1]["reason"].as_str().unwrap().contains("reverting"),
        "{h:#?}"
    );
    let out = s
        .command()
        .args(["tenant", "history", &id, "-o", "table"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        printed.lines().count(),
        1 + 7,
        "a header and 7 commits: {printed}"
    );
    assert!(printed.starts_with("REVISION "), "{printed}");
    assert!(
        printed.contains(&hand[..12]) && printed.contains("alice"),
        "{printed}"
    );

    common::assert_git_fsck_strict(daemon.dir.path().join("tenants.git").as_path());
}

for_each_backend!(a_hand_commit_over_several_tenants_drifts_each_once);

/// One person's commit touching two tenants, each in both of its directories (`flux-tenants/`
/// sorts between them): each tenant gets one history row and one audit row for that commit.
async fn a_hand_commit_over_several_tenants_drifts_each_once(backend: Backend) {
    let daemon = common::GitDaemon::start("tenants.git").expect("git daemon");
    let url = daemon.url("tenants.git");
    let env = [
        ("GITOPS_REMOTE", url.as_str()),
        ("GITOPS_FETCH_INTERVAL_SECONDS", "1"),
    ];
    let Some(s) = TestServer::start_with(backend, &env).await else {
        return;
    };
    let ids = [
        s.signed_up("one@acme.example", "One Co").await,
        s.signed_up("two@acme.example", "Two Co").await,
        s.signed_up("three@acme.example", "Three Co").await,
    ];
    for id in &ids {
        wait_status(&s, id, "committed").await;
    }
    let work = tempfile::tempdir().unwrap();
    let clone = work.path().join("c");
    fresh_clone(&url, &clone);
    let touch = |id: &str| {
        let quota = format!("{}/quota.yaml", billing::render::tenant_dir(id));
        for path in [quota, billing::render::flux_kustomization_path(id)] {
            let mut text = std::fs::read_to_string(clone.join(&path)).unwrap();
            text.push_str("# edited by hand\n");
            std::fs::write(clone.join(&path), text).unwrap();
        }
    };
    touch(&ids[0]);
    touch(&ids[1]);
    git(&clone, "carol", &["commit", "-qam", "edit two tenants"]);
    // A later commit to the third tenant: once it is drifted, the scan is past the first.
    touch(&ids[2]);
    git(&clone, "carol", &["commit", "-qam", "edit a third"]);
    git(&clone, "carol", &["push", "-q", "origin", "main"]);
    wait_status(&s, &ids[2], "drifted").await;

    let db = s.db().await;
    for id in &ids {
        assert_eq!(s.deployment_status(id).await["status"], "drifted");
        for table in [
            "deployment_history WHERE customer_id = $1 AND state = 'drifted'",
            "audit_log WHERE customer_id = $1 AND action = 'deployment.drifted'",
        ] {
            let sql = format!("SELECT COUNT(*) FROM {table}");
            assert_eq!(common::count(&db, &sql, id).await, 1, "{table} for {id}");
        }
    }
}

#[test]
fn migrate_layout_moves_a_thousand_flat_tenants_in_one_commit() {
    use billing::gitops::{Author, Changes, Entry, GitOpsRepo};
    use billing::render::{flat_flux_kustomization_path, flat_tenant_dir};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flat.git");
    let author = Author {
        name: "old".into(),
        email: "old@localhost".into(),
    };
    let ids: Vec<String> = (0..1000u32)
        .map(|i| format!("{}{:011x}", (b'a' + (i % 26) as u8) as char, i * 7919))
        .collect();
    {
        let mut repo = GitOpsRepo::open_or_init(&path, "main", author).unwrap();
        repo.set_fsync(false).unwrap();
        let mut flat = Changes::new();
        for id in &ids {
            let files = [
                (
                    "kustomization.yaml".to_string(),
                    b"resources: [ns.yaml]\n".to_vec(),
                ),
                (
                    "ns.yaml".to_string(),
                    format!("name: customer-{id}\n").into_bytes(),
                ),
            ];
            flat.insert(flat_tenant_dir(id), Entry::Dir(files.into()));
            flat.insert(
                flat_flux_kustomization_path(id),
                Entry::File(format!("spec:\n  path: ./tenants/{id}\n  prune: true\n").into_bytes()),
            );
        }
        repo.commit(&flat, "the flat layout of older versions")
            .unwrap();
    }
    let data = tempfile::tempdir().unwrap();
    let run = || {
        common::billing_command(data.path(), "sqlite::memory:")
            .args(["gitops", "migrate-layout", "--repo"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("moved 1000 tenants"));

    let repo = git2::Repository::open_bare(&path).unwrap();
    let tip = repo
        .find_commit(repo.refname_to_id("refs/heads/main").unwrap())
        .unwrap();
    assert!(tip.message().unwrap().contains("Layout-Migration: sharded"));
    let before = tip.parent(0).unwrap();
    assert_eq!(
        before.summary(),
        Some("the flat layout of older versions"),
        "one commit"
    );
    let tree = tip.tree().unwrap();
    let tenants = repo
        .find_tree(tree.get_name("tenants").unwrap().id())
        .unwrap();
    assert!(
        tenants.iter().all(|e| e.name().unwrap().len() == 1),
        "only shard directories"
    );
    for id in &ids {
        let dir = billing::render::tenant_dir(id);
        let ns = tree.get_path(Path::new(&format!("{dir}/ns.yaml"))).unwrap();
        let ns = repo.find_blob(ns.id()).unwrap();
        assert_eq!(ns.content(), format!("name: customer-{id}\n").as_bytes());
        let k = tree
            .get_path(Path::new(&billing::render::flux_kustomization_path(id)))
            .unwrap();
        let k = String::from_utf8(repo.find_blob(k.id()).unwrap().content().to_vec()).unwrap();
        assert_eq!(k, format!("spec:\n  path: ./{dir}\n  prune: true\n"));
        assert!(tree.get_path(Path::new(&flat_tenant_dir(id))).is_err());
        assert!(tree
            .get_path(Path::new(&flat_flux_kustomization_path(id)))
            .is_err());
    }
    common::assert_git_fsck_strict(&path);

    let again = run();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to move"));
}
