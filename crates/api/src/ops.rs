//! Operations endpoints beyond a single sync: the queue's health (depth,
//! oldest queued sync, live workers and what they run, syncs per minute)
//! and retrying a selection of syncs at once. Everything is read from the
//! ledger in Postgres, scoped to the caller's tenant; the worker fleet is
//! the deployment's, shown with only the tenant's syncs on it.

use crate::auth::Scoped;
use crate::ApiError;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use projsync_domain::{ProjectId, Role, SyncId, SyncPhase};
use projsync_store::{SyncRecord, ThroughputBucket};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A worker is live while it was seen this recently (workers beat every
/// 10 s; see the pipeline's `presence`).
const LIVE_WITHIN: Duration = Duration::from_secs(30);
/// The chart's span: one bucket a minute over the last hour.
const THROUGHPUT_MINUTES: i32 = 60;
/// Most syncs one bulk retry takes.
pub const MAX_BULK_RETRY: usize = 100;

#[derive(Debug, Serialize)]
pub struct QueueHealth {
    /// The tenant's syncs waiting for a worker.
    depth: i64,
    /// The tenant's syncs a worker is running.
    running: i64,
    /// Age of the oldest queued sync, in seconds; null when none is queued.
    oldest_queued_age_seconds: Option<f64>,
    /// Workers seen in the last 30 seconds.
    workers: Vec<Worker>,
    throughput: Throughput,
}

#[derive(Debug, Serialize)]
struct Worker {
    name: String,
    hostname: String,
    pid: i32,
    version: String,
    concurrency: i32,
    started_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    /// The tenant's syncs whose lease this worker holds.
    current_syncs: Vec<CurrentSync>,
}

#[derive(Debug, Serialize)]
struct CurrentSync {
    id: SyncId,
    project_id: ProjectId,
    current_phase: Option<SyncPhase>,
}

#[derive(Debug, Serialize)]
struct Throughput {
    bucket_seconds: u32,
    /// Oldest first; the last bucket is the current minute.
    buckets: Vec<ThroughputBucket>,
}

/// 200 with the queue's health.
pub async fn queue_health(Scoped(state): Scoped) -> Result<Json<QueueHealth>, ApiError> {
    let counts = state.store.queue_counts().await?;
    let running = state.store.running_syncs().await?;
    let workers = state.store.live_workers(LIVE_WITHIN).await?;
    let buckets = state.store.throughput(THROUGHPUT_MINUTES).await?;
    let workers = workers
        .into_iter()
        .map(|w| Worker {
            current_syncs: running
                .iter()
                .filter(|s| s.lease_owner == w.name)
                .map(|s| CurrentSync {
                    id: s.id,
                    project_id: s.project_id,
                    current_phase: s.current_phase,
                })
                .collect(),
            name: w.name,
            hostname: w.hostname,
            pid: w.pid,
            version: w.version,
            concurrency: w.concurrency,
            started_at: w.started_at,
            last_seen_at: w.last_seen_at,
        })
        .collect();
    Ok(Json(QueueHealth {
        depth: counts.depth,
        running: counts.running,
        oldest_queued_age_seconds: counts.oldest_queued_age_seconds,
        workers,
        throughput: Throughput {
            bucket_seconds: 60,
            buckets,
        },
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRetry {
    ids: Vec<String>,
    #[serde(default)]
    from_start: bool,
}

#[derive(Debug, Serialize)]
pub struct BulkRetryResponse {
    /// One result per requested id, in the order asked.
    results: Vec<RetryResult>,
}

#[derive(Debug, Serialize)]
struct RetryResult {
    id: String,
    /// The status the single retry (`POST /syncs/{id}/retry`) would have
    /// answered: 202 when queued again.
    status: u16,
    sync: Option<SyncRecord>,
    /// The error the single retry would have answered (`ErrorBody.error`).
    error: Option<serde_json::Value>,
}

/// 200 with a result per sync: each is retried on its own, and one that
/// cannot be (already succeeded, unknown, its project busy) does not stop
/// the others.
pub async fn retry_syncs(
    Scoped(state): Scoped,
    body: Result<Json<BulkRetry>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<BulkRetryResponse>), ApiError> {
    state.require(Role::Admin)?;
    let Json(body) = body?;
    if body.ids.is_empty() || body.ids.len() > MAX_BULK_RETRY {
        return Err(ApiError::Invalid(format!(
            "`ids` must name 1 to {MAX_BULK_RETRY} syncs (got {}); split a larger selection",
            body.ids.len()
        )));
    }
    let mut results = Vec::with_capacity(body.ids.len());
    for raw in body.ids {
        let outcome = match crate::routes::sync_id(&raw) {
            Ok(id) => crate::service::retry_sync(&state, id, body.from_start).await,
            Err(e) => Err(e),
        };
        results.push(match outcome {
            Ok(sync) => RetryResult {
                id: raw,
                status: StatusCode::ACCEPTED.as_u16(),
                sync: Some(sync),
                error: None,
            },
            Err(e) => {
                let (status, body) = e.parts();
                RetryResult {
                    id: raw,
                    status: status.as_u16(),
                    sync: None,
                    error: Some(body),
                }
            }
        });
    }
    Ok((StatusCode::OK, Json(BulkRetryResponse { results })))
}
