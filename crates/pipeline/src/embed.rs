//! The embed phase: cut the sync's new entry versions into chunks, then give
//! every chunk a vector of the configured model, from the cache when any
//! project embedded the same content before, from the model otherwise.
//!
//! Both halves are idempotent. Chunking picks the versions that have none
//! yet; embedding walks chunks by id from the checkpoint, and a vector
//! written twice is kept once. A backfill runs the same phase over the
//! project's active versions instead of a sync's pending ones.

use crate::{Pipeline, RunCtx, Stop, Transition};
use projsync_domain::{PhaseError, PhaseStatus, Stats, SyncPhase};
use projsync_embed::chunk::{chunk_text, ChunkOptions, EstimateCounter};
use projsync_embed::{EmbedError, Embedder, TokenCounter};
use projsync_store::{BatchWrite, ChunkScope, NewChunk};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;

/// Embeddings as a pipeline uses them.
#[derive(Clone)]
pub struct EmbedSettings {
    /// The configured model; `None` when the deployment turned embeddings
    /// off (entries are still chunked, for keyword search).
    pub embedder: Option<Arc<dyn Embedder>>,
    /// Whether projects that do not say embed (`embeddings.enabled`).
    pub enabled: bool,
    /// Chunks per model call and checkpoint.
    pub batch_size: usize,
    /// Entry versions chunked per checkpoint ...
    pub chunk_entries_batch: usize,
    /// ... and at most about this many bytes of their content (a batch ends
    /// with the entry that reaches it).
    pub chunk_batch_bytes: usize,
    /// Tokens a chunk may hold; at most the model's limit.
    pub max_chunk_tokens: Option<usize>,
}

impl Default for EmbedSettings {
    fn default() -> Self {
        Self {
            embedder: None,
            enabled: true,
            batch_size: 64,
            // A small sync's entries (a 20-file repository's files and their
            // few hundred symbols) in one or two batches, written side by
            // side: each batch is a read and a fenced write.
            chunk_entries_batch: 250,
            chunk_batch_bytes: 4 << 20,
            max_chunk_tokens: None,
        }
    }
}

impl EmbedSettings {
    /// The model's name, when embeddings are on.
    pub fn model(&self) -> Option<&str> {
        self.embedder.as_deref().map(|e| e.model())
    }

    /// Whether a project's syncs embed.
    pub fn enabled_for(&self, project_setting: Option<bool>) -> bool {
        self.embedder.is_some() && project_setting.unwrap_or(self.enabled)
    }

    /// How entries are cut: by the model's tokenizer and limit, or by an
    /// estimate when there is no model.
    pub fn chunker(&self) -> (Arc<dyn TokenCounter>, ChunkOptions) {
        match &self.embedder {
            Some(e) => {
                let max = self
                    .max_chunk_tokens
                    .map_or(e.max_tokens(), |m| m.min(e.max_tokens()));
                let counter: Arc<dyn TokenCounter> = Arc::new(EmbedderCounter(e.clone()));
                (counter, ChunkOptions::new(max))
            }
            None => (
                Arc::new(EstimateCounter),
                ChunkOptions::new(self.max_chunk_tokens.unwrap_or(256)),
            ),
        }
    }
}

/// An embedder seen as its token counter.
struct EmbedderCounter(Arc<dyn Embedder>);

impl TokenCounter for EmbedderCounter {
    fn count_tokens(&self, text: &str) -> usize {
        self.0.count_tokens(text)
    }
    fn truncate<'a>(&self, text: &'a str, max_tokens: usize) -> (std::borrow::Cow<'a, str>, bool) {
        self.0.truncate(text, max_tokens)
    }
}

/// Chunk batches written side by side (each its own transaction).
const CHUNK_WRITERS: usize = 2;

/// Entry versions read and cut into chunks, not yet written.
struct ChunkedBatch {
    /// How many entry versions (some may have no chunk).
    entries: u64,
    chunks: Vec<(i64, Vec<NewChunk>)>,
}

/// The embed step's checkpoint.
#[derive(Debug, Default, Serialize, Deserialize)]
struct EmbedCheckpoint {
    /// Entry versions cut into chunks so far.
    chunked_entries: u64,
    /// Every chunk up to this id has its vector.
    after_chunk: i64,
    done: u64,
    embedded: u64,
    cache_hits: u64,
    batches: u64,
}

