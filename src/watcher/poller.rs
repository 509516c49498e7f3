//! The Kubernetes API poller: the fallback for lost webhooks. Every
//! `WATCHER_POLL_INTERVAL_SECONDS` it lists the per-tenant Flux Kustomizations
//! (`kustomize.toolkit.fluxcd.io/v1`, namespace flux-system) and Argo CD Applications
//! (`argoproj.io/v1alpha1`, namespace argocd) with kube's dynamic API and records what their
//! status says, and the tenants' pods (core v1, all namespaces, labelled managed-by=billing) into
//! the shared `PodStore`. A kind whose CRD is not installed (404) is skipped. Runs when
//! `WATCHER_KUBE_POLL=auto` and kube finds a kubeconfig (KUBECONFIG, ~/.kube/config) or an
//! in-cluster service account.
//!
//! With `KUBE_CONTEXTS=context=cluster,...` one poller runs per kubeconfig context, each its
//! own supervised worker (`kube_poller:<cluster>`), its reports labelled with its cluster and
//! held to the tenants placed there. Every API call has a timeout
//! (`WATCHER_KUBE_TIMEOUT_SECONDS`, on the client and around each list), so one cluster's
//! hanging API server delays only its own poller.
//!
//! The core of a pass is pure ([`reports`] over a list response as JSON), so a recorded
//! KustomizationList or ApplicationList can be replayed without a cluster.

use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::Client;
use serde_json::Value;

use super::{argocd, flux, pods, record, Outcome, Report, Source};
use crate::config::KubePoll;
use crate::watcher::WatcherHandles;

/// The kinds the poller lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Kustomization,
    Application,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Kustomization, Kind::Application];

    pub fn resource(self) -> ApiResource {
        let gvk = match self {
            Kind::Kustomization => GroupVersionKind::gvk(flux::GROUP, "v1", "Kustomization"),
            Kind::Application => GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        };
        ApiResource::from_gvk(&gvk)
    }

    pub fn namespace(self) -> &'static str {
        match self {
            Kind::Kustomization => flux::NAMESPACE,
            Kind::Application => argocd::NAMESPACE,
        }
    }

    /// Labels every per-tenant object carries (templates/_macros.jinja, the ApplicationSet).
    pub fn selector(self) -> &'static str {
        match self {
            Kind::Kustomization => "app.kubernetes.io/managed-by=billing",
            Kind::Application => "app.kubernetes.io/part-of=iotistic",
        }
    }
}

/// The reports a list response (`{"items": [...]}`) makes; items of no tenant are skipped.
pub fn reports(kind: Kind, list: &Value) -> Vec<Report> {
    let items = list.get("items").and_then(Value::as_array);
    items
        .into_iter()
        .flatten()
        .filter_map(|item| match kind {
            Kind::Kustomization => flux::kustomization_report(item),
            Kind::Application => argocd::AppStatus::from_application(item)
                .report(Source::KubePoller)
                .ok(),
        })
        .collect()
}

/// One list of `kind`, all pages, as the JSON the API server sent; None without the CRD.
pub async fn list(client: &Client, kind: Kind) -> anyhow::Result<Option<Value>> {
    let api = Api::namespaced_with(client.clone(), kind.namespace(), &kind.resource());
    list_all(api, kind.selector()).await
}

/// The tenants' pods in every namespace, all pages (as [`list`]).
pub async fn list_pods(client: &Client) -> anyhow::Result<Option<Value>> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "Pod"));
    list_all(Api::all_with(client.clone(), &resource), pods::SELECTOR).await
}

