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
    signup(app, req, &RequestMeta::default())
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
        billing::deploy::process_batch(&app).await.unwrap(),
        billing::deploy::process_batch(&app).await.unwrap(),
        billing::deploy::process_batch(&app).await.unwrap(),
        billing::deploy::process_batch(&app).await.unwrap(),
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
        let status = billing::deploy::requests::status(&app, id).await.unwrap();
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

    assert_eq!(billing::deploy::process_batch(&app).await.unwrap(), 2);
    let ok = billing::deploy::requests::status(&app, &fine)
        .await
        .unwrap();
    assert_eq!(ok.status, "committed");
    let first = billing::deploy::requests::status(&app, &broken)
        .await
        .unwrap();
    assert_eq!(
        (first.status.as_str(), first.pending_changes),
        ("pending", 1),
        "retried, not failed yet"
    );

    // After the back-off the second attempt exhausts the budget.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(billing::deploy::process_batch(&app).await.unwrap(), 1);
    let failed = billing::deploy::requests::status(&app, &broken)
        .await
        .unwrap();
    assert_eq!(failed.status, "failed");
    assert!(
        failed.error.as_deref().is_some_and(|e| e.contains("gold")),
        "{:?}",
        failed.error
    );
    assert_eq!(failed.pending_changes, 0);
    assert_eq!(billing::deploy::process_batch(&app).await.unwrap(), 0);
}
