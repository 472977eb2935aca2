//! One Redis pub/sub connection per process for every follower of sync
//! progress (the API's SSE streams), instead of one connection per stream.
//!
//! A channel is subscribed in Redis while at least one stream follows it
//! (reference counted) and fanned out through a `tokio::sync::broadcast`;
//! each message is parsed once. The number of streams is capped: past the
//! cap `subscribe` answers [`Error::TooManyStreams`] at once.
//!
//! [`EventHub::subscribe`] returns once Redis has confirmed the channel, so
//! that a caller can read the stored snapshot afterwards without missing an
//! event in between. When the connection drops, every stream ends (like a
//! connection of its own would): SSE clients reconnect with `Last-Event-ID`
//! and get the snapshot. The next `subscribe` connects again, retrying with
//! backoff.

use crate::{Error, QueueOptions, Result};
use backon::{ExponentialBuilder, Retryable as _};
use futures::stream::BoxStream;
use futures::StreamExt;
use projsync_domain::progress::{project_channel, sync_channel};
use projsync_domain::{ProgressEvent, ProjectId, SyncId};
use redis::aio::{PubSubSink, PubSubStream};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};

/// Events buffered per channel for a slow stream; one that falls further
/// behind is ended (its client reconnects and gets the snapshot).
const CHANNEL_CAPACITY: usize = 256;

/// Follows sync progress channels over one shared Redis connection.
/// Cheap to clone; connects on first use.
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<Inner>,
}

struct Inner {
    opts: QueueOptions,
    max_streams: usize,
    slots: Arc<Semaphore>,
    /// The connection; held across a SUBSCRIBE or UNSUBSCRIBE, so that
    /// (un)subscribes of a channel happen in order.
    control: tokio::sync::Mutex<Option<Conn>>,
    /// Followed channels, read by the connection's reader for each message.
    channels: Mutex<HashMap<String, Channel>>,
    next_conn: AtomicU64,
}

struct Conn {
    id: u64,
    sink: PubSubSink,
    alive: Arc<AtomicBool>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Dropping the stream closes the connection.
        self.reader.abort();
    }
}

struct Channel {
    /// The connection the channel is subscribed on.
    conn: u64,
    /// Streams following it; at 0 it is unsubscribed (by a task).
    refs: usize,
    sender: broadcast::Sender<ProgressEvent>,
}

fn lock(channels: &Mutex<HashMap<String, Channel>>) -> MutexGuard<'_, HashMap<String, Channel>> {
    channels.lock().unwrap_or_else(|e| e.into_inner())
}

impl EventHub {
    /// A hub for at most `max_streams` streams at once (at least 1).
    pub fn new(opts: QueueOptions, max_streams: usize) -> Self {
        let max_streams = max_streams.max(1);
        Self {
            inner: Arc::new(Inner {
                opts,
                max_streams,
                slots: Arc::new(Semaphore::new(max_streams)),
                control: tokio::sync::Mutex::new(None),
                channels: Mutex::new(HashMap::new()),
                next_conn: AtomicU64::new(1),
            }),
        }
    }

    pub fn max_streams(&self) -> usize {
        self.inner.max_streams
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.inner.max_streams - self.inner.slots.available_permits()
    }

    /// Follow a sync's progress channel. Returns once Redis has confirmed
    /// the subscription; [`Error::TooManyStreams`] past the cap.
    pub async fn subscribe(&self, sync_id: SyncId) -> Result<Subscription> {
        self.follow(sync_channel(sync_id)).await
    }

    /// Follow every sync of a project (its progress channel, which the
    /// workers publish each event on too): MCP resource subscriptions
    /// learn of finished syncs here. Counted against the same cap.
    pub async fn subscribe_project(&self, project_id: ProjectId) -> Result<Subscription> {
        self.follow(project_channel(project_id)).await
    }

    async fn follow(&self, channel: String) -> Result<Subscription> {
        let inner = &self.inner;
        let permit =
            inner
                .slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| Error::TooManyStreams {
                    max: inner.max_streams,
                })?;
        let mut control = inner.control.lock().await;
        let (conn, mut sink) = inner.connection(&mut control).await?;
        let (receiver, fresh) = {
            let mut channels = lock(&inner.channels);
            match channels.get_mut(&channel) {
                // Subscribed already (perhaps with an unsubscribe pending,
                // which will find it used again and leave it).
                Some(c) if c.conn == conn => {
                    c.refs += 1;
                    (c.sender.subscribe(), false)
                }
                _ => {
                    let (sender, receiver) = broadcast::channel(CHANNEL_CAPACITY);
                    channels.insert(
                        channel.clone(),
                        Channel {
                            conn,
                            refs: 1,
                            sender,
                        },
                    );
                    (receiver, true)
                }
            }
        };
        if fresh {
            let confirmed = tokio::time::timeout(inner.opts.response_timeout, async {
                sink.subscribe(&channel).await
            })
            .await;
            let error = match confirmed {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(Error::Redis(e)),
                Err(_) => Some(Error::Redis(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "Redis did not confirm the subscription in time",
                )))),
            };
            if let Some(e) = error {
                // The connection is unusable: drop it, end its streams; the
                // next subscribe connects again.
                lock(&inner.channels).retain(|_, c| c.conn != conn);
                *control = None;
                return Err(e);
            }
        }
        drop(control);
        Ok(Subscription {
            receiver,
            _release: Release {
                inner: self.inner.clone(),
                channel,
                conn,
                _permit: permit,
            },
        })
    }
}

