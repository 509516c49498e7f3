//! Moving a tenant in: its stack rendered with a move in progress carries a one-off backup Job
//! and a restore Job, which both clusters run (they sync the same tenant directory). Their
//! scripts run here for real, as rendered, against two local PostgreSQL databases (the source's
//! with rows, the target's empty) and a local S3 server (moto): the target ends with the
//! source's rows from a dump taken after the move began, the source is left as it was, and the
//! API's init container lets the API start only once the restore is done.

use std::collections::BTreeMap;
use std::time::Duration;

use billing::plans::Catalogue;
use billing::render::*;
use chrono::{DateTime, Utc};
use serde_norway::Value;

#[path = "common/pg.rs"]
mod pg;
#[path = "tools/skip.rs"]
mod skip;
#[path = "tools/validate_manifests.rs"]
mod validate_manifests;
use validate_manifests::{kustomize_build, tool, validate_builtin, write_tree};
#[path = "tools/s3_job.rs"]
mod s3_job;
use s3_job::*;

// (Not a name containing a mount path such as `/move`: the harness swaps those in env values.)
const TENANT: &str = "acme";

/// The tenant rendered on the starter plan, moving in since `since` (or not moving).
fn rendered(since: Option<DateTime<Utc>>) -> RenderedTenant {
    let spec = TenantSpec {
        id: TENANT.into(),
        restore_from: since,
        ..demo_spec()
    };
    let catalogue = Catalogue::builtin().unwrap();
    render_with_s3(&spec, catalogue.get("starter").unwrap())
}

fn documents(out: &RenderedTenant, file: &str) -> Vec<Value> {
    parse_documents(&out.files[&format!("{}/{file}", tenant_dir(TENANT))]).unwrap()
}

