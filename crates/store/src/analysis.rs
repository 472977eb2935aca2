//! Code analysis in the ledger: symbol entries (memory entries of kind
//! `symbol`, named by qualified name), the files a sync analysed with what
//! they keep of their last analysis, and dependency edges. The analyze
//! phase writes them `pending`, batch by batch with its checkpoint;
//! finalize (entries.rs) makes them visible with the files.

use crate::docs::carried_forward;
use crate::embeddings::{ChunkColumns, NewChunk};
use crate::syncs::{commit_batch, BatchEnd, FenceLock};
use crate::{BatchWrite, Claim, Result, StepStart, Store};
use projsync_domain::{PhaseStatus, ProjectId, Stats, SyncId, SyncPhase};
use serde::{Deserialize, Serialize};
use sqlx::error::BoxDynError;
use sqlx::postgres::PgArguments;
use sqlx::types::Json;
use sqlx::{Arguments, PgConnection, Row};
use uuid::Uuid;

/// A file version this sync wrote, to be analysed. `content` is `None`
/// when the file's language is not one the caller asked for.
#[derive(Debug, Clone)]
pub struct AnalysisInput {
    pub path: String,
    pub language: Option<String>,
    pub blob_sha: Option<String>,
    pub content: Option<String>,
    /// The path it had before, when the sync renamed it.
    pub old_path: Option<String>,
}

/// One active symbol entry, as a changed file's analysis compares with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSymbol {
    pub source_path: String,
    pub qualified_name: String,
    pub content_hash: String,
    pub symbol_id: Uuid,
}

/// What the parser read of a symbol, stored with its entry (`meta`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolMeta {
    /// function, method, type, trait, interface, class, enum, const, module
    pub kind: String,
    pub name: String,
    pub signature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    /// 1-based, inclusive.
    pub start_line: u32,
    pub end_line: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// public or private
    pub visibility: String,
    /// Read from a file whose syntax tree had errors.
    #[serde(default)]
    pub partial: bool,
}

/// A new symbol version, written `pending` by the analyze phase.
#[derive(Debug, Clone)]
pub struct NewSymbol {
    pub qualified_name: String,
    pub source_path: String,
    pub symbol_id: Uuid,
    pub content: String,
    pub content_hash: String,
    pub blob_sha: Option<String>,
    pub language: String,
    pub meta: SymbolMeta,
    /// Its chunks, when the analysis cut it already: written with the
    /// entry (and its `chunk_count`), so that the embed phase neither reads
    /// it back nor updates it. `None`: the embed phase chunks it.
    pub chunks: Option<Vec<NewChunk>>,
}

/// A file the analyze phase looked at, and what it keeps.
#[derive(Debug, Clone, Default)]
pub struct AnalyzedFile {
    pub path: String,
    pub language: Option<String>,
    pub skip_reason: Option<String>,
    pub partial: bool,
    /// Qualified names of the active symbols that stay as they are.
    pub kept_symbols: Vec<String>,
    /// The file's active edges stay as they are (its imports did not change).
    pub kept_edges: bool,
    /// A hash of what the file gives its module's generated doc (its
    /// module doc comment, public symbols and imports), kept in the meta of
    /// the file version the sync wrote: a later sync that rewrites the file
    /// with the same digest leaves its module's doc alone.
    pub doc_digest: Option<String>,
}

/// One import of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from_path: String,
    pub raw: String,
    pub line: u32,
    pub candidates: Vec<String>,
}

