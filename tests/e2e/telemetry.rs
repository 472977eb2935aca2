//! OpenTelemetry over OTLP/HTTP, received by a fake collector
//! (`test-support::FakeOtlp`, which decodes the protobuf bodies):
//! - in process: the API's request, the queue push, the worker's `sync`
//!   span and its five `phase` spans are one trace, each with the sync's
//!   id, and the logs carry that trace's id; the configured headers arrive;
//! - the binary: a CLI `sync` and a worker process make one trace through
//!   the ledger, configured by environment variables and flushed at exit;
//! - the binary without `telemetry.otlp_endpoint` sends nothing, even when
//!   the standard `OTEL_EXPORTER_OTLP_ENDPOINT` points at a collector.
//!
//! The in-process test installs its subscriber on its own runtime's
//! threads only (`on_thread_start`), never globally: the other tests of
//! this binary run beside it untouched.

use crate::cli::projsync;
use crate::helpers::spawn_app;
use projsync::logging::LogOptions;
use projsync::Settings;
use projsync_test_support::{FakeOtlp, GitRepo, OtlpSpan, TestDb, TestRedis};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PHASES: [&str; 5] = ["prepare", "scan", "import", "embed", "finalize"];

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
            "the sync's spans did not arrive: {:#?}",
            spans
                .iter()
                .map(|s| (&s.name, &s.attributes))
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

#[test]
fn a_sync_is_one_trace_from_the_request_to_its_last_phase() {
    let collector = FakeOtlp::requiring(&[("Authorization", "Bearer xaat-test-token")]);
    let mut settings = Settings::load(None).unwrap();
    settings.log.level = "info".into();
    // As for Axiom: one token, a dataset per signal.
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
    let telemetry = telemetry.expect("the endpoint is set");
    let runtime = traced_runtime(&dispatch);
    let _default = tracing::dispatcher::set_default(&dispatch);

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

/// Start a worker, run `projsync sync --watch` (exit 0), stop the worker
/// with SIGTERM (exit 0); returns the sync's id.
fn sync_with_a_worker_process(db: &TestDb, redis: &TestRedis, env: &[(&str, &str)]) -> String {
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
                    "Authorization=Bearer xaat-cli",
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
    assert_push(&trace, &sync_id, command);
    let sync = assert_worker_spans(&trace, &sync_id, &command.trace_id, command);
    assert_eq!(sync.resource["projsync.process"], "worker");
    assert_eq!(sync.resource["service.name"], "projsync-e2e");
    assert!(
        collector
            .logs()
            .iter()
            .any(|l| l.trace_id == command.trace_id && l.body == "phase started"),
        "the worker's logs are in the trace"
    );
    assert_exports(&collector, "Bearer xaat-cli", "cli");
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
        )
    });
    // The processes have exited: anything they would send was sent.
    assert!(
        collector.requests().is_empty(),
        "{:#?}",
        collector.requests()
    );
}
