//! What every request must pass before a handler runs, and the bounds on
//! what a handler accepts:
//! - `Host` in `api.allowed_hosts` (400), so that a page whose DNS name was
//!   rebound to this address cannot read the API. Not for `GET` (or `HEAD`)
//!   `/healthz`, `/readyz` and `/metrics`: orchestrators and scrapers call
//!   them by IP and port, a `Host` no list would hold, and they show only
//!   aggregate numbers (`health`), nothing a rebound page could use;
//! - an `Origin`, when sent, in `api.allowed_hosts` too (403), so that a page
//!   of another site cannot drive the API from a browser;
//! - `Content-Type: application/json` on every POST (415): a browser sends a
//!   form or `text/plain` cross-site without asking, JSON only after a CORS
//!   preflight, which this API never grants;
//! - no query parameter where the endpoint takes none (422); the dashboard's
//!   page and assets (`GET /`, `/assets/{name}`) ignore any: a link that
//!   carries tracking parameters still opens the page, not a JSON error;
//! - at most `api.max_body_bytes` of body (413), counted while reading.
//!
//! Compiling ignore patterns is the one expensive check of a request: it
//! runs on the blocking pool, at most `api.validation_concurrency` at once,
//! on input bounded by `api.max_ignore_patterns` and `api.max_pattern_bytes`.

use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use projsync_domain::filter::Filter;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The request limits of the API (`[api]` in the configuration).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Host names (without port) that `Host` and `Origin` may name.
    pub allowed_hosts: AllowedHosts,
    /// Most `ignore_patterns` of a project.
    pub max_ignore_patterns: usize,
    /// Longest ignore pattern, in bytes.
    pub max_pattern_bytes: usize,
    /// All ignore patterns of a project together, in bytes: what bounds
    /// the memory of compiling them (about 1.5 KB per byte of pattern at
    /// worst, in the API and in every sync).
    pub max_ignore_patterns_bytes: usize,
    /// Largest `max_file_bytes` a project may set.
    pub max_file_bytes_limit: u64,
    /// Largest `limit` of a list.
    pub max_page_size: i64,
    /// Permits for expensive validation (pattern compilation).
    pub validation: Validation,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            allowed_hosts: AllowedHosts::default(),
            max_ignore_patterns: 1000,
            max_pattern_bytes: 1024,
            max_ignore_patterns_bytes: 64 * 1024,
            max_file_bytes_limit: 100 * 1024 * 1024,
            max_page_size: 1000,
            validation: Validation::new(2),
        }
    }
}

/// How many expensive validations run at once, off the request threads.
#[derive(Debug, Clone)]
pub struct Validation(Arc<Semaphore>);

impl Validation {
    pub fn new(concurrency: usize) -> Self {
        Self(Arc::new(Semaphore::new(concurrency.max(1))))
    }
}

/// The names `Host` and `Origin` may carry, compared without port and
/// case-insensitively; `*` allows any.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    names: Vec<String>,
    any: bool,
}

impl Default for AllowedHosts {
    fn default() -> Self {
        Self::parse(["localhost", "127.0.0.1", "::1"]).expect("the defaults are valid")
    }
}

