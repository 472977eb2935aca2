//! Syncs, their steps, leases with fence tokens, and the progress snapshot.

use crate::Commit;
use crate::{Error, Result, Store};
use chrono::{DateTime, Utc};
use projsync_domain::plan::ChangeKind;
use projsync_domain::progress::ProgressEvent;
use projsync_domain::{
    EntryKind, PhaseError, PhaseStatus, ProjectId, SkipReason, Stats, SyncId, SyncPhase,
    SyncStatus, SyncTrigger, TenantId,
};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgExecutor, Postgres, Row, Transaction};
use std::time::Duration;
use uuid::Uuid;

/// Where a page of syncs resumes: the sort timestamp (`created_at` for a
/// project's history, `updated_at` for the ops list) and id of the last one.
pub type SyncKey = (DateTime<Utc>, SyncId);

/// A sync as the ledger has it: the contract the API and CLI show.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyncRecord {
    pub id: SyncId,
    pub project_id: ProjectId,
    /// `sync` or `restore`.
    pub kind: String,
    /// For a restore: the sync whose state it brings back.
    pub restore_of_sync_id: Option<SyncId>,
    /// A backfill's options (`{"prune": true}`); `{}` otherwise.
    #[serde(default)]
    pub options: serde_json::Value,
    pub branch: String,
    pub head_commit: Option<String>,
    pub status: SyncStatus,
    /// `changed` or `unchanged` once succeeded.
    pub outcome: Option<String>,
    pub current_phase: Option<SyncPhase>,
    pub stats: Stats,
    pub error_class: Option<String>,
    pub error_message: Option<String>,
    pub failed_phase: Option<SyncPhase>,
    pub attempts: i32,
    pub fence: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub previous_sync_id: Option<SyncId>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// A scheduled retry is not claimed before this time.
    pub not_before: Option<DateTime<Utc>>,
    /// When the job was last pushed to the queue.
    pub last_pushed_at: Option<DateTime<Utc>>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// Retries requested by operators.
    pub retries: i32,
    /// The latest progress event (a late subscriber starts from it).
    pub progress: Option<ProgressEvent>,
    /// What started it: `api`, `cli`, `webhook:<delivery>`, `schedule`,
    /// `hook`.
    #[serde(default)]
    pub trigger: SyncTrigger,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    pub phase: SyncPhase,
    pub status: PhaseStatus,
    pub attempts: i32,
    pub checkpoint: Option<serde_json::Value>,
    pub error_message: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What [`Store::start_step`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum StepStart {
    /// The step is running, one attempt more.
    Started(StepRecord),
    /// A cancel was asked for: the step was not started.
    CancelRequested,
}

/// What a batch write of a run did: a batch is not written once a cancel
/// has been asked for (its fence check reads it, under the row lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum BatchWrite {
    Written,
    CancelRequested,
}

/// The result of asking for a sync.
#[derive(Debug, Clone)]
pub struct EnqueueOutcome {
    pub sync: SyncRecord,
    /// `false` when an active sync of the project, or the sync with the same
    /// idempotency key, was returned instead of a new one.
    pub created: bool,
}

/// What kind of sync `create_sync_of_kind` records.
enum NewKind {
    Sync,
    /// A restore of this succeeded sync.
    Restore(SyncId),
    /// A backfill with these options.
    Backfill(serde_json::Value),
}

/// What [`Store::request_sync`] did.
#[derive(Debug, Clone)]
pub enum SyncRequest {
    /// A new sync, queued, due after the delay.
    Created(SyncRecord),
    /// The project's queued sync, which takes the request.
    Queued(SyncRecord),
    /// The project's running sync: another is wanted once it ends.
    Wanted(SyncRecord),
}

impl SyncRequest {
    /// The sync the request created or joined, or the running one.
    pub fn sync(&self) -> &SyncRecord {
        match self {
            Self::Created(s) | Self::Queued(s) | Self::Wanted(s) => s,
        }
    }
}

/// Syncs of one status and outcome across tenants (`Store::sync_metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct SyncCount {
    pub status: String,
    /// The outcome of a succeeded sync, the error class of a failed one,
    /// `none` otherwise.
    pub outcome: String,
    pub count: i64,
    /// Seconds since the oldest of them was created.
    pub oldest_age_secs: f64,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    Claimed {
        claim: Claim,
        /// The W3C `traceparent` the sync was created under (`None` when
        /// telemetry was off then): the run's spans join that trace.
        trace_context: Option<String>,
    },
    /// A scheduled retry, due in this long.
    NotDue(Duration),
    /// Finished, or leased by another live worker: drop the job.
    Unavailable,
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    Held,
    CancelRequested,
    Lost,
}

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// A queued sync, cancelled at once.
    Cancelled,
    /// A running sync, which stops at its next batch boundary.
    Requested,
}

/// A sync the reconciler pushes again (`Store::due_for_push`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuePush {
    pub sync_id: SyncId,
    /// The W3C `traceparent` it was created under: the push joins its trace.
    pub trace_context: Option<String>,
}

/// A lease taken on a sync by one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub sync_id: SyncId,
    pub project_id: ProjectId,
    pub fence: i64,
}

/// One row of the scan's change plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRow {
    pub path: String,
    pub change: ChangeKind,
    pub kind: EntryKind,
    pub blob_sha: Option<String>,
    pub old_blob_sha: Option<String>,
    pub old_path: Option<String>,
    pub size: Option<i64>,
    pub language: Option<String>,
    pub skip_reason: Option<SkipReason>,
    pub needs_entry: bool,
}

pub(crate) const SYNC_COLUMNS: &str = "id, project_id, kind, restore_of_sync_id, branch, head_commit, status, outcome, current_phase, \
     stats, error_class, error_message, failed_phase, attempts, fence, lease_owner, lease_expires_at, \
     previous_sync_id, created_at, started_at, finished_at, progress, not_before, last_pushed_at, \
     cancel_requested_at, retries, options, trigger";

fn parse<T: std::str::FromStr<Err = String>>(s: &str) -> Result<T> {
    s.parse().map_err(Error::Invalid)
}

pub(crate) fn sync_from_row(row: &PgRow) -> Result<SyncRecord> {
    let opt_phase = |col: &str| -> Result<Option<SyncPhase>> {
        row.get::<Option<String>, _>(col)
            .map(|s| parse::<SyncPhase>(&s))
            .transpose()
    };
    Ok(SyncRecord {
        id: SyncId(row.get("id")),
        project_id: ProjectId(row.get("project_id")),
        kind: row.get("kind"),
        restore_of_sync_id: row.get::<Option<Uuid>, _>("restore_of_sync_id").map(SyncId),
        options: row.get("options"),
        branch: row.get("branch"),
        head_commit: row.get("head_commit"),
        status: parse(row.get::<&str, _>("status"))?,
        outcome: row.get("outcome"),
        current_phase: opt_phase("current_phase")?,
        stats: row
            .get::<Option<Json<Stats>>, _>("stats")
            .map(|j| j.0)
            .unwrap_or_default(),
        error_class: row.get("error_class"),
        error_message: row.get("error_message"),
        failed_phase: opt_phase("failed_phase")?,
        attempts: row.get("attempts"),
        fence: row.get("fence"),
        lease_owner: row.get("lease_owner"),
        lease_expires_at: row.get("lease_expires_at"),
        previous_sync_id: row.get::<Option<Uuid>, _>("previous_sync_id").map(SyncId),
        created_at: row.get("created_at"),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        not_before: row.get("not_before"),
        last_pushed_at: row.get("last_pushed_at"),
        cancel_requested_at: row.get("cancel_requested_at"),
        retries: row.get("retries"),
        progress: row
            .get::<Option<Json<ProgressEvent>>, _>("progress")
            .map(|j| j.0),
        trigger: parse(row.get::<&str, _>("trigger"))?,
    })
}

