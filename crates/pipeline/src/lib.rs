//! The phase engine: a sync runs `prepare → scan → import → analyze → docs → embed →
//! finalize`, each
//! phase a step recorded in the ledger with its attempts and checkpoint
//! (ARCHITECTURE.md, invariant 2), under a fenced lease (invariant 3).
//!
//! Failures are classified: a retryable one with attempts left is scheduled
//! again through the ledger and the queue (no worker sleeps holding a job);
//! anything else fails the sync with its phase and message. A cancel request
//! or a shutdown stops a run at the next batch boundary.
//!
//! The engine knows the store, the queue and the `Source` trait. It must not
//! know about HTTP, nor which concrete source it reads from beyond the
//! factory that opens one for a repository.

mod analyze;
mod docs;
mod embed;
mod failpoints;
mod phases;
pub mod presence;
mod reconciler;
mod scheduler;

pub use analyze::{AnalysisSettings, ANALYSIS_VERSION};
pub use docs::{doc_path, DocsSettings};
pub use embed::{chunk_entries, phase_error, EmbedSettings};
pub use reconciler::{run_reconciler, ReconcilerOptions};
pub use scheduler::{run_scheduler, scheduler_tick, SchedulerOptions};

use async_trait::async_trait;
use backon::BackoffBuilder;
use futures::FutureExt;
use projsync_domain::progress::PROGRESS_EVENT_VERSION;
use projsync_domain::{
    PhaseError, PhaseStatus, ProgressEvent, Source, Stats, SyncId, SyncJob, SyncPhase, SyncStatus,
};
use projsync_metrics::Metrics;
use projsync_queue::{JobHandler, JobQueue, Publisher};
use projsync_store::{
    Claim, ClaimOutcome, Heartbeat, Project, StepStart, Store, SyncLockGuard, SyncLocks, SyncRecord,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use projsync_domain::source::{RepositorySpec, SourceFactory};

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Name of this worker in leases.
    pub worker_name: String,
    /// A lease not renewed for this long can be taken by another worker.
    pub lease_ttl: Duration,
    /// Files per import batch (one checkpoint and one progress event each).
    pub import_batch_size: usize,
    /// ... and at most about this many bytes of files (a batch ends with the
    /// file that reaches it; a larger file is a batch of its own).
    pub import_batch_bytes: u64,
    /// Size limit for files of projects that set none.
    pub max_file_bytes: u64,
    /// Attempts per phase before a retryable failure fails the sync.
    pub max_attempts: u32,
    /// Backoff between attempts: exponential from `retry_min_delay`, capped
    /// at `retry_max_delay`, with jitter.
    pub retry_min_delay: Duration,
    pub retry_max_delay: Duration,
    /// Imports of at least this many files download the source's archive
    /// (one request) instead of reading blob by blob.
    pub archive_min_files: u64,
    /// ... unless the files to import add up to more than this: the archive
    /// is held in memory while the import runs.
    pub archive_max_bytes: u64,
    /// The plan of a sync that is not the head of its project's history is
    /// deleted this long after the sync ended (unless a kept sync needs it).
    pub plan_retention: Duration,
    /// A run's progress snapshot is written at most this often; the events
    /// that come in between are recorded together, and each is still
    /// published, in order. Zero: as they come.
    pub progress_interval: Duration,
}

impl PipelineOptions {
    /// The delay before attempt `attempt + 1`.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.retry_min_delay)
            .with_max_delay(self.retry_max_delay)
            .with_jitter()
            .with_max_times(attempt as usize + 1)
            .build()
            .nth(attempt.saturating_sub(1) as usize)
            .unwrap_or(self.retry_max_delay)
    }
}

