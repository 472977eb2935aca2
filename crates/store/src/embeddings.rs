//! Chunks, the vector cache and search.
//!
//! Chunks belong to one entry version. Vectors live apart from chunks, one
//! per (model, chunk content hash): a chunk whose content any project has
//! already embedded with the model finds its vector here. The HNSW index is
//! per model, a partial index on `embedding::vector(N)`, created by
//! [`Store::ensure_embedding_index`] for the configured model, so the
//! semantic query names the model and the dimensions literally.

use crate::syncs::{commit_batch, save_checkpoint_query, BatchEnd, FenceLock};
use crate::{BatchWrite, Claim, Error, MemoryKey, Result, StepStart, Store};
use projsync_domain::{PhaseStatus, ProjectId, Stats, SyncId, SyncPhase};
use serde::{Deserialize, Serialize};
use sqlx::{PgExecutor, Row};

/// Which entry versions a phase works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkScope {
    /// The pending versions a sync wrote.
    Sync(SyncId),
    /// The active versions of a project (a backfill).
    Active(ProjectId),
}

impl ChunkScope {
    /// The `WHERE` condition on `memory_entries m` (binds `$1`).
    fn condition(self) -> &'static str {
        match self {
            ChunkScope::Sync(_) => "m.created_by_sync_id = $1 AND m.status = 'pending'",
            ChunkScope::Active(_) => "m.project_id = $1 AND m.status = 'active'",
        }
    }

    fn id(self) -> uuid::Uuid {
        match self {
            ChunkScope::Sync(s) => s.0,
            ChunkScope::Active(p) => p.0,
        }
    }
}

/// An entry version still to be cut into chunks.
#[derive(Debug, Clone)]
pub struct UnchunkedEntry {
    pub entry_id: i64,
    /// Its key in the scope: the next batch starts after it.
    pub key: MemoryKey,
    pub content: String,
}

/// A chunk to write.
#[derive(Debug, Clone)]
pub struct NewChunk {
    pub start_line: i32,
    pub end_line: i32,
    pub content: String,
    pub content_hash: String,
    pub token_count: i32,
    /// What full-text search indexes (the content plus identifier parts).
    pub searchable: String,
}

/// Chunks as the columns of an `INSERT … SELECT FROM UNNEST`, each row
/// with the key of its entry (an id, or a path the statement joins on).
#[derive(Debug)]
pub(crate) struct ChunkColumns<'a, K> {
    pub keys: Vec<K>,
    pub ordinals: Vec<i32>,
    pub starts: Vec<i32>,
    pub ends: Vec<i32>,
    pub contents: Vec<&'a str>,
    pub hashes: Vec<&'a str>,
    pub tokens: Vec<i32>,
    pub texts: Vec<&'a str>,
}

impl<K> Default for ChunkColumns<'_, K> {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            ordinals: Vec::new(),
            starts: Vec::new(),
            ends: Vec::new(),
            contents: Vec::new(),
            hashes: Vec::new(),
            tokens: Vec::new(),
            texts: Vec::new(),
        }
    }
}

impl<'a, K> ChunkColumns<'a, K>
where
    for<'q> Vec<K>: sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    K: Send + Sync,
{
    /// Add the columns, in this order, as the statement's next eight
    /// parameters (keys, ordinals, start and end lines, contents, hashes,
    /// token counts, searchable texts).
    pub fn add_to(
        &self,
        args: &mut sqlx::postgres::PgArguments,
    ) -> Result<(), sqlx::error::BoxDynError> {
        use sqlx::Arguments as _;
        args.add(&self.keys)?;
        args.add(&self.ordinals)?;
        args.add(&self.starts)?;
        args.add(&self.ends)?;
        args.add(&self.contents)?;
        args.add(&self.hashes)?;
        args.add(&self.tokens)?;
        args.add(&self.texts)
    }
}

impl<'a, K> ChunkColumns<'a, K> {
    /// Chunk `ordinal` of the entry `key`.
    pub fn push(&mut self, key: K, ordinal: usize, c: &'a NewChunk) {
        self.keys.push(key);
        self.ordinals.push(ordinal as i32);
        self.starts.push(c.start_line);
        self.ends.push(c.end_line);
        self.contents.push(c.content.as_str());
        self.hashes.push(c.content_hash.as_str());
        self.tokens.push(c.token_count);
        self.texts.push(c.searchable.as_str());
    }
}

