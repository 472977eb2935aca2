//! The change plan, stored files, memory entry versions and finalize.

use crate::copy::BinaryCopy;
use crate::embeddings::unembedded_columns;
use crate::syncs::{commit_batch, finish_and_start_next, finish_step_query, BatchEnd, FenceLock};
use crate::ChunkScope;
use crate::{BatchWrite, Claim, Commit, Error, PlanRow, Result, StepStart, Store};
use projsync_domain::plan::{ChangeKind, StoredFile};
use projsync_domain::{
    EntryKind, PhaseStatus, ProjectId, RepositoryId, ScanMode, SkipReason, Stats, SyncId, SyncPhase,
};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor, Row};
use std::collections::{BTreeMap, HashMap};

/// Rows per INSERT … SELECT FROM UNNEST statement.
const CHUNK: usize = 2000;

/// Import batches of at most this many files are written with one
/// `INSERT … SELECT FROM UNNEST`; larger ones through binary `COPY`.
const SMALL_IMPORT_BATCH: usize = 64;

/// A new entry version, written `pending` by import.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub path: String,
    pub content: String,
    pub content_hash: String,
    pub blob_sha: String,
    pub language: Option<String>,
    pub size: i64,
}

/// Content already stored for a blob, reused instead of fetched.
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub content: String,
    pub content_hash: String,
    pub size: i64,
}

/// An active file entry without its content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntryInfo {
    pub path: String,
    pub size: i64,
    pub language: Option<String>,
}

/// One active memory entry, as readers see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ActiveEntry {
    pub path: String,
    pub content: String,
    pub content_hash: String,
    pub blob_sha: Option<String>,
    pub language: Option<String>,
    pub created_by_sync_id: SyncId,
}

/// An [`ActiveEntry`] from a row of `active_memory_entries` with its columns.
fn active_entry_from_row(r: &sqlx::postgres::PgRow) -> ActiveEntry {
    ActiveEntry {
        path: r.get("path"),
        content: r.get("content"),
        content_hash: r.get("content_hash"),
        blob_sha: r.get("blob_sha"),
        language: r.get("language"),
        created_by_sync_id: SyncId(r.get("created_by_sync_id")),
    }
}

/// Where a page of active entries resumes: `(kind, path)` of the last one.
pub type MemoryKey = (String, String);

/// What scan reads to decide whether it may diff from the last synced
/// commit: the stored state, summed up without reading every row out (the
/// counts are kept beside the repository, migrations/0014_file_counts.sql).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanBase {
    pub last_synced_commit: Option<String>,
    /// The filter fingerprint whose verdicts `repository_files` holds.
    pub synced_filter: Option<String>,
    /// Rows of `repository_files`.
    pub files: u64,
    /// Of those, the skipped ones by reason.
    pub skipped_by_reason: BTreeMap<String, u64>,
}

/// A project's last successful sync, as a new sync starts from it.
#[derive(Debug, Clone)]
pub struct LastSync {
    pub id: SyncId,
    pub head: String,
    pub stats: Stats,
}

impl Store {
    /// The files stored for a repository (the last successful sync's tree),
    /// with the reason each skipped one was skipped.
    pub async fn stored_files(
        &self,
        repository_id: RepositoryId,
    ) -> Result<Vec<(StoredFile, Option<SkipReason>)>> {
        let rows = sqlx::query(
            "SELECT path, blob_sha, kind, size_bytes, skip_reason FROM repository_files \
             WHERE repository_id = $1",
        )
        .bind(repository_id.0)
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(stored_from_row).collect()
    }

    /// The stored state scan starts from (see `ScanBase`).
    pub async fn scan_base(&self, repository_id: RepositoryId) -> Result<ScanBase> {
        // The counts are kept by triggers on repository_files (migration
        // 0014): one row read, whatever the repository's size.
        type Row = (Option<String>, Option<String>, Json<BTreeMap<String, u64>>);
        let row: Option<Row> = sqlx::query_as(
            "SELECT last_synced_commit, synced_filter, file_counts FROM repositories \
                 WHERE id = $1",
        )
        .bind(repository_id.0)
        .fetch_optional(&mut *self.read().await?)
        .await?;
        let Some((last_synced_commit, synced_filter, Json(counts))) = row else {
            return Ok(ScanBase::default());
        };
        let mut base = ScanBase {
            last_synced_commit,
            synced_filter,
            ..ScanBase::default()
        };
        for (reason, n) in counts {
            base.files += n;
            if !reason.is_empty() {
                base.skipped_by_reason.insert(reason, n);
            }
        }
        Ok(base)
    }

