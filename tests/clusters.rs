//! The cluster catalogue from the operator's side: `billing cluster add|list|show|cordon|
//! uncordon|remove` on both backends, with Kubernetes quantities, and clear refusals.

mod common;

use common::{billing_command, database_url, Backend};

struct Cli {
    dir: tempfile::TempDir,
    url: String,
    _db: Option<common::pg::TempDatabase>,
}

impl Cli {
    async fn new(backend: Backend) -> Option<Cli> {
        let dir = tempfile::tempdir().unwrap();
        let (url, db) = database_url(backend, dir.path()).await?;
        Some(Cli { dir, url, _db: db })
    }

    /// Runs `billing <args>`: (success, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = billing_command(self.dir.path(), &self.url)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "billing {args:?} failed: {err}");
        out
    }

    /// Fails with one line on stderr that contains `why`.
    fn refused(&self, args: &[&str], why: &str) {
        let (ok, _, err) = self.run(args);
        assert!(!ok, "billing {args:?} should fail");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            lines.iter().any(|l| l.contains(why)),
            "billing {args:?}: {err}"
        );
    }
}

async fn catalogue(backend: Backend) {
    let Some(cli) = Cli::new(backend).await else {
        return;
    };
    cli.ok(&[
        "cluster", "add", "eu-1", "--region", "eu", "--cpu", "1500m", "--memory", "3Gi",
    ]);
    cli.ok(&[
        "cluster",
        "add",
        "eu-2",
        "--region",
        "eu",
        "--cpu",
        "2",
        "--memory",
        "1024Mi",
        "--label",
        "tier=gold",
    ]);
    cli.ok(&[
        "cluster", "add", "us-1", "--region", "us", "--cpu", "4", "--memory", "8Gi",
    ]);

    let list: serde_json::Value =
        serde_json::from_str(&cli.ok(&["cluster", "list", "-o", "json"])).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["eu-1", "eu-2", "us-1"]);
    assert_eq!(list[0]["cpu_millis"], 1500);
    assert_eq!(list[0]["memory_bytes"], 3u64 << 30);
    assert_eq!(list[1]["labels"]["tier"], "gold");
    assert_eq!(list[1]["state"], "open");
    assert_eq!(list[2]["tenants"], 0);

    let table = cli.ok(&["cluster", "list", "-o", "table"]);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("CPU FREE"),
        "{table}"
    );
    assert!(table.contains("1500m") && table.contains("3Gi"), "{table}");

    let yaml: serde_norway::Value =
        serde_norway::from_str(&cli.ok(&["cluster", "show", "us-1", "-o", "yaml"])).unwrap();
    assert_eq!(yaml["region"].as_str(), Some("us"));

    cli.ok(&["cluster", "cordon", "eu-1"]);
    let shown: serde_json::Value =
        serde_json::from_str(&cli.ok(&["cluster", "show", "eu-1", "-o", "json"])).unwrap();
    assert_eq!(shown["state"], "cordoned");
    cli.ok(&["cluster", "uncordon", "eu-1"]);

    cli.refused(&["cluster", "show", "nowhere"], "no cluster nowhere");
    cli.refused(&["cluster", "cordon", "nowhere"], "no cluster nowhere");
    cli.refused(
        &[
            "cluster", "add", "eu-1", "--region", "eu", "--cpu", "1", "--memory", "1Gi",
        ],
        "exists",
    );
    cli.refused(
        &[
            "cluster", "add", "x", "--region", "eu", "--cpu", "lots", "--memory", "1Gi",
        ],
        "\"lots\" is not a Kubernetes quantity",
    );
    cli.refused(
        &[
            "cluster", "add", "Bad_Name", "--region", "eu", "--cpu", "1", "--memory", "1Gi",
        ],
        "not a DNS label",
    );

    cli.ok(&["cluster", "remove", "us-1"]);
    let after: serde_json::Value =
        serde_json::from_str(&cli.ok(&["cluster", "list", "-o", "json"])).unwrap();
    assert_eq!(after.as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_catalogue_on_sqlite() {
    catalogue(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_catalogue_on_postgres() {
    catalogue(Backend::Postgres).await;
}
