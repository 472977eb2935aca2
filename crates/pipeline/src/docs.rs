//! The docs phase: one generated doc per module (a directory with code),
//! an entry of kind `doc` named `dir/` (`/` for the top), made without a
//! model from what the module is once the sync is finalized: its purpose
//! (its module-level doc comment, or its README), its public symbols with
//! their signatures and first doc lines, its files, and what it depends on
//! and what depends on it.
//!
//! Only the modules whose inputs the sync may change are looked at (the
//! directories of the paths it changes, and of what their imports name,
//! before and after), and a doc whose inputs are the same as its active
//! version's gets no new version. With `docs.llm` configured, a chat model
//! adds a short summary at the top, cached by the hash of the inputs.

use crate::{failpoints, Pipeline, RunCtx, Stop, Transition, ANALYSIS_VERSION};
use projsync_analyze::{analyze, Lang};
use projsync_domain::{content_hash, PhaseError, PhaseStatus, SyncPhase};
use projsync_embed::chat::ChatClient;
use projsync_store::{BatchWrite, ModuleState, NewDoc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

/// How generated docs are made in this deployment.
#[derive(Clone)]
pub struct DocsSettings {
    /// Generate module docs (with code analysis on for the project).
    pub enabled: bool,
    /// Modules per batch: one checkpoint and one progress event each.
    pub batch_modules: usize,
    /// The chat model that writes each doc's summary (`docs.llm`); none:
    /// docs without a summary.
    pub llm: Option<Arc<ChatClient>>,
}

impl Default for DocsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            batch_modules: 50,
            llm: None,
        }
    }
}

impl std::fmt::Debug for DocsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocsSettings")
            .field("enabled", &self.enabled)
            .field("batch_modules", &self.batch_modules)
            .field("llm", &self.llm.as_ref().map(|c| c.options().model.clone()))
            .finish()
    }
}

/// At most this many symbols, files and modules in one list of a doc; the
/// rest is counted.
const LIST_MAX: usize = 200;

/// What the model is asked for.
const SUMMARY_PROMPT: &str = "You summarise one module of a code base for a developer \
     knowledge base. From the generated description you are given, write two or three \
     plain sentences saying what the module is for and how it fits with the others. \
     No lists, no headings, no code.";

#[derive(Debug, Default, Serialize, Deserialize)]
struct DocsCheckpoint {
    /// Every module up to this directory (in order) is written.
    after: Option<String>,
    done: u64,
    written: u64,
    removed: u64,
}

