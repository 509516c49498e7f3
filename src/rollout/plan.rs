//! Planning a rollout: which live tenants the current templates change (those drifted, under
//! review or with a change queued are skipped and listed), in which order, in which waves,
//! which files, and a sample diff for a dry run.

use std::collections::BTreeMap;

use serde::Serialize;

use super::order::{Order, Ranked};
use super::render::render;
use super::{diff, Handles, RolloutError, WavePlan};
use crate::db::rollouts::{self, Candidate};
use crate::gitops::Entry;
use crate::render::{flux_kustomization_path, tenant_dir};
use crate::status::DeploymentStatus;

/// A tenant left out, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub customer_id: String,
    pub reason: String,
}

/// A file (by its name in a tenant's directory) and how many tenants' copies change.
#[derive(Debug, Clone, Serialize)]
pub struct FileCount {
    pub file: String,
    pub tenants: usize,
}

/// What a rollout would do.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// How many tenants' files change.
    pub tenants: usize,
    /// How many tenants each wave commits.
    pub waves: Vec<usize>,
    pub files: Vec<FileCount>,
    pub skipped: Vec<Skipped>,
    /// The tenant the sample diff is of (the first one the rollout reaches).
    pub sample_tenant: Option<String>,
    /// Its files' changes as a unified diff.
    pub sample_diff: String,
    /// The tenants that change, in the order the waves take them.
    #[serde(skip)]
    pub(crate) ordered: Vec<String>,
}

/// Why a tenant cannot be part of a rollout now, if it cannot.
pub(crate) fn skip_reason(c: &Candidate) -> Option<String> {
    let status = c.deployment();
    if status == Some(DeploymentStatus::Drifted) {
        return Some("drifted: changed outside the service (a forced deploy takes it back)".into());
    }
    if c.open_reviews > 0 || status == Some(DeploymentStatus::AwaitingReview) {
        return Some("a change of it waits for review".into());
    }
    if c.queued_jobs > 0 || status == Some(DeploymentStatus::Pending) {
        return Some("a queued change renders it with the current templates".into());
    }
    if status == Some(DeploymentStatus::Abandoned) {
        return Some("nothing deployed: its proposal was closed unmerged".into());
    }
    None
}

/// Plans a rollout of this process's templates over every live tenant.
pub(crate) async fn plan(
    h: &Handles<'_>,
    waves: &WavePlan,
    order: &Order,
) -> Result<Plan, RolloutError> {
    let candidates = rollouts::candidates(h.db, None).await?;
    let mut skipped = Vec::new();
    let mut eligible = Vec::new();
    let mut by_id = BTreeMap::new();
    for c in candidates {
        match skip_reason(&c) {
            Some(reason) => skipped.push(Skipped {
                customer_id: c.customer_id.clone(),
                reason,
            }),
            None => eligible.push(c.customer_id.clone()),
        }
        by_id.insert(c.customer_id.clone(), c);
    }
    let renders = render(h, &eligible, false).await?;
    if let Some((id, why)) = renders.failed.first() {
        return Err(RolloutError::Render(format!(
            "tenant {id} does not render with these templates ({} of {} fail): {why}",
            renders.failed.len(),
            eligible.len()
        )));
    }
    let mut files: BTreeMap<String, usize> = BTreeMap::new();
    let mut ranked = Vec::with_capacity(renders.changed.len());
    for r in &renders.changed {
        for path in &r.files {
            *files.entry(file_name(&r.customer_id, path)).or_default() += 1;
        }
        let c = &by_id[&r.customer_id];
        ranked.push(Ranked {
            customer_id: c.customer_id.clone(),
            plan: c.plan.clone(),
            subscription_status: c.subscription_status.clone(),
            label: None,
        });
    }
    if let Some(key) = order.label() {
        label_values(h, key, &mut ranked).await?;
    }
    ranked.sort_by(|a, b| order.compare(h.plans, a, b));
    let ordered: Vec<String> = ranked.into_iter().map(|r| r.customer_id).collect();
    let sample_tenant = ordered.first().cloned();
    let sample_diff = match &sample_tenant {
        Some(id) => sample_diff(h, id).await?,
        None => String::new(),
    };
    Ok(Plan {
        tenants: ordered.len(),
        waves: waves.sizes(ordered.len()),
        files: files
            .into_iter()
            .map(|(file, tenants)| FileCount { file, tenants })
            .collect(),
        skipped,
        sample_tenant,
        sample_diff,
        ordered,
    })
}

/// A path as the same file of every tenant: its name in the tenant's directory, or the
/// reconciler's template name.
fn file_name(customer_id: &str, path: &str) -> String {
    if path == flux_kustomization_path(customer_id) {
        return "flux-kustomization.yaml".into();
    }
    let dir = format!("{}/", tenant_dir(customer_id));
    path.strip_prefix(&dir).unwrap_or(path).to_string()
}

/// The unified diff of one tenant's files, main against the current templates.
async fn sample_diff(h: &Handles<'_>, customer_id: &str) -> Result<String, RolloutError> {
    let mut renders = render(h, &[customer_id.to_string()], true).await?;
    let Some(r) = renders.changed.pop() else {
        return Ok(String::new());
    };
    let new: BTreeMap<String, Vec<u8>> = r
        .changes
        .into_iter()
        .flat_map(|(path, entry)| match entry {
            Entry::File(bytes) => vec![(path, bytes)],
            Entry::Dir(files) => files
                .into_iter()
                .map(|(name, bytes)| (format!("{path}/{name}"), bytes))
                .collect(),
            Entry::Removed | Entry::Index { .. } => Vec::new(),
        })
        .collect();
    let paths = r.files.clone();
    let old = h.gitops.run(move |repo| repo.read_many(&paths)).await?;
    Ok(r.files
        .iter()
        .zip(old)
        .map(|(path, old)| {
            let new = new.get(path).map(Vec::as_slice);
            diff::unified(path, old.as_deref(), new)
        })
        .collect())
}

/// Fills in each tenant's value of the Namespace label `key`, read from main.
async fn label_values(
    h: &Handles<'_>,
    key: &str,
    ranked: &mut [Ranked],
) -> Result<(), RolloutError> {
    let paths: Vec<String> = ranked
        .iter()
        .map(|r| format!("{}/namespace.yaml", tenant_dir(&r.customer_id)))
        .collect();
    let files = h.gitops.run(move |repo| repo.read_many(&paths)).await?;
    for (r, file) in ranked.iter_mut().zip(files) {
        r.label = file.and_then(|bytes| {
            let doc: serde_json::Value = serde_norway::from_slice(&bytes).ok()?;
            Some(doc["metadata"]["labels"][key].as_str()?.to_string())
        });
    }
    Ok(())
}
