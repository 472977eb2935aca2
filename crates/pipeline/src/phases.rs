//! The four phases. Each is idempotent: run again after a crash or a second
//! delivery, it continues from its checkpoint and reaches the same end state.

use crate::{failpoints, Pipeline, RunCtx, Stop, Transition};
use projsync_domain::filter::{classify_content, Filter};
use projsync_domain::plan::StoredFile;
use projsync_domain::plan::{diff, ChangeKind, PlannedChange};
use projsync_domain::{
    content_hash, language, PhaseError, PhaseStatus, ScanMode, SkipReason, Source, Stats,
    SyncPhase, SyncStatus, TreeEntry,
};
use projsync_store::{BatchWrite, GrownTable, NewEntry, PlanRow};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// A phase that writes at least this many rows to a table refreshes its
/// planner statistics when it is done: the next phases' cached plans must
/// not stay those of an empty table.
pub(crate) const STATS_AFTER_ROWS: u64 = 1000;

/// The import step's checkpoint: everything up to `after` (in path order)
/// is written.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ImportCheckpoint {
    after: Option<String>,
    done: u64,
    batches: u64,
    stats: Stats,
}

/// An import batch read and decided, with the checkpoint that goes with it.
struct ReadBatch {
    entries: Vec<NewEntry>,
    skips: Vec<(String, SkipReason)>,
    checkpoint: serde_json::Value,
    /// Its number (from 1) and the files done once it is written.
    number: u64,
    done: u64,
    /// The sync's stats once it is written.
    stats: Stats,
}

impl Pipeline {
    fn filter(&self, ctx: &RunCtx) -> Result<Filter, PhaseError> {
        let max = ctx
            .project
            .max_file_bytes
            .map(|m| m as u64)
            .unwrap_or(self.opts.max_file_bytes);
        Filter::new(max, &ctx.project.ignore_patterns)
            .map_err(|e| PhaseError::fatal(format!("{e}; fix the project's ignore patterns")))
    }

    /// A fingerprint of everything that decides a path's verdict before its
    /// content is read: the size limit, the project's ignore patterns and
    /// the built-in rules. A diff is trusted only while it is the one the
    /// stored files were judged by.
    fn filter_fingerprint(&self, ctx: &RunCtx) -> String {
        let max = ctx
            .project
            .max_file_bytes
            .map(|m| m as u64)
            .unwrap_or(self.opts.max_file_bytes);
        content_hash(&format!(
            "filter v1\nmax {max}\ndefaults {:?}\nignore {:?}",
            projsync_domain::filter::DEFAULT_IGNORES,
            ctx.project.ignore_patterns
        ))
    }

    /// Resolve the branch head; stop early when it is what the last
    /// successful sync imported.
    pub(crate) async fn prepare(&self, ctx: &mut RunCtx) -> Result<Transition, PhaseError> {
        if let Some(target) = ctx.sync.restore_of_sync_id {
            return self.prepare_restore(ctx, target).await;
        }
        self.filter(ctx)?;
        let source = self.source(ctx).await?;
        // The branch head and the last sync's, side by side.
        let (head, last) = tokio::try_join!(
            async { Ok::<_, PhaseError>(source.resolve_branch(&ctx.sync.branch).await?) },
            async { Ok(self.store.last_synced(ctx.claim.project_id).await?) },
        )?;
        failpoints::hit("prepare.resolved").await;
        ctx.head = Some(head.clone());
        ctx.last = Some(last.clone());
        if let Some(previous) = last.as_ref().filter(|l| l.head == head) {
            // Same tree as the last successful sync: report it as unchanged.
            let before = previous.stats.clone();
            ctx.stats = Stats {
                files_seen: before.files_seen,
                unchanged: before.files_seen,
                skipped: before.skipped,
                skipped_by_reason: before.skipped_by_reason,
                ..Stats::default()
            };
            self.store
                .complete_unchanged(&ctx.claim, ctx.project.repository.id, &head, &ctx.stats)
                .await?;
            ctx.sync.status = SyncStatus::Succeeded;
            ctx.sync.outcome = Some("unchanged".into());
            let short = &head[..head.len().min(12)];
            self.emit(
                ctx,
                SyncPhase::Prepare,
                PhaseStatus::Succeeded,
                0,
                0,
                format!(
                    "branch {} is still at {short}: nothing to do",
                    ctx.sync.branch
                ),
            )
            .await;
            return Ok(Transition::Complete);
        }
        ctx.next_step = self
            .store
            .finish_prepare(
                &ctx.claim,
                &head,
                serde_json::json!({
                    "head_commit": head,
                    "previous_sync_id": last.map(|l| l.id),
                }),
            )
            .await?;
        Ok(Transition::Continue)
    }

