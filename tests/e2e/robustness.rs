//! Robustness: a bug that panics inside a phase fails that attempt like any
//! other error (the sync never stays `running`, never loops, and the
//! project syncs again once the bug is gone); live progress streams share
//! one Redis connection per API process and are capped.

use crate::chaos::{assert_no_duplicates, fast, repo_with, wait_done, WorkerProc};
use crate::helpers::{expected_entries, spawn_app_with, TestApp};
use projsync_test_support::GitRepo;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_phase_fails_its_attempts_then_the_sync() {
    // No in-process worker: the failpoint is set in a worker process only.
    let app = spawn_app_with(false, |s| {
        fast(s);
        s.worker.max_attempts = 2;
    })
    .await;
    let repo = repo_with(12, "v1");
    let project = app.create_project("panics", repo.path(), "main").await;

    let mut buggy = WorkerProc::spawn_with(
        &app,
        Some("import.fetched=panic"),
        &[("PROJSYNC__WORKER__MAX_ATTEMPTS", "2".into())],
    );
    let sync_id = app.enqueue(&project, None).await;
    let sync = wait_done(&app, &sync_id, Duration::from_secs(30)).await;
    assert_eq!(sync["status"], "failed", "{sync}\n{}", buggy.log());
    assert_eq!(sync["failed_phase"], "import");
    assert_eq!(sync["error_class"], "retryable");
    let msg = sync["error_message"].as_str().unwrap();
    assert!(
        msg.contains("internal error: the import phase panicked")
            && msg.contains("failpoint import.fetched panicked")
            && msg.contains("gave up after 2 attempts"),
        "{msg}"
    );
    let (_, detail) = app.get(&format!("/syncs/{sync_id}")).await;
    let import = &detail["steps"][2];
    assert_eq!(import["phase"], "import");
    assert_eq!(import["status"], "failed");
    assert_eq!(import["attempts"], 2, "{detail}");
    assert!(import["error_message"]
        .as_str()
        .unwrap()
        .contains("panicked"));
    // No lease is left behind and nothing runs it again: wait past the
    // reconciler's redelivery time and count the panics.
    assert!(detail["lease_owner"].is_null(), "{detail}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let panics = buggy
        .log()
        .lines()
        .filter(|l| l.contains("FAILPOINT import.fetched panics"))
        .count();
    assert_eq!(panics, 2, "{}", buggy.log());
    let (_, again) = app.get(&format!("/syncs/{sync_id}")).await;
    assert_eq!(again["status"], "failed");
    assert_eq!(again["steps"][2]["attempts"], 2);
    // The worker survived its panics: it stops cleanly on SIGTERM.
    assert!(buggy.terminate(Duration::from_secs(15)).await.success());

    // Without the bug, the project syncs again.
    let _healthy = WorkerProc::spawn_with(&app, None, &[]);
    let sync_id = app.enqueue(&project, None).await;
    let sync = wait_done(&app, &sync_id, Duration::from_secs(30)).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    assert_eq!(
        app.active_entries(&project).await,
        expected_entries(repo.files_at("HEAD"), &[])
    );
    assert_no_duplicates(&app, &sync).await;
}

/// `CLIENT LIST TYPE pubsub` of the test Redis: (client id, channels).
async fn pubsub_clients(redis: &mut redis::aio::MultiplexedConnection) -> Vec<(String, u64)> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(redis)
        .await
        .unwrap();
    list.lines()
        .filter_map(|line| {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                    .map(str::to_string)
            };
            Some((field("id")?, field("sub")?.parse().ok()?))
        })
        .collect()
}

async fn numsub(redis: &mut redis::aio::MultiplexedConnection, sync_id: &str) -> i64 {
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(format!("projsync:sync:{sync_id}"))
        .query_async(redis)
        .await
        .unwrap();
    n
}

/// An SSE stream on a plain socket: the status line and headers are read,
/// the body is left to wait. Dropping it closes the socket at once (a
/// pooled HTTP client would keep it open until the next keep-alive).
struct RawStream {
    status: u16,
    head: String,
    _socket: tokio::net::TcpStream,
}

