//! Test harness: runs the real `billing` binary on an ephemeral port against a fresh database
//! (a SQLite file, or a new PostgreSQL database when TEST_DATABASE_URL is set) and talks HTTP.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::AnyPool;

#[path = "../tools/skip.rs"]
pub mod skip;

pub mod cli;
pub mod git_cli;
pub mod localstripe;
pub mod pg;
pub mod review;
pub mod smtp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// The password of the customers the shared helpers sign up.
pub const PASSWORD: &str = "correct-horse-battery";

pub struct TestServer {
    pub base: String,
    pub database_url: String,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    extra_env: Vec<(String, String)>,
    child: Option<Child>,
    log_path: PathBuf,
    /// The database created for this server, dropped after it (fields drop after `drop`, which
    /// stops the server); None for a replica or a database the test brought.
    _database: Option<pg::TempDatabase>,
}

/// One sealing key pair for every server of this test binary: generating RSA-4096 per server
/// would dominate the run. Tests that unseal read the private key from here.
pub fn shared_sealing_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        billing::seal::SealingKey::load_or_generate(None, dir.path()).expect("sealing key");
        dir
    })
    .path()
}

pub fn sealing_cert_path() -> PathBuf {
    shared_sealing_dir().join("sealing/sealing-cert.pem")
}

pub fn sealing_private_key() -> rsa::RsaPrivateKey {
    use rsa::pkcs8::DecodePrivateKey;
    let pem =
        std::fs::read_to_string(shared_sealing_dir().join("sealing/sealing-private.pem")).unwrap();
    rsa::RsaPrivateKey::from_pkcs8_pem(&pem).expect("PKCS#8 sealing key")
}

pub fn billing_bin() -> &'static str {
    env!("CARGO_BIN_EXE_billing")
}

