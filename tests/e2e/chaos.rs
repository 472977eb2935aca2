//! Chaos: killed workers, Redis restarted or flushed, database connections
//! terminated, duplicate deliveries, cancellation, shutdown and retries.
//! Every case is bounded in time, and ends with the entries equal to the
//! expected tree: no version lost, none duplicated.

use crate::helpers::{expected_entries, spawn_app_full, CountingSources, TestApp};
use projsync::Settings;
use projsync_domain::SyncId;
use projsync_test_support::GitRepo;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Fast timings: a dead worker's sync is taken over within about 2 s.
pub(crate) fn fast(s: &mut Settings) {
    s.worker.lease_ttl_secs = 2;
    s.worker.reconcile_interval_ms = 200;
    s.worker.redeliver_after_secs = 1;
    s.worker.retry_min_delay_ms = 100;
    s.worker.retry_max_delay_secs = 1;
    s.worker.import_batch_size = 4;
    s.redis.heartbeat_interval_secs = 1;
    s.redis.missed_heartbeats = 2;
    s.redis.poll_interval_ms = 50;
}

/// A `projsync worker` process of the app's deployment.
pub(crate) struct WorkerProc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl WorkerProc {
    fn spawn(app: &TestApp, failpoint: Option<&str>) -> Self {
        Self::spawn_with(app, failpoint, &[])
    }

