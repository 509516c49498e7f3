//! Many clusters in the GitOps repository: every `clusters/<name>/` sync root builds with
//! `kubectl kustomize` into exactly the Flux Kustomizations of the tenants placed on it, two
//! replicas adding tenants to one root concurrently both stay listed (a real git daemon), a
//! single-cluster repository moves under a first cluster in one commit of renames, and `billing
//! init --cluster` prints what bootstraps that cluster's Flux.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use billing::deploy::roots::{place, Root};
use billing::gitops::{Author, Changes, Entry, GitOpsRepo, PushAuth, Remote};
use billing::render::{cluster_index_path, flux_kustomization_path, tenant_dir};
use common::{Backend, TestServer};

fn author(name: &str) -> Author {
    Author {
        name: name.into(),
        email: format!("{name}@localhost"),
    }
}

fn open(path: &Path, who: &str) -> GitOpsRepo {
    let mut repo = GitOpsRepo::open_or_init(path, "main", author(who)).unwrap();
    repo.set_fsync(false).unwrap();
    repo
}

/// What a render writes for tenant `id`: its directory and its Flux Kustomization at the
/// single-cluster path (as `deploy::tenant_changes` gives it to `roots::place`).
fn rendered(id: &str) -> Changes {
    let kustomization = format!(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  \
         name: tenant-{id}\n  namespace: flux-system\nspec:\n  path: ./{}\n  prune: true\n  \
         sourceRef:\n    kind: GitRepository\n    name: tenants\n",
        tenant_dir(id)
    );
    Changes::from([
        (
            tenant_dir(id),
            Entry::Dir([("namespace.yaml".into(), format!("# {id}\n").into_bytes())].into()),
        ),
        (
            flux_kustomization_path(id),
            Entry::File(kustomization.into_bytes()),
        ),
    ])
}

/// Commits `changes` for tenant `id` as the deploy worker does: placed in `root` first.
fn commit_tenant(repo: &mut GitOpsRepo, id: &str, root: &Root, mut changes: Changes) {
    place(repo, id, root, &mut changes).unwrap();
    repo.commit(&changes, &format!("tenant {id}")).unwrap();
}

/// The files of the branch's tip under `out`, as a checkout would hold them.
fn checkout(git_dir: &Path, out: &Path) {
    let repo = git2::Repository::open_bare(git_dir).unwrap();
    let tree = repo.head().unwrap().peel_to_tree().unwrap();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
        if e.kind() == Some(git2::ObjectType::Blob) {
            let path = out.join(dir).join(e.name().unwrap());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let blob = repo.find_blob(e.id()).unwrap();
            std::fs::write(path, blob.content()).unwrap();
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
}

/// `kubectl kustomize clusters/<name>`: the names of the objects the root applies (None, after
/// saying so, when kubectl is missing outside CI).
fn built_names(root: &Path, cluster: &str) -> Option<BTreeSet<String>> {
    let found = Command::new("kubectl")
        .args(["version", "--client"])
        .output();
    if !found.is_ok_and(|o| o.status.success()) {
        common::skip::skip_unless_ci("kubectl kustomize", "kubectl is not installed");
        return None;
    }
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(root.join("clusters").join(cluster))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl kustomize clusters/{cluster}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = billing::render::parse_documents(text.as_bytes()).unwrap();
    Some(
        docs.iter()
            .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
            .collect(),
    )
}

fn names(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|id| format!("tenant-{id}")).collect()
}

