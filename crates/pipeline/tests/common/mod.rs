//! The harness of the pipeline's integration tests: a fresh database and
//! Redis namespace (test-support), a local Git repository read through
//! `CountingSources`, one project on it, and a `Pipeline` built as the
//! worker builds it, with short delays. Tests drive it through
//! `Pipeline::run`, or push jobs to a real queue consumer whose handler is
//! the pipeline, and read the outcome from the ledger.

// Each test binary uses its own part of the harness.
#![allow(dead_code)]

use projsync_domain::{PhaseStatus, ProjectId, SyncId, SyncPhase};
use projsync_pipeline::{Pipeline, PipelineOptions};
use projsync_queue::{JobQueue, Publisher, QueueOptions};
use projsync_store::{NewProject, Store, SyncRecord};
use projsync_test_support::{CountingSources, GitRepo, TestDb, TestRedis};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Bounds every wait; a healthy run of these repositories takes well
/// under a second.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How often the ledger is polled while waiting.
const POLL: Duration = Duration::from_millis(20);

/// A queue whose idle workers look for due (and delayed) jobs every 50 ms.
pub fn queue_options(redis: &TestRedis) -> QueueOptions {
    QueueOptions {
        url: redis.url.clone(),
        namespace: redis.namespace.clone(),
        heartbeat_interval: Duration::from_secs(5),
        missed_heartbeats: 3,
        poll_interval: Duration::from_millis(50),
        response_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
    }
}

/// Two files per import batch (several batches, checkpoints and events
/// per sync), quick retries, and no archive downloads.
pub fn pipeline_options(worker_name: &str) -> PipelineOptions {
    PipelineOptions {
        worker_name: worker_name.into(),
        lease_ttl: Duration::from_secs(30),
        import_batch_size: 2,
        import_batch_bytes: 1 << 20,
        max_file_bytes: 1 << 20,
        max_attempts: 3,
        retry_min_delay: Duration::from_millis(50),
        retry_max_delay: Duration::from_millis(200),
        archive_min_files: 10_000,
        archive_max_bytes: 1 << 28,
        plan_retention: Duration::from_secs(3600),
        progress_interval: Duration::from_millis(100),
    }
}

