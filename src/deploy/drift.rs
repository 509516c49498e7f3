//! Drift: main holds a tenant the service did not render. After each fetch (every
//! `GITOPS_FETCH_INTERVAL_SECONDS`, and right after a push) the commits since the last look are
//! read; one that changed a tenant's files to anything but what the service wrote or proposed
//! for it (`content`: a person's `git revert` or edit, whatever its message says) marks that
//! tenant `drifted`, with its revision and author. A drifted tenant's jobs are held (done
//! without a commit) until a forced deploy or a deletion.

use chrono::Utc;
use serde_json::json;

use crate::db::deployments::{self, HistoryEntry, BILLING_SOURCE};
use crate::db::outbox::{self, Job};
use crate::db::{self, accounts, audit, reviews};
use crate::deploy::DeployHandles;
use crate::gitops::CommitInfo;
use crate::status::{DeploymentStatus, Event};

/// The mark (`refs/billing/scanned`) of the newest commit the scan has looked at.
const SCANNED: &str = "scanned";

/// A tenant someone changed by hand.
#[derive(Debug, Clone)]
pub struct Drift {
    pub customer_id: String,
    pub revision: String,
    pub author: String,
    pub summary: String,
}

/// Whether the job's tenant has drifted; its job is then done without a commit and the
/// tenant's history says so.
pub(super) async fn holds(handles: &DeployHandles, job: &Job) -> anyhow::Result<bool> {
    let Some(row) = accounts::deployment(&handles.db.pool, &job.customer_id).await? else {
        return Ok(false);
    };
    if row.status.parse::<DeploymentStatus>() != Ok(DeploymentStatus::Drifted) {
        return Ok(false);
    }
    let note = format!(
        "{} {} held: the tenant has drifted; a forced deploy applies the database's rendering",
        job.action, job.change_id
    );
    let now = Utc::now();
    let at = db::ts(now);
    let mut tx = handles.db.pool.begin().await?;
    if outbox::complete_held(&mut *tx, job, &handles.worker_id, &note, now).await? {
        deployments::insert_history(
            &mut *tx,
            &HistoryEntry {
                customer_id: &job.customer_id,
                revision: row.committed_revision.as_deref(),
                source: BILLING_SOURCE,
                state: DeploymentStatus::Drifted.as_str(),
                message: Some(&note),
                at: &at,
                cluster: None,
            },
        )
        .await?;
    }
    tx.commit().await?;
    tracing::info!(customer_id = %job.customer_id, change_id = %job.change_id, "job held: tenant drifted");
    Ok(true)
}

/// Fetches (when there is a remote), then marks drifted every tenant changed by a commit since
/// the last scan that is not ours. The first scan of a repository only sets the mark.
pub async fn scan(handles: &DeployHandles) -> anyhow::Result<Vec<Drift>> {
    let gitops = &handles.gitops;
    // On the network thread: the local repository stays free while the remote answers.
    let fetched = gitops
        .with_remote("fetch", |repo, remote| repo.sync_from(remote))
        .await;
    if let Err(e) = &fetched {
        tracing::warn!(error = %e, "fetch from the GitOps remote failed");
    }
    let error = fetched
        .err()
        .map(|e| format!("fetch from the GitOps remote failed: {e}"));
    gitops.set_health(|h| h.fetch_error = error);
    let (commits, head) = gitops
        .run(move |repo| -> anyhow::Result<_> {
            let Some(head) = repo.head()? else {
                return Ok((Vec::new(), None));
            };
            let Some(since) = repo.mark(SCANNED)? else {
                repo.set_mark(SCANNED, head)?;
                return Ok((Vec::new(), None));
            };
            Ok((repo.commits_since(Some(since))?, Some(head)))
        })
        .await?;
    for c in &commits {
        tracing::debug!(revision = %c.revision, summary = %c.summary, "new commit on main");
    }
    crate::review::merge::settle(&handles.review, &commits).await?;
    let Some(head) = head else {
        return Ok(Vec::new());
    };
    let mut drifts = Vec::new();
    for commit in commits {
        if !commit.trailers(super::layout::TRAILER).is_empty() {
            continue;
        }
        let named = outbox::named_jobs(&handles.db.pool, &commit.trailers("Change-Id")).await?;
        for (customer_id, content) in tenants_changed(handles, &commit).await? {
            if ours(handles, &named, &customer_id, &content).await? {
                continue;
            }
            if let Some(drift) = mark_drifted(handles, &customer_id, &commit).await? {
                drifts.push(drift);
            }
        }
    }
    gitops.run(move |repo| repo.set_mark(SCANNED, head)).await?;
    Ok(drifts)
}

