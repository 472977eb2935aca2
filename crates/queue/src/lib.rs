//! The Redis side of projsync: the sync job queue (apalis-redis) and the
//! progress channels (pub/sub).
//!
//! Redis is the doorbell, never the ledger (ARCHITECTURE.md, invariant 1): the
//! queue payload is only `{v, sync_id}`, and losing it costs latency, not data.
//! This crate works around the measured weak spots of apalis-redis 1.0 (see
//! ARCHITECTURE.md, "Queue notes"): heartbeat and orphan timing are set explicitly,
//! idle workers are woken by the push itself and poll on an interval only as
//! the fallback, redis-rs's response timeout is raised, worker names are
//! unique per process, and a worker whose run loop ends on a Redis error is
//! restarted. A sync has at most one job waiting in the queue: pushing it
//! again while its job waits is a no-op. It must not know about Postgres or
//! the pipeline.
//!
//! **Wake, don't poll.** After a push that queued a job for now, the pusher
//! publishes the sync id on `{queue}:wake` (apalis-redis's own push event
//! is never sent: its script compares the flag with "1", which redis-rs
//! does not send for `true`). Each worker run loop follows that channel on
//! a pub/sub connection of its own and wakes its fetch loop
//! (`WakeOnPublish`, an apalis poll strategy raced with the interval). A
//! delayed job (a retry) is promoted by the next fetch: the interval.
//!
//! **One waiting job per sync.** Every push carries the sync id as
//! apalis-redis's idempotency key, which its push script claims with
//! `SETNX {queue}:idempotency:{sync id}` = the job's id, in the same script
//! that queues the job: a second push finds the key and queues nothing. The
//! worker that takes the job deletes the key (only if it still names that
//! job) before it claims the sync, so a push after the take queues a new
//! job, which the claim then sees. The key expires after the job's delay
//! plus [`WAITING_GRACE`], a bound on what a key left behind can hold up.

use apalis::prelude::*;
use apalis_redis::{Config as RedisQueueConfig, ConnectionManager, RedisStorage};
use backon::{BackoffBuilder as _, ExponentialBuilder, Retryable as _};
use futures::StreamExt;
use projsync_domain::progress::{project_channel, sync_channel};
use projsync_domain::{ProgressEvent, SyncId, SyncJob};
use redis::aio::ConnectionManagerConfig;
use redis::AsyncCommands;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub use futures::stream::BoxStream;
pub use hub::{EventHub, Subscription};

mod hub;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot reach Redis at {url}: {source}; check that Redis is running and that \
         PROJSYNC__REDIS__URL (redis.url) points at it"
    )]
    Connect {
        url: String,
        source: redis::RedisError,
    },
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cannot push the job to the queue: {0}")]
    Push(String),
    #[error(
        "{max} event streams are open, the most this process serves (api.max_streams); \
         try again shortly"
    )]
    TooManyStreams { max: usize },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct QueueOptions {
    pub url: String,
    /// Prefix of every queue key; one per deployment (or per test).
    pub namespace: String,
    /// How often a worker tells Redis it is alive.
    pub heartbeat_interval: Duration,
    /// After this many missed heartbeats a worker's jobs are handed to others.
    pub missed_heartbeats: usize,
    /// How often an idle worker looks for new jobs.
    pub poll_interval: Duration,
    /// redis-rs's default (500 ms) is too short under load.
    pub response_timeout: Duration,
    pub connect_timeout: Duration,
}

impl QueueOptions {
    pub fn queue_name(&self) -> String {
        format!("{}:syncs", self.namespace)
    }

    /// The channel a push is announced on, to wake idle workers.
    fn wake_channel(&self) -> String {
        format!("{}:wake", self.queue_name())
    }

    fn apalis_config(&self) -> RedisQueueConfig {
        RedisQueueConfig::default()
            .queue(self.queue_name())
            .heartbeat_interval(self.heartbeat_interval)
            .missed_heartbeats(self.missed_heartbeats)
            // One job per fetch: a sync is long, and a fetched job waiting
            // behind another is latency for nothing.
            .batch_size(1)
            // Completed job data would otherwise never expire.
            .persist_results(false)
    }

