//! Generated docs in the ledger: what a module (a directory) is made of
//! once the running sync is finalized, the docs it writes `pending`, the
//! ones it removes, and the cache of model-written summaries.
//!
//! The docs phase runs before finalize, so "once finalized" is worked out
//! from the active rows and the sync's own: its pending versions, plus the
//! active rows it keeps (a file it neither rewrites, deletes, skips nor
//! renames away; a symbol or edge its analysis kept, or of a file it did not
//! touch). The `NEXT_*` queries below say exactly that, with `$1` the
//! project and `$2` the sync.

use crate::syncs::{commit_batch, BatchEnd, FenceLock};
use crate::{BatchWrite, Claim, Result, Store, SymbolMeta};
use projsync_domain::{ProjectId, SyncPhase};
use sqlx::types::Json;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Whether the sync (`sync`: its parameter, `$2` here) carries the active
/// file at `path` forward as it is: it writes no new version of it, and
/// neither deletes, skips nor renames it away. Analysis's whole-tree read
/// (`analysis_batch`) asks the same.
///
/// Each test is one the planner answers from an index or a hash built once
/// per statement: a path equality on `(sync_id, path)`, and `NOT IN` the
/// sync's renamed-away paths. (One `NOT EXISTS` with an `OR` of the two
/// cannot use the primary key, and was a scan of `sync_changes` for every
/// row looked at: most of a 1-file resync's docs phase.) `path` is never
/// NULL here, which `NOT IN` needs.
pub(crate) fn carried_forward(path: &str, sync: &str) -> String {
    format!(
        "(NOT EXISTS ({} AND n.path = {path}) \
          AND NOT EXISTS ({} AND c.path = {path}) \
          AND {})",
        replaced_paths(sync),
        gone_paths(sync),
        renamed_away(path, sync)
    )
}

/// The paths the sync writes a new file version of (`n.path`): a query a
/// caller may add `AND` conditions to.
fn replaced_paths(sync: &str) -> String {
    format!(
        "SELECT n.path FROM memory_entries n WHERE n.created_by_sync_id = {sync} \
         AND n.kind = 'file'"
    )
}

/// The paths the sync deletes or skips (`c.path`): a query a caller may
/// add `AND` conditions to (`sync_changes_gone`, migration 0024, serves
/// it).
fn gone_paths(sync: &str) -> String {
    format!(
        "SELECT c.path FROM sync_changes c WHERE c.sync_id = {sync} \
         AND (c.change = 'deleted' OR c.skip_reason IS NOT NULL)"
    )
}

/// Whether `path` is not one the sync renames away.
fn renamed_away(path: &str, sync: &str) -> String {
    format!(
        "{path} NOT IN (SELECT c.old_path FROM sync_changes c WHERE c.sync_id = {sync} \
             AND c.change = 'renamed' AND c.old_path IS NOT NULL)"
    )
}

/// The files once the sync is finalized: `path, language, content`.
fn next_files() -> String {
    next_files_where(&carried_forward("e.path", "$2"))
}

/// [`next_files`], with `carried` as the test of an active file `e` (the
/// [`carried_forward`] rule).
fn next_files_where(carried: &str) -> String {
    format!(
        "(SELECT e.path, e.language, e.content FROM memory_entries e \
             WHERE e.created_by_sync_id = $2 AND e.kind = 'file' \
         UNION ALL \
         SELECT e.path, e.language, e.content FROM memory_entries e \
             WHERE e.project_id = $1 AND e.status = 'active' AND e.kind = 'file' AND {carried})"
    )
}

/// Whether the active row of a symbol or edge of file `{f}` (with kept
/// test `{kept}`) survives the sync: the sync analysed the file and kept
/// the row, or did not analyse it and carries the file forward.
fn kept_active(file: &str, kept: &str) -> String {
    format!(
        "(EXISTS (SELECT 1 FROM sync_analyzed_files a WHERE a.sync_id = $2 AND a.path = {file} \
             AND {kept}) \
          OR (NOT EXISTS (SELECT 1 FROM sync_analyzed_files a WHERE a.sync_id = $2 \
                  AND a.path = {file}) \
              AND {}))",
        carried_forward(file, "$2")
    )
}

/// The symbols once the sync is finalized: `path, source_path, meta`.
fn next_symbols() -> String {
    format!(
        "(SELECT m.path, m.source_path, m.meta FROM memory_entries m \
             WHERE m.created_by_sync_id = $2 AND m.kind = 'symbol' \
         UNION ALL \
         SELECT m.path, m.source_path, m.meta FROM memory_entries m \
             WHERE m.project_id = $1 AND m.status = 'active' AND m.kind = 'symbol' AND {})",
        kept_active("m.source_path", "m.path = ANY(a.kept_symbols)")
    )
}

