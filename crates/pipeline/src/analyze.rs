//! The analyze phase: parse the source files a sync changed with
//! tree-sitter (`projsync-analyze`) and write what changed of their symbols
//! and imports, batch by batch with a checkpoint, as `pending` symbol
//! entries and dependency edges. Finalize makes them visible with the
//! files.
//!
//! Only changed files are read. A symbol whose text did not change keeps
//! its entry (no new version); an edited one gets a new version under the
//! same identity (`symbol_id`), which a renamed file's symbols keep too. A
//! file whose imports did not change keeps its edges. When the repository's
//! active files were not all analysed by this analyser version (a project
//! synced before analysis existed or while it was off, or a new analyser),
//! the phase reads the whole tree once.

use crate::{failpoints, Pipeline, RunCtx, Stop, Transition};
use projsync_analyze::{analyze, Analysis, Limits, Skip};
use projsync_domain::{PhaseError, PhaseStatus, Stats, SyncPhase};
use projsync_store::{
    ActiveSymbol, AnalysisInput, AnalyzedFile, BatchWrite, Edge, NewSymbol, SymbolMeta,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

/// The version of what analysis writes (qualified names, symbol text,
/// candidates). Raise it when that changes: the next sync of every project
/// then analyses its whole tree again.
pub const ANALYSIS_VERSION: i32 = 1;

/// The languages `projsync-analyze` has grammars for, as
/// `projsync_domain::language` names them: only their content is read.
const LANGUAGES: &[&str] = &[
    "rust",
    "python",
    "javascript",
    "typescript",
    "go",
    "java",
    "c",
    "cpp",
];

/// How code analysis runs in this deployment.
#[derive(Debug, Clone)]
pub struct AnalysisSettings {
    /// Analyse changed source files (a project can turn it off for itself).
    pub enabled: bool,
    /// Files per batch: one checkpoint and one progress event each.
    pub batch_files: usize,
    /// What one file may cost: size, line length, parse time.
    pub limits: Limits,
}

impl Default for AnalysisSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            batch_files: 200,
            limits: Limits::default(),
        }
    }
}

impl AnalysisSettings {
    /// Whether a project with this setting of its own is analysed.
    pub fn enabled_for(&self, project_setting: Option<bool>) -> bool {
        project_setting.unwrap_or(self.enabled)
    }
}

/// The analyze step's checkpoint: every file up to `after` (in path order)
/// is written.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AnalyzeCheckpoint {
    after: Option<String>,
    done: u64,
    /// Read every file of the tree, not only the changed ones.
    whole_tree: bool,
    /// Finalize records it as the repository's analysis version.
    analysis_version: i32,
    stats: Stats,
}

/// One batch decided: what to write.
#[derive(Debug, Default)]
struct Decided {
    symbols: Vec<NewSymbol>,
    files: Vec<AnalyzedFile>,
    edges: Vec<Edge>,
}

