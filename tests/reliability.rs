//! Reliability under abuse: a server SIGKILLed at random moments during 200 signups loses no
//! customer and commits each stack exactly once; the whole Git history holds no plaintext
//! password, license or private key; hostile request bodies never crash the server.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Backend, TestServer};
use rand::Rng;
use serde_json::{json, Value};

use common::PASSWORD;

/// All blob contents and commit messages reachable from the branch.
fn history(repo: &git2::Repository) -> String {
    let mut text = String::new();
    let mut seen = BTreeSet::new();
    let mut walk = repo.revwalk().unwrap();
    walk.push_ref("refs/heads/main").unwrap();
    for oid in walk {
        let commit = repo.find_commit(oid.unwrap()).unwrap();
        text.push_str(commit.message().unwrap_or_default());
        commit
            .tree()
            .unwrap()
            .walk(git2::TreeWalkMode::PreOrder, |_, e| {
                if seen.insert(e.id()) {
                    if let Ok(blob) = repo.find_blob(e.id()) {
                        text.push_str(&String::from_utf8_lossy(blob.content()));
                    }
                }
                git2::TreeWalkResult::Ok
            })
            .unwrap();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_signups_through_random_kills() {
    let mut s = TestServer::start(Backend::Sqlite).await.unwrap();
    let mut licenses = Vec::new();
    let mut created = Vec::new();
    let mut next = 0usize;
    let mut kills = 0;
    while next < 200 {
        let emails: Vec<String> = (next..(next + 40).min(200))
            .map(|i| format!("crash{i}@acme.example"))
            .collect();
        next += emails.len();
        // Each round is killed at a random moment after a random number of its signups got
        // their 201 (so every round makes progress whatever the machine's speed).
        let wanted = rand::thread_rng().gen_range(1..30);
        let clients = emails.len();
        for v in common::signups_until_killed(&mut s, emails, clients, wanted).await {
            created.push(v["customer"]["customer_id"].as_str().unwrap().to_string());
            licenses.push(v["license"]["jwt"].as_str().unwrap().to_string());
        }
        kills += 1;
        s.restart().await;
    }
    assert!(kills >= 5);
    assert!(
        created.len() >= 20,
        "too few signups got through the kills: {}",
        created.len()
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    let db = s.db().await;
    let all: Vec<(String,)> = sqlx::query_as("SELECT id FROM customers")
        .fetch_all(&db)
        .await
        .unwrap();
    let ids: BTreeSet<String> = all.into_iter().map(|(id,)| id).collect();
    for id in &created {
        assert!(ids.contains(id), "{id} got a 201 but has no customer row");
    }
    // Every customer row, acknowledged or not, ends committed exactly once.
    for id in &ids {
        s.wait_for_status(
            id,
            "committed",
            deadline.saturating_duration_since(Instant::now()),
        )
        .await;
    }
    let repo = git2::Repository::open_bare(s.data_dir().join("gitops.git")).unwrap();
    let head = repo.refname_to_id("refs/heads/main").unwrap();
    let tree = repo.find_commit(head).unwrap().tree().unwrap();
    let tenants = repo
        .find_tree(tree.get_name("tenants").unwrap().id())
        .unwrap();
    // Tenant directories sit three prefix levels down: tenants/a/b/c/<id>.
    let mut dirs = Vec::new();
    tenants
        .walk(git2::TreeWalkMode::PreOrder, |root, e| {
            if root.matches('/').count() == 3 && e.kind() == Some(git2::ObjectType::Tree) {
                dirs.push(format!("tenants/{root}{}", e.name().unwrap()));
            }
            git2::TreeWalkResult::Ok
        })
        .unwrap();
    let mut expected: Vec<_> = ids
        .iter()
        .map(|id| billing::render::tenant_dir(id))
        .collect();
    dirs.sort();
    expected.sort();
    assert_eq!(dirs, expected, "one tenant directory per customer");
    let mut walk = repo.revwalk().unwrap();
    walk.push(head).unwrap();
    let mut creates = std::collections::BTreeMap::<String, usize>::new();
    for oid in walk {
        let message = repo
            .find_commit(oid.unwrap())
            .unwrap()
            .message()
            .unwrap()
            .to_string();
        for line in message
            .lines()
            .filter_map(|l| l.strip_prefix("Tenant-Id: "))
        {
            *creates.entry(line.to_string()).or_default() += 1;
        }
    }
    for id in &ids {
        assert_eq!(
            creates.get(id),
            Some(&1),
            "{id} is in {:?} commits",
            creates.get(id)
        );
    }
    assert_eq!(
        common::count(
            &db,
            "SELECT COUNT(*) FROM render_jobs WHERE status <> $1",
            "done"
        )
        .await,
        0
    );

    // Nothing secret anywhere in history: licenses, generated passwords, keys.
    let text = history(&repo);
    for jwt in &licenses {
        assert!(
            !text.contains(jwt.as_str()) && !text.contains(&jwt[jwt.len() - 43..]),
            "a license is in Git"
        );
    }
    let private = common::sealing_private_key();
    for id in ids.iter().take(25) {
        let sealed = tree
            .get_path(std::path::Path::new(&format!(
                "{}/sealedsecret.yaml",
                billing::render::tenant_dir(id)
            )))
            .unwrap();
        let doc: Value =
            serde_norway::from_slice(repo.find_blob(sealed.id()).unwrap().content()).unwrap();
        for key in ["DATABASE_PASSWORD", "MQTT_ADMIN_PASSWORD"] {
            let value = doc["spec"]["encryptedData"][key].as_str().unwrap();
            let plain =
                billing::seal::unseal(&private, &format!("customer-{id}"), "tenant-secrets", value)
                    .unwrap();
            assert!(
                !text.contains(std::str::from_utf8(&plain).unwrap()),
                "a generated password is in Git"
            );
        }
    }
    assert!(
        !text.contains("PRIVATE KEY-----"),
        "a private key is in Git"
    );
    assert!(!text.contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_request_bodies_get_4xx_never_5xx() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let mut rng = rand::thread_rng();
    let fragments = [
        "{",
        "}",
        "[",
        "]",
        "\"",
        "\\",
        ":",
        ",",
        "null",
        "true",
        "1e999",
        "-0",
        "\"email\"",
        "\"password\"",
        "\"company_name\"",
        "\"a@b.io\"",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "{{ x }}",
        "---\n",
        "\u{202e}",
        "🚀",
    ];
    for path in [
        "/api/customers/signup",
        "/api/customers/login",
        "/api/licenses/verify",
    ] {
        for _ in 0..150 {
            let body: String = (0..rng.gen_range(0..12))
                .map(|_| fragments[rng.gen_range(0..fragments.len())])
                .collect();
            let resp = s
                .client
                .post(s.url(path))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            assert!(
                (400..500).contains(&status) || status == 200 || status == 201,
                "{path} {body:?} -> {status}"
            );
            if status >= 400 {
                let err: Value = resp.json().await.unwrap_or(Value::Null);
                assert!(
                    err["code"].is_string() || err["valid"] == false,
                    "{path} {body:?} -> {err}"
                );
            }
        }
        // Structurally valid JSON with hostile values.
        for _ in 0..60 {
            let pick = |rng: &mut rand::rngs::ThreadRng| -> Value {
                match rng.gen_range(0..6) {
                    0 => Value::Null,
                    1 => json!(rng.gen::<i64>()),
                    2 => json!([1, "x"]),
                    3 => json!({"nested": "x"}),
                    4 => json!("x".repeat(rng.gen_range(0..3000))),
                    _ => json!(fragments[rng.gen_range(0..fragments.len())]),
                }
            };
            let body = json!({"email": pick(&mut rng), "password": pick(&mut rng), "company_name": pick(&mut rng), "license": pick(&mut rng)});
            let (status, err) = s.post_json(path, &body).await;
            assert!(status < 500, "{path} {body} -> {status} {err}");
        }
    }
    assert!(
        !s.log().contains("panicked"),
        "the server panicked:\n{}",
        s.log()
    );
}
