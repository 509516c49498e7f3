//! GitLab's merge requests: `POST /projects/:id/merge_requests` (`source_branch` the review
//! branch, `target_branch` main), `GET` and `PUT …/merge_requests/:iid`. `:id` is the project's
//! number or its URL-encoded path (`group%2Fproject`).

use secrecy::SecretString;
use serde_json::json;

use super::{json_of, token, ForgeError, Opened, Proposal, RequestState, TIMEOUT};

pub struct GitLab {
    /// `https://gitlab.com/api/v4`, or a self-managed instance's.
    pub api_base: String,
    /// The project's id or path (`group/project`).
    pub project: String,
    pub token: SecretString,
}

impl GitLab {
    fn request(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let project = self.project.replace('/', "%2F");
        http.request(
            method,
            format!(
                "{}/projects/{project}{path}",
                self.api_base.trim_end_matches('/')
            ),
        )
        .header("PRIVATE-TOKEN", token(&self.token))
        .header("User-Agent", "billing-gitops")
        .timeout(TIMEOUT)
    }

    pub async fn open(
        &self,
        http: &reqwest::Client,
        p: &Proposal<'_>,
    ) -> Result<Opened, ForgeError> {
        let resp = self
            .request(http, reqwest::Method::POST, "/merge_requests")
            .json(&json!({
                "source_branch": p.branch,
                "target_branch": p.base,
                "title": p.title,
                "description": p.body,
                "remove_source_branch": true,
            }))
            .send()
            .await?;
        if resp.status().as_u16() == 409 {
            // "Another open merge request already exists for this source branch".
            let found = self
                .request(http, reqwest::Method::GET, "/merge_requests")
                .query(&[("source_branch", p.branch), ("state", "all")])
                .send()
                .await?;
            if let Some(mr) = json_of(found).await?.as_array().and_then(|l| l.first()) {
                return opened(mr);
            }
        }
        opened(&json_of(resp).await?)
    }

    pub async fn state(
        &self,
        http: &reqwest::Client,
        iid: i64,
    ) -> Result<RequestState, ForgeError> {
        let resp = self
            .request(
                http,
                reqwest::Method::GET,
                &format!("/merge_requests/{iid}"),
            )
            .send()
            .await?;
        Ok(
            match json_of(resp).await?["state"]
                .as_str()
                .ok_or(ForgeError::Shape("state"))?
            {
                "merged" => RequestState::Merged,
                "closed" => RequestState::Closed,
                _ => RequestState::Open,
            },
        )
    }

    pub async fn close(&self, http: &reqwest::Client, iid: i64) -> Result<(), ForgeError> {
        let resp = self
            .request(
                http,
                reqwest::Method::PUT,
                &format!("/merge_requests/{iid}"),
            )
            .json(&json!({ "state_event": "close" }))
            .send()
            .await?;
        json_of(resp).await.map(|_| ())
    }
}

fn opened(mr: &serde_json::Value) -> Result<Opened, ForgeError> {
    Ok(Opened {
        number: mr["iid"].as_i64().ok_or(ForgeError::Shape("iid"))?,
        url: mr["web_url"]
            .as_str()
            .ok_or(ForgeError::Shape("web_url"))?
            .to_string(),
    })
}