impl Pipeline {
    pub(crate) async fn analyze(
        &self,
        ctx: &mut RunCtx,
        checkpoint: Option<serde_json::Value>,
    ) -> Result<Transition, PhaseError> {
        if !self.analysis.enabled_for(ctx.project.analysis_enabled) {
            ctx.next_step = self
                .store
                .finish_step_with_stats(
                    &ctx.claim,
                    SyncPhase::Analyze,
                    PhaseStatus::Skipped,
                    serde_json::json!({ "reason": "analysis is off for this project" }),
                    &ctx.stats,
                )
                .await?;
            return Ok(Transition::Continue);
        }
        let mut cp: AnalyzeCheckpoint = checkpoint
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_else(|| AnalyzeCheckpoint {
                whole_tree: ctx.project.repository.analysis_version != Some(ANALYSIS_VERSION),
                analysis_version: ANALYSIS_VERSION,
                stats: ctx.stats.clone(),
                ..Default::default()
            });
        ctx.stats = cp.stats.clone();
        // For the progress bar: the files with an entry, all of them or
        // the ones this sync wrote.
        let total = if cp.whole_tree {
            ctx.stats.files_seen.saturating_sub(ctx.stats.skipped)
        } else {
            ctx.stats.imported
        };
        let batch_size = self.analysis.batch_files.max(1);
        // Symbol versions this attempt wrote.
        let mut written_symbols = 0u64;
        // Set when the last batch's write ended the step too (and started
        // the next one).
        let mut ended = None;
        loop {
            if let Some(stop) = self.write_boundary(ctx).await? {
                return Ok(Transition::Stop(stop));
            }
            let inputs = self
                .store
                .analysis_batch(
                    &ctx.claim,
                    cp.whole_tree,
                    cp.after.as_deref(),
                    batch_size as i64,
                    LANGUAGES,
                )
                .await?;
            let Some(last) = inputs.last() else { break };
            let after = last.path.clone();
            let read = inputs.len();
            // What the files had: their own active symbols and edges, and
            // a renamed file's under its old path.
            let files: Vec<String> = inputs
                .iter()
                .filter(|i| i.content.is_some())
                .flat_map(|i| std::iter::once(i.path.clone()).chain(i.old_path.clone()))
                .collect();
            // Parsing is CPU work: off the async threads, with each file's
            // parse bounded by the limits' timeout; it runs while the
            // files' active symbols and edges are read.
            let limits = self.analysis.limits.clone();
            let parse = async {
                tokio::task::spawn_blocking(move || {
                    inputs
                        .into_iter()
                        .map(|i| {
                            let result = i
                                .content
                                .as_ref()
                                .map(|c| analyze(&i.path, c.as_bytes(), &limits));
                            (i, result)
                        })
                        .collect::<Vec<_>>()
                })
                .await
                .map_err(|e| PhaseError::retryable(format!("the analysis task failed: {e}")))
            };
            let had = async {
                if files.is_empty() {
                    return Ok((Vec::new(), Vec::new()));
                }
                tokio::try_join!(
                    self.store.active_symbols_of(ctx.claim.project_id, &files),
                    self.store.active_edges_of(ctx.claim.project_id, &files),
                )
                .map_err(PhaseError::from)
            };
            let (parsed, (symbols, edges)) = tokio::try_join!(parse, had)?;
            let mut decided = decide(parsed, &symbols, &edges, &mut cp.stats);
            // The new symbol versions are cut into chunks here and written
            // with them: the embed phase would otherwise read each one back
            // and write it a second time for its chunk count.
            cp.stats.chunks += self.chunk_symbols(&mut decided.symbols).await?;
            cp.after = Some(after);
            cp.done += read as u64;
            ctx.stats = cp.stats.clone();
            let checkpoint = serde_json::to_value(&cp).expect("checkpoint serializes");
            // A batch of files without a grammar writes nothing: its
            // checkpoint alone is not worth a transaction (run again, the
            // batch is read again and still writes nothing).
            let empty =
                decided.symbols.is_empty() && decided.files.is_empty() && decided.edges.is_empty();
            // The last batch (fewer files than asked for) ends the step in
            // its own transaction, and starts the next one.
            let last = read < batch_size;
            let written = if empty {
                BatchWrite::Written
            } else if last {
                let (written, next) = self
                    .store
                    .write_last_analysis_batch(
                        &ctx.claim,
                        &decided.symbols,
                        &decided.files,
                        &decided.edges,
                        checkpoint,
                        &ctx.stats,
                    )
                    .await?;
                ended = Some(next);
                written
            } else {
                self.store
                    .write_analysis_batch(
                        &ctx.claim,
                        &decided.symbols,
                        &decided.files,
                        &decided.edges,
                        checkpoint,
                    )
                    .await?
            };
            if written == BatchWrite::CancelRequested {
                return Ok(Transition::Stop(Stop::Cancel));
            }
            written_symbols += decided.symbols.len() as u64;
            failpoints::hit("analyze.batch_written").await;
            self.emit(
                ctx,
                SyncPhase::Analyze,
                PhaseStatus::Running,
                cp.done,
                total.max(cp.done),
                format!(
                    "{} files read, {} analysed, {} symbol versions written",
                    cp.done,
                    cp.stats.analyzed_files,
                    decided.symbols.len()
                ),
            )
            .await;
            if last {
                break;
            }
        }
        // Finalize's queries are planned for the symbols written here (a
        // first import of a few hundred files writes thousands).
        if written_symbols >= crate::phases::STATS_AFTER_ROWS {
            self.refresh_stats(projsync_store::GrownTable::MemoryEntries)
                .await;
        }
        if let Some(next) = ended {
            ctx.next_step = next;
            return Ok(Transition::Continue);
        }
        ctx.next_step = self
            .store
            .finish_step_with_stats(
                &ctx.claim,
                SyncPhase::Analyze,
                PhaseStatus::Succeeded,
                serde_json::to_value(&cp).expect("checkpoint serializes"),
                &ctx.stats,
            )
            .await?;
        Ok(Transition::Continue)
    }
}

impl Pipeline {
    /// Cut symbol versions into chunks as the embed phase would (the
    /// model's tokenizer and limit, or the estimate without a model);
    /// returns how many chunks they make.
    async fn chunk_symbols(&self, symbols: &mut [NewSymbol]) -> Result<u64, PhaseError> {
        if symbols.is_empty() {
            return Ok(0);
        }
        let (counter, opts) = self.embeddings.chunker();
        let contents = symbols
            .iter()
            .enumerate()
            .map(|(i, s)| (i as i64, s.content.clone()))
            .collect();
        let mut total = 0;
        for (i, chunks) in crate::embed::chunk_entries(counter, opts, contents).await? {
            total += chunks.len() as u64;
            symbols[i as usize].chunks = Some(chunks);
        }
        Ok(total)
    }
}

