//! `billing tenant …` and `billing gitops …`: tenants in the database and their stacks in Git
//! (list, show, path, render, history, deploy, rollback, delete) and the repository's layout.
//! Changes are queued in the database like the API's, through the same code; the running
//! server's worker commits them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::output::{print_one, OutputArg};
use super::progress::Progress;
use super::tenant_read::{self, ListArgs, TenantPaths};
use crate::accounts::domain::CustomerId;
use crate::accounts::RequestMeta;
use crate::app::{App, SharedApp};
use crate::config::Config;
use crate::db::outbox::Action;

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// List tenants: plan, subscription, deployment state, committed and applied revision.
    #[command(after_help = "Examples:
  billing tenant list
  billing tenant list --status failed -o json
  billing tenant list --plan starter --subscription trialing --limit 100
  billing tenant list --behind            # not yet rendered with the current templates/plans
  billing tenant list --after k3x9m2p7q4wz   # the next page")]
    List {
        #[command(flatten)]
        args: ListArgs,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Show one tenant: account, subscription, license, deployment status and its history.
    #[command(after_help = "Examples:
  billing tenant show k3x9m2p7q4wz
  billing tenant show k3x9m2p7q4wz -o yaml")]
    Show {
        /// The customer id.
        id: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Print a tenant's manifests as they would be committed.
    #[command(after_help = "Examples:
  billing tenant render k3x9m2p7q4wz
  billing tenant render --demo --out .   # rewrite the golden demo tenant")]
    Render {
        /// The customer id.
        #[arg(required_unless_present = "demo")]
        id: Option<String>,
        /// Rewrite the golden demo tenant (tenants/d/e/m/demo/, flux-tenants/d/e/m/demo.yaml) in --out.
        #[arg(long, conflicts_with = "id")]
        demo: bool,
        /// Checkout to write the golden files into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Print a tenant's directory in the GitOps repository (derived from its id alone).
    /// Without -o: the directory alone, for `cd "$(billing tenant path ID)"`.
    #[command(after_help = "Examples:
  billing tenant path k3x9m2p7q4wz
  billing tenant path k3x9m2p7q4wz -o json   # directory, Flux Kustomization and render lock")]
    Path {
        /// The customer id.
        id: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// List the tenant's commits on main, newest first: revision, change id, reason, author, sync.
    #[command(after_help = "Examples:
  billing tenant history k3x9m2p7q4wz
  billing tenant history k3x9m2p7q4wz --limit 5 -o json")]
    History {
        /// The customer id.
        id: String,
        /// How many commits to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Queue a full render of the tenant, or with --all of every tenant (what a template or
    /// plan-file upgrade needs). A drifted tenant (changed by hand, or rolled back) needs
    /// --force, which overwrites what Git holds with the database's rendering.
    #[command(after_help = "Examples:
  billing tenant deploy k3x9m2p7q4wz
  billing tenant deploy k3x9m2p7q4wz --force
  billing tenant deploy --all --wait      # progress bar until the server's worker committed all")]
    Deploy {
        /// The customer id.
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Overwrite a drifted tenant.
        #[arg(long, conflicts_with = "all")]
        force: bool,
        /// Every tenant that is not deleted, in one change set. Only templates changed since
        /// each tenant's render lock are rendered, unless --full.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// With --all: render every template again.
        #[arg(long, requires = "all")]
        full: bool,
        /// With --all: wait until the running server's worker has handled every job, with a
        /// progress bar (counts, rate, ETA); exits non-zero if any gave up.
        #[arg(long, requires = "all")]
        wait: bool,
    },
    /// Queue a commit that restores the tenant as it was before its last change, or at --to.
    /// The tenant is then `drifted` (redeploys leave it alone) until a forced deploy.
    #[command(after_help = "Examples:
  billing tenant rollback k3x9m2p7q4wz
  billing tenant rollback k3x9m2p7q4wz --to main~3")]
    Rollback {
        /// The customer id.
        id: String,
        /// A revision (hash, `main~3`) whose version of the tenant to restore.
        #[arg(long)]
        to: Option<String>,
    },
    /// Delete the customer (GDPR erasure), exactly as the admin API's DELETE does: personal
    /// data is scrubbed, the subscription ends, and the tenant's removal is queued (the server's
    /// worker commits it). Cannot be undone, so it needs --yes.
    #[command(after_help = "Examples:
  billing tenant delete k3x9m2p7q4wz --yes")]
    Delete {
        /// The customer id.
        id: String,
        /// Confirm the deletion (required: nothing is deleted without it).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GitopsCommand {
    /// Move tenants of the flat layout of older versions (`tenants/<id>/`) to the sharded one
    /// (`tenants/a/b/c/<id>/`) in one commit, and push it when a remote is configured. With
    /// --cluster, move the single-cluster root (`flux-tenants/`) under that cluster's sync root
    /// (`clusters/<name>/`) in one more commit, every tenant placed on it in the database.
    #[command(after_help = "Examples:
  billing gitops migrate-layout
  billing gitops migrate-layout --repo /srv/tenants.git
  billing gitops migrate-layout --cluster eu-1")]
    MigrateLayout {
        /// The bare repository. Default: GITOPS_REPO.
        #[arg(long)]
        repo: Option<PathBuf>,
        /// The first cluster (already in the catalogue: `billing cluster add`).
        #[arg(long)]
        cluster: Option<String>,
    },
}

fn parse_id(id: &str) -> anyhow::Result<CustomerId> {
    CustomerId::parse(id).ok_or_else(|| {
        anyhow::anyhow!("{id:?} is not a customer id (a letter, then 11 of [a-z0-9])")
    })
}

/// The one-line error of every command given an id no customer has.
fn not_found(id: &str) -> anyhow::Error {
    anyhow::anyhow!("tenant {id} not found")
}

/// The id, once it is known to be a customer's (deleted ones included).
async fn known(app: &App, id: &str) -> anyhow::Result<CustomerId> {
    let id = parse_id(id)?;
    if !crate::db::tenants::exists(&app.db.pool, id.as_str()).await? {
        return Err(not_found(id.as_str()));
    }
    Ok(id)
}

fn cli_meta() -> RequestMeta {
    RequestMeta {
        client_ip: None,
        user_agent: Some("billing-cli".into()),
    }
}

pub async fn run(config: Config, command: TenantCommand) -> anyhow::Result<ExitCode> {
    if let TenantCommand::Render {
        demo: true, out, ..
    } = &command
    {
        let renderer = crate::app::renderer(&config)?;
        let plans = crate::plans::Catalogue::load(config.plans_file.as_deref())?;
        let files = crate::deploy::demo::demo_files(&renderer, &plans)?;
        crate::deploy::demo::write_golden(out, &files)?;
        println!("wrote {} golden files under {}", files.len(), out.display());
        return Ok(ExitCode::SUCCESS);
    }
    if let TenantCommand::Path { id, output } = &command {
        let paths = TenantPaths::of(parse_id(id)?.as_str());
        match output.output {
            None => println!("{}", paths.directory),
            Some(format) => print_one(&paths, format)?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    let app = App::start(config).await?;
    match command {
        TenantCommand::Render { id, .. } => render(&app, &id.unwrap_or_default()).await?,
        TenantCommand::Path { .. } => unreachable!("answered without the database"),
        TenantCommand::List { args, output } => return tenant_read::list(&app, args, output).await,
        TenantCommand::Show { id, output } => {
            let id = known(&app, &id).await?;
            return tenant_read::show(&app, id.as_str(), output).await;
        }
        TenantCommand::History { id, limit, output } => {
            let id = known(&app, &id).await?;
            return tenant_read::history(&app, id.as_str(), limit, output).await;
        }
        TenantCommand::Deploy {
            all: true,
            full,
            wait,
            ..
        } => return redeploy_all(&app, full, wait).await,
        TenantCommand::Deploy { id, force, .. } => {
            let id = known(&app, &id.unwrap_or_default()).await?;
            let action = if force {
                Action::Force
            } else {
                Action::Rebuild
            };
            let queued =
                crate::deploy::requests::request(&app.deploy, id.as_str(), action, &cli_meta())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "queued {} of {} (change {})",
                queued.action,
                id.as_str(),
                queued.change_id
            );
        }
        TenantCommand::Rollback { id, to } => {
            let id = known(&app, &id).await?;
            let queued = crate::deploy::requests::rollback(
                &app.deploy,
                id.as_str(),
                to.as_deref(),
                &cli_meta(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "queued rollback of {} (change {})",
                id.as_str(),
                queued.change_id
            );
        }
        TenantCommand::Delete { id, yes } => return delete(&app, &id, yes).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// Render one tenant (not the demo): its manifests as they would be committed.
async fn render(app: &SharedApp, id: &str) -> anyhow::Result<()> {
    let id = known(app, id).await?;
    let (changes, _) = crate::deploy::render_tenant(&app.deploy, id.as_str()).await?;
    print!("{}", crate::deploy::describe_changes(&changes));
    Ok(())
}

/// `tenant delete`: the admin API's deletion, then (on SQLite) the WAL checkpoint the server's
/// loop would run, as no server is woken by this process's erasure.
async fn delete(app: &SharedApp, id: &str, yes: bool) -> anyhow::Result<ExitCode> {
    let id = known(app, id).await?;
    if !yes {
        anyhow::bail!(
            "refusing to delete tenant {} without --yes (the erasure cannot be undone)",
            id.as_str()
        );
    }
    let by = crate::accounts::deletion::By::Admin;
    let deleted =
        crate::accounts::deletion::delete(&app.accounts, id.as_str(), by, None, &cli_meta())
            .await
            .map_err(|e| match e {
                crate::accounts::AccountError::NotFound(_) => not_found(id.as_str()),
                e => anyhow::anyhow!("{e}"),
            })?;
    crate::accounts::deletion::checkpoint_until_done(&app.db).await;
    println!(
        "deleted {}; its removal is queued (change {})",
        deleted.customer_id, deleted.change_id
    );
    Ok(ExitCode::SUCCESS)
}

/// How often `deploy --all --wait` looks at the queue.
const POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// `tenant deploy --all`: one change set for every live tenant, like the admin API's; with
/// `wait`, a progress bar of the change set draining through the server's worker.
async fn redeploy_all(app: &SharedApp, full: bool, wait: bool) -> anyhow::Result<ExitCode> {
    let accepted = crate::deploy::requests::redeploy_all(&app.deploy, &cli_meta(), full)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "queued {} tenants (change set {})",
        accepted.queued, accepted.change_set
    );
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    let total = accepted.queued;
    let mut progress = Progress::new("tenants re-rendered", total);
    let failed = loop {
        let (pending, failed) =
            crate::db::outbox::change_set_progress(&app.db.pool, &accepted.change_set).await?;
        progress.set(total.saturating_sub(pending.max(0) as u64));
        if pending == 0 {
            break failed;
        }
        tokio::time::sleep(POLL).await;
    };
    progress.finish();
    println!("{} handled, {failed} gave up", total - failed as u64);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn run_gitops(config: Config, command: GitopsCommand) -> anyhow::Result<ExitCode> {
    match command {
        GitopsCommand::MigrateLayout { repo, cluster } => {
            let mut config = config;
            if repo.is_some() {
                config.gitops_repo = repo;
            }
            let mut repo = crate::app::open_repo(&config)?;
            let moved = crate::deploy::layout::migrate(&mut repo)?;
            let mut pushable = moved.revision.is_some();
            match moved.revision {
                Some(revision) => println!("moved {} tenants in {revision}", moved.tenants.len()),
                None => println!("nothing to move: every tenant is in the sharded layout"),
            }
            if let Some(cluster) = cluster {
                pushable |= super::cluster::migrate_under(&config, &mut repo, &cluster).await?;
            }
            if !pushable {
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(remote) = crate::app::remote(&config) {
                repo.push(&remote, 5)?;
                println!("pushed to {}", remote.url);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