/// Cut entries into chunks, off the async runtime (tokenizing is CPU work).
pub async fn chunk_entries(
    counter: Arc<dyn TokenCounter>,
    opts: ChunkOptions,
    entries: Vec<(i64, String)>,
) -> Result<Vec<(i64, Vec<NewChunk>)>, PhaseError> {
    tokio::task::spawn_blocking(move || {
        entries
            .into_iter()
            .map(|(id, content)| {
                let chunks = chunk_text(&content, counter.as_ref(), &opts)
                    .into_iter()
                    .map(|c| NewChunk {
                        start_line: c.start_line as i32,
                        end_line: c.end_line as i32,
                        content_hash: projsync_domain::content_hash(&c.content),
                        token_count: c.token_count as i32,
                        searchable: projsync_domain::search::searchable_text(&c.content),
                        content: c.content,
                    })
                    .collect();
                (id, chunks)
            })
            .collect()
    })
    .await
    .map_err(|e| PhaseError::retryable(format!("chunking stopped: {e}")))
}

/// A provider's error as the engine classifies it: a `Retry-After` is a
/// scheduled wait that costs no attempt, like a GitHub rate limit.
pub fn phase_error(e: EmbedError) -> PhaseError {
    provider_error("embedding provider", e)
}

/// A model provider's error as a phase error, said as `who`'s; the
/// provider's own wait (`Retry-After`) is kept.
pub(crate) fn provider_error(who: &str, e: EmbedError) -> PhaseError {
    match e {
        EmbedError::Retryable {
            message,
            retry_after,
        } => {
            let mut p = PhaseError::retryable(format!("{who}: {message}"));
            p.retry_after = retry_after;
            p
        }
        EmbedError::Fatal(message) => PhaseError::fatal(format!("{who}: {message}")),
    }
}

