//! `Source` for GitHub and GitHub Enterprise, through octocrab with a
//! configurable API base URL.
//!
//! Every request goes through [`GitHubSource::get`], which:
//! - consults the token's shared budget in Redis first, so that a fleet of
//!   workers stops asking once the primary limit is spent;
//! - holds a permit of a per-process semaphore, keeping the fleet under
//!   GitHub's 100-concurrent-requests rule;
//! - retries 5xx answers, connection errors and timeouts a few times, after
//!   exponential pauses with jitter (`backon`, like every retry here);
//! - reads `x-ratelimit-*` and `retry-after` on every response. A primary or
//!   secondary limit becomes `SourceErrorKind::RateLimited` with the time to
//!   wait, and the pipeline reschedules the step for then. No worker sleeps
//!   through a rate limit.
//!
//! The repository is looked up (`GET /repos/{owner}/{name}`) when a project
//! is connected; what that gave (the canonical `owner/name`, the id) is kept
//! with the project ([`Source::remote`]), and syncs open the source with it
//! ([`GitHubSource::open_known`]) and send no lookup. A project connected
//! before that was kept is looked up once per process, token and repository
//! ([`RepoCache`], kept [`REPO_LOOKUP_TTL`]). A repository renamed or
//! transferred since (301), a token revoked (401) or a repository gone or
//! unreadable (404) is still a clear error, from the first request that
//! meets it. The branch head is asked for
//! conditionally: its ETag and answer are kept in Redis per token (by the
//! token's hash), so a branch that has not moved costs one `304 Not
//! Modified`, which GitHub does not count against the rate limit.
//!
//! A first import downloads the tarball (two requests) rather than one
//! request per blob. Archive contents are matched to tree entries by their
//! Git blob SHA. This crate knows GitHub's REST shapes and nothing of the
//! ledger.

use async_trait::async_trait;
use backon::{BackoffBuilder as _, ExponentialBuilder};
use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use http::HeaderMap;
use http_body_util::BodyExt;
use octocrab::Octocrab;
use projsync_domain::source::git_blob_sha;
use projsync_domain::source::{RemoteIdentity, TreeChange, TreeDiff};
use projsync_domain::{Blob, Branch, EntryKind, Source, SourceError, TreeEntry};
use projsync_metrics::{GithubStatus, Metrics};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;

/// The pause before the first extra try of a request (a connection error,
/// a 5xx answer), doubled for each next one up to `RETRY_MAX_DELAY`, each
/// with up to as much again of jitter.
const RETRY_MIN_DELAY: Duration = Duration::from_millis(200);
const RETRY_MAX_DELAY: Duration = Duration::from_millis(6_400);

#[derive(Debug, Clone)]
pub struct GitHubConfig {
    /// `https://api.github.com`, or `https://HOST/api/v3` for Enterprise.
    pub api_url: String,
    /// Requests in flight per worker process. Keep the fleet's total
    /// (processes × this) under GitHub's limit of 100.
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
    /// Extra tries for a 5xx answer or a connection error.
    pub request_retries: u32,
    /// `Source::diff` asks the comparison API only for a repository whose
    /// last full tree had at least this many entries (or was truncated):
    /// below it, one recursive tree listing is cheaper than the comparison
    /// plus the listings of the changed directories. 0: always compare.
    pub compare_min_entries: u64,
}

impl Default for GitHubConfig {
    fn default() -> Self {
        Self {
            api_url: "https://api.github.com".into(),
            max_concurrent_requests: 16,
            request_timeout: Duration::from_secs(30),
            request_retries: 3,
            compare_min_entries: 10_000,
        }
    }
}

/// How the source authenticates. Secrets never reach a log: `Debug` is
/// redacted.
#[derive(Clone, Default)]
pub enum Credentials {
    /// Public repositories only.
    #[default]
    Anonymous,
    /// A personal access token (or any token GitHub takes as a bearer).
    Token(String),
    /// A GitHub App installation: octocrab signs a JWT with the key, trades
    /// it for an installation token and refreshes that token when less than
    /// 30 s of it remain.
    App {
        app_id: u64,
        installation_id: u64,
        private_key_pem: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
            Credentials::App {
                app_id,
                installation_id,
                ..
            } => write!(
                f,
                "App {{ app_id: {app_id}, installation_id: {installation_id}, private_key_pem: <redacted> }}"
            ),
        }
    }
}

impl Credentials {
    /// What the rate-limit budget is kept per: a token's hash, or the app
    /// installation (whose tokens share one budget).
    pub fn budget_identity(&self) -> String {
        use sha2::{Digest, Sha256};
        match self {
            Credentials::Anonymous => "anonymous".into(),
            Credentials::Token(t) => {
                let digest = Sha256::digest(t.as_bytes());
                projsync_domain::hex(&digest[..8])
            }
            Credentials::App {
                app_id,
                installation_id,
                ..
            } => format!("app-{app_id}-{installation_id}"),
        }
    }
}

/// Requests sent, for tests and benchmarks.
#[derive(Debug, Default)]
pub struct RequestCounters {
    pub total: AtomicU64,
    pub blobs: AtomicU64,
    /// Conditional requests answered `304 Not Modified`.
    pub not_modified: AtomicU64,
}

/// How long a kept ETag (and the answer it stands for) lives in Redis.
pub const ETAG_TTL_SECS: u64 = 7 * 24 * 3600;

/// The primary rate-limit budget of one token, shared by every worker
/// through Redis.
#[derive(Clone)]
pub struct Budget {
    conn: redis::aio::ConnectionManager,
    key: String,
    /// Prefix of the fleet-wide tree listing cache.
    trees: String,
    /// Prefix of this token's ETags: `{namespace}:github:etag:{token hash}:`.
    etags: String,
}

/// A kept conditional answer: the ETag GitHub sent and the body it stands for.
#[derive(Debug, Deserialize, serde::Serialize)]
struct KeptAnswer {
    etag: String,
    body: String,
}

impl Budget {
    /// `namespace` prefixes the key (one per deployment, or per test).
    pub fn new(
        conn: redis::aio::ConnectionManager,
        namespace: &str,
        credentials: &Credentials,
    ) -> Self {
        Self {
            conn,
            key: format!(
                "{namespace}:github:ratelimit:{}",
                credentials.budget_identity()
            ),
            trees: format!("{namespace}:github:tree:"),
            etags: format!("{namespace}:github:etag:{}:", credentials.budget_identity()),
        }
    }

