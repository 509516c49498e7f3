//! From the outbox to Git: claim render jobs, render each tenant (pure), fold the batch into
//! one commit, push, then mark jobs done and move each deployment through the state machine.

pub mod behind;
mod changes;
pub mod roots;
/// The commit message format (subject, body, trailers) rollouts write too.
pub(crate) use changes::message;
pub(crate) mod commit;
/// What a tenant's files are at a revision: shared with review, which owns it.
pub use crate::review::content;
pub mod demo;
pub mod drift;
mod error;
mod handles;
pub mod history;
pub mod layout;
mod propose;
pub mod requests;
mod rollback;

use changes::Prepared;
pub use changes::{describe_changes, removal_changes, tenant_changes};
use commit::{commit_and_push, poke_cluster, repack, Committed, REPACK_WHEN_BUSY};
pub use error::DeployError;
pub use handles::{DeployHandles, DeploySettings};

use anyhow::Context;
use chrono::{Duration, Utc};

use crate::db::outbox::{self, Action, Job};
use crate::db::{self, accounts, deployments};
use crate::gitops::Changes;
use crate::render::{RenderLock, SealedValues, TenantSpec, SECRET_NAME};
use crate::status::Event;

/// Loads what the renderer needs for one tenant from the database.
pub async fn load_spec(
    handles: &DeployHandles,
    customer_id: &str,
) -> anyhow::Result<(TenantSpec, SealedValues)> {
    let backup = BackupSealing {
        sealing: &handles.sealing,
        config: &handles.settings.backup,
    };
    load_tenant(&handles.db, backup, customer_id).await
}

/// What sealing the backup uploader's credential into a tenant that lacks it takes.
#[derive(Clone, Copy)]
pub struct BackupSealing<'a> {
    pub sealing: &'a crate::seal::SealingKey,
    pub config: &'a crate::config::BackupConfig,
}

