//! OpenTelemetry for projsync: one trace per sync, from the request that
//! creates it through the queue to the worker's phases, and the logs with
//! their trace and span ids, exported over OTLP/HTTP when
//! `telemetry.otlp_endpoint` is set (docs/telemetry.md).
//!
//! Two halves:
//! - [`context`] (always): the W3C `traceparent` of a span, and setting a
//!   span's remote parent from one. The API, the store's callers and the
//!   pipeline use it; without an OpenTelemetry layer it does nothing.
//! - `otlp` (feature `otlp`, the binary and the tests only): the SDK's
//!   providers, the OTLP/HTTP exporters over our reqwest client, and the
//!   `tracing` layer. When the endpoint is unset none of it is built: no
//!   exporter, no layer, nothing sent.

pub mod context;
#[cfg(feature = "otlp")]
mod otlp;

pub use context::{current_traceparent, link_to_current, set_parent_from, traceparent};
#[cfg(feature = "otlp")]
pub use otlp::{check, Error, OtlpOptions, Telemetry};

/// Spans made for the trace backend. The console does not show them (its
/// lines keep the spans they always had), while their events still print.
/// Each is named here once, with the crate that makes it:
/// - `http.request` (api): every API request but the probes and `/metrics`;
/// - `queue.push` (queue): a job pushed to Redis;
/// - `phase` (pipeline): one attempt of one phase of a sync;
/// - `reconciler.push` (pipeline): the reconciler pushing a sync again;
/// - `sync.retry` (api): an operator's retry, in the sync's own trace;
/// - `cli.command` (the binary): a command that enqueues a sync.
pub const TRACE_ONLY_SPANS: &[&str] = &[
    "http.request",
    "queue.push",
    "phase",
    "reconciler.push",
    "sync.retry",
    "cli.command",
];

/// Whether `meta` is one of [`TRACE_ONLY_SPANS`] (of a projsync crate).
pub fn is_trace_only_span(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span()
        && meta.target().starts_with("projsync")
        && TRACE_ONLY_SPANS.contains(&meta.name())
}
