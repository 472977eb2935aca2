//! `bench-queue`: the queue and the worker processes — pick-up latency,
//! recovery from a killed worker, throughput with 1, 2 and 4 workers.
//! Prints figures; see `--help`.

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::Parser;
use projsync::Settings;
use projsync_bench::{
    check_services, check_succeeded, generate_repo, ms_between, percentile, projsync_binary, secs,
    system_time, wait_for_end, Bench, Rng, Table, WorkerProcesses, POLL_INTERVAL, SYNC_TIMEOUT,
};
use projsync_domain::{SyncId, SyncPhase, SyncStatus};
use projsync_test_support::GitRepo;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

/// Measure the queue with real `projsync worker` processes (the binary next
/// to this one: `cargo build --release -p projsync` first): enqueue → pick-up
/// latency over many small syncs; the time from SIGKILL of a worker in the
/// middle of an import to the sync's success on another worker; throughput
/// of many small syncs with 1, 2 and 4 worker processes. Workers run with
/// the defaults of config/default.toml unless said otherwise. Needs
/// PostgreSQL and Redis (PROJSYNC_TEST_DATABASE_URL, PROJSYNC_TEST_REDIS_URL;
/// scripts/services.sh); every configuration gets a fresh database and Redis
/// namespace, removed at the end.
#[derive(Debug, Parser)]
#[command(name = "bench-queue")]
struct Args {
    /// Syncs measured for the latency (one at a time, one worker process).
    #[arg(long, default_value_t = 200)]
    syncs: usize,
    /// Syncs enqueued at once for each throughput configuration.
    #[arg(long, default_value_t = 50)]
    throughput_syncs: usize,
    /// Worker process counts for the throughput (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4])]
    workers: Vec<usize>,
    /// Files in the small repository of the latency and throughput syncs.
    #[arg(long, default_value_t = 20)]
    files: usize,
    /// Files in the repository of the kill test (its import must last
    /// long enough to kill the worker in the middle of it).
    #[arg(long, default_value_t = 10_000)]
    kill_files: usize,
    /// Kill worker A once the import's checkpoint covers this fraction of
    /// the files (0: as soon as the import phase starts).
    #[arg(long, default_value_t = 0.25)]
    kill_at: f64,
    /// Lease TTL of the second kill test, in seconds (0: skip it).
    #[arg(long, default_value_t = 5)]
    short_lease_secs: u64,
    /// Print one JSON line with the headline figures on stdout (the report
    /// goes to stderr).
    #[arg(long)]
    json: bool,
    /// Run the workers without code analysis and module docs (the
    /// `[analysis]` and `[docs]` settings off): the pipeline as it was
    /// before the analyze and docs phases existed, for comparison with
    /// figures measured then.
    #[arg(long)]
    no_analysis: bool,
}

/// How often the throughput test counts the syncs that have ended.
const THROUGHPUT_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Syncs run before measuring, not counted (connections, caches).
const WARM_UP: usize = 3;

