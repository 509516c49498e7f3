//! From the outbox to Git: claim render jobs, render each tenant (pure), fold the batch into
//! one commit, push, then mark jobs done and move each deployment through the state machine.

mod changes;
pub mod demo;
pub mod drift;
pub mod history;
pub mod layout;
pub mod requests;
mod rollback;

use changes::{commit_message, Prepared};
pub use changes::{describe_changes, removal_changes, tenant_changes};

use std::sync::Arc;

use anyhow::Context;
use chrono::{Duration, Utc};

use crate::app::App;
use crate::db::outbox::{self, Action, Job};
use crate::db::{self, accounts, deployments};
use crate::gitops::{self, Changes};
use crate::render::{RenderLock, SealedValues, TenantSpec, SECRET_NAME};
use crate::status::Event;

/// Loads what the renderer needs for one tenant from the database.
pub async fn load_spec(app: &App, customer_id: &str) -> anyhow::Result<(TenantSpec, SealedValues)> {
    let pool = &app.db.pool;
    let customer = accounts::customer_by_id(pool, customer_id)
        .await?
        .with_context(|| format!("customer {customer_id} not found"))?;
    let subscription = accounts::subscription(pool, customer_id)
        .await?
        .with_context(|| format!("customer {customer_id} has no subscription"))?;
    let encrypted = db::secrets::all(pool, customer_id).await?;
    let spec = TenantSpec {
        id: customer.id,
        plan: subscription.plan,
        subscription_status: subscription.status,
        company_name: customer.company_name,
        email: customer.email,
        full_name: customer.full_name,
    };
    Ok((
        spec,
        SealedValues {
            secret_name: SECRET_NAME.to_string(),
            encrypted,
        },
    ))
}

/// Renders one tenant into repository changes (in full).
pub async fn render_tenant(app: &App, customer_id: &str) -> anyhow::Result<(Changes, String)> {
    let (spec, sealed) = load_spec(app, customer_id).await?;
    render_loaded(app, &spec, &sealed, None)
}

/// Renders a tenant whose data is loaded, only what changed since `previous` (its lock in the
/// repository): CPU work only, for the compute pool.
fn render_loaded(
    app: &App,
    spec: &TenantSpec,
    sealed: &SealedValues,
    previous: Option<&RenderLock>,
) -> anyhow::Result<(Changes, String)> {
    let plan = app
        .plans
        .get(&spec.plan)
        .with_context(|| format!("unknown plan {:?}", spec.plan))?;
    let rendered =
        app.renderer
            .render_update(spec, plan, &app.render_settings, sealed, previous)?;
    let summary = format!("{}, {}", spec.plan, spec.subscription_status);
    Ok((tenant_changes(&spec.id, rendered), summary))
}

/// A job with its tenant's data (None for a deletion).
type LoadedSpec = (
    Job,
    Action,
    anyhow::Result<Option<(TenantSpec, SealedValues)>>,
);
/// A job with its tenant's data (None for a deletion) and the tenant's render lock in Git.
type Loaded = (
    Job,
    Action,
    anyhow::Result<Option<(TenantSpec, SealedValues, Option<RenderLock>)>>,
);
type Rendered = (Job, Action, anyhow::Result<(Changes, String)>);

/// Renders a batch on the compute pool, one chunk per core, off the async runtime's threads.
async fn render_all(app: &Arc<App>, loaded: Vec<Loaded>) -> anyhow::Result<Vec<Rendered>> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk_len = loaded.len().div_ceil(cores).max(1);
    let mut rest = loaded.into_iter();
    let mut handles = Vec::new();
    loop {
        let chunk: Vec<Loaded> = rest.by_ref().take(chunk_len).collect();
        if chunk.is_empty() {
            break;
        }
        let app = app.clone();
        // Spawned so every chunk is queued at once rather than one after another.
        handles.push(tokio::spawn(crate::pool::COMPUTE.run(move || {
            chunk
                .into_iter()
                .map(|(job, action, data)| {
                    let result = data.and_then(|data| match data {
                        None => Ok((removal_changes(&job.customer_id), String::new())),
                        Some((spec, sealed, lock)) => {
                            render_loaded(&app, &spec, &sealed, lock.as_ref())
                        }
                    });
                    (job, action, result)
                })
                .collect::<Vec<Rendered>>()
        })));
    }
    let mut rendered = Vec::new();
    for handle in handles {
        rendered.extend(handle.await.context("render task")??);
    }
    Ok(rendered)
}

