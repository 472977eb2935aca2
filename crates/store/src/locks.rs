//! Session-level advisory locks, one per sync a worker runs, held on one
//! connection of the worker's own (migrations/0009_takeover.sql).
//!
//! PostgreSQL releases a session's locks the moment its connection dies,
//! so a free lock on a running sync says that its worker is gone: the
//! reconciler pushes it again at once (`Store::due_for_takeover`) and a
//! claimer that takes the lock may take over the lease before it expires
//! (`Store::claim_locked`). The lease and the fence stay the safety net:
//! a worker that is alive but cut off fails its next write by fence.
//!
//! One task owns the connection and serves lock and unlock requests in
//! order. Locks of this process are also kept in a set: a second delivery
//! of a sync this process runs is refused (advisory locks are reentrant
//! within a session). When the connection is lost the task reconnects and
//! takes the set's locks again; a lock another worker took meanwhile stays
//! theirs (and that worker's fence wins).

use crate::{Error, Result};
use projsync_domain::SyncId;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The advisory lock key of a sync: the first 64 bits of its id (the same
/// as SQL's `projsync_sync_lock_key`).
pub fn sync_lock_key(sync_id: SyncId) -> i64 {
    let bytes = sync_id.0.as_bytes();
    let mut high = [0u8; 8];
    high.copy_from_slice(&bytes[..8]);
    i64::from_be_bytes(high)
}

/// How often the lock connection is checked while idle (a lost connection
/// is reopened and the locks taken again).
const CHECK_EVERY: Duration = Duration::from_secs(1);

enum Cmd {
    Lock(SyncId, oneshot::Sender<Result<bool>>),
    Unlock(SyncId),
}

/// The advisory locks of one worker process. Cheap to clone; the
/// connection opens at the first lock and closes when the last clone and
/// guard are dropped.
#[derive(Clone)]
pub struct SyncLocks {
    options: Arc<PgConnectOptions>,
    tx: Arc<OnceLock<mpsc::UnboundedSender<Cmd>>>,
}

impl std::fmt::Debug for SyncLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncLocks").finish_non_exhaustive()
    }
}

/// The lock on one sync, held until dropped.
#[derive(Debug)]
pub struct SyncLockGuard {
    sync_id: SyncId,
    tx: mpsc::UnboundedSender<Cmd>,
}

impl Drop for SyncLockGuard {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Unlock(self.sync_id));
    }
}

impl SyncLocks {
    /// Locks on connections made like the pool's (same server, role and
    /// options), outside the pool.
    pub fn new(pool: &PgPool) -> Self {
        Self {
            options: pool.connect_options(),
            tx: Arc::new(OnceLock::new()),
        }
    }

    fn sender(&self) -> mpsc::UnboundedSender<Cmd> {
        self.tx
            .get_or_init(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                let actor = Actor {
                    options: self.options.clone(),
                    conn: None,
                    held: HashSet::new(),
                };
                tokio::spawn(actor.run(rx));
                tx
            })
            .clone()
    }

    /// Take the sync's lock if no session holds it (this process included):
    /// `Ok(None)` when it is held. An error means the lock connection cannot
    /// be opened.
    pub async fn try_lock(&self, sync_id: SyncId) -> Result<Option<SyncLockGuard>> {
        let tx = self.sender();
        let (reply, answer) = oneshot::channel();
        tx.send(Cmd::Lock(sync_id, reply))
            .map_err(|_| Error::Invalid("the lock task has stopped".into()))?;
        let locked = answer
            .await
            .map_err(|_| Error::Invalid("the lock task has stopped".into()))??;
        // Lazily: a guard made and dropped would release the lock.
        Ok(locked.then(|| SyncLockGuard { sync_id, tx }))
    }
}

struct Actor {
    options: Arc<PgConnectOptions>,
    conn: Option<PgConnection>,
    /// Syncs this process holds the lock of.
    held: HashSet<SyncId>,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Lock(sync_id, reply)) => {
                        let _ = reply.send(self.lock(sync_id).await);
                    }
                    Some(Cmd::Unlock(sync_id)) => self.unlock(sync_id).await,
                    None => break,
                },
                _ = check.tick() => self.check().await,
            }
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }

    /// The connection, opened (and the held locks taken again) if needed.
    async fn conn(&mut self) -> Result<&mut PgConnection> {
        if self.conn.is_none() {
            let mut conn = self.options.connect().await?;
            for sync_id in &self.held {
                let _: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(sync_lock_key(*sync_id))
                    .fetch_one(&mut conn)
                    .await?;
            }
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("just opened"))
    }

    async fn try_lock_once(&mut self, sync_id: SyncId) -> Result<bool> {
        let conn = self.conn().await?;
        let locked = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(sync_lock_key(sync_id))
            .fetch_one(conn)
            .await;
        if locked.is_err() {
            self.conn = None;
        }
        Ok(locked?)
    }

    async fn lock(&mut self, sync_id: SyncId) -> Result<bool> {
        if self.held.contains(&sync_id) {
            return Ok(false);
        }
        // A connection lost since the last use fails once: open a new one.
        let locked = match self.try_lock_once(sync_id).await {
            Ok(l) => l,
            Err(_) => self.try_lock_once(sync_id).await?,
        };
        if locked {
            self.held.insert(sync_id);
        }
        Ok(locked)
    }

    async fn unlock(&mut self, sync_id: SyncId) {
        if !self.held.remove(&sync_id) {
            return;
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let unlocked = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
            .bind(sync_lock_key(sync_id))
            .fetch_one(conn)
            .await;
        if unlocked.is_err() {
            // The lock went with the connection; the others are taken
            // again on the next use.
            self.conn = None;
        }
    }

    async fn check(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let alive = match self.conn.as_mut() {
            Some(conn) => conn.ping().await.is_ok(),
            None => false,
        };
        if !alive {
            self.conn = None;
            if let Err(e) = self.conn().await {
                tracing::warn!("cannot reopen the sync lock connection: {e}");
            }
        }
    }
}