/// How a fenced write locks the sync's row.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FenceLock {
    /// `FOR UPDATE`: the writes that update the row, or must not overlap.
    Update,
    /// `FOR SHARE`: writes of one run that touch other rows only (chunk
    /// batches) hold it side by side, while a takeover, which updates the
    /// row, still waits for each of them to end.
    Share,
}

/// What the fence check saw of the sync's row, besides its owner.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fenced {
    /// Someone asked to cancel the sync. Read under the row lock, so no
    /// request can land between this answer and the transaction's end.
    cancel_requested: bool,
}

/// Lock the sync row and check that `fence` still owns it. Every write of a
/// phase calls this first, inside its transaction (invariant 3).
async fn check_fence(
    tx: &mut Transaction<'_, Postgres>,
    sync_id: SyncId,
    fence: i64,
    lock: FenceLock,
) -> Result<Fenced> {
    let sql = match lock {
        FenceLock::Update => {
            "SELECT fence, status, cancel_requested_at IS NOT NULL FROM project_syncs \
             WHERE id = $1 FOR UPDATE"
        }
        FenceLock::Share => {
            "SELECT fence, status, cancel_requested_at IS NOT NULL FROM project_syncs \
             WHERE id = $1 FOR SHARE"
        }
    };
    let current: Option<(i64, String, bool)> = sqlx::query_as(sql)
        .bind(sync_id.0)
        .fetch_optional(&mut **tx)
        .await?;
    match current {
        Some((f, status, cancel_requested)) if f == fence && status == "running" => {
            Ok(Fenced { cancel_requested })
        }
        Some(_) => Err(Error::LeaseLost(sync_id)),
        None => Err(Error::NotFound(format!("sync {sync_id}"))),
    }
}

/// Mark `phase` running (one more attempt) and make it the sync's current
/// phase, on `db` (a fenced transaction); `None` when the sync has no such
/// step.
async fn start_step_on(
    db: impl PgExecutor<'_>,
    claim: &Claim,
    phase: SyncPhase,
) -> Result<Option<StepRecord>> {
    let row = sqlx::query(&format!(
        "WITH sync AS (UPDATE project_syncs SET current_phase = $2, updated_at = now() \
             WHERE id = $1) \
         UPDATE sync_steps SET status = 'running', attempts = attempts + 1, \
             started_at = coalesce(started_at, clock_timestamp()), error_message = NULL \
         WHERE sync_id = $1 AND phase = $2 RETURNING {STEP_COLUMNS}"
    ))
    .bind(claim.sync_id.0)
    .bind(phase.as_str())
    .fetch_optional(db)
    .await?;
    row.as_ref().map(step_from_row).transpose()
}

/// End `phase`'s step as `status` with `checkpoint`, set the sync's stats
/// and head where given, and start the next step (unless a cancel was
/// asked for, or this was the last phase): one statement, in a fenced
/// transaction (`fenced` is what its fence check saw). The engine runs the
/// started step next (`None`: the last phase, or no such step; the engine
/// starts what comes itself).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn finish_and_start_next(
    tx: &mut Transaction<'_, Postgres>,
    claim: &Claim,
    fenced: Fenced,
    phase: SyncPhase,
    status: PhaseStatus,
    checkpoint: serde_json::Value,
    stats: Option<&Stats>,
    head: Option<&str>,
) -> Result<Option<StepStart>> {
    let next = phase.next().filter(|_| !fenced.cancel_requested);
    let started = sqlx::query(&format!(
        "WITH t AS MATERIALIZED (SELECT clock_timestamp() AS at), \
         sync AS ( \
             UPDATE project_syncs SET updated_at = now(), stats = coalesce($5, stats), \
                 head_commit = coalesce($6, head_commit), \
                 current_phase = coalesce($7, current_phase) \
             WHERE id = $1), \
         done AS ( \
             UPDATE sync_steps SET status = $3, checkpoint = $4, finished_at = (SELECT at FROM t), \
                 error_message = NULL \
             WHERE sync_id = $1 AND phase = $2) \
         UPDATE sync_steps SET status = 'running', attempts = attempts + 1, \
             started_at = coalesce(started_at, (SELECT at FROM t)), error_message = NULL \
         WHERE sync_id = $1 AND phase = $7 RETURNING {STEP_COLUMNS}"
    ))
    .bind(claim.sync_id.0)
    .bind(phase.as_str())
    .bind(status.as_str())
    .bind(checkpoint)
    .bind(stats.map(Json))
    .bind(head)
    .bind(next.map(|p| p.as_str()))
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match (phase.next(), fenced.cancel_requested) {
        (None, _) => None,
        (Some(_), true) => Some(StepStart::CancelRequested),
        (Some(_), false) => started
            .as_ref()
            .map(step_from_row)
            .transpose()?
            .map(StepStart::Started),
    })
}