/// A chunk as the embed phase sees it.
#[derive(Debug, Clone)]
pub struct ChunkToEmbed {
    pub id: i64,
    pub content_hash: String,
    /// `None` when the cache already holds its vector (not loaded then).
    pub content: Option<String>,
}

/// How much of a project's knowledge base has vectors of a model.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EmbeddingCounts {
    /// Active entry versions.
    pub entries: i64,
    /// Active entries not yet cut into chunks (written before chunking
    /// existed); a backfill chunks them.
    pub unchunked_entries: i64,
    /// Chunks of the active entries.
    pub chunks: i64,
    /// Of those, chunks with a vector of the model.
    pub embedded_chunks: i64,
}

impl EmbeddingCounts {
    pub fn missing(&self) -> i64 {
        self.chunks - self.embedded_chunks
    }
}

/// Search filters shared by every mode.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    pub path_prefix: Option<String>,
    pub language: Option<String>,
    /// Search the knowledge base as it was right after this sync.
    pub as_of: Option<SyncId>,
}

/// One ranked chunk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SearchHit {
    pub chunk_id: i64,
    pub entry_id: i64,
    pub path: String,
    pub kind: String,
    pub start_line: i32,
    pub end_line: i32,
    pub content: String,
    pub sync_id: SyncId,
    /// Cosine similarity (semantic) or `ts_rank_cd` (keyword).
    pub score: f64,
}

impl projsync_domain::search::LineRange for SearchHit {
    fn path(&self) -> &str {
        &self.path
    }
    fn lines(&self) -> (i32, i32) {
        (self.start_line, self.end_line)
    }
}

/// Whether pgvector is there, as `migrate`, `api` and `worker` check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VectorExtension {
    /// Created in this database, at this version.
    Installed(String),
    /// The server has it; `projsync migrate` creates it.
    Available,
    /// The server does not have it at all.
    Missing,
}

/// What to install when the server has no pgvector.
pub const PGVECTOR_MISSING: &str = "the PostgreSQL server has no pgvector extension (`vector`); \
    install it on the database server: on Debian run scripts/services.sh as root (it builds \
    Debian's pgvector source package), or install your distribution's postgresql-NN-pgvector \
    package, then run `projsync migrate`";

/// A model name as an SQL string literal (it is part of the index
/// predicate, which a bind parameter could not match).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Vectors as pgvector's text form, `[1,2,3]`.
fn vector_text(v: &[f32]) -> String {
    let mut out = String::with_capacity(v.len() * 10 + 2);
    out.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&x.to_string());
    }
    out.push(']');
    out
}

/// The fragment that restricts `memory_entries m` to what readers see:
/// active versions, or those visible right after the sync bound as `$as_of`.
pub(crate) fn visible(as_of_param: Option<usize>) -> String {
    match as_of_param {
        None => "m.status = 'active'".into(),
        Some(p) => format!(
            "m.created_by_sync_id IN (SELECT id FROM sync_chain(${p})) \
             AND (m.superseded_by_sync_id IS NULL \
                  OR m.superseded_by_sync_id NOT IN (SELECT id FROM sync_chain(${p})))"
        ),
    }
}

impl Store {
    /// Is pgvector installed in this database, available on the server, or
    /// missing?
    pub async fn vector_extension(&self) -> Result<VectorExtension> {
        vector_extension(&self.pool).await
    }

    /// Fail with what to do unless pgvector is installed in this database.
    pub async fn require_vector_extension(&self) -> Result<String> {
        match self.vector_extension().await? {
            VectorExtension::Installed(v) => Ok(v),
            VectorExtension::Available => Err(Error::Invalid(
                "the pgvector extension is not created in this database; run `projsync migrate`"
                    .into(),
            )),
            VectorExtension::Missing => Err(Error::Invalid(PGVECTOR_MISSING.into())),
        }
    }

