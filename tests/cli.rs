//! The operator's commands: key generation, rotation (old licenses keep verifying), license
//! verification from the command line (`-o json|yaml|table`), admin endpoints without a
//! configured token, `lifecycle tick -o json`, shell completions and the examples of every
//! `--help`. The tenant commands are in cli_tenants.rs.

mod common;

use common::{billing_command, Backend, TestServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_key_keeps_old_licenses_verifiable() {
    let mut s = TestServer::start(Backend::Sqlite).await.unwrap();
    let (_, body) = s
        .signup("rot@acme.example", "correct-horse-battery", "Rotors")
        .await;
    let old_license = body["license"]["jwt"].as_str().unwrap().to_string();
    let old_kid = jsonwebtoken::decode_header(&old_license)
        .unwrap()
        .kid
        .unwrap();

    s.stop();
    let out = s.command().args(["keys", "rotate"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&old_kid));
    s.restart().await;

    let (_, jwks) = s.get_json("/.well-known/jwks.json", None).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 2, "{jwks}");
    assert!(kids.contains(&old_kid.as_str()));

    let (status, verified) = s
        .post_json("/api/licenses/verify", &json!({ "license": old_license }))
        .await;
    assert_eq!(status, 200, "{verified}");
    let (_, fresh) = s
        .signup("rot2@acme.example", "correct-horse-battery", "Rotors 2")
        .await;
    let new_kid = jsonwebtoken::decode_header(fresh["license"]["jwt"].as_str().unwrap())
        .unwrap()
        .kid
        .unwrap();
    assert_ne!(new_kid, old_kid, "new licenses are signed with the new key");
    assert_eq!(kids[0], new_kid, "the current key comes first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn license_verify_command_prints_claims_or_why_not() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let (_, body) = s
        .signup("cli@acme.example", "correct-horse-battery", "Cli Co")
        .await;
    let license = body["license"]["jwt"].as_str().unwrap();

    let out = s
        .command()
        .args(["license", "verify", license])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims["customerName"], "Cli Co");
    let verify_as = |format: &str| {
        let out = s
            .command()
            .args(["license", "verify", license, "-o", format])
            .output()
            .unwrap();
        assert!(out.status.success(), "{format}");
        String::from_utf8(out.stdout).unwrap()
    };
    let yaml: serde_json::Value = serde_norway::from_str(&verify_as("yaml")).unwrap();
    assert_eq!(yaml, claims);
    let table = verify_as("table");
    assert!(
        table.starts_with("CUSTOMER ") && table.contains("Cli Co"),
        "{table}"
    );

    let out = s
        .command()
        .args(["license", "verify", "a.b.c"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid license: malformed"));

    // A license from another installation's key is named as such.
    let other = tempfile::tempdir().unwrap();
    let out = billing_command(other.path(), "sqlite::memory:")
        .args(["keys", "generate"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = billing_command(other.path(), "sqlite::memory:")
        .args(["license", "verify", license])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown key id"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // generate refuses to overwrite without --force.
    let out = billing_command(other.path(), "sqlite::memory:")
        .args(["keys", "generate"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_refuses_everything_without_a_configured_token() {
    let s = TestServer::start_with(Backend::Sqlite, &[("ADMIN_API_TOKEN", "")])
        .await
        .unwrap();
    let (status, err) = s.get_json("/api/customers", Some("")).await;
    assert_eq!(status, 401);
    assert_eq!(err["code"], "admin_disabled");
    assert!(s.log().contains("ADMIN_API_TOKEN is not set"));
}

#[test]
fn migrate_command_creates_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
    let out = billing_command(dir.path(), &url)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("m.db").exists());
    let bad = billing_command(dir.path(), "mysql://nope")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("DATABASE_URL must start with"));
}

#[test]
fn init_creates_a_bare_repository_with_the_layout_readme() {
    let dir = tempfile::tempdir().unwrap();
    let repo_path = dir.path().join("tenants.git");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("x.db").display());
    let run = || {
        billing_command(dir.path(), &url)
            .args(["init", "--repo"])
            .arg(&repo_path)
            .output()
            .unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let repo = git2::Repository::open_bare(&repo_path).unwrap();
    let head = repo.refname_to_id("refs/heads/main").unwrap();
    let tree = repo.find_commit(head).unwrap().tree().unwrap();
    let readme = repo
        .find_blob(tree.get_name("README.md").unwrap().id())
        .unwrap();
    let text = String::from_utf8_lossy(readme.content());
    assert!(
        text.contains("tenants/a/b/c/<customer_id>/") && text.contains("flux-tenants/"),
        "{text}"
    );
    // Running it again changes nothing.
    assert!(run().status.success());
    assert_eq!(repo.refname_to_id("refs/heads/main").unwrap(), head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_render_prints_a_customers_manifests() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let (_, body) = s
        .signup("render@acme.example", "correct-horse-battery", "Render Co")
        .await;
    let id = body["customer"]["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = s
        .command()
        .env("SEALED_SECRETS_CERT", common::sealing_cert_path())
        .args(["tenant", "render", &id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!(
            "# {}/namespace.yaml",
            billing::render::tenant_dir(&id)
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "# {}",
        billing::render::flux_kustomization_path(&id)
    )));
    assert!(text.contains("Render Co"));
    let docs: Vec<serde_json::Value> = text
        .split("\n---\n")
        .filter_map(|d| serde_norway::from_str::<serde_json::Value>(d).ok())
        .filter(|d| d.get("kind").is_some())
        .collect();
    assert!(docs.iter().any(|d| d["kind"] == "SealedSecret"));

    let missing = s
        .command()
        .args(["tenant", "render", "zzzzzzzzzzzz"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
}

#[test]
fn tenant_path_prints_the_sharded_directory_or_refuses_a_bad_id() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    let out = billing_command(dir.path(), &url)
        .args(["tenant", "path", "k3x9abcdefgh"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "tenants/k/3/x/k3x9abcdefgh\n"
    );
    let bad = billing_command(dir.path(), &url)
        .args(["tenant", "path", "../etc"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a customer id"));
}

#[test]
fn completion_scripts_for_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef billing"),
        ("fish", "complete -c billing"),
    ] {
        let out = billing_command(dir.path(), "sqlite::memory:")
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("rollback") && script.contains("behind"),
            "{shell}"
        );
    }
}

/// Every command's path below `billing` (groups and leaves).
fn command_paths(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
    for sub in cmd.get_subcommands().filter(|c| c.get_name() != "help") {
        let mut path = prefix.to_vec();
        path.push(sub.get_name().to_string());
        out.push(path.clone());
        command_paths(sub, &path, out);
    }
}

#[test]
fn every_help_has_examples_and_the_top_one_names_the_shared_database() {
    let dir = tempfile::tempdir().unwrap();
    let help = |path: &[String]| {
        let out = billing_command(dir.path(), "sqlite::memory:")
            .args(path)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{path:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let top = help(&[]);
    assert!(
        top.contains("same database and GitOps repository as the server"),
        "{top}"
    );
    let mut paths = Vec::new();
    command_paths(
        &<billing::cli::Cli as clap::CommandFactory>::command(),
        &[],
        &mut paths,
    );
    assert!(paths.len() > 15, "{paths:?}");
    for path in [vec![]].iter().chain(&paths) {
        assert!(help(path).contains("Examples:"), "billing {path:?} --help");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_tick_prints_its_rows_as_json() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let id = s.signed_up("tick@acme.example", "Tick Co").await;
    // The server's own writes done first: two SQLite writers may refuse one another.
    s.wait_queue_drained(std::time::Duration::from_secs(60))
        .await;
    let after_trial = billing::db::ts(chrono::Utc::now() + chrono::Duration::days(15));
    let args = [
        "lifecycle",
        "tick",
        "--now",
        after_trial.as_str(),
        "-o",
        "json",
    ];
    let (ok, out, err) = common::cli::run(&s, &args, &[]);
    assert!(ok, "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).expect("only JSON on stdout");
    let row = rows.iter().find(|r| r["customer_id"] == id.as_str());
    assert_eq!(row.map(|r| &r["outcome"]), Some(&json!("changed")), "{out}");
    assert!(err.contains("1 changed"), "the summary on stderr: {err}");
}
