//! The process's `tracing` subscriber: the console (`[log]`: human or JSON
//! lines on stderr, as always) and, when `telemetry.otlp_endpoint` is set,
//! OpenTelemetry: spans to traces and events to logs over OTLP/HTTP
//! (`projsync-telemetry`). With the endpoint unset no exporter is built and
//! no OpenTelemetry layer installed: nothing is sent, and nothing costs.

use crate::Settings;
use anyhow::{Context, Result};
use projsync_telemetry::Telemetry;
use tracing_subscriber::filter::{EnvFilter, FilterExt as _, FilterFn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

/// How this process logs.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// JSON lines on the console (`--log-json`; or `log.format = "json"`).
    pub json: bool,
    /// Warnings and errors only on the console (the CLI's interactive
    /// commands); what is exported keeps `log.level`.
    pub quiet: bool,
    /// This process's part, the resource's `projsync.process`: `api`,
    /// `worker`, or the CLI command.
    pub process: String,
}

/// The subscriber and its telemetry, not installed (tests install it on
/// their own threads; [`init`] makes it the process's).
pub fn subscriber(
    settings: &Settings,
    opts: &LogOptions,
) -> Result<(tracing::Dispatch, Option<Telemetry>)> {
    // RUST_LOG wins over log.level, on the console and in what is exported.
    let filter = |default: &str| {
        EnvFilter::try_from_default_env()
            .or_else(|_| EnvFilter::try_new(default))
            .unwrap_or_else(|_| EnvFilter::new("info"))
    };
    let console_level = if opts.quiet {
        "warn"
    } else {
        settings.log.level.as_str()
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .log_internal_errors(true);
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = if opts.json || settings.log.format == "json"
    {
        Box::new(fmt.json())
    } else {
        Box::new(fmt)
    };
    // The spans made for the trace backend stay off the console: its lines
    // read as they always did.
    let console = fmt.with_filter(filter(console_level).and(FilterFn::new(|meta| {
        !projsync_telemetry::is_trace_only_span(meta)
    })));
    let telemetry = match settings.telemetry_options(&opts.process) {
        Some(options) => {
            Some(Telemetry::start(&options).context("cannot start telemetry ([telemetry])")?)
        }
        None => None,
    };
    let otel = telemetry
        .as_ref()
        .map(|t| t.layer().with_filter(filter(settings.log.level.as_str())));
    let subscriber = tracing_subscriber::registry().with(console).with(otel);
    Ok((tracing::Dispatch::new(subscriber), telemetry))
}

/// Install the subscriber for the whole process. Keep the telemetry and
/// shut it down before exiting: the last spans and logs are sent then.
pub fn init(settings: &Settings, opts: &LogOptions) -> Result<Option<Telemetry>> {
    let (dispatch, telemetry) = subscriber(settings, opts)?;
    dispatch
        .try_init()
        .context("a tracing subscriber is already installed")?;
    Ok(telemetry)
}
