//! A fake OpenTelemetry collector for tests: OTLP/HTTP with protobuf
//! bodies, `POST /v1/traces` and `POST /v1/logs`, as Axiom, Tempo (through
//! Alloy), Honeycomb and the OpenTelemetry Collector receive them. It
//! decodes each request with the protocol's own messages
//! (`opentelemetry-proto`), records the spans, log records and headers, and
//! answers like a collector: 200 with an empty `Export*ServiceResponse`,
//! 415 for a body that is not `application/x-protobuf`, 400 for one that
//! does not decode (gzip bodies are inflated first, as the protocol asks),
//! 401 when a required header is missing or wrong.
//!
//! It runs on a thread and a Tokio runtime of its own, so it can be
//! started before the test's runtime (whose threads may carry a telemetry
//! subscriber that must not see the collector's own work), and it outlives
//! a runtime that shuts down first. It stops when dropped.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One export request, as received.
#[derive(Debug, Clone)]
pub struct OtlpRequest {
    /// `/v1/traces` or `/v1/logs`.
    pub path: String,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// The answer's status.
    pub status: u16,
}

/// A span, with ids in lower-case hex (as in a `traceparent`).
#[derive(Debug, Clone)]
pub struct OtlpSpan {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// `internal`, `server`, `client`, `producer` or `consumer`.
    pub kind: &'static str,
    pub attributes: BTreeMap<String, String>,
    /// `unset`, `ok` or `error`.
    pub status: &'static str,
    /// Linked spans: (trace id, span id).
    pub links: Vec<(String, String)>,
    /// The resource's attributes (`service.name`, ...).
    pub resource: BTreeMap<String, String>,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

/// A log record.
#[derive(Debug, Clone)]
pub struct OtlpLog {
    /// Empty when the record was made outside any span.
    pub trace_id: String,
    pub span_id: String,
    pub severity: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    pub resource: BTreeMap<String, String>,
}

#[derive(Default)]
struct Recorded {
    requests: Vec<OtlpRequest>,
    spans: Vec<OtlpSpan>,
    logs: Vec<OtlpLog>,
}

struct Shared {
    /// Headers every request must carry (name lower-cased, value).
    required: Vec<(String, String)>,
    recorded: Mutex<Recorded>,
}

/// A fake OTLP/HTTP collector on `127.0.0.1`; it stops when dropped.
pub struct FakeOtlp {
    shared: Arc<Shared>,
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeOtlp {
    /// A collector that takes any request (no header required).
    pub fn start() -> Self {
        Self::requiring(&[])
    }

    /// A collector that answers 401 unless each of `headers` (name, value)
    /// is sent, as Axiom does without `Authorization: Bearer …`.
    pub fn requiring(headers: &[(&str, &str)]) -> Self {
        let shared = Arc::new(Shared {
            required: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
            recorded: Mutex::new(Recorded::default()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake OTLP");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .route("/v1/logs", post(logs))
            .with_state(shared.clone());
        let thread = std::thread::Builder::new()
            .name("fake-otlp".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })
            .unwrap();
        Self {
            shared,
            url,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The base URL: `telemetry.otlp_endpoint`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<OtlpRequest> {
        self.recorded().requests.clone()
    }

    /// Every span received so far (from the requests that were accepted).
    pub fn spans(&self) -> Vec<OtlpSpan> {
        self.recorded().spans.clone()
    }

    /// Every log record received so far.
    pub fn logs(&self) -> Vec<OtlpLog> {
        self.recorded().logs.clone()
    }

    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.shared.recorded.lock().unwrap()
    }
}

impl Drop for FakeOtlp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Check the request like a collector; `Err` is the answer to send.
fn accept(
    shared: &Shared,
    path: &str,
    headers: &HeaderMap,
) -> Result<BTreeMap<String, String>, Box<Response>> {
    let recorded: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let refuse = |status: StatusCode, message: &str| {
        shared.recorded.lock().unwrap().requests.push(OtlpRequest {
            path: path.to_string(),
            headers: recorded.clone(),
            status: status.as_u16(),
        });
        Box::new(
            (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                format!(r#"{{"code":{},"message":"{message}"}}"#, status.as_u16()),
            )
                .into_response(),
        )
    };
    for (name, value) in &shared.required {
        if recorded.get(name) != Some(value) {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                &format!("missing or invalid {name}"),
            ));
        }
    }
    let content_type = recorded.get("content-type").map(String::as_str);
    if content_type != Some("application/x-protobuf") {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "only application/x-protobuf is accepted here",
        ));
    }
    Ok(recorded)
}

fn protobuf(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        body,
    )
        .into_response()
}

async fn traces(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let headers = match accept(&shared, "/v1/traces", &headers) {
        Ok(h) => h,
        Err(answer) => return *answer,
    };
    let Some(request) = decode::<ExportTraceServiceRequest>(&headers, &body) else {
        return bad_request(&shared, "/v1/traces", headers);
    };
    let mut recorded = shared.recorded.lock().unwrap();
    recorded.requests.push(OtlpRequest {
        path: "/v1/traces".into(),
        headers,
        status: 200,
    });
    for rs in request.resource_spans {
        let resource = attributes(rs.resource.map(|r| r.attributes).unwrap_or_default());
        for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
            recorded.spans.push(OtlpSpan {
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                kind: match span.kind {
                    1 => "internal",
                    2 => "server",
                    3 => "client",
                    4 => "producer",
                    5 => "consumer",
                    _ => "unspecified",
                },
                status: match span.status.map(|s| s.code) {
                    Some(1) => "ok",
                    Some(2) => "error",
                    _ => "unset",
                },
                links: span
                    .links
                    .iter()
                    .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                    .collect(),
                name: span.name,
                attributes: attributes(span.attributes),
                resource: resource.clone(),
                start_unix_nano: span.start_time_unix_nano,
                end_unix_nano: span.end_time_unix_nano,
            });
        }
    }
    protobuf(
        StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

async fn logs(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let headers = match accept(&shared, "/v1/logs", &headers) {
        Ok(h) => h,
        Err(answer) => return *answer,
    };
    let Some(request) = decode::<ExportLogsServiceRequest>(&headers, &body) else {
        return bad_request(&shared, "/v1/logs", headers);
    };
    let mut recorded = shared.recorded.lock().unwrap();
    recorded.requests.push(OtlpRequest {
        path: "/v1/logs".into(),
        headers,
        status: 200,
    });
    for rl in request.resource_logs {
        let resource = attributes(rl.resource.map(|r| r.attributes).unwrap_or_default());
        for log in rl.scope_logs.into_iter().flat_map(|s| s.log_records) {
            recorded.logs.push(OtlpLog {
                trace_id: hex(&log.trace_id),
                span_id: hex(&log.span_id),
                severity: log.severity_text,
                body: log.body.as_ref().map(text).unwrap_or_default(),
                attributes: attributes(log.attributes),
                resource: resource.clone(),
            });
        }
    }
    protobuf(
        StatusCode::OK,
        ExportLogsServiceResponse::default().encode_to_vec(),
    )
}

/// The message in `body`, inflated first when `Content-Encoding: gzip`.
fn decode<M: Message + Default>(headers: &BTreeMap<String, String>, body: &[u8]) -> Option<M> {
    match headers.get("content-encoding").map(String::as_str) {
        None | Some("identity") => M::decode(body).ok(),
        Some("gzip") => {
            let mut inflated = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut inflated)
                .ok()?;
            M::decode(inflated.as_slice()).ok()
        }
        Some(_) => None,
    }
}

fn bad_request(shared: &Shared, path: &str, headers: BTreeMap<String, String>) -> Response {
    shared.recorded.lock().unwrap().requests.push(OtlpRequest {
        path: path.to_string(),
        headers,
        status: 400,
    });
    (
        StatusCode::BAD_REQUEST,
        "the body is not a protobuf export request",
    )
        .into_response()
}

/// Ids as lower-case hex; an absent (empty or all-zero) id as "".
fn hex(id: &[u8]) -> String {
    if id.iter().all(|b| *b == 0) {
        return String::new();
    }
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(kvs: Vec<KeyValue>) -> BTreeMap<String, String> {
    kvs.into_iter()
        .map(|kv| (kv.key, kv.value.as_ref().map(text).unwrap_or_default()))
        .collect()
}

/// A value as text: strings as they are, the rest as their literal.
fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex(b),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(text).collect();
            format!("[{}]", items.join(", "))
        }
        Some(any_value::Value::KvlistValue(l)) => {
            let items: Vec<String> = l
                .values
                .iter()
                .map(|kv| {
                    format!(
                        "{}={}",
                        kv.key,
                        kv.value.as_ref().map(text).unwrap_or_default()
                    )
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Some(any_value::Value::StringValueStrindex(i)) => format!("#{i}"),
        None => String::new(),
    }
}