    pub fn client(&self) -> Result<redis::Client> {
        redis::Client::open(self.url.as_str()).map_err(|source| Error::Connect {
            url: projsync_domain::redact_url(&self.url),
            source,
        })
    }

    /// A connection manager that reconnects by itself, with our timeouts.
    pub async fn connect(&self) -> Result<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.response_timeout))
            .set_connection_timeout(Some(self.connect_timeout))
            .set_number_of_retries(2);
        self.client()?
            .get_connection_manager_with_config(config)
            .await
            .map_err(|source| Error::Connect {
                url: projsync_domain::redact_url(&self.url),
                source,
            })
    }
}

/// How long a sync's waiting-job key outlives its job's delay. The worker
/// that takes the job deletes it; this bounds how long a key left behind
/// (a failed delete) makes pushes of that sync no-ops.
pub const WAITING_GRACE: Duration = Duration::from_secs(60);

/// The key that says a sync's job waits in the queue (apalis-redis's
/// idempotency key, named as its push script names it).
fn waiting_key(config: &RedisQueueConfig, sync_id: SyncId) -> String {
    format!("{}:{sync_id}", config.idempotency_key_set())
}

/// Pushes sync jobs. Cheap to clone.
#[derive(Clone)]
pub struct JobQueue {
    storage: RedisStorage<SyncJob>,
    config: RedisQueueConfig,
    conn: ConnectionManager,
    /// The queue's name, for the push spans.
    name: Arc<str>,
    wake_channel: Arc<str>,
}

impl JobQueue {
    pub async fn connect(opts: &QueueOptions) -> Result<Self> {
        let conn = opts.connect().await?;
        Ok(Self {
            storage: RedisStorage::new(conn.clone()).with_config(opts.apalis_config()),
            config: opts.apalis_config(),
            conn,
            name: opts.queue_name().into(),
            wake_channel: opts.wake_channel().into(),
        })
    }

    /// The syncs of the jobs waiting in the queue (due or delayed), one
    /// entry per job, in no particular order. For tests and diagnostics:
    /// it reads the whole queue.
    pub async fn waiting_jobs(&self) -> Result<Vec<SyncId>> {
        let mut conn = self.conn.clone();
        let mut ids: Vec<String> = conn.lrange(self.config.active_jobs_list(), 0, -1).await?;
        let delayed: Vec<String> = conn.zrange(self.config.scheduled_jobs_set(), 0, -1).await?;
        ids.extend(delayed);
        let mut syncs = Vec::with_capacity(ids.len());
        for id in ids {
            let data: Option<Vec<u8>> = conn.hget(self.config.job_data_hash(), &id).await?;
            if let Some(job) = data.and_then(|d| serde_json::from_slice::<SyncJob>(&d).ok()) {
                syncs.push(job.sync_id);
            }
        }
        Ok(syncs)
    }

    /// Ring the doorbell for a sync already recorded in the ledger.
    pub async fn push(&self, sync_id: SyncId) -> Result<()> {
        self.push_after(sync_id, Duration::ZERO).await
    }

