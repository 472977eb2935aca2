//! Shared harness for projsync's benchmark commands (`bench-sync`,
//! `bench-queue`; GitHub later). A benchmark is a command that prints
//! figures, not a timed test: it starts the real components — a fresh
//! migrated PostgreSQL database and a Redis namespace of its own (from
//! `projsync-test-support`), the API's service layer, and either a worker in
//! this process reading through [`CountingSources`] ([`Bench::start`]) or
//! real `projsync worker` processes ([`Bench::without_worker`] with
//! [`WorkerProcesses`]) — drives syncs the way a client does (create a
//! project, enqueue, poll the ledger until the sync ends) and measures wall
//! time and source reads. Nothing here is used by production code.

use anyhow::{anyhow, bail, Context, Result};
use projsync::Settings;
use projsync_api::service::{self, CreateProject, RepositoryInput};
use projsync_api::AppState;
use projsync_domain::{ProjectId, SyncId, SyncPhase, SyncStatus};
use projsync_metrics::{Metrics, Process};
use projsync_store::SyncRecord;
use projsync_test_support::{CountingSources, GitRepo, TestDb, TestRedis};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where benchmark repositories are made: the allowed local root.
pub fn local_root() -> String {
    let tmp = std::env::temp_dir();
    tmp.canonicalize()
        .unwrap_or(tmp)
        .to_string_lossy()
        .into_owned()
}

/// How often the ledger is polled while a sync runs (with the worker in
/// this process, only in case its count of ended syncs misses an end).
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// [`Bench::run_sync`] polls every [`FINE_POLL_INTERVAL`] for this long
/// after the enqueue, then every [`POLL_INTERVAL`]; with the worker in this
/// process, it looks at the worker's count of ended syncs that often and
/// reads the ledger when it moves.
pub const FINE_POLL_FOR: Duration = Duration::from_millis(250);
pub const FINE_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// A sync that runs longer than this is reported as stuck.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(1800);

/// Fail with a clear message, before anything is created, when PostgreSQL
/// (`PROJSYNC_TEST_DATABASE_URL`) or Redis (`PROJSYNC_TEST_REDIS_URL`) does
/// not answer.
pub async fn check_services() -> Result<()> {
    let mut settings = Settings::load(None)?;
    settings.database.url = projsync_test_support::admin_database_url();
    settings.database.admin_url = projsync_test_support::admin_database_url();
    settings.database.max_connections = 1;
    settings.redis.url = projsync_test_support::redis_url();
    let store = projsync::app::store(&settings).await.context(
        "PostgreSQL is unreachable (set PROJSYNC_TEST_DATABASE_URL, or run scripts/services.sh)",
    )?;
    projsync::app::api_state(&settings, store).await.context(
        "Redis is unreachable (set PROJSYNC_TEST_REDIS_URL, or run scripts/services.sh)",
    )?;
    Ok(())
}

/// The components of one benchmark run, all in this process.
pub struct Bench {
    pub settings: Settings,
    pub state: AppState,
    pub sources: CountingSources,
    shutdown: CancellationToken,
    worker: Option<JoinHandle<()>>,
    /// The in-process worker's metrics: [`Bench::run_sync`] learns that a
    /// sync ended from its count of ended syncs, not by polling the ledger.
    worker_metrics: Option<Metrics>,
    // Dropped last: the database and the Redis keys go with the run.
    pub redis: TestRedis,
    pub db: TestDb,
}

impl Bench {
    /// A fresh database and Redis namespace, the API state and one worker.
    /// `tweak` adjusts the settings (after the test database, Redis and a
    /// 20 ms queue poll interval have been set).
    pub async fn start(tweak: impl FnOnce(&mut Settings)) -> Result<Self> {
        Self::start_with(tweak, |_| async { Ok(None) }).await
    }

    /// [`Bench::start`] whose worker reads through `sources`, built from
    /// the run's settings (`None`: local repositories only, the default).
    pub async fn start_with<F, Fut>(tweak: impl FnOnce(&mut Settings), sources: F) -> Result<Self>
    where
        F: FnOnce(Settings) -> Fut,
        Fut: std::future::Future<Output = Result<Option<CountingSources>>>,
    {
        let mut bench = Self::without_worker(|s| {
            s.redis.poll_interval_ms = 20;
            tweak(s);
        })
        .await?;
        if let Some(sources) = sources(bench.settings.clone()).await? {
            bench.sources = sources;
        }
        let metrics = Metrics::new(Process::Worker);
        let worker = projsync::app::spawn_worker_on(
            &bench.settings,
            bench.db.store.clone(),
            Arc::new(bench.sources.clone()),
            metrics.clone(),
            None,
            bench.shutdown.clone(),
        )
        .await?;
        bench.worker = Some(worker);
        bench.worker_metrics = Some(metrics);
        Ok(bench)
    }

    /// A fresh database and Redis namespace and the API state, with no
    /// worker in this process: syncs are run by worker processes started
    /// with [`WorkerProcesses`]. `tweak` adjusts the settings (after the
    /// test database and Redis have been set).
    pub async fn without_worker(tweak: impl FnOnce(&mut Settings)) -> Result<Self> {
        check_services().await?;
        let db = TestDb::new().await;
        let redis = TestRedis::new();
        let mut settings = Settings::load(None)?;
        settings.database.url = db.url.clone();
        settings.database.admin_url = db.admin_url.clone();
        settings.sources.local.allowed_roots = vec![local_root()];
        settings.redis.url = redis.url.clone();
        settings.redis.namespace = redis.namespace.clone();
        // The in-process worker needs no health listener.
        settings.worker.listen = String::new();
        // As in [`default_settings`]: a benchmark turns the model on where
        // it measures it. (bench-github inherited the configured local
        // model, and its default run of 5,000 files spent more than ten
        // minutes embedding them on two cores.)
        settings.embeddings.enabled = false;
        tweak(&mut settings);
        settings.validate()?;
        let state = projsync::app::api_state(&settings, db.store.clone()).await?;
        Ok(Self {
            settings,
            state,
            sources: CountingSources::default(),
            shutdown: CancellationToken::new(),
            worker: None,
            worker_metrics: None,
            redis,
            db,
        })
    }

