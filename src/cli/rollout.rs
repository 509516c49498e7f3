//! `billing rollout start|status|resume|abort`: template rollouts in waves. The CLI plans,
//! stores and controls a rollout in the database the server uses; the server's `rollouts`
//! worker commits its waves (and reverts them) in the repository.

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use serde::Serialize;

use super::output::{table, Format, OutputArg};
use crate::app::App;
use crate::config::Config;
use crate::rollout::{self, Order, RolloutView, StartOptions, Started, StatusReport, WavePlan};

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Roll the current templates (TEMPLATES_DIR, PLANS_FILE, render settings) out to the
    /// tenants whose files they change, in waves: each wave one commit, the next only once
    /// the cluster reports every tenant of the last one ready.
    ///
    /// Works on the server's database and repository: run it with the server's configuration
    /// (TEMPLATES_DIR, PLANS_FILE, BASE_DOMAIN, DATABASE_URL, DATA_DIR or GITOPS_REPO).
    #[command(after_help = "Examples:
  billing rollout start --dry-run
  billing rollout start --canary 2 --waves 10%,100% --auto-rollback --order trials-first")]
    Start {
        /// Print how many tenants change, which files, and a sample diff; commit nothing.
        #[arg(long)]
        dry_run: bool,
        /// A first wave of N tenants (default 1 when --waves is not given).
        #[arg(long, value_name = "N")]
        canary: Option<u64>,
        /// Cumulative counts and percentages of the tenants that change (default
        /// 1,10%,50%,100%).
        #[arg(long, value_name = "LIST")]
        waves: Option<String>,
        /// Revert a wave in which a tenant fails or stalls (a commit restoring exactly the
        /// files it changed) instead of pausing.
        #[arg(long)]
        auto_rollback: bool,
        /// trials-first, by-plan (smallest first) or by-label KEY (a Namespace label);
        /// default by customer id.
        #[arg(long, num_args = 1..=2, value_names = ["ORDER", "KEY"])]
        order: Vec<String>,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Show a rollout (default: the active one, else the newest): its waves, failed and
    /// skipped tenants, and how many tenants are behind the current templates.
    #[command(after_help = "Examples:
  billing rollout status -o yaml")]
    Status {
        id: Option<String>,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Go on with a paused rollout: its failed tenants stay as they are and no longer hold
    /// their wave.
    #[command(after_help = "Examples:
  billing rollout resume ro-1a2b3c4d5e")]
    Resume {
        id: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Stop a rollout; with --rollback the server reverts every wave it committed.
    #[command(after_help = "Examples:
  billing rollout abort ro-1a2b3c4d5e --rollback")]
    Abort {
        id: String,
        #[arg(long)]
        rollback: bool,
        #[command(flatten)]
        output: OutputArg,
    },
}

pub async fn run(config: Config, command: RolloutCommand) -> anyhow::Result<ExitCode> {
    let app = App::start(config).await?;
    let h = app.rollout_handles();
    match command {
        RolloutCommand::Start {
            dry_run,
            canary,
            waves,
            auto_rollback,
            order,
            output,
        } => {
            let waves = waves.map(|w| w.parse::<WavePlan>()).transpose()?;
            let opts = StartOptions {
                waves: WavePlan::of(canary, waves)?,
                order: Order::parse(&order)?,
                auto_rollback,
                dry_run,
            };
            let started = rollout::start(&h, &opts).await?;
            emit(&started, output.format(), started_table)?;
        }
        RolloutCommand::Status { id, output } => {
            let report = rollout::status(&h, id.as_deref()).await?;
            emit(&report, output.format(), status_table)?;
        }
        RolloutCommand::Resume { id, output } => {
            let view = rollout::resume(&h, &id).await?;
            emit(&view, output.format(), rollout_table)?;
        }
        RolloutCommand::Abort {
            id,
            rollback,
            output,
        } => {
            let view = rollout::abort(&h, &id, rollback).await?;
            emit(&view, output.format(), rollout_table)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints `value` as JSON or YAML, or as the tables `tables` makes of it.
fn emit<T: Serialize>(value: &T, format: Format, tables: fn(&T) -> String) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(value)?)?,
        Format::Yaml => write!(out, "{}", serde_norway::to_string(value)?)?,
        Format::Table => write!(out, "{}", tables(value))?,
    }
    Ok(())
}

fn started_table(s: &Started) -> String {
    let waves: Vec<String> = s.plan.waves.iter().map(usize::to_string).collect();
    let mut text = table(
        &["tenants", "waves", "files", "skipped", "rollout"],
        &[vec![
            s.plan.tenants.to_string(),
            waves.join(","),
            s.plan.files.len().to_string(),
            s.plan.skipped.len().to_string(),
            s.rollout_id.clone().unwrap_or_else(|| "-".into()),
        ]],
    );
    if !s.plan.files.is_empty() {
        let rows: Vec<Vec<String>> = s
            .plan
            .files
            .iter()
            .map(|f| vec![f.file.clone(), f.tenants.to_string()])
            .collect();
        text.push('\n');
        text.push_str(&table(&["file", "tenants"], &rows));
    }
    if !s.plan.skipped.is_empty() {
        let rows: Vec<Vec<String>> = s
            .plan
            .skipped
            .iter()
            .map(|t| vec![t.customer_id.clone(), t.reason.clone()])
            .collect();
        text.push('\n');
        text.push_str(&table(&["skipped", "why"], &rows));
    }
    if let Some(id) = &s.plan.sample_tenant {
        text.push_str(&format!("\nsample: tenant {id}\n{}", s.plan.sample_diff));
    }
    text
}

fn status_table(r: &StatusReport) -> String {
    let behind = r.behind.map_or("-".into(), |b| b.to_string());
    let mut text = table(
        &["policy", "templates", "behind"],
        &[vec![r.policy.to_string(), r.templates.clone(), behind]],
    );
    if let Some(view) = &r.rollout {
        text.push('\n');
        text.push_str(&rollout_table(view));
    }
    text
}

fn rollout_table(v: &RolloutView) -> String {
    let mut text = table(
        &[
            "id", "status", "wave", "tenants", "ready", "failed", "skipped", "behind", "reason",
        ],
        &[vec![
            v.id.clone(),
            v.status.to_string(),
            format!("{}/{}", v.current_wave, v.wave_count),
            v.tenants.to_string(),
            v.ready.to_string(),
            v.failed.to_string(),
            v.skipped.to_string(),
            v.behind.to_string(),
            v.reason.clone().unwrap_or_default(),
        ]],
    );
    let waves: Vec<Vec<String>> = v
        .waves
        .iter()
        .map(|w| {
            vec![
                w.wave.to_string(),
                w.size.to_string(),
                w.status.to_string(),
                w.revision.as_deref().map_or("-", rollout_short).to_string(),
                w.ready.to_string(),
                w.failed.to_string(),
                w.waiting.to_string(),
                // Review mode: the wave's pull request (or its branch before one is open).
                w.review
                    .as_ref()
                    .map_or("-".to_string(), |p| match p.number {
                        Some(n) => format!("#{n} {}", p.state),
                        None => format!("{} {}", p.branch, p.state),
                    }),
            ]
        })
        .collect();
    text.push('\n');
    text.push_str(&table(
        &[
            "wave", "size", "status", "revision", "ready", "failed", "waiting", "review",
        ],
        &waves,
    ));
    let notes: Vec<Vec<String>> = v
        .failed_tenants
        .iter()
        .map(|t| ("failed", t))
        .chain(v.skipped_tenants.iter().map(|t| ("skipped", t)))
        .map(|(what, t)| {
            vec![
                t.customer_id.clone(),
                what.to_string(),
                t.wave.to_string(),
                t.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    if !notes.is_empty() {
        text.push('\n');
        text.push_str(&table(&["tenant", "state", "wave", "why"], &notes));
    }
    text
}

fn rollout_short(revision: &str) -> &str {
    &revision[..revision.len().min(12)]
}