/// The pod spec of the Job whose name starts with `prefix`.
fn job_pod(out: &RenderedTenant, prefix: &str) -> Value {
    let job = documents(out, "backup.yaml")
        .into_iter()
        .find(|d| {
            d["kind"] == "Job"
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("a Job named {prefix}…"));
    job["spec"]["template"]["spec"].clone()
}

fn containers(pod: &Value, key: &str) -> Vec<Value> {
    pod[key].as_sequence().cloned().unwrap_or_default()
}

/// Runs every init container then every container of `pod`, in order, in fresh volumes; the
/// output of them all. Each must succeed.
fn run_pod(
    pod: &Value,
    cluster: &BTreeMap<&str, String>,
    volumes: &[&str],
) -> (String, tempfile::TempDir) {
    let work = tempfile::tempdir().unwrap();
    let volumes = Volumes::under(work.path(), volumes);
    let mut log = String::new();
    for container in containers(pod, "initContainers")
        .iter()
        .chain(&containers(pod, "containers"))
    {
        log += &run_container(container, &secret_values(), cluster, &volumes);
    }
    (log, work)
}

#[test]
fn only_a_move_renders_the_jobs_and_the_api_wait_and_they_validate() {
    let quiet = rendered(None);
    let api = |out: &RenderedTenant| {
        documents(out, "api.yaml")
            .into_iter()
            .find(|d| d["kind"] == "Deployment")
            .unwrap()
    };
    assert!(api(&quiet)["spec"]["template"]["spec"]
        .get("initContainers")
        .is_none());
    assert!(!documents(&quiet, "backup.yaml")
        .iter()
        .any(|d| d["kind"] == "Job"));

    let since = "2026-12-07T21:05:09Z".parse::<DateTime<Utc>>().unwrap();
    let moving = rendered(Some(since));
    let wait = &api(&moving)["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(wait["name"], "wait-for-restore");
    let names: Vec<String> = documents(&moving, "backup.yaml")
        .iter()
        .filter(|d| d["kind"] == "Job")
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "backup-before-move-20261207210509",
            "restore-20261207210509"
        ]
    );
    // No nightly dump while moving in: the target's empty database must never become the newest.
    let cronjob = documents(&moving, "backup.yaml")
        .into_iter()
        .find(|d| d["kind"] == "CronJob")
        .unwrap();
    assert_eq!(cronjob["spec"]["suspend"], true);

    // Without off-cluster backups there is nothing to restore from: refused, not rendered.
    let spec = TenantSpec {
        restore_from: Some(since),
        ..demo_spec()
    };
    let catalogue = Catalogue::builtin().unwrap();
    let err = Renderer::builtin()
        .render(
            &spec,
            catalogue.get("starter").unwrap(),
            &RenderSettings::default(),
            &demo_sealed_values(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("restore_from"), "{err}");

    let (Some(kubectl), Some(validator)) = (
        tool("kubectl", &["version", "--client"]),
        tool("kubernetes-validate", &["--version"]),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    write_tree(&moving, tmp.path());
    let built = kustomize_build(&kubectl, &tmp.path().join(tenant_dir(TENANT)));
    validate_builtin(
        &parse_documents(built.as_bytes()).unwrap(),
        tmp.path(),
        &validator,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_move_restores_the_target_from_a_dump_taken_after_it_began() {
    const WHAT: &str = "the move's backup and restore";
    let Some((admin_url, moto)) = peers(WHAT) else {
        return;
    };

    let source = pg::TempDatabase::create(&admin_url).await;
    let target = pg::TempDatabase::create(&admin_url).await;
    psql(
        &source.url,
        "CREATE TABLE devices (id text PRIMARY KEY, name text); \
         INSERT INTO devices SELECT 'dev-' || i, 'sensor ' || i FROM generate_series(1, 800) i;",
    );
    let rows = |url: &str| psql(url, "SELECT id, name FROM devices ORDER BY id");
    let source_rows = rows(&source.url);

    // A dump from before the move (yesterday's night) is never what the target restores.
    let old = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(old.path(), b"not a dump: restoring it would fail").unwrap();
    aws(
        &moto,
        &[
            "s3",
            "cp",
            "--only-show-errors",
            old.path().to_str().unwrap(),
            &format!("s3://{BUCKET}/tenants/{TENANT}/iotistic-20200101T020000Z.dump"),
        ],
    );

    // Dump names carry the second: the move begins a second before anything is dumped.
    let since = Utc::now() - chrono::Duration::seconds(1);
    let out = rendered(Some(since));
    let backup = job_pod(&out, "backup-before-move-");
    let restore = job_pod(&out, "restore-");
    let mut on_source = cluster_env(&admin_url, &source.url, &moto);
    let mut on_target = cluster_env(&admin_url, &target.url, &moto);
    for env in [&mut on_source, &mut on_target] {
        env.insert("RESTORE_POLL_SECONDS", "1".into());
        env.insert("RESTORE_WAIT_SECONDS", "120".into());
    }

    // The target's empty database uploads nothing.
    let (log, _) = run_pod(&backup, &on_target, &["move", "tmp"]);
    assert!(log.contains("nothing to move from here"), "{log}");
    assert_eq!(tenant_objects(&moto, TENANT).len(), 1);

    // The target's restore starts first and waits for a dump taken since the move began...
    let target_restore = {
        let restore = restore.clone();
        let on_target = on_target.clone();
        std::thread::spawn(move || run_pod(&restore, &on_target, &["restore", "tmp"]))
    };
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !target_restore.is_finished(),
        "restored before any fresh dump"
    );
    // ... which the source's copy of the backup Job uploads.
    let (log, _) = run_pod(&backup, &on_source, &["move", "tmp"]);
    assert!(log.contains("uploaded"), "{log}");
    let objects = tenant_objects(&moto, TENANT);
    assert_eq!(objects.len(), 2, "{objects:?} {log}");
    let (log, _) = target_restore.join().unwrap();
    assert!(log.contains("restored the database"), "{log}");
    assert_eq!(rows(&target.url), source_rows);

    // The source's copy of the restore keeps its data as it is, and marks it.
    let (log, _) = run_pod(&restore, &on_source, &["restore", "tmp"]);
    assert!(log.contains("kept as it is"), "{log}");
    assert_eq!(rows(&source.url), source_rows);

    // The API's init container lets the API start on both (it would wait otherwise).
    let api = documents(&out, "api.yaml")
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap();
    let wait = &api["spec"]["template"]["spec"]["initContainers"][0];
    for env in [&on_source, &on_target] {
        let work = tempfile::tempdir().unwrap();
        run_container(
            wait,
            &secret_values(),
            env,
            &Volumes::under(work.path(), &["tmp"]),
        );
    }

    // A second run (a retried Job) restores nothing again: the target keeps its rows.
    psql(
        &target.url,
        "INSERT INTO devices VALUES ('dev-new', 'written after the move')",
    );
    let (log, _) = run_pod(&restore, &on_target, &["restore", "tmp"]);
    assert!(log.contains("kept as it is"), "{log}");
    assert!(rows(&target.url).contains("dev-new"));

    // No fresh dump within the wait: the restore fails (its Job retries) and restores nothing.
    let empty = pg::TempDatabase::create(&admin_url).await;
    let mut later = cluster_env(&admin_url, &empty.url, &moto);
    later.insert("RESTORE_POLL_SECONDS", "1".into());
    later.insert("RESTORE_WAIT_SECONDS", "2".into());
    let later_out = rendered(Some(Utc::now() + chrono::Duration::hours(1)));
    let later_restore = job_pod(&later_out, "restore-");
    let work = tempfile::tempdir().unwrap();
    let volumes = Volumes::under(work.path(), &["restore", "tmp"]);
    let init = containers(&later_restore, "initContainers");
    run_container(&init[0], &secret_values(), &later, &volumes);
    let (ok, log) = try_container(&init[1], &secret_values(), &later, &volumes);
    assert!(!ok && log.contains("no dump taken since"), "{log}");
    let tables = psql(
        &empty.url,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
    );
    assert_eq!(tables.trim(), "0");
}