    /// The Redis key of the ETag kept for `url` (hashed: a URL holds
    /// repository and branch names, a key need not).
    fn etag_key(&self, url: &str) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(url.as_bytes());
        format!("{}{}", self.etags, projsync_domain::hex(&digest[..16]))
    }

    async fn kept_answer(&self, url: &str) -> Option<KeptAnswer> {
        let mut conn = self.conn.clone();
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.etag_key(url))
            .query_async(&mut conn)
            .await
            .ok()?;
        serde_json::from_slice(&raw?).ok()
    }

    async fn keep_answer(&self, url: &str, answer: &KeptAnswer) {
        let Ok(json) = serde_json::to_vec(answer) else {
            return;
        };
        let mut conn = self.conn.clone();
        let _: Result<(), _> = redis::cmd("SET")
            .arg(self.etag_key(url))
            .arg(json)
            .arg("EX")
            .arg(ETAG_TTL_SECS)
            .query_async(&mut conn)
            .await;
    }

    /// A tree listing another worker (or this one, before a restart) stored.
    async fn cached_tree(&self, sha: &str) -> Option<Vec<RawEntry>> {
        let mut conn = self.conn.clone();
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(format!("{}{sha}", self.trees))
            .query_async(&mut conn)
            .await
            .ok()?;
        serde_json::from_slice(&raw?).ok()
    }

    /// Tree listings never change (content-addressed); keep them a week.
    async fn store_tree(&self, sha: &str, entries: &[RawEntry]) {
        let Ok(json) = serde_json::to_vec(entries) else {
            return;
        };
        let mut conn = self.conn.clone();
        let _: Result<(), _> = redis::cmd("SET")
            .arg(format!("{}{sha}", self.trees))
            .arg(json)
            .arg("EX")
            .arg(7 * 24 * 3600)
            .query_async(&mut conn)
            .await;
    }

    /// Store many listings at once (one round trip).
    async fn store_trees(&self, listings: &[(String, Vec<RawEntry>)]) {
        if listings.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for (sha, entries) in listings {
            if let Ok(json) = serde_json::to_vec(entries) {
                pipe.cmd("SET")
                    .arg(format!("{}{sha}", self.trees))
                    .arg(json)
                    .arg("EX")
                    .arg(7 * 24 * 3600)
                    .ignore();
            }
        }
        let mut conn = self.conn.clone();
        let _: Result<(), _> = pipe.query_async(&mut conn).await;
    }

    /// The key of a repository's last full tree size (entries, or
    /// `u64::MAX` when GitHub truncated it).
    fn size_key(&self, full_name: &str) -> String {
        format!("{}size:{}", self.trees, full_name.to_ascii_lowercase())
    }

    async fn tree_size(&self, full_name: &str) -> Option<u64> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(self.size_key(full_name))
            .query_async::<Option<u64>>(&mut conn)
            .await
            .ok()?
    }

    async fn record_tree_size(&self, full_name: &str, entries: u64) {
        let mut conn = self.conn.clone();
        let _: Result<(), _> = redis::cmd("SET")
            .arg(self.size_key(full_name))
            .arg(entries)
            .arg("EX")
            .arg(7 * 24 * 3600)
            .query_async(&mut conn)
            .await;
    }

    /// How long to wait if the budget is spent; `None` if requests may go.
    async fn exhausted_for(&self) -> Option<Duration> {
        let mut conn = self.conn.clone();
        let (remaining, reset): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
            .arg(&self.key)
            .arg("remaining")
            .arg("reset")
            .query_async(&mut conn)
            .await
            .ok()?;
        let (remaining, reset) = (remaining?, reset?);
        let wait = reset - now_secs();
        (remaining <= 0 && wait > 0).then(|| Duration::from_secs(wait as u64))
    }

    async fn record(&self, remaining: i64, reset: i64) {
        let mut conn = self.conn.clone();
        let _: Result<(), _> = redis::pipe()
            .cmd("HSET")
            .arg(&self.key)
            .arg("remaining")
            .arg(remaining)
            .arg("reset")
            .arg(reset)
            .ignore()
            .cmd("EXPIREAT")
            .arg(&self.key)
            .arg(reset + 60)
            .ignore()
            .query_async(&mut conn)
            .await;
    }
}

/// What the repository lookup gave: kept with the project when it is
/// connected, and for the process's later syncs of a project connected
/// before that.
#[derive(Debug, Clone, Deserialize)]
pub struct RepoInfo {
    /// GitHub's id of the repository (unknown for a kept lookup that did
    /// not record it).
    #[serde(default)]
    pub id: Option<u64>,
    /// The canonical `owner/name` (GitHub's spelling).
    pub full_name: String,
    #[serde(default)]
    pub default_branch: String,
}

/// Repository lookups by API URL, `owner/name` (lowercase) and token
/// identity, with the time they were made.
pub type RepoCache = Arc<Mutex<HashMap<String, (std::time::Instant, RepoInfo)>>>;

/// How long a repository lookup is reused before it is made again.
pub const REPO_LOOKUP_TTL: Duration = Duration::from_secs(3600);

/// Tree listings by tree SHA, in this process; behind it, the same in Redis
/// for the whole fleet. Trees are content-addressed, so a listing never goes
/// stale, and a truncated tree's walk only requests subtrees whose SHA no
/// worker has listed before: the ones that changed.
pub type TreeCache = Arc<Mutex<HashMap<String, Vec<RawEntry>>>>;

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct RawEntry {
    pub path: String,
    pub mode: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub sha: String,
    #[serde(default)]
    pub size: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct TreeResponse {
    sha: String,
    tree: Vec<RawEntry>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Debug, Deserialize)]
struct CompareResponse {
    status: String,
    /// Absent when GitHub could not compute the file list (too large).
    #[serde(default)]
    files: Option<Vec<ComparedFile>>,
}

#[derive(Debug, Deserialize)]
struct ComparedFile {
    filename: String,
    status: String,
    #[serde(default)]
    previous_filename: Option<String>,
}

/// GitHub lists at most 300 files in a comparison; a list this long may be cut.
const COMPARE_FILE_LIMIT: usize = 300;

#[derive(Debug, Deserialize)]
struct BranchResponse {
    name: String,
    commit: CommitRef,
}

#[derive(Debug, Deserialize)]
struct CommitRef {
    sha: String,
}

#[derive(Debug, Deserialize)]
struct BlobResponse {
    content: String,
    #[serde(default)]
    encoding: String,
}

struct Resp {
    status: u16,
    headers: HeaderMap,
    body: bytes_like::Bytes,
}

mod bytes_like {
    pub type Bytes = Vec<u8>;
}

