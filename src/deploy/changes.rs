//! What one job changes in the GitOps repository (a tenant's rendered files, or their removal)
//! and how the batch's commit message says so (`tenant <id>: …`, `Tenant-Id:` and `Change-Id:`
//! trailers).

use std::collections::BTreeMap;

use crate::db::outbox::{Action, Job};
use crate::gitops::{Changes, Entry};
use crate::render::RenderedTenant;

/// The repository changes of one tenant's render, with its lock: after a complete render its
/// directory replaced whole and its files elsewhere (the Flux Kustomization) written; after a
/// partial one only the files rendered.
pub fn tenant_changes(customer_id: &str, rendered: RenderedTenant) -> Changes {
    let dir = crate::render::tenant_dir(customer_id);
    let prefix = format!("{dir}/");
    let complete = rendered.complete;
    let files = rendered.into_repository_files(customer_id);
    if !complete {
        // Only some templates were rendered: replace those files, keep the rest.
        return files
            .into_iter()
            .map(|(path, bytes)| (path, Entry::File(bytes)))
            .collect();
    }
    let mut own = BTreeMap::new();
    let mut changes = Changes::new();
    for (path, bytes) in files {
        match path.strip_prefix(&prefix) {
            Some(rel) => {
                own.insert(rel.to_string(), bytes);
            }
            None => {
                changes.insert(path, Entry::File(bytes));
            }
        }
    }
    changes.insert(dir, Entry::Dir(own));
    remove_flat_layout(customer_id, &mut changes);
    changes
}

pub fn removal_changes(customer_id: &str) -> Changes {
    let mut changes = Changes::new();
    changes.insert(crate::render::tenant_dir(customer_id), Entry::Removed);
    changes.insert(
        crate::render::flux_kustomization_path(customer_id),
        Entry::Removed,
    );
    remove_flat_layout(customer_id, &mut changes);
    changes
}

/// A tenant still in the flat layout of older versions (`tenants/<id>/`) moves with its next
/// complete render: the old directory and Kustomization go in the same commit, so the cluster
/// never sees two `tenant-<id>`. A full redeploy moves every tenant in one commit. Removing a
/// path that is not there changes nothing. (A two-character id's flat path would be a prefix
/// directory; generated ids have twelve.)
fn remove_flat_layout(customer_id: &str, changes: &mut Changes) {
    if customer_id.len() > 2 {
        changes.insert(crate::render::flat_tenant_dir(customer_id), Entry::Removed);
        changes.insert(
            crate::render::flat_flux_kustomization_path(customer_id),
            Entry::Removed,
        );
    }
}

/// The files of a change set as one YAML stream, each preceded by a `# path` comment.
pub fn describe_changes(changes: &Changes) -> String {
    let mut out = String::new();
    let mut emit = |path: &str, bytes: &[u8]| {
        out.push_str(&format!(
            "---\n# {path}\n{}",
            String::from_utf8_lossy(bytes)
        ));
    };
    for (path, entry) in changes {
        match entry {
            Entry::File(bytes) => emit(path, bytes),
            Entry::Dir(files) => files
                .iter()
                .for_each(|(name, bytes)| emit(&format!("{path}/{name}"), bytes)),
            Entry::Removed => {}
            Entry::Index { dir } => emit(
                path,
                format!("# (the index of {dir}/, computed at commit)\n").as_bytes(),
            ),
        }
    }
    out
}

/// One job's part of a commit.
pub(super) struct Prepared {
    pub job: Job,
    pub action: Action,
    pub changes: Changes,
    pub summary: String,
    /// The sync root of the tenant's Kustomization (`roots::place` applies it in the Git
    /// thread).
    pub root: super::roots::Root,
}

/// The commit message of a batch: what changed per tenant, one `Tenant-Id:` trailer per tenant
/// changed and one `Change-Id:` per job folded in.
pub(crate) fn commit_message(prepared: &[&Prepared]) -> String {
    let mut tenants: Vec<&str> = Vec::new();
    let mut described: BTreeMap<&str, String> = BTreeMap::new();
    for p in prepared {
        let id = p.job.customer_id.as_str();
        if !tenants.contains(&id) {
            tenants.push(id);
        }
        // A later job of the same tenant describes its final state.
        described.insert(
            id,
            match (p.action, p.job.reason.as_deref()) {
                // A deletion's reason says who asked (`delete (customer request)`).
                (Action::Delete, Some(reason)) => format!("tenant {id}: {reason}"),
                (Action::Delete, None) => format!("tenant {id}: delete"),
                // Why the change was queued (a plan upgrade, a suspension) says more than
                // the action does.
                (_, Some(reason)) => format!("tenant {id}: {reason}"),
                (action, None) => format!("tenant {id}: {} ({})", action.as_str(), p.summary),
            } + &p
                .root
                .cluster()
                .map(|c| format!(" on cluster {c}"))
                .unwrap_or_default(),
        );
    }
    let mut trailers: Vec<(&str, String)> = tenants
        .iter()
        .map(|id| ("Tenant-Id", id.to_string()))
        .collect();
    trailers.extend(
        prepared
            .iter()
            .map(|p| ("Change-Id", p.job.change_id.clone())),
    );
    // The cluster each tenant's root belongs to (`Cluster: <name>`, once per cluster).
    let mut clusters: Vec<&str> = prepared.iter().filter_map(|p| p.root.cluster()).collect();
    clusters.sort_unstable();
    clusters.dedup();
    trailers.extend(clusters.iter().map(|c| ("Cluster", c.to_string())));
    if let [only] = tenants.as_slice() {
        return message(&described[only], &[], &trailers);
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for line in described.values() {
        let action = line
            .split(": ")
            .nth(1)
            .and_then(|a| a.split(' ').next())
            .unwrap_or("update");
        *counts.entry(action).or_default() += 1;
    }
    let subject = counts
        .iter()
        .map(|(action, n)| format!("{action} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let body: Vec<String> = tenants.iter().map(|id| described[id].clone()).collect();
    message(&format!("tenants: {subject}"), &body, &trailers)
}

/// Builds a commit message with the trailers later tools parse (`Tenant-Id:`, `Change-Id:`).
pub(crate) fn message(subject: &str, body: &[String], trailers: &[(&str, String)]) -> String {
    let mut msg = subject.trim().to_string();
    msg.push('\n');
    if !body.is_empty() {
        msg.push('\n');
        for line in body {
            msg.push_str(line);
            msg.push('\n');
        }
    }
    if !trailers.is_empty() {
        msg.push('\n');
        for (key, value) in trailers {
            msg.push_str(&format!("{key}: {value}\n"));
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_message_has_its_subject_body_and_trailers_in_paragraphs() {
        let trailers = [("Tenant-Id", "t1".to_string()), ("Change-Id", "c1".into())];
        assert_eq!(
            super::message(" tenant t1: create ", &[], &trailers[..1]),
            "tenant t1: create\n\nTenant-Id: t1\n"
        );
        let body = ["tenant t1: create".to_string(), "tenant t2: delete".into()];
        assert_eq!(
            super::message("tenants: create 1, delete 1", &body, &trailers),
            "tenants: create 1, delete 1\n\ntenant t1: create\ntenant t2: delete\n\n\
             Tenant-Id: t1\nChange-Id: c1\n"
        );
    }
}