/// Whether the tenant's files at a commit (`content`) are the service's: what a job the commit
/// names wrote for it, or what its newest open or merged review proposed (a person's squash of
/// the proposal). A copied `Change-Id:` line with other files is not.
async fn ours(
    handles: &DeployHandles,
    named: &[outbox::NamedJob],
    customer_id: &str,
    content: &str,
) -> anyhow::Result<bool> {
    if named
        .iter()
        .any(|job| job.customer_id == customer_id && job.wrote(content))
    {
        return Ok(true);
    }
    let proposed = reviews::proposed_content(&handles.db.pool, customer_id).await?;
    Ok(proposed.as_deref() == Some(content))
}

/// The tenants whose files the commit changed, each once, with what their files are there.
async fn tenants_changed(
    handles: &DeployHandles,
    commit: &CommitInfo,
) -> anyhow::Result<Vec<(String, String)>> {
    let revision = commit.revision;
    handles
        .gitops
        .run(move |repo| -> anyhow::Result<Vec<(String, String)>> {
            let ids: std::collections::BTreeSet<String> = repo
                .owned_paths_changed(revision)?
                .iter()
                .filter_map(|p| crate::render::tenant_of_path(p))
                .map(str::to_string)
                .collect();
            ids.into_iter()
                .map(|id| {
                    let content = crate::review::content::fingerprint(repo, revision, &id)?;
                    Ok((id, content))
                })
                .collect()
        })
        .await
}

async fn mark_drifted(
    handles: &DeployHandles,
    customer_id: &str,
    commit: &CommitInfo,
) -> anyhow::Result<Option<Drift>> {
    let revision = commit.revision.to_string();
    let author = format!("{} <{}>", commit.author_name, commit.author_email);
    let note = format!(
        "changed outside the service in {} by {author}: {}",
        &revision[..12],
        commit.summary
    );
    let at = db::ts(Utc::now());
    let mut tx = handles.db.pool.begin().await?;
    let next = deployments::apply_event(
        &mut tx,
        customer_id,
        Event::Drifted,
        Some(&revision),
        Some(&note),
        &at,
    )
    .await?;
    if next.is_none() {
        // Deleted, or not a tenant of ours.
        return Ok(None);
    }
    audit::record(
        &mut *tx,
        &at,
        &audit::AuditEntry {
            action: "deployment.drifted",
            customer_id: Some(customer_id.to_string()),
            actor: author.clone(),
            details: json!({ "revision": revision, "summary": commit.summary }),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    tracing::warn!(%customer_id, %revision, %author, "tenant drifted: changed outside the service");
    Ok(Some(Drift {
        customer_id: customer_id.to_string(),
        revision,
        author,
        summary: commit.summary.clone(),
    }))
}

/// The scan loop of `billing serve`.
pub async fn run(handles: DeployHandles, stop: tokio_util::sync::CancellationToken) {
    let every = std::time::Duration::from_secs(handles.settings.gitops_fetch_interval_seconds);
    // The first pass is the start-up fetch: it runs here, after the listener is up.
    loop {
        if let Err(err) = scan(&handles).await {
            tracing::warn!(error = %format!("{err:#}"), "drift scan failed");
        }
        let woken = tokio::time::timeout(every, handles.scan_wake.notified());
        if stop.run_until_cancelled(woken).await.is_none() {
            return;
        }
    }
}