/// Runs syncs. One per worker process, shared by its concurrent jobs.
#[derive(Clone)]
pub struct Pipeline {
    store: Store,
    publisher: Publisher,
    queue: JobQueue,
    sources: Arc<dyn SourceFactory>,
    opts: PipelineOptions,
    embeddings: EmbedSettings,
    analysis: AnalysisSettings,
    docs: DocsSettings,
    /// Cancelled when the process shuts down: runs stop at the next batch
    /// boundary and hand their sync back.
    shutdown: CancellationToken,
    /// Runs in flight, so that a stopping process can wait for them.
    inflight: tokio_util::task::TaskTracker,
    /// The worker's metrics: phases, finished syncs, retries, leases.
    metrics: Metrics,
    /// The advisory lock of each sync this process runs, on a connection
    /// of its own: a free lock tells others this worker is gone.
    locks: SyncLocks,
}

/// Where a run goes after one phase attempt.
enum Next {
    /// The next phase (`None`: there is none, the run ends).
    Phase(Option<SyncPhase>),
    /// The run ends here (complete, cancelled or handed back).
    End,
    /// The attempt failed; the run ends with what the failure handling
    /// returned (a retry scheduled is `Ok`).
    Failed(Result<(), PhaseError>),
}

/// What a phase asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Run the next phase.
    Continue,
    /// The sync is complete (finalized, or nothing to do).
    Complete,
    /// Stop at this boundary (cancel or shutdown); nothing is lost.
    Stop(Stop),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Cancel,
    Shutdown,
}

/// Everything a phase needs about the sync it runs.
pub(crate) struct RunCtx {
    pub claim: Claim,
    pub sync: SyncRecord,
    pub project: Project,
    pub stats: Stats,
    pub head: Option<String>,
    /// The project's last successful sync as prepare read it, when prepare
    /// ran in this run (only one sync of a project is active at a time,
    /// so it still holds in the phases after).
    pub last: Option<Option<projsync_store::LastSync>>,
    /// The next step, started (or found cancelled) by the transaction
    /// that ended the last one: the engine runs it without a start of its
    /// own.
    pub next_step: Option<StepStart>,
    source: Option<Arc<dyn Source>>,
    /// Blob contents from the source's archive, by blob SHA (large imports).
    pub archive: Option<std::collections::HashMap<String, Vec<u8>>>,
    /// Cancelled when the lease is lost: stop at the next batch boundary.
    pub lease_lost: CancellationToken,
    /// Where the run's progress events go, in order, to be recorded and
    /// published off the phases' path.
    progress: Option<mpsc::UnboundedSender<ProgressEvent>>,
}