impl Store {
    /// The next batch of files to analyse, after `after` in path order,
    /// with their content when their language is in `languages` (the
    /// others are only counted): the file versions this sync wrote, and
    /// with `whole_tree` also the active files it keeps as they are.
    pub async fn analysis_batch(
        &self,
        claim: &Claim,
        whole_tree: bool,
        after: Option<&str>,
        limit: i64,
        languages: &[&str],
    ) -> Result<Vec<AnalysisInput>> {
        // `path > ''` for the first batch: see `import_batch`. Each branch
        // is a keyset range of its own index, ordered and limited by
        // itself, so that a batch reads its own rows: ordered and limited
        // only once their union is made, every batch read and sorted all
        // the rows after it (a first import of 100,000 files, 500 batches,
        // spent 64 s here). A renamed file's old path is looked up per row.
        const WRITTEN: &str = "SELECT e.path, e.language, e.blob_sha, \
                 CASE WHEN e.language = ANY($4) THEN e.content END AS content, \
                 (SELECT c.old_path FROM sync_changes c WHERE c.sync_id = e.created_by_sync_id \
                     AND c.path = e.path AND c.change = 'renamed') AS old_path \
             FROM memory_entries e \
             WHERE e.created_by_sync_id = $1 AND e.kind = 'file' AND e.path > $2 \
               AND $5::uuid IS NOT NULL \
             ORDER BY e.path LIMIT $3";
        // Active files without a new version that the sync neither
        // deletes, skips nor renames away.
        let sql = if whole_tree {
            let kept = format!(
                "SELECT e.path, e.language, e.blob_sha, \
                     CASE WHEN e.language = ANY($4) THEN e.content END AS content, \
                     NULL AS old_path \
                 FROM memory_entries e \
                 WHERE e.project_id = $5 AND e.status = 'active' AND e.kind = 'file' \
                   AND e.path > $2 AND {} \
                 ORDER BY e.path LIMIT $3",
                carried_forward("e.path", "$1")
            );
            format!("SELECT * FROM (({WRITTEN}) UNION ALL ({kept})) x ORDER BY path LIMIT $3")
        } else {
            WRITTEN.to_string()
        };
        let rows = sqlx::query(&sql)
            .bind(claim.sync_id.0)
            .bind(after.unwrap_or(""))
            .bind(limit)
            .bind(languages)
            .bind(claim.project_id.0)
            .fetch_all(&mut *self.read().await?)
            .await?;
        Ok(rows
            .iter()
            .map(|r| AnalysisInput {
                path: r.get("path"),
                language: r.get("language"),
                blob_sha: r.get("blob_sha"),
                content: r.get("content"),
                old_path: r.get("old_path"),
            })
            .collect())
    }

    /// The active symbols defined in `files`.
    pub async fn active_symbols_of(
        &self,
        project_id: ProjectId,
        files: &[String],
    ) -> Result<Vec<ActiveSymbol>> {
        let rows = sqlx::query(
            "SELECT source_path, path, content_hash, symbol_id FROM memory_entries \
             WHERE project_id = $1 AND status = 'active' AND source_path = ANY($2) \
               AND kind = 'symbol'",
        )
        .bind(project_id.0)
        .bind(files)
        .fetch_all(&mut *self.read().await?)
        .await?;
        Ok(rows
            .iter()
            .map(|r| ActiveSymbol {
                source_path: r.get("source_path"),
                qualified_name: r.get("path"),
                content_hash: r.get("content_hash"),
                symbol_id: r.get("symbol_id"),
            })
            .collect())
    }

    /// The active edges of `files`, in line order per file.
    pub async fn active_edges_of(
        &self,
        project_id: ProjectId,
        files: &[String],
    ) -> Result<Vec<Edge>> {
        let rows = sqlx::query(
            "SELECT from_path, raw, line, candidates FROM dependency_edges \
             WHERE project_id = $1 AND status = 'active' AND from_path = ANY($2) \
             ORDER BY from_path, line, raw",
        )
        .bind(project_id.0)
        .bind(files)
        .fetch_all(&mut *self.read().await?)
        .await?;
        Ok(rows.iter().map(edge_from_row).collect())
    }

    /// Write one analyze batch: the new `pending` symbol versions and
    /// edges, the files it analysed, and the checkpoint, in one fenced
    /// transaction. A batch written twice (a step run again from an older
    /// checkpoint) changes nothing. Nothing is written once a cancel has
    /// been asked for.
    pub async fn write_analysis_batch(
        &self,
        claim: &Claim,
        symbols: &[NewSymbol],
        files: &[AnalyzedFile],
        edges: &[Edge],
        checkpoint: serde_json::Value,
    ) -> Result<BatchWrite> {
        self.write_analysis_batch_ending(
            claim,
            symbols,
            files,
            edges,
            checkpoint,
            BatchEnd::Checkpoint,
        )
        .await
        .map(|(written, _)| written)
    }

    /// [`Store::write_analysis_batch`] for the step's last batch: the step
    /// ends with it (its checkpoint is the step's last, with the sync's
    /// `stats`), and the next step starts, in the same transaction.
    pub async fn write_last_analysis_batch(
        &self,
        claim: &Claim,
        symbols: &[NewSymbol],
        files: &[AnalyzedFile],
        edges: &[Edge],
        checkpoint: serde_json::Value,
        stats: &Stats,
    ) -> Result<(BatchWrite, Option<StepStart>)> {
        self.write_analysis_batch_ending(
            claim,
            symbols,
            files,
            edges,
            checkpoint,
            BatchEnd::Step {
                stats,
                status: PhaseStatus::Succeeded,
            },
        )
        .await
    }