impl Store {
    /// A transaction that holds the sync's row lock with the fence checked:
    /// how every intermediate write of a run begins (invariant 3). Its
    /// commit is deferred ([`Commit::Deferred`]): a run's last write, made
    /// with [`Store::fenced_durable`], makes it durable.
    pub(crate) async fn fenced(&self, claim: &Claim) -> Result<Transaction<'static, Postgres>> {
        Ok(self
            .fenced_as(claim, Commit::Deferred, FenceLock::Update)
            .await?
            .0)
    }

    /// [`Store::fenced`], for a run's last write: the commit waits for the
    /// disk, and with it every deferred commit before it.
    pub(crate) async fn fenced_durable(
        &self,
        claim: &Claim,
    ) -> Result<Transaction<'static, Postgres>> {
        Ok(self
            .fenced_as(claim, Commit::Durable, FenceLock::Update)
            .await?
            .0)
    }

    /// A fenced transaction committed as `commit`, its row locked as
    /// `lock` says, with what the fence check saw.
    pub(crate) async fn fenced_as(
        &self,
        claim: &Claim,
        commit: Commit,
        lock: FenceLock,
    ) -> Result<(Transaction<'static, Postgres>, Fenced)> {
        let mut tx = self.begin_committing(commit).await?;
        let fenced = check_fence(&mut tx, claim.sync_id, claim.fence, lock).await?;
        Ok((tx, fenced))
    }

    /// [`Store::fenced_durable`] whose statements are each planned for
    /// their own parameters ([`Store::begin_custom_plans`]): finalize's.
    pub(crate) async fn fenced_durable_custom_plans(
        &self,
        claim: &Claim,
    ) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.begin_custom_plans(Commit::Durable).await?;
        check_fence(&mut tx, claim.sync_id, claim.fence, FenceLock::Update).await?;
        Ok(tx)
    }

    /// [`Store::fenced`] (with the row locked as `lock` says), or `None` when a
    /// cancel has been asked for: the fence check is then also the
    /// boundary's cancel check, without a read of its own, and the write
    /// does not happen.
    pub(crate) async fn fenced_unless_cancelled(
        &self,
        claim: &Claim,
        lock: FenceLock,
    ) -> Result<Option<Transaction<'static, Postgres>>> {
        let (tx, fenced) = self.fenced_as(claim, Commit::Deferred, lock).await?;
        Ok((!fenced.cancel_requested).then_some(tx))
    }

    /// One statement as a fenced write of its own (begin, check the fence,
    /// run it, commit): the shape of a run's small writes.
    async fn fenced_execute(&self, claim: &Claim, query: PgQuery<'_>) -> Result<()> {
        let mut tx = self.fenced(claim).await?;
        query.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A statement with its arguments bound.
type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// A new sync's steps, one per phase, with one statement: pending, except
/// that a backfill reads no source and has only embed and finalize.
pub(crate) async fn insert_steps(
    tx: &mut Transaction<'static, Postgres>,
    id: SyncId,
    kind: &str,
) -> Result<()> {
    let statuses: Vec<&str> = SyncPhase::ALL
        .iter()
        .map(|phase| {
            if kind == "backfill" && !matches!(phase, SyncPhase::Embed | SyncPhase::Finalize) {
                "skipped"
            } else {
                "pending"
            }
        })
        .collect();
    sqlx::query(
        "INSERT INTO sync_steps (sync_id, phase, ordinal, status) \
         SELECT $1, t.phase, t.ordinal - 1, t.status \
         FROM UNNEST($2::text[], $3::text[]) WITH ORDINALITY AS t(phase, status, ordinal)",
    )
    .bind(id.0)
    .bind(
        SyncPhase::ALL
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(&statuses)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// When a sync recorded by [`insert_queued_sync`] is due.
pub(crate) enum Due {
    /// Now: the caller pushes it after the commit (marked pushed, so the
    /// reconciler pushes it again only if that push is lost).
    Now,
    /// After this delay (`not_before`), unpushed: the reconciler pushes it
    /// when it is due.
    After(Duration),
}

/// A queued sync of the project's default branch by `trigger`, with its
/// steps; `None` when the project has an active sync (the unique index on
/// one active sync per project says so, without an error that would end
/// the transaction). Used by the requests that do not wait (webhooks,
/// hooks) and by the scheduler.
pub(crate) async fn insert_queued_sync(
    tx: &mut Transaction<'static, Postgres>,
    project_id: ProjectId,
    trigger: &SyncTrigger,
    due: Due,
) -> Result<Option<SyncRecord>> {
    let (delay, pushed) = match due {
        Due::Now => (None, true),
        Due::After(delay) => (Some(interval(delay)), false),
    };
    let row = sqlx::query(&format!(
        "INSERT INTO project_syncs (id, project_id, branch, status, kind, options, \
             not_before, last_pushed_at, trigger) \
         SELECT $1, p.id, r.default_branch, 'queued', 'sync', '{{}}', \
             now() + make_interval(secs => $3), CASE WHEN $4 THEN now() END, $5 \
         FROM projects p JOIN repositories r ON r.project_id = p.id WHERE p.id = $2 \
         ON CONFLICT DO NOTHING \
         RETURNING {SYNC_COLUMNS}"
    ))
    .bind(SyncId::new().0)
    .bind(project_id.0)
    .bind(delay)
    .bind(pushed)
    .bind(trigger.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let sync = sync_from_row(&row)?;
    insert_steps(tx, sync.id, "sync").await?;
    Ok(Some(sync))
}

fn interval(ttl: Duration) -> f64 {
    ttl.as_secs_f64()
}

impl Store {
    /// Record a new sync (status `queued`, one pending step per phase). If
    /// the project already has a queued or running sync, or a sync with the
    /// same idempotency key, that one is returned instead.
    ///
    /// `branch`: `None` for the repository's default branch. A project
    /// that is not this tenant's is [`Error::NotFound`], as an unknown one.
    ///
    /// `trace_context` is the W3C `traceparent` of the request that asks for
    /// it, kept with a new sync so that its runs join that trace.
    pub async fn create_sync(
        &self,
        project_id: ProjectId,
        branch: Option<&str>,
        idempotency_key: Option<&str>,
        trace_context: Option<&str>,
        trigger: &SyncTrigger,
    ) -> Result<EnqueueOutcome> {
        self.create_sync_of_kind(
            project_id,
            branch,
            idempotency_key,
            NewKind::Sync,
            trace_context,
            trigger,
        )
        .await
    }

    /// Record a backfill: a job that embeds every active chunk of the
    /// project lacking a vector of the configured model (and chunks active
    /// entries that have none). It runs only the embed and finalize phases.
    pub async fn create_backfill(
        &self,
        project_id: ProjectId,
        branch: &str,
        options: serde_json::Value,
        idempotency_key: Option<&str>,
        trace_context: Option<&str>,
        trigger: &SyncTrigger,
    ) -> Result<EnqueueOutcome> {
        self.create_sync_of_kind(
            project_id,
            Some(branch),
            idempotency_key,
            NewKind::Backfill(options),
            trace_context,
            trigger,
        )
        .await
    }

    /// Record a restore of `target` (a succeeded sync of the project), run
    /// by workers like any sync.
    pub async fn create_restore(
        &self,
        project_id: ProjectId,
        target: &SyncRecord,
        idempotency_key: Option<&str>,
        trace_context: Option<&str>,
        trigger: &SyncTrigger,
    ) -> Result<EnqueueOutcome> {
        self.create_sync_of_kind(
            project_id,
            Some(&target.branch),
            idempotency_key,
            NewKind::Restore(target.id),
            trace_context,
            trigger,
        )
        .await
    }

    /// `branch`: `None` for the repository's default branch.
    async fn create_sync_of_kind(
        &self,
        project_id: ProjectId,
        branch: Option<&str>,
        idempotency_key: Option<&str>,
        new: NewKind,
        trace_context: Option<&str>,
        trigger: &SyncTrigger,
    ) -> Result<EnqueueOutcome> {
        let (kind, restore_of, backfill) = match new {
            NewKind::Sync => ("sync", None, None),
            NewKind::Restore(target) => ("restore", Some(target), None),
            NewKind::Backfill(options) => ("backfill", None, Some(options)),
        };
        // Two attempts: the active sync we collided with may end in between.
        for _ in 0..2 {
            if let Some(key) = idempotency_key {
                if let Some(sync) = self.sync_by_idempotency_key(project_id, key).await? {
                    return Ok(EnqueueOutcome {
                        sync,
                        created: false,
                    });
                }
            }
            let id = SyncId::new();
            let mut tx = self.begin().await?;
            // The new row comes back from the INSERT (no read after the
            // commit), and the steps go in with one statement.
            // The project is read through the tenant's row-level security
            // (a foreign key check would not be): a project that is not
            // the tenant's inserts nothing.
            let inserted = sqlx::query(&format!(
                "INSERT INTO project_syncs (id, project_id, branch, status, idempotency_key, kind, \
                     restore_of_sync_id, last_pushed_at, options, trace_context, trigger) \
                 SELECT $1, p.id, coalesce($3, r.default_branch), 'queued', $4, $5, $6, now(), \
                     $7, $8, $9 \
                 FROM projects p JOIN repositories r ON r.project_id = p.id WHERE p.id = $2 \
                 RETURNING {SYNC_COLUMNS}"
            ))
            .bind(id.0)
            .bind(project_id.0)
            .bind(branch)
            .bind(idempotency_key)
            .bind(kind)
            .bind(restore_of.map(|s| s.0))
            .bind(backfill.clone().unwrap_or_else(|| serde_json::json!({})))
            .bind(trace_context)
            .bind(trigger.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::from);
            let row = match inserted {
                Ok(Some(row)) => row,
                Ok(None) => return Err(Error::NotFound(format!("project {project_id}"))),
                Err(e) if e.is_unique_violation() => {
                    drop(tx);
                    if let Some(sync) = self.active_sync(project_id).await? {
                        return Ok(EnqueueOutcome {
                            sync,
                            created: false,
                        });
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            insert_steps(&mut tx, id, kind).await?;
            tx.commit().await?;
            return Ok(EnqueueOutcome {
                sync: sync_from_row(&row)?,
                created: true,
            });
        }
        Err(Error::Conflict(format!(
            "project {project_id} keeps changing its active sync; try again"
        )))
    }

    /// Ask for a sync of the project's branch on behalf of something that
    /// does not wait for it (a webhook delivery, a Git hook), so that a
    /// burst of requests is one sync that ends at the newest head:
    ///
    /// - the project has a queued sync: that one is the answer (it reads
    ///   the branch head when it runs, so it takes this request's commit
    ///   too);
    /// - it has a running sync (which may have read the head already): a
    ///   sync is *wanted* (`projects.sync_wanted_at`), and the scheduler
    ///   starts it once the running one has ended ([`Store::start_wanted`]);
    ///   an earlier wanted sync keeps its time and trigger;
    /// - otherwise: a new sync, queued with `not_before` `delay` from now
    ///   and not pushed; the reconciler pushes it when it is due. Requests
    ///   within the delay find it queued.
    ///
    /// Serialized per project by the project's row lock. A project that is
    /// not this tenant's is [`Error::NotFound`].
    pub async fn request_sync(
        &self,
        project_id: ProjectId,
        trigger: &SyncTrigger,
        delay: Duration,
    ) -> Result<SyncRequest> {
        let mut tx = self.begin().await?;
        let locked: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM projects WHERE id = $1 FOR UPDATE")
                .bind(project_id.0)
                .fetch_optional(&mut *tx)
                .await?;
        if locked.is_none() {
            return Err(Error::NotFound(format!("project {project_id}")));
        }
        let active = sqlx::query(&format!(
            "SELECT {SYNC_COLUMNS} FROM project_syncs \
             WHERE project_id = $1 AND status IN ('queued', 'running')"
        ))
        .bind(project_id.0)
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(sync_from_row)
        .transpose()?;
        let outcome = match active {
            Some(sync) if sync.status == SyncStatus::Queued => SyncRequest::Queued(sync),
            Some(sync) => {
                sqlx::query(
                    "UPDATE projects SET sync_wanted_at = coalesce(sync_wanted_at, now()), \
                         sync_wanted_trigger = coalesce(sync_wanted_trigger, $2) \
                     WHERE id = $1",
                )
                .bind(project_id.0)
                .bind(trigger.to_string())
                .execute(&mut *tx)
                .await?;
                SyncRequest::Wanted(sync)
            }
            None => {
                let sync = insert_queued_sync(&mut tx, project_id, trigger, Due::After(delay))
                    .await?
                    .ok_or_else(|| {
                        Error::Conflict(format!(
                            "project {project_id} keeps changing its active sync; try again"
                        ))
                    })?;
                SyncRequest::Created(sync)
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn sync_by_idempotency_key(
        &self,
        project_id: ProjectId,
        key: &str,
    ) -> Result<Option<SyncRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {SYNC_COLUMNS} FROM project_syncs WHERE project_id = $1 AND idempotency_key = $2"
        ))
        .bind(project_id.0)
        .bind(key)
        .fetch_optional(&mut *self.read().await?)
        .await?;
        row.as_ref().map(sync_from_row).transpose()
    }

    /// The queued or running sync of a project, if any.
    pub async fn active_sync(&self, project_id: ProjectId) -> Result<Option<SyncRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {SYNC_COLUMNS} FROM project_syncs \
             WHERE project_id = $1 AND status IN ('queued', 'running')"
        ))
        .bind(project_id.0)
        .fetch_optional(&mut *self.read().await?)
        .await?;
        row.as_ref().map(sync_from_row).transpose()
    }

    pub async fn sync(&self, id: SyncId) -> Result<SyncRecord> {
        let row = sqlx::query(&format!(
            "SELECT {SYNC_COLUMNS} FROM project_syncs WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&mut *self.read().await?)
        .await?
        .ok_or_else(|| Error::NotFound(format!("sync {id}")))?;
        sync_from_row(&row)
    }

    /// A project's syncs, newest first.
    pub async fn list_syncs(&self, project_id: ProjectId, limit: i64) -> Result<Vec<SyncRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {SYNC_COLUMNS} FROM project_syncs WHERE project_id = $1 \
             ORDER BY created_at DESC, id LIMIT $2"
        ))
        .bind(project_id.0)
        .bind(limit)
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(sync_from_row).collect()
    }

    /// One page of the project's syncs, newest first: by `(created_at
    /// DESC, id)`, starting after `after`. New syncs sort before the
    /// cursor, so they never shift later pages.
    pub async fn list_syncs_page(
        &self,
        project_id: ProjectId,
        after: Option<&SyncKey>,
        limit: i64,
    ) -> Result<crate::Page<SyncRecord, SyncKey>> {
        let (after_at, after_id) = after.map(|(at, id)| (*at, id.0)).unzip();
        let rows = sqlx::query(&format!(
            "SELECT {SYNC_COLUMNS} FROM project_syncs WHERE project_id = $1 \
             AND ($2::timestamptz IS NULL OR created_at < $2 OR (created_at = $2 AND id > $3)) \
             ORDER BY created_at DESC, id LIMIT $4"
        ))
        .bind(project_id.0)
        .bind(after_at)
        .bind(after_id)
        .bind(limit.saturating_add(1))
        .fetch_all(&mut *self.read().await?)
        .await?;
        let rows = rows
            .iter()
            .map(|r| {
                let sync = sync_from_row(r)?;
                let key = (sync.created_at, sync.id);
                Ok((sync, key))
            })
            .collect::<Result<_>>()?;
        Ok(crate::Page::from_rows(rows, limit))
    }

    pub async fn steps(&self, sync_id: SyncId) -> Result<Vec<StepRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {STEP_COLUMNS} FROM sync_steps WHERE sync_id = $1 ORDER BY ordinal"
        ))
        .bind(sync_id.0)
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(step_from_row).collect()
    }

    /// Take the lease on a queued or running sync whose lease is free,
    /// expired or already ours, and whose retry is due. The fence increases
    /// with every claim, which locks out any earlier holder.
    pub async fn claim(&self, sync_id: SyncId, owner: &str, ttl: Duration) -> Result<ClaimOutcome> {
        self.claim_locked(sync_id, owner, ttl, false).await
    }

    /// [`Store::claim`], by a claimer that holds the sync's advisory lock
    /// (`SyncLocks`) when `holds_lock`: the worker of a live lease taken
    /// with that lock holds it for as long as it runs, so a free lock means
    /// that worker is gone, and its lease is taken over without waiting for
    /// it to expire. A lease taken without the lock (its claimer found the
    /// lock held, for a moment, by another) is never taken over early: the
    /// lock says nothing of its worker. The fence moves as with any claim,
    /// so a worker that was only cut off fails its next write.
    pub async fn claim_locked(
        &self,
        sync_id: SyncId,
        owner: &str,
        ttl: Duration,
        holds_lock: bool,
    ) -> Result<ClaimOutcome> {
        // Deferred like the run's other intermediate writes: a claim lost
        // with a crash of the server leaves the old fence in the ledger,
        // and the claimer's first fenced write fails (the lease is lost).
        let mut tx = self.begin_committing(Commit::Deferred).await?;
        let row: Option<(Uuid, i64, Option<String>)> = sqlx::query_as(
            "UPDATE project_syncs SET status = 'running', lease_owner = $2, \
                 lease_expires_at = now() + make_interval(secs => $3), fence = fence + 1, \
                 attempts = attempts + 1, started_at = coalesce(started_at, clock_timestamp()), updated_at = now(), \
                 not_before = NULL, lease_locked = $4 \
             WHERE id = $1 AND status IN ('queued', 'running') \
               AND (not_before IS NULL OR not_before <= now()) \
               AND (lease_expires_at IS NULL OR lease_expires_at < now() \
                    OR ($4 AND status = 'running' AND lease_locked)) \
             RETURNING project_id, fence, trace_context",
        )
        .bind(sync_id.0)
        .bind(owner)
        .bind(interval(ttl))
        .bind(holds_lock)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        if let Some((project_id, fence, trace_context)) = row {
            return Ok(ClaimOutcome::Claimed {
                claim: Claim {
                    sync_id,
                    project_id: ProjectId(project_id),
                    fence,
                },
                trace_context,
            });
        }
        let wait: Option<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM not_before - now())::float8 FROM project_syncs \
             WHERE id = $1 AND status = 'queued' AND not_before > now()",
        )
        .bind(sync_id.0)
        .fetch_optional(&mut *self.read().await?)
        .await?;
        Ok(match wait {
            Some(secs) => ClaimOutcome::NotDue(Duration::from_secs_f64(secs.max(0.0))),
            None => ClaimOutcome::Unavailable,
        })
    }

    /// Extend the lease, and learn whether an operator asked to cancel.
    pub async fn heartbeat(&self, claim: &Claim, ttl: Duration) -> Result<Heartbeat> {
        let mut tx = self.begin().await?;
        let row: Option<bool> = sqlx::query_scalar(
            "UPDATE project_syncs SET lease_expires_at = now() + make_interval(secs => $3) \
             WHERE id = $1 AND fence = $2 AND status = 'running' \
             RETURNING cancel_requested_at IS NOT NULL",
        )
        .bind(claim.sync_id.0)
        .bind(claim.fence)
        .bind(interval(ttl))
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(match row {
            None => Heartbeat::Lost,
            Some(true) => Heartbeat::CancelRequested,
            Some(false) => Heartbeat::Held,
        })
    }

    /// Whether an operator asked to cancel the sync.
    pub async fn cancel_requested(&self, sync_id: SyncId) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT cancel_requested_at IS NOT NULL FROM project_syncs WHERE id = $1",
        )
        .bind(sync_id.0)
        .fetch_optional(&mut *self.read().await?)
        .await?
        .unwrap_or(false))
    }

    /// Give the lease up so that another worker may claim at once.
    pub async fn release(&self, claim: &Claim) -> Result<()> {
        // Deferred: the run's last write (its end, or the retry it
        // scheduled) was durable already, and its flush came first. A
        // release lost to a crash of the server leaves a lease that
        // expires by itself, on a sync that is either finished (no one
        // claims it) or waits its TTL; on a small sync's path the fsync
        // cost a millisecond.
        let mut tx = self.begin_committing(Commit::Deferred).await?;
        sqlx::query(
            "UPDATE project_syncs SET lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND fence = $2",
        )
        .bind(claim.sync_id.0)
        .bind(claim.fence)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Mark a phase running (one more attempt) and make it the sync's
    /// current phase, unless a cancel has been asked for: then nothing is
    /// written. The phase boundary's cancel check is this transaction's
    /// fence check, not a read of its own.
    pub async fn start_step(&self, claim: &Claim, phase: SyncPhase) -> Result<StepStart> {
        let Some(mut tx) = self
            .fenced_unless_cancelled(claim, FenceLock::Update)
            .await?
        else {
            return Ok(StepStart::CancelRequested);
        };
        let step = start_step_on(&mut *tx, claim, phase)
            .await?
            .ok_or_else(|| Error::NotFound(format!("step {phase} of sync {}", claim.sync_id)))?;
        tx.commit().await?;
        Ok(StepStart::Started(step))
    }

    /// Record a phase's end (`succeeded` or `skipped`), its checkpoint and
    /// the sync's running stats, and start the next step (see
    /// [`start_next`]), in one transaction.
    pub async fn finish_step_with_stats(
        &self,
        claim: &Claim,
        phase: SyncPhase,
        status: PhaseStatus,
        checkpoint: serde_json::Value,
        stats: &Stats,
    ) -> Result<Option<StepStart>> {
        self.finish_step_along(claim, phase, status, checkpoint, Some(stats), None)
            .await
    }

    /// A step's end, with the sync's stats or head commit when given, in
    /// one fenced transaction, which also starts the step after it (see
    /// [`finish_and_start_next`]). After the fence check, the writes are one
    /// statement: a phase's end is on every sync's path, seven times.
    async fn finish_step_along(
        &self,
        claim: &Claim,
        phase: SyncPhase,
        status: PhaseStatus,
        checkpoint: serde_json::Value,
        stats: Option<&Stats>,
        head: Option<&str>,
    ) -> Result<Option<StepStart>> {
        let (mut tx, fenced) = self
            .fenced_as(claim, Commit::Deferred, FenceLock::Update)
            .await?;
        let next = finish_and_start_next(
            &mut tx, claim, fenced, phase, status, checkpoint, stats, head,
        )
        .await?;
        tx.commit().await?;
        Ok(next)
    }

    /// Save a phase's checkpoint while it runs.
    pub async fn save_checkpoint(
        &self,
        claim: &Claim,
        phase: SyncPhase,
        checkpoint: serde_json::Value,
    ) -> Result<()> {
        self.fenced_execute(
            claim,
            save_checkpoint_query(claim.sync_id, phase, checkpoint),
        )
        .await
    }

    /// The sync failed in `phase`: record the error on the step and the
    /// sync, end the sync and drop its lease. Checkpoints are kept.
    pub async fn fail_sync(
        &self,
        claim: &Claim,
        phase: SyncPhase,
        error: &PhaseError,
    ) -> Result<()> {
        let mut tx = self.fenced_durable(claim).await?;
        sqlx::query(
            "UPDATE sync_steps SET status = 'failed', error_message = $3, finished_at = clock_timestamp() \
             WHERE sync_id = $1 AND phase = $2",
        )
        .bind(claim.sync_id.0)
        .bind(phase.as_str())
        .bind(&error.message)
        .execute(&mut *tx)
        .await?;
        let class = match error.class {
            projsync_domain::ErrorClass::Retryable => "retryable",
            projsync_domain::ErrorClass::Fatal => "fatal",
        };
        sqlx::query(
            "UPDATE project_syncs SET status = 'failed', failed_phase = $2, error_class = $3, \
                 error_message = $4, finished_at = clock_timestamp(), updated_at = now(), \
                 lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = $1",
        )
        .bind(claim.sync_id.0)
        .bind(phase.as_str())
        .bind(class)
        .bind(&error.message)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// End prepare: store the head commit it resolved, and its step, in one
    /// transaction, which also starts scan's.
    pub async fn finish_prepare(
        &self,
        claim: &Claim,
        head: &str,
        checkpoint: serde_json::Value,
    ) -> Result<Option<StepStart>> {
        self.finish_step_along(
            claim,
            SyncPhase::Prepare,
            PhaseStatus::Succeeded,
            checkpoint,
            None,
            Some(head),
        )
        .await
    }

    /// Save the running stats of a sync.
    pub async fn set_stats(&self, claim: &Claim, stats: &Stats) -> Result<()> {
        self.fenced_execute(claim, set_stats_query(claim.sync_id, stats))
            .await
    }

    /// Keep the last of `events` (all of one sync, in order) as the sync's
    /// latest snapshot, and number them with the next sequence numbers:
    /// one write for a run of events that came together.
    pub async fn record_progress(
        &self,
        mut events: Vec<ProgressEvent>,
    ) -> Result<Vec<ProgressEvent>> {
        let Some(last) = events.last() else {
            return Ok(events);
        };
        let n = events.len() as i64;
        // A snapshot: deferred like the run's other intermediate writes.
        let mut tx = self.begin_committing(Commit::Deferred).await?;
        let seq: i64 = sqlx::query_scalar(
            "UPDATE project_syncs SET progress_seq = progress_seq + $3, \
                 progress = jsonb_set($2::jsonb, '{seq}', to_jsonb(progress_seq + $3)) \
             WHERE id = $1 RETURNING progress_seq",
        )
        .bind(last.sync_id.0)
        .bind(Json(last))
        .bind(n)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        for (event, seq) in events.iter_mut().zip(seq - n + 1..) {
            event.seq = seq;
        }
        Ok(events)
    }
}

/// The sync's running stats, to run in a fenced transaction.
pub(crate) fn set_stats_query(sync_id: SyncId, stats: &Stats) -> PgQuery<'_> {
    sqlx::query("UPDATE project_syncs SET stats = $2, updated_at = now() WHERE id = $1")
        .bind(sync_id.0)
        .bind(Json(stats))
}

