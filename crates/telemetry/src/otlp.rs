//! Traces and logs over OTLP/HTTP (protobuf bodies), to any OTLP backend:
//! Axiom, Grafana Tempo (through Alloy or a collector), Honeycomb, an
//! OpenTelemetry Collector.
//!
//! [`Telemetry::start`] builds the SDK's tracer and logger providers, each
//! with a batch processor (its own thread: spans and log records are queued
//! without blocking, and sent every few seconds or when a batch fills). The
//! exports go through [`ExportClient`]: our reqwest 0.12 (rustls) client,
//! run on a small Tokio runtime of its own, so that exporting needs nothing
//! from the application's runtime, flushing and shutting down cannot
//! deadlock it, and no second HTTP stack or TLS library is compiled in
//! (opentelemetry-otlp's own client is reqwest 0.13).
//!
//! [`Telemetry::layer`] is the `tracing` side: spans become OpenTelemetry
//! spans (`tracing-opentelemetry`) and events become log records carrying
//! their span's trace and span ids (`opentelemetry-appender-tracing`).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing_subscriber::filter::FilterFn;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Where and how to export.
#[derive(Clone)]
pub struct OtlpOptions {
    /// The OTLP/HTTP base URL: traces go to `{endpoint}/v1/traces`, logs to
    /// `{endpoint}/v1/logs` (as `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub endpoint: String,
    /// Sent with every export: `Authorization`, `x-honeycomb-team`, ...
    pub headers: Vec<(String, String)>,
    /// Sent with the traces only, over `headers` (a header of the same
    /// name, in any case, replaces it): Axiom's `X-Axiom-Dataset`, since
    /// Axiom keeps each signal in a dataset of its own.
    pub traces_headers: Vec<(String, String)>,
    /// Sent with the logs only, over `headers`.
    pub logs_headers: Vec<(String, String)>,
    /// Export the logs too (a backend for traces only, such as Tempo
    /// without a collector in front, answers `/v1/logs` with 404).
    pub logs: bool,
    /// The resource's `service.name`.
    pub service_name: String,
    /// More resource attributes (`projsync.process`, ...).
    pub resource: Vec<(String, String)>,
    /// Each export request's timeout.
    pub timeout: Duration,
    /// gzip the bodies (every OTLP receiver takes them: the protocol
    /// requires it); they shrink several times over.
    pub gzip: bool,
}

impl std::fmt::Debug for OtlpOptions {
    /// Header values are secrets (an API token): only their names show.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |h: &[(String, String)]| h.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        f.debug_struct("OtlpOptions")
            .field("endpoint", &self.endpoint)
            .field("headers", &names(&self.headers))
            .field("traces_headers", &names(&self.traces_headers))
            .field("logs_headers", &names(&self.logs_headers))
            .field("logs", &self.logs)
            .field("service_name", &self.service_name)
            .field("resource", &self.resource)
            .field("timeout", &self.timeout)
            .field("gzip", &self.gzip)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("telemetry.otlp_endpoint must be an http:// or https:// URL, got `{0}`")]
    Endpoint(String),
    #[error("telemetry.{0}: `{1}` is not a valid HTTP header name")]
    HeaderName(&'static str, String),
    #[error(
        "telemetry.{0}: the value of `{1}` cannot be sent as an HTTP header \
         (a line break, a control character or non-ASCII text)"
    )]
    HeaderValue(&'static str, String),
    #[error("cannot set up the OTLP exporter: {0}")]
    Build(String),
}

/// Check what [`Telemetry::start`] would refuse, without starting anything
/// (configuration validation).
pub fn check(options: &OtlpOptions) -> Result<(), Error> {
    let endpoint = options.endpoint.trim();
    let valid = ["http://", "https://"]
        .iter()
        .any(|s| endpoint.len() > s.len() && endpoint.starts_with(s))
        && endpoint.parse::<http::Uri>().is_ok();
    if !valid {
        return Err(Error::Endpoint(endpoint.to_string()));
    }
    for (key, headers) in [
        ("otlp_headers", &options.headers),
        ("otlp_traces_headers", &options.traces_headers),
        ("otlp_logs_headers", &options.logs_headers),
    ] {
        for (name, value) in headers {
            http::HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| Error::HeaderName(key, name.clone()))?;
            http::HeaderValue::from_str(value.trim())
                .map_err(|_| Error::HeaderValue(key, name.clone()))?;
        }
    }
    Ok(())
}

