//! `billing tenant …` and `billing gitops …`: one tenant's stack in Git (render, path, history,
//! deploy, rollback) and the repository's layout. Changes are queued in the database like the
//! API's; the running server's worker commits them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::accounts::domain::CustomerId;
use crate::accounts::RequestMeta;
use crate::app::App;
use crate::config::Config;
use crate::db::outbox::Action;

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Print a tenant's manifests as they would be committed.
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
    Path {
        /// The customer id.
        id: String,
    },
    /// List the tenant's commits on main, newest first: revision, change id, reason, author, sync.
    History {
        id: String,
        /// How many commits to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Queue a full render of the tenant. A drifted tenant (changed by hand, or rolled back)
    /// needs --force, which overwrites what Git holds with the database's rendering.
    Deploy {
        id: String,
        #[arg(long)]
        force: bool,
    },
    /// Queue a commit that restores the tenant as it was before its last change, or at --to.
    /// The tenant is then `drifted` (redeploys leave it alone) until a forced deploy.
    Rollback {
        id: String,
        /// A revision (hash, `main~3`) whose version of the tenant to restore.
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum GitopsCommand {
    /// Move tenants of the flat layout of older versions (`tenants/<id>/`) to the sharded one
    /// (`tenants/a/b/c/<id>/`) in one commit, and push it when a remote is configured.
    MigrateLayout {
        /// The bare repository. Default: GITOPS_REPO.
        #[arg(long)]
        repo: Option<PathBuf>,
    },
}

fn parse_id(id: &str) -> anyhow::Result<CustomerId> {
    CustomerId::parse(id).ok_or_else(|| {
        anyhow::anyhow!("{id:?} is not a customer id (a letter, then 11 of [a-z0-9])")
    })
}

fn cli_meta() -> RequestMeta {
    RequestMeta {
        client_ip: None,
        user_agent: Some("billing-cli".into()),
    }
}

pub async fn run(config: Config, command: TenantCommand) -> anyhow::Result<ExitCode> {
    match command {
        TenantCommand::Render { id, demo, out } => {
            let renderer = crate::app::renderer(&config)?;
            let plans = crate::plans::Catalogue::load(config.plans_file.as_deref())?;
            if demo {
                let files = crate::deploy::demo::demo_files(&renderer, &plans)?;
                crate::deploy::demo::write_golden(&out, &files)?;
                println!("wrote {} golden files under {}", files.len(), out.display());
            } else {
                let id = id.unwrap_or_default();
                let app = App::start(config).await?;
                let (changes, _) = crate::deploy::render_tenant(&app.deploy, &id).await?;
                print!("{}", crate::deploy::describe_changes(&changes));
            }
        }
        TenantCommand::Path { id } => {
            println!("{}", crate::render::tenant_dir(parse_id(&id)?.as_str()));
        }
        TenantCommand::History { id, limit } => {
            let id = parse_id(&id)?;
            let app = App::start(config).await?;
            for c in crate::deploy::history::tenant_history(&app.deploy, id.as_str(), limit).await?
            {
                println!(
                    "{}  {}  {:<7}  {}  {}  {}",
                    c.short_revision,
                    c.committed_at,
                    c.sync,
                    c.change_id.as_deref().unwrap_or("-"),
                    c.author,
                    c.reason
                );
            }
        }
        TenantCommand::Deploy { id, force } => {
            let id = parse_id(&id)?;
            let app = App::start(config).await?;
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
            let id = parse_id(&id)?;
            let app = App::start(config).await?;
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
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_gitops(config: Config, command: GitopsCommand) -> anyhow::Result<ExitCode> {
    match command {
        GitopsCommand::MigrateLayout { repo } => {
            let mut config = config;
            if repo.is_some() {
                config.gitops_repo = repo;
            }
            let mut repo = crate::app::open_repo(&config)?;
            let moved = crate::deploy::layout::migrate(&mut repo)?;
            let Some(revision) = moved.revision else {
                println!("nothing to move: every tenant is in the sharded layout");
                return Ok(ExitCode::SUCCESS);
            };
            println!("moved {} tenants in {revision}", moved.tenants.len());
            if let Some(remote) = crate::app::remote(&config) {
                repo.push(&remote, 5)?;
                println!("pushed to {}", remote.url);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
