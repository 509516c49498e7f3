//! The pokes against their documented receivers: Flux generic/generic-hmac, Argo CD.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::*;

const REV: &str = "0123456789abcdef0123456789abcdef01234567";
const HOOK: &str = "/hook/bed6d00b5555b1603e1f59b94d7fdbca58089cb5663633fb83f2815dc626d92b";

/// One request as the peer saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone)]
struct Peer {
    seen: Arc<Mutex<Vec<Seen>>>,
    status: StatusCode,
    reply: &'static str,
}

async fn record(
    State(peer): State<Peer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    peer.seen.lock().unwrap().push(Seen {
        method,
        path: uri.path().to_string(),
        headers,
        body,
    });
    (peer.status, peer.reply)
}

/// A recording HTTP server on 127.0.0.1; returns its base URL and what it receives.
async fn peer(status: StatusCode, reply: &'static str) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = Peer {
        seen: seen.clone(),
        status,
        reply,
    };
    let app = Router::new().fallback(record).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), seen)
}

fn only(seen: &Arc<Mutex<Vec<Seen>>>) -> Seen {
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "exactly one request, no retries: {seen:?}");
    seen[0].clone()
}

fn target(url: String, kind: PokeKind, secret: Option<&str>, repo: Option<&str>) -> PokeTarget {
    PokeTarget {
        url,
        kind,
        secret: secret.map(|s| SecretString::from(s.to_string())),
        repo_url: repo.map(str::to_string),
    }
}

/// What go-github's `ValidateSignature` does for Flux `generic-hmac`: split at the first
/// `=`, pick the hash by name, hex-decode, constant-time compare.
fn flux_accepts(signature: &str, body: &[u8], token: &str) -> bool {
    let Some((hash, hex_mac)) = signature.split_once('=') else {
        return false;
    };
    assert_eq!(hash, "sha256", "we sign with sha256");
    let Ok(tag) = hex::decode(hex_mac) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// What go-playground/webhooks (Argo CD) does: trim `sha256=`, compare with the hex of
/// HMAC-SHA256(secret, body).
fn argocd_accepts(signature: &str, body: &[u8], secret: &str) -> bool {
    let signature = signature.strip_prefix("sha256=").unwrap_or(signature);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    signature.len() >= 6 && signature == expected
}

#[tokio::test]
async fn flux_generic_posts_json_to_the_exact_hook_path() {
    let (base, seen) = peer(StatusCode::OK, "").await;
    let t = target(format!("{base}{HOOK}"), PokeKind::Flux, None, None);
    poke(&reqwest::Client::new(), &t, "main", REV)
        .await
        .unwrap();

    let req = only(&seen);
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.path, HOOK);
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("x-signature"), None, "no token, no signature");
    assert_eq!(
        req.json(),
        json!({"branch": "main", "revision": format!("main@sha1:{REV}")})
    );
}

#[tokio::test]
async fn flux_generic_hmac_signature_verifies_against_the_raw_body() {
    let (base, seen) = peer(StatusCode::OK, "").await;
    let token = "4f2a9c1e8b7d6a5f4e3d2c1b0a998877";
    let t = target(format!("{base}{HOOK}"), PokeKind::Flux, Some(token), None);
    poke(&reqwest::Client::new(), &t, "refs/heads/prod", REV)
        .await
        .unwrap();

    let req = only(&seen);
    assert_eq!(req.path, HOOK);
    let signature = req.header("x-signature").expect("X-Signature header");
    assert!(signature.starts_with("sha256="), "{signature}");
    assert!(flux_accepts(signature, &req.body, token));
    assert!(!flux_accepts(signature, &req.body, "another-token"));
    assert!(!flux_accepts(signature, b"{\"tampered\":true}", token));
    assert_eq!(req.json()["revision"], format!("prod@sha1:{REV}"));
}