impl Pipeline {
    pub fn new(
        store: Store,
        publisher: Publisher,
        queue: JobQueue,
        sources: Arc<dyn SourceFactory>,
        opts: PipelineOptions,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            locks: SyncLocks::new(store.pool()),
            store,
            publisher,
            queue,
            sources,
            opts,
            embeddings: EmbedSettings::default(),
            analysis: AnalysisSettings::default(),
            docs: DocsSettings::default(),
            shutdown,
            inflight: tokio_util::task::TaskTracker::new(),
            metrics: Metrics::default(),
        }
    }

    /// Record into the process's metrics (the default records into a
    /// registry of its own, which nobody reads).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Chunk and embed with these settings (the default chunks by an
    /// estimate and embeds nothing).
    pub fn with_embeddings(mut self, embeddings: EmbedSettings) -> Self {
        self.embeddings = embeddings;
        self
    }

    /// Analyse code with these settings (the default analyses every
    /// project that does not turn it off, with the default limits).
    pub fn with_analysis(mut self, analysis: AnalysisSettings) -> Self {
        self.analysis = analysis;
        self
    }

    /// Generate module docs with these settings (the default generates
    /// them, without a model's summary).
    pub fn with_docs(mut self, docs: DocsSettings) -> Self {
        self.docs = docs;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Wait until every run in flight has ended (call after `shutdown`).
    pub async fn drained(&self) {
        self.inflight.close();
        self.inflight.wait().await;
    }

    /// Run a sync from wherever its steps say it is, if its lease can be taken.
    ///
    /// A job names only its sync: the worker learns the sync's tenant first,
    /// and every transaction of the run is then that tenant's (row-level
    /// security shows it nothing else).
    pub async fn run(&self, sync_id: SyncId) {
        // The sync's tenant, and its advisory lock (see `run_as_tenant`),
        // side by side: the lock's key is the sync's id alone.
        let (tenant, lock) = tokio::join!(
            self.store.sync_tenant(sync_id),
            self.locks.try_lock(sync_id)
        );
        let tenant = match tenant {
            Ok(Some(t)) => t,
            Ok(None) => {
                tracing::warn!(%sync_id, "the job names an unknown sync; dropping it");
                return;
            }
            Err(e) => {
                tracing::warn!(%sync_id, "cannot read the ledger: {e}; the reconciler will push it again");
                return;
            }
        };
        let scoped = Self {
            store: self.store.scoped(tenant),
            ..self.clone()
        };
        scoped.run_as_tenant(sync_id, lock).await
    }

    async fn run_as_tenant(
        &self,
        sync_id: SyncId,
        lock: Result<Option<SyncLockGuard>, projsync_store::Error>,
    ) {
        // The sync's advisory lock: held by nobody, it lets this worker
        // take over a lease whose worker is gone (its connection died)
        // without waiting for the lease to expire. Not to be had (held by
        // a live worker, or by this process for a run in flight), the
        // claim goes by the lease alone; nor when the lock connection
        // cannot be opened (then the claim will likely fail too).
        let lock = match lock {
            Ok(lock) => lock,
            Err(e) => {
                tracing::warn!(%sync_id, "cannot take the sync's advisory lock: {e}");
                None
            }
        };
        let (claim, trace_context) = match self
            .store
            .claim_locked(
                sync_id,
                &self.opts.worker_name,
                self.opts.lease_ttl,
                lock.is_some(),
            )
            .await
        {
            Ok(ClaimOutcome::Claimed {
                claim,
                trace_context,
            }) => (claim, trace_context),
            Ok(ClaimOutcome::NotDue(wait)) => {
                // Delivered early (a duplicate, or a reconciler push): ring
                // again when it is due rather than drop it.
                tracing::debug!(%sync_id, ?wait, "retry not due yet; pushing it for later");
                if let Err(e) = self.queue.push_after(sync_id, wait).await {
                    tracing::warn!(%sync_id, "cannot push the retry: {e}; the reconciler will");
                }
                return;
            }
            Ok(ClaimOutcome::Unavailable) => {
                tracing::debug!(%sync_id, "sync is finished or leased by another worker; dropping the job");
                return;
            }
            Err(e) => {
                tracing::warn!(%sync_id, "cannot claim sync: {e}; the reconciler will push it again");
                return;
            }
        };
        let span = tracing::info_span!("sync", %sync_id, project_id = %claim.project_id, fence = claim.fence);
        // The trace the sync was created in, read from the ledger (not from
        // the job): redeliveries, retries and the reconciler's pushes all
        // run in the same trace. A no-op without telemetry.
        projsync_telemetry::set_parent_from(&span, trace_context.as_deref());
        self.run_claimed(claim, lock).instrument(span).await;
    }

    /// Run a claimed sync; `lock` (its advisory lock) is released after the
    /// lease, when the run has ended.
    async fn run_claimed(&self, claim: Claim, lock: Option<SyncLockGuard>) {
        failpoints::hit("claim.after").await;
        let lease_lost = CancellationToken::new();
        // Aborted on drop too: a lease must never outlive its run.
        let heartbeat = AbortOnDrop(tokio::spawn(heartbeat(
            self.store.clone(),
            claim,
            self.opts.lease_ttl,
            lease_lost.clone(),
        )));
        let result = self.drive(claim, lease_lost.clone()).await;
        drop(heartbeat);
        // Once per run, however it noticed: the heartbeat, or a fenced
        // write refused.
        if lease_lost.is_cancelled() || result.as_ref().is_err_and(is_lease_lost) {
            self.metrics.lease_lost();
        }
        if let Err(e) = result {
            tracing::warn!("sync run ended: {e}");
        }
        if let Err(e) = self.store.release(&claim).await {
            tracing::warn!("cannot release the lease: {e}");
        }
        drop(lock);
    }

    async fn drive(&self, claim: Claim, lease_lost: CancellationToken) -> Result<(), PhaseError> {
        let (sync, project, steps) = tokio::try_join!(
            self.store.sync(claim.sync_id),
            self.store.project(claim.project_id),
            self.store.steps(claim.sync_id),
        )?;
        let (progress, recorder) = self.progress_recorder();
        let mut ctx = RunCtx {
            claim,
            stats: sync.stats.clone(),
            head: sync.head_commit.clone(),
            last: None,
            next_step: None,
            sync,
            project,
            source: None,
            archive: None,
            lease_lost,
            progress: Some(progress),
        };
        let result = self.drive_phases(&mut ctx, &steps).await;
        // Every event of the run is recorded and published before the run
        // ends (and its lease and lock are released).
        ctx.progress = None;
        if let Err(e) = recorder.await {
            tracing::warn!("the progress recorder stopped: {e}");
        }
        result
    }

    /// Record (as the sync's snapshot) and publish a run's progress events
    /// in the order they come, off the phases' path: a phase does not wait
    /// for the database and Redis to take its progress. Best effort: a
    /// failure is logged, never fails the sync.
    fn progress_recorder(
        &self,
    ) -> (
        mpsc::UnboundedSender<ProgressEvent>,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel::<ProgressEvent>();
        let store = self.store.clone();
        let publisher = self.publisher.clone();
        let interval = self.opts.progress_interval;
        let task = tokio::spawn(
            async move {
                // When the snapshot was last written: the next write waits
                // for the interval to pass (or for the run's end), so that a
                // small sync's dozen events cost a write or two, not a
                // dozen writes on the row its phases lock.
                let mut last_write: Option<Instant> = None;
                let mut open = true;
                while open {
                    let Some(first) = rx.recv().await else {
                        break;
                    };
                    // Events that come until then are recorded together
                    // (one write; the snapshot is the newest), and each is
                    // still published.
                    let mut events = vec![first];
                    if let Some(deadline) = last_write.map(|at| at + interval) {
                        while open {
                            tokio::select! {
                                event = rx.recv() => match event {
                                    Some(event) => events.push(event),
                                    None => open = false,
                                },
                                _ = tokio::time::sleep_until(deadline.into()) => break,
                            }
                        }
                    }
                    while let Ok(event) = rx.try_recv() {
                        events.push(event);
                    }
                    last_write = Some(Instant::now());
                    match store.record_progress(events).await {
                        Ok(events) => {
                            for _ in &events {
                                failpoints::hit("progress.recorded").await;
                            }
                            // Together, in order: one round trip (a small
                            // sync's last write carries a dozen events,
                            // which one by one cost a millisecond and more).
                            if let Err(e) = publisher.publish_all(&events).await {
                                tracing::warn!("cannot publish progress: {e}");
                            }
                        }
                        Err(e) => tracing::warn!("cannot record progress: {e}"),
                    }
                }
            }
            .in_current_span(),
        );
        (tx, task)
    }

    async fn drive_phases(
        &self,
        ctx: &mut RunCtx,
        steps: &[projsync_store::StepRecord],
    ) -> Result<(), PhaseError> {
        // Resume at the first phase that has not succeeded.
        let mut phase = steps
            .iter()
            .find(|s| !matches!(s.status, PhaseStatus::Succeeded | PhaseStatus::Skipped))
            .map(|s| s.phase);
        while let Some(current) = phase {
            if let Some(stop) = self.write_boundary(ctx).await? {
                return self.stop(ctx, current, stop).await;
            }
            // One span per attempt of a phase, in the sync's trace.
            let span = tracing::info_span!(
                "phase",
                phase = %current,
                sync_id = %ctx.claim.sync_id,
                attempt = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            );
            let next = self.phase(ctx, current).instrument(span.clone()).await;
            match next {
                Ok(Next::Phase(next)) => phase = next,
                Ok(Next::End) => return Ok(()),
                Ok(Next::Failed(result)) => {
                    span.record("otel.status_code", "ERROR");
                    return result;
                }
                Err(e) => {
                    span.record("otel.status_code", "ERROR");
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Run one attempt of `current`, from its step's start to its outcome
    /// in the ledger.
    async fn phase(&self, ctx: &mut RunCtx, current: SyncPhase) -> Result<Next, PhaseError> {
        // The engine runs the phases in order: what the last step's end
        // did is about this one.
        let start = match ctx.next_step.take() {
            Some(StepStart::Started(step)) if step.phase == current => StepStart::Started(step),
            Some(StepStart::CancelRequested) => StepStart::CancelRequested,
            _ => self.store.start_step(&ctx.claim, current).await?,
        };
        let step = match start {
            StepStart::Started(step) => step,
            StepStart::CancelRequested => {
                return self
                    .stop(ctx, current, Stop::Cancel)
                    .await
                    .map(|()| Next::End)
            }
        };
        tracing::Span::current().record("attempt", step.attempts);
        tracing::info!(phase = %current, attempt = step.attempts, "phase started");
        self.emit(
            ctx,
            current,
            PhaseStatus::Running,
            0,
            0,
            format!("{current} started"),
        )
        .await;
        failpoints::hit(&format!("{current}.started")).await;
        let started = Instant::now();
        let run = async {
            match current {
                SyncPhase::Prepare => self.prepare(ctx).await,
                SyncPhase::Scan => self.scan(ctx).await,
                SyncPhase::Import => self.import(ctx, step.checkpoint).await,
                SyncPhase::Analyze => self.analyze(ctx, step.checkpoint).await,
                SyncPhase::Docs => self.docs(ctx, step.checkpoint).await,
                SyncPhase::Embed => self.embed(ctx, step.checkpoint).await,
                SyncPhase::Finalize if ctx.sync.kind == "backfill" => {
                    self.finalize_backfill(ctx).await
                }
                SyncPhase::Finalize => self.finalize(ctx).await,
            }
        };
        // A panic in a phase (ours or a library's) fails this attempt
        // like any other error instead of killing the run with the
        // lease held: the sync would stay `running` until the lease
        // expired, then be retried forever without counting attempts.
        // Nothing in `ctx` is trusted after it: the attempt ends here.
        let result = match std::panic::AssertUnwindSafe(run).catch_unwind().await {
            Ok(result) => result,
            Err(panic) => Err(panicked(current, panic.as_ref())),
        };
        if let Ok(Transition::Continue | Transition::Complete) = result {
            self.metrics.phase_succeeded(current, started.elapsed());
        }
        match result {
            Ok(Transition::Continue) => {
                failpoints::hit(&format!("{current}.done")).await;
                self.emit(
                    ctx,
                    current,
                    PhaseStatus::Succeeded,
                    0,
                    0,
                    format!("{current} done"),
                )
                .await;
                Ok(Next::Phase(current.next()))
            }
            Ok(Transition::Complete) => {
                self.completed(ctx);
                if current == SyncPhase::Finalize && ctx.sync.kind != "backfill" {
                    self.after_finalize(ctx).await;
                }
                Ok(Next::End)
            }
            Ok(Transition::Stop(stop)) => self.stop(ctx, current, stop).await.map(|()| Next::End),
            Err(e) => Ok(Next::Failed(
                self.failed(ctx, current, step.attempts, e).await,
            )),
        }
    }

    /// A sync succeeded: count it and what it wrote.
    fn completed(&self, ctx: &RunCtx) {
        let outcome = ctx
            .sync
            .outcome
            .as_deref()
            .unwrap_or(projsync_metrics::NO_OUTCOME);
        self.metrics.sync_finished(SyncStatus::Succeeded, outcome);
        let s = &ctx.stats;
        // A backfill's chunks are the project's active ones it covered,
        // not new ones; its vectors are counted.
        let chunks = if ctx.sync.kind == "backfill" {
            0
        } else {
            s.chunks
        };
        self.metrics
            .sync_work(s.imported, chunks, s.embedded, s.embedding_cache_hits);
    }

    /// At a boundary followed by a write that checks for a cancel itself
    /// (a step's start, an import or chunk batch: their fence check reads
    /// it under the row lock, and they write nothing then): should the run
    /// stop here? This asks the database only when the worker is shutting
    /// down (a cancel still comes first then).
    pub(crate) async fn write_boundary(&self, ctx: &RunCtx) -> Result<Option<Stop>, PhaseError> {
        if ctx.lease_lost.is_cancelled() {
            return Err(PhaseError::retryable(LEASE_LOST));
        }
        if self.shutdown.is_cancelled() {
            return self.boundary(ctx).await;
        }
        Ok(None)
    }

    /// At a batch or phase boundary: should the run stop here?
    pub(crate) async fn boundary(&self, ctx: &RunCtx) -> Result<Option<Stop>, PhaseError> {
        if ctx.lease_lost.is_cancelled() {
            return Err(PhaseError::retryable(LEASE_LOST));
        }
        if self.store.cancel_requested(ctx.claim.sync_id).await? {
            return Ok(Some(Stop::Cancel));
        }
        if self.shutdown.is_cancelled() {
            return Ok(Some(Stop::Shutdown));
        }
        Ok(None)
    }

    async fn stop(&self, ctx: &mut RunCtx, phase: SyncPhase, stop: Stop) -> Result<(), PhaseError> {
        match stop {
            Stop::Cancel => {
                self.store.finish_cancelled(&ctx.claim).await?;
                ctx.sync.status = SyncStatus::Cancelled;
                self.metrics
                    .sync_finished(SyncStatus::Cancelled, projsync_metrics::NO_OUTCOME);
                tracing::info!(%phase, "sync cancelled");
                self.emit(
                    ctx,
                    phase,
                    PhaseStatus::Cancelled,
                    0,
                    0,
                    "cancelled; pending versions discarded, the knowledge base is unchanged".into(),
                )
                .await;
            }
            Stop::Shutdown => {
                self.store.requeue(&ctx.claim).await?;
                ctx.sync.status = SyncStatus::Queued;
                tracing::info!(%phase, "worker shutting down; sync handed back");
                if let Err(e) = self.queue.push(ctx.claim.sync_id).await {
                    tracing::warn!("cannot push the sync back: {e}; the reconciler will");
                }
                self.emit(
                    ctx,
                    phase,
                    PhaseStatus::Pending,
                    0,
                    0,
                    "worker shutting down; another worker resumes from the checkpoint".into(),
                )
                .await;
            }
        }
        Ok(())
    }

    /// A phase failed: retry it later if the error allows and attempts are
    /// left, else fail the sync.
    async fn failed(
        &self,
        ctx: &mut RunCtx,
        phase: SyncPhase,
        attempt: i32,
        error: PhaseError,
    ) -> Result<(), PhaseError> {
        let attempt = attempt.max(1) as u32;
        // A rate limit says when to come back; waiting for it is not a
        // failed attempt.
        let rate_limited = error.retry_after.is_some();
        if error.is_retryable() && (rate_limited || attempt < self.opts.max_attempts) {
            let delay = match error.retry_after {
                Some(after) => after,
                None => self.opts.retry_delay(attempt),
            };
            tracing::warn!(%phase, attempt, ?delay, "phase failed, will retry: {error}");
            self.store
                .schedule_retry(&ctx.claim, phase, &error, delay, !rate_limited)
                .await?;
            self.metrics.retry(phase, rate_limited);
            if let Err(e) = self.queue.push_after(ctx.claim.sync_id, delay).await {
                tracing::warn!("cannot schedule the retry in the queue: {e}; the reconciler will");
            }
            ctx.sync.status = SyncStatus::Queued;
            self.emit(
                ctx,
                phase,
                PhaseStatus::Failed,
                0,
                0,
                format!(
                    "attempt {attempt} of {} failed: {}; retrying in {:.1}s",
                    self.opts.max_attempts,
                    error.message,
                    delay.as_secs_f64()
                ),
            )
            .await;
            return Ok(());
        }
        tracing::warn!(%phase, class = ?error.class, attempt, "phase failed: {error}");
        let error = if error.is_retryable() {
            PhaseError::retryable(format!(
                "{} (gave up after {attempt} attempts; fix the cause, then `projsync ops retry {}`)",
                error.message, ctx.claim.sync_id
            ))
        } else {
            error
        };
        self.store.fail_sync(&ctx.claim, phase, &error).await?;
        ctx.sync.status = SyncStatus::Failed;
        self.metrics
            .sync_finished(SyncStatus::Failed, error_class(&error));
        self.emit(ctx, phase, PhaseStatus::Failed, 0, 0, error.message.clone())
            .await;
        Err(error)
    }

    pub(crate) async fn source(&self, ctx: &mut RunCtx) -> Result<Arc<dyn Source>, PhaseError> {
        if let Some(s) = &ctx.source {
            return Ok(s.clone());
        }
        let s = open_source(&self.store, self.sources.as_ref(), &ctx.project).await?;
        ctx.source = Some(s.clone());
        Ok(s)
    }

    /// Hand the event to the run's progress recorder, which keeps it as the
    /// sync's snapshot and then publishes it. Progress is best effort: a
    /// Redis hiccup must not fail a sync.
    pub(crate) async fn emit(
        &self,
        ctx: &RunCtx,
        phase: SyncPhase,
        phase_status: PhaseStatus,
        done: u64,
        total: u64,
        message: String,
    ) {
        let event = ProgressEvent {
            v: PROGRESS_EVENT_VERSION,
            sync_id: ctx.claim.sync_id,
            project_id: ctx.claim.project_id,
            seq: 0,
            sync_status: ctx.sync.status,
            phase,
            phase_status,
            done,
            total,
            stats: ctx.stats.clone(),
            message,
            at: chrono::Utc::now(),
        };
        if let Some(progress) = &ctx.progress {
            let _ = progress.send(event);
        }
    }
}

/// A failed sync's outcome label: its error class, as the ledger records it.
fn error_class(error: &PhaseError) -> &'static str {
    if error.is_retryable() {
        "retryable"
    } else {
        "fatal"
    }
}

/// The error of a run that noticed at a boundary that its lease is gone.
const LEASE_LOST: &str = "lost the lease; another worker continues from the checkpoint";

/// Whether a run ended because its lease went to another worker: the
/// boundary's own error, or the store's `LeaseLost` (a fenced write
/// refused), both "lost the lease…" (a test below keeps them so).
fn is_lease_lost(error: &PhaseError) -> bool {
    error.message.starts_with("lost the lease")
}

/// The error of a phase that panicked: retryable, so it costs one of
/// `max_attempts` like any failure, with the panic's message.
fn panicked(phase: SyncPhase, panic: &(dyn std::any::Any + Send)) -> PhaseError {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    tracing::error!(%phase, "phase panicked: {message}");
    PhaseError::retryable(format!(
        "internal error: the {phase} phase panicked: {message}; this is a bug in projsync \
         or a library it uses, please report it with the worker's log"
    ))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn heartbeat(store: Store, claim: Claim, ttl: Duration, lost: CancellationToken) {
    let every = (ttl / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        match store.heartbeat(&claim, ttl).await {
            Ok(Heartbeat::Held | Heartbeat::CancelRequested) => {}
            Ok(Heartbeat::Lost) => {
                tracing::warn!("lease lost; stopping at the next batch boundary");
                lost.cancel();
                return;
            }
            Err(e) => tracing::warn!("cannot renew the lease: {e}"),
        }
    }
}

#[async_trait]
impl JobHandler for Pipeline {
    async fn handle(&self, job: SyncJob) {
        if job.v != projsync_domain::job::SYNC_JOB_VERSION {
            tracing::error!(
                v = job.v,
                sync_id = %job.sync_id,
                "unknown sync job version; is an older worker running?"
            );
            return;
        }
        // The run is a task of its own: if the queue's run loop dies (a Redis
        // outage) and drops this future, the sync still reaches its next
        // checkpoint or its end. The tracker lets shutdown wait for it.
        let pipeline = self.clone();
        let run = self
            .inflight
            .spawn(async move { pipeline.run(job.sync_id).await });
        if let Err(e) = run.await {
            // Phases catch their own panics; this is one outside them. The
            // lease expires and the reconciler hands the sync out again.
            tracing::error!(sync_id = %job.sync_id, "sync run ended abnormally: {e}");
        }
    }
}

/// Open a project's repository, with the credential the project names
/// (registered by an operator for the project's tenant, read in `store`'s
/// tenant), and with what the source said when the project was connected
/// (then GitHub is not asked for the repository again). For a project
/// connected before that was kept, what this open learned is kept now.
pub async fn open_source(
    store: &Store,
    sources: &dyn SourceFactory,
    project: &Project,
) -> Result<Arc<dyn Source>, PhaseError> {
    let r = &project.repository;
    let reference = store
        .credential_reference(r.credential.as_deref())
        .await
        .map_err(|e| match e {
            projsync_store::Error::Invalid(m) => PhaseError::fatal(m),
            other => PhaseError::from(other),
        })?;
    let source = sources.open(&r.spec(reference.as_deref())).await?;
    if r.remote.is_none() {
        if let Some(remote) = source.remote() {
            if let Err(e) = store.keep_repository_remote(r.id, &remote).await {
                // Only a saving: the next sync looks the repository up again.
                tracing::warn!(project_id = %project.id, "cannot keep the repository's identity: {e}");
            }
        }
    }
    Ok(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_leases_are_recognised() {
        let fenced = PhaseError::from(projsync_store::Error::LeaseLost(SyncId::new()));
        assert!(is_lease_lost(&fenced), "{fenced}");
        assert!(is_lease_lost(&PhaseError::retryable(LEASE_LOST)));
        assert!(!is_lease_lost(&PhaseError::retryable("database error")));
    }

    #[test]
    fn retry_delays_grow_and_are_capped() {
        let opts = PipelineOptions {
            worker_name: "w".into(),
            lease_ttl: Duration::from_secs(30),
            import_batch_size: 10,
            import_batch_bytes: 1 << 20,
            max_file_bytes: 1,
            max_attempts: 5,
            retry_min_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(8),
            archive_min_files: 100,
            archive_max_bytes: 1 << 28,
            plan_retention: Duration::from_secs(3600),
            progress_interval: Duration::from_millis(100),
        };
        let d1 = opts.retry_delay(1);
        let d4 = opts.retry_delay(4);
        let d9 = opts.retry_delay(9);
        assert!(
            d1 >= Duration::from_secs(1) && d1 <= Duration::from_secs(2),
            "{d1:?}"
        );
        assert!(
            d4 >= Duration::from_secs(8) && d4 <= Duration::from_secs(16),
            "{d4:?}"
        );
        assert!(d9 <= Duration::from_secs(16), "{d9:?}");
    }
}