    /// [`default_settings`] pointed at this run's database and Redis
    /// namespace: what worker processes of this run are given.
    pub fn worker_settings(&self) -> Result<Settings> {
        let mut settings = default_settings()?;
        settings.database.url = self.db.url.clone();
        settings.database.admin_url = self.db.admin_url.clone();
        settings.sources.local.allowed_roots = vec![local_root()];
        settings.redis.url = self.redis.url.clone();
        settings.redis.namespace = self.redis.namespace.clone();
        Ok(settings)
    }

    /// Enqueue a sync of the project's default branch through the API's
    /// service layer; fails if the project already had an active sync.
    pub async fn enqueue(&self, project: ProjectId) -> Result<SyncId> {
        let outcome =
            service::enqueue_sync(&self.state, project, None, None, &self.state.trigger())
                .await
                .map_err(|e| anyhow!("enqueue a sync of project {project}: {e:?}"))?;
        if !outcome.created {
            bail!(
                "project {project} already had an active sync {}",
                outcome.sync.id
            );
        }
        Ok(outcome.sync.id)
    }

    /// Connect the local repository at `path` (branch `main`) as a new project.
    pub async fn create_project(&self, name: &str, repo: &GitRepo) -> Result<ProjectId> {
        let project = service::create_project(
            &self.state,
            CreateProject {
                name: name.to_string(),
                repository: RepositoryInput::Local {
                    path: repo.path().to_string_lossy().into_owned(),
                    branch: "main".into(),
                },
                ignore_patterns: Vec::new(),
                max_file_bytes: None,
                embeddings: None,
                analysis: None,
                schedule: None,
            },
        )
        .await
        .map_err(|e| anyhow!("create project {name}: {e:?}"))?;
        Ok(project.id)
    }

    /// Enqueue a sync of the project's default branch and wait for it to end;
    /// fails unless it succeeded. Reads are those made by this sync alone
    /// (syncs run one at a time here).
    pub async fn run_sync(&self, project: ProjectId) -> Result<SyncRun> {
        self.sources.take_reads();
        let trees_before = *self.sources.trees_read.lock().unwrap();
        let ended_before = self
            .worker_metrics
            .as_ref()
            .map(Metrics::syncs_finished_total);
        let started = Instant::now();
        let id = self.enqueue(project).await?;
        let mut last_read: Option<Instant> = None;
        let record = loop {
            // With the worker in this process, its count of ended syncs
            // says when to read the ledger: a 1 ms poll of the database
            // would take CPU from the run it measures on two cores (about
            // 10 ms of a 50 ms resync, measured). The ledger is still read
            // every `POLL_INTERVAL`, in case an end is not counted. Without
            // it, the ledger is polled every `FINE_POLL_INTERVAL` for
            // `FINE_POLL_FOR`, then every `POLL_INTERVAL`.
            let poll = if self.worker_metrics.is_some() || started.elapsed() >= FINE_POLL_FOR {
                POLL_INTERVAL
            } else {
                FINE_POLL_INTERVAL
            };
            let counted = match (&self.worker_metrics, ended_before) {
                (Some(m), Some(before)) => m.syncs_finished_total() > before,
                _ => false,
            };
            if counted || last_read.is_none_or(|at| at.elapsed() >= poll) {
                last_read = Some(Instant::now());
                let record = self.db.store.sync(id).await?;
                if record.status.is_terminal() {
                    break record;
                }
            }
            if started.elapsed() > SYNC_TIMEOUT {
                bail!("sync {id} did not end within {SYNC_TIMEOUT:?}");
            }
            // Every millisecond, so that a sync of a few tens of
            // milliseconds is not measured to the next 10 ms (the ledger is
            // read only when `poll` has passed, or the count moved).
            tokio::time::sleep(FINE_POLL_INTERVAL).await;
        };
        let wall = started.elapsed();
        let ended = SystemTime::now();
        check_succeeded(&record)?;
        let blob_reads = self.sources.take_reads().len() as u64;
        let tree_reads = *self.sources.trees_read.lock().unwrap() - trees_before;
        // Phase times from the step rows' `started_at` (set in a short
        // transaction as the phase begins): each phase lasts until the next
        // one starts, the last until the poller saw the end. The rows'
        // `finished_at` is not used: it is Postgres's `now()`, the start of
        // the phase's final transaction, not its commit.
        let mut started_phases: Vec<(SyncPhase, SystemTime)> = self
            .db
            .store
            .steps(id)
            .await?
            .into_iter()
            .filter_map(|s| s.started_at.map(|at| (s.phase, system_time(at))))
            .collect();
        started_phases.sort_by_key(|(_, at)| *at);
        let phases = started_phases
            .iter()
            .enumerate()
            .map(|(i, (phase, at))| {
                let until = started_phases.get(i + 1).map_or(ended, |(_, next)| *next);
                (*phase, until.duration_since(*at).unwrap_or_default())
            })
            .collect();
        let worker = record
            .started_at
            .and_then(|at| ended.duration_since(system_time(at)).ok());
        Ok(SyncRun {
            record,
            wall,
            worker,
            blob_reads,
            tree_reads,
            phases,
        })
    }