#[tokio::test]
async fn argocd_gets_a_signed_github_push_event() {
    let (base, seen) = peer(StatusCode::OK, "").await;
    let secret = "argocd-webhook-github-secret";
    let t = target(
        format!("{base}/api/webhook"),
        PokeKind::Argocd,
        Some(secret),
        Some("https://x-access-token:ghp_leak@github.com/acme/gitops.git"),
    );
    poke(&reqwest::Client::new(), &t, "main", REV)
        .await
        .unwrap();

    let req = only(&seen);
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.path, "/api/webhook");
    assert_eq!(req.header("x-github-event"), Some("push"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert!(req.header("x-github-delivery").is_some());
    let signature = req
        .header("x-hub-signature-256")
        .expect("X-Hub-Signature-256");
    assert!(signature.starts_with("sha256="));
    assert!(argocd_accepts(signature, &req.body, secret));
    assert!(!argocd_accepts(signature, &req.body, "wrong"));

    let body = req.json();
    // What Argo CD's affectedRevisionInfo reads from a github.PushPayload.
    assert_eq!(body["ref"], "refs/heads/main");
    let ref_ = body["ref"].as_str().unwrap();
    // ParseRevision: strings.SplitN(ref, "/", 3), last part.
    assert_eq!(ref_.splitn(3, '/').last(), Some("main"));
    assert_eq!(body["after"], REV);
    assert_eq!(body["before"].as_str().unwrap().len(), 40);
    assert_eq!(body["commits"], json!([]));
    assert_eq!(
        body["repository"]["html_url"],
        "https://github.com/acme/gitops"
    );
    assert_eq!(
        body["repository"]["clone_url"],
        "https://github.com/acme/gitops.git"
    );
    assert_eq!(body["repository"]["default_branch"], "main");
    assert!(
        !String::from_utf8_lossy(&req.body).contains("ghp_leak"),
        "credentials in the remote URL must not be sent"
    );
}

#[tokio::test]
async fn argocd_without_secret_is_unsigned() {
    let (base, seen) = peer(StatusCode::OK, "").await;
    let t = target(
        format!("{base}/api/webhook"),
        PokeKind::Argocd,
        Some(""),
        Some("git@github.com:acme/gitops.git"),
    );
    poke(&reqwest::Client::new(), &t, "main", REV)
        .await
        .unwrap();
    let req = only(&seen);
    assert_eq!(req.header("x-hub-signature-256"), None);
    assert_eq!(
        req.json()["repository"]["html_url"],
        "https://github.com/acme/gitops"
    );
}

#[tokio::test]
async fn argocd_needs_a_repo_url() {
    let (base, seen) = peer(StatusCode::OK, "").await;
    let t = target(format!("{base}/api/webhook"), PokeKind::Argocd, None, None);
    let err = poke(&reqwest::Client::new(), &t, "main", REV)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("SYNC_WEBHOOK_REPO_URL"), "{err}");
    assert!(seen.lock().unwrap().is_empty(), "nothing sent");

    let t = target(
        format!("{base}/api/webhook"),
        PokeKind::Argocd,
        None,
        Some("/srv/git/gitops.git"),
    );
    let err = poke(&reqwest::Client::new(), &t, "main", REV)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("SYNC_WEBHOOK_REPO_URL"), "{err}");
}

#[tokio::test]
async fn a_500_is_an_error_naming_the_status() {
    let (base, seen) = peer(
        StatusCode::INTERNAL_SERVER_ERROR,
        "unable to request reconciliation",
    )
    .await;
    let secret = "s3cr3t-token-value";
    let t = target(format!("{base}{HOOK}"), PokeKind::Flux, Some(secret), None);
    let err = poke(&reqwest::Client::new(), &t, "main", REV)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("500"), "{err}");
    assert!(err.contains("unable to request reconciliation"), "{err}");
    assert!(!err.contains(secret), "{err}");
    assert!(
        !err.contains("bed6d00b"),
        "hook path is a credential: {err}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "no retries");
}

#[tokio::test]
async fn an_unreachable_peer_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let t = target(
        format!("http://{addr}{HOOK}"),
        PokeKind::Flux,
        Some("tok"),
        None,
    );
    let err = poke(&reqwest::Client::new(), &t, "main", REV)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unreachable"), "{err}");
    assert!(err.contains(&addr.port().to_string()), "{err}");
    assert!(
        !err.contains("bed6d00b"),
        "hook path is a credential: {err}"
    );
}