impl Pipeline {
    pub(crate) async fn docs(
        &self,
        ctx: &mut RunCtx,
        checkpoint: Option<serde_json::Value>,
    ) -> Result<Transition, PhaseError> {
        let why_not = if !self.docs.enabled {
            Some("generated docs are off (docs.enabled)")
        } else if !self.analysis.enabled_for(ctx.project.analysis_enabled) {
            Some("code analysis is off for this project")
        } else {
            None
        };
        if let Some(reason) = why_not {
            ctx.next_step = self
                .store
                .finish_step_with_stats(
                    &ctx.claim,
                    SyncPhase::Docs,
                    PhaseStatus::Skipped,
                    serde_json::json!({ "reason": reason }),
                    &ctx.stats,
                )
                .await?;
            return Ok(Transition::Continue);
        }
        let mut cp: DocsCheckpoint = checkpoint
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        // The same rule as analyze's: a tree not all analysed by this
        // version gets every module's doc looked at.
        let whole_tree = ctx.project.repository.analysis_version != Some(ANALYSIS_VERSION);
        // A whole tree's files are read once, by directory: read per
        // module, each read walked all of them (a first import of 100,000
        // files has 1,000 modules).
        let mut files_by_dir = if whole_tree {
            Some(self.store.next_files_by_dir(&ctx.claim).await?)
        } else {
            None
        };
        let candidates: Vec<String> = match &files_by_dir {
            Some(by_dir) => by_dir.keys().cloned().collect(),
            None => self.store.doc_candidates(&ctx.claim).await?,
        }
        .into_iter()
        .filter(|d| cp.after.as_ref().is_none_or(|a| d > a))
        .collect();
        let total = cp.done + candidates.len() as u64;
        for batch in candidates.chunks(self.docs.batch_modules.max(1)) {
            if let Some(stop) = self.write_boundary(ctx).await? {
                return Ok(Transition::Stop(stop));
            }
            let paths: Vec<String> = batch.iter().map(|d| doc_path(d)).collect();
            let active = self
                .store
                .active_doc_keys(ctx.claim.project_id, &paths)
                .await?;
            let mut docs = Vec::new();
            let mut removals = Vec::new();
            for (dir, path) in batch.iter().zip(paths) {
                let files = files_by_dir
                    .as_mut()
                    .map(|by_dir| by_dir.remove(dir).unwrap_or_default());
                let state = self.store.module_state(&ctx.claim, dir, files).await?;
                if !state
                    .files
                    .iter()
                    .any(|(p, _)| Lang::from_path(p).is_some())
                {
                    // No code (any more): no doc.
                    if active.contains_key(&path) {
                        removals.push(path);
                    }
                    continue;
                }
                let purpose = self.purpose(ctx, dir, &state).await?;
                let body = render(dir, purpose.as_deref(), &state);
                let model = self.docs.llm.as_ref().map(|c| c.options().model.clone());
                let inputs_hash = content_hash(&body);
                let inputs_key = content_hash(&format!(
                    "{inputs_hash}\n{}",
                    model.as_deref().unwrap_or("")
                ));
                if active.get(&path) == Some(&inputs_key) {
                    continue;
                }
                let summary = match &self.docs.llm {
                    Some(llm) => Some(self.summary(llm, &inputs_hash, &body).await?),
                    None => None,
                };
                let content = with_summary(&body, summary.as_deref());
                docs.push(NewDoc {
                    content_hash: content_hash(&content),
                    meta: serde_json::json!({
                        "inputs_key": inputs_key,
                        "files": state.files.len(),
                        "symbols": state.symbols.len(),
                        "summary_model": model,
                    }),
                    path,
                    content,
                });
            }
            cp.after = batch.last().cloned();
            cp.done += batch.len() as u64;
            cp.written += docs.len() as u64;
            cp.removed += removals.len() as u64;
            let checkpoint = serde_json::to_value(&cp).expect("checkpoint serializes");
            // Nothing to write: no transaction for the checkpoint alone
            // (run again, the batch is looked at again and writes nothing).
            if !(docs.is_empty() && removals.is_empty())
                && self
                    .store
                    .write_docs_batch(&ctx.claim, &docs, &removals, checkpoint)
                    .await?
                    == BatchWrite::CancelRequested
            {
                return Ok(Transition::Stop(Stop::Cancel));
            }
            failpoints::hit("docs.batch_written").await;
            self.emit(
                ctx,
                SyncPhase::Docs,
                PhaseStatus::Running,
                cp.done,
                total,
                format!(
                    "{}/{total} modules looked at, {} docs written, {} removed",
                    cp.done, cp.written, cp.removed
                ),
            )
            .await;
        }
        ctx.next_step = self
            .store
            .finish_step_with_stats(
                &ctx.claim,
                SyncPhase::Docs,
                PhaseStatus::Succeeded,
                serde_json::to_value(&cp).expect("checkpoint serializes"),
                &ctx.stats,
            )
            .await?;
        Ok(Transition::Continue)
    }

    /// The module's purpose: the module-level doc comment of its main file
    /// (Rust `lib.rs`, `mod.rs`, `main.rs` or the `dir.rs` beside it,
    /// Python `__init__.py`, JS/TS `index.*`, Go's package comment, Java's
    /// `package-info.java`, else any of its files), else the first
    /// paragraph of its README.
    async fn purpose(
        &self,
        ctx: &RunCtx,
        dir: &str,
        state: &ModuleState,
    ) -> Result<Option<String>, PhaseError> {
        let join = |name: &str| {
            if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            }
        };
        let mut wanted: Vec<String> = [
            "lib.rs",
            "mod.rs",
            "main.rs",
            "__init__.py",
            "index.ts",
            "index.tsx",
            "index.js",
            "doc.go",
            "package-info.java",
        ]
        .iter()
        .map(|n| join(n))
        .collect();
        if !dir.is_empty() {
            wanted.insert(3, format!("{dir}.rs"));
        }
        // Then the module's other code files, a few of them.
        let others: Vec<String> = state
            .files
            .iter()
            .filter(|(p, _)| Lang::from_path(p).is_some() && !wanted.contains(p))
            .take(8)
            .map(|(p, _)| p.clone())
            .collect();
        wanted.extend(others);
        let readmes: Vec<String> = [
            "README.md",
            "README",
            "readme.md",
            "README.rst",
            "README.txt",
        ]
        .iter()
        .map(|n| join(n))
        .collect();
        let all: Vec<String> = wanted.iter().chain(&readmes).cloned().collect();
        let contents = self.store.next_contents(&ctx.claim, &all).await?;
        let limits = self.analysis.limits.clone();
        let found = tokio::task::spawn_blocking(move || {
            for path in &wanted {
                let Some(content) = contents.get(path) else {
                    continue;
                };
                if let Ok(a) = analyze(path, content.as_bytes(), &limits) {
                    if let Some(doc) = a.module_doc.filter(|d| !d.trim().is_empty()) {
                        return Some(doc);
                    }
                }
            }
            readmes
                .iter()
                .find_map(|p| contents.get(p).and_then(|c| first_paragraph(c)))
        })
        .await
        .map_err(|e| PhaseError::retryable(format!("the docs task failed: {e}")))?;
        Ok(found)
    }

    /// The model's summary of a doc's inputs, from the cache or the model.
    async fn summary(
        &self,
        llm: &ChatClient,
        inputs_hash: &str,
        body: &str,
    ) -> Result<String, PhaseError> {
        let model = &llm.options().model;
        if let Some(cached) = self.store.doc_summary(model, inputs_hash).await? {
            return Ok(cached);
        }
        let summary = llm
            .complete(SUMMARY_PROMPT, body)
            .await
            .map_err(|e| crate::embed::provider_error("docs.llm summary model", e))?;
        // A cache: a failure to keep it costs a model call later, no more.
        if let Err(e) = self
            .store
            .save_doc_summary(model, inputs_hash, &summary)
            .await
        {
            tracing::warn!("cannot cache a doc summary: {e}");
        }
        Ok(summary)
    }
}

