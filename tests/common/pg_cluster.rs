//! A throwaway PostgreSQL cluster of the test's own (initdb + pg_ctl), for tests that stop
//! its server or fill its disk, which the shared TEST_DATABASE_URL server must never suffer.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A throwaway PostgreSQL cluster (initdb + pg_ctl) in a temporary directory on a free port,
/// stopped when dropped, even when the test fails.
pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// Set when running as root: initdb and postgres refuse root, so they run as `postgres`.
    pub as_user: Option<&'static str>,
}

impl PgCluster {
    /// The newest installed server's binaries; None (after saying so) when there are none,
    /// which on CI is a failure.
    pub fn find_bin() -> Option<PathBuf> {
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
            crate::common::skip::skip_unless_ci(
                "a throwaway PostgreSQL cluster",
                "no initdb and pg_ctl under /usr/lib/postgresql/*/bin",
            );
        }
        found.pop()
    }

    pub fn init() -> Option<Self> {
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

    pub fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn run(&self, tool: &str, args: &[&str]) -> std::process::Output {
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

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn start(&self) {
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

    pub fn stop(&self) {
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
