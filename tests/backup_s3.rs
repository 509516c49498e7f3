//! The nightly backup's own scripts, run for real outside Kubernetes: a tenant is rendered with
//! off-cluster backups on, the CronJob's containers are taken from the rendered YAML and run with
//! `sh` against a local PostgreSQL and a local S3 server (moto), with only what points at the
//! cluster swapped (database address and role, Secret values, the S3 endpoint, volume paths).
//! Then the database is restored from what was uploaded and its rows compared, and retention is
//! shown: the newest object always stays, older ones go once past the plan's retention.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

const TENANT: &str = "acme";
const BUCKET: &str = "tenant-backups";
const ACCESS_KEY_ID: &str = "AKIABACKUPTEST0001";
const SECRET_ACCESS_KEY: &str = "backup-secret-never-printed-7f3a";
/// The endpoint as the platform would configure it; the test points the job at moto instead.
const CONFIGURED_ENDPOINT: &str = "https://objects.example.com:8443";

/// A `moto_server` on a free port, killed when dropped.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    fn start() -> Option<Moto> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        // Ready when it answers HTTP; a moto that never does fails the test below.
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(moto);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(moto)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The tenant rendered with off-cluster backups on, on `plan`; its backup CronJob's pod spec.
fn rendered_pod(plan: &Plan) -> (Value, RenderedTenant) {
    let settings = RenderSettings {
        backup_s3: Some(BackupS3 {
            bucket: BUCKET.into(),
            endpoint: Some(CONFIGURED_ENDPOINT.into()),
            region: "eu-central-1".into(),
            prefix: "tenants".into(),
            upload_image: DEFAULT_UPLOAD_IMAGE.into(),
        }),
        ..RenderSettings::default()
    };
    let mut sealed = demo_sealed_values();
    for key in BACKUP_SECRET_KEYS {
        sealed.encrypted.insert(key.into(), "AgFAKEbackup==".into());
    }
    let spec = TenantSpec {
        id: TENANT.into(),
        ..demo_spec()
    };
    let out = Renderer::builtin()
        .render(&spec, plan, &settings, &sealed)
        .unwrap();
    let backup = &out.files[&format!("{}/backup.yaml", tenant_dir(TENANT))];
    let cronjob = parse_documents(backup)
        .unwrap()
        .into_iter()
        .find(|d| d["kind"] == "CronJob")
        .expect("a CronJob");
    let pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"].clone();
    (pod, out)
}

/// Where the job's volumes live on this machine (mount path -> directory).
struct Volumes(BTreeMap<String, PathBuf>);

impl Volumes {
    /// `text` with every mount path replaced by its directory, in one pass (a directory may
    /// itself lie under a mount path, e.g. in /tmp).
    fn swap(&self, text: &str) -> String {
        let marked = self
            .0
            .keys()
            .enumerate()
            .fold(text.to_string(), |t, (i, mount)| {
                t.replace(mount.as_str(), &format!("\u{0}{i}\u{0}"))
            });
        self.0.values().enumerate().fold(marked, |t, (i, dir)| {
            t.replace(&format!("\u{0}{i}\u{0}"), dir.to_str().unwrap())
        })
    }
}