    /// Write the change plan: from the diff between the last synced commit
    /// and the head when the stored state can be trusted (O(changes)),
    /// else from the whole head tree against the stored files.
    pub(crate) async fn scan(&self, ctx: &mut RunCtx) -> Result<Transition, PhaseError> {
        if let Some(target) = ctx.sync.restore_of_sync_id {
            return self.scan_restore(ctx, target).await;
        }
        let head = self.head(ctx)?;
        let filter = self.filter(ctx)?;
        let fingerprint = self.filter_fingerprint(ctx);
        let source = self.source(ctx).await?;
        if let Some((rows, stats)) = self
            .scan_diff(ctx, &head, &filter, &fingerprint, &source)
            .await?
        {
            failpoints::hit("scan.tree_read").await;
            return self.write_plan(ctx, rows, stats, Some(&fingerprint)).await;
        }
        let stored = self.store.stored_files(ctx.project.repository.id).await?;
        let tree = match &ctx.project.repository.last_synced_commit {
            Some(base) if !stored.is_empty() => {
                let base_tree: Vec<TreeEntry> =
                    stored.iter().map(|(f, _)| f.to_tree_entry()).collect();
                source.read_tree_since(&head, base, &base_tree).await?
            }
            _ => source.read_tree(&head).await?,
        };
        failpoints::hit("scan.tree_read").await;
        let (rows, mut stats) = plan_branch(&filter, &tree, &stored);
        stats.scan_mode = Some(ScanMode::Full);
        self.write_plan(ctx, rows, stats, Some(&fingerprint)).await
    }

