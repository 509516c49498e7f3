//! `billing cluster …`: the catalogue of clusters tenants are placed on (capacity, region,
//! labels, state). Works on the server's database, like every command.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Subcommand;

use super::output::{print_list, print_one, OutputArg, Tabular};
use crate::config::Config;
use crate::db::clusters::{self, Cluster, ClusterState, NewCluster};
use crate::db::Db;
use crate::event_secret::{self, EventKey};
use crate::quantity::{self, Cpu, Memory};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Add a cluster with the CPU and memory it offers tenants.
    #[command(
        after_help = "Examples:\n  billing cluster add eu-1 --region eu --cpu 64 --memory 256Gi --label tier=gold"
    )]
    Add {
        /// A DNS label: it names the cluster's sync root, clusters/<name>/.
        name: String,
        #[arg(long)]
        region: String,
        /// Kubernetes quantity: 64, 1500m.
        #[arg(long, value_parser = parse_cpu)]
        cpu: u64,
        /// Kubernetes quantity: 256Gi, 1024Mi.
        #[arg(long, value_parser = parse_memory)]
        memory: u64,
        /// key=value, repeatable.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// List clusters with their capacity, what is allocated and how many tenants they hold.
    #[command(after_help = "Examples:\n  billing cluster list -o yaml")]
    List {
        #[command(flatten)]
        output: OutputArg,
    },
    /// Show one cluster.
    #[command(after_help = "Examples:\n  billing cluster show eu-1 -o json")]
    Show {
        name: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Take no new tenants (the ones there stay).
    #[command(after_help = "Examples:\n  billing cluster cordon eu-1")]
    Cordon { name: String },
    /// Take new tenants again.
    #[command(after_help = "Examples:\n  billing cluster uncordon eu-1")]
    Uncordon { name: String },
    /// Give the cluster a new event secret (printed once); the old one stops working at once.
    #[command(
        name = "rotate-secret",
        after_help = "Examples:\n  billing cluster rotate-secret eu-1\n  kubectl -n flux-system create secret generic billing-events --from-literal=token=<printed secret> --dry-run=client -o yaml | kubectl apply -f -"
    )]
    RotateSecret { name: String },
    /// Remove a cluster that holds no tenant.
    #[command(after_help = "Examples:\n  billing cluster remove eu-1")]
    Remove { name: String },
}

fn parse_cpu(text: &str) -> Result<u64, String> {
    quantity::cpu_millis(text).map_err(|e| e.to_string())
}

