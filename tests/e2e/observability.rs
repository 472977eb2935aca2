//! Health, readiness and metrics: `/healthz`, `/readyz` and `/metrics` on
//! the API and on a worker's own listener (`worker.listen`). Readiness is
//! checked against a Redis that goes away (a proxy the test closes) and a
//! database that is not there (a closed port); the metrics are read with a
//! real exposition-format parser (`prometheus-parse`) after real syncs.

use crate::github::register_credential;
use crate::helpers::{spawn_app_full, spawn_app_with, TestApp};
use projsync::app;
use projsync_metrics::{Metrics, Process};
use projsync_sources::{DefaultSources, GitHubConfig};
use projsync_test_support::{FakeGitHub, Fault, GitRepo, TestDb, TestRedis};
use prometheus_parse::{Sample, Scrape, Value as Prom};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The API's origin (`http://127.0.0.1:PORT`), without `/api/v1`.
fn origin(app: &TestApp) -> String {
    app.base.trim_end_matches("/api/v1").to_string()
}

/// A probe: no credentials, as a load balancer sends it.
async fn probe(url: &str) -> (u16, String, String) {
    let resp = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, resp.text().await.unwrap())
}

async fn ready(url: &str) -> (u16, Value) {
    let (status, content_type, body) = probe(&format!("{url}/readyz")).await;
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    (status, serde_json::from_str(&body).unwrap())
}

/// `/metrics`, parsed as Prometheus would.
async fn scrape(url: &str) -> Vec<Sample> {
    let (status, content_type, body) = probe(&format!("{url}/metrics")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "text/plain; version=0.0.4");
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not the exposition format: {e}\n{body}"));
    for s in &scrape.samples {
        assert!(s.metric.starts_with("projsync_"), "{}", s.metric);
    }
    scrape.samples
}

/// The value of the one sample of `metric` whose labels include `labels`.
fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert!(found.len() <= 1, "{metric} {labels:?}: {found:?}");
    found.first().map(|s| match &s.value {
        Prom::Counter(v) | Prom::Gauge(v) | Prom::Untyped(v) => *v,
        other => panic!("{metric} is not a single value: {other:?}"),
    })
}

fn has_family(samples: &[Sample], metric: &str) -> bool {
    samples.iter().any(|s| s.metric.starts_with(metric))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_200_when_postgres_and_redis_answer() {
    let app = spawn_app_with(false, |_| {}).await;
    let (status, body) = ready(&origin(&app)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "status": "ok", "checks": { "postgres": "ok", "redis": "ok" } })
    );
    let (status, _, body) = probe(&format!("{}/healthz", origin(&app))).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}

/// A TCP proxy to the real Redis that the test can close: then Redis is
/// unreachable for the app (connections cut, the port refused).
struct RedisProxy {
    url: String,
    stop: CancellationToken,
}

