//! Prometheus metrics of the service (`GET /metrics`, text exposition format through the
//! maintained `prometheus-client` crate): what an operator alerts on when Git stops moving.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// One label: `[("result", "created")]`.
pub type Label = [(&'static str, &'static str); 1];
/// Two labels: `[("source", "stripe"), ("result", "accepted")]`.
pub type Labels = [(&'static str, &'static str); 2];

/// A cluster's labels: `[("cluster", "eu-1"), ("region", "eu")]`.
pub type ClusterLabels = [(&'static str, String); 2];

/// One cluster's figures, as the catalogue has them at a scrape.
pub struct ClusterFigures<'a> {
    pub name: &'a str,
    pub region: &'a str,
    pub cpu_capacity_millis: i64,
    pub memory_capacity_bytes: i64,
    pub cpu_allocated_millis: i64,
    pub memory_allocated_bytes: i64,
    pub tenants: i64,
}

/// 1 ms to about a minute, doubling: renders take milliseconds, pushes to a slow remote seconds.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

pub struct Metrics {
    registry: Registry,
    /// Signups answered, by `result` (see `http::observe`).
    pub signups: Family<Label, Counter>,
    /// Logins answered, by `result` (see `http::observe`).
    pub logins: Family<Label, Counter>,
    /// Webhook deliveries answered, by `source` (stripe, flux, argocd) and `result`.
    pub webhook_events: Family<Labels, Counter>,
    /// Commits written to the GitOps branch.
    pub gitops_commits: Counter,
    /// Commits that failed (a full disk, an unwritable repository, a lock).
    pub gitops_commit_failures: Counter,
    /// Pushes to the remote that failed.
    pub gitops_push_failures: Counter,
    /// Seconds to render one tenant.
    pub render_seconds: Histogram,
    /// Seconds to write one batch's commit (a no-op batch included).
    pub commit_seconds: Histogram,
    /// Seconds to push to the GitOps remote (retries after a rejected push included).
    pub push_seconds: Histogram,
    /// Render jobs waiting to reach Git (the outbox's depth), as of the last scrape or worker pass.
    pub render_jobs_pending: Gauge,
    /// Age in seconds of the oldest render job waiting for Git (0 when none), as of the last scrape.
    pub outbox_oldest_job_age: Gauge,
    /// Tenants by deployment `state`, as of the last scrape.
    pub tenants_by_deployment_state: Family<Label, Gauge>,
    /// Customers by subscription `state`, as of the last scrape.
    pub tenants_by_subscription_state: Family<Label, Gauge>,
    /// Tenants whose files are older than the current templates or plans (a rollout has not
    /// reached them yet); set by the rollout code.
    pub rollout_tenants_behind: Gauge,
    /// The wave the running rollout is at (1-based; 0 when none runs); set by the rollout code.
    pub rollout_wave: Gauge,
    /// How many waves the running rollout has (0 when none runs).
    pub rollout_waves: Gauge,
    /// 1 while the active rollout's current wave waits for its pull request to be merged
    /// (review mode), else 0.
    pub rollout_wave_in_review: Gauge,
    /// Failed or refused logins by `reason` (see `accounts::login::Failure`).
    pub login_failures: Family<Label, Counter>,
    /// Emails (with an account or not) over the per-account login limit, as of the last scrape.
    pub login_accounts_limited: Gauge,
    /// Tenants waiting for a cluster with room (`unplaced`), as of the last scrape.
    pub tenants_unplaced: Gauge,
    /// Per cluster (labels cluster, region), set at each scrape from the catalogue.
    pub cluster_cpu_capacity: Family<ClusterLabels, Gauge>,
    pub cluster_memory_capacity: Family<ClusterLabels, Gauge>,
    pub cluster_cpu_allocated: Family<ClusterLabels, Gauge>,
    pub cluster_memory_allocated: Family<ClusterLabels, Gauge>,
    pub cluster_tenants: Family<ClusterLabels, Gauge>,
    /// Background workers restarted after a panic, by `worker` (see `supervisor`).
    pub worker_restarts: crate::supervisor::Restarts,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            registry: Registry::with_prefix("billing"),
            signups: Family::default(),
            logins: Family::default(),
            webhook_events: Family::default(),
            gitops_commits: Counter::default(),
            gitops_commit_failures: Counter::default(),
            gitops_push_failures: Counter::default(),
            render_seconds: latency_histogram(),
            commit_seconds: latency_histogram(),
            push_seconds: latency_histogram(),
            render_jobs_pending: Gauge::default(),
            outbox_oldest_job_age: Gauge::default(),
            tenants_by_deployment_state: Family::default(),
            tenants_by_subscription_state: Family::default(),
            rollout_tenants_behind: Gauge::default(),
            rollout_wave: Gauge::default(),
            rollout_waves: Gauge::default(),
            rollout_wave_in_review: Gauge::default(),
            login_failures: Family::default(),
            login_accounts_limited: Gauge::default(),
            tenants_unplaced: Gauge::default(),
            cluster_cpu_capacity: Family::default(),
            cluster_memory_capacity: Family::default(),
            cluster_cpu_allocated: Family::default(),
            cluster_memory_allocated: Family::default(),
            cluster_tenants: Family::default(),
            worker_restarts: Family::default(),
        }
        .registered()
    }
}

