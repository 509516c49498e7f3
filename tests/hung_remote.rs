//! A remote that accepts connections and never answers (a TCP listener that stays silent, as a
//! wedged Git server or a black-holed proxy does): the service starts anyway, signups answer
//! and commit locally, status, history and `/readyz` answer at once, `/readyz` names the
//! stalled push, and SIGTERM ends the process cleanly.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestServer, ADMIN_TOKEN};

/// Accepts every connection on 127.0.0.1 and holds it open without a byte in reply.
fn silent_listener() -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let held = std::thread::spawn(move || {
        let mut sockets = Vec::new();
        let until = Instant::now() + Duration::from_secs(120);
        // Bounded: it ends with the test binary, or after two minutes at most.
        while Instant::now() < until {
            match listener.accept() {
                Ok((socket, _)) => sockets.push(socket),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (port, held)
}

/// A request that must answer within `within` (a stalled remote must not hold it).
async fn get_within(s: &TestServer, path: &str, within: Duration) -> (u16, serde_json::Value) {
    let resp = s
        .client
        .get(s.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .timeout(within)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path} did not answer within {within:?}: {e}"));
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_remote_holds_nothing_but_the_push() {
    let (port, _held) = silent_listener();
    let url = format!("git://127.0.0.1:{port}/tenants.git");
    let env = [
        ("GITOPS_REMOTE", url.as_str()),
        ("GITOPS_FETCH_INTERVAL_SECONDS", "1"),
        // Each fetch and push gives up after 15 s; /readyz names one waiting over 5 s.
        ("GITOPS_NETWORK_TIMEOUT_SECONDS", "15"),
    ];
    // A fresh start while the remote hangs: the listener comes first.
    let mut s = TestServer::start_with(Backend::Sqlite, &env).await.unwrap();
    let (code, _) = get_within(&s, "/readyz", Duration::from_secs(1)).await;
    assert_eq!(code, 200);

    let signup = s
        .client
        .post(s.url("/api/customers/signup"))
        .json(&serde_json::json!({
            "email": "stalled@acme.example",
            "password": common::PASSWORD,
            "company_name": "Stalled Co",
        }))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .expect("a signup answers while the remote hangs");
    assert_eq!(signup.status().as_u16(), 201);
    let body: serde_json::Value = signup.json().await.unwrap();
    let id = body["customer"]["customer_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Committed locally, although it cannot be pushed.
    let local = git2::Repository::open_bare(s.data_dir().join("gitops.git")).unwrap();
    let dir = billing::render::tenant_dir(&id);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let head = local.refname_to_id("refs/heads/main").unwrap();
        let tree = local.find_commit(head).unwrap().tree().unwrap();
        if tree.get_path(std::path::Path::new(&dir)).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never committed locally\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Status, history and readiness answer at once; /readyz names the stalled push (it waits
    // its turn behind the start-up fetch, which stalls first).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = format!("/api/customers/{id}/deployment/status");
        let (code, st) = get_within(&s, &status, Duration::from_secs(1)).await;
        assert_eq!(code, 200, "{st}");
        let history = format!("/api/customers/{id}/history");
        let (code, h) = get_within(&s, &history, Duration::from_secs(1)).await;
        assert_eq!(code, 200, "{h}");
        let (_, ready) = get_within(&s, "/readyz", Duration::from_secs(1)).await;
        let reason = ready["reason"].as_str().unwrap_or_default().to_string();
        if ready["status"] == "degraded" && reason.starts_with("push") {
            assert!(
                reason.contains("waited") || reason.contains("timed out"),
                "{ready}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never named the push: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let status = s.terminate(Duration::from_secs(10)).await;
    let status = status.unwrap_or_else(|| panic!("still running 10 s after SIGTERM\n{}", s.log()));
    assert!(status.success(), "{status}\n{}", s.log());
}
