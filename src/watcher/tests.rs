//! The revision-aware core: the decision table and the Git facts it is fed.

use super::ancestry::judge;
use super::*;
use crate::db::deployments::WatchRow;
use crate::gitops::{Author, Changes, Entry, GitOpsRepo};

fn row(status: &str, committed: Option<&str>, applied: Option<&str>) -> WatchRow {
    WatchRow {
        status: status.into(),
        committed_revision: committed.map(Into::into),
        applied_revision: applied.map(Into::into),
        health: None,
        message: None,
        error: Some("earlier error".into()),
        committed_at: None,
        ready_at: None,
    }
}

fn report(state: SyncState) -> Report {
    Report {
        customer_id: "k3x9m2p7q4wz".into(),
        revision: Some("main@sha1:aaaa".into()),
        source: Source::FluxEvent,
        state,
        health: None,
        message: Some("HealthCheckFailed: timeout".into()),
        cluster: None,
    }
}

fn facts(known: bool, contains_commit: bool, contains_applied: bool) -> Facts {
    Facts {
        commit: "c".repeat(40),
        known,
        contains_commit,
        contains_applied,
    }
}

fn status_of(d: Decision) -> Option<DeploymentStatus> {
    match d {
        Decision::Record { status, .. } => Some(status),
        Decision::Ignore(_) => None,
    }
}

#[test]
fn ready_only_on_the_commit_or_a_descendant() {
    use DeploymentStatus::*;
    let committed = row("committed", Some("b"), None);
    let d = decide(
        &committed,
        &report(SyncState::Ready),
        &facts(true, true, true),
    );
    assert_eq!(
        d,
        Decision::Record {
            status: Ready,
            applied_revision: Some("c".repeat(40)),
            error: None
        }
    );
    // An older revision: recorded (it is what runs), the tenant keeps waiting.
    let d = decide(
        &committed,
        &report(SyncState::Ready),
        &facts(true, false, true),
    );
    assert_eq!(status_of(d.clone()), Some(Committed));
    assert!(matches!(
        d,
        Decision::Record {
            applied_revision: Some(_),
            ..
        }
    ));
    // A revision this repository does not know never becomes the applied fence.
    let d = decide(
        &committed,
        &report(SyncState::Ready),
        &facts(false, false, true),
    );
    assert!(matches!(
        d,
        Decision::Record {
            status: Committed,
            applied_revision: None,
            ..
        }
    ));
    // Stalled recovers; deleted and pending tenants are not touched.
    let stalled = row("stalled", Some("b"), None);
    assert_eq!(
        status_of(decide(
            &stalled,
            &report(SyncState::Ready),
            &facts(true, true, true)
        )),
        Some(Ready)
    );
    for s in ["deleted", "pending"] {
        let r = row(s, Some("b"), None);
        assert!(matches!(
            decide(&r, &report(SyncState::Ready), &facts(true, true, true)),
            Decision::Ignore(_)
        ));
    }
}

#[test]
fn failures_count_only_on_a_revision_with_the_change() {
    use DeploymentStatus::*;
    let committed = row("committed", Some("b"), None);
    let d = decide(
        &committed,
        &report(SyncState::Failed),
        &facts(true, true, true),
    );
    assert_eq!(
        d,
        Decision::Record {
            status: Failed,
            applied_revision: None,
            error: Some("HealthCheckFailed: timeout".into())
        }
    );
    let d = decide(
        &committed,
        &report(SyncState::Failed),
        &facts(true, false, true),
    );
    assert_eq!(status_of(d), Some(Committed));
    let ready = row("ready", Some("b"), Some("b"));
    assert_eq!(
        status_of(decide(
            &ready,
            &report(SyncState::Failed),
            &facts(true, true, true)
        )),
        Some(Failed)
    );
    assert_eq!(
        status_of(decide(
            &ready,
            &report(SyncState::Progressing),
            &facts(true, true, true)
        )),
        Some(Ready)
    );
}

#[test]
fn reports_older_than_the_applied_revision_are_ignored() {
    let ready = row("ready", Some("b"), Some("n1"));
    for state in [SyncState::Ready, SyncState::Failed, SyncState::Progressing] {
        assert!(matches!(
            decide(&ready, &report(state), &facts(true, true, false)),
            Decision::Ignore(_)
        ));
    }
}

#[test]
fn maps_object_names_to_tenants() {
    assert_eq!(
        tenant_of("tenant-k3x9m2p7q4wz").as_deref(),
        Some("k3x9m2p7q4wz")
    );
    assert_eq!(tenant_of("tenant-demo").as_deref(), Some("demo"));
    for name in [
        "tenants",
        "tenant-",
        "tenant-K3X9M2P7Q4WZ",
        "tenant-k3x9m2p7q4w",
        "customer-k3x9m2p7q4wz",
        "tenant-../../etc",
    ] {
        assert_eq!(tenant_of(name), None, "{name}");
    }
}

#[test]
fn git_facts_follow_ancestry_in_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let author = Author {
        name: "t".into(),
        email: "t@localhost".into(),
    };
    let mut repo = GitOpsRepo::open_or_init(&dir.path().join("r.git"), "main", author).unwrap();
    let layout = repo.head().unwrap().unwrap().to_string();
    let mut commit = |n: u8| {
        let mut c = Changes::new();
        c.insert(
            format!("tenants/t{n}"),
            Entry::Dir([("a.yaml".into(), vec![n])].into()),
        );
        repo.commit(&c, &format!("c{n}"))
            .unwrap()
            .unwrap()
            .to_string()
    };
    let (c1, c2) = (commit(1), commit(2));
    let f = judge(&repo, &c2, Some(&c1), Some(&layout)).unwrap();
    assert_eq!(
        (f.known, f.contains_commit, f.contains_applied),
        (true, true, true)
    );
    let f = judge(&repo, &layout, Some(&c1), None).unwrap();
    assert_eq!(
        (f.known, f.contains_commit, f.contains_applied),
        (true, false, true),
        "the parent does not contain the change"
    );
    let f = judge(&repo, &c1, Some(&c1), Some(&c2)).unwrap();
    assert_eq!(
        (f.contains_commit, f.contains_applied),
        (true, false),
        "older than what was applied"
    );
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let f = judge(&repo, unknown, Some(&c1), Some(&layout)).unwrap();
    assert_eq!(
        (f.known, f.contains_commit, f.contains_applied),
        (false, false, false)
    );
}