/// A `billing` command with a clean environment pointing at `data_dir`.
pub fn billing_command(data_dir: &Path, database_url: &str) -> Command {
    let mut cmd = Command::new(billing_bin());
    for var in [
        "DATABASE_URL",
        "ADMIN_API_TOKEN",
        "SESSION_SECRET",
        "LICENSE_PRIVATE_KEY_PATH",
        "LICENSE_PUBLIC_KEY_PATH",
        "LICENSE_RETIRED_KEYS_DIR",
        "PLANS_FILE",
        "LISTEN_ADDR",
        "BASE_DOMAIN",
        "GITOPS_REPO",
        "GITOPS_REMOTE",
        "SEALED_SECRETS_CERT",
        "TEMPLATES_DIR",
        "BACKUP_S3_BUCKET",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("DATA_DIR", data_dir)
        .env("DATABASE_URL", database_url);
    cmd
}

/// A fresh database: a SQLite file in `dir`, or a new PostgreSQL database; None (after saying
/// so) when PostgreSQL is not configured.
/// A database for one test: a SQLite file in `dir`, or a new PostgreSQL database (dropped
/// when the returned guard goes); None when PostgreSQL is not configured (outside CI).
pub async fn database_url(
    backend: Backend,
    dir: &Path,
) -> Option<(String, Option<pg::TempDatabase>)> {
    match backend {
        Backend::Sqlite => Some((
            format!("sqlite://{}?mode=rwc", dir.join("billing.db").display()),
            None,
        )),
        Backend::Postgres => match std::env::var("TEST_DATABASE_URL") {
            Ok(url) => {
                let db = pg::TempDatabase::create(&url).await;
                Some((db.url.clone(), Some(db)))
            }
            Err(_) => {
                skip::skip_unless_ci("the PostgreSQL tests", "TEST_DATABASE_URL is not set");
                None
            }
        },
    }
}

impl TestServer {
    /// Starts a server, or returns None (after saying so) when PostgreSQL is not configured.
    /// On CI a missing TEST_DATABASE_URL is an error, never a silent skip.
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, &[]).await
    }

    pub async fn start_with(backend: Backend, env: &[(&str, &str)]) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (database_url, database) = database_url(backend, dir.path()).await?;
        Some(Self::launch(dir, database_url, database, env).await)
    }

    /// Starts a server against a database the test provides (e.g. its own PostgreSQL cluster).
    pub async fn start_on(database_url: String, env: &[(&str, &str)]) -> Self {
        Self::launch(
            tempfile::tempdir().expect("tempdir"),
            database_url,
            None,
            env,
        )
        .await
    }

    /// Starts `billing serve` with its data in `dir` against `database_url`.
    async fn launch(
        dir: tempfile::TempDir,
        database_url: String,
        database: Option<pg::TempDatabase>,
        env: &[(&str, &str)],
    ) -> TestServer {
        let mut server = TestServer {
            base: String::new(),
            database_url,
            log_path: dir.path().join("server.log"),
            dir,
            client: reqwest::Client::new(),
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            _database: database,
        };
        server.spawn().await;
        server
    }

    /// A second server on the same database, with its own data directory (and so its own
    /// local GitOps repository): a replica.
    pub async fn start_replica(&self, env: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::launch(dir, self.database_url.clone(), None, env).await
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn command(&self) -> Command {
        billing_command(self.data_dir(), &self.database_url)
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = self.command();
        cmd.arg("serve")
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("ADMIN_API_TOKEN", ADMIN_TOKEN)
            .env("SEALED_SECRETS_CERT", sealing_cert_path())
            .env("RUST_LOG", "debug,sqlx=warn,hyper=info,h2=info,tower=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn billing serve"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
            let fresh = text.get(offset as usize..).unwrap_or_default();
            if let Some(pos) = fresh.find("listening on http://") {
                let addr: String = fresh[pos + "listening on http://".len()..]
                    .chars()
                    // Up to the closing quote when the line is JSON (LOG_FORMAT=json).
                    .take_while(|c| !c.is_whitespace() && *c != '"')
                    .collect();
                self.base = format!("http://{addr}");
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("billing serve exited with {status}:\n{text}");
            }
            assert!(Instant::now() < deadline, "server did not start:\n{text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits up to `within` for the server to exit; its exit status, or None
    /// when it was still running (it is then killed).
    pub async fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on our own child's pid, which it keeps until we reap it.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("wait for the server") {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Everything the server has written to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn db(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        AnyPool::connect(&self.database_url)
            .await
            .expect("connect to the test database")
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request");
        status_and_json(resp).await
    }

    /// POSTs to `path` as the admin, without a body.
    pub async fn admin_post(&self, path: &str) -> (u16, serde_json::Value) {
        self.as_admin(reqwest::Method::POST, path).await
    }

    /// DELETEs `path` as the admin, without a body.
    pub async fn admin_delete(&self, path: &str) -> (u16, serde_json::Value) {
        self.as_admin(reqwest::Method::DELETE, path).await
    }

    async fn as_admin(&self, method: reqwest::Method, path: &str) -> (u16, serde_json::Value) {
        let req = self
            .client
            .request(method.clone(), self.url(path))
            .bearer_auth(ADMIN_TOKEN);
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => panic!("{method} {path}: {e}\nserver log:\n{}", self.log()),
        };
        status_and_json(resp).await
    }

    pub async fn get_json(&self, path: &str, bearer: Option<&str>) -> (u16, serde_json::Value) {
        let mut req = self.client.get(self.url(path));
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => panic!("GET {path}: {e}\nserver log:\n{}", self.log()),
        };
        status_and_json(resp).await
    }

    /// The value of the sample `name` (with its labels, if any) in `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
    }

    /// Waits until no render job is pending (`/readyz`): everything queued is committed.
    pub async fn wait_queue_drained(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, ready) = self.get_json("/readyz", None).await;
            if ready["pending_render_jobs"] == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "render jobs still pending after {timeout:?}: {ready}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The admin view of a tenant's deployment status.
    pub async fn deployment_status(&self, id: &str) -> serde_json::Value {
        let path = format!("/api/customers/{id}/deployment/status");
        let (code, body) = self.get_json(&path, Some(ADMIN_TOKEN)).await;
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Waits until the tenant's status is `want` and nothing is pending for it.
    pub async fn wait_for_status(
        &self,
        id: &str,
        want: &str,
        timeout: Duration,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let body = self.deployment_status(id).await;
            if body["status"] == want && body["pending_changes"] == 0 {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never became {want}: {body}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Signs a customer up (asserting the 201) and returns their id.
    pub async fn signed_up(&self, email: &str, company: &str) -> String {
        let (code, body) = self.signup(email, PASSWORD, company).await;
        assert_eq!(code, 201, "{body}");
        body["customer"]["customer_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn signup(
        &self,
        email: &str,
        password: &str,
        company: &str,
    ) -> (u16, serde_json::Value) {
        self.post_json(
            "/api/customers/signup",
            &serde_json::json!({ "email": email, "password": password, "company_name": company }),
        )
        .await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A response's status and JSON body (null when the body is not JSON).
async fn status_and_json(resp: reqwest::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// Signs up one customer per email from `clients` concurrent clients, and SIGKILLs the server
/// once `kill_after` of them got their 201 (or 30 s passed), a random 0–40 ms later: somewhere
/// in the commits and pushes that follow. Returns the 201 bodies; the server is left stopped.
pub async fn signups_until_killed(
    s: &mut TestServer,
    emails: Vec<String>,
    clients: usize,
    kill_after: usize,
) -> Vec<serde_json::Value> {
    use rand::Rng;
    let queue = std::sync::Arc::new(std::sync::Mutex::new(emails));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (base, client, tx, queue) = (s.base.clone(), s.client.clone(), tx.clone(), queue.clone());
            tokio::spawn(async move {
                let mut created = Vec::new();
                loop {
                    // The guard must not live across an await.
                    let next = queue.lock().unwrap().pop();
                    let Some(email) = next else { break };
                    let body = serde_json::json!({"email": email, "password": PASSWORD, "company_name": format!("Crash {email}")});
                    let Ok(resp) = client.post(format!("{base}/api/customers/signup")).json(&body).send().await else {
                        break;
                    };
                    if resp.status().as_u16() != 201 {
                        break;
                    }
                    let Ok(v) = resp.json::<serde_json::Value>().await else {
                        break;
                    };
                    created.push(v);
                    let _ = tx.send(());
                }
                created
            })
        })
        .collect();
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = 0;
    while got < kill_after && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            Ok(Some(())) => got += 1,
            Ok(None) => break,
            Err(_) => {}
        }
    }
    tokio::time::sleep(Duration::from_millis(rand::thread_rng().gen_range(0..40))).await;
    s.stop();
    let mut created = Vec::new();
    for t in tasks {
        created.extend(t.await.unwrap());
    }
    created
}

/// HMAC-SHA256 of the concatenated `parts` under `key`, lower-case hex: how Flux's generic-hmac
/// provider and Stripe sign what they send.
pub fn hmac_sha256_hex(key: &str, parts: &[&[u8]]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

pub async fn count(pool: &AnyPool, sql: &str, arg: &str) -> i64 {
    use sqlx::Row;
    sqlx::query(sql)
        .bind(arg)
        .fetch_one(pool)
        .await
        .expect(sql)
        .get::<i64, _>(0)
}

/// Runs the same test body on SQLite and on PostgreSQL, each on a fresh server (started with
/// the environment `env = NAME` names, a `&[(&str, &str)]` const of the test file, if given).
#[macro_export]
macro_rules! on_both_backends {
    (env = $env:ident; $($name:ident),* $(,)?) => {
        $crate::on_both_backends!(@with super::$env; $($name),*);
    };
    ($($name:ident),* $(,)?) => {
        $crate::on_both_backends!(@with &[]; $($name),*);
    };
    (@with $env:expr; $($name:ident),*) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = $crate::common::TestServer::start_with($crate::common::Backend::Sqlite, $env).await.unwrap();
                    super::$name(server).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(server) = $crate::common::TestServer::start_with($crate::common::Backend::Postgres, $env).await {
                        super::$name(server).await;
                    }
                }
            )*
        }
    };
}

