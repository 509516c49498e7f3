//! SIGKILLs during commits and pushes: a server killed at random while it commits and pushes to
//! a path remote or a `git daemon` remote, on SQLite or PostgreSQL, comes back, pushes what it
//! had, and every acknowledged signup ends on the remote exactly once. No lock file, temporary
//! pack or index without its pack that a dead process left stops it or stays behind.

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

/// Leaves what a kill inside libgit2's indexer leaves in `objects/pack`, old enough to be
/// taken for a dead writer's: an index whose pack never arrived, the temporary pack and a lock
/// on its index.
fn plant_pack_leftovers(gitdir: &Path) {
    let dir = gitdir.join("objects/pack");
    let idx = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "idx"))
        .expect("a pack index to copy");
    let planted = [
        dir.join("pack-00000000000000000000000000000000000000aa.idx"),
        dir.join("pack_git2_Zq8kPw"),
        dir.join("pack_git2_Zq8kPwidx.lock"),
    ];
    std::fs::copy(&idx, &planted[0]).unwrap();
    std::fs::write(&planted[1], b"PACK\0\0\0\x02").unwrap();
    std::fs::write(&planted[2], b"").unwrap();
    for path in planted {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(std::time::SystemTime::now() - STALE * 3)
            .unwrap();
    }
}

/// What git does not count as part of a whole pack in `objects/pack`, newest first: the
/// end of the test waits until those are older than the stale age.
fn newest_leftover(gitdir: &Path) -> Option<std::time::SystemTime> {
    let dir = gitdir.join("objects/pack");
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            !name.starts_with("pack-") || name.ends_with(".lock")
        })
        .chain(
            common::indexes_without_pack(gitdir)
                .into_iter()
                .filter_map(|n| {
                    std::fs::read_dir(&dir)
                        .ok()?
                        .flatten()
                        .find(|e| e.file_name().to_string_lossy() == n)
                }),
        )
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()
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

/// The stale age the server runs with here: a lock or temporary pack a killed writer left in a
/// path remote is taken for a dead writer's after 3 s, not 60.
const STALE: Duration = Duration::from_secs(3);

async fn kills_during_pushes(backend: Backend, remote_url: &str, remote_dir: &Path) {
    let stale = STALE.as_secs().to_string();
    let env = [
        ("GITOPS_REMOTE", remote_url),
        ("GITOPS_BATCH_MAX", "4"),
        ("GITOPS_STALE_LOCK_SECONDS", stale.as_str()),
    ];
    let Some(mut s) = TestServer::start_with(backend, &env).await else {
        return;
    };
    let local = s.data_dir().join("gitops.git");
    let path_remote = (!remote_url.contains("://")).then_some(remote_dir);
    let mut acknowledged = Vec::new();
    let mut left_by_kills = 0;
    let mut pack_leftovers = 0;
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
        pack_leftovers += common::git_garbage(&local);
        if round == ROUNDS / 2 {
            // Whether or not a random kill hit a ref update or a pack write, make sure one did.
            plant_locks(&local, path_remote);
            plant_pack_leftovers(&local);
            path_remote.into_iter().for_each(plant_pack_leftovers);
        }
        s.restart().await;
    }
    eprintln!(
        "left by the kills in the local repository: {left_by_kills} lock files, \
         {pack_leftovers} files git counts as garbage"
    );
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
    // Once what the last kill left is past the stale age, one more restart: everything a dead
    // process left is gone, here and in a path remote, and commits go on.
    let deadline = Instant::now() + STALE * 10;
    while let Some(newest) = [&local, &remote_dir.to_path_buf()]
        .into_iter()
        .filter_map(|dir| newest_leftover(dir))
        .max()
        .filter(|t| t.elapsed().unwrap_or_default() <= STALE)
    {
        assert!(
            Instant::now() < deadline,
            "a leftover keeps getting younger: {newest:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.restart().await;
    let (status, body) = s
        .signup("after-the-kills@acme.example", common::PASSWORD, "After")
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["customer"]["customer_id"].as_str().unwrap();
    s.wait_for_status(id, "committed", Duration::from_secs(60))
        .await;
    let mut repos = vec![local.clone()];
    repos.extend(path_remote.map(Path::to_path_buf));
    for repo in &repos {
        assert_eq!(
            common::indexes_without_pack(repo),
            Vec::<String>::new(),
            "{}",
            repo.display()
        );
        assert_eq!(
            common::git_garbage(repo),
            0,
            "garbage in {}",
            repo.display()
        );
    }

    // No lock of a dead process is left to block the next commit or push. The live server takes
    // short ref locks of its own (the drift scan's `refs/billing/scanned`), so it is stopped first:
    // a graceful stop finishes its Git work, and what remains can only be a dead process's.
    let exit = s.terminate(Duration::from_secs(60)).await;
    assert!(exit.is_some_and(|e| e.success()), "graceful stop: {exit:?}");
    assert_eq!(lock_files(&local), Vec::<String>::new());
    common::assert_git_fsck_strict(&local);
    assert_eq!(lock_files(&remote_dir.join("refs")), Vec::<String>::new());
    common::assert_git_fsck_strict(remote_dir);
}

async fn kills_with_a_path_remote(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let remote_dir = dir.path().join("remote.git");
    git2::Repository::init_opts(
        &remote_dir,
        git2::RepositoryInitOptions::new()
            .bare(true)
            .initial_head("main"),
    )
    .unwrap();
    kills_during_pushes(backend, remote_dir.to_str().unwrap(), &remote_dir).await;
}

async fn kills_with_a_git_daemon_remote(backend: Backend) {
    let daemon = common::GitDaemon::start("tenants.git").expect("git daemon");
    let remote_dir = daemon.dir.path().join("tenants.git");
    kills_during_pushes(backend, &daemon.url("tenants.git"), &remote_dir).await;
}

for_each_backend!(kills_with_a_path_remote, kills_with_a_git_daemon_remote);