    /// Create the HNSW index for `model` (cosine distance on
    /// `embedding::vector(dimensions)`) if it is not there. Fails when the
    /// cache holds vectors of that model with other dimensions: a model name
    /// means one vector space.
    pub async fn ensure_embedding_index(&self, model: &str, dimensions: usize) -> Result<()> {
        // The API and the workers are not the owner of the table: the
        // index is made by a SECURITY DEFINER function of the owner, which
        // also sees every tenant's vectors of that model.
        let name = index_name(model, dimensions);
        let other: Option<i32> =
            match sqlx::query_scalar("SELECT projsync_ensure_embedding_index($1, $2, $3)")
                .bind(model)
                .bind(dimensions as i32)
                .bind(&name)
                .fetch_one(&self.pool)
                .await
                .map_err(Error::from)
            {
                Ok(other) => other,
                // Two processes starting at once: the other one made it.
                Err(e) if e.is_unique_violation() => None,
                Err(e) => return Err(e),
            };
        if let Some(d) = other {
            return Err(Error::Invalid(format!(
                "the stored vectors of model `{model}` have {d} dimensions but \
                 embeddings.dimensions is {dimensions}; give the model another name \
                 (embeddings.model) or set the dimensions back to {d}"
            )));
        }
        Ok(())
    }