/// The exporting half of the process's telemetry. Flush it when a test
/// needs what was recorded; shut it down (or drop it) before the process
/// exits, so that the last spans and logs are sent.
pub struct Telemetry {
    tracer_provider: SdkTracerProvider,
    /// `None` when logs are not exported.
    logger_provider: Option<SdkLoggerProvider>,
    runtime: ExportRuntime,
    shut_down: AtomicBool,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Build the exporters and providers. Nothing is sent until spans end
    /// or events are logged through [`Telemetry::layer`].
    pub fn start(options: &OtlpOptions) -> Result<Self, Error> {
        check(options)?;
        let base = options.endpoint.trim().trim_end_matches('/');
        let runtime = ExportRuntime::start().map_err(|e| Error::Build(e.to_string()))?;
        let client = ExportClient {
            client: reqwest::Client::builder()
                .timeout(options.timeout)
                .build()
                .map_err(|e| Error::Build(e.to_string()))?,
            runtime: runtime.handle.clone(),
        };
        let compression = options
            .gzip
            .then_some(opentelemetry_otlp::Compression::Gzip);
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client.clone())
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{base}/v1/traces"))
            .with_timeout(options.timeout)
            .with_headers(merged(&options.headers, &options.traces_headers));
        let spans = match compression {
            Some(c) => spans.with_compression(c),
            None => spans,
        }
        .build()
        .map_err(|e| Error::Build(e.to_string()))?;
        let logs = if options.logs {
            Some(
                {
                    let logs = opentelemetry_otlp::LogExporter::builder()
                        .with_http()
                        .with_http_client(client)
                        .with_protocol(Protocol::HttpBinary)
                        .with_endpoint(format!("{base}/v1/logs"))
                        .with_timeout(options.timeout)
                        .with_headers(merged(&options.headers, &options.logs_headers));
                    match compression {
                        Some(c) => logs.with_compression(c),
                        None => logs,
                    }
                }
                .build()
                .map_err(|e| Error::Build(e.to_string()))?,
            )
        } else {
            None
        };
        let resource = Resource::builder()
            .with_service_name(options.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .with_attributes(
                options
                    .resource
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .build();
        let tracer_provider = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_batch_exporter(spans)
            .build();
        let logger_provider = logs.map(|logs| {
            SdkLoggerProvider::builder()
                .with_resource(resource)
                .with_batch_exporter(logs)
                .build()
        });
        Ok(Self {
            tracer_provider,
            logger_provider,
            runtime,
            shut_down: AtomicBool::new(false),
        })
    }

    /// The `tracing` layer: spans to OpenTelemetry spans, events to log
    /// records. The exporter's own HTTP stack and the SDK's diagnostics are
    /// left out (they would feed on themselves). Filter it by level like
    /// any layer.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let tracer = self.tracer_provider.tracer("projsync");
        let spans = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            // busy_ns and idle_ns, thread.id and thread.name (always a
            // tokio-rt-worker) on every span: noise at a cost.
            .with_tracked_inactivity(false)
            .with_threads(false);
        let logs = self
            .logger_provider
            .as_ref()
            .map(opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new);
        spans
            .and_then(logs)
            .with_filter(FilterFn::new(|meta| !is_exporters_own(meta.target())))
    }

    /// Send what is buffered now, and wait for it (each signal up to about
    /// 5 s). Blocks the calling thread, never the application's runtime's
    /// other tasks: the exports run on the exporter's own runtime.
    pub fn flush(&self) -> Result<(), Error> {
        let spans = self.tracer_provider.force_flush();
        let logs = self
            .logger_provider
            .as_ref()
            .map_or(Ok(()), SdkLoggerProvider::force_flush);
        spans
            .and(logs)
            .map_err(|e| Error::Build(format!("flush: {e}")))
    }