pub struct GitHubSource {
    client: Octocrab,
    full_name: String,
    /// The lookup's answer (fresh or kept).
    info: Option<RepoInfo>,
    cfg: GitHubConfig,
    budget: Option<Budget>,
    limiter: Arc<Semaphore>,
    counters: Arc<RequestCounters>,
    tree_cache: TreeCache,
    metrics: Metrics,
    /// Comparisons GitHub answered that cannot list the way from one
    /// commit to another (`from` unknown or not an ancestor): asked once
    /// per source, so that a scan's `diff` and a truncated tree's rebuild
    /// do not ask twice.
    no_comparison: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn header_i64(headers: &HeaderMap, name: &str) -> Option<i64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// `owner/name` by GitHub's rules (`domain::names`), checked before any
/// request: `acme/..` would otherwise become another URL path.
pub fn parse_location(location: &str) -> Result<(String, String), SourceError> {
    let (owner, name) =
        projsync_domain::names::check_github_repository(location).map_err(SourceError::invalid)?;
    Ok((owner.to_string(), name.to_string()))
}

fn encode_ref(r: &str) -> String {
    r.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

impl GitHubSource {
    /// A source for `location` (`owner/name`, checked) that has sent
    /// nothing yet.
    fn new(
        cfg: &GitHubConfig,
        location: &str,
        credentials: Credentials,
        budget: Option<Budget>,
        tree_cache: TreeCache,
        metrics: Metrics,
    ) -> Result<Self, SourceError> {
        let (owner, name) = parse_location(location)?;
        Ok(Self {
            client: build_client(cfg, credentials)?,
            full_name: format!("{owner}/{name}"),
            info: None,
            cfg: cfg.clone(),
            budget,
            limiter: Arc::new(Semaphore::new(cfg.max_concurrent_requests.max(1))),
            counters: Arc::default(),
            tree_cache,
            metrics,
            no_comparison: Default::default(),
        })
    }

    /// Connect to `owner/name`, checking that the repository can be read,
    /// unless `repos` holds a lookup of it with this token younger than
    /// [`REPO_LOOKUP_TTL`]: then no request is sent, and the canonical
    /// name the lookup gave is used. Requests are counted in `metrics` (by
    /// endpoint kind and status), and the rate-limit budget GitHub reports
    /// is shown there.
    pub async fn open(
        cfg: &GitHubConfig,
        location: &str,
        credentials: Credentials,
        budget: Option<Budget>,
        tree_cache: TreeCache,
        repos: RepoCache,
        metrics: Metrics,
    ) -> Result<Self, SourceError> {
        let identity = credentials.budget_identity();
        let mut source = Self::new(cfg, location, credentials, budget, tree_cache, metrics)?;
        let key = format!(
            "{}\n{}\n{identity}",
            cfg.api_url,
            source.full_name.to_ascii_lowercase()
        );
        let kept = repos
            .lock()
            .expect("repo cache lock")
            .get(&key)
            .filter(|(at, _)| at.elapsed() < REPO_LOOKUP_TTL)
            .map(|(_, info)| info.clone());
        let info = match kept {
            Some(info) => info,
            None => {
                let info = source.lookup().await?;
                let mut cache = repos.lock().expect("repo cache lock");
                if cache.len() > 10_000 {
                    cache.clear();
                }
                cache.insert(key, (std::time::Instant::now(), info.clone()));
                info
            }
        };
        if parse_location(&info.full_name).is_ok() {
            source.full_name = info.full_name.clone();
        }
        source.info = Some(info);
        Ok(source)
    }

    /// Connect to a repository whose lookup was made when its project was
    /// connected (`known`, kept in the ledger): no request is sent. The
    /// repository may have been renamed, deleted or made unreadable since;
    /// the first request that meets it says so (a 301 names the new
    /// `owner/name`, a 404 is looked up again to tell which).
    pub fn open_known(
        cfg: &GitHubConfig,
        known: RepoInfo,
        credentials: Credentials,
        budget: Option<Budget>,
        tree_cache: TreeCache,
        metrics: Metrics,
    ) -> Result<Self, SourceError> {
        let mut source = Self::new(
            cfg,
            &known.full_name,
            credentials,
            budget,
            tree_cache,
            metrics,
        )?;
        source.info = Some(known);
        Ok(source)
    }

    /// What the repository lookup gave (at open, kept from an earlier open
    /// in this process, or kept with the project when it was connected).
    pub fn repository(&self) -> Option<&RepoInfo> {
        self.info.as_ref()
    }

    /// `GET /repos/{owner}/{name}`: the repository, or why it cannot be read.
    async fn lookup(&self) -> Result<RepoInfo, SourceError> {
        let resp = self.get(&self.repo_path(""), "repo").await?;
        match resp.status {
            404 => Err(self.not_found_repository()),
            301 | 302 | 307 | 308 => Err(self.moved(&resp).await),
            _ => {
                self.expect_ok(&resp, "read the repository")?;
                serde_json::from_slice(&resp.body).map_err(|e| {
                    SourceError::unavailable(format!(
                        "GitHub sent an unexpected repository answer: {e}"
                    ))
                })
            }
        }
    }

    fn not_found_repository(&self) -> SourceError {
        SourceError::not_found(format!(
            "repository {} not found, or the token cannot read it; check the name and the \
             token's access",
            self.full_name
        ))
    }

    /// Why GitHub answered 404 for something in this repository: look the
    /// repository up again (the kept lookup may be older than a deletion,
    /// a transfer or a lost access) and say whether the repository is
    /// missing or unreadable with this token, has moved, or is there (then
    /// `otherwise` is the error).
    async fn explain_missing(&self, otherwise: SourceError) -> SourceError {
        match self.lookup().await {
            Ok(_) => otherwise,
            Err(e) => e,
        }
    }

    /// The error for a repository GitHub redirects (renamed or
    /// transferred), naming its new `owner/name` when GitHub tells it.
    async fn moved(&self, resp: &Resp) -> SourceError {
        let location = resp
            .headers
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
            .to_string();
        // `…/repositories/{id}/…`: the repository's id survives renames.
        let id = location
            .split_once("/repositories/")
            .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or_default())
            .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
        let mut now = None;
        if let Some(id) = id {
            if let Ok(r) = self.get(&format!("/repositories/{id}"), "repo").await {
                if r.status == 200 {
                    now = serde_json::from_slice::<serde_json::Value>(&r.body)
                        .ok()
                        .and_then(|v| v["full_name"].as_str().map(str::to_string));
                }
            }
        }
        match now {
            Some(now) => SourceError::not_found(format!(
                "repository {} was renamed or transferred: GitHub now calls it {now}; a \
                 project's repository cannot be changed, so connect a new project to {now} \
                 (POST /api/v1/projects); this one keeps its history",
                self.full_name
            )),
            None => SourceError::not_found(format!(
                "repository {} was renamed or transferred (GitHub redirects it); a project's \
                 repository cannot be changed, so connect a new project to its new owner/name \
                 (POST /api/v1/projects); this one keeps its history",
                self.full_name
            )),
        }
    }

    pub fn counters(&self) -> Arc<RequestCounters> {
        self.counters.clone()
    }

    fn repo_path(&self, rest: &str) -> String {
        format!("/repos/{}{rest}", self.full_name)
    }

    fn expect_ok(&self, resp: &Resp, what: &str) -> Result<(), SourceError> {
        if (200..300).contains(&resp.status) {
            return Ok(());
        }
        if resp.status == 301 {
            return Err(SourceError::not_found(format!(
                "repository {} was renamed or transferred (GitHub answered 301 when asked to \
                 {what}); a project's repository cannot be changed, so connect a new project \
                 to its new owner/name (POST /api/v1/projects); this one keeps its history",
                self.full_name
            )));
        }
        let message = serde_json::from_slice::<serde_json::Value>(&resp.body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_default();
        Err(SourceError::unavailable(format!(
            "GitHub answered {} when asked to {what} in {}: {message}",
            resp.status, self.full_name
        )))
    }

    /// One GET with the budget, the concurrency limit, retries of 5xx and
    /// connection errors, and rate-limit handling.
    async fn get(&self, uri: &str, endpoint: &'static str) -> Result<Resp, SourceError> {
        self.get_with(&self.client, uri, endpoint, None).await
    }

    /// A GET sent with the ETag kept for `uri` (per token, in Redis). A
    /// `304 Not Modified` comes back as the kept answer with status 200: it
    /// cost one request and no rate-limit budget. A fresh 200 with an ETag
    /// is kept for next time. Without Redis, a plain GET.
    async fn get_conditional(
        &self,
        uri: &str,
        endpoint: &'static str,
    ) -> Result<Resp, SourceError> {
        let Some(budget) = &self.budget else {
            return self.get(uri, endpoint).await;
        };
        let url = format!("{}{uri}", self.cfg.api_url);
        let kept = budget.kept_answer(&url).await;
        let headers = kept.as_ref().and_then(|k| {
            let mut h = HeaderMap::new();
            h.insert(http::header::IF_NONE_MATCH, k.etag.parse().ok()?);
            Some(h)
        });
        let mut resp = self.get_with(&self.client, uri, endpoint, headers).await?;
        match (resp.status, kept) {
            (304, Some(kept)) => {
                self.counters.not_modified.fetch_add(1, Ordering::Relaxed);
                resp.status = 200;
                resp.body = kept.body.into_bytes();
            }
            (200, _) => {
                let etag = resp
                    .headers
                    .get(http::header::ETAG)
                    .and_then(|e| e.to_str().ok());
                if let (Some(etag), Ok(body)) = (etag, std::str::from_utf8(&resp.body)) {
                    let answer = KeptAnswer {
                        etag: etag.to_string(),
                        body: body.to_string(),
                    };
                    budget.keep_answer(&url, &answer).await;
                }
            }
            _ => {}
        }
        Ok(resp)
    }

    async fn get_with(
        &self,
        client: &Octocrab,
        uri: &str,
        endpoint: &'static str,
        headers: Option<HeaderMap>,
    ) -> Result<Resp, SourceError> {
        if let Some(budget) = &self.budget {
            if let Some(wait) = budget.exhausted_for().await {
                return Err(SourceError::rate_limited(
                    wait,
                    format!(
                        "the GitHub rate limit of this token is spent until its reset in {}s; \
                         the sync continues then",
                        wait.as_secs()
                    ),
                ));
            }
        }
        let _permit = self
            .limiter
            .acquire()
            .await
            .expect("semaphore is never closed");
        // The pauses before the extra tries that a connection error, a
        // timeout or a 5xx answer gets (none after a timeout, which has
        // waited already); `None` when no try is left.
        let mut pauses = ExponentialBuilder::default()
            .with_min_delay(RETRY_MIN_DELAY)
            .with_max_delay(RETRY_MAX_DELAY)
            .with_max_times(self.cfg.request_retries as usize)
            .with_jitter()
            .build();
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.counters.total.fetch_add(1, Ordering::Relaxed);
            let result = tokio::time::timeout(self.cfg.request_timeout, async {
                let resp = client._get_with_headers(uri, headers.clone()).await?;
                let (parts, body) = resp.into_parts();
                let bytes = body.collect().await?.to_bytes();
                Ok::<_, octocrab::Error>((parts, bytes))
            })
            .await;
            self.metrics.github_request(
                endpoint,
                match &result {
                    Ok(Ok((parts, _))) => GithubStatus::Http(parts.status.as_u16()),
                    Ok(Err(octocrab::Error::GitHub { source, .. })) => {
                        GithubStatus::Http(source.status_code.as_u16())
                    }
                    _ => GithubStatus::NoAnswer,
                },
            );
            let (parts, body) = match result {
                Ok(Ok(r)) => r,
                // Only the app's token exchange answers through this path.
                Ok(Err(octocrab::Error::GitHub { source, .. }))
                    if matches!(source.status_code.as_u16(), 401 | 403 | 404) =>
                {
                    return Err(SourceError::unauthorized(format!(
                        "GitHub rejected the credentials for {} ({}: {}); check the app id, \
                         the installation id and the private key named by credentials_ref",
                        self.full_name, source.status_code, source.message
                    )))
                }
                Ok(Err(e)) => match pauses.next() {
                    Some(pause) => {
                        tracing::debug!(endpoint, "GitHub request failed, retrying: {e}");
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                    None => {
                        return Err(SourceError::unavailable(format!(
                            "cannot reach GitHub at {}: {e}",
                            self.cfg.api_url
                        )))
                    }
                },
                Err(_) => match pauses.next() {
                    Some(_) => continue,
                    None => {
                        return Err(SourceError::unavailable(format!(
                            "GitHub did not answer within {:?} ({endpoint})",
                            self.cfg.request_timeout
                        )))
                    }
                },
            };
            let headers = parts.headers;
            let status = parts.status.as_u16();
            let remaining = header_i64(&headers, "x-ratelimit-remaining");
            let reset = header_i64(&headers, "x-ratelimit-reset");
            if let Some(r) = remaining {
                let resource = headers
                    .get("x-ratelimit-resource")
                    .and_then(|v| v.to_str().ok());
                self.metrics.github_rate_limit(resource, r);
            }
            if let (Some(budget), Some(r), Some(t)) = (&self.budget, remaining, reset) {
                budget.record(r, t).await;
            }
            match status {
                500..=599 => match pauses.next() {
                    Some(pause) => {
                        tracing::debug!(endpoint, status, "GitHub server error, retrying");
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                    None => {
                        return Err(SourceError::unavailable(format!(
                            "GitHub answered {status} ({endpoint}) {attempt} times; it will be \
                             retried later"
                        )))
                    }
                },
                401 => {
                    return Err(SourceError::unauthorized(format!(
                        "GitHub rejected the credentials for {} (bad credentials); check the token \
                         named by the project's credentials_ref",
                        self.full_name
                    )))
                }
                403 | 429 => {
                    if let Some(secs) = header_i64(&headers, "retry-after") {
                        return Err(SourceError::rate_limited(
                            Duration::from_secs(secs.max(1) as u64),
                            format!(
                                "GitHub secondary rate limit ({status}); retrying after {secs}s"
                            ),
                        ));
                    }
                    if remaining == Some(0) {
                        let wait = (reset.unwrap_or_else(now_secs) - now_secs()).max(1);
                        return Err(SourceError::rate_limited(
                            Duration::from_secs(wait as u64),
                            format!(
                                "GitHub primary rate limit exhausted; the sync continues after \
                                 its reset in {wait}s"
                            ),
                        ));
                    }
                    if status == 429 {
                        return Err(SourceError::rate_limited(
                            Duration::from_secs(60),
                            "GitHub answered 429 Too Many Requests; retrying in 60s",
                        ));
                    }
                }
                _ => {}
            }
            return Ok(Resp {
                status,
                headers,
                body: body.to_vec(),
            });
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        uri: &str,
        endpoint: &'static str,
        what: &str,
    ) -> Result<(T, HeaderMap), SourceError> {
        let resp = self.get(uri, endpoint).await?;
        if resp.status == 404 {
            return Err(self
                .explain_missing(SourceError::not_found(format!(
                    "{what} not found in {}",
                    self.full_name
                )))
                .await);
        }
        self.expect_ok(&resp, what)?;
        let value = serde_json::from_slice(&resp.body).map_err(|e| {
            SourceError::unavailable(format!("GitHub sent an unexpected answer for {what}: {e}"))
        })?;
        Ok((value, resp.headers))
    }

    async fn list_tree(&self, sha: &str) -> Result<Vec<RawEntry>, SourceError> {
        if let Some(hit) = self.tree_cache.lock().expect("cache lock").get(sha) {
            return Ok(hit.clone());
        }
        if let Some(budget) = &self.budget {
            if let Some(hit) = budget.cached_tree(sha).await {
                return Ok(hit);
            }
        }
        let (tree, _) = self
            .get_json::<TreeResponse>(
                &self.repo_path(&format!("/git/trees/{sha}")),
                "tree",
                &format!("tree {sha}"),
            )
            .await?;
        if let Some(budget) = &self.budget {
            budget.store_tree(sha, &tree.tree).await;
        }
        let mut cache = self.tree_cache.lock().expect("cache lock");
        if cache.len() > 50_000 {
            cache.clear();
        }
        cache.insert(sha.to_string(), tree.tree.clone());
        Ok(tree.tree)
    }

    /// Walk a truncated tree one level at a time, from the cache where the
    /// subtree's SHA was listed before.
    async fn walk(&self, root: &str) -> Result<Vec<RawEntry>, SourceError> {
        let mut out = Vec::new();
        let mut stack = vec![(String::new(), root.to_string())];
        while let Some((prefix, sha)) = stack.pop() {
            for e in self.list_tree(&sha).await? {
                let path = if prefix.is_empty() {
                    e.path.clone()
                } else {
                    format!("{prefix}/{}", e.path)
                };
                if e.kind == "tree" {
                    stack.push((path, e.sha.clone()));
                } else {
                    out.push(RawEntry { path, ..e });
                }
            }
        }
        Ok(out)
    }

    /// The head tree as the stored `base` tree plus what `compare` lists,
    /// each changed path's mode, SHA and size read from the listings of its
    /// directories only (cached by SHA). `None` when the comparison cannot
    /// be trusted to list every change: base not an ancestor, or a list
    /// that may be cut at GitHub's 300 files.
    async fn tree_by_compare(
        &self,
        root_tree: &str,
        base_commit: &str,
        commit: &str,
        base: &[TreeEntry],
    ) -> Result<Option<Vec<TreeEntry>>, SourceError> {
        if self.comparison_refused(base_commit, commit) {
            return Ok(None);
        }
        let (cmp, _) = self
            .get_json::<CompareResponse>(
                &self.repo_path(&format!("/compare/{base_commit}...{commit}")),
                "compare",
                "the comparison",
            )
            .await?;
        let Some(files) = cmp.files.filter(|f| f.len() < COMPARE_FILE_LIMIT) else {
            return Ok(None);
        };
        if !matches!(cmp.status.as_str(), "ahead" | "identical") {
            self.refuse_comparison(base_commit, commit);
            return Ok(None);
        }
        let mut tree: HashMap<String, TreeEntry> =
            base.iter().map(|e| (e.path.clone(), e.clone())).collect();
        let mut changed = Vec::new();
        for f in files {
            if let Some(previous) = &f.previous_filename {
                if f.status == "renamed" {
                    tree.remove(previous);
                }
            }
            tree.remove(&f.filename);
            if f.status != "removed" {
                changed.push(f.filename);
            }
        }
        for path in changed {
            // Walk down to the file's directory; unchanged directories come
            // from the cache.
            let mut listing = self.list_tree(root_tree).await?;
            let mut parts = path.split('/').peekable();
            let mut found = None;
            while let Some(part) = parts.next() {
                let Some(entry) = listing.iter().find(|e| e.path == part).cloned() else {
                    break;
                };
                if parts.peek().is_none() {
                    found = Some(entry);
                    break;
                }
                if entry.kind != "tree" {
                    break;
                }
                listing = self.list_tree(&entry.sha).await?;
            }
            match found.and_then(|e| {
                to_tree_entry(RawEntry {
                    path: path.clone(),
                    ..e
                })
            }) {
                Some(entry) => {
                    tree.insert(path, entry);
                }
                // Listed as changed but not a file of the head tree (a
                // directory, say): do not guess, read the whole tree.
                None => return Ok(None),
            }
        }
        Ok(Some(tree.into_values().collect()))
    }

    /// The recursive tree of `commit`: one request unless GitHub truncates
    /// it. A truncated tree is rebuilt from the stored `base` tree and the
    /// comparison when that lists every change, else walked level by level.
    async fn tree(
        &self,
        commit: &str,
        base: Option<(&str, &[TreeEntry])>,
    ) -> Result<Vec<TreeEntry>, SourceError> {
        let (tree, _) = self
            .get_json::<TreeResponse>(
                &self.repo_path(&format!("/git/trees/{commit}?recursive=1")),
                "tree",
                &format!("commit {commit}"),
            )
            .await?;
        if let Some(budget) = &self.budget {
            let size = if tree.truncated {
                u64::MAX
            } else {
                tree.tree.len() as u64
            };
            budget.record_tree_size(&self.full_name, size).await;
        }
        if !tree.truncated {
            if self.compare_pays_off(tree.tree.len() as u64) {
                self.seed_listings(commit, &tree.sha, &tree.tree).await;
            }
            return Ok(tree.tree.into_iter().filter_map(to_tree_entry).collect());
        }
        if let Some((base_commit, base)) = base {
            if let Some(entries) = self
                .tree_by_compare(&tree.sha, base_commit, commit, base)
                .await?
            {
                tracing::info!(repo = %self.full_name, "tree is truncated; rebuilt from the comparison");
                return Ok(entries);
            }
        }
        tracing::info!(repo = %self.full_name, "tree is truncated; walking it level by level");
        Ok(self
            .walk(&tree.sha)
            .await?
            .into_iter()
            .filter_map(to_tree_entry)
            .collect())
    }

    /// Whether a repository of `entries` tree entries is diffed with the
    /// comparison rather than read whole.
    fn compare_pays_off(&self, entries: u64) -> bool {
        entries >= self.cfg.compare_min_entries
    }

    /// Keep the listing of every directory of a full recursive tree, by
    /// SHA (and the root under the commit's SHA too), so that a later
    /// `diff` finds the old side of each changed path without a request.
    async fn seed_listings(&self, commit: &str, root: &str, recursive: &[RawEntry]) {
        let mut dirs: HashMap<String, String> = HashMap::from([(String::new(), root.to_string())]);
        for e in recursive.iter().filter(|e| e.kind == "tree") {
            dirs.insert(e.path.clone(), e.sha.clone());
        }
        let mut listings: HashMap<String, Vec<RawEntry>> =
            dirs.values().map(|sha| (sha.clone(), Vec::new())).collect();
        for e in recursive {
            let (parent, name) = e.path.rsplit_once('/').unwrap_or(("", &e.path));
            if let Some(list) = dirs.get(parent).and_then(|sha| listings.get_mut(sha)) {
                list.push(RawEntry {
                    path: name.to_string(),
                    ..e.clone()
                });
            }
        }
        if let Some(root_listing) = listings.get(root).cloned() {
            listings.insert(commit.to_string(), root_listing);
        }
        let listings: Vec<(String, Vec<RawEntry>)> = listings.into_iter().collect();
        if let Some(budget) = &self.budget {
            budget.store_trees(&listings).await;
        }
        let mut cache = self.tree_cache.lock().expect("cache lock");
        if cache.len() + listings.len() > 50_000 {
            cache.clear();
        }
        cache.extend(listings);
    }

    /// The file (blob or submodule) at `path` in `commit`, from the
    /// listings of its directories (cached by SHA); `None` if there is no
    /// such file (nothing there, or a directory).
    async fn entry_at(&self, commit: &str, path: &str) -> Result<Option<TreeEntry>, SourceError> {
        let mut listing = self.list_tree(commit).await?;
        let mut parts = path.split('/').peekable();
        while let Some(part) = parts.next() {
            let Some(entry) = listing.iter().find(|e| e.path == part).cloned() else {
                return Ok(None);
            };
            if parts.peek().is_none() {
                return Ok(to_tree_entry(RawEntry {
                    path: path.to_string(),
                    ..entry
                }));
            }
            if entry.kind != "tree" {
                return Ok(None);
            }
            listing = self.list_tree(&entry.sha).await?;
        }
        Ok(None)
    }

    /// `Source::diff` through `compare/{from}...{to}`: the changed paths
    /// GitHub lists, each side's mode, SHA and size read from the listings
    /// of its directories. `None` (read the whole tree) when the comparison
    /// cannot be trusted to list every change: `from` unknown or not an
    /// ancestor of `to`, no file list, or 300 files or more (GitHub's cap).
    fn comparison_refused(&self, from: &str, to: &str) -> bool {
        self.no_comparison
            .lock()
            .expect("comparison memo lock")
            .contains(&(from.to_string(), to.to_string()))
    }

    fn refuse_comparison(&self, from: &str, to: &str) {
        self.no_comparison
            .lock()
            .expect("comparison memo lock")
            .insert((from.to_string(), to.to_string()));
    }

    async fn diff_by_compare(&self, from: &str, to: &str) -> Result<Option<TreeDiff>, SourceError> {
        if self.comparison_refused(from, to) {
            return Ok(None);
        }
        // Files come on the first page only, for the whole comparison;
        // `per_page=1` keeps the commit list that comes with them short.
        let resp = self
            .get(
                &self.repo_path(&format!("/compare/{from}...{to}?per_page=1")),
                "compare",
            )
            .await?;
        // 404: `from` is gone (a force-push, a gc); 422: no common history.
        if matches!(resp.status, 404 | 422) {
            self.refuse_comparison(from, to);
            return Ok(None);
        }
        self.expect_ok(&resp, "compare two commits")?;
        let cmp: CompareResponse = serde_json::from_slice(&resp.body).map_err(|e| {
            SourceError::unavailable(format!("GitHub sent an unexpected comparison: {e}"))
        })?;
        if !matches!(cmp.status.as_str(), "ahead" | "identical") {
            self.refuse_comparison(from, to);
            return Ok(None);
        }
        let Some(files) = cmp.files.filter(|f| f.len() < COMPARE_FILE_LIMIT) else {
            return Ok(None);
        };
        let mut sides: std::collections::BTreeMap<String, (bool, bool)> = Default::default();
        for f in files {
            let (old, new) = match f.status.as_str() {
                "added" | "copied" => (None, Some(f.filename)),
                "removed" => (Some(f.filename), None),
                "modified" | "changed" => (Some(f.filename.clone()), Some(f.filename)),
                "renamed" => match f.previous_filename {
                    Some(previous) => (Some(previous), Some(f.filename)),
                    None => return Ok(None),
                },
                "unchanged" => continue,
                _ => return Ok(None),
            };
            if let Some(p) = old {
                sides.entry(p).or_default().0 = true;
            }
            if let Some(p) = new {
                sides.entry(p).or_default().1 = true;
            }
        }
        let mut changes = Vec::new();
        for (path, (in_old, in_new)) in sides {
            let old = if in_old {
                match self.entry_at(from, &path).await? {
                    Some(e) => Some(e),
                    // Listed as changed but not a file at `from`: do not
                    // guess, read the whole tree.
                    None => return Ok(None),
                }
            } else {
                None
            };
            let new = if in_new {
                match self.entry_at(to, &path).await? {
                    Some(e) => Some(e),
                    None => return Ok(None),
                }
            } else {
                None
            };
            if old != new {
                changes.push(TreeChange { path, old, new });
            }
        }
        Ok(Some(TreeDiff { changes }))
    }

    async fn blob(&self, sha: &str) -> Result<Blob, SourceError> {
        self.counters.blobs.fetch_add(1, Ordering::Relaxed);
        let (blob, _) = self
            .get_json::<BlobResponse>(
                &self.repo_path(&format!("/git/blobs/{sha}")),
                "blob",
                &format!("blob {sha}"),
            )
            .await?;
        if blob.encoding != "base64" {
            return Err(SourceError::unavailable(format!(
                "blob {sha} came in encoding `{}`, expected base64",
                blob.encoding
            )));
        }
        let clean: String = blob.content.split_whitespace().collect();
        let data = base64::engine::general_purpose::STANDARD
            .decode(clean)
            .map_err(|e| {
                SourceError::unavailable(format!("blob {sha} is not valid base64: {e}"))
            })?;
        Ok(Blob {
            sha: sha.to_string(),
            data,
        })
    }
}

/// Built outside any `async` block: octocrab's builder is not `Send`.
fn build_client(cfg: &GitHubConfig, credentials: Credentials) -> Result<Octocrab, SourceError> {
    let mut builder = Octocrab::builder()
        .base_uri(cfg.api_url.as_str())
        .map_err(|e| {
            SourceError::invalid(format!("invalid GitHub API URL `{}`: {e}", cfg.api_url))
        })?
        .set_connect_timeout(Some(cfg.request_timeout))
        .set_read_timeout(Some(cfg.request_timeout));
    let mut installation = None;
    match credentials {
        Credentials::Anonymous => {}
        Credentials::Token(t) => {
            // octocrab unwraps the header value it makes of the token: a
            // token that cannot be sent in a header would panic there.
            let t = projsync_domain::names::clean_header_secret(&t, "the GitHub token")
                .map_err(SourceError::unauthorized)?;
            builder = builder.personal_token(t.to_string())
        }
        Credentials::App {
            app_id,
            installation_id,
            private_key_pem,
        } => {
            let key =
                octocrab::EncodingKey::from_rsa_pem(private_key_pem.as_bytes()).map_err(|e| {
                    SourceError::unauthorized(format!(
                        "the private key of GitHub App {app_id} is not an RSA key in PEM: {e}"
                    ))
                })?;
            builder = builder.app(octocrab::models::AppId(app_id), key);
            installation = Some(installation_id);
        }
    }
    let client = builder
        .build()
        .map_err(|e| SourceError::invalid(format!("cannot build a GitHub client: {e}")))?;
    match installation {
        None => Ok(client),
        Some(id) => client
            .installation(octocrab::models::InstallationId(id))
            .map_err(|e| SourceError::invalid(format!("cannot use installation {id}: {e}"))),
    }
}

/// An anonymous client whose base is the origin of `url`.
fn plain_client(url: &str, timeout: Duration) -> Result<Octocrab, SourceError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| SourceError::unavailable(format!("bad tarball redirect `{url}`: {e}")))?;
    let origin = match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
        _ => {
            return Err(SourceError::unavailable(format!(
                "tarball redirect `{url}` is not an absolute URL"
            )))
        }
    };
    build_client(
        &GitHubConfig {
            api_url: origin,
            request_timeout: timeout,
            ..Default::default()
        },
        Credentials::Anonymous,
    )
}

fn to_tree_entry(e: RawEntry) -> Option<TreeEntry> {
    let kind = match (e.kind.as_str(), e.mode.as_str()) {
        ("commit", _) => EntryKind::Submodule,
        ("blob", mode) => EntryKind::from_mode(mode)?,
        _ => return None,
    };
    Some(TreeEntry {
        path: e.path,
        kind,
        sha: e.sha,
        size: e.size,
        path_lossy: false,
    })
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, rel) = part.split_once(';')?;
        rel.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

#[async_trait]
impl Source for GitHubSource {
    fn describe(&self) -> String {
        format!("github:{}", self.full_name)
    }

