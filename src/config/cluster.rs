//! The cluster side's settings: poking Flux or Argo CD after a push, the secrets of their
//! event webhooks, and the watcher's Kubernetes poll and stall timeout.

use clap::Args;
use secrecy::SecretString;

use super::KubePoll;

#[derive(Debug, Clone, Args)]
pub struct ClusterConfig {
    /// URL poked (POST) after each successful push: a Flux Receiver or Argo CD webhook.
    #[arg(long, env = "SYNC_WEBHOOK_URL", global = true)]
    pub sync_webhook_url: Option<String>,

    /// What listens at SYNC_WEBHOOK_URL: `flux` (a Receiver of type `generic` or
    /// `generic-hmac`, URL `.../hook/<digest>`) or `argocd` (URL `.../api/webhook`).
    #[arg(
        long,
        env = "SYNC_WEBHOOK_KIND",
        value_enum,
        default_value = "flux",
        global = true
    )]
    pub sync_webhook_kind: crate::poke::PokeKind,

    /// Signing key of the sync webhook: the Flux Receiver's token (`generic-hmac`) or Argo CD's
    /// `webhook.github.secret`. Unset: requests are not signed.
    #[arg(
        long,
        env = "SYNC_WEBHOOK_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub sync_webhook_secret: Option<SecretString>,

    /// The GitOps repository's URL as the Git provider shows it (what Argo CD apps use as
    /// `repoURL`). Default: GITOPS_REMOTE.
    #[arg(long, env = "SYNC_WEBHOOK_REPO_URL", global = true)]
    pub sync_webhook_repo_url: Option<String>,

    /// Shared secret of the Flux Provider (type generic-hmac) that signs the events posted to
    /// `/api/gitops/flux/events`. Unset: that endpoint refuses every request.
    #[arg(
        long,
        env = "FLUX_WEBHOOK_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub flux_webhook_secret: Option<SecretString>,

    /// Bearer token argocd-notifications sends to `/api/gitops/argocd/events`. Unset: that
    /// endpoint refuses every request.
    #[arg(
        long,
        env = "ARGOCD_WEBHOOK_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub argocd_webhook_token: Option<SecretString>,

    /// Poll the Kubernetes API for Flux Kustomization / Argo CD Application status: `auto`
    /// when a kubeconfig (KUBECONFIG, ~/.kube/config) or in-cluster config is found, or `off`.
    #[arg(
        long,
        env = "WATCHER_KUBE_POLL",
        value_enum,
        default_value = "auto",
        global = true
    )]
    pub watcher_kube_poll: KubePoll,

    /// Seconds between two polls of the Kubernetes API.
    #[arg(
        long,
        env = "WATCHER_POLL_INTERVAL_SECONDS",
        default_value_t = 30,
        global = true
    )]
    pub watcher_poll_interval_seconds: u64,

    /// Seconds after a commit without a successful sync report before a tenant is `stalled`.
    #[arg(
        long,
        env = "WATCHER_STALL_SECONDS",
        default_value_t = 600,
        global = true
    )]
    pub watcher_stall_seconds: u64,

    /// Key that encrypts each cluster's event secret in the database (at least 32 bytes).
    /// Unset: `<DATA_DIR>/keys/cluster-secrets.key`, generated on first use. The CLI and every
    /// replica must share it.
    #[arg(
        long,
        env = "CLUSTER_SECRETS_KEY",
        global = true,
        hide_env_values = true
    )]
    pub cluster_secrets_key: Option<SecretString>,

    /// One Kubernetes poller per kubeconfig context, each labelled with the catalogue's cluster
    /// it reads: `context=cluster,...` (e.g. `kind-eu1=eu-1,kind-us1=us-1`). Unset: one poller
    /// on the inferred configuration, as before.
    #[arg(long, env = "KUBE_CONTEXTS", global = true, value_parser = parse_kube_contexts)]
    pub kube_contexts: Option<KubeContexts>,

    /// Seconds each Kubernetes API call of a poller may take before it is abandoned.
    #[arg(
        long,
        env = "WATCHER_KUBE_TIMEOUT_SECONDS",
        default_value_t = 20,
        global = true
    )]
    pub watcher_kube_timeout_seconds: u64,
}

/// `KUBE_CONTEXTS`: (kubeconfig context, cluster name) pairs, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeContexts(pub Vec<(String, String)>);

pub fn parse_kube_contexts(text: &str) -> Result<KubeContexts, String> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (context, cluster) = item
            .split_once('=')
            .map(|(a, b)| (a.trim(), b.trim()))
            .filter(|(a, b)| !a.is_empty() && !b.is_empty())
            .ok_or_else(|| format!("{item:?} is not context=cluster"))?;
        if pairs.iter().any(|(_, c)| c == cluster) {
            return Err(format!("cluster {cluster:?} is named twice"));
        }
        pairs.push((context.to_string(), cluster.to_string()));
    }
    if pairs.is_empty() {
        return Err("no context=cluster pair".into());
    }
    Ok(KubeContexts(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_contexts_parse() {
        let parsed = parse_kube_contexts("kind-a=eu-1, kind-b=us-1").unwrap();
        assert_eq!(
            parsed.0,
            vec![
                ("kind-a".into(), "eu-1".into()),
                ("kind-b".into(), "us-1".into())
            ]
        );
        assert!(parse_kube_contexts("kind-a").is_err());
        assert!(parse_kube_contexts("a=x,b=x").is_err());
        assert!(parse_kube_contexts(" , ").is_err());
    }
}
