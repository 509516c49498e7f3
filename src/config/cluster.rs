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
}
