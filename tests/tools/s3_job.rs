//! Running a tenant's backup and restore containers for real outside Kubernetes: their
//! scripts as rendered, with `sh`, against a local PostgreSQL and a local S3 server (moto), with
//! only what points at the cluster swapped (database address and role, Secret values, the S3
//! endpoint, volume paths). Shared by tests/backup_s3.rs and tests/move_restore.rs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use billing::plans::Plan;
use billing::render::*;
use serde_norway::Value;

use super::validate_manifests::run;

pub const BUCKET: &str = "tenant-backups";
pub const ACCESS_KEY_ID: &str = "AKIABACKUPTEST0001";
pub const SECRET_ACCESS_KEY: &str = "backup-secret-never-printed-7f3a";
/// The endpoint as the platform would configure it; the test points the job at moto instead.
pub const CONFIGURED_ENDPOINT: &str = "https://objects.example.com:8443";

/// `spec` rendered on `plan` with off-cluster backups on (the endpoint as the platform would
/// configure it; the tests point the jobs at moto instead).
pub fn render_with_s3(spec: &TenantSpec, plan: &Plan) -> RenderedTenant {
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
    Renderer::builtin()
        .render(spec, plan, &settings, &sealed)
        .unwrap()
}

/// A `moto_server` on a free port, killed when dropped.
pub struct Moto {
    child: Child,
    pub url: String,
}

impl Moto {
    pub fn start() -> Option<Moto> {
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

pub fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Where the job's volumes live on this machine (mount path -> directory).
pub struct Volumes(pub BTreeMap<String, PathBuf>);

impl Volumes {
    /// `text` with every mount path replaced by its directory, in one pass (a directory may
    /// itself lie under a mount path, e.g. in /tmp).
    pub fn swap(&self, text: &str) -> String {
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
/// (what points at the cluster) and the Secret's values; returns its output. It must succeed.
pub fn run_container(
    container: &Value,
    secret: &BTreeMap<&str, String>,
    cluster: &BTreeMap<&str, String>,
    volumes: &Volumes,
) -> String {
    let (ok, text) = try_container(container, secret, cluster, volumes);
    assert!(ok, "{:?} failed: {text}", container["name"].as_str());
    text
}

/// [`run_container`], for a container that may fail: whether it succeeded, and its output.
pub fn try_container(
    container: &Value,
    secret: &BTreeMap<&str, String>,
    cluster: &BTreeMap<&str, String>,
    volumes: &Volumes,
) -> (bool, String) {
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
    for secret_value in secret.values() {
        assert!(
            !text.contains(secret_value.as_str()),
            "{name} printed a secret"
        );
    }
    (out.status.success(), text)
}

pub fn aws(moto: &Moto, args: &[&str]) -> String {
    run(Command::new("aws")
        .args(["--endpoint-url", &moto.url])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_DEFAULT_REGION", "eu-central-1"))
}

pub fn psql(url: &str, sql: &str) -> String {
    run(Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-Atc", sql]))
}

/// The name part of a database URL (`postgres://u@h:p/name?x` -> `name`).
pub fn db_name(url: &str) -> &str {
    let path = url.rsplit_once('/').unwrap().1;
    path.split('?').next().unwrap()
}

/// (user, host, port) of `postgres://user[:password]@host[:port]/db`.
pub fn server_of(url: &str) -> (String, String, String) {
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
pub fn next_second() {
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

pub fn missing_tools() -> Option<String> {
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

/// Keys under `tenant`'s folder of the bucket, sorted.
pub fn tenant_objects(moto: &Moto, tenant: &str) -> Vec<String> {
    let prefix = format!("tenants/{tenant}/");
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

/// Creates the bucket the rendered jobs use.
pub fn create_bucket(moto: &Moto) {
    aws(
        moto,
        &[
            "s3api",
            "create-bucket",
            "--bucket",
            BUCKET,
            "--create-bucket-configuration",
            "LocationConstraint=eu-central-1",
        ],
    );
}

impl Volumes {
    /// A fresh directory under `work` for each of `names`, mounted at `/<name>`.
    pub fn under(work: &std::path::Path, names: &[&str]) -> Volumes {
        let mut mounts = BTreeMap::new();
        for volume in names {
            let dir = work.join(volume);
            std::fs::create_dir_all(&dir).unwrap();
            mounts.insert(format!("/{volume}"), dir);
        }
        Volumes(mounts)
    }
}

/// The tenant Secret's values the jobs read (the database password is unused: trust auth).
pub fn secret_values() -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("DATABASE_PASSWORD", "unused-with-trust-auth".to_string()),
        ("BACKUP_S3_ACCESS_KEY_ID", ACCESS_KEY_ID.to_string()),
        ("BACKUP_S3_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_string()),
    ])
}

/// What points at the cluster, swapped for this machine: the database `db_url` on the server
/// of `admin_url`, and moto for the S3 endpoint.
pub fn cluster_env(admin_url: &str, db_url: &str, moto: &Moto) -> BTreeMap<&'static str, String> {
    let (user, host, port) = server_of(admin_url);
    BTreeMap::from([
        ("PGHOST", host),
        ("PGPORT", port),
        ("PGUSER", user),
        ("PGDATABASE", db_name(db_url).to_string()),
        ("BACKUP_S3_ENDPOINT", moto.url.clone()),
    ])
}

/// What the jobs run against: PostgreSQL (its admin URL) and a running moto holding the
/// bucket. None when a tool or the database is missing (a failure under CI, see `skip`).
pub fn peers(what: &str) -> Option<(String, Moto)> {
    use super::skip::skip_unless_ci;
    if let Some(missing) = missing_tools() {
        let hint = "pip install 'moto[server]' awscli; PostgreSQL client";
        skip_unless_ci(what, format!("missing {missing} ({hint})"));
        return None;
    }
    let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
        skip_unless_ci(what, "TEST_DATABASE_URL is not set");
        return None;
    };
    if !admin_url.starts_with("postgres") {
        skip_unless_ci(what, "TEST_DATABASE_URL is not PostgreSQL");
        return None;
    }
    let Some(moto) = Moto::start() else {
        skip_unless_ci(what, "moto_server does not start");
        return None;
    };
    create_bucket(&moto);
    Some((admin_url, moto))
}