impl Inner {
    /// The live connection, connecting (with retries) if there is none.
    async fn connection(self: &Arc<Self>, control: &mut Option<Conn>) -> Result<(u64, PubSubSink)> {
        if let Some(c) = control.as_ref().filter(|c| c.alive.load(Ordering::Acquire)) {
            return Ok((c.id, c.sink.clone()));
        }
        *control = None;
        let client = self.opts.client()?;
        let timeout = self.opts.connect_timeout;
        let connect = || async {
            match tokio::time::timeout(timeout, client.get_async_pubsub()).await {
                Ok(result) => result,
                Err(_) => Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "connection timed out",
                ))),
            }
        };
        let pubsub = connect
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(1))
                    .with_max_times(2)
                    .with_jitter(),
            )
            .sleep(tokio::time::sleep)
            .notify(|e, wait| {
                tracing::debug!(
                    "cannot open the progress connection to Redis: {e}; retrying in {wait:?}"
                )
            })
            .await
            .map_err(|source| Error::Connect {
                url: projsync_domain::redact_url(&self.opts.url),
                source,
            })?;
        let (sink, stream) = pubsub.split();
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let alive = Arc::new(AtomicBool::new(true));
        let reader = tokio::spawn(read(Arc::downgrade(self), id, stream, alive.clone()));
        *control = Some(Conn {
            id,
            sink: sink.clone(),
            alive,
            reader,
        });
        Ok((id, sink))
    }
}

/// Fan out the connection's messages until it closes, then end its streams.
async fn read(inner: Weak<Inner>, conn: u64, mut stream: PubSubStream, alive: Arc<AtomicBool>) {
    while let Some(msg) = stream.next().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let Ok(event) = serde_json::from_slice::<ProgressEvent>(msg.get_payload_bytes()) else {
            continue;
        };
        let channels = lock(&inner.channels);
        if let Some(c) = channels.get(msg.get_channel_name()) {
            if c.conn == conn {
                // No receiver left is fine: the unsubscribe is on its way.
                let _ = c.sender.send(event);
            }
        }
    }
    alive.store(false, Ordering::Release);
    if let Some(inner) = inner.upgrade() {
        // Dropping the senders ends the streams once they have read what
        // was buffered.
        lock(&inner.channels).retain(|_, c| c.conn != conn);
        tracing::warn!(
            "the progress connection to Redis closed; open event streams end and the next one reconnects"
        );
    }
}

/// One stream's hold on a channel (and on a slot of the cap).
pub struct Subscription {
    receiver: broadcast::Receiver<ProgressEvent>,
    _release: Release,
}