/// Warm-up syncs per worker process in a throughput configuration.
const WARM_UP_PER_PROCESS: usize = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let log_dir = std::env::temp_dir().join(format!("projsync-bench-queue-{}", std::process::id()));
    let result = tokio::select! {
        r = run(&args, &log_dir) => r,
        // Dropping `run` kills the worker processes and removes the
        // databases and Redis keys.
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    match result {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&log_dir);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-queue: {e:#}");
            if log_dir.is_dir() {
                eprintln!("bench-queue: worker logs are in {}", log_dir.display());
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args, log_dir: &Path) -> Result<()> {
    ensure!(args.syncs > 0, "--syncs must be at least 1");
    ensure!(
        args.throughput_syncs > 0,
        "--throughput-syncs must be at least 1"
    );
    ensure!(args.files > 0, "--files must be at least 1");
    ensure!(args.kill_files > 0, "--kill-files must be at least 1");
    ensure!(
        (0.0..1.0).contains(&args.kill_at),
        "--kill-at must be at least 0 and below 1"
    );
    ensure!(
        args.workers.iter().all(|&n| n > 0),
        "--workers must be positive counts"
    );
    let binary = projsync_binary()?;
    check_services().await?;
    std::fs::create_dir_all(log_dir).with_context(|| format!("create {}", log_dir.display()))?;
    let env = Env {
        binary,
        log_dir,
        no_analysis: args.no_analysis,
    };
    let defaults = projsync_bench::default_settings()?;

    let small = generate_repo(args.files);
    progress(&format!(
        "latency: {} syncs one at a time, 1 worker process",
        args.syncs
    ));
    let latency = latency(&env, &small, args.syncs).await?;

    let generating = Instant::now();
    let big = generate_repo(args.kill_files);
    let big_generated_in = generating.elapsed();
    let mut kills = Vec::new();
    let mut cases = vec![KillCase {
        label: "defaults".into(),
        lease_ttl_secs: None,
        redeliver_after_secs: None,
    }];
    if args.short_lease_secs > 0 {
        cases.push(KillCase {
            label: format!("lease {} s", args.short_lease_secs),
            lease_ttl_secs: Some(args.short_lease_secs),
            redeliver_after_secs: None,
        });
        cases.push(KillCase {
            label: format!("lease {} s, redeliver after 1 s", args.short_lease_secs),
            lease_ttl_secs: Some(args.short_lease_secs),
            redeliver_after_secs: Some(1),
        });
    }
    for case in cases {
        progress(&format!(
            "kill: {} ({} files), worker A killed in the import",
            case.label, args.kill_files
        ));
        let kill_after = (args.kill_at * args.kill_files as f64) as u64;
        kills.push(kill_recovery(&env, &big, case, kill_after).await?);
    }

    let mut throughputs = Vec::new();
    for &n in &args.workers {
        progress(&format!(
            "throughput: {} syncs at once, {n} worker process(es)",
            args.throughput_syncs
        ));
        throughputs.push(throughput(&env, &small, n, args.throughput_syncs).await?);
    }

    let text = report(
        args,
        &defaults,
        &latency,
        &kills,
        big_generated_in,
        &throughputs,
    );
    if args.json {
        eprint!("{text}");
        println!(
            "{}",
            json_line(&latency, &kills, &throughputs, !args.no_analysis)
        );
    } else {
        print!("{text}");
    }
    Ok(())
}

/// The headline figures as one JSON object (issue 12's keys); `null` for a
/// figure this run did not measure (a worker count not in `--workers`).
fn json_line(
    latency: &Latency,
    kills: &[Kill],
    throughputs: &[Throughput],
    analysis: bool,
) -> serde_json::Value {
    let rate = |processes: usize| {
        throughputs
            .iter()
            .find(|t| t.processes == processes)
            .map(|t| t.syncs as f64 / t.wall.as_secs_f64())
    };
    let defaults = kills.first();
    let mut by_case = serde_json::Map::new();
    for k in kills {
        by_case.insert(
            k.label.clone(),
            serde_json::json!({
                "lease_ttl_secs": k.worker.worker.lease_ttl_secs,
                "kill_to_claim_s": k.kill_to_claim.as_secs_f64(),
                "kill_to_succeeded_s": k.kill_to_done.as_secs_f64(),
                "kill_overhead_s": k.overhead_s(),
                "uninterrupted_run_s": k.uninterrupted_ms / 1e3,
            }),
        );
    }
    serde_json::json!({
        "bench": "bench-queue",
        "analysis": analysis,
        "claim_latency_p50_ms": percentile(&latency.claim_ms, 0.5),
        "claim_latency_p99_ms": percentile(&latency.claim_ms, 0.99),
        "first_phase_latency_p50_ms": percentile(&latency.first_phase_ms, 0.5),
        "first_phase_latency_p99_ms": percentile(&latency.first_phase_ms, 0.99),
        "kill_to_claim_s": defaults.map(|k| k.kill_to_claim.as_secs_f64()),
        "kill_to_succeeded_s": defaults.map(|k| k.kill_to_done.as_secs_f64()),
        "kill_overhead_s": defaults.map(Kill::overhead_s),
        "uninterrupted_run_s": defaults.map(|k| k.uninterrupted_ms / 1e3),
        "kill_cases": by_case,
        "syncs_per_s_1_worker": rate(1),
        "syncs_per_s_2_workers": rate(2),
        "syncs_per_s_4_workers": rate(4),
    })
}

struct Env<'a> {
    binary: PathBuf,
    log_dir: &'a Path,
    /// `--no-analysis`: the workers run without the analyze and docs phases.
    no_analysis: bool,
}

impl Env<'_> {
    fn workers(&self, label: &str) -> WorkerProcesses {
        WorkerProcesses::new(&self.binary, self.log_dir, label)
    }

    /// The settings worker processes of `bench` are given.
    fn worker_settings(&self, bench: &Bench) -> Result<Settings> {
        let mut settings = bench.worker_settings()?;
        if self.no_analysis {
            settings.analysis.enabled = false;
            settings.docs.enabled = false;
        }
        Ok(settings)
    }
}