impl RedisProxy {
    async fn start(redis: &TestRedis) -> Self {
        let target = url::Url::parse(&redis.url).unwrap();
        let target = format!(
            "{}:{}",
            target.host_str().unwrap(),
            target.port().unwrap_or(6379)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(_) => continue,
                    },
                    _ = stopped.cancelled() => return, // drops the listener
                };
                let target = target.clone();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = stopped.cancelled() => {}
                    }
                });
            }
        });
        Self { url, stop }
    }

    fn close(&self) {
        self.stop.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_naming_redis_when_redis_goes_away() {
    let redis = TestRedis::new();
    let proxy = RedisProxy::start(&redis).await;
    let proxied = proxy.url.clone();
    let app = spawn_app_with(false, move |s| s.redis.url = proxied).await;
    let url = origin(&app);
    let (status, body) = ready(&url).await;
    assert_eq!(status, 200, "{body}");

    proxy.close();
    let started = Instant::now();
    let (status, body) = ready(&url).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(body["checks"]["postgres"], "ok", "{body}");
    let redis_check = body["checks"]["redis"].as_str().unwrap();
    assert!(redis_check.starts_with("error: "), "{body}");
    // Alive all the same, and the metrics still answer (from the ledger).
    let (status, _, _) = probe(&format!("{url}/healthz")).await;
    assert_eq!(status, 200);
    let samples = scrape(&url).await;
    assert_eq!(
        value(&samples, "projsync_ledger_scrape_success", &[]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_naming_postgres_when_the_database_is_unreachable() {
    let redis = TestRedis::new();
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy(&format!(
            "postgres://projsync_app@127.0.0.1:{port}/projsync"
        ))
        .unwrap();
    let store = projsync_store::Store::from_pool(pool);
    let mut settings = projsync::Settings::load(None).unwrap();
    settings.redis.url = redis.url.clone();
    settings.redis.namespace = redis.namespace.clone();
    let state = app::api_state(&settings, store).await.unwrap();
    let listener = app::bind("127.0.0.1:0").await.unwrap();
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let (addr, _) = app::spawn_api(listener, state, settings.mcp_settings(), shutdown).unwrap();
    let url = format!("http://{addr}");

    let (status, body) = ready(&url).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["redis"], "ok", "{body}");
    assert!(
        body["checks"]["postgres"]
            .as_str()
            .unwrap()
            .starts_with("error: "),
        "{body}"
    );
    let (status, _, _) = probe(&format!("{url}/healthz")).await;
    assert_eq!(status, 200);
    // The ledger's families are left out rather than shown stale or 0.
    let samples = scrape(&url).await;
    assert_eq!(
        value(&samples, "projsync_ledger_scrape_success", &[]),
        Some(0.0)
    );
    assert!(!has_family(&samples, "projsync_syncs"), "{samples:?}");
    assert!(!has_family(&samples, "projsync_queue_depth"), "{samples:?}");
    assert_eq!(
        value(&samples, "projsync_build_info", &[]),
        Some(1.0),
        "{samples:?}"
    );
}

const TOKEN: &str = "projsync";
const CREDENTIALS: &str = "env:CARGO_PKG_NAME";

/// A GitHub project synced twice (changed, then unchanged) by a worker with
/// its own listener, the first sync through a 502 (retried in the request)
/// and a 429 (a scheduled retry of prepare); then both processes' metrics,
/// parsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_syncs_on_the_api_and_the_worker() {
    let repo = GitRepo::new();
    repo.write("README.md", "# widgets\n")
        .write("src/lib.rs", "pub fn widget() -> u32 {\n    42\n}\n")
        .write("src/main.rs", "fn main() {\n    println!(\"hi\");\n}\n");
    repo.commit("first");
    let fake = FakeGitHub::start("acme", "widgets", repo.path(), Some(TOKEN)).await;
    let github = fake.base_url();
    let api_github = github.clone();
    let app = spawn_app_full(None, move |s| s.github.api_url = api_github).await;

    // The worker: its own metrics and listener, GitHub counted in them.
    let metrics = Metrics::new(Process::Worker);
    let conn = app.settings.queue_options().connect().await.unwrap();
    let sources = DefaultSources::new(
        GitHubConfig {
            api_url: github,
            request_timeout: Duration::from_secs(5),
            ..Default::default()
        },
        Some((conn, app.settings.redis.namespace.clone())),
    )
    .with_metrics(metrics.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let worker = format!("http://{}", listener.local_addr().unwrap());
    app::spawn_worker_on(
        &app.settings,
        app.db.store.clone(),
        Arc::new(sources),
        metrics,
        Some(listener),
        app.shutdown_token(),
    )
    .await
    .unwrap();

    let credential = register_credential(&app, CREDENTIALS).await;
    let (status, project) = app
        .post(
            "/projects",
            json!({ "name": "gh", "repository": {
                "provider": "github", "repository": "acme/widgets", "branch": "main",
                "credential": credential } }),
        )
        .await;
    assert_eq!(status, 201, "{project}");
    let project = project["id"].as_str().unwrap().to_string();
    // The worker's first requests (enqueueing the default branch asks
    // GitHub nothing).
    fake.inject(Fault::ServerErrors {
        count: 1,
        status: 502,
    });
    fake.inject(Fault::TooManyRequests {
        retry_after_secs: 1,
    });
    let first = app.sync(&project, None).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["outcome"], "changed", "{first}");
    let second = app.sync(&project, None).await;
    assert_eq!(second["outcome"], "unchanged", "{second}");

    // The worker's listener.
    let (status, _, body) = probe(&format!("{worker}/healthz")).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = ready(&worker).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"], json!({ "postgres": "ok", "redis": "ok" }));

    let api = origin(&app);
    for (who, url) in [("api", &api), ("worker", &worker)] {
        let samples = scrape(url).await;
        let get = |metric: &str, labels: &[(&str, &str)]| {
            value(&samples, metric, labels)
                .unwrap_or_else(|| panic!("{who}: no {metric} {labels:?} in {samples:#?}"))
        };
        // The ledger, every tenant's syncs (the app role alone sees none).
        let succeeded = [("status", "succeeded")];
        assert_eq!(
            get("projsync_syncs", &[succeeded[0], ("outcome", "changed")]),
            1.0,
            "{who}"
        );
        assert_eq!(
            get("projsync_syncs", &[succeeded[0], ("outcome", "unchanged")]),
            1.0,
            "{who}"
        );
        assert_eq!(get("projsync_syncs", &[("status", "failed")]), 0.0, "{who}");
        assert_eq!(get("projsync_queue_depth", &[]), 0.0, "{who}");
        assert_eq!(get("projsync_queue_oldest_age_seconds", &[]), 0.0, "{who}");
        assert_eq!(get("projsync_ledger_scrape_success", &[]), 1.0, "{who}");
        // GitHub: the API looked the repository up once (project creation
        // checks it, and the ledger keeps what it learned); the worker
        // opened it with that and sent no lookup: it read branch, tree and
        // blobs only.
        let repo_lookups = value(
            &samples,
            "projsync_github_requests_total",
            &[("endpoint", "repo"), ("status", "200")],
        );
        let expected = if who == "api" { 1.0 } else { 0.0 };
        assert_eq!(repo_lookups.unwrap_or(0.0), expected, "{who}: {samples:#?}");
        let remaining = get(
            "projsync_github_rate_limit_remaining",
            &[("resource", "core")],
        );
        assert!(remaining > 0.0, "{who}: {remaining}");
        if who == "api" {
            assert!(
                !has_family(&samples, "projsync_phase_duration_seconds"),
                "the API runs no phase"
            );
            continue;
        }
        assert!(
            get(
                "projsync_github_requests_total",
                &[("endpoint", "blob"), ("status", "200")]
            ) >= 3.0
        );
        // Every phase ran once in the first sync; prepare twice.
        for phase in ["prepare", "scan", "import", "embed", "finalize"] {
            let count = get("projsync_phase_duration_seconds_count", &[("phase", phase)]);
            let expected = if phase == "prepare" { 2.0 } else { 1.0 };
            assert_eq!(count, expected, "{phase}");
            let buckets = samples
                .iter()
                .find(|s| {
                    s.metric == "projsync_phase_duration_seconds"
                        && s.labels.get("phase") == Some(phase)
                })
                .map(|s| s.value.clone());
            match buckets {
                Some(Prom::Histogram(b)) => {
                    assert!(b.len() > 10, "{phase}: {b:?}");
                    assert_eq!(b.last().map(|h| h.count), Some(expected), "{phase}");
                }
                other => panic!("{phase}: no histogram: {other:?}"),
            }
        }
        assert_eq!(
            get(
                "projsync_syncs_finished_total",
                &[("status", "succeeded"), ("outcome", "changed")]
            ),
            1.0
        );
        assert_eq!(
            get(
                "projsync_syncs_finished_total",
                &[("status", "succeeded"), ("outcome", "unchanged")]
            ),
            1.0
        );
        assert_eq!(get("projsync_files_imported_total", &[]), 3.0);
        assert!(get("projsync_chunks_total", &[]) >= 3.0);
        // Embeddings are off in these tests: no vector either way.
        assert_eq!(
            get("projsync_embeddings_total", &[("source", "model")]),
            0.0
        );
        assert_eq!(
            get("projsync_embeddings_total", &[("source", "cache")]),
            0.0
        );
        assert_eq!(get("projsync_leases_lost_total", &[]), 0.0);
        assert_eq!(get("projsync_reconciler_pushes_total", &[]), 0.0);
        // The faults met the worker's first request, the branch's: a 502
        // retried in the request, then a 429 that rescheduled prepare;
        // then 304s (the API's check kept the branch's ETag).
        for status in ["502", "429"] {
            assert_eq!(
                get(
                    "projsync_github_requests_total",
                    &[("endpoint", "branch"), ("status", status)]
                ),
                1.0,
                "{status}"
            );
        }
        assert_eq!(
            get(
                "projsync_github_requests_total",
                &[("endpoint", "branch"), ("status", "304")]
            ),
            2.0
        );
        assert_eq!(
            get(
                "projsync_retries_total",
                &[("phase", "prepare"), ("reason", "rate_limited")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &samples,
                "projsync_retries_total",
                &[("phase", "prepare"), ("reason", "error")]
            ),
            None
        );
    }
    drop(fake);
}

/// `projsync worker` serves its listener on `worker.listen`, and a port
/// that is taken stops it at start with a message naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_binary_serves_worker_listen() {
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = crate::cli::projsync(&db, &redis)
        .env(
            "PROJSYNC__WORKER__LISTEN",
            taken.local_addr().unwrap().to_string(),
        )
        .arg("worker")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("worker.listen"), "{stderr}");
    drop(taken);

    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let mut child = crate::cli::projsync(&db, &redis)
        .env("PROJSYNC__WORKER__LISTEN", addr.to_string())
        .arg("worker")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let answered = loop {
        match reqwest::get(format!("{url}/healthz")).await {
            Ok(r) => break r.status().as_u16(),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => {
                let _ = child.kill();
                panic!("the worker never listened on {addr}: {e}");
            }
        }
    };
    let (status, body) = ready(&url).await;
    let samples = scrape(&url).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answered, 200);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        value(&samples, "projsync_ledger_scrape_success", &[]),
        Some(1.0)
    );
    assert!(has_family(&samples, "projsync_phase_duration_seconds"));
}
