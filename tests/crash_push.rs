//! SIGKILLs during pushes: a server killed at random while it pushes to a path remote or a
//! `git daemon` remote comes back, pushes what it had, and every acknowledged signup ends on the
//! remote exactly once — no lock file of a dead process stops it for good.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Backend, TestServer};
use rand::Rng;

const ROUNDS: usize = 8;
const PER_ROUND: usize = 25;
const CLIENTS: usize = 8;

/// Leaves exactly what a SIGKILL inside a ref update leaves: the lock files of our branch and
/// of the remote-tracking ref, and (for a path remote) of the remote's branch, as old as the
/// stale age, so the next writer has to deal with them.
fn plant_locks(local: &Path, remote_dir: Option<&Path>) {
    let mut locks = vec![
        local.join("refs/heads/main.lock"),
        local.join("refs/remotes/origin/main.lock"),
    ];
    locks.extend(remote_dir.map(|r| r.join("refs/heads/main.lock")));
    for lock in locks {
        std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
        std::fs::write(&lock, b"").unwrap();
    }
}

/// Lock files anywhere under a repository directory.
fn lock_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "lock") {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// How many commits on the remote's `main` name each tenant in a `Tenant-Id:` trailer.
fn trailer_counts(remote: &git2::Repository) -> BTreeMap<String, usize> {
    let head = remote.refname_to_id("refs/heads/main").unwrap();
    let mut walk = remote.revwalk().unwrap();
    walk.push(head).unwrap();
    let mut counts = BTreeMap::new();
    for oid in walk {
        let commit = remote.find_commit(oid.unwrap()).unwrap();
        for id in commit
            .message()
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("Tenant-Id: "))
        {
            *counts.entry(id.to_string()).or_default() += 1;
        }
    }
    counts
}

async fn kills_during_pushes(remote_url: &str, remote_dir: &Path) {
    let env = [
        ("GITOPS_REMOTE", remote_url),
        ("GITOPS_BATCH_MAX", "4"),
        // A lock a killed push left in a path remote is taken for stale after 3 s, not 60.
        ("GITOPS_STALE_LOCK_SECONDS", "3"),
    ];
    let mut s = TestServer::start_with(Backend::Sqlite, &env).await.unwrap();
    let local = s.data_dir().join("gitops.git");
    let path_remote = (!remote_url.contains("://")).then_some(remote_dir);
    let mut acknowledged = Vec::new();
    let mut left_by_kills = 0;
    for round in 0..ROUNDS {
        let emails = (0..PER_ROUND)
            .map(|i| format!("push{round}-{i}@acme.example"))
            .collect();
        let kill_after = rand::thread_rng().gen_range(2..PER_ROUND);
        let created = common::signups_until_killed(&mut s, emails, CLIENTS, kill_after).await;
        acknowledged.extend(
            created
                .iter()
                .map(|v| v["customer"]["customer_id"].as_str().unwrap().to_string()),
        );
        left_by_kills += lock_files(&local).len();
        if round == ROUNDS / 2 {
            // Whether or not a random kill hit a ref update, make sure one did.
            plant_locks(&local, path_remote);
        }
        s.restart().await;
    }
    eprintln!("lock files left by the random kills in the local repository: {left_by_kills}");
    assert!(
        acknowledged.len() >= ROUNDS * 2,
        "too few signups got through: {}",
        acknowledged.len()
    );

    // Every customer row, acknowledged or not, ends committed (which means pushed).
    let db = s.db().await;
    let rows: Vec<(String,)> = sqlx::query_as("SELECT id FROM customers")
        .fetch_all(&db)
        .await
        .unwrap();
    let ids: BTreeSet<String> = rows.into_iter().map(|(id,)| id).collect();
    for id in &acknowledged {
        assert!(ids.contains(id), "{id} got a 201 but has no customer row");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &ids {
        let left = deadline.saturating_duration_since(Instant::now());
        s.wait_for_status(id, "committed", left).await;
    }
    let (_, ready) = s.get_json("/readyz", None).await;
    assert_eq!(ready["status"], "ready", "{ready}");

    // The remote has each tenant's directory, created in exactly one commit.
    let remote = git2::Repository::open_bare(remote_dir).unwrap();
    let head = remote.refname_to_id("refs/heads/main").unwrap();
    let tree = remote.find_commit(head).unwrap().tree().unwrap();
    let counts = trailer_counts(&remote);
    for id in &ids {
        assert!(
            tree.get_path(Path::new(&format!(
                "{}/kustomization.yaml",
                billing::render::tenant_dir(id)
            )))
            .is_ok(),
            "{id} is not on the remote"
        );
        assert_eq!(
            counts.get(id),
            Some(&1),
            "{id} in {:?} commits",
            counts.get(id)
        );
    }
    // No lock of a dead process is left to block the next commit or push.
    assert_eq!(lock_files(&local), Vec::<String>::new());
    common::assert_git_fsck_strict(&local);
    assert_eq!(lock_files(&remote_dir.join("refs")), Vec::<String>::new());
    common::assert_git_fsck_strict(remote_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_during_pushes_to_a_path_remote_lose_and_block_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let remote_dir = dir.path().join("remote.git");
    git2::Repository::init_opts(
        &remote_dir,
        git2::RepositoryInitOptions::new()
            .bare(true)
            .initial_head("main"),
    )
    .unwrap();
    kills_during_pushes(remote_dir.to_str().unwrap(), &remote_dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_during_pushes_to_a_git_daemon_lose_and_block_nothing() {
    let daemon = common::GitDaemon::start("tenants.git").expect("git daemon");
    let remote_dir = daemon.dir.path().join("tenants.git");
    kills_during_pushes(&daemon.url("tenants.git"), &remote_dir).await;
}
