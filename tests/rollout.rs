//! Template rollouts in waves through the real server, its CLI and its Git repository: 200
//! tenants, a template change, waves committed one at a time and gated on recorded Flux
//! events (signed as notification-controller signs them); a failed event pauses, resume
//! finishes, a restart in the middle goes on at the right wave, abort --rollback restores the
//! old files, and auto-rollback after a failed canary touches no other tenant. Every claim is
//! checked in the repository itself (commits, trailers, files), not only through the API.

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/rollout.rs"]
mod rollouts;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cluster::FLUX_SECRET;
use common::review::upgrade_quota_template;
use common::{Backend, TestServer};
use git2::Repository;
use rollouts::*;
use serde_json::Value;

for_each_backend!(
    waves_pause_resume_restart_abort_and_auto_rollback,
    the_waves_policy_starts_a_rollout_by_itself_and_skips_a_drifted_tenant,
);

/// Tenants on SQLite (the 200); fewer on PostgreSQL, where each signup costs more.
fn tenant_count(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 200,
        Backend::Postgres => 24,
    }
}

async fn waves_pause_resume_restart_abort_and_auto_rollback(backend: Backend) {
    let (_work, templates, templates_text) = own_templates();
    let env = [
        ("TEMPLATES_DIR", templates_text.as_str()),
        ("ROLLOUT_POLICY", "manual"),
        ("FLUX_WEBHOOK_SECRET", FLUX_SECRET),
        ("WATCHER_KUBE_POLL", "off"),
        ("WATCHER_STALL_SECONDS", "3600"),
    ];
    let Some(mut s) = TestServer::start_with(backend, &env).await else {
        return;
    };
    let n = tenant_count(backend);
    let ids = sign_up(&s, n).await;
    s.wait_queue_drained(Duration::from_secs(300)).await;
    let repo = Repository::open_bare(s.data_dir().join("gitops.git")).unwrap();
    let before = head(&repo);

    // A template change: under ROLLOUT_POLICY=manual nothing is committed, the tenants are behind.
    upgrade_quota_template(&templates, "rollout one");
    s.restart().await;
    let report = wait_cli(&s, &env, &["rollout", "status"], |r| r["behind"] == n).await;
    assert_eq!(report["policy"], "manual", "{report}");
    assert_eq!(head(&repo), before, "manual: nothing committed by itself");

    // The dry run: how many, which files, a sample diff; nothing committed.
    let dry = cli_json(&s, &env, &["rollout", "start", "--dry-run"]);
    assert_eq!(dry["tenants"], n, "{dry}");
    assert_eq!(dry["rollout_id"], Value::Null);
    let files: BTreeSet<&str> = dry["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        BTreeSet::from(["quota.yaml", "render.json"]),
        "{dry}"
    );
    let diff = dry["sample_diff"].as_str().unwrap();
    assert!(diff.contains("+# rollout one\n"), "{diff}");
    assert!(diff.contains("--- a/tenants/"), "{diff}");
    let table = cli_text(&s, &env, &["rollout", "start", "--dry-run", "-o", "table"]);
    let cells: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(cells[0], n.to_string(), "{table}");
    assert_eq!(head(&repo), before, "a dry run commits nothing");

    // The rollout: default waves, a canary first.
    let started = cli_json(&s, &env, &["rollout", "start"]);
    let id = started["rollout_id"].as_str().unwrap().to_string();
    let sizes: Vec<usize> = serde_json::from_value(started["waves"].clone()).unwrap();
    assert_eq!(sizes.iter().sum::<usize>(), n);
    assert_eq!(sizes[0], 1, "a canary of one");
    let refused = s
        .command()
        .envs(env)
        .args(["rollout", "start"])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "one active rollout at a time");

    let mut parent = before;
    let wave1 = wave_commit(&s, &env, &repo, &id, 1, parent, sizes[0]).await;
    // The next wave waits for the cluster.
    let st = status(&s, &env, &id);
    assert_eq!(st["rollout"]["waves"][1]["status"], "pending", "{st}");
    assert_eq!(
        head(&repo),
        wave1.oid,
        "wave 2 is not committed before wave 1 is ready"
    );
    ready(&s, &wave1).await;
    parent = wave1.oid;

    // Wave 2: one tenant fails, the rollout pauses and says which and why.
    let wave2 = wave_commit(&s, &env, &repo, &id, 2, parent, sizes[1]).await;
    let (bad, good) = wave2.tenants.split_last().unwrap();
    for t in good {
        event(
            &s,
            "flux-event-reconciliation-succeeded.json",
            t,
            &wave2.revision,
        )
        .await;
    }
    event(
        &s,
        "flux-event-health-check-failed.json",
        bad,
        &wave2.revision,
    )
    .await;
    let st = wait_cli(&s, &env, &["rollout", "status", &id], |r| {
        r["rollout"]["status"] == "paused"
    })
    .await;
    let reason = st["rollout"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(bad.as_str()) && reason.contains("health check failed"),
        "{st}"
    );
    assert_eq!(
        st["rollout"]["failed_tenants"][0]["customer_id"],
        bad.as_str()
    );
    assert_eq!(head(&repo), wave2.oid, "a paused rollout commits nothing");

    // Resume: the failed tenant no longer holds the wave; wave 3 follows.
    let resumed = cli_json(&s, &env, &["rollout", "resume", &id]);
    assert_eq!(resumed["status"], "running", "{resumed}");
    let wave3 = wave_commit(&s, &env, &repo, &id, 3, wave2.oid, sizes[2]).await;

    // A restart in the middle: the rollout goes on at wave 4, wave 3 is not committed twice.
    s.stop();
    s.restart().await;
    ready(&s, &wave3).await;
    let wave4 = wave_commit(&s, &env, &repo, &id, 4, wave3.oid, sizes[3]).await;
    ready(&s, &wave4).await;
    let done = wait_cli(&s, &env, &["rollout", "status", &id], |r| {
        r["rollout"]["status"] == "completed"
    })
    .await;
    assert_eq!(done["behind"], 0, "{done}");
    assert_eq!(
        rollout_commits(&repo, &id, before).len(),
        4,
        "one commit per wave"
    );
    for t in &ids {
        assert!(
            quota(&repo, head(&repo), t).starts_with("# rollout one\n"),
            "{t}"
        );
    }
    common::assert_git_fsck_strict(&s.data_dir().join("gitops.git"));

    // Abort with --rollback: every committed wave's files back as they were.
    let before_two = head(&repo);
    upgrade_quota_template(&templates, "rollout two");
    s.restart().await;
    let started = cli_json(&s, &env, &["rollout", "start", "--waves", "1,50%"]);
    let id2 = started["rollout_id"].as_str().unwrap().to_string();
    let w1 = wave_commit(&s, &env, &repo, &id2, 1, before_two, 1).await;
    ready(&s, &w1).await;
    let w2 = wave_commit(&s, &env, &repo, &id2, 2, w1.oid, n / 2 - 1).await;
    let aborted = cli_json(&s, &env, &["rollout", "abort", &id2, "--rollback"]);
    assert_eq!(aborted["status"], "rolling_back", "{aborted}");
    wait_cli(&s, &env, &["rollout", "status", &id2], |r| {
        r["rollout"]["status"] == "rolled_back"
    })
    .await;
    let tip = head(&repo);
    let back = repo.find_commit(tip).unwrap();
    assert_eq!(back.parent_id(0).unwrap(), w2.oid);
    assert_eq!(trailer(&back, "Rollout-Id"), [id2.as_str()]);
    assert_eq!(trailer(&back, "Rollout-Action"), ["rollback"]);
    assert_eq!(
        owned_tree(&repo, tip),
        owned_tree(&repo, before_two),
        "old files restored"
    );

    // Auto-rollback after a failed canary: only the canary's files move, and back.
    let before_three = head(&repo);
    upgrade_quota_template(&templates, "rollout three");
    s.restart().await;
    let started = cli_json(&s, &env, &["rollout", "start", "--auto-rollback"]);
    let id3 = started["rollout_id"].as_str().unwrap().to_string();
    let canary = wave_commit(&s, &env, &repo, &id3, 1, before_three, 1).await;
    let victim = &canary.tenants[0];
    event(
        &s,
        "flux-event-health-check-failed.json",
        victim,
        &canary.revision,
    )
    .await;
    let st = wait_cli(&s, &env, &["rollout", "status", &id3], |r| {
        r["rollout"]["status"] == "rolled_back"
    })
    .await;
    assert!(
        st["rollout"]["reason"]
            .as_str()
            .unwrap()
            .contains(victim.as_str()),
        "{st}"
    );
    let tip = head(&repo);
    let revert = repo.find_commit(tip).unwrap();
    assert_eq!(
        revert.parent_id(0).unwrap(),
        canary.oid,
        "nothing else committed"
    );
    assert_eq!(
        changed_tenants(&repo, tip),
        BTreeSet::from([victim.clone()])
    );
    assert_eq!(owned_tree(&repo, tip), owned_tree(&repo, before_three));
    // The tenant is held at its previous files: committed there, and ready once reported.
    let held = s.deployment_status(victim).await;
    assert_eq!(
        held["committed_revision"],
        tip.to_string().as_str(),
        "{held}"
    );
    common::assert_git_fsck_strict(&s.data_dir().join("gitops.git"));
}