    /// Flush, then stop the batch processors and the exporter's runtime.
    /// Later calls (and the drop) do nothing. Blocks up to about 5 s per
    /// signal when the backend does not answer.
    pub fn shutdown(&self) -> Result<(), Error> {
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let spans = self.tracer_provider.shutdown();
        let logs = self
            .logger_provider
            .as_ref()
            .map_or(Ok(()), SdkLoggerProvider::shutdown);
        self.runtime.stop();
        spans
            .and(logs)
            .map_err(|e| Error::Build(format!("shutdown: {e}")))
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("telemetry: {e}");
        }
    }
}

/// `common` with `signal`'s headers over it (names compared in any case,
/// sent lower-cased as HTTP/2 does).
fn merged(common: &[(String, String)], signal: &[(String, String)]) -> HashMap<String, String> {
    common
        .iter()
        .chain(signal)
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

/// The exporter's own HTTP stack and the SDK's own diagnostics: exporting
/// them would export the exports.
fn is_exporters_own(target: &str) -> bool {
    const OWN: &[&str] = &[
        "opentelemetry",
        "hyper",
        "h2",
        "reqwest",
        "rustls",
        "tower",
        "want",
    ];
    OWN.iter().any(|own| {
        target
            .strip_prefix(own)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['_', '-', ':']))
    })
}

/// A current-thread Tokio runtime on a thread of its own, for the exports.
struct ExportRuntime {
    handle: tokio::runtime::Handle,
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl ExportRuntime {
    fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                // The HTTP stack's own telemetry is not exported.
                let _suppressed = opentelemetry::Context::enter_telemetry_suppressed_scope();
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                // Exports still in flight are given a moment, not more.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Self {
            handle,
            stop: std::sync::Mutex::new(Some(stop)),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    fn stop(&self) {
        if let Some(stop) = self.stop.lock().ok().and_then(|mut s| s.take()) {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = thread.join();
        }
    }
}

/// opentelemetry-otlp's HTTP client: our reqwest client, each request run
/// on the exporter's runtime (the SDK's batch threads have none; reqwest
/// needs Tokio's).
#[derive(Clone)]
struct ExportClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for ExportClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportClient").finish_non_exhaustive()
    }
}

