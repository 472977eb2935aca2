//! A fake GitHub REST API for tests: an in-process axum server on
//! `127.0.0.1:0` that serves a real Git repository on disk (read with the git
//! CLI) with GitHub's JSON shapes and headers, request counters per endpoint,
//! a primary rate-limit budget and injectable faults.
//!
//! Endpoints (under [`FakeGitHub::base_url`]):
//!
//! | key        | route                                              |
//! |------------|----------------------------------------------------|
//! | `repo`     | `GET /repos/{o}/{r}`                               |
//! | `branches` | `GET /repos/{o}/{r}/branches?per_page=&page=`      |
//! | `branch`   | `GET /repos/{o}/{r}/branches/{branch...}`          |
//! | `tree`     | `GET /repos/{o}/{r}/git/trees/{sha}[?recursive=1]` |
//! | `blob`     | `GET /repos/{o}/{r}/git/blobs/{sha}`               |
//! | `tarball`  | `GET /repos/{o}/{r}/tarball[/{ref...}]` → 302      |
//! | `codeload` | `GET /_codeload/{o}/{r}/legacy.tar.gz/{sha}`       |
//! | `compare`  | `GET /repos/{o}/{r}/compare/{base}...{head}`       |
//!
//! Any other path answers 404 and is counted under `other`.
//!
//! Conditional requests work as on GitHub: every `200` JSON answer carries an
//! `ETag` (weak `W/"…"` by default, strong with [`FakeGitHub::set_strong_etags`]),
//! which depends on the body and on the `Authorization` header (GitHub's
//! answers vary by it). A request whose `If-None-Match` lists a matching tag
//! (weak comparison, or `*`) answers `304 Not Modified` with the ETag and no
//! body. A 304 to a request made with an accepted `Authorization` header
//! spends no budget unit, and its `x-ratelimit-*` headers show the budget
//! unchanged; any other answer the budget admitted spends one unit
//! ([`FakeGitHub::budget_units`]).
//!
//! A repository renamed or transferred ([`FakeGitHub::rename`],
//! [`FakeGitHub::set_previous_name`]) answers its old name with `301 Moved
//! Permanently` to `/repositories/{id}/…`, as GitHub does; `GET
//! /repositories/1` (key `repo`) describes the repository under its current
//! name. A deleted repository ([`FakeGitHub::delete_repository`]) answers
//! 404 everywhere, as does one the token lost access to.
//!
//! The codeload download stands for GitHub's signed `codeload.github.com`
//! link: it needs no token, spends no rate-limit budget and is never faulted
//! (it is still counted and still carries the rate-limit headers).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

const DOCS_URL: &str = "https://docs.github.com/rest";
const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";
const DEFAULT_RATE_LIMIT: u64 = 5000;
const RATE_LIMIT_WINDOW_SECS: u64 = 3600;

/// A fault, queued with [`FakeGitHub::inject`]. Faults apply in order: each
/// request (except the codeload download) takes one unit of the fault at the
/// front of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The next `count` requests answer `status` with `{"message":"Server Error"}`.
    ServerErrors { count: u32, status: u16 },
    /// The next request answers 403 with GitHub's secondary rate-limit message
    /// and `retry-after`; `x-ratelimit-remaining` stays non-zero.
    SecondaryRateLimit { retry_after_secs: u64 },
    /// The next request answers 429 with `retry-after`.
    TooManyRequests { retry_after_secs: u64 },
    /// The primary budget drops to 0 with `reset = now + reset_in_secs`: until
    /// then every request answers 403 "API rate limit exceeded" with
    /// `x-ratelimit-remaining: 0`; at reset the budget refills.
    ExhaustPrimary { reset_in_secs: u64 },
    /// The next `count` requests are delayed by `delay_ms`, then served.
    Slow { count: u32, delay_ms: u64 },
    /// The next `count` requests get no response: the connection is closed.
    DropConnection { count: u32 },
}

/// A fake GitHub API server; it stops when dropped.
pub struct FakeGitHub {
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    owner: String,
    name: String,
    repo: PathBuf,
    token: Option<String>,
    base_url: String,
    state: Mutex<Counters>,
    request_seq: AtomicU64,
}

struct Counters {
    counts: BTreeMap<String, u64>,
    total: u64,
    faults: VecDeque<Fault>,
    truncate_threshold: Option<usize>,
    page_size_cap: usize,
    limit: u64,
    remaining: u64,
    reset: u64,
    /// GitHub App installation tokens: (app id, installation id, lifetime in seconds).
    app: Option<(u64, u64, u64)>,
    /// Budget units spent since the last `reset_counts`.
    budget_units: u64,
    /// `304 Not Modified` answers since the last `reset_counts`.
    not_modified: u64,
    strong_etags: bool,
    /// A name the repository had before a rename or transfer.
    previous_name: Option<(String, String)>,
    /// The most files a comparison lists (GitHub: 300).
    compare_file_cap: usize,
    /// Every token is refused (401), as after a revocation.
    token_revoked: bool,
    /// The repository's name after [`FakeGitHub::rename`].
    renamed: Option<(String, String)>,
    /// The repository is gone, or the token lost access to it: 404.
    gone: bool,
}