    /// Stop the worker and wait for it (the database and Redis keys are
    /// removed when the `Bench` is dropped).
    pub async fn stop(mut self) -> Result<()> {
        self.shutdown.cancel();
        if let Some(worker) = self.worker.take() {
            let wait = Duration::from_secs(self.settings.worker.shutdown_timeout_secs + 5);
            tokio::time::timeout(wait, worker)
                .await
                .context("the worker did not stop")?
                .context("the worker task failed")?;
        }
        Ok(())
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// What one sync did, as measured by the benchmark and recorded in the ledger.
#[derive(Debug, Clone)]
pub struct SyncRun {
    pub record: SyncRecord,
    /// Enqueue to terminal status seen by the poller (includes the queue's
    /// pick-up delay and up to one poll interval: 1 ms for the first
    /// 250 ms, then 10 ms).
    pub wall: Duration,
    /// From the sync's `started_at` in the ledger (the worker claimed it)
    /// to the end seen by the poller: `wall` less the queue's pick-up delay.
    pub worker: Option<Duration>,
    pub blob_reads: u64,
    pub tree_reads: u64,
    /// The phases that ran, in order, each from its start to the next
    /// one's (the last: to the end seen by the poller).
    pub phases: Vec<(SyncPhase, Duration)>,
}

impl SyncRun {
    pub fn files_per_sec(&self) -> f64 {
        self.record.stats.files_seen as f64 / self.wall.as_secs_f64()
    }

    /// `changed` or `unchanged`.
    pub fn outcome(&self) -> &str {
        self.record.outcome.as_deref().unwrap_or("-")
    }

    pub fn phase(&self, phase: SyncPhase) -> Option<Duration> {
        self.phases
            .iter()
            .find(|(p, _)| *p == phase)
            .map(|(_, d)| *d)
    }
}

/// Fails, saying how the sync ended, unless it succeeded.
pub fn check_succeeded(record: &SyncRecord) -> Result<()> {
    if record.status != SyncStatus::Succeeded {
        bail!(
            "sync {} ended {} in phase {:?}: {} ({})",
            record.id,
            record.status,
            record.failed_phase,
            record.error_message.as_deref().unwrap_or("no message"),
            record.error_class.as_deref().unwrap_or("no class"),
        );
    }
    Ok(())
}

/// A ledger timestamp on the system clock (Postgres runs on this machine).
pub fn system_time(at: chrono::DateTime<chrono::Utc>) -> SystemTime {
    let micros = at.timestamp_micros();
    if micros >= 0 {
        UNIX_EPOCH + Duration::from_micros(micros as u64)
    } else {
        UNIX_EPOCH
    }
}

/// The compiled-in defaults (`config/default.toml`) alone: no config file,
/// no `PROJSYNC__*` variables. What a user gets out of the box.
pub fn default_settings() -> Result<Settings> {
    const DEFAULTS: &str = include_str!("../../../config/default.toml");
    let mut settings: Settings = config::Config::builder()
        .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize())
        .context("config/default.toml")?;
    settings.validate()?;
    // The sync and queue benchmarks measure syncs, not the model: bench-embed
    // turns embeddings on where it measures them.
    settings.embeddings.enabled = false;
    Ok(settings)
}

/// The environment that gives a `projsync worker` process exactly these
/// settings (every key a worker reads, so that nothing comes from the
/// defaults by accident).
pub fn worker_env(settings: &Settings) -> Vec<(String, String)> {
    let (d, r, w) = (&settings.database, &settings.redis, &settings.worker);
    [
        ("DATABASE__URL", d.url.clone()),
        ("DATABASE__MAX_CONNECTIONS", d.max_connections.to_string()),
        (
            "DATABASE__CONNECT_TIMEOUT_SECS",
            d.connect_timeout_secs.to_string(),
        ),
        ("REDIS__URL", r.url.clone()),
        ("REDIS__NAMESPACE", r.namespace.clone()),
        (
            "REDIS__HEARTBEAT_INTERVAL_SECS",
            r.heartbeat_interval_secs.to_string(),
        ),
        ("REDIS__MISSED_HEARTBEATS", r.missed_heartbeats.to_string()),
        ("REDIS__POLL_INTERVAL_MS", r.poll_interval_ms.to_string()),
        (
            "REDIS__RESPONSE_TIMEOUT_MS",
            r.response_timeout_ms.to_string(),
        ),
        (
            "REDIS__CONNECT_TIMEOUT_MS",
            r.connect_timeout_ms.to_string(),
        ),
        ("WORKER__CONCURRENCY", w.concurrency.to_string()),
        // Several worker processes on this host: any free port each.
        ("WORKER__LISTEN", "127.0.0.1:0".to_string()),
        ("WORKER__LEASE_TTL_SECS", w.lease_ttl_secs.to_string()),
        ("WORKER__IMPORT_BATCH_SIZE", w.import_batch_size.to_string()),
        (
            "WORKER__SHUTDOWN_TIMEOUT_SECS",
            w.shutdown_timeout_secs.to_string(),
        ),
        ("WORKER__MAX_ATTEMPTS", w.max_attempts.to_string()),
        (
            "WORKER__RETRY_MIN_DELAY_MS",
            w.retry_min_delay_ms.to_string(),
        ),
        (
            "WORKER__RETRY_MAX_DELAY_SECS",
            w.retry_max_delay_secs.to_string(),
        ),
        (
            "WORKER__RECONCILE_INTERVAL_MS",
            w.reconcile_interval_ms.to_string(),
        ),
        (
            "WORKER__REDELIVER_AFTER_SECS",
            w.redeliver_after_secs.to_string(),
        ),
        (
            "SYNC__MAX_FILE_BYTES",
            settings.sync.max_file_bytes.to_string(),
        ),
        (
            "EMBEDDINGS__ENABLED",
            settings.embeddings.enabled.to_string(),
        ),
        ("EMBEDDINGS__PROVIDER", settings.embeddings.provider.clone()),
        ("EMBEDDINGS__MODEL", settings.embeddings.model.clone()),
        (
            "EMBEDDINGS__DIMENSIONS",
            settings.embeddings.dimensions.to_string(),
        ),
        ("EMBEDDINGS__BASE_URL", settings.embeddings.base_url.clone()),
        (
            "EMBEDDINGS__BATCH_SIZE",
            settings.embeddings.batch_size.to_string(),
        ),
        ("ANALYSIS__ENABLED", settings.analysis.enabled.to_string()),
        (
            "ANALYSIS__BATCH_FILES",
            settings.analysis.batch_files.to_string(),
        ),
        ("DOCS__ENABLED", settings.docs.enabled.to_string()),
        (
            "DOCS__BATCH_MODULES",
            settings.docs.batch_modules.to_string(),
        ),
        (
            "SOURCES__LOCAL__ALLOWED_ROOTS",
            settings.sources.local.allowed_roots.join(","),
        ),
        ("LOG__LEVEL", "warn".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("PROJSYNC__{k}"), v))
    .chain([(
        "RUST_LOG".to_string(),
        std::env::var("BENCH_WORKER_LOG").unwrap_or_else(|_| "warn".to_string()),
    )])
    .collect()
}

/// The `projsync` binary of the same build as the running benchmark (next
/// to it in `target/release` or `target/debug`).
pub fn projsync_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the benchmark executable")?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", exe.display()))?;
    let binary = dir.join(format!("projsync{}", std::env::consts::EXE_SUFFIX));
    if !binary.is_file() {
        bail!(
            "{} not found: the benchmark runs the real worker binary; build it first with \
             `cargo build --release -p projsync` (same profile as this benchmark)",
            binary.display()
        );
    }
    Ok(binary)
}

