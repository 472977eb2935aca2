//! The process's metrics, in Prometheus' text exposition format (0.0.4).
//!
//! One [`Metrics`] per process (the API's, a worker's), handed to whatever
//! records into it: the pipeline, the reconciler, the GitHub source, and the
//! health router that serves `/metrics`. Nothing is global, so tests that run
//! several apps in one process each read their own numbers. Every family is
//! named `projsync_…`.
//!
//! Labels never carry a tenant, a project, a repository or a path:
//! `/metrics` is served without authentication (and outside the API's Host
//! check), so it must hold nothing but aggregate numbers, and label values
//! stay few (phases, statuses, GitHub endpoint kinds).
//!
//! This crate does no I/O. The ledger's numbers (syncs by status, the queue)
//! are read by whoever serves `/metrics`, at scrape time, and handed in with
//! [`Metrics::set_ledger`].

use projsync_domain::{SyncPhase, SyncStatus};
use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::Arc;
use std::time::Duration;

/// The content type of [`Metrics::render`]: Prometheus' text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Which process the metrics are of: a worker also exports what only the
/// pipeline records (phases, finished syncs, retries, leases, the
/// reconciler), the API only what it can know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    Api,
    Worker,
}

/// Seconds a phase may take: from a no-op prepare (milliseconds) to the
/// first import of a large repository with its embeddings (an hour).
const PHASE_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    3600.0,
];

/// The MCP server's tools (`projsync_mcp_tool_calls_total{tool}`).
pub const MCP_TOOLS: [&str; 7] = [
    "search",
    "read_entry",
    "list_symbols",
    "find_references",
    "sync_status",
    "start_sync",
    "list_projects",
];

/// The outcomes of a webhook delivery (`projsync_webhook_deliveries_total`):
/// a sync `queued`, a request `coalesced` into the project's queued sync, a
/// sync `wanted` after the running one, `ignored` (nothing to sync: a ping,
/// another branch, an unknown repository, another event), a `duplicate`
/// delivery, `unauthorized` (no or a wrong signature), `invalid` (a missing
/// header, a body too large or not JSON).
pub const WEBHOOK_OUTCOMES: [&str; 7] = [
    "queued",
    "coalesced",
    "wanted",
    "ignored",
    "duplicate",
    "unauthorized",
    "invalid",
];

/// The label value of an unset outcome.
pub const NO_OUTCOME: &str = "none";

/// The ledger's numbers at one scrape, across tenants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LedgerSnapshot {
    /// Syncs by status and outcome, with their count.
    pub syncs: Vec<LedgerSyncs>,
    /// Queued syncs (scheduled retries included).
    pub queued: i64,
    /// Seconds since the oldest queued sync was created (0: none queued).
    pub oldest_queued_age_secs: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSyncs {
    pub status: String,
    /// `changed`, `unchanged`, `restored` or `embedded` for a succeeded
    /// sync, the error class (`fatal`, `retryable`) for a failed one,
    /// [`NO_OUTCOME`] otherwise.
    pub outcome: String,
    pub count: i64,
}

/// Where GitHub's answer to a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GithubStatus {
    /// The HTTP status GitHub answered.
    Http(u16),
    /// No answer: a connection error or a timeout.
    NoAnswer,
}

