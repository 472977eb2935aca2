//! Fast, safe takeover (migrations/0009_takeover.sql): a sync whose
//! worker's lock connection is gone is handed out again and taken over
//! before its lease expires; a live lock keeps the lease; a worker that was
//! only cut off is still fenced out. Against the real database.

use projsync_domain::{Stats, SyncId};
use projsync_store::{
    sync_lock_key, Claim, ClaimOutcome, NewProject, Store, SyncLockGuard, SyncLocks,
};
use projsync_test_support::TestDb;
use std::time::Duration;

/// Long enough that no lease expires during a test: every takeover below
/// happens before it would.
const TTL: Duration = Duration::from_secs(3600);

async fn queued_sync(db: &TestDb) -> SyncId {
    let project = db
        .store
        .create_project(&NewProject::local(
            format!("p-{}", uuid::Uuid::new_v4().simple()),
            "/nowhere",
        ))
        .await
        .unwrap();
    db.store
        .create_sync(
            project.id,
            Some("main"),
            None,
            None,
            &projsync_domain::SyncTrigger::Api,
        )
        .await
        .unwrap()
        .sync
        .id
}

fn claimed(outcome: ClaimOutcome) -> Claim {
    match outcome {
        ClaimOutcome::Claimed { claim, .. } => claim,
        other => panic!("expected a claim, got {other:?}"),
    }
}

/// A worker of its own: its own pool and lock connection, as a process has.
async fn worker(db: &TestDb) -> (Store, SyncLocks) {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&db.url)
        .await
        .unwrap();
    let store = Store::from_pool(pool).scoped(projsync_store::DEFAULT_TENANT);
    let locks = SyncLocks::new(store.pool());
    (store, locks)
}

/// A queued sync, two workers, and worker A holding the sync's lock (the
/// guard is returned: dropping it releases the lock).
async fn two_workers_a_locked(
    db: &TestDb,
) -> (
    SyncId,
    (Store, SyncLocks),
    (Store, SyncLocks),
    SyncLockGuard,
) {
    let sync_id = queued_sync(db).await;
    let a = worker(db).await;
    let b = worker(db).await;
    let lock_a = a.1.try_lock(sync_id).await.unwrap();
    let lock_a = lock_a.expect("a free lock is taken");
    (sync_id, a, b, lock_a)
}

/// Terminate the backends holding the sync's advisory lock: what
/// PostgreSQL does when a worker process dies (its connection closes).
async fn kill_lock_connection(db: &TestDb, sync_id: SyncId) {
    let key = sync_lock_key(sync_id);
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND objsubid = 1 AND granted \
           AND ((classid::bigint << 32) | objid::bigint) = $1",
    )
    .bind(key)
    .fetch_all(&db.admin)
    .await
    .unwrap();
    assert_eq!(killed, vec![true], "one session held the lock");
    // Termination is asynchronous: wait until the lock is free (up to 10 s:
    // a loaded machine, with builds beside the tests, took over 2).
    for _ in 0..1000 {
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 \
               AND ((classid::bigint << 32) | objid::bigint) = $1)",
        )
        .bind(key)
        .fetch_one(&db.admin)
        .await
        .unwrap();
        if !held {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the lock of a terminated session was not released");
}

#[tokio::test]
async fn the_lock_key_is_the_same_in_rust_and_sql() {
    let db = TestDb::new().await;
    for _ in 0..50 {
        let id = SyncId::new();
        let sql: i64 = sqlx::query_scalar("SELECT projsync_sync_lock_key($1)")
            .bind(id.0)
            .fetch_one(&db.admin)
            .await
            .unwrap();
        assert_eq!(sql, sync_lock_key(id), "{id}");
    }
}

#[tokio::test]
async fn a_dead_workers_sync_is_taken_over_before_its_lease_expires() {
    let db = TestDb::new().await;
    let (sync_id, (store_a, _locks_a), (store_b, locks_b), lock_a) =
        two_workers_a_locked(&db).await;
    let a = claimed(store_a.claim_locked(sync_id, "a", TTL, true).await.unwrap());
    assert!(
        store_a.due_for_takeover(10).await.unwrap().is_empty(),
        "a held lock: nothing to take over"
    );

    // Worker A dies: its lock goes with its connection.
    kill_lock_connection(&db, sync_id).await;
    let due = store_b.due_for_takeover(10).await.unwrap();
    assert_eq!(
        due.iter().map(|d| d.sync_id).collect::<Vec<_>>(),
        vec![sync_id],
        "the sync is handed out again at once"
    );

    // Without the lock, B waits for the lease like before...
    assert_eq!(
        store_b
            .claim_locked(sync_id, "b", TTL, false)
            .await
            .unwrap(),
        ClaimOutcome::Unavailable
    );
    // ... with it, B takes the lease over, an hour before it expires.
    let lock_b = locks_b.try_lock(sync_id).await.unwrap();
    assert!(lock_b.is_some());
    let b = claimed(store_b.claim_locked(sync_id, "b", TTL, true).await.unwrap());
    assert!(b.fence > a.fence);
    let record = store_b.sync(sync_id).await.unwrap();
    assert_eq!(record.lease_owner.as_deref(), Some("b"));
    assert!(
        store_b.due_for_takeover(10).await.unwrap().is_empty(),
        "B holds the lock"
    );

    // A, had it only been cut off, is fenced out of every write.
    let err = store_a.set_stats(&a, &Stats::default()).await.unwrap_err();
    assert!(matches!(err, projsync_store::Error::LeaseLost(_)), "{err}");
    assert_eq!(
        store_a.heartbeat(&a, TTL).await.unwrap(),
        projsync_store::Heartbeat::Lost
    );
    store_b.set_stats(&b, &Stats::default()).await.unwrap();
    drop(lock_a);
}