#[test]
fn every_cluster_root_builds_into_exactly_its_tenants() {
    let tmp = tempfile::tempdir().unwrap();
    let git_dir = tmp.path().join("tenants.git");
    let mut repo = open(&git_dir, "billing");
    let placed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        (
            "eu-1",
            &["a00000000001", "b00000000002", "c00000000003"][..],
        ),
        ("eu-2", &["a00000000004", "d00000000005"][..]),
        ("us-1", &["e00000000006"][..]),
    ]);
    for (cluster, ids) in &placed {
        for id in *ids {
            commit_tenant(
                &mut repo,
                id,
                &Root::Cluster(cluster.to_string()),
                rendered(id),
            );
        }
    }
    // Waiting for room: its directory is committed, its Kustomization in no root.
    commit_tenant(
        &mut repo,
        "f00000000007",
        &Root::Unplaced,
        rendered("f00000000007"),
    );
    // A tenant changing cluster: its Kustomization moves even when the render left it out
    // (only other templates changed), its directory stays.
    let mut partial = rendered("b00000000002");
    partial.remove(&flux_kustomization_path("b00000000002"));
    commit_tenant(
        &mut repo,
        "b00000000002",
        &Root::Cluster("us-1".into()),
        partial,
    );

    let head = repo.head().unwrap().unwrap();
    let message = repo
        .repository()
        .find_commit(head)
        .unwrap()
        .message()
        .unwrap()
        .to_string();
    assert_eq!(message, "tenant b00000000002");
    let out = tmp.path().join("checkout");
    checkout(&git_dir, &out);
    assert!(
        !out.join("flux-tenants").exists(),
        "no single-cluster root beside the clusters'"
    );
    assert!(out.join(tenant_dir("f00000000007")).is_dir());
    assert!(out.join(tenant_dir("b00000000002")).is_dir());
    let expected = BTreeMap::from([
        ("eu-1", names(&["a00000000001", "c00000000003"])),
        ("eu-2", names(&["a00000000004", "d00000000005"])),
        ("us-1", names(&["b00000000002", "e00000000006"])),
    ]);
    for (cluster, tenants) in expected {
        let Some(built) = built_names(&out, cluster) else {
            return;
        };
        assert_eq!(built, tenants, "clusters/{cluster}");
    }
    // A removal leaves the root; the last tenant leaving leaves an empty, buildable root.
    for id in ["a00000000004", "d00000000005"] {
        let mut removal = billing::deploy::removal_changes(id);
        place(&repo, id, &Root::Unplaced, &mut removal).unwrap();
        repo.commit(&removal, "remove").unwrap();
    }
    let out = tmp.path().join("after");
    checkout(&git_dir, &out);
    assert_eq!(built_names(&out, "eu-2"), Some(BTreeSet::new()));
    common::assert_git_fsck_strict(&git_dir);
}

