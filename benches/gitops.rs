//! GitOps benchmark: render cost, one-tenant commit cost at 100 and 10,000 tenants (against the
//! scripted `git add` + `git commit` way on a work tree of the same repository), full re-renders
//! into one commit (cold, and after one template changed), and the repository's size on disk.
//! Run with `cargo bench --bench gitops` (BENCH_TENANTS overrides 10,000; BENCH_HUGE_TENANTS=100000
//! adds one-tenant commit rows at that size; BENCH_REPACK_CYCLES overrides the 1,000 commits,
//! each repacked, after which a one-tenant commit is timed again; BENCH_PLACEMENT_ONLY=1 prints
//! only the placement row: one signup's placement at 10,000 tenants over 200 clusters). Prints a
//! table; every figure is a median over repeated runs. The last rows are the same one-tenant
//! commit with cluster roots (`clusters/<name>/`, 200 clusters); BENCH_ONLY=clusters prints only
//! those.

#[path = "shared/cluster_roots.rs"]
mod cluster_roots;
#[path = "shared/ids.rs"]
mod ids;
#[path = "shared/placement.rs"]
mod placement;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use billing::deploy::tenant_changes;
use billing::gitops::{Author, Changes, GitOpsRepo};
use billing::plans::Catalogue;
use billing::render::{
    demo_sealed_values, render_lock_path, RenderLock, RenderSettings, Renderer, TenantSpec,
};
use ids::tenant_id;

fn spec(i: usize, company: &str) -> TenantSpec {
    TenantSpec {
        id: tenant_id(i),
        plan: "starter".into(),
        subscription_status: "trialing".into(),
        company_name: company.into(),
        email: format!("ops{i}@example.com"),
        full_name: None,
        restore_from: None,
    }
}

struct Ctx {
    renderer: Renderer,
    plans: Catalogue,
    settings: RenderSettings,
}

impl Ctx {
    fn changes(&self, i: usize, company: &str) -> Changes {
        self.changes_since(i, company, None)
    }

    /// Renders what changed since the tenant's render lock `previous`, as the worker does.
    fn changes_since(&self, i: usize, company: &str, previous: Option<&RenderLock>) -> Changes {
        let spec = spec(i, company);
        let plan = self.plans.get(&spec.plan).unwrap();
        let rendered = self
            .renderer
            .render_update(&spec, plan, &self.settings, &demo_sealed_values(), previous)
            .unwrap();
        tenant_changes(&spec.id, rendered)
    }

    /// Renders tenants 0..n on every core, as the worker's compute pool does, each from its
    /// lock in `locks` when given.
    fn all_changes(
        &self,
        tenants: std::ops::Range<usize>,
        company: &str,
        locks: &[Option<RenderLock>],
    ) -> Changes {
        let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
        let n = tenants.end;
        let chunk = tenants.len().div_ceil(cores).max(1);
        std::thread::scope(|scope| {
            let parts: Vec<_> = tenants
                .step_by(chunk)
                .map(|start| {
                    scope.spawn(move || {
                        let mut part = Changes::new();
                        for i in start..(start + chunk).min(n) {
                            let lock = locks.get(i).and_then(Option::as_ref);
                            part.extend(self.changes_since(i, company, lock));
                        }
                        part
                    })
                })
                .collect();
            let mut all = Changes::new();
            for part in parts {
                all.extend(part.join().unwrap());
            }
            all
        })
    }
}

/// Runs of each large measurement (cold render, template change); the median is printed.
const RUNS: usize = 3;
/// Rounds of 60 one-tenant commits per repository: the 100-tenant commit is mostly file
/// creation and a ref rename, whose cost on this disk swings from round to round.
const COMMIT_ROUNDS: usize = 7;
/// One-tenant commits are measured durable (fsync, the service's default) and as git's default
/// leaves them (no fsync), to compare like with like against the git CLI.
const FSYNC_MODES: [bool; 2] = [true, false];