impl FakeGitHub {
    /// Serve `repo_path` as `owner/name`. With `token`, every request must
    /// carry `Authorization: Bearer <token>` or `Authorization: token <token>`,
    /// or it answers 401 "Bad credentials".
    pub async fn start(owner: &str, name: &str, repo_path: &Path, token: Option<&str>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake GitHub");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared {
            owner: owner.to_string(),
            name: name.to_string(),
            repo: repo_path.to_path_buf(),
            token: token.map(str::to_string),
            base_url: format!("http://127.0.0.1:{port}"),
            state: Mutex::new(Counters {
                counts: BTreeMap::new(),
                total: 0,
                faults: VecDeque::new(),
                truncate_threshold: None,
                page_size_cap: 100,
                limit: DEFAULT_RATE_LIMIT,
                remaining: DEFAULT_RATE_LIMIT,
                reset: unix_now() + RATE_LIMIT_WINDOW_SECS,
                app: None,
                budget_units: 0,
                not_modified: 0,
                strong_etags: false,
                previous_name: None,
                compare_file_cap: 300,
                token_revoked: false,
                renamed: None,
                gone: false,
            }),
            request_seq: AtomicU64::new(0),
        });
        let router = Router::new()
            .route("/repos/{owner}/{repo}", get(repo_handler))
            .route("/repositories/{id}", get(repo_by_id_handler))
            .route("/repos/{owner}/{repo}/branches", get(branches_handler))
            .route(
                "/repos/{owner}/{repo}/branches/{*branch}",
                get(branch_handler),
            )
            .route("/repos/{owner}/{repo}/git/trees/{sha}", get(tree_handler))
            .route("/repos/{owner}/{repo}/git/blobs/{sha}", get(blob_handler))
            .route(
                "/repos/{owner}/{repo}/tarball",
                get(tarball_default_handler),
            )
            .route(
                "/repos/{owner}/{repo}/tarball/{*reference}",
                get(tarball_handler),
            )
            .route(
                "/repos/{owner}/{repo}/compare/{*basehead}",
                get(compare_handler),
            )
            .route(
                "/_codeload/{owner}/{repo}/legacy.tar.gz/{sha}",
                get(codeload_handler),
            )
            .route(
                "/app/installations/{id}/access_tokens",
                axum::routing::post(access_token_handler),
            )
            .fallback(|| async { not_found() })
            .layer(middleware::from_fn_with_state(shared.clone(), gate))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { shared, server }
    }

    /// Act as GitHub for a GitHub App: `POST /app/installations/{id}/access_tokens`
    /// with a JWT whose `iss` is `app_id` answers 201 with the server's token
    /// (the one requests must carry) and `expires_at` = now + `lifetime_secs`.
    /// Count: "access_token".
    pub fn enable_app(&self, app_id: u64, installation_id: u64, lifetime_secs: u64) {
        self.shared.lock().app = Some((app_id, installation_id, lifetime_secs));
    }

    /// The API root, e.g. `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Recursive trees with more entries than `n` answer `truncated: true`
    /// with only their first `n` entries; `None` never truncates (default).
    pub fn set_truncate_threshold(&self, n: Option<usize>) {
        self.shared.lock().truncate_threshold = n;
    }

    /// The largest `per_page` honoured for branches (default 100; at least 1).
    pub fn set_page_size_cap(&self, n: usize) {
        self.shared.lock().page_size_cap = n.max(1);
    }

    /// Queue a fault; queued faults apply in order to the next requests.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push_back(fault);
    }

    /// Requests that reached the server, per endpoint key (`repo`,
    /// `branches`, `branch`, `tree`, `blob`, `tarball`, `codeload`,
    /// `compare`, `other`), faulted ones included. Keys never hit are absent.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.shared.lock().counts.clone()
    }

    /// Requests on `key` so far (0 when never hit).
    pub fn request_count(&self, key: &str) -> u64 {
        self.shared.lock().counts.get(key).copied().unwrap_or(0)
    }

    pub fn total_requests(&self) -> u64 {
        self.shared.lock().total
    }

    pub fn reset_counts(&self) {
        let mut state = self.shared.lock();
        state.counts.clear();
        state.total = 0;
        state.budget_units = 0;
        state.not_modified = 0;
    }

    /// Primary rate-limit units spent since the last `reset_counts`: one per
    /// admitted request, none for a 304 to an authorized conditional request.
    pub fn budget_units(&self) -> u64 {
        self.shared.lock().budget_units
    }

    /// `304 Not Modified` answers since the last `reset_counts`.
    pub fn not_modified(&self) -> u64 {
        self.shared.lock().not_modified
    }

    /// Strong ETags (`"…"`) instead of GitHub's usual weak ones (`W/"…"`).
    pub fn set_strong_etags(&self, strong: bool) {
        self.shared.lock().strong_etags = strong;
    }

    /// The most files a comparison lists (default 300, as on GitHub); the
    /// rest of a larger comparison is left out, as GitHub does.
    pub fn set_compare_file_cap(&self, n: usize) {
        self.shared.lock().compare_file_cap = n;
    }

    /// Refuse every request with 401 "Bad credentials" from now on, as
    /// GitHub does once a token is revoked (conditional requests included).
    pub fn revoke_token(&self) {
        self.shared.lock().token_revoked = true;
    }

    /// The repository was `owner/name` before a rename or transfer: requests
    /// under `/repos/{owner}/{name}/` answer 301 to `/repositories/1/…`.
    pub fn set_previous_name(&self, owner: &str, name: &str) {
        self.shared.lock().previous_name = Some((owner.to_string(), name.to_string()));
    }

    /// Rename (or transfer) the repository to `owner/name` from now on, as
    /// GitHub does: it is served under the new name, and its current name
    /// becomes the previous one ([`FakeGitHub::set_previous_name`]), which
    /// answers 301.
    pub fn rename(&self, owner: &str, name: &str) {
        let old = self.shared.current();
        let mut state = self.shared.lock();
        state.previous_name = Some(old);
        state.renamed = Some((owner.to_string(), name.to_string()));
    }

    /// The repository is deleted, or the token can no longer see it (GitHub
    /// cannot tell them apart): every request under `/repos/{o}/{r}` and
    /// `/repositories/1` answers 404 Not Found from now on.
    pub fn delete_repository(&self) {
        self.shared.lock().gone = true;
    }

    /// Set the primary budget (default 5000): `remaining = limit`,
    /// `reset = now + 3600 s`. Each request spends 1.
    pub fn set_rate_limit(&self, limit: u64) {
        let mut state = self.shared.lock();
        state.limit = limit;
        state.remaining = limit;
        state.reset = unix_now() + RATE_LIMIT_WINDOW_SECS;
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Counters> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The 301 GitHub answers for a repository's old name.
    fn moved(&self, uri: &axum::http::Uri) -> Option<Response> {
        let (owner, name) = self.lock().previous_name.clone()?;
        let path = uri.path();
        let mut segments = path.trim_start_matches('/').splitn(4, '/');
        let (Some("repos"), Some(o), Some(n)) = (segments.next(), segments.next(), segments.next())
        else {
            return None;
        };
        if !o.eq_ignore_ascii_case(&owner) || !n.eq_ignore_ascii_case(&name) {
            return None;
        }
        let rest = segments.next().map(|r| format!("/{r}")).unwrap_or_default();
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        let url = format!("{}/repositories/1{rest}{query}", self.base_url);
        let mut response = json_response(
            StatusCode::MOVED_PERMANENTLY,
            &json!({"message": "Moved Permanently", "url": url, "documentation_url": DOCS_URL}),
        );
        set_header(&mut response, "location", &url);
        Some(response)
    }

    /// The repository's `(owner, name)` now (after a [`FakeGitHub::rename`]).
    fn current(&self) -> (String, String) {
        self.lock()
            .renamed
            .clone()
            .unwrap_or_else(|| (self.owner.clone(), self.name.clone()))
    }

    /// The 404 of a repository that is gone ([`FakeGitHub::delete_repository`]).
    fn gone(&self, uri: &axum::http::Uri) -> Option<Response> {
        if !self.lock().gone {
            return None;
        }
        let path = uri.path().trim_start_matches('/');
        (path.starts_with("repos/") || path.starts_with("repositories/")).then(not_found)
    }

    fn is_repo(&self, owner: &str, repo: &str) -> bool {
        let (o, n) = self.current();
        owner.eq_ignore_ascii_case(&o) && repo.eq_ignore_ascii_case(&n)
    }

    fn api(&self, rest: &str) -> String {
        let (owner, name) = self.current();
        format!("{}/repos/{owner}/{name}/{rest}", self.base_url)
    }

    /// Run git in the repository; `None` when it fails.
    async fn git(&self, args: &[&str]) -> Option<Vec<u8>> {
        let out = tokio::process::Command::new("git")
            .arg("-C")
            .arg(&self.repo)
            .args(args)
            .output()
            .await
            .ok()?;
        out.status.success().then_some(out.stdout)
    }

    async fn git_text(&self, args: &[&str]) -> Option<String> {
        let out = self.git(args).await?;
        Some(String::from_utf8_lossy(&out).trim().to_string())
    }

    /// `rev` peeled to `kind` ("commit" or "tree"), as a full SHA.
    async fn peel(&self, rev: &str, kind: &str) -> Option<String> {
        if rev.is_empty() || rev.starts_with('-') {
            return None;
        }
        self.git_text(&["rev-parse", "--verify", "-q", &format!("{rev}^{{{kind}}}")])
            .await
            .filter(|s| !s.is_empty())
    }

    /// A branch, tag or (abbreviated) SHA, peeled to `kind`.
    async fn resolve(&self, reference: &str, kind: &str) -> Option<String> {
        if reference.is_empty() || reference.starts_with('-') {
            return None;
        }
        for candidate in [
            format!("refs/heads/{reference}"),
            format!("refs/tags/{reference}"),
        ] {
            if let Some(sha) = self.peel(&candidate, kind).await {
                return Some(sha);
            }
        }
        if is_hex(reference) && reference.len() >= 4 {
            return self.peel(reference, kind).await;
        }
        None
    }

    /// Branches sorted by name, with their commit SHAs.
    async fn branches(&self) -> Vec<(String, String)> {
        let out = self
            .git_text(&[
                "for-each-ref",
                "--format=%(refname)%09%(objectname)",
                "refs/heads/",
            ])
            .await
            .unwrap_or_default();
        let mut branches: Vec<(String, String)> = out
            .lines()
            .filter_map(|line| {
                let (name, sha) = line.split_once('\t')?;
                Some((
                    name.strip_prefix("refs/heads/")?.to_string(),
                    sha.to_string(),
                ))
            })
            .collect();
        branches.sort();
        branches
    }

    async fn default_branch(&self) -> String {
        if self.peel("refs/heads/main", "commit").await.is_some() {
            return "main".into();
        }
        self.git_text(&["symbolic-ref", "--short", "HEAD"])
            .await
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "main".into())
    }
}

// ---------------------------------------------------------------------------
// The gate: counting, faults, authentication, rate limit, common headers.

/// The endpoint key of a request path.
fn endpoint_key(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["_codeload", ..] => "codeload",
        ["repos", _, _] | ["repositories", _] => "repo",
        ["repos", _, _, "branches"] => "branches",
        ["repos", _, _, "branches", _, ..] => "branch",
        ["repos", _, _, "git", "trees", _] => "tree",
        ["repos", _, _, "git", "blobs", _] => "blob",
        ["repos", _, _, "tarball", ..] => "tarball",
        ["repos", _, _, "compare", _, ..] => "compare",
        ["app", "installations", _, "access_tokens"] => "access_token",
        _ => "other",
    }
}

enum FaultAction {
    Respond(Response),
    Delay(u64),
    Drop,
    Exhaust(u64),
}