impl AllowedHosts {
    /// Names as configured: `example.com`, `10.0.0.5`, `::1` (or `[::1]`),
    /// or `*`; no scheme, port or path.
    pub fn parse<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Result<Self, String> {
        let mut out = Self {
            names: Vec::new(),
            any: false,
        };
        for raw in names {
            let name = raw.as_ref().trim();
            if name == "*" {
                out.any = true;
                continue;
            }
            let bare = name.trim_start_matches('[').trim_end_matches(']');
            let looks_like_port = bare.matches(':').count() == 1;
            if bare.is_empty()
                || looks_like_port
                || bare
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "/@?#".contains(c))
            {
                return Err(format!(
                    "`{name}` is not a host name; give names like `example.com`, `10.0.0.5` or \
                     `::1`, without scheme or port"
                ));
            }
            out.names.push(normalize(bare));
        }
        if !out.any && out.names.is_empty() {
            return Err("the list is empty; the API could answer no request".into());
        }
        Ok(out)
    }

    /// Whether `host` (from a `Host` header or an origin: `name`,
    /// `name:port`, `[v6]:port`) names an allowed host.
    pub fn allows(&self, host: &str) -> bool {
        self.any || host_name(host).is_some_and(|h| self.names.contains(&h))
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The host of an authority (`name`, `name:port`, `[v6]`, `[v6]:port`),
/// without port and brackets; `None` when it cannot be one.
fn host_name(authority: &str) -> Option<String> {
    let authority: axum::http::uri::Authority = authority.parse().ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then(|| normalize(host))
}

/// Which routes take query parameters (the handlers' query structs refuse
/// unknown ones); every other route refuses any query parameter.
const QUERY_ROUTES: &[(Method, &str)] = &[
    (Method::GET, "/api/v1/projects"),
    (Method::GET, "/api/v1/projects/{id}/syncs"),
    (Method::GET, "/api/v1/projects/{id}/memory"),
    (Method::GET, "/api/v1/projects/{id}/memory/entry"),
    (Method::GET, "/api/v1/projects/{id}/symbols"),
    (
        Method::GET,
        "/api/v1/projects/{id}/symbols/{qualified_name}/references",
    ),
    (Method::GET, "/api/v1/projects/{id}/dependencies"),
    (Method::GET, "/api/v1/syncs"),
];

/// The checks above, in order: host (400), origin (403), content type
/// (415), query (422), body size (413).
pub(crate) async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match check(&state.limits, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn check(limits: &Limits, req: Request) -> Result<Request, ApiError> {
    if !is_probe(&req) {
        check_host(limits, &req)?;
    }
    check_origin(limits, req.headers())?;
    if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        check_content_type(req.method(), req.headers())?;
    }
    check_query(&req)?;
    read_body(limits, req).await
}

/// A probe or a scrape: `GET`/`HEAD` of `/healthz`, `/readyz`, `/metrics`.
fn is_probe(req: &Request) -> bool {
    matches!(*req.method(), Method::GET | Method::HEAD)
        && crate::health::PATHS.contains(&req.uri().path())
}

fn check_host(limits: &Limits, req: &Request) -> Result<(), ApiError> {
    // An absolute-form request target names the host itself (RFC 9112 3.2.2).
    let host = match req.uri().authority() {
        Some(a) => Some(a.as_str()),
        None => req
            .headers()
            .get(header::HOST)
            .map(|v| v.to_str().unwrap_or("\u{fffd}")),
    };
    let Some(host) = host else {
        return Err(ApiError::BadRequest(
            "the request has no Host header; send the host name the API is served at".into(),
        ));
    };
    if limits.allowed_hosts.allows(host) {
        return Ok(());
    }
    Err(ApiError::BadRequest(format!(
        "host `{}` is not served here; call the API by a name in api.allowed_hosts \
         (an operator adds the public name there)",
        host.escape_debug()
    )))
}

fn check_origin(limits: &Limits, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("\u{fffd}");
    // `scheme://host[:port]`; `null` (a sandboxed page, a file) has no host.
    let host = origin.split_once("://").map(|(_, rest)| rest);
    if host.is_some_and(|h| !h.contains('/') && limits.allowed_hosts.allows(h)) {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "requests from origin `{}` are not allowed; call the API from a page served by a \
         host in api.allowed_hosts, or without an Origin header",
        origin.escape_debug()
    )))
}

fn check_content_type(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers.get(header::CONTENT_TYPE);
    let raw = value.map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if raw.is_some_and(is_json) {
        return Ok(());
    }
    let got = match raw {
        None => "none".to_string(),
        Some(v) => format!("`{}`", v.escape_debug()),
    };
    Err(ApiError::UnsupportedMediaType(format!(
        "{method} requests must have `Content-Type: application/json` (got {got}); send the \
         body as JSON, or an empty body with that header where the body is optional"
    )))
}

/// `application/json`, optionally with `charset=utf-8` (any case, quoted
/// or not) and nothing else.
fn is_json(content_type: &str) -> bool {
    let mut parts = content_type.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case("application/json"))
    {
        return false;
    }
    parts.filter(|p| !p.is_empty()).all(|p| {
        p.split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("charset")
                && v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        })
    })
}

fn check_query(req: &Request) -> Result<(), ApiError> {
    let Some(query) = req.uri().query().filter(|q| !q.is_empty()) else {
        return Ok(());
    };
    // Unmatched paths (a 404 or 405 follows) are not checked here.
    let Some(path) = req.extensions().get::<MatchedPath>() else {
        return Ok(());
    };
    if QUERY_ROUTES
        .iter()
        .any(|(m, p)| m == req.method() && *p == path.as_str())
    {
        return Ok(());
    }
    if matches!(*req.method(), Method::GET | Method::HEAD)
        && projsync_dashboard::PATHS.contains(&path.as_str())
    {
        return Ok(());
    }
    let first = query.split('&').next().unwrap_or(query);
    let name = first.split('=').next().unwrap_or(first);
    Err(ApiError::Invalid(format!(
        "unknown query parameter `{}`: {} {} takes no query parameters",
        name.escape_debug(),
        req.method(),
        path.as_str()
    )))
}

/// Read the body, refusing it as soon as it is larger than the limit (by
/// its `Content-Length`, or while it streams in).
async fn read_body(limits: &Limits, req: Request) -> Result<Request, ApiError> {
    let max = limits.max_body_bytes;
    let too_large = |size: Option<u64>| {
        let size = size.map(|s| format!(" ({s} bytes)")).unwrap_or_default();
        ApiError::PayloadTooLarge(format!(
            "the request body is larger than {max} bytes{size}, the limit set by \
             api.max_body_bytes; send less (fewer ignore patterns, a shorter query)"
        ))
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large(declared));
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, max).await.map_err(|e| {
        if is_length_limit(&e) {
            too_large(None)
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {e}"))
        }
    })?;
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// The framework's own JSON rejections in the API's error shape: a body
/// over the limit is a 413, a missing or wrong content type a 415, the rest
/// (syntax, types, unknown fields) a 422 naming what is wrong.
impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!(
                "the request body is too large ({}); the limit is api.max_body_bytes",
                e.body_text()
            )),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(e.body_text()),
            _ => ApiError::Invalid(e.body_text()),
        }
    }
}

