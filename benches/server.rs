//! Server benchmark, over real HTTP against the release binary: signup latency (p50/p99) and
//! throughput at 1 and 20 concurrent clients on SQLite and PostgreSQL (BENCH_DATABASE_URL or
//! TEST_DATABASE_URL), a burst of signups until every one is committed (group commit), and the
//! server's peak RSS once it holds many tenants. `cargo bench --bench server`;
//! BENCH_BURST (default 1000) and BENCH_RSS_TENANTS (default 10000) size the runs, BENCH_RUNS
//! (default 3) repeats each measurement; every figure is the median of the runs;
//! BENCH_LATENCY=0 leaves the latency rows out.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "shared/ids.rs"]
mod ids;
#[path = "shared/memory.rs"]
mod memory;

use std::time::{Duration, Instant};

use common::{Backend, TestServer, ADMIN_TOKEN};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// `total` signups spread over `clients` concurrent clients: (sorted latencies, wall time).
async fn signups(
    s: &TestServer,
    prefix: &str,
    total: usize,
    clients: usize,
) -> (Vec<Duration>, Duration) {
    let started = Instant::now();
    let per_client = total.div_ceil(clients);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (base, client, prefix) = (s.base.clone(), s.client.clone(), prefix.to_string());
            tokio::spawn(async move {
                let mut times = Vec::new();
                for i in 0..per_client {
                    let body = serde_json::json!({"email": format!("{prefix}-{c}-{i}@bench.example"), "password": "bench-password-1", "company_name": "Bench"});
                    let t = Instant::now();
                    let resp = client.post(format!("{base}/api/customers/signup")).json(&body).send().await.unwrap();
                    assert_eq!(resp.status().as_u16(), 201);
                    times.push(t.elapsed());
                }
                times
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    (all, started.elapsed())
}

/// Generous: a 10,000-tenant fill takes well under a minute here.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1800);

fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn row(name: &str, value: String) {
    println!("| {name} | {value} |");
}

fn median<T: PartialOrd + Copy>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Signup latency and throughput at 1 and 20 clients; each figure the median of `runs` rounds.
async fn latency_rows(backend: Backend, label: &str, runs: usize) {
    let Some(s) = TestServer::start(backend).await else {
        row(
            &format!("signup on {label}"),
            "skipped: set BENCH_DATABASE_URL or TEST_DATABASE_URL".into(),
        );
        return;
    };
    for clients in [1usize, 20] {
        let total = if clients == 1 { 100 } else { 400 };
        let (mut p50, mut p99, mut rate) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            let prefix = format!("{label}{clients}r{run}");
            let (lat, wall) = signups(&s, &prefix, total, clients).await;
            p50.push(ms(percentile(&lat, 0.5)));
            p99.push(ms(percentile(&lat, 0.99)));
            rate.push(total as f64 / wall.as_secs_f64());
        }
        row(
            &format!("signup, {label}, {clients} client(s), {total} signups"),
            format!(
                "p50 {:.1} ms, p99 {:.1} ms, {:.0} signups/s",
                median(p50),
                median(p99),
                median(rate)
            ),
        );
    }
}

/// One server's life: a burst of signups until all are committed, then more tenants until it
/// holds `rss_tenants`, all rendered and committed.
struct Run {
    accepted: f64,
    committed: f64,
    commits: usize,
    /// One argon2id hash with the service's parameters, timed in this process around the burst.
    t_hash: f64,
    /// The server's CPU seconds (its threads and its git children) during the burst.
    burst_cpu: f64,
    rss_mb: f64,
    peak: memory::Peak,
    fill: f64,
    repo_mb: f64,
}

/// The median time of one argon2id hash as the service computes it (`accounts::password`),
/// on one thread of this process, while the server is idle.
fn time_hashes(n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            billing::accounts::password::hash("bench-password-1").unwrap();
            t.elapsed().as_secs_f64()
        })
        .collect()
}

/// CPU seconds `pid` has used, its reaped children included (utime, stime, cutime, cstime).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis; utime is the 14th field of the line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: f64 = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|t| t.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf only reads a constant of the system.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

async fn burst_and_fill(burst: usize, rss_tenants: usize) -> Run {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let repo_path = s.data_dir().join("gitops.git");
    let commits_before = count_commits(&repo_path);
    let pid = s.pid();
    let sampler = memory::Sampler::start(pid, &["burst", "fill", "list"]);
    let mut hashes = time_hashes(5);
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let (_, accepted) = signups(&s, "burst", burst, 50).await;
    s.wait_queue_drained(DRAIN_TIMEOUT).await;
    let committed = started.elapsed();
    let burst_cpu = cpu_seconds(pid) - cpu_before;
    let commits = count_commits(&repo_path) - commits_before;
    hashes.extend(time_hashes(5));
    sampler.phase(1);

    // Tenants beyond the burst are inserted directly (hashing 10,000 passwords would measure
    // argon2, not the server), then the worker renders them all. Their ids are spread like
    // generated ones: `r0000…` ids would all share one directory of the layout.
    let db = s.db().await;
    let started = Instant::now();
    let existing =
        common::count(&db, "SELECT COUNT(*) FROM customers WHERE id <> $1", "").await as usize;
    let template: (String,) = sqlx::query_as("SELECT customer_id FROM tenant_secrets LIMIT 1")
        .fetch_one(&db)
        .await
        .unwrap();
    for i in existing..rss_tenants {
        clone_customer(&db, &template.0, &ids::tenant_id(i)).await;
    }
    s.post_json("/api/customers/signup", &serde_json::json!({"email": "wake@bench.example", "password": "bench-password-1", "company_name": "Wake"})).await;
    s.wait_queue_drained(DRAIN_TIMEOUT).await;
    let fill = started.elapsed();
    sampler.phase(2);
    let _ = s
        .get_json("/api/customers?limit=1000", Some(ADMIN_TOKEN))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    Run {
        accepted: accepted.as_secs_f64(),
        committed: committed.as_secs_f64(),
        commits,
        t_hash: median(hashes),
        burst_cpu,
        rss_mb: peak_rss_mb(pid),
        peak: sampler.finish(),
        fill: fill.as_secs_f64(),
        repo_mb: dir_size(&repo_path) as f64 / 1e6,
    }
}