impl Counters {
    /// One unit of the fault at the front of the queue.
    fn take_fault(&mut self) -> Option<FaultAction> {
        loop {
            let front = self.faults.front_mut()?;
            let (action, exhausted) = match front {
                Fault::ServerErrors { count, status } => {
                    if *count == 0 {
                        (None, true)
                    } else {
                        *count -= 1;
                        let status = StatusCode::from_u16(*status)
                            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                        let response = json_response(status, &json!({"message": "Server Error"}));
                        (Some(FaultAction::Respond(response)), *count == 0)
                    }
                }
                Fault::SecondaryRateLimit { retry_after_secs } => {
                    let mut response = json_response(
                        StatusCode::FORBIDDEN,
                        &json!({
                            "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.",
                            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
                            "status": "403",
                        }),
                    );
                    set_header(&mut response, "retry-after", &retry_after_secs.to_string());
                    (Some(FaultAction::Respond(response)), true)
                }
                Fault::TooManyRequests { retry_after_secs } => {
                    let mut response = json_response(
                        StatusCode::TOO_MANY_REQUESTS,
                        &json!({
                            "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
                            "status": "429",
                        }),
                    );
                    set_header(&mut response, "retry-after", &retry_after_secs.to_string());
                    (Some(FaultAction::Respond(response)), true)
                }
                Fault::ExhaustPrimary { reset_in_secs } => {
                    (Some(FaultAction::Exhaust(*reset_in_secs)), true)
                }
                Fault::Slow { count, delay_ms } => {
                    if *count == 0 {
                        (None, true)
                    } else {
                        *count -= 1;
                        (Some(FaultAction::Delay(*delay_ms)), *count == 0)
                    }
                }
                Fault::DropConnection { count } => {
                    if *count == 0 {
                        (None, true)
                    } else {
                        *count -= 1;
                        (Some(FaultAction::Drop), *count == 0)
                    }
                }
            };
            if exhausted {
                self.faults.pop_front();
            }
            if action.is_some() {
                return action;
            }
        }
    }

    /// Refill the budget when its window has passed.
    fn refill_if_due(&mut self) {
        let now = unix_now();
        if now >= self.reset {
            self.remaining = self.limit;
            self.reset = now + RATE_LIMIT_WINDOW_SECS;
        }
    }

    fn rate_headers(&self) -> (u64, u64, u64) {
        (self.limit, self.remaining, self.reset)
    }
}

fn authorized(expected: &Option<String>, headers: &HeaderMap) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, credential)) = value.trim().split_once(' ') else {
        return false;
    };
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        && credential.trim() == expected
}

async fn gate(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let key = endpoint_key(req.uri().path());
    let codeload = key == "codeload";
    // An app authenticates this one with its JWT, checked by the handler.
    let app_auth = key == "access_token";
    let seq = shared.request_seq.fetch_add(1, Ordering::Relaxed) + 1;
    let action = {
        let mut state = shared.lock();
        *state.counts.entry(key.to_string()).or_insert(0) += 1;
        state.total += 1;
        if codeload {
            None
        } else {
            state.take_fault()
        }
    };

    let mut fault_response = None;
    match action {
        None => {}
        Some(FaultAction::Drop) => {
            // Unwinding out of the connection task makes hyper drop the
            // socket without writing a response. `resume_unwind` skips the
            // panic hook, so nothing is printed.
            std::panic::resume_unwind(Box::new("fake GitHub: DropConnection fault"));
        }
        Some(FaultAction::Delay(ms)) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Some(FaultAction::Exhaust(secs)) => {
            let mut state = shared.lock();
            state.remaining = 0;
            state.reset = unix_now() + secs;
        }
        Some(FaultAction::Respond(response)) => fault_response = Some(response),
    }

    let (response, rate) = if let Some(response) = fault_response {
        (response, shared.lock().rate_headers())
    } else if codeload {
        let rate = shared.lock().rate_headers();
        (next.run(req).await, rate)
    } else if !app_auth
        && (!authorized(&shared.token, req.headers()) || shared.lock().token_revoked)
    {
        let response = json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"message": "Bad credentials", "documentation_url": DOCS_URL, "status": "401"}),
        );
        (response, shared.lock().rate_headers())
    } else {
        let admitted = {
            let mut state = shared.lock();
            state.refill_if_due();
            (state.remaining > 0, state.rate_headers())
        };
        match admitted {
            (true, _) => {
                let if_none_match = header_text(req.headers(), header::IF_NONE_MATCH);
                let auth = header_text(req.headers(), header::AUTHORIZATION);
                let get = req.method() == axum::http::Method::GET;
                let response = match shared.gone(req.uri()).or_else(|| shared.moved(req.uri())) {
                    Some(answer) => answer,
                    None => next.run(req).await,
                };
                let strong = shared.lock().strong_etags;
                let response = if get {
                    conditional(response, if_none_match.as_deref(), auth.as_deref(), strong).await
                } else {
                    response
                };
                // GitHub: a 304 to a conditional request made with a valid
                // Authorization header does not count against the limit.
                let free = response.status() == StatusCode::NOT_MODIFIED && auth.is_some();
                let mut state = shared.lock();
                if response.status() == StatusCode::NOT_MODIFIED {
                    state.not_modified += 1;
                }
                if !free {
                    state.remaining = state.remaining.saturating_sub(1);
                    state.budget_units += 1;
                }
                (response, state.rate_headers())
            }
            (false, rate) => {
                let response = json_response(
                    StatusCode::FORBIDDEN,
                    &json!({
                        "message": format!(
                            "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID {} and timestamp {}.",
                            request_id(seq), unix_now()
                        ),
                        "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits",
                        "status": "403",
                    }),
                );
                (response, rate)
            }
        }
    };
    with_github_headers(response, rate, seq)
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The opaque part of an entity tag, for the weak comparison
/// `If-None-Match` uses (`W/"x"` matches `"x"`).
fn opaque_tag(tag: &str) -> &str {
    tag.trim().trim_start_matches("W/")
}

/// Give a 200 JSON answer its ETag (from the body and the Authorization
/// header), or turn it into a 304 when `If-None-Match` lists that tag.
async fn conditional(
    response: Response,
    if_none_match: Option<&str>,
    auth: Option<&str>,
    strong: bool,
) -> Response {
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if response.status() != StatusCode::OK || !json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    // The credential, not its spelling (`Bearer x` and `token x` are one).
    let credential = auth
        .map(|a| a.trim().split_once(' ').map_or(a, |(_, c)| c).trim())
        .unwrap_or_default();
    let mut keyed = credential.as_bytes().to_vec();
    keyed.push(0);
    keyed.extend_from_slice(&bytes);
    let tag = format!("\"{}\"", projsync_domain::source::git_blob_sha(&keyed));
    let etag = if strong { tag } else { format!("W/{tag}") };
    let matches = if_none_match.is_some_and(|list| {
        list.split(',')
            .any(|t| t.trim() == "*" || opaque_tag(t) == opaque_tag(&etag))
    });
    let vary = "Accept, Authorization, Cookie, X-GitHub-OTP, Accept-Encoding";
    let cache = "private, max-age=60, s-maxage=60";
    if matches {
        let mut not_modified = Response::new(Body::empty());
        *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
        set_header(&mut not_modified, "etag", &etag);
        set_header(&mut not_modified, "vary", vary);
        set_header(&mut not_modified, "cache-control", cache);
        return not_modified;
    }
    for (name, value) in [
        ("etag", etag.as_str()),
        ("vary", vary),
        ("cache-control", cache),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            parts.headers.insert(name, value);
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn with_github_headers(mut response: Response, rate: (u64, u64, u64), seq: u64) -> Response {
    let (limit, remaining, reset) = rate;
    set_header(&mut response, "x-ratelimit-limit", &limit.to_string());
    set_header(
        &mut response,
        "x-ratelimit-remaining",
        &remaining.to_string(),
    );
    set_header(
        &mut response,
        "x-ratelimit-used",
        &limit.saturating_sub(remaining).to_string(),
    );
    set_header(&mut response, "x-ratelimit-reset", &reset.to_string());
    set_header(&mut response, "x-ratelimit-resource", "core");
    set_header(&mut response, "x-github-request-id", &request_id(seq));
    set_header(&mut response, "x-github-api-version-selected", "2022-11-28");
    response
}

fn request_id(seq: u64) -> String {
    format!(
        "FA4E:{:06X}:{:07X}:{:07X}:{:08X}",
        seq,
        seq.wrapping_mul(7919) & 0xFFF_FFFF,
        seq.wrapping_mul(104_729) & 0xFFF_FFFF,
        unix_now() & 0xFFFF_FFFF
    )
}

// ---------------------------------------------------------------------------
// Handlers.

async fn repo_by_id_handler(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if id != "1" {
        return not_found();
    }
    let (owner, name) = s.current();
    repo_handler(State(s), UrlPath((owner, name))).await
}

async fn repo_handler(
    State(s): State<Arc<Shared>>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
) -> Response {
    if !s.is_repo(&owner, &repo) {
        return not_found();
    }
    let default_branch = s.default_branch().await;
    let (owner, name) = s.current();
    json_response(
        StatusCode::OK,
        &json!({
            "id": 1,
            "node_id": "R_fake1",
            "name": name,
            "full_name": format!("{owner}/{name}"),
            "private": false,
            "visibility": "public",
            "owner": {"login": owner, "id": 1, "type": "User"},
            "html_url": format!("https://github.com/{owner}/{name}"),
            "url": format!("{}/repos/{owner}/{name}", s.base_url),
            "default_branch": default_branch,
        }),
    )
}

async fn branches_handler(
    State(s): State<Arc<Shared>>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !s.is_repo(&owner, &repo) {
        return not_found();
    }
    let cap = s.lock().page_size_cap.min(100);
    let per_page = query
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, cap.max(1));
    let page = query
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let branches = s.branches().await;
    let last = branches.len().div_ceil(per_page).max(1);
    let items: Vec<Value> = branches
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|(name, sha)| {
            json!({
                "name": name,
                "commit": {"sha": sha, "url": s.api(&format!("commits/{sha}"))},
                "protected": false,
            })
        })
        .collect();
    let mut response = json_response(StatusCode::OK, &Value::Array(items));
    let link_to = |p: usize, rel: &str| {
        format!(
            "<{}>; rel=\"{rel}\"",
            s.api(&format!("branches?per_page={per_page}&page={p}"))
        )
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(link_to(page - 1, "prev"));
    }
    if page < last {
        links.push(link_to(page + 1, "next"));
        links.push(link_to(last, "last"));
    }
    if page > 1 {
        links.push(link_to(1, "first"));
    }
    if !links.is_empty() {
        set_header(&mut response, "link", &links.join(", "));
    }
    response
}