    fn remote(&self) -> Option<RemoteIdentity> {
        self.info.as_ref().map(|info| RemoteIdentity {
            name: self.full_name.clone(),
            id: info.id.and_then(|id| i64::try_from(id).ok()),
        })
    }

    async fn list_branches(&self) -> Result<Vec<Branch>, SourceError> {
        let mut url = self.repo_path("/branches?per_page=100");
        let mut out = Vec::new();
        loop {
            let (page, headers) = self
                .get_json::<Vec<BranchResponse>>(&url, "branches", "branches")
                .await?;
            out.extend(page.into_iter().map(|b| Branch {
                name: b.name,
                head: b.commit.sha,
            }));
            match next_link(&headers) {
                Some(next) => url = next,
                None => return Ok(out),
            }
        }
    }

    async fn resolve_branch(&self, branch: &str) -> Result<String, SourceError> {
        projsync_domain::names::check_branch_name(branch).map_err(SourceError::invalid)?;
        let resp = self
            .get_conditional(
                &self.repo_path(&format!("/branches/{}", encode_ref(branch))),
                "branch",
            )
            .await?;
        if resp.status == 404 {
            return Err(self
                .explain_missing(SourceError::not_found(format!(
                    "branch `{branch}` not found in {}; check the branch name",
                    self.full_name
                )))
                .await);
        }
        if resp.status == 301 {
            return Err(self.moved(&resp).await);
        }
        self.expect_ok(&resp, "resolve the branch")?;
        let b: BranchResponse = serde_json::from_slice(&resp.body).map_err(|e| {
            SourceError::unavailable(format!("GitHub sent an unexpected branch answer: {e}"))
        })?;
        Ok(b.commit.sha)
    }