/// The render lock in Git of each job's tenant, in job order (None where there is none, and for
/// a deletion, a rebuild or a job that could not be loaded).
async fn render_locks(
    app: &Arc<App>,
    specs: &[LoadedSpec],
) -> anyhow::Result<Vec<Option<RenderLock>>> {
    let wanted: Vec<bool> = specs
        .iter()
        .map(|(_, action, data)| {
            !matches!(action, Action::Rebuild | Action::Force) && matches!(data, Ok(Some(_)))
        })
        .collect();
    let paths: Vec<String> = specs
        .iter()
        .zip(&wanted)
        .filter(|(_, wanted)| **wanted)
        .map(|((job, ..), _)| crate::render::render_lock_path(&job.customer_id))
        .collect();
    let app = app.clone();
    let read = crate::pool::GIT
        .run(move || {
            let repo = app
                .gitops
                .repo
                .lock()
                .map_err(|_| anyhow::anyhow!("lock poisoned"))?;
            anyhow::Ok(repo.read_many(&paths)?)
        })
        .await
        .context("git task panicked")??;
    let mut read = read.into_iter();
    Ok(wanted
        .into_iter()
        .map(|wanted| {
            let bytes = if wanted { read.next().flatten() } else { None };
            bytes.and_then(|b| RenderLock::from_bytes(&b))
        })
        .collect())
}

/// Claims one batch and takes it all the way to Git. Returns how many jobs it handled.
pub async fn process_batch(app: &Arc<App>) -> anyhow::Result<usize> {
    let cfg = &app.config;
    let gitops = &app.gitops;
    let jobs = outbox::claim(
        &app.db,
        &app.worker_id,
        cfg.gitops_batch_max,
        Duration::seconds(cfg.gitops_lease_seconds),
        Utc::now(),
    )
    .await?;
    if jobs.is_empty() {
        return Ok(0);
    }
    let claimed = jobs.len();

    let mut specs = Vec::with_capacity(jobs.len());
    // Rollbacks are read from Git, not rendered.
    let mut prepared: Vec<Prepared> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let action = Action::parse(&job.action).unwrap_or(Action::Update);
        match action {
            Action::Delete => specs.push((job, action, Ok(None))),
            Action::Rollback => match rollback::changes(app, &job).await {
                Ok((changes, summary)) => prepared.push(Prepared {
                    job,
                    action,
                    changes,
                    summary,
                }),
                Err(err) => give_up_or_retry(app, &job, &format!("{err:#}")).await?,
            },
            _ if action != Action::Force && drift::holds(app, &job).await? => {}
            _ => {
                let data = load_spec(app, &job.customer_id).await.map(Some);
                specs.push((job, action, data));
            }
        }
    }
    let mut locks = render_locks(app, &specs).await?.into_iter();
    let loaded: Vec<Loaded> = specs
        .into_iter()
        .map(|(job, action, data)| {
            let lock = locks.next().flatten();
            let data = data.map(|d| d.map(|(spec, sealed)| (spec, sealed, lock)));
            (job, action, data)
        })
        .collect();
    for (job, action, result) in render_all(app, loaded).await? {
        match result {
            Ok((changes, summary)) => prepared.push(Prepared {
                job,
                action,
                changes,
                summary,
            }),
            Err(err) => give_up_or_retry(app, &job, &format!("{err:#}")).await?,
        }
    }
    if prepared.is_empty() {
        return Ok(claimed);
    }
    // Job order decides which change of a tenant wins.
    prepared.sort_by_key(|p| p.job.id);

    let app2 = app.clone();
    let (outcome, prepared) = crate::pool::GIT
        .run(move || {
            let mut prepared = prepared;
            let outcome = commit_and_push(&app2, &mut prepared);
            (outcome, prepared)
        })
        .await
        .context("git task panicked")?;
    let revision = match outcome {
        Ok(revision) => revision,
        Err(err) => {
            let jobs: Vec<Job> = prepared.into_iter().map(|p| p.job).collect();
            let now = Utc::now();
            outbox::postpone(&app.db, &jobs, &err, Duration::seconds(5), now).await?;
            // Shown on each waiting tenant's status until its change reaches Git.
            let ids: Vec<&str> = jobs.iter().map(|j| j.customer_id.as_str()).collect();
            deployments::record_error(&app.db.pool, &ids, &err, &db::ts(now)).await?;
            anyhow::bail!(err);
        }
    };

    let now = db::ts(Utc::now());
    for p in &prepared {
        let mut tx = app.db.pool.begin().await?;
        if outbox::complete(&mut *tx, &p.job, &app.worker_id, &revision, Utc::now()).await? {
            let (event, note) = match p.action {
                Action::Delete => (Event::Removed, None),
                // Git now runs a version the database did not render: held until forced.
                Action::Rollback => (Event::Drifted, Some(rollback::note(&p.summary))),
                _ => (Event::Committed, None),
            };
            deployments::apply_event(
                &mut tx,
                &p.job.customer_id,
                event,
                Some(&revision),
                note.as_deref(),
                &now,
            )
            .await?;
        }
        tx.commit().await?;
    }
    tracing::info!(jobs = prepared.len(), %revision, "render jobs committed");
    if gitops.remote.is_some() {
        app.scan_wake.notify_one();
        poke_cluster(app, &revision).await;
    }
    Ok(claimed)
}