/// A hash of everything a file gives its module's doc (see [`render`] and
/// the purpose): its module doc comment, its public symbols (name, kind,
/// signature, line, doc) and its imports (text and candidates). Two
/// versions of a file with the same digest make the same doc, so a sync
/// that only rewrites a file's bodies looks at no doc (`doc_candidates`).
/// Whatever `render` comes to read from a file must be hashed here too.
pub(crate) fn doc_inputs_digest(analysis: &projsync_analyze::Analysis) -> String {
    let mut text = format!("doc\t{:?}\n", analysis.module_doc);
    for s in &analysis.symbols {
        if s.visibility == projsync_analyze::Visibility::Public {
            let _ = writeln!(
                text,
                "symbol\t{:?}\t{}\t{:?}\t{}\t{:?}",
                s.qualified_name,
                s.kind.as_str(),
                s.signature,
                s.start_line,
                s.doc
            );
        }
    }
    for i in &analysis.imports {
        let _ = writeln!(text, "import\t{:?}\t{:?}", i.raw, i.candidates);
    }
    content_hash(&text)
}

/// A module's doc entry path: `dir/`, `/` for the top.
pub fn doc_path(dir: &str) -> String {
    format!("{dir}/")
}

/// The deterministic part of a module's doc.
fn render(dir: &str, purpose: Option<&str>, state: &ModuleState) -> String {
    let name = if dir.is_empty() { "/" } else { dir };
    let mut out = format!("# Module `{name}`\n\n");
    match purpose {
        Some(p) => {
            let _ = writeln!(out, "{}\n", p.trim());
        }
        None => out.push_str("_No module documentation (doc comment or README)._\n\n"),
    }
    let public: Vec<_> = state
        .symbols
        .iter()
        .filter(|s| s.meta.visibility == "public")
        .collect();
    let _ = writeln!(out, "## Public symbols\n");
    if public.is_empty() {
        out.push_str("None.\n");
    }
    for s in public.iter().take(LIST_MAX) {
        let line = s
            .meta
            .doc
            .as_deref()
            .and_then(|d| d.lines().map(str::trim).find(|l| !l.is_empty()))
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "- `{}` ({} `{}`, line {}){line}",
            s.meta.signature, s.meta.kind, s.qualified_name, s.meta.start_line
        );
    }
    more(&mut out, public.len());
    let _ = writeln!(out, "\n## Files\n");
    for (path, language) in state.files.iter().take(LIST_MAX) {
        match language {
            Some(l) => {
                let _ = writeln!(out, "- `{path}` ({l})");
            }
            None => {
                let _ = writeln!(out, "- `{path}`");
            }
        }
    }
    more(&mut out, state.files.len());
    // Other modules, by directory, with how many imports.
    let modules = |edges: Vec<&str>| -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for path in edges {
            let d = dir_of(path);
            if d != dir {
                *m.entry(doc_path(d)).or_insert(0) += 1;
            }
        }
        m
    };
    let depends = modules(
        state
            .imports
            .iter()
            .filter_map(|e| e.target.as_deref())
            .collect(),
    );
    let external: BTreeSet<&str> = state
        .imports
        .iter()
        .filter(|e| e.target.is_none())
        .map(|e| e.raw.as_str())
        .collect();
    let _ = writeln!(out, "\n## Depends on\n");
    if depends.is_empty() && external.is_empty() {
        out.push_str("Nothing outside the module.\n");
    }
    list_modules(&mut out, &depends);
    if !external.is_empty() {
        let shown: Vec<String> = external
            .iter()
            .take(LIST_MAX)
            .map(|r| format!("`{r}`"))
            .collect();
        let _ = writeln!(out, "- from elsewhere: {}", shown.join(", "));
        more(&mut out, external.len());
    }
    let users = modules(
        state
            .importers
            .iter()
            .map(|e| e.from_path.as_str())
            .collect(),
    );
    let _ = writeln!(out, "\n## Used by\n");
    if users.is_empty() {
        out.push_str("No other module imports it.\n");
    }
    list_modules(&mut out, &users);
    out
}

