//! The nightly backup's own scripts, run for real outside Kubernetes: a tenant is rendered with
//! off-cluster backups on, the CronJob's containers are taken from the rendered YAML and run with
//! `sh` against a local PostgreSQL and a local S3 server (moto), with only what points at the
//! cluster swapped (database address and role, Secret values, the S3 endpoint, volume paths).
//! Then the database is restored from what was uploaded and its rows compared, and retention is
//! shown: the newest object always stays, older ones go once past the plan's retention.

use std::collections::BTreeMap;
use std::process::Command;

use billing::plans::{Catalogue, Plan};
use billing::render::*;
use serde_norway::Value;

#[path = "common/pg.rs"]
mod pg;
#[path = "tools/skip.rs"]
mod skip;
#[path = "tools/validate_manifests.rs"]
mod validate_manifests;
use validate_manifests::{kustomize_build, run, tool, validate_builtin, write_tree};
#[path = "tools/s3_job.rs"]
mod s3_job;
use s3_job::*;

const TENANT: &str = "acme";

/// The tenant rendered with off-cluster backups on, on `plan`; its backup CronJob's pod spec.
fn rendered_pod(plan: &Plan) -> (Value, RenderedTenant) {
    let spec = TenantSpec {
        id: TENANT.into(),
        ..demo_spec()
    };
    let out = render_with_s3(&spec, plan);
    let backup = &out.files[&format!("{}/backup.yaml", tenant_dir(TENANT))];
    let cronjob = parse_documents(backup)
        .unwrap()
        .into_iter()
        .find(|d| d["kind"] == "CronJob")
        .expect("a CronJob");
    let pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"].clone();
    (pod, out)
}

/// One night: the dump (init container), then the upload (the container).
fn run_job(
    pod: &Value,
    secret: &BTreeMap<&str, String>,
    cluster: &BTreeMap<&str, String>,
    volumes: &Volumes,
) -> String {
    let init = &pod["initContainers"]
        .as_sequence()
        .expect("init containers")[0];
    let main = &pod["containers"].as_sequence().unwrap()[0];
    assert_eq!(init["name"], "pg-dump");
    assert_eq!(main["name"], "s3-upload");
    run_container(init, secret, cluster, volumes);
    run_container(main, secret, cluster, volumes)
}

