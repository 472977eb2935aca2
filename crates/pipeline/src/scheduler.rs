//! The scheduler: every worker runs one (`[scheduler]`), and each tick
//! fires the project schedules that are due and starts the wanted syncs
//! (asked for while the project's sync was running).
//!
//! There is no leader: the ticks of all workers meet in Postgres, which
//! locks each due project `FOR UPDATE SKIP LOCKED` in the transaction that
//! moves its next time on and records its sync (`Store::fire_schedules`),
//! so a schedule fires once per due time whatever the number of workers.
//! The next time is computed from the fire, so ticks missed while no worker
//! ran fire once. A new sync is an ordinary sync (trigger `schedule`), in
//! the ledger before it is pushed; a lost push is the reconciler's, as for
//! any sync (invariant 1).

use projsync_metrics::Metrics;
use projsync_queue::JobQueue;
use projsync_store::{ScheduleOutcome, Store, SyncRecord};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Time between ticks (`scheduler.tick_ms`).
    pub tick: Duration,
    /// Where fires are counted (`projsync_schedule_fires_total`,
    /// `projsync_wanted_syncs_started_total`).
    pub metrics: Metrics,
}

/// Due projects (or wanted syncs) handled per transaction.
const BATCH: i64 = 100;

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickReport {
    /// Syncs started by due schedules.
    pub fired: Vec<SyncRecord>,
    /// Due schedules whose project had a queued or running sync.
    pub busy: usize,
    /// Wanted syncs started.
    pub wanted: Vec<SyncRecord>,
}

/// One tick: fire the due schedules, start the wanted syncs, and push the
/// new syncs (each is in the ledger already, marked pushed).
pub async fn scheduler_tick(
    store: &Store,
    queue: &JobQueue,
    metrics: &Metrics,
) -> projsync_store::Result<TickReport> {
    let mut report = TickReport::default();
    loop {
        let fires = store.fire_schedules(BATCH).await?;
        let full = fires.len() as i64 >= BATCH;
        for fire in fires {
            let project_id = fire.project_id;
            match fire.outcome {
                ScheduleOutcome::Started(sync) => {
                    metrics.schedule_fire("started");
                    tracing::info!(
                        %project_id, sync_id = %sync.id, next_at = ?fire.next_at,
                        "schedule fired a sync"
                    );
                    push(queue, &sync).await;
                    report.fired.push(*sync);
                }
                ScheduleOutcome::Busy => {
                    metrics.schedule_fire("busy");
                    report.busy += 1;
                    tracing::info!(
                        %project_id, next_at = ?fire.next_at,
                        "schedule due while the project has a queued or running sync: \
                         this tick is consumed, none is stacked"
                    );
                }
                ScheduleOutcome::Stopped(why) => {
                    metrics.schedule_fire("stopped");
                    tracing::warn!(%project_id, "schedule stopped: {why}; set it again");
                }
            }
        }
        if !full {
            break;
        }
    }
    loop {
        let started = store.start_wanted(BATCH).await?;
        let full = started.len() as i64 >= BATCH;
        for sync in started {
            metrics.wanted_started();
            tracing::info!(
                project_id = %sync.project_id, sync_id = %sync.id, trigger = %sync.trigger,
                "started the sync wanted while the project's last sync ran"
            );
            push(queue, &sync).await;
            report.wanted.push(sync);
        }
        if !full {
            break;
        }
    }
    Ok(report)
}

/// Ring the doorbell; a lost push is the reconciler's.
async fn push(queue: &JobQueue, sync: &SyncRecord) {
    if let Err(e) = queue.push(sync.id).await {
        tracing::warn!(sync_id = %sync.id, "cannot push the sync (the reconciler will): {e}");
    }
}

pub async fn run_scheduler(
    store: Store,
    queue: JobQueue,
    opts: SchedulerOptions,
    shutdown: CancellationToken,
) {
    let tick = opts.tick.max(Duration::from_millis(10));
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = scheduler_tick(&store, &queue, &opts.metrics).await {
            tracing::warn!("scheduler cannot read the ledger: {e}");
        }
    }
}
