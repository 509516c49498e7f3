//! `/api/openapi.json` from the running server: every route of the router (read from the
//! `.route(` calls of src/http/mod.rs, so a new route without a description fails here) is in
//! it and nothing else; every example in it validates against its schema; and real answers of
//! the server validate against the schemas documented for them.

mod common;

use std::collections::BTreeSet;

use common::{Backend, TestServer, ADMIN_TOKEN, PASSWORD};
use serde_json::{json, Value};

/// The (METHOD, path) pairs the router serves, from the source that builds it.
fn router_routes() -> BTreeSet<(String, String)> {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/mod.rs"))
        .expect("src/http/mod.rs");
    // Comments out: they may name `.route(` too.
    let source: String = source
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut routes = BTreeSet::new();
    for (at, _) in source.match_indices(".route(") {
        // The call's arguments: up to the parenthesis that closes `.route(`.
        let args = &source[at + ".route(".len()..];
        let mut depth = 1;
        let end = args
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map(|(i, _)| i)
            .expect("a closed .route( call");
        let args = &args[..end];
        let path = args.split('"').nth(1).expect("a path literal").to_string();
        let mut methods = 0;
        for method in ["get", "post", "put", "patch", "delete"] {
            let called = args.match_indices(&format!("{method}(")).any(|(i, _)| {
                i == 0 || !args[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            if called {
                routes.insert((method.to_uppercase(), path.clone()));
                methods += 1;
            }
        }
        assert!(methods > 0, "no method found in .route({args})");
    }
    assert!(routes.len() > 20, "{routes:?}");
    routes
}

fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            routes.insert((method.to_uppercase(), path.clone()));
        }
    }
    routes
}

/// A validator for `schema`, whose `$ref`s point into the document's components.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    // Strict at the top: a field served but not described fails (nested objects stay open).
    let mut root = json!({ "components": doc["components"], "unevaluatedProperties": false });
    for (key, value) in schema.as_object().expect("a schema object") {
        if key != "example" && key != "examples" {
            root[key] = value.clone();
        }
    }
    jsonschema::draft202012::new(&root)
        .unwrap_or_else(|e| panic!("not a valid JSON Schema ({e}): {schema}"))
}

fn assert_valid(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    let v = validator(doc, schema);
    let errors: Vec<String> = v.iter_errors(instance).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its schema: {errors:#?}\ninstance: {instance:#}\nschema: {schema:#}"
    );
}

