//! Look-alike accounts through the running server, on SQLite and PostgreSQL: emails with
//! invisible or bidi characters are refused, emails compare in NFC, compatibility characters
//! (fullwidth, mathematical letters) are refused by PRECIS's IdentifierClass, an address that
//! looks like a taken one (a Cyrillic `а`) is taken (its TS #39 skeleton is unique), and names
//! are stored in NFC without control characters (no ANSI escapes reach a terminal).

mod common;

use common::{count, TestServer};
use serde_json::{json, Value};

on_both_backends!(
    invisible_characters_cannot_make_a_second_boss,
    names_are_nfc_and_free_of_control_characters,
    an_address_that_looks_taken_is_taken,
);

const PASSWORD: &str = "correct-horse-battery";

fn assert_refused(what: &str, status: u16, err: &Value, field: &str) {
    assert_eq!(status, 400, "{what}: {err}");
    assert_eq!(err["code"], "invalid_characters", "{what}: {err}");
    assert_eq!(err["field"], field, "{what}: {err}");
    assert!(
        err["message"].as_str().is_some_and(|m| m.contains(field)),
        "{what}: {err}"
    );
}

async fn invisible_characters_cannot_make_a_second_boss(s: TestServer) {
    let (status, body) = s.signup("boss@example.com", PASSWORD, "Acme").await;
    assert_eq!(status, 201, "{body}");
    for twin in [
        "bo\u{200b}ss@example.com", // zero-width space
        "boss\u{200d}@example.com", // zero-width joiner
        "\u{feff}boss@example.com", // byte-order mark
        "bo\u{2060}ss@example.com", // word joiner
        "\u{202e}moc.elpmaxe@ssob", // right-to-left override
        "bo\u{2067}ss@example.com", // right-to-left isolate
        "boss\u{200f}@example.com", // right-to-left mark
        "bo\u{ad}ss@example.com",   // soft hyphen
        "bo\u{1b}[0mss@example.com",
    ] {
        let (status, err) = s.signup(twin, PASSWORD, "Evil Twin").await;
        assert_refused(&format!("{twin:?}"), status, &err, "email");
        // Nor does such an address log in as the boss.
        let (status, _) = s
            .post_json(
                "/api/customers/login",
                &json!({"email": twin, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, 401, "{twin:?}");
    }
    let db = s.db().await;
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM customers WHERE company_name <> $1",
            ""
        )
        .await,
        1,
        "a look-alike account was created"
    );

    // The same address composed and decomposed is one account.
    let (status, body) = s.signup("zoë@example.com", PASSWORD, "Zoë AG").await;
    assert_eq!(status, 201, "{body}");
    let (status, err) = s.signup("Zoe\u{308}@example.com", PASSWORD, "Zoë AG").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (409, Some("email_taken")),
        "{err}"
    );
    let (status, body) = s
        .post_json(
            "/api/customers/login",
            &json!({"email": "zoe\u{308}@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn names_are_nfc_and_free_of_control_characters(s: TestServer) {
    let signup = |company: &str, full_name: &str| {
        json!({"email": "names@example.com", "password": PASSWORD,
               "company_name": company, "full_name": full_name})
    };
    for (company, full_name, field) in [
        ("\u{1b}[2J\u{1b}[31mAcme", "Ann", "company_name"),
        ("Acme\nkind: Secret", "Ann", "company_name"),
        ("Acme\tLtd", "Ann", "company_name"),
        ("Acme\u{9b}31m", "Ann", "company_name"),
        ("Acme", "Ann\u{7}", "full_name"),
        ("Acme", "Ann \u{202e}nimda", "full_name"),
    ] {
        let (status, err) = s
            .post_json("/api/customers/signup", &signup(company, full_name))
            .await;
        assert_refused(&format!("{company:?} {full_name:?}"), status, &err, field);
    }
    let db = s.db().await;
    let sql = "SELECT COUNT(*) FROM customers WHERE email_normalized = $1";
    assert_eq!(count(&db, sql, "names@example.com").await, 0);

    // Decomposed input is stored and returned composed; joiners in emoji survive.
    let (status, body) = s
        .post_json(
            "/api/customers/signup",
            &signup("Cafe\u{301} 👩\u{200d}💻", " Zoe\u{308} "),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["customer"]["company_name"], "Café 👩\u{200d}💻");
    assert_eq!(body["customer"]["full_name"], "Zoë");
    let sql = "SELECT COUNT(*) FROM customers WHERE company_name = $1";
    assert_eq!(count(&db, sql, "Café 👩\u{200d}💻").await, 1);
}

async fn an_address_that_looks_taken_is_taken(mut s: TestServer) {
    let (status, body) = s.signup("paypal@example.com", PASSWORD, "PayPal").await;
    assert_eq!(status, 201, "{body}");
    let paypal = body["customer"]["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    for (twin, what) in [
        ("\u{ff50}aypal@example.com", "fullwidth p"),
        ("\u{1d429}aypal@example.com", "mathematical bold p"),
        ("paypal@\u{ff45}xample.com", "fullwidth e in the domain"),
    ] {
        let (status, err) = s.signup(twin, PASSWORD, "Evil Twin").await;
        assert_refused(what, status, &err, "email");
    }
    for (twin, what) in [
        ("p\u{430}ypal@example.com", "Cyrillic a"),
        (
            "p\u{430}yp\u{430}l@ex\u{430}mple.com",
            "Cyrillic a throughout",
        ),
        ("PAYPAL@example.com", "another case"),
    ] {
        let (status, err) = s.signup(twin, PASSWORD, "Evil Twin").await;
        assert_eq!(
            (status, err["code"].as_str()),
            (409, Some("email_taken")),
            "{what}: {err}"
        );
    }

    // Two look-alikes at once: the unique index lets exactly one in.
    let (a, b) = tokio::join!(
        s.signup("bank@example.com", PASSWORD, "Bank"),
        s.signup("b\u{430}nk@example.com", PASSWORD, "Bаnk"),
    );
    let mut codes = [a.0, b.0];
    codes.sort();
    assert_eq!(codes, [201, 409], "{a:?} {b:?}");
    let db = s.db().await;
    let live = "SELECT COUNT(*) FROM customers WHERE deleted_at IS NULL AND company_name <> $1";
    assert_eq!(count(&db, live, "").await, 2, "one PayPal, one bank");

    // An account from before skeletons gets its look at the next start.
    sqlx::query("UPDATE customers SET email_skeleton = NULL WHERE id = $1")
        .bind(&paypal)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    s.restart().await;
    let (status, err) = s
        .signup("p\u{430}ypal@example.com", PASSWORD, "Evil Twin")
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (409, Some("email_taken")),
        "{err}"
    );

    // A deleted account's look is free again.
    let (status, body) = s.admin_delete(&format!("/api/customers/{paypal}")).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = s
        .signup("p\u{430}ypal@example.com", PASSWORD, "New Owner")
        .await;
    assert_eq!(status, 201, "{body}");
}