pub struct Harness {
    pub db: TestDb,
    pub redis: TestRedis,
    pub repo: GitRepo,
    pub sources: CountingSources,
    pub project: ProjectId,
    pub queue: JobQueue,
    pub pipeline: Pipeline,
    /// Stops the pipeline's runs and the workers the test spawned.
    pub shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Harness {
    /// A repository with `files` committed on `main`, and a project on it.
    pub async fn new(files: &[(&str, &str)]) -> Self {
        Self::with(files, |_| {}).await
    }

    /// [`Harness::new`] with the pipeline's options changed by `tweak`.
    pub async fn with(files: &[(&str, &str)], tweak: impl FnOnce(&mut PipelineOptions)) -> Self {
        let db = TestDb::new().await;
        let redis = TestRedis::new();
        let repo = GitRepo::new();
        for (path, content) in files {
            repo.write(path, content);
        }
        repo.commit("initial");
        let project = db
            .store
            .create_project(&NewProject::local(
                "pipeline-test",
                repo.path().to_string_lossy().into_owned(),
            ))
            .await
            .expect("create the project")
            .id;
        let sources = CountingSources::default();
        let opts = queue_options(&redis);
        let queue = JobQueue::connect(&opts).await.expect("connect the queue");
        let publisher = Publisher::connect(&opts)
            .await
            .expect("connect the publisher");
        let mut pipeline_opts = pipeline_options("test-worker");
        tweak(&mut pipeline_opts);
        let shutdown = CancellationToken::new();
        let pipeline = Pipeline::new(
            db.store.clone(),
            publisher,
            queue.clone(),
            Arc::new(sources.clone()),
            pipeline_opts,
            shutdown.clone(),
        );
        Self {
            db,
            redis,
            repo,
            sources,
            project,
            queue,
            pipeline,
            shutdown,
        }
    }

    pub fn store(&self) -> &Store {
        &self.db.store
    }

    pub fn queue_options(&self) -> QueueOptions {
        queue_options(&self.redis)
    }

    /// Record a sync of `main` (queued, no job pushed).
    pub async fn create_sync(&self) -> SyncId {
        let outcome = self
            .store()
            .create_sync(
                self.project,
                Some("main"),
                None,
                None,
                &projsync_domain::SyncTrigger::Api,
            )
            .await
            .expect("create a sync");
        assert!(outcome.created, "a sync of the project was still active");
        outcome.sync.id
    }

    /// Record a sync and ring the doorbell, as the API does.
    pub async fn enqueue(&self) -> SyncId {
        let id = self.create_sync().await;
        self.queue.push(id).await.expect("push the job");
        id
    }

    /// Record a sync and run it here to its end; returns it as it ended.
    pub async fn sync(&self) -> SyncRecord {
        let id = self.create_sync().await;
        self.pipeline.run(id).await;
        self.record(id).await
    }

    pub async fn record(&self, id: SyncId) -> SyncRecord {
        self.store().sync(id).await.expect("read the sync")
    }

    /// Each phase's status and attempts, in phase order.
    pub async fn steps(&self, id: SyncId) -> Vec<(SyncPhase, PhaseStatus, i32)> {
        self.store()
            .steps(id)
            .await
            .expect("read the steps")
            .into_iter()
            .map(|s| (s.phase, s.status, s.attempts))
            .collect()
    }

    /// Poll the ledger until `done` holds for the sync (bounded by
    /// [`PATIENCE`]); returns it then.
    pub async fn wait_until(
        &self,
        id: SyncId,
        what: &str,
        done: impl Fn(&SyncRecord) -> bool,
    ) -> SyncRecord {
        eventually(what, || async {
            let sync = self.record(id).await;
            done(&sync).then_some(sync)
        })
        .await
    }

    /// Wait for the sync to end (succeeded, failed, cancelled).
    pub async fn wait_for_end(&self, id: SyncId) -> SyncRecord {
        self.wait_until(id, "end of the sync", |s| s.status.is_terminal())
            .await
    }

    /// Run a queue consumer of this namespace whose handler is the
    /// pipeline (the `JobHandler` impl), until the harness is dropped.
    pub fn spawn_worker(&self) {
        projsync_queue::spawn_worker(
            self.queue_options(),
            projsync_queue::unique_worker_name("pipeline-test"),
            1,
            Arc::new(self.pipeline.clone()),
            self.shutdown.clone(),
        );
    }

    /// The active entries, path → content, as readers see them.
    pub async fn active(&self) -> BTreeMap<String, String> {
        self.store()
            .active_entries(self.project)
            .await
            .expect("read the active entries")
            .into_iter()
            .map(|e| (e.path, e.content))
            .collect()
    }

    /// What the active entries must be: every file of the head commit, as
    /// git itself reads it.
    pub fn expected(&self) -> BTreeMap<String, String> {
        self.repo
            .files_at("HEAD")
            .into_iter()
            .map(|(path, bytes)| (path, String::from_utf8(bytes).expect("text files")))
            .collect()
    }

    /// The blob SHAs of the head commit's files, sorted.
    pub fn blobs(&self) -> Vec<String> {
        let mut blobs: Vec<String> = self
            .repo
            .git(&["ls-tree", "-r", "--object-only", "HEAD"])
            .lines()
            .map(str::to_string)
            .collect();
        blobs.sort();
        blobs
    }

    /// Every file entry version of the project, by path and age.
    pub async fn versions(&self) -> Vec<Version> {
        self.versions_of("file").await
    }

    /// Every entry version of this kind (`file`, `symbol`), by path and age.
    pub async fn versions_of(&self, kind: &str) -> Vec<Version> {
        let rows: Vec<(String, String, uuid::Uuid, Option<uuid::Uuid>)> = sqlx::query_as(
            "SELECT path, status, created_by_sync_id, superseded_by_sync_id \
             FROM memory_entries WHERE project_id = $1 AND kind = $2 ORDER BY path, id",
        )
        .bind(self.project.0)
        .bind(kind)
        .fetch_all(&self.db.admin)
        .await
        .expect("read the entry versions");
        rows.into_iter()
            .map(|(path, status, created_by, superseded_by)| Version {
                path,
                status,
                created_by: SyncId(created_by),
                superseded_by: superseded_by.map(SyncId),
            })
            .collect()
    }

    /// Versions of the project in `status`.
    pub async fn count_versions(&self, status: &str) -> usize {
        self.versions()
            .await
            .iter()
            .filter(|v| v.status == status)
            .count()
    }
}

/// One row of `memory_entries`, as far as versioning goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub path: String,
    /// `pending`, `active` or `superseded`.
    pub status: String,
    pub created_by: SyncId,
    pub superseded_by: Option<SyncId>,
}

/// Poll `probe` until it returns something (bounded by [`PATIENCE`]).
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "no {what} within {PATIENCE:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// Four small text files in three directories.
pub const FILES: &[(&str, &str)] = &[
    ("README.md", "# demo\n\nA small repository.\n"),
    ("src/lib.rs", "pub fn answer() -> u32 {\n    42\n}\n"),
    ("src/main.rs", "fn main() {\n    println!(\"hi\");\n}\n"),
    ("docs/guide.md", "## Guide\n\nRun it.\n"),
];