#[tokio::test(flavor = "multi_thread")]
async fn nightly_backup_ships_to_s3_restores_and_keeps_the_newest() {
    const WHAT: &str = "the off-cluster backup round trip";
    let Some((admin_url, moto)) = peers(WHAT) else {
        return;
    };

    // The tenant's database, with rows.
    let source = pg::TempDatabase::create(&admin_url).await;
    psql(
        &source.url,
        "CREATE TABLE readings (device text, at timestamptz, value double precision); \
         INSERT INTO readings SELECT 'sensor-' || (i % 7), \
         timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute', i * 0.5 \
         FROM generate_series(1, 2500) AS i;",
    );
    let rows = |url: &str| psql(url, "SELECT device, at, value FROM readings ORDER BY at");

    let catalogue = Catalogue::builtin().unwrap();
    let starter = catalogue.get("starter").unwrap().clone();
    let (pod, out) = rendered_pod(&starter);

    // The configured endpoint's port is the one the backup pod may reach.
    let policies = &out.files[&format!("{}/networkpolicies.yaml", tenant_dir(TENANT))];
    let backup_policy = parse_documents(policies)
        .unwrap()
        .into_iter()
        .find(|d| d["metadata"]["name"] == "backup")
        .unwrap();
    let egress_ports: Vec<i64> = backup_policy["spec"]["egress"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["ports"].as_sequence().unwrap().iter())
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    assert_eq!(egress_ports, [5432, 8443]);

    let work = tempfile::tempdir().unwrap();
    let volumes = Volumes::under(work.path(), &["backups", "tmp"]);
    let secret = secret_values();
    let cluster = cluster_env(&admin_url, &source.url, &moto);

    // Two nights within the default retention (30 days): both copies stay.
    let log = run_job(&pod, &secret, &cluster, &volumes);
    assert!(log.contains("uploaded"), "{log}");
    next_second();
    run_job(&pod, &secret, &cluster, &volumes);
    let two = tenant_objects(&moto, TENANT);
    assert_eq!(two.len(), 2, "{two:?}");
    assert!(two.iter().all(|k| k.ends_with(".dump")), "{two:?}");
    // The claim keeps its copies too (the fast path).
    let local = std::fs::read_dir(&volumes.0["/backups"]).unwrap().count();
    assert_eq!(local, 2);

    // Restore the newest upload into a fresh database: the same rows.
    let newest = two.last().unwrap();
    let download = work.path().join("restore.dump");
    aws(
        &moto,
        &[
            "s3",
            "cp",
            "--only-show-errors",
            &format!("s3://{BUCKET}/{newest}"),
            download.to_str().unwrap(),
        ],
    );
    let restored = pg::TempDatabase::create(&admin_url).await;
    run(Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", "--dbname", &restored.url])
        .arg(&download));
    let expected = rows(&source.url);
    assert_eq!(expected.lines().count(), 2500);
    assert_eq!(rows(&restored.url), expected);

    // A plan with zero days' retention: the next night deletes every older copy, not the newest.
    psql(
        &source.url,
        "INSERT INTO readings VALUES ('late', now(), 1)",
    );
    next_second();
    let zero_days = Plan {
        resources: billing::plans::Resources {
            backup_retention_days: Some(0),
            ..starter.resources.clone()
        },
        ..starter.clone()
    };
    let (pod_zero, _) = rendered_pod(&zero_days);
    let log = run_job(&pod_zero, &secret, &cluster, &volumes);
    assert_eq!(log.matches("deleted").count(), 2, "{log}");
    let one = tenant_objects(&moto, TENANT);
    assert_eq!(one.len(), 1, "{one:?}");
    assert!(!two.contains(&one[0]), "the newest copy is the one kept");

    // Idempotent: the same upload again changes nothing.
    let main = &pod_zero["containers"].as_sequence().unwrap()[0];
    run_container(main, &secret, &cluster, &volumes);
    assert_eq!(tenant_objects(&moto, TENANT), one);

    // Another tenant's folder is never touched by this tenant's retention.
    let other = work.path().join("other.dump");
    std::fs::write(&other, b"not ours").unwrap();
    let other_key = format!("s3://{BUCKET}/tenants/{TENANT}x/iotistic-20000101T000000Z.dump");
    aws(
        &moto,
        &[
            "s3",
            "cp",
            "--only-show-errors",
            other.to_str().unwrap(),
            &other_key,
        ],
    );
    run_container(main, &secret, &cluster, &volumes);
    let all = aws(
        &moto,
        &[
            "s3api",
            "list-objects-v2",
            "--bucket",
            BUCKET,
            "--query",
            "Contents[].Key",
            "--output",
            "text",
        ],
    );
    assert!(all.contains(&format!("tenants/{TENANT}x/")), "{all}");
}

/// The manifests with off-cluster backups on are valid Kubernetes (the round trip above runs
/// their scripts; this checks their shape), and the uploader reads only its own two keys.
#[test]
fn backup_manifests_build_and_validate_with_s3_on() {
    let (Some(kubectl), Some(validator)) = (
        tool("kubectl", &["version", "--client"]),
        tool("kubernetes-validate", &["--version"]),
    ) else {
        return;
    };
    let catalogue = Catalogue::builtin().unwrap();
    let (pod, out) = rendered_pod(catalogue.get("starter").unwrap());
    let tmp = tempfile::tempdir().unwrap();
    write_tree(&out, tmp.path());
    let built = kustomize_build(&kubectl, &tmp.path().join(tenant_dir(TENANT)));
    let docs = parse_documents(built.as_bytes()).unwrap();
    let custom = validate_builtin(&docs, tmp.path(), &validator);
    let sealed = custom.iter().find(|d| d["kind"] == "SealedSecret").unwrap();
    for key in BACKUP_SECRET_KEYS {
        assert!(sealed["spec"]["encryptedData"].get(key).is_some(), "{key}");
    }
    let uploader = &pod["containers"][0];
    let secret_keys: Vec<&str> = uploader["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v["valueFrom"]["secretKeyRef"]["key"].as_str())
        .collect();
    assert_eq!(secret_keys, BACKUP_SECRET_KEYS);
    assert_eq!(uploader["image"], DEFAULT_UPLOAD_IMAGE);
    assert_eq!(uploader["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(uploader["volumeMounts"][0]["readOnly"], true);
}