    async fn write_analysis_batch_ending(
        &self,
        claim: &Claim,
        symbols: &[NewSymbol],
        files: &[AnalyzedFile],
        edges: &[Edge],
        checkpoint: serde_json::Value,
        end: BatchEnd<'_>,
    ) -> Result<(BatchWrite, Option<StepStart>)> {
        let Some(mut tx) = self
            .fenced_unless_cancelled(claim, FenceLock::Update)
            .await?
        else {
            return Ok((BatchWrite::CancelRequested, None));
        };
        // Every write of the batch is one statement, each kind of row in a
        // part of its own, its parameters bound with it: a round trip for
        // the batch, not one per kind of row. The parts touch disjoint rows
        // (symbol entries and their chunks, the analysed files, the sync's
        // own file versions' digests, the sync's pending edges), so their
        // order within the statement does not matter.
        let mut batch = Parts::new(claim)?;
        // The symbol entries, and the chunks of those that come cut
        // (joined by path: a symbol's name is unique in its sync). An
        // entry already there (the batch run again) is left as it is, with
        // the chunks written with it then.
        if !symbols.is_empty() {
            let mut chunks = ChunkColumns::default();
            for s in symbols {
                for (i, c) in s.chunks.iter().flatten().enumerate() {
                    chunks.push(s.qualified_name.as_str(), i, c);
                }
            }
            let text = |f: fn(&NewSymbol) -> &str| symbols.iter().map(f).collect::<Vec<_>>();
            batch.part(
                "ins AS ( \
                     INSERT INTO memory_entries (project_id, path, kind, content, content_hash, \
                         blob_sha, language, size_bytes, status, created_by_sync_id, source_path, \
                         symbol_id, meta, chunk_count) \
                     SELECT $1, t.path, 'symbol', t.content, t.content_hash, t.blob_sha, t.language, \
                         octet_length(t.content), 'pending', $2, t.source_path, t.symbol_id, t.meta, \
                         t.chunk_count \
                     FROM UNNEST($P1::text[], $P2::text[], $P3::text[], $P4::text[], $P5::text[], \
                         $P6::text[], $P7::uuid[], $P8::jsonb[], $P9::int[]) \
                         AS t(path, content, content_hash, blob_sha, language, source_path, \
                             symbol_id, meta, chunk_count) \
                     ON CONFLICT (created_by_sync_id, kind, path) DO NOTHING \
                     RETURNING id, path), \
                 symbol_chunks AS ( \
                     INSERT INTO memory_chunks (entry_id, ordinal, start_line, end_line, content, \
                         content_hash, token_count, tsv) \
                     SELECT ins.id, c.ord, c.s, c.e, c.content, c.hash, c.tokens, \
                         to_tsvector('english', c.searchable) \
                     FROM UNNEST($P10::text[], $P11::int[], $P12::int[], $P13::int[], $P14::text[], \
                         $P15::text[], $P16::int[], $P17::text[]) \
                         AS c(path, ord, s, e, content, hash, tokens, searchable) \
                     JOIN ins ON ins.path = c.path \
                     ON CONFLICT (entry_id, ordinal) DO NOTHING)",
                |a| {
                    a.add(text(|s| s.qualified_name.as_str()))?;
                    a.add(text(|s| s.content.as_str()))?;
                    a.add(text(|s| s.content_hash.as_str()))?;
                    a.add(
                        symbols
                            .iter()
                            .map(|s| s.blob_sha.as_deref())
                            .collect::<Vec<_>>(),
                    )?;
                    a.add(text(|s| s.language.as_str()))?;
                    a.add(text(|s| s.source_path.as_str()))?;
                    a.add(symbols.iter().map(|s| s.symbol_id).collect::<Vec<_>>())?;
                    a.add(symbols.iter().map(|s| Json(&s.meta)).collect::<Vec<_>>())?;
                    a.add(
                        symbols
                            .iter()
                            .map(|s| s.chunks.as_ref().map(|c| c.len() as i32))
                            .collect::<Vec<_>>(),
                    )?;
                    chunks.add_to(a)
                },
            )?;
        }
        if !files.is_empty() {
            // A list per row goes in as a JSON array: an array of arrays
            // cannot be unnested into rows of arrays, and a name may hold
            // any character a path may (a newline too).
            batch.part(
                "files AS ( \
                     INSERT INTO sync_analyzed_files (sync_id, path, language, skip_reason, \
                         partial, kept_symbols, kept_edges) \
                     SELECT $2, t.path, t.language, t.skip_reason, t.partial, \
                         ARRAY(SELECT jsonb_array_elements_text(t.kept)), t.kept_edges \
                     FROM UNNEST($P1::text[], $P2::text[], $P3::text[], $P4::bool[], $P5::jsonb[], \
                         $P6::bool[]) AS t(path, language, skip_reason, partial, kept, kept_edges) \
                     ON CONFLICT (sync_id, path) DO UPDATE SET language = excluded.language, \
                         skip_reason = excluded.skip_reason, partial = excluded.partial, \
                         kept_symbols = excluded.kept_symbols, kept_edges = excluded.kept_edges)",
                |a| {
                    a.add(files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>())?;
                    a.add(
                        files
                            .iter()
                            .map(|f| f.language.as_deref())
                            .collect::<Vec<_>>(),
                    )?;
                    a.add(
                        files
                            .iter()
                            .map(|f| f.skip_reason.as_deref())
                            .collect::<Vec<_>>(),
                    )?;
                    a.add(files.iter().map(|f| f.partial).collect::<Vec<_>>())?;
                    a.add(
                        files
                            .iter()
                            .map(|f| Json(&f.kept_symbols))
                            .collect::<Vec<_>>(),
                    )?;
                    a.add(files.iter().map(|f| f.kept_edges).collect::<Vec<_>>())
                },
            )?;
        }
        let digests: Vec<(&str, &str)> = files
            .iter()
            .filter_map(|f| Some((f.path.as_str(), f.doc_digest.as_deref()?)))
            .collect();
        if !digests.is_empty() {
            // Only on the file versions this sync wrote: an active version
            // is never changed (a file analysed by a whole-tree pass keeps
            // no digest, and its next rewrite looks at its module's doc).
            batch.part(
                "digests AS ( \
                     UPDATE memory_entries m \
                     SET meta = coalesce(m.meta, '{}') || jsonb_build_object('doc_digest', t.digest) \
                     FROM UNNEST($P1::text[], $P2::text[]) AS t(path, digest) \
                     WHERE m.created_by_sync_id = $2 AND m.kind = 'file' AND m.path = t.path)",
                |a| {
                    a.add(digests.iter().map(|(p, _)| *p).collect::<Vec<_>>())?;
                    a.add(digests.iter().map(|(_, d)| *d).collect::<Vec<_>>())
                },
            )?;
        }
        if !edges.is_empty() {
            // Edges have no natural key to conflict on: a batch run again
            // drops what an earlier run of it wrote (rows this statement
            // inserts are not among those its delete sees).
            batch.part(
                "gone AS ( \
                     DELETE FROM dependency_edges WHERE created_by_sync_id = $2 \
                     AND status = 'pending' AND from_path = ANY($P1)), \
                 edges AS ( \
                     INSERT INTO dependency_edges (project_id, from_path, raw, line, candidates, \
                         status, created_by_sync_id) \
                     SELECT $1, t.from_path, t.raw, t.line, \
                         ARRAY(SELECT jsonb_array_elements_text(t.candidates)), 'pending', $2 \
                     FROM UNNEST($P1::text[], $P2::text[], $P3::int[], $P4::jsonb[]) \
                         AS t(from_path, raw, line, candidates))",
                |a| {
                    a.add(
                        edges
                            .iter()
                            .map(|e| e.from_path.as_str())
                            .collect::<Vec<_>>(),
                    )?;
                    a.add(edges.iter().map(|e| e.raw.as_str()).collect::<Vec<_>>())?;
                    a.add(edges.iter().map(|e| e.line as i32).collect::<Vec<_>>())?;
                    a.add(
                        edges
                            .iter()
                            .map(|e| Json(&e.candidates))
                            .collect::<Vec<_>>(),
                    )
                },
            )?;
        }
        batch.execute(&mut tx).await?;
        commit_batch(tx, claim, SyncPhase::Analyze, checkpoint, end).await
    }
}

