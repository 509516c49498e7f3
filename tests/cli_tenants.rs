//! `billing tenant list|show|history|delete` beside the real server, on SQLite and PostgreSQL:
//! the list's filters, pages, `--behind` and output formats, `deploy --all --wait`, the erasure
//! by `delete`, and the one-line error of an unknown id.

mod common;

use common::cli::run as cli;
use common::TestServer;

/// `tenant list … -o json`'s ids.
fn listed(s: &TestServer, args: &[&str], env: &[(&str, &str)]) -> (Vec<String>, String) {
    let mut all = vec!["tenant", "list", "-o", "json"];
    all.extend(args);
    let (ok, out, err) = cli(s, &all, env);
    assert!(ok, "{all:?}: {err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).expect("a JSON array");
    let ids = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    (ids, err)
}

/// An unknown id: a non-zero exit and one line on stderr naming it.
fn assert_unknown_id(s: &TestServer, args: &[&str]) {
    let (ok, _, err) = cli(s, args, &[]);
    assert!(!ok, "{args:?} succeeded");
    assert_eq!(err, "error: tenant zzzzzzzzzzzz not found\n", "{args:?}");
}

on_both_backends!(
    tenant_list_filters_pages_and_formats,
    tenant_show_and_delete
);

const WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Signs up `n` tenants and waits for their commits; their ids, sorted (the list's order).
async fn committed_tenants(s: &TestServer, tag: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let email = format!("{tag}{i}@acme.example");
        ids.push(s.signed_up(&email, &format!("{tag} {i} Co")).await);
    }
    for id in &ids {
        s.wait_for_status(id, "committed", WAIT).await;
    }
    ids.sort();
    ids
}

async fn tenant_list_filters_pages_and_formats(s: TestServer) {
    let ids = committed_tenants(&s, "list", 4).await;
    let (pro, active) = (&ids[1], &ids[2]);
    let db = s.db().await;
    for (sql, id) in [
        (
            "UPDATE subscriptions SET plan = 'professional' WHERE customer_id = $1",
            pro,
        ),
        (
            "UPDATE subscriptions SET status = 'active' WHERE customer_id = $1",
            active,
        ),
    ] {
        sqlx::query(sql).bind(id).execute(&db).await.unwrap();
    }
    // Behind until rendered again with the new plan and status.
    assert_eq!(
        listed(&s, &["--behind"], &[]).0,
        [pro.as_str(), active.as_str()]
    );
    for id in [pro, active] {
        assert!(cli(&s, &["tenant", "deploy", id], &[]).0);
    }
    s.wait_queue_drained(WAIT).await;

    assert_eq!(listed(&s, &[], &[]).0, ids);
    assert_eq!(
        listed(&s, &["--plan", "professional"], &[]).0,
        [pro.as_str()]
    );
    assert_eq!(
        listed(&s, &["--subscription", "active"], &[]).0,
        [active.as_str()]
    );
    assert_eq!(listed(&s, &["--subscription", "trialing"], &[]).0.len(), 3);
    assert_eq!(listed(&s, &["--status", "committed"], &[]).0, ids);
    assert!(listed(&s, &["--status", "ready"], &[]).0.is_empty());
    let (bad, _, err) = cli(&s, &["tenant", "list", "--status", "sleeping"], &[]);
    assert!(!bad && err.contains("unknown deployment status"), "{err}");

    // Pages by id: the first says where the next starts; the last says nothing.
    let (first, err) = listed(&s, &["--limit", "3"], &[]);
    assert_eq!(first, ids[..3]);
    assert!(err.contains(&format!("--after {}", ids[2])), "{err}");
    let (rest, err) = listed(&s, &["--limit", "3", "--after", &ids[2]], &[]);
    assert_eq!(rest, ids[3..]);
    assert!(!err.contains("--after"), "{err}");

    // Behind: nobody while templates and plans are what rendered them; the professional
    // tenant once the plan file gives professional another pod quota.
    assert!(listed(&s, &["--behind"], &[]).0.is_empty());
    let plans = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/plans.yaml"))
        .unwrap()
        .replace("quota_pods: 40", "quota_pods: 41");
    let plans_file = s.data_dir().join("plans-next.yaml");
    std::fs::write(&plans_file, plans).unwrap();
    let env = [("PLANS_FILE", plans_file.to_str().unwrap())];
    assert_eq!(listed(&s, &["--behind"], &env).0, [pro.as_str()]);
    assert!(listed(&s, &["--behind", "--after", pro], &env).0.is_empty());

    let (ok, yaml, err) = cli(&s, &["tenant", "list", "-o", "yaml"], &[]);
    assert!(ok, "{err}");
    let rows: Vec<serde_json::Value> = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[1]["plan"], "professional");
    let (ok, table, _) = cli(&s, &["tenant", "list", "-o", "table"], &[]);
    assert!(ok);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header[..4], ["ID", "PLAN", "SUBSCRIPTION", "STATUS"]);
    assert!(lines[2].starts_with(pro.as_str()) && lines[2].contains("professional"));

    // Every tenant again, watched until the server's worker handled the whole change set.
    let (ok, out, err) = cli(&s, &["tenant", "deploy", "--all", "--wait"], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("queued 4 tenants"), "{out}");
    assert!(err.contains("tenants re-rendered: 4/4 (100%)"), "{err}");
    db.close().await;
}

