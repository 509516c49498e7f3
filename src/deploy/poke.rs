//! After a successful push, tell the cluster's GitOps agent that the branch moved, so it
//! syncs within seconds instead of at its next poll.
//!
//! Two peers, each spoken exactly as it parses requests:
//!
//! - **Flux** notification-controller `Receiver` (`notification.toolkit.fluxcd.io/v1`), posted
//!   at its `/hook/<digest>` path. Type `generic` accepts any request; type `generic-hmac`
//!   checks `X-Signature: <sha1|sha256|sha512>=<hex HMAC of the raw body>` keyed with the
//!   Receiver's `token` (go-github `ValidateSignature`). We send `sha256`.
//! - **Argo CD** `/api/webhook`, which only understands real Git provider events. We send a
//!   GitHub `push` event (`X-GitHub-Event: push`) carrying what Argo CD reads: `ref`, `after`,
//!   `before`, `commits`, `repository.html_url` (matched against each Application's `repoURL`)
//!   and `repository.default_branch` (decides whether apps tracking `HEAD` refresh). With
//!   `webhook.github.secret` set in `argocd-secret` it is signed as GitHub does:
//!   `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`.
//!
//! One attempt, bounded by [`TIMEOUT`]; the agent's own polling interval is the fallback.
//! Secrets never appear in errors or `Debug` output, and neither does the hook URL's path
//! (a Flux `generic` Receiver's path is its only credential).

use std::fmt;
use std::time::Duration;

use anyhow::{anyhow, bail};
use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::Sha256;

/// The whole exchange (connect, send, response body) must finish within this.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Most bytes of a failed response's body quoted in the error.
const ERROR_BODY_MAX: usize = 300;

/// GitHub's `before` for an unknown previous commit. Argo CD only uses `before` to carry
/// cached manifests over when the listed changed files miss the app, and we list none
/// (`commits: []` means "assume everything changed"), so it is never read.
const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// Which agent listens at the webhook URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PokeKind {
    /// A Flux notification-controller Receiver of type `generic` or `generic-hmac`.
    Flux,
    /// Argo CD's `/api/webhook` endpoint (speaks GitHub push events).
    Argocd,
}

impl fmt::Display for PokeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PokeKind::Flux => "Flux receiver",
            PokeKind::Argocd => "Argo CD webhook",
        })
    }
}

/// Where and how to poke.
#[derive(Clone)]
pub struct PokeTarget {
    /// Flux: the Receiver's full URL (`https://<host>/hook/<digest>`);
    /// Argo CD: `https://<argocd>/api/webhook`.
    pub url: String,
    pub kind: PokeKind,
    /// Flux: the Receiver's `token` (switches on `X-Signature`, for `generic-hmac`);
    /// Argo CD: `webhook.github.secret` (switches on `X-Hub-Signature-256`).
    pub secret: Option<SecretString>,
    /// The repository as the Git provider shows it (https, ssh or scp-like form); Argo CD
    /// matches it against Applications' `repoURL`. Required for Argo CD, unused by Flux.
    pub repo_url: Option<String>,
}

impl fmt::Debug for PokeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PokeTarget")
            .field("url", &redacted_origin(&self.url))
            .field("kind", &self.kind)
            .field("secret", &self.secret().map(|_| "[REDACTED]"))
            .field("repo_url", &self.repo_url.as_deref().map(strip_userinfo))
            .finish()
    }
}

impl PokeTarget {
    /// The secret, an empty one counting as none.
    fn secret(&self) -> Option<&SecretString> {
        self.secret
            .as_ref()
            .filter(|s| !s.expose_secret().is_empty())
    }
}

