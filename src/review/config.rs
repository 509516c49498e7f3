//! Review mode's settings: which changes go straight to main and which wait on their own
//! branch for a person, and the forge (GitHub or GitLab) that gets a pull request for each.

use std::collections::BTreeMap;

use clap::ValueEnum;

use super::forge::{Forge, GitHub, GitLab};
pub use crate::config::review::{CommitMode, ReviewConfig};
use crate::db::outbox::Action;

/// What kind of change a job is, for choosing its commit mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    /// A new customer's stack.
    Signup,
    /// A redeploy after a template or plans-file change.
    Template,
    /// A subscription change (upgrade, suspension, reactivation).
    Plan,
    /// An operator's forced deploy.
    Force,
    /// An operator's rollback.
    Rollback,
}

impl ChangeKind {
    const ALL: [ChangeKind; 5] = [
        ChangeKind::Signup,
        ChangeKind::Template,
        ChangeKind::Plan,
        ChangeKind::Force,
        ChangeKind::Rollback,
    ];

    fn name(self) -> &'static str {
        match self {
            ChangeKind::Signup => "signup",
            ChangeKind::Template => "template",
            ChangeKind::Plan => "plan",
            ChangeKind::Force => "force",
            ChangeKind::Rollback => "rollback",
        }
    }

    /// The kind of a job; None for a deletion, which always goes to main: erasure does not
    /// wait for a review.
    pub fn of(action: Action, reason: Option<&str>) -> Option<Self> {
        Some(match action {
            Action::Create => ChangeKind::Signup,
            Action::Delete => return None,
            Action::Force => ChangeKind::Force,
            Action::Rollback => ChangeKind::Rollback,
            // Subscription changes carry their reason; redeploys do not.
            Action::Update | Action::Rebuild if reason.is_some() => ChangeKind::Plan,
            Action::Update | Action::Rebuild => ChangeKind::Template,
        })
    }
}

/// Which mode each kind of change gets.
#[derive(Debug, Clone)]
pub struct Policy {
    default: CommitMode,
    overrides: BTreeMap<ChangeKind, CommitMode>,
}

impl Policy {
    pub fn direct() -> Self {
        Policy {
            default: CommitMode::Direct,
            overrides: BTreeMap::new(),
        }
    }

    /// Whether any kind of change is reviewed.
    pub fn any_review(&self) -> bool {
        self.default == CommitMode::Review
            || self.overrides.values().any(|m| *m == CommitMode::Review)
    }

    pub fn reviewed(&self, action: Action, reason: Option<&str>) -> bool {
        ChangeKind::of(action, reason)
            .map(|kind| *self.overrides.get(&kind).unwrap_or(&self.default) == CommitMode::Review)
            .unwrap_or(false)
    }
}

impl ReviewConfig {
    pub fn policy(&self) -> anyhow::Result<Policy> {
        let mut overrides = BTreeMap::new();
        for pair in self
            .commit_mode_overrides
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (kind, mode) = pair.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("COMMIT_MODE_OVERRIDES: {pair:?} is not kind=mode")
            })?;
            let kind = ChangeKind::ALL
                .into_iter()
                .find(|k| k.name() == kind.trim())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "COMMIT_MODE_OVERRIDES: unknown kind {kind:?} (signup, template, plan, force, rollback)"
                    )
                })?;
            let mode = CommitMode::from_str(mode.trim(), true).map_err(|_| {
                anyhow::anyhow!("COMMIT_MODE_OVERRIDES: mode {mode:?} is neither direct nor review")
            })?;
            overrides.insert(kind, mode);
        }
        Ok(Policy {
            default: self.commit_mode,
            overrides,
        })
    }

    /// The forge configured (GitHub when GITHUB_REPO is set, else GitLab when GITLAB_PROJECT
    /// is), or None: review branches are then merged with Git alone.
    pub fn forge(&self) -> anyhow::Result<Option<Forge>> {
        if let Some(repo) = &self.github_repo {
            let token = self
                .github_token
                .clone()
                .ok_or_else(|| anyhow::anyhow!("GITHUB_REPO is set but GITHUB_TOKEN is not"))?;
            return Ok(Some(Forge::GitHub(GitHub {
                api_base: self.github_api_base.clone(),
                repo: repo.clone(),
                token,
            })));
        }
        if let Some(project) = &self.gitlab_project {
            let token = self
                .gitlab_token
                .clone()
                .ok_or_else(|| anyhow::anyhow!("GITLAB_PROJECT is set but GITLAB_TOKEN is not"))?;
            return Ok(Some(Forge::GitLab(GitLab {
                api_base: self.gitlab_api_base.clone(),
                project: project.clone(),
                token,
            })));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: CommitMode, overrides: &str) -> ReviewConfig {
        ReviewConfig {
            commit_mode: mode,
            commit_mode_overrides: Some(overrides.into()),
            github_api_base: String::new(),
            github_repo: None,
            github_token: None,
            gitlab_api_base: String::new(),
            gitlab_project: None,
            gitlab_token: None,
        }
    }

    #[test]
    fn overrides_pick_the_mode_per_kind_and_deletions_go_direct() {
        let policy = config(CommitMode::Review, "signup=direct")
            .policy()
            .unwrap();
        assert!(!policy.reviewed(Action::Create, None));
        assert!(policy.reviewed(Action::Update, None), "template upgrades");
        assert!(
            policy.reviewed(Action::Update, Some("upgrade starter → pro")),
            "plans"
        );
        assert!(!policy.reviewed(Action::Delete, None));
        let policy = config(CommitMode::Direct, "plan=review").policy().unwrap();
        assert!(policy.reviewed(Action::Update, Some("suspend")));
        assert!(!policy.reviewed(Action::Rebuild, None));
    }

    #[test]
    fn a_bad_override_is_a_clear_error() {
        let err = config(CommitMode::Direct, "signups=direct")
            .policy()
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown kind \"signups\""),
            "{err}"
        );
        let err = config(CommitMode::Direct, "plan=maybe")
            .policy()
            .unwrap_err();
        assert!(
            err.to_string().contains("neither direct nor review"),
            "{err}"
        );
    }
}