async fn open_stream(app: &TestApp, sync_id: &str) -> RawStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = url::Url::parse(&app.base).unwrap();
    let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut socket = tokio::net::TcpStream::connect(&host).await.unwrap();
    let request = format!(
        "GET {}/syncs/{sync_id}/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
        url.path(),
        app.key
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        socket.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    RawStream {
        status,
        head,
        _socket: socket,
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Queued syncs of `n` projects (no worker runs them): live channels.
async fn queued_syncs(app: &TestApp, n: usize) -> (GitRepo, Vec<String>) {
    let repo = repo_with(3, "v1");
    let mut syncs = Vec::new();
    for i in 0..n {
        let project = app
            .create_project(&format!("p{i}"), repo.path(), "main")
            .await;
        syncs.push(app.enqueue(&project, None).await);
    }
    (repo, syncs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_share_one_redis_connection() {
    let app = spawn_app_with(false, |_| {}).await;
    let (_repo, syncs) = queued_syncs(&app, 3).await;
    let mut redis = redis::Client::open(app.redis.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let before: Vec<String> = pubsub_clients(&mut redis)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();

    // Two streams on each of three syncs: six streams, three channels.
    let mut streams = Vec::new();
    for sync_id in syncs.iter().chain(&syncs) {
        let stream = open_stream(&app, sync_id).await;
        assert_eq!(stream.status, 200, "{}", stream.head);
        assert!(stream.head.contains("content-type: text/event-stream"));
        streams.push(stream);
    }
    for sync_id in &syncs {
        assert_eq!(
            numsub(&mut redis, sync_id).await,
            1,
            "one subscriber per channel"
        );
    }
    // One new pub/sub connection holds all three channels (tests running
    // beside this one may open connections of their own, one channel each).
    let hub: Vec<(String, u64)> = pubsub_clients(&mut redis)
        .await
        .into_iter()
        .filter(|(id, sub)| !before.contains(id) && *sub == 3)
        .collect();
    assert_eq!(hub.len(), 1, "{hub:?}");
    let hub_id = hub[0].0.clone();

    // Closed streams unsubscribe their channels; the connection stays
    // (out of pub/sub mode while it follows nothing).
    streams.truncate(3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for sync_id in &syncs {
        assert_eq!(numsub(&mut redis, sync_id).await, 1, "still followed");
    }
    streams.clear();
    eventually("channels released", async || {
        let mut n = 0;
        for sync_id in &syncs {
            n += numsub(&mut redis, sync_id).await;
        }
        n == 0
    })
    .await;
    let all: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        all.lines().any(|l| l.starts_with(&format!("id={hub_id} "))),
        "the connection is kept"
    );
    let again = open_stream(&app, &syncs[0]).await;
    assert_eq!(again.status, 200);
    let clients = pubsub_clients(&mut redis).await;
    assert!(clients.contains(&(hub_id.clone(), 1)), "{clients:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_past_the_cap_get_503_until_one_closes() {
    let app = spawn_app_with(false, |s| s.api.max_streams = 2).await;
    let (_repo, syncs) = queued_syncs(&app, 2).await;
    let first = open_stream(&app, &syncs[0]).await;
    let second = open_stream(&app, &syncs[1]).await;
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 200);

    let third = app
        .http
        .get(format!("{}/syncs/{}/events", app.base, syncs[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 503);
    assert_eq!(third.headers()["retry-after"], "5");
    let body: serde_json::Value = third.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("api.max_streams") && msg.contains("2 event streams"),
        "{msg}"
    );

    // A client that goes away gives its slot back.
    drop(first);
    let started = Instant::now();
    let mut again = None;
    eventually("the closed stream's slot is free", async || {
        let stream = open_stream(&app, &syncs[0]).await;
        let ok = stream.status == 200;
        again = Some(stream);
        ok
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(again);
    drop(second);
}

/// The `id`s and events of an SSE body.
fn sse_events(body: &str) -> Vec<(i64, serde_json::Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                    .map(str::trim)
            };
            Some((
                field("id")?.parse().ok()?,
                serde_json::from_str(field("data")?).ok()?,
            ))
        })
        .collect()
}

async fn read_stream(app: &TestApp, sync_id: &str, last_event_id: Option<i64>) -> String {
    let mut request = app.http.get(format!("{}/syncs/{sync_id}/events", app.base));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let resp = request.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    tokio::time::timeout(Duration::from_secs(30), resp.text())
        .await
        .expect("the stream ends after the final event")
        .unwrap()
}

/// The shared connection keeps the stream's contract: every event from the
/// first, in order, ending after the final one; `Last-Event-ID` resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_keep_their_semantics_over_the_shared_connection() {
    let app = spawn_app_with(false, |_| {}).await;
    let (repo, syncs) = queued_syncs(&app, 1).await;
    let sync_id = syncs[0].clone();
    // Two streams follow the sync before any worker runs it.
    let (a, b) = (
        tokio::spawn({
            let (http, base, id) = (app.http.clone(), app.base.clone(), sync_id.clone());
            async move {
                let resp = http.get(format!("{base}/syncs/{id}/events")).send().await;
                resp.unwrap().text().await.unwrap()
            }
        }),
        tokio::spawn({
            let (http, base, id) = (app.http.clone(), app.base.clone(), sync_id.clone());
            async move {
                let resp = http.get(format!("{base}/syncs/{id}/events")).send().await;
                resp.unwrap().text().await.unwrap()
            }
        }),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    projsync::app::spawn_worker(&app.settings, app.db.store.clone(), app.shutdown_token())
        .await
        .unwrap();
    let (a, b) = tokio::time::timeout(Duration::from_secs(30), async {
        (a.await.unwrap(), b.await.unwrap())
    })
    .await
    .expect("both streams end after the final event");
    let events = sse_events(&a);
    assert_eq!(events, sse_events(&b));
    let seqs: Vec<i64> = events.iter().map(|(id, _)| *id).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "{a}");
    for (id, event) in &events {
        assert_eq!(event["seq"], *id);
    }
    let (last, final_event) = events.last().unwrap();
    assert_eq!(final_event["sync_status"], "succeeded");
    assert!(a.contains("event: progress"));
    let (_, sync) = app.get(&format!("/syncs/{sync_id}")).await;
    let project = sync["project_id"].as_str().unwrap();
    assert_eq!(
        app.active_entries(project).await,
        expected_entries(repo.files_at("HEAD"), &[])
    );

    // After the end: the snapshot alone, then nothing past Last-Event-ID.
    let snapshot = sse_events(&read_stream(&app, &sync_id, None).await);
    assert_eq!(snapshot, vec![(*last, final_event.clone())]);
    assert!(sse_events(&read_stream(&app, &sync_id, Some(*last)).await).is_empty());
    assert_eq!(
        sse_events(&read_stream(&app, &sync_id, Some(last - 1)).await).len(),
        1
    );
}
