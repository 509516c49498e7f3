//! A database outage through the running server: with the test's own PostgreSQL cluster
//! stopped, signup and login fail fast with 503 `database_unavailable` and `Retry-After`, and
//! `/readyz` says 503 within about a second; once the cluster is back, signups work again
//! without restarting billing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::{json, Value};

/// A throwaway PostgreSQL cluster (initdb + pg_ctl) in a temporary directory on a free port,
/// stopped when dropped, even when the test fails.
struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// Set when running as root: initdb and postgres refuse root, so they run as `postgres`.
    as_user: Option<&'static str>,
}

impl PgCluster {
    /// The newest installed server's binaries; None (after saying so) when there are none,
    /// which on CI is a failure.
    fn find_bin() -> Option<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
            .collect();
        found.sort_by_key(|p| {
            p.parent()
                .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
                .unwrap_or(0)
        });
        if found.is_empty() {
            common::skip::skip_unless_ci(
                "the database outage tests",
                "no initdb and pg_ctl under /usr/lib/postgresql/*/bin",
            );
        }
        found.pop()
    }

    fn init() -> Option<Self> {
        let bin = Self::find_bin()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let as_user = (unsafe { libc::geteuid() } == 0).then_some("postgres");
        if let Some(user) = as_user {
            let status = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown {user} the cluster directory");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let cluster = PgCluster {
            bin,
            dir,
            port,
            as_user,
        };
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "-A", "trust", "--no-sync"],
        );
        Some(cluster)
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) -> std::process::Output {
        let program = self.bin.join(tool);
        let mut cmd = match self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.server_log()
        );
        out
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn start(&self) {
        let socket_dir = self.dir.path().display().to_string();
        let options = format!(
            "-p {} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port
        );
        let log = Path::new(&socket_dir)
            .join("server.log")
            .display()
            .to_string();
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        );
    }

    fn stop(&self) {
        let data = self.data_dir();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Whatever state the test left it in: stopping a stopped cluster just fails.
        let data = self.data_dir();
        let program = self.bin.join("pg_ctl");
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let _ = match self.as_user {
            Some(user) => Command::new("runuser")
                .args(["-u", user, "--"])
                .arg(&program)
                .args(args)
                .output(),
            None => Command::new(&program).args(args).output(),
        };
    }
}

struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<String>,
    took: Duration,
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let started = Instant::now();
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        body,
        retry_after,
        took: started.elapsed(),
    }
}

fn signup_body(email: &str) -> Value {
    json!({ "email": email, "password": "correct horse battery", "company_name": "Outage Ltd" })
}

fn login_body(email: &str) -> Value {
    json!({ "email": email, "password": "correct horse battery" })
}

/// Well under the 30 s a stopped database used to cost; the default acquire timeout is 3 s.
const FAST: Duration = Duration::from_secs(5);

fn assert_unavailable(what: &str, a: &Answer, within: Duration) {
    assert_eq!(a.status, 503, "{what}: {}", a.body);
    assert_eq!(a.body["code"], "database_unavailable", "{what}: {}", a.body);
    assert!(a.body["message"].as_str().is_some_and(|m| !m.is_empty()));
    let retry: u64 = a
        .retry_after
        .as_deref()
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry >= 1, "{what}: Retry-After {retry}");
    assert!(a.took < within, "{what} took {:?}", a.took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_database_fails_fast_with_503_and_recovers_without_restart() {
    let Some(cluster) = PgCluster::init() else {
        return;
    };
    cluster.start();
    let s = TestServer::start_on(cluster.url(), &[]).await;
    let post = |path: &str, body: Value| s.client.post(s.url(path)).json(&body);

    let a = send(post(
        "/api/customers/signup",
        signup_body("before@outage.example"),
    ))
    .await;
    assert_eq!(a.status, 201, "{}", a.body);

    cluster.stop();
    let a = send(post(
        "/api/customers/signup",
        signup_body("during@outage.example"),
    ))
    .await;
    assert_unavailable("signup", &a, FAST);
    let a = send(post(
        "/api/customers/login",
        login_body("before@outage.example"),
    ))
    .await;
    assert_unavailable("login", &a, FAST);
    let a = send(s.client.get(s.url("/readyz"))).await;
    assert_unavailable("/readyz", &a, Duration::from_secs(2));

    // Back up: the same billing process serves again, no restart.
    cluster.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    let a = loop {
        let a = send(post(
            "/api/customers/signup",
            signup_body("after@outage.example"),
        ))
        .await;
        if a.status != 503 || Instant::now() > deadline {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(a.status, 201, "{}\n{}", a.body, s.log());
    let a = send(post(
        "/api/customers/login",
        login_body("before@outage.example"),
    ))
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = send(s.client.get(s.url("/readyz"))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(!s.log().contains("panicked"), "{}", s.log());
}
