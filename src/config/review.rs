//! Review mode's settings (read by `review`, which turns them into a policy and a forge): which
//! changes go straight to main and which wait on their own branch, and the forge's coordinates.

use clap::{Args, ValueEnum};
use secrecy::SecretString;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CommitMode {
    /// Committed on main.
    Direct,
    /// Committed on `tenant/<id>/<change-id>`, merged by a person.
    Review,
}

#[derive(Debug, Clone, Args)]
pub struct ReviewConfig {
    /// `direct` commits every change on main; `review` commits each on its own branch
    /// `tenant/<id>/<change-id>` and opens a pull request when a forge is configured.
    #[arg(
        long,
        env = "COMMIT_MODE",
        value_enum,
        default_value = "direct",
        global = true
    )]
    pub commit_mode: CommitMode,

    /// Per-kind exceptions to COMMIT_MODE, e.g. `signup=direct,template=review,plan=review`.
    /// Kinds: signup, template, plan, force, rollback. Deletions always go to main.
    #[arg(long, env = "COMMIT_MODE_OVERRIDES", global = true)]
    pub commit_mode_overrides: Option<String>,

    /// GitHub's REST API (GitHub Enterprise: `https://<host>/api/v3`).
    #[arg(
        long,
        env = "GITHUB_API_BASE",
        default_value = "https://api.github.com",
        global = true
    )]
    pub github_api_base: String,
    /// The repository pull requests are opened on, `owner/name`.
    #[arg(long, env = "GITHUB_REPO", global = true)]
    pub github_repo: Option<String>,
    #[arg(long, env = "GITHUB_TOKEN", global = true, hide_env_values = true)]
    pub github_token: Option<SecretString>,

    #[arg(
        long,
        env = "GITLAB_API_BASE",
        default_value = "https://gitlab.com/api/v4",
        global = true
    )]
    pub gitlab_api_base: String,
    /// The project merge requests are opened on: its id or `group/project`.
    #[arg(long, env = "GITLAB_PROJECT", global = true)]
    pub gitlab_project: Option<String>,
    #[arg(long, env = "GITLAB_TOKEN", global = true, hide_env_values = true)]
    pub gitlab_token: Option<SecretString>,
}