#[test]
fn two_replicas_adding_tenants_to_one_cluster_both_stay_in_its_root() {
    let Some(daemon) = common::GitDaemon::start("tenants.git") else {
        return;
    };
    let remote = Remote {
        url: daemon.url("tenants.git"),
        auth: PushAuth::default(),
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut a = open(&tmp.path().join("a.git"), "replica-a");
    a.push(&remote, 1).unwrap();
    let mut b = open(&tmp.path().join("b.git"), "replica-b");
    b.sync_from(&remote).unwrap();
    let eu = Root::Cluster("eu-1".into());
    // Both commit on the same tip, each listing only its own tenant in the root's index.
    commit_tenant(&mut a, "a00000000001", &eu, rendered("a00000000001"));
    commit_tenant(&mut b, "b00000000002", &eu, rendered("b00000000002"));
    a.push(&remote, 3).unwrap();
    // B's push is refused, B re-applies its commit on A's: the index is recomputed there.
    b.push(&remote, 3).unwrap();
    commit_tenant(&mut a, "c00000000003", &eu, rendered("c00000000003"));
    a.push(&remote, 3).unwrap();

    let out = tmp.path().join("checkout");
    checkout(&daemon.dir.path().join("tenants.git"), &out);
    let index = std::fs::read_to_string(out.join(cluster_index_path("eu-1"))).unwrap();
    for id in ["a00000000001", "b00000000002", "c00000000003"] {
        assert!(
            index.contains(&format!("tenants/{id}.yaml")),
            "{id} missing:\n{index}"
        );
    }
    if let Some(built) = built_names(&out, "eu-1") {
        assert_eq!(
            built,
            names(&["a00000000001", "b00000000002", "c00000000003"])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_layout_moves_a_single_cluster_repository_under_a_first_cluster() {
    let Some(server) = TestServer::start(Backend::Sqlite).await else {
        return;
    };
    let ids = [
        server.signed_up("m1@acme.example", "Migrating One").await,
        server.signed_up("m2@acme.example", "Migrating Two").await,
    ];
    server
        .wait_queue_drained(std::time::Duration::from_secs(60))
        .await;
    let run = |args: &[&str]| {
        let out = server.command().args(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    // The cluster must be in the catalogue.
    let (ok, text) = run(&["gitops", "migrate-layout", "--cluster", "eu-1"]);
    assert!(!ok && text.contains("no cluster eu-1"), "{text}");
    let (ok, text) = run(&[
        "cluster", "add", "eu-1", "--region", "eu", "--cpu", "64", "--memory", "256Gi",
    ]);
    assert!(ok, "{text}");
    let (ok, text) = run(&["gitops", "migrate-layout", "--cluster", "eu-1"]);
    assert!(
        ok && text.contains("moved 2 tenants under clusters/eu-1/"),
        "{text}"
    );

    let (ok, init) = run(&["init"]);
    assert!(ok, "{init}");
    let git_dir = init
        .split("ready at ")
        .nth(1)
        .and_then(|rest| rest.split(" (branch").next())
        .unwrap()
        .to_string();
    // One commit, reviewed as renames (same bytes), the tenants' directories untouched.
    let diff = Command::new("git")
        .args([
            "--git-dir",
            &git_dir,
            "diff",
            "-M",
            "--name-status",
            "HEAD~1",
            "HEAD",
        ])
        .output()
        .unwrap();
    let diff = String::from_utf8_lossy(&diff.stdout).into_owned();
    let mut lines: Vec<&str> = diff.lines().collect();
    lines.sort();
    let mut expected: Vec<String> = ids
        .iter()
        .map(|id| {
            format!(
                "R100\t{}\tclusters/eu-1/tenants/{id}.yaml",
                flux_kustomization_path(id)
            )
        })
        .collect();
    expected.push("A\tclusters/eu-1/kustomization.yaml".into());
    expected.sort();
    assert_eq!(lines, expected);
    // Every tenant is placed on it in the database.
    let pool = server.db().await;
    for id in &ids {
        let cluster: Option<String> =
            sqlx::query_scalar("SELECT cluster FROM placements WHERE customer_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(cluster.as_deref(), Some("eu-1"));
    }
    let out = tempfile::tempdir().unwrap();
    checkout(Path::new(&git_dir), out.path());
    if let Some(built) = built_names(out.path(), "eu-1") {
        let want: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert_eq!(built, names(&want));
    }
}

#[test]
fn init_cluster_prints_a_flux_bootstrap_for_that_cluster_root() {
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/b.db?mode=rwc", tmp.path().display());
    let out = common::billing_command(tmp.path(), &db)
        .args(["init", "--cluster", "eu-1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = billing::render::parse_documents(&out.stdout).unwrap();
    let kinds: Vec<(&str, &str)> = docs
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("GitRepository", "tenants"), ("Kustomization", "tenants")]
    );
    let root = &docs[1]["spec"];
    assert_eq!(root["path"].as_str(), Some("./clusters/eu-1"));
    assert_eq!(root["serviceAccountName"].as_str(), Some("tenants-root"));
    assert_eq!(root["prune"].as_bool(), Some(true));
    let ignore = docs[0]["spec"]["ignore"].as_str().unwrap();
    assert!(
        ignore.contains("!/clusters/eu-1/") && ignore.contains("!/tenants/"),
        "{ignore}"
    );
    // kustomize reads it as Kubernetes objects (no cluster to dry-run against offline).
    let dir = tmp.path().join("bootstrap");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("flux.yaml"), &out.stdout).unwrap();
    std::fs::write(
        dir.join("kustomization.yaml"),
        "resources:\n  - flux.yaml\n",
    )
    .unwrap();
    let built = Command::new("kubectl").arg("kustomize").arg(&dir).output();
    match built {
        Ok(built) => assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        ),
        Err(e) => common::skip::skip_unless_ci("kubectl kustomize", format!("kubectl: {e}")),
    }
    // A bad name is one line on stderr and a failure.
    let bad = common::billing_command(tmp.path(), &db)
        .args(["init", "--cluster", "EU_1"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