async fn branch_handler(
    State(s): State<Arc<Shared>>,
    UrlPath((owner, repo, branch)): UrlPath<(String, String, String)>,
) -> Response {
    if !s.is_repo(&owner, &repo) {
        return not_found();
    }
    let branch_not_found = || {
        json_response(
            StatusCode::NOT_FOUND,
            &json!({
                "message": "Branch not found",
                "documentation_url": "https://docs.github.com/rest/branches/branches#get-a-branch",
                "status": "404",
            }),
        )
    };
    if branch.is_empty() || branch.starts_with('-') {
        return branch_not_found();
    }
    let reference = format!("refs/heads/{branch}");
    let (Some(commit), Some(tree)) = (
        s.peel(&reference, "commit").await,
        s.peel(&reference, "tree").await,
    ) else {
        return branch_not_found();
    };
    let message = s
        .git_text(&["log", "-1", "--format=%B", &commit])
        .await
        .unwrap_or_default();
    let (current_owner, current_name) = s.current();
    let html = format!("https://github.com/{current_owner}/{current_name}/tree/{branch}");
    json_response(
        StatusCode::OK,
        &json!({
            "name": branch,
            "commit": {
                "sha": commit,
                "url": s.api(&format!("commits/{commit}")),
                "commit": {
                    "message": message,
                    "tree": {"sha": tree, "url": s.api(&format!("git/trees/{tree}"))},
                },
            },
            "_links": {
                "self": s.api(&format!("branches/{branch}")),
                "html": html,
            },
            "protected": false,
        }),
    )
}

async fn tree_handler(
    State(s): State<Arc<Shared>>,
    UrlPath((owner, repo, sha)): UrlPath<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !s.is_repo(&owner, &repo) {
        return not_found();
    }
    let Some(tree) = s.resolve(&sha, "tree").await else {
        return not_found();
    };
    // Like GitHub, any value of `recursive` (even 0 or false) recurses.
    let recursive = query.contains_key("recursive");
    let mut args = vec!["ls-tree", "-z", "-l"];
    if recursive {
        args.extend(["-r", "-t"]);
    }
    args.push(&tree);
    let Some(out) = s.git(&args).await else {
        return not_found();
    };
    let mut entries = Vec::new();
    for record in out.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let Some(tab) = record.iter().position(|b| *b == b'\t') else {
            continue;
        };
        let meta = String::from_utf8_lossy(&record[..tab]).to_string();
        let path = String::from_utf8_lossy(&record[tab + 1..]).to_string();
        let fields: Vec<&str> = meta.split_whitespace().collect();
        let [mode, kind, object, size] = fields[..] else {
            continue;
        };
        let mut entry = json!({"path": path, "mode": mode, "type": kind, "sha": object});
        match kind {
            "blob" => {
                entry["size"] = json!(size.parse::<u64>().unwrap_or(0));
                entry["url"] = json!(s.api(&format!("git/blobs/{object}")));
            }
            "tree" => entry["url"] = json!(s.api(&format!("git/trees/{object}"))),
            _ => {}
        }
        entries.push(entry);
    }
    let threshold = s.lock().truncate_threshold;
    let mut truncated = false;
    if let (true, Some(n)) = (recursive, threshold) {
        if entries.len() > n {
            entries.truncate(n);
            truncated = true;
        }
    }
    json_response(
        StatusCode::OK,
        &json!({
            "sha": tree,
            "url": s.api(&format!("git/trees/{tree}")),
            "tree": entries,
            "truncated": truncated,
        }),
    )
}

async fn blob_handler(
    State(s): State<Arc<Shared>>,
    UrlPath((owner, repo, sha)): UrlPath<(String, String, String)>,
) -> Response {
    if !s.is_repo(&owner, &repo) || !is_full_sha(&sha) {
        return not_found();
    }
    if s.git_text(&["cat-file", "-t", &sha]).await.as_deref() != Some("blob") {
        return not_found();
    }
    let Some(content) = s.git(&["cat-file", "blob", &sha]).await else {
        return not_found();
    };
    json_response(
        StatusCode::OK,
        &json!({
            "sha": sha,
            "node_id": format!("B_{sha}"),
            "size": content.len(),
            "url": s.api(&format!("git/blobs/{sha}")),
            "content": base64_lines(&content),
            "encoding": "base64",
        }),
    )
}

async fn tarball_default_handler(
    State(s): State<Arc<Shared>>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
) -> Response {
    if !s.is_repo(&owner, &repo) {
        return not_found();
    }
    let branch = s.default_branch().await;
    tarball_redirect(&s, &branch).await
}

async fn tarball_handler(
    State(s): State<Arc<Shared>>,
    UrlPath((owner, repo, reference)): UrlPath<(String, String, String)>,
) -> Response {
    if !s.is_repo(&owner, &repo) {
        return not_found();
    }
    tarball_redirect(&s, &reference).await
}

async fn tarball_redirect(s: &Shared, reference: &str) -> Response {
    let Some(commit) = s.resolve(reference, "commit").await else {
        return not_found();
    };
    let (owner, name) = s.current();
    let location = format!(
        "{}/_codeload/{owner}/{name}/legacy.tar.gz/{commit}",
        s.base_url
    );
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    set_header(&mut response, "location", &location);
    set_header(&mut response, "content-length", "0");
    response
}

async fn codeload_handler(
    State(s): State<Arc<Shared>>,
    UrlPath((owner, repo, sha)): UrlPath<(String, String, String)>,
) -> Response {
    if !s.is_repo(&owner, &repo) || !is_full_sha(&sha) {
        return not_found();
    }
    let Some(commit) = s.peel(&sha, "commit").await else {
        return not_found();
    };
    let (owner, name) = s.current();
    let root = format!("{owner}-{name}-{}", &commit[..7]);
    let prefix = format!("--prefix={root}/");
    let Some(body) = s
        .git(&["archive", "--format=tar.gz", &prefix, &commit])
        .await
    else {
        return not_found();
    };
    let mut response = Response::new(Body::from(body));
    set_header(&mut response, "content-type", "application/x-gzip");
    set_header(
        &mut response,
        "content-disposition",
        &format!("attachment; filename={root}.tar.gz"),
    );
    response
}

