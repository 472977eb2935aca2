//! The job queue against the real Redis: a sync has at most one job waiting
//! however often it is pushed again, a taken job lets the sync be pushed
//! again, and an idle worker is woken by a push (it never polls here).

use projsync_domain::{SyncId, SyncJob};
use projsync_queue::{spawn_worker, JobHandler, JobQueue, QueueOptions};
use projsync_test_support::TestRedis;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

/// Bounds every wait below; a healthy run takes milliseconds.
const PATIENCE: Duration = Duration::from_secs(20);

/// A worker that never polls and never heartbeats within a test: only a
/// push's notification can wake it once it is idle.
fn options(redis: &TestRedis) -> QueueOptions {
    QueueOptions {
        url: redis.url.clone(),
        namespace: redis.namespace.clone(),
        heartbeat_interval: Duration::from_secs(3600),
        missed_heartbeats: 3,
        poll_interval: Duration::from_secs(3600),
        response_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
    }
}

/// Reports each job it gets, then waits for a permit before it returns.
struct Recorder {
    seen: mpsc::UnboundedSender<SyncId>,
    gate: Arc<Semaphore>,
}

#[async_trait::async_trait]
impl JobHandler for Recorder {
    async fn handle(&self, job: SyncJob) {
        let _ = self.seen.send(job.sync_id);
        self.gate.acquire().await.unwrap().forget();
    }
}

async fn next(seen: &mut mpsc::UnboundedReceiver<SyncId>) -> SyncId {
    tokio::time::timeout(PATIENCE, seen.recv())
        .await
        .expect("the worker got no job")
        .expect("the worker stopped")
}

fn sorted(mut v: Vec<SyncId>) -> Vec<SyncId> {
    v.sort_by_key(|s| s.0);
    v
}

#[tokio::test]
async fn redeliveries_leave_one_waiting_job_per_sync() {
    let redis = TestRedis::new();
    let queue = JobQueue::connect(&options(&redis)).await.unwrap();
    let (a, b, c) = (SyncId::new(), SyncId::new(), SyncId::new());
    // The API's push, then the reconciler's pushes of the same sync.
    for _ in 0..4 {
        queue.push(a).await.unwrap();
    }
    // A retry scheduled, then pushed again (early deliveries, reconciler).
    for _ in 0..3 {
        queue.push_after(b, Duration::from_secs(30)).await.unwrap();
        queue.push(b).await.unwrap();
    }
    queue.push(c).await.unwrap();
    assert_eq!(
        sorted(queue.waiting_jobs().await.unwrap()),
        sorted(vec![a, b, c]),
        "one waiting job per sync"
    );
}

/// A worker of `concurrency` that reports each job it takes on the
/// returned channel and finishes it once `gate` gives a permit.
fn recording_worker(
    opts: &QueueOptions,
    concurrency: usize,
    gate: Arc<Semaphore>,
) -> (
    tokio::task::JoinHandle<()>,
    mpsc::UnboundedReceiver<SyncId>,
    CancellationToken,
) {
    let (seen, rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let worker = spawn_worker(
        opts.clone(),
        projsync_queue::unique_worker_name("test"),
        concurrency,
        Arc::new(Recorder { seen, gate }),
        shutdown.clone(),
    );
    (worker, rx, shutdown)
}

#[tokio::test]
async fn a_taken_job_lets_its_sync_be_pushed_again() {
    let redis = TestRedis::new();
    let opts = options(&redis);
    let queue = JobQueue::connect(&opts).await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (worker, mut seen, shutdown) = recording_worker(&opts, 1, gate.clone());
    let sync = SyncId::new();
    queue.push(sync).await.unwrap();
    assert_eq!(next(&mut seen).await, sync);
    // While the job runs, the reconciler pushes it again, several times:
    // one new job waits.
    for _ in 0..3 {
        queue.push(sync).await.unwrap();
    }
    assert_eq!(queue.waiting_jobs().await.unwrap(), vec![sync]);
    gate.add_permits(1);
    assert_eq!(next(&mut seen).await, sync, "the waiting job is delivered");
    assert!(queue.waiting_jobs().await.unwrap().is_empty());
    gate.add_permits(1);
    // Taken and done: pushing it again queues it again.
    queue.push(sync).await.unwrap();
    assert_eq!(next(&mut seen).await, sync);
    gate.add_permits(1);
    shutdown.cancel();
    worker.await.unwrap();
}

#[tokio::test]
async fn an_idle_worker_is_woken_by_a_push() {
    let redis = TestRedis::new();
    let opts = options(&redis);
    let queue = JobQueue::connect(&opts).await.unwrap();
    let (worker, mut seen, shutdown) = recording_worker(&opts, 2, Arc::new(Semaphore::new(100)));
    // The first job may be found by the worker's first fetch.
    let first = SyncId::new();
    queue.push(first).await.unwrap();
    assert_eq!(next(&mut seen).await, first);
    for _ in 0..5 {
        // Let the worker go idle: its fetch found nothing, and it neither
        // polls nor heartbeats for an hour. Only the push can wake it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sync = SyncId::new();
        queue.push(sync).await.unwrap();
        assert_eq!(next(&mut seen).await, sync);
    }
    shutdown.cancel();
    worker.await.unwrap();
}
