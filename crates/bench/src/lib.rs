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

/// How often the ledger is polled while a sync runs.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// [`Bench::run_sync`] polls every [`FINE_POLL_INTERVAL`] for this long
/// after the enqueue, then every [`POLL_INTERVAL`].
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
        let worker = projsync::app::spawn_worker_with(
            &bench.settings,
            bench.db.store.clone(),
            Arc::new(bench.sources.clone()),
            bench.shutdown.clone(),
        )
        .await?;
        bench.worker = Some(worker);
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
        tweak(&mut settings);
        settings.validate()?;
        let state = projsync::app::api_state(&settings, db.store.clone()).await?;
        Ok(Self {
            settings,
            state,
            sources: CountingSources::default(),
            shutdown: CancellationToken::new(),
            worker: None,
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
        let outcome = service::enqueue_sync(&self.state, project, None, None)
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
        let started = Instant::now();
        let id = self.enqueue(project).await?;
        let record = loop {
            let record = self.db.store.sync(id).await?;
            if record.status.is_terminal() {
                break record;
            }
            if started.elapsed() > SYNC_TIMEOUT {
                bail!("sync {id} did not end within {SYNC_TIMEOUT:?}");
            }
            // Every millisecond at first, so that a sync of a few tens of
            // milliseconds is not measured to the next 10 ms.
            let pause = if started.elapsed() < FINE_POLL_FOR {
                FINE_POLL_INTERVAL
            } else {
                POLL_INTERVAL
            };
            tokio::time::sleep(pause).await;
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
/// commit): 1 to 3 KB of text, different for every file and revision,
/// always valid UTF-8 without NUL bytes (so nothing is skipped).
pub fn generated_content(index: usize, revision: u32) -> String {
    let mut rng = Rng::new(((index as u64) << 20) ^ u64::from(revision) ^ 0x5eed);
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