    /// The next entry versions of `scope` that have no chunks yet, in
    /// (kind, path) order after `after`: at most `limit` of them, and no
    /// more after the one whose content reaches `max_bytes` in all (the
    /// first is returned whatever its size). Fewer than `limit` and fewer
    /// than `max_bytes` returned: there are no more.
    pub async fn unchunked_entries(
        &self,
        scope: ChunkScope,
        after: Option<&MemoryKey>,
        limit: i64,
        max_bytes: i64,
    ) -> Result<Vec<UnchunkedEntry>> {
        // In (kind, path) order after the last batch: a range of the
        // scope's unique index, so that each batch costs its own rows, not
        // every row chunked before it.
        // From ('', '') for the first batch (kinds and paths are never
        // empty), not `$3 IS NULL OR …`: a generic plan could not use that
        // as an index bound.
        // The running total is computed as the rows stream (the LIMIT stops
        // it), and `octet_length` reads a stored value's size without
        // decompressing it: rows past the byte budget are never sent.
        let (after_kind, after_path) =
            after.map_or(("", ""), |(kind, path)| (kind.as_str(), path.as_str()));
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(&format!(
            "SELECT s.id, s.kind, s.path, s.content FROM ( \
                 SELECT m.id, m.kind, m.path, m.content, octet_length(m.content) AS len, \
                     sum(octet_length(m.content)) OVER (ORDER BY m.kind, m.path \
                         ROWS UNBOUNDED PRECEDING) AS total \
                 FROM memory_entries m \
                 WHERE {} AND m.chunk_count IS NULL AND (m.kind, m.path) > ($3, $4) \
                 ORDER BY m.kind, m.path LIMIT $2 \
             ) s WHERE s.total - s.len < $5 ORDER BY s.kind, s.path",
            scope.condition()
        ))
        .bind(scope.id())
        .bind(limit)
        .bind(after_kind)
        .bind(after_path)
        .bind(max_bytes)
        .fetch_all(&mut *self.read().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(entry_id, kind, path, content)| UnchunkedEntry {
                entry_id,
                key: (kind, path),
                content,
            })
            .collect())
    }

    /// Write the chunks of some entry versions and mark them chunked, in one
    /// fenced transaction. Written twice (a redelivered batch), it changes
    /// nothing. Batches of other entries may be written side by side: the
    /// fence takes the sync's row in share mode (a takeover still waits for
    /// each), and the step's row, locked last for the checkpoint, is the
    /// only row they share: they end in either order. Nothing is written
    /// once a cancel has been asked for.
    pub async fn write_chunks(
        &self,
        claim: &Claim,
        entries: &[(i64, Vec<NewChunk>)],
        phase: SyncPhase,
        checkpoint: serde_json::Value,
    ) -> Result<BatchWrite> {
        self.write_chunks_ending(claim, entries, phase, checkpoint, BatchEnd::Checkpoint)
            .await
            .map(|(written, _)| written)
    }

    /// [`Store::write_chunks`] for the step's last batch, with no other
    /// batch beside it: the step ends with it as `status` (its checkpoint
    /// is the step's last, with the sync's `stats`), and the next step
    /// starts, in the same transaction (which takes the sync's row for
    /// update, as a step's end does).
    pub async fn write_last_chunks(
        &self,
        claim: &Claim,
        entries: &[(i64, Vec<NewChunk>)],
        phase: SyncPhase,
        checkpoint: serde_json::Value,
        stats: &Stats,
        status: PhaseStatus,
    ) -> Result<(BatchWrite, Option<StepStart>)> {
        self.write_chunks_ending(
            claim,
            entries,
            phase,
            checkpoint,
            BatchEnd::Step { stats, status },
        )
        .await
    }

    async fn write_chunks_ending(
        &self,
        claim: &Claim,
        entries: &[(i64, Vec<NewChunk>)],
        phase: SyncPhase,
        checkpoint: serde_json::Value,
        end: BatchEnd<'_>,
    ) -> Result<(BatchWrite, Option<StepStart>)> {
        let lock = match end {
            BatchEnd::Checkpoint => FenceLock::Share,
            BatchEnd::Step { .. } => FenceLock::Update,
        };
        let Some(mut tx) = self.fenced_unless_cancelled(claim, lock).await? else {
            return Ok((BatchWrite::CancelRequested, None));
        };
        let mut columns = ChunkColumns::default();
        for (entry, chunks) in entries {
            for (i, c) in chunks.iter().enumerate() {
                columns.push(*entry, i, c);
            }
        }
        // The chunks and their entries' counts in one statement (the
        // entries are other rows than the chunks: nothing in it reads what
        // another part writes).
        let ids: Vec<i64> = entries.iter().map(|(id, _)| *id).collect();
        let counts: Vec<i32> = entries.iter().map(|(_, c)| c.len() as i32).collect();
        let mut args = sqlx::postgres::PgArguments::default();
        columns
            .add_to(&mut args)
            .and_then(|()| {
                use sqlx::Arguments as _;
                args.add(&ids)?;
                args.add(&counts)
            })
            .map_err(sqlx::Error::Encode)?;
        sqlx::query_with(
            "WITH counted AS ( \
                     UPDATE memory_entries m SET chunk_count = n.n \
                     FROM UNNEST($9::bigint[], $10::int[]) AS n(id, n) WHERE m.id = n.id) \
                 INSERT INTO memory_chunks (entry_id, ordinal, start_line, end_line, content, \
                     content_hash, token_count, tsv) \
                 SELECT t.entry, t.ord, t.s, t.e, t.content, t.hash, t.tokens, \
                     to_tsvector('english', t.searchable) \
                 FROM UNNEST($1::bigint[], $2::int[], $3::int[], $4::int[], $5::text[], \
                     $6::text[], $7::int[], $8::text[]) \
                     AS t(entry, ord, s, e, content, hash, tokens, searchable) \
                 ON CONFLICT (entry_id, ordinal) DO NOTHING",
            args,
        )
        .execute(&mut *tx)
        .await?;
        commit_batch(tx, claim, phase, checkpoint, end).await
    }

    /// How many chunks the entry versions of `scope` have.
    pub async fn count_chunks(&self, scope: ChunkScope) -> Result<i64> {
        Ok(sqlx::query_scalar(&format!(
            "SELECT count(*) FROM memory_chunks c JOIN memory_entries m ON m.id = c.entry_id \
             WHERE {}",
            scope.condition()
        ))
        .bind(scope.id())
        .fetch_one(&mut *self.read().await?)
        .await?)
    }

    /// The next chunks of `scope` after chunk `after`, by id, each with
    /// whether `model`'s vector of its content is cached (then its content
    /// is not loaded).
    pub async fn chunks_to_embed(
        &self,
        scope: ChunkScope,
        model: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ChunkToEmbed>> {
        let rows = sqlx::query(&format!(
            "SELECT c.id, c.content_hash, \
                 CASE WHEN v.content_hash IS NULL THEN c.content END AS content \
             FROM memory_chunks c JOIN memory_entries m ON m.id = c.entry_id \
             LEFT JOIN embeddings v ON v.model = $2 AND v.content_hash = c.content_hash \
             WHERE {} AND c.id > $3 ORDER BY c.id LIMIT $4",
            scope.condition()
        ))
        .bind(scope.id())
        .bind(model)
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *self.read().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ChunkToEmbed {
                id: r.get("id"),
                content_hash: r.get("content_hash"),
                content: r.get("content"),
            })
            .collect())
    }

    /// Store vectors in the cache and the phase's checkpoint, in one fenced
    /// transaction. A vector already cached is kept as it is.
    pub async fn write_vectors(
        &self,
        claim: &Claim,
        model: &str,
        vectors: &[(String, Vec<f32>)],
        phase: SyncPhase,
        checkpoint: serde_json::Value,
    ) -> Result<()> {
        let mut tx = self.fenced(claim).await?;
        insert_vectors(&mut *tx, model, vectors).await?;
        save_checkpoint_query(claim.sync_id, phase, checkpoint)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Chunks of `scope` with no vector of `model`, and entries of `scope`
    /// not chunked yet. Finalize refuses to activate versions while either is
    /// non-zero: a reader never sees an active chunk without its vector.
    pub async fn unembedded(&self, scope: ChunkScope, model: &str) -> Result<(i64, i64)> {
        unembedded(&mut *self.read().await?, scope, model).await
    }

    /// How far a project's active entries are embedded with `model`.
    pub async fn embedding_counts(
        &self,
        project_id: ProjectId,
        model: &str,
    ) -> Result<EmbeddingCounts> {
        let row = sqlx::query(
            "SELECT \
                 (SELECT count(*) FROM memory_entries m WHERE m.project_id = $1 AND m.status = 'active') AS entries, \
                 (SELECT count(*) FROM memory_entries m WHERE m.project_id = $1 AND m.status = 'active' \
                     AND m.chunk_count IS NULL) AS unchunked, \
                 (SELECT count(*) FROM memory_chunks c JOIN memory_entries m ON m.id = c.entry_id \
                     WHERE m.project_id = $1 AND m.status = 'active') AS chunks, \
                 (SELECT count(*) FROM memory_chunks c JOIN memory_entries m ON m.id = c.entry_id \
                     JOIN embeddings v ON v.model = $2 AND v.content_hash = c.content_hash \
                     WHERE m.project_id = $1 AND m.status = 'active') AS embedded",
        )
        .bind(project_id.0)
        .bind(model)
        .fetch_one(&mut *self.read().await?)
        .await?;
        Ok(EmbeddingCounts {
            entries: row.get("entries"),
            unchunked_entries: row.get("unchunked"),
            chunks: row.get("chunks"),
            embedded_chunks: row.get("embedded"),
        })
    }

    /// Delete the cached vectors of every model but `keep`, with their
    /// indexes' rows. Returns how many were deleted.
    pub async fn prune_vectors(&self, keep: &str) -> Result<u64> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query("DELETE FROM embeddings WHERE model <> $1")
            .bind(keep)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    /// The `limit` chunks nearest to `query` (cosine distance through the
    /// model's HNSW index) among the entries readers see.
    pub async fn search_semantic(
        &self,
        project_id: ProjectId,
        model: &str,
        dimensions: usize,
        query: &[f32],
        filter: &SearchFilter,
        limit: i64,
    ) -> Result<Vec<SearchHit>> {
        let q = SemanticQuery {
            project_id,
            model,
            dimensions,
            query,
            filter,
            limit,
        };
        let rows = self.semantic_rows(&q, "", false).await?;
        let mut hits: Vec<SearchHit> = rows.iter().map(hit_from_row).collect();
        // relaxed_order may return near-ties out of order.
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(hits)
    }

    /// `EXPLAIN` of the semantic query, to check that the index is used.
    /// `force_index` (no sort, no sequential scan) shows that the query can
    /// walk the index even where the planner would rather sort a small
    /// project's chunks exactly.
    #[allow(clippy::too_many_arguments)]
    pub async fn explain_semantic(
        &self,
        project_id: ProjectId,
        model: &str,
        dimensions: usize,
        query: &[f32],
        filter: &SearchFilter,
        limit: i64,
        force_index: bool,
    ) -> Result<String> {
        let q = SemanticQuery {
            project_id,
            model,
            dimensions,
            query,
            filter,
            limit,
        };
        let rows = self.semantic_rows(&q, "EXPLAIN ", force_index).await?;
        Ok(rows
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// Run the semantic query (or `prefix` + it, e.g. `EXPLAIN `) in a
    /// transaction of its own, with the index settings it relies on.
    async fn semantic_rows(
        &self,
        q: &SemanticQuery<'_>,
        prefix: &str,
        force_index: bool,
    ) -> Result<Vec<sqlx::postgres::PgRow>> {
        let sql = format!("{prefix}{}", semantic_sql(q.model, q.dimensions, q.filter));
        let mut tx = self.begin().await?;
        // Filters are applied as the index is walked (pgvector ≥ 0.8), so a
        // selective filter still fills `limit`. A prepared statement's
        // generic plan, costed without the query's values, sorts every
        // chunk of a small project instead of walking the index: plan each
        // run with its values.
        sqlx::query(
            "SELECT set_config('hnsw.ef_search', $1, true), \
                    set_config('hnsw.iterative_scan', 'relaxed_order', true), \
                    set_config('enable_seqscan', $2, true), set_config('enable_sort', $2, true), \
                    set_config('plan_cache_mode', 'force_custom_plan', true)",
        )
        .bind((q.limit.clamp(40, 1000)).to_string())
        .bind(if force_index { "off" } else { "on" })
        .execute(&mut *tx)
        .await?;
        let rows = bind_filter(
            sqlx::query(&sql)
                .bind(q.project_id.0)
                .bind(vector_text(q.query))
                .bind(q.limit),
            q.filter,
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// The `limit` chunks that best match a `to_tsquery('english', …)`
    /// expression (see `domain::search::keyword_queries`), by `ts_rank_cd`.
    pub async fn search_keyword(
        &self,
        project_id: ProjectId,
        tsquery: &str,
        filter: &SearchFilter,
        limit: i64,
    ) -> Result<Vec<SearchHit>> {
        let sql = format!(
            "SELECT c.id AS chunk_id, m.id AS entry_id, m.path, m.kind, c.start_line, \
                 c.end_line, c.content, m.created_by_sync_id, \
                 ts_rank_cd(c.tsv, q)::float8 AS score \
             FROM memory_chunks c JOIN memory_entries m ON m.id = c.entry_id, \
                 to_tsquery('english', $2) q \
             WHERE m.project_id = $1 AND {} AND c.tsv @@ q{} \
             ORDER BY score DESC, c.id LIMIT $3",
            visible(filter.as_of.map(|_| 6)),
            filter_sql(),
        );
        let mut tx = self.begin().await?;
        // Plan with the query's values: how many chunks a term matches
        // decides between the GIN index and a scan of the project.
        sqlx::query("SELECT set_config('plan_cache_mode', 'force_custom_plan', true)")
            .execute(&mut *tx)
            .await?;
        let rows = bind_filter(
            sqlx::query(&sql)
                .bind(project_id.0)
                .bind(tsquery)
                .bind(limit),
            filter,
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows.iter().map(hit_from_row).collect())
    }

    /// Is `sync_id` a succeeded sync of the project whose state search can
    /// read (a sync or a restore, linked into the project's history)?
    pub async fn is_history_point(&self, project_id: ProjectId, sync_id: SyncId) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM project_syncs WHERE id = $1 AND project_id = $2 \
                 AND status = 'succeeded' AND kind IN ('sync', 'restore'))",
        )
        .bind(sync_id.0)
        .bind(project_id.0)
        .fetch_one(&mut *self.read().await?)
        .await?)
    }
}