#[tokio::main]
async fn main() {
    if let Ok(url) = std::env::var("BENCH_DATABASE_URL") {
        std::env::set_var("TEST_DATABASE_URL", url);
    }
    let burst = env_usize("BENCH_BURST", 1000);
    let rss_tenants = env_usize("BENCH_RSS_TENANTS", 10_000);
    let runs = env_usize("BENCH_RUNS", 3).max(1);
    println!(
        "machine: {} cores; server: release build, argon2id m=19 MiB t=2 p=1; medians of {runs} runs\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!("| measure | value |");
    println!("| --- | --- |");
    if std::env::var("BENCH_LATENCY").map_or(true, |v| v != "0") {
        latency_rows(Backend::Sqlite, "SQLite", runs).await;
        latency_rows(Backend::Postgres, "PostgreSQL", runs).await;
    }

    let mut all = Vec::new();
    for _ in 0..runs {
        all.push(burst_and_fill(burst, rss_tenants).await);
    }
    let of = |f: fn(&Run) -> f64| median(all.iter().map(f).collect());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    row(
        &format!("burst of {burst} signups (50 clients), SQLite"),
        format!(
            "all 201 after {:.1} s, all committed after {:.1} s, in {:.0} commits",
            of(|r| r.accepted),
            of(|r| r.committed),
            of(|r| r.commits as f64)
        ),
    );
    let floor = |r: &Run| burst as f64 * r.t_hash / cores;
    row(
        &format!("burst against its floor, {burst} × t_hash / {cores} cores"),
        format!(
            "t_hash {:.1} ms, floor {:.1} s, burst / floor {:.2}× (runs: {}); server CPU during the burst {:.1} s, {:.1} s of it hashing",
            of(|r| r.t_hash) * 1e3,
            median(all.iter().map(floor).collect::<Vec<_>>()),
            median(all.iter().map(|r| r.committed / floor(r)).collect::<Vec<_>>()),
            all.iter()
                .map(|r| format!("{:.2}", r.committed / floor(r)))
                .collect::<Vec<_>>()
                .join(", "),
            of(|r| r.burst_cpu),
            of(|r| r.t_hash) * burst as f64,
        ),
    );
    row(
        &format!("server peak RSS holding {rss_tenants} tenants (all rendered and committed)"),
        format!(
            "{:.0} MB (runs: {}; render + commit of the extra tenants took {:.1} s)",
            of(|r| r.rss_mb),
            all.iter()
                .map(|r| format!("{:.0}", r.rss_mb))
                .collect::<Vec<_>>()
                .join(", "),
            of(|r| r.fill)
        ),
    );
    row(
        "GitOps repository on disk",
        format!("{:.1} MB", of(|r| r.repo_mb)),
    );
    let mid = all
        .iter()
        .find(|r| r.rss_mb == of(|r| r.rss_mb))
        .expect("the median is a run's");
    let parts: Vec<String> = mid
        .peak
        .by_mapping
        .iter()
        .map(|(name, kb)| format!("{name} {}", memory::mb(*kb)))
        .collect();
    row(
        "resident memory at the sampled peak (MB)",
        format!(
            "{} in the {} phase: {}",
            memory::mb(mid.peak.rss_kb),
            mid.peak.phase,
            parts.join(", ")
        ),
    );
}

fn count_commits(path: &std::path::Path) -> usize {
    let repo = git2::Repository::open_bare(path).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_ref("refs/heads/main").unwrap();
    walk.count()
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let m = e.metadata().unwrap();
                    if m.is_dir() {
                        dir_size(&e.path())
                    } else {
                        m.len()
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Copies a customer (and its subscription, secrets, deployment and a render job) under a new id.
async fn clone_customer(db: &sqlx::AnyPool, from: &str, id: &str) {
    let now = "2026-01-01T00:00:00.000Z";
    let mut tx = db.begin().await.unwrap();
    for sql in [
        "INSERT INTO customers (id, email, email_normalized, password_hash, company_name, full_name, created_at, updated_at) SELECT $1, $1 || '@bench.example', $1 || '@bench.example', password_hash, company_name, full_name, created_at, updated_at FROM customers WHERE id = $2",
        "INSERT INTO subscriptions (customer_id, plan, status, trial_ends_at, current_period_ends_at, created_at, updated_at) SELECT $1, plan, status, trial_ends_at, current_period_ends_at, created_at, updated_at FROM subscriptions WHERE customer_id = $2",
        "INSERT INTO tenant_secrets (customer_id, name, sealed_value, updated_at) SELECT $1, name, sealed_value, updated_at FROM tenant_secrets WHERE customer_id = $2",
        "INSERT INTO deployments (customer_id, status, instance_url, updated_at) SELECT $1, 'pending', instance_url, updated_at FROM deployments WHERE customer_id = $2",
    ] {
        sqlx::query(sql).bind(id).bind(from).execute(&mut *tx).await.unwrap();
    }
    sqlx::query("INSERT INTO render_jobs (change_id, customer_id, action, status, attempts, created_at, updated_at) VALUES ($1, $1, 'create', 'pending', 0, $2, $2)")
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}
