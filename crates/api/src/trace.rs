//! Every API request is a span (`http.request`, an OpenTelemetry server
//! span named `{method} {route}`), except the probes and `/metrics`: they
//! are polled every few seconds by orchestrators and Prometheus, and would
//! bury the traces worth reading. A request that creates or acts on a sync
//! records its `sync_id` on the span; the sync's own trace starts there
//! (docs/telemetry.md). Without telemetry these spans cost a little and
//! the console does not show them (`projsync_telemetry::TRACE_ONLY_SPANS`).

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use projsync_domain::SyncId;
use tracing::field::Empty;
use tracing::Instrument as _;

/// The paths that get no span.
const UNTRACED: &[&str] = &["/healthz", "/readyz", "/metrics"];

pub(crate) async fn http_span(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if UNTRACED.contains(&path) {
        return next.run(req).await;
    }
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let name = match &route {
        Some(route) => format!("{method} {route}"),
        None => method.clone(),
    };
    let span = tracing::info_span!(
        "http.request",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = route.as_deref(),
        url.path = %path,
        http.response.status_code = Empty,
        sync_id = Empty,
    );
    // `/api/v1/syncs/{id}...`: the sync is known from the path.
    if route
        .as_deref()
        .is_some_and(|r| r.starts_with("/api/v1/syncs/{id}"))
    {
        if let Some(id) = path
            .split('/')
            .nth(4)
            .and_then(|s| s.parse::<SyncId>().ok())
        {
            span.record("sync_id", tracing::field::display(id));
        }
    }
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}

/// Record the sync a request created (or was answered with) on the current
/// span: the request's, or the CLI command's.
pub(crate) fn record_sync_id(id: SyncId) {
    tracing::Span::current().record("sync_id", tracing::field::display(id));
}