/// Runs one container of the pod with `sh`, its command and env as rendered except `cluster`
/// (what points at the cluster) and the Secret's values; returns its output.
fn run_container(
    container: &Value,
    secret: &BTreeMap<&str, String>,
    cluster: &BTreeMap<&str, String>,
    volumes: &Volumes,
) -> String {
    let name = container["name"].as_str().unwrap();
    let command: Vec<String> = container["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| volumes.swap(a.as_str().unwrap()))
        .collect();
    assert_eq!(&command[..2], ["sh", "-c"], "{name}: a shell script");
    let mut cmd = Command::new("sh");
    cmd.args(&command[1..]).env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
    for var in container["env"].as_sequence().unwrap() {
        let key = var["name"].as_str().unwrap();
        let value = match var.get("value") {
            Some(v) => volumes.swap(v.as_str().unwrap()),
            None => {
                let secret_key = var["valueFrom"]["secretKeyRef"]["key"].as_str().unwrap();
                secret[secret_key].clone()
            }
        };
        cmd.env(key, cluster.get(key).cloned().unwrap_or(value));
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} failed: {text}");
    for secret_value in secret.values() {
        assert!(
            !text.contains(secret_value.as_str()),
            "{name} printed a secret"
        );
    }
    text
}

fn aws(moto: &Moto, args: &[&str]) -> String {
    run(Command::new("aws")
        .args(["--endpoint-url", &moto.url])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_DEFAULT_REGION", "eu-central-1"))
}

/// Keys under the tenant's prefix, sorted.
fn tenant_objects(moto: &Moto) -> Vec<String> {
    let prefix = format!("tenants/{TENANT}/");
    let listing = aws(
        moto,
        &[
            "s3api",
            "list-objects-v2",
            "--bucket",
            BUCKET,
            "--prefix",
            &prefix,
            "--query",
            "Contents[].Key",
            "--output",
            "json",
        ],
    );
    let mut keys: Vec<String> = serde_json::from_str::<Option<Vec<String>>>(&listing)
        .unwrap()
        .unwrap_or_default();
    keys.sort();
    keys
}

fn psql(url: &str, sql: &str) -> String {
    run(Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-Atc", sql]))
}

/// The name part of a database URL (`postgres://u@h:p/name?x` -> `name`).
fn db_name(url: &str) -> &str {
    let path = url.rsplit_once('/').unwrap().1;
    path.split('?').next().unwrap()
}

/// (user, host, port) of `postgres://user[:password]@host[:port]/db`.
fn server_of(url: &str) -> (String, String, String) {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split('/').next().unwrap();
    let (user, server) = authority
        .rsplit_once('@')
        .unwrap_or(("postgres", authority));
    let user = user.split(':').next().unwrap();
    let (host, port) = server.rsplit_once(':').unwrap_or((server, "5432"));
    (user.into(), host.into(), port.into())
}

/// Waits for the next wall-clock second: dump names carry the second they were taken in.
fn next_second() {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let start = now();
    while now() == start {
        std::thread::sleep(Duration::from_millis(50));
    }
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

fn missing_tools() -> Option<String> {
    let tools = [
        ("moto_server", "--help"),
        ("aws", "--version"),
        ("pg_dump", "--version"),
        ("pg_restore", "--version"),
        ("psql", "--version"),
    ];
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(tool, arg)| !have(tool, arg))
        .map(|(tool, _)| *tool)
        .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

#[tokio::test(flavor = "multi_thread")]
async fn nightly_backup_ships_to_s3_restores_and_keeps_the_newest() {
    const WHAT: &str = "the off-cluster backup round trip";
    if let Some(missing) = missing_tools() {
        return skip::skip_unless_ci(
            WHAT,
            format!("missing {missing} (pip install 'moto[server]' awscli; PostgreSQL client)"),
        );
    }
    let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
        return skip::skip_unless_ci(WHAT, "TEST_DATABASE_URL is not set");
    };
    if !admin_url.starts_with("postgres") {
        return skip::skip_unless_ci(WHAT, "TEST_DATABASE_URL is not PostgreSQL");
    }
    let Some(moto) = Moto::start() else {
        return skip::skip_unless_ci(WHAT, "moto_server does not start");
    };
    aws(
        &moto,
        &[
            "s3api",
            "create-bucket",
            "--bucket",
            BUCKET,
            "--create-bucket-configuration",
            "LocationConstraint=eu-central-1",
        ],
    );

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
    let mut mounts = BTreeMap::new();
    for volume in ["backups", "tmp"] {
        let dir = work.path().join(volume);
        std::fs::create_dir(&dir).unwrap();
        mounts.insert(format!("/{volume}"), dir);
    }
    let volumes = Volumes(mounts);
    let secret = BTreeMap::from([
        ("DATABASE_PASSWORD", "unused-with-trust-auth".to_string()),
        ("BACKUP_S3_ACCESS_KEY_ID", ACCESS_KEY_ID.to_string()),
        ("BACKUP_S3_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_string()),
    ]);
    let (user, host, port) = server_of(&admin_url);
    let cluster = BTreeMap::from([
        ("PGHOST", host),
        ("PGPORT", port),
        ("PGUSER", user),
        ("PGDATABASE", db_name(&source.url).to_string()),
        ("BACKUP_S3_ENDPOINT", moto.url.clone()),
    ]);

    // Two nights within the default retention (30 days): both copies stay.
    let log = run_job(&pod, &secret, &cluster, &volumes);
    assert!(log.contains("uploaded"), "{log}");
    next_second();
    run_job(&pod, &secret, &cluster, &volumes);
    let two = tenant_objects(&moto);
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
    let one = tenant_objects(&moto);
    assert_eq!(one.len(), 1, "{one:?}");
    assert!(!two.contains(&one[0]), "the newest copy is the one kept");

    // Idempotent: the same upload again changes nothing.
    let main = &pod_zero["containers"].as_sequence().unwrap()[0];
    run_container(main, &secret, &cluster, &volumes);
    assert_eq!(tenant_objects(&moto), one);

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
