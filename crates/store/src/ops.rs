//! What the operations pages read: the worker fleet, the queue's health and
//! the recent throughput, and the projects' overview (latest sync, active
//! entry count). All of it from the ledger, never from the queue in Redis:
//! Redis may have lost a job that Postgres still says is queued, and
//! Postgres is what a retry or the reconciler acts on.

use crate::syncs::{sync_from_row, SYNC_COLUMNS};
use crate::{Result, Store, SyncRecord};
use chrono::{DateTime, Utc};
use projsync_domain::{ProjectId, SyncId, SyncPhase};
use serde::{Deserialize, Serialize};
use sqlx::{PgExecutor, Row};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// A worker process as it registered itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// The worker's lease owner name (unique per process).
    pub name: String,
    pub hostname: String,
    pub pid: i32,
    /// The projsync version the worker runs.
    pub version: String,
    /// Jobs it runs at once.
    pub concurrency: i32,
    pub started_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// A running sync and the worker holding its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningSync {
    pub id: SyncId,
    pub project_id: ProjectId,
    pub current_phase: Option<SyncPhase>,
    pub lease_owner: String,
}

/// The queue as the ledger sees it, for the store's tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueCounts {
    /// Syncs waiting for a worker.
    pub depth: i64,
    /// Syncs a worker is running.
    pub running: i64,
    /// Seconds since the oldest queued sync was created; `None` when none is queued.
    pub oldest_queued_age_seconds: Option<f64>,
}

/// Syncs that ended in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThroughputBucket {
    /// The start of the minute.
    pub start: DateTime<Utc>,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
}

/// What the projects page shows beside a project.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectFacts {
    /// The newest sync or restore, whatever its status.
    pub latest_sync: Option<SyncRecord>,
    /// Active file entries.
    pub active_entries: i64,
}

/// Register a worker, or note that it is still alive (an upsert: a worker
/// whose row was pruned while it was paused comes back).
async fn upsert_worker<'e>(db: impl PgExecutor<'e>, w: &WorkerInfo) -> Result<()> {
    sqlx::query(
        "INSERT INTO workers (name, hostname, pid, version, concurrency, started_at, last_seen_at) \
         VALUES ($1, $2, $3, $4, $5, $6, now()) \
         ON CONFLICT (name) DO UPDATE SET last_seen_at = now(), concurrency = EXCLUDED.concurrency",
    )
    .bind(&w.name)
    .bind(&w.hostname)
    .bind(w.pid)
    .bind(&w.version)
    .bind(w.concurrency)
    .bind(w.started_at)
    .execute(db)
    .await?;
    Ok(())
}

