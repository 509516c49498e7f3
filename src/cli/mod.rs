//! The operator's subcommands.

mod bootstrap;
mod cluster;
pub mod output;
pub mod progress;
mod rollout;
mod rows;
mod tenant;
mod tenant_read;
pub use tenant::{GitopsCommand, TenantCommand};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{key_paths, App};
use crate::config::Config;
use crate::license::keys::{self, KeyRing};
use output::{print_list, print_one, OutputArg};
use rows::TickRow;

#[derive(Debug, Parser)]
#[command(
    name = "billing",
    version,
    about = "Billing and GitOps control plane of the IoT SaaS",
    after_help = "The CLI works on the same database and GitOps repository as the server: it reads \
the same environment variables and flags (DATABASE_URL, DATA_DIR, GITOPS_REPO, TEMPLATES_DIR, \
PLANS_FILE, ...). Changes it makes are queued like the API's; the running server's worker \
commits them. Read commands take -o json|yaml|table (table by default on a terminal, JSON \
otherwise).

Examples:
  billing serve
  billing tenant list --status failed
  billing tenant deploy --all --wait
  billing completion bash > /etc/bash_completion.d/billing"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API (migrates the database first).
    #[command(after_help = "Examples:
  DATABASE_URL=postgres://billing@db/billing billing serve
  LISTEN_ADDR=0.0.0.0:8080 billing serve")]
    Serve,
    /// Apply database migrations and exit.
    #[command(after_help = "Examples:
  billing migrate
  DATABASE_URL=sqlite://billing.db?mode=rwc billing migrate")]
    Migrate,
    /// License tools.
    #[command(
        subcommand,
        after_help = "Examples:
  billing license verify eyJhbGciOiJSUzI1NiIs... -o yaml"
    )]
    License(LicenseCommand),
    /// License signing keys.
    #[command(
        subcommand,
        after_help = "Examples:
  billing keys generate
  billing keys rotate"
    )]
    Keys(KeysCommand),
    /// Create a GitOps repository with the tenant layout and an operator's README; with
    /// --cluster, print what bootstraps that cluster's Flux on its sync root instead.
    #[command(after_help = "Examples:
  billing init
  billing init --repo /srv/tenants.git
  billing init --cluster eu-1 > eu-1-flux.yaml")]
    Init {
        /// Where to create it (bare). Default: GITOPS_REPO.
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Print the GitRepository and root Kustomization (`path: ./clusters/<name>`) an
        /// operator applies on that cluster (with kubectl apply -f -).
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Tenants and their stacks: list, show, path, render, history, deploy, rollback, delete.
    #[command(
        subcommand,
        after_help = "Examples:
  billing tenant list --status ready -o table
  billing tenant show k3x9m2p7q4wz -o yaml
  billing tenant deploy --all --wait"
    )]
    Tenant(TenantCommand),
    /// The GitOps repository.
    #[command(
        subcommand,
        after_help = "Examples:
  billing gitops migrate-layout"
    )]
    Gitops(GitopsCommand),
    /// The subscription lifecycle scheduler.
    #[command(
        subcommand,
        after_help = "Examples:
  billing lifecycle tick -o table"
    )]
    Lifecycle(LifecycleCommand),
    /// The clusters tenants are placed on: capacity, region, state.
    #[command(
        subcommand,
        after_help = "Examples:
  billing cluster add eu-1 --region eu --cpu 64 --memory 256Gi
  billing cluster list -o table"
    )]
    Cluster(cluster::ClusterCommand),
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  billing completion bash > /etc/bash_completion.d/billing
  billing completion zsh > \"${fpath[1]}/_billing\"
  billing completion fish > ~/.config/fish/completions/billing.fish")]
    Completion {
        /// The shell (bash, zsh, fish; also elvish, powershell).
        shell: clap_complete::Shell,
    },
    /// Template rollouts in health-gated waves: planned and controlled here, on the server's
    /// database and repository; the server's `rollouts` worker commits them.
    #[command(
        subcommand,
        after_help = "Examples:
  billing rollout start --dry-run -o table
  billing rollout start --canary 2 --waves 10%,100% --auto-rollback
  billing rollout status -o yaml"
    )]
    Rollout(rollout::RolloutCommand),
}