    /// Ring it after `delay` (the queue schedules it; whole seconds, rounded up).
    ///
    /// The push is a `queue.push` span (a producer) in the current trace;
    /// the job carries no trace context, since the worker reads the sync's
    /// own from the ledger (docs/telemetry.md).
    pub async fn push_after(&self, sync_id: SyncId, delay: Duration) -> Result<()> {
        let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
        let span = tracing::info_span!(
            "queue.push",
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
            %sync_id,
            messaging.system = "redis",
            messaging.operation.type = "send",
            messaging.destination.name = %self.name,
            delay_secs = secs,
        );
        // The waiting-job key lives as long as the job may wait.
        let config = self
            .config
            .clone()
            .idempotency_ttl(Some(Duration::from_secs(secs) + WAITING_GRACE));
        let mut storage = self.storage.clone().with_config(config);
        let (mut conn, channel) = (self.conn.clone(), self.wake_channel.clone());
        let pushed = async move {
            let task = TaskBuilder::new(SyncJob::new(sync_id)).idempotency_key(sync_id.to_string());
            let task = if secs == 0 {
                task
            } else {
                task.run_after(Duration::from_secs(secs))
            };
            storage
                .push_task(task.build())
                .await
                .map_err(|e| Error::Push(e.to_string()))?;
            if secs == 0 {
                // Best effort: a worker that misses it polls.
                if let Err(e) = conn
                    .publish::<_, _, i64>(&*channel, sync_id.to_string())
                    .await
                {
                    tracing::debug!(%sync_id, "cannot announce the job: {e}");
                }
            }
            Ok(())
        }
        .instrument(span.clone())
        .await;
        if let Err(e) = &pushed {
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_description", tracing::field::display(e));
        }
        pushed
    }
}

/// Whether Redis answers now (readiness): a fresh connection and a `PING`,
/// each bounded by `timeout`. A fresh connection, not a shared one, so that
/// the answer is about Redis now and not about a connection that a
/// reconnecting manager may hide.
pub async fn ping(opts: &QueueOptions, timeout: Duration) -> Result<()> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let mut conn = opts
        .client()?
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let _: String = redis::cmd("PING").query_async(&mut conn).await?;
    Ok(())
}

/// Publishes progress events. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    conn: ConnectionManager,
}

impl Publisher {
    pub async fn connect(opts: &QueueOptions) -> Result<Self> {
        Ok(Self {
            conn: opts.connect().await?,
        })
    }

    /// Publish on the sync's and the project's channel.
    pub async fn publish(&self, event: &ProgressEvent) -> Result<()> {
        self.publish_all(std::slice::from_ref(event)).await
    }

    /// Publish each event, in order, on its sync's and its project's
    /// channel: one pipeline, so one round trip however many events a
    /// run's progress recorder wrote together (a small sync's last write
    /// carries a dozen). Redis runs a pipeline's commands in order, so a
    /// subscriber still sees the events in the order given.
    pub async fn publish_all(&self, events: &[ProgressEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for event in events {
            let payload = serde_json::to_string(event).expect("progress events serialize");
            pipe.publish(sync_channel(event.sync_id), &payload)
                .ignore()
                .publish(project_channel(event.project_id), payload)
                .ignore();
        }
        let mut conn = self.conn.clone();
        let () = pipe.query_async(&mut conn).await?;
        Ok(())
    }
}

/// Follow a sync's channel on a connection of its own (the CLI's `watch`;
/// the API shares one through [`EventHub`]). Messages that are not
/// progress events are dropped. The stream ends if the connection does.
pub async fn subscribe(
    opts: &QueueOptions,
    sync_id: SyncId,
) -> Result<BoxStream<'static, ProgressEvent>> {
    let mut pubsub = opts
        .client()?
        .get_async_pubsub()
        .await
        .map_err(|source| Error::Connect {
            url: projsync_domain::redact_url(&opts.url),
            source,
        })?;
    pubsub.subscribe(sync_channel(sync_id)).await?;
    Ok(pubsub
        .into_on_message()
        .filter_map(|msg| async move {
            let payload: String = msg.get_payload().ok()?;
            serde_json::from_str::<ProgressEvent>(&payload).ok()
        })
        .boxed())
}

/// What a worker does with a job. Implemented by the pipeline.
#[async_trait::async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Run the sync. Failures are recorded in the ledger by the handler;
    /// the queue only needs to know the job was taken care of.
    async fn handle(&self, job: SyncJob);
}

/// A concrete type for apalis's `Data`: a bare `Arc<dyn JobHandler>` in the
/// task function's signature defeats the compiler's `Send` proof.
#[derive(Clone)]
struct HandlerData {
    handler: Arc<dyn JobHandler>,
    conn: ConnectionManager,
    config: RedisQueueConfig,
}

