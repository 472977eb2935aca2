//! The web dashboard: a single page served by `projsync api` at `/`, with
//! its assets under `/assets/{name}`, all compiled into the binary.
//!
//! # Why no build step
//!
//! The page is plain ES2020 modules and hand-written CSS in `assets/`,
//! included with `include_bytes!`: no Node, no bundler, no CDN, nothing
//! fetched or generated at build time. What is in the repository is what
//! the browser runs, a release is one binary, and the page works on an air-gapped
//! network. The price is a few hundred lines of DOM helpers (`dom.js`)
//! instead of a framework; the views are small enough for that.
//!
//! # Content Security Policy
//!
//! Every answer of this router carries [`CONTENT_SECURITY_POLICY`]: scripts,
//! styles and connections only from this origin, no inline script or style,
//! no framing, no `<base>`. So the page has no inline `<script>`, no
//! `<style>` element and no `style=` attribute; the scripts build the DOM
//! with `textContent` and `createElement`, never `innerHTML`, so text that
//! comes from the API (file names, commit messages, error messages) is
//! never parsed as markup. The tests below check the assets for that.
//!
//! # How the browser authenticates
//!
//! The page never holds an API key beyond the sign-in form: it posts the key
//! to `POST /api/v1/session`, which answers with an `HttpOnly`,
//! `SameSite=Strict` session cookie and a CSRF token. The token is kept in
//! `sessionStorage` (this tab only, gone when it closes) and sent as
//! `X-CSRF-Token` with every request that is not a `GET`; the cookie goes
//! with every request by itself, the event streams (`EventSource`) included.
//! Any `401` sends the page back to its sign-in form. Signing out is
//! `DELETE /api/v1/session`.
//!
//! # Caching
//!
//! Asset names carry no hash, so every answer is `Cache-Control: no-cache`
//! with a strong `ETag` (a hash of the content, computed once per process):
//! the browser revalidates each load and gets a `304` while nothing
//! changed, and a new binary's page never runs an older binary's scripts.
//!
//! This crate knows nothing of the API: `projsync-api` merges
//! [`router`] into its own, behind the same request guard (`Host` and
//! `Origin` allow-lists), and documents [`PATHS`] in its OpenAPI document.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::LazyLock;

/// The routes of [`router`], as axum (and OpenAPI) write them.
pub const PATHS: &[&str] = &["/", "/assets/{name}"];

/// The `Content-Security-Policy` of every answer of [`router`].
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

/// A file of the page, compiled in.
struct Asset {
    content_type: &'static str,
    body: &'static [u8],
    /// A strong validator: the content's hash, quoted.
    etag: HeaderValue,
}

impl Asset {
    fn new(content_type: &'static str, body: &'static [u8]) -> Self {
        let etag = format!("\"{:016x}\"", fnv1a(body));
        Self {
            content_type,
            body,
            etag: HeaderValue::from_str(&etag).expect("hex digits in quotes"),
        }
    }
}

const JS: &str = "text/javascript; charset=utf-8";

/// `/assets/{name}`: name, content type, content.
const FILES: &[(&str, &str, &[u8])] = &[
    ("app.js", JS, include_bytes!("../assets/app.js")),
    ("api.js", JS, include_bytes!("../assets/api.js")),
    ("dom.js", JS, include_bytes!("../assets/dom.js")),
    ("progress.js", JS, include_bytes!("../assets/progress.js")),
    ("projects.js", JS, include_bytes!("../assets/projects.js")),
    ("ops.js", JS, include_bytes!("../assets/ops.js")),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../assets/favicon.svg"),
    ),
];

static INDEX: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "text/html; charset=utf-8",
        include_bytes!("../assets/index.html"),
    )
});

static ASSETS: LazyLock<Vec<(&'static str, Asset)>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(name, content_type, body)| (*name, Asset::new(content_type, body)))
        .collect()
});

/// The dashboard's routes: `GET /` (the page) and `GET /assets/{name}`
/// (`404` for a name that is not one of its files). `HEAD` too.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers)
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|(n, _)| *n == name) {
        Some((_, asset)) => serve(asset, &headers),
        None => {
            let mut response = (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "no such asset\n",
            )
                .into_response();
            secure(response.headers_mut());
            response
        }
    }
}

/// The asset, or `304` when the request's `If-None-Match` names its tag.
fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let mut response = if not_modified(request, &asset.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = asset.body.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, asset.etag.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(headers);
    response
}

