//! OpenTelemetry over OTLP/HTTP, received by a fake collector
//! (`test-support::FakeOtlp`, which decodes the protobuf bodies):
//! - in process: the API's request, the queue push, the worker's `sync`
//!   span and its five `phase` spans are one trace, each with the sync's
//!   id, and the logs carry that trace's id; the configured headers arrive;
//!   an operator's retry (a request of its own) continues the sync's trace,
//!   and so does the reconciler's push of a lost job;
//! - the binary: a CLI `sync` and a worker process make one trace through
//!   the ledger, a failed attempt's retry included, configured by
//!   environment variables and flushed at exit;
//! - the binary without `telemetry.otlp_endpoint` sends nothing, even when
//!   the standard `OTEL_EXPORTER_OTLP_ENDPOINT` points at a collector.
//!
//! The in-process test installs its subscriber on its own runtime's
//! threads only (`on_thread_start`), never globally: the other tests of
//! this binary run beside it untouched. Because of that, it also keeps a
//! second dispatcher registered for the process's life ([`anchor`]): see
//! there why.

use crate::cli::projsync;
use crate::helpers::{spawn_app, spawn_app_with};
use projsync::logging::LogOptions;
use projsync::Settings;
use projsync_test_support::{FakeOtlp, GitRepo, OtlpSpan, TestDb, TestRedis};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PHASES: [&str; 7] = [
    "prepare", "scan", "import", "analyze", "docs", "embed", "finalize",
];

/// A multi-threaded runtime whose every thread (workers and blocking pool)
/// has `dispatch` as its default subscriber.
fn traced_runtime(dispatch: &tracing::Dispatch) -> tokio::runtime::Runtime {
    let on_start = dispatch.clone();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // For the thread's life: the runtime's threads are this test's.
            std::mem::forget(tracing::dispatcher::set_default(&on_start));
        })
        .build()
        .unwrap()
}

/// Keeps tracing-core's per-callsite interest cache at "ask each thread".
///
/// tracing-core caches, per callsite and for the whole process, whether any
/// dispatcher wants it. While exactly one dispatcher is registered, a
/// callsite's first use is judged by the default of the thread that reaches
/// it. In this binary that may be another test's thread, with no subscriber:
/// the callsite is then cached as "never" and stays disabled on this test's
/// threads too, until some other dispatcher registers. That lost a sync's
/// spans in CI. A second dispatcher, registered once and nobody's default,
/// answers "sometimes" for every callsite, so the cache never says "never"
/// and each thread's own default decides. It enables nothing (level off).
fn anchor() {
    use tracing::{level_filters::LevelFilter, span, subscriber::Interest, Metadata};

    struct Anchor;
    impl tracing::Subscriber for Anchor {
        fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
            Interest::sometimes()
        }
        fn max_level_hint(&self) -> Option<LevelFilter> {
            Some(LevelFilter::OFF)
        }
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            false
        }
        fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
            span::Id::from_u64(1)
        }
        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {}
        fn enter(&self, _: &span::Id) {}
        fn exit(&self, _: &span::Id) {}
    }

    static ANCHOR: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    ANCHOR.get_or_init(|| tracing::Dispatch::new(Anchor));
}

fn repo() -> GitRepo {
    let repo = GitRepo::new();
    repo.write("src/lib.rs", "pub fn answer() -> u32 { 42 }\n")
        .write("README.md", "traced\n");
    repo.commit("first");
    repo
}