    /// The plan from `Source::diff`, or `None` when the stored state cannot
    /// be trusted as the tree of the last synced commit: no previous sync,
    /// another filter, stored files that do not add up to the last sync's
    /// count or do not match the diff's old side, or a source that cannot
    /// diff (the last synced commit is gone, say after a force-push).
    async fn scan_diff(
        &self,
        ctx: &RunCtx,
        head: &str,
        filter: &Filter,
        fingerprint: &str,
        source: &Arc<dyn Source>,
    ) -> Result<Option<(Vec<PlanRow>, Stats)>, PhaseError> {
        let repo = ctx.project.repository.id;
        // The last sync as prepare read it in this run. When its head is
        // the last synced commit the project was read with at the run's
        // start (the usual case), the source compares it with the head
        // while the ledger is read; the comparison is used only if the
        // checks below ask for that very one (so a provider is asked for a
        // comparison the run does not use only in the rare case that a
        // later check sends the scan to the whole tree).
        let known_last = ctx.last.clone();
        let speculative_from = known_last
            .as_ref()
            .and_then(|l| l.as_ref().map(|l| l.head.clone()))
            .filter(|h| ctx.project.repository.last_synced_commit.as_deref() == Some(h.as_str()));
        let (base, last, speculative) = tokio::join!(
            async { Ok::<_, PhaseError>(self.store.scan_base(repo).await?) },
            async {
                Ok::<_, PhaseError>(
                    match known_last {
                        Some(last) => last,
                        None => self.store.last_synced(ctx.claim.project_id).await?,
                    }
                    .map(|l| (l.head, l.stats)),
                )
            },
            async {
                match &speculative_from {
                    Some(from) => Some(source.diff(from, head).await),
                    None => None,
                }
            },
        );
        let (base, last) = (base?, last?);
        let Some(from) = base.last_synced_commit.clone() else {
            return Ok(None);
        };
        if base.synced_filter.as_deref() != Some(fingerprint) {
            return full_scan(
                ctx,
                "the stored files were judged by another filter, or none is recorded",
            );
        }
        let Some((last_head, previous)) = last else {
            return full_scan(ctx, "no previous sync");
        };
        if last_head != from {
            return full_scan(
                ctx,
                "the last sync's head is not the repository's last synced commit",
            );
        }
        if previous.files_seen != base.files {
            return full_scan(
                ctx,
                "the stored files do not add up to the last sync's tree",
            );
        }
        let compared = match speculative {
            Some(result) if speculative_from.as_deref() == Some(from.as_str()) => result?,
            _ => source.diff(&from, head).await?,
        };
        let Some(tree_diff) = compared else {
            return full_scan(
                ctx,
                "the source cannot compare the last synced commit with the head",
            );
        };
        let paths: Vec<String> = tree_diff.changes.iter().map(|c| c.path.clone()).collect();
        let stored = self.store.stored_files_at(repo, &paths).await?;
        if let Some(path) = mismatch(&tree_diff.changes, &stored) {
            let why = format!("the stored files do not match the last synced commit at `{path}`");
            return full_scan(ctx, &why);
        }
        let tree: Vec<TreeEntry> = tree_diff
            .changes
            .into_iter()
            .filter_map(|c| c.new)
            .collect();
        let (rows, mut stats) = plan_branch(filter, &tree, &stored);
        // The counts of the whole tree: the stored ones, less the paths the
        // plan replaces, plus what the plan says of them.
        stats.files_seen = (base.files + stats.added).saturating_sub(stats.deleted);
        stats.unchanged = stats
            .files_seen
            .saturating_sub(stats.added + stats.modified + stats.renamed + stats.type_changed);
        let mut by_reason = base.skipped_by_reason;
        for (_, skip) in &stored {
            if let Some(n) = skip.and_then(|r| by_reason.get_mut(r.as_str())) {
                *n = n.saturating_sub(1);
            }
        }
        for (reason, n) in std::mem::take(&mut stats.skipped_by_reason) {
            *by_reason.entry(reason).or_default() += n;
        }
        by_reason.retain(|_, n| *n > 0);
        stats.skipped = by_reason.values().sum();
        stats.skipped_by_reason = by_reason;
        stats.scan_mode = Some(ScanMode::Diff);
        Ok(Some((rows, stats)))
    }

    async fn write_plan(
        &self,
        ctx: &mut RunCtx,
        rows: Vec<PlanRow>,
        stats: Stats,
        filter: Option<&str>,
    ) -> Result<Transition, PhaseError> {
        ctx.next_step = self
            .store
            .write_plan(&ctx.claim, &rows, &stats, filter)
            .await?;
        failpoints::hit("scan.plan_written").await;
        if rows.len() as u64 >= STATS_AFTER_ROWS {
            self.refresh_stats(GrownTable::SyncChanges).await;
        }
        let to_import = rows.iter().filter(|r| r.needs_entry).count();
        ctx.stats = stats;
        self.emit(
            ctx,
            SyncPhase::Scan,
            PhaseStatus::Running,
            rows.len() as u64,
            rows.len() as u64,
            format!(
                "{} files in the tree, {to_import} to import",
                ctx.stats.files_seen
            ),
        )
        .await;
        Ok(Transition::Continue)
    }