/// POSTs the notification for `branch` at `revision` (a 40-hex commit id). Bounded: 5 s
/// timeout, no retries (the cluster's own interval is the fallback). Returns Err with a clear
/// message on non-2xx or network error.
pub async fn poke(
    client: &reqwest::Client,
    target: &PokeTarget,
    branch: &str,
    revision: &str,
) -> anyhow::Result<()> {
    let kind = target.kind;
    let branch = branch.strip_prefix("refs/heads/").unwrap_or(branch);
    if branch.is_empty() {
        bail!("{kind}: empty branch name");
    }
    if revision.len() != 40 || !revision.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{kind}: revision {revision:?} is not a 40-hex commit id");
    }
    let revision = revision.to_ascii_lowercase();
    let url = Url::parse(target.url.trim())
        .map_err(|e| anyhow!("{kind}: SYNC_WEBHOOK_URL is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!(
            "{kind}: SYNC_WEBHOOK_URL must be http:// or https://, not {}://",
            url.scheme()
        );
    }
    let origin = redacted_origin(url.as_str());

    let (body, headers) = match kind {
        PokeKind::Flux => flux_request(target, branch, &revision)?,
        PokeKind::Argocd => argocd_request(target, branch, &revision)?,
    };

    let mut request = client
        .post(url)
        .timeout(TIMEOUT)
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, concat!("billing/", env!("CARGO_PKG_VERSION")));
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let mut response = request.body(body).send().await.map_err(|e| {
        let e = e.without_url();
        if e.is_timeout() {
            anyhow!(
                "{kind} at {origin}: no answer within {} s",
                TIMEOUT.as_secs()
            )
        } else {
            let cause = error_chain(&e);
            let hint = if origin.starts_with("https:") && cause.contains("scheme is not http") {
                " (this HTTP client is built without TLS: use the peer's in-cluster http:// \
                 address, or enable a TLS feature of reqwest)"
            } else {
                ""
            };
            anyhow!("{kind} at {origin} unreachable: {cause}{hint}")
        }
    })?;

    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    // Quote the start of the peer's explanation (Argo CD says e.g. "HMAC verification failed").
    let mut quoted = Vec::new();
    while quoted.len() < ERROR_BODY_MAX {
        match response.chunk().await {
            Ok(Some(chunk)) => quoted.extend_from_slice(&chunk),
            _ => break,
        }
    }
    quoted.truncate(ERROR_BODY_MAX);
    let text: String = String::from_utf8_lossy(&quoted)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    if text.is_empty() {
        bail!("{kind} at {origin} answered {status}");
    }
    bail!("{kind} at {origin} answered {status}: {text}")
}

type Headers = Vec<(&'static str, String)>;

/// Flux `generic`/`generic-hmac` Receiver: a small JSON body (usable from a Receiver's
/// `resourceFilter` as `request.body`), signed when a token is set.
fn flux_request(
    target: &PokeTarget,
    branch: &str,
    revision: &str,
) -> anyhow::Result<(Vec<u8>, Headers)> {
    let body = serde_json::to_vec(&json!({
        "branch": branch,
        "revision": format!("{branch}@sha1:{revision}"),
    }))?;
    let mut headers = Headers::new();
    if let Some(secret) = target.secret() {
        headers.push((
            "X-Signature",
            format!("sha256={}", hmac_sha256_hex(secret, &body)),
        ));
    }
    Ok((body, headers))
}

/// Argo CD: a GitHub push event as GitHub sends it, limited to fields whose JSON types match
/// what go-playground/webhooks decodes (Argo CD rejects a payload that fails to decode).
fn argocd_request(
    target: &PokeTarget,
    branch: &str,
    revision: &str,
) -> anyhow::Result<(Vec<u8>, Headers)> {
    let repo_url = target
        .repo_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            anyhow!(
                "Argo CD webhook needs the repository URL its Applications use: \
                 set SYNC_WEBHOOK_REPO_URL (or GITOPS_REMOTE)"
            )
        })?;
    let repo = GitHubRepo::from_url(repo_url)?;
    let body = serde_json::to_vec(&json!({
        "ref": format!("refs/heads/{branch}"),
        "before": ZERO_SHA,
        "after": revision,
        "created": false,
        "deleted": false,
        "forced": false,
        "base_ref": null,
        // Empty: Argo CD then assumes every file changed and refreshes every matching app,
        // whatever its manifest-generate-paths annotation says.
        "commits": [],
        "head_commit": null,
        "repository": {
            "name": repo.name,
            "full_name": repo.full_name,
            "html_url": repo.html_url,
            "url": repo.html_url,
            "clone_url": repo.clone_url,
            "ssh_url": repo.ssh_url,
            // Argo CD refreshes apps whose targetRevision is HEAD only when the push touched
            // the default branch. The pushed branch is the one the cluster is meant to follow,
            // so present it as the default; an app tracking HEAD of another default branch
            // merely gets one extra (harmless) refresh.
            "default_branch": branch,
        },
    }))?;
    let mut headers: Headers = vec![
        ("X-GitHub-Event", "push".to_string()),
        ("X-GitHub-Delivery", uuid::Uuid::new_v4().to_string()),
    ];
    if let Some(secret) = target.secret() {
        headers.push((
            "X-Hub-Signature-256",
            format!("sha256={}", hmac_sha256_hex(secret, &body)),
        ));
    }
    Ok((body, headers))
}