/// The most of a collector's answer that is read (OTLP answers are small:
/// an empty message, or a partial-success count and message).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<opentelemetry_http::Bytes>,
    ) -> Result<http::Response<opentelemetry_http::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let send = async move {
            let (parts, body) = request.into_parts();
            let mut builder = client.request(parts.method, parts.uri.to_string());
            for (name, value) in &parts.headers {
                builder = builder.header(name, value);
            }
            let mut response = builder.body(body).send().await?;
            let mut answer = http::Response::builder().status(response.status().as_u16());
            for (name, value) in response.headers() {
                answer = answer.header(name.as_str(), value.as_bytes());
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(Box::new(opentelemetry_http::ResponseBodyTooLarge::new())
                        as opentelemetry_http::HttpError);
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(answer.body(opentelemetry_http::Bytes::from(bytes))?)
        };
        self.runtime
            .spawn(send)
            .await
            .map_err(|e| Box::new(e) as opentelemetry_http::HttpError)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(endpoint: &str) -> OtlpOptions {
        OtlpOptions {
            endpoint: endpoint.into(),
            headers: vec![("Authorization".into(), "Bearer xaat-secret".into())],
            traces_headers: vec![("X-Axiom-Dataset".into(), "traces".into())],
            logs_headers: vec![("X-Axiom-Dataset".into(), "logs".into())],
            logs: true,
            service_name: "projsync".into(),
            resource: vec![],
            timeout: Duration::from_secs(1),
            gzip: true,
        }
    }

    #[test]
    fn endpoints_and_headers_are_checked() {
        check(&options("https://api.axiom.co")).unwrap();
        check(&options("http://127.0.0.1:4318/")).unwrap();
        for bad in ["", "api.axiom.co", "https://", "ftp://h", "http://a b"] {
            assert!(
                matches!(check(&options(bad)), Err(Error::Endpoint(_))),
                "{bad:?}"
            );
        }
        let mut o = options("https://api.axiom.co");
        o.headers = vec![("X Axiom".into(), "a".into())];
        assert!(matches!(
            check(&o),
            Err(Error::HeaderName("otlp_headers", _))
        ));
        o.headers = vec![];
        o.logs_headers = vec![("X-Axiom-Dataset".into(), "a\nb".into())];
        let err = check(&o).unwrap_err().to_string();
        assert!(
            err.contains("X-Axiom-Dataset") && !err.contains("a\nb"),
            "{err}"
        );
    }

    #[test]
    fn each_signal_gets_the_common_headers_and_its_own() {
        let o = options("https://api.axiom.co");
        let traces = merged(&o.headers, &o.traces_headers);
        assert_eq!(traces["authorization"], "Bearer xaat-secret");
        assert_eq!(traces["x-axiom-dataset"], "traces");
        let common = vec![("x-axiom-DATASET".to_string(), "both".to_string())];
        let logs = merged(&common, &o.logs_headers);
        assert_eq!(logs.len(), 1, "one header whatever its case: {logs:?}");
        assert_eq!(logs["x-axiom-dataset"], "logs", "the signal's own wins");
    }

    #[test]
    fn header_values_stay_out_of_debug_output() {
        let shown = format!("{:?}", options("https://api.axiom.co"));
        assert!(
            shown.contains("Authorization") && !shown.contains("xaat"),
            "{shown}"
        );
    }

    #[test]
    fn the_exporters_own_stack_is_not_exported() {
        for own in [
            "opentelemetry_sdk",
            "opentelemetry-otlp",
            "hyper_util::client",
            "h2::codec",
            "reqwest::connect",
            "rustls::client",
        ] {
            assert!(is_exporters_own(own), "{own}");
        }
        for app in [
            "projsync_pipeline",
            "octocrab",
            "hyperion",
            "h2o",
            "sqlx::query",
        ] {
            assert!(!is_exporters_own(app), "{app}");
        }
    }

    #[test]
    fn spans_join_the_trace_their_traceparent_names() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let telemetry = Telemetry::start(&options("http://127.0.0.1:9")).unwrap();
        let subscriber = tracing_subscriber::registry().with(telemetry.layer());
        tracing::subscriber::with_default(subscriber, || {
            let stored = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let sync = tracing::info_span!("sync");
            assert!(crate::set_parent_from(&sync, Some(stored)));
            let own = crate::traceparent(&sync).unwrap();
            assert!(
                own.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{own}"
            );
            assert_ne!(own, stored, "a span of its own, in the same trace");
            let phase = sync.in_scope(|| {
                let phase = tracing::info_span!("phase");
                phase.in_scope(crate::current_traceparent).unwrap()
            });
            assert!(
                phase.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{phase}"
            );
            assert_ne!(phase, own);

            // A malformed or missing traceparent leaves a root span.
            let root = tracing::info_span!("sync");
            assert!(!crate::set_parent_from(&root, Some("garbage")));
            assert!(!crate::set_parent_from(&root, None));
            let root = crate::traceparent(&root).unwrap();
            assert!(!root.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{root}");
        });
        // Nothing listens on port 9: the exports fail, the shutdown returns.
        let _ = telemetry.shutdown();
    }

    #[test]
    fn logs_can_be_left_out() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let mut o = options("http://127.0.0.1:9");
        o.logs = false;
        let telemetry = Telemetry::start(&o).unwrap();
        assert!(telemetry.logger_provider.is_none());
        let subscriber = tracing_subscriber::registry().with(telemetry.layer());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("sync");
            span.in_scope(|| tracing::info!("not exported"));
            assert!(crate::traceparent(&span).is_some(), "traces still are");
        });
        let _ = telemetry.shutdown();
    }

    #[test]
    fn starting_and_shutting_down_without_a_backend_is_bounded() {
        // Nothing listens there: the shutdown still returns (errors logged).
        let telemetry = Telemetry::start(&options("http://127.0.0.1:9")).unwrap();
        let started = std::time::Instant::now();
        let _ = telemetry.shutdown();
        assert!(telemetry.shutdown().is_ok(), "a second shutdown is a no-op");
        assert!(started.elapsed() < Duration::from_secs(15));
    }
}