    async fn read_tree(&self, commit: &str) -> Result<Vec<TreeEntry>, SourceError> {
        self.tree(commit, None).await
    }

    /// Through the comparison API when the repository is large enough for
    /// that to cost less than one recursive listing
    /// (`GitHubConfig::compare_min_entries`, judged by the last full tree
    /// read); else `None`, and the caller reads the whole tree.
    async fn diff(&self, from: &str, to: &str) -> Result<Option<TreeDiff>, SourceError> {
        let large = match (&self.budget, self.cfg.compare_min_entries) {
            (_, 0) => true,
            (Some(budget), _) => budget
                .tree_size(&self.full_name)
                .await
                .is_some_and(|n| self.compare_pays_off(n)),
            (None, _) => false,
        };
        if !large {
            return Ok(None);
        }
        self.diff_by_compare(from, to).await
    }

    async fn read_tree_since(
        &self,
        commit: &str,
        base_commit: &str,
        base: &[TreeEntry],
    ) -> Result<Vec<TreeEntry>, SourceError> {
        self.tree(commit, Some((base_commit, base))).await
    }

    async fn read_blobs(&self, shas: &[String]) -> Result<Vec<Blob>, SourceError> {
        let futures: Vec<_> = shas.iter().map(|sha| Box::pin(self.blob(sha))).collect();
        futures::stream::iter(futures)
            .buffer_unordered(self.cfg.max_concurrent_requests.max(1))
            .try_collect()
            .await
    }