#[tokio::test]
async fn https_without_tls_says_so() {
    // Port 9 (discard) on loopback: nothing is listening, and no traffic leaves the host.
    let t = target(
        format!("https://127.0.0.1:9{HOOK}"),
        PokeKind::Flux,
        None,
        None,
    );
    let err = poke(&reqwest::Client::new(), &t, "main", REV)
        .await
        .unwrap_err()
        .to_string();
    if err.contains("scheme is not http") {
        assert!(err.contains("without TLS"), "{err}");
    }
    assert!(!err.contains("bed6d00b"), "{err}");
}

#[tokio::test]
async fn a_silent_peer_is_cut_off_after_the_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // Accept and hold connections without ever answering.
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let t = target(format!("http://{addr}{HOOK}"), PokeKind::Flux, None, None);
    let started = Instant::now();
    let err = poke(&reqwest::Client::new(), &t, "main", REV)
        .await
        .unwrap_err()
        .to_string();
    let took = started.elapsed();
    assert!(err.contains("no answer within 5 s"), "{err}");
    assert!(took >= TIMEOUT - Duration::from_millis(100), "{took:?}");
    assert!(took < TIMEOUT + Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn bad_revisions_are_refused_before_sending() {
    let (base, seen) = peer(StatusCode::OK, "").await;
    let t = target(format!("{base}{HOOK}"), PokeKind::Flux, None, None);
    for rev in ["", "abc", &REV[..39], &format!("{}g", &REV[..39])] {
        assert!(poke(&reqwest::Client::new(), &t, "main", rev)
            .await
            .is_err());
    }
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn repo_urls_become_what_github_sends() {
    let github = |url| GitHubRepo::from_url(url).unwrap().html_url;
    for url in [
        "https://github.com/acme/gitops",
        "https://github.com/acme/gitops.git",
        "https://github.com/acme/gitops/",
        "https://token:x@github.com/acme/gitops.git",
        "ssh://git@github.com/acme/gitops.git",
        "ssh://git@github.com:22/acme/gitops.git",
        "git@github.com:acme/gitops.git",
        "github.com:acme/gitops",
    ] {
        assert_eq!(github(url), "https://github.com/acme/gitops", "{url}");
    }
    assert_eq!(
        github("https://git.example.com:8443/group/sub/gitops.git"),
        "https://git.example.com:8443/group/sub/gitops"
    );
    let repo = GitHubRepo::from_url("git@gitlab.example.com:group/sub/gitops.git").unwrap();
    assert_eq!(
        repo,
        GitHubRepo {
            html_url: "https://gitlab.example.com/group/sub/gitops".into(),
            clone_url: "https://gitlab.example.com/group/sub/gitops.git".into(),
            ssh_url: "git@gitlab.example.com:group/sub/gitops.git".into(),
            full_name: "group/sub/gitops".into(),
            name: "gitops".into(),
        }
    );
    for bad in [
        "/srv/gitops.git",
        "file:///srv/gitops.git",
        "https://github.com/",
        "./gitops",
    ] {
        assert!(GitHubRepo::from_url(bad).is_err(), "{bad}");
    }
    let err = GitHubRepo::from_url("file://u:pw@/x")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("pw"), "{err}");
}

#[test]
fn debug_hides_the_secret_and_the_hook_path() {
    let t = target(
        format!("https://flux.example.com{HOOK}"),
        PokeKind::Flux,
        Some("very-secret-token"),
        Some("https://user:pat123@github.com/acme/gitops.git"),
    );
    let shown = format!("{t:?}");
    assert!(!shown.contains("very-secret-token"), "{shown}");
    assert!(!shown.contains("bed6d00b"), "{shown}");
    assert!(!shown.contains("pat123"), "{shown}");
    assert!(shown.contains("flux.example.com"), "{shown}");
}