impl Store {
    /// Register a starting worker, and prune the rows of workers not seen
    /// for `prune_after` (they died without deregistering).
    pub async fn register_worker(&self, worker: &WorkerInfo, prune_after: Duration) -> Result<()> {
        let mut tx = crate::begin_whole(&self.pool, "BEGIN").await?;
        sqlx::query("DELETE FROM workers WHERE last_seen_at < now() - make_interval(secs => $1)")
            .bind(prune_after.as_secs_f64())
            .execute(&mut *tx)
            .await?;
        upsert_worker(&mut *tx, worker).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The worker's heartbeat.
    pub async fn touch_worker(&self, worker: &WorkerInfo) -> Result<()> {
        upsert_worker(&self.pool, worker).await
    }

    /// A worker that stops cleanly leaves the fleet at once.
    pub async fn deregister_worker(&self, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM workers WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Workers seen within `live_within`, by name.
    pub async fn live_workers(&self, live_within: Duration) -> Result<Vec<WorkerInfo>> {
        let rows = sqlx::query(
            "SELECT name, hostname, pid, version, concurrency, started_at, last_seen_at FROM workers \
             WHERE last_seen_at >= now() - make_interval(secs => $1) ORDER BY name",
        )
        .bind(live_within.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| WorkerInfo {
                name: r.get("name"),
                hostname: r.get("hostname"),
                pid: r.get("pid"),
                version: r.get("version"),
                concurrency: r.get("concurrency"),
                started_at: r.get("started_at"),
                last_seen_at: r.get("last_seen_at"),
            })
            .collect())
    }

    /// The tenant's running syncs with their lease holder.
    pub async fn running_syncs(&self) -> Result<Vec<RunningSync>> {
        let rows = sqlx::query(
            "SELECT id, project_id, current_phase, lease_owner FROM project_syncs \
             WHERE status = 'running' AND lease_owner IS NOT NULL ORDER BY started_at, id",
        )
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunningSync {
                    id: SyncId(r.get("id")),
                    project_id: ProjectId(r.get("project_id")),
                    current_phase: r
                        .get::<Option<String>, _>("current_phase")
                        .map(|p| p.parse().map_err(crate::Error::Invalid))
                        .transpose()?,
                    lease_owner: r.get("lease_owner"),
                })
            })
            .collect()
    }

    /// The tenant's queue: depth, running syncs and the oldest queued one's age.
    pub async fn queue_counts(&self) -> Result<QueueCounts> {
        let row = sqlx::query(
            "SELECT count(*) FILTER (WHERE status = 'queued') AS depth, \
                    count(*) FILTER (WHERE status = 'running') AS running, \
                    extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'queued'))::float8 \
                        AS oldest \
             FROM project_syncs WHERE status IN ('queued', 'running')",
        )
        .fetch_one(&mut *self.read().await?)
        .await?;
        Ok(QueueCounts {
            depth: row.get("depth"),
            running: row.get("running"),
            oldest_queued_age_seconds: row.get("oldest"),
        })
    }

    /// Syncs of the tenant that ended in each of the last `minutes` minutes,
    /// oldest first; the last bucket is the current (partial) minute.
    pub async fn throughput(&self, minutes: i32) -> Result<Vec<ThroughputBucket>> {
        // An ended sync's updated_at is at or after its finished_at, so the
        // (status, updated_at) index bounds the scan to the last hour's work.
        let rows = sqlx::query(
            "WITH buckets AS ( \
                 SELECT generate_series(date_trunc('minute', now()) - make_interval(mins => $1 - 1), \
                                        date_trunc('minute', now()), interval '1 minute') AS start), \
             ended AS ( \
                 SELECT date_trunc('minute', finished_at) AS start, status FROM project_syncs \
                 WHERE status IN ('succeeded', 'failed', 'cancelled', 'discarded') \
                   AND updated_at >= date_trunc('minute', now()) - make_interval(mins => $1 - 1) \
                   AND finished_at >= date_trunc('minute', now()) - make_interval(mins => $1 - 1)) \
             SELECT b.start, \
                    count(e.status) FILTER (WHERE e.status = 'succeeded') AS succeeded, \
                    count(e.status) FILTER (WHERE e.status IN ('failed', 'discarded')) AS failed, \
                    count(e.status) FILTER (WHERE e.status = 'cancelled') AS cancelled \
             FROM buckets b LEFT JOIN ended e ON e.start = b.start \
             GROUP BY b.start ORDER BY b.start",
        )
        .bind(minutes.max(1))
        .fetch_all(&mut *self.read().await?)
        .await?;
        Ok(rows
            .iter()
            .map(|r| ThroughputBucket {
                start: r.get("start"),
                succeeded: r.get("succeeded"),
                failed: r.get("failed"),
                cancelled: r.get("cancelled"),
            })
            .collect())
    }

    /// For each of `projects`: its newest sync or restore and its count of
    /// active entries (two queries, whatever the number of projects).
    pub async fn project_facts(
        &self,
        projects: &[ProjectId],
    ) -> Result<HashMap<ProjectId, ProjectFacts>> {
        let ids: Vec<Uuid> = projects.iter().map(|p| p.0).collect();
        let mut tx = self.read().await?;
        let mut facts: HashMap<ProjectId, ProjectFacts> = projects
            .iter()
            .map(|p| (*p, ProjectFacts::default()))
            .collect();
        let latest = sqlx::query(&format!(
            "SELECT DISTINCT ON (project_id) {SYNC_COLUMNS} FROM project_syncs \
             WHERE project_id = ANY($1) AND kind IN ('sync', 'restore') \
             ORDER BY project_id, created_at DESC, id"
        ))
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        for row in &latest {
            let sync = sync_from_row(row)?;
            if let Some(f) = facts.get_mut(&sync.project_id) {
                f.latest_sync = Some(sync);
            }
        }
        let counts = sqlx::query(
            "SELECT project_id, count(*) AS n FROM memory_entries \
             WHERE project_id = ANY($1) AND status = 'active' AND kind = 'file' GROUP BY project_id",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        for row in &counts {
            if let Some(f) = facts.get_mut(&ProjectId(row.get("project_id"))) {
                f.active_entries = row.get("n");
            }
        }
        Ok(facts)
    }
}