/// The templates with `namespace.yaml` carrying one more annotation.
fn with_changed_namespace_template(ctx: &Ctx, root: &Path, scratch: &Path, run: usize) -> Ctx {
    let dir = scratch.join(format!("templates{run}"));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(root.join("templates")).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let ns = dir.join("namespace.yaml");
    let text = std::fs::read_to_string(&ns).unwrap().replace(
        "  annotations:\n",
        &format!("  annotations:\n    iotistic.io/bench: \"changed-{run}\"\n"),
    );
    std::fs::write(&ns, text).unwrap();
    Ctx {
        renderer: Renderer::from_dir(&dir).unwrap(),
        plans: Catalogue::builtin().unwrap(),
        settings: ctx.settings.clone(),
    }
}

/// Flushes dirty pages (earlier phases write hundreds of MB): otherwise their writeback lands
/// in the middle of the small commits measured next and makes each file creation cost
/// milliseconds.
fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

fn author() -> Author {
    Author {
        name: "bench".into(),
        email: "bench@localhost".into(),
    }
}

/// A repository holding `n` tenants, built as one packed commit; returns it and the build time.
fn repo_with(ctx: &Ctx, dir: &Path, n: usize) -> (GitOpsRepo, Duration) {
    let mut repo =
        GitOpsRepo::open_or_init(&dir.join(format!("r{n}.git")), "main", author()).unwrap();
    let started = Instant::now();
    let all = ctx.all_changes(0..n, "Bench Co", &[]);
    repo.commit(&all, &format!("tenants: create {n}")).unwrap();
    (repo, started.elapsed())
}

/// A repository holding `n` tenants, built in commits of 10,000 (the largest only appears in
/// the one-tenant commit rows) and then repacked whole; returns it and that repack's time.
fn repo_built_in_steps(ctx: &Ctx, dir: &Path, n: usize) -> (GitOpsRepo, Duration) {
    let mut repo =
        GitOpsRepo::open_or_init(&dir.join(format!("r{n}.git")), "main", author()).unwrap();
    for start in (0..n).step_by(10_000) {
        let all = ctx.all_changes(start..n.min(start + 10_000), "Bench Co", &[]);
        repo.commit(&all, &format!("tenants: create from {start}"))
            .unwrap();
    }
    // As the service's repacks leave a large repository: mostly one pack.
    let started = Instant::now();
    repo.repack_all().unwrap();
    (repo, started.elapsed())
}

/// One-tenant changes, each rendered and committed: median times of (commit alone, render and
/// commit); `round` makes each round's changes new.
fn one_tenant_commit(
    ctx: &Ctx,
    repo: &mut GitOpsRepo,
    rounds: usize,
    round: usize,
) -> (Duration, Duration) {
    let (commits, totals) = (0..rounds)
        .map(|r| {
            let started = Instant::now();
            let changes = ctx.changes(r % 7, &format!("Renamed {round}-{r}"));
            let rendered = Instant::now();
            repo.commit(&changes, "tenant: update")
                .unwrap()
                .expect("a real change");
            (rendered.elapsed(), started.elapsed())
        })
        .unzip();
    (median(commits), median(totals))
}