#[tokio::test]
async fn a_live_lock_keeps_the_lease() {
    let db = TestDb::new().await;
    let (sync_id, (store_a, locks_a), (store_b, locks_b), lock_a) = two_workers_a_locked(&db).await;
    let a = claimed(store_a.claim_locked(sync_id, "a", TTL, true).await.unwrap());

    // Another worker cannot take the lock, so it cannot take over.
    assert!(locks_b.try_lock(sync_id).await.unwrap().is_none());
    assert_eq!(
        store_b
            .claim_locked(sync_id, "b", TTL, false)
            .await
            .unwrap(),
        ClaimOutcome::Unavailable
    );
    // Nor can a second delivery to the same process (a session's advisory
    // locks are reentrant; the process refuses its own).
    assert!(locks_a.try_lock(sync_id).await.unwrap().is_none());
    // The refusals released nothing: a later request (served after
    // anything they sent) finds the lock still held.
    let other = queued_sync(&db).await;
    // (The guard is kept: dropping it would release the lock.)
    let other_lock = locks_a.try_lock(other).await.unwrap();
    assert!(other_lock.is_some());
    assert!(locks_b.try_lock(other).await.unwrap().is_none());
    assert!(locks_a.try_lock(sync_id).await.unwrap().is_none());
    assert!(store_a.due_for_takeover(10).await.unwrap().is_empty());
    store_a.set_stats(&a, &Stats::default()).await.unwrap();

    // Released with the run: the next worker takes the lock, and takes the
    // sync once the lease is released too.
    store_a.release(&a).await.unwrap();
    drop(lock_a);
    let mut lock_b = None;
    for _ in 0..200 {
        lock_b = locks_b.try_lock(sync_id).await.unwrap();
        if lock_b.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(lock_b.is_some(), "the lock was released with the guard");
    let b = claimed(store_b.claim_locked(sync_id, "b", TTL, true).await.unwrap());
    assert!(b.fence > a.fence);
}

#[tokio::test]
async fn a_lost_lock_connection_is_reopened_with_its_locks() {
    let db = TestDb::new().await;
    let sync_id = queued_sync(&db).await;
    let other = queued_sync(&db).await;
    let (store_a, locks_a) = worker(&db).await;
    let lock = locks_a.try_lock(sync_id).await.unwrap();
    assert!(lock.is_some());
    claimed(store_a.claim_locked(sync_id, "a", TTL, true).await.unwrap());
    kill_lock_connection(&db, sync_id).await;
    // The next use reopens the connection and takes the run's lock again.
    assert!(locks_a.try_lock(other).await.unwrap().is_some());
    assert!(
        store_a.due_for_takeover(10).await.unwrap().is_empty(),
        "the running sync's lock is held again"
    );
}

/// The race of a duplicate delivery: worker A holds the lock but has not
/// claimed yet; worker B, finding the lock held, claims by the lease alone.
/// A's claim must then not take B's live lease over (B is alive: the free
/// lock said nothing of it), and the reconciler must not hand it out.
#[tokio::test]
async fn a_lease_taken_without_the_lock_is_not_taken_over_by_the_lock_holder() {
    let db = TestDb::new().await;
    let (sync_id, (store_a, _locks_a), (store_b, locks_b), lock_a) =
        two_workers_a_locked(&db).await;
    assert!(locks_b.try_lock(sync_id).await.unwrap().is_none());
    let b = claimed(
        store_b
            .claim_locked(sync_id, "b", TTL, false)
            .await
            .unwrap(),
    );
    assert_eq!(
        store_a.claim_locked(sync_id, "a", TTL, true).await.unwrap(),
        ClaimOutcome::Unavailable,
        "B's live lease stands"
    );
    // A gives the lock up (its job is dropped): B's lease, taken without
    // it, is still not a takeover candidate.
    drop(lock_a);
    let mut free = false;
    for _ in 0..200 {
        if let Some(lock) = locks_b.try_lock(sync_id).await.unwrap() {
            drop(lock);
            free = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(free, "A's lock was released");
    assert!(store_a.due_for_takeover(10).await.unwrap().is_empty());
    assert_eq!(store_b.sync(sync_id).await.unwrap().fence, b.fence);
    store_b.set_stats(&b, &Stats::default()).await.unwrap();
}