/// The edges once the sync is finalized: `from_path, raw, line, candidates`.
fn next_edges() -> String {
    format!(
        "(SELECT d.from_path, d.raw, d.line, d.candidates FROM dependency_edges d \
             WHERE d.created_by_sync_id = $2 AND d.status = 'pending' \
         UNION ALL \
         SELECT d.from_path, d.raw, d.line, d.candidates FROM dependency_edges d \
             WHERE d.project_id = $1 AND d.status = 'active' AND {})",
        kept_active("d.from_path", "a.kept_edges")
    )
}

/// The directory of a path (`''` for the top), in SQL.
const DIR_OF: &str = "CASE WHEN strpos({p}, '/') = 0 THEN '' \
     ELSE regexp_replace({p}, '/[^/]*$', '') END";

fn dir_of(path: &str) -> String {
    DIR_OF.replace("{p}", path)
}

/// One symbol of a module, as its doc lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSymbol {
    pub qualified_name: String,
    pub path: String,
    pub meta: SymbolMeta,
}

/// One import in or out of a module, with its target once the sync is
/// finalized (the first candidate that is a file then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleEdge {
    pub from_path: String,
    pub raw: String,
    pub target: Option<String>,
}

/// What a module's doc is made of, once the sync is finalized.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleState {
    /// The directory's own files (not its subdirectories'): path, language.
    pub files: Vec<(String, Option<String>)>,
    /// Their symbols, by file and line.
    pub symbols: Vec<ModuleSymbol>,
    /// Their imports.
    pub imports: Vec<ModuleEdge>,
    /// Other files' imports whose target is one of its files.
    pub importers: Vec<ModuleEdge>,
}

/// A doc version to write.
#[derive(Debug, Clone)]
pub struct NewDoc {
    /// The directory and `/` (`src/store/`; `/` for the top).
    pub path: String,
    pub content: String,
    pub content_hash: String,
    /// `{"inputs_key": …, "files": n, "symbols": n, "summary_model": …}`.
    pub meta: serde_json::Value,
}

impl Store {
    /// The directories whose doc a sync that analysed only its changes may
    /// change (a whole tree's are [`Store::next_files_by_dir`]'s keys):
    /// those of the paths it changes, of what its changed files import
    /// (before and after), and of the files that import a changed path (a
    /// target that appears or goes), where a file rewritten with its active
    /// version's doc digest (analysis's `meta.doc_digest`) is not a changed
    /// path. Sorted.
    pub async fn doc_candidates(&self, claim: &Claim) -> Result<Vec<String>> {
        // A file rewritten with the same doc digest (analysis's hash of
        // what it gives its module's doc) as its active version changes
        // no doc: its bodies changed, not its interface or imports.
        let sql = format!(
            "WITH changed AS ( \
                 SELECT c.path FROM sync_changes c WHERE c.sync_id = $2 AND c.change <> 'unchanged' \
                   AND NOT (c.change = 'modified' AND EXISTS ( \
                       SELECT 1 FROM memory_entries n \
                       WHERE n.created_by_sync_id = $2 AND n.kind = 'file' AND n.path = c.path \
                         AND n.meta->>'doc_digest' = ( \
                             SELECT o.meta->>'doc_digest' FROM memory_entries o \
                             WHERE o.project_id = $1 AND o.status = 'active' \
                               AND o.kind = 'file' AND o.path = c.path))) \
                 UNION SELECT c.old_path FROM sync_changes c WHERE c.sync_id = $2 \
                     AND c.old_path IS NOT NULL AND c.change <> 'unchanged'), \
             touched AS ( \
                 SELECT path FROM changed \
                 UNION SELECT unnest(d.candidates) FROM dependency_edges d \
                     WHERE d.created_by_sync_id = $2 AND d.status = 'pending' \
                 UNION SELECT unnest(d.candidates) FROM dependency_edges d \
                     WHERE d.project_id = $1 AND d.status = 'active' \
                       AND d.from_path IN (SELECT path FROM changed) \
                 UNION SELECT d.from_path FROM dependency_edges d \
                     WHERE d.project_id = $1 AND d.status = 'active' \
                       AND d.candidates && (SELECT array_agg(path) FROM changed)) \
             SELECT DISTINCT ({}) COLLATE \"C\" AS dir FROM touched t WHERE $1::uuid IS NOT NULL \
             ORDER BY 1",
            dir_of("t.path")
        );
        Ok(sqlx::query_scalar(&sql)
            .bind(claim.project_id.0)
            .bind(claim.sync_id.0)
            .fetch_all(&mut *self.read().await?)
            .await?)
    }