/// Every example in the document, with the schema it illustrates and where it is.
fn examples(doc: &Value) -> Vec<(String, Value, Value)> {
    fn walk(node: &Value, at: String, out: &mut Vec<(String, Value, Value)>) {
        match node {
            Value::Object(map) => {
                // A media type's example illustrates its `schema`; a schema's, the schema.
                let schema = map.get("schema").unwrap_or(node);
                if let Some(example) = map.get("example") {
                    out.push((at.clone(), schema.clone(), example.clone()));
                }
                match map.get("examples") {
                    Some(Value::Array(list)) => {
                        for example in list {
                            out.push((at.clone(), schema.clone(), example.clone()));
                        }
                    }
                    Some(Value::Object(named)) => {
                        for (name, example) in named {
                            out.push((
                                format!("{at}/{name}"),
                                schema.clone(),
                                example["value"].clone(),
                            ));
                        }
                    }
                    _ => {}
                }
                for (key, child) in map {
                    if key != "example" && key != "examples" {
                        walk(child, format!("{at}/{key}"), out);
                    }
                }
            }
            Value::Array(list) => {
                for (i, child) in list.iter().enumerate() {
                    walk(child, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, String::new(), &mut out);
    out
}

/// The schema documented for `status` answers of `method path` (as JSON).
fn response_schema<'a>(doc: &'a Value, method: &str, path: &str, status: u16) -> &'a Value {
    let schema = &doc["paths"][path][method]["responses"][status.to_string()]["content"]
        ["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "no JSON schema documented for {method} {path} {status}"
    );
    schema
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_covers_the_router_and_the_answers() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let (code, doc) = s.get_json("/api/openapi.json", None).await;
    assert_eq!(code, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );

    let served = router_routes();
    let documented = documented_routes(&doc);
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes without a description: {undocumented:?}"
    );
    let stale: Vec<_> = documented.difference(&served).collect();
    assert!(stale.is_empty(), "described but not served: {stale:?}");
    let mut ids = BTreeSet::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            let id = operation["operationId"].as_str().expect("an operationId");
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
        }
    }

    let examples = examples(&doc);
    assert!(examples.len() >= 10, "{} examples", examples.len());
    for (at, schema, example) in &examples {
        assert_valid(&doc, schema, example, &format!("the example at {at}"));
    }

    // Real answers against what is documented for them.
    let check = |method: &str, path: &str, status: u16, body: &Value| {
        assert_valid(
            &doc,
            response_schema(&doc, method, path, status),
            body,
            &format!("{method} {path} {status}"),
        );
    };
    let signup = json!({
        "email": "doc@acme.example", "password": PASSWORD, "company_name": "Doc Co", "full_name": "Ada"
    });
    let (code, created) = s.post_json("/api/customers/signup", &signup).await;
    assert_eq!(code, 201, "{created}");
    check("post", "/api/customers/signup", 201, &created);
    let id = created["customer"]["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let jwt = created["license"]["jwt"].as_str().unwrap().to_string();
    let (code, again) = s.post_json("/api/customers/signup", &signup).await;
    assert_eq!(code, 409);
    check("post", "/api/customers/signup", 409, &again);
    let (code, missing) = s.post_json("/api/customers/signup", &json!({})).await;
    assert_eq!(code, 400);
    check("post", "/api/customers/signup", 400, &missing);

    let login = json!({ "email": "doc@acme.example", "password": PASSWORD });
    let (code, session) = s.post_json("/api/customers/login", &login).await;
    assert_eq!(code, 200, "{session}");
    check("post", "/api/customers/login", 200, &session);
    let token = session["token"].as_str().unwrap();
    let (code, me) = s.get_json("/api/customers/me", Some(token)).await;
    assert_eq!(code, 200);
    check("get", "/api/customers/me", 200, &me);

    s.wait_for_status(&id, "committed", std::time::Duration::from_secs(30))
        .await;
    let admin = Some(ADMIN_TOKEN);
    for (path, template) in [
        (format!("/api/customers/{id}"), "/api/customers/{id}"),
        ("/api/customers".to_string(), "/api/customers"),
        (
            format!("/api/customers/{id}/deployment/status"),
            "/api/customers/{id}/deployment/status",
        ),
        (
            format!("/api/customers/{id}/history"),
            "/api/customers/{id}/history",
        ),
        (
            format!("/api/subscriptions/{id}"),
            "/api/subscriptions/{customer_id}",
        ),
        ("/health".to_string(), "/health"),
        ("/readyz".to_string(), "/readyz"),
        (
            "/api/licenses/public-key".to_string(),
            "/api/licenses/public-key",
        ),
        (
            "/.well-known/jwks.json".to_string(),
            "/.well-known/jwks.json",
        ),
    ] {
        let (code, body) = s.get_json(&path, admin).await;
        assert_eq!(code, 200, "{path}: {body}");
        check("get", template, 200, &body);
    }
    let (code, body) = s.get_json("/api/customers/nosuchcustomer0", admin).await;
    assert_eq!(code, 404);
    check("get", "/api/customers/{id}", 404, &body);
    let (code, body) = s.get_json("/api/subscriptions/me", Some(token)).await;
    assert_eq!(code, 200);
    check("get", "/api/subscriptions/me", 200, &body);
    let (code, body) = s
        .post_json("/api/licenses/verify", &json!({ "license": jwt }))
        .await;
    assert_eq!(code, 200, "{body}");
    check("post", "/api/licenses/verify", 200, &body);
    let (code, body) = s
        .post_json("/api/licenses/verify", &json!({ "license": "not.a.jwt" }))
        .await;
    assert_eq!(code, 401);
    check("post", "/api/licenses/verify", 401, &body);
    let (code, body) = s.admin_post(&format!("/api/customers/{id}/deploy")).await;
    assert_eq!(code, 202, "{body}");
    check("post", "/api/customers/{id}/deploy", 202, &body);
    let (code, body) = s.admin_post("/api/admin/tenants/redeploy").await;
    assert_eq!(code, 202, "{body}");
    check("post", "/api/admin/tenants/redeploy", 202, &body);
}
