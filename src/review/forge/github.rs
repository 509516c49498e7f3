//! GitHub's REST API (also GitHub Enterprise through its API base): `POST /repos/{owner}/{repo}/pulls`
//! with `head` the review branch and `base` main, `GET` and `PATCH …/pulls/{number}`.

use secrecy::SecretString;
use serde_json::json;

use super::{json_of, token, ForgeError, Opened, Proposal, RequestState, TIMEOUT};

pub struct GitHub {
    /// `https://api.github.com`, or an Enterprise server's `https://host/api/v3`.
    pub api_base: String,
    /// `owner/name`.
    pub repo: String,
    pub token: SecretString,
}

impl GitHub {
    fn request(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        http.request(
            method,
            format!(
                "{}/repos/{}{path}",
                self.api_base.trim_end_matches('/'),
                self.repo
            ),
        )
        .bearer_auth(token(&self.token))
        .header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .header("User-Agent", "billing-gitops")
        .timeout(TIMEOUT)
    }

    pub async fn open(
        &self,
        http: &reqwest::Client,
        p: &Proposal<'_>,
    ) -> Result<Opened, ForgeError> {
        let resp = self
            .request(http, reqwest::Method::POST, "/pulls")
            .json(&json!({ "title": p.title, "head": p.branch, "base": p.base, "body": p.body }))
            .send()
            .await?;
        if resp.status().as_u16() == 422 {
            // "A pull request already exists": a retry after a crash finds the one it opened.
            if let Some(found) = self.find(http, p.branch).await? {
                return Ok(found);
            }
        }
        opened(&json_of(resp).await?)
    }

    async fn find(
        &self,
        http: &reqwest::Client,
        branch: &str,
    ) -> Result<Option<Opened>, ForgeError> {
        let owner = self.repo.split('/').next().unwrap_or_default();
        let resp = self
            .request(http, reqwest::Method::GET, "/pulls")
            .query(&[
                ("head", format!("{owner}:{branch}")),
                ("state", "all".into()),
            ])
            .send()
            .await?;
        let list = json_of(resp).await?;
        list.as_array()
            .and_then(|l| l.first())
            .map(opened)
            .transpose()
    }

    pub async fn state(
        &self,
        http: &reqwest::Client,
        number: i64,
    ) -> Result<RequestState, ForgeError> {
        let resp = self
            .request(http, reqwest::Method::GET, &format!("/pulls/{number}"))
            .send()
            .await?;
        let pr = json_of(resp).await?;
        let merged = pr["merged"].as_bool().unwrap_or(false) || pr["merged_at"].is_string();
        Ok(
            match pr["state"].as_str().ok_or(ForgeError::Shape("state"))? {
                _ if merged => RequestState::Merged,
                "closed" => RequestState::Closed,
                _ => RequestState::Open,
            },
        )
    }

    pub async fn close(&self, http: &reqwest::Client, number: i64) -> Result<(), ForgeError> {
        let resp = self
            .request(http, reqwest::Method::PATCH, &format!("/pulls/{number}"))
            .json(&json!({ "state": "closed" }))
            .send()
            .await?;
        json_of(resp).await.map(|_| ())
    }
}

fn opened(pr: &serde_json::Value) -> Result<Opened, ForgeError> {
    Ok(Opened {
        number: pr["number"].as_i64().ok_or(ForgeError::Shape("number"))?,
        url: pr["html_url"]
            .as_str()
            .ok_or(ForgeError::Shape("html_url"))?
            .to_string(),
    })
}