impl Command {
    /// The log level when RUST_LOG is not set: the server logs its work; other commands only
    /// warnings, so their stderr holds what the operator needs (a one-line error).
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Serve => "info,sqlx=warn",
            _ => "warn,sqlx=warn",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum LifecycleCommand {
    /// Run one scheduler pass: suspend ended trials and past-due subscriptions past their grace
    /// period. Writes the database only; the running server's worker commits. Without -o:
    /// one line per change and a summary; with -o: one row per tenant changed, reminded or
    /// failed.
    #[command(after_help = "Examples:
  billing lifecycle tick
  billing lifecycle tick --now 2025-01-31T12:00:00Z -o json")]
    Tick {
        /// The time the pass runs as of (RFC 3339, e.g. 2025-01-31T12:00:00Z). Default: now.
        #[arg(long, value_name = "RFC 3339", value_parser = parse_rfc3339)]
        now: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        output: OutputArg,
    },
}

fn parse_rfc3339(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("not an RFC 3339 time like 2025-01-31T12:00:00Z ({e})"))
}

#[derive(Debug, Subcommand)]
pub enum LicenseCommand {
    /// Verify a license JWT against the configured keys: print its claims (JSON unless -o
    /// says otherwise), or why it is invalid (stderr, non-zero exit).
    #[command(after_help = "Examples:
  billing license verify eyJhbGciOiJSUzI1NiIs...
  billing license verify \"$(cat license.jwt)\" -o table")]
    Verify {
        /// The license token.
        token: String,
        #[command(flatten)]
        output: OutputArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a new RSA-2048 license key pair.
    #[command(after_help = "Examples:
  billing keys generate
  billing keys generate --out-dir /etc/billing/keys --force")]
    Generate {
        /// Directory for license-private.pem and license-public.pem.
        /// Default: the configured key paths.
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Overwrite existing key files.
        #[arg(long)]
        force: bool,
    },
    /// Retire the current key (its public half keeps verifying old licenses) and make a new one.
    #[command(after_help = "Examples:
  billing keys rotate")]
    Rotate,
}