/// `projsync worker` child processes. Dropping this (a normal end, an
/// error, a panic) kills every one still running and reaps it, so that no
/// worker outlives the benchmark.
#[derive(Debug)]
pub struct WorkerProcesses {
    binary: PathBuf,
    log_dir: PathBuf,
    label: String,
    children: Vec<WorkerProcess>,
}

#[derive(Debug)]
struct WorkerProcess {
    child: Child,
    log: PathBuf,
    ended: bool,
}

impl WorkerProcesses {
    /// Workers of `binary`; each one's stdout and stderr go to
    /// `log_dir/{label}-worker-{n}.log`.
    pub fn new(binary: &Path, log_dir: &Path, label: &str) -> Self {
        Self {
            binary: binary.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            label: label.to_string(),
            children: Vec::new(),
        }
    }

    /// Start one more `projsync worker` with exactly `settings` (inherited
    /// `PROJSYNC*` variables are removed); returns its index.
    pub fn spawn(&mut self, settings: &Settings) -> Result<usize> {
        let index = self.children.len();
        let log = self
            .log_dir
            .join(format!("{}-worker-{index}.log", self.label));
        let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("worker");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PROJSYNC") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(worker_env(settings))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {} worker", self.binary.display()))?;
        self.children.push(WorkerProcess {
            child,
            log,
            ended: false,
        });
        Ok(index)
    }

    pub fn pid(&self, index: usize) -> u32 {
        self.children[index].child.id()
    }

    /// SIGKILL worker `index` and wait until it is gone.
    pub fn kill(&mut self, index: usize) -> Result<()> {
        let worker = &mut self.children[index];
        worker.child.kill().context("kill the worker")?;
        worker.child.wait().context("reap the worker")?;
        worker.ended = true;
        Ok(())
    }

    /// Fails, with the end of its log, if a worker that was not killed has
    /// exited.
    pub fn check_alive(&mut self) -> Result<()> {
        for (i, w) in self.children.iter_mut().enumerate() {
            if w.ended {
                continue;
            }
            if let Some(status) = w.child.try_wait()? {
                w.ended = true;
                let log = std::fs::read_to_string(&w.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "worker process {i} ({}) exited with {status}; the end of its log:\n{}",
                    w.log.display(),
                    tail.join("\n")
                );
            }
        }
        Ok(())
    }

    /// Wait until `count` workers of this queue have registered with it
    /// (apalis-redis's workers set), i.e. they are about to pull jobs.
    pub async fn wait_registered(&mut self, settings: &Settings, count: usize) -> Result<()> {
        let client = redis::Client::open(settings.redis.url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let key = format!("{}:workers", settings.queue_options().queue_name());
        let started = Instant::now();
        loop {
            let registered: usize = redis::cmd("ZCARD").arg(&key).query_async(&mut conn).await?;
            if registered >= count {
                return Ok(());
            }
            self.check_alive()?;
            if started.elapsed() > Duration::from_secs(30) {
                bail!("{registered} of {count} worker processes registered with the queue within 30 s; see their logs in {}", self.log_dir.display());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for WorkerProcesses {
    fn drop(&mut self) {
        for w in &mut self.children {
            if !w.ended {
                let _ = w.child.kill();
                let _ = w.child.wait();
                w.ended = true;
            }
        }
    }
}

/// Poll the ledger until the sync ends, failing early if a worker process
/// died on its own (or after [`SYNC_TIMEOUT`]).
pub async fn wait_for_end(
    bench: &Bench,
    workers: &mut WorkerProcesses,
    id: SyncId,
) -> Result<SyncRecord> {
    let started = Instant::now();
    loop {
        let record = bench.db.store.sync(id).await?;
        if record.status.is_terminal() {
            return Ok(record);
        }
        workers.check_alive()?;
        if started.elapsed() > SYNC_TIMEOUT {
            bail!("sync {id} did not end within {SYNC_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// `later - earlier` in milliseconds, negative if `later` is earlier.
pub fn ms_between(earlier: SystemTime, later: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
    }
}

/// The `q` quantile (0 < q <= 1) of `values` by the nearest-rank method:
/// the smallest value with at least `q` of all values at or below it.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A small deterministic pseudo-random generator (SplitMix64), so that the
/// generated repository is the same on every run and every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() - 1)]
    }
}

/// Files per directory in a generated repository.
pub const FILES_PER_DIR: usize = 100;

const EXTENSIONS: [&str; 6] = ["rs", "py", "ts", "go", "md", "txt"];

const WORDS: [&str; 48] = [
    "sync",
    "project",
    "branch",
    "commit",
    "tree",
    "blob",
    "entry",
    "memory",
    "ledger",
    "queue",
    "worker",
    "lease",
    "fence",
    "phase",
    "scan",
    "import",
    "finalize",
    "prepare",
    "plan",
    "diff",
    "path",
    "content",
    "hash",
    "version",
    "active",
    "pending",
    "batch",
    "checkpoint",
    "progress",
    "event",
    "retry",
    "error",
    "source",
    "repository",
    "store",
    "index",
    "record",
    "status",
    "stats",
    "filter",
    "language",
    "snapshot",
    "history",
    "restore",
    "heartbeat",
    "token",
    "channel",
    "payload",
];

/// The path of generated file `index`: `pkg_DDD/file_FFF.EXT`, 100 files a
/// directory.
pub fn generated_path(index: usize) -> String {
    let ext = EXTENSIONS[index % EXTENSIONS.len()];
    format!(
        "pkg_{:03}/file_{:03}.{ext}",
        index / FILES_PER_DIR,
        index % FILES_PER_DIR
    )
}

/// The content of generated file `index` at `revision` (0 for the first
/// commit): 1 to 3 KB, different for every file and revision, always valid
/// UTF-8 without NUL bytes (so nothing is skipped).
///
/// Files with a code extension (`.rs`, `.py`, `.ts`, `.go`) hold valid code
/// in their language (see [`generated_code`]), so that analysis finds
/// symbols in them; `.md` and `.txt` files hold lines of words, as every
/// file did before. Every file has the size it had then: a code file's is
/// filled up with comment lines to the same target, drawn first from the
/// same seed as before (at revision 0).
pub fn generated_content(index: usize, revision: u32) -> String {
    let path = generated_path(index);
    match CodeLang::of(&path) {
        Some(lang) => generated_code(lang, index, revision),
        None => generated_text(index, revision),
    }
}

/// How many of the first `files` generated files hold code (the others are
/// `.md` and `.txt` text, which analysis does not read).
pub fn generated_code_files(files: usize) -> usize {
    (0..files.min(EXTENSIONS.len()))
        .filter(|&i| CodeLang::of(&generated_path(i)).is_some())
        .map(|i| (files - i).div_ceil(EXTENSIONS.len()))
        .sum()
}

/// The seed of file `index` at `revision`, as it always was.
fn content_seed(index: usize, revision: u32) -> u64 {
    ((index as u64) << 20) ^ u64::from(revision) ^ 0x5eed
}

/// Lines of words behind a comment marker, to a target of 1 to 3 KB drawn
/// from the file's and revision's seed.
fn generated_text(index: usize, revision: u32) -> String {
    let mut rng = Rng::new(content_seed(index, revision));
    let target = rng.range(1024, 3072);
    let path = generated_path(index);
    let comment = match path.rsplit('.').next() {
        Some("py") => "#",
        Some("md" | "txt") => ">",
        _ => "//",
    };
    let mut out = format!("{comment} {path} (revision {revision})\n");
    while out.len() < target {
        let words = rng.range(3, 11);
        let line: Vec<&str> = (0..words).map(|_| *rng.pick(&WORDS)).collect();
        out.push_str(&format!(
            "{comment} {} {}\n",
            line.join(" "),
            rng.next_u64() % 10_000
        ));
    }
    out
}

/// The languages generated files are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CodeLang {
    Rust,
    Python,
    TypeScript,
    Go,
}

impl CodeLang {
    fn of(path: &str) -> Option<Self> {
        Some(match path.rsplit('.').next()? {
            "rs" => Self::Rust,
            "py" => Self::Python,
            "ts" => Self::TypeScript,
            "go" => Self::Go,
            _ => return None,
        })
    }

    fn comment(self) -> &'static str {
        match self {
            Self::Python => "#",
            _ => "//",
        }
    }
}

/// One function or method of a generated code file: all of it but its body
/// is the file's own, the same at every revision.
#[derive(Debug)]
struct GenFn {
    /// The first two words of its name (the third is its number).
    words: [&'static str; 2],
    number: usize,
    doc: String,
    /// Statements in its body (each one line), besides the first and last.
    lines: usize,
    method: bool,
}

/// At most this many bytes more in one function's body at a revision than at
/// revision 0 (its statements' two words are 4 to 10 bytes each, its
/// numbers four digits): room kept below the target so that a revision
/// never passes it but by its filler line.
const BODY_SLACK: usize = 160;

/// Up to this many methods in a file's type.
const MAX_METHODS: usize = 3;

/// Room a file's methods leave for its first free function.
const FN_RESERVE: usize = 400;

/// A code file: a comment naming it, the module's doc, a
/// type (Rust struct and impl, Python or TypeScript class, Go struct) with a
/// constructor and up to three documented methods, then documented free
/// functions, then comment lines up to the target size.
///
/// Everything but the bodies is drawn from the file's revision-0 seed, so
/// names, docs and the number of functions are the file's own at every
/// revision, and revision 0's target size is the one files always had.
/// Revision `r > 0` rewrites the body of function or method number
/// `r % n` (of the file's `n`, the constructor not counted) from a seed of
/// its own and leaves the others at their revision-0 bodies: a change from
/// revision `a` to `b` edits one or two function bodies, as a real edit
/// does, and never renames anything.
fn generated_code(lang: CodeLang, index: usize, revision: u32) -> String {
    let path = generated_path(index);
    let mut rng = Rng::new(content_seed(index, 0));
    let target = rng.range(1024, 3072);
    let package = format!("pkg_{:03}", index / FILES_PER_DIR);
    let type_words = [*rng.pick(&WORDS), *rng.pick(&WORDS)];
    let type_name = format!("{}{}", camel(type_words[0]), camel(type_words[1]));
    // No revision in it (unlike a text file's): projsync-analyze counts
    // the comments above a file's first item as that item's, so a header
    // that changed at every revision would edit that symbol too.
    let mut head = format!("{} {path}\n\n", lang.comment());
    let module_doc = sentence(&mut rng, 6, 14);
    head.push_str(&match lang {
        CodeLang::Rust => format!("//! {module_doc}\n\n"),
        CodeLang::Python => format!("\"\"\"{module_doc}\"\"\"\n\n"),
        CodeLang::TypeScript => format!("/** {module_doc} */\n\n"),
        CodeLang::Go => format!(
            "// Package {package} {}\npackage {package}\n\n",
            lowercase_first(&module_doc)
        ),
    });
    let type_doc = sentence(&mut rng, 4, 10);
    let (type_open, type_close) = type_block(lang, &type_name, &type_doc);
    let budget = target.saturating_sub(BODY_SLACK);
    let mut size = head.len() + type_open.len() + type_close.len();
    let mut fns: Vec<GenFn> = Vec::new();
    // Methods, then free functions, while revision 0 fits the budget (at
    // least one of each).
    let mut method = true;
    loop {
        let f = GenFn {
            words: [*rng.pick(&WORDS), *rng.pick(&WORDS)],
            number: fns.len() + 1,
            doc: sentence(&mut rng, 3, 9),
            lines: rng.range(1, 4),
            method,
        };
        let len = render_fn(lang, &f, &type_name, &mut body_rng(index, f.number, 0)).len();
        let first_of_kind = fns.iter().all(|g| g.method != method);
        let limit = if method {
            budget.saturating_sub(FN_RESERVE)
        } else {
            budget
        };
        if size + len > limit && !first_of_kind {
            if method {
                method = false;
                continue;
            }
            break;
        }
        size += len;
        fns.push(f);
        if method && fns.len() == MAX_METHODS {
            method = false;
        }
    }
    let changed = (revision > 0).then(|| revision as usize % fns.len() + 1);
    let render = |f: &GenFn| {
        let body_revision = if changed == Some(f.number) {
            revision
        } else {
            0
        };
        render_fn(
            lang,
            f,
            &type_name,
            &mut body_rng(index, f.number, body_revision),
        )
    };
    let mut out = head;
    out.push_str(&type_open);
    for f in fns.iter().filter(|f| f.method) {
        out.push_str(&render(f));
    }
    out.push_str(&type_close);
    for f in fns.iter().filter(|f| !f.method) {
        out.push_str(&render(f));
    }
    // Filler, the same words at every revision: the file's size then is its
    // target plus at most one short line.
    let comment = lang.comment();
    if out.len() < target {
        out.push('\n');
    }
    while out.len() < target {
        let words = rng.range(2, 5);
        let line: Vec<&str> = (0..words).map(|_| *rng.pick(&WORDS)).collect();
        out.push_str(&format!(
            "{comment} {} {}\n",
            line.join(" "),
            rng.next_u64() % 10_000
        ));
    }
    out
}

/// The seed of one function's body at `revision`.
fn body_rng(index: usize, number: usize, revision: u32) -> Rng {
    Rng::new(content_seed(index, revision) ^ ((number as u64) << 52) ^ 0xb0d7)
}

fn camel(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// `min..=max` words, capitalised, ending in a full stop.
fn sentence(rng: &mut Rng, min: usize, max: usize) -> String {
    let n = rng.range(min, max);
    let words: Vec<&str> = (0..n).map(|_| *rng.pick(&WORDS)).collect();
    format!("{}.", camel(&words.join(" ")))
}

/// The type's declaration and constructor, up to where its methods go, and
/// what closes it.
fn type_block(lang: CodeLang, name: &str, doc: &str) -> (String, String) {
    match lang {
        CodeLang::Rust => (
            format!(
                "/// {doc}\npub struct {name} {{\n    seed: u64,\n}}\n\nimpl {name} {{\n    \
                 /// A {name} starting from `seed`.\n    pub fn new(seed: u64) -> Self {{\n        \
                 Self {{ seed }}\n    }}\n"
            ),
            "}\n".into(),
        ),
        CodeLang::Python => (
            format!(
                "class {name}:\n    \"\"\"{doc}\"\"\"\n\n    def __init__(self, seed):\n        \
                 self.seed = seed\n"
            ),
            String::new(),
        ),
        CodeLang::TypeScript => (
            format!(
                "/** {doc} */\nexport class {name} {{\n  constructor(private readonly seed: number) {{}}\n"
            ),
            "}\n".into(),
        ),
        CodeLang::Go => (
            format!(
                "// {name} {}\ntype {name} struct {{\n\tseed uint64\n}}\n\n// New{name} returns a {name} starting from seed.\nfunc New{name}(seed uint64) *{name} {{\n\treturn &{name}{{seed: seed}}\n}}\n",
                lowercase_first(doc)
            ),
            String::new(),
        ),
    }
}

/// One function or method, a blank line before it; its body's statements
/// are drawn from `rng`.
fn render_fn(lang: CodeLang, f: &GenFn, type_name: &str, rng: &mut Rng) -> String {
    let [a, b] = f.words;
    let n = f.number;
    let mut statements = Vec::new();
    for _ in 0..f.lines {
        let (k, x, y) = (rng.range(1000, 9999), rng.pick(&WORDS), rng.pick(&WORDS));
        statements.push(match lang {
            CodeLang::Rust => {
                format!("acc = acc.wrapping_mul({k}).wrapping_add(\"{x} {y}\".len() as u64);")
            }
            CodeLang::Python => format!("acc = (acc * {k} + len(\"{x} {y}\")) % 1000003"),
            CodeLang::TypeScript => format!("acc = (acc * {k} + \"{x} {y}\".length) % 1000003;"),
            CodeLang::Go => format!("acc = acc*{k} + uint64(len(\"{x} {y}\"))"),
        });
    }
    let (indent, step) = match (lang, f.method) {
        (CodeLang::Go, _) => ("", "\t"),
        (CodeLang::Rust | CodeLang::Python, true) => ("    ", "    "),
        (CodeLang::Rust | CodeLang::Python, false) => ("", "    "),
        (CodeLang::TypeScript, true) => ("  ", "  "),
        (CodeLang::TypeScript, false) => ("", "  "),
    };
    let body_indent = format!("{indent}{step}");
    let doc = &f.doc;
    let (open, first, last, close) = match lang {
        CodeLang::Rust => {
            let (sig, init) = if f.method {
                (
                    format!("pub fn {a}_{b}_{n}(&self, input: u64) -> u64"),
                    "let mut acc = input ^ self.seed;",
                )
            } else {
                (
                    format!("pub fn {a}_{b}_{n}(input: u64) -> u64"),
                    "let mut acc = input;",
                )
            };
            (
                format!("{indent}/// {doc}\n{indent}{sig} {{\n"),
                init.to_string(),
                "acc".to_string(),
                format!("{indent}}}\n"),
            )
        }
        CodeLang::Python => {
            let (sig, init) = if f.method {
                (
                    format!("def {a}_{b}_{n}(self, value):"),
                    "acc = value ^ self.seed",
                )
            } else {
                (format!("def {a}_{b}_{n}(value):"), "acc = value")
            };
            (
                format!("{indent}{sig}\n{body_indent}\"\"\"{doc}\"\"\"\n"),
                init.to_string(),
                "return acc".to_string(),
                String::new(),
            )
        }
        CodeLang::TypeScript => {
            let name = format!("{a}{}{n}", camel(b));
            let (sig, init) = if f.method {
                (
                    format!("{name}(input: number): number"),
                    "let acc = input ^ this.seed;",
                )
            } else {
                (
                    format!("export function {name}(input: number): number"),
                    "let acc = input;",
                )
            };
            (
                format!("{indent}/** {doc} */\n{indent}{sig} {{\n"),
                init.to_string(),
                "return acc;".to_string(),
                format!("{indent}}}\n"),
            )
        }
        CodeLang::Go => {
            let name = format!("{}{}{n}", camel(a), camel(b));
            let (sig, init) = if f.method {
                (
                    format!("func (s *{type_name}) {name}(input uint64) uint64"),
                    "acc := input ^ s.seed",
                )
            } else {
                (format!("func {name}(input uint64) uint64"), "acc := input")
            };
            (
                format!("// {name} {}\n{sig} {{\n", lowercase_first(doc)),
                init.to_string(),
                "return acc".to_string(),
                "}\n".to_string(),
            )
        }
    };
    let mut out = format!("\n{open}");
    for line in std::iter::once(&first)
        .chain(&statements)
        .chain(std::iter::once(&last))
    {
        out.push_str(&format!("{body_indent}{line}\n"));
    }
    out.push_str(&close);
    out
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// A Git repository with `files` generated files on `main`, committed and
/// packed (`git repack -ad`), as a clone is: `git commit` leaves every
/// object loose, and reading 100,000 loose objects (a file each) is not
/// what a sync of a real repository reads.
pub fn generate_repo(files: usize) -> GitRepo {
    let repo = GitRepo::new();
    for i in 0..files {
        repo.write(&generated_path(i), generated_content(i, 0));
    }
    repo.commit(&format!("{files} generated files"));
    repo.git(&["repack", "-adq"]);
    repo
}

/// Rewrite the given files at `revision` and commit; returns the new head.
pub fn change_files(repo: &GitRepo, indices: &[usize], revision: u32) -> String {
    for &i in indices {
        repo.write(&generated_path(i), generated_content(i, revision));
    }
    repo.commit(&format!(
        "change {} files (revision {revision})",
        indices.len()
    ))
}

/// `count` indices spread evenly over `0..files`.
pub fn spread(files: usize, count: usize) -> Vec<usize> {
    let count = count.min(files);
    (0..count).map(|k| k * files / count).collect()
}

/// Seconds with three decimals.
pub fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// A plain-text table: columns padded to their widest cell, the first
/// column left-aligned and the others right-aligned.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|s| s.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) -> &mut Self {
        self.rows.push(cells);
        self
    }

    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, s)| {
                    if c == 0 {
                        format!("{s:<w$}", w = widths[c])
                    } else {
                        format!("{s:>w$}", w = widths[c])
                    }
                })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_are_deterministic_and_sized() {
        assert_eq!(generated_path(0), "pkg_000/file_000.rs");
        assert_eq!(generated_path(9_999), "pkg_099/file_099.go");
        for i in [0, 1, 57, 9_999] {
            let c = generated_content(i, 0);
            assert_eq!(c, generated_content(i, 0));
            assert_ne!(c, generated_content(i, 1));
            assert!((1024..=3200).contains(&c.len()), "{}", c.len());
            assert!(!c.contains('\0'));
        }
        assert_ne!(generated_content(1, 0), generated_content(2, 0));
        // Every extension, at revisions as bench-sync makes them.
        for i in (0..600).chain(99_400..100_000) {
            for revision in [0, 1, 2, 1000, 1006] {
                let c = generated_content(i, revision);
                assert!(
                    (1024..=3200).contains(&c.len()),
                    "{i}@{revision}: {}",
                    c.len()
                );
                assert!(!c.contains('\0'));
            }
        }
    }

    #[test]
    fn code_files_are_counted() {
        for files in [1, 5, 6, 7, 100, 2_000, 100_001] {
            let expected = (0..files)
                .filter(|&i| CodeLang::of(&generated_path(i)).is_some())
                .count();
            assert_eq!(generated_code_files(files), expected, "{files}");
        }
    }

    #[test]
    fn generated_text_files_are_as_before() {
        // .md and .txt files keep the content they always had.
        let c = generated_content(4, 0);
        assert!(
            c.starts_with("> pkg_000/file_004.md (revision 0)\n> "),
            "{c}"
        );
        assert!(c.lines().all(|l| l.starts_with("> ")));
    }

    #[test]
    fn generated_code_parses_and_a_revision_edits_a_function() {
        let limits = projsync_analyze::Limits::default();
        for i in [0, 1, 2, 3, 6, 7, 8, 9, 9_996, 9_997, 9_998, 9_999] {
            let path = generated_path(i);
            let parse = |revision| {
                projsync_analyze::analyze(&path, generated_content(i, revision).as_bytes(), &limits)
                    .unwrap_or_else(|skip| panic!("{path} skipped: {skip}"))
            };
            let before = parse(0);
            assert!(!before.partial, "{path} has syntax errors");
            let functions = before
                .symbols
                .iter()
                .filter(|s| s.kind.as_str() == "function" || s.kind.as_str() == "method")
                .count();
            assert!(functions >= 3, "{path}: {:?}", before.symbols);
            assert!(before.symbols.iter().any(|s| s.doc.is_some()), "{path}");
            for revision in [1, 2, 1000] {
                let after = parse(revision);
                assert!(!after.partial, "{path}@{revision} has syntax errors");
                let names = |a: &projsync_analyze::Analysis| {
                    a.symbols
                        .iter()
                        .map(|s| s.qualified_name.clone())
                        .collect::<Vec<_>>()
                };
                assert_eq!(names(&before), names(&after), "{path}@{revision}");
                let edited: Vec<_> = before
                    .symbols
                    .iter()
                    .zip(&after.symbols)
                    .filter(|(b, a)| b.content_hash != a.content_hash)
                    .map(|(b, _)| b.kind.as_str())
                    .collect();
                assert!(
                    !edited.is_empty() && edited.iter().all(|k| *k == "function" || *k == "method"),
                    "{path}@{revision}: {edited:?}"
                );
            }
        }
    }

    #[test]
    fn spread_is_even_and_bounded() {
        assert_eq!(spread(10_000, 1), vec![0]);
        let s = spread(10_000, 100);
        assert_eq!(s.len(), 100);
        assert_eq!(s[1], 100);
        assert_eq!(spread(50, 100).len(), 50);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 100.0);
        assert_eq!(percentile(&v, 0.99), 198.0);
        assert_eq!(percentile(&v, 1.0), 200.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }

    #[test]
    fn defaults_reach_the_worker_environment() {
        let s = default_settings().unwrap();
        let env = worker_env(&s);
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("PROJSYNC__WORKER__LEASE_TTL_SECS"), Some("20"));
        assert_eq!(get("PROJSYNC__REDIS__POLL_INTERVAL_MS"), Some("200"));
        assert_eq!(get("RUST_LOG"), Some("warn"));
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["a", "bb"]);
        t.row(vec!["long".into(), "1".into()]);
        assert_eq!(t.render(), "a     bb\nlong   1\n");
    }
}
