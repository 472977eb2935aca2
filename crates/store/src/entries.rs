//! The change plan, stored files, memory entry versions and finalize.

use crate::embeddings::unembedded;
use crate::syncs::{finish_step_on, save_checkpoint_on};
use crate::ChunkScope;
use crate::{Claim, Error, PlanRow, Result, Store};
use projsync_domain::plan::{ChangeKind, StoredFile};
use projsync_domain::{
    EntryKind, PhaseStatus, ProjectId, RepositoryId, SkipReason, Stats, SyncId, SyncPhase,
};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{Postgres, Row, Transaction};
use std::collections::HashMap;

/// Rows per INSERT … SELECT FROM UNNEST statement.
const CHUNK: usize = 2000;

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
        rows.iter()
            .map(|r| {
                let kind: &str = r.get("kind");
                Ok((
                    StoredFile {
                        size: r.get::<Option<i64>, _>("size_bytes").map(|s| s as u64),
                        path: r.get("path"),
                        sha: r.get("blob_sha"),
                        kind: EntryKind::parse(kind).ok_or_else(|| {
                            Error::Invalid(format!("unknown entry kind `{kind}`"))
                        })?,
                    },
                    r.get::<Option<&str>, _>("skip_reason")
                        .and_then(SkipReason::parse),
                ))
            })
            .collect()
    }

    /// Replace the sync's change plan and finish the scan step, in one
    /// transaction (a re-run scan writes the same plan again).
    pub async fn write_plan(&self, claim: &Claim, plan: &[PlanRow], stats: &Stats) -> Result<()> {
        let mut tx = self.fenced(claim).await?;
        sqlx::query("DELETE FROM sync_changes WHERE sync_id = $1")
            .bind(claim.sync_id.0)
            .execute(&mut *tx)
            .await?;
        for chunk in plan.chunks(CHUNK) {
            insert_plan_chunk(&mut tx, claim.sync_id, chunk).await?;
        }
        sqlx::query("UPDATE project_syncs SET stats = $2, updated_at = now() WHERE id = $1")
            .bind(claim.sync_id.0)
            .bind(Json(stats))
            .execute(&mut *tx)
            .await?;
        let checkpoint = serde_json::json!({
            "rows": plan.len(),
            "to_import": plan.iter().filter(|r| r.needs_entry).count(),
            "stats": stats,
        });
        finish_step_on(
            &mut *tx,
            claim.sync_id,
            SyncPhase::Scan,
            PhaseStatus::Succeeded,
            checkpoint,
        )
        .await?;
        tx.commit().await?;
        Ok(())
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
        let rows = sqlx::query(&format!(
            "{SELECT_PLAN} WHERE sync_id = $1 AND needs_entry AND ($2::text IS NULL OR path > $2) \
             ORDER BY path LIMIT $3"
        ))
        .bind(sync_id.0)
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(plan_from_row).collect()
    }

    /// Content the project already has for these blobs (any version, any
    /// status): a rename, a revert or another branch costs no fetch.
    pub async fn known_content(
        &self,
        project_id: ProjectId,
        shas: &[String],
    ) -> Result<HashMap<String, ImportRow>> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (blob_sha) blob_sha, content, content_hash, size_bytes \
             FROM memory_entries WHERE project_id = $1 AND blob_sha = ANY($2)",
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
    /// written twice (redelivery) changes nothing.
    pub async fn write_import_batch(
        &self,
        claim: &Claim,
        entries: &[NewEntry],
        skips: &[(String, SkipReason)],
        checkpoint: serde_json::Value,
    ) -> Result<()> {
        let mut tx = self.fenced(claim).await?;
        for chunk in entries.chunks(CHUNK) {
            sqlx::query(
                "INSERT INTO memory_entries (project_id, path, kind, content, content_hash, blob_sha, \
                     language, size_bytes, status, created_by_sync_id) \
                 SELECT $1, t.path, 'file', t.content, t.hash, t.sha, t.lang, t.size, 'pending', $2 \
                 FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[]) \
                     AS t(path, content, hash, sha, lang, size) \
                 ON CONFLICT (created_by_sync_id, kind, path) DO NOTHING",
            )
            .bind(claim.project_id.0)
            .bind(claim.sync_id.0)
            .bind(chunk.iter().map(|e| e.path.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|e| e.content.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|e| e.content_hash.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|e| e.blob_sha.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|e| e.language.clone()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|e| e.size).collect::<Vec<_>>())
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
        save_checkpoint_on(&mut *tx, claim.sync_id, SyncPhase::Import, checkpoint).await?;
        tx.commit().await?;
        Ok(())
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
        let mut tx = self.fenced(claim).await?;
        // Entries become active only together with their chunks and, when
        // embeddings are on, with every chunk's vector (invariant 4).
        let (missing, unchunked) = unembedded(
            &mut *tx,
            ChunkScope::Sync(claim.sync_id),
            embedding_model.unwrap_or(""),
        )
        .await?;
        if unchunked > 0 || (embedding_model.is_some() && missing > 0) {
            return Err(Error::Invalid(format!(
                "{unchunked} entries are not chunked and {missing} chunks have no vector;                  the embed phase did not finish, retry the sync"
            )));
        }
        sqlx::query(
            "UPDATE memory_entries m SET status = 'superseded', superseded_by_sync_id = $2 \
             WHERE m.project_id = $1 AND m.status = 'active' AND m.kind = 'file' \
               AND NOT EXISTS (SELECT 1 FROM sync_changes c WHERE c.sync_id = $2 AND c.path = m.path \
                   AND c.change <> 'deleted' AND c.skip_reason IS NULL AND NOT c.needs_entry)",
        )
        .bind(project_id)
        .bind(sync_id)
        .execute(&mut *tx)
        .await?;
        let activated = sqlx::query(
            "UPDATE memory_entries SET status = 'active' WHERE created_by_sync_id = $1 AND status = 'pending'",
        )
        .bind(sync_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        stats.imported = activated;
        sqlx::query(
            "DELETE FROM repository_files f WHERE f.repository_id = $1 AND NOT EXISTS \
               (SELECT 1 FROM sync_changes c WHERE c.sync_id = $2 AND c.path = f.path AND c.change <> 'deleted')",
        )
        .bind(repository_id.0)
        .bind(sync_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO repository_files AS f (repository_id, path, blob_sha, kind, size_bytes, language, \
                 skip_reason, last_changed_sync_id) \
             SELECT $1, c.path, c.blob_sha, c.kind, c.size_bytes, c.language, c.skip_reason, $2 \
             FROM sync_changes c WHERE c.sync_id = $2 AND c.change <> 'deleted' \
             ON CONFLICT (repository_id, path) DO UPDATE SET blob_sha = excluded.blob_sha, \
                 kind = excluded.kind, size_bytes = excluded.size_bytes, language = excluded.language, \
                 skip_reason = excluded.skip_reason, last_changed_sync_id = excluded.last_changed_sync_id \
             WHERE (f.blob_sha, f.kind, f.size_bytes, f.language, f.skip_reason) IS DISTINCT FROM \
                 (excluded.blob_sha, excluded.kind, excluded.size_bytes, excluded.language, excluded.skip_reason)",
        )
        .bind(repository_id.0)
        .bind(sync_id)
        .execute(&mut *tx)
        .await?;
        complete_in(&mut tx, claim, repository_id, head_commit, outcome, &stats).await?;
        finish_step_on(
            &mut *tx,
            claim.sync_id,
            SyncPhase::Finalize,
            PhaseStatus::Succeeded,
            serde_json::json!({ "activated": activated }),
        )
        .await?;
        tx.commit().await?;
        Ok(stats)
    }

    /// End a backfill as succeeded. It changes no entry version, so it is
    /// not linked into the project's history.
    pub async fn complete_backfill(&self, claim: &Claim, stats: &Stats) -> Result<()> {
        let mut tx = self.fenced(claim).await?;
        sqlx::query(
            "UPDATE project_syncs SET status = 'succeeded', outcome = 'embedded', stats = $2, \
                 finished_at = now(), updated_at = now(), current_phase = NULL, \
                 lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = $1",
        )
        .bind(claim.sync_id.0)
        .bind(Json(stats))
        .execute(&mut *tx)
        .await?;
        finish_step_on(
            &mut *tx,
            claim.sync_id,
            SyncPhase::Finalize,
            PhaseStatus::Succeeded,
            serde_json::json!({}),
        )
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
        let mut tx = self.fenced(claim).await?;
        complete_in(
            &mut tx,
            claim,
            repository_id,
            head_commit,
            "unchanged",
            stats,
        )
        .await?;
        finish_step_on(
            &mut *tx,
            claim.sync_id,
            SyncPhase::Prepare,
            PhaseStatus::Succeeded,
            serde_json::json!({ "head_commit": head_commit, "unchanged": true }),
        )
        .await?;
        sqlx::query(
            "UPDATE sync_steps SET status = 'skipped', finished_at = now() \
             WHERE sync_id = $1 AND phase <> 'prepare'",
        )
        .bind(claim.sync_id.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The tree a succeeded sync left, as planned rows (deletions excluded):
    /// its own plan, or for an `unchanged` sync the plan of the nearest
    /// ancestor that had one. `None` if the sync never succeeded.
    pub async fn planned_tree(&self, sync_id: SyncId) -> Result<Option<Vec<PlanRow>>> {
        let planned: Option<uuid::Uuid> = sqlx::query_scalar(
            "WITH RECURSIVE chain AS ( \
                 SELECT id, previous_sync_id, outcome, 0 AS depth FROM project_syncs \
                 WHERE id = $1 AND status = 'succeeded' \
                 UNION ALL \
                 SELECT p.id, p.previous_sync_id, p.outcome, c.depth + 1 \
                 FROM project_syncs p JOIN chain c ON p.id = c.previous_sync_id \
                 WHERE c.outcome = 'unchanged') \
             SELECT id FROM chain WHERE outcome IN ('changed', 'restored') ORDER BY depth LIMIT 1",
        )
        .bind(sync_id.0)
        .fetch_optional(&mut *self.read().await?)
        .await?;
        let Some(planned) = planned else {
            return Ok(None);
        };
        let rows = sqlx::query(&format!(
            "{SELECT_PLAN} WHERE sync_id = $1 AND change <> 'deleted' ORDER BY path"
        ))
        .bind(planned)
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter()
            .map(plan_from_row)
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// The head commit of the project's last successful sync, if any.
    pub async fn last_synced(&self, project_id: ProjectId) -> Result<Option<(SyncId, String)>> {
        let row: Option<(uuid::Uuid, Option<String>)> = sqlx::query_as(
            "SELECT s.id, s.head_commit FROM projects p JOIN project_syncs s ON s.id = p.last_sync_id \
             WHERE p.id = $1",
        )
        .bind(project_id.0)
        .fetch_optional(&mut *self.read().await?)
        .await?;
        Ok(row.and_then(|(id, head)| head.map(|h| (SyncId(id), h))))
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
        let row = sqlx::query(
            "SELECT path, content, content_hash, blob_sha, language, created_by_sync_id \
             FROM active_memory_entries WHERE project_id = $1 AND kind = 'file' AND path = $2",
        )
        .bind(project_id.0)
        .bind(path)
        .fetch_optional(&mut *self.read().await?)
        .await?
        .ok_or_else(|| {
            crate::Error::NotFound(format!(
                "no active entry at `{path}` in project {project_id}"
            ))
        })?;
        Ok(active_entry_from_row(&row))
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
        let (after_kind, after_path) = after.map(|(k, p)| (k.as_str(), p.as_str())).unzip();
        let rows = sqlx::query(
            "SELECT kind, path, content, content_hash, blob_sha, language, created_by_sync_id \
             FROM active_memory_entries WHERE project_id = $1 AND kind = 'file' \
             AND ($2::text IS NULL OR (kind, path) > ($2, $3)) \
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

/// End a sync as succeeded and link it after the project's last successful
/// sync. The project row is locked so that the chain stays linear.
async fn complete_in(
    tx: &mut Transaction<'_, Postgres>,
    claim: &Claim,
    repository_id: RepositoryId,
    head_commit: &str,
    outcome: &str,
    stats: &Stats,
) -> Result<()> {
    let previous: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT last_sync_id FROM projects WHERE id = $1 FOR UPDATE")
            .bind(claim.project_id.0)
            .fetch_one(&mut **tx)
            .await?;
    sqlx::query(
        "UPDATE project_syncs SET status = 'succeeded', outcome = $2, stats = $3, previous_sync_id = $4, \
             head_commit = $5, finished_at = now(), updated_at = now(), current_phase = NULL, \
             lease_owner = NULL, lease_expires_at = NULL \
         WHERE id = $1",
    )
    .bind(claim.sync_id.0)
    .bind(outcome)
    .bind(Json(stats))
    .bind(previous)
    .bind(head_commit)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE projects SET last_sync_id = $2 WHERE id = $1")
        .bind(claim.project_id.0)
        .bind(claim.sync_id.0)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE repositories SET last_synced_commit = $2 WHERE id = $1")
        .bind(repository_id.0)
        .bind(head_commit)
        .execute(&mut **tx)
        .await?;
    Ok(())
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
    tx: &mut Transaction<'_, Postgres>,
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
    .execute(&mut **tx)
    .await?;
    Ok(())
}