/// The process's registry and its families. Cheap to clone: clones share
/// the numbers.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    // The ledger, read at scrape time (API and workers).
    syncs: IntGaugeVec,
    queue_depth: IntGaugeVec,
    queue_oldest_age: GaugeVec,
    ledger_scrape_success: Gauge,
    // GitHub (whichever process opens a GitHub source).
    github_requests: IntCounterVec,
    github_rate_limit_remaining: IntGaugeVec,
    // The pipeline (workers).
    syncs_finished: IntCounterVec,
    phase_duration: HistogramVec,
    files_imported: IntCounter,
    chunks: IntCounter,
    embeddings: IntCounterVec,
    leases_lost: IntCounter,
    retries: IntCounterVec,
    reconciler_pushes: IntCounter,
    // GitHub webhook deliveries (the API).
    webhook_deliveries: IntCounterVec,
    mcp_tool_calls: IntCounterVec,
    schedule_fires: IntCounterVec,
    wanted_started: IntCounter,
    /// Serialises scrapes: each resets and refills the ledger families.
    scrape: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    /// A worker's families in a registry of their own (what a component
    /// built without the process's metrics records into, unread).
    fn default() -> Self {
        Self::new(Process::Worker)
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    /// A new registry with the families of `process`.
    pub fn new(process: Process) -> Self {
        // The names and labels are constants: building them cannot fail.
        let inner = Inner {
            registry: Registry::new(),
            syncs: IntGaugeVec::new(
                opts(
                    "projsync_syncs",
                    "Syncs in the ledger (every tenant) by status and outcome, read at scrape time",
                ),
                &["status", "outcome"],
            )
            .expect("valid metric"),
            queue_depth: IntGaugeVec::new(
                opts(
                    "projsync_queue_depth",
                    "Syncs waiting in the ledger (status queued, scheduled retries included), read at scrape time",
                ),
                &[],
            )
            .expect("valid metric"),
            queue_oldest_age: GaugeVec::new(
                opts(
                    "projsync_queue_oldest_age_seconds",
                    "Seconds since the oldest queued sync was created (0 when none is queued), read at scrape time",
                ),
                &[],
            )
            .expect("valid metric"),
            ledger_scrape_success: Gauge::with_opts(opts(
                "projsync_ledger_scrape_success",
                "1 when this scrape read the ledger; 0 when it could not, and the ledger's families are absent",
            ))
            .expect("valid metric"),
            github_requests: IntCounterVec::new(
                opts(
                    "projsync_github_requests_total",
                    "Requests sent to GitHub by endpoint and answer (an HTTP status, or `error` when none came)",
                ),
                &["endpoint", "status"],
            )
            .expect("valid metric"),
            github_rate_limit_remaining: IntGaugeVec::new(
                opts(
                    "projsync_github_rate_limit_remaining",
                    "Requests left in the rate-limit window, from the last x-ratelimit-remaining this process saw, by resource",
                ),
                &["resource"],
            )
            .expect("valid metric"),
            syncs_finished: IntCounterVec::new(
                opts(
                    "projsync_syncs_finished_total",
                    "Syncs this worker ended, by final status and outcome",
                ),
                &["status", "outcome"],
            )
            .expect("valid metric"),
            phase_duration: HistogramVec::new(
                HistogramOpts::new(
                    "projsync_phase_duration_seconds",
                    "Duration of the phase attempts that succeeded, by phase",
                )
                .buckets(PHASE_BUCKETS.to_vec()),
                &["phase"],
            )
            .expect("valid metric"),
            files_imported: IntCounter::with_opts(opts(
                "projsync_files_imported_total",
                "Memory entry versions written by the syncs this worker finished",
            ))
            .expect("valid metric"),
            chunks: IntCounter::with_opts(opts(
                "projsync_chunks_total",
                "Chunks of the entry versions written by the syncs this worker finished",
            ))
            .expect("valid metric"),
            embeddings: IntCounterVec::new(
                opts(
                    "projsync_embeddings_total",
                    "Chunk vectors of the syncs and backfills this worker finished, by source: \
                     `model` (computed) or `cache` (found in the vector cache)",
                ),
                &["source"],
            )
            .expect("valid metric"),
            leases_lost: IntCounter::with_opts(opts(
                "projsync_leases_lost_total",
                "Runs that lost their sync's lease to another worker",
            ))
            .expect("valid metric"),
            retries: IntCounterVec::new(
                opts(
                    "projsync_retries_total",
                    "Phase attempts that failed and were scheduled again, by phase and reason \
                     (`error`, or `rate_limited`, which costs no attempt)",
                ),
                &["phase", "reason"],
            )
            .expect("valid metric"),
            reconciler_pushes: IntCounter::with_opts(opts(
                "projsync_reconciler_pushes_total",
                "Syncs the reconciler pushed to the queue again (their job may have been lost)",
            ))
            .expect("valid metric"),
            webhook_deliveries: IntCounterVec::new(
                opts(
                    "projsync_webhook_deliveries_total",
                    "GitHub webhook deliveries this API answered, by outcome (see WEBHOOK_OUTCOMES)",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
            mcp_tool_calls: IntCounterVec::new(
                opts(
                    "projsync_mcp_tool_calls_total",
                    "MCP tool calls this API answered over /mcp, by tool and outcome (`ok`, or \
                     `error`: a tool error the assistant was shown)",
                ),
                &["tool", "outcome"],
            )
            .expect("valid metric"),
            schedule_fires: IntCounterVec::new(
                opts(
                    "projsync_schedule_fires_total",
                    "Due project schedules this worker's scheduler fired, by outcome \
                     (`started` a sync; `busy`: the project had a queued or running sync, \
                     the tick is consumed; `stopped`: the schedule no longer fires)",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
            wanted_started: IntCounter::with_opts(opts(
                "projsync_wanted_syncs_started_total",
                "Wanted syncs (asked for while the project's sync ran) this worker's \
                 scheduler started once that sync ended",
            ))
            .expect("valid metric"),
            scrape: std::sync::Mutex::new(()),
        };
        let build_info = IntGaugeVec::new(
            opts(
                "projsync_build_info",
                "The projsync version of this process",
            ),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let r = &inner.registry;
        let mut families: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(build_info),
            Box::new(inner.syncs.clone()),
            Box::new(inner.queue_depth.clone()),
            Box::new(inner.queue_oldest_age.clone()),
            Box::new(inner.ledger_scrape_success.clone()),
            Box::new(inner.github_requests.clone()),
            Box::new(inner.github_rate_limit_remaining.clone()),
        ];
        if process == Process::Api {
            // Every outcome has a series from the start.
            for outcome in WEBHOOK_OUTCOMES {
                inner.webhook_deliveries.with_label_values(&[outcome]);
            }
            families.push(Box::new(inner.webhook_deliveries.clone()));
            for tool in MCP_TOOLS {
                for outcome in ["ok", "error"] {
                    inner.mcp_tool_calls.with_label_values(&[tool, outcome]);
                }
            }
            families.push(Box::new(inner.mcp_tool_calls.clone()));
        }
        if process == Process::Worker {
            // Every phase has a series from the start, so that rates and
            // quantiles exist before the first sync.
            for phase in SyncPhase::ALL {
                inner.phase_duration.with_label_values(&[phase.as_str()]);
            }
            for outcome in ["started", "busy", "stopped"] {
                inner.schedule_fires.with_label_values(&[outcome]);
            }
            families.extend([
                Box::new(inner.syncs_finished.clone()) as Box<dyn prometheus::core::Collector>,
                Box::new(inner.phase_duration.clone()),
                Box::new(inner.files_imported.clone()),
                Box::new(inner.chunks.clone()),
                Box::new(inner.embeddings.clone()),
                Box::new(inner.leases_lost.clone()),
                Box::new(inner.retries.clone()),
                Box::new(inner.reconciler_pushes.clone()),
                Box::new(inner.schedule_fires.clone()),
                Box::new(inner.wanted_started.clone()),
            ]);
        }
        for family in families {
            r.register(family).expect("each family is registered once");
        }
        Self(Arc::new(inner))
    }

    /// The registry, to add a process's own collectors.
    pub fn registry(&self) -> &Registry {
        &self.0.registry
    }

    /// Every family in the text exposition format, the ledger's as given
    /// (`None`: the ledger could not be read; its families are left out
    /// rather than shown stale).
    pub fn render(&self, ledger: Option<&LedgerSnapshot>) -> String {
        let m = &self.0;
        let _one_scrape = m.scrape.lock().unwrap_or_else(|e| e.into_inner());
        m.syncs.reset();
        m.queue_depth.reset();
        m.queue_oldest_age.reset();
        match ledger {
            Some(l) => {
                self.set_ledger(l);
                m.ledger_scrape_success.set(1.0);
            }
            None => m.ledger_scrape_success.set(0.0),
        }
        let mut out = String::new();
        // Encoding into a String fails only on a metric without a value,
        // which the families above never have.
        if let Err(e) = TextEncoder::new().encode_utf8(&m.registry.gather(), &mut out) {
            out.push_str(&format!("# projsync: cannot encode the metrics: {e}\n"));
        }
        out
    }

    fn set_ledger(&self, l: &LedgerSnapshot) {
        let m = &self.0;
        // Every status has a series, 0 when the ledger has none.
        for status in SyncStatus::ALL {
            if !l.syncs.iter().any(|s| s.status == status.as_str()) {
                m.syncs
                    .with_label_values(&[status.as_str(), NO_OUTCOME])
                    .set(0);
            }
        }
        for s in &l.syncs {
            m.syncs
                .with_label_values(&[s.status.as_str(), s.outcome.as_str()])
                .set(s.count);
        }
        m.queue_depth.with_label_values::<&str>(&[]).set(l.queued);
        m.queue_oldest_age
            .with_label_values::<&str>(&[])
            .set(l.oldest_queued_age_secs.max(0.0));
    }

    /// A sync ended on this worker: `outcome` as in the ledger
    /// ([`LedgerSyncs::outcome`]).
    pub fn sync_finished(&self, status: SyncStatus, outcome: &str) {
        self.0
            .syncs_finished
            .with_label_values(&[status.as_str(), outcome])
            .inc();
    }

    /// How many syncs have ended on this worker, whatever their status
    /// (the sum of [`Metrics::sync_finished`]'s counts): a process that runs
    /// a worker learns that a sync ended without asking the database.
    pub fn syncs_finished_total(&self) -> u64 {
        use prometheus::core::Collector;
        self.0
            .syncs_finished
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// A phase attempt succeeded after `elapsed`.
    pub fn phase_succeeded(&self, phase: SyncPhase, elapsed: Duration) {
        self.0
            .phase_duration
            .with_label_values(&[phase.as_str()])
            .observe(elapsed.as_secs_f64());
    }

    /// What a finished sync wrote: entry versions, chunks, and vectors
    /// computed by the model or found in the cache.
    pub fn sync_work(&self, files_imported: u64, chunks: u64, embedded: u64, cache_hits: u64) {
        let m = &self.0;
        m.files_imported.inc_by(files_imported);
        m.chunks.inc_by(chunks);
        m.embeddings.with_label_values(&["model"]).inc_by(embedded);
        m.embeddings
            .with_label_values(&["cache"])
            .inc_by(cache_hits);
    }

    /// A run lost its lease to another worker.
    pub fn lease_lost(&self) {
        self.0.leases_lost.inc();
    }

    /// A failed phase attempt was scheduled again.
    pub fn retry(&self, phase: SyncPhase, rate_limited: bool) {
        let reason = if rate_limited {
            "rate_limited"
        } else {
            "error"
        };
        self.0
            .retries
            .with_label_values(&[phase.as_str(), reason])
            .inc();
    }

    /// The API answered a webhook delivery with `outcome`, one of
    /// [`WEBHOOK_OUTCOMES`] (anything else is counted as `invalid`).
    pub fn webhook_delivery(&self, outcome: &str) {
        let outcome = if WEBHOOK_OUTCOMES.contains(&outcome) {
            outcome
        } else {
            "invalid"
        };
        self.0
            .webhook_deliveries
            .with_label_values(&[outcome])
            .inc();
    }

    /// The MCP server answered a call of `tool` (one of [`MCP_TOOLS`];
    /// others are not counted), `ok` or with a tool error.
    pub fn mcp_tool_call(&self, tool: &str, ok: bool) {
        if MCP_TOOLS.contains(&tool) {
            self.0
                .mcp_tool_calls
                .with_label_values(&[tool, if ok { "ok" } else { "error" }])
                .inc();
        }
    }

    /// The reconciler pushed a sync again.
    pub fn reconciler_push(&self) {
        self.0.reconciler_pushes.inc();
    }

    /// A due schedule fired: `started`, `busy` or `stopped`.
    pub fn schedule_fire(&self, outcome: &'static str) {
        self.0.schedule_fires.with_label_values(&[outcome]).inc();
    }

    /// The scheduler started a wanted sync.
    pub fn wanted_started(&self) {
        self.0.wanted_started.inc();
    }

    /// A request to GitHub ended; `endpoint` is the kind of request
    /// (`tree`, `blob`, …), never a URL.
    pub fn github_request(&self, endpoint: &'static str, status: GithubStatus) {
        let status = match status {
            GithubStatus::Http(code) => code.to_string(),
            GithubStatus::NoAnswer => "error".to_string(),
        };
        self.0
            .github_requests
            .with_label_values(&[endpoint, status.as_str()])
            .inc();
    }

    /// GitHub's `x-ratelimit-remaining` (and `x-ratelimit-resource`, `core`
    /// when absent) of an answer.
    pub fn github_rate_limit(&self, resource: Option<&str>, remaining: i64) {
        // The resource names are GitHub's few (core, search, graphql, …);
        // anything else is not let into a label.
        let resource = match resource.map(str::trim) {
            Some(r)
                if !r.is_empty()
                    && r.len() <= 32
                    && r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
            {
                r
            }
            _ => "core",
        };
        self.0
            .github_rate_limit_remaining
            .with_label_values(&[resource])
            .set(remaining);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn each_process_renders_its_own_families() {
        let worker = Metrics::new(Process::Worker);
        let api = Metrics::new(Process::Api);
        worker.phase_succeeded(SyncPhase::Import, Duration::from_millis(300));
        worker.sync_finished(SyncStatus::Succeeded, "changed");
        let w = worker.render(None);
        assert!(w.contains("# TYPE projsync_phase_duration_seconds histogram"));
        assert_eq!(
            sample_value(
                &w,
                "projsync_phase_duration_seconds_count{phase=\"import\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample_value(&w, "projsync_phase_duration_seconds_count{phase=\"scan\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample_value(
                &w,
                "projsync_syncs_finished_total{outcome=\"changed\",status=\"succeeded\"}"
            ),
            Some(1.0)
        );
        let a = api.render(None);
        assert!(!a.contains("projsync_phase_duration_seconds"), "{a}");
        assert!(!a.contains("projsync_syncs_finished_total"), "{a}");
        assert!(a.contains("projsync_build_info{version="), "{a}");
    }

    #[test]
    fn the_ledger_families_are_absent_when_the_ledger_is_not_read() {
        let m = Metrics::new(Process::Api);
        let snapshot = LedgerSnapshot {
            syncs: vec![LedgerSyncs {
                status: "succeeded".into(),
                outcome: "changed".into(),
                count: 3,
            }],
            queued: 2,
            oldest_queued_age_secs: 12.5,
        };
        let text = m.render(Some(&snapshot));
        assert_eq!(
            sample_value(
                &text,
                "projsync_syncs{outcome=\"changed\",status=\"succeeded\"}"
            ),
            Some(3.0)
        );
        assert_eq!(
            sample_value(&text, "projsync_syncs{outcome=\"none\",status=\"queued\"}"),
            Some(0.0)
        );
        assert_eq!(sample_value(&text, "projsync_queue_depth"), Some(2.0));
        assert_eq!(
            sample_value(&text, "projsync_queue_oldest_age_seconds"),
            Some(12.5)
        );
        assert_eq!(
            sample_value(&text, "projsync_ledger_scrape_success"),
            Some(1.0)
        );
        let text = m.render(None);
        assert!(!text.contains("projsync_syncs{"), "{text}");
        assert!(!text.contains("projsync_queue_depth "), "{text}");
        assert_eq!(
            sample_value(&text, "projsync_ledger_scrape_success"),
            Some(0.0)
        );
    }

    #[test]
    fn webhook_deliveries_are_the_apis_by_outcome() {
        let api = Metrics::new(Process::Api);
        api.webhook_delivery("queued");
        api.webhook_delivery("queued");
        api.webhook_delivery("not-an-outcome");
        let a = api.render(None);
        let count = |o: &str| {
            sample_value(
                &a,
                &format!("projsync_webhook_deliveries_total{{outcome=\"{o}\"}}"),
            )
        };
        assert_eq!(count("queued"), Some(2.0));
        assert_eq!(count("invalid"), Some(1.0));
        assert_eq!(count("unauthorized"), Some(0.0));
        assert_eq!(count("not-an-outcome"), None);
        let w = Metrics::new(Process::Worker).render(None);
        assert!(!w.contains("projsync_webhook_deliveries_total"), "{w}");
    }

    #[test]
    fn mcp_tool_calls_are_the_apis_by_tool_and_outcome() {
        let api = Metrics::new(Process::Api);
        api.mcp_tool_call("search", true);
        api.mcp_tool_call("start_sync", false);
        api.mcp_tool_call("made_up", true);
        let a = api.render(None);
        let count = |t: &str, o: &str| {
            sample_value(
                &a,
                &format!("projsync_mcp_tool_calls_total{{outcome=\"{o}\",tool=\"{t}\"}}"),
            )
        };
        assert_eq!(count("search", "ok"), Some(1.0));
        assert_eq!(count("start_sync", "error"), Some(1.0));
        assert_eq!(count("list_projects", "ok"), Some(0.0));
        assert_eq!(count("made_up", "ok"), None);
        let w = Metrics::new(Process::Worker).render(None);
        assert!(!w.contains("projsync_mcp_tool_calls_total"), "{w}");
    }

    #[test]
    fn github_labels_stay_few() {
        let m = Metrics::new(Process::Worker);
        m.github_request("tree", GithubStatus::Http(200));
        m.github_request("tree", GithubStatus::NoAnswer);
        m.github_rate_limit(Some("search"), 29);
        m.github_rate_limit(Some("acme/secret-repo"), 4999);
        let text = m.render(None);
        assert_eq!(
            sample_value(
                &text,
                "projsync_github_requests_total{endpoint=\"tree\",status=\"error\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample_value(
                &text,
                "projsync_github_rate_limit_remaining{resource=\"core\"}"
            ),
            Some(4999.0)
        );
        assert!(!text.contains("secret"), "{text}");
    }
}