/// Runs the same test body once per backend, handing it the backend (for tests that start
/// their servers themselves).
#[macro_export]
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Sqlite).await; }
        )* }
        mod postgres { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Postgres).await; }
        )* }
    };
}

/// A real `git daemon` serving bare repositories under a temporary directory on 127.0.0.1,
/// with receive-pack enabled: the server side checks and locks ref updates like any Git host.
pub struct GitDaemon {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl GitDaemon {
    /// Starts the daemon with an empty bare repository `name` (branch `main`).
    pub fn start(name: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        git2::Repository::init_opts(
            dir.path().join(name),
            git2::RepositoryInitOptions::new()
                .bare(true)
                .initial_head("main"),
        )
        .expect("bare repository");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        // Its own process group: `git daemon` execs or forks `git-daemon`, which forks once per
        // connection, so killing only the child we spawned would orphan the real server.
        let child = Command::new("git")
            .process_group(0)
            .arg("daemon")
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg("--enable=receive-pack")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", dir.path().display()))
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                skip::skip_unless_ci("the git daemon tests", format!("git daemon: {e}"));
                return None;
            }
        };
        let daemon = GitDaemon { dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(daemon)
    }

    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }

    pub fn repo(&self, name: &str) -> git2::Repository {
        git2::Repository::open_bare(self.dir.path().join(name)).expect("served repository")
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        kill_process_group(&mut self.child);
    }
}

/// Kills `child` and every process in its group (it was spawned with `process_group(0)`), then
/// reaps it.
pub fn kill_process_group(child: &mut Child) {
    // SAFETY: kill(2) with a negative pid signals the group whose id is the child's pid.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// What `git count-objects -v` counts as garbage in the repository at `repo`: files in
/// `objects/pack` that are no part of a whole pack (temporary packs, an index without its pack).
pub fn git_garbage(repo: &std::path::Path) -> u64 {
    let out = std::process::Command::new("git")
        .args(["count-objects", "-v"])
        .current_dir(repo)
        .output()
        .expect("git count-objects");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("garbage: ")?.trim().parse().ok())
        .expect("count-objects prints garbage:")
}

/// The pack indexes in `repo` whose pack is missing (libgit2 took their objects for present).
pub fn indexes_without_pack(repo: &std::path::Path) -> Vec<String> {
    let dir = repo.join("objects/pack");
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".idx")?;
            (!dir.join(format!("{stem}.pack")).exists()).then_some(name)
        })
        .collect()
}

/// `git fsck --strict` finds nothing wrong in the repository at `repo` (the git CLI is part of
/// the tests' tools: without it this fails).
pub fn assert_git_fsck_strict(repo: &std::path::Path) {
    let out = std::process::Command::new("git")
        .args(["fsck", "--strict", "--no-dangling"])
        .current_dir(repo)
        .output()
        .expect("git fsck");
    assert!(
        out.status.success(),
        "git fsck {}: {}",
        repo.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
