//! Lockout as a weapon, through the running server on SQLite and PostgreSQL: failures from an
//! attacker's address lock only that address out of the victim's account, while one address
//! spraying many emails is stopped. Client addresses come from X-Forwarded-For
//! (TRUST_FORWARDED_FOR=true, as behind a proxy). Guesses at one account spread over many
//! addresses meet the per-account limit, which spares the addresses its owner logs in from,
//! warns the owner once by email (aiosmtpd), and treats an email without an account alike.

mod common;

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use common::smtp::{body_text, header, SmtpSink};
use common::{Backend, TestServer, PASSWORD};
use serde_json::{json, Value};

for_each_backend!(
    an_attacker_cannot_lock_a_customer_out,
    one_address_cannot_spray_many_emails,
    many_addresses_cannot_guess_one_account_nor_lock_its_owner_out,
    an_email_without_an_account_is_limited_alike,
);

async fn start(backend: Backend) -> Option<TestServer> {
    TestServer::start_with(backend, &[("TRUST_FORWARDED_FOR", "true")]).await
}

/// A login from `addr`: status, body and Retry-After.
async fn login_from(
    s: &TestServer,
    addr: &str,
    email: &str,
    password: &str,
) -> (u16, Value, Option<u64>) {
    let resp = s
        .client
        .post(s.url("/api/customers/login"))
        .header("x-forwarded-for", addr)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (status, resp.json().await.unwrap_or(Value::Null), retry)
}

/// A 429 whose Retry-After is in `wait`.
fn assert_waits(what: &str, answer: &(u16, Value, Option<u64>), wait: RangeInclusive<u64>) {
    let (status, body, retry) = answer;
    assert_eq!(*status, 429, "{what}: {body}");
    assert_eq!(body["code"], "too_many_attempts", "{what}: {body}");
    let retry = retry.unwrap_or_else(|| panic!("{what}: no Retry-After"));
    assert!(wait.contains(&retry), "{what}: Retry-After {retry}");
}

/// Locked by the per-pair or per-address limit: until the oldest failure leaves 15 minutes.
fn assert_locked(what: &str, answer: &(u16, Value, Option<u64>)) {
    assert_waits(what, answer, 800..=900);
}

async fn an_attacker_cannot_lock_a_customer_out(backend: Backend) {
    let Some(s) = start(backend).await else {
        return;
    };
    let (status, body) = s.signup("victim@acme.example", PASSWORD, "Acme").await;
    assert_eq!(status, 201, "{body}");
    const ATTACKER: &str = "203.0.113.66";
    const VICTIM: &str = "198.51.100.7";

    for attempt in 1..=5 {
        let (status, body, _) = login_from(&s, ATTACKER, "victim@acme.example", "guess").await;
        assert_eq!(status, 401, "attempt {attempt}: {body}");
    }
    // The attacker's address is locked out of this account, even with the right password...
    for password in ["guess-again", PASSWORD] {
        let answer = login_from(&s, ATTACKER, "victim@acme.example", password).await;
        assert_locked("attacker after 5 failures", &answer);
    }
    // ... and a proxy-appended entry after a forged one is what counts.
    let forged = format!("192.0.2.1, {ATTACKER}");
    let answer = login_from(&s, &forged, "victim@acme.example", PASSWORD).await;
    assert_locked("forged first X-Forwarded-For entry", &answer);

    // The customer, from their own address, still gets in (after a typo of their own).
    let (status, _, _) = login_from(&s, VICTIM, "Victim@acme.example", "typo-password").await;
    assert_eq!(status, 401);
    let (status, body, _) = login_from(&s, VICTIM, "victim@acme.example", PASSWORD).await;
    assert_eq!(status, 200, "the victim was locked out: {body}");
    assert!(body["token"].is_string());

    // Their success does not unlock the attacker.
    let answer = login_from(&s, ATTACKER, "victim@acme.example", PASSWORD).await;
    assert_locked("attacker after the victim's login", &answer);
}

async fn one_address_cannot_spray_many_emails(backend: Backend) {
    let Some(s) = start(backend).await else {
        return;
    };
    let (status, body) = s.signup("own@acme.example", PASSWORD, "Acme").await;
    assert_eq!(status, 201, "{body}");
    const SPRAYER: &str = "203.0.113.9";

    // Twenty emails, one guess each (fewer than five per email, so no pair lock).
    for n in 0..20 {
        let email = format!("user{n}@acme.example");
        let (status, body, _) = login_from(&s, SPRAYER, &email, "Winter2026!").await;
        assert_eq!(status, 401, "guess {n}: {body}");
    }
    let answer = login_from(&s, SPRAYER, "user99@acme.example", "Winter2026!").await;
    assert_locked("21st email from one address", &answer);
    // Logging in to an account of one's own from there neither works nor resets the count.
    let answer = login_from(&s, SPRAYER, "own@acme.example", PASSWORD).await;
    assert_locked("own account from the locked address", &answer);
    // Everyone else is unaffected.
    let (status, body, _) = login_from(&s, "198.51.100.20", "own@acme.example", PASSWORD).await;
    assert_eq!(status, 200, "{body}");

    // Over IPv6 the address is the /64: rotating within it does not buy more guesses.
    for n in 0..20 {
        let addr = format!("2001:db8:5:6::{:x}", n + 1);
        let email = format!("v6user{n}@acme.example");
        let (status, body, _) = login_from(&s, &addr, &email, "Winter2026!").await;
        assert_eq!(status, 401, "v6 guess {n}: {body}");
    }
    let answer = login_from(&s, "2001:db8:5:6:ffff::1", "own@acme.example", PASSWORD).await;
    assert_locked("another address in the same /64", &answer);
    let (status, body, _) = login_from(&s, "2001:db8:5:7::1", "own@acme.example", PASSWORD).await;
    assert_eq!(status, 200, "another /64 is another client: {body}");
}