/// Loads what the renderer needs for one tenant from the database, sealing the backup
/// credential first if backups are on and the tenant has none yet.
pub async fn load_tenant(
    db: &db::Db,
    backup: BackupSealing<'_>,
    customer_id: &str,
) -> anyhow::Result<(TenantSpec, SealedValues)> {
    let pool = &db.pool;
    let customer = accounts::customer_by_id(pool, customer_id)
        .await?
        .with_context(|| format!("customer {customer_id} not found"))?;
    let subscription = accounts::subscription(pool, customer_id)
        .await?
        .with_context(|| format!("customer {customer_id} has no subscription"))?;
    let mut encrypted = db::secrets::all(pool, customer_id).await?;
    if let Some(credentials) = backup.config.credentials()? {
        let missing = crate::secrets::missing_backup_keys(
            backup.sealing,
            customer_id,
            &credentials,
            &encrypted,
        )?;
        if !missing.is_empty() {
            let now = db::ts(Utc::now());
            for (name, sealed) in missing {
                db::secrets::insert_if_absent(pool, customer_id, name, &sealed, &now).await?;
            }
            encrypted = db::secrets::all(pool, customer_id).await?;
        }
    }
    let spec = TenantSpec {
        id: customer.id,
        plan: subscription.plan,
        subscription_status: subscription.status,
        company_name: customer.company_name,
        email: customer.email,
        full_name: customer.full_name,
        restore_from: None,
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
pub async fn render_tenant(
    handles: &DeployHandles,
    customer_id: &str,
) -> anyhow::Result<(Changes, String)> {
    let (spec, sealed) = load_spec(handles, customer_id).await?;
    render_loaded(handles, &spec, &sealed, None)
}

/// Renders a tenant whose data is loaded, only what changed since `previous` (its lock in the
/// repository): CPU work only, for the compute pool.
fn render_loaded(
    handles: &DeployHandles,
    spec: &TenantSpec,
    sealed: &SealedValues,
    previous: Option<&RenderLock>,
) -> anyhow::Result<(Changes, String)> {
    let plan = handles
        .plans
        .get(&spec.plan)
        .with_context(|| format!("unknown plan {:?}", spec.plan))?;
    let started = std::time::Instant::now();
    let rendered =
        handles
            .renderer
            .render_update(spec, plan, &handles.render_settings, sealed, previous)?;
    handles
        .metrics
        .render_seconds
        .observe(started.elapsed().as_secs_f64());
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
async fn render_all(handles: &DeployHandles, loaded: Vec<Loaded>) -> anyhow::Result<Vec<Rendered>> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk_len = loaded.len().div_ceil(cores).max(1);
    let mut rest = loaded.into_iter();
    let mut tasks = Vec::new();
    loop {
        let chunk: Vec<Loaded> = rest.by_ref().take(chunk_len).collect();
        if chunk.is_empty() {
            break;
        }
        let handles = handles.clone();
        // Spawned so every chunk is queued at once rather than one after another.
        tasks.push(tokio::spawn(crate::pool::COMPUTE.run(move || {
            chunk
                .into_iter()
                .map(|(job, action, data)| {
                    let result = data.and_then(|data| match data {
                        None => Ok((removal_changes(&job.customer_id), String::new())),
                        Some((spec, sealed, lock)) => {
                            render_loaded(&handles, &spec, &sealed, lock.as_ref())
                        }
                    });
                    (job, action, result)
                })
                .collect::<Vec<Rendered>>()
        })));
    }
    let mut rendered = Vec::new();
    for task in tasks {
        rendered.extend(task.await.context("render task")??);
    }
    Ok(rendered)
}

/// The render lock in Git of each job's tenant, in job order (None where there is none, and for
/// a deletion, a rebuild or a job that could not be loaded).
async fn render_locks(
    handles: &DeployHandles,
    specs: &[LoadedSpec],
) -> anyhow::Result<Vec<Option<RenderLock>>> {
    let wanted: Vec<bool> = specs
        .iter()
        .map(|(_, action, data)| {
            !matches!(action, Action::Rebuild | Action::Force) && matches!(data, Ok(Some(_)))
        })
        .collect();
    // With each lock, where the tenant's Kustomization belongs when it is placed on a
    // cluster: not there yet (a first placement, or back from unplaced) means a complete
    // render, so the Kustomization is written whatever templates changed.
    let mut paths = Vec::new();
    for ((job, ..), _) in specs.iter().zip(&wanted).filter(|(_, wanted)| **wanted) {
        let id = &job.customer_id;
        paths.push(crate::render::render_lock_path(id));
        let root = roots::root_of(&handles.db, id).await?;
        paths.push(match root.cluster() {
            Some(cluster) => crate::render::cluster_kustomization_path(cluster, id),
            None => crate::render::render_lock_path(id),
        });
    }
    let read = handles
        .gitops
        .run(move |repo| anyhow::Ok(repo.read_many(&paths)?))
        .await?;
    let mut read = read.into_iter();
    Ok(wanted
        .into_iter()
        .map(|wanted| {
            let (lock, placed) = match wanted {
                true => (read.next().flatten(), read.next().flatten()),
                false => (None, None),
            };
            let lock = lock.filter(|_| placed.is_some());
            lock.and_then(|b| RenderLock::from_bytes(&b))
        })
        .collect())
}

/// Claims one batch and takes it all the way to Git. Returns how many jobs it handled.
pub async fn process_batch(handles: &DeployHandles) -> anyhow::Result<usize> {
    let cfg = &handles.settings;
    let gitops = &handles.gitops;
    let jobs = outbox::claim(
        &handles.db,
        &handles.worker_id,
        cfg.gitops_batch_max,
        Duration::seconds(cfg.gitops_lease_seconds),
        Utc::now(),
    )
    .await?;
    if jobs.is_empty() {
        return Ok(0);
    }
    let claimed = jobs.len();
    // A tenant waiting for a cluster with room has nothing in Git yet: its changes (but not its
    // removal) are held until the placement worker finds it one.
    let ids: Vec<String> = jobs.iter().map(|j| j.customer_id.clone()).collect();
    let unplaced = db::placements::unplaced_among(&handles.db.pool, &ids).await?;

    let mut specs = Vec::with_capacity(jobs.len());
    // Rollbacks are read from Git, not rendered.
    let mut prepared: Vec<Prepared> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let action = Action::parse(&job.action).unwrap_or(Action::Update);
        match action {
            Action::Delete => specs.push((job, action, Ok(None))),
            Action::Rollback => match rollback::changes(handles, &job).await {
                Ok((changes, summary)) => prepared.push(Prepared {
                    job,
                    action,
                    changes,
                    summary,
                    root: roots::Root::Single,
                }),
                Err(err) => give_up_or_retry(handles, &job, &format!("{err:#}")).await?,
            },
            _ if unplaced.contains(&job.customer_id)
                && outbox::hold_claimed(&handles.db.pool, &job, &handles.worker_id).await? => {}
            _ if action != Action::Force && drift::holds(handles, &job).await? => {}
            _ => {
                let data = load_spec(handles, &job.customer_id).await.map(Some);
                specs.push((job, action, data));
            }
        }
    }
    let mut locks = render_locks(handles, &specs).await?.into_iter();
    let loaded: Vec<Loaded> = specs
        .into_iter()
        .map(|(job, action, data)| {
            let lock = locks.next().flatten();
            let data = data.map(|d| d.map(|(spec, sealed)| (spec, sealed, lock)));
            (job, action, data)
        })
        .collect();
    for (job, action, result) in render_all(handles, loaded).await? {
        match result {
            Ok((changes, summary)) => prepared.push(Prepared {
                job,
                action,
                changes,
                summary,
                root: roots::Root::Single,
            }),
            Err(err) => give_up_or_retry(handles, &job, &format!("{err:#}")).await?,
        }
    }
    if prepared.is_empty() {
        return Ok(claimed);
    }
    // Job order decides which change of a tenant wins.
    prepared.sort_by_key(|p| p.job.id);
    // The placement (the database's truth) decides which sync root applies each tenant.
    for p in &mut prepared {
        p.root = roots::root_of(&handles.db, &p.job.customer_id).await?;
    }
    let mut direct = Vec::with_capacity(prepared.len());
    for p in prepared {
        if handles
            .review
            .mode
            .policy
            .reviewed(p.action, p.job.reason.as_deref())
        {
            direct.extend(propose::propose(handles, p).await?);
        } else {
            direct.push(p);
        }
    }
    let prepared = direct;
    if prepared.is_empty() {
        return Ok(claimed);
    }

    let mut prepared = prepared;
    // The jobs, should the commit's task die with the batch.
    let claimed_jobs: Vec<Job> = prepared.iter().map(|p| p.job.clone()).collect();
    let Committed { revision, contents } = match commit_and_push(handles, &mut prepared).await {
        Ok(committed) => committed,
        Err(err) => {
            let jobs = claimed_jobs;
            let now = Utc::now();
            let owner = &handles.worker_id;
            outbox::postpone(&handles.db, &jobs, owner, &err, Duration::seconds(5), now).await?;
            // Shown on each waiting tenant's status until its change reaches Git.
            let ids: Vec<&str> = jobs.iter().map(|j| j.customer_id.as_str()).collect();
            deployments::record_error(&handles.db.pool, &ids, &err, &db::ts(now)).await?;
            anyhow::bail!(err);
        }
    };

    let now = db::ts(Utc::now());
    for (p, content) in prepared.iter().zip(&contents) {
        let mut tx = handles.db.pool.begin().await?;
        let done = outbox::complete(
            &mut *tx,
            &p.job,
            &handles.worker_id,
            &revision,
            content,
            Utc::now(),
        );
        if done.await? {
            let (event, note) = match p.action {
                Action::Delete => (Event::Removed, None),
                // Git now runs a version the database did not render: held until forced.
                Action::Rollback => (Event::Drifted, Some(rollback::note(&p.summary))),
                _ => (Event::Committed, None),
            };
            if p.action == Action::Delete {
                // Its stack leaves Git with this commit: its room on the cluster is free.
                db::clusters::remove_placement(&mut *tx, &p.job.customer_id).await?;
            }
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
    // A change that went straight to main replaces the tenant's open review.
    if handles.review.mode.policy.any_review() {
        for p in &prepared {
            crate::review::supersede(&handles.review, &p.job.customer_id).await?;
        }
    }
    if gitops.remote.is_some() {
        handles.scan_wake.notify_one();
        poke_cluster(handles, &revision).await;
    }
    Ok(claimed)
}

async fn give_up_or_retry(handles: &DeployHandles, job: &Job, error: &str) -> anyhow::Result<()> {
    let now = Utc::now();
    let mut tx = handles.db.pool.begin().await?;
    let gave_up = outbox::retry(
        &mut *tx,
        job,
        &handles.worker_id,
        error,
        handles.settings.gitops_max_attempts,
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

/// The worker: runs batches until `stop` (checked between batches); wakes on new jobs or every
/// second.
pub async fn run_worker(handles: DeployHandles, stop: tokio_util::sync::CancellationToken) {
    let mut failures: u32 = 0;
    while !stop.is_cancelled() {
        match process_batch(&handles).await {
            Ok(0) => {
                failures = 0;
                // Idle means a second without new work: a steady trickle of signups is not
                // slowed by a repack after every commit.
                let idle = std::time::Duration::from_secs(1);
                let woken = tokio::time::timeout(idle, handles.worker_wake.notified());
                match stop.run_until_cancelled(woken).await {
                    None => return,
                    Some(Ok(())) => {}
                    Some(Err(_)) => repack(&handles, 1).await,
                }
            }
            Ok(_) => {
                failures = 0;
                repack(&handles, REPACK_WHEN_BUSY).await;
            }
            Err(err) => {
                failures = failures.saturating_add(1);
                let delay = std::time::Duration::from_millis(250 * 2u64.pow(failures.min(6)));
                tracing::warn!(error = %format!("{err:#}"), retry_in_ms = delay.as_millis() as u64, "GitOps worker");
                if stop
                    .run_until_cancelled(tokio::time::sleep(delay))
                    .await
                    .is_none()
                {
                    return;
                }
            }
        }
    }
}
