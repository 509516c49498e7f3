//! Signup to Git, through the real server: the stack is committed within seconds with its
//! trailers, nothing secret reaches history, no-op re-renders make no commit, deletion is a
//! commit, a down or racing remote only delays (tests/reliability.rs kills the server).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Backend, TestServer, ADMIN_TOKEN};
use git2::Repository;
use serde_json::Value;

on_both_backends!(
    signup_commits_the_stack_and_nothing_secret,
    redeploy_is_idempotent_and_delete_is_a_commit
);

const PASSWORD: &str = "correct-horse-battery";

fn gitops_repo(s: &TestServer) -> Repository {
    Repository::open_bare(s.data_dir().join("gitops.git"))
        .expect("the server created its GitOps repository")
}

async fn signup(s: &TestServer, email: &str, company: &str) -> (String, Value) {
    let (code, body) = s.signup(email, PASSWORD, company).await;
    assert_eq!(code, 201, "{body}");
    (
        body["customer"]["customer_id"]
            .as_str()
            .unwrap()
            .to_string(),
        body,
    )
}

/// Every file at `rev`: path -> content.
fn files_at(repo: &Repository, rev: &str) -> BTreeMap<String, String> {
    let tree = repo
        .revparse_single(rev)
        .unwrap()
        .peel_to_commit()
        .unwrap()
        .tree()
        .unwrap();
    let mut out = BTreeMap::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |root, e| {
        if let Ok(blob) = repo.find_blob(e.id()) {
            out.insert(
                format!("{root}{}", e.name().unwrap()),
                String::from_utf8_lossy(blob.content()).into_owned(),
            );
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    out
}

/// Every blob of every commit reachable from `rev`, concatenated: the whole history's text.
fn history_text(repo: &Repository, rev: &str) -> String {
    let mut walk = repo.revwalk().unwrap();
    walk.push(repo.revparse_single(rev).unwrap().id()).unwrap();
    let mut text = String::new();
    for oid in walk {
        let commit = repo.find_commit(oid.unwrap()).unwrap();
        text.push_str(commit.message().unwrap_or_default());
        for content in files_at(repo, &commit.id().to_string()).values() {
            text.push_str(content);
        }
    }
    text
}

fn commits_touching(repo: &Repository, rev: &str, tenant: &str) -> Vec<String> {
    let mut walk = repo.revwalk().unwrap();
    walk.push(repo.revparse_single(rev).unwrap().id()).unwrap();
    walk.map(|o| {
        repo.find_commit(o.unwrap())
            .unwrap()
            .message()
            .unwrap()
            .to_string()
    })
    .filter(|m| m.lines().any(|l| l == format!("Tenant-Id: {tenant}")))
    .collect()
}

async fn signup_commits_the_stack_and_nothing_secret(s: TestServer) {
    let (id, body) = signup(&s, "git@acme.example", "Acme \"GitOps\" Ltd").await;
    let committed = s
        .wait_for_status(&id, "committed", Duration::from_secs(30))
        .await;
    let repo = gitops_repo(&s);
    let head = repo.refname_to_id("refs/heads/main").unwrap().to_string();
    assert_eq!(committed["committed_revision"], head.as_str());
    assert_eq!(
        committed["instance_url"],
        format!("https://{id}.iotistic.cloud")
    );

    let commit = repo
        .find_commit(git2::Oid::from_str(&head).unwrap())
        .unwrap();
    let message = commit.message().unwrap();
    assert!(
        message.starts_with(&format!("tenant {id}: create (starter, trialing)\n")),
        "{message}"
    );
    assert!(
        message.contains(&format!("\nTenant-Id: {id}\n")),
        "{message}"
    );
    assert!(
        message
            .lines()
            .any(|l| l.starts_with("Change-Id: ") && l.len() > 20),
        "{message}"
    );

    let files = files_at(&repo, &head);
    let dir = format!("{}/", billing::render::tenant_dir(&id));
    for name in [
        "kustomization.yaml",
        "namespace.yaml",
        "sealedsecret.yaml",
        "postgres.yaml",
        "ingress.yaml",
    ] {
        assert!(
            files.contains_key(&format!("{dir}{name}")),
            "{name} missing: {:?}",
            files.keys()
        );
    }
    assert!(files.contains_key(&billing::render::flux_kustomization_path(&id)));
    assert!(files[&format!("{dir}namespace.yaml")].contains(&format!("customer-{id}")));
    let sealed = &files[&format!("{dir}sealedsecret.yaml")];
    for key in ["DATABASE_PASSWORD", "MQTT_ADMIN_PASSWORD", "LICENSE_KEY"] {
        assert!(sealed.contains(key), "{key} not sealed");
    }

    // No plaintext license, password or hash anywhere in history.
    let history = history_text(&repo, &head);
    let license = body["license"]["jwt"].as_str().unwrap();
    let db = s.db().await;
    let hash: (String,) = sqlx::query_as("SELECT password_hash FROM customers")
        .fetch_one(&db)
        .await
        .unwrap();
    for secret in [license, &license[license.len() - 40..], PASSWORD, &hash.0] {
        assert!(!history.contains(secret), "a secret reached Git history");
    }
    // The cluster's controller (here: the test holding its private key) gets the real values back.
    let doc: serde_json::Value = serde_norway::from_str(sealed).unwrap();
    assert_eq!(doc["apiVersion"], "bitnami.com/v1alpha1");
    let data = &doc["spec"]["encryptedData"];
    let private = common::sealing_private_key();
    let namespace = format!("customer-{id}");
    let open = |key: &str| {
        let bytes = billing::seal::unseal(
            &private,
            &namespace,
            "tenant-secrets",
            data[key].as_str().unwrap(),
        )
        .unwrap();
        String::from_utf8(bytes).unwrap()
    };
    assert_eq!(open("LICENSE_KEY"), license);
    let (db_password, mqtt_password) = (open("DATABASE_PASSWORD"), open("MQTT_ADMIN_PASSWORD"));
    for p in [&db_password, &mqtt_password] {
        assert_eq!(p.len(), 32);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(
            !history.contains(p.as_str()),
            "a generated password reached Git in plain text"
        );
    }
    assert_ne!(db_password, mqtt_password);
    assert!(
        billing::seal::unseal(
            &private,
            "customer-someoneelse",
            "tenant-secrets",
            data["LICENSE_KEY"].as_str().unwrap()
        )
        .is_err(),
        "strict scope: another namespace cannot open it"
    );

    let sealed_in_db: Vec<(String,)> = sqlx::query_as("SELECT sealed_value FROM tenant_secrets")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(sealed_in_db.len(), 3);
    for (value,) in &sealed_in_db {
        assert!(
            sealed.contains(value.as_str()),
            "the committed SealedSecret is the stored one"
        );
    }
}

async fn redeploy_is_idempotent_and_delete_is_a_commit(s: TestServer) {
    let (id, _) = signup(&s, "idem@acme.example", "Idempotent Inc").await;
    s.wait_for_status(&id, "committed", Duration::from_secs(30))
        .await;
    let repo = gitops_repo(&s);
    let before = repo.refname_to_id("refs/heads/main").unwrap();

    let (code, accepted) = s.admin_post(&format!("/api/customers/{id}/deploy")).await;
    assert_eq!(code, 202);
    assert!(accepted["change_id"].as_str().is_some());
    s.wait_for_status(&id, "committed", Duration::from_secs(30))
        .await;
    assert_eq!(
        repo.refname_to_id("refs/heads/main").unwrap(),
        before,
        "a re-render without change made a commit"
    );

    // Redeploying every tenant over HTTP: queued for all, still no commit without a change.
    let (code, all) = s.admin_post("/api/admin/tenants/redeploy").await;
    assert_eq!(code, 202);
    assert_eq!(all["queued"], 1);
    s.wait_for_status(&id, "committed", Duration::from_secs(30))
        .await;
    assert_eq!(repo.refname_to_id("refs/heads/main").unwrap(), before);
    // A full redeploy renders every template; still nothing changed, so still no commit.
    let (code, _) = s.admin_post("/api/admin/tenants/redeploy?full=true").await;
    assert_eq!(code, 202);
    // Redeploying everyone does not mark tenants pending: wait for the queue to drain.
    s.wait_queue_drained(Duration::from_secs(30)).await;
    assert_eq!(repo.refname_to_id("refs/heads/main").unwrap(), before);
    let (code, err) = s.admin_post("/api/admin/tenants/redeploy?full=maybe").await;
    assert_eq!(code, 400);
    assert_eq!(err["field"], "full", "{err}");
    let resp = s
        .client
        .post(s.url("/api/admin/tenants/redeploy"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // Only the admin may redeploy or delete.
    let code = s
        .client
        .delete(s.url(&format!("/api/customers/{id}/deployment")))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(code.as_u16(), 401);

    let code = s
        .client
        .delete(s.url(&format!("/api/customers/{id}/deployment")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(code.as_u16(), 202);
    let deleted = s
        .wait_for_status(&id, "deleted", Duration::from_secs(30))
        .await;
    let head = repo.refname_to_id("refs/heads/main").unwrap();
    assert_ne!(head, before);
    assert_eq!(deleted["committed_revision"], head.to_string().as_str());
    let files = files_at(&repo, &head.to_string());
    assert!(
        !files.keys().any(|p| p.contains(&id)),
        "tenant files remain after delete"
    );
    let message = repo
        .find_commit(head)
        .unwrap()
        .message()
        .unwrap()
        .to_string();
    assert!(
        message.starts_with(&format!("tenant {id}: delete")),
        "{message}"
    );
    // `git revert` of the deletion brings the stack back: it is all in the parent commit.
    let parent = repo.find_commit(head).unwrap().parent(0).unwrap();
    assert!(
        files_at(&repo, &parent.id().to_string()).contains_key(&format!(
            "{}/kustomization.yaml",
            billing::render::tenant_dir(&id)
        ))
    );

    // Once idle, the worker repacks (git repack --geometric=2: the pack counts it keeps are
    // the gitops unit tests'), and nothing is left loose.
    let objects = s.data_dir().join("gitops.git/objects");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s.log().contains("repacked") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        s.log().contains("repacked"),
        "the idle worker repacked\n{}",
        s.log()
    );
    assert_eq!(loose_objects(&objects), 0);
    let repo = gitops_repo(&s);
    assert!(
        files_at(&repo, &parent.id().to_string()).contains_key(&format!(
            "{}/namespace.yaml",
            billing::render::tenant_dir(&id)
        ))
    );
}

fn loose_objects(objects: &Path) -> usize {
    std::fs::read_dir(objects)
        .unwrap()
        .flatten()
        .filter(|d| d.file_name().len() == 2)
        .map(|d| std::fs::read_dir(d.path()).map_or(0, |f| f.count()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_see_only_their_own_deployment_status() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let (id, _) = signup(&s, "own@acme.example", "Own Co").await;
    let (other, _) = signup(&s, "other@acme.example", "Other Co").await;
    let (_, login) = s
        .post_json(
            "/api/customers/login",
            &serde_json::json!({"email": "own@acme.example", "password": PASSWORD}),
        )
        .await;
    let token = login["token"].as_str().unwrap();
    let (code, body) = s
        .get_json(
            &format!("/api/customers/{id}/deployment/status"),
            Some(token),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["customer_id"], id.as_str());
    let (code, _) = s
        .get_json(
            &format!("/api/customers/{other}/deployment/status"),
            Some(token),
        )
        .await;
    assert_eq!(code, 404);
    assert_eq!(
        s.get_json(&format!("/api/customers/{id}/deployment/status"), None)
            .await
            .0,
        401
    );
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_down_then_up_and_a_racing_writer() {
    let remote_dir = tempfile::tempdir().unwrap();
    let remote_path = remote_dir.path().join("tenants.git");
    let url = file_url(&remote_path);
    let s = TestServer::start_with(Backend::Sqlite, &[("GITOPS_REMOTE", &url)])
        .await
        .unwrap();

    // The remote does not exist yet: signups still succeed and wait.
    let (first, _) = signup(&s, "down@acme.example", "Down Co").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let pending = loop {
        let pending = s.deployment_status(&first).await;
        let push_failed = pending["gitops"]["remote_error"]
            .as_str()
            .is_some_and(|e| e.contains("push"));
        if push_failed {
            break pending;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no push error: {pending}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(pending["status"], "pending", "{pending}");
    let (_, ready) = s.get_json("/readyz", None).await;
    assert_eq!(ready["status"], "degraded", "{ready}");

    // The remote comes up: the commit lands.
    let remote = Repository::init_opts(
        &remote_path,
        git2::RepositoryInitOptions::new()
            .bare(true)
            .initial_head("main"),
    )
    .unwrap();
    let committed = s
        .wait_for_status(&first, "committed", Duration::from_secs(60))
        .await;
    let tip = remote.refname_to_id("refs/heads/main").unwrap();
    assert_eq!(committed["committed_revision"], tip.to_string().as_str());
    assert!(files_at(&remote, "refs/heads/main").contains_key(&format!(
        "{}/kustomization.yaml",
        billing::render::tenant_dir(&first)
    )));
    assert_eq!(s.get_json("/readyz", None).await.1["status"], "ready");

    // Another writer pushes to the remote behind the server's back (an operator's commit).
    let other = tempfile::tempdir().unwrap();
    let clone = git2::build::RepoBuilder::new()
        .bare(true)
        .clone(&url, other.path())
        .unwrap();
    let parent = clone.head().unwrap().peel_to_commit().unwrap();
    let mut builder = clone.treebuilder(Some(&parent.tree().unwrap())).unwrap();
    builder
        .insert(
            "OPERATOR_NOTES.md",
            clone.blob(b"hand-written\n").unwrap(),
            0o100644,
        )
        .unwrap();
    let tree = clone.find_tree(builder.write().unwrap()).unwrap();
    let sig = git2::Signature::now("operator", "op@example.com").unwrap();
    clone
        .commit(
            Some("HEAD"),
            &sig,
            &sig,
            "operator notes",
            &tree,
            &[&parent],
        )
        .unwrap();
    clone
        .find_remote("origin")
        .unwrap()
        .push(&["refs/heads/main:refs/heads/main"], None)
        .unwrap();

    // The server's next push is a non-fast-forward: it re-applies its change on the new tip.
    let (second, _) = signup(&s, "race@acme.example", "Race Co").await;
    s.wait_for_status(&second, "committed", Duration::from_secs(60))
        .await;
    let files = files_at(&remote, "refs/heads/main");
    assert!(
        files.contains_key("OPERATOR_NOTES.md"),
        "the other writer's commit was lost"
    );
    assert!(files.contains_key(&format!(
        "{}/kustomization.yaml",
        billing::render::tenant_dir(&first)
    )));
    assert!(files.contains_key(&format!(
        "{}/kustomization.yaml",
        billing::render::tenant_dir(&second)
    )));
    assert_eq!(
        commits_touching(&remote, "refs/heads/main", &second).len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_pokes_the_flux_receiver_with_the_new_revision() {
    use std::sync::{Arc, Mutex};
    // A stand-in Flux Receiver on loopback that records what it is sent.
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let record = seen.clone();
    let receiver = axum::Router::new().route(
        "/hook/{digest}",
        axum::routing::post(
            move |axum::extract::Path(digest): axum::extract::Path<String>, body: String| {
                let record = record.clone();
                async move {
                    record.lock().unwrap().push((digest, body));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook/abc123", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let remote_dir = tempfile::tempdir().unwrap();
    let remote_path = remote_dir.path().join("tenants.git");
    Repository::init_opts(
        &remote_path,
        git2::RepositoryInitOptions::new()
            .bare(true)
            .initial_head("main"),
    )
    .unwrap();
    let url = file_url(&remote_path);
    let s = TestServer::start_with(
        Backend::Sqlite,
        &[("GITOPS_REMOTE", &url), ("SYNC_WEBHOOK_URL", &hook)],
    )
    .await
    .unwrap();
    let (id, _) = signup(&s, "poke@acme.example", "Poke Co").await;
    let committed = s
        .wait_for_status(&id, "committed", Duration::from_secs(30))
        .await;
    let revision = committed["committed_revision"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let calls = seen.lock().unwrap().clone();
        if let Some((digest, body)) = calls.iter().find(|(_, b)| b.contains(&revision)) {
            assert_eq!(digest, "abc123");
            let body: Value = serde_json::from_str(body).unwrap();
            assert_eq!(body["revision"], format!("main@sha1:{revision}"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no poke for {revision}: {calls:?}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A tenant left in the flat layout of older versions is moved by its next change: the flat
/// directory and Kustomization go in the same commit (here a removal, which must also take the
/// flat copy), and a tenant with nothing in the flat layout is untouched by the clean-up.
#[test]
fn a_change_clears_the_flat_layout_of_older_versions() {
    use billing::gitops::{Changes, Entry, GitOpsRepo};
    let dir = tempfile::tempdir().unwrap();
    let author = billing::gitops::Author {
        name: "t".into(),
        email: "t@localhost".into(),
    };
    let mut repo = GitOpsRepo::open_or_init(&dir.path().join("r.git"), "main", author).unwrap();
    let (old, new) = ("k3x9abcdefgh", "m2z8abcdefgh");
    let mut flat = Changes::new();
    flat.insert(
        billing::render::flat_tenant_dir(old),
        Entry::Dir([("kustomization.yaml".into(), b"resources: []\n".to_vec())].into()),
    );
    flat.insert(
        billing::render::flat_flux_kustomization_path(old),
        Entry::File(b"kind: Kustomization\n".to_vec()),
    );
    flat.insert(
        billing::render::tenant_dir(new),
        Entry::Dir([("kustomization.yaml".into(), b"resources: []\n".to_vec())].into()),
    );
    repo.commit(&flat, "old layout").unwrap().unwrap();
    repo.commit(&billing::deploy::removal_changes(old), "remove old")
        .unwrap()
        .expect("the flat copy is removed");
    let files = files_at(repo.repository(), "main");
    assert!(
        files.keys().all(|p| !p.contains(old)),
        "nothing of {old} is left: {files:?}"
    );
    assert!(files.contains_key(&format!(
        "{}/kustomization.yaml",
        billing::render::tenant_dir(new)
    )));
    common::assert_git_fsck_strict(repo.path());
}