async fn compare_handler(
    State(s): State<Arc<Shared>>,
    UrlPath((owner, repo, basehead)): UrlPath<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !s.is_repo(&owner, &repo) {
        return not_found();
    }
    let Some((base_ref, head_ref)) = basehead.split_once("...") else {
        return not_found();
    };
    let (Some(base), Some(head)) = (
        s.resolve(base_ref, "commit").await,
        s.resolve(head_ref, "commit").await,
    ) else {
        return not_found();
    };
    let Some(merge_base) = s
        .git_text(&["merge-base", &base, &head])
        .await
        .filter(|m| !m.is_empty())
    else {
        return not_found();
    };
    let counts = s
        .git_text(&[
            "rev-list",
            "--left-right",
            "--count",
            &format!("{base}...{head}"),
        ])
        .await
        .unwrap_or_default();
    let mut numbers = counts
        .split_whitespace()
        .map(|n| n.parse::<u64>().unwrap_or(0));
    let behind_by = numbers.next().unwrap_or(0);
    let ahead_by = numbers.next().unwrap_or(0);
    let status = match (ahead_by, behind_by) {
        (0, 0) => "identical",
        (_, 0) => "ahead",
        (0, _) => "behind",
        _ => "diverged",
    };
    let raw = s
        .git(&[
            "diff-tree",
            "-r",
            "-z",
            "-M",
            "--no-commit-id",
            &merge_base,
            &head,
        ])
        .await
        .unwrap_or_default();
    let mut files = Vec::new();
    let mut tokens = raw
        .split(|b| *b == 0)
        .map(|t| String::from_utf8_lossy(t).to_string());
    while let Some(meta) = tokens.next() {
        let Some(meta) = meta.strip_prefix(':') else {
            continue;
        };
        let fields: Vec<&str> = meta.split_whitespace().collect();
        let [_, _, old_sha, new_sha, letter] = fields[..] else {
            continue;
        };
        let Some(path) = tokens.next() else { break };
        let (status, filename, previous) = match letter.chars().next() {
            Some('A') => ("added", path, None),
            Some('D') => ("removed", path, None),
            Some('R') => ("renamed", tokens.next().unwrap_or_default(), Some(path)),
            Some('C') => ("copied", tokens.next().unwrap_or_default(), Some(path)),
            Some('T') => ("changed", path, None),
            _ => ("modified", path, None),
        };
        let sha = if status == "removed" {
            old_sha
        } else {
            new_sha
        };
        let mut file = json!({
            "sha": sha,
            "filename": filename,
            "status": status,
            "additions": 0,
            "deletions": 0,
            "changes": 0,
            "contents_url": s.api(&format!("contents/{filename}?ref={head}")),
        });
        if let Some(previous) = previous {
            file["previous_filename"] = json!(previous);
        }
        files.push(file);
    }
    // As on GitHub: at most 300 files for the whole comparison, listed on
    // the first page only; `per_page` and `page` page the commits (250
    // without them), with a `Link` header.
    files.truncate(s.lock().compare_file_cap);
    let paged = query.contains_key("per_page") || query.contains_key("page");
    let per_page = query
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(if paged { 30 } else { 250 })
        .clamp(1, 250);
    let page = query
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let all_commits: Vec<String> = s
        .git_text(&["rev-list", "--reverse", &format!("{merge_base}..{head}")])
        .await
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let commits: Vec<Value> = all_commits
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|sha| json!({"sha": sha, "url": s.api(&format!("commits/{sha}"))}))
        .collect();
    let mut body = json!({
        "url": s.api(&format!("compare/{basehead}")),
        "status": status,
        "ahead_by": ahead_by,
        "behind_by": behind_by,
        "total_commits": ahead_by,
        "base_commit": {"sha": base},
        "merge_base_commit": {"sha": merge_base},
        "commits": commits,
    });
    if page == 1 {
        body["files"] = json!(files);
    }
    let mut response = json_response(StatusCode::OK, &body);
    let last = all_commits.len().div_ceil(per_page).max(1);
    if paged && page < last {
        let link = |p: usize, rel: &str| {
            format!(
                "<{}>; rel=\"{rel}\"",
                s.api(&format!("compare/{basehead}?per_page={per_page}&page={p}"))
            )
        };
        set_header(
            &mut response,
            "link",
            &format!("{}, {}", link(page + 1, "next"), link(last, "last")),
        );
    }
    response
}

// ---------------------------------------------------------------------------
// Helpers.

fn json_response(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).expect("serialize JSON");
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    set_header(&mut response, "content-type", JSON_CONTENT_TYPE);
    response
}

fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"message": "Not Found", "documentation_url": DOCS_URL, "status": "404"}),
    )
}

fn set_header(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_full_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && is_hex(s)
}

/// Base64 (standard alphabet, padded) in lines of 60 characters, each ending
/// with `\n`, as GitHub's blob API sends it.
fn base64_lines(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        encoded.push(ALPHABET[(n >> 18) as usize & 63] as char);
        encoded.push(ALPHABET[(n >> 12) as usize & 63] as char);
        encoded.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        encoded.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63] as char
        } else {
            '='
        });
    }
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 60 + 1);
    for line in encoded.as_bytes().chunks(60) {
        out.push_str(std::str::from_utf8(line).expect("ASCII"));
        out.push('\n');
    }
    out
}