/// Delete a sync's waiting-job key if it still names `task_id`: that job
/// has left the queue (an older job of the sync, re-queued by apalis from
/// a dead worker, leaves a newer job's key alone).
const TAKE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0";

async fn run_job(
    job: SyncJob,
    task_id: TaskId,
    data: Data<HandlerData>,
) -> Result<(), BoxDynError> {
    let data = data.0.clone();
    taken(&data, job.sync_id, &task_id.to_string()).await;
    data.handler.handle(job).await;
    Ok(())
}

/// The job of `sync_id` has left the queue: a push from now on queues a
/// new one. Before the claim, so that the claim sees whatever such a push
/// announced.
async fn taken(data: &HandlerData, sync_id: SyncId, task_id: &str) {
    let key = waiting_key(&data.config, sync_id);
    let script = redis::Script::new(TAKE_SCRIPT);
    let take = || {
        let mut conn = data.conn.clone();
        let (script, key) = (&script, &key);
        async move {
            script
                .key(key)
                .arg(task_id)
                .invoke_async::<i64>(&mut conn)
                .await
        }
    };
    let taken = take
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(50))
                .with_max_delay(Duration::from_millis(500))
                .with_max_times(3),
        )
        .sleep(tokio::time::sleep)
        .await;
    if let Err(e) = taken {
        tracing::warn!(
            %sync_id,
            "cannot clear the sync's waiting-job key: {e}; pushes of it are dropped until it \
             expires (at most {WAITING_GRACE:?} after its delay)"
        );
    }
}

/// An apalis poll strategy that wakes an idle fetch loop when a job is
/// pushed (a message from [`forward_wakes`]). It drains every wake at once
/// and asks for one more poll, so that a wake that arrives while a fetch
/// is in flight is not lost with that fetch's empty answer.
struct WakeOnPublish {
    wakes: mpsc::UnboundedReceiver<()>,
}

impl PollStrategy for WakeOnPublish {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        let mut woken = false;
        while let Poll::Ready(Some(())) = self.wakes.poll_recv(cx) {
            woken = true;
        }
        if woken {
            cx.waker().wake_by_ref();
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}

/// Subscribe to the push channel, within the connect timeout.
async fn subscribe_wakes(opts: &QueueOptions) -> Result<redis::aio::PubSub> {
    let client = opts.client()?;
    let subscribe = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(opts.wake_channel()).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    Ok(tokio::time::timeout(opts.connect_timeout, subscribe)
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "subscribe timed out")))??)
}

/// Pass each push notification on to the fetch loop until `stop`, or until
/// the loop is gone. A lost connection is reopened (with backoff), and the
/// loop woken once for what it may have missed meanwhile.
async fn forward_wakes(
    opts: QueueOptions,
    mut pubsub: Option<redis::aio::PubSub>,
    wakes: mpsc::UnboundedSender<()>,
    stop: CancellationToken,
) {
    loop {
        if let Some(p) = pubsub.take() {
            let mut messages = p.into_on_message();
            loop {
                tokio::select! {
                    msg = messages.next() => match msg {
                        Some(_) => {
                            if wakes.send(()).is_err() {
                                return;
                            }
                        }
                        None => break,
                    },
                    _ = stop.cancelled() => return,
                    _ = wakes.closed() => return,
                }
            }
        }
        let reconnect = (|| subscribe_wakes(&opts))
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(5))
                    .without_max_times()
                    .with_jitter(),
            )
            .sleep(tokio::time::sleep)
            .notify(|e, wait| {
                tracing::debug!("cannot follow the queue's push channel: {e}; retrying in {wait:?}")
            });
        pubsub = tokio::select! {
            p = reconnect => p.ok(),
            _ = stop.cancelled() => return,
            _ = wakes.closed() => return,
        };
        if wakes.send(()).is_err() {
            return;
        }
    }
}

/// A unique worker name per process (two workers with one name break
/// apalis-redis's orphan handling).
pub fn unique_worker_name(prefix: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{prefix}-{host}-{}-{suffix}", std::process::id())
}

