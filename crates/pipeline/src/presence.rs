//! The worker's entry in the fleet (`workers`, migration 0007): registered
//! when the worker starts, touched every [`HEARTBEAT`], removed when it
//! stops cleanly. The operations pages count a worker as live while it was
//! seen within [`LIVE_WITHIN`], so a killed worker drops off by itself.

use projsync_store::{Store, WorkerInfo};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a worker says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// A worker not seen for this long is not shown as live (three missed beats).
pub const LIVE_WITHIN: Duration = Duration::from_secs(30);
/// Rows of workers not seen for this long are deleted by the next worker
/// that starts.
pub const PRUNE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// This process as a worker of the fleet.
pub fn worker_info(name: &str, version: &str, concurrency: usize) -> WorkerInfo {
    let hostname = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    WorkerInfo {
        name: name.to_string(),
        hostname,
        pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
        version: version.to_string(),
        concurrency: i32::try_from(concurrency).unwrap_or(i32::MAX),
        started_at: chrono::Utc::now(),
        last_seen_at: chrono::Utc::now(),
    }
}

/// Keep `worker` registered until `shutdown`, then remove it. A database
/// that is away only delays the beats (logged); the worker keeps working.
pub async fn run_presence(store: Store, worker: WorkerInfo, shutdown: CancellationToken) {
    if let Err(e) = store.register_worker(&worker, PRUNE_AFTER).await {
        tracing::warn!(worker = %worker.name, "cannot register the worker in the fleet: {e}");
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT) => {}
            _ = shutdown.cancelled() => break,
        }
        if let Err(e) = store.touch_worker(&worker).await {
            tracing::warn!(worker = %worker.name, "cannot record the worker's heartbeat: {e}");
        }
    }
    if let Err(e) = store.deregister_worker(&worker.name).await {
        tracing::warn!(worker = %worker.name, "cannot remove the worker from the fleet: {e}");
    }
}