/// The security headers of every answer.
fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// `If-None-Match` (RFC 9110 13.1.2): `*`, or a list of tags one of which
/// is `etag` by the weak comparison (`W/` ignored).
fn not_modified(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let etag = etag.as_bytes();
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/").as_bytes() == etag)
}

/// 64-bit FNV-1a: a content hash for cache validators (not a security
/// boundary: the content is public and compiled in).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(path: &str, if_none_match: Option<&str>) -> Response {
        let mut req = Request::builder().uri(path);
        if let Some(tag) = if_none_match {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        router::<()>()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body(response: Response) -> Vec<u8> {
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    fn header(response: &Response, name: header::HeaderName) -> &str {
        response
            .headers()
            .get(&name)
            .unwrap_or_else(|| panic!("no {name}"))
            .to_str()
            .unwrap()
    }

    fn assert_secure(response: &Response) {
        assert_eq!(
            header(response, header::CONTENT_SECURITY_POLICY),
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        );
        assert_eq!(header(response, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(header(response, header::REFERRER_POLICY), "no-referrer");
        assert_eq!(header(response, header::X_FRAME_OPTIONS), "DENY");
    }

    #[tokio::test]
    async fn the_page_is_html_revalidated_each_time() {
        let r = get("/", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, header::CONTENT_TYPE), "text/html; charset=utf-8");
        assert_eq!(header(&r, header::CACHE_CONTROL), "no-cache");
        assert_secure(&r);
        let etag = header(&r, header::ETAG).to_string();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let html = String::from_utf8(body(r).await).unwrap();
        assert!(html.starts_with("<!doctype html>"), "{html}");

        let r = get("/", Some(&etag)).await;
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header(&r, header::ETAG), etag);
        assert_secure(&r);
        assert!(body(r).await.is_empty());
    }

    #[tokio::test]
    async fn assets_have_their_types_and_tags() {
        for (name, content_type) in [
            ("app.js", "text/javascript; charset=utf-8"),
            ("ops.js", "text/javascript; charset=utf-8"),
            ("app.css", "text/css; charset=utf-8"),
            ("favicon.svg", "image/svg+xml"),
        ] {
            let r = get(&format!("/assets/{name}"), None).await;
            assert_eq!(r.status(), StatusCode::OK, "{name}");
            assert_eq!(header(&r, header::CONTENT_TYPE), content_type, "{name}");
            assert_eq!(header(&r, header::CACHE_CONTROL), "no-cache", "{name}");
            assert_secure(&r);
            let etag = header(&r, header::ETAG).to_string();
            assert!(!body(r).await.is_empty(), "{name}");

            // The tag, weak or among others, or `*`: not modified.
            for tag in [
                etag.clone(),
                format!("W/{etag}"),
                format!("\"other\", {etag}"),
                "*".to_string(),
            ] {
                let r = get(&format!("/assets/{name}"), Some(&tag)).await;
                assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{name} {tag}");
                assert_eq!(header(&r, header::ETAG), etag);
                assert_eq!(header(&r, header::CACHE_CONTROL), "no-cache");
            }
            // Another tag: the content.
            let r = get(&format!("/assets/{name}"), Some("\"0000\"")).await;
            assert_eq!(r.status(), StatusCode::OK, "{name}");
        }
    }

    #[tokio::test]
    async fn tags_differ_with_the_content() {
        let mut tags: Vec<_> = ASSETS.iter().map(|(_, a)| a.etag.clone()).collect();
        tags.push(INDEX.etag.clone());
        let count = tags.len();
        tags.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        tags.dedup();
        assert_eq!(tags.len(), count);
    }

    #[tokio::test]
    async fn unknown_assets_are_not_found() {
        for path in [
            "/assets/nope.js",
            "/assets/index.html",
            "/assets/..%2Fsrc%2Flib.rs",
            "/assets/APP.JS",
        ] {
            let r = get(path, None).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(
                header(&r, header::CONTENT_TYPE),
                "text/plain; charset=utf-8"
            );
            assert_secure(&r);
        }
        // Not a route of this router at all.
        assert_eq!(get("/assets/", None).await.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn head_answers_without_a_body() {
        let r = router::<()>()
            .oneshot(
                Request::builder()
                    .method(Method::HEAD)
                    .uri("/assets/app.css")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, header::CONTENT_TYPE), "text/css; charset=utf-8");
        assert!(body(r).await.is_empty());
    }

    #[test]
    fn paths_are_the_routes() {
        let source = include_str!("lib.rs");
        let source = &source[..source.find("#[cfg(test)]").unwrap()];
        let routes: Vec<&str> = source
            .split(".route(")
            .skip(1)
            .filter_map(|rest| rest.trim_start().strip_prefix('"')?.split('"').next())
            .collect();
        assert_eq!(routes, PATHS);
    }

    /// The OpenAPI document of the API that serves this router lists the
    /// asset names.
    #[test]
    fn openapi_lists_the_assets() {
        let yaml = include_str!("../../api/openapi.yaml");
        let from = yaml
            .find("\n  /assets/{name}:")
            .expect("the path is documented");
        let line = yaml[from..]
            .lines()
            .find(|l| l.trim_start().starts_with("enum: ["))
            .expect("an enum of names");
        let listed: Vec<&str> = line
            .trim()
            .trim_start_matches("enum: [")
            .trim_end_matches(']')
            .split(',')
            .map(str::trim)
            .collect();
        let names: Vec<&str> = FILES.iter().map(|(n, _, _)| *n).collect();
        assert_eq!(listed, names);
    }

    fn text_assets() -> impl Iterator<Item = (&'static str, &'static str)> {
        FILES
            .iter()
            .map(|(name, _, body)| (*name, std::str::from_utf8(body).unwrap()))
            .chain([("index.html", std::str::from_utf8(INDEX.body).unwrap())])
    }

    /// What the CSP forbids, and what would parse API data as markup.
    #[test]
    fn assets_keep_to_the_policy() {
        let html = std::str::from_utf8(INDEX.body).unwrap();
        // Scripts only by `src`, styles only by `<link>`.
        for (i, _) in html.match_indices("<script") {
            let tag = &html[i..i + html[i..].find('>').unwrap()];
            assert!(tag.contains(" src=\"/assets/"), "inline script: {tag}");
        }
        assert!(!html.contains("<style"), "a <style> element");
        for (name, text) in text_assets() {
            assert!(!text.contains(" style=\""), "{name}: a style attribute");
            assert!(!text.contains("javascript:"), "{name}: a javascript: URL");
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                "http://",
                "https://",
            ] {
                // SVG's namespace is a name, not a fetch.
                let text = text.replace("http://www.w3.org/2000/svg", "");
                assert!(!text.contains(sink), "{name}: {sink}");
            }
        }
    }

    /// Every file is reachable: the page links the styles, the icon and
    /// the entry module, and the modules import the rest.
    #[test]
    fn every_asset_is_used() {
        let all: String = text_assets().map(|(_, t)| t).collect();
        for (name, _, _) in FILES {
            let linked = all.contains(&format!("\"/assets/{name}\""))
                || all.contains(&format!("\"./{name}\""));
            assert!(linked, "{name} is never referenced");
        }
    }

    /// The `data-testid`s of the contract with the browser tests
    /// (spec/dashboard-contract.md): renaming one breaks them.
    #[test]
    fn the_contract_test_ids_are_there() {
        let all: String = text_assets().map(|(_, t)| t).collect();
        for id in [
            "nav-projects",
            "nav-ops",
            "whoami",
            "signout",
            "flash",
            "signin-form",
            "signin-key",
            "signin-submit",
            "signin-message",
            "projects-table",
            "project-row",
            "project-link",
            "project-repo",
            "project-branch",
            "project-last-status",
            "project-entries",
            "connect-form",
            "connect-name",
            "connect-kind",
            "connect-path",
            "connect-owner",
            "connect-repo",
            "connect-credential",
            "connect-branch",
            "connect-submit",
            "connect-error",
            "project-name",
            "branch-select",
            "sync-button",
            "sync-banner",
            "phase",
            "progress",
            "progress-text",
            "count-added",
            "count-modified",
            "count-deleted",
            "count-renamed",
            "count-unchanged",
            "count-skipped",
            "rate",
            "eta",
            "cancel-button",
            "banner-message",
            "history-table",
            "history-row",
            "restore-button",
            "confirm-dialog",
            "confirm-ok",
            "confirm-cancel",
            "memory-list",
            "memory-item",
            "memory-more",
            "entry-content",
            "entry-path",
            "search-form",
            "search-input",
            "search-submit",
            "search-result",
            "status-tab",
            "ops-table",
            "ops-row",
            "ops-select",
            "ops-link",
            "bulk-retry",
            "queue-depth",
            "queue-oldest",
            "queue-running",
            "worker-row",
            "throughput-chart",
            "sync-detail",
            "step-row",
            "lease-owner",
            "error-class",
            "error-message",
            "advice",
            "action-retry",
            "action-retry-start",
            "action-cancel",
            "action-discard",
        ] {
            assert!(
                all.contains(&format!("\"{id}\"")),
                "data-testid {id} is in none of the assets"
            );
        }
    }
}