/// The pauses of a loop that connects again for as long as it runs (a
/// worker's run loop restarting, an MCP follower subscribing again):
/// exponential from 200 ms to [`ReconnectPauses::MAX`], with jitter,
/// without end. [`ReconnectPauses::reset`] once the loop has run well.
pub struct ReconnectPauses(backon::ExponentialBackoff);

impl ReconnectPauses {
    pub const MAX: Duration = Duration::from_secs(10);

    pub fn new() -> Self {
        Self(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Self::MAX)
                .without_max_times()
                .with_jitter()
                .build(),
        )
    }

    /// The next pause (the backoff has no end; `MAX` if it ever had one).
    pub fn next_pause(&mut self) -> Duration {
        self.0.next().unwrap_or(Self::MAX)
    }

    /// Start again from the shortest pause.
    pub fn reset(&mut self) {
        *self = Self::new();
    }
}

impl Default for ReconnectPauses {
    fn default() -> Self {
        Self::new()
    }
}

/// Pull jobs until `shutdown` is cancelled. An idle worker is woken by each
/// push (see the crate's notes) and polls every `poll_interval` as the
/// fallback. The apalis run loop can end on any Redis error; it is
/// restarted here, after a growing pause, under the same name so that it
/// re-takes its own orphaned jobs.
pub async fn run_worker(
    opts: QueueOptions,
    name: String,
    concurrency: usize,
    handler: Arc<dyn JobHandler>,
    shutdown: CancellationToken,
) {
    let mut pauses = ReconnectPauses::new();
    while !shutdown.is_cancelled() {
        let conn = tokio::select! {
            c = opts.connect() => c,
            _ = shutdown.cancelled() => break,
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                let wait = pauses.next_pause();
                tracing::warn!(worker = %name, "{e}; retrying in {wait:?}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => break,
                }
                continue;
            }
        };
        // Subscribed before the first fetch, so that no push falls between
        // that fetch and the subscription. Without it the loop only polls
        // until the forwarder has reconnected.
        let pubsub = match subscribe_wakes(&opts).await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(worker = %name, "cannot follow the queue's push channel: {e}; polling meanwhile");
                None
            }
        };
        let (wake_tx, wake_rx) = mpsc::unbounded_channel();
        let stop_wakes = shutdown.child_token();
        let forwarder = tokio::spawn(forward_wakes(
            opts.clone(),
            pubsub,
            wake_tx,
            stop_wakes.clone(),
        ));
        let strategy = Strategy::new()
            .apply(WakeOnPublish { wakes: wake_rx })
            .interval(opts.poll_interval);
        let storage = RedisStorage::<SyncJob>::new(conn.clone())
            .with_config(opts.apalis_config())
            .poll_with_strategy(strategy);
        let worker = WorkerBuilder::new(name.as_str())
            .backend(storage)
            .concurrency(concurrency.max(1))
            .data(HandlerData {
                handler: handler.clone(),
                conn,
                config: opts.apalis_config(),
            })
            .build(run_job);
        let stop = shutdown.clone();
        let started = std::time::Instant::now();
        tracing::info!(worker = %name, queue = %opts.queue_name(), "worker pulling jobs");
        let result = worker
            .run_until(async move {
                stop.cancelled().await;
                Ok::<(), std::io::Error>(())
            })
            .await;
        stop_wakes.cancel();
        let _ = forwarder.await;
        if shutdown.is_cancelled() {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            pauses.reset();
        }
        let wait = pauses.next_pause();
        match result {
            Ok(()) => {
                tracing::warn!(worker = %name, "worker run loop ended; restarting in {wait:?}")
            }
            Err(e) => {
                tracing::warn!(worker = %name, "worker run loop failed: {e}; restarting in {wait:?}")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    tracing::info!(worker = %name, "worker stopped");
}

/// `run_worker` on a tokio task.
pub fn spawn_worker(
    opts: QueueOptions,
    name: String,
    concurrency: usize,
    handler: Arc<dyn JobHandler>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run_worker(opts, name, concurrency, handler, shutdown))
}
