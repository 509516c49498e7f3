//! Customer emails through the running server and a real SMTP server (aiosmtpd): one welcome
//! email per signup, also when the server is killed right after the 201; the trial reminders 7
//! and 2 days ahead and the suspension, each once however often the scheduler runs; "instance
//! ready" at the first ready report; with no SMTP_URL the server's log names the email (kind,
//! Message-ID) but neither its address nor its body.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::time::{Duration, Instant};

use common::smtp::{header, SmtpSink};
use common::{Backend, TestServer, PASSWORD};

for_each_backend!(
    a_signup_gets_exactly_one_welcome_email,
    a_kill_right_after_signup_still_sends_one_welcome_email,
    trial_reminders_and_the_suspension_arrive_once_each,
    the_first_ready_report_sends_instance_ready_once,
    without_smtp_url_the_log_names_the_email_not_its_address
);

async fn server_with(backend: Backend, sink: &SmtpSink) -> Option<TestServer> {
    let url = sink.url();
    TestServer::start_with(
        backend,
        &[
            ("SMTP_URL", &url),
            ("FLUX_WEBHOOK_SECRET", cluster::FLUX_SECRET),
        ],
    )
    .await
}

/// The subjects of every email `to` received, sorted.
fn subjects_to(sink: &SmtpSink, to: &str) -> Vec<String> {
    let mut subjects: Vec<String> = sink
        .messages_to(to)
        .iter()
        .map(|m| header(m, "Subject").unwrap_or_default())
        .collect();
    subjects.sort();
    subjects
}