fn spans_named<'a>(spans: &'a [OtlpSpan], name: &str) -> Vec<&'a OtlpSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// The sync's spans once the worker's `sync` span and its phases have
/// arrived (flushing as it waits), else a panic naming what did.
fn wait_for_sync_trace(collector: &FakeOtlp, sync_id: &str, flush: &dyn Fn()) -> Vec<OtlpSpan> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        flush();
        let spans = collector.spans();
        let ours = |s: &&OtlpSpan| s.attributes.get("sync_id").map(String::as_str) == Some(sync_id);
        let sync = spans.iter().filter(ours).any(|s| s.name == "sync");
        let phases = spans
            .iter()
            .filter(ours)
            .filter(|s| s.name == "phase")
            .count();
        if sync && phases >= PHASES.len() {
            return spans;
        }
        assert!(
            Instant::now() < deadline,
            "the sync's spans did not arrive: {:#?}\nthe collector's answers: {:?}",
            spans
                .iter()
                .map(|s| (&s.name, &s.attributes))
                .collect::<Vec<_>>(),
            collector
                .requests()
                .iter()
                .map(|r| (&r.path, r.status))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The worker's side of one sync's trace: its `sync` span, a child of
/// `parent`, and one `phase` span per phase under it, all in `trace_id`
/// and carrying the sync's id. Returns the `sync` span.
fn assert_worker_spans<'a>(
    spans: &'a [OtlpSpan],
    sync_id: &str,
    trace_id: &str,
    parent: &OtlpSpan,
) -> &'a OtlpSpan {
    let sync = spans_named(spans, "sync");
    assert_eq!(sync.len(), 1, "one run: {sync:#?}");
    let sync = sync[0];
    assert_eq!(sync.trace_id, trace_id, "the worker joins the sync's trace");
    assert_eq!(sync.parent_span_id, parent.span_id, "{sync:#?}");
    assert_eq!(sync.attributes["sync_id"], sync_id);
    let phases = spans_named(spans, "phase");
    let names: Vec<&str> = phases
        .iter()
        .map(|p| p.attributes["phase"].as_str())
        .collect();
    assert_eq!(names, PHASES, "one span per phase, in order");
    for phase in phases {
        assert_eq!(phase.trace_id, trace_id, "{phase:#?}");
        assert_eq!(phase.parent_span_id, sync.span_id, "{phase:#?}");
        assert_eq!(phase.attributes["sync_id"], sync_id, "{phase:#?}");
        assert_eq!(phase.attributes["attempt"], "1", "{phase:#?}");
        assert_eq!(phase.status, "unset", "{phase:#?}");
        assert!(phase.start_unix_nano >= sync.start_unix_nano);
        assert!(phase.end_unix_nano <= sync.end_unix_nano);
    }
    sync
}

/// `queue.push` of the sync, a producer span under `parent`.
fn assert_push(spans: &[OtlpSpan], sync_id: &str, parent: &OtlpSpan) {
    let pushes = spans_named(spans, "queue.push");
    assert_eq!(pushes.len(), 1, "{pushes:#?}");
    let push = pushes[0];
    assert_eq!(push.kind, "producer");
    assert_eq!(push.trace_id, parent.trace_id);
    assert_eq!(push.parent_span_id, parent.span_id);
    assert_eq!(push.attributes["sync_id"], sync_id);
    assert_eq!(push.attributes["messaging.system"], "redis");
    assert!(
        push.attributes["messaging.destination.name"].ends_with(":syncs"),
        "{push:#?}"
    );
}

/// This test's telemetry, exporting to `collector` as for Axiom (one
/// token, a dataset per signal), and a runtime whose threads use it; it is
/// also the calling thread's default until the guard drops.
struct Traced {
    telemetry: projsync_telemetry::Telemetry,
    runtime: tokio::runtime::Runtime,
    _default: tracing::dispatcher::DefaultGuard,
}

fn traced(collector: &FakeOtlp) -> Traced {
    anchor();
    let mut settings = Settings::load(None).unwrap();
    settings.log.level = "info".into();
    settings.telemetry.otlp_endpoint = collector.url().into();
    settings.telemetry.otlp_headers =
        [("Authorization".into(), "Bearer xaat-test-token".into())].into();
    settings.telemetry.otlp_traces_headers =
        [("X-Axiom-Dataset".into(), "projsync-traces".into())].into();
    settings.telemetry.otlp_logs_headers =
        [("X-Axiom-Dataset".into(), "projsync-logs".into())].into();
    settings.validate().unwrap();
    let (dispatch, telemetry) = projsync::logging::subscriber(
        &settings,
        &LogOptions {
            json: false,
            // The console shows warnings only; what is exported keeps info.
            quiet: true,
            process: "test".into(),
        },
    )
    .unwrap();
    Traced {
        telemetry: telemetry.expect("the endpoint is set"),
        runtime: traced_runtime(&dispatch),
        _default: tracing::dispatcher::set_default(&dispatch),
    }
}