    /// A restore's head is the target's; nothing is read from the source.
    async fn prepare_restore(
        &self,
        ctx: &mut RunCtx,
        target: projsync_domain::SyncId,
    ) -> Result<Transition, PhaseError> {
        let t = match self.store.sync(target).await {
            Ok(t) => t,
            Err(projsync_store::Error::NotFound(_)) => {
                return Err(PhaseError::fatal(format!(
                    "sync {target} to restore does not exist"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        if t.project_id != ctx.claim.project_id || t.status != SyncStatus::Succeeded {
            return Err(PhaseError::fatal(format!(
                "sync {target} is not a succeeded sync of this project; only those can be restored"
            )));
        }
        let head = t.head_commit.ok_or_else(|| {
            PhaseError::fatal(format!("sync {target} has no head commit to restore"))
        })?;
        ctx.head = Some(head.clone());
        ctx.next_step = self
            .store
            .finish_prepare(
                &ctx.claim,
                &head,
                serde_json::json!({ "head_commit": head, "restore_of": target }),
            )
            .await?;
        Ok(Transition::Continue)
    }

    /// Plan the way back to the tree the target sync left, with the
    /// verdicts (skips) it reached on each file.
    async fn scan_restore(
        &self,
        ctx: &mut RunCtx,
        target: projsync_domain::SyncId,
    ) -> Result<Transition, PhaseError> {
        let target_rows = self.store.planned_tree(target).await?.ok_or_else(|| {
            PhaseError::fatal(format!("sync {target} left no stored tree to restore"))
        })?;
        let tree: Vec<TreeEntry> = target_rows
            .iter()
            .map(|r| TreeEntry {
                path: r.path.clone(),
                kind: r.kind,
                sha: r.blob_sha.clone().unwrap_or_default(),
                size: r.size.map(|s| s as u64),
                path_lossy: false,
            })
            .collect();
        let verdicts: HashMap<&str, Option<SkipReason>> = target_rows
            .iter()
            .map(|r| (r.path.as_str(), r.skip_reason))
            .collect();
        let stored = self.store.stored_files(ctx.project.repository.id).await?;
        let stored_skips: HashMap<&str, Option<SkipReason>> = stored
            .iter()
            .map(|(f, skip)| (f.path.as_str(), *skip))
            .collect();
        let stored_files: Vec<_> = stored.iter().map(|(f, _)| f.clone()).collect();
        let plan = diff(&tree, &stored_files);
        let (rows, mut stats) = plan_rows(plan, |c| {
            if let Some(reason) = verdicts.get(c.path.as_str()).copied().flatten() {
                return (Some(reason), false);
            }
            match c.change {
                // Kept as is, unless it has no entry now.
                ChangeKind::Unchanged => (
                    None,
                    stored_skips
                        .get(c.path.as_str())
                        .copied()
                        .flatten()
                        .is_some(),
                ),
                _ => (None, true),
            }
        });
        stats.scan_mode = Some(ScanMode::Full);
        // The verdicts are the target's, not the current filter's.
        self.write_plan(ctx, rows, stats, None).await
    }

    /// Write `pending` entry versions, batch by batch, each batch one
    /// checkpoint. Content the project already has is reused, not fetched.
    pub(crate) async fn import(
        &self,
        ctx: &mut RunCtx,
        checkpoint: Option<serde_json::Value>,
    ) -> Result<Transition, PhaseError> {
        let mut cp: ImportCheckpoint = checkpoint
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_else(|| ImportCheckpoint {
                stats: ctx.stats.clone(),
                ..Default::default()
            });
        ctx.stats = cp.stats.clone();
        // What is left, whether there is any content to reuse (a first
        // import has none and does not look), and the first batch's plan
        // rows, side by side.
        let batch_size = self.opts.import_batch_size.max(1) as i64;
        let (left, reuse, first) = tokio::try_join!(
            self.store
                .count_to_import(ctx.claim.sync_id, cp.after.as_deref()),
            self.store
                .has_other_entries(ctx.claim.project_id, ctx.claim.sync_id),
            self.store
                .import_batch(ctx.claim.sync_id, cp.after.as_deref(), batch_size),
        )?;
        let mut first = Some(first);
        let total = cp.done + left as u64;
        // A large import downloads the archive once instead of every blob.
        if ctx.archive.is_none()
            && ctx.sync.restore_of_sync_id.is_none()
            && total - cp.done >= self.opts.archive_min_files
            && self
                .store
                .bytes_to_import(ctx.claim.sync_id, cp.after.as_deref())
                .await?
                <= self.opts.archive_max_bytes as i64
        {
            let source = self.source(ctx).await?;
            let head = self.head(ctx)?;
            let wanted = self
                .store
                .shas_to_import(ctx.claim.sync_id, cp.after.as_deref())
                .await?;
            match source.read_archive(&head, &wanted).await {
                Ok(Some(blobs)) => {
                    tracing::info!(files = blobs.len(), "using the source's archive");
                    ctx.archive = Some(blobs.into_iter().map(|b| (b.sha, b.data)).collect());
                }
                Ok(None) => {}
                Err(e) if e.kind == projsync_domain::SourceErrorKind::RateLimited => {
                    return Err(e.into())
                }
                Err(e) => tracing::warn!("cannot use the archive, reading blobs one by one: {e}"),
            }
        }
        // Batch N is written while batch N + 1 is read (plan rows, stored
        // content, blobs): reading the source overlaps with the database.
        // Each batch is still one fenced transaction with its checkpoint;
        // nothing is in flight at a boundary, and at most two batches are
        // in memory.
        let mut ready: Option<ReadBatch> = None;
        // Set when the last batch's write ended the step too (and started
        // the next one): the batch that brings the files done to `total`.
        let mut ended: Option<Option<projsync_store::StepStart>> = None;
        loop {
            // A batch's write checks for a cancel itself.
            if let Some(stop) = self.write_boundary(ctx).await? {
                return Ok(Transition::Stop(stop));
            }
            let claim = ctx.claim;
            let store = &self.store;
            let pending = ready.take();
            let write = async {
                match &pending {
                    Some(b) if b.done >= total => store
                        .write_last_import_batch(
                            &claim,
                            &b.entries,
                            &b.skips,
                            b.checkpoint.clone(),
                            &b.stats,
                        )
                        .await
                        .map(|(written, next)| Some((written, Some(next)))),
                    Some(b) => store
                        .write_import_batch(&claim, &b.entries, &b.skips, b.checkpoint.clone())
                        .await
                        .map(|written| Some((written, None))),
                    None => Ok(None),
                }
            };
            // Content of the batch being written, not yet visible to
            // `known_content`: reused, not fetched again.
            let carry: HashMap<&str, &NewEntry> = pending
                .iter()
                .flat_map(|b| b.entries.iter().map(|e| (e.blob_sha.as_str(), e)))
                .collect();
            let read = self.read_batch(ctx, &mut cp, batch_size, &carry, reuse, first.take());
            let (written, next) = tokio::join!(write, read);
            match written? {
                Some((BatchWrite::CancelRequested, _)) => {
                    return Ok(Transition::Stop(Stop::Cancel))
                }
                Some((BatchWrite::Written, Some(next))) => ended = Some(next),
                _ => {}
            }
            if let Some(b) = &pending {
                failpoints::hit("import.batch_written").await;
                self.emit(
                    ctx,
                    SyncPhase::Import,
                    PhaseStatus::Running,
                    b.done,
                    total,
                    format!("batch {} written ({}/{total} files)", b.number, b.done),
                )
                .await;
            }
            drop(carry);
            match next? {
                Some(b) => ready = Some(b),
                None => break,
            }
        }
        // The embed and finalize phases' queries are planned for the
        // entries this import wrote.
        if cp.done >= STATS_AFTER_ROWS {
            self.refresh_stats(GrownTable::MemoryEntries).await;
        }
        if let Some(next) = ended {
            ctx.next_step = next;
            return Ok(Transition::Continue);
        }
        ctx.next_step = self
            .store
            .finish_step_with_stats(
                &ctx.claim,
                SyncPhase::Import,
                PhaseStatus::Succeeded,
                serde_json::to_value(&cp).expect("checkpoint serializes"),
                &ctx.stats,
            )
            .await?;
        Ok(Transition::Continue)
    }

    /// Read and decide the next import batch after `cp.after` (its plan
    /// rows `prefetched`, if given), and move the checkpoint past it;
    /// `None` when no row is left.
    async fn read_batch(
        &self,
        ctx: &mut RunCtx,
        cp: &mut ImportCheckpoint,
        batch_size: i64,
        carry: &HashMap<&str, &NewEntry>,
        reuse: bool,
        prefetched: Option<Vec<PlanRow>>,
    ) -> Result<Option<ReadBatch>, PhaseError> {
        let mut batch = match prefetched {
            Some(rows) => rows,
            None => {
                self.store
                    .import_batch(ctx.claim.sync_id, cp.after.as_deref(), batch_size)
                    .await?
            }
        };
        // Bounded by bytes as well: the batch ends with the file that
        // reaches the limit.
        batch.truncate(batch_end(&batch, self.opts.import_batch_bytes));
        let Some(last) = batch.last() else {
            return Ok(None);
        };
        let last_path = last.path.clone();
        let shas: Vec<String> = batch.iter().filter_map(|r| r.blob_sha.clone()).collect();
        let mut known = if reuse {
            self.store
                .known_content(ctx.claim.project_id, &shas)
                .await?
        } else {
            HashMap::new()
        };
        for sha in &shas {
            if let Some(e) = carry.get(sha.as_str()) {
                known
                    .entry(sha.clone())
                    .or_insert_with(|| projsync_store::ImportRow {
                        content: e.content.clone(),
                        content_hash: e.content_hash.clone(),
                        size: e.size,
                    });
            }
        }
        let mut from_archive: HashMap<String, Vec<u8>> = HashMap::new();
        if let Some(archive) = ctx.archive.as_mut() {
            for sha in &shas {
                if let Some(data) = archive.remove(sha) {
                    from_archive.insert(sha.clone(), data);
                }
            }
        }
        let mut to_fetch: Vec<String> = shas
            .iter()
            .filter(|s| !known.contains_key(*s) && !from_archive.contains_key(*s))
            .cloned()
            .collect();
        to_fetch.sort();
        to_fetch.dedup();
        let mut fetched: HashMap<String, Vec<u8>> = if to_fetch.is_empty() {
            HashMap::new()
        } else if ctx.sync.restore_of_sync_id.is_some() {
            return Err(PhaseError::fatal(format!(
                "the content of blob {} is no longer stored, so this state cannot be \
                 restored without the source; sync the branch instead",
                to_fetch[0]
            )));
        } else {
            let source = self.source(ctx).await?;
            source
                .read_blobs(&to_fetch)
                .await?
                .into_iter()
                .map(|b| (b.sha, b.data))
                .collect()
        };
        fetched.extend(from_archive);
        failpoints::hit("import.fetched").await;
        // Hashing and judging a batch's contents is CPU work: off the
        // runtime, so that the batch being written meanwhile keeps the
        // database busy.
        let rows = batch.len() as u64;
        let (entries, skips) =
            tokio::task::spawn_blocking(move || decide_batch(&batch, &known, &fetched))
                .await
                .map_err(|e| PhaseError::retryable(format!("reading the batch stopped: {e}")))??;
        for (_, reason) in &skips {
            ctx.stats.add_skip(*reason);
        }
        ctx.stats.imported += entries.len() as u64;
        cp.after = Some(last_path);
        cp.done += rows;
        cp.batches += 1;
        cp.stats = ctx.stats.clone();
        Ok(Some(ReadBatch {
            entries,
            skips,
            checkpoint: serde_json::to_value(&*cp).expect("checkpoint serializes"),
            number: cp.batches,
            done: cp.done,
            stats: cp.stats.clone(),
        }))
    }

    /// Flip pending → active and replaced → superseded in one transaction.
    pub(crate) async fn finalize(&self, ctx: &mut RunCtx) -> Result<Transition, PhaseError> {
        let head = self.head(ctx)?;
        failpoints::hit("finalize.before_commit").await;
        let outcome = if ctx.sync.restore_of_sync_id.is_some() {
            "restored"
        } else {
            "changed"
        };
        let stats = self
            .store
            .finalize(
                &ctx.claim,
                ctx.project.repository.id,
                &head,
                outcome,
                ctx.stats.clone(),
                self.embeddings
                    .model()
                    .filter(|_| self.embeddings.enabled_for(ctx.project.embeddings_enabled)),
            )
            .await?;
        failpoints::hit("finalize.committed").await;
        // The housekeeping that follows (old plans, planner statistics) is
        // done by `after_finalize`, once the sync is reported ended.
        ctx.stats = stats;
        ctx.sync.status = SyncStatus::Succeeded;
        ctx.sync.outcome = Some(outcome.into());
        let s = &ctx.stats;
        self.emit(
            ctx,
            SyncPhase::Finalize,
            PhaseStatus::Succeeded,
            s.imported,
            s.imported,
            format!(
                "sync complete: {} files, {} imported, {} skipped; {} files analysed, {} symbols \
                 changed, {} docs regenerated; {} chunks, {} embedded, {} from the embedding cache",
                s.files_seen,
                s.imported,
                s.skipped,
                s.analyzed_files,
                s.symbols_changed,
                s.docs_regenerated,
                s.chunks,
                s.embedded,
                s.embedding_cache_hits
            ),
        )
        .await;
        Ok(Transition::Complete)
    }

    /// Housekeeping after a sync's finalize committed, once its end is
    /// counted: a failure here costs nothing but space or speed, and the
    /// next sync of the project tries again.
    pub(crate) async fn after_finalize(&self, ctx: &RunCtx) {
        match self
            .store
            .prune_plans(ctx.claim.project_id, self.opts.plan_retention)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(syncs = n, "pruned old change plans"),
            Err(e) => tracing::warn!("cannot prune old change plans: {e}"),
        }
        // The versions this sync activated (and superseded) change which
        // rows are active, which the planner counts on for every read of
        // the active state: after a first import it would otherwise still
        // see none, and walk a project's every active row for one path
        // (0.3 s a lookup at 100,000 files) until autovacuum's ANALYZE.
        let s = &ctx.stats;
        if s.imported + s.symbols_changed + s.docs_regenerated >= STATS_AFTER_ROWS {
            self.refresh_stats(GrownTable::MemoryEntries).await;
        }
    }

    /// Refresh the planner's statistics of a table this run grew by a lot
    /// (best effort: a failure costs speed, not correctness).
    pub(crate) async fn refresh_stats(&self, table: GrownTable) {
        if let Err(e) = self.store.refresh_planner_stats(table).await {
            tracing::warn!(?table, "cannot refresh the planner's statistics: {e}");
        }
    }

    fn head(&self, ctx: &RunCtx) -> Result<String, PhaseError> {
        ctx.head.clone().ok_or_else(|| {
            PhaseError::fatal("the sync has no head commit; prepare did not complete")
        })
    }
}

/// The entry versions of an import batch (content reused from `known`,
/// else judged from the `fetched` blob) and its paths skipped for their
/// content.
#[allow(clippy::type_complexity)]
fn decide_batch(
    batch: &[PlanRow],
    known: &HashMap<String, projsync_store::ImportRow>,
    fetched: &HashMap<String, Vec<u8>>,
) -> Result<(Vec<NewEntry>, Vec<(String, SkipReason)>), PhaseError> {
    let mut entries = Vec::with_capacity(batch.len());
    let mut skips = Vec::new();
    for row in batch {
        let sha = row.blob_sha.clone().unwrap_or_default();
        let entry = if let Some(k) = known.get(&sha) {
            Ok(NewEntry {
                path: row.path.clone(),
                content: k.content.clone(),
                content_hash: k.content_hash.clone(),
                blob_sha: sha,
                language: row.language.clone(),
                size: k.size,
            })
        } else {
            let data = fetched.get(&sha).ok_or_else(|| {
                PhaseError::retryable(format!("the source did not return blob {sha}"))
            })?;
            classify_content(data).map(|text| NewEntry {
                path: row.path.clone(),
                content_hash: content_hash(text),
                content: text.to_string(),
                blob_sha: sha.clone(),
                language: row.language.clone(),
                size: data.len() as i64,
            })
        };
        match entry {
            Ok(e) => entries.push(e),
            Err(reason) => skips.push((row.path.clone(), reason)),
        }
    }
    Ok((entries, skips))
}

/// How many rows of an import batch to take: up to the first at which the
/// files add up to `max_bytes` (at least one).
fn batch_end(batch: &[PlanRow], max_bytes: u64) -> usize {
    let mut bytes = 0u64;
    for (i, r) in batch.iter().enumerate() {
        bytes += r.size.unwrap_or(0).max(0) as u64;
        if bytes >= max_bytes.max(1) {
            return i + 1;
        }
    }
    batch.len()
}

/// The first changed path whose old side is not what is stored.
fn mismatch(
    changes: &[projsync_domain::TreeChange],
    stored: &[(StoredFile, Option<SkipReason>)],
) -> Option<String> {
    let by_path: HashMap<&str, &StoredFile> =
        stored.iter().map(|(f, _)| (f.path.as_str(), f)).collect();
    changes
        .iter()
        .find(|c| match (&c.old, by_path.get(c.path.as_str())) {
            (None, None) => false,
            (Some(old), Some(s)) => old.sha != s.sha || old.kind != s.kind,
            _ => true,
        })
        .map(|c| c.path.clone())
}

/// `scan_diff`'s "cannot": log why, and walk the whole tree.
fn full_scan(ctx: &RunCtx, why: &str) -> Result<Option<(Vec<PlanRow>, Stats)>, PhaseError> {
    tracing::info!(sync_id = %ctx.claim.sync_id, "full scan: {why}");
    Ok(None)
}

/// A path's verdict in a scan of the branch head: its skip reason, and
/// whether it needs a new entry version.
fn verdict(
    filter: &Filter,
    lossy: &HashMap<&str, bool>,
    stored_skips: &HashMap<&str, Option<SkipReason>>,
    c: &PlannedChange,
) -> (Option<SkipReason>, bool) {
    let lossy = lossy.get(c.path.as_str()).copied().unwrap_or(false);
    if let Some(reason) = filter.before_fetch(&c.path, c.kind, c.size, lossy) {
        return (Some(reason), false);
    }
    match c.change {
        ChangeKind::Unchanged | ChangeKind::Renamed => {
            let from = c.old_path.as_deref().unwrap_or(&c.path);
            match stored_skips.get(from).copied().flatten() {
                // Same bytes as before: same verdict on them.
                Some(r @ (SkipReason::Binary | SkipReason::InvalidUtf8)) => (Some(r), false),
                // Skipped before for a rule that no longer applies.
                Some(_) => (None, true),
                None => (None, c.change == ChangeKind::Renamed),
            }
        }
        _ => (None, true),
    }
}

/// The plan of a branch head's `tree` (all of it, or the changed paths)
/// against the `stored` files (the same paths).
fn plan_branch(
    filter: &Filter,
    tree: &[TreeEntry],
    stored: &[(StoredFile, Option<SkipReason>)],
) -> (Vec<PlanRow>, Stats) {
    let stored_skips: HashMap<&str, Option<SkipReason>> = stored
        .iter()
        .map(|(f, skip)| (f.path.as_str(), *skip))
        .collect();
    let lossy: HashMap<&str, bool> = tree
        .iter()
        .filter(|e| e.path_lossy)
        .map(|e| (e.path.as_str(), true))
        .collect();
    let stored_files: Vec<StoredFile> = stored.iter().map(|(f, _)| f.clone()).collect();
    let plan = diff(tree, &stored_files);
    plan_rows(plan, |c| verdict(filter, &lossy, &stored_skips, c))
}

/// Turn the diff into plan rows; `verdict` decides each non-deleted path's
/// skip reason and whether it needs a new entry version.
fn plan_rows(
    plan: Vec<PlannedChange>,
    verdict: impl Fn(&PlannedChange) -> (Option<SkipReason>, bool),
) -> (Vec<PlanRow>, Stats) {
    let mut stats = Stats::from_plan(&plan);
    let mut rows = Vec::with_capacity(plan.len());
    for c in plan {
        let (skip, needs_entry) = if c.change == ChangeKind::Deleted {
            (None, false)
        } else {
            verdict(&c)
        };
        if let Some(reason) = skip {
            stats.add_skip(reason);
        }
        rows.push(PlanRow {
            language: language::detect(&c.path).map(str::to_string),
            path: c.path,
            change: c.change,
            kind: c.kind,
            blob_sha: c.sha,
            old_blob_sha: c.old_sha,
            old_path: c.old_path,
            size: c.size.map(|s| s as i64),
            skip_reason: skip,
            needs_entry,
        });
    }
    (rows, stats)
}
