//! Robustness: a bug that panics inside a phase fails that attempt like any
//! other error. The sync never stays `running`, never loops, and the
//! project syncs again once the bug is gone.

use crate::chaos::{assert_no_duplicates, fast, repo_with, wait_done, WorkerProc};
use crate::helpers::{expected_entries, spawn_app_with};
use std::time::Duration;

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
