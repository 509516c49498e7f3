//! Checkout and Billing Portal sessions through the running server. Stripe is a local HTTP
//! server answering the two session endpoints (which localstripe lacks) with Stripe's
//! documented objects and recording the forms it got; everything else (customers) it forwards
//! to a real localstripe.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use common::localstripe::LocalStripe;
use common::{Backend, TestServer, ADMIN_TOKEN, PASSWORD};
use serde_json::{json, Value};

const KEY: &str = "sk_test_checkout_0123456789";
const PRICE: &str = "price_professional_monthly";

/// One request the fake Stripe got: path, `Authorization`, decoded form.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    auth: String,
    form: Vec<(String, String)>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
struct Shared {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// When set, `POST /v1/checkout/sessions` answers this Stripe error.
    fail_checkout: Arc<Mutex<Option<Value>>>,
    /// When set, nothing is answered (past the server's STRIPE_TIMEOUT_SECONDS).
    hang: Arc<AtomicBool>,
    localstripe: String,
    http: reqwest::Client,
}

struct FakeStripe {
    url: String,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl FakeStripe {
    async fn start(localstripe: &LocalStripe) -> FakeStripe {
        let shared = Shared {
            localstripe: localstripe.base.clone(),
            ..Shared::default()
        };
        // `Connection: close`: no pooled connection outlives `stop`, so Stripe is really gone.
        let app = axum::Router::new()
            .fallback(answer)
            .layer(axum::middleware::map_response(|mut r: Response| async {
                r.headers_mut()
                    .insert("connection", axum::http::HeaderValue::from_static("close"));
                r
            }))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeStripe {
            url,
            shared,
            server,
        }
    }

    /// Stripe goes away: the port is closed from now on.
    async fn stop(&mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        let seen = self.shared.seen.lock().unwrap();
        seen.iter().filter(|s| s.path == path).cloned().collect()
    }
}

async fn answer(
    State(shared): State<Shared>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if shared.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    let path = uri.path().to_string();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // x-www-form-urlencoded is a query string's syntax; no form crate needed.
    let query = format!("http://form/?{}", String::from_utf8_lossy(&body));
    let form: Vec<(String, String)> = reqwest::Url::parse(&query)
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default();
    let n = {
        let mut seen = shared.seen.lock().unwrap();
        seen.push(Seen {
            path: path.clone(),
            auth: auth.clone(),
            form: form.clone(),
        });
        seen.len()
    };
    let get = |k: &str| {
        form.iter()
            .find(|(f, _)| f == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let object = match (method.as_str(), path.as_str()) {
        ("POST", "/v1/checkout/sessions") => {
            if let Some(error) = shared.fail_checkout.lock().unwrap().clone() {
                return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
            }
            let id = format!("cs_test_a1{n:06}");
            json!({
                "id": id, "object": "checkout.session", "mode": "subscription",
                "status": "open", "payment_status": "unpaid", "livemode": false,
                "customer": get("customer"), "client_reference_id": get("client_reference_id"),
                "success_url": get("success_url"), "cancel_url": get("cancel_url"),
                "url": format!("https://checkout.stripe.com/c/pay/{id}"),
            })
        }
        ("POST", "/v1/billing_portal/sessions") => json!({
            "id": format!("bps_1Test{n:06}"), "object": "billing_portal.session",
            "customer": get("customer"), "return_url": get("return_url"), "livemode": false,
            "url": format!("https://billing.stripe.com/p/session/test_{n:06}"),
        }),
        _ => return forward(&shared, method, &uri, &headers, body).await,
    };
    axum::Json(object).into_response()
}

/// Everything else is localstripe's: the same request, forwarded.
async fn forward(
    shared: &Shared,
    method: Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let mut req = shared
        .http
        .request(method, format!("{}{uri}", shared.localstripe))
        .body(body);
    for name in ["authorization", "content-type"] {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v);
        }
    }
    let resp = req.send().await.expect("forward to localstripe");
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let bytes = resp.bytes().await.unwrap();
    (status, [("content-type", "application/json")], bytes).into_response()
}

/// localstripe, the fake in front of it, and the server pointed at the fake.
async fn start(backend: Backend) -> Option<(TestServer, FakeStripe, LocalStripe)> {
    let localstripe = LocalStripe::start().await?;
    let fake = FakeStripe::start(&localstripe).await;
    let env = [
        ("STRIPE_SECRET_KEY", KEY),
        ("STRIPE_API_BASE", fake.url.as_str()),
        ("STRIPE_PRICE_PROFESSIONAL", PRICE),
        ("STRIPE_TIMEOUT_SECONDS", "2"),
    ];
    let server = TestServer::start_with(backend, &env).await?;
    Some((server, fake, localstripe))
}

async fn post(s: &TestServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(s.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// Signs a customer up; returns its id and session token.
async fn customer(s: &TestServer, email: &str) -> (String, String) {
    let (code, body) = s.signup(email, PASSWORD, "Acme GmbH").await;
    assert_eq!(code, 201, "{body}");
    let id = body["customer"]["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, login) = s
        .post_json(
            "/api/customers/login",
            &json!({ "email": email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(code, 200, "{login}");
    let token = login["token"].as_str().unwrap().to_string();
    (id, token)
}

fn checkout_body(plan: &str) -> Value {
    json!({
        "plan": plan,
        "success_url": "https://app.example.com/billing/done?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://app.example.com/billing",
    })
}

for_each_backend!(
    checkout_links_one_stripe_customer_and_opens_the_portal,
    stripe_failures_are_502_and_change_nothing,
    without_a_secret_key_checkout_is_unavailable,
);

async fn checkout_links_one_stripe_customer_and_opens_the_portal(backend: Backend) {
    let Some((s, fake, localstripe)) = start(backend).await else {
        return;
    };
    let (alice, alice_token) = customer(&s, "alice@example.com").await;
    let (bob, bob_token) = customer(&s, "bob@example.com").await;

    let (code, me) = s
        .get_json("/api/subscriptions/me", Some(&alice_token))
        .await;
    assert_eq!(code, 200, "{me}");
    assert_eq!(me["customer_id"], alice.as_str());
    assert_eq!(me["status"], "trialing");
    assert_eq!(me["plan"], "starter");
    assert!(me["trial_ends_at"].is_string(), "{me}");
    assert!(me["stripe_customer_id"].is_null(), "{me}");
    assert!(me["history"].is_array(), "{me}");

    // No Stripe customer yet: nothing to manage in the portal.
    let portal = json!({ "return_url": "https://app.example.com/account" });
    let (code, body) = post(
        &s,
        "/api/subscriptions/portal",
        &alice_token,
        portal.clone(),
    )
    .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (409, Some("no_stripe_customer")),
        "{body}"
    );

    let (code, started) = post(
        &s,
        "/api/subscriptions/checkout",
        &alice_token,
        checkout_body("professional"),
    )
    .await;
    assert_eq!(code, 200, "{started}\n{}", s.log());
    let session_id = started["session_id"].as_str().unwrap();
    assert!(session_id.starts_with("cs_test_"), "{started}");
    assert_eq!(
        started["checkout_url"],
        format!("https://checkout.stripe.com/c/pay/{session_id}")
    );

    // The Stripe customer was created in localstripe, linked back to us, and stored.
    let (_, me) = s
        .get_json("/api/subscriptions/me", Some(&alice_token))
        .await;
    let stripe_id = me["stripe_customer_id"]
        .as_str()
        .expect("stored")
        .to_string();
    let in_stripe = localstripe.get(&format!("/v1/customers/{stripe_id}")).await;
    assert_eq!(in_stripe["email"], "alice@example.com");
    assert_eq!(in_stripe["name"], "Acme GmbH");
    assert_eq!(in_stripe["metadata"]["customer_id"], alice.as_str());
    let audited = common::count(
        &s.db().await,
        "SELECT COUNT(*) FROM audit_log WHERE action = 'stripe.customer_created' AND customer_id = $1",
        &alice,
    )
    .await;
    assert_eq!(audited, 1);

    let sessions = fake.seen("/v1/checkout/sessions");
    assert_eq!(sessions.len(), 1);
    let form = &sessions[0];
    assert_eq!(form.auth, format!("Bearer {KEY}"));
    for (field, want) in [
        ("mode", "subscription"),
        ("customer", stripe_id.as_str()),
        ("line_items[0][price]", PRICE),
        ("line_items[0][quantity]", "1"),
        ("client_reference_id", alice.as_str()),
        ("metadata[customer_id]", alice.as_str()),
        ("metadata[plan]", "professional"),
        ("subscription_data[metadata][customer_id]", alice.as_str()),
        ("cancel_url", "https://app.example.com/billing"),
    ] {
        assert_eq!(form.field(field), Some(want), "{field} in {form:?}");
    }

    // A second checkout reuses the stored Stripe customer.
    let (code, again) = post(
        &s,
        "/api/subscriptions/checkout",
        &alice_token,
        checkout_body("professional"),
    )
    .await;
    assert_eq!(code, 200, "{again}");
    assert_ne!(again["session_id"], started["session_id"]);
    assert_eq!(fake.seen("/v1/customers").len(), 1, "one Stripe customer");
    assert_eq!(
        fake.seen("/v1/checkout/sessions")[1].field("customer"),
        Some(stripe_id.as_str())
    );

    let (code, opened) = post(&s, "/api/subscriptions/portal", &alice_token, portal).await;
    assert_eq!(code, 200, "{opened}");
    assert!(
        opened["url"]
            .as_str()
            .unwrap()
            .starts_with("https://billing.stripe.com/p/session/"),
        "{opened}"
    );
    let portal_form = &fake.seen("/v1/billing_portal/sessions")[0];
    assert_eq!(portal_form.field("customer"), Some(stripe_id.as_str()));
    assert_eq!(
        portal_form.field("return_url"),
        Some("https://app.example.com/account")
    );

    // The admin reads anyone's subscription and checks out for anyone; a customer only their own.
    let (code, view) = s
        .get_json(&format!("/api/subscriptions/{alice}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(code, 200, "{view}");
    assert_eq!(view["stripe_customer_id"], stripe_id.as_str());
    let (code, body) = s
        .get_json(&format!("/api/subscriptions/{alice}"), Some(&bob_token))
        .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let mut for_alice = checkout_body("professional");
    for_alice["customer_id"] = json!(alice);
    let (code, body) = post(&s, "/api/subscriptions/checkout", &bob_token, for_alice).await;
    assert_eq!(code, 404, "{body}");
    let mut for_bob = checkout_body("professional");
    for_bob["customer_id"] = json!(bob);
    let (code, body) = post(&s, "/api/subscriptions/checkout", ADMIN_TOKEN, for_bob).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        fake.seen("/v1/checkout/sessions")
            .last()
            .unwrap()
            .field("client_reference_id"),
        Some(bob.as_str())
    );
    let (code, body) = post(
        &s,
        "/api/subscriptions/checkout",
        ADMIN_TOKEN,
        checkout_body("professional"),
    )
    .await;
    assert_eq!(
        (code, body["field"].as_str()),
        (400, Some("customer_id")),
        "{body}"
    );

    // Bad input: 400 naming the field, and Stripe is not asked.
    let asked = fake.shared.seen.lock().unwrap().len();
    for (body, code, field) in [
        (checkout_body("platinum"), "unknown_plan", "plan"),
        (checkout_body("starter"), "plan_not_for_sale", "plan"),
        (
            json!({ "plan": "professional", "success_url": "/done", "cancel_url": "https://a.example/" }),
            "invalid_url",
            "success_url",
        ),
        (
            json!({ "plan": "professional", "success_url": "https://a.example/", "cancel_url": "javascript:alert(1)" }),
            "invalid_url",
            "cancel_url",
        ),
        (
            json!({ "plan": "professional", "success_url": "https://a.example/" }),
            "missing_field",
            "cancel_url",
        ),
    ] {
        let (status, got) = post(&s, "/api/subscriptions/checkout", &bob_token, body).await;
        assert_eq!(status, 400, "{got}");
        assert_eq!(
            (got["code"].as_str(), got["field"].as_str()),
            (Some(code), Some(field)),
            "{got}"
        );
        assert_eq!(got["error"], "Validation failed");
    }
    let (status, got) = post(
        &s,
        "/api/subscriptions/portal",
        &bob_token,
        json!({ "return_url": "nope" }),
    )
    .await;
    assert_eq!(
        (status, got["field"].as_str()),
        (400, Some("return_url")),
        "{got}"
    );
    assert_eq!(fake.shared.seen.lock().unwrap().len(), asked);
}

async fn stripe_failures_are_502_and_change_nothing(backend: Backend) {
    let Some((s, mut fake, _localstripe)) = start(backend).await else {
        return;
    };
    let (carol, carol_token) = customer(&s, "carol@example.com").await;
    let (_, dave_token) = customer(&s, "dave@example.com").await;

    // Stripe refuses the session: its message comes back in a 502.
    *fake.shared.fail_checkout.lock().unwrap() = Some(json!({ "error": {
        "type": "invalid_request_error", "code": "resource_missing", "param": "line_items[0][price]",
        "message": "No such price: 'price_professional_monthly'",
    }}));
    let (code, body) = post(
        &s,
        "/api/subscriptions/checkout",
        &carol_token,
        checkout_body("professional"),
    )
    .await;
    assert_eq!(code, 502, "{body}");
    assert_eq!(body["code"], "stripe_error");
    assert_eq!(body["error"], "Bad gateway");
    assert!(
        body["message"].as_str().unwrap().contains("No such price"),
        "{body}"
    );
    let (_, carol_view) = s
        .get_json(&format!("/api/subscriptions/{carol}"), Some(ADMIN_TOKEN))
        .await;
    let carol_stripe = carol_view["stripe_customer_id"].clone();
    assert!(
        carol_stripe.is_string(),
        "the Stripe customer Stripe made is kept: {carol_view}"
    );

    // Stripe does not answer: a 502 after STRIPE_TIMEOUT_SECONDS, and no Stripe id stored.
    let (_, erin_token) = customer(&s, "erin@example.com").await;
    fake.shared.hang.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let (code, body) = post(
        &s,
        "/api/subscriptions/checkout",
        &erin_token,
        checkout_body("professional"),
    )
    .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (502, Some("stripe_unavailable")),
        "{body}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let (_, erin_view) = s.get_json("/api/subscriptions/me", Some(&erin_token)).await;
    assert!(erin_view["stripe_customer_id"].is_null(), "{erin_view}");

    // Stripe is down: a 502 at once, and no Stripe id stored or changed.
    fake.stop().await;
    let started = Instant::now();
    let (code, body) = post(
        &s,
        "/api/subscriptions/checkout",
        &dave_token,
        checkout_body("professional"),
    )
    .await;
    assert_eq!(code, 502, "{body}");
    assert_eq!(body["code"], "stripe_unavailable");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("nothing was changed"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let (_, dave_view) = s.get_json("/api/subscriptions/me", Some(&dave_token)).await;
    assert!(dave_view["stripe_customer_id"].is_null(), "{dave_view}");

    let portal = json!({ "return_url": "https://app.example.com/account" });
    let (code, body) = post(&s, "/api/subscriptions/portal", &carol_token, portal).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (502, Some("stripe_unavailable")),
        "{body}"
    );
    let (_, after) = s
        .get_json(&format!("/api/subscriptions/{carol}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(after["stripe_customer_id"], carol_stripe);
    assert!(!s.log().contains(KEY), "the secret key is never logged");
}

async fn without_a_secret_key_checkout_is_unavailable(backend: Backend) {
    let env = [("STRIPE_PRICE_PROFESSIONAL", PRICE)];
    let Some(s) = TestServer::start_with(backend, &env).await else {
        return;
    };
    let (_, token) = customer(&s, "frank@example.com").await;
    let (code, body) = post(
        &s,
        "/api/subscriptions/checkout",
        &token,
        checkout_body("professional"),
    )
    .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("STRIPE_SECRET_KEY"),
        "{body}"
    );
    let (_, me) = s.get_json("/api/subscriptions/me", Some(&token)).await;
    assert!(me["stripe_customer_id"].is_null(), "{me}");
}
