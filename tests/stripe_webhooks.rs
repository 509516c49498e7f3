//! Stripe webhooks through the running server: events shaped like Stripe's (fixtures), signed
//! with the test's own copy of the endpoint secret exactly as Stripe signs them; and the
//! clock's side (`billing lifecycle tick`), suspending a trial that a payment then reactivates.

mod common;
#[path = "common/stripe_events.rs"]
mod stripe_events;

use std::time::Duration;

use common::{TestServer, ADMIN_TOKEN};
use git2::Repository;
use serde_json::{json, Value};
use stripe_events::{
    deliver, fixture, now, send_signed, stripe_signature, subscription_updated, ENV, SECRET,
};

const STRIPE_CUSTOMER: &str = "cus_QexampleCustomer";

on_both_backends!(
    env = ENV;
    a_signed_upgrade_is_one_commit_and_a_new_license,
    bad_stale_or_unsigned_deliveries_change_nothing,
    an_ended_trial_is_suspended_by_the_clock_and_reactivated_by_payment,
    a_failed_payment_is_suspended_after_the_grace_period,
    a_canceled_account_is_reminded_then_deleted_after_retention
);

async fn signup(s: &TestServer, email: &str) -> String {
    let id = s.signed_up(email, "Acme GmbH").await;
    s.wait_queue_drained(Duration::from_secs(30)).await;
    id
}

fn repo(s: &TestServer) -> Repository {
    Repository::open_bare(s.data_dir().join("gitops.git")).unwrap()
}

fn head(repo: &Repository) -> git2::Commit<'_> {
    repo.head().unwrap().peel_to_commit().unwrap()
}

fn file_at(repo: &Repository, commit: &git2::Commit<'_>, path: &str) -> String {
    let entry = commit
        .tree()
        .unwrap()
        .get_path(std::path::Path::new(path))
        .unwrap();
    let blob = repo.find_blob(entry.id()).unwrap();
    String::from_utf8(blob.content().to_vec()).unwrap()
}

