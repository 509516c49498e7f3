//! Two server replicas on one PostgreSQL database and one bare remote: signups spread over
//! both are all committed and pushed, each tenant exactly once, no job done twice.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestServer, ADMIN_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_work_without_doing_any_twice() {
    // A real git daemon: its receive-pack locks and checks each ref update, as Git hosts do
    // (libgit2's own file:// transport overwrites refs without that check).
    let daemon = common::GitDaemon::start("tenants.git").expect("git daemon");
    let remote = daemon.repo("tenants.git");
    let url = daemon.url("tenants.git");
    let env = [("GITOPS_REMOTE", url.as_str()), ("GITOPS_BATCH_MAX", "3")];
    let Some(a) = TestServer::start_with(Backend::Postgres, &env).await else {
        return;
    };
    let b = a.start_replica(&env).await;

    let mut tasks = Vec::new();
    for i in 0..24 {
        let (base, client) = if i % 2 == 0 {
            (a.base.clone(), a.client.clone())
        } else {
            (b.base.clone(), b.client.clone())
        };
        tasks.push(tokio::spawn(async move {
            let body = serde_json::json!({"email": format!("r{i}@acme.example"), "password": "correct-horse-battery", "company_name": format!("Replica {i}")});
            let resp = client.post(format!("{base}/api/customers/signup")).json(&body).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 201);
            let v: serde_json::Value = resp.json().await.unwrap();
            v["customer"]["customer_id"].as_str().unwrap().to_string()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }

    let deadline = Instant::now() + Duration::from_secs(90);
    for id in &ids {
        loop {
            let (_, st) = a
                .get_json(
                    &format!("/api/customers/{id}/deployment/status"),
                    Some(ADMIN_TOKEN),
                )
                .await;
            if st["status"] == "committed" && st["pending_changes"] == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id} not committed: {st}\nA:\n{}\nB:\n{}",
                a.log(),
                b.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let tip = remote.refname_to_id("refs/heads/main").unwrap();
    let tree = remote.find_commit(tip).unwrap().tree().unwrap();
    let mut walk = remote.revwalk().unwrap();
    walk.push(tip).unwrap();
    let messages: Vec<String> = walk
        .map(|o| {
            remote
                .find_commit(o.unwrap())
                .unwrap()
                .message()
                .unwrap()
                .to_string()
        })
        .collect();
    for id in &ids {
        assert!(
            tree.get_path(std::path::Path::new(&format!(
                "{}/kustomization.yaml",
                billing::render::tenant_dir(id)
            )))
            .is_ok(),
            "{id} missing on the remote"
        );
        let touching = messages
            .iter()
            .filter(|m| m.contains(&format!("Tenant-Id: {id}\n")))
            .count();
        assert_eq!(touching, 1, "{id} committed {touching} times");
    }
    let db = a.db().await;
    assert_eq!(
        common::count(
            &db,
            "SELECT COUNT(*) FROM render_jobs WHERE status = $1",
            "done"
        )
        .await,
        ids.len() as i64
    );
    // Both replicas did part of the work (each pushed at least one of the commits).
    let authors_a = a.log().contains("render jobs committed");
    let authors_b = b.log().contains("render jobs committed");
    assert!(
        authors_a && authors_b,
        "one replica did everything: A {authors_a}, B {authors_b}"
    );
}
