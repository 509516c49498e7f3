//! Tenant pods as the Kubernetes poller last listed them: one cluster-wide list of the pods
//! billing's templates label (`app.kubernetes.io/managed-by=billing`), grouped by the tenant
//! namespace `customer-<id>`, kept in memory for the status view's `pods`. Without a poller
//! (no kubeconfig, `WATCHER_KUBE_POLL=off`) nothing is ever listed and every tenant has none.

use std::collections::HashMap;
use std::sync::RwLock;

use serde::Serialize;
use serde_json::Value;

use super::tenant_of;

/// Label selector of the pods the poller lists (templates/_macros.jinja puts it on every pod).
pub const SELECTOR: &str = "app.kubernetes.io/managed-by=billing";

/// One pod in the old admin dashboard's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PodView {
    pub name: String,
    /// `status.phase`: Pending, Running, Succeeded, Failed or Unknown.
    pub status: String,
    /// Every container reports ready (a pod without container statuses yet is not ready).
    pub ready: bool,
}

impl PodView {
    fn from_item(item: &Value) -> Option<(String, PodView)> {
        let meta = item.get("metadata")?;
        let namespace = meta.get("namespace")?.as_str()?;
        let customer_id = tenant_of(&format!("tenant-{}", namespace.strip_prefix("customer-")?))?;
        let status = item.get("status");
        let containers = status
            .and_then(|s| s.get("containerStatuses"))
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty());
        let ready = containers.is_some_and(|c| {
            c.iter()
                .all(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
        });
        let phase = status
            .and_then(|s| s.get("phase"))
            .and_then(Value::as_str)
            .unwrap_or("Unknown");
        let pod = PodView {
            name: meta.get("name")?.as_str()?.to_string(),
            status: phase.to_string(),
            ready,
        };
        Some((customer_id, pod))
    }
}

/// A PodList response (`{"items": [...]}`) as each tenant's pods, sorted by name; pods outside
/// tenant namespaces are skipped.
pub fn by_tenant(list: &Value) -> HashMap<String, Vec<PodView>> {
    let mut out: HashMap<String, Vec<PodView>> = HashMap::new();
    let items = list.get("items").and_then(Value::as_array);
    for (customer_id, pod) in items.into_iter().flatten().filter_map(PodView::from_item) {
        out.entry(customer_id).or_default().push(pod);
    }
    for pods in out.values_mut() {
        pods.sort_by(|a, b| a.name.cmp(&b.name));
    }
    out
}

/// The newest pod list of each poller (one per cluster), each replaced whole by its passes.
#[derive(Debug, Default)]
pub struct PodStore(RwLock<HashMap<String, HashMap<String, Vec<PodView>>>>);

impl PodStore {
    /// Replaces what the context-less poller listed.
    pub fn replace(&self, pods: HashMap<String, Vec<PodView>>) {
        self.replace_from("", pods);
    }

    /// Replaces what the poller of `cluster` listed, leaving the other clusters' pods alone.
    pub fn replace_from(&self, cluster: &str, pods: HashMap<String, Vec<PodView>>) {
        let mut all = self.0.write().unwrap_or_else(|e| e.into_inner());
        all.insert(cluster.to_string(), pods);
    }

    /// The tenant's pods as last listed, whichever cluster runs them; empty when none were (or
    /// no poller runs).
    pub fn of(&self, customer_id: &str) -> Vec<PodView> {
        let all = self.0.read().unwrap_or_else(|e| e.into_inner());
        let mut pods: Vec<PodView> = all
            .values()
            .filter_map(|by_tenant| by_tenant.get(customer_id))
            .flatten()
            .cloned()
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        pods
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Value {
        let path = format!(
            "{}/tests/fixtures/kube-pod-list.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn pod(name: &str, status: &str, ready: bool) -> PodView {
        PodView {
            name: name.into(),
            status: status.into(),
            ready,
        }
    }

    #[test]
    fn reads_a_recorded_pod_list() {
        let got = by_tenant(&fixture());
        assert_eq!(
            got.get("k3x9m2p7q4wz").map(Vec::as_slice),
            Some(
                &[
                    pod("api-6d8f9c7b5-7xk2q", "Running", true),
                    pod("backup-29112340-hx8sd", "Succeeded", false),
                    pod("dashboard-5b7c6d9f8-m4n2p", "Running", false),
                    pod("exporter-7f6b5c4d9-q2w8e", "Pending", false),
                ][..]
            ),
            "sorted by name; ready only when every container is"
        );
        assert_eq!(
            got.get("m8q2v5t1r6ye").map(Vec::as_slice),
            Some(&[pod("api-6d8f9c7b5-zt5rw", "Failed", false)][..])
        );
        assert_eq!(
            got.len(),
            2,
            "pods outside customer-<id> namespaces: {got:?}"
        );
    }

    #[test]
    fn the_store_answers_per_tenant_and_empty_otherwise() {
        let store = PodStore::default();
        assert!(store.of("k3x9m2p7q4wz").is_empty());
        store.replace(by_tenant(&fixture()));
        assert_eq!(store.of("k3x9m2p7q4wz").len(), 4);
        assert!(store.of("zzzzzzzzzzzz").is_empty());
        store.replace(by_tenant(&serde_json::json!({"items": []})));
        assert!(
            store.of("k3x9m2p7q4wz").is_empty(),
            "a pass replaces the list"
        );
    }

    #[test]
    fn each_cluster_s_poller_replaces_only_its_own_pods() {
        let store = PodStore::default();
        store.replace_from("eu-1", by_tenant(&fixture()));
        store.replace_from("us-1", by_tenant(&serde_json::json!({"items": []})));
        assert_eq!(
            store.of("k3x9m2p7q4wz").len(),
            4,
            "us-1's empty pass kept eu-1's pods"
        );
        store.replace_from("eu-1", HashMap::new());
        assert!(store.of("k3x9m2p7q4wz").is_empty());
    }
}