/// `POST /app/installations/{id}/access_tokens`: a JWT signed by the app
/// (its `iss` claim is read, the signature is not checked) buys an
/// installation token.
async fn access_token_handler(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<u64>,
    headers: HeaderMap,
) -> Response {
    use base64::Engine;
    let Some((app_id, installation_id, lifetime)) = shared.lock().app else {
        return not_found();
    };
    let iss = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|jwt| jwt.split('.').nth(1))
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
        .and_then(|claims| match &claims["iss"] {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        });
    if iss != Some(app_id) {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"message": "A JSON web token could not be decoded", "documentation_url": DOCS_URL, "status": "401"}),
        );
    }
    if id != installation_id {
        return not_found();
    }
    let expires = chrono::Utc::now() + chrono::Duration::seconds(lifetime as i64);
    json_response(
        StatusCode::CREATED,
        &json!({
            "token": shared.token.clone().unwrap_or_else(|| "ghs_fake".into()),
            "expires_at": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "permissions": {"contents": "read", "metadata": "read"},
            "repository_selection": "all",
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GitRepo;
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::time::Instant;

    const OWNER: &str = "acme";
    const NAME: &str = "widgets";

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
    }

    fn no_redirect_client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    /// main: README.md, src/lib.rs, src/nested/deep/mod.rs, docs/guide.md,
    /// assets/logo.bin; `dev` one commit ahead of main; `feature/x` with a
    /// modification, an addition, a removal and a rename.
    fn sample_repo() -> GitRepo {
        let repo = GitRepo::new();
        let binary: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        repo.write("README.md", "# widgets\n")
            .write("src/lib.rs", "pub fn answer() -> u32 { 42 }\n")
            .write("src/nested/deep/mod.rs", "// deep\n")
            .write(
                "docs/guide.md",
                "A guide that is long enough to be detected as a rename.\nLine two.\nLine three.\n",
            )
            .write("assets/logo.bin", binary);
        repo.commit("initial");
        repo.git(&["branch", "dev"]);
        repo.git(&["checkout", "-q", "-b", "feature/x"]);
        repo.write("src/lib.rs", "pub fn answer() -> u32 { 43 }\n")
            .write("src/new.rs", "// new\n")
            .remove("README.md")
            .rename("docs/guide.md", "docs/manual.md");
        repo.commit("feature work");
        repo.git(&["checkout", "-q", "dev"]);
        repo.write("dev.txt", "dev\n");
        repo.commit("dev work");
        repo.git(&["checkout", "-q", "main"]);
        repo
    }

    fn decode_base64(text: &str) -> Vec<u8> {
        let value = |c: u8| -> u32 {
            match c {
                b'A'..=b'Z' => u32::from(c - b'A'),
                b'a'..=b'z' => u32::from(c - b'a') + 26,
                b'0'..=b'9' => u32::from(c - b'0') + 52,
                b'+' => 62,
                b'/' => 63,
                _ => panic!("bad base64 byte {c}"),
            }
        };
        let clean: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        assert_eq!(clean.len() % 4, 0, "padded base64");
        let mut out = Vec::new();
        for quad in clean.chunks(4) {
            let pad = quad.iter().filter(|b| **b == b'=').count();
            let n = quad
                .iter()
                .map(|b| if *b == b'=' { 0 } else { value(*b) })
                .fold(0u32, |acc, v| (acc << 6) | v);
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&bytes[..3 - pad]);
        }
        out
    }

    async fn get_json(url: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let response = client().get(url).send().await.expect("send");
        let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
        let headers = response.headers().clone();
        let body = response.json::<Value>().await.expect("JSON body");
        (status, headers, body)
    }

    fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("header {name} missing"))
            .to_str()
            .expect("ASCII header")
    }

    fn header_u64(headers: &reqwest::header::HeaderMap, name: &str) -> u64 {
        header(headers, name).parse().expect("number")
    }

    fn assert_github_headers(headers: &reqwest::header::HeaderMap) {
        for name in [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-used",
            "x-ratelimit-reset",
        ] {
            header_u64(headers, name);
        }
        assert_eq!(header(headers, "x-ratelimit-resource"), "core");
        assert!(!header(headers, "x-github-request-id").is_empty());
        assert_eq!(
            header(headers, "x-github-api-version-selected"),
            "2022-11-28"
        );
    }

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64_lines(b""), "");
        assert_eq!(base64_lines(b"f"), "Zg==\n");
        assert_eq!(base64_lines(b"fo"), "Zm8=\n");
        assert_eq!(base64_lines(b"foobar"), "Zm9vYmFy\n");
        let long = vec![7u8; 100];
        let encoded = base64_lines(&long);
        assert!(encoded.lines().all(|l| l.len() <= 60));
        assert_eq!(encoded.lines().next().map(str::len), Some(60));
        assert_eq!(decode_base64(&encoded), long);
    }

    #[test]
    fn endpoint_keys() {
        assert_eq!(endpoint_key("/repos/a/b"), "repo");
        assert_eq!(endpoint_key("/repos/a/b/branches"), "branches");
        assert_eq!(endpoint_key("/repos/a/b/branches/feature/x"), "branch");
        assert_eq!(endpoint_key("/repos/a/b/git/trees/abc"), "tree");
        assert_eq!(endpoint_key("/repos/a/b/git/blobs/abc"), "blob");
        assert_eq!(endpoint_key("/repos/a/b/tarball/main"), "tarball");
        assert_eq!(endpoint_key("/_codeload/a/b/legacy.tar.gz/abc"), "codeload");
        assert_eq!(endpoint_key("/repos/a/b/compare/x...y"), "compare");
        assert_eq!(endpoint_key("/rate_limit"), "other");
    }

    #[tokio::test]
    async fn repo_branch_and_not_found() {
        let repo = sample_repo();
        let gh = FakeGitHub::start(OWNER, NAME, repo.path(), None).await;
        let base = gh.base_url();
        assert!(base.starts_with("http://127.0.0.1:") && !base.ends_with('/'));

        let (status, headers, body) = get_json(&format!("{base}/repos/{OWNER}/{NAME}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, "content-type"), JSON_CONTENT_TYPE);
        assert_github_headers(&headers);
        assert_eq!(body["id"], 1);
        assert_eq!(body["name"], NAME);
        assert_eq!(body["full_name"], format!("{OWNER}/{NAME}"));
        assert_eq!(body["private"], false);
        assert_eq!(body["default_branch"], "main");
        assert_eq!(body["owner"]["login"], OWNER);

        for branch in ["main", "dev", "feature/x"] {
            let (status, _, body) =
                get_json(&format!("{base}/repos/{OWNER}/{NAME}/branches/{branch}")).await;
            assert_eq!(status, StatusCode::OK, "{branch}");
            assert_eq!(body["name"], branch);
            assert_eq!(
                body["commit"]["sha"],
                repo.git(&["rev-parse", &format!("refs/heads/{branch}")])
            );
            assert_eq!(
                body["commit"]["commit"]["tree"]["sha"],
                repo.git(&["rev-parse", &format!("refs/heads/{branch}^{{tree}}")])
            );
        }

        let (status, headers, body) =
            get_json(&format!("{base}/repos/{OWNER}/{NAME}/branches/nope")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["message"], "Branch not found");
        assert_github_headers(&headers);

        for url in [
            format!("{base}/repos/{OWNER}/other"),
            format!("{base}/repos/someone/{NAME}/branches"),
            format!("{base}/repos/{OWNER}/{NAME}/git/blobs/{}", "0".repeat(40)),
            format!("{base}/repos/{OWNER}/{NAME}/git/trees/{}", "0".repeat(40)),
            format!("{base}/repos/{OWNER}/{NAME}/tarball/nope"),
            format!("{base}/nothing/here"),
        ] {
            let (status, headers, body) = get_json(&url).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{url}");
            assert_eq!(body["message"], "Not Found", "{url}");
            assert_eq!(body["documentation_url"], DOCS_URL);
            assert_github_headers(&headers);
        }
    }

    #[tokio::test]
    async fn trees_and_blobs_match_git() {
        let repo = sample_repo();
        let gh = FakeGitHub::start(OWNER, NAME, repo.path(), None).await;
        let api = format!("{}/repos/{OWNER}/{NAME}", gh.base_url());
        let commit = repo.git(&["rev-parse", "main"]);
        let tree_sha = repo.git(&["rev-parse", "main^{tree}"]);

        // Recursive, by commit SHA: every blob and every tree, like git ls-tree -r -t.
        let (status, _, body) = get_json(&format!("{api}/git/trees/{commit}?recursive=1")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["sha"], tree_sha);
        assert_eq!(body["truncated"], false);
        let entries = body["tree"].as_array().expect("tree array");
        let paths: Vec<&str> = entries
            .iter()
            .map(|e| e["path"].as_str().unwrap())
            .collect();
        let expected = repo.git(&["ls-tree", "-r", "-t", "--name-only", "main"]);
        assert_eq!(paths, expected.lines().collect::<Vec<_>>());
        assert!(paths.contains(&"src/nested/deep/mod.rs"));
        let deep = entries.iter().find(|e| e["path"] == "src/nested").unwrap();
        assert_eq!(deep["type"], "tree");
        assert_eq!(deep["mode"], "040000");
        assert!(deep.get("size").is_none());
        let files = repo.files_at("main");
        for entry in entries.iter().filter(|e| e["type"] == "blob") {
            let path = entry["path"].as_str().unwrap();
            assert_eq!(entry["mode"], "100644");
            assert_eq!(entry["size"], files[path].len() as u64, "{path}");
            assert_eq!(
                entry["sha"],
                repo.git(&["rev-parse", &format!("main:{path}")])
            );
        }

        // Non-recursive, by tree SHA of a subdirectory: direct children only.
        let src_tree = repo.git(&["rev-parse", "main:src"]);
        let (status, _, body) = get_json(&format!("{api}/git/trees/{src_tree}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["sha"], src_tree);
        let entries = body["tree"].as_array().unwrap();
        let children: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| (e["path"].as_str().unwrap(), e["type"].as_str().unwrap()))
            .collect();
        assert_eq!(children, vec![("lib.rs", "blob"), ("nested", "tree")]);

        // Truncation applies to recursive listings only.
        gh.set_truncate_threshold(Some(2));
        let (_, _, body) = get_json(&format!("{api}/git/trees/{tree_sha}?recursive=1")).await;
        assert_eq!(body["truncated"], true);
        assert_eq!(body["tree"].as_array().unwrap().len(), 2);
        let (_, _, body) = get_json(&format!("{api}/git/trees/{tree_sha}")).await;
        assert_eq!(body["truncated"], false);
        gh.set_truncate_threshold(None);
        let (_, _, body) = get_json(&format!("{api}/git/trees/{tree_sha}?recursive=1")).await;
        assert_eq!(body["truncated"], false);

        // Blobs: base64 in 60-character lines, bytes equal to git cat-file.
        for path in ["assets/logo.bin", "src/lib.rs"] {
            let sha = repo.git(&["rev-parse", &format!("main:{path}")]);
            let (status, headers, body) = get_json(&format!("{api}/git/blobs/{sha}")).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(header(&headers, "content-type"), JSON_CONTENT_TYPE);
            assert_eq!(body["sha"], sha);
            assert_eq!(body["encoding"], "base64");
            let content = body["content"].as_str().unwrap();
            assert!(content.lines().all(|l| l.len() <= 60));
            let expected = Command::new("git")
                .arg("-C")
                .arg(repo.path())
                .args(["cat-file", "blob", &sha])
                .output()
                .unwrap()
                .stdout;
            assert_eq!(decode_base64(content), expected, "{path}");
            assert_eq!(body["size"], expected.len() as u64);
        }
        // A tree SHA is not a blob.
        let (status, _, _) = get_json(&format!("{api}/git/blobs/{tree_sha}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn branches_paginate_with_github_link_headers() {
        let repo = sample_repo();
        let gh = FakeGitHub::start(OWNER, NAME, repo.path(), None).await;
        let api = format!("{}/repos/{OWNER}/{NAME}", gh.base_url());

        let (_, headers, body) = get_json(&format!("{api}/branches?per_page=100")).await;
        let names: Vec<&str> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["dev", "feature/x", "main"]);
        assert!(headers.get("link").is_none());
        assert_eq!(body[2]["commit"]["sha"], repo.git(&["rev-parse", "main"]));
        assert_eq!(body[2]["protected"], false);

        gh.set_page_size_cap(1);
        let link = |page: usize| format!("{api}/branches?per_page=1&page={page}");
        let (_, headers, body) = get_json(&format!("{api}/branches?per_page=100")).await;
        assert_eq!(body.as_array().unwrap().len(), 1);
        assert_eq!(body[0]["name"], "dev");
        assert_eq!(
            header(&headers, "link"),
            format!("<{}>; rel=\"next\", <{}>; rel=\"last\"", link(2), link(3))
        );
        let (_, headers, body) = get_json(&link(2)).await;
        assert_eq!(body[0]["name"], "feature/x");
        assert_eq!(
            header(&headers, "link"),
            format!(
                "<{}>; rel=\"prev\", <{}>; rel=\"next\", <{}>; rel=\"last\", <{}>; rel=\"first\"",
                link(1),
                link(3),
                link(3),
                link(1)
            )
        );
        let (_, headers, body) = get_json(&link(3)).await;
        assert_eq!(body[0]["name"], "main");
        assert_eq!(
            header(&headers, "link"),
            format!("<{}>; rel=\"prev\", <{}>; rel=\"first\"", link(2), link(1))
        );
        assert_eq!(gh.requests().get("branches"), Some(&4));
    }

    #[tokio::test]
    async fn tarball_redirects_to_codeload_gzip() {
        let repo = sample_repo();
        let gh = FakeGitHub::start(OWNER, NAME, repo.path(), Some("s3cret")).await;
        let api = format!("{}/repos/{OWNER}/{NAME}", gh.base_url());
        let commit = repo.git(&["rev-parse", "feature/x"]);

        let response = no_redirect_client()
            .get(format!("{api}/tarball/feature/x"))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 302);
        let location = header(response.headers(), "location").to_string();
        assert_eq!(
            location,
            format!(
                "{}/_codeload/{OWNER}/{NAME}/legacy.tar.gz/{commit}",
                gh.base_url()
            )
        );

        // The default client follows the redirect.
        let response = client()
            .get(format!("{api}/tarball/{commit}"))
            .header("authorization", "token s3cret")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            header(response.headers(), "content-type"),
            "application/x-gzip"
        );
        let bytes = response.bytes().await.unwrap();
        assert!(bytes.len() > 20);
        assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
        let mut tar = Command::new("tar")
            .args(["-tzf", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        tar.stdin.take().unwrap().write_all(&bytes).unwrap();
        let listing = String::from_utf8(tar.wait_with_output().unwrap().stdout).unwrap();
        let root = format!("{OWNER}-{NAME}-{}", &commit[..7]);
        assert!(listing.contains(&format!("{root}/src/new.rs")), "{listing}");
        assert!(
            listing.contains(&format!("{root}/docs/manual.md")),
            "{listing}"
        );

        // Without a ref: the default branch.
        let response = no_redirect_client()
            .get(format!("{api}/tarball"))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap();
        assert!(header(response.headers(), "location").ends_with(&repo.git(&["rev-parse", "main"])));

        let counts = gh.requests();
        assert_eq!(counts.get("tarball"), Some(&3));
        assert_eq!(counts.get("codeload"), Some(&1));
        assert_eq!(gh.total_requests(), 4);
    }

    #[tokio::test]
    async fn token_is_required_when_configured() {
        let repo = sample_repo();
        let gh = FakeGitHub::start(OWNER, NAME, repo.path(), Some("s3cret")).await;
        let url = format!("{}/repos/{OWNER}/{NAME}", gh.base_url());
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("token wrong"),
            Some("s3cret"),
        ] {
            let mut request = client().get(&url);
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), 401, "{auth:?}");
            assert_github_headers(response.headers());
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["message"], "Bad credentials");
            assert_eq!(body["documentation_url"], DOCS_URL);
        }
        for auth in ["Bearer s3cret", "token s3cret", "bearer s3cret"] {
            let response = client()
                .get(&url)
                .header("authorization", auth)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200, "{auth}");
        }
        assert_eq!(gh.requests().get("repo"), Some(&7));
    }

    #[tokio::test]
    async fn rate_limit_budget_counts_down() {
        let repo = sample_repo();
        let gh = FakeGitHub::start(OWNER, NAME, repo.path(), None).await;
        let url = format!("{}/repos/{OWNER}/{NAME}", gh.base_url());
        let (_, headers, _) = get_json(&url).await;
        assert_eq!(header_u64(&headers, "x-ratelimit-limit"), 5000);
        assert_eq!(header_u64(&headers, "x-ratelimit-remaining"), 4999);
        gh.set_rate_limit(10);
        let (_, headers, _) = get_json(&url).await;
        assert_eq!(header_u64(&headers, "x-ratelimit-limit"), 10);
        assert_eq!(header_u64(&headers, "x-ratelimit-remaining"), 9);
        assert_eq!(header_u64(&headers, "x-ratelimit-used"), 1);
        let reset = header_u64(&headers, "x-ratelimit-reset");
        assert!(reset >= unix_now() + 3590 && reset <= unix_now() + 3600);
        let (_, headers, _) = get_json(&url).await;
        assert_eq!(header_u64(&headers, "x-ratelimit-remaining"), 8);
        assert_ne!(
            header(&headers, "x-github-request-id"),
            "",
            "request id present"
        );
    }

    #[tokio::test]
    async fn conditional_requests_answer_304_without_budget() {
        let repo = sample_repo();
        let gh = FakeGitHub::start(OWNER, NAME, repo.path(), Some("tok")).await;
        let url = format!("{}/repos/{OWNER}/{NAME}/branches/main", gh.base_url());
        let send = |auth: Option<&'static str>, inm: Option<String>| {
            let mut request = client().get(&url);
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            if let Some(inm) = inm {
                request = request.header("if-none-match", inm);
            }
            async move { request.send().await.expect("send") }
        };
        let first = send(Some("Bearer tok"), None).await;
        assert_eq!(first.status().as_u16(), 200);
        let etag = header(first.headers(), "etag").to_string();
        assert!(etag.starts_with("W/\"") && etag.ends_with('"'), "{etag}");
        let remaining = header_u64(first.headers(), "x-ratelimit-remaining");
        gh.reset_counts();

        // The same tag (and in a list, and `*`): 304, no body, no unit, the
        // rate-limit headers unchanged.
        for inm in [etag.clone(), format!("\"nope\", {etag}"), "*".to_string()] {
            let r = send(Some("token tok"), Some(inm)).await;
            assert_eq!(r.status().as_u16(), 304);
            assert_eq!(header(r.headers(), "etag"), etag);
            assert_eq!(header_u64(r.headers(), "x-ratelimit-remaining"), remaining);
            assert!(r.bytes().await.unwrap().is_empty());
        }
        assert_eq!((gh.not_modified(), gh.budget_units()), (3, 0));

        // Weak comparison: the strong form of a weak tag matches too.
        let strong_form = etag.trim_start_matches("W/").to_string();
        let r = send(Some("Bearer tok"), Some(strong_form)).await;
        assert_eq!(r.status().as_u16(), 304);
        // Another tag: a 200 that spends a unit.
        let r = send(Some("Bearer tok"), Some("W/\"other\"".into())).await;
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(
            header_u64(r.headers(), "x-ratelimit-remaining"),
            remaining - 1
        );
        assert_eq!(gh.budget_units(), 1);
        // Not authorized: 401, whatever the tag.
        let r = send(None, Some(etag.clone())).await;
        assert_eq!(r.status().as_u16(), 401);

        // Strong tags on request; they depend on the Authorization header.
        gh.set_strong_etags(true);
        let r = send(Some("Bearer tok"), None).await;
        let strong = header(r.headers(), "etag").to_string();
        assert!(strong.starts_with('"'), "{strong}");
        assert_eq!(
            send(Some("Bearer tok"), Some(strong.clone()))
                .await
                .status()
                .as_u16(),
            304
        );
        assert_eq!(
            send(Some("token tok"), Some(strong))
                .await
                .status()
                .as_u16(),
            304,
            "the same token, spelt otherwise"
        );

        // Without a token, a 304 to an anonymous request still costs a unit.
        let open = FakeGitHub::start(OWNER, NAME, repo.path(), None).await;
        let url = format!("{}/repos/{OWNER}/{NAME}/branches/main", open.base_url());
        let r = client().get(&url).send().await.unwrap();
        let tag = header(r.headers(), "etag").to_string();
        open.reset_counts();
        let r = client()
            .get(&url)
            .header("if-none-match", tag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 304);
        assert_eq!((open.not_modified(), open.budget_units()), (1, 1));
        // Another token, another tag.
        let with = |token: &str| {
            client()
                .get(&url)
                .header("authorization", format!("Bearer {token}"))
        };
        let r = with("alpha").send().await.unwrap();
        let alpha = header(r.headers(), "etag").to_string();
        let r = with("beta")
            .header("if-none-match", alpha)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }

    #[tokio::test]
    async fn comparisons_page_commits_and_cap_files() {
        let repo = sample_repo();
        let gh = FakeGitHub::start(OWNER, NAME, repo.path(), None).await;
        let url = format!(
            "{}/repos/{OWNER}/{NAME}/compare/main...feature/x",
            gh.base_url()
        );
        let (status, headers, body) = get_json(&format!("{url}?per_page=1")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ahead");
        assert_eq!(body["commits"].as_array().unwrap().len(), 1);
        assert!(!body["files"].as_array().unwrap().is_empty());
        assert!(header(&headers, "etag").starts_with("W/"));
        gh.set_compare_file_cap(0);
        let (_, _, body) = get_json(&url).await;
        assert_eq!(body["files"], json!([]));
        // Files come on the first page only.
        let (_, _, body) = get_json(&format!("{url}?per_page=1&page=2")).await;
        assert!(body.get("files").is_none(), "{body}");
    }

    #[tokio::test]
    async fn a_renamed_repository_answers_301_to_its_id() {
        let repo = sample_repo();
        let gh = FakeGitHub::start(OWNER, "renamed", repo.path(), None).await;
        gh.set_previous_name(OWNER, NAME);
        let r = no_redirect_client()
            .get(format!(
                "{}/repos/{OWNER}/{NAME}/branches/main",
                gh.base_url()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 301);
        let location = header(r.headers(), "location").to_string();
        assert!(
            location.ends_with("/repositories/1/branches/main"),
            "{location}"
        );
        let (status, _, body) = get_json(&format!("{}/repositories/1", gh.base_url())).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["full_name"], format!("{OWNER}/renamed"));
    }

    #[tokio::test]
    async fn faults_apply_in_order() {
        let repo = sample_repo();
        let gh = FakeGitHub::start(OWNER, NAME, repo.path(), None).await;
        let api = format!("{}/repos/{OWNER}/{NAME}", gh.base_url());
        let url = format!("{api}/branches/main");

        gh.inject(Fault::ServerErrors {
            count: 2,
            status: 502,
        });
        gh.inject(Fault::SecondaryRateLimit {
            retry_after_secs: 7,
        });
        gh.inject(Fault::TooManyRequests {
            retry_after_secs: 3,
        });
        for _ in 0..2 {
            let (status, headers, body) = get_json(&url).await;
            assert_eq!(status, StatusCode::BAD_GATEWAY);
            assert_eq!(body["message"], "Server Error");
            assert_github_headers(&headers);
        }
        let (status, headers, body) = get_json(&url).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body["message"]
            .as_str()
            .unwrap()
            .contains("secondary rate limit"));
        assert_eq!(header(&headers, "retry-after"), "7");
        assert!(header_u64(&headers, "x-ratelimit-remaining") > 0);
        let (status, headers, _) = get_json(&url).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&headers, "retry-after"), "3");
        let (status, headers, _) = get_json(&url).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers.get("retry-after").is_none());

        // Slow.
        gh.inject(Fault::Slow {
            count: 1,
            delay_ms: 300,
        });
        let started = Instant::now();
        let (status, _, _) = get_json(&url).await;
        assert_eq!(status, StatusCode::OK);
        assert!(started.elapsed() >= Duration::from_millis(300));
        let started = Instant::now();
        get_json(&url).await;
        assert!(started.elapsed() < Duration::from_millis(300));

        // DropConnection: a transport error, not an HTTP status.
        gh.inject(Fault::DropConnection { count: 2 });
        let http = client();
        for _ in 0..2 {
            let error = http.get(&url).send().await.expect_err("connection dropped");
            assert!(error.status().is_none(), "{error:?}");
            assert!(error.is_request() || error.is_connect(), "{error:?}");
        }
        let response = http.get(&url).send().await.expect("served again");
        assert_eq!(response.status().as_u16(), 200);

        // Counted, faulted requests included: 2 + 1 + 1 + 1, 2 slow-test
        // requests, 2 dropped (not retried by the client), 1 served.
        assert_eq!(gh.requests().get("branch"), Some(&10));
        assert_eq!(gh.total_requests(), 10);
        gh.reset_counts();
        assert!(gh.requests().is_empty());
        assert_eq!(gh.total_requests(), 0);
    }

    #[tokio::test]
    async fn exhausted_primary_budget_refills_at_reset() {
        let repo = sample_repo();
        let gh = FakeGitHub::start(OWNER, NAME, repo.path(), None).await;
        let url = format!("{}/repos/{OWNER}/{NAME}", gh.base_url());
        gh.set_rate_limit(100);
        // 3 s, not 1: two requests on a loaded CI machine can take a second.
        gh.inject(Fault::ExhaustPrimary { reset_in_secs: 3 });
        let mut reset = 0;
        for _ in 0..2 {
            let (status, headers, body) = get_json(&url).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert!(body["message"]
                .as_str()
                .unwrap()
                .starts_with("API rate limit exceeded for "));
            assert_eq!(header_u64(&headers, "x-ratelimit-remaining"), 0);
            assert_eq!(header_u64(&headers, "x-ratelimit-used"), 100);
            assert!(headers.get("retry-after").is_none());
            reset = header_u64(&headers, "x-ratelimit-reset");
            assert!(reset <= unix_now() + 3);
        }
        // Wait until the advertised reset second has begun.
        while unix_now() < reset {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (status, headers, _) = get_json(&url).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header_u64(&headers, "x-ratelimit-remaining"), 99);
        assert_eq!(gh.requests().get("repo"), Some(&3));
    }

    #[tokio::test]
    async fn codeload_is_not_faulted() {
        let repo = sample_repo();
        let gh = FakeGitHub::start(OWNER, NAME, repo.path(), None).await;
        let commit = repo.git(&["rev-parse", "main"]);
        gh.inject(Fault::ServerErrors {
            count: 1,
            status: 500,
        });
        let response = client()
            .get(format!(
                "{}/repos/{OWNER}/{NAME}/tarball/main",
                gh.base_url()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 500);
        gh.inject(Fault::ServerErrors {
            count: 1,
            status: 503,
        });
        let response = client()
            .get(format!(
                "{}/_codeload/{OWNER}/{NAME}/legacy.tar.gz/{commit}",
                gh.base_url()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        // The fault is still queued for the next API request.
        let (status, _, _) = get_json(&format!("{}/repos/{OWNER}/{NAME}", gh.base_url())).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn compare_lists_changed_files() {
        let repo = sample_repo();
        let gh = FakeGitHub::start(OWNER, NAME, repo.path(), None).await;
        let api = format!("{}/repos/{OWNER}/{NAME}", gh.base_url());
        let (status, _, body) = get_json(&format!("{api}/compare/main...feature/x")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ahead");
        assert_eq!(body["ahead_by"], 1);
        assert_eq!(body["behind_by"], 0);
        let mut files: Vec<(String, String, String, Option<String>)> = body["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["filename"].as_str().unwrap().to_string(),
                    f["status"].as_str().unwrap().to_string(),
                    f["sha"].as_str().unwrap().to_string(),
                    f["previous_filename"].as_str().map(str::to_string),
                )
            })
            .collect();
        files.sort();
        let blob = |rev: &str| repo.git(&["rev-parse", rev]);
        assert_eq!(
            files,
            vec![
                (
                    "README.md".into(),
                    "removed".into(),
                    blob("main:README.md"),
                    None
                ),
                (
                    "docs/manual.md".into(),
                    "renamed".into(),
                    blob("feature/x:docs/manual.md"),
                    Some("docs/guide.md".into())
                ),
                (
                    "src/lib.rs".into(),
                    "modified".into(),
                    blob("feature/x:src/lib.rs"),
                    None
                ),
                (
                    "src/new.rs".into(),
                    "added".into(),
                    blob("feature/x:src/new.rs"),
                    None
                ),
            ]
        );
        let (_, _, body) = get_json(&format!("{api}/compare/feature/x...dev")).await;
        assert_eq!(body["status"], "diverged");
        let (_, _, body) = get_json(&format!("{api}/compare/main...main")).await;
        assert_eq!(body["status"], "identical");
        assert_eq!(gh.requests().get("compare"), Some(&3));
    }
}