    /// Every file once the sync is finalized (path, language), by
    /// directory (`''` for the top), in byte order: the docs phase of a
    /// whole tree reads them once, instead of once per module.
    pub async fn next_files_by_dir(
        &self,
        claim: &Claim,
    ) -> Result<BTreeMap<String, Vec<(String, Option<String>)>>> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(&format!(
            "SELECT f.path, f.language FROM {} f",
            next_files()
        ))
        .bind(claim.project_id.0)
        .bind(claim.sync_id.0)
        .fetch_all(&mut *self.read().await?)
        .await?;
        let mut by_dir: BTreeMap<String, Vec<(String, Option<String>)>> = BTreeMap::new();
        for (path, language) in rows {
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
            by_dir.entry(dir).or_default().push((path, language));
        }
        for files in by_dir.values_mut() {
            files.sort();
        }
        Ok(by_dir)
    }

    /// What the doc of directory `dir` (`''` for the top) is made of once
    /// the sync is finalized; `files`: its own files, when the caller read
    /// them already ([`Store::next_files_by_dir`]).
    pub async fn module_state(
        &self,
        claim: &Claim,
        dir: &str,
        files: Option<Vec<(String, Option<String>)>>,
    ) -> Result<ModuleState> {
        let mut tx = self.read().await?;
        let (project, sync) = (claim.project_id.0, claim.sync_id.0);
        // The directory's own files: under `dir/`, with no further `/`.
        let files: Vec<(String, Option<String>)> = match files {
            Some(files) => files,
            None => {
                // The exact test is the directory expression of the
                // indexes of migration 0021 (the same text, so that the
                // planner matches it when it may). Read as the app role,
                // under row-level security, it may not: its functions are
                // not leakproof. So a directory below the top also bounds
                // its paths by their prefix with the byte-wise (leakproof,
                // collation-free) range operators, which the index of
                // migration 0023 serves: `dir/` up to `dir0` (`0` follows
                // `/`), its subdirectories' files included, which the
                // exact test then drops.
                //
                // Which active files the sync replaces, deletes or skips
                // (`carried_forward`) is asked of two sets read once each,
                // the sync's file versions and its deletions and skips in
                // the same range, rather than of the tables for each file:
                // for a sync whose rows were just written PostgreSQL
                // estimates one row, and read all of them for every file
                // of the directory instead of looking its path up (24 ms a
                // directory against 0.9 ms, for a 100-file resync at 10,000
                // files, and most of its docs phase).
                let range = |col: &str| {
                    if dir.is_empty() {
                        String::new()
                    } else {
                        format!(" AND {col} ~>=~ ($3 || '/') AND {col} ~<~ ($3 || '0')")
                    }
                };
                let carried = format!(
                    "(NOT EXISTS (SELECT 1 FROM mine WHERE mine.path = e.path) \
                      AND NOT EXISTS (SELECT 1 FROM gone WHERE gone.path = e.path) \
                      AND {})",
                    renamed_away("e.path", "$2")
                );
                sqlx::query_as(&format!(
                    "WITH mine AS MATERIALIZED ({}{}), gone AS MATERIALIZED ({}{}) \
                     SELECT f.path, f.language FROM {} f \
                     WHERE {} = $3{} ORDER BY f.path COLLATE \"C\"",
                    replaced_paths("$2"),
                    range("n.path"),
                    gone_paths("$2"),
                    range("c.path"),
                    next_files_where(&carried),
                    dir_of("f.path"),
                    range("f.path")
                ))
                .bind(project)
                .bind(sync)
                .bind(dir)
                .fetch_all(&mut *tx)
                .await?
            }
        };
        if files.is_empty() {
            return Ok(ModuleState::default());
        }
        let paths: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
        let symbols = sqlx::query(&format!(
            "SELECT s.path, s.source_path, s.meta FROM {} s WHERE s.source_path = ANY($3) \
             ORDER BY s.source_path, (s.meta->>'start_line')::int, s.path",
            next_symbols()
        ))
        .bind(project)
        .bind(sync)
        .bind(&paths)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            let Json(meta): Json<SymbolMeta> = r.try_get("meta")?;
            Ok(ModuleSymbol {
                qualified_name: r.get("path"),
                path: r.get("source_path"),
                meta,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let edges = |filter: &'static str| {
            format!(
                "SELECT e.from_path, e.raw, e.candidates FROM {} e WHERE {filter} \
                 ORDER BY e.from_path, e.line, e.raw",
                next_edges()
            )
        };
        let out: Vec<(String, String, Vec<String>)> =
            sqlx::query_as(&edges("e.from_path = ANY($3)"))
                .bind(project)
                .bind(sync)
                .bind(&paths)
                .fetch_all(&mut *tx)
                .await?;
        let inbound: Vec<(String, String, Vec<String>)> =
            sqlx::query_as(&edges("e.candidates && $3"))
                .bind(project)
                .bind(sync)
                .bind(&paths)
                .fetch_all(&mut *tx)
                .await?;
        // Which candidates are files once the sync is finalized.
        let wanted: Vec<String> = out
            .iter()
            .chain(&inbound)
            .flat_map(|(_, _, c)| c.iter().cloned())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let existing: HashSet<String> = if wanted.is_empty() {
            HashSet::new()
        } else {
            sqlx::query_scalar(&format!(
                "SELECT f.path FROM {} f WHERE f.path = ANY($3)",
                next_files()
            ))
            .bind(project)
            .bind(sync)
            .bind(wanted)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect()
        };
        let resolve = |(from_path, raw, candidates): (String, String, Vec<String>)| ModuleEdge {
            target: candidates.into_iter().find(|c| existing.contains(c)),
            from_path,
            raw,
        };
        let own: HashSet<&String> = paths.iter().collect();
        let importers = inbound
            .into_iter()
            .map(resolve)
            .filter(|e| e.target.as_ref().is_some_and(|t| own.contains(t)))
            .collect();
        Ok(ModuleState {
            files,
            symbols,
            imports: out.into_iter().map(resolve).collect(),
            importers,
        })
    }

    /// The content of these files once the sync is finalized.
    pub async fn next_contents(
        &self,
        claim: &Claim,
        paths: &[String],
    ) -> Result<HashMap<String, String>> {
        let rows: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT f.path, f.content FROM {} f WHERE f.path = ANY($3)",
            next_files()
        ))
        .bind(claim.project_id.0)
        .bind(claim.sync_id.0)
        .bind(paths)
        .fetch_all(&mut *self.read().await?)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// The `inputs_key` of the active docs at these paths.
    pub async fn active_doc_keys(
        &self,
        project_id: ProjectId,
        paths: &[String],
    ) -> Result<HashMap<String, String>> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT path, meta->>'inputs_key' FROM memory_entries WHERE project_id = $1 \
             AND kind = 'doc' AND status = 'active' AND path = ANY($2)",
        )
        .bind(project_id.0)
        .bind(paths)
        .fetch_all(&mut *self.read().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(p, k)| (p, k.unwrap_or_default()))
            .collect())
    }

    /// A summary the model wrote for these inputs before.
    pub async fn doc_summary(&self, model: &str, inputs_hash: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT summary FROM doc_summaries WHERE model = $1 AND inputs_hash = $2",
        )
        .bind(model)
        .bind(inputs_hash)
        .fetch_optional(&mut *self.read().await?)
        .await?)
    }

    /// Keep a summary for these inputs (a cache: the first one written
    /// stays).
    pub async fn save_doc_summary(
        &self,
        model: &str,
        inputs_hash: &str,
        summary: &str,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO doc_summaries (model, inputs_hash, summary) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(model)
        .bind(inputs_hash)
        .bind(summary)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Write one docs batch: the new `pending` doc versions, the docs the
    /// sync removes, and the checkpoint, in one fenced transaction. Nothing
    /// is written once a cancel has been asked for.
    pub async fn write_docs_batch(
        &self,
        claim: &Claim,
        docs: &[NewDoc],
        removals: &[String],
        checkpoint: serde_json::Value,
    ) -> Result<BatchWrite> {
        let Some(mut tx) = self
            .fenced_unless_cancelled(claim, FenceLock::Update)
            .await?
        else {
            return Ok(BatchWrite::CancelRequested);
        };
        if !docs.is_empty() {
            sqlx::query(
                "INSERT INTO memory_entries (project_id, path, kind, content, content_hash, \
                     size_bytes, status, created_by_sync_id, meta) \
                 SELECT $1, t.path, 'doc', t.content, t.content_hash, octet_length(t.content), \
                     'pending', $2, t.meta \
                 FROM UNNEST($3::text[], $4::text[], $5::text[], $6::jsonb[]) \
                     AS t(path, content, content_hash, meta) \
                 ON CONFLICT (created_by_sync_id, kind, path) DO NOTHING",
            )
            .bind(claim.project_id.0)
            .bind(claim.sync_id.0)
            .bind(docs.iter().map(|d| d.path.as_str()).collect::<Vec<_>>())
            .bind(docs.iter().map(|d| d.content.as_str()).collect::<Vec<_>>())
            .bind(
                docs.iter()
                    .map(|d| d.content_hash.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(docs.iter().map(|d| Json(&d.meta)).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        if !removals.is_empty() {
            sqlx::query(
                "INSERT INTO sync_doc_removals (sync_id, path) SELECT $1, unnest($2::text[]) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(claim.sync_id.0)
            .bind(removals)
            .execute(&mut *tx)
            .await?;
        }
        commit_batch(tx, claim, SyncPhase::Docs, checkpoint, BatchEnd::Checkpoint)
            .await
            .map(|(written, _)| written)
    }
}
