//! Lockout as a weapon, through the running server on SQLite and PostgreSQL: failures from an
//! attacker's address lock only that address out of the victim's account, while one address
//! spraying many emails is stopped. Client addresses come from X-Forwarded-For
//! (TRUST_FORWARDED_FOR=true, as behind a proxy).

mod common;

use common::{Backend, TestServer};
use serde_json::{json, Value};

for_each_backend!(
    an_attacker_cannot_lock_a_customer_out,
    one_address_cannot_spray_many_emails,
);

const PASSWORD: &str = "correct-horse-battery";

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

fn assert_locked(what: &str, (status, body, retry): &(u16, Value, Option<u64>)) {
    assert_eq!(*status, 429, "{what}: {body}");
    assert_eq!(body["code"], "too_many_attempts", "{what}: {body}");
    let retry = retry.unwrap_or_else(|| panic!("{what}: no Retry-After"));
    assert!((800..=900).contains(&retry), "{what}: Retry-After {retry}");
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