/// A step's end (`succeeded` or `skipped`) with its checkpoint, to run in
/// the transaction of the write it ends.
pub(crate) fn finish_step_query<'q>(
    sync_id: SyncId,
    phase: SyncPhase,
    status: PhaseStatus,
    checkpoint: serde_json::Value,
) -> PgQuery<'q> {
    sqlx::query(
        "UPDATE sync_steps SET status = $3, checkpoint = $4, finished_at = clock_timestamp(), error_message = NULL \
         WHERE sync_id = $1 AND phase = $2",
    )
    .bind(sync_id.0)
    .bind(phase.as_str())
    .bind(status.as_str())
    .bind(checkpoint)
}

/// A step's checkpoint, to run in the transaction of the batch it follows.
pub(crate) fn save_checkpoint_query<'q>(
    sync_id: SyncId,
    phase: SyncPhase,
    checkpoint: serde_json::Value,
) -> PgQuery<'q> {
    sqlx::query("UPDATE sync_steps SET checkpoint = $3 WHERE sync_id = $1 AND phase = $2")
        .bind(sync_id.0)
        .bind(phase.as_str())
        .bind(checkpoint)
}

/// How a batch's fenced transaction ends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BatchEnd<'a> {
    /// With the step's checkpoint past the batch: more may follow.
    Checkpoint,
    /// With the step's end as `status`, the sync's `stats` and the next
    /// step's start ([`finish_and_start_next`]): the step's last batch,
    /// whose checkpoint is the step's last. One transaction less than a
    /// batch and then the step's end, on every small sync's path.
    Step {
        stats: &'a Stats,
        status: PhaseStatus,
    },
}