/// One statement built from the parts of a batch, `WITH part, part, …
/// SELECT 1`, over `$1` (the project) and `$2` (the sync). Each part names
/// its own parameters `$P1`, `$P2`, … and binds them as it is added; they
/// are numbered after those bound before, so that a part's placeholders
/// and its values are written side by side, never counted apart.
struct Parts {
    ctes: Vec<String>,
    args: PgArguments,
}

impl Parts {
    fn new(claim: &Claim) -> Result<Self> {
        let mut args = PgArguments::default();
        args.add(claim.project_id.0).map_err(sqlx::Error::Encode)?;
        args.add(claim.sync_id.0).map_err(sqlx::Error::Encode)?;
        Ok(Self {
            ctes: Vec::new(),
            args,
        })
    }

    /// Add the common table expressions `sql`, whose `$Pk` are the values
    /// `bind` adds, in order.
    fn part(
        &mut self,
        sql: &str,
        bind: impl FnOnce(&mut PgArguments) -> std::result::Result<(), BoxDynError>,
    ) -> Result<()> {
        let before = self.args.len();
        bind(&mut self.args).map_err(sqlx::Error::Encode)?;
        let mut sql = sql.to_string();
        // From the last: `$P1` is a prefix of `$P10`.
        for k in (1..=self.args.len() - before).rev() {
            sql = sql.replace(&format!("$P{k}"), &format!("${}", before + k));
        }
        debug_assert!(!sql.contains("$P"), "a placeholder has no value: {sql}");
        self.ctes.push(sql);
        Ok(())
    }

