//! A full disk. Under the GitOps repository: commits fail, and operators see it where they
//! look (`/readyz` degraded with the reason, the tenant's status error, the failed-commit
//! metric); once space returns every signup is committed and the signs clear. Under the
//! database (SQLite's file, a PostgreSQL tablespace): signups and logins answer 503
//! `storage_full`, never a false 201, and `/readyz` says `degraded` with the reason. Each disk
//! is a small tmpfs mounted by the test (root only).

mod common;
#[path = "common/pg_cluster.rs"]
mod pg_cluster;
#[path = "common/tmpfs.rs"]
mod tmpfs;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Backend, TestServer, PASSWORD};
use serde_json::{json, Value};
use tmpfs::{fill, Tmpfs};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_sqlite_is_503_storage_full_and_degraded() {
    let Some(disk) = Tmpfs::mount("16m") else {
        return;
    };
    let url = format!(
        "sqlite://{}?mode=rwc",
        disk.path().join("billing.db").display()
    );
    let s = TestServer::start_on(url, &[]).await;
    database_disk_fills_and_frees(&s, disk.path(), Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_postgresql_is_503_storage_full_and_degraded() {
    // The test's own cluster (never the shared server's disk), its database in a tablespace on
    // the tmpfs; PostgreSQL's own WAL stays on the real disk, as an operator would have it.
    let Some(cluster) = pg_cluster::PgCluster::init() else {
        return;
    };
    let Some(disk) = Tmpfs::mount("16m") else {
        return;
    };
    let place = disk.path().join("tablespace");
    std::fs::create_dir(&place).unwrap();
    if let Some(user) = cluster.as_user {
        let out = std::process::Command::new("chown")
            .arg(format!("{user}:"))
            .arg(&place)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    cluster.start();
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&cluster.url()).await.unwrap();
    for sql in [
        format!("CREATE TABLESPACE small LOCATION '{}'", place.display()),
        "CREATE DATABASE billing TABLESPACE small".to_string(),
    ] {
        sqlx::query(&sql).execute(&admin).await.expect(&sql);
    }
    admin.close().await;
    let url = format!("{}/billing", cluster.url().rsplit_once('/').unwrap().0);
    let s = TestServer::start_on(url, &[]).await;
    let recent = billing::db::storage::RECENT;
    database_disk_fills_and_frees(&s, disk.path(), recent).await;
}

/// Fills `disk` before the first signup and checks what a client and an operator see; then
/// frees it and waits (up to `settle` past the last failure) for readiness to clear. First, as
/// PostgreSQL fails a write only when a table must grow, and its tables are still empty.
async fn database_disk_fills_and_frees(s: &TestServer, disk: &Path, settle: Duration) {
    let filler = fill(disk);

    let (code, body) = s.signup("late@full.example", PASSWORD, "Late Ltd").await;
    assert_storage_full("signup", code, &body, s);
    // A login writes too (the audit row and the failure count of a wrong password).
    let login = json!({ "email": "late@full.example", "password": PASSWORD });
    let (code, body) = s.post_json("/api/customers/login", &login).await;
    assert_storage_full("login", code, &body, s);
    let (code, ready) = s.get_json("/readyz", None).await;
    assert_eq!(code, 200, "{ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["database"], "storage_full", "{ready}");
    let reason = ready["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("database storage full"), "{ready}");

    // Space returns: the refused signup was not stored (its email is free), and the signs clear.
    std::fs::remove_file(filler).unwrap();
    let (code, body) = s.signup("late@full.example", PASSWORD, "Late Ltd").await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = s.post_json("/api/customers/login", &login).await;
    assert_eq!(code, 200, "{body}");
    let deadline = Instant::now() + settle + Duration::from_secs(10);
    loop {
        let (_, ready) = s.get_json("/readyz", None).await;
        if ready["status"] == "ready" {
            assert_eq!(ready["database"], "ok", "{ready}");
            break;
        }
        assert!(Instant::now() < deadline, "{ready}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_storage_full(what: &str, code: u16, body: &Value, s: &TestServer) {
    assert_eq!(code, 503, "{what}: {body}\n{}", s.log());
    assert_eq!(body["code"], "storage_full", "{what}: {body}");
}