impl Metrics {
    /// Registers every metric under its exposed name (`billing_` + name, `_total` for counters).
    fn registered(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "signups",
            "Signups answered, by result (created, conflict, rejected, throttled, error)",
            self.signups.clone(),
        );
        r.register(
            "logins",
            "Logins answered, by result (success, invalid_credentials, locked, rejected, error)",
            self.logins.clone(),
        );
        r.register(
            "webhook_events",
            "Webhook deliveries answered, by source (stripe, flux, argocd) and result \
             (accepted, unauthorized, rejected, error)",
            self.webhook_events.clone(),
        );
        r.register(
            "gitops_commits",
            "Commits written to the GitOps branch",
            self.gitops_commits.clone(),
        );
        r.register(
            "gitops_commit_failures",
            "GitOps commits that failed (disk full, unwritable repository, lock)",
            self.gitops_commit_failures.clone(),
        );
        r.register(
            "gitops_push_failures",
            "Pushes to the GitOps remote that failed",
            self.gitops_push_failures.clone(),
        );
        r.register(
            "render_duration_seconds",
            "Seconds to render one tenant's files",
            self.render_seconds.clone(),
        );
        r.register(
            "gitops_commit_duration_seconds",
            "Seconds to write one batch's commit",
            self.commit_seconds.clone(),
        );
        r.register(
            "gitops_push_duration_seconds",
            "Seconds to push to the GitOps remote, retries included",
            self.push_seconds.clone(),
        );
        r.register(
            "render_jobs_pending",
            "Render jobs not yet in Git (the outbox's depth)",
            self.render_jobs_pending.clone(),
        );
        r.register(
            "outbox_oldest_job_age_seconds",
            "Age of the oldest render job not yet in Git, 0 when none waits",
            self.outbox_oldest_job_age.clone(),
        );
        r.register(
            "tenants_by_deployment_state",
            "Tenants by deployment state",
            self.tenants_by_deployment_state.clone(),
        );
        r.register(
            "tenants_by_subscription_state",
            "Customers by subscription state",
            self.tenants_by_subscription_state.clone(),
        );
        r.register(
            "rollout_tenants_behind",
            "Tenants not yet rendered with the current templates and plans",
            self.rollout_tenants_behind.clone(),
        );
        r.register(
            "rollout_wave",
            "The running rollout's current wave (1-based), 0 when none runs",
            self.rollout_wave.clone(),
        );
        r.register(
            "rollout_waves",
            "How many waves the running rollout has, 0 when none runs",
            self.rollout_waves.clone(),
        );
        r.register(
            "rollout_wave_in_review",
            "1 while the active rollout's wave waits for its pull request to be merged (review \
             mode), else 0",
            self.rollout_wave_in_review.clone(),
        );
        r.register(
            "login_failures",
            "Logins failed (wrong_password, unknown_email) or refused by a limit (pair_limit, \
             address_limit, account_limit)",
            self.login_failures.clone(),
        );
        r.register(
            "login_accounts_limited",
            "Emails over the per-account login limit (LOGIN_ACCOUNT_FAILURES in its window)",
            self.login_accounts_limited.clone(),
        );
        r.register(
            "tenants_unplaced",
            "Tenants waiting for a cluster of their region with room (held out of Git)",
            self.tenants_unplaced.clone(),
        );
        r.register(
            "cluster_cpu_capacity_millicores",
            "CPU a cluster offers tenants, in millicores, by cluster and region",
            self.cluster_cpu_capacity.clone(),
        );
        r.register(
            "cluster_memory_capacity_bytes",
            "Memory a cluster offers tenants, in bytes, by cluster and region",
            self.cluster_memory_capacity.clone(),
        );
        r.register(
            "cluster_cpu_allocated_millicores",
            "CPU the footprints of a cluster's tenants request, in millicores",
            self.cluster_cpu_allocated.clone(),
        );
        r.register(
            "cluster_memory_allocated_bytes",
            "Memory the footprints of a cluster's tenants request, in bytes",
            self.cluster_memory_allocated.clone(),
        );
        r.register(
            "cluster_tenants",
            "Tenants placed on a cluster",
            self.cluster_tenants.clone(),
        );
        r.register(
            "worker_restarts",
            "Background workers restarted after a panic, by worker",
            self.worker_restarts.clone(),
        );
        self
    }

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

    /// Replaces a by-`state` gauge family's values with `counts` (states gone are dropped).
    pub fn set_states(family: &Family<Label, Gauge>, counts: &[(&'static str, i64)]) {
        family.clear();
        for (state, n) in counts {
            family.get_or_create(&[("state", state)]).set(*n);
        }
    }

    /// Replaces every per-cluster gauge with `clusters` (clusters removed are dropped).
    pub fn set_clusters(&self, clusters: &[ClusterFigures<'_>]) {
        let families = [
            &self.cluster_cpu_capacity,
            &self.cluster_memory_capacity,
            &self.cluster_cpu_allocated,
            &self.cluster_memory_allocated,
            &self.cluster_tenants,
        ];
        for family in families {
            family.clear();
        }
        for c in clusters {
            let labels = [
                ("cluster", c.name.to_string()),
                ("region", c.region.to_string()),
            ];
            let values = [
                c.cpu_capacity_millis,
                c.memory_capacity_bytes,
                c.cpu_allocated_millis,
                c.memory_allocated_bytes,
                c.tenants,
            ];
            for (family, value) in families.iter().zip(values) {
                family.get_or_create(&labels).set(value);
            }
        }
    }

    /// For the rollout code: how many tenants are behind the current templates and plans (also
    /// under `ROLLOUT_POLICY=manual`, where no rollout runs), and where the running rollout is:
    /// `Some((wave, waves))` with the 1-based wave it is at, or None when none runs.
    pub fn set_rollout_progress(&self, tenants_behind: u64, running: Option<(u32, u32)>) {
        self.rollout_tenants_behind
            .set(i64::try_from(tenants_behind).unwrap_or(i64::MAX));
        let (wave, waves) = running.unwrap_or((0, 0));
        self.rollout_wave.set(i64::from(wave));
        self.rollout_waves.set(i64::from(waves));
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

    #[test]
    fn rollout_progress_and_states_replace_what_was_there() {
        let m = Metrics::default();
        m.set_rollout_progress(40, Some((2, 4)));
        Metrics::set_states(
            &m.tenants_by_deployment_state,
            &[("ready", 3), ("failed", 1)],
        );
        Metrics::set_states(&m.tenants_by_deployment_state, &[("ready", 4)]);
        let text = m.render();
        assert!(text.contains("billing_rollout_tenants_behind 40"), "{text}");
        assert!(text.contains("billing_rollout_wave 2"), "{text}");
        assert!(text.contains("billing_rollout_waves 4"), "{text}");
        assert!(
            text.contains(r#"billing_tenants_by_deployment_state{state="ready"} 4"#),
            "{text}"
        );
        assert!(!text.contains(r#"state="failed""#), "{text}");
        m.set_rollout_progress(0, None);
        assert!(m.render().contains("billing_rollout_wave 0"));
    }
}