    /// Run the statement (nothing when no part was added).
    async fn execute(self, conn: &mut PgConnection) -> Result<()> {
        if self.ctes.is_empty() {
            return Ok(());
        }
        let sql = format!("WITH {} SELECT 1", self.ctes.join(", "));
        sqlx::query_with(&sql, self.args).execute(conn).await?;
        Ok(())
    }
}

fn edge_from_row(r: &sqlx::postgres::PgRow) -> Edge {
    Edge {
        from_path: r.get("from_path"),
        raw: r.get("raw"),
        line: r.get::<i32, _>("line").max(1) as u32,
        candidates: r.get("candidates"),
    }
}

/// One active symbol, as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolRecord {
    /// `path#Outer::name`.
    pub qualified_name: String,
    /// Its identity across versions and renames.
    pub symbol_id: Uuid,
    /// The file it is defined in.
    pub path: String,
    pub language: Option<String>,
    #[serde(flatten)]
    pub meta: SymbolMeta,
    pub content_hash: String,
    pub created_by_sync_id: SyncId,
}

/// What a symbol listing keeps.
#[derive(Debug, Clone, Default)]
pub struct SymbolFilter {
    /// Part of the name, in any case.
    pub q: Option<String>,
    /// function, method, type, trait, interface, class, enum, const, module
    pub kind: Option<String>,
    /// Files under this prefix (`src/`, `src/store.rs`).
    pub path_prefix: Option<String>,
}

/// One import of a file, with its target in the current tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    /// The importing file.
    pub from_path: String,
    /// The import as written.
    pub raw: String,
    pub line: u32,
    /// The first candidate that is a file of the knowledge base; `None` for
    /// a package from elsewhere or a file that is not there (or skipped).
    pub target: Option<String>,
}

const SYMBOL_COLUMNS: &str =
    "path, symbol_id, source_path, language, meta, content_hash, created_by_sync_id";

fn symbol_from_row(r: &sqlx::postgres::PgRow) -> Result<SymbolRecord> {
    let Json(meta): Json<SymbolMeta> = r.try_get("meta")?;
    Ok(SymbolRecord {
        qualified_name: r.get("path"),
        symbol_id: r.get("symbol_id"),
        path: r.get("source_path"),
        language: r.get("language"),
        meta,
        content_hash: r.get("content_hash"),
        created_by_sync_id: SyncId(r.get("created_by_sync_id")),
    })
}

/// The target of edge `e`: the first of its candidates that is a file of
/// the knowledge base (an active file entry), as generated docs resolve it.
const TARGET: &str = "(SELECT u.c FROM unnest(e.candidates) WITH ORDINALITY AS u(c, n) \
     WHERE EXISTS (SELECT 1 FROM memory_entries f WHERE f.project_id = e.project_id \
         AND f.kind = 'file' AND f.status = 'active' AND f.path = u.c) \
     ORDER BY u.n LIMIT 1)";