    async fn read_archive(
        &self,
        commit: &str,
        wanted: &HashSet<String>,
    ) -> Result<Option<Vec<Blob>>, SourceError> {
        let resp = self
            .get(&self.repo_path(&format!("/tarball/{commit}")), "tarball")
            .await?;
        match resp.status {
            200 => {
                let body = resp.body;
                let wanted = wanted.clone();
                let blobs = tokio::task::spawn_blocking(move || untar(&body[..], &wanted))
                    .await
                    .map_err(|e| {
                        SourceError::unavailable(format!("tarball decoding stopped: {e}"))
                    })??;
                Ok(Some(blobs))
            }
            301 | 302 | 303 | 307 | 308 => {
                let location = resp
                    .headers
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| SourceError::unavailable("tarball redirect without a location"))?
                    .to_string();
                self.stream_archive(&location, wanted).await.map(Some)
            }
            _ => {
                self.expect_ok(&resp, "download the tarball")?;
                Ok(None)
            }
        }
    }
}

impl GitHubSource {
    /// Download the tarball at `location` and decode it while it arrives:
    /// the compressed archive is never held whole, and only wanted files
    /// are kept.
    async fn stream_archive(
        &self,
        location: &str,
        wanted: &HashSet<String>,
    ) -> Result<Vec<Blob>, SourceError> {
        // The redirect carries its own short-lived token. A client without a
        // base path: on Enterprise (`…/api/v3`) octocrab would prefix the
        // download URL with it.
        let plain = plain_client(location, self.cfg.request_timeout)?;
        self.counters.total.fetch_add(1, Ordering::Relaxed);
        let resp = tokio::time::timeout(self.cfg.request_timeout, plain._get(location)).await;
        self.metrics.github_request(
            "tarball_download",
            match &resp {
                Ok(Ok(r)) => GithubStatus::Http(r.status().as_u16()),
                _ => GithubStatus::NoAnswer,
            },
        );
        let resp = resp
            .map_err(|_| SourceError::unavailable("the tarball download did not start in time"))?
            .map_err(|e| SourceError::unavailable(format!("cannot download the tarball: {e}")))?;
        if !resp.status().is_success() {
            return Err(SourceError::unavailable(format!(
                "the tarball download answered {}",
                resp.status()
            )));
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        let wanted = wanted.clone();
        let decoder = tokio::task::spawn_blocking(move || {
            untar(
                ChannelReader {
                    rx,
                    buf: Vec::new(),
                    pos: 0,
                },
                &wanted,
            )
        });
        let mut body = resp.into_body();
        let mut failed = None;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        if tx.send(data.to_vec()).await.is_err() {
                            break; // the decoder stopped: its error says why
                        }
                    }
                }
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        drop(tx);
        let decoded = decoder
            .await
            .map_err(|e| SourceError::unavailable(format!("tarball decoding stopped: {e}")))?;
        if let Some(e) = failed {
            return Err(SourceError::unavailable(format!(
                "the tarball download broke off: {e}"
            )));
        }
        decoded
    }
}