/// Check a project's ignore patterns: their number and length first (cheap),
/// then compile them like a sync will, on the blocking pool and at most
/// `api.validation_concurrency` at once, so that a large set never stalls
/// the threads that answer requests.
pub(crate) async fn check_ignore_patterns(
    limits: &Limits,
    max_file_bytes: u64,
    patterns: &[String],
) -> Result<(), ApiError> {
    if patterns.len() > limits.max_ignore_patterns {
        return Err(ApiError::Invalid(format!(
            "ignore_patterns has {} patterns; at most {} are accepted (api.max_ignore_patterns): \
             use broader patterns",
            patterns.len(),
            limits.max_ignore_patterns
        )));
    }
    for (i, pattern) in patterns.iter().enumerate() {
        crate::service::check_text(
            &format!("ignore_patterns[{i}]"),
            pattern,
            limits.max_pattern_bytes,
            false,
        )?;
    }
    let total: usize = patterns.iter().map(String::len).sum();
    if total > limits.max_ignore_patterns_bytes {
        return Err(ApiError::Invalid(format!(
            "ignore_patterns add up to {total} bytes; at most {} are accepted \
             (api.max_ignore_patterns_bytes): use fewer or shorter patterns",
            limits.max_ignore_patterns_bytes
        )));
    }
    if patterns.is_empty() {
        return Ok(());
    }
    let _permit = limits
        .validation
        .0
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::Unavailable("the API is shutting down".into()))?;
    let patterns = patterns.to_vec();
    tokio::task::spawn_blocking(move || Filter::new(max_file_bytes, &patterns).map(drop))
        .await
        .map_err(|e| ApiError::Internal(format!("pattern validation task: {e}")))?
        .map_err(|e| {
            if e.pattern == projsync_domain::filter::ALL_PATTERNS {
                ApiError::Invalid(format!(
                    "ignore_patterns are too complex to compile together ({}); use fewer, \
                     shorter or simpler patterns (fewer `*`, `?`, `[…]` and `{{…}}`)",
                    e.reason
                ))
            } else {
                ApiError::Invalid(e.to_string())
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_without_port_or_case() {
        let hosts = AllowedHosts::default();
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1:1",
            "[::1]:8080",
            "[::1]",
            "localhost.",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "localhost.evil.example",
            "127.0.0.2",
            "user@localhost",
            "",
            "[::2]:80",
        ] {
            assert!(!hosts.allows(bad), "{bad}");
        }
        let any = AllowedHosts::parse(["*"]).unwrap();
        assert!(any.allows("anything.example:1"));
        let public = AllowedHosts::parse(["Projsync.Example.com", "[::1]"]).unwrap();
        assert!(public.allows("projsync.example.com:443"));
        assert!(public.allows("[::1]:80"));
    }

    #[test]
    fn bad_host_names_are_refused() {
        for bad in ["example.com:8080", "http://example.com", "", "a b", "x/y"] {
            assert!(AllowedHosts::parse([bad]).is_err(), "{bad}");
        }
        assert!(AllowedHosts::parse(Vec::<String>::new()).is_err());
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
            "application/json;",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json; charset=latin1",
            "application/json; boundary=x",
            "application/jsonp",
            "",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
    }

    /// The dashboard's GETs pass with a query; the API's routes without
    /// query parameters still refuse one, and so does a POST to `/`.
    #[tokio::test]
    async fn the_dashboard_ignores_queries() {
        use axum::routing::get;
        use tower::ServiceExt;

        async fn only_query(req: Request, next: Next) -> Response {
            match check_query(&req) {
                Ok(()) => next.run(req).await,
                Err(e) => e.into_response(),
            }
        }
        let app = axum::Router::new()
            .merge(projsync_dashboard::router())
            .route("/api/v1/openapi.yaml", get(|| async { "yaml" }))
            .layer(axum::middleware::from_fn(only_query));
        let status = |method: Method, uri: &str| {
            let app = app.clone();
            let req = Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap();
            async move { app.oneshot(req).await.unwrap().status() }
        };
        assert_eq!(status(Method::GET, "/?utm_source=x").await, StatusCode::OK);
        assert_eq!(status(Method::HEAD, "/?x").await, StatusCode::OK);
        assert_eq!(
            status(Method::GET, "/assets/app.js?v=1").await,
            StatusCode::OK
        );
        assert_eq!(
            status(Method::GET, "/assets/nope.js?v=1").await,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(Method::GET, "/api/v1/openapi.yaml?x=1").await,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(Method::POST, "/?x=1").await,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }

    /// Every route listed as taking query parameters exists.
    #[test]
    fn query_routes_are_routes() {
        let source = include_str!("routes.rs");
        for (_, path) in QUERY_ROUTES {
            assert!(
                source.contains(&format!(".route(\"{path}\""))
                    || source.contains(&format!("\"{path}\",")),
                "{path} is not a route"
            );
        }
    }
}