fn progress(what: &str) {
    eprintln!("bench-queue: {what} ...");
}

// ---------------------------------------------------------------- latency

struct Latency {
    worker: Settings,
    /// Enqueue (just before the call) to the claim: the sync's `started_at`.
    claim_ms: Vec<f64>,
    /// Enqueue to the prepare step's `started_at`: the first phase starts.
    first_phase_ms: Vec<f64>,
    /// The enqueue call itself (commit the row, push the job).
    enqueue_call_ms: Vec<f64>,
    /// Enqueue to the end seen by the poller.
    end_ms: Vec<f64>,
}

async fn latency(env: &Env<'_>, repo: &GitRepo, syncs: usize) -> Result<Latency> {
    let bench = Bench::without_worker(|_| {}).await?;
    let settings = env.worker_settings(&bench)?;
    let mut projects = Vec::with_capacity(syncs + WARM_UP);
    for i in 0..syncs + WARM_UP {
        projects.push(bench.create_project(&format!("lat-{i}"), repo).await?);
    }
    let mut workers = env.workers("latency");
    workers.spawn(&settings)?;
    workers.wait_registered(&settings, 1).await?;
    let (warm_up, measured) = projects.split_at(WARM_UP);
    for &project in warm_up {
        let id = bench.enqueue(project).await?;
        check_succeeded(&wait_for_end(&bench, &mut workers, id).await?)?;
    }

    // A pause of 0 to one poll interval before each enqueue, so that the
    // enqueues fall anywhere in the idle worker's polling cycle (not in
    // step with the end of the previous sync).
    let mut rng = Rng::new(0x1a7e);
    let poll_ms = settings.redis.poll_interval_ms as usize;
    let mut out = Latency {
        worker: settings.clone(),
        claim_ms: Vec::new(),
        first_phase_ms: Vec::new(),
        enqueue_call_ms: Vec::new(),
        end_ms: Vec::new(),
    };
    for &project in measured {
        tokio::time::sleep(Duration::from_millis(rng.range(0, poll_ms) as u64)).await;
        let at = SystemTime::now();
        let id = bench.enqueue(project).await?;
        out.enqueue_call_ms.push(ms_between(at, SystemTime::now()));
        let record = wait_for_end(&bench, &mut workers, id).await?;
        out.end_ms.push(ms_between(at, SystemTime::now()));
        check_succeeded(&record)?;
        let claimed = record
            .started_at
            .ok_or_else(|| anyhow!("sync {id} succeeded without started_at"))?;
        out.claim_ms.push(ms_between(at, system_time(claimed)));
        let prepare = bench
            .db
            .store
            .steps(id)
            .await?
            .into_iter()
            .find(|s| s.phase == SyncPhase::Prepare)
            .and_then(|s| s.started_at)
            .ok_or_else(|| anyhow!("sync {id} has no started prepare step"))?;
        out.first_phase_ms
            .push(ms_between(at, system_time(prepare)));
    }
    drop(workers);
    bench.stop().await?;
    Ok(out)
}

// ------------------------------------------------------------------- kill

struct KillCase {
    label: String,
    lease_ttl_secs: Option<u64>,
    redeliver_after_secs: Option<u64>,
}

struct Kill {
    label: String,
    worker: Settings,
    files: u64,
    /// Files of the import checkpoint worker A left (where B resumes).
    checkpoint_at_kill: u64,
    /// From the sync's claim by A (its started_at) to the kill.
    run_before_kill_ms: f64,
    /// From the kill to the lease's expiry in the ledger (A's last renewal
    /// plus the TTL).
    kill_to_expiry_ms: f64,
    /// From the kill to worker B's claim (the fence moved), seen by the poller.
    kill_to_claim: Duration,
    /// From the kill to the sync's success, seen by the poller.
    kill_to_done: Duration,
    /// The killed sync from A's claim (ledger) to its end (seen by the poll).
    killed_run_ms: f64,
    /// The same first import without a kill, in a fresh database by a
    /// fresh worker process afterwards: claim (ledger) to end (seen by the
    /// poll).
    uninterrupted_ms: f64,
}

