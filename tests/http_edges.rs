//! HTTP edges through the running server, on SQLite and PostgreSQL: JSON endpoints require a
//! JSON Content-Type (415), every error from every route is the JSON error body (405, bad
//! query strings included), auth schemes are case-insensitive and 401s say `Bearer`; so are
//! the answers to what hyper cannot parse (414, 431, a malformed request line, a bad
//! `Content-Length`), and a NUL character is `invalid_characters` like any control character.

mod common;

use common::{count, TestServer, ADMIN_TOKEN};
use serde_json::{json, Value};

on_both_backends!(
    json_endpoints_require_a_json_content_type,
    framework_errors_use_the_json_error_body,
    auth_scheme_is_case_insensitive_and_401s_say_bearer,
    unparsable_requests_get_the_json_error_body,
    a_nul_character_is_invalid_characters,
);

const PASSWORD: &str = "correct-horse-battery";

/// Status, headers and JSON body (null when the body is not JSON).
async fn answer(req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

/// The API's error shape: a title, a non-empty message and a code.
fn assert_error_body(what: &str, body: &Value, code: &str) {
    assert_eq!(body["code"], code, "{what}: {body}");
    assert!(body["error"].as_str().is_some(), "{what}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    assert!(body.get("field").is_some(), "{what}: {body}");
}

async fn json_endpoints_require_a_json_content_type(s: TestServer) {
    let signup =
        json!({"email": "ct@acme.example", "password": PASSWORD, "company_name": "A"}).to_string();
    // What a cross-origin form or fetch may send without a preflight, and no type at all.
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
        None,
    ] {
        for path in [
            "/api/customers/signup",
            "/api/customers/login",
            "/api/licenses/verify",
            "/api/gitops/flux/events",
            "/api/gitops/argocd/events",
        ] {
            let mut req = s.client.post(s.url(path)).body(signup.clone());
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            let (status, _, body) = answer(req).await;
            let what = format!("{path} as {content_type:?}");
            assert_eq!(status, 415, "{what}: {body}");
            assert_error_body(&what, &body, "unsupported_media_type");
        }
    }
    let db = s.db().await;
    let sql = "SELECT COUNT(*) FROM customers WHERE email_normalized = $1";
    assert_eq!(count(&db, sql, "ct@acme.example").await, 0);

    // JSON with parameters, in any case, and +json types are JSON.
    for (n, content_type) in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.acme+json",
    ]
    .into_iter()
    .enumerate()
    {
        let email = format!("ct{n}@acme.example");
        let body = json!({"email": email, "password": PASSWORD, "company_name": "A"});
        let req = s
            .client
            .post(s.url("/api/customers/signup"))
            .header("content-type", content_type)
            .body(body.to_string());
        let (status, _, body) = answer(req).await;
        assert_eq!(status, 201, "{content_type}: {body}");
    }
}

async fn framework_errors_use_the_json_error_body(s: TestServer) {
    // A route with the wrong method: 405 with Allow, in the JSON body.
    for (method, path) in [
        (reqwest::Method::GET, "/api/customers/signup"),
        (reqwest::Method::DELETE, "/readyz"),
        (reqwest::Method::PUT, "/api/customers/login"),
    ] {
        let (status, headers, body) = answer(s.client.request(method.clone(), s.url(path))).await;
        let what = format!("{method} {path}");
        assert_eq!(status, 405, "{what}: {body}");
        assert_error_body(&what, &body, "method_not_allowed");
        assert!(headers.get("allow").is_some(), "{what}: no Allow header");
    }

    // Query strings the handler cannot read: 400 in the JSON body, naming the problem.
    for query in ["limit=abc", "offset=1.5", "limit=99999999999999999999"] {
        let req = s
            .client
            .get(s.url(&format!("/api/customers?{query}")))
            .bearer_auth(ADMIN_TOKEN);
        let (status, headers, body) = answer(req).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_error_body(query, &body, "bad_request");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{query}"
        );
    }

    // No such route is the same shape.
    let (status, _, body) = answer(s.client.get(s.url("/api/nothing/here"))).await;
    assert_eq!(status, 404);
    assert_error_body("unknown route", &body, "not_found");

    // And successes are untouched.
    let (status, _, body) = answer(
        s.client
            .get(s.url("/api/customers?limit=2"))
            .bearer_auth(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["limit"], 2);
}

