//! Pull requests on a forge, for review mode: GitHub's REST API or GitLab's merge requests.
//! Only opening, reading the state and closing; whether a change reached main is read from
//! Git itself, so any Git host works without a forge.

mod github;
mod gitlab;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

pub use github::GitHub;
pub use gitlab::GitLab;

#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("forge request failed: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("forge answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("forge answer lacks {0}")]
    Shape(&'static str),
}

/// A pull (merge) request as the forge numbers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub number: i64,
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Open,
    Merged,
    /// Closed without being merged.
    Closed,
}

/// What a pull request says.
pub struct Proposal<'a> {
    pub branch: &'a str,
    pub base: &'a str,
    pub title: &'a str,
    pub body: &'a str,
}

pub enum Forge {
    GitHub(GitHub),
    GitLab(GitLab),
}

/// Forge calls give up after this long: the scan loop tries again.
const TIMEOUT: Duration = Duration::from_secs(15);

impl Forge {
    pub async fn open(
        &self,
        http: &reqwest::Client,
        p: &Proposal<'_>,
    ) -> Result<Opened, ForgeError> {
        match self {
            Forge::GitHub(f) => f.open(http, p).await,
            Forge::GitLab(f) => f.open(http, p).await,
        }
    }

    pub async fn state(
        &self,
        http: &reqwest::Client,
        number: i64,
    ) -> Result<RequestState, ForgeError> {
        match self {
            Forge::GitHub(f) => f.state(http, number).await,
            Forge::GitLab(f) => f.state(http, number).await,
        }
    }

    pub async fn close(&self, http: &reqwest::Client, number: i64) -> Result<(), ForgeError> {
        match self {
            Forge::GitHub(f) => f.close(http, number).await,
            Forge::GitLab(f) => f.close(http, number).await,
        }
    }
}

/// The JSON body of a successful answer, or the forge's own message as the error.
async fn json_of(resp: reqwest::Response) -> Result<serde_json::Value, ForgeError> {
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let message = body
        .get("message")
        .map(|m| match m {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    Err(ForgeError::Refused {
        status: status.as_u16(),
        message,
    })
}

fn token(secret: &SecretString) -> &str {
    secret.expose_secret()
}