    /// With extra `PROJSYNC__*` settings (they win over the test's).
    pub(crate) fn spawn_with(
        app: &TestApp,
        failpoint: Option<&str>,
        env: &[(&str, String)],
    ) -> Self {
        let s = &app.settings;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_projsync"));
        for (key, _) in std::env::vars() {
            if key.starts_with("PROJSYNC") {
                cmd.env_remove(key);
            }
        }
        cmd.arg("worker")
            .env("RUST_LOG", "info")
            .env("PROJSYNC__DATABASE__URL", &s.database.url)
            .env("PROJSYNC__DATABASE__ADMIN_URL", &s.database.admin_url)
            .env(
                "PROJSYNC__SOURCES__LOCAL__ALLOWED_ROOTS",
                s.sources.local.allowed_roots.join(","),
            )
            .env("PROJSYNC__REDIS__URL", &s.redis.url)
            .env("PROJSYNC__REDIS__NAMESPACE", &s.redis.namespace)
            .env("PROJSYNC__EMBEDDINGS__ENABLED", "false")
            .env("PROJSYNC__WORKER__LISTEN", "127.0.0.1:0")
            .env(
                "PROJSYNC__REDIS__HEARTBEAT_INTERVAL_SECS",
                s.redis.heartbeat_interval_secs.to_string(),
            )
            .env(
                "PROJSYNC__REDIS__MISSED_HEARTBEATS",
                s.redis.missed_heartbeats.to_string(),
            )
            .env(
                "PROJSYNC__REDIS__POLL_INTERVAL_MS",
                s.redis.poll_interval_ms.to_string(),
            )
            .env(
                "PROJSYNC__WORKER__LEASE_TTL_SECS",
                s.worker.lease_ttl_secs.to_string(),
            )
            .env(
                "PROJSYNC__WORKER__RECONCILE_INTERVAL_MS",
                s.worker.reconcile_interval_ms.to_string(),
            )
            .env(
                "PROJSYNC__WORKER__REDELIVER_AFTER_SECS",
                s.worker.redeliver_after_secs.to_string(),
            )
            .env(
                "PROJSYNC__WORKER__IMPORT_BATCH_SIZE",
                s.worker.import_batch_size.to_string(),
            )
            .env(
                "PROJSYNC__WORKER__RETRY_MIN_DELAY_MS",
                s.worker.retry_min_delay_ms.to_string(),
            )
            .env("PROJSYNC__WORKER__TAKEOVER", s.worker.takeover.to_string())
            .env("PROJSYNC__WORKER__SHUTDOWN_TIMEOUT_SECS", "10")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(fp) = failpoint {
            cmd.env("PROJSYNC_FAILPOINT", fp);
        }
        for (key, value) in env {
            cmd.env(key, value);
        }
        let mut child = cmd.spawn().expect("spawn worker");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    pub(crate) async fn wait_for_line(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().ok();
    }

    /// SIGTERM, then wait (bounded) for the exit.
    pub(crate) async fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "worker did not exit within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll the ledger (tolerating a database that is briefly away) until the
/// sync ends.
pub(crate) async fn wait_done(app: &TestApp, sync_id: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    let id: SyncId = sync_id.parse().unwrap();
    loop {
        if let Ok(s) = app.db.store.sync(id).await {
            if s.status.is_terminal() {
                return serde_json::to_value(&s).unwrap();
            }
        }
        assert!(
            Instant::now() < deadline,
            "sync {sync_id} did not end in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn phase_of(app: &TestApp, sync_id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT current_phase FROM project_syncs WHERE id = $1::uuid")
        .bind(sync_id)
        .fetch_one(&app.db.admin)
        .await
        .ok()
        .flatten()
}

async fn wait_phase(app: &TestApp, sync_id: &str, phase: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while phase_of(app, sync_id).await.as_deref() != Some(phase) {
        assert!(Instant::now() < deadline, "sync never reached {phase}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// No path has two active versions, and the sync wrote exactly the versions
/// it counts as imported.
pub(crate) async fn assert_no_duplicates(app: &TestApp, sync: &Value) {
    let pool = &app.db.admin;
    let dups: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT project_id, path FROM memory_entries WHERE status = 'active' \
         GROUP BY project_id, path HAVING count(*) > 1) d",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(dups, 0);
    let written: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM memory_entries WHERE created_by_sync_id = $1::uuid AND kind = 'file'",
    )
    .bind(sync["id"].as_str().unwrap())
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        written,
        sync["stats"]["imported"].as_i64().unwrap(),
        "{sync}"
    );
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM memory_entries WHERE status = 'pending'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(pending, 0);
}

pub(crate) fn repo_with(files: usize, version: &str) -> GitRepo {
    let repo = GitRepo::new();
    write_version(&repo, files, version);
    repo.commit(version);
    repo
}

fn write_version(repo: &GitRepo, files: usize, version: &str) {
    for i in 0..files {
        // Every third file changes between versions.
        let v = if i % 3 == 0 { version } else { "stable" };
        repo.write(&format!("d{}/f{i:03}.txt", i % 7), format!("{v} {i}\n"));
    }
}

/// Start a worker that stops dead at failure point `point`, SIGKILL it
/// there, and start a healthy one in its place. Returns the new worker and
/// when the old one was killed.
async fn kill_at_then_rescue(
    app: &TestApp,
    point: &str,
    env: &[(&str, String)],
) -> (WorkerProc, Instant) {
    let mut doomed = WorkerProc::spawn_with(app, Some(point), env);
    assert!(
        doomed
            .wait_for_line(
                &format!("FAILPOINT {} reached", point.split('@').next().unwrap()),
                Duration::from_secs(30)
            )
            .await,
        "failpoint {point} never reached:\n{}",
        doomed.log()
    );
    doomed.kill9();
    let killed_at = Instant::now();
    (WorkerProc::spawn_with(app, None, env), killed_at)
}

async fn kill_at_points(points: &[&str]) {
    let app = spawn_app_full(None, fast).await;
    let repo = repo_with(30, "v0");
    let project = app.create_project("chaos", repo.path(), "main").await;
    {
        let _w = WorkerProc::spawn(&app, None);
        let first = app.enqueue(&project, None).await;
        assert_eq!(
            wait_done(&app, &first, Duration::from_secs(30)).await["status"],
            "succeeded"
        );
    }
    for (i, point) in points.iter().enumerate() {
        write_version(&repo, 30, &format!("v{}", i + 1));
        repo.write(&format!("new/{i}.txt"), point);
        let head = repo.commit(point);
        let sync_id = app.enqueue(&project, None).await;
        let (rescuer, killed_at) = kill_at_then_rescue(&app, point, &[]).await;
        let sync = wait_done(&app, &sync_id, Duration::from_secs(30)).await;
        assert_eq!(
            sync["status"],
            "succeeded",
            "after a kill at {point}: {sync}\n{}",
            rescuer.log()
        );
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "recovery took {:?}",
            killed_at.elapsed()
        );
        assert_eq!(sync["head_commit"], head.as_str());
        assert_eq!(
            app.active_entries(&project).await,
            expected_entries(repo.files_at(&head), &[]),
            "entries after a kill at {point}"
        );
        assert_no_duplicates(&app, &sync).await;
    }
}

/// A worker SIGKILLed mid-import with a lease of an hour: its advisory lock
/// goes with its connection, so the sync is pushed again at once and the
/// next worker takes the lease over (a higher fence) long before it would
/// expire (migrations/0009_takeover.sql). The wait is bounded far below the
/// lease; no time is asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_import_is_taken_over_before_the_lease_expires() {
    let app = spawn_app_full(None, |s| {
        fast(s);
        s.worker.lease_ttl_secs = 3600;
        s.worker.redeliver_after_secs = 3600;
        s.worker.takeover = true;
    })
    .await;
    let repo = repo_with(30, "v0");
    let project = app.create_project("takeover", repo.path(), "main").await;
    let sync_id = app.enqueue(&project, None).await;
    let (rescuer, _) = kill_at_then_rescue(&app, "import.batch_written@2", &[]).await;
    let sync = wait_done(&app, &sync_id, Duration::from_secs(60)).await;
    assert_eq!(sync["status"], "succeeded", "{sync}\n{}", rescuer.log());
    assert!(
        sync["fence"].as_i64().unwrap() >= 2,
        "taken over with a higher fence: {sync}"
    );
    assert_eq!(
        app.active_entries(&project).await,
        expected_entries(repo.files_at("HEAD"), &[])
    );
    assert_no_duplicates(&app, &sync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_before_and_during_prepare_and_scan() {
    kill_at_points(&[
        "claim.after",
        "prepare.started",
        "prepare.resolved",
        "prepare.done",
        "scan.tree_read",
        "scan.plan_written",
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_import_and_finalize() {
    kill_at_points(&[
        "import.started",
        "import.fetched@2",
        "import.batch_written@3",
        "import.done",
        "finalize.before_commit",
        "finalize.committed",
        "progress.recorded@6",
    ])
    .await;
}

/// Python modules, every third of which changes between versions.
fn write_code(repo: &GitRepo, files: usize, version: &str) {
    for i in 0..files {
        let v = if i % 3 == 0 { version } else { "stable" };
        repo.write(
            &format!("pkg/m{i:02}.py"),
            format!("def f{i}():\n    return \"{v}\"\n\n\ndef g{i}():\n    return {i}\n"),
        );
    }
}

/// The active symbols of a project: qualified name → content hash.
async fn active_symbols(app: &TestApp, project: &str) -> BTreeMap<String, String> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT path, content_hash FROM memory_entries WHERE project_id = $1::uuid \
         AND kind = 'symbol' AND status = 'active'",
    )
    .bind(project)
    .fetch_all(&app.db.admin)
    .await
    .unwrap();
    rows.into_iter().collect()
}

/// What the analyser reads in a tree's files: qualified name → content hash.
fn symbols_of(files: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, String> {
    files
        .iter()
        .filter_map(|(path, bytes)| {
            projsync_analyze::analyze(path, bytes, &projsync_analyze::Limits::default()).ok()
        })
        .flat_map(|a| a.symbols)
        .map(|s| (s.qualified_name, s.content_hash))
        .collect()
}

/// A worker killed in the analyze phase: another one resumes from the last
/// written batch, and the active symbols are exactly those of the head's
/// files, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_analyze_resumes_and_leaves_exactly_the_heads_symbols() {
    let env = [("PROJSYNC__ANALYSIS__BATCH_FILES", "4".to_string())];
    let app = spawn_app_full(None, fast).await;
    let repo = GitRepo::new();
    write_code(&repo, 30, "v0");
    repo.commit("v0");
    let project = app
        .create_project("chaos-analyze", repo.path(), "main")
        .await;
    {
        let _w = WorkerProc::spawn_with(&app, None, &env);
        let first = app.enqueue(&project, None).await;
        let first = wait_done(&app, &first, Duration::from_secs(30)).await;
        assert_eq!(first["status"], "succeeded", "{first}");
        assert_eq!(first["stats"]["analyzed_files"], 30, "{first}");
    }
    for (i, point) in [
        "analyze.started",
        "analyze.batch_written@2",
        "analyze.done",
        // Body edits give the docs phase no module to look at (the files'
        // doc digests are unchanged), so no batch: killed as it starts.
        "docs.started",
    ]
    .into_iter()
    .enumerate()
    {
        write_code(&repo, 30, &format!("v{}", i + 1));
        let head = repo.commit(point);
        let sync_id = app.enqueue(&project, None).await;
        let (rescuer, _) = kill_at_then_rescue(&app, point, &env).await;
        let sync = wait_done(&app, &sync_id, Duration::from_secs(30)).await;
        assert_eq!(
            sync["status"],
            "succeeded",
            "after a kill at {point}: {sync}\n{}",
            rescuer.log()
        );
        assert_eq!(
            active_symbols(&app, &project).await,
            symbols_of(repo.files_at(&head)),
            "symbols after a kill at {point}"
        );
        // Ten files changed, one function each; the module's doc lists
        // signatures, which did not change.
        assert_eq!(sync["stats"]["symbols_changed"], 10, "{point}: {sync}");
        assert_eq!(sync["stats"]["docs_regenerated"], 0, "{point}: {sync}");
        assert_no_duplicates(&app, &sync).await;
    }
}

/// A worker killed in the embed phase: another one resumes from the last
/// written batch, every active chunk ends with its vector, and a chunk is
/// sent to the model again only if the kill came between the call and the
/// write of its batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_embed_resumes_from_the_last_batch() {
    let fake = projsync_test_support::FakeOpenAi::start().await;
    let env = [
        ("PROJSYNC__EMBEDDINGS__ENABLED", "true".to_string()),
        ("PROJSYNC__EMBEDDINGS__PROVIDER", "openai".to_string()),
        ("PROJSYNC__EMBEDDINGS__BASE_URL", fake.base_url()),
        (
            "PROJSYNC__EMBEDDINGS__MODEL",
            projsync_test_support::fake_openai::DEFAULT_MODEL.to_string(),
        ),
        ("PROJSYNC__EMBEDDINGS__BATCH_SIZE", "4".to_string()),
    ];
    let app = spawn_app_full(None, fast).await;
    let repo = repo_with(30, "v0");
    let project = app.create_project("chaos-embed", repo.path(), "main").await;
    for (i, (point, resent)) in [
        ("embed.chunks_written", 0),
        ("embed.batch_written@3", 0),
        ("embed.before_call@2", 0),
        ("embed.called@2", 4),
    ]
    .into_iter()
    .enumerate()
    {
        write_version(&repo, 30, &format!("e{i}"));
        let head = repo.commit(point);
        fake.reset_counts();
        let sync_id = app.enqueue(&project, None).await;
        let (rescuer, _) = kill_at_then_rescue(&app, point, &env).await;
        let sync = wait_done(&app, &sync_id, Duration::from_secs(30)).await;
        assert_eq!(
            sync["status"],
            "succeeded",
            "{point}: {sync}\n{}",
            rescuer.log()
        );
        assert_eq!(
            app.active_entries(&project).await,
            expected_entries(repo.files_at(&head), &[]),
        );
        let stats = &sync["stats"];
        let (chunks, embedded, hits) = (
            stats["chunks"].as_u64().unwrap(),
            stats["embedded"].as_u64().unwrap(),
            stats["embedding_cache_hits"].as_u64().unwrap(),
        );
        assert_eq!(embedded + hits, chunks, "{point}: {stats}");
        assert_eq!(
            fake.inputs_embedded(),
            embedded + resent,
            "{point}: the model saw each new chunk once (plus the batch in flight at the kill)"
        );
        let missing: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM memory_chunks c JOIN memory_entries m ON m.id = c.entry_id \
             WHERE m.status = 'active' AND NOT EXISTS (SELECT 1 FROM embeddings v \
                 WHERE v.content_hash = c.content_hash)",
        )
        .fetch_one(&app.db.admin)
        .await
        .unwrap();
        assert_eq!(missing, 0, "{point}");
        assert_no_duplicates(&app, &sync).await;
    }
}

/// A Redis server of the test's own, on a spare port, that it can restart.
struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Self::spawn(port);
        Self { port, child }
    }