impl Pipeline {
    pub(crate) async fn embed(
        &self,
        ctx: &mut RunCtx,
        checkpoint: Option<serde_json::Value>,
    ) -> Result<Transition, PhaseError> {
        let backfill = ctx.sync.kind == "backfill";
        let scope = if backfill {
            ChunkScope::Active(ctx.claim.project_id)
        } else {
            ChunkScope::Sync(ctx.claim.sync_id)
        };
        // A first attempt's scope has no chunk yet: a batch's chunks and
        // the checkpoint that counts them are written together.
        let fresh = checkpoint.is_none() && !backfill;
        let mut written_chunks = 0u64;
        let mut cp: EmbedCheckpoint = checkpoint
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let settings = &self.embeddings;

        // 1. Chunks for every entry version of the scope.
        let (counter, opts) = settings.chunker();
        // Where the last batch ended (after a restart: the start; entries
        // chunked before are passed over once).
        let mut after: Option<projsync_store::MemoryKey> = None;
        // Two batches are written side by side, each its own fenced
        // transaction (the database computes their search vectors, most of
        // this half's cost, on two cores), while the next two are read and
        // cut: the worker's CPU and the database's overlap. At most four
        // batches are in memory; nothing is in flight at a boundary. The
        // two may save their checkpoints in either order: its count of
        // chunked entries is for progress only (a restart finds the
        // entries left by their `chunk_count`).
        let mut ready: Vec<ChunkedBatch> = Vec::new();
        let mut read_all = false;
        // Embeddings off, no vector to compute: the step ends with its
        // chunks. A fresh attempt's last batch, when it is written alone,
        // ends the step (as skipped, with the sync's stats) and starts the
        // next one in its own transaction; `ended` is then set.
        let vectors =
            settings.embedder.is_some() && settings.enabled_for(ctx.project.embeddings_enabled);
        let mut ended: Option<Option<projsync_store::StepStart>> = None;
        loop {
            // A batch's write checks for a cancel itself.
            if let Some(stop) = self.write_boundary(ctx).await? {
                return Ok(Transition::Stop(stop));
            }
            let claim = ctx.claim;
            let store = &self.store;
            let pending = std::mem::take(&mut ready);
            let mut checkpoints = Vec::with_capacity(pending.len());
            for batch in &pending {
                cp.chunked_entries += batch.entries;
                written_chunks += batch
                    .chunks
                    .iter()
                    .map(|(_, c)| c.len() as u64)
                    .sum::<u64>();
                checkpoints.push(json(&cp));
            }
            let last = (fresh && !vectors && read_all && pending.len() == 1).then(|| Stats {
                chunks: ctx.stats.chunks + written_chunks,
                ..ctx.stats.clone()
            });
            let last = last.as_ref();
            let write = futures::future::try_join_all(pending.iter().zip(checkpoints).map(
                |(batch, checkpoint)| async move {
                    match last {
                        Some(stats) => store
                            .write_last_chunks(
                                &claim,
                                &batch.chunks,
                                SyncPhase::Embed,
                                checkpoint,
                                stats,
                                PhaseStatus::Skipped,
                            )
                            .await
                            .map(|(written, next)| (written, Some(next))),
                        None => store
                            .write_chunks(&claim, &batch.chunks, SyncPhase::Embed, checkpoint)
                            .await
                            .map(|written| (written, None)),
                    }
                },
            ));
            let after = &mut after;
            let read = async {
                let mut next = Vec::new();
                let limit = settings.chunk_entries_batch.max(1);
                let max_bytes = settings.chunk_batch_bytes.max(1);
                while !read_all && next.len() < CHUNK_WRITERS {
                    let entries = store
                        .unchunked_entries(scope, after.as_ref(), limit as i64, max_bytes as i64)
                        .await?;
                    // A batch short of both limits is the last: no entry
                    // of the scope is added while this phase runs.
                    let bytes: usize = entries.iter().map(|e| e.content.len()).sum();
                    read_all = entries.len() < limit && bytes < max_bytes;
                    let Some(last) = entries.last() else {
                        break;
                    };
                    *after = Some(last.key.clone());
                    let n = entries.len() as u64;
                    let chunks = chunk_entries(
                        counter.clone(),
                        opts,
                        entries
                            .into_iter()
                            .map(|e| (e.entry_id, e.content))
                            .collect(),
                    )
                    .await?;
                    next.push(ChunkedBatch { entries: n, chunks });
                }
                Ok::<_, PhaseError>(next)
            };
            let (written, next) = tokio::join!(write, read);
            for (written, next) in written? {
                if written == BatchWrite::CancelRequested {
                    return Ok(Transition::Stop(Stop::Cancel));
                }
                if let Some(next) = next {
                    ended = Some(next);
                }
            }
            if !pending.is_empty() {
                crate::failpoints::hit("embed.chunks_written").await;
                self.emit(
                    ctx,
                    SyncPhase::Embed,
                    PhaseStatus::Running,
                    0,
                    0,
                    format!("{} entries cut into chunks", cp.chunked_entries),
                )
                .await;
            }
            ready = next?;
            if ready.is_empty() {
                break;
            }
        }
        // A fresh sync's chunks: those cut here, and the symbols' that the
        // analyze phase cut and counted into the stats.
        let total = if fresh {
            ctx.stats.chunks + written_chunks
        } else {
            self.store.count_chunks(scope).await? as u64
        };
        ctx.stats.chunks = total;
        if total >= crate::phases::STATS_AFTER_ROWS {
            self.refresh_stats(projsync_store::GrownTable::MemoryChunks)
                .await;
        }

        // 2. A vector for every chunk, unless embeddings are off.
        let embedder = match &settings.embedder {
            Some(e) if vectors => e.clone(),
            _ => {
                ctx.next_step = match ended {
                    Some(next) => next,
                    None => {
                        self.store
                            .finish_step_with_stats(
                                &ctx.claim,
                                SyncPhase::Embed,
                                PhaseStatus::Skipped,
                                json(&cp),
                                &ctx.stats,
                            )
                            .await?
                    }
                };
                self.emit(
                    ctx,
                    SyncPhase::Embed,
                    PhaseStatus::Skipped,
                    0,
                    total,
                    format!(
                        "embeddings are off for this project: {total} chunks are searchable by \
                         keyword only"
                    ),
                )
                .await;
                return Ok(Transition::Continue);
            }
        };
        let model = embedder.model().to_string();
        loop {
            if let Some(stop) = self.boundary(ctx).await? {
                return Ok(Transition::Stop(stop));
            }
            let batch = self
                .store
                .chunks_to_embed(
                    scope,
                    &model,
                    cp.after_chunk,
                    settings.batch_size.max(1) as i64,
                )
                .await?;
            let Some(last) = batch.last() else { break };
            let last_id = last.id;
            let mut seen: HashSet<&str> = HashSet::new();
            let mut hashes = Vec::new();
            let mut inputs = Vec::new();
            let mut hits = 0;
            for c in &batch {
                match &c.content {
                    Some(content) if seen.insert(c.content_hash.as_str()) => {
                        hashes.push(c.content_hash.clone());
                        inputs.push(content.clone());
                    }
                    // Cached, or the same content earlier in this batch.
                    _ => hits += 1,
                }
            }
            let vectors = if inputs.is_empty() {
                Vec::new()
            } else {
                crate::failpoints::hit("embed.before_call").await;
                let vectors = embedder.embed(&inputs).await.map_err(phase_error)?;
                crate::failpoints::hit("embed.called").await;
                vectors
            };
            if vectors.len() != inputs.len() {
                return Err(PhaseError::fatal(format!(
                    "embedding provider returned {} vectors for {} inputs",
                    vectors.len(),
                    inputs.len()
                )));
            }
            if let Some(v) = vectors.iter().find(|v| v.len() != embedder.dimensions()) {
                return Err(PhaseError::fatal(format!(
                    "model `{model}` returned a vector of {} dimensions, but {} are configured \
                     (embeddings.dimensions)",
                    v.len(),
                    embedder.dimensions()
                )));
            }
            cp.after_chunk = last_id;
            cp.done += batch.len() as u64;
            cp.embedded += inputs.len() as u64;
            cp.cache_hits += hits;
            cp.batches += 1;
            ctx.stats.embedded = cp.embedded;
            ctx.stats.embedding_cache_hits = cp.cache_hits;
            let pairs: Vec<(String, Vec<f32>)> = hashes.into_iter().zip(vectors).collect();
            self.store
                .write_vectors(&ctx.claim, &model, &pairs, SyncPhase::Embed, json(&cp))
                .await?;
            crate::failpoints::hit("embed.batch_written").await;
            self.emit(
                ctx,
                SyncPhase::Embed,
                PhaseStatus::Running,
                cp.done,
                total,
                format!(
                    "{}/{total} chunks embedded ({} by the model, {} from the cache)",
                    cp.done, cp.embedded, cp.cache_hits
                ),
            )
            .await;
        }
        ctx.stats.embedded = cp.embedded;
        ctx.stats.embedding_cache_hits = cp.cache_hits;
        ctx.next_step = self
            .store
            .finish_step_with_stats(
                &ctx.claim,
                SyncPhase::Embed,
                PhaseStatus::Succeeded,
                json(&cp),
                &ctx.stats,
            )
            .await?;
        Ok(Transition::Continue)
    }