pub fn init_tracing(default_filter: &str) {
    // Before anything runs: a mistyped LOG_FORMAT stops the process rather than logging in a
    // format the collector cannot read.
    match crate::logging::LogFormat::from_env() {
        Ok(format) => crate::logging::init(format, default_filter),
        Err(message) => {
            eprintln!("error: {message}");
            std::process::exit(2);
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = cli.config;
    match cli.command {
        Command::Serve => {
            // The server is the only writer of its local repository: a lock found before it
            // starts is a killed process's, and would block every commit or push for good.
            let gitdir = config.gitops_repo();
            for lock in crate::gitops::locks::remove_all(&gitdir)? {
                tracing::warn!(lock = %lock.display(), "removed a lock file left by a killed process");
            }
            // Likewise whatever a killed writer left in objects/pack, however young.
            crate::gitops::pack_dir::repair(&gitdir, std::time::Duration::ZERO)?;
            let app = App::start(config).await?;
            if app.db.backend == crate::db::Backend::Sqlite {
                // One server owns a SQLite database: leases left by a killed run are stale.
                crate::db::outbox::release_all_leases(&app.db).await?;
            }
            crate::http::serve(app).await?;
        }
        Command::Migrate => {
            let db =
                crate::db::Db::connect(&config.database_url(), config.database_acquire_timeout())
                    .await?;
            db.migrate().await?;
            println!("migrations applied");
        }
        Command::License(LicenseCommand::Verify { token, output }) => {
            let ring = KeyRing::load_verifying(&key_paths(&config))?;
            return Ok(
                match crate::license::verify(&ring, &config.license_issuer, token.trim()) {
                    Ok(claims) => {
                        // JSON by default even on a terminal, as before -o existed.
                        print_one(&claims, output.output.unwrap_or(output::Format::Json))?;
                        ExitCode::SUCCESS
                    }
                    Err(why) => {
                        eprintln!("invalid license: {why}");
                        ExitCode::FAILURE
                    }
                },
            );
        }
        Command::Keys(KeysCommand::Generate { out_dir, force }) => {
            let (private, public) = match out_dir {
                Some(dir) => (
                    dir.join("license-private.pem"),
                    dir.join("license-public.pem"),
                ),
                None => (
                    config.license_private_key_path(),
                    config.license_public_key_path(),
                ),
            };
            for path in [&private, &public] {
                if path.exists() && !force {
                    anyhow::bail!("{} exists; pass --force to overwrite it", path.display());
                }
            }
            let kid = keys::write_new_pair(&private, &public)?;
            println!(
                "wrote {} and {} (kid {kid})",
                private.display(),
                public.display()
            );
        }
        Command::Init {
            cluster: Some(cluster),
            ..
        } => {
            cluster::check_name(&cluster)?;
            // A remote on this machine is no use to a cluster: the placeholder stays.
            let url = crate::app::remote(&config)
                .filter(|remote| remote.local_dir().is_none())
                .map(|remote| remote.url);
            print!("{}", bootstrap::cluster_sync(&cluster, url.as_deref()));
        }
        Command::Init {
            repo,
            cluster: None,
        } => {
            let mut config = config;
            if repo.is_some() {
                config.gitops_repo = repo;
            }
            let repo = crate::app::open_repo(&config)?;
            let head = repo.head()?.map(|o| o.to_string()).unwrap_or_default();
            println!(
                "GitOps repository ready at {} (branch {}, {head})",
                repo.path().display(),
                config.gitops_branch
            );
        }
        Command::Tenant(command) => return tenant::run(config, command).await,
        Command::Gitops(command) => return tenant::run_gitops(config, command).await,
        Command::Cluster(command) => return cluster::run(config, command).await,
        Command::Rollout(command) => return rollout::run(config, command).await,
        Command::Completion { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            // Into a buffer first: clap_complete panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "billing", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)?;
        }
        Command::Lifecycle(LifecycleCommand::Tick { now, output }) => {
            let app = App::start(config).await?;
            let as_of = now.unwrap_or_else(chrono::Utc::now);
            let report = lifecycle_tick(&app, as_of).await?;
            if !report.changed.is_empty() {
                // Deletions among them: no server's loop is woken by this process's erasures.
                crate::accounts::deletion::checkpoint_until_done(&app.db).await;
            }
            if let Some(format) = output.output {
                print_list(&TickRow::of(&report), format)?;
            } else {
                for (id, reason) in &report.changed {
                    println!("tenant {id}: {reason}");
                }
                for (id, about) in &report.reminded {
                    println!("reminded {id}: {about}");
                }
            }
            // The summary goes to stderr under -o, so stdout stays one document.
            let summary = format!(
                "lifecycle pass as of {}: {} changed, {} failed",
                crate::db::ts(as_of),
                report.changed.len(),
                report.failed.len()
            );
            match output.output {
                Some(_) => eprintln!("{summary}"),
                None => println!("{summary}"),
            }
            if !report.failed.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Keys(KeysCommand::Rotate) => {
            let (old, new) = keys::rotate(&key_paths(&config))?;
            println!("retired key {old}; new signing key {new}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One pass by hand: waits a little for a pass another process (the server) is running.
async fn lifecycle_tick(
    app: &App,
    as_of: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<crate::billing::lifecycle::Report> {
    for _ in 0..100 {
        if let Some(report) = crate::billing::lifecycle::tick(&app.billing, as_of).await? {
            return Ok(report);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    anyhow::bail!("another process has been running a lifecycle pass for 20 s; try again later")
}