async fn the_waves_policy_starts_a_rollout_by_itself_and_skips_a_drifted_tenant(backend: Backend) {
    let (_work, templates, templates_text) = own_templates();
    // A remote the waves are pushed to, where the person's edit below is made.
    let Some(daemon) = common::GitDaemon::start("tenants.git") else {
        return;
    };
    let url = daemon.url("tenants.git");
    // ROLLOUT_POLICY unset: `waves`, the default.
    let env = [
        ("TEMPLATES_DIR", templates_text.as_str()),
        ("FLUX_WEBHOOK_SECRET", FLUX_SECRET),
        ("WATCHER_KUBE_POLL", "off"),
        ("GITOPS_REMOTE", url.as_str()),
        ("GITOPS_FETCH_INTERVAL_SECONDS", "1"),
    ];
    let Some(mut s) = TestServer::start_with(backend, &env).await else {
        return;
    };
    let ids = sign_up(&s, 4).await;
    s.wait_queue_drained(Duration::from_secs(120)).await;
    let repo = daemon.repo("tenants.git");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ids.iter().all(|t| has_quota(&repo, t)) {
        assert!(Instant::now() < deadline, "{}", s.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A person edits one tenant's quota on the remote's main: that tenant has drifted.
    let drifted = &ids[3];
    let edited = format!("{}# raised by hand\n", quota(&repo, head(&repo), drifted));
    hand_edit(&repo, drifted, &edited);
    s.wait_for_status(drifted, "drifted", Duration::from_secs(60))
        .await;
    let before = head(&repo);

    upgrade_quota_template(&templates, "by itself");
    s.restart().await;
    let st = wait_cli(&s, &env, &["rollout", "status"], |r| {
        r["rollout"].is_object()
    })
    .await;
    let r = &st["rollout"];
    assert_eq!(
        (&r["origin"], &r["auto_rollback"]),
        (&"policy".into(), &true.into()),
        "{st}"
    );
    assert_eq!(r["tenants"], 3, "{st}");
    assert_eq!(
        r["skipped_tenants"][0]["customer_id"],
        drifted.as_str(),
        "{st}"
    );
    assert!(
        r["skipped_tenants"][0]["note"]
            .as_str()
            .unwrap()
            .contains("drifted"),
        "{st}"
    );
    let id = r["id"].as_str().unwrap().to_string();
    let mut parent = before;
    for wave in 1..=3 {
        let w = wave_commit(&s, &env, &repo, &id, wave, parent, 1).await;
        ready(&s, &w).await;
        parent = w.oid;
    }
    wait_cli(&s, &env, &["rollout", "status", &id], |r| {
        r["rollout"]["status"] == "completed"
    })
    .await;
    assert_eq!(
        quota(&repo, head(&repo), drifted),
        edited,
        "the drifted tenant is left alone"
    );
    for t in &ids[..3] {
        assert!(
            quota(&repo, head(&repo), t).starts_with("# by itself\n"),
            "{t}"
        );
    }
    // The policy acts once per change of templates: a restart starts nothing new.
    s.restart().await;
    let st = wait_cli(&s, &env, &["rollout", "status"], |r| r["behind"] == 0).await;
    assert_eq!(st["rollout"]["id"], id.as_str(), "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_at_once_re_renders_every_tenant_without_waves() {
    let (_work, templates, templates_text) = own_templates();
    let env = [
        ("TEMPLATES_DIR", templates_text.as_str()),
        ("ROLLOUT_POLICY", "all-at-once"),
    ];
    let mut s = TestServer::start_with(Backend::Sqlite, &env).await.unwrap();
    let ids = sign_up(&s, 3).await;
    s.wait_queue_drained(Duration::from_secs(120)).await;
    let repo = Repository::open_bare(s.data_dir().join("gitops.git")).unwrap();
    let before = head(&repo);
    upgrade_quota_template(&templates, "everyone");
    s.restart().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ids
        .iter()
        .all(|t| quota(&repo, head(&repo), t).starts_with("# everyone\n"))
    {
        assert!(Instant::now() < deadline, "{}", s.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut walk = repo.revwalk().unwrap();
    walk.push(head(&repo)).unwrap();
    walk.hide(before).unwrap();
    for oid in walk {
        let commit = repo.find_commit(oid.unwrap()).unwrap();
        assert!(
            trailer(&commit, "Rollout-Id").is_empty(),
            "no rollout: {:?}",
            commit.message()
        );
    }
    let st = cli_json(&s, &env, &["rollout", "status"]);
    assert_eq!(st["rollout"], Value::Null, "{st}");
}
