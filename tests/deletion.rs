//! Deleting a customer (`DELETE /api/customers/:id`) through the real server, on SQLite and
//! PostgreSQL: the removal commit, the scrubbed rows, the audit trail kept without personal
//! data, the email free again, dead sessions; and on SQLite, no trace left in any of the
//! database's files (the WAL included) without the test checkpointing anything.

mod common;

use std::time::Duration;

use common::{count, Backend, TestServer, ADMIN_TOKEN, PASSWORD};
use git2::Repository;
use serde_json::{json, Value};
use sqlx::Row;

on_both_backends!(
    admin_deletion_commits_the_removal_and_scrubs_personal_data,
    customers_delete_themselves_only_with_their_password,
);

const WAIT: Duration = Duration::from_secs(30);

struct Customer {
    id: String,
    email: String,
    company: String,
    full_name: String,
    token: String,
}

/// Tries to log in before signing up (an audit row of nobody naming the email), signs up (with
/// a full name), fails one login (the email in the throttle and the customer's audit rows),
/// logs in, and waits for the stack's commit.
async fn customer(s: &TestServer, tag: &str) -> Customer {
    let email = format!("Erin.{tag}@Example.com");
    let company = format!("Quokka Fabrik {tag}");
    let full_name = format!("Erin Zettelkasten {tag}");
    assert_eq!(login(s, &email, PASSWORD).await.0, 401);
    let (code, body) = s
        .post_json(
            "/api/customers/signup",
            &json!({ "email": email, "password": PASSWORD, "company_name": company,
                     "full_name": full_name }),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let id = body["customer"]["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(login(s, &email, "not the password").await.0, 401);
    let (code, body) = login(s, &email, PASSWORD).await;
    assert_eq!(code, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    s.wait_for_status(&id, "committed", WAIT).await;
    Customer {
        id,
        email,
        company,
        full_name,
        token,
    }
}

async fn login(s: &TestServer, email: &str, password: &str) -> (u16, Value) {
    let body = json!({ "email": email, "password": password });
    s.post_json("/api/customers/login", &body).await
}

async fn delete(s: &TestServer, id: &str, bearer: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = s
        .client
        .delete(s.url(&format!("/api/customers/{id}")))
        .bearer_auth(bearer);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("DELETE");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// The branch tip's message, and whether any file of the tenant is left in its tree.
fn tip(s: &TestServer, id: &str) -> (String, Vec<String>) {
    let repo = Repository::open_bare(s.data_dir().join("gitops.git")).unwrap();
    let commit = repo
        .find_reference("refs/heads/main")
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let mut left = Vec::new();
    commit
        .tree()
        .unwrap()
        .walk(git2::TreeWalkMode::PreOrder, |root, e| {
            let path = format!("{root}{}", e.name().unwrap());
            if path.starts_with(&billing::render::tenant_dir(id))
                || path == billing::render::flux_kustomization_path(id)
            {
                left.push(path);
            }
            git2::TreeWalkResult::Ok
        })
        .unwrap();
    (commit.message().unwrap().to_string(), left)
}

/// Asserts that the database holds nothing personal of `c` any more, and keeps its records.
async fn assert_scrubbed(s: &TestServer, c: &Customer) {
    let db = s.db().await;
    let row = sqlx::query(
        "SELECT email, email_normalized, password_hash, company_name, full_name, deleted_at \
         FROM customers WHERE id = $1",
    )
    .bind(&c.id)
    .fetch_one(&db)
    .await
    .unwrap();
    let placeholder = format!("deleted-{}@invalid", c.id);
    assert_eq!(row.get::<String, _>("email"), placeholder);
    assert_eq!(row.get::<String, _>("email_normalized"), placeholder);
    assert!(!row.get::<String, _>("password_hash").contains("argon2"));
    assert_eq!(row.get::<String, _>("company_name"), "");
    assert_eq!(row.get::<Option<String>, _>("full_name"), None);
    assert!(row.get::<Option<String>, _>("deleted_at").is_some());

    let audit = sqlx::query(
        "SELECT action, client_ip, user_agent, details FROM audit_log \
         WHERE customer_id = $1 ORDER BY id",
    )
    .bind(&c.id)
    .fetch_all(&db)
    .await
    .unwrap();
    let actions: Vec<String> = audit.iter().map(|r| r.get("action")).collect();
    for kept in ["customer.signup", "customer.login", "customer.deleted"] {
        assert!(actions.iter().any(|a| a == kept), "{kept} in {actions:?}");
    }
    for r in &audit {
        let action: String = r.get("action");
        assert_eq!(r.get::<Option<String>, _>("client_ip"), None, "{action}");
        assert_eq!(r.get::<Option<String>, _>("user_agent"), None, "{action}");
    }
    // No row at all, the customer's or anyone's, names them any more.
    let lower_email = c.email.to_lowercase();
    for needle in [&lower_email, &c.company, &c.full_name] {
        let mentions = count(
            &db,
            "SELECT COUNT(*) FROM audit_log WHERE LOWER(details) LIKE '%' || LOWER($1) || '%'",
            needle,
        )
        .await;
        assert_eq!(mentions, 0, "{needle} still in the audit log");
    }
    let sql = "SELECT COUNT(*) FROM login_failures WHERE email_normalized = $1";
    assert_eq!(count(&db, sql, &lower_email).await, 0);
    // Nor where they logged in from.
    let sql = "SELECT COUNT(*) FROM login_addresses WHERE customer_id = $1";
    assert_eq!(count(&db, sql, &c.id).await, 0);
    let sql = "SELECT COUNT(*) FROM tenant_secrets WHERE customer_id = $1";
    assert_eq!(count(&db, sql, &c.id).await, 0);
    // Billing records stay.
    let sql = "SELECT COUNT(*) FROM license_history WHERE customer_id = $1";
    assert!(count(&db, sql, &c.id).await >= 1);
    let status: String =
        sqlx::query_scalar("SELECT status FROM subscriptions WHERE customer_id = $1")
            .bind(&c.id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(status, "deleted");
    let sql = "SELECT COUNT(*) FROM subscription_history WHERE customer_id = $1 \
               AND event = 'erased' AND to_status = 'deleted'";
    assert_eq!(count(&db, sql, &c.id).await, 1);
    db.close().await;
}

async fn admin_deletion_commits_the_removal_and_scrubs_personal_data(s: TestServer) {
    let c = customer(&s, "admin").await;
    let (code, body) = delete(&s, &c.id, ADMIN_TOKEN, None).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["customer_id"], c.id.as_str());
    assert_eq!(body["subscription_status"], "deleted");
    assert!(body["change_id"].as_str().is_some_and(|c| !c.is_empty()));

    s.wait_for_status(&c.id, "deleted", WAIT).await;
    let (message, left) = tip(&s, &c.id);
    assert!(
        message.starts_with(&format!("tenant {}: delete (admin)", c.id)),
        "{message}"
    );
    assert!(left.is_empty(), "tenant files left at the tip: {left:?}");
    assert_scrubbed(&s, &c).await;

    // The old session is dead, the old credentials too; the email is free for a new signup.
    let (code, _) = s.get_json("/api/customers/me", Some(&c.token)).await;
    assert_eq!(code, 401);
    assert_eq!(login(&s, &c.email, PASSWORD).await.0, 401);
    let (code, body) = s.signup(&c.email, PASSWORD, &c.company).await;
    assert_eq!(code, 201, "{body}");
    assert_ne!(body["customer"]["customer_id"], c.id.as_str());

    // Deleted once is deleted: again, or an unknown id, is 404.
    assert_eq!(delete(&s, &c.id, ADMIN_TOKEN, None).await.0, 404);
    assert_eq!(delete(&s, "zzzzzzzzzzzz", ADMIN_TOKEN, None).await.0, 404);
    // Nor can an operator bring the stack back by redeploying it.
    assert_eq!(
        s.admin_post(&format!("/api/customers/{}/deploy", c.id))
            .await
            .0,
        404
    );
}

async fn customers_delete_themselves_only_with_their_password(s: TestServer) {
    let c = customer(&s, "self").await;
    let other = customer(&s, "other").await;

    // Without a session: 401. Another customer's session: as if the customer did not exist.
    let (code, _) = s
        .client
        .delete(s.url(&format!("/api/customers/{}", c.id)))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(code, 401);
    let wrong_customer = delete(&s, &c.id, &other.token, Some(json!({"password": PASSWORD})));
    assert_eq!(wrong_customer.await.0, 404);
    // No password, or a wrong one: refused, and nothing changes.
    let (code, body) = delete(&s, &c.id, &c.token, Some(json!({}))).await;
    assert_eq!(
        (code, body["field"].as_str()),
        (400, Some("password")),
        "{body}"
    );
    let (code, body) = delete(&s, &c.id, &c.token, None).await;
    assert_eq!(code, 415, "{body}");
    let (code, body) = delete(&s, &c.id, &c.token, Some(json!({"password": "guess"}))).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (401, Some("invalid_credentials")),
        "{body}"
    );
    let (code, me) = s.get_json("/api/customers/me", Some(&c.token)).await;
    assert_eq!(code, 200, "{me}");
    assert_eq!(me["customer"]["email"], c.email.as_str());
    let db = s.db().await;
    let sql = "SELECT COUNT(*) FROM render_jobs WHERE customer_id = $1 AND action = 'delete'";
    assert_eq!(count(&db, sql, &c.id).await, 0);
    let sql = "SELECT COUNT(*) FROM login_failures WHERE email_normalized = $1";
    // The login in `customer` forgot its earlier failure; this one is the refused deletion's.
    assert_eq!(
        count(&db, sql, &c.email.to_lowercase()).await,
        1,
        "the wrong password counts like a failed login"
    );
    db.close().await;

    let (code, body) = delete(&s, &c.id, &c.token, Some(json!({"password": PASSWORD}))).await;
    assert_eq!(code, 202, "{body}");
    s.wait_for_status(&c.id, "deleted", WAIT).await;
    let (message, left) = tip(&s, &c.id);
    assert!(
        message.starts_with(&format!("tenant {}: delete (customer request)", c.id)),
        "{message}"
    );
    assert!(left.is_empty(), "{left:?}");
    assert_scrubbed(&s, &c).await;
    let (code, _) = s.get_json("/api/customers/me", Some(&c.token)).await;
    assert_eq!(code, 401);
    // The other customer is untouched.
    let (code, _) = s.get_json("/api/customers/me", Some(&other.token)).await;
    assert_eq!(code, 200);
}

/// Every file of the SQLite database as it is on disk (the file, its WAL and the WAL index),
/// read beside the running server and never checkpointed by the test.
fn sqlite_bytes(s: &TestServer) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in ["billing.db", "billing.db-wal", "billing.db-shm"] {
        if let Ok(file) = std::fs::read(s.data_dir().join(name)) {
            bytes.extend(file);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_keeps_no_trace_of_a_deleted_customer() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let c = customer(&s, "bytes").await;
    let before = sqlite_bytes(&s);
    for text in [&c.email, &c.company, &c.full_name] {
        assert!(
            contains(&before, text),
            "{text} not in the file to begin with"
        );
    }

    assert_eq!(delete(&s, &c.id, ADMIN_TOKEN, None).await.0, 202);
    s.wait_for_status(&c.id, "deleted", WAIT).await;
    // The farewell email holds the address until it is sent; then its row keeps none.
    let sent = "SELECT COUNT(*) FROM notifications WHERE customer_id = $1 \
                AND kind = 'account_deleted' AND status = 'sent'";
    let deadline = std::time::Instant::now() + WAIT;
    while common::count(&s.db().await, sent, &c.id).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "farewell email not sent"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The service empties the WAL itself once the erasure (and the farewell's row) committed.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let after = sqlite_bytes(&s);
        let left: Vec<&String> = [&c.email, &c.company, &c.full_name]
            .into_iter()
            .filter(|text| contains(&after, text))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left:?} left in the database's files"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