#[test]
fn a_sync_is_one_trace_from_the_request_to_its_last_phase() {
    let collector = FakeOtlp::requiring(&[("Authorization", "Bearer xaat-test-token")]);
    let Traced {
        telemetry,
        runtime,
        _default,
    } = traced(&collector);

    let repo = repo();
    let (app, sync_id) = runtime.block_on(async {
        let app = spawn_app().await;
        let project = app.create_project("traced", repo.path(), "main").await;
        let done = app.sync(&project, None).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        (app, done["id"].as_str().unwrap().to_string())
    });
    // The app keeps running on the runtime's threads while this one waits
    // for the worker's spans to end and be sent.
    let spans = wait_for_sync_trace(&collector, &sync_id, &|| telemetry.flush().unwrap());

    // The request that created the sync: a server span named by its route.
    let requests: Vec<&OtlpSpan> = spans
        .iter()
        .filter(|s| s.name == "POST /api/v1/projects/{id}/syncs")
        .collect();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let request = requests[0];
    assert_eq!(request.kind, "server");
    assert_eq!(
        request.parent_span_id, "",
        "the trace starts at the request"
    );
    assert_eq!(request.attributes["sync_id"], sync_id);
    assert_eq!(request.attributes["http.request.method"], "POST");
    assert_eq!(
        request.attributes["http.route"],
        "/api/v1/projects/{id}/syncs"
    );
    assert_eq!(request.attributes["http.response.status_code"], "202");
    assert_eq!(request.resource["service.name"], "projsync");
    assert_eq!(request.resource["projsync.process"], "test");
    let trace_id = request.trace_id.clone();

    let trace: Vec<OtlpSpan> = spans
        .iter()
        .filter(|s| s.trace_id == trace_id)
        .cloned()
        .collect();
    assert_push(&trace, &sync_id, request);
    let sync = assert_worker_spans(&trace, &sync_id, &trace_id, request);
    assert_eq!(sync.resource["service.name"], "projsync");
    // Every span of the trace carries the sync's id: nothing else joined it.
    for span in &trace {
        assert_eq!(span.attributes.get("sync_id"), Some(&sync_id), "{span:#?}");
    }
    // Polling the sync is a trace per request, each naming the sync.
    let polls: Vec<&OtlpSpan> = spans
        .iter()
        .filter(|s| s.name == "GET /api/v1/syncs/{id}")
        .collect();
    assert!(!polls.is_empty());
    assert!(polls
        .iter()
        .all(|p| p.trace_id != trace_id && p.attributes["sync_id"] == sync_id));

    // The logs went out too, each inside the span it was logged in.
    let logs = collector.logs();
    let started: Vec<_> = logs
        .iter()
        .filter(|l| l.body == "phase started" && l.trace_id == trace_id)
        .collect();
    assert_eq!(started.len(), PHASES.len(), "{logs:#?}");
    let phase_ids: Vec<&str> = spans_named(&trace, "phase")
        .iter()
        .map(|p| p.span_id.as_str())
        .collect();
    assert!(started
        .iter()
        .all(|l| phase_ids.contains(&l.span_id.as_str())));
    assert!(started.iter().all(|l| l.severity == "INFO"));
    assert!(logs
        .iter()
        .all(|l| l.resource["service.name"] == "projsync"));
    assert!(sync.end_unix_nano > sync.start_unix_nano);

    // Every export carried the configured headers and was accepted.
    assert_exports(&collector, "Bearer xaat-test-token", "projsync");
    assert!(collector.logs().iter().all(|l| !l.body.contains("xaat")));
    runtime.block_on(async move { drop(app) });
    drop(runtime);
    telemetry.shutdown().unwrap();
}

