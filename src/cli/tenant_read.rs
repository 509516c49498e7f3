//! The read side of `billing tenant …`: list (filters, pages), show, history and path, each
//! printed with `-o json|yaml|table`.

use std::process::ExitCode;

use serde::Serialize;

use super::output::{print_list, print_one, OutputArg, Tabular};
use crate::accounts::view::AccountView;
use crate::app::SharedApp;
use crate::billing::SubscriptionStatus;
use crate::db::tenants::{self, Filter, TenantRow};
use crate::deploy::history::HistoryItem;
use crate::deploy::requests::DeploymentStatusView;
use crate::status::DeploymentStatus;

/// `tenant list`'s filters and page.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only tenants in this deployment state (unplaced, pending, committed, ready, failed,
    /// stalled, drifted, awaiting_review, abandoned, deleted). Deleted customers show only here.
    #[arg(long, value_name = "STATE", value_parser = parse_typed::<DeploymentStatus>)]
    pub status: Option<DeploymentStatus>,
    /// Only tenants on this plan (a name of the plan file, e.g. starter).
    #[arg(long)]
    pub plan: Option<String>,
    /// Only tenants whose subscription is in this status (trialing, active, past_due,
    /// suspended, canceled, deleted).
    #[arg(long, value_name = "STATUS", value_parser = parse_typed::<SubscriptionStatus>)]
    pub subscription: Option<SubscriptionStatus>,
    /// Only tenants a rollout has not reached: their render lock in Git (render.json) records
    /// other templates, or another plan-file entry or data, than a render now would use.
    #[arg(long)]
    pub behind: bool,
    /// Page size (1 to 1000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=1000))]
    pub limit: i64,
    /// Start after this tenant id (tenants are listed by id). When more tenants match, stderr
    /// says which --after gives the next page.
    #[arg(long, value_name = "ID")]
    pub after: Option<String>,
}

fn parse_typed<T: std::str::FromStr<Err = String>>(text: &str) -> Result<T, String> {
    text.parse()
}

/// One row of `tenant list`.
#[derive(Debug, Serialize)]
pub struct TenantItem {
    pub id: String,
    pub email: String,
    pub company_name: String,
    pub plan: Option<String>,
    pub subscription: Option<&'static str>,
    pub status: Option<&'static str>,
    /// The cluster it is placed on (none without a catalogue, or while unplaced).
    pub cluster: Option<String>,
    pub committed_revision: Option<String>,
    pub applied_revision: Option<String>,
    pub message: Option<String>,
    pub updated_at: Option<String>,
    pub created_at: String,
}

impl From<TenantRow> for TenantItem {
    fn from(r: TenantRow) -> Self {
        TenantItem {
            id: r.id,
            email: r.email,
            company_name: r.company_name,
            plan: r.plan,
            subscription: r.subscription.map(SubscriptionStatus::as_str),
            status: r.deployment.map(DeploymentStatus::as_str),
            cluster: None,
            committed_revision: r.committed_revision,
            applied_revision: r.applied_revision,
            message: r.message,
            updated_at: r.updated_at,
            created_at: r.created_at,
        }
    }
}

fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_string()
}

fn short(revision: Option<&str>) -> String {
    or_dash(revision.map(|r| r.get(..12).unwrap_or(r)))
}

impl Tabular for TenantItem {
    fn headers() -> Vec<&'static str> {
        vec![
            "id",
            "plan",
            "subscription",
            "status",
            "cluster",
            "committed",
            "applied",
            "email",
        ]
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            or_dash(self.plan.as_deref()),
            or_dash(self.subscription),
            or_dash(self.status),
            or_dash(self.cluster.as_deref()),
            short(self.committed_revision.as_deref()),
            short(self.applied_revision.as_deref()),
            self.email.clone(),
        ]
    }
}

/// How many rows one query reads while looking for behind tenants.
const SCAN_BATCH: i64 = 200;