    fn spawn(port: u16) -> Child {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/services.sh)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "own redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        std::thread::sleep(Duration::from_millis(300));
        self.child = Self::spawn(self.port);
    }

    async fn flushall(&self) {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_and_flushall_during_syncs() {
    let mut redis = OwnRedis::start();
    let url = redis.url();
    let sources = CountingSources::default();
    sources.set_read_delay(Duration::from_millis(40));
    let app = spawn_app_full(Some(Arc::new(sources.clone())), |s| {
        fast(s);
        s.redis.url = url.clone();
        s.worker.concurrency = 1;
    })
    .await;
    let repo_a = repo_with(120, "a1");
    let repo_b = repo_with(10, "b1");
    let a = app.create_project("redis-a", repo_a.path(), "main").await;
    let b = app.create_project("redis-b", repo_b.path(), "main").await;

    // Restart Redis while a sync imports.
    let s1 = app.enqueue(&a, None).await;
    wait_phase(&app, &s1, "import", Duration::from_secs(30)).await;
    redis.restart();
    let done = wait_done(&app, &s1, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        app.active_entries(&a).await,
        expected_entries(repo_a.files_at("HEAD"), &[])
    );

    // FLUSHALL while one sync imports and another waits in the queue: the
    // waiting job is gone from Redis, the ledger still has it.
    write_version(&repo_a, 120, "a2");
    repo_a.commit("a2");
    let s2 = app.enqueue(&a, None).await;
    wait_phase(&app, &s2, "import", Duration::from_secs(30)).await;
    let s3 = app.enqueue(&b, None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    redis.flushall().await;
    for (sync, project, repo) in [(&s2, &a, &repo_a), (&s3, &b, &repo_b)] {
        let done = wait_done(&app, sync, Duration::from_secs(60)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(
            app.active_entries(project).await,
            expected_entries(repo.files_at("HEAD"), &[])
        );
        assert_no_duplicates(&app, &done).await;
    }

    // The worker is still alive after both outages.
    sources.set_read_delay(Duration::ZERO);
    write_version(&repo_b, 10, "b2");
    repo_b.commit("b2");
    let s4 = app.enqueue(&b, None).await;
    assert_eq!(
        wait_done(&app, &s4, Duration::from_secs(30)).await["status"],
        "succeeded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_connections_terminated_mid_import() {
    let sources = CountingSources::default();
    sources.set_read_delay(Duration::from_millis(30));
    let app = spawn_app_full(Some(Arc::new(sources.clone())), fast).await;
    let repo = repo_with(90, "v1");
    let project = app.create_project("pgkill", repo.path(), "main").await;
    let sync_id = app.enqueue(&project, None).await;
    wait_phase(&app, &sync_id, "import", Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let admin = projsync_test_support::admin_database_url();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    for _ in 0..2 {
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&app.db.name)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert!(!killed.is_empty());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let sync = wait_done(&app, &sync_id, Duration::from_secs(60)).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    assert_eq!(
        app.active_entries(&project).await,
        expected_entries(repo.files_at("HEAD"), &[])
    );
    assert_no_duplicates(&app, &sync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_delivery_has_exactly_one_writer() {
    let sources = CountingSources::default();
    sources.set_read_delay(Duration::from_millis(20));
    let app = spawn_app_full(Some(Arc::new(sources.clone())), fast).await;
    // A second worker of the same deployment.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _guard = shutdown.clone().drop_guard();
    projsync::app::spawn_worker_with(
        &app.settings,
        app.db.store.clone(),
        Arc::new(sources.clone()),
        shutdown,
    )
    .await
    .unwrap();
    let repo = repo_with(60, "v1");
    let project = app.create_project("dup", repo.path(), "main").await;
    let sync_id = app.enqueue(&project, None).await;
    let queue = projsync_queue::JobQueue::connect(&app.settings.queue_options())
        .await
        .unwrap();
    let id: SyncId = sync_id.parse().unwrap();
    queue.push(id).await.unwrap();
    queue.push(id).await.unwrap();

    let sync = wait_done(&app, &sync_id, Duration::from_secs(60)).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    assert_eq!(
        sync["fence"], 1,
        "one claim: the duplicates found the lease taken"
    );
    assert_eq!(
        app.active_entries(&project).await,
        expected_entries(repo.files_at("HEAD"), &[])
    );
    assert_no_duplicates(&app, &sync).await;
    // Every blob was read once.
    let reads = sources.take_reads();
    let unique: std::collections::BTreeSet<_> = reads.iter().collect();
    assert_eq!(reads.len(), unique.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_lost_its_lease_cannot_write() {
    let app = spawn_app_full(None, fast).await;
    let repo = repo_with(3, "v1");
    let project = app.create_project("fence", repo.path(), "main").await;
    let sync_id: SyncId = app.enqueue(&project, None).await.parse().unwrap();
    let store = &app.db.store;
    let ttl = Duration::from_secs(30);
    let projsync_store::ClaimOutcome::Claimed { claim: a, .. } =
        store.claim(sync_id, "worker-a", ttl).await.unwrap()
    else {
        panic!("first claim")
    };
    assert_eq!(
        store.claim(sync_id, "worker-b", ttl).await.unwrap(),
        projsync_store::ClaimOutcome::Unavailable,
        "a live lease keeps others out"
    );
    // Worker A is paused past its lease; B takes over with a higher fence.
    sqlx::query(
        "UPDATE project_syncs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
    )
    .bind(sync_id.0)
    .execute(&app.db.admin)
    .await
    .unwrap();
    let projsync_store::ClaimOutcome::Claimed { claim: b, .. } =
        store.claim(sync_id, "worker-b", ttl).await.unwrap()
    else {
        panic!("takeover")
    };
    assert!(b.fence > a.fence);
    let entry = projsync_store::NewEntry {
        path: "stale.txt".into(),
        content: "from a stale worker".into(),
        content_hash: "x".into(),
        blob_sha: "0".repeat(40),
        language: None,
        size: 1,
    };
    let err = store
        .write_import_batch(&a, &[entry], &[], json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, projsync_store::Error::LeaseLost(_)), "{err}");
    assert!(store.heartbeat(&a, ttl).await.unwrap() == projsync_store::Heartbeat::Lost);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM memory_entries")
        .fetch_one(&app.db.admin)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_import_leaves_the_knowledge_base_unchanged() {
    let sources = CountingSources::default();
    let app = spawn_app_full(Some(Arc::new(sources.clone())), fast).await;
    let repo = repo_with(90, "v1");
    let project = app.create_project("cancel", repo.path(), "main").await;
    let first = app.enqueue(&project, None).await;
    assert_eq!(
        wait_done(&app, &first, Duration::from_secs(30)).await["status"],
        "succeeded"
    );
    let before: BTreeMap<String, String> = app.active_entries(&project).await;

    write_version(&repo, 90, "v2");
    repo.commit("v2");
    sources.set_read_delay(Duration::from_millis(50));
    let sync_id = app.enqueue(&project, None).await;
    wait_phase(&app, &sync_id, "import", Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, body) = app
        .post(&format!("/syncs/{sync_id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["outcome"], "cancel_requested");
    let sync = wait_done(&app, &sync_id, Duration::from_secs(30)).await;
    assert_eq!(sync["status"], "cancelled", "{sync}");
    assert_eq!(app.active_entries(&project).await, before);
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM memory_entries WHERE status = 'pending'")
            .fetch_one(&app.db.admin)
            .await
            .unwrap();
    assert_eq!(pending, 0);
    let (_, detail) = app.get(&format!("/syncs/{sync_id}")).await;
    assert_eq!(detail["steps"][2]["status"], "cancelled", "{detail}");
    assert_eq!(detail["steps"][3]["status"], "cancelled");
    // Cancelling again is a conflict; a queued sync is cancelled at once.
    assert_eq!(
        app.post(&format!("/syncs/{sync_id}/cancel"), json!({}))
            .await
            .0,
        409
    );

    sources.set_read_delay(Duration::ZERO);
    let next = app.enqueue(&project, None).await;
    assert_eq!(
        wait_done(&app, &next, Duration::from_secs(30)).await["status"],
        "succeeded"
    );
    assert_eq!(
        app.active_entries(&project).await,
        expected_entries(repo.files_at("HEAD"), &[])
    );
}

/// A sync cancelled while queued ends without any progress event: its event
/// stream still ends at once (it waited for a final event that never comes,
/// found by the API fuzz).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_of_a_sync_cancelled_while_queued_ends() {
    // No worker: the sync stays queued until it is cancelled.
    let app = spawn_app_full(None, |_| {}).await;
    let repo = repo_with(3, "v1");
    let project = app.create_project("queued", repo.path(), "main").await;
    let sync_id = app.enqueue(&project, None).await;
    let (status, body) = app
        .post(&format!("/syncs/{sync_id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["outcome"], "cancelled");
    let (status, stream) = tokio::time::timeout(Duration::from_secs(10), async {
        let resp = app
            .http
            .get(format!("{}/syncs/{sync_id}/events", app.base))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    })
    .await
    .expect("the event stream of a cancelled sync ends");
    assert_eq!(status, 200);
    assert!(!stream.contains("data:"), "{stream}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_the_sync_back_and_another_worker_finishes_it() {
    let app = spawn_app_full(None, fast).await;
    let repo = repo_with(120, "v1");
    let project = app.create_project("sigterm", repo.path(), "main").await;
    let sync_id = app.enqueue(&project, None).await;
    // A slow first worker: 100 ms after every batch.
    let mut first = WorkerProc::spawn(&app, Some("import.batch_written=sleep:100"));
    wait_phase(&app, &sync_id, "import", Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = first.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}\n{}", first.log());
    let s: (String, Option<String>) =
        sqlx::query_as("SELECT status, lease_owner FROM project_syncs WHERE id = $1::uuid")
            .bind(&sync_id)
            .fetch_one(&app.db.admin)
            .await
            .unwrap();
    assert!(s.1.is_none(), "lease released: {s:?}");
    assert_eq!(s.0, "queued", "handed back to the queue");
    let _second = WorkerProc::spawn(&app, None);
    let sync = wait_done(&app, &sync_id, Duration::from_secs(30)).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    assert_eq!(
        app.active_entries(&project).await,
        expected_entries(repo.files_at("HEAD"), &[])
    );
    assert_no_duplicates(&app, &sync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_errors_retry_then_fail_and_ops_retry_resumes() {
    let sources = CountingSources::default();
    let app = spawn_app_full(Some(Arc::new(sources.clone())), |s| {
        fast(s);
        s.worker.max_attempts = 3;
    })
    .await;
    let repo = repo_with(20, "v1");
    let project = app.create_project("retry", repo.path(), "main").await;

    // Two failures, then success: the import step took three attempts.
    sources.fail_next_reads(2);
    let sync_id = app.enqueue(&project, None).await;
    let sync = wait_done(&app, &sync_id, Duration::from_secs(30)).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    let (_, detail) = app.get(&format!("/syncs/{sync_id}")).await;
    assert_eq!(detail["steps"][2]["attempts"], 3, "{detail}");

    // Always failing: after the last attempt the sync fails, saying why.
    write_version(&repo, 20, "v2");
    repo.commit("v2");
    sources.fail_next_reads(1000);
    let sync_id = app.enqueue(&project, None).await;
    let sync = wait_done(&app, &sync_id, Duration::from_secs(30)).await;
    assert_eq!(sync["status"], "failed", "{sync}");
    assert_eq!(sync["failed_phase"], "import");
    assert_eq!(sync["error_class"], "retryable");
    let msg = sync["error_message"].as_str().unwrap();
    assert!(
        msg.contains("connection reset") && msg.contains("gave up after 3 attempts"),
        "{msg}"
    );

    let (status, failed) = app.get("/syncs?status=failed").await;
    assert_eq!(status, 200);
    assert_eq!(failed.as_array().unwrap().len(), 1);

    // The cause is gone: retry from the failed phase; prepare and scan are not run again.
    sources.fail_next_reads(0);
    let (status, body) = app
        .post(&format!("/syncs/{sync_id}/retry"), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert!(
        body["progress"].is_null(),
        "the failed attempt's snapshot is cleared: {body}"
    );
    // A follower of the retried sync sees the new attempt to its end, not
    // the old failure.
    let stream = tokio::time::timeout(Duration::from_secs(30), async {
        app.http
            .get(format!("{}/syncs/{sync_id}/events", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
    .await
    .expect("the stream ends with the retried sync");
    let last = stream
        .split("\n\n")
        .filter_map(|b| b.lines().find_map(|l| l.strip_prefix("data:")))
        .last()
        .expect("events");
    let last: Value = serde_json::from_str(last.trim()).unwrap();
    assert_eq!(last["sync_status"], "succeeded", "{stream}");
    let sync = wait_done(&app, &sync_id, Duration::from_secs(30)).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    let (_, detail) = app.get(&format!("/syncs/{sync_id}")).await;
    assert_eq!(detail["steps"][0]["attempts"], 1, "{detail}");
    assert_eq!(detail["steps"][1]["attempts"], 1);
    assert_eq!(detail["retries"], 1);
    assert_eq!(
        app.active_entries(&project).await,
        expected_entries(repo.files_at("HEAD"), &[])
    );

    // Discard works on failed syncs only.
    assert_eq!(
        app.post(&format!("/syncs/{sync_id}/discard"), json!({}))
            .await
            .0,
        409
    );
}
