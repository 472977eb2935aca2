//! The phase engine: a sync runs `prepare → scan → import → finalize`, each
//! phase a step recorded in the ledger with its attempts and checkpoint
//! (DESIGN.md, invariant 2), under a fenced lease (invariant 3).
//!
//! The engine knows the store, the progress publisher and the `Source` trait.
//! It must not know about HTTP, nor which concrete source it reads from
//! beyond the factory that opens one for a repository.

mod phases;

use async_trait::async_trait;
use projsync_domain::progress::PROGRESS_EVENT_VERSION;
pub use projsync_domain::source::{RepositorySpec, SourceFactory};
use projsync_domain::{
    PhaseError, PhaseStatus, ProgressEvent, Source, SourceError, Stats, SyncId, SyncJob, SyncPhase,
    SyncStatus,
};
use projsync_queue::{JobHandler, Publisher};
use projsync_store::{Claim, Project, Store, SyncRecord};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Local repositories through the git CLI.
#[derive(Debug, Default, Clone)]
pub struct DefaultSources;

#[async_trait]
impl SourceFactory for DefaultSources {
    async fn open(&self, repo: &RepositorySpec<'_>) -> Result<Arc<dyn Source>, SourceError> {
        match repo.provider {
            "local" => Ok(Arc::new(
                projsync_source_git::GitSource::open(repo.location).await?,
            )),
            other => Err(SourceError::invalid(format!(
                "repositories of provider `{other}` are not supported by this worker yet"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Name of this worker in leases.
    pub worker_name: String,
    /// A lease not renewed for this long can be taken by another worker.
    pub lease_ttl: Duration,
    /// Files per import batch (one checkpoint and one progress event each).
    pub import_batch_size: usize,
    /// Size limit for files of projects that set none.
    pub max_file_bytes: u64,
}

/// Runs syncs. One per worker process, shared by its concurrent jobs.
#[derive(Clone)]
pub struct Pipeline {
    store: Store,
    publisher: Publisher,
    sources: Arc<dyn SourceFactory>,
    opts: PipelineOptions,
}

/// What a phase asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Run the next phase.
    Continue,
    /// The sync is complete (finalized, or nothing to do).
    Complete,
}

/// Everything a phase needs about the sync it runs.
pub(crate) struct RunCtx {
    pub claim: Claim,
    pub sync: SyncRecord,
    pub project: Project,
    pub stats: Stats,
    pub head: Option<String>,
    source: Option<Arc<dyn Source>>,
    /// Cancelled when the lease is lost: stop at the next batch boundary.
    pub lease_lost: CancellationToken,
}

impl Pipeline {
    pub fn new(
        store: Store,
        publisher: Publisher,
        sources: Arc<dyn SourceFactory>,
        opts: PipelineOptions,
    ) -> Self {
        Self {
            store,
            publisher,
            sources,
            opts,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Run a sync from wherever its steps say it is, if its lease can be taken.
    pub async fn run(&self, sync_id: SyncId) {
        let claim = match self
            .store
            .claim(sync_id, &self.opts.worker_name, self.opts.lease_ttl)
            .await
        {
            Ok(Some(c)) => c,
            Ok(None) => {
                tracing::info!(%sync_id, "sync is finished or leased by another worker; dropping the job");
                return;
            }
            Err(e) => {
                tracing::error!(%sync_id, "cannot claim sync: {e}");
                return;
            }
        };
        let span = tracing::info_span!("sync", %sync_id, project_id = %claim.project_id, fence = claim.fence);
        self.run_claimed(claim).instrument(span).await;
    }

    async fn run_claimed(&self, claim: Claim) {
        let lease_lost = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(
            self.store.clone(),
            claim,
            self.opts.lease_ttl,
            lease_lost.clone(),
        ));
        let result = self.drive(claim, lease_lost.clone()).await;
        heartbeat.abort();
        if let Err(e) = result {
            tracing::error!("sync stopped: {e}");
        }
        if let Err(e) = self.store.release(&claim).await {
            tracing::warn!("cannot release the lease: {e}");
        }
    }

    async fn drive(&self, claim: Claim, lease_lost: CancellationToken) -> Result<(), PhaseError> {
        let sync = self.store.sync(claim.sync_id).await?;
        let project = self.store.project(sync.project_id).await?;
        let steps = self.store.steps(claim.sync_id).await?;
        let mut ctx = RunCtx {
            claim,
            stats: sync.stats.clone(),
            head: sync.head_commit.clone(),
            sync,
            project,
            source: None,
            lease_lost,
        };
        // Resume at the first phase that has not succeeded.
        let mut phase = steps
            .iter()
            .find(|s| !matches!(s.status, PhaseStatus::Succeeded | PhaseStatus::Skipped))
            .map(|s| s.phase);
        while let Some(current) = phase {
            if ctx.lease_lost.is_cancelled() {
                return Err(PhaseError::retryable(
                    "lost the lease; another worker continues",
                ));
            }
            let step = self.store.start_step(&ctx.claim, current).await?;
            tracing::info!(phase = %current, attempt = step.attempts, "phase started");
            self.emit(
                &ctx,
                current,
                PhaseStatus::Running,
                0,
                0,
                format!("{current} started"),
            )
            .await;
            let result = match current {
                SyncPhase::Prepare => self.prepare(&mut ctx).await,
                SyncPhase::Scan => self.scan(&mut ctx).await,
                SyncPhase::Import => self.import(&mut ctx, step.checkpoint).await,
                SyncPhase::Finalize => self.finalize(&mut ctx).await,
            };
            match result {
                Ok(Transition::Continue) => {
                    self.emit(
                        &ctx,
                        current,
                        PhaseStatus::Succeeded,
                        0,
                        0,
                        format!("{current} done"),
                    )
                    .await;
                    phase = current.next();
                }
                Ok(Transition::Complete) => return Ok(()),
                Err(e) => {
                    tracing::warn!(phase = %current, class = ?e.class, "phase failed: {e}");
                    if matches!(self.store.fail_sync(&ctx.claim, current, &e).await, Ok(())) {
                        ctx.sync.status = SyncStatus::Failed;
                        self.emit(&ctx, current, PhaseStatus::Failed, 0, 0, e.message.clone())
                            .await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn source(&self, ctx: &mut RunCtx) -> Result<Arc<dyn Source>, PhaseError> {
        if let Some(s) = &ctx.source {
            return Ok(s.clone());
        }
        let s = self.sources.open(&spec(&ctx.project)).await?;
        ctx.source = Some(s.clone());
        Ok(s)
    }

    /// Record the event as the sync's snapshot, then publish it. Progress is
    /// best effort: a Redis hiccup must not fail a sync.
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
        match self.store.record_progress(event).await {
            Ok(event) => {
                if let Err(e) = self.publisher.publish(&event).await {
                    tracing::warn!("cannot publish progress: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot record progress: {e}"),
        }
    }
}

async fn heartbeat(store: Store, claim: Claim, ttl: Duration, lost: CancellationToken) {
    let every = (ttl / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        match store.heartbeat(&claim, ttl).await {
            Ok(true) => {}
            Ok(false) => {
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
        self.run(job.sync_id).await;
    }
}

/// The `RepositorySpec` of a project's repository.
pub fn spec(project: &Project) -> RepositorySpec<'_> {
    let r = &project.repository;
    RepositorySpec {
        provider: &r.provider,
        location: &r.location,
        credentials_ref: r.credentials_ref.as_deref(),
    }
}