pub async fn list(app: &SharedApp, args: ListArgs, output: OutputArg) -> anyhow::Result<ExitCode> {
    let filter = Filter {
        deployment: args.status,
        plan: args.plan,
        subscription: args.subscription,
        search: None,
    };
    let wanted = args.limit as usize;
    let mut rows: Vec<TenantRow> = Vec::new();
    let mut cursor = args.after;
    let mut more = false;
    loop {
        let batch_len = if args.behind {
            SCAN_BATCH
        } else {
            args.limit + 1
        };
        let batch = tenants::list(&app.db.pool, &filter, cursor.as_deref(), batch_len).await?;
        let exhausted = (batch.len() as i64) < batch_len;
        cursor = batch.last().map(|r| r.id.clone());
        let keep = if args.behind {
            let ids: Vec<String> = batch.iter().map(|r| r.id.clone()).collect();
            crate::deploy::behind::behind(&app.deploy, &ids).await?
        } else {
            vec![true; batch.len()]
        };
        let mut kept = batch.into_iter().zip(keep).filter(|(_, k)| *k);
        rows.extend(kept.by_ref().take(wanted - rows.len()).map(|(r, _)| r));
        if rows.len() == wanted {
            more = kept.next().is_some() || !exhausted;
            break;
        }
        if exhausted {
            break;
        }
    }
    if let (true, Some(last)) = (more, rows.last()) {
        eprintln!(
            "more tenants match: add --after {} for the next page",
            last.id
        );
    }
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let clusters = crate::db::placements::clusters_of(&app.db.pool, &ids).await?;
    let items: Vec<TenantItem> = rows
        .into_iter()
        .map(|r| {
            let cluster = clusters.get(&r.id).cloned();
            TenantItem {
                cluster,
                ..r.into()
            }
        })
        .collect();
    print_list(&items, output.format())?;
    Ok(ExitCode::SUCCESS)
}

/// `tenant show`: the account as the admin API shows it, and its deployment status.
#[derive(Debug, Serialize)]
pub struct TenantDetail {
    pub account: AccountView,
    pub deployment: DeploymentStatusView,
}

impl Tabular for TenantDetail {
    fn headers() -> Vec<&'static str> {
        vec![
            "id",
            "plan",
            "subscription",
            "status",
            "cluster",
            "committed",
            "applied",
            "pending",
            "email",
            "message",
        ]
    }

    fn cells(&self) -> Vec<String> {
        let d = &self.deployment;
        let sub = self.account.subscription.as_ref();
        vec![
            d.customer_id.clone(),
            or_dash(sub.map(|s| s.plan.as_str())),
            or_dash(sub.map(|s| s.status.as_str())),
            d.status.clone(),
            or_dash(d.cluster.as_deref()),
            short(d.committed_revision.as_deref()),
            short(d.applied_revision.as_deref()),
            d.pending_changes.to_string(),
            self.account.customer.email.clone(),
            or_dash(d.error.as_deref().or(d.message.as_deref())),
        ]
    }
}

pub async fn show(app: &SharedApp, id: &str, output: OutputArg) -> anyhow::Result<ExitCode> {
    let detail = TenantDetail {
        account: crate::accounts::view::load(&app.accounts, id, chrono::Utc::now()).await?,
        deployment: crate::deploy::requests::status(&app.deploy, id).await?,
    };
    print_one(&detail, output.format())?;
    Ok(ExitCode::SUCCESS)
}

impl Tabular for HistoryItem {
    fn headers() -> Vec<&'static str> {
        vec![
            "revision",
            "committed",
            "sync",
            "change",
            "author",
            "reason",
        ]
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.short_revision.clone(),
            self.committed_at.clone(),
            self.sync.to_string(),
            or_dash(self.change_id.as_deref()),
            self.author.clone(),
            self.reason.clone(),
        ]
    }
}

pub async fn history(
    app: &SharedApp,
    id: &str,
    limit: usize,
    output: OutputArg,
) -> anyhow::Result<ExitCode> {
    let items = crate::deploy::history::tenant_history(&app.deploy, id, limit).await?;
    print_list(&items, output.format())?;
    Ok(ExitCode::SUCCESS)
}

/// Where a tenant's files are in the GitOps repository.
#[derive(Debug, Serialize)]
pub struct TenantPaths {
    pub id: String,
    pub directory: String,
    pub flux_kustomization: String,
    pub render_lock: String,
}

impl TenantPaths {
    pub fn of(id: &str) -> Self {
        TenantPaths {
            id: id.to_string(),
            directory: crate::render::tenant_dir(id),
            flux_kustomization: crate::render::flux_kustomization_path(id),
            render_lock: crate::render::render_lock_path(id),
        }
    }
}

impl Tabular for TenantPaths {
    fn headers() -> Vec<&'static str> {
        vec!["id", "directory", "flux kustomization", "render lock"]
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.directory.clone(),
            self.flux_kustomization.clone(),
            self.render_lock.clone(),
        ]
    }
}