/// The n-th address of a botnet, IPv4 or IPv6 by turns, each its own client (one /64 each).
fn bot(n: u32) -> String {
    if n.is_multiple_of(2) {
        format!("203.0.{}.{}", n / 200, n % 200 + 1)
    } else {
        format!("2001:db8:{n:x}::1")
    }
}

const WARNING: &str = "Failed logins to your Iotistic account";
const RESET_URL: &str = "https://iotistic.example/reset-password";

async fn many_addresses_cannot_guess_one_account_nor_lock_its_owner_out(backend: Backend) {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let smtp = sink.url();
    let env = [
        ("TRUST_FORWARDED_FOR", "true"),
        ("SMTP_URL", smtp.as_str()),
        ("PASSWORD_RESET_URL", RESET_URL),
    ];
    let Some(s) = TestServer::start_with(backend, &env).await else {
        return;
    };
    const OWNER: &str = "owner@acme.example";
    const HOME: &str = "198.51.100.7";
    let (status, body) = s.signup(OWNER, PASSWORD, "Acme").await;
    assert_eq!(status, 201, "{body}");
    let (status, body, _) = login_from(&s, HOME, OWNER, PASSWORD).await;
    assert_eq!(status, 200, "{body}");

    // 60 guesses from 60 addresses: ten are checked, the rest refused before any hashing.
    for n in 1..=60 {
        let answer = login_from(&s, &bot(n), OWNER, &format!("guess-{n}")).await;
        if n <= 10 {
            assert_eq!(answer.0, 401, "guess {n}: {}", answer.1);
        } else {
            assert_waits(&format!("guess {n}"), &answer, 1..=60);
        }
    }
    // During the attack the owner logs in from home...
    let (status, body, _) = login_from(&s, HOME, OWNER, PASSWORD).await;
    assert_eq!(status, 200, "the owner was locked out at home: {body}");
    // ... and from a new address waits like anyone else, even with the right password.
    let answer = login_from(&s, "192.0.2.44", OWNER, PASSWORD).await;
    assert_waits("the owner from a new address", &answer, 1..=60);
    // Each failure past the limit doubles the wait (a typo at home is one).
    assert_eq!(login_from(&s, HOME, OWNER, "typo-at-home").await.0, 401);
    let answer = login_from(&s, "192.0.2.45", OWNER, PASSWORD).await;
    assert_waits("after an 11th failure", &answer, 61..=120);

    // The owner is told once, with counts and the reset link, and nothing the attacker typed.
    let pool = s.db().await;
    let sent = "SELECT COUNT(*) FROM notifications WHERE kind = $1 AND status = 'sent'";
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::count(&pool, sent, "login_attempts").await == 0 {
        assert!(Instant::now() < deadline, "no warning was sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let queued = "SELECT COUNT(*) FROM notifications WHERE kind = $1";
    assert_eq!(common::count(&pool, queued, "login_attempts").await, 1);
    let warnings: Vec<String> = sink
        .messages_to(OWNER)
        .iter()
        .filter(|m| header(m, "Subject").as_deref() == Some(WARNING))
        .map(|m| body_text(m))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let text = &warnings[0];
    assert!(
        text.contains("10 logins") && text.contains("from 10 addresses"),
        "{text}"
    );
    assert!(text.contains(RESET_URL), "{text}");
    assert!(
        !text.contains("guess-") && !text.contains("203.0."),
        "{text}"
    );

    // Operators see it in /metrics and the audit log, which holds no attempted password.
    let failures = "billing_login_failures_total";
    let wrong = s
        .metric(&format!("{failures}{{reason=\"wrong_password\"}}"))
        .await;
    assert_eq!(wrong, 11);
    let limited = s
        .metric(&format!("{failures}{{reason=\"account_limit\"}}"))
        .await;
    assert_eq!(limited, 52, "50 guesses and the owner twice");
    assert_eq!(s.metric("billing_login_accounts_limited").await, 1);
    let refusals = "SELECT COUNT(*) FROM audit_log WHERE action = $1 AND details LIKE '%account%'";
    assert_eq!(
        common::count(&pool, refusals, "customer.login_locked").await,
        52
    );
    let leaks = "SELECT COUNT(*) FROM audit_log WHERE details LIKE $1";
    assert_eq!(common::count(&pool, leaks, "%guess-%").await, 0);
}

async fn an_email_without_an_account_is_limited_alike(backend: Backend) {
    let Some(s) = start(backend).await else {
        return;
    };
    let (status, body) = s.signup("real@acme.example", PASSWORD, "Acme").await;
    assert_eq!(status, 201, "{body}");
    // From outside, the same guesses at an account and at no account get the same answers.
    for n in 1..=12 {
        let real = login_from(&s, &bot(n), "real@acme.example", "Winter2026!").await;
        let ghost = login_from(&s, &bot(100 + n), "ghost@acme.example", "Winter2026!").await;
        assert_eq!((real.0, &real.1), (ghost.0, &ghost.1), "guess {n}");
        if n <= 10 {
            assert_eq!(real.0, 401, "guess {n}: {}", real.1);
        } else {
            assert_waits(&format!("real, guess {n}"), &real, 1..=60);
            assert_waits(&format!("ghost, guess {n}"), &ghost, 1..=60);
        }
    }
    assert_eq!(s.metric("billing_login_accounts_limited").await, 2);
}