async fn list_all(api: Api<DynamicObject>, selector: &str) -> anyhow::Result<Option<Value>> {
    let mut params = ListParams::default().labels(selector).limit(500);
    let mut items = Vec::new();
    loop {
        let page = match api.list(&params).await {
            Ok(page) => page,
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        items.extend(
            page.items
                .into_iter()
                .map(serde_json::to_value)
                .collect::<Result<Vec<_>, _>>()?,
        );
        match next {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    Ok(Some(serde_json::json!({ "items": items })))
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    pub reports: usize,
    pub recorded: usize,
}

/// Records each report; one tenant's failure does not stop the others. With a cluster, reports
/// about tenants placed elsewhere are skipped (and logged), as the per-cluster endpoints refuse
/// them.
pub async fn record_reports(
    handles: &WatcherHandles,
    cluster: Option<&str>,
    reports: &[Report],
) -> Pass {
    let mut pass = Pass {
        reports: reports.len(),
        ..Pass::default()
    };
    for report in reports {
        let report = report.clone().said_by(cluster);
        if let Some(cluster) = cluster {
            match super::clusters::placed(handles, &report.customer_id, cluster).await {
                Ok(super::clusters::Placed::Elsewhere(placed_on)) => {
                    tracing::warn!(
                        cluster, customer_id = %report.customer_id,
                        placed_on = placed_on.as_deref().unwrap_or("none"),
                        "poller report skipped: the tenant is not placed on this cluster"
                    );
                    continue;
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(customer_id = %report.customer_id, error = %format!("{err:#}"), "poller report failed");
                    continue;
                }
            }
        }
        match record(handles, &report).await {
            Ok(Outcome::Recorded { .. }) => pass.recorded += 1,
            Ok(Outcome::Ignored { reason }) => {
                tracing::trace!(customer_id = %report.customer_id, reason, "poller report ignored")
            }
            Err(err) => {
                tracing::warn!(customer_id = %report.customer_id, error = %format!("{err:#}"), "poller report failed")
            }
        }
    }
    pass
}

/// `work`, abandoned after `limit`.
async fn bounded<T>(
    limit: Duration,
    what: &str,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| anyhow::anyhow!("{what} took longer than {}s", limit.as_secs()))?
}

/// Lists every kind once and records what it says; refreshes the pod list first, so a failing
/// kind does not keep stale pods (and a failing pod list empties it rather than go stale).
/// `cluster` labels the reports (None: the context-less poller).
pub async fn pass(
    handles: &WatcherHandles,
    client: &Client,
    cluster: Option<&str>,
) -> anyhow::Result<Pass> {
    let limit = Duration::from_secs(handles.cluster.watcher_kube_timeout_seconds.max(1));
    let store = cluster.unwrap_or("");
    match bounded(limit, "listing tenant pods", list_pods(client)).await {
        Ok(list) => handles.pods.replace_from(
            store,
            list.as_ref().map(pods::by_tenant).unwrap_or_default(),
        ),
        Err(err) => {
            handles.pods.replace_from(store, Default::default());
            tracing::warn!(cluster = store, error = %format!("{err:#}"), "listing tenant pods failed");
        }
    }
    let mut total = Pass::default();
    for kind in Kind::ALL {
        let Some(list) = bounded(limit, "a list", list(client, kind)).await? else {
            tracing::debug!(?kind, "CRD not installed; skipped");
            continue;
        };
        let done = record_reports(handles, cluster, &reports(kind, &list)).await;
        total.reports += done.reports;
        total.recorded += done.recorded;
    }
    Ok(total)
}

/// Request timeouts on the client itself, so a hung connection is dropped, not only abandoned.
fn client_of(mut config: kube::Config, handles: &WatcherHandles) -> anyhow::Result<Client> {
    let limit = Duration::from_secs(handles.cluster.watcher_kube_timeout_seconds.max(1));
    config.connect_timeout = Some(limit);
    config.read_timeout = Some(limit);
    config.write_timeout = Some(limit);
    Ok(Client::try_from(config)?)
}

/// The context-less poller task: finds the cluster configuration once (KUBECONFIG's current
/// context or in-cluster), then polls until the process ends. Not started with KUBE_CONTEXTS.
pub async fn run(handles: WatcherHandles, stop: tokio_util::sync::CancellationToken) {
    if handles.cluster.watcher_kube_poll == KubePoll::Off {
        tracing::info!("Kubernetes poller off (WATCHER_KUBE_POLL=off)");
        return;
    }
    let client = match kube::Config::infer().await {
        Ok(config) => match client_of(config, &handles) {
            Ok(client) => client,
            Err(err) => {
                tracing::warn!(error = %err, "Kubernetes poller off: cannot build a client");
                return;
            }
        },
        Err(err) => {
            tracing::info!(reason = %err, "Kubernetes poller off: no kubeconfig or in-cluster config");
            return;
        }
    };
    poll(&handles, &client, None, stop).await
}

/// The poller of one kubeconfig context, its reports labelled `cluster`. A context that cannot
/// be loaded is retried every interval (and said so in the log), never given up.
pub async fn run_context(
    handles: WatcherHandles,
    context: String,
    cluster: String,
    stop: tokio_util::sync::CancellationToken,
) {
    if handles.cluster.watcher_kube_poll == KubePoll::Off {
        tracing::info!(cluster, "Kubernetes poller off (WATCHER_KUBE_POLL=off)");
        return;
    }
    let every = Duration::from_secs(handles.cluster.watcher_poll_interval_seconds.max(1));
    let options = kube::config::KubeConfigOptions {
        context: Some(context.clone()),
        ..Default::default()
    };
    loop {
        let config = kube::Config::from_kubeconfig(&options).await;
        match config
            .map_err(anyhow::Error::from)
            .and_then(|c| client_of(c, &handles))
        {
            Ok(client) => return poll(&handles, &client, Some(&cluster), stop).await,
            Err(err) => {
                tracing::warn!(cluster, context, error = %format!("{err:#}"), "Kubernetes poller cannot load its context; retrying");
            }
        }
        if stop
            .run_until_cancelled(tokio::time::sleep(every))
            .await
            .is_none()
        {
            return;
        }
    }
}

async fn poll(
    handles: &WatcherHandles,
    client: &Client,
    cluster: Option<&str>,
    stop: tokio_util::sync::CancellationToken,
) {
    let every = Duration::from_secs(handles.cluster.watcher_poll_interval_seconds.max(1));
    let label = cluster.unwrap_or("");
    tracing::info!(
        cluster = label,
        interval_s = every.as_secs(),
        "Kubernetes poller on"
    );
    loop {
        match pass(handles, client, cluster).await {
            Ok(p) => tracing::debug!(
                cluster = label,
                reports = p.reports,
                recorded = p.recorded,
                "poller pass"
            ),
            Err(err) => {
                tracing::warn!(cluster = label, error = %format!("{err:#}"), "poller pass failed")
            }
        }
        if stop
            .run_until_cancelled(tokio::time::sleep(every))
            .await
            .is_none()
        {
            return;
        }
    }
}

#[cfg(test)]
#[path = "poller_tests.rs"]
mod tests;