/// The repository URLs GitHub puts in a push event, derived from any common remote form.
#[derive(Debug, PartialEq, Eq)]
struct GitHubRepo {
    /// `https://host[:port]/owner/repo` — no credentials, no `.git`.
    html_url: String,
    clone_url: String,
    ssh_url: String,
    full_name: String,
    name: String,
}

impl GitHubRepo {
    /// Accepts `https://[user@]host[:port]/path[.git]`, `ssh://[user@]host[:port]/path[.git]`
    /// and scp-like `[user@]host:path[.git]`. Argo CD builds its matching regex from the
    /// host and path of `html_url`, and accepts any of those forms in an app's `repoURL`.
    fn from_url(repo_url: &str) -> anyhow::Result<Self> {
        let shown = strip_userinfo(repo_url);
        let unusable = |why: &str| {
            anyhow!("repository URL {shown:?} {why}; set SYNC_WEBHOOK_REPO_URL to the URL your Argo CD apps use")
        };
        let (web_scheme, host, port, path) = if repo_url.contains("://") {
            let url =
                Url::parse(repo_url).map_err(|e| unusable(&format!("does not parse ({e})")))?;
            let host = url
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| unusable("has no host (a local path cannot be matched by Argo CD)"))?
                .to_string();
            match url.scheme() {
                "http" | "https" => (
                    url.scheme().to_string(),
                    host,
                    url.port(),
                    url.path().to_string(),
                ),
                "ssh" | "git" | "git+ssh" | "ssh+git" => {
                    ("https".to_string(), host, None, url.path().to_string())
                }
                other => {
                    return Err(unusable(&format!(
                        "has scheme {other}://, not http(s) or ssh"
                    )))
                }
            }
        } else {
            // scp-like: [user@]host:path
            let rest = repo_url.rsplit_once('@').map_or(repo_url, |(_, r)| r);
            let (host, path) = rest
                .split_once(':')
                .filter(|(h, _)| !h.is_empty() && !h.contains('/'))
                .ok_or_else(|| {
                    unusable("is not a network URL (a local path cannot be matched by Argo CD)")
                })?;
            (
                "https".to_string(),
                host.to_string(),
                None,
                path.to_string(),
            )
        };
        let path = path.trim_matches('/');
        let path = path
            .strip_suffix(".git")
            .unwrap_or(path)
            .trim_end_matches('/');
        if path.is_empty() {
            return Err(unusable("has no repository path"));
        }
        let authority = match port {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        let html_url = format!("{web_scheme}://{authority}/{path}");
        Ok(GitHubRepo {
            clone_url: format!("{html_url}.git"),
            ssh_url: format!("git@{host}:{path}.git"),
            name: path.rsplit('/').next().unwrap_or(path).to_string(),
            full_name: path.to_string(),
            html_url,
        })
    }
}

fn hmac_sha256_hex(secret: &SecretString, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `scheme://host[:port]/…`: enough to tell operators where, without the hook path.
fn redacted_origin(url: &str) -> String {
    match Url::parse(url.trim()) {
        Ok(u) if u.host_str().is_some() => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let host = u.host_str().unwrap_or_default();
            format!("{}://{host}{port}/…", u.scheme())
        }
        _ => "<unparsable URL>".to_string(),
    }
}

/// The URL without `user:password@` (an https remote may embed a token).
fn strip_userinfo(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let sep = if rest.contains('/') { "/" } else { "" };
        return format!("{scheme}://{host}{sep}{path}");
    }
    url.to_string()
}

/// `error: cause: cause`, without URLs (reqwest puts the full URL in its messages).
fn error_chain(err: &reqwest::Error) -> String {
    let mut out = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
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
        let Ok(tag) = decode_hex(hex_mac) else {
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
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        signature.len() >= 6 && signature == expected
    }

    fn decode_hex(s: &str) -> Result<Vec<u8>, ()> {
        if !s.len().is_multiple_of(2) {
            return Err(());
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| ()))
            .collect()
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
}