/// Decide what a batch writes, from each file's analysis and what its
/// symbols and edges were; counts into `stats`.
fn decide(
    parsed: Vec<(AnalysisInput, Option<Result<Analysis, Skip>>)>,
    active: &[ActiveSymbol],
    active_edges: &[Edge],
    stats: &mut Stats,
) -> Decided {
    let mut by_file: HashMap<&str, Vec<&ActiveSymbol>> = HashMap::new();
    for s in active {
        by_file.entry(s.source_path.as_str()).or_default().push(s);
    }
    let mut edges_by_file: HashMap<&str, Vec<&Edge>> = HashMap::new();
    for e in active_edges {
        edges_by_file
            .entry(e.from_path.as_str())
            .or_default()
            .push(e);
    }
    let mut out = Decided::default();
    for (input, result) in parsed {
        let analysis = match result {
            None => {
                skipped(stats, "unsupported_language");
                continue;
            }
            Some(Err(skip)) => {
                skipped(stats, skip.reason());
                out.files.push(AnalyzedFile {
                    path: input.path,
                    language: input.language,
                    skip_reason: Some(skip.reason().to_string()),
                    ..Default::default()
                });
                continue;
            }
            Some(Ok(analysis)) => analysis,
        };
        stats.analyzed_files += 1;
        if analysis.partial {
            stats.analyzed_partial += 1;
        }
        // The symbols this file had, by qualified name; a renamed file's
        // under the names they would have at the new path.
        let mut before: HashMap<String, &ActiveSymbol> = by_file
            .get(input.path.as_str())
            .into_iter()
            .flatten()
            .map(|s| (s.qualified_name.clone(), *s))
            .collect();
        let mut renamed: HashMap<String, Uuid> = HashMap::new();
        if let Some(old) = &input.old_path {
            let prefix = format!("{old}#");
            for s in by_file.get(old.as_str()).into_iter().flatten() {
                if let Some(rest) = s.qualified_name.strip_prefix(&prefix) {
                    renamed.insert(format!("{}#{rest}", input.path), s.symbol_id);
                }
            }
        }
        let mut file = AnalyzedFile {
            path: input.path.clone(),
            language: Some(analysis.language.to_string()),
            partial: analysis.partial,
            doc_digest: Some(crate::docs::doc_inputs_digest(&analysis)),
            ..Default::default()
        };
        for symbol in analysis.symbols {
            let previous = before.remove(&symbol.qualified_name);
            if let Some(p) = previous.filter(|p| p.content_hash == symbol.content_hash) {
                file.kept_symbols.push(p.qualified_name.clone());
                continue;
            }
            let symbol_id = previous
                .map(|p| p.symbol_id)
                .or_else(|| renamed.get(&symbol.qualified_name).copied())
                .unwrap_or_else(Uuid::new_v4);
            out.symbols.push(NewSymbol {
                symbol_id,
                source_path: input.path.clone(),
                content_hash: symbol.content_hash,
                blob_sha: input.blob_sha.clone(),
                language: analysis.language.to_string(),
                meta: SymbolMeta {
                    kind: symbol.kind.as_str().to_string(),
                    name: symbol.name,
                    signature: symbol.signature,
                    doc: symbol.doc,
                    start_line: symbol.start_line,
                    end_line: symbol.end_line,
                    parent: symbol.parent,
                    visibility: match symbol.visibility {
                        projsync_analyze::Visibility::Public => "public",
                        projsync_analyze::Visibility::Private => "private",
                    }
                    .to_string(),
                    partial: analysis.partial,
                },
                content: symbol.text,
                qualified_name: symbol.qualified_name,
                chunks: None,
            });
        }
        // The imports: kept when the file has the same ones (same text,
        // line and candidates) as before, else all written again.
        let edges: Vec<Edge> = analysis
            .imports
            .into_iter()
            .map(|i| Edge {
                from_path: input.path.clone(),
                raw: i.raw,
                line: i.line,
                candidates: i.candidates,
            })
            .collect();
        let mut sorted: Vec<&Edge> = edges.iter().collect();
        sorted.sort_by(|a, b| (a.line, &a.raw).cmp(&(b.line, &b.raw)));
        let had = edges_by_file
            .get(input.path.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        file.kept_edges = !had.is_empty() && had == sorted.as_slice();
        if !file.kept_edges {
            out.edges.extend(edges);
        }
        out.files.push(file);
    }
    out
}

fn skipped(stats: &mut Stats, reason: &str) {
    *stats
        .analysis_skipped_by_reason
        .entry(reason.to_string())
        .or_default() += 1;
}