fn list_modules(out: &mut String, modules: &BTreeMap<String, usize>) {
    for (m, n) in modules.iter().take(LIST_MAX) {
        let s = if *n == 1 { "" } else { "s" };
        let _ = writeln!(out, "- `{m}` ({n} import{s})");
    }
    more(out, modules.len());
}

fn more(out: &mut String, n: usize) {
    if n > LIST_MAX {
        let _ = writeln!(out, "- … and {} more", n - LIST_MAX);
    }
}

/// The doc with the model's summary under its title.
fn with_summary(body: &str, summary: Option<&str>) -> String {
    let Some(summary) = summary else {
        return body.to_string();
    };
    match body.split_once("\n\n") {
        Some((title, rest)) => format!("{title}\n\n**Summary:** {}\n\n{rest}", summary.trim()),
        None => format!("{body}\n\n**Summary:** {}\n", summary.trim()),
    }
}

fn dir_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

/// A README's first paragraph of prose (headings, badges and blank lines
/// before it skipped).
fn first_paragraph(text: &str) -> Option<String> {
    let mut lines = Vec::new();
    for line in text.lines().map(str::trim) {
        let skip = line.starts_with('#')
            || line.starts_with("[![")
            || line.starts_with("![")
            || line.starts_with("===")
            || line.starts_with("---")
            || line.starts_with("<");
        if line.is_empty() || skip {
            if lines.is_empty() {
                continue;
            }
            break;
        }
        lines.push(line);
    }
    (!lines.is_empty()).then(|| lines.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use projsync_store::{ModuleEdge, ModuleSymbol, SymbolMeta};

    #[test]
    fn a_readme_gives_its_first_paragraph() {
        let readme = "# Store\n\n[![ci](x)](y)\n\nThe ledger in\nPostgres.\n\nMore.\n";
        assert_eq!(
            first_paragraph(readme).as_deref(),
            Some("The ledger in Postgres.")
        );
        assert_eq!(first_paragraph("# Title only\n"), None);
    }

    #[test]
    fn a_doc_lists_public_symbols_files_and_modules_both_ways() {
        let meta = |kind: &str, sig: &str, vis: &str, doc: Option<&str>| SymbolMeta {
            kind: kind.into(),
            name: "x".into(),
            signature: sig.into(),
            doc: doc.map(Into::into),
            start_line: 3,
            end_line: 5,
            parent: None,
            visibility: vis.into(),
            partial: false,
        };
        let state = ModuleState {
            files: vec![("src/store/mod.rs".into(), Some("rust".into()))],
            symbols: vec![
                ModuleSymbol {
                    qualified_name: "src/store/mod.rs#open".into(),
                    path: "src/store/mod.rs".into(),
                    meta: meta(
                        "function",
                        "pub fn open()",
                        "public",
                        Some("Opens it.\nMore."),
                    ),
                },
                ModuleSymbol {
                    qualified_name: "src/store/mod.rs#helper".into(),
                    path: "src/store/mod.rs".into(),
                    meta: meta("function", "fn helper()", "private", None),
                },
            ],
            imports: vec![
                ModuleEdge {
                    from_path: "src/store/mod.rs".into(),
                    raw: "crate::domain::Id".into(),
                    target: Some("src/domain/mod.rs".into()),
                },
                ModuleEdge {
                    from_path: "src/store/mod.rs".into(),
                    raw: "sqlx".into(),
                    target: None,
                },
            ],
            importers: vec![ModuleEdge {
                from_path: "src/api.rs".into(),
                raw: "crate::store".into(),
                target: Some("src/store/mod.rs".into()),
            }],
        };
        let doc = render("src/store", Some("The ledger."), &state);
        assert_eq!(
            doc,
            "# Module `src/store`\n\nThe ledger.\n\n## Public symbols\n\n\
             - `pub fn open()` (function `src/store/mod.rs#open`, line 3): Opens it.\n\n\
             ## Files\n\n- `src/store/mod.rs` (rust)\n\n\
             ## Depends on\n\n- `src/domain/` (1 import)\n- from elsewhere: `sqlx`\n\n\
             ## Used by\n\n- `src/` (1 import)\n"
        );
        let summed = with_summary(&doc, Some("Keeps the ledger. "));
        assert!(summed.starts_with(
            "# Module `src/store`\n\n**Summary:** Keeps the ledger.\n\nThe ledger.\n"
        ));
        assert_eq!(doc_path(""), "/");
        assert_eq!(doc_path("src"), "src/");
    }
}