/// `text` as a LIKE pattern that matches it literally.
fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Store {
    /// The project's active symbols that pass `filter`, by qualified name,
    /// a page at a time (after `after`).
    pub async fn symbols_page(
        &self,
        project_id: ProjectId,
        filter: &SymbolFilter,
        after: Option<&str>,
        limit: i64,
    ) -> Result<crate::Page<SymbolRecord, String>> {
        // A qualified name starts with its file's path: a path prefix is
        // also a range of the one-active index.
        let rows = sqlx::query(&format!(
            "SELECT {SYMBOL_COLUMNS} FROM memory_entries \
             WHERE project_id = $1 AND kind = 'symbol' AND status = 'active' \
               AND path > $2 AND path >= $3 AND starts_with(source_path, $3) \
               AND ($4::text IS NULL OR meta->>'name' ILIKE $4) \
               AND ($5::text IS NULL OR meta->>'kind' = $5) \
             ORDER BY path LIMIT $6"
        ))
        .bind(project_id.0)
        .bind(after.unwrap_or(""))
        .bind(filter.path_prefix.as_deref().unwrap_or(""))
        .bind(
            filter
                .q
                .as_deref()
                .map(|q| format!("%{}%", like_literal(q))),
        )
        .bind(filter.kind.as_deref())
        .bind(limit.saturating_add(1))
        .fetch_all(&mut *self.read().await?)
        .await?;
        let rows = rows
            .iter()
            .map(|r| symbol_from_row(r).map(|s| (s.clone(), s.qualified_name)))
            .collect::<Result<Vec<_>>>()?;
        Ok(crate::Page::from_rows(rows, limit))
    }

    /// One active symbol by qualified name, with its content.
    pub async fn symbol(
        &self,
        project_id: ProjectId,
        qualified_name: &str,
    ) -> Result<Option<(SymbolRecord, String)>> {
        let row = sqlx::query(&format!(
            "SELECT {SYMBOL_COLUMNS}, content FROM memory_entries \
             WHERE project_id = $1 AND kind = 'symbol' AND status = 'active' AND path = $2"
        ))
        .bind(project_id.0)
        .bind(qualified_name)
        .fetch_optional(&mut *self.read().await?)
        .await?;
        row.map(|r| Ok((symbol_from_row(&r)?, r.get("content"))))
            .transpose()
    }

    /// The active symbols defined in `files`, with their line ranges: to
    /// tell which symbol a line of those files is in.
    pub async fn symbols_in(
        &self,
        project_id: ProjectId,
        files: &[String],
    ) -> Result<Vec<SymbolRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {SYMBOL_COLUMNS} FROM memory_entries \
             WHERE project_id = $1 AND status = 'active' AND source_path = ANY($2) \
               AND kind = 'symbol' ORDER BY path"
        ))
        .bind(project_id.0)
        .bind(files)
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(symbol_from_row).collect()
    }

    /// What `path` imports (with each target in the current tree), and the
    /// imports of other files whose target is `path`, at most `limit` each.
    pub async fn dependencies(
        &self,
        project_id: ProjectId,
        path: &str,
        limit: i64,
    ) -> Result<(Vec<Dependency>, Vec<Dependency>)> {
        let mut tx = self.read().await?;
        let out = sqlx::query(&format!(
            "SELECT e.from_path, e.raw, e.line, {TARGET} AS target \
             FROM dependency_edges e \
             WHERE e.project_id = $1 AND e.status = 'active' AND e.from_path = $2 \
             ORDER BY e.line, e.raw LIMIT $3"
        ))
        .bind(project_id.0)
        .bind(path)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        // The index finds the edges that name `path` among their
        // candidates; of those, the ones that resolve to it.
        let inbound = sqlx::query(&format!(
            "SELECT * FROM (SELECT e.from_path, e.raw, e.line, {TARGET} AS target \
                 FROM dependency_edges e \
                 WHERE e.project_id = $1 AND e.status = 'active' AND e.candidates @> ARRAY[$2]) d \
             WHERE d.target = $2 ORDER BY d.from_path, d.line, d.raw LIMIT $3"
        ))
        .bind(project_id.0)
        .bind(path)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let dependency = |r: &sqlx::postgres::PgRow| Dependency {
            from_path: r.get("from_path"),
            raw: r.get("raw"),
            line: r.get::<i32, _>("line").max(1) as u32,
            target: r.get("target"),
        };
        Ok((
            out.iter().map(dependency).collect(),
            inbound.iter().map(dependency).collect(),
        ))
    }

    /// The active content of these files (those that have an entry).
    pub async fn active_files(
        &self,
        project_id: ProjectId,
        paths: &[String],
    ) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT path, content FROM memory_entries WHERE project_id = $1 \
             AND status = 'active' AND kind = 'file' AND path = ANY($2) ORDER BY path",
        )
        .bind(project_id.0)
        .bind(paths)
        .fetch_all(&mut *self.read().await?)
        .await?)
    }
}
