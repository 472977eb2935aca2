//! Follow a sync live in the terminal: progress bars on a terminal, one line
//! per event otherwise. Redis pub/sub carries the events; the ledger's
//! snapshot is read first (a late start misses nothing that matters) and
//! polled as a fallback if the channel goes quiet or drops.

use crate::Settings;
use anyhow::Result;
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use projsync_domain::{PhaseStatus, ProgressEvent, SyncId, SyncPhase, SyncStatus};
use projsync_store::{Store, SyncRecord};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// indicatif bars (when stderr is a terminal)
    Bars,
    /// one line per event on stdout
    Lines,
}

impl Output {
    pub fn auto() -> Self {
        if std::io::stderr().is_terminal() {
            Output::Bars
        } else {
            Output::Lines
        }
    }
}

struct Renderer {
    output: Output,
    multi: MultiProgress,
    bars: HashMap<SyncPhase, ProgressBar>,
    last_seq: i64,
}

impl Renderer {
    fn new(output: Output) -> Self {
        Self {
            output,
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: HashMap::new(),
            last_seq: 0,
        }
    }

    fn bar(&mut self, phase: SyncPhase) -> &ProgressBar {
        let multi = &self.multi;
        self.bars.entry(phase).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>9.bold} [{bar:30.cyan/blue}] {pos:>6}/{len:<6} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(phase.as_str());
            bar
        })
    }

    fn show(&mut self, ev: &ProgressEvent) {
        if ev.seq <= self.last_seq {
            return;
        }
        self.last_seq = ev.seq;
        match self.output {
            Output::Lines => {
                println!(
                    "[{:>8}] {:<9} {:>6}/{:<6} {}",
                    ev.phase.as_str(),
                    ev.phase_status.as_str(),
                    ev.done,
                    ev.total,
                    ev.message
                );
            }
            Output::Bars => {
                let bar = self.bar(ev.phase).clone();
                if ev.total > 0 {
                    bar.set_length(ev.total);
                    bar.set_position(ev.done);
                }
                match ev.phase_status {
                    PhaseStatus::Succeeded | PhaseStatus::Skipped => {
                        if bar.length() == Some(0) {
                            bar.set_length(1);
                            bar.set_position(1);
                        }
                        bar.finish_with_message(ev.message.clone());
                    }
                    PhaseStatus::Failed => bar.abandon_with_message(ev.message.clone()),
                    _ => bar.set_message(ev.message.clone()),
                }
            }
        }
    }

    fn finish(&self) {
        for bar in self.bars.values() {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

/// Follow `sync_id` until it ends; returns its final record.
pub async fn watch(
    settings: &Settings,
    store: &Store,
    sync_id: SyncId,
    output: Output,
) -> Result<SyncRecord> {
    let opts = settings.queue_options();
    let mut live = match projsync_queue::subscribe(&opts, sync_id).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("{e}; following the ledger instead of live events");
            None
        }
    };
    let mut renderer = Renderer::new(output);
    let mut record = store.sync(sync_id).await?;
    if let Some(p) = &record.progress {
        renderer.show(p);
    }
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    while !record.status.is_terminal() {
        tokio::select! {
            ev = async { match live.as_mut() { Some(s) => s.next().await, None => std::future::pending().await } } => {
                match ev {
                    Some(ev) => {
                        renderer.show(&ev);
                        if ev.is_final() {
                            break;
                        }
                    }
                    None => live = None,
                }
            }
            _ = poll.tick() => {
                record = store.sync(sync_id).await?;
                if let Some(p) = &record.progress {
                    renderer.show(p);
                }
                if live.is_none() {
                    live = projsync_queue::subscribe(&opts, sync_id).await.ok();
                }
            }
        }
    }
    renderer.finish();
    Ok(store.sync(sync_id).await?)
}

/// A short report of a finished sync.
pub fn summary(record: &SyncRecord) -> String {
    let s = &record.stats;
    let elapsed = match (record.started_at, record.finished_at) {
        (Some(a), Some(b)) => format!("{:.1}s", (b - a).num_milliseconds() as f64 / 1000.0),
        _ => "-".into(),
    };
    let head = record
        .head_commit
        .as_deref()
        .map(|h| &h[..h.len().min(12)])
        .unwrap_or("-");
    let mut out = format!(
        "sync {} {}{} in {elapsed}\n  branch    {} @ {head}\n",
        record.id,
        record.status,
        record
            .outcome
            .as_deref()
            .map(|o| format!(" ({o})"))
            .unwrap_or_default(),
        record.branch,
    );
    if record.status == SyncStatus::Failed {
        out.push_str(&format!(
            "  error     in phase {}: {}\n",
            record
                .failed_phase
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            record.error_message.as_deref().unwrap_or("unknown error")
        ));
    }
    out.push_str(&format!(
        "  files     {} seen, {} imported, {} skipped\n  changes   {} added, {} modified, {} deleted, {} renamed, {} unchanged\n",
        s.files_seen, s.imported, s.skipped, s.added, s.modified, s.deleted, s.renamed, s.unchanged
    ));
    if !s.skipped_by_reason.is_empty() {
        let reasons: Vec<String> = s
            .skipped_by_reason
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        out.push_str(&format!("  skipped   {}\n", reasons.join(", ")));
    }
    if s.analyzed_files > 0 || s.symbols_changed > 0 || s.docs_regenerated > 0 {
        out.push_str(&format!(
            "  code      {} files analysed ({} partial), {} symbols changed, {} docs regenerated\n",
            s.analyzed_files, s.analyzed_partial, s.symbols_changed, s.docs_regenerated
        ));
    }
    out
}
