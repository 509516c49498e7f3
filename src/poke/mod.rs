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
    hex::encode(mac.finalize().into_bytes())
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
mod tests;
