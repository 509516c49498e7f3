//! Prometheus metrics of the service (`GET /metrics`, text exposition format through the
//! maintained `prometheus-client` crate): what an operator alerts on when Git stops moving.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    /// Commits written to the GitOps branch.
    pub gitops_commits: Counter,
    /// Commits that failed (a full disk, an unwritable repository, a lock).
    pub gitops_commit_failures: Counter,
    /// Pushes to the remote that failed.
    pub gitops_push_failures: Counter,
    /// Render jobs waiting to reach Git, as of the last worker pass.
    pub render_jobs_pending: Gauge,
    /// Failed or refused logins by `reason` (see `accounts::login::Failure`).
    pub login_failures: Family<[(&'static str, &'static str); 1], Counter>,
    /// Emails (with an account or not) over the per-account login limit, as of the last scrape.
    pub login_accounts_limited: Gauge,
    /// Background workers restarted after a panic, by `worker` (see `supervisor`).
    pub worker_restarts: crate::supervisor::Restarts,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("billing");
        let metrics = Metrics {
            gitops_commits: Counter::default(),
            gitops_commit_failures: Counter::default(),
            gitops_push_failures: Counter::default(),
            render_jobs_pending: Gauge::default(),
            login_failures: Family::default(),
            login_accounts_limited: Gauge::default(),
            worker_restarts: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "gitops_commits",
            "Commits written to the GitOps branch",
            metrics.gitops_commits.clone(),
        );
        registry.register(
            "gitops_commit_failures",
            "GitOps commits that failed (disk full, unwritable repository, lock)",
            metrics.gitops_commit_failures.clone(),
        );
        registry.register(
            "gitops_push_failures",
            "Pushes to the GitOps remote that failed",
            metrics.gitops_push_failures.clone(),
        );
        registry.register(
            "render_jobs_pending",
            "Render jobs not yet in Git",
            metrics.render_jobs_pending.clone(),
        );
        registry.register(
            "login_failures",
            "Logins failed (wrong_password, unknown_email) or refused by a limit (pair_limit, \
             address_limit, account_limit)",
            metrics.login_failures.clone(),
        );
        registry.register(
            "login_accounts_limited",
            "Emails over the per-account login limit (LOGIN_ACCOUNT_FAILURES in its window)",
            metrics.login_accounts_limited.clone(),
        );
        registry.register(
            "worker_restarts",
            "Background workers restarted after a panic, by worker",
            metrics.worker_restarts.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Counts a failed or refused login.
    pub fn login_failed(&self, reason: &'static str) {
        self.login_failures
            .get_or_create(&[("reason", reason)])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_in_the_exposition() {
        let m = Metrics::default();
        m.gitops_commit_failures.inc();
        m.gitops_commit_failures.inc();
        m.render_jobs_pending.set(7);
        m.login_failed("account_limit");
        let text = m.render();
        assert!(
            text.contains("billing_gitops_commit_failures_total 2"),
            "{text}"
        );
        assert!(text.contains("billing_gitops_commits_total 0"), "{text}");
        assert!(text.contains("billing_render_jobs_pending 7"), "{text}");
        assert!(
            text.contains(r#"billing_login_failures_total{reason="account_limit"} 1"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
