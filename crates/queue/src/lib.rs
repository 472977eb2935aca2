//! The Redis side of projsync: the sync job queue (apalis-redis) and the
//! progress channels (pub/sub).
//!
//! Redis is the doorbell, never the ledger (ARCHITECTURE.md, invariant 1): the
//! queue payload is only `{v, sync_id}`, and losing it costs latency, not data.
//! This crate works around the measured weak spots of apalis-redis 1.0 (see
//! ARCHITECTURE.md, "Queue notes"): heartbeat and orphan timing are set explicitly,
//! idle workers poll on an interval, redis-rs's response timeout is raised,
//! worker names are unique per process, and a worker whose run loop ends on a
//! Redis error is restarted. It must not know about Postgres or the pipeline.

use apalis::prelude::*;
use apalis_redis::{Config as RedisQueueConfig, ConnectionManager, RedisStorage};
use futures::StreamExt;
use projsync_domain::progress::{project_channel, sync_channel};
use projsync_domain::{ProgressEvent, SyncId, SyncJob};
use redis::aio::ConnectionManagerConfig;
use redis::AsyncCommands;
use std::sync::Arc;
use std::time::Duration;
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

/// Pushes sync jobs. Cheap to clone.
#[derive(Clone)]
pub struct JobQueue {
    storage: RedisStorage<SyncJob>,
    /// The queue's name, for the push spans.
    name: Arc<str>,
}

impl JobQueue {
    pub async fn connect(opts: &QueueOptions) -> Result<Self> {
        let conn = opts.connect().await?;
        Ok(Self {
            storage: RedisStorage::new(conn).with_config(opts.apalis_config()),
            name: opts.queue_name().into(),
        })
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
        let mut storage = self.storage.clone();
        let pushed = async move {
            if secs == 0 {
                storage.push(SyncJob::new(sync_id)).await
            } else {
                let task = apalis::prelude::TaskBuilder::new(SyncJob::new(sync_id))
                    .run_after(Duration::from_secs(secs))
                    .build();
                storage.push_task(task).await
            }
            .map_err(|e| Error::Push(e.to_string()))
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
        let payload = serde_json::to_string(event).expect("progress events serialize");
        let mut conn = self.conn.clone();
        let _: i64 = conn.publish(sync_channel(event.sync_id), &payload).await?;
        let _: i64 = conn
            .publish(project_channel(event.project_id), &payload)
            .await?;
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
struct HandlerData(Arc<dyn JobHandler>);

async fn run_job(job: SyncJob, handler: Data<HandlerData>) -> Result<(), BoxDynError> {
    let handler = handler.0 .0.clone();
    handler.handle(job).await;
    Ok(())
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

/// Pull jobs until `shutdown` is cancelled. The apalis run loop can end on
/// any Redis error; it is restarted here, with a growing pause, under the
/// same name so that it re-takes its own orphaned jobs.
pub async fn run_worker(
    opts: QueueOptions,
    name: String,
    concurrency: usize,
    handler: Arc<dyn JobHandler>,
    shutdown: CancellationToken,
) {
    let mut pause = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        let conn = tokio::select! {
            c = opts.connect() => c,
            _ = shutdown.cancelled() => break,
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(worker = %name, "{e}; retrying in {pause:?}");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.cancelled() => break,
                }
                pause = (pause * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let storage = RedisStorage::<SyncJob>::new(conn)
            .with_config(opts.apalis_config())
            .poll_with_interval(opts.poll_interval);
        let worker = WorkerBuilder::new(name.as_str())
            .backend(storage)
            .concurrency(concurrency.max(1))
            .data(HandlerData(handler.clone()))
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
        if shutdown.is_cancelled() {
            break;
        }
        match result {
            Ok(()) => tracing::warn!(worker = %name, "worker run loop ended; restarting"),
            Err(e) => {
                tracing::warn!(worker = %name, "worker run loop failed: {e}; restarting in {pause:?}")
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            pause = Duration::from_millis(200);
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => break,
        }
        pause = (pause * 2).min(Duration::from_secs(10));
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