/// End a batch's fenced transaction (begun by
/// [`Store::fenced_unless_cancelled`], so with no cancel asked for) as `end`
/// says, and commit it. With [`BatchEnd::Step`], the next step's start.
pub(crate) async fn commit_batch(
    mut tx: Transaction<'static, Postgres>,
    claim: &Claim,
    phase: SyncPhase,
    checkpoint: serde_json::Value,
    end: BatchEnd<'_>,
) -> Result<(BatchWrite, Option<StepStart>)> {
    let next = match end {
        BatchEnd::Checkpoint => {
            save_checkpoint_query(claim.sync_id, phase, checkpoint)
                .execute(&mut *tx)
                .await?;
            None
        }
        BatchEnd::Step { stats, status } => {
            finish_and_start_next(
                &mut tx,
                claim,
                Fenced {
                    cancel_requested: false,
                },
                phase,
                status,
                checkpoint,
                Some(stats),
                None,
            )
            .await?
        }
    };
    tx.commit().await?;
    Ok((BatchWrite::Written, next))
}

/// The columns of a step, as [`step_from_row`] reads them.
const STEP_COLUMNS: &str =
    "phase, status, attempts, checkpoint, error_message, started_at, finished_at";

fn step_from_row(r: &sqlx::postgres::PgRow) -> Result<StepRecord> {
    Ok(StepRecord {
        phase: parse(r.get::<&str, _>("phase"))?,
        status: parse(r.get::<&str, _>("status"))?,
        attempts: r.get("attempts"),
        checkpoint: r.get("checkpoint"),
        error_message: r.get("error_message"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
    })
}

impl Store {
    /// The job of this queued sync could not be pushed: let the reconciler
    /// push it at its next pass.
    pub async fn mark_unpushed(&self, sync_id: SyncId) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE project_syncs SET last_pushed_at = NULL WHERE id = $1 AND status = 'queued'",
        )
        .bind(sync_id.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// A retryable failure with attempts left: record the error on the step,
    /// put the sync back in the queue state with `not_before`, and give up
    /// the lease. The checkpoint stays, so the retry resumes there.
    pub async fn schedule_retry(
        &self,
        claim: &Claim,
        phase: SyncPhase,
        error: &PhaseError,
        delay: Duration,
        count_attempt: bool,
    ) -> Result<()> {
        let mut tx = self.fenced_durable(claim).await?;
        sqlx::query(
            "UPDATE sync_steps SET status = 'pending', error_message = $3, \
                 attempts = CASE WHEN $4 THEN attempts ELSE greatest(attempts - 1, 0) END \
             WHERE sync_id = $1 AND phase = $2",
        )
        .bind(claim.sync_id.0)
        .bind(phase.as_str())
        .bind(&error.message)
        .bind(count_attempt)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE project_syncs SET status = 'queued', error_class = 'retryable', error_message = $2, \
                 not_before = now() + make_interval(secs => $3), last_pushed_at = now(), \
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = now() \
             WHERE id = $1",
        )
        .bind(claim.sync_id.0)
        .bind(&error.message)
        .bind(interval(delay))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A worker shutting down hands its sync back: the interrupted step is
    /// pending again (the attempt is not counted), the sync is queued and
    /// the lease released, so that another worker resumes at once.
    pub async fn requeue(&self, claim: &Claim) -> Result<()> {
        let mut tx = self.fenced_durable(claim).await?;
        sqlx::query(
            "UPDATE sync_steps SET status = 'pending', attempts = greatest(attempts - 1, 0) \
             WHERE sync_id = $1 AND status = 'running'",
        )
        .bind(claim.sync_id.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE project_syncs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, \
                 last_pushed_at = now(), updated_at = now() WHERE id = $1",
        )
        .bind(claim.sync_id.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ask to cancel a sync. A queued one is cancelled at once; a running
    /// one stops at its next batch boundary.
    pub async fn request_cancel(&self, sync_id: SyncId) -> Result<CancelOutcome> {
        let mut tx = self.begin().await?;
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM project_syncs WHERE id = $1 FOR UPDATE")
                .bind(sync_id.0)
                .fetch_optional(&mut *tx)
                .await?;
        let outcome = match status.as_deref() {
            None => return Err(Error::NotFound(format!("sync {sync_id}"))),
            Some("queued") => {
                end_cancelled(&mut tx, sync_id).await?;
                CancelOutcome::Cancelled
            }
            Some("running") => {
                sqlx::query(
                    "UPDATE project_syncs SET cancel_requested_at = coalesce(cancel_requested_at, now()), \
                         updated_at = now() WHERE id = $1",
                )
                .bind(sync_id.0)
                .execute(&mut *tx)
                .await?;
                CancelOutcome::Requested
            }
            Some(other) => {
                return Err(Error::Conflict(format!(
                "sync {sync_id} is already {other}; only a queued or running sync can be cancelled"
            )))
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// The worker honours a cancel request: discard the sync's pending
    /// versions and end it as cancelled. The active entries are untouched.
    pub async fn finish_cancelled(&self, claim: &Claim) -> Result<()> {
        let mut tx = self.fenced_durable(claim).await?;
        end_cancelled(&mut tx, claim.sync_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Syncs due for a push: queued (and due) or running with an expired
    /// lease, whose job was not pushed within `redeliver_after`. A running
    /// sync whose lease expired is pushed at once if it was not pushed since
    /// the lease expired, so that recovery takes about the lease TTL. They are
    /// marked pushed now; `SKIP LOCKED` keeps reconcilers of several workers
    /// from taking the same rows.
    pub async fn due_for_push(
        &self,
        redeliver_after: Duration,
        limit: i64,
    ) -> Result<Vec<DuePush>> {
        // Across tenants: a SECURITY DEFINER function of the owner (see
        // migrations/0005_tenants.sql and 0008_trace_context.sql) that
        // answers only this.
        let rows: Vec<(Uuid, Option<String>)> =
            sqlx::query_as("SELECT * FROM projsync_due_for_push_traced($1, $2)")
                .bind(interval(redeliver_after))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        Ok(due_pushes(rows))
    }

    /// Running syncs whose lease is live but whose advisory lock no session
    /// holds (their worker's connection is gone): pushed again at once, so
    /// that a killed worker's sync moves on in about a reconciler pass.
    /// Marked pushed now; across tenants through a SECURITY DEFINER
    /// function (migrations/0009_takeover.sql).
    pub async fn due_for_takeover(&self, limit: i64) -> Result<Vec<DuePush>> {
        let rows: Vec<(Uuid, Option<String>)> =
            sqlx::query_as("SELECT * FROM projsync_due_for_takeover($1)")
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        Ok(due_pushes(rows))
    }

    /// The W3C `traceparent` a sync was created under, if any.
    pub async fn trace_context(&self, sync_id: SyncId) -> Result<Option<String>> {
        let found: Option<Option<String>> =
            sqlx::query_scalar("SELECT trace_context FROM project_syncs WHERE id = $1")
                .bind(sync_id.0)
                .fetch_optional(&mut *self.read().await?)
                .await?;
        found.ok_or_else(|| Error::NotFound(format!("sync {sync_id}")))
    }

    /// Syncs by status and outcome across tenants, with the age of the
    /// oldest of each, for `/metrics`. Through a SECURITY DEFINER function
    /// (migrations/0006_metrics.sql): read as the application role without
    /// a tenant, the table shows no row and every count would be 0.
    pub async fn sync_metrics(&self) -> Result<Vec<SyncCount>> {
        let rows: Vec<(String, String, i64, Option<f64>)> =
            sqlx::query_as("SELECT * FROM projsync_sync_metrics()")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(status, outcome, count, age)| SyncCount {
                status,
                outcome,
                count,
                oldest_age_secs: age.unwrap_or_default(),
            })
            .collect())
    }

    /// One round trip to the database (readiness).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The tenant of a sync, whichever it is (a worker learns it from the
    /// job's sync id before it claims); `None` for an unknown id.
    pub async fn sync_tenant(&self, sync_id: SyncId) -> Result<Option<TenantId>> {
        let t: Option<Uuid> = sqlx::query_scalar("SELECT projsync_sync_tenant($1)")
            .bind(sync_id.0)
            .fetch_one(&self.pool)
            .await?;
        Ok(t.map(TenantId))
    }

    /// Syncs in any of `statuses`, newest first, across projects (ops).
    pub async fn syncs_by_status(
        &self,
        statuses: &[SyncStatus],
        limit: i64,
    ) -> Result<Vec<SyncRecord>> {
        let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let rows = sqlx::query(&format!(
            "SELECT {SYNC_COLUMNS} FROM project_syncs WHERE status = ANY($1) \
             ORDER BY updated_at DESC, id LIMIT $2"
        ))
        .bind(&statuses)
        .bind(limit)
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(sync_from_row).collect()
    }

    /// One page of [`Store::syncs_by_status`]: by `(updated_at DESC, id)`,
    /// starting after `after`. A sync updated while a client pages moves
    /// to the front, so it can be missed or seen twice: the list is a view
    /// of moving work, not a snapshot.
    pub async fn syncs_by_status_page(
        &self,
        statuses: &[SyncStatus],
        after: Option<&SyncKey>,
        limit: i64,
    ) -> Result<crate::Page<SyncRecord, SyncKey>> {
        let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let (after_at, after_id) = after.map(|(at, id)| (*at, id.0)).unzip();
        let rows = sqlx::query(&format!(
            "SELECT {SYNC_COLUMNS}, updated_at AS page_updated_at FROM project_syncs \
             WHERE status = ANY($1) \
             AND ($2::timestamptz IS NULL OR updated_at < $2 OR (updated_at = $2 AND id > $3)) \
             ORDER BY updated_at DESC, id LIMIT $4"
        ))
        .bind(&statuses)
        .bind(after_at)
        .bind(after_id)
        .bind(limit.saturating_add(1))
        .fetch_all(&mut *self.read().await?)
        .await?;
        let rows = rows
            .iter()
            .map(|r| {
                let sync = sync_from_row(r)?;
                let key = (r.get("page_updated_at"), sync.id);
                Ok((sync, key))
            })
            .collect::<Result<_>>()?;
        Ok(crate::Page::from_rows(rows, limit))
    }

    /// Queue a failed or cancelled sync again: from its failed phase (its
    /// checkpoints kept), or from the start (plan and pending versions
    /// dropped). A project with another active sync is a conflict. The last
    /// attempt's progress snapshot is cleared: followers of the sync wait for
    /// the new attempt's events instead of ending on the old failure.
    /// The sync keeps the trace it was created in; one created while
    /// telemetry was off takes `trace_context` (the retry's request).
    pub async fn retry_sync(
        &self,
        sync_id: SyncId,
        from_start: bool,
        trace_context: Option<&str>,
    ) -> Result<SyncRecord> {
        let mut tx = self.begin().await?;
        lock_ended(&mut tx, sync_id, "retried").await?;
        if from_start {
            discard_work(&mut tx, sync_id).await?;
            sqlx::query(
                "UPDATE sync_steps SET status = 'pending', attempts = 0, checkpoint = NULL, \
                     error_message = NULL, started_at = NULL, finished_at = NULL WHERE sync_id = $1",
            )
            .bind(sync_id.0)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE project_syncs SET head_commit = NULL, stats = '{}' WHERE id = $1")
                .bind(sync_id.0)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(
                "UPDATE sync_steps SET status = 'pending', attempts = 0, finished_at = NULL \
                 WHERE sync_id = $1 AND status IN ('failed', 'cancelled', 'running')",
            )
            .bind(sync_id.0)
            .execute(&mut *tx)
            .await?;
        }
        let updated = sqlx::query(
            "UPDATE project_syncs SET status = 'queued', error_class = NULL, error_message = NULL, \
                 failed_phase = NULL, finished_at = NULL, not_before = NULL, cancel_requested_at = NULL, \
                 retries = retries + 1, last_pushed_at = now(), updated_at = now(), \
                 progress = NULL, trace_context = coalesce(trace_context, $2) WHERE id = $1",
        )
        .bind(sync_id.0)
        .bind(trace_context)
        .execute(&mut *tx)
        .await
        .map_err(Error::from);
        match updated {
            Err(e) if e.is_unique_violation() => {
                return Err(Error::Conflict(format!(
                    "the project of sync {sync_id} has another queued or running sync; \
                     wait for it or cancel it, then retry"
                )))
            }
            other => other?,
        };
        tx.commit().await?;
        self.sync(sync_id).await
    }

    /// Give up on a failed or cancelled sync for good: its pending versions
    /// and plan go, the row stays in the history as `discarded`.
    pub async fn discard_sync(&self, sync_id: SyncId) -> Result<SyncRecord> {
        let mut tx = self.begin().await?;
        lock_ended(&mut tx, sync_id, "discarded").await?;
        discard_work(&mut tx, sync_id).await?;
        sqlx::query(
            "UPDATE project_syncs SET status = 'discarded', updated_at = now() WHERE id = $1",
        )
        .bind(sync_id.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.sync(sync_id).await
    }
}

/// Lock a sync that failed or was cancelled, the only ones an operator can
/// retry or discard; `action` names what was asked in the error.
async fn lock_ended(
    tx: &mut Transaction<'_, Postgres>,
    sync_id: SyncId,
    action: &str,
) -> Result<()> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM project_syncs WHERE id = $1 FOR UPDATE")
            .bind(sync_id.0)
            .fetch_optional(&mut **tx)
            .await?;
    match status.as_deref() {
        None => Err(Error::NotFound(format!("sync {sync_id}"))),
        Some("failed" | "cancelled") => Ok(()),
        Some(other) => Err(Error::Conflict(format!(
            "sync {sync_id} is {other}; only a failed or cancelled sync can be {action}"
        ))),
    }
}

async fn discard_work(tx: &mut Transaction<'_, Postgres>, sync_id: SyncId) -> Result<()> {
    sqlx::query("DELETE FROM memory_entries WHERE created_by_sync_id = $1 AND status = 'pending'")
        .bind(sync_id.0)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM sync_changes WHERE sync_id = $1")
        .bind(sync_id.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn end_cancelled(tx: &mut Transaction<'_, Postgres>, sync_id: SyncId) -> Result<()> {
    sqlx::query("DELETE FROM memory_entries WHERE created_by_sync_id = $1 AND status = 'pending'")
        .bind(sync_id.0)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE sync_steps SET status = 'cancelled', finished_at = coalesce(finished_at, clock_timestamp()) \
         WHERE sync_id = $1 AND status IN ('pending', 'running')",
    )
    .bind(sync_id.0)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE project_syncs SET status = 'cancelled', finished_at = clock_timestamp(), updated_at = now(), \
             cancel_requested_at = coalesce(cancel_requested_at, now()), \
             lease_owner = NULL, lease_expires_at = NULL WHERE id = $1",
    )
    .bind(sync_id.0)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Rows `(sync id, trace context)` of the reconciler's functions.
fn due_pushes(rows: Vec<(Uuid, Option<String>)>) -> Vec<DuePush> {
    rows.into_iter()
        .map(|(id, trace_context)| DuePush {
            sync_id: SyncId(id),
            trace_context,
        })
        .collect()
}