fn parse_memory(text: &str) -> Result<u64, String> {
    quantity::bytes(text).map_err(|e| e.to_string())
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not key=value"))?;
    let valid = |s: &str, max: usize| {
        s.len() <= max
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    };
    if key.is_empty() || !valid(key, 253) || !valid(value, 63) {
        return Err(format!(
            "{text:?}: label keys and values are [A-Za-z0-9-_./]"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

impl Tabular for Cluster {
    fn headers() -> Vec<&'static str> {
        vec![
            "name",
            "region",
            "state",
            "cpu",
            "memory",
            "cpu free",
            "memory free",
            "tenants",
        ]
    }

    fn cells(&self) -> Vec<String> {
        let non_negative = |v: i64| v.max(0) as u64;
        vec![
            self.name.clone(),
            self.region.clone(),
            self.state.as_str().into(),
            Cpu(non_negative(self.cpu_millis)).to_string(),
            Memory(non_negative(self.memory_bytes)).to_string(),
            Cpu(non_negative(self.free_cpu_millis())).to_string(),
            Memory(non_negative(self.free_memory_bytes())).to_string(),
            self.tenants.to_string(),
        ]
    }
}

/// A cluster name is a DNS label: it becomes a directory and a Kubernetes name.
pub(super) fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    anyhow::ensure!(
        ok,
        "{name:?} is not a DNS label (a-z, 0-9 and -, at most 63)"
    );
    Ok(())
}

pub async fn run(config: Config, command: ClusterCommand) -> anyhow::Result<ExitCode> {
    let db = Db::connect(&config.database_url(), config.database_acquire_timeout()).await?;
    db.migrate().await?;
    let event_key = || {
        EventKey::configured(
            config.cluster.cluster_secrets_key.as_ref(),
            &config.keys_dir(),
        )
    };
    let now = crate::db::ts(chrono::Utc::now());
    match command {
        ClusterCommand::Add {
            name,
            region,
            cpu,
            memory,
            labels,
        } => {
            check_name(&name)?;
            check_name(&region)
                .map_err(|_| anyhow::anyhow!("{region:?} is not a region name (a-z, 0-9 and -)"))?;
            let labels: BTreeMap<String, String> = labels.into_iter().collect();
            let cluster = NewCluster {
                name: &name,
                region: &region,
                cpu_millis: i64::try_from(cpu)?,
                memory_bytes: i64::try_from(memory)?,
                labels: &labels,
            };
            let key = event_key()?;
            let secret = event_secret::generate();
            // Added with its secret in one transaction: no cluster ever exists without one.
            let mut tx = db.pool.begin().await?;
            anyhow::ensure!(
                clusters::insert(&mut *tx, &cluster, &now).await?,
                "cluster {name} exists"
            );
            clusters::set_event_secret(&mut *tx, &name, &key.seal(&name, &secret), &now).await?;
            tx.commit().await?;
            println!(
                "cluster {name} added in region {region}: {} CPU, {}",
                Cpu(cpu),
                Memory(memory)
            );
            print_secret(&name, &secret);
        }
        ClusterCommand::List { output } => {
            print_list(&clusters::list(&db.pool).await?, output.format())?;
        }
        ClusterCommand::Show { name, output } => {
            let cluster = clusters::get(&db.pool, &name).await?;
            let cluster = cluster.ok_or_else(|| anyhow::anyhow!("no cluster {name}"))?;
            print_one(&cluster, output.format())?;
        }
        ClusterCommand::Cordon { name } => set_state(&db, &name, ClusterState::Cordoned).await?,
        ClusterCommand::Uncordon { name } => set_state(&db, &name, ClusterState::Open).await?,
        ClusterCommand::RotateSecret { name } => {
            let key = event_key()?;
            let secret = event_secret::generate();
            anyhow::ensure!(
                clusters::set_event_secret(&db.pool, &name, &key.seal(&name, &secret), &now)
                    .await?,
                "no cluster {name}"
            );
            println!("cluster {name} has a new event secret; the old one no longer works");
            print_secret(&name, &secret);
        }
        ClusterCommand::Remove { name } => {
            let cluster = clusters::get(&db.pool, &name).await?;
            let cluster = cluster.ok_or_else(|| anyhow::anyhow!("no cluster {name}"))?;
            anyhow::ensure!(
                clusters::remove_if_empty(&db.pool, &name).await?,
                "cluster {name} holds {} tenants: move them first",
                cluster.tenants
            );
            println!("cluster {name} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The secret, shown this once (only its ciphertext is kept), and where it goes.
fn print_secret(name: &str, secret: &str) {
    println!("event secret (shown once): {secret}");
    println!(
        "  Flux: Provider generic-hmac, address <billing>/api/gitops/clusters/{name}/flux/events, \
         its Secret's token = the event secret"
    );
    println!(
        "  Argo CD: webhook to <billing>/api/gitops/clusters/{name}/argocd/events with \
         Authorization: Bearer <the event secret>"
    );
}

async fn set_state(db: &Db, name: &str, state: ClusterState) -> anyhow::Result<()> {
    anyhow::ensure!(
        clusters::set_state(&db.pool, name, state).await?,
        "no cluster {name}"
    );
    println!("cluster {name} is {}", state.as_str());
    Ok(())
}

/// `billing gitops migrate-layout --cluster <name>`: places every tenant of the single-cluster
/// root on `cluster` in the database (in one transaction, first: the placement is what the next
/// render follows), then moves the root under `clusters/<name>/` in one commit. Says whether it
/// committed.
pub async fn migrate_under(
    config: &Config,
    repo: &mut crate::gitops::GitOpsRepo,
    cluster: &str,
) -> anyhow::Result<bool> {
    use crate::deploy::layout;
    let db = Db::connect(&config.database_url(), config.database_acquire_timeout()).await?;
    db.migrate().await?;
    let found = clusters::get(&db.pool, cluster).await?;
    let found = found.ok_or_else(|| {
        anyhow::anyhow!("no cluster {cluster} in the catalogue (add it first: billing cluster add)")
    })?;
    let tenants = layout::single_root_tenants(repo)?;
    if tenants.is_empty() {
        println!("nothing to move: flux-tenants/ is empty");
        return Ok(false);
    }
    let now = crate::db::ts(chrono::Utc::now());
    let mut tx = db.pool.begin().await?;
    for id in &tenants {
        if !crate::db::tenants::exists(&mut *tx, id).await? {
            continue;
        }
        // The footprint stays what was recorded (none yet: zero until the next render).
        let old = clusters::placement(&mut *tx, id).await?;
        let placement = clusters::Placement {
            customer_id: id.clone(),
            region: found.region.clone(),
            cluster: Some(cluster.to_string()),
            cpu_millis: old.as_ref().map_or(0, |p| p.cpu_millis),
            memory_bytes: old.as_ref().map_or(0, |p| p.memory_bytes),
        };
        clusters::upsert_placement(&mut tx, &placement, &now).await?;
    }
    tx.commit().await?;
    let moved = layout::migrate_to_cluster(repo, cluster, &tenants)?;
    match moved.revision {
        Some(revision) => {
            println!(
                "moved {} tenants under clusters/{cluster}/ in {revision}",
                moved.tenants.len()
            );
            Ok(true)
        }
        None => Ok(false),
    }
}
