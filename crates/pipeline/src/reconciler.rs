//! The reconciler: Postgres is the ledger, Redis only the doorbell
//! (invariant 1). Every worker runs one; each pass pushes again the syncs
//! that are due but may have no job in the queue: queued syncs whose push
//! is older than `redeliver_after` (Redis restarted, flushed, or the
//! process died between commit and push), and running syncs whose lease
//! expired (a killed or partitioned worker). `FOR UPDATE SKIP LOCKED` keeps
//! reconcilers of different workers off the same rows; duplicate pushes
//! are harmless, since the lease decides who runs. Each push is a span in
//! the sync's own trace (its `trace_context` in the ledger).
//!
//! With `worker.takeover` (on by default), between passes, every
//! [`TAKEOVER_EVERY`], it also pushes running syncs whose lease was taken
//! with the advisory lock and is live, but whose lock is free (their
//! worker's connection died: a killed process): the claimer that takes the
//! lock takes the lease over at once (migrations/0009_takeover.sql, 0011). The job
//! queue drops a push for a sync whose job is already waiting, so passes
//! leave no duplicate jobs.

use projsync_metrics::Metrics;
use projsync_queue::JobQueue;
use projsync_store::Store;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

#[derive(Debug, Clone)]
pub struct ReconcilerOptions {
    /// Time between passes.
    pub interval: Duration,
    /// A sync pushed less than this long ago is left alone.
    pub redeliver_after: Duration,
    /// Also push, every [`TAKEOVER_EVERY`], running syncs whose advisory
    /// lock is free (`worker.takeover`).
    pub takeover: bool,
    /// Where the pushes are counted (`projsync_reconciler_pushes_total`).
    pub metrics: Metrics,
}

/// How often the reconciler looks for running syncs whose worker is gone
/// (at most; never less often than its pass).
pub const TAKEOVER_EVERY: Duration = Duration::from_millis(200);

pub async fn run_reconciler(
    store: Store,
    queue: JobQueue,
    opts: ReconcilerOptions,
    shutdown: CancellationToken,
) {
    let start = tokio::time::Instant::now();
    let mut pass = tokio::time::interval_at(start + opts.interval, opts.interval);
    pass.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let takeover_every = opts.interval.min(TAKEOVER_EVERY);
    let mut takeover = tokio::time::interval_at(start + takeover_every, takeover_every);
    takeover.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A running sync whose lock was seen free by the last takeover look
    // too: pushed only when seen free twice in a row, so that the moment a
    // live worker spends re-taking its locks on a new connection (or a
    // slow look under load) does not hand its sync to another worker.
    let mut suspects: std::collections::HashSet<projsync_domain::SyncId> = Default::default();
    loop {
        let (due, is_takeover) = tokio::select! {
            _ = pass.tick() => (store.due_for_push(opts.redeliver_after, 500).await, false),
            _ = takeover.tick(), if opts.takeover => (store.due_for_takeover(100).await, true),
            _ = shutdown.cancelled() => return,
        };
        let mut due = match due {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("reconciler cannot read the ledger: {e}");
                continue;
            }
        };
        if is_takeover {
            let seen: std::collections::HashSet<_> = due.iter().map(|d| d.sync_id).collect();
            due.retain(|d| suspects.contains(&d.sync_id));
            suspects = seen;
        }
        for due in due {
            let sync_id = due.sync_id;
            // The push joins the sync's own trace (a no-op without
            // telemetry): a lost job's second push shows in it.
            let span = tracing::info_span!("reconciler.push", %sync_id);
            projsync_telemetry::set_parent_from(&span, due.trace_context.as_deref());
            match queue.push(sync_id).instrument(span).await {
                Ok(()) => {
                    opts.metrics.reconciler_push();
                    tracing::info!(%sync_id, "reconciler pushed the sync again");
                }
                Err(e) => tracing::warn!(%sync_id, "reconciler cannot push: {e}"),
            }
        }
    }
}