/// Tells Flux or Argo CD that the branch moved, so it syncs now rather than at its next
/// interval. Best effort: the interval is the fallback, so a failure is only logged.
async fn poke_cluster(app: &App, revision: &str) {
    let Some(target) = app.config.sync_webhook() else {
        return;
    };
    if let Err(err) =
        crate::poke::poke(&app.http, &target, &app.config.gitops_branch, revision).await
    {
        tracing::warn!(error = %format!("{err:#}"), "sync webhook poke failed");
    }
}

async fn give_up_or_retry(app: &App, job: &Job, error: &str) -> anyhow::Result<()> {
    let now = Utc::now();
    let backoff = Duration::seconds(2i64.saturating_pow(job.attempts.clamp(0, 8) as u32));
    let mut tx = app.db.pool.begin().await?;
    let gave_up = outbox::retry(
        &mut *tx,
        job,
        error,
        app.config.gitops_max_attempts,
        backoff,
        now,
    )
    .await?;
    if gave_up {
        deployments::apply_event(
            &mut tx,
            &job.customer_id,
            Event::GaveUp,
            None,
            Some(error),
            &db::ts(now),
        )
        .await?;
    }
    tx.commit().await?;
    tracing::warn!(customer_id = %job.customer_id, change_id = %job.change_id, gave_up, error, "render job failed");
    Ok(())
}

