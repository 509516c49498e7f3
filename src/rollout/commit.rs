//! The commits of a rollout: one per wave, and one reverting waves. Each tenant's part is a
//! render job (staged before the commit, done with it), so the commit's `Change-Id:`s name
//! jobs that wrote exactly those files and the drift scan knows them for the service's. A
//! commit is found again by its trailers after its base: a crash between the commit and the
//! bookkeeping neither loses it nor makes it twice.

use std::collections::BTreeMap;

use chrono::Utc;
use git2::Oid;

use super::{short, Handles, RolloutError};
use crate::db::outbox::{self, JobStatus};
use crate::db::rollouts::{self, RolloutRow, TenantStatus};
use crate::db::{self, deployments};
use crate::gitops::{self, Changes};
use crate::status::Event;

pub(crate) const ROLLOUT_ID: &str = "Rollout-Id";
pub(crate) const ROLLOUT_WAVE: &str = "Rollout-Wave";
pub(crate) const ROLLOUT_ACTION: &str = "Rollout-Action";

/// What a rollout commit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Wave,
    Rollback,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Wave => "wave",
            Kind::Rollback => "rollback",
        }
    }
}

/// Names one commit of a rollout: its trailers.
pub(crate) struct Marks {
    pairs: Vec<(&'static str, String)>,
}

impl Marks {
    /// `waves`: the wave committed, or those a rollback reverts (`1,2`).
    pub fn new(rollout_id: &str, waves: &[i64], kind: Kind) -> Marks {
        let waves: Vec<String> = waves.iter().map(i64::to_string).collect();
        Marks {
            pairs: vec![
                (ROLLOUT_ID, rollout_id.to_string()),
                (ROLLOUT_WAVE, waves.join(",")),
                (ROLLOUT_ACTION, kind.as_str().to_string()),
            ],
        }
    }
}

/// A rollout commit on main: its revision, the change ids it names, and what each of the
/// tenants asked about holds there (`deploy::content::fingerprint`).
pub(crate) struct Made {
    pub revision: String,
    change_ids: Vec<String>,
    fingerprints: BTreeMap<String, String>,
}

/// Finds the commit `marks` names among those after `base`; failing that, commits `changes`
/// with `message` (None: only look). None when there is neither (or nothing to change).
pub(crate) async fn find_or_commit(
    h: &Handles<'_>,
    base: Option<String>,
    marks: Marks,
    work: Option<(Changes, String)>,
    tenants: Vec<String>,
) -> Result<Option<Made>, RolloutError> {
    let made = h
        .gitops
        .run(move |repo| -> Result<Option<Made>, RolloutError> {
            let since = base.as_deref().and_then(|b| Oid::from_str(b).ok());
            let found = match since {
                Some(since) => repo.commits_since(Some(since))?.into_iter().find(|c| {
                    marks
                        .pairs
                        .iter()
                        .all(|(key, value)| c.trailers(key).contains(value))
                }),
                None => None,
            };
            let revision = match (found, work) {
                (Some(commit), _) => commit.revision,
                (None, Some((changes, message))) => match repo.commit(&changes, &message)? {
                    Some(oid) => oid,
                    None => return Ok(None),
                },
                (None, None) => return Ok(None),
            };
            let message = repo
                .repository()
                .find_commit(revision)
                .map_err(gitops::GitOpsError::from)?
                .message()
                .unwrap_or_default()
                .to_string();
            let change_ids = message
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Change-Id: "))
                .map(|v| v.trim().to_string())
                .collect();
            let mut fingerprints = BTreeMap::new();
            for id in tenants {
                let content = crate::deploy::content::fingerprint(repo, revision, &id)?;
                fingerprints.insert(id, content);
            }
            Ok(Some(Made {
                revision: revision.to_string(),
                change_ids,
                fingerprints,
            }))
        })
        .await?;
    Ok(made)
}

/// The bookkeeping of a commit: its staged jobs done with what each tenant holds there, and
/// each tenant committed at its revision (the watcher takes over). Returns the tenants.
pub(crate) async fn record(
    h: &Handles<'_>,
    rollout_id: &str,
    made: &Made,
    status: TenantStatus,
) -> Result<Vec<String>, RolloutError> {
    let named = outbox::named_jobs(&h.db.pool, &made.change_ids).await?;
    let now = Utc::now();
    let at = db::ts(now);
    let mut tenants = Vec::new();
    let mut tx = h.db.pool.begin().await?;
    for job in named {
        let Some(content) = made.fingerprints.get(&job.customer_id) else {
            continue;
        };
        if job.status == JobStatus::Staged.as_str() {
            outbox::complete_staged(&mut *tx, &job.change_id, &made.revision, content, now).await?;
            deployments::apply_event(
                &mut tx,
                &job.customer_id,
                Event::Committed,
                Some(&made.revision),
                None,
                &at,
            )
            .await?;
        }
        rollouts::set_tenant(&mut *tx, rollout_id, &job.customer_id, status, None).await?;
        tenants.push(job.customer_id);
    }
    tx.commit().await?;
    Ok(tenants)
}

/// Stages one job per tenant for a commit of `kind`; returns the change ids by tenant.
pub(crate) async fn stage(
    tx: &mut db::Tx<'_>,
    tenants: &[(String, Option<String>)],
    action: outbox::Action,
    reason: &str,
) -> Result<BTreeMap<String, String>, sqlx::Error> {
    let mut ids = BTreeMap::new();
    for (customer_id, existing) in tenants {
        let change_id = match existing {
            Some(id) => id.clone(),
            None => outbox::stage(&mut **tx, customer_id, action, reason, Utc::now()).await?,
        };
        ids.insert(customer_id.clone(), change_id);
    }
    Ok(ids)
}

/// The commit message: what it does, a line per tenant, and the trailers that name the
/// rollout, the wave, each tenant and each job.
pub(crate) fn message(
    r: &RolloutRow,
    subject: &str,
    line: &str,
    marks: Marks,
    change_ids: &BTreeMap<String, String>,
) -> String {
    let body: Vec<String> = std::iter::once(format!("templates {}", short(&r.templates)))
        .chain(change_ids.keys().map(|id| format!("tenant {id}: {line}")))
        .collect();
    let mut trailers = marks.pairs;
    trailers.extend(change_ids.keys().map(|id| ("Tenant-Id", id.clone())));
    trailers.extend(change_ids.values().map(|c| ("Change-Id", c.clone())));
    crate::deploy::message(subject, &body, &trailers)
}

/// Pushes main after a rollout commit and pokes the cluster. Returns the revision that holds
/// the commit on the remote (its re-application on another writer's tip, or a descendant),
/// or `revision` itself without a remote or when the push failed: that is logged and shows in
/// the repository's health, and the worker pushes again while the wave waits.
pub(crate) async fn push(h: &Handles<'_>, revision: &str) -> String {
    if h.gitops.remote.is_none() {
        return revision.to_string();
    }
    let pushed = match crate::deploy::commit::push(h.gitops, revision.to_string()).await {
        Ok(tip) => tip,
        Err(err) => {
            tracing::warn!(error = %err, "push of a rollout commit failed; retried while the wave waits");
            return revision.to_string();
        }
    };
    poke(h, &pushed).await;
    pushed
}

/// Tells the cluster that main moved to `revision`. Best effort, as after the worker's
/// pushes: the cluster's interval is the fallback.
pub(crate) async fn poke(h: &Handles<'_>, revision: &str) {
    if let Some(p) = &h.poke {
        if let Err(err) = crate::poke::poke(p.http, &p.target, p.branch, revision).await {
            tracing::warn!(error = %format!("{err:#}"), "sync webhook poke failed");
        }
    }
}

/// A commit on main that took in a wave proposed for review (review mode): the jobs its
/// tenants' parts were staged as, and what each tenant holds there.
pub(crate) async fn made_at(
    h: &Handles<'_>,
    revision: String,
    change_ids: Vec<String>,
    tenants: Vec<String>,
) -> Result<Made, RolloutError> {
    let at = Oid::from_str(&revision).map_err(gitops::GitOpsError::from)?;
    let fingerprints = h
        .gitops
        .run(
            move |repo| -> Result<BTreeMap<String, String>, RolloutError> {
                let mut fingerprints = BTreeMap::new();
                for id in tenants {
                    let content = crate::deploy::content::fingerprint(repo, at, &id)?;
                    fingerprints.insert(id, content);
                }
                Ok(fingerprints)
            },
        )
        .await?;
    Ok(Made {
        revision,
        change_ids,
        fingerprints,
    })
}
