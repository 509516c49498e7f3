//! A tenant whose subscription does not run (suspended, canceled) renders every workload at
//! zero replicas and its backups paused, keeps its volumes exactly, and routes its Ingress to
//! the suspended page; back to active, it renders the normal stack again.

use std::collections::BTreeMap;

use billing::plans::Catalogue;
use billing::render::*;
use serde_norway::Value;

/// kind/name -> document, for the demo tenant with `status` on every plan.
fn render(plan: &str, status: &str) -> BTreeMap<String, Value> {
    let catalogue = Catalogue::builtin().unwrap();
    let spec = TenantSpec {
        plan: plan.into(),
        subscription_status: status.into(),
        ..demo_spec()
    };
    let out = Renderer::builtin()
        .render(
            &spec,
            catalogue.get(plan).unwrap(),
            &RenderSettings::default(),
            &demo_sealed_values(),
        )
        .unwrap_or_else(|e| panic!("{status}: {e}"));
    out.files
        .iter()
        .filter(|(path, _)| !path.ends_with("/kustomization.yaml"))
        .flat_map(|(_, bytes)| parse_documents(bytes).unwrap())
        .map(|d| {
            let key = format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            );
            (key, d)
        })
        .collect()
}

/// Desired replicas of every Deployment and StatefulSet.
fn replicas(objects: &BTreeMap<String, Value>) -> BTreeMap<&str, i64> {
    objects
        .iter()
        .filter(|(_, d)| matches!(d["kind"].as_str(), Some("Deployment" | "StatefulSet")))
        .map(|(k, d)| (k.as_str(), d["spec"]["replicas"].as_i64().unwrap()))
        .collect()
}

/// Every volume the tenant's data lives on: the claims and the StatefulSet's claim templates.
fn volumes(objects: &BTreeMap<String, Value>) -> Vec<Value> {
    let mut out: Vec<Value> = objects
        .iter()
        .filter(|(k, _)| k.starts_with("PersistentVolumeClaim/"))
        .map(|(_, d)| d.clone())
        .collect();
    out.push(objects["StatefulSet/postgres"]["spec"]["volumeClaimTemplates"].clone());
    out
}

fn backends(objects: &BTreeMap<String, Value>) -> Vec<&str> {
    objects["Ingress/tenant"]["spec"]["rules"][0]["http"]["paths"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["backend"]["service"]["name"].as_str().unwrap())
        .collect()
}

fn backup_suspended(objects: &BTreeMap<String, Value>) -> bool {
    objects["CronJob/postgres-backup"]["spec"]["suspend"]
        .as_bool()
        .unwrap()
}

#[test]
fn a_suspended_tenant_scales_to_zero_keeps_its_volumes_and_shows_the_page() {
    for plan in Catalogue::builtin().unwrap().plans.keys() {
        let active = render(plan, "active");
        for status in ["suspended", "canceled"] {
            let off = render(plan, status);
            let what = format!("{plan}, {status}");
            let scaled: BTreeMap<_, _> = replicas(&off);
            for (workload, n) in &scaled {
                let want = i64::from(*workload == "Deployment/suspended");
                assert_eq!(*n, want, "{what}: {workload}");
            }
            assert_eq!(scaled.len(), 6, "{what}: every workload is counted");
            assert!(backup_suspended(&off), "{what}: backups paused");
            assert_eq!(volumes(&off), volumes(&active), "{what}: volumes unchanged");
            assert_eq!(backends(&off), ["suspended", "suspended"], "{what}");
            assert_eq!(
                off.keys().collect::<Vec<_>>(),
                active.keys().collect::<Vec<_>>(),
                "{what}: the same objects, so nothing is pruned"
            );
        }
    }
}

#[test]
fn running_statuses_render_the_plans_replicas_and_a_sleeping_page() {
    let catalogue = Catalogue::builtin().unwrap();
    for (name, plan) in &catalogue.plans {
        for status in ["trialing", "active", "past_due"] {
            let on = render(name, status);
            let what = format!("{name}, {status}");
            let r = replicas(&on);
            assert_eq!(r["Deployment/api"], plan.resources.api_replicas, "{what}");
            assert_eq!(
                r["Deployment/dashboard"], plan.resources.dashboard_replicas,
                "{what}"
            );
            for one in [
                "StatefulSet/postgres",
                "Deployment/mosquitto",
                "Deployment/exporter",
            ] {
                assert_eq!(r[one], 1, "{what}: {one}");
            }
            assert_eq!(r["Deployment/suspended"], 0, "{what}");
            assert!(!backup_suspended(&on), "{what}");
            assert_eq!(backends(&on), ["api", "dashboard"], "{what}");
        }
    }
}

#[test]
fn an_unknown_status_is_refused() {
    let catalogue = Catalogue::builtin().unwrap();
    let spec = TenantSpec {
        subscription_status: "paused".into(),
        ..demo_spec()
    };
    let err = Renderer::builtin()
        .render(
            &spec,
            catalogue.get(&spec.plan).unwrap(),
            &RenderSettings::default(),
            &demo_sealed_values(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            RenderError::InvalidSpec {
                field: "subscription_status",
                ..
            }
        ),
        "{err}"
    );
}