/// A blocking `Read` over chunks sent by the async download.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The wanted regular files of a GitHub tarball (`<prefix>/<path>`), keyed
/// by blob SHA.
fn untar(gz: impl std::io::Read, wanted: &HashSet<String>) -> Result<Vec<Blob>, SourceError> {
    use std::io::Read;
    let bad = |e: std::io::Error| SourceError::unavailable(format!("cannot read the tarball: {e}"));
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    let mut out = Vec::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut data).map_err(bad)?;
        let sha = git_blob_sha(&data);
        if wanted.contains(&sha) {
            out.push(Blob { sha, data });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations_links_and_modes() {
        assert_eq!(
            parse_location("acme/widgets.rs").unwrap(),
            ("acme".into(), "widgets.rs".into())
        );
        assert!(parse_location("acme").is_err());
        assert!(parse_location("a/b/c").is_err());
        assert!(parse_location("acme/..").is_err());
        assert!(parse_location("-acme/x").is_err());
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            r#"<https://api.github.com/repos/a/b/branches?per_page=100&page=2>; rel="next", <https://api.github.com/repos/a/b/branches?per_page=100&page=3>; rel="last""#
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/repos/a/b/branches?per_page=100&page=2")
        );
        let e = |kind: &str, mode: &str| RawEntry {
            path: "p".into(),
            mode: mode.into(),
            kind: kind.into(),
            sha: "s".into(),
            size: Some(1),
        };
        assert_eq!(
            to_tree_entry(e("blob", "100755")).unwrap().kind,
            EntryKind::Executable
        );
        assert_eq!(
            to_tree_entry(e("commit", "160000")).unwrap().kind,
            EntryKind::Submodule
        );
        assert!(to_tree_entry(e("tree", "040000")).is_none());
        assert_eq!(encode_ref("feature/a b"), "feature/a%20b");
    }

    #[test]
    fn blob_shas_match_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            git_blob_sha(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }
}
