//! The store against the real database: a transaction whose begin is
//! dropped half-way (a request whose client went away, a `try_join!` whose
//! other half failed) leaves no transaction open on the connection that the
//! pool hands out next.

use projsync_domain::SyncId;
use projsync_store::{ConnectOptions, Store};
use projsync_test_support::TestDb;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

/// Poll `future` `polls` times (yielding between polls), then drop it.
async fn drop_after<F: Future>(future: F, polls: usize) {
    let mut future = std::pin::pin!(future);
    for _ in 0..polls {
        let ready =
            std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx).is_ready())).await;
        if ready {
            return;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begin_dropped_half_way_leaves_no_transaction_behind() {
    let db = TestDb::new().await;
    // One connection: whatever a dropped read leaves on it, the next
    // statement meets.
    let store = Store::connect(&ConnectOptions {
        url: db.url.clone(),
        max_connections: 1,
        connect_timeout: Duration::from_secs(10),
    })
    .await
    .unwrap()
    .scoped(db.store.tenant().expect("the test store has a tenant"));
    let probe = SyncId(uuid::Uuid::new_v4());
    for polls in 0..40 {
        for _ in 0..20 {
            // Dropped at every stage: acquiring, sending BEGIN, waiting for
            // its answer, running the read.
            drop_after(store.cancel_requested(probe), polls).await;
            let read_only: String =
                sqlx::query_scalar("SELECT current_setting('transaction_read_only')")
                    .fetch_one(store.pool())
                    .await
                    .unwrap();
            assert_eq!(
                read_only, "off",
                "after a read dropped at poll {polls}, the pool handed out a connection \
                 still inside its read-only transaction"
            );
        }
    }
    // The store still works.
    assert!(!store.cancel_requested(probe).await.unwrap());
}