/// Commits (a no-op when nothing changed) and pushes; returns the revision that contains the
/// changes. Errors are strings: they are stored on the jobs and shown to operators.
/// The jobs' changes are moved into the commit (a batch of rendered tenants is the worker's
/// largest allocation; it is not copied).
fn commit_and_push(app: &App, prepared: &mut [Prepared]) -> Result<String, String> {
    let gitops = &app.gitops;
    let mut repo = gitops
        .repo
        .lock()
        .map_err(|_| "git repository lock poisoned".to_string())?;
    // Jobs whose change is already in Git (a retry after a crash between commit and
    // bookkeeping) are done without being named again: each change is in exactly one commit.
    let mut effective = Vec::new();
    for (i, p) in prepared.iter().enumerate() {
        if !repo.unchanged(&p.changes).map_err(|e| e.to_string())? {
            effective.push(i);
        }
    }
    if !effective.is_empty() {
        // Later jobs of the same tenant win: changes are applied in job order.
        let mut changes = Changes::new();
        for &i in &effective {
            let p = &mut prepared[i];
            // A later job of a tenant replaces everything an earlier one wrote for it (one may
            // be a whole directory, the other single files in it).
            let dir = crate::render::tenant_dir(&p.job.customer_id);
            let under = format!("{dir}/");
            changes.retain(|path, _| *path != dir && !path.starts_with(&under));
            changes.extend(std::mem::take(&mut p.changes));
        }
        let described: Vec<&Prepared> = effective.iter().map(|&i| &prepared[i]).collect();
        if let Err(e) = repo.commit(&changes, &commit_message(&described)) {
            let msg = format!("commit failed: {e}");
            app.metrics.gitops_commit_failures.inc();
            gitops.set_health(|h| h.commit_error = Some(msg.clone()));
            return Err(msg);
        }
        app.metrics.gitops_commits.inc();
    }
    gitops.set_health(|h| h.commit_error = None);
    let head = repo
        .head()
        .map_err(|e| e.to_string())?
        .ok_or("the branch is empty")?
        .to_string();
    let Some(remote) = &gitops.remote else {
        gitops.set_health(|h| h.last_commit = Some(head.clone()));
        return Ok(head);
    };
    match repo.push(remote, 5) {
        Ok(outcome) => {
            let tip = match outcome {
                gitops::PushOutcome::Pushed(oid) | gitops::PushOutcome::UpToDate(oid) => {
                    oid.to_string()
                }
            };
            gitops.set_health(|h| {
                h.last_commit = Some(tip.clone());
                h.last_push_at = Some(db::ts(Utc::now()));
                h.remote_error = None;
            });
            Ok(tip)
        }
        Err(err) => {
            app.metrics.gitops_push_failures.inc();
            let msg = format!("push to the GitOps remote failed: {err}");
            gitops.set_health(|h| {
                h.last_commit = Some(head.clone());
                h.remote_error = Some(msg.clone());
            });
            Err(msg)
        }
    }
}

/// Each small commit writes a small pack; a busy worker consolidates them after this many
/// commits, an idle one after a second without work.
const REPACK_WHEN_BUSY: usize = 64;

/// Packs loose objects when at least `min_commits` commits are unpacked. Maintenance: a
/// failure is logged and retried later, never surfaced to a job.
async fn repack(app: &Arc<App>, min_commits: usize) {
    let app2 = app.clone();
    let outcome = crate::pool::GIT
        .run(move || {
            let mut repo = app2
                .gitops
                .repo
                .lock()
                .map_err(|_| "lock poisoned".to_string())?;
            if repo.unpacked_commits() < min_commits.max(1) {
                return Ok(None);
            }
            repo.repack().map(Some).map_err(|e| e.to_string())
        })
        .await;
    match outcome {
        Ok(Ok(Some(done))) => {
            tracing::info!(
                objects = done.objects,
                packs_removed = done.packs_removed,
                loose_removed = done.loose_removed,
                "repacked"
            )
        }
        Ok(Ok(None)) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "repack failed"),
        Err(err) => tracing::warn!(error = %err, "repack task failed"),
    }
}

/// The worker: runs batches until the process ends; wakes on new jobs or every second.
pub async fn run_worker(app: Arc<App>) {
    let mut failures: u32 = 0;
    loop {
        match process_batch(&app).await {
            Ok(0) => {
                failures = 0;
                // Idle means a second without new work: a steady trickle of signups is not
                // slowed by a repack after every commit.
                let woken = tokio::time::timeout(
                    std::time::Duration::from_secs(1),
                    app.worker_wake.notified(),
                )
                .await
                .is_ok();
                if !woken {
                    repack(&app, 1).await;
                }
            }
            Ok(_) => {
                failures = 0;
                repack(&app, REPACK_WHEN_BUSY).await;
            }
            Err(err) => {
                failures = failures.saturating_add(1);
                let delay = std::time::Duration::from_millis(250 * 2u64.pow(failures.min(6)));
                tracing::warn!(error = %format!("{err:#}"), retry_in_ms = delay.as_millis() as u64, "GitOps worker");
                tokio::time::sleep(delay).await;
            }
        }
    }
}