/// The inputs of a semantic query.
struct SemanticQuery<'a> {
    project_id: ProjectId,
    model: &'a str,
    dimensions: usize,
    query: &'a [f32],
    filter: &'a SearchFilter,
    limit: i64,
}

/// Filters bind `$4` (path prefix), `$5` (language) and `$6` (as of).
fn filter_sql() -> &'static str {
    " AND ($4::text IS NULL OR starts_with(m.path, $4)) AND ($5::text IS NULL OR m.language = $5)"
}

fn bind_filter<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    filter: &'q SearchFilter,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let q = q
        .bind(filter.path_prefix.as_deref())
        .bind(filter.language.as_deref());
    match filter.as_of {
        Some(s) => q.bind(s.0),
        None => q,
    }
}

fn semantic_sql(model: &str, dimensions: usize, filter: &SearchFilter) -> String {
    let distance = format!("(v.embedding::vector({dimensions}) <=> $2::vector({dimensions}))");
    format!(
        "SELECT c.id AS chunk_id, m.id AS entry_id, m.path, m.kind, c.start_line, c.end_line, \
             c.content, m.created_by_sync_id, (1 - {distance})::float8 AS score \
         FROM embeddings v \
         JOIN memory_chunks c ON c.content_hash = v.content_hash \
         JOIN memory_entries m ON m.id = c.entry_id \
         WHERE v.model = {} AND m.project_id = $1 AND {}{} \
         ORDER BY {distance} LIMIT $3",
        literal(model),
        visible(filter.as_of.map(|_| 6)),
        filter_sql(),
    )
}