impl Subscription {
    /// The channel's events from now on. The stream ends when the
    /// connection does, or if it falls more than a buffer behind.
    pub fn into_stream(self) -> BoxStream<'static, ProgressEvent> {
        futures::stream::unfold(self, |mut s| async move {
            match s.receiver.recv().await {
                Ok(event) => Some((event, s)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "an event stream fell behind; ending it");
                    None
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .boxed()
    }
}

struct Release {
    inner: Arc<Inner>,
    channel: String,
    conn: u64,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Release {
    fn drop(&mut self) {
        let last = match lock(&self.inner.channels).get_mut(&self.channel) {
            Some(c) if c.conn == self.conn => {
                c.refs -= 1;
                c.refs == 0
            }
            _ => false,
        };
        if !last {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (inner, channel, conn) = (self.inner.clone(), self.channel.clone(), self.conn);
        runtime.spawn(async move {
            let control = inner.control.lock().await;
            let unused = {
                let mut channels = lock(&inner.channels);
                let unused = channels
                    .get(&channel)
                    .is_some_and(|c| c.conn == conn && c.refs == 0);
                if unused {
                    channels.remove(&channel);
                }
                unused
            };
            let Some(c) = control.as_ref().filter(|c| c.id == conn && unused) else {
                return;
            };
            let mut sink = c.sink.clone();
            let done =
                tokio::time::timeout(inner.opts.response_timeout, sink.unsubscribe(&channel)).await;
            if !matches!(done, Ok(Ok(()))) {
                tracing::debug!(%channel, "cannot unsubscribe from the progress channel");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> QueueOptions {
        QueueOptions {
            url: std::env::var("PROJSYNC_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            namespace: "projsync-test-hub".into(),
            heartbeat_interval: Duration::from_secs(5),
            missed_heartbeats: 3,
            poll_interval: Duration::from_millis(200),
            response_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        }
    }

    fn event(sync_id: SyncId, seq: i64) -> ProgressEvent {
        serde_json::from_value(serde_json::json!({
            "v": 1, "sync_id": sync_id, "project_id": uuid::Uuid::new_v4(), "seq": seq,
            "sync_status": "running", "phase": "import", "phase_status": "running",
            "done": 0, "total": 0, "stats": {}, "message": "m", "at": "2024-05-01T12:00:00Z"
        }))
        .unwrap()
    }

    async fn admin() -> redis::aio::MultiplexedConnection {
        redis::Client::open(opts().url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    async fn numsub(conn: &mut redis::aio::MultiplexedConnection, id: SyncId) -> i64 {
        let (_, n): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(sync_channel(id))
            .query_async(conn)
            .await
            .unwrap();
        n
    }

    async fn publish(conn: &mut redis::aio::MultiplexedConnection, e: &ProgressEvent) {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(sync_channel(e.sync_id))
            .arg(serde_json::to_string(e).unwrap())
            .query_async(conn)
            .await
            .unwrap();
    }

    async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !check().await {
            assert!(std::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn channels_are_shared_counted_and_released() {
        let hub = EventHub::new(opts(), 3);
        let mut admin = admin().await;
        let (a, b) = (SyncId::new(), SyncId::new());
        let a1 = hub.subscribe(a).await.unwrap();
        let a2 = hub.subscribe(a).await.unwrap();
        let b1 = hub.subscribe(b).await.unwrap();
        assert_eq!(numsub(&mut admin, a).await, 1);
        assert_eq!(numsub(&mut admin, b).await, 1);
        assert_eq!(hub.open_streams(), 3);
        assert!(matches!(
            hub.subscribe(a).await.err(),
            Some(Error::TooManyStreams { max: 3 })
        ));

        let (mut a1, mut a2, mut b1) = (a1.into_stream(), a2.into_stream(), b1.into_stream());
        publish(&mut admin, &event(a, 1)).await;
        publish(&mut admin, &event(b, 7)).await;
        assert_eq!(a1.next().await.unwrap().seq, 1);
        assert_eq!(a2.next().await.unwrap().seq, 1);
        assert_eq!(b1.next().await.unwrap().seq, 7);

        // The channel stays subscribed while one stream follows it.
        drop(a1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(numsub(&mut admin, a).await, 1);
        assert_eq!(hub.open_streams(), 2);
        drop(a2);
        until("a unsubscribed", async || numsub(&mut admin, a).await == 0).await;
        assert_eq!(numsub(&mut admin, b).await, 1);
        assert_eq!(hub.open_streams(), 1);

        // Subscribing again right after works (the release is ordered).
        let a3 = hub.subscribe(a).await.unwrap();
        drop(a3);
        let mut a4 = hub.subscribe(a).await.unwrap().into_stream();
        publish(&mut admin, &event(a, 2)).await;
        assert_eq!(a4.next().await.unwrap().seq, 2);
        drop(b1);
        drop(a4);
        until("all released", async || {
            numsub(&mut admin, a).await + numsub(&mut admin, b).await == 0
        })
        .await;
        assert_eq!(hub.open_streams(), 0);
    }

    /// A Redis server of the test's own: killing its clients disturbs no
    /// other test.
    struct OwnRedis(std::process::Child, u16);

    impl OwnRedis {
        fn start() -> Self {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("redis-server is installed (scripts/services.sh)");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "own redis did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Self(child, port)
        }
    }

    impl Drop for OwnRedis {
        fn drop(&mut self) {
            self.0.kill().ok();
            self.0.wait().ok();
        }
    }

    #[tokio::test]
    async fn a_lost_connection_ends_the_streams_and_the_next_one_reconnects() {
        let own = OwnRedis::start();
        let url = format!("redis://127.0.0.1:{}", own.1);
        let hub = EventHub::new(
            QueueOptions {
                url: url.clone(),
                ..opts()
            },
            10,
        );
        let mut admin = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let a = SyncId::new();
        let mut stream = hub.subscribe(a).await.unwrap().into_stream();
        assert_eq!(numsub(&mut admin, a).await, 1);
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_eq!(killed, 1);
        let ended = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
        assert!(
            matches!(ended, Ok(None)),
            "the stream ends with its connection"
        );
        drop(stream);
        let mut again = hub.subscribe(a).await.unwrap().into_stream();
        assert_eq!(numsub(&mut admin, a).await, 1);
        publish(&mut admin, &event(a, 3)).await;
        assert_eq!(again.next().await.unwrap().seq, 3);
        assert_eq!(hub.open_streams(), 1);
    }
}
