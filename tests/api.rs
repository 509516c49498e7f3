//! The billing API over real HTTP, on SQLite and PostgreSQL: signup, login, lockout, legacy
//! hashes, licenses and the JWKS, secrets kept out of the audit log and the server log.

mod common;

use common::{count, TestServer, ADMIN_TOKEN};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

on_both_backends!(
    signup_writes_customer_subscription_license_and_audit,
    duplicate_email_is_409_whatever_the_case_or_spacing,
    bad_signup_requests_get_clear_400s_and_413,
    login_me_and_failures,
    lockout_after_five_failures_with_retry_after,
    legacy_bcrypt_login_rehashes_to_argon2id,
    no_secret_in_audit_log_or_server_log,
    concurrent_signups_with_one_email_create_one_customer,
    admin_endpoints_need_the_admin_token,
    health_and_readiness,
);

const PASSWORD: &str = "correct-horse-battery";

async fn signup_ok(s: &TestServer, email: &str) -> Value {
    let (status, body) = s.signup(email, PASSWORD, "Acme Robotics").await;
    assert_eq!(status, 201, "{body}");
    body
}

fn jwt_payload(token: &str) -> Value {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let part = token.split('.').nth(1).expect("JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn signup_writes_customer_subscription_license_and_audit(s: TestServer) {
    let body = signup_ok(&s, "ops@acme.example").await;
    let id = body["customer"]["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 12);
    assert!(id.chars().next().unwrap().is_ascii_lowercase());
    assert!(
        id.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{id}"
    );
    assert_eq!(body["customer"]["email"], "ops@acme.example");
    assert_eq!(body["customer"]["company_name"], "Acme Robotics");
    assert_eq!(body["subscription"]["plan"], "starter");
    assert_eq!(body["subscription"]["status"], "trialing");
    assert_eq!(body["subscription"]["trial_days_remaining"], 14);
    assert_eq!(body["deployment"]["status"], "pending");
    assert_eq!(
        body["deployment"]["instance_url"],
        format!("https://{id}.iotistic.cloud")
    );
    assert_eq!(body["license"]["features"]["maxDevices"], 5);
    assert_eq!(body["license"]["limits"]["maxUsers"], 2);
    assert!(
        body.to_string().find("$argon2").is_none(),
        "a hash leaked into the response"
    );

    let db = s.db().await;
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM customers WHERE id = $1", &id).await,
        1
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM subscriptions WHERE customer_id = $1 AND plan = 'starter' AND status = 'trialing'", &id).await,
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM audit_log WHERE customer_id = $1 AND action = 'customer.signup'",
            &id
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM deployments WHERE customer_id = $1 AND status = 'pending'",
            &id
        )
        .await,
        1
    );

    // The license history keeps the token's SHA-256, not the token.
    let jwt = body["license"]["jwt"].as_str().unwrap();
    let digest = hex::encode(Sha256::digest(jwt.as_bytes()));
    let (hash, action): (String, String) =
        sqlx::query_as("SELECT token_sha256, action FROM license_history WHERE customer_id = $1")
            .bind(&id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!((hash, action.as_str()), (digest, "issued"));

    // The license verifies offline against the JWKS, by kid, with the claim names instances read.
    let (_, jwks) = s.get_json("/.well-known/jwks.json", None).await;
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let kid = header.kid.expect("license header carries a kid");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("kid in JWKS");
    assert_eq!(jwk["alg"], "RS256");
    let key = jsonwebtoken::DecodingKey::from_rsa_components(
        jwk["n"].as_str().unwrap(),
        jwk["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&["iotistic-billing"]);
    let claims = jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["customerId"], id.as_str());
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["customerName"], "Acme Robotics");
    assert_eq!(claims["plan"], "starter");
    assert_eq!(claims["trial"]["isTrialMode"], true);
    assert_eq!(claims["subscription"]["status"], "trialing");
    assert_eq!(claims["features"]["canExecuteJobs"], true);
    assert_eq!(claims["features"]["canScheduleJobs"], false);
    assert_eq!(claims["limits"]["maxJobTemplates"], 10);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        14 * 86_400
    );
    for claim in ["issuedAt", "expiresAt", "jti"] {
        assert!(!claims[claim].is_null(), "missing claim {claim}");
    }

    // ... and online, through /api/licenses/verify; a tampered one does not.
    let (status, verified) = s
        .post_json("/api/licenses/verify", &json!({ "license": jwt }))
        .await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["valid"], true);
    assert_eq!(verified["data"]["customerId"], id.as_str());
    let mut forged = jwt_payload(jwt);
    forged["plan"] = "enterprise".into();
    let parts: Vec<&str> = jwt.split('.').collect();
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(forged.to_string()),
        parts[2]
    );
    let (status, refused) = s
        .post_json("/api/licenses/verify", &json!({ "license": tampered }))
        .await;
    assert_eq!(status, 401);
    assert_eq!(refused["valid"], false);
    assert_eq!(refused["error"], "invalid signature");

    let (status, pk) = s.get_json("/api/licenses/public-key", None).await;
    assert_eq!(status, 200);
    assert_eq!(pk["algorithm"], "RS256");
    assert!(pk["public_key"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
}

async fn duplicate_email_is_409_whatever_the_case_or_spacing(s: TestServer) {
    signup_ok(&s, "dup@acme.example").await;
    for variant in [
        "dup@acme.example",
        "DUP@Acme.Example",
        "  dup@acme.example\t",
    ] {
        let (status, body) = s.signup(variant, PASSWORD, "Other").await;
        assert_eq!(status, 409, "{variant:?}: {body}");
        assert_eq!(body["code"], "email_taken");
        assert_eq!(body["field"], "email");
        assert_eq!(body["error"], "Email already registered");
    }
    let db = s.db().await;
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM customers WHERE email_normalized = $1",
            "dup@acme.example"
        )
        .await,
        1
    );
}

