//! The outbox worker as a library: jobs pending together become one bounded commit, and a
//! tenant that cannot be rendered fails after its retry budget without blocking the others.

mod common;

use std::sync::Arc;

use billing::accounts::signup::{signup, SignupRequest};
use billing::accounts::RequestMeta;
use billing::app::App;
use clap::Parser;
use serde_json::json;

async fn app(dir: &std::path::Path, extra: &[&str]) -> Arc<App> {
    let mut args = vec![
        "billing".to_string(),
        "--data-dir".into(),
        dir.display().to_string(),
        "--sealed-secrets-cert".into(),
        common::sealing_cert_path().display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("serve".into());
    let cli = billing::cli::Cli::try_parse_from(args).unwrap();
    App::start(cli.config).await.unwrap()
}

async fn new_customer(app: &App, n: usize) -> String {
    let req = SignupRequest::from_json(json!({
        "email": format!("batch{n}@acme.example"), "password": "correct-horse-battery", "company_name": format!("Batch {n}")
    }))
    .unwrap();
    signup(&app.accounts, req, &RequestMeta::default())
        .await
        .unwrap()
        .customer
        .customer_id
}

fn head_message(app: &App) -> String {
    let repo = git2::Repository::open_bare(app.config.gitops_repo()).unwrap();
    let head = repo.refname_to_id("refs/heads/main").unwrap();
    let message = repo
        .find_commit(head)
        .unwrap()
        .message()
        .unwrap()
        .to_string();
    message
}

fn commit_count(app: &App) -> usize {
    let repo = git2::Repository::open_bare(app.config.gitops_repo()).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_ref("refs/heads/main").unwrap();
    walk.count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_jobs_are_group_committed_in_bounded_batches() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), &["--gitops-batch-max", "10"]).await;
    let mut ids = Vec::new();
    for n in 0..25 {
        ids.push(new_customer(&app, n).await);
    }
    let before = commit_count(&app);
    let handled: Vec<usize> = [
        billing::deploy::process_batch(&app.deploy).await.unwrap(),
        billing::deploy::process_batch(&app.deploy).await.unwrap(),
        billing::deploy::process_batch(&app.deploy).await.unwrap(),
        billing::deploy::process_batch(&app.deploy).await.unwrap(),
    ]
    .into();
    assert_eq!(handled, [10, 10, 5, 0]);
    assert_eq!(commit_count(&app), before + 3, "one commit per batch");
    let last = head_message(&app);
    assert!(last.starts_with("tenants: create 5\n"), "{last}");
    for id in &ids[20..] {
        assert!(last.contains(&format!("Tenant-Id: {id}\n")), "{last}");
    }
    assert_eq!(last.matches("Change-Id: ").count(), 5);
    for id in &ids {
        let status = billing::deploy::requests::status(&app.deploy, id)
            .await
            .unwrap();
        assert_eq!(status.status, "committed");
        assert_eq!(status.pending_changes, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrenderable_tenant_fails_after_its_budget_and_others_still_commit() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), &["--gitops-max-attempts", "2"]).await;
    let broken = new_customer(&app, 1).await;
    let fine = new_customer(&app, 2).await;
    sqlx::query("UPDATE subscriptions SET plan = 'gold' WHERE customer_id = $1")
        .bind(&broken)
        .execute(&app.db.pool)
        .await
        .unwrap();

    assert_eq!(
        billing::deploy::process_batch(&app.deploy).await.unwrap(),
        2
    );
    let ok = billing::deploy::requests::status(&app.deploy, &fine)
        .await
        .unwrap();
    assert_eq!(ok.status, "committed");
    let first = billing::deploy::requests::status(&app.deploy, &broken)
        .await
        .unwrap();
    assert_eq!(
        (first.status.as_str(), first.pending_changes),
        ("pending", 1),
        "retried, not failed yet"
    );

    // After the back-off the second attempt exhausts the budget.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let retried = loop {
        match billing::deploy::process_batch(&app.deploy).await.unwrap() {
            0 => assert!(std::time::Instant::now() < deadline, "never retried"),
            n => break n,
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(retried, 1);
    let failed = billing::deploy::requests::status(&app.deploy, &broken)
        .await
        .unwrap();
    assert_eq!(failed.status, "failed");
    assert!(
        failed.error.as_deref().is_some_and(|e| e.contains("gold")),
        "{:?}",
        failed.error
    );
    assert_eq!(failed.pending_changes, 0);
    assert_eq!(
        billing::deploy::process_batch(&app.deploy).await.unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_upgrade_reaches_every_tenant_in_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    for entry in std::fs::read_dir(&source).unwrap().flatten() {
        std::fs::copy(entry.path(), templates.join(entry.file_name())).unwrap();
    }
    let templates_arg = templates.display().to_string();
    let app_v1 = app(dir.path(), &["--templates-dir", &templates_arg]).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(new_customer(&app_v1, n).await);
    }
    assert_eq!(
        billing::deploy::process_batch(&app_v1.deploy)
            .await
            .unwrap(),
        4
    );
    let meta = RequestMeta::default();

    // Without a template change, redeploying everyone commits nothing.
    let before = commit_count(&app_v1);
    let queued = billing::deploy::requests::redeploy_all(&app_v1.deploy, &meta, false)
        .await
        .unwrap();
    assert_eq!(queued.queued, 4);
    assert_eq!(
        billing::deploy::process_batch(&app_v1.deploy)
            .await
            .unwrap(),
        4
    );
    assert_eq!(commit_count(&app_v1), before);

    // A template upgrade: every tenant changes, all in one commit.
    let ns = templates.join("namespace.yaml");
    let text = std::fs::read_to_string(&ns).unwrap().replace(
        "  annotations:\n",
        "  annotations:\n    iotistic.io/template-version: \"2\"\n",
    );
    std::fs::write(&ns, text).unwrap();
    drop(app_v1);
    let app_v2 = app(dir.path(), &["--templates-dir", &templates_arg]).await;
    billing::deploy::requests::redeploy_all(&app_v2.deploy, &meta, false)
        .await
        .unwrap();
    assert_eq!(
        billing::deploy::process_batch(&app_v2.deploy)
            .await
            .unwrap(),
        4
    );
    assert_eq!(commit_count(&app_v2), before + 1);
    let message = head_message(&app_v2);
    assert!(message.starts_with("tenants: update 4\n"), "{message}");
    let repo = git2::Repository::open_bare(app_v2.config.gitops_repo()).unwrap();
    let tree = repo.head().unwrap().peel_to_tree().unwrap();
    for id in &ids {
        assert!(message.contains(&format!("Tenant-Id: {id}\n")));
        let entry = tree
            .get_path(std::path::Path::new(&format!(
                "{}/namespace.yaml",
                billing::render::tenant_dir(id)
            )))
            .unwrap();
        let blob = repo.find_blob(entry.id()).unwrap();
        assert!(String::from_utf8_lossy(blob.content()).contains("template-version"));
    }
    // Only the changed template's files (and each render lock) are in that commit.
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    let parent = head.parent(0).unwrap().tree().unwrap();
    let diff = repo
        .diff_tree_to_tree(Some(&parent), Some(&tree), None)
        .unwrap();
    let mut changed: Vec<String> = diff
        .deltas()
        .map(|d| {
            let path = d.new_file().path().unwrap().to_string_lossy().into_owned();
            path.rsplit('/').next().unwrap().to_string()
        })
        .collect();
    changed.sort();
    changed.dedup();
    assert_eq!(changed, ["namespace.yaml", "render.json"]);

    // A hand edit of another file survives a partial redeploy; a full one repairs it.
    let api = format!("{}/api.yaml", billing::render::tenant_dir(&ids[0]));
    let rendered = {
        let entry = tree.get_path(std::path::Path::new(&api)).unwrap();
        repo.find_blob(entry.id()).unwrap().content().to_vec()
    };
    let mut edit = billing::gitops::Changes::new();
    edit.insert(
        api.clone(),
        billing::gitops::Entry::File(b"# edited by hand\n".to_vec()),
    );
    app_v2
        .gitops
        .run(move |local| local.commit(&edit, "hand edit"))
        .await
        .unwrap()
        .unwrap();
    let api_now = || {
        let api = api.clone();
        app_v2.gitops.run(move |local| local.read(&api))
    };
    billing::deploy::requests::redeploy_all(&app_v2.deploy, &meta, false)
        .await
        .unwrap();
    billing::deploy::process_batch(&app_v2.deploy)
        .await
        .unwrap();
    assert_eq!(api_now().await.unwrap().unwrap(), b"# edited by hand\n");
    billing::deploy::requests::redeploy_all(&app_v2.deploy, &meta, true)
        .await
        .unwrap();
    billing::deploy::process_batch(&app_v2.deploy)
        .await
        .unwrap();
    assert_eq!(
        api_now().await.unwrap().unwrap(),
        rendered,
        "a full redeploy renders every file"
    );
    assert!(
        head_message(&app_v2).contains("rebuild"),
        "{}",
        head_message(&app_v2)
    );
}
