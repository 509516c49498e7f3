//! Reports from many clusters: each cluster's event credential (opened from the catalogue) and
//! the rule that a cluster speaks only about the tenants placed on it, so a cluster whose
//! secret leaked cannot move another cluster's tenants.

use anyhow::Context;
use secrecy::SecretString;

use super::WatcherHandles;
use crate::db::{clusters, deployments};

/// What verifies a cluster's reports.
pub enum Credential {
    Secret(SecretString),
    /// No such cluster in the catalogue.
    NoSuchCluster,
    /// The cluster predates per-cluster secrets: `billing cluster rotate-secret` gives it one.
    NoSecret,
}

pub async fn credential(handles: &WatcherHandles, cluster: &str) -> anyhow::Result<Credential> {
    Ok(
        match clusters::event_secret(&handles.db.pool, cluster).await? {
            None => Credential::NoSuchCluster,
            Some(None) => Credential::NoSecret,
            Some(Some(sealed)) => Credential::Secret(
                handles
                    .event_key
                    .open(cluster, &sealed)
                    .with_context(|| format!("opening the event secret of cluster {cluster}"))?,
            ),
        },
    )
}

/// Where a reported tenant is, seen from the cluster that reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    Here,
    /// Placed on another cluster, or on none (`None`: unplaced, or from before the catalogue).
    Elsewhere(Option<String>),
    /// No such tenant: the report is ignored downstream as for the single-cluster endpoints.
    UnknownTenant,
}

pub async fn placed(
    handles: &WatcherHandles,
    customer_id: &str,
    cluster: &str,
) -> anyhow::Result<Placed> {
    let placement = clusters::placement(&handles.db.pool, customer_id).await?;
    if let Some(p) = placement {
        return Ok(match p.cluster {
            Some(c) if c == cluster => Placed::Here,
            other => Placed::Elsewhere(other),
        });
    }
    let known = deployments::watch_row(&handles.db.pool, customer_id)
        .await?
        .is_some();
    Ok(if known {
        Placed::Elsewhere(None)
    } else {
        Placed::UnknownTenant
    })
}