async fn bad_signup_requests_get_clear_400s_and_413(s: TestServer) {
    let cases = [
        (
            json!({"email": "not-an-email", "password": PASSWORD, "company_name": "A"}),
            "invalid_email",
            Some("email"),
        ),
        (
            json!({"email": "a@b.io", "password": "short", "company_name": "A"}),
            "weak_password",
            Some("password"),
        ),
        (
            json!({"email": "a@b.io", "password": PASSWORD}),
            "missing_field",
            Some("company_name"),
        ),
        (
            json!({"password": PASSWORD, "company_name": "A"}),
            "missing_field",
            Some("email"),
        ),
        (
            json!({"email": "a@b.io", "company_name": "A"}),
            "missing_field",
            Some("password"),
        ),
        (
            json!({"email": 42, "password": PASSWORD, "company_name": "A"}),
            "invalid_type",
            Some("email"),
        ),
        (json!(["not", "an", "object"]), "invalid_json", None),
    ];
    for (body, code, field) in cases {
        let (status, err) = s.post_json("/api/customers/signup", &body).await;
        assert_eq!(status, 400, "{body} -> {err}");
        assert_eq!(err["code"], code, "{body} -> {err}");
        assert_eq!(err["field"], json!(field), "{body} -> {err}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(err["error"].as_str().is_some());
    }

    let resp = s
        .client
        .post(s.url("/api/customers/signup"))
        .header("content-type", "application/json")
        .body("{\"email\": \"a@b.io\", ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["code"], "invalid_json");

    let huge =
        json!({"email": "a@b.io", "password": PASSWORD, "company_name": "x".repeat(70 * 1024)});
    let (status, err) = s.post_json("/api/customers/signup", &huge).await;
    assert_eq!(status, 413);
    assert_eq!(err["code"], "payload_too_large");

    let db = s.db().await;
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM customers WHERE email <> $1", "").await,
        0,
        "a bad request wrote a customer"
    );
}

async fn login(s: &TestServer, email: &str, password: &str) -> (u16, Value, Option<String>) {
    let resp = s
        .client
        .post(s.url("/api/customers/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, resp.json().await.unwrap(), retry)
}

async fn login_me_and_failures(s: TestServer) {
    let created = signup_ok(&s, "login@acme.example").await;
    let id = created["customer"]["customer_id"].as_str().unwrap();

    let (status, body, _) = login(&s, " LOGIN@acme.example ", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["customer"]["customer_id"], id);
    assert_eq!(body["subscription"]["status"], "trialing");
    assert_eq!(body["license"]["plan"], "starter");
    // The GitOps worker may already have committed the stack.
    let deployment = body["deployment"]["status"].as_str().unwrap();
    assert!(
        ["pending", "committed"].contains(&deployment),
        "{deployment}"
    );
    let token = body["token"].as_str().unwrap();

    let (status, me) = s.get_json("/api/customers/me", Some(token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["customer"]["email"], "login@acme.example");
    assert_eq!(me["license"]["features"]["maxDevices"], 5);

    // A license is not a session token, and garbage is refused.
    let license = created["license"]["jwt"].as_str().unwrap();
    for bad in [license, "garbage"] {
        let (status, err) = s.get_json("/api/customers/me", Some(bad)).await;
        assert_eq!(status, 401, "{err}");
        assert_eq!(err["code"], "unauthorized");
    }
    assert_eq!(s.get_json("/api/customers/me", None).await.0, 401);

    // Wrong password and unknown email are indistinguishable.
    let (s1, wrong, _) = login(&s, "login@acme.example", "wrong-password").await;
    let (s2, unknown, _) = login(&s, "nobody@acme.example", "wrong-password").await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["error"], "Invalid credentials");
    assert_eq!(wrong["code"], "invalid_credentials");
}

async fn lockout_after_five_failures_with_retry_after(s: TestServer) {
    signup_ok(&s, "lock@acme.example").await;
    for attempt in 1..=5 {
        let (status, _, _) = login(&s, "lock@acme.example", "wrong-password").await;
        assert_eq!(status, 401, "attempt {attempt}");
    }
    // Even the right password is refused now, with a Retry-After of about 15 minutes.
    let (status, body, retry) = login(&s, "Lock@acme.example", PASSWORD).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "too_many_attempts");
    let retry: u64 = retry.expect("Retry-After header").parse().unwrap();
    assert!((800..=900).contains(&retry), "Retry-After {retry}");
    // Other accounts are unaffected.
    signup_ok(&s, "free@acme.example").await;
    assert_eq!(login(&s, "free@acme.example", PASSWORD).await.0, 200);
}

async fn legacy_bcrypt_login_rehashes_to_argon2id(s: TestServer) {
    let db = s.db().await;
    let legacy = bcrypt::hash("old-service-pass", 10).unwrap();
    let now = "2025-01-01T00:00:00.000Z";
    sqlx::query("INSERT INTO customers (id, email, email_normalized, password_hash, company_name, created_at, updated_at) VALUES ('legacy00cust', 'Old@Acme.example', 'old@acme.example', $1, 'Old Co', $2, $2)")
        .bind(&legacy).bind(now).execute(&db).await.unwrap();
    sqlx::query("INSERT INTO subscriptions (customer_id, plan, status, current_period_ends_at, created_at, updated_at) VALUES ('legacy00cust', 'professional', 'active', '2027-01-01T00:00:00.000Z', $1, $1)")
        .bind(now).execute(&db).await.unwrap();

    assert_eq!(login(&s, "old@acme.example", "not-the-pass").await.0, 401);
    let stored: (String,) =
        sqlx::query_as("SELECT password_hash FROM customers WHERE id = 'legacy00cust'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(stored.0, legacy, "a failed login must not touch the hash");

    let (status, body, _) = login(&s, "old@acme.example", "old-service-pass").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["subscription"]["plan"], "professional");
    let stored: (String,) =
        sqlx::query_as("SELECT password_hash FROM customers WHERE id = 'legacy00cust'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(stored.0.starts_with("$argon2id$"), "{}", stored.0);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM audit_log WHERE customer_id = $1 AND action = 'customer.password_rehashed'", "legacy00cust").await, 1);
    // The new hash works; the password did not change.
    assert_eq!(
        login(&s, "old@acme.example", "old-service-pass").await.0,
        200
    );
}

async fn no_secret_in_audit_log_or_server_log(s: TestServer) {
    let password = "Sup3r-Secret-Passw0rd!";
    let (status, body) = s
        .signup("secret@acme.example", password, "Secretive Ltd")
        .await;
    assert_eq!(status, 201);
    let (_, logged_in, _) = login(&s, "secret@acme.example", password).await;
    login(&s, "secret@acme.example", "Wr0ng-Secret-Passw0rd!").await;
    let session = logged_in["token"].as_str().unwrap().to_string();
    s.get_json("/api/customers/me", Some(&session)).await;
    s.get_json("/api/customers", Some(ADMIN_TOKEN)).await;
    let license = body["license"]["jwt"].as_str().unwrap().to_string();
    s.post_json("/api/licenses/verify", &json!({ "license": license }))
        .await;

    let db = s.db().await;
    let rows: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT action, details, user_agent FROM audit_log")
            .fetch_all(&db)
            .await
            .unwrap();
    assert!(
        rows.len() >= 3,
        "expected signup, login and failure entries: {rows:?}"
    );
    let hash: (String,) = sqlx::query_as("SELECT password_hash FROM customers")
        .fetch_one(&db)
        .await
        .unwrap();
    let private_key =
        std::fs::read_to_string(s.data_dir().join("keys/license-private.pem")).unwrap();
    let key_body = private_key.lines().nth(1).unwrap().to_string();
    let secrets = [
        password,
        "Wr0ng-Secret-Passw0rd!",
        &hash.0,
        &license,
        &session,
        ADMIN_TOKEN,
        &key_body,
    ];
    let audit_text = format!("{rows:?}");
    let log = s.log();
    assert!(
        log.contains("customer signed up"),
        "the server log is empty or unexpected:\n{log}"
    );
    for secret in secrets {
        assert!(!audit_text.contains(secret), "audit log contains a secret");
        assert!(!log.contains(secret), "server log contains a secret");
    }
    assert!(
        !log.contains("$argon2"),
        "server log contains a password hash"
    );
}

async fn concurrent_signups_with_one_email_create_one_customer(s: TestServer) {
    let s = std::sync::Arc::new(s);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.signup("race@acme.example", PASSWORD, &format!("Racer {i}"))
                    .await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert!(
            status == 201 || (status == 409 && body["code"] == "email_taken"),
            "{status} {body}"
        );
        statuses.push(status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );
    let db = s.db().await;
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM customers WHERE email_normalized = $1",
            "race@acme.example"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM subscriptions WHERE customer_id <> $1",
            ""
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM license_history WHERE customer_id <> $1",
            ""
        )
        .await,
        1
    );
}

async fn admin_endpoints_need_the_admin_token(s: TestServer) {
    let created = signup_ok(&s, "adm@acme.example").await;
    let id = created["customer"]["customer_id"].as_str().unwrap();
    for token in [None, Some("wrong-token")] {
        let (status, err) = s.get_json("/api/customers", token).await;
        assert_eq!(status, 401, "{err}");
        assert_eq!(err["code"], "unauthorized");
    }
    let (status, list) = s.get_json("/api/customers", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(list["customers"][0]["customer_id"], id);
    let (status, one) = s
        .get_json(&format!("/api/customers/{id}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["subscription"]["plan"], "starter");
    assert_eq!(
        s.get_json("/api/customers/zzzzzzzzzzzz", Some(ADMIN_TOKEN))
            .await
            .0,
        404
    );
}

async fn health_and_readiness(s: TestServer) {
    for path in ["/health", "/healthz"] {
        let (status, body) = s.get_json(path, None).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    }
    let (status, body) = s.get_json("/readyz", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
}