fn hit_from_row(r: &sqlx::postgres::PgRow) -> SearchHit {
    SearchHit {
        chunk_id: r.get("chunk_id"),
        entry_id: r.get("entry_id"),
        path: r.get("path"),
        kind: r.get("kind"),
        start_line: r.get("start_line"),
        end_line: r.get("end_line"),
        content: r.get("content"),
        sync_id: SyncId(r.get("created_by_sync_id")),
        score: r.get("score"),
    }
}

fn index_name(model: &str, dimensions: usize) -> String {
    let hash = projsync_domain::content_hash(model);
    format!("embeddings_hnsw_{}_{dimensions}", &hash[..12])
}

pub(crate) async fn vector_extension<'e>(db: impl PgExecutor<'e>) -> Result<VectorExtension> {
    let row: (Option<String>, bool) = sqlx::query_as(
        "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'vector'), \
                EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')",
    )
    .fetch_one(db)
    .await?;
    Ok(match row {
        (Some(v), _) => VectorExtension::Installed(v),
        (None, true) => VectorExtension::Available,
        (None, false) => VectorExtension::Missing,
    })
}

pub(crate) async fn insert_vectors<'e>(
    db: impl PgExecutor<'e>,
    model: &str,
    vectors: &[(String, Vec<f32>)],
) -> Result<()> {
    if vectors.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO embeddings (model, content_hash, dimensions, embedding) \
         SELECT $1, t.hash, vector_dims(t.v::vector), t.v::vector \
         FROM UNNEST($2::text[], $3::text[]) AS t(hash, v) \
         ON CONFLICT (tenant_id, model, content_hash) DO NOTHING",
    )
    .bind(model)
    .bind(vectors.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>())
    .bind(
        vectors
            .iter()
            .map(|(_, v)| vector_text(v))
            .collect::<Vec<_>>(),
    )
    .execute(db)
    .await?;
    Ok(())
}