/// A 1,000-tenant repository's one-tenant commit (fsync off) fresh and after `cycles` commits
/// each followed by a repack, as an idle worker makes them: (fresh, after, packs left, the
/// longest repack).
fn commit_after_repacks(
    ctx: &Ctx,
    dir: &Path,
    cycles: usize,
) -> (Duration, Duration, usize, Duration) {
    let (mut repo, _) = repo_with(ctx, dir, 1000);
    repo.set_fsync(false).unwrap();
    repo.repack().unwrap();
    let fresh = one_tenant_commit(ctx, &mut repo, 60, 0).0;
    let mut longest = Duration::ZERO;
    for cycle in 0..cycles {
        let changes = ctx.changes(cycle % 1000, &format!("Cycle {cycle}"));
        repo.commit(&changes, "tenant: update").unwrap();
        let started = Instant::now();
        repo.repack().unwrap();
        longest = longest.max(started.elapsed());
    }
    let packs = std::fs::read_dir(repo.path().join("objects/pack"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
        .count();
    let after = one_tenant_commit(ctx, &mut repo, 60, 1).0;
    (fresh, after, packs, longest)
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("git CLI");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The scripted way: a work tree, write the tenant's files, `git add`, `git commit`.
fn cli_commit(ctx: &Ctx, bare: &Path, scratch: &Path, rounds: usize) -> Option<Duration> {
    Command::new("git").arg("--version").output().ok()?;
    let work = scratch.join("worktree");
    let out = Command::new("git")
        .args(["clone", "-q"])
        .arg(bare)
        .arg(&work)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    git(&work, &["config", "user.email", "bench@localhost"]);
    git(&work, &["config", "user.name", "bench"]);
    let times = (0..rounds)
        .map(|r| {
            let started = Instant::now();
            let changes = ctx.changes(r % 7, &format!("Scripted {r}"));
            let id = tenant_id(r % 7);
            for (path, entry) in &changes {
                if let billing::gitops::Entry::Dir(files) = entry {
                    for (name, bytes) in files {
                        std::fs::write(work.join(path).join(name), bytes).unwrap();
                    }
                } else if let billing::gitops::Entry::File(bytes) = entry {
                    std::fs::write(work.join(path), bytes).unwrap();
                }
            }
            git(
                &work,
                &[
                    "add",
                    &billing::render::tenant_dir(&id),
                    &billing::render::flux_kustomization_path(&id),
                ],
            );
            git(&work, &["commit", "-q", "-m", "tenant: update"]);
            started.elapsed()
        })
        .collect();
    Some(median(times))
}

/// The placement row: one signup's placement at 10,000 tenants over 200 clusters.
fn placement_row() {
    let (tenants, clusters) = (10_000, 200);
    let per = placement::per_signup(tenants, clusters);
    println!(
        "| placement of one signup at {tenants} tenants over {clusters} clusters (SQLite, own transaction) | {} |",
        ms(per)
    );
}

fn main() {
    if std::env::var("BENCH_PLACEMENT_ONLY").is_ok_and(|v| v == "1") {
        placement_row();
        return;
    }
    let big: usize = std::env::var("BENCH_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    // The one-tenant commit rows at a third size (e.g. 100,000), built in steps.
    let huge: Option<usize> = std::env::var("BENCH_HUGE_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok());
    let huge_size = huge;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ctx = Ctx {
        renderer: Renderer::from_dir(&root.join("templates")).unwrap(),
        plans: Catalogue::builtin().unwrap(),
        settings: RenderSettings::default(),
    };
    let scratch = tempfile::tempdir().unwrap();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!(
        "machine: {} cores, {cpu}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "inputs: starter tenants, {} files each, {big} tenants for the large repository\n",
        ctx.changes(0, "x").len() + 12
    );

    if std::env::var("BENCH_ONLY").as_deref() == Ok("clusters") {
        cluster_rows(&ctx, scratch.path(), big, huge);
        return;
    }
    let render_times: Vec<Duration> = (0..500)
        .map(|i| {
            let started = Instant::now();
            std::hint::black_box(ctx.changes(i, "Render Co"));
            started.elapsed()
        })
        .collect();
    let render = median(render_times);

    let (mut small, _) = repo_with(&ctx, scratch.path(), 100);
    // Cold builds into fresh repositories; the last one is kept for the rest.
    let mut colds = Vec::new();
    let mut large = None;
    for run in 0..RUNS {
        settle();
        let dir = scratch.path().join(format!("cold{run}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (repo, took) = repo_with(&ctx, &dir, big);
        colds.push(took);
        large = Some(repo);
    }
    let cold = median(colds);
    let mut large = large.unwrap();
    let mut huge = huge.map(|n| {
        let (repo, repack) = repo_built_in_steps(&ctx, scratch.path(), n);
        (n, repo, repack)
    });
    let mut at_huge = [Vec::new(), Vec::new()];
    // One-tenant commits: rounds of 60 alternate between the two repositories (the cost of
    // creating files drifts on this disk), each followed by a repack as the worker does; every
    // round runs with fsync (the service's default) and without (git's default).
    let objects = large.path().join("objects");
    let (mut at_100, mut at_big) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    let mut first_repack = None;
    for round in 0..COMMIT_ROUNDS {
        for (mode, fsync) in FSYNC_MODES.into_iter().enumerate() {
            let round = round * FSYNC_MODES.len() + mode;
            small.set_fsync(fsync).unwrap();
            large.set_fsync(fsync).unwrap();
            settle();
            at_100[mode].push(one_tenant_commit(&ctx, &mut small, 60, round));
            small.repack().unwrap();
            let before_commits = dir_size(&objects);
            settle();
            at_big[mode].push(one_tenant_commit(&ctx, &mut large, 60, round));
            let written = dir_size(&objects) - before_commits;
            let started = Instant::now();
            let repacked = large.repack().unwrap();
            let repack = started.elapsed();
            let after_repack = dir_size(&objects) - before_commits;
            first_repack.get_or_insert((written, repack, repacked, after_repack));
            if let Some((_, repo, _)) = huge.as_mut() {
                repo.set_fsync(fsync).unwrap();
                settle();
                at_huge[mode].push(one_tenant_commit(&ctx, repo, 60, round));
                repo.repack().unwrap();
            }
        }
    }
    large.set_fsync(true).unwrap();
    // Per fsync mode: median (commit alone, render and commit).
    let medians = |runs: [Vec<(Duration, Duration)>; 2]| {
        runs.map(|runs| {
            let (commits, totals): (Vec<_>, Vec<_>) = runs.into_iter().unzip();
            (median(commits), median(totals))
        })
    };
    let (at_100, at_big) = (medians(at_100), medians(at_big));
    let huge = huge.map(|(n, _, repack)| (n, medians(at_huge), repack));
    let (written, repack, repacked, after_repack) = first_repack.unwrap();
    settle();
    let cli = cli_commit(&ctx, large.path(), scratch.path(), 15);

    // One template changed: every tenant's namespace gains an annotation (a new value each run).
    let mut changes = Vec::new();
    for run in 0..RUNS {
        let changed = with_changed_namespace_template(&ctx, root, scratch.path(), run);
        let started = Instant::now();
        // As the worker does: read each tenant's render lock, re-render what changed.
        let paths: Vec<String> = (0..big)
            .map(|i| render_lock_path(&spec(i, "").id))
            .collect();
        let locks: Vec<Option<RenderLock>> = large
            .read_many(&paths)
            .unwrap()
            .into_iter()
            .map(|b| b.and_then(|b| RenderLock::from_bytes(&b)))
            .collect();
        assert!(locks.iter().all(Option::is_some), "every tenant has a lock");
        let all = changed.all_changes(0..big, "Bench Co", &locks);
        large
            .commit(&all, "templates: namespace annotation")
            .unwrap()
            .expect("template change commits");
        changes.push(started.elapsed());
    }
    let template_change = median(changes);
    let size = dir_size(large.path());
    let cycles = std::env::var("BENCH_REPACK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    settle();
    let repacks = commit_after_repacks(&ctx, &scratch.path().join("repacks"), cycles);

    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| render one tenant | {:.0} µs |",
        render.as_secs_f64() * 1e6
    );
    println!(
        "| tenants rendered per second (1 core) | {:.0} |",
        1.0 / render.as_secs_f64()
    );
    let both = |values: [String; 2]| format!("fsync on: {}; off: {}", values[0], values[1]);
    let ratio = |a: Duration, b: Duration| format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64());
    let ratios = |a: [Duration; 2], b: [Duration; 2]| both([0, 1].map(|m| ratio(a[m], b[m])));
    let rows = [
        (
            "commit one tenant's change (render excluded)",
            "commit ratio",
            at_100.map(|(commit, _)| commit),
            at_big.map(|(commit, _)| commit),
        ),
        (
            "render + commit one tenant",
            "render + commit ratio",
            at_100.map(|(_, total)| total),
            at_big.map(|(_, total)| total),
        ),
    ];
    for (label, ratio_label, small, large) in rows {
        println!("| {label}, 100 tenants in repo | {} |", both(small.map(ms)));
        println!(
            "| {label}, {big} tenants in repo | {} |",
            both(large.map(ms))
        );
        println!("| {ratio_label} {big} / 100 | {} |", ratios(large, small));
    }
    if let Some((n, at, repack)) = huge {
        println!(
            "| repacking the {n}-tenant repository (built in commits of 10000) into one pack | {} |",
            ms(repack)
        );
        let commit = at.map(|(commit, _)| commit);
        println!(
            "| commit one tenant's change (render excluded), {n} tenants in repo | {} |",
            both(commit.map(ms))
        );
        println!(
            "| commit ratio {n} / 100 | {} |",
            ratios(commit, at_100.map(|(commit, _)| commit))
        );
    }
    let at_big = at_big.map(|(_, total)| total);
    match cli {
        Some(cli) => {
            println!(
                "| same commit, `git add` + `git commit` CLI on a work tree (git's defaults: no fsync), {big} tenants | {} |",
                ms(cli)
            );
            println!(
                "| CLI / our render + commit | {} |",
                ratios([cli; 2], at_big)
            );
        }
        None => println!("| git CLI comparison | skipped: no git CLI |"),
    }
    println!(
        "| written by those commits / `repack` of them / left after it | {:.1} MB / {} ({} packs to {}, {:.1} ms a commit) / {:.1} MB |",
        written as f64 / 1e6,
        ms(repack),
        repacked.packs_before,
        repacked.packs_after,
        repack.as_secs_f64() * 1e3 / 60.0,
        after_repack as f64 / 1e6
    );
    println!(
        "| cold render of {big} tenants into one commit | {} |",
        ms(cold)
    );
    println!(
        "| one template changed, re-render {big} tenants into one commit | {} |",
        ms(template_change)
    );
    println!(
        "| repository size on disk after these runs | {:.1} MB |",
        size as f64 / 1e6
    );
    let (fresh, after, packs, longest) = repacks;
    println!(
        "| one-tenant commit at 1000 tenants (fsync off), fresh / after {cycles} commits each repacked | {} / {} ({packs} packs left; longest repack {}) |",
        ms(fresh),
        ms(after),
        ms(longest)
    );
    placement_row();
    cluster_rows(&ctx, scratch.path(), big, huge_size);
}

/// The one-tenant commit with cluster roots at 100, `big` and (when set) `huge` tenants over
/// 200 clusters, fsync on (the service's default), each against the 100-tenant figure.
fn cluster_rows(ctx: &Ctx, scratch: &Path, big: usize, huge: Option<usize>) {
    let dir = scratch.join("clusters");
    std::fs::create_dir_all(&dir).unwrap();
    let sizes: Vec<usize> = [Some(100), Some(big), huge].into_iter().flatten().collect();
    let mut repos: Vec<GitOpsRepo> = sizes
        .iter()
        .map(|&n| {
            cluster_roots::build(&dir, n, author(), |range| {
                ctx.all_changes(range, "Bench Co", &[])
            })
        })
        .collect();
    let mut times = vec![Vec::new(); sizes.len()];
    for round in 0..COMMIT_ROUNDS {
        for (repo, times) in repos.iter_mut().zip(&mut times) {
            settle();
            times.push(cluster_roots::one_tenant_commit(
                repo,
                60,
                round,
                |i, company| (spec(i, company).id, ctx.changes(i, company)),
            ));
            repo.repack().unwrap();
        }
    }
    let medians: Vec<Duration> = times.into_iter().map(median).collect();
    println!(
        "| measure (cluster roots, {} clusters) | value |",
        cluster_roots::CLUSTERS
    );
    println!("| --- | --- |");
    for (n, at) in sizes.iter().zip(&medians) {
        println!(
            "| commit one tenant's change into its cluster root (render excluded), {n} tenants | {} ({:.2}x the 100-tenant figure) |",
            ms(*at),
            at.as_secs_f64() / medians[0].as_secs_f64()
        );
    }
}