    /// A backfill's end: prune other models' vectors if asked, record the
    /// stats. No entry version changes.
    pub(crate) async fn finalize_backfill(
        &self,
        ctx: &mut RunCtx,
    ) -> Result<Transition, PhaseError> {
        let prune = ctx
            .sync
            .options
            .get("prune")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let mut message = format!(
            "backfill complete: {} chunks, {} embedded by the model, {} from the cache",
            ctx.stats.chunks, ctx.stats.embedded, ctx.stats.embedding_cache_hits
        );
        if prune {
            let Some(model) = self.embeddings.model() else {
                return Err(PhaseError::fatal(
                    "cannot prune: embeddings are off in this deployment, so there is no \
                     configured model to keep",
                ));
            };
            let pruned = self.store.prune_vectors(model).await?;
            message.push_str(&format!("; {pruned} vectors of other models pruned"));
        }
        self.store.complete_backfill(&ctx.claim, &ctx.stats).await?;
        ctx.sync.status = projsync_domain::SyncStatus::Succeeded;
        ctx.sync.outcome = Some("embedded".into());
        self.emit(
            ctx,
            SyncPhase::Finalize,
            PhaseStatus::Succeeded,
            ctx.stats.chunks,
            ctx.stats.chunks,
            message,
        )
        .await;
        Ok(Transition::Complete)
    }
}

fn json(cp: &EmbedCheckpoint) -> serde_json::Value {
    serde_json::to_value(cp).expect("checkpoint serializes")
}