pub(crate) async fn unembedded<'e>(
    db: impl PgExecutor<'e>,
    scope: ChunkScope,
    model: &str,
) -> Result<(i64, i64)> {
    let row: (i64, i64) = sqlx::query_as(&format!("SELECT {}", unembedded_columns(scope)))
        .bind(scope.id())
        .bind(model)
        .fetch_one(db)
        .await?;
    Ok(row)
}

/// What [`unembedded`] counts, as two select-list expressions over `$1`
/// (the scope's id) and `$2` (the model): for a statement that reads more
/// beside them. With no model (`$2` empty: embeddings are off) no chunk
/// is looked up for a vector, and the first count is 0.
pub(crate) fn unembedded_columns(scope: ChunkScope) -> String {
    format!(
        "CASE WHEN $2 = '' THEN 0 ELSE \
             (SELECT count(*) FROM memory_chunks c JOIN memory_entries m ON m.id = c.entry_id \
              WHERE {cond} AND NOT EXISTS (SELECT 1 FROM embeddings v \
                  WHERE v.model = $2 AND v.content_hash = c.content_hash)) END, \
             (SELECT count(*) FROM memory_entries m WHERE {cond} AND m.chunk_count IS NULL)",
        cond = scope.condition()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_quoted_as_literals() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(vector_text(&[1.0, -0.5]), "[1,-0.5]");
        let a = index_name("all-MiniLM-L6-v2", 384);
        assert!(a.starts_with("embeddings_hnsw_") && a.ends_with("_384"));
        assert_ne!(a, index_name("other", 384));
    }
}