impl Kill {
    /// How much longer the sync took because its worker was killed.
    fn overhead_s(&self) -> f64 {
        (self.killed_run_ms - self.uninterrupted_ms) / 1000.0
    }
}

/// Files done according to the import step's checkpoint.
async fn import_checkpoint(bench: &Bench, id: SyncId) -> Result<u64> {
    Ok(bench
        .db
        .store
        .steps(id)
        .await?
        .into_iter()
        .find(|s| s.phase == SyncPhase::Import)
        .and_then(|s| s.checkpoint)
        .and_then(|c| c.get("done").and_then(|d| d.as_u64()))
        .unwrap_or(0))
}

async fn kill_recovery(
    env: &Env<'_>,
    repo: &GitRepo,
    case: KillCase,
    kill_after: u64,
) -> Result<Kill> {
    let bench = Bench::without_worker(|_| {}).await?;
    let mut settings = env.worker_settings(&bench)?;
    if let Some(ttl) = case.lease_ttl_secs {
        settings.worker.lease_ttl_secs = ttl;
    }
    if let Some(after) = case.redeliver_after_secs {
        settings.worker.redeliver_after_secs = after;
    }
    let project = bench.create_project("kill", repo).await?;
    let mut workers = env.workers(&format!("kill-{}", case.label.replace([' ', ','], "")));
    let a = workers.spawn(&settings)?;
    workers.wait_registered(&settings, 1).await?;

    let id = bench.enqueue(project).await?;
    let started = Instant::now();
    loop {
        let record = bench.db.store.sync(id).await?;
        if record.status.is_terminal() {
            bail!(
                "the sync ended ({}) before its import could be interrupted; use more --kill-files",
                record.status
            );
        }
        if record.current_phase == Some(SyncPhase::Import)
            && (kill_after == 0 || import_checkpoint(&bench, id).await? >= kill_after)
        {
            break;
        }
        workers.check_alive()?;
        ensure!(
            started.elapsed() < SYNC_TIMEOUT,
            "the sync did not reach its import"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }

    let killed_at = SystemTime::now();
    let killed = Instant::now();
    workers.kill(a)?;
    let b = workers.spawn(&settings)?;
    // After A is gone, the ledger holds its last lease renewal.
    let at_kill = bench.db.store.sync(id).await?;
    ensure!(
        at_kill.status == SyncStatus::Running,
        "the sync was {} when worker A (pid {}) was killed; use more --kill-files",
        at_kill.status,
        workers.pid(a)
    );
    let expires = at_kill
        .lease_expires_at
        .ok_or_else(|| anyhow!("the running sync {id} has no lease"))?;
    let claimed_by_a = at_kill
        .started_at
        .ok_or_else(|| anyhow!("the running sync {id} has no started_at"))?;
    let checkpoint_at_kill = import_checkpoint(&bench, id).await?;
    let mut claimed = None;
    let record = loop {
        let record = bench.db.store.sync(id).await?;
        if claimed.is_none() && record.fence > at_kill.fence {
            claimed = Some(killed.elapsed());
        }
        if record.status.is_terminal() {
            break record;
        }
        workers.check_alive()?;
        ensure!(
            killed.elapsed() < SYNC_TIMEOUT,
            "worker B (pid {}) did not finish the sync",
            workers.pid(b)
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    let kill_to_done = killed.elapsed();
    let ended_at = SystemTime::now();
    check_succeeded(&record)?;
    let kill_to_claim = claimed.ok_or_else(|| anyhow!("no claim by worker B was seen"))?;
    drop(workers);
    bench.stop().await?;
    // What the kill cost: the same first import of the same repository in
    // the same conditions (a fresh database, a fresh worker process with
    // the same settings) without a kill, against the killed sync's
    // claim-to-end. Both from the claim in the ledger to the end seen by
    // the 10 ms poll (`finished_at` is its statement's time, inside
    // finalize's transaction).
    let (b_start, b_end) = {
        let bench = Bench::without_worker(|_| {}).await?;
        let project = bench.create_project("kill-baseline", repo).await?;
        let mut workers = env.workers(&format!(
            "kill-baseline-{}",
            case.label.replace([' ', ','], "")
        ));
        let mut same = env.worker_settings(&bench)?;
        same.worker = settings.worker.clone();
        workers.spawn(&same)?;
        workers.wait_registered(&same, 1).await?;
        let id = bench.enqueue(project).await?;
        let record = wait_for_end(&bench, &mut workers, id).await?;
        let ended = SystemTime::now();
        check_succeeded(&record)?;
        let Some(started) = record.started_at else {
            bail!("the uninterrupted sync has no started_at");
        };
        drop(workers);
        bench.stop().await?;
        (started, ended)
    };
    Ok(Kill {
        label: case.label,
        worker: settings,
        files: record.stats.files_seen,
        checkpoint_at_kill,
        run_before_kill_ms: ms_between(system_time(claimed_by_a), killed_at),
        kill_to_expiry_ms: ms_between(killed_at, system_time(expires)),
        kill_to_claim,
        kill_to_done,
        killed_run_ms: ms_between(system_time(claimed_by_a), ended_at),
        uninterrupted_ms: ms_between(system_time(b_start), b_end),
    })
}

// ------------------------------------------------------------- throughput

struct Throughput {
    processes: usize,
    concurrency: usize,
    syncs: usize,
    enqueue_all: Duration,
    wall: Duration,
    /// Per sync: created_at → started_at (waiting in the queue).
    queue_wait_ms: Vec<f64>,
    /// Per sync: started_at → finished_at (running on a worker).
    run_ms: Vec<f64>,
}

async fn throughput(
    env: &Env<'_>,
    repo: &GitRepo,
    processes: usize,
    syncs: usize,
) -> Result<Throughput> {
    let bench = Bench::without_worker(|_| {}).await?;
    let mut settings = env.worker_settings(&bench)?;
    settings.worker.concurrency = 1;
    let warm_up = WARM_UP_PER_PROCESS * processes;
    let mut projects = Vec::with_capacity(syncs + warm_up);
    for i in 0..syncs + warm_up {
        projects.push(bench.create_project(&format!("tp-{i}"), repo).await?);
    }
    let mut workers = env.workers(&format!("throughput-{processes}"));
    for _ in 0..processes {
        workers.spawn(&settings)?;
    }
    workers.wait_registered(&settings, processes).await?;
    let (warm, measured) = projects.split_at(warm_up);
    let mut ids = Vec::new();
    for &project in warm {
        ids.push(bench.enqueue(project).await?);
    }
    for id in ids {
        check_succeeded(&wait_for_end(&bench, &mut workers, id).await?)?;
    }

    let started = Instant::now();
    let started_at = SystemTime::now();
    let mut pending = HashSet::new();
    for &project in measured {
        pending.insert(bench.enqueue(project).await?);
    }
    let enqueue_all = started.elapsed();
    let measured_ids: Vec<uuid::Uuid> = pending.iter().map(|id| id.0).collect();
    let terminal = [
        SyncStatus::Succeeded,
        SyncStatus::Failed,
        SyncStatus::Cancelled,
        SyncStatus::Discarded,
    ];
    let terminal_names: Vec<String> = terminal.iter().map(|s| s.to_string()).collect();
    // How many have ended: one count every THROUGHPUT_POLL_INTERVAL. The
    // wall is read from the ledger's last `finished_at` (same clock), not
    // from when the poll saw it, so the poll can be coarse; a 10 ms poll
    // that read every ended sync's record took about 8 ms of PostgreSQL's
    // CPU per sync measured (pg_stat_statements), on the two cores the
    // workers run on.
    loop {
        tokio::time::sleep(THROUGHPUT_POLL_INTERVAL).await;
        let ended: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM project_syncs WHERE id = ANY($1) AND status::text = ANY($2)",
        )
        .bind(&measured_ids)
        .bind(&terminal_names)
        .fetch_one(&bench.db.admin)
        .await?;
        if ended as usize == measured_ids.len() {
            break;
        }
        workers.check_alive()?;
        ensure!(
            started.elapsed() < SYNC_TIMEOUT,
            "{} syncs did not end",
            measured_ids.len() - ended as usize
        );
    }
    let limit = (projects.len() * 2) as i64;
    let mut done = Vec::new();
    for record in bench.db.store.syncs_by_status(&terminal, limit).await? {
        if pending.remove(&record.id) {
            check_succeeded(&record)?;
            done.push(record);
        }
    }
    ensure!(pending.is_empty(), "lost track of some syncs");
    let last_end = done
        .iter()
        .filter_map(|r| r.finished_at)
        .max()
        .context("no sync has a finished_at")?;
    let wall =
        Duration::from_secs_f64(ms_between(started_at, system_time(last_end)).max(0.0) / 1000.0);
    let mut queue_wait_ms = Vec::new();
    let mut run_ms = Vec::new();
    for r in &done {
        let (Some(start), Some(end)) = (r.started_at, r.finished_at) else {
            bail!("sync {} succeeded without started_at or finished_at", r.id);
        };
        queue_wait_ms.push(ms_between(system_time(r.created_at), system_time(start)));
        run_ms.push(ms_between(system_time(start), system_time(end)));
    }
    drop(workers);
    bench.stop().await?;
    Ok(Throughput {
        processes,
        concurrency: settings.worker.concurrency,
        syncs,
        enqueue_all,
        wall,
        queue_wait_ms,
        run_ms,
    })
}

// ----------------------------------------------------------------- report

fn ms(v: f64) -> String {
    format!("{v:.1}")
}

fn report(
    args: &Args,
    defaults: &Settings,
    latency: &Latency,
    kills: &[Kill],
    big_generated_in: Duration,
    throughputs: &[Throughput],
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let d = defaults;
    writeln!(
        out,
        "bench-queue: real `projsync worker` processes (RUST_LOG=warn) against the local \
         PostgreSQL and Redis, a fresh database and Redis namespace per configuration; all \
         figures below come from this one run, on a noisy machine ({} CPUs).",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
    .unwrap();
    writeln!(
        out,
        "Worker defaults (config/default.toml), used unless a line says otherwise: queue poll \
         {} ms, worker concurrency {}, lease TTL {} s (renewed every {:.1} s), reconcile every {} \
         ms, redeliver after {} s, queue heartbeat {} s x {} missed, import batch {} files; \
         code analysis and module docs {}.",
        d.redis.poll_interval_ms,
        d.worker.concurrency,
        d.worker.lease_ttl_secs,
        d.worker.lease_ttl_secs as f64 / 3.0,
        d.worker.reconcile_interval_ms,
        d.worker.redeliver_after_secs,
        d.redis.heartbeat_interval_secs,
        d.redis.missed_heartbeats,
        d.worker.import_batch_size,
        if args.no_analysis {
            "off (--no-analysis)"
        } else {
            "on"
        },
    )
    .unwrap();
    writeln!(out).unwrap();

    let l = latency;
    writeln!(
        out,
        "1. Enqueue latency: {} syncs of {} projects on one {}-file repository, 1 worker process \
         (concurrency {}, poll {} ms), enqueued one at a time through the API's service layer: \
         each after the previous one ended plus a pause of 0-{} ms (so that enqueues fall \
         anywhere in the idle worker's poll cycle); {} warm-up syncs not counted. Times from \
         just before the enqueue call to the ledger's timestamps (same clock); percentiles by \
         nearest rank.",
        l.claim_ms.len(),
        l.claim_ms.len(),
        args.files,
        l.worker.worker.concurrency,
        l.worker.redis.poll_interval_ms,
        l.worker.redis.poll_interval_ms,
        WARM_UP,
    )
    .unwrap();
    let mut t = Table::new(&[
        "enqueue ->",
        "p50 ms",
        "p99 ms",
        "max ms",
        "min ms",
        "mean ms",
    ]);
    for (name, v) in [
        (
            "enqueue call returned (row committed, job pushed)",
            &l.enqueue_call_ms,
        ),
        ("claimed by the worker (sync started_at)", &l.claim_ms),
        (
            "first phase started (prepare step started_at)",
            &l.first_phase_ms,
        ),
        ("sync ended (seen by the 10 ms ledger poll)", &l.end_ms),
    ] {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let max = v.iter().copied().fold(f64::MIN, f64::max);
        let min = v.iter().copied().fold(f64::MAX, f64::min);
        t.row(vec![
            name.to_string(),
            ms(percentile(v, 0.5)),
            ms(percentile(v, 0.99)),
            ms(max),
            ms(min),
            ms(mean),
        ]);
    }
    out.push_str(&t.render());
    writeln!(out).unwrap();

    if let Some(k) = kills.first() {
        writeln!(
            out,
            "2. Kill recovery: one sync of a {}-file repository (generated in {} s, not counted) \
             per line, 1 worker process at a time (concurrency {}); worker A is SIGKILLed once \
             the ledger shows current_phase = import with a checkpoint of at least {} files \
             (--kill-at {}), and worker B is started right after. A ran = A's claim to the kill; \
             lease left = A's last renewal + TTL - kill time (from the ledger); expiry -> claim \
             = until B claims the sync, negative when B took the lease over before it expired (the \
             reconciler pushes a running sync again within 200 ms of its worker's advisory lock \
             going free with the worker's connection, and B, taking the lock, takes the lease \
             over; else once the lease has expired); claim -> \
             succeeded = the rest of the import from A's checkpoint, and the phases after it. \
             Times seen by the 10 ms ledger poll. uninterrupted s = the same first import without a \
             kill, afterwards, in a fresh database by a fresh worker process, claim to end; killed run s = the killed sync from A's claim to its end; kill cost s = \
             the difference, what the kill added (claims from the ledger, ends seen by the \
             poll).",
            k.files,
            secs(big_generated_in),
            k.worker.worker.concurrency,
            (args.kill_at * args.kill_files as f64) as u64,
            args.kill_at,
        )
        .unwrap();
    }
    let mut t = Table::new(&[
        "worker settings",
        "lease TTL s",
        "reconcile ms",
        "redeliver s",
        "A ran s",
        "checkpoint at kill",
        "lease left s",
        "expiry -> claim s",
        "claim -> succeeded s",
        "kill -> succeeded s",
        "uninterrupted s",
        "killed run s",
        "kill cost s",
    ]);
    for k in kills {
        let claim_s = k.kill_to_claim.as_secs_f64();
        t.row(vec![
            k.label.clone(),
            k.worker.worker.lease_ttl_secs.to_string(),
            k.worker.worker.reconcile_interval_ms.to_string(),
            k.worker.worker.redeliver_after_secs.to_string(),
            format!("{:.3}", k.run_before_kill_ms / 1e3),
            format!("{} of {}", k.checkpoint_at_kill, k.files),
            format!("{:.3}", k.kill_to_expiry_ms / 1e3),
            format!("{:.3}", claim_s - k.kill_to_expiry_ms / 1e3),
            secs(k.kill_to_done - k.kill_to_claim),
            secs(k.kill_to_done),
            format!("{:.3}", k.uninterrupted_ms / 1e3),
            format!("{:.3}", k.killed_run_ms / 1e3),
            format!("{:.3}", k.overhead_s()),
        ]);
    }
    out.push_str(&t.render());
    writeln!(out).unwrap();

    if let Some(first) = throughputs.first() {
        writeln!(
            out,
            "3. Throughput: {} syncs of {} projects on the same {}-file repository, enqueued at \
             once (one after another as fast as the service layer goes), with N worker \
             processes of concurrency {} each (other settings: defaults); wall = first enqueue \
             to the last sync's end in the ledger (a count of the ended syncs every 50 ms says when to read it); {} warm-up syncs per worker \
             process not counted. Queue wait = created_at -> started_at, run = started_at -> \
             finished_at, from the ledger.",
            first.syncs, first.syncs, args.files, first.concurrency, WARM_UP_PER_PROCESS,
        )
        .unwrap();
    }
    let base = throughputs
        .iter()
        .find(|t| t.processes == 1)
        .map(|t| t.syncs as f64 / t.wall.as_secs_f64());
    let mut t = Table::new(&[
        "worker processes",
        "enqueue all s",
        "wall s",
        "syncs/s",
        "vs 1 process",
        "queue wait p50 ms",
        "queue wait max ms",
        "run p50 ms",
        "run p99 ms",
    ]);
    for tp in throughputs {
        let rate = tp.syncs as f64 / tp.wall.as_secs_f64();
        t.row(vec![
            tp.processes.to_string(),
            secs(tp.enqueue_all),
            secs(tp.wall),
            format!("{rate:.1}"),
            base.map_or("-".into(), |b| format!("{:.2}x", rate / b)),
            ms(percentile(&tp.queue_wait_ms, 0.5)),
            ms(percentile(&tp.queue_wait_ms, 1.0)),
            ms(percentile(&tp.run_ms, 0.5)),
            ms(percentile(&tp.run_ms, 0.99)),
        ]);
    }
    out.push_str(&t.render());
    out
}