async fn tenant_show_and_delete(s: TestServer) {
    let ids = committed_tenants(&s, "show", 2).await;
    let (kept, gone) = (&ids[0], &ids[1]);
    let (ok, out, err) = cli(&s, &["tenant", "show", kept, "-o", "json"], &[]);
    assert!(ok, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["account"]["customer"]["customer_id"], kept.as_str());
    assert_eq!(shown["deployment"]["status"], "committed");
    let (ok, out, _) = cli(&s, &["tenant", "history", kept, "-o", "json"], &[]);
    let history: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert!(ok && !history.is_empty(), "{out}");
    for args in [
        &["tenant", "show", "zzzzzzzzzzzz"][..],
        &["tenant", "history", "zzzzzzzzzzzz"],
        &["tenant", "deploy", "zzzzzzzzzzzz"],
        &["tenant", "rollback", "zzzzzzzzzzzz"],
        &["tenant", "render", "zzzzzzzzzzzz"],
        &["tenant", "delete", "zzzzzzzzzzzz", "--yes"],
    ] {
        assert_unknown_id(&s, args);
    }

    let db = s.db().await;
    let live = "SELECT COUNT(*) FROM customers WHERE id = $1 AND deleted_at IS NULL";
    let (ok, _, err) = cli(&s, &["tenant", "delete", gone], &[]);
    assert!(
        !ok && err.contains("--yes") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(common::count(&db, live, gone).await, 1, "nothing deleted");

    let (ok, out, err) = cli(&s, &["tenant", "delete", gone, "--yes"], &[]);
    assert!(ok, "{err}");
    assert!(out.starts_with(&format!("deleted {gone}")), "{out}");
    let row: (String, String, Option<String>) =
        sqlx::query_as("SELECT email, company_name, deleted_at FROM customers WHERE id = $1")
            .bind(gone)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(row.0, format!("deleted-{gone}@invalid"));
    assert_eq!(row.1, "");
    assert!(row.2.is_some());
    let secrets = "SELECT COUNT(*) FROM tenant_secrets WHERE customer_id = $1";
    assert_eq!(common::count(&db, secrets, gone).await, 0);
    let status = "SELECT COUNT(*) FROM subscriptions WHERE customer_id = $1 AND status = 'deleted'";
    assert_eq!(common::count(&db, status, gone).await, 1);
    // The server's worker commits the removal, as after the API's deletion.
    s.wait_for_status(gone, "deleted", WAIT).await;
    assert_eq!(listed(&s, &[], &[]).0, [kept.as_str()]);
    assert_eq!(listed(&s, &["--status", "deleted"], &[]).0, [gone.as_str()]);
    assert_unknown_id(&s, &["tenant", "show", "zzzzzzzzzzzz"]);
    db.close().await;
}