/// Waits until `to` has received `want` (sorted subjects) and no email is left in the queue:
/// an extra one, queued by then, would have arrived too.
async fn wait_subjects(s: &TestServer, sink: &SmtpSink, to: &str, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    let pool = s.db().await;
    let queued = "SELECT COUNT(*) FROM notifications WHERE status = $1";
    let deadline = Instant::now() + Duration::from_secs(30);
    while subjects_to(sink, to).len() < want.len()
        || common::count(&pool, queued, "pending").await > 0
    {
        assert!(
            Instant::now() < deadline,
            "{to} got {:?}, not {want:?}",
            subjects_to(sink, to)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.close().await;
    assert_eq!(subjects_to(sink, to), want);
}

fn tick(s: &TestServer, now: chrono::DateTime<chrono::Utc>) -> String {
    let out = s
        .command()
        .env("SEALED_SECRETS_CERT", common::sealing_cert_path())
        .args(["lifecycle", "tick", "--now", &billing::db::ts(now)])
        .output()
        .expect("billing lifecycle tick");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn trial_reminders_and_the_suspension_arrive_once_each(backend: Backend) {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let Some(s) = server_with(backend, &sink).await else {
        return;
    };
    let to = "grace@example.com";
    let (code, body) = s.signup(to, PASSWORD, "Acme GmbH").await;
    assert_eq!(code, 201, "{body}");
    let ends =
        billing::db::parse_ts(body["subscription"]["trial_ends_at"].as_str().unwrap()).unwrap();
    let welcome = "Welcome to Iotistic";
    let soon = "Your Iotistic trial ends soon";
    wait_subjects(&s, &sink, to, &[welcome]).await;

    // A week ahead, twice (two passes, or two replicas): one reminder.
    let week = ends - chrono::Duration::days(6);
    assert!(tick(&s, week).contains("trial ends in 7 days"));
    assert!(!tick(&s, week).contains("reminded"));
    wait_subjects(&s, &sink, to, &[welcome, soon]).await;
    let two_days = ends - chrono::Duration::hours(30);
    assert!(tick(&s, two_days).contains("trial ends in 2 days"));
    tick(&s, two_days);
    wait_subjects(&s, &sink, to, &[welcome, soon, soon]).await;
    let bodies: Vec<String> = sink.messages_to(to);
    assert!(
        bodies.iter().any(|m| m.contains("ends in 2 days")),
        "{bodies:?}"
    );

    // Past the end: suspended, and told so once.
    let after = ends + chrono::Duration::hours(1);
    assert!(tick(&s, after).contains("1 changed"));
    assert!(tick(&s, after).contains("0 changed"));
    wait_subjects(
        &s,
        &sink,
        to,
        &[
            welcome,
            soon,
            soon,
            "Your Iotistic subscription is suspended",
        ],
    )
    .await;
}

async fn the_first_ready_report_sends_instance_ready_once(backend: Backend) {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let Some(s) = server_with(backend, &sink).await else {
        return;
    };
    let to = "ready@example.com";
    let id = sign_up(&s, to).await;
    let committed = s
        .wait_for_status(&id, "committed", Duration::from_secs(30))
        .await;
    let rev = committed["committed_revision"].as_str().unwrap();
    let event = cluster::fixture("flux-event-reconciliation-succeeded.json", &id, rev);
    let (code, body) = cluster::flux_event(&s, &event).await;
    assert_eq!(code, 202, "{body}");
    s.wait_for_status(&id, "ready", Duration::from_secs(30))
        .await;
    // Failing and becoming ready again is not a second "ready" email.
    let failed = cluster::fixture("flux-event-health-check-failed.json", &id, rev);
    assert_eq!(cluster::flux_event(&s, &failed).await.0, 202);
    s.wait_for_status(&id, "failed", Duration::from_secs(30))
        .await;
    assert_eq!(cluster::flux_event(&s, &event).await.0, 202);
    s.wait_for_status(&id, "ready", Duration::from_secs(30))
        .await;
    wait_subjects(
        &s,
        &sink,
        to,
        &["Welcome to Iotistic", "Your Iotistic instance is ready"],
    )
    .await;
    let ready = sink
        .messages_to(to)
        .into_iter()
        .find(|m| m.contains("instance is ready"))
        .unwrap();
    assert!(ready.contains(&format!("https://{id}.")), "{ready}");
}

async fn sign_up(s: &TestServer, email: &str) -> String {
    let (code, body) = s.signup(email, PASSWORD, "Acme GmbH").await;
    assert_eq!(code, 201, "{body}");
    body["customer"]["customer_id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn a_signup_gets_exactly_one_welcome_email(backend: Backend) {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let Some(s) = server_with(backend, &sink).await else {
        return;
    };
    let id = sign_up(&s, "ada@example.com").await;
    let ids = sink
        .message_ids_to("ada@example.com", Duration::from_secs(2))
        .await;
    assert_eq!(ids.len(), 1, "{ids:?}");
    let messages = sink.messages_to("ada@example.com");
    assert_eq!(messages.len(), 1, "sent once, not retried");
    let m = &messages[0];
    assert_eq!(header(m, "Subject").as_deref(), Some("Welcome to Iotistic"));
    assert!(header(m, "From")
        .unwrap()
        .contains("billing@iotistic.cloud"));
    assert!(m.contains("Acme GmbH"), "{m}");
    // Sent, and the row keeps no address or text once sent.
    let pool = s.db().await;
    let sent = "SELECT COUNT(*) FROM notifications WHERE customer_id = $1 AND status = 'sent' \
                AND recipient IS NULL AND body IS NULL AND sent_at IS NOT NULL";
    assert_eq!(common::count(&pool, sent, &id).await, 1);
}

async fn a_kill_right_after_signup_still_sends_one_welcome_email(backend: Backend) {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let Some(mut s) = server_with(backend, &sink).await else {
        return;
    };
    sign_up(&s, "grace@example.com").await;
    s.stop();
    s.restart().await;
    let ids = sink
        .message_ids_to("grace@example.com", Duration::from_secs(3))
        .await;
    assert_eq!(
        ids.len(),
        1,
        "one welcome email, whatever was re-sent: {ids:?}"
    );
    // A later signup after the restart is delivered too: the sender runs again.
    sign_up(&s, "linus@example.com").await;
    let ids = sink
        .message_ids_to("linus@example.com", Duration::from_secs(1))
        .await;
    assert_eq!(ids.len(), 1, "{ids:?}");
}

async fn without_smtp_url_the_log_names_the_email_not_its_address(backend: Backend) {
    use sqlx::Row;
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    sign_up(&s, "hedy@example.com").await;
    let pool = s.db().await;
    let row = sqlx::query("SELECT message_id, body FROM notifications WHERE kind = 'welcome'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let message_id: String = row.get(0);
    let body: String = row.get(1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = s.log();
        if log.lines().any(|l| {
            l.contains("logged, not sent") && l.contains(&message_id) && l.contains("welcome")
        }) {
            break log;
        }
        assert!(Instant::now() < deadline, "no logged email:\n{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Which email went out, never to whom nor what it said.
    assert!(!log.contains("hedy@example.com"), "{log}");
    for line in body.lines().filter(|l| l.trim().len() > 12) {
        assert!(
            !log.contains(line.trim()),
            "body line {line:?} in the log:\n{log}"
        );
    }
    let sent = "SELECT COUNT(*) FROM notifications WHERE kind = $1 AND status = 'sent'";
    assert_eq!(common::count(&pool, sent, "welcome").await, 1);
}