    /// The stored files at these paths (those of them that exist).
    pub async fn stored_files_at(
        &self,
        repository_id: RepositoryId,
        paths: &[String],
    ) -> Result<Vec<(StoredFile, Option<SkipReason>)>> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT path, blob_sha, kind, size_bytes, skip_reason FROM repository_files \
             WHERE repository_id = $1 AND path = ANY($2)",
        )
        .bind(repository_id.0)
        .bind(paths)
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(stored_from_row).collect()
    }

    /// Replace the sync's change plan and finish the scan step, in one
    /// transaction (a re-run scan writes the same plan again), which also
    /// starts import's. `filter` is
    /// the fingerprint of the filter whose verdicts the plan holds; finalize
    /// stores it with the repository's files (`None`: none to trust, as
    /// after a restore).
    pub async fn write_plan(
        &self,
        claim: &Claim,
        plan: &[PlanRow],
        stats: &Stats,
        filter: Option<&str>,
    ) -> Result<Option<StepStart>> {
        let (mut tx, fenced) = self
            .fenced_as(claim, Commit::Deferred, FenceLock::Update)
            .await?;
        sqlx::query("DELETE FROM sync_changes WHERE sync_id = $1")
            .bind(claim.sync_id.0)
            .execute(&mut *tx)
            .await?;
        for chunk in plan.chunks(CHUNK) {
            insert_plan_chunk(&mut *tx, claim.sync_id, chunk).await?;
        }
        let checkpoint = serde_json::json!({
            "rows": plan.len(),
            "to_import": plan.iter().filter(|r| r.needs_entry).count(),
            "stats": stats,
            "filter": filter,
        });
        // The step's end, the sync's stats and the next step's start: one
        // statement.
        let next = finish_and_start_next(
            &mut tx,
            claim,
            fenced,
            SyncPhase::Scan,
            PhaseStatus::Succeeded,
            checkpoint,
            Some(stats),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(next)
    }

    /// The whole plan of a sync, sorted by path.
    pub async fn plan(&self, sync_id: SyncId) -> Result<Vec<PlanRow>> {
        let rows = sqlx::query(&format!("{SELECT_PLAN} WHERE sync_id = $1 ORDER BY path"))
            .bind(sync_id.0)
            .fetch_all(&mut *self.read().await?)
            .await?;
        rows.iter().map(plan_from_row).collect()
    }

    /// How many plan rows after `after` (in path order) need a new entry version.
    pub async fn count_to_import(&self, sync_id: SyncId, after: Option<&str>) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM sync_changes WHERE sync_id = $1 AND needs_entry \
             AND ($2::text IS NULL OR path > $2)",
        )
        .bind(sync_id.0)
        .bind(after)
        .fetch_one(&mut *self.read().await?)
        .await?)
    }

    /// The blob SHAs of the files after `after` (in path order) that need an entry.
    pub async fn shas_to_import(
        &self,
        sync_id: SyncId,
        after: Option<&str>,
    ) -> Result<std::collections::HashSet<String>> {
        let shas: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT blob_sha FROM sync_changes WHERE sync_id = $1 AND needs_entry \
             AND blob_sha IS NOT NULL AND ($2::text IS NULL OR path > $2)",
        )
        .bind(sync_id.0)
        .bind(after)
        .fetch_all(&mut *self.read().await?)
        .await?;
        Ok(shas.into_iter().collect())
    }

    /// The size of the files after `after` (in path order) that need an entry.
    pub async fn bytes_to_import(&self, sync_id: SyncId, after: Option<&str>) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT coalesce(sum(size_bytes), 0)::bigint FROM sync_changes WHERE sync_id = $1 \
             AND needs_entry AND ($2::text IS NULL OR path > $2)",
        )
        .bind(sync_id.0)
        .bind(after)
        .fetch_one(&mut *self.read().await?)
        .await?)
    }

    /// The next batch of rows needing an entry, after `after` in path order.
    pub async fn import_batch(
        &self,
        sync_id: SyncId,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PlanRow>> {
        // `path > ''` for the first batch (a path is never empty), not
        // `$2 IS NULL OR …`: a generic plan could not use that as an index
        // bound, and every batch would read the plan from its start.
        let rows = sqlx::query(&format!(
            "{SELECT_PLAN} WHERE sync_id = $1 AND needs_entry AND path > $2 \
             ORDER BY path LIMIT $3"
        ))
        .bind(sync_id.0)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(plan_from_row).collect()
    }

    /// Content the project already has for these blobs (any version, any
    /// status): a rename, a revert or another branch costs no fetch. Only
    /// file entries count: a symbol entry carries its file's blob SHA but
    /// holds only the symbol's text.
    pub async fn known_content(
        &self,
        project_id: ProjectId,
        shas: &[String],
    ) -> Result<HashMap<String, ImportRow>> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (blob_sha) blob_sha, content, content_hash, size_bytes \
             FROM memory_entries WHERE project_id = $1 AND kind = 'file' AND blob_sha = ANY($2)",
        )
        .bind(project_id.0)
        .bind(shas)
        .fetch_all(&mut *self.read().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.get("blob_sha"),
                    ImportRow {
                        content: r.get("content"),
                        content_hash: r.get("content_hash"),
                        size: r.get("size_bytes"),
                    },
                )
            })
            .collect())
    }

    /// Write one import batch: the new `pending` versions, the skips found
    /// in the content, and the checkpoint, in one fenced transaction. A batch
    /// written twice (redelivery) changes nothing. Nothing is written once
    /// a cancel has been asked for.
    pub async fn write_import_batch(
        &self,
        claim: &Claim,
        entries: &[NewEntry],
        skips: &[(String, SkipReason)],
        checkpoint: serde_json::Value,
    ) -> Result<BatchWrite> {
        // A batch's rows commit with the checkpoint that moves past them,
        // and only the lease holder writes: a batch normally finds none of
        // its rows there, and a plain INSERT skips ON CONFLICT's
        // speculative insertion (measured 10-20% of the INSERT). Should
        // some be there all the same (a checkpoint that could not be read,
        // the step run again), the batch is written again, skipping them.
        self.write_import_batch_ending(claim, entries, skips, checkpoint, BatchEnd::Checkpoint)
            .await
            .map(|(written, _)| written)
    }

    /// [`Store::write_import_batch`] for the step's last batch: the step
    /// ends with it (its checkpoint is the step's last, with the sync's
    /// `stats`), and the next step starts, in the same transaction.
    pub async fn write_last_import_batch(
        &self,
        claim: &Claim,
        entries: &[NewEntry],
        skips: &[(String, SkipReason)],
        checkpoint: serde_json::Value,
        stats: &Stats,
    ) -> Result<(BatchWrite, Option<StepStart>)> {
        self.write_import_batch_ending(
            claim,
            entries,
            skips,
            checkpoint,
            BatchEnd::Step {
                stats,
                status: PhaseStatus::Succeeded,
            },
        )
        .await
    }

    async fn write_import_batch_ending(
        &self,
        claim: &Claim,
        entries: &[NewEntry],
        skips: &[(String, SkipReason)],
        checkpoint: serde_json::Value,
        end: BatchEnd<'_>,
    ) -> Result<(BatchWrite, Option<StepStart>)> {
        match self
            .write_import_batch_as(claim, entries, skips, checkpoint.clone(), false, end)
            .await
        {
            Err(e) if e.is_unique_violation() => {
                self.write_import_batch_as(claim, entries, skips, checkpoint, true, end)
                    .await
            }
            other => other,
        }
    }

    async fn write_import_batch_as(
        &self,
        claim: &Claim,
        entries: &[NewEntry],
        skips: &[(String, SkipReason)],
        checkpoint: serde_json::Value,
        skip_existing: bool,
        end: BatchEnd<'_>,
    ) -> Result<(BatchWrite, Option<StepStart>)> {
        let Some(mut tx) = self
            .fenced_unless_cancelled(claim, FenceLock::Update)
            .await?
        else {
            return Ok((BatchWrite::CancelRequested, None));
        };
        const SKIP_EXISTING: &str = " ON CONFLICT (created_by_sync_id, kind, path) DO NOTHING";
        let on_conflict = if skip_existing { SKIP_EXISTING } else { "" };
        if !entries.is_empty() && entries.len() <= SMALL_IMPORT_BATCH {
            // A small batch (a resync's few changed files) in one statement:
            // the staging table below costs four round trips more (and its
            // creation on a connection's first import), which for a handful
            // of rows is most of the batch.
            sqlx::query(&format!(
                "INSERT INTO memory_entries (project_id, path, kind, content, content_hash, \
                     blob_sha, language, size_bytes, status, created_by_sync_id) \
                 SELECT $1, t.path, 'file', t.content, t.content_hash, t.blob_sha, t.language, \
                     t.size_bytes, 'pending', $2 \
                 FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
                     $8::bigint[]) AS t(path, content, content_hash, blob_sha, language, size_bytes)\
                 {on_conflict}"
            ))
            .bind(claim.project_id.0)
            .bind(claim.sync_id.0)
            .bind(entries.iter().map(|e| e.path.as_str()).collect::<Vec<_>>())
            .bind(entries.iter().map(|e| e.content.as_str()).collect::<Vec<_>>())
            .bind(entries.iter().map(|e| e.content_hash.as_str()).collect::<Vec<_>>())
            .bind(entries.iter().map(|e| e.blob_sha.as_str()).collect::<Vec<_>>())
            .bind(entries.iter().map(|e| e.language.as_deref()).collect::<Vec<_>>())
            .bind(entries.iter().map(|e| e.size).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        } else if !entries.is_empty() {
            // Binary COPY into a staging table of the session (emptied at
            // the end of each transaction), then one INSERT … SELECT: COPY
            // itself cannot write a table under row-level security.
            // (Quietly: "already exists, skipping" is the usual case.)
            sqlx::query("SET LOCAL client_min_messages = warning")
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "CREATE TEMP TABLE IF NOT EXISTS projsync_import_stage ( \
                     path text NOT NULL, content text NOT NULL, content_hash text NOT NULL, \
                     blob_sha text, language text, size_bytes bigint NOT NULL \
                 ) ON COMMIT DELETE ROWS",
            )
            .execute(&mut *tx)
            .await?;
            let mut rows = BinaryCopy::new();
            for e in entries {
                rows.row(6)
                    .text(Some(&e.path))
                    .text(Some(&e.content))
                    .text(Some(&e.content_hash))
                    .text(Some(&e.blob_sha))
                    .text(e.language.as_deref())
                    .int8(e.size);
            }
            let mut copy = tx
                .copy_in_raw("COPY projsync_import_stage FROM STDIN (FORMAT binary)")
                .await?;
            copy.send(rows.finish()).await?;
            copy.finish().await?;
            const INSERT: &str = "INSERT INTO memory_entries (project_id, path, kind, content, \
                     content_hash, blob_sha, language, size_bytes, status, created_by_sync_id) \
                 SELECT $1, path, 'file', content, content_hash, blob_sha, language, size_bytes, \
                     'pending', $2 \
                 FROM projsync_import_stage";
            sqlx::query(&format!("{INSERT}{on_conflict}"))
                .bind(claim.project_id.0)
                .bind(claim.sync_id.0)
                .execute(&mut *tx)
                .await?;
        }
        if !skips.is_empty() {
            sqlx::query(
                "UPDATE sync_changes c SET skip_reason = t.reason, needs_entry = false \
                 FROM UNNEST($2::text[], $3::text[]) AS t(path, reason) \
                 WHERE c.sync_id = $1 AND c.path = t.path",
            )
            .bind(claim.sync_id.0)
            .bind(skips.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>())
            .bind(skips.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        commit_batch(tx, claim, SyncPhase::Import, checkpoint, end).await
    }

    /// Make the sync's state the one readers see, in one transaction
    /// (invariant 4): supersede every active entry the new tree does not keep,
    /// activate the pending versions, store the tree's files, and link the
    /// sync into the project's history.
    pub async fn finalize(
        &self,
        claim: &Claim,
        repository_id: RepositoryId,
        head_commit: &str,
        outcome: &str,
        mut stats: Stats,
        embedding_model: Option<&str>,
    ) -> Result<Stats> {
        let (sync_id, project_id) = (claim.sync_id.0, claim.project_id.0);
        let mut tx = self.fenced_durable_custom_plans(claim).await?;
        // Entries become active only together with their chunks and, when
        // embeddings are on, with every chunk's vector (invariant 4). In
        // the same statement: what the plan is (every path of the tree, a
        // full walk, or only the paths that change, a diff), the filter
        // its verdicts follow, and the analyser version the analyze phase
        // ran (none when it was skipped: analysis is off for the project).
        #[allow(clippy::type_complexity)]
        let (missing, unchunked, scan_mode, filter, analysis_version): (
            i64,
            i64,
            Option<String>,
            Option<String>,
            Option<i32>,
        ) = sqlx::query_as(&format!(
            "SELECT {}, s.scan_mode, s.filter, s.analysis_version FROM ( \
                 SELECT max(checkpoint->'stats'->>'scan_mode') FILTER (WHERE phase = 'scan') AS scan_mode, \
                     max(checkpoint->>'filter') FILTER (WHERE phase = 'scan') AS filter, \
                     max((checkpoint->>'analysis_version')::int) \
                         FILTER (WHERE phase = 'analyze' AND status <> 'skipped') AS analysis_version \
                 FROM sync_steps WHERE sync_id = $1 AND phase IN ('scan', 'analyze')) s",
            unembedded_columns(ChunkScope::Sync(claim.sync_id))
        ))
        .bind(sync_id)
        .bind(embedding_model.unwrap_or(""))
        .fetch_one(&mut *tx)
        .await?;
        if unchunked > 0 || (embedding_model.is_some() && missing > 0) {
            return Err(Error::Invalid(format!(
                "{unchunked} entries are not chunked and {missing} chunks have no vector; \
                 the embed phase did not finish, retry the sync"
            )));
        }
        let diff = scan_mode.as_deref() == Some(ScanMode::Diff.as_str());
        // The file versions this sync replaces, and with them (in the same
        // statement) their symbols, edges and docs.
        let supersede_files = if diff {
            // Only the planned paths move: the ones a new version, a skip
            // or a deletion replaces, and the old paths of renames.
            "UPDATE memory_entries m SET status = 'superseded', superseded_by_sync_id = $2 \
             FROM (SELECT c.path FROM sync_changes c WHERE c.sync_id = $2 \
                     AND NOT (c.change <> 'deleted' AND c.skip_reason IS NULL AND NOT c.needs_entry) \
                   UNION SELECT c.old_path FROM sync_changes c WHERE c.sync_id = $2 \
                     AND c.change = 'renamed') t \
             WHERE m.project_id = $1 AND m.status = 'active' AND m.kind = 'file' AND m.path = t.path \
             RETURNING m.path"
        } else {
            "UPDATE memory_entries m SET status = 'superseded', superseded_by_sync_id = $2 \
             WHERE m.project_id = $1 AND m.status = 'active' AND m.kind = 'file' \
               AND NOT EXISTS (SELECT 1 FROM sync_changes c WHERE c.sync_id = $2 AND c.path = m.path \
                   AND c.change <> 'deleted' AND c.skip_reason IS NULL AND NOT c.needs_entry) \
             RETURNING m.path"
        };
        let (superseded_files, symbols_removed) =
            supersede(&mut tx, project_id, sync_id, supersede_files).await?;
        stats.symbols_changed = symbols_removed;
        // Then the sync's versions become the active ones, with its edges.
        let (activated, symbols_activated, docs_activated): (i64, i64, i64) = sqlx::query_as(
            "WITH a AS (UPDATE memory_entries SET status = 'active' \
                 WHERE created_by_sync_id = $1 AND status = 'pending' RETURNING kind), \
             e AS (UPDATE dependency_edges SET status = 'active' \
                 WHERE created_by_sync_id = $1 AND status = 'pending') \
             SELECT count(*) FILTER (WHERE kind = 'file'), count(*) FILTER (WHERE kind = 'symbol'), \
                 count(*) FILTER (WHERE kind = 'doc') \
             FROM a",
        )
        .bind(sync_id)
        .fetch_one(&mut *tx)
        .await?;
        let activated = activated as u64;
        stats.imported = activated;
        stats.symbols_changed += symbols_activated as u64;
        stats.docs_regenerated = docs_activated as u64;
        // The repository's stored files: those the tree no longer has go,
        // the others are written where they changed. One statement: the
        // paths deleted (a deletion, a rename's old path; in a full walk,
        // every path without a change row that keeps it) are never among
        // those written (a change row that is not a deletion).
        let delete_files = if diff {
            // The paths as an array, each looked up by the primary key.
            // Joined with the plan instead, PostgreSQL chose to read every
            // file of the repository when its statistics were stale (two
            // rows, measured at 500 files: 1.6 ms of a 1-file resync's
            // finalize, and growing with the repository).
            "DELETE FROM repository_files f \
             WHERE f.repository_id = $1 AND f.path = ANY(ARRAY( \
                 SELECT CASE c.change WHEN 'deleted' THEN c.path ELSE c.old_path END \
                 FROM sync_changes c WHERE c.sync_id = $2 AND c.change IN ('deleted', 'renamed')))"
        } else {
            "DELETE FROM repository_files f WHERE f.repository_id = $1 AND NOT EXISTS \
               (SELECT 1 FROM sync_changes c WHERE c.sync_id = $2 AND c.path = f.path AND c.change <> 'deleted')"
        };
        sqlx::query(&format!(
            "WITH gone AS ({delete_files}) \
             INSERT INTO repository_files AS f (repository_id, path, blob_sha, kind, size_bytes, language, \
                 skip_reason, last_changed_sync_id) \
             SELECT $1, c.path, c.blob_sha, c.kind, c.size_bytes, c.language, c.skip_reason, $2 \
             FROM sync_changes c WHERE c.sync_id = $2 AND c.change <> 'deleted' \
             ON CONFLICT (repository_id, path) DO UPDATE SET blob_sha = excluded.blob_sha, \
                 kind = excluded.kind, size_bytes = excluded.size_bytes, language = excluded.language, \
                 skip_reason = excluded.skip_reason, last_changed_sync_id = excluded.last_changed_sync_id \
             WHERE (f.blob_sha, f.kind, f.size_bytes, f.language, f.skip_reason) IS DISTINCT FROM \
                 (excluded.blob_sha, excluded.kind, excluded.size_bytes, excluded.language, excluded.skip_reason)",
        ))
        .bind(repository_id.0)
        .bind(sync_id)
        .execute(&mut *tx)
        .await?;
        // A sync that ran no analysis leaves the files it changed without
        // symbols: the next one that does analyses the whole tree.
        complete_on(
            &mut tx,
            claim,
            repository_id,
            head_commit,
            outcome,
            &stats,
            (
                SyncPhase::Finalize,
                serde_json::json!({ "activated": activated }),
            ),
            Some(RepositoryVerdicts {
                filter,
                analysis_version,
                keep_analysis_version: activated == 0 && superseded_files == 0,
            }),
        )
        .await?;
        tx.commit().await?;
        Ok(stats)
    }

    /// End a backfill as succeeded. It changes no entry version, so it is
    /// not linked into the project's history.
    pub async fn complete_backfill(&self, claim: &Claim, stats: &Stats) -> Result<()> {
        let mut tx = self.fenced_durable(claim).await?;
        sqlx::query(
            "UPDATE project_syncs SET status = 'succeeded', outcome = 'embedded', stats = $2, \
                 finished_at = clock_timestamp(), updated_at = now(), current_phase = NULL, \
                 lease_owner = NULL, lease_expires_at = NULL, error_class = NULL, \
                 error_message = NULL \
             WHERE id = $1",
        )
        .bind(claim.sync_id.0)
        .bind(Json(stats))
        .execute(&mut *tx)
        .await?;
        finish_step_query(
            claim.sync_id,
            SyncPhase::Finalize,
            PhaseStatus::Succeeded,
            serde_json::json!({}),
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Prepare found the branch head equal to the last successful sync's:
    /// end the sync as `unchanged` and skip the other phases.
    pub async fn complete_unchanged(
        &self,
        claim: &Claim,
        repository_id: RepositoryId,
        head_commit: &str,
        stats: &Stats,
    ) -> Result<()> {
        let mut tx = self.fenced_durable(claim).await?;
        complete_on(
            &mut tx,
            claim,
            repository_id,
            head_commit,
            "unchanged",
            stats,
            (
                SyncPhase::Prepare,
                serde_json::json!({ "head_commit": head_commit, "unchanged": true }),
            ),
            None,
        )
        .await?;
        sqlx::query(
            "UPDATE sync_steps SET status = 'skipped', finished_at = clock_timestamp() \
             WHERE sync_id = $1 AND phase <> 'prepare'",
        )
        .bind(claim.sync_id.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The tree a succeeded sync left, as planned rows (deletions excluded).
    /// Built from the plans of its history: the nearest sync at or before it
    /// whose plan holds the whole tree (a full walk, a restore), then the
    /// plans of the diff syncs after it, in order (`unchanged` syncs have no
    /// plan and change nothing). `None` if the sync never succeeded, or a
    /// plan it needs was pruned (`sync.plan_retention_hours`).
    pub async fn planned_tree(&self, sync_id: SyncId) -> Result<Option<Vec<PlanRow>>> {
        let mut tx = self.read().await?;
        let chain: Vec<(uuid::Uuid, Option<String>, Option<String>, bool)> = sqlx::query_as(
            "WITH RECURSIVE chain AS ( \
                 SELECT id, previous_sync_id, outcome, stats->>'scan_mode' AS mode, \
                     plan_pruned_at IS NOT NULL AS pruned, 0 AS depth FROM project_syncs \
                 WHERE id = $1 AND status = 'succeeded' \
                 UNION ALL \
                 SELECT p.id, p.previous_sync_id, p.outcome, p.stats->>'scan_mode', \
                     p.plan_pruned_at IS NOT NULL, c.depth + 1 \
                 FROM project_syncs p JOIN chain c ON p.id = c.previous_sync_id \
                 WHERE c.outcome = 'unchanged' OR (c.outcome = 'changed' AND c.mode = 'diff')) \
             SELECT id, outcome, mode, pruned FROM chain ORDER BY depth",
        )
        .bind(sync_id.0)
        .fetch_all(&mut *tx)
        .await?;
        let Some(base) = chain
            .iter()
            .position(|(_, outcome, mode, _)| planned(outcome) && mode.as_deref() != Some("diff"))
        else {
            return Ok(None);
        };
        let needed: Vec<uuid::Uuid> = chain[..=base]
            .iter()
            .rev()
            .filter(|(_, outcome, _, _)| planned(outcome))
            .map(|(id, _, _, _)| *id)
            .collect();
        if chain[..=base]
            .iter()
            .any(|(_, outcome, _, pruned)| planned(outcome) && *pruned)
        {
            return Ok(None);
        }
        let mut tree: std::collections::BTreeMap<String, PlanRow> = Default::default();
        for (i, id) in needed.iter().enumerate() {
            let rows = sqlx::query(&format!("{SELECT_PLAN} WHERE sync_id = $1 ORDER BY path"))
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
            for row in rows.iter().map(plan_from_row) {
                let row = row?;
                match row.change {
                    ChangeKind::Deleted => {
                        tree.remove(&row.path);
                    }
                    _ => {
                        if i > 0 && row.change == ChangeKind::Renamed {
                            if let Some(old) = &row.old_path {
                                tree.remove(old);
                            }
                        }
                        tree.insert(row.path.clone(), row);
                    }
                }
            }
        }
        Ok(Some(tree.into_values().collect()))
    }

    /// Delete the plans of the project's syncs that ended more than
    /// `retention` ago, except the history's head and every plan a kept
    /// sync's tree is built from (see `planned_tree`). Returns the number of
    /// syncs whose plan was deleted.
    pub async fn prune_plans(
        &self,
        project_id: ProjectId,
        retention: std::time::Duration,
    ) -> Result<u64> {
        let mut tx = self.begin().await?;
        let pruned: Vec<uuid::Uuid> = sqlx::query_scalar(
            "WITH RECURSIVE keep AS ( \
                 SELECT s.id, s.previous_sync_id, s.outcome, s.stats->>'scan_mode' AS mode \
                 FROM project_syncs s WHERE s.project_id = $1 AND (s.finished_at IS NULL \
                     OR s.finished_at >= now() - make_interval(secs => $2) \
                     OR s.id = (SELECT last_sync_id FROM projects WHERE id = $1)) \
                 UNION \
                 SELECT p.id, p.previous_sync_id, p.outcome, p.stats->>'scan_mode' \
                 FROM project_syncs p JOIN keep k ON p.id = k.previous_sync_id \
                 WHERE k.outcome = 'unchanged' OR (k.outcome = 'changed' AND k.mode = 'diff')) \
             UPDATE project_syncs SET plan_pruned_at = now() \
             WHERE project_id = $1 AND plan_pruned_at IS NULL \
               AND finished_at < now() - make_interval(secs => $2) \
               AND id NOT IN (SELECT id FROM keep) \
             RETURNING id",
        )
        .bind(project_id.0)
        .bind(retention.as_secs_f64())
        .fetch_all(&mut *tx)
        .await?;
        if !pruned.is_empty() {
            for table in ["sync_changes", "sync_analyzed_files", "sync_doc_removals"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE sync_id = ANY($1)"))
                    .bind(&pruned)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(pruned.len() as u64)
    }

    /// Refresh the planner's statistics of a table a sync has grown by a
    /// lot (migrations/0013_planner_stats.sql): the plans cached for its
    /// batch queries are then made for its real size.
    pub async fn refresh_planner_stats(&self, table: GrownTable) -> Result<()> {
        let mut tx = self.begin_committing(crate::Commit::Deferred).await?;
        sqlx::query("SELECT projsync_analyze($1)")
            .bind(table.name())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether the project has any entry version a sync other than
    /// `sync_id` wrote: with none (a first import), no content can be
    /// reused, and the import does not look for any.
    pub async fn has_other_entries(&self, project_id: ProjectId, sync_id: SyncId) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM memory_entries WHERE project_id = $1 \
                 AND created_by_sync_id <> $2)",
        )
        .bind(project_id.0)
        .bind(sync_id.0)
        .fetch_one(&mut *self.read().await?)
        .await?)
    }

    /// The project's last successful sync (the one its history ends at), if any.
    pub async fn last_synced(&self, project_id: ProjectId) -> Result<Option<LastSync>> {
        let row: Option<(uuid::Uuid, Option<String>, Option<Json<Stats>>)> = sqlx::query_as(
            "SELECT s.id, s.head_commit, s.stats FROM projects p \
             JOIN project_syncs s ON s.id = p.last_sync_id WHERE p.id = $1",
        )
        .bind(project_id.0)
        .fetch_optional(&mut *self.read().await?)
        .await?;
        Ok(row.and_then(|(id, head, stats)| {
            head.map(|head| LastSync {
                id: SyncId(id),
                head,
                stats: stats.map(|s| s.0).unwrap_or_default(),
            })
        }))
    }

    /// The project's active entries, sorted by path (the read path).
    pub async fn active_entries(&self, project_id: ProjectId) -> Result<Vec<ActiveEntry>> {
        let rows = sqlx::query(
            "SELECT path, content, content_hash, blob_sha, language, created_by_sync_id \
             FROM active_memory_entries WHERE project_id = $1 AND kind = 'file' ORDER BY path",
        )
        .bind(project_id.0)
        .fetch_all(&mut *self.read().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| active_entry_from_row(&r))
            .collect())
    }

    /// The project's active file entry at `path`.
    pub async fn active_entry(&self, project_id: ProjectId, path: &str) -> Result<ActiveEntry> {
        self.entry_as_of(project_id, path, None).await
    }

    /// The project's file entry at `path`: the active one, or the one
    /// readers saw right after sync `as_of` (a succeeded sync or restore of
    /// its history; the caller checks that with `is_history_point`). Not
    /// found when the file did not exist then.
    pub async fn entry_as_of(
        &self,
        project_id: ProjectId,
        path: &str,
        as_of: Option<SyncId>,
    ) -> Result<ActiveEntry> {
        let sql = format!(
            "SELECT m.path, m.content, m.content_hash, m.blob_sha, m.language, \
                 m.created_by_sync_id \
             FROM memory_entries m WHERE m.project_id = $1 AND m.kind = 'file' \
             AND m.path = $2 AND {}",
            crate::embeddings::visible(as_of.map(|_| 3))
        );
        let mut q = sqlx::query(&sql).bind(project_id.0).bind(path);
        if let Some(sync) = as_of {
            q = q.bind(sync.0);
        }
        let row = q
            .fetch_optional(&mut *self.read().await?)
            .await?
            .ok_or_else(|| {
                // A noun phrase: the API says "… not found".
                crate::Error::NotFound(match as_of {
                    None => format!("active entry `{path}` of project {project_id}"),
                    Some(s) => format!("entry `{path}` of project {project_id} as of sync {s}"),
                })
            })?;
        Ok(active_entry_from_row(&row))
    }

    /// One page of the project's active file entries' paths, sizes and
    /// languages (no content), by path, starting after `after`: what a
    /// listing of resources shows.
    pub async fn active_paths_page(
        &self,
        project_id: ProjectId,
        after: Option<&str>,
        limit: i64,
    ) -> Result<crate::Page<EntryInfo, String>> {
        let rows = sqlx::query(
            "SELECT path, size_bytes, language FROM active_memory_entries \
             WHERE project_id = $1 AND kind = 'file' AND path > $2 ORDER BY path LIMIT $3",
        )
        .bind(project_id.0)
        .bind(after.unwrap_or(""))
        .bind(limit.saturating_add(1))
        .fetch_all(&mut *self.read().await?)
        .await?;
        let rows = rows
            .into_iter()
            .map(|r| {
                let info = EntryInfo {
                    path: r.get("path"),
                    size: r.get("size_bytes"),
                    language: r.get("language"),
                };
                let key = info.path.clone();
                (info, key)
            })
            .collect();
        Ok(crate::Page::from_rows(rows, limit))
    }

    /// One page of the project's active file entries, by `(kind, path)`,
    /// starting after `after`. Keyset pagination over the partial unique
    /// index `(project_id, kind, path)`: a page costs the same at any depth.
    pub async fn active_entries_page(
        &self,
        project_id: ProjectId,
        after: Option<&MemoryKey>,
        limit: i64,
    ) -> Result<crate::Page<ActiveEntry, MemoryKey>> {
        // From ('', '') for the first page (kinds and paths are never
        // empty): one index-bounded statement at any depth, also as a
        // generic plan.
        let (after_kind, after_path) = after.map_or(("", ""), |(k, p)| (k.as_str(), p.as_str()));
        let rows = sqlx::query(
            "SELECT kind, path, content, content_hash, blob_sha, language, created_by_sync_id \
             FROM active_memory_entries WHERE project_id = $1 AND kind = 'file' \
             AND (kind, path) > ($2, $3) \
             ORDER BY kind, path LIMIT $4",
        )
        .bind(project_id.0)
        .bind(after_kind)
        .bind(after_path)
        .bind(limit.saturating_add(1))
        .fetch_all(&mut *self.read().await?)
        .await?;
        let rows = rows
            .into_iter()
            .map(|r| {
                let key: MemoryKey = (r.get("kind"), r.get("path"));
                (active_entry_from_row(&r), key)
            })
            .collect();
        Ok(crate::Page::from_rows(rows, limit))
    }
}

/// Supersede the active file versions `files` names (an `UPDATE … RETURNING
/// m.path` over `$1`, the project, and `$2`, the sync), and in the same
/// statement the active symbols and edges of those files and of the files
/// the sync analysed, except those the analysis kept, and the docs with a
/// new version or removed: four sets of rows none of the others touches.
/// Each set is found from the sync's own rows (its plan, its new versions,
/// its doc removals), never by looking at every active row of a kind: the
/// docs were, and a 1-file resync's finalize grew with the number of
/// modules (0.6 ms at 100 modules, measured).
/// Returns how many file versions were superseded, and how many symbols
/// went without a new version (removed).
async fn supersede(
    tx: &mut PgConnection,
    project_id: uuid::Uuid,
    sync_id: uuid::Uuid,
    files: &str,
) -> Result<(u64, u64)> {
    // The files in question (`t`): those superseded here (the statement's
    // other parts do not see that update: they take its paths from
    // `files`), and those analysed (a whole-tree analysis also reads files
    // that did not change).
    let (files, removed): (i64, i64) = sqlx::query_as(&format!(
        "WITH files AS ({files}), \
         t AS (SELECT path FROM files \
             UNION SELECT a.path FROM sync_analyzed_files a WHERE a.sync_id = $2), \
         s AS (UPDATE memory_entries m SET status = 'superseded', superseded_by_sync_id = $2 \
             FROM t \
             WHERE m.project_id = $1 AND m.status = 'active' AND m.source_path = t.path \
               AND m.kind = 'symbol' \
               AND NOT EXISTS (SELECT 1 FROM sync_analyzed_files a WHERE a.sync_id = $2 \
                   AND a.path = m.source_path AND m.path = ANY(a.kept_symbols)) \
             RETURNING m.path), \
         e AS (UPDATE dependency_edges d SET status = 'superseded', superseded_by_sync_id = $2 \
             FROM t \
             WHERE d.project_id = $1 AND d.status = 'active' AND d.from_path = t.path \
               AND NOT EXISTS (SELECT 1 FROM sync_analyzed_files a WHERE a.sync_id = $2 \
                   AND a.path = d.from_path AND a.kept_edges)), \
         d AS (UPDATE memory_entries m SET status = 'superseded', superseded_by_sync_id = $2 \
             FROM (SELECT p.path FROM memory_entries p WHERE p.created_by_sync_id = $2 \
                     AND p.kind = 'doc' \
                   UNION SELECT r.path FROM sync_doc_removals r WHERE r.sync_id = $2) x \
             WHERE m.project_id = $1 AND m.status = 'active' AND m.kind = 'doc' \
               AND m.path = x.path) \
         SELECT (SELECT count(*) FROM files), \
             (SELECT count(*) FROM s WHERE NOT EXISTS (SELECT 1 FROM memory_entries p \
                 WHERE p.created_by_sync_id = $2 AND p.kind = 'symbol' AND p.path = s.path))"
    ))
    .bind(project_id)
    .bind(sync_id)
    .fetch_one(&mut *tx)
    .await?;
    Ok((files as u64, removed as u64))
}

/// What a finalize records of the tree on the repository: the filter its
/// verdicts followed, and the analyser version (kept as it was when
/// `keep_analysis_version` and none ran; else cleared).
struct RepositoryVerdicts {
    filter: Option<String>,
    analysis_version: Option<i32>,
    keep_analysis_version: bool,
}

/// End a sync as succeeded and link it after the project's last successful
/// sync. The project row is locked so that the chain stays linear.
#[allow(clippy::too_many_arguments)]
async fn complete_on(
    conn: &mut PgConnection,
    claim: &Claim,
    repository_id: RepositoryId,
    head_commit: &str,
    outcome: &str,
    stats: &Stats,
    (phase, checkpoint): (SyncPhase, serde_json::Value),
    verdicts: Option<RepositoryVerdicts>,
) -> Result<()> {
    // Read under the project row's lock, by a statement of its own: the
    // statement below updates that row, and a row a statement has updated
    // is not there for its own `FOR UPDATE`.
    let previous: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT last_sync_id FROM projects WHERE id = $1 FOR UPDATE")
            .bind(claim.project_id.0)
            .fetch_one(&mut *conn)
            .await?;
    // The sync, the project, the repository and the step that ends the
    // sync, in one statement (four tables, one row each).
    let (set_verdicts, filter, analysis_version, keep_analysis_version) = match verdicts {
        Some(v) => (true, v.filter, v.analysis_version, v.keep_analysis_version),
        None => (false, None, None, true),
    };
    sqlx::query(
        "WITH t AS MATERIALIZED (SELECT clock_timestamp() AS at), \
         s AS (UPDATE project_syncs SET status = 'succeeded', outcome = $2, stats = $3, \
                 previous_sync_id = $4, head_commit = $5, finished_at = (SELECT at FROM t), \
                 updated_at = now(), \
                 current_phase = NULL, lease_owner = NULL, lease_expires_at = NULL, \
                 error_class = NULL, error_message = NULL \
             WHERE id = $1), \
         p AS (UPDATE projects SET last_sync_id = $1 WHERE id = $6), \
         r AS (UPDATE repositories SET last_synced_commit = $5, \
                 synced_filter = CASE WHEN $10 THEN $11 ELSE synced_filter END, \
                 analysis_version = CASE WHEN NOT $10 THEN analysis_version \
                     WHEN $12::int IS NOT NULL THEN $12 WHEN $13 THEN analysis_version END \
             WHERE id = $7) \
         UPDATE sync_steps SET status = 'succeeded', checkpoint = $9, \
             finished_at = (SELECT at FROM t), error_message = NULL \
         WHERE sync_id = $1 AND phase = $8",
    )
    .bind(claim.sync_id.0)
    .bind(outcome)
    .bind(Json(stats))
    .bind(previous)
    .bind(head_commit)
    .bind(claim.project_id.0)
    .bind(repository_id.0)
    .bind(phase.as_str())
    .bind(checkpoint)
    .bind(set_verdicts)
    .bind(filter)
    .bind(analysis_version)
    .bind(keep_analysis_version)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn stored_from_row(r: &sqlx::postgres::PgRow) -> Result<(StoredFile, Option<SkipReason>)> {
    let kind: &str = r.get("kind");
    Ok((
        StoredFile {
            size: r.get::<Option<i64>, _>("size_bytes").map(|s| s as u64),
            path: r.get("path"),
            sha: r.get("blob_sha"),
            kind: EntryKind::parse(kind)
                .ok_or_else(|| Error::Invalid(format!("unknown entry kind `{kind}`")))?,
        },
        r.get::<Option<&str>, _>("skip_reason")
            .and_then(SkipReason::parse),
    ))
}

/// Whether a sync of this outcome wrote a plan.
fn planned(outcome: &Option<String>) -> bool {
    matches!(outcome.as_deref(), Some("changed") | Some("restored"))
}

const SELECT_PLAN: &str =
    "SELECT path, change, kind, blob_sha, old_blob_sha, old_path, size_bytes, \
     language, skip_reason, needs_entry FROM sync_changes";

fn plan_from_row(r: &sqlx::postgres::PgRow) -> Result<PlanRow> {
    let change: &str = r.get("change");
    let kind: &str = r.get("kind");
    Ok(PlanRow {
        path: r.get("path"),
        change: ChangeKind::parse(change)
            .ok_or_else(|| Error::Invalid(format!("unknown change `{change}`")))?,
        kind: EntryKind::parse(kind)
            .ok_or_else(|| Error::Invalid(format!("unknown entry kind `{kind}`")))?,
        blob_sha: r.get("blob_sha"),
        old_blob_sha: r.get("old_blob_sha"),
        old_path: r.get("old_path"),
        size: r.get("size_bytes"),
        language: r.get("language"),
        skip_reason: r
            .get::<Option<&str>, _>("skip_reason")
            .and_then(SkipReason::parse),
        needs_entry: r.get("needs_entry"),
    })
}

async fn insert_plan_chunk(
    db: impl PgExecutor<'_>,
    sync_id: SyncId,
    rows: &[PlanRow],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO sync_changes (sync_id, path, change, kind, blob_sha, old_blob_sha, old_path, \
             size_bytes, language, skip_reason, needs_entry) \
         SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::bigint[], $9::text[], $10::text[], $11::bool[])",
    )
    .bind(sync_id.0)
    .bind(rows.iter().map(|r| r.path.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.change.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.blob_sha.clone()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.old_blob_sha.clone())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.old_path.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.size).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.language.clone()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.skip_reason.map(|s| s.as_str()))
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.needs_entry).collect::<Vec<_>>())
    .execute(db)
    .await?;
    Ok(())
}

/// A table a sync grows, whose planner statistics it may refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrownTable {
    /// The change plans (the scan writes one row per path).
    SyncChanges,
    /// Entry versions (the import writes them).
    MemoryEntries,
    /// Chunks (the embed phase writes them).
    MemoryChunks,
}

impl GrownTable {
    fn name(self) -> &'static str {
        match self {
            GrownTable::SyncChanges => "sync_changes",
            GrownTable::MemoryEntries => "memory_entries",
            GrownTable::MemoryChunks => "memory_chunks",
        }
    }
}