async fn account(s: &TestServer, id: &str) -> Value {
    let (code, body) = s
        .get_json(&format!("/api/customers/{id}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(code, 200, "{body}");
    body
}

/// The license the cluster gets: the tenant's sealed Secret at `commit`, unsealed as the
/// sealed-secrets controller would.
fn committed_license(repo: &Repository, commit: &git2::Commit<'_>, id: &str) -> String {
    let dir = billing::render::tenant_dir(id);
    let sealed: Value =
        serde_norway::from_str(&file_at(repo, commit, &format!("{dir}/sealedsecret.yaml")))
            .unwrap();
    let bytes = billing::seal::unseal(
        &common::sealing_private_key(),
        &format!("customer-{id}"),
        "tenant-secrets",
        sealed["spec"]["encryptedData"]["LICENSE_KEY"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    String::from_utf8(bytes).unwrap()
}

async fn a_signed_upgrade_is_one_commit_and_a_new_license(s: TestServer) {
    let id = signup(&s, "ops@example.com").await;
    let repo = repo(&s);
    let before = head(&repo).id();
    let quota_path = format!("{}/quota.yaml", billing::render::tenant_dir(&id));
    let old_quota = file_at(&repo, &head(&repo), &quota_path);
    assert!(old_quota.contains(r#"requests.cpu: "4""#), "{old_quota}");

    // Linked by metadata.customer_id (no Stripe customer stored yet): trialing starter ->
    // active professional.
    let t0 = now();
    let upgrade = subscription_updated("evt_1Upgrade", &id, "price_professional_monthly", t0);
    let receipt = send_signed(&s, &upgrade).await;
    assert_eq!(receipt["outcome"], "applied", "{receipt}");
    assert_eq!(receipt["customer_id"], id.as_str());
    s.wait_queue_drained(Duration::from_secs(30)).await;

    let after = head(&repo);
    assert_eq!(after.parent_id(0).unwrap(), before, "exactly one commit");
    let message = after.message().unwrap();
    assert!(
        message.starts_with(&format!(
            "tenant {id}: upgrade starter → professional, subscription trialing → active (Stripe evt_1Upgrade)"
        )),
        "{message}"
    );
    let new_quota = file_at(&repo, &after, &quota_path);
    assert!(new_quota.contains(r#"requests.cpu: "8""#), "{new_quota}");
    assert!(
        new_quota.contains(r#"requests.memory: "16Gi""#),
        "{new_quota}"
    );

    let view = account(&s, &id).await;
    assert_eq!(view["subscription"]["plan"], "professional", "{view}");
    assert_eq!(view["subscription"]["status"], "active");
    assert_eq!(view["license"]["plan"], "professional");
    assert_eq!(view["license"]["features"]["maxDevices"], 50);

    // The license the tenant now runs with verifies with the new plan's features, until the
    // paid period's end.
    let jwt = committed_license(&repo, &after, &id);
    let (code, verified) = s
        .post_json("/api/licenses/verify", &json!({ "license": jwt }))
        .await;
    assert_eq!(code, 200, "{verified}");
    let claims = &verified["data"];
    assert_eq!(claims["plan"], "professional");
    assert_eq!(claims["features"]["maxDevices"], 50);
    assert_eq!(claims["features"]["canScheduleJobs"], true);
    assert_eq!(claims["subscription"]["status"], "active");
    assert_eq!(claims["trial"]["isTrialMode"], false);
    // Valid for LIFECYCLE_GRACE_DAYS (7) past the period, while the renewal is paid.
    assert_eq!(claims["exp"], t0 + 37 * 86400);
    assert_eq!(
        claims["subscription"]["currentPeriodEndsAt"],
        billing::db::ts(chrono::DateTime::from_timestamp(t0 + 30 * 86400, 0).unwrap())
    );

    // Stripe redelivers: acknowledged, nothing done twice.
    let receipt = send_signed(&s, &upgrade).await;
    assert_eq!(receipt["outcome"], "duplicate", "{receipt}");
    // An older event arriving late (the earlier downgrade it replaced) moves nothing back.
    let stale = subscription_updated("evt_0Older", &id, "price_starter_monthly", t0 - 100);
    let receipt = send_signed(&s, &stale).await;
    assert_eq!(receipt["outcome"], "ignored", "{receipt}");
    s.wait_queue_drained(Duration::from_secs(30)).await;
    assert_eq!(
        head(&repo).id(),
        after.id(),
        "no commit for a replay or a stale event"
    );
    assert_eq!(
        account(&s, &id).await["subscription"]["plan"],
        "professional"
    );

    // A failed renewal, linked by the Stripe customer id stored from the first event.
    let mut failed = fixture("invoice.payment_failed");
    failed["created"] = json!(t0 + 1);
    assert_eq!(failed["data"]["object"]["customer"], STRIPE_CUSTOMER);
    let receipt = send_signed(&s, &failed).await;
    assert_eq!(receipt["outcome"], "applied", "{receipt}");
    assert_eq!(receipt["customer_id"], id.as_str());
    s.wait_queue_drained(Duration::from_secs(30)).await;
    assert_eq!(account(&s, &id).await["subscription"]["status"], "past_due");
    // One payment-failed email (no SMTP_URL here: it goes to the log).
    let logged = |log: String| {
        log.lines()
            .filter(|l| l.contains("logged, not sent") && l.contains("kind=payment_failed"))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while logged(s.log()) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(logged(s.log()), 1, "{}", s.log());
    let failed_commit = head(&repo);
    assert_eq!(failed_commit.parent_id(0).unwrap(), after.id());
    assert!(
        failed_commit
            .message()
            .unwrap()
            .contains("subscription active → past_due (Stripe evt_1QexampleInvoiceFailed)"),
        "{:?}",
        failed_commit.message()
    );

    let db = s.db().await;
    let history: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT from_status, to_status, to_plan, reference FROM subscription_history \
         WHERE customer_id = $1 ORDER BY id",
    )
    .bind(&id)
    .fetch_all(&db)
    .await
    .unwrap();
    let expected = [
        ("trialing", "active", "professional", "evt_1Upgrade"),
        (
            "active",
            "past_due",
            "professional",
            "evt_1QexampleInvoiceFailed",
        ),
    ];
    let got: Vec<(&str, &str, &str, &str)> = history
        .iter()
        .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.as_str()))
        .collect();
    assert_eq!(got, expected);
    let audited = common::count(
        &db,
        "SELECT COUNT(*) FROM audit_log WHERE action = 'subscription.changed' AND customer_id = $1",
        &id,
    )
    .await;
    assert_eq!(audited, 2);
    let processed = common::count(
        &db,
        "SELECT COUNT(*) FROM stripe_events WHERE customer_id = $1",
        &id,
    )
    .await;
    assert_eq!(
        processed, 3,
        "the upgrade, the stale event and the failure, once each"
    );
}

async fn bad_stale_or_unsigned_deliveries_change_nothing(s: TestServer) {
    let id = signup(&s, "ops@example.com").await;
    let repo = repo(&s);
    let before = head(&repo).id();
    let event = subscription_updated("evt_1Forged", &id, "price_professional_monthly", now());
    let body = serde_json::to_vec(&event).unwrap();
    let t = now();
    let mut tampered = body.clone();
    let at = tampered.len() - 2;
    tampered[at] = b' ';
    let attempts: Vec<(&str, Vec<u8>, Option<String>)> = vec![
        ("unsigned", body.clone(), None),
        ("garbage header", body.clone(), Some("nonsense".into())),
        (
            "wrong secret",
            body.clone(),
            Some(stripe_signature("whsec_other", t, &body)),
        ),
        (
            "tampered body",
            tampered,
            Some(stripe_signature(SECRET, t, &body)),
        ),
        (
            "stale",
            body.clone(),
            Some(stripe_signature(SECRET, t - 301, &body)),
        ),
        (
            "only v0",
            body.clone(),
            Some(stripe_signature(SECRET, t, &body).replace("v1=", "v0=")),
        ),
    ];
    for (what, bytes, signature) in attempts {
        let (code, err) = deliver(&s, &bytes, signature).await;
        assert_eq!(code, 400, "{what}: {err}");
        assert_eq!(err["code"], "invalid_signature", "{what}: {err}");
        assert_eq!(err["field"], "Stripe-Signature", "{what}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let stale = deliver(&s, &body, Some(stripe_signature(SECRET, t - 301, &body))).await;
    assert!(
        stale.1["message"].as_str().unwrap().contains("tolerance"),
        "{}",
        stale.1
    );

    s.wait_queue_drained(Duration::from_secs(10)).await;
    assert_eq!(head(&repo).id(), before, "nothing committed");
    let view = account(&s, &id).await;
    assert_eq!(view["subscription"]["plan"], "starter");
    assert_eq!(view["subscription"]["status"], "trialing");
    let db = s.db().await;
    assert_eq!(
        common::count(&db, "SELECT COUNT(*) FROM stripe_events WHERE id <> $1", "").await,
        0,
        "a refused delivery is not even recorded as seen"
    );
    // The same event, once properly signed, does apply: nothing above consumed its id.
    assert_eq!(send_signed(&s, &event).await["outcome"], "applied");
}

/// Runs `billing lifecycle tick --now <now>` against the server's database and data dir.
fn tick(s: &TestServer, now: &str) -> std::process::Output {
    s.command()
        .env("SEALED_SECRETS_CERT", common::sealing_cert_path())
        .args(["lifecycle", "tick", "--now", now])
        .output()
        .expect("run billing lifecycle tick")
}

/// Desired replicas of every Deployment and StatefulSet of the tenant at `commit`.
fn replicas_at(repo: &Repository, commit: &git2::Commit<'_>, id: &str) -> Vec<(String, i64)> {
    let dir = billing::render::tenant_dir(id);
    let mut out = Vec::new();
    for file in billing::render::TENANT_MANIFESTS {
        let text = file_at(repo, commit, &format!("{dir}/{file}"));
        for doc in billing::render::parse_documents(text.as_bytes()).unwrap() {
            if matches!(doc["kind"].as_str(), Some("Deployment" | "StatefulSet")) {
                let name = doc["metadata"]["name"].as_str().unwrap().to_string();
                out.push((name, doc["spec"]["replicas"].as_i64().unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn running(suspended_page: i64, others: i64) -> Vec<(String, i64)> {
    let mut want: Vec<(String, i64)> = ["api", "dashboard", "exporter", "mosquitto", "postgres"]
        .into_iter()
        .map(|n| (n.to_string(), others))
        .collect();
    want.push(("suspended".into(), suspended_page));
    want.sort();
    want
}

async fn an_ended_trial_is_suspended_by_the_clock_and_reactivated_by_payment(s: TestServer) {
    let id = signup(&s, "ops@example.com").await;
    let repo = repo(&s);
    let signed_up = head(&repo);
    let dir = billing::render::tenant_dir(&id);
    let backup = format!("{dir}/backup.yaml");
    let postgres = format!("{dir}/postgres.yaml");
    assert_eq!(replicas_at(&repo, &signed_up, &id), running(0, 1));

    // The bad time first: a clear error, a non-zero exit, nothing changed.
    let bad = tick(&s, "next tuesday");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("--now") && stderr.contains("RFC 3339"),
        "{stderr}"
    );

    // Before the trial's end (14 days) nothing happens; 15 days later it is suspended.
    let day = |n: i64| billing::db::ts(chrono::Utc::now() + chrono::Duration::days(n));
    let early = tick(&s, &day(13));
    assert!(early.status.success(), "{early:?}");
    let later = tick(&s, &day(15));
    let stdout = String::from_utf8_lossy(&later.stdout).into_owned();
    assert!(later.status.success(), "{later:?}");
    assert!(stdout.contains("1 changed"), "{stdout}");
    s.wait_queue_drained(Duration::from_secs(30)).await;

    let suspended = head(&repo);
    assert_eq!(
        suspended.parent_id(0).unwrap(),
        signed_up.id(),
        "one commit"
    );
    let message = suspended.message().unwrap();
    assert!(
        message.starts_with(&format!(
            "tenant {id}: suspend trialing → suspended (trial ended)"
        )),
        "{message}"
    );
    assert_eq!(replicas_at(&repo, &suspended, &id), running(1, 0));
    assert!(file_at(&repo, &suspended, &backup).contains("suspend: true"));
    let claims = |c: &git2::Commit<'_>| {
        let pg = billing::render::parse_documents(file_at(&repo, c, &postgres).as_bytes()).unwrap();
        let backups =
            billing::render::parse_documents(file_at(&repo, c, &backup).as_bytes()).unwrap();
        (
            pg[1]["spec"]["volumeClaimTemplates"].clone(),
            backups[0].clone(),
        )
    };
    assert_eq!(claims(&suspended), claims(&signed_up), "volumes kept");
    let view = account(&s, &id).await;
    assert_eq!(view["subscription"]["status"], "suspended", "{view}");

    // The same pass again changes nothing: no second commit.
    let again = tick(&s, &day(15));
    assert!(again.status.success(), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 changed"));
    s.wait_queue_drained(Duration::from_secs(30)).await;
    assert_eq!(head(&repo).id(), suspended.id());

    // Payment: Stripe says the subscription is active -> a reactivation commit.
    let paid = subscription_updated("evt_1Paid", &id, "price_starter_monthly", now());
    let receipt = send_signed(&s, &paid).await;
    assert_eq!(receipt["outcome"], "applied", "{receipt}");
    s.wait_queue_drained(Duration::from_secs(30)).await;
    let reactivated = head(&repo);
    assert_eq!(reactivated.parent_id(0).unwrap(), suspended.id());
    let message = reactivated.message().unwrap();
    assert!(
        message.starts_with(&format!(
            "tenant {id}: reactivate suspended → active (Stripe evt_1Paid)"
        )),
        "{message}"
    );
    assert_eq!(replicas_at(&repo, &reactivated, &id), running(0, 1));
    assert!(file_at(&repo, &reactivated, &backup).contains("suspend: false"));
    assert_eq!(claims(&reactivated), claims(&signed_up));
    assert_eq!(account(&s, &id).await["subscription"]["status"], "active");
}

async fn a_failed_payment_is_suspended_after_the_grace_period(s: TestServer) {
    let id = signup(&s, "ops@example.com").await;
    let t0 = now();
    let active = subscription_updated("evt_1Active", &id, "price_starter_monthly", t0);
    assert_eq!(send_signed(&s, &active).await["outcome"], "applied");
    let mut failed = fixture("invoice.payment_failed");
    failed["created"] = json!(t0 + 1);
    assert_eq!(send_signed(&s, &failed).await["outcome"], "applied");
    s.wait_queue_drained(Duration::from_secs(30)).await;
    assert_eq!(account(&s, &id).await["subscription"]["status"], "past_due");
    let repo = repo(&s);
    let past_due = head(&repo);

    // LIFECYCLE_GRACE_DAYS (7) from the failed payment: still running on day 6, not on day 8.
    let day = |n: i64| billing::db::ts(chrono::Utc::now() + chrono::Duration::days(n));
    let within = tick(&s, &day(6));
    assert!(
        String::from_utf8_lossy(&within.stdout).contains("0 changed"),
        "{within:?}"
    );
    // Another replica in the middle of a pass (its lease runs 2 s more): this one waits for it.
    let held_until = billing::db::ts(chrono::Utc::now() + chrono::Duration::seconds(2));
    sqlx::query("UPDATE scheduler_leases SET owner = 'other-replica', lease_until = $1")
        .bind(&held_until)
        .execute(&s.db().await)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let after = tick(&s, &day(8));
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "ran beside another replica's pass"
    );
    assert!(
        String::from_utf8_lossy(&after.stdout).contains("1 changed"),
        "{after:?}"
    );
    s.wait_queue_drained(Duration::from_secs(30)).await;
    let suspended = head(&repo);
    assert_eq!(suspended.parent_id(0).unwrap(), past_due.id());
    let message = suspended.message().unwrap();
    assert!(
        message.starts_with(&format!(
            "tenant {id}: suspend past_due → suspended (grace period ended)"
        )),
        "{message}"
    );
    assert_eq!(replicas_at(&repo, &suspended, &id), running(1, 0));
    assert_eq!(
        account(&s, &id).await["subscription"]["status"],
        "suspended"
    );
}

async fn a_canceled_account_is_reminded_then_deleted_after_retention(s: TestServer) {
    let id = signup(&s, "leaving@example.com").await;
    let t0 = now();
    let active = subscription_updated("evt_1Paid", &id, "price_starter_monthly", t0);
    assert_eq!(send_signed(&s, &active).await["outcome"], "applied");
    let mut deleted = subscription_updated("evt_2Gone", &id, "price_starter_monthly", t0 + 1);
    deleted["type"] = json!("customer.subscription.deleted");
    deleted["data"]["object"]["status"] = json!("canceled");
    assert_eq!(send_signed(&s, &deleted).await["outcome"], "applied");
    s.wait_queue_drained(Duration::from_secs(30)).await;
    assert_eq!(account(&s, &id).await["subscription"]["status"], "canceled");

    // DELETION_RETENTION_DAYS (30): a reminder in the last week, once; the deletion after.
    let day = |n: i64| billing::db::ts(chrono::Utc::now() + chrono::Duration::days(n));
    let early = String::from_utf8_lossy(&tick(&s, &day(20)).stdout).into_owned();
    assert!(!early.contains(&id), "{early}");
    let week = String::from_utf8_lossy(&tick(&s, &day(24)).stdout).into_owned();
    assert!(
        week.contains(&format!("reminded {id}: deletion in under a week")),
        "{week}"
    );
    let again = String::from_utf8_lossy(&tick(&s, &day(25)).stdout).into_owned();
    assert!(!again.contains(&id), "one reminder: {again}");
    let pool = s.db().await;
    let reminders = "SELECT COUNT(*) FROM notifications WHERE kind = $1";
    assert_eq!(
        common::count(&pool, reminders, "deletion_reminder").await,
        1
    );

    let gone = String::from_utf8_lossy(&tick(&s, &day(31)).stdout).into_owned();
    assert!(
        gone.contains(&format!("tenant {id}: delete (retention ended)")),
        "{gone}"
    );
    s.wait_for_status(&id, "deleted", Duration::from_secs(30))
        .await;
    assert_eq!(account(&s, &id).await["subscription"]["status"], "deleted");
    let repo = repo(&s);
    let removal = head(&repo);
    assert!(
        removal.message().unwrap().starts_with(&format!(
            "tenant {id}: delete (retention ended after cancellation)"
        )),
        "{:?}",
        removal.message()
    );
    let tree = removal.tree().unwrap();
    assert!(tree
        .get_path(std::path::Path::new(&billing::render::tenant_dir(&id)))
        .is_err());
    let pii = "SELECT COUNT(*) FROM customers WHERE email = $1";
    assert_eq!(common::count(&pool, pii, "leaving@example.com").await, 0);
}