async fn auth_scheme_is_case_insensitive_and_401s_say_bearer(s: TestServer) {
    let (status, body) = s.signup("auth@acme.example", PASSWORD, "Acme").await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = s
        .post_json(
            "/api/customers/login",
            &json!({"email": "auth@acme.example", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let session = body["token"].as_str().unwrap().to_string();

    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let req = s
            .client
            .get(s.url("/api/customers?limit=1"))
            .header("authorization", format!("{scheme} {ADMIN_TOKEN}"));
        let (status, _, body) = answer(req).await;
        assert_eq!(status, 200, "admin with {scheme}: {body}");
        let req = s
            .client
            .get(s.url("/api/customers/me"))
            .header("authorization", format!("{scheme} {session}"));
        let (status, _, body) = answer(req).await;
        assert_eq!(status, 200, "session with {scheme}: {body}");
        assert_eq!(body["customer"]["email"], "auth@acme.example");
    }

    // Every 401 names the scheme: no token, another scheme, a wrong token, bad credentials.
    let me = s.url("/api/customers/me");
    let cases = [
        ("no token", s.client.get(&me)),
        (
            "basic",
            s.client
                .get(&me)
                .header("authorization", format!("Basic {session}")),
        ),
        ("wrong token", s.client.get(&me).bearer_auth("garbage")),
        (
            "wrong admin token",
            s.client.get(s.url("/api/customers")).bearer_auth("nope"),
        ),
        (
            "bad login",
            s.client
                .post(s.url("/api/customers/login"))
                .json(&json!({"email": "auth@acme.example", "password": "wrong-password"})),
        ),
    ];
    for (what, req) in cases {
        let (status, headers, body) = answer(req).await;
        assert_eq!(status, 401, "{what}: {body}");
        let challenge = headers
            .get("www-authenticate")
            .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"))
            .to_str()
            .unwrap();
        assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
        assert!(body["code"].is_string(), "{what}: {body}");
    }
}

/// Sends `request` as raw bytes; the status, head and JSON body of the answer (hyper closes the
/// connection after a parse error, so the answer is read to its end).
async fn raw(s: &TestServer, request: &[u8]) -> (u16, String, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before it has read all of a huge request.
    let _ = tcp.write_all(request).await;
    let mut out = Vec::new();
    let read = tcp.read_to_end(&mut out);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), read).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, head.to_ascii_lowercase(), json)
}

async fn unparsable_requests_get_the_json_error_body(s: TestServer) {
    let long_uri = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(70_000));
    let big_header = format!(
        "GET /health HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "b".repeat(500_000)
    );
    let login =
        "POST /api/customers/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n";
    let cases = [
        ("URI over 64 KiB", long_uri, 414, "uri_too_long"),
        (
            "headers over hyper's buffer",
            big_header,
            431,
            "headers_too_large",
        ),
        (
            "no request target",
            "GET\r\n\r\n".to_string(),
            400,
            "bad_request",
        ),
        (
            "garbage request line",
            "\x01\x02 nonsense\r\n\r\n".to_string(),
            400,
            "bad_request",
        ),
        (
            "unknown version",
            "GET /health HTTP/7.1\r\n\r\n".to_string(),
            400,
            "bad_request",
        ),
        (
            "Content-Length not a number",
            format!("{login}content-length: abc\r\n\r\n{{}}"),
            400,
            "bad_request",
        ),
        (
            "Content-Lengths that disagree",
            format!("{login}content-length: 2\r\ncontent-length: 3\r\n\r\n{{}}"),
            400,
            "bad_request",
        ),
    ];
    for (what, request, status, code) in cases {
        let (got, head, body) = raw(&s, request.as_bytes()).await;
        assert_eq!(got, status, "{what}: {head}");
        assert!(
            head.contains("content-type: application/json"),
            "{what}: {head}"
        );
        assert_error_body(what, &body, code);
    }
    // The server is none the worse: a well-formed request on a new connection is served.
    let (got, _, body) = raw(
        &s,
        b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((got, &body["status"]), (200, &json!("ok")), "{body}");
}

async fn a_nul_character_is_invalid_characters(s: TestServer) {
    for (field, body) in [
        (
            "email",
            json!({"email": "nul\u{0}@acme.example", "password": PASSWORD, "company_name": "A"}),
        ),
        (
            "company_name",
            json!({"email": "nul@acme.example", "password": PASSWORD, "company_name": "A\u{0}B"}),
        ),
        (
            "password",
            json!({"email": "nul@acme.example", "password": "correct-\u{0}-horse", "company_name": "A"}),
        ),
    ] {
        let (status, body) = s.post_json("/api/customers/signup", &body).await;
        assert_eq!(status, 400, "{field}: {body}");
        assert_error_body(field, &body, "invalid_characters");
        assert_eq!(body["field"], field, "{body}");
    }
    let db = s.db().await;
    let sql = "SELECT COUNT(*) FROM customers WHERE email_normalized LIKE $1";
    assert_eq!(count(&db, sql, "nul%").await, 0);
}