#[test]
fn an_operators_retry_continues_the_syncs_trace() {
    let collector = FakeOtlp::requiring(&[("Authorization", "Bearer xaat-test-token")]);
    let Traced {
        telemetry,
        runtime,
        _default,
    } = traced(&collector);
    // A repository without commits: the first run fails (fatal).
    let repo = GitRepo::new();
    let (app, sync_id) = runtime.block_on(async {
        let app = spawn_app().await;
        let project = app.create_project("retried", repo.path(), "main").await;
        let failed = app.sync(&project, None).await;
        assert_eq!(failed["status"], "failed", "{failed}");
        repo.write("a.txt", "a\n");
        repo.commit("a");
        let id = failed["id"].as_str().unwrap().to_string();
        let (status, body) = app.post(&format!("/syncs/{id}/retry"), json!({})).await;
        assert_eq!(status, 202, "{body}");
        let done = app.wait_for(&id).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        (app, id)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        telemetry.flush().unwrap();
        let spans = collector.spans();
        let runs = spans
            .iter()
            .filter(|s| s.name == "sync" && s.attributes["sync_id"] == sync_id)
            .count();
        if runs == 2 && spans.iter().any(|s| s.name == "sync.retry") {
            break spans;
        }
        assert!(Instant::now() < deadline, "{spans:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let request = spans_named(&spans, "POST /api/v1/projects/{id}/syncs")[0];
    let retry_request = spans_named(&spans, "POST /api/v1/syncs/{id}/retry")[0];
    assert_eq!(retry_request.attributes["sync_id"], sync_id);
    assert_ne!(
        retry_request.trace_id, request.trace_id,
        "a request of its own"
    );
    // The retry's push is in the sync's trace, linked to the retry request.
    let retry = spans_named(&spans, "sync.retry")[0];
    assert_eq!(retry.trace_id, request.trace_id);
    assert_eq!(retry.parent_span_id, request.span_id);
    assert_eq!(retry.attributes["sync_id"], sync_id);
    assert_eq!(
        retry.links,
        [(
            retry_request.trace_id.clone(),
            retry_request.span_id.clone()
        )]
    );
    let pushes: Vec<&OtlpSpan> = spans_named(&spans, "queue.push")
        .into_iter()
        .filter(|p| p.parent_span_id == retry.span_id)
        .collect();
    assert_eq!(pushes.len(), 1, "{spans:#?}");
    // Both runs, the failed one and the retried one, are in that trace.
    let runs: Vec<&OtlpSpan> = spans_named(&spans, "sync");
    assert_eq!(runs.len(), 2);
    assert!(runs
        .iter()
        .all(|r| r.trace_id == request.trace_id && r.parent_span_id == request.span_id));
    let failed: Vec<&OtlpSpan> = spans_named(&spans, "phase")
        .into_iter()
        .filter(|p| p.status == "error")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].attributes["phase"], "prepare");
    runtime.block_on(async move { drop(app) });
    drop(runtime);
    telemetry.shutdown().unwrap();
}

/// Every export was accepted and carried `authorization`, and the dataset
/// of its signal: `{dataset}-traces` or `{dataset}-logs`.
fn assert_exports(collector: &FakeOtlp, authorization: &str, dataset: &str) {
    let exports = collector.requests();
    assert!(exports.iter().any(|r| r.path == "/v1/traces"));
    assert!(exports.iter().any(|r| r.path == "/v1/logs"));
    for r in &exports {
        assert_eq!(r.status, 200, "{r:#?}");
        assert_eq!(r.headers["authorization"], authorization);
        assert_eq!(r.headers["content-type"], "application/x-protobuf");
        assert_eq!(r.headers["content-encoding"], "gzip");
        let signal = r.path.trim_start_matches("/v1/");
        assert_eq!(r.headers["x-axiom-dataset"], format!("{dataset}-{signal}"));
    }
}

#[test]
fn the_reconcilers_push_joins_the_syncs_trace() {
    let collector = FakeOtlp::start();
    let Traced {
        telemetry,
        runtime,
        _default,
    } = traced(&collector);
    let repo = repo();
    let (app, sync_id) = runtime.block_on(async {
        let app = spawn_app_with(false, |s| {
            s.worker.reconcile_interval_ms = 100;
            s.worker.redeliver_after_secs = 1;
        })
        .await;
        let project = app.create_project("lost", repo.path(), "main").await;
        let sync_id = app.enqueue(&project, None).await;
        // The job is lost: Redis forgets the test's keys.
        let client = redis::Client::open(app.redis.url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", app.redis.namespace))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(!keys.is_empty());
        let () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
        // A worker comes; its reconciler pushes the sync again.
        projsync::app::spawn_worker_with(
            &app.settings,
            app.db.store.clone(),
            std::sync::Arc::new(crate::helpers::test_sources()),
            app.shutdown_token(),
        )
        .await
        .unwrap();
        let done = app.wait_for(&sync_id).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        (app, sync_id)
    });
    let spans = wait_for_sync_trace(&collector, &sync_id, &|| telemetry.flush().unwrap());
    let request = spans_named(&spans, "POST /api/v1/projects/{id}/syncs")[0];
    let repushes = spans_named(&spans, "reconciler.push");
    assert!(!repushes.is_empty(), "{spans:#?}");
    for repush in &repushes {
        assert_eq!(repush.trace_id, request.trace_id, "{repush:#?}");
        assert_eq!(repush.parent_span_id, request.span_id);
        assert_eq!(repush.attributes["sync_id"], sync_id);
        assert!(spans_named(&spans, "queue.push")
            .iter()
            .any(|p| p.parent_span_id == repush.span_id));
    }
    let trace: Vec<OtlpSpan> = spans
        .iter()
        .filter(|s| s.trace_id == request.trace_id)
        .cloned()
        .collect();
    assert_worker_spans(&trace, &sync_id, &request.trace_id, request);
    runtime.block_on(async move { drop(app) });
    drop(runtime);
    telemetry.shutdown().unwrap();
}

/// `projsync` with the test's database and Redis, and no OTEL_* variable of
/// the environment the tests run in.
fn binary(db: &TestDb, redis: &TestRedis) -> Command {
    let mut cmd = projsync(db, redis);
    for (key, _) in std::env::vars() {
        if key.starts_with("OTEL_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Start a worker (with `env` and `worker_env`), run `projsync sync
/// --watch` (with `env`; exit 0), stop the worker with SIGTERM (exit 0);
/// returns the sync's id.
fn sync_with_a_worker_process(
    db: &TestDb,
    redis: &TestRedis,
    env: &[(&str, &str)],
    worker_env: &[(&str, &str)],
) -> String {
    let repo = repo();
    let with_env = |mut cmd: Command| {
        cmd.envs(env.iter().copied());
        cmd
    };
    let (code, _, stderr) = crate::cli::run(
        with_env(binary(db, redis))
            .args(["project", "add", "--name", "traced"])
            .arg("--path")
            .arg(repo.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    let mut worker = with_env(binary(db, redis))
        .envs(worker_env.iter().copied())
        .arg("worker")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (code, stdout, stderr) = crate::cli::run(with_env(binary(db, redis)).args([
        "sync",
        "--project",
        "traced",
        "--watch",
    ]));
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let sync_id = stdout.lines().next().unwrap().trim().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = worker.try_wait().unwrap() {
            assert!(status.success(), "worker exit: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "the worker did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    sync_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exports_one_trace_across_processes() {
    let collector = FakeOtlp::requiring(&[("Authorization", "Bearer xaat-cli")]);
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    let sync_id = tokio::task::block_in_place(|| {
        sync_with_a_worker_process(
            &db,
            &redis,
            &[
                ("PROJSYNC__TELEMETRY__OTLP_ENDPOINT", collector.url()),
                // One string each, as a secret in the environment holds it.
                (
                    "PROJSYNC__TELEMETRY__OTLP_HEADERS",
                    "Authorization=Bearer xaat-cli, X-Scope-OrgID=tenant-1",
                ),
                (
                    "PROJSYNC__TELEMETRY__OTLP_TRACES_HEADERS",
                    "X-Axiom-Dataset=cli-traces",
                ),
                (
                    "PROJSYNC__TELEMETRY__OTLP_LOGS_HEADERS",
                    "X-Axiom-Dataset=cli-logs",
                ),
                ("PROJSYNC__TELEMETRY__SERVICE_NAME", "projsync-e2e"),
            ],
            // The first import attempt panics (a retryable failure): the
            // sync runs twice, on two claims.
            &[
                ("PROJSYNC_FAILPOINT", "import.fetched@1=panic"),
                ("PROJSYNC__WORKER__RETRY_MIN_DELAY_MS", "100"),
            ],
        )
    });
    // Both processes flushed at exit: no waiting.
    let spans = collector.spans();
    let commands: Vec<&OtlpSpan> = spans_named(&spans, "projsync sync");
    assert_eq!(commands.len(), 1, "{spans:#?}");
    let command = commands[0];
    assert_eq!(command.parent_span_id, "");
    assert_eq!(command.attributes["sync_id"], sync_id);
    assert_eq!(command.resource["projsync.process"], "sync");
    assert_eq!(command.resource["service.name"], "projsync-e2e");
    let trace: Vec<OtlpSpan> = spans
        .iter()
        .filter(|s| s.trace_id == command.trace_id)
        .cloned()
        .collect();
    // The command's push, and the retry's, in the failed attempt's span.
    let pushes = spans_named(&trace, "queue.push");
    assert_eq!(pushes.len(), 2, "{pushes:#?}");
    assert_eq!(pushes[0].parent_span_id, command.span_id);
    assert_eq!(pushes[0].kind, "producer");
    // Both runs are in the command's trace, each a `sync` span under it:
    // the second worker run read the trace from the ledger again.
    let mut runs = spans_named(&trace, "sync");
    runs.sort_by_key(|s| s.start_unix_nano);
    assert_eq!(runs.len(), 2, "{runs:#?}");
    for (run, fence) in runs.iter().zip(["1", "2"]) {
        assert_eq!(run.parent_span_id, command.span_id, "{run:#?}");
        assert_eq!(run.attributes["fence"], fence);
        assert_eq!(run.attributes["sync_id"], sync_id);
        assert_eq!(run.resource["projsync.process"], "worker");
        assert_eq!(run.resource["service.name"], "projsync-e2e");
    }
    let phases = |run: &OtlpSpan| -> Vec<(String, String, &'static str)> {
        let mut phases: Vec<&OtlpSpan> = spans_named(&trace, "phase")
            .into_iter()
            .filter(|p| p.parent_span_id == run.span_id)
            .collect();
        phases.sort_by_key(|p| p.start_unix_nano);
        phases
            .iter()
            .map(|p| {
                (
                    p.attributes["phase"].clone(),
                    p.attributes["attempt"].clone(),
                    p.status,
                )
            })
            .collect()
    };
    let owned = |v: &[(&str, &str, &'static str)]| -> Vec<(String, String, &'static str)> {
        v.iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
            .collect()
    };
    assert_eq!(
        phases(runs[0]),
        owned(&[
            ("prepare", "1", "unset"),
            ("scan", "1", "unset"),
            ("import", "1", "error"),
        ])
    );
    assert_eq!(
        phases(runs[1]),
        owned(&[
            ("import", "2", "unset"),
            ("analyze", "1", "unset"),
            ("docs", "1", "unset"),
            ("embed", "1", "unset"),
            ("finalize", "1", "unset"),
        ])
    );
    let failed_import = spans_named(&trace, "phase")
        .into_iter()
        .find(|p| p.status == "error")
        .unwrap();
    assert_eq!(pushes[1].parent_span_id, failed_import.span_id);
    assert_ne!(pushes[1].attributes["delay_secs"], "0", "{:#?}", pushes[1]);
    assert!(
        collector
            .logs()
            .iter()
            .any(|l| l.trace_id == command.trace_id && l.body == "phase started"),
        "the worker's logs are in the trace"
    );
    assert_exports(&collector, "Bearer xaat-cli", "cli");
    assert!(collector
        .requests()
        .iter()
        .all(|r| r.headers["x-scope-orgid"] == "tenant-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_exported_without_an_endpoint() {
    let collector = FakeOtlp::start();
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    tokio::task::block_in_place(|| {
        sync_with_a_worker_process(
            &db,
            &redis,
            &[
                // The standard variables alone turn nothing on.
                ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url()),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "Authorization=Bearer xaat-unused",
                ),
                (
                    "PROJSYNC__TELEMETRY__OTLP_HEADERS",
                    "Authorization=Bearer xaat-unused",
                ),
            ],
            &[],
        )
    });
    // The processes have exited: anything they would send was sent.
    assert!(
        collector.requests().is_empty(),
        "{:#?}",
        collector.requests()
    );
}
