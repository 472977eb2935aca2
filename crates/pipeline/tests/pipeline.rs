//! The phase engine through its public API, against the real PostgreSQL
//! and Redis: full and diff syncs, progress events, retries, cancel, leases
//! held by others, the reconciler and the worker's presence. Each test has
//! its own database, Redis namespace and Git repository (`common`).

mod common;

use common::{eventually, Harness, Version, FILES, PATIENCE};
use futures::StreamExt;
use projsync_domain::{PhaseStatus, ScanMode, SyncJob, SyncPhase, SyncStatus};
use projsync_pipeline::presence::{run_presence, worker_info, LIVE_WITHIN};
use projsync_pipeline::{run_reconciler, ReconcilerOptions};
use projsync_queue::JobHandler;
use projsync_store::{CancelOutcome, ClaimOutcome, SyncLocks};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use PhaseStatus::{Cancelled, Failed, Pending, Skipped, Succeeded};
use SyncPhase::{Analyze, Docs, Embed, Finalize, Import, Prepare, Scan};

/// Every phase ran once; embed is skipped (no model).
const ALL_RAN: [(SyncPhase, PhaseStatus, i32); 7] = [
    (Prepare, Succeeded, 1),
    (Scan, Succeeded, 1),
    (Import, Succeeded, 1),
    (Analyze, Succeeded, 1),
    (Docs, Succeeded, 1),
    (Embed, Skipped, 1),
    (Finalize, Succeeded, 1),
];

#[tokio::test]
async fn a_first_sync_runs_every_phase_and_activates_the_tree() {
    let h = Harness::new(FILES).await;
    let sync = h.sync().await;
    assert_eq!(sync.status, SyncStatus::Succeeded, "{sync:#?}");
    assert_eq!(sync.outcome.as_deref(), Some("changed"));
    assert_eq!(sync.head_commit, Some(h.repo.head()));
    assert_eq!(sync.previous_sync_id, None);
    assert_eq!(sync.lease_owner, None, "the lease is released");
    assert_eq!(h.steps(sync.id).await, ALL_RAN);
    let stats = &sync.stats;
    assert_eq!(stats.scan_mode, Some(ScanMode::Full));
    assert_eq!((stats.files_seen, stats.imported, stats.skipped), (4, 4, 0));
    assert_eq!(h.active().await, h.expected());
    assert_eq!(h.count_versions("pending").await, 0);
    let mut reads = h.sources.take_reads();
    reads.sort();
    assert_eq!(reads, h.blobs(), "each blob read once");
    let project = h.store().project(h.project).await.unwrap();
    assert_eq!(project.last_sync_id, Some(sync.id));
}

#[tokio::test]
async fn a_resync_after_a_commit_reads_and_replaces_only_the_changed_file() {
    let h = Harness::new(FILES).await;
    let first = h.sync().await;
    h.sources.take_reads();
    h.repo
        .write("src/lib.rs", "pub fn answer() -> u32 {\n    43\n}\n");
    let head = h.repo.commit("change one file");

    let second = h.sync().await;
    assert_eq!(second.status, SyncStatus::Succeeded, "{second:#?}");
    assert_eq!(second.outcome.as_deref(), Some("changed"));
    assert_eq!(second.head_commit, Some(head));
    assert_eq!(second.previous_sync_id, Some(first.id));
    assert_eq!(h.steps(second.id).await, ALL_RAN);
    let stats = &second.stats;
    assert_eq!(stats.scan_mode, Some(ScanMode::Diff));
    assert_eq!(
        (stats.files_seen, stats.modified, stats.imported),
        (4, 1, 1)
    );
    let changed_blob = h.repo.git(&["rev-parse", "HEAD:src/lib.rs"]);
    assert_eq!(h.sources.take_reads(), vec![changed_blob]);
    // One new version; the one it replaces is superseded by this sync.
    let lib: Vec<Version> = h
        .versions()
        .await
        .into_iter()
        .filter(|v| v.path == "src/lib.rs")
        .collect();
    let version = |status: &str, created_by, superseded_by| Version {
        path: "src/lib.rs".into(),
        status: status.into(),
        created_by,
        superseded_by,
    };
    assert_eq!(
        lib,
        [
            version("superseded", first.id, Some(second.id)),
            version("active", second.id, None),
        ]
    );
    assert_eq!(h.versions().await.len(), 5, "no other version was written");
    assert_eq!(h.active().await, h.expected());
}

#[tokio::test]
async fn a_resync_without_a_change_is_unchanged_and_reads_nothing() {
    let h = Harness::new(FILES).await;
    let first = h.sync().await;
    h.sources.take_reads();
    let trees_read = *h.sources.trees_read.lock().unwrap();

    let again = h.sync().await;
    assert_eq!(again.status, SyncStatus::Succeeded, "{again:#?}");
    assert_eq!(again.outcome.as_deref(), Some("unchanged"));
    assert_eq!(again.head_commit, first.head_commit);
    assert_eq!(
        (
            again.stats.files_seen,
            again.stats.unchanged,
            again.stats.imported
        ),
        (4, 4, 0)
    );
    assert_eq!(
        h.steps(again.id).await,
        [
            (Prepare, Succeeded, 1),
            (Scan, Skipped, 0),
            (Import, Skipped, 0),
            (Analyze, Skipped, 0),
            (Docs, Skipped, 0),
            (Embed, Skipped, 0),
            (Finalize, Skipped, 0),
        ]
    );
    assert!(h.sources.take_reads().is_empty(), "no blob read");
    assert_eq!(*h.sources.trees_read.lock().unwrap(), trees_read);
    assert!(h.versions().await.iter().all(|v| v.created_by == first.id));
    assert_eq!(h.active().await, h.expected());
}

#[tokio::test]
async fn progress_events_are_numbered_in_order_and_end_with_finalize() {
    let h = Harness::new(FILES).await;
    let id = h.create_sync().await;
    let mut events = projsync_queue::subscribe(&h.queue_options(), id)
        .await
        .expect("subscribe to the sync's channel");
    h.pipeline.run(id).await;
    let snapshot = h.record(id).await.progress.expect("a progress snapshot");

    let mut got = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while let Some(event) = events.next().await {
            let last = event.seq == snapshot.seq;
            got.push(event);
            if last {
                break;
            }
        }
    })
    .await
    .expect("every event is published");
    let seqs: Vec<i64> = got.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=snapshot.seq).collect::<Vec<_>>(), "no gap");
    assert!(got
        .iter()
        .all(|e| e.sync_id == id && e.project_id == h.project));
    assert!(
        got.windows(2).all(|w| w[0].phase as u8 <= w[1].phase as u8),
        "phases in order: {got:#?}"
    );
    // Two import batches of two files, each announced once written.
    let batches: Vec<(u64, u64)> = got
        .iter()
        .filter(|e| e.phase == Import && e.message.starts_with("batch "))
        .map(|e| (e.done, e.total))
        .collect();
    assert_eq!(batches, [(2, 4), (4, 4)]);
    let last = got.last().unwrap();
    assert_eq!(
        (last.phase, last.phase_status, last.sync_status),
        (Finalize, Succeeded, SyncStatus::Succeeded)
    );
    assert_eq!(last.stats.imported, 4);
    assert_eq!(
        (last.seq, &last.message),
        (snapshot.seq, &snapshot.message),
        "the ledger's snapshot is the last event"
    );
}

#[tokio::test]
async fn a_retryable_failure_is_scheduled_and_the_retry_succeeds() {
    let h = Harness::new(FILES).await;
    h.sources.fail_next_reads(1);
    let id = h.create_sync().await;
    h.pipeline.run(id).await;

    // The first attempt failed in import and was handed back for later.
    let sync = h.record(id).await;
    assert_eq!(sync.status, SyncStatus::Queued, "{sync:#?}");
    assert!(sync.not_before.is_some(), "a retry is scheduled");
    assert_eq!(sync.lease_owner, None);
    assert_eq!(sync.error_class.as_deref(), Some("retryable"));
    let message = sync.error_message.unwrap_or_default();
    assert!(message.contains("connection reset"), "{message}");
    assert_eq!(
        h.steps(id).await,
        [
            (Prepare, Succeeded, 1),
            (Scan, Succeeded, 1),
            (Import, Pending, 1),
            (Analyze, Pending, 0),
            (Docs, Pending, 0),
            (Embed, Pending, 0),
            (Finalize, Pending, 0),
        ]
    );
    assert_eq!(h.queue.waiting_jobs().await.unwrap(), [id], "retry pushed");

    // The queue delivers the retry; the run resumes at import.
    h.spawn_worker();
    let sync = h.wait_for_end(id).await;
    assert_eq!(sync.status, SyncStatus::Succeeded, "{sync:#?}");
    assert_eq!(sync.attempts, 2, "two claims");
    // The earlier attempt's error stays on its step, not on the sync.
    assert_eq!(sync.error_class, None, "{sync:#?}");
    assert_eq!(sync.error_message, None, "{sync:#?}");
    assert_eq!(
        &h.steps(id).await[..3],
        [
            (Prepare, Succeeded, 1),
            (Scan, Succeeded, 1),
            (Import, Succeeded, 2)
        ],
        "prepare and scan are not run again"
    );
    assert_eq!(h.active().await, h.expected());
}

#[tokio::test]
async fn a_failure_past_max_attempts_fails_the_sync_with_its_phase_and_message() {
    let h = Harness::with(FILES, |o| o.max_attempts = 2).await;
    h.sources.fail_next_reads(u32::MAX);
    h.spawn_worker();
    let id = h.enqueue().await;

    let sync = h.wait_for_end(id).await;
    assert_eq!(sync.status, SyncStatus::Failed, "{sync:#?}");
    assert_eq!(sync.failed_phase, Some(Import));
    assert_eq!(sync.error_class.as_deref(), Some("retryable"));
    let message = sync.error_message.clone().unwrap_or_default();
    assert!(
        message.contains("connection reset") && message.contains("gave up after 2 attempts"),
        "{message}"
    );
    assert_eq!(sync.lease_owner, None);
    let steps = h.steps(id).await;
    assert_eq!(
        &steps[2..],
        [
            (Import, Failed, 2),
            (Analyze, Pending, 0),
            (Docs, Pending, 0),
            (Embed, Pending, 0),
            (Finalize, Pending, 0)
        ]
    );
    let step = &h.store().steps(id).await.unwrap()[2];
    assert_eq!(step.error_message.as_deref(), Some(message.as_str()));
    assert!(h.versions().await.is_empty());
    assert!(h.queue.waiting_jobs().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_cancel_while_running_discards_pending_versions() {
    let h = Harness::new(FILES).await;
    h.sync().await;
    let before = h.active().await;
    // Every file changes and two are added: three import batches.
    for (path, content) in FILES {
        h.repo.write(path, format!("{content}v2\n"));
    }
    h.repo
        .write("src/a.rs", "// a\n")
        .write("src/b.rs", "// b\n");
    h.repo.commit("v2");
    h.sources.set_read_delay(Duration::from_millis(300));

    let id = h.create_sync().await;
    let run = tokio::spawn({
        let pipeline = h.pipeline.clone();
        async move { pipeline.run(id).await }
    });
    // Cancel once the first batch is written (pending versions exist).
    h.wait_until(id, "a written import batch", |s| {
        s.progress
            .as_ref()
            .is_some_and(|p| p.phase == Import && p.done > 0)
    })
    .await;
    assert!(h.count_versions("pending").await > 0);
    assert_eq!(
        h.store().request_cancel(id).await.unwrap(),
        CancelOutcome::Requested
    );
    tokio::time::timeout(PATIENCE, run)
        .await
        .expect("the run stops at the next boundary")
        .unwrap();

    let sync = h.record(id).await;
    assert_eq!(sync.status, SyncStatus::Cancelled, "{sync:#?}");
    assert_eq!(sync.lease_owner, None);
    assert_eq!(
        sync.progress.map(|p| (p.phase, p.phase_status)),
        Some((Import, Cancelled))
    );
    assert_eq!(
        &h.steps(id).await[2..],
        [
            (Import, Cancelled, 1),
            (Analyze, Cancelled, 0),
            (Docs, Cancelled, 0),
            (Embed, Cancelled, 0),
            (Finalize, Cancelled, 0)
        ]
    );
    assert_eq!(h.count_versions("pending").await, 0);
    assert_eq!(h.active().await, before, "the knowledge base is unchanged");

    // The next sync brings the project up to date.
    h.sources.set_read_delay(Duration::ZERO);
    assert_eq!(h.sync().await.status, SyncStatus::Succeeded);
    assert_eq!(h.active().await, h.expected());
}

/// Another worker holds a live lease on the sync, taken with its advisory
/// lock (`with_lock`) or by the lease alone: a job of the sync is dropped.
async fn a_sync_leased_elsewhere_is_not_run(with_lock: bool) {
    let h = Harness::new(FILES).await;
    let id = h.create_sync().await;
    let other = SyncLocks::new(h.store().pool());
    let _lock = if with_lock {
        Some(other.try_lock(id).await.unwrap().expect("the lock is free"))
    } else {
        None
    };
    let ClaimOutcome::Claimed { claim, .. } = h
        .store()
        .claim_locked(id, "other-worker", Duration::from_secs(30), with_lock)
        .await
        .unwrap()
    else {
        panic!("the other worker claims the sync")
    };

    h.pipeline.handle(SyncJob::new(id)).await;
    let sync = h.record(id).await;
    assert_eq!(
        (sync.status, sync.lease_owner.as_deref(), sync.fence),
        (SyncStatus::Running, Some("other-worker"), claim.fence),
        "the lease and its fence are the other worker's"
    );
    assert!(h.steps(id).await.iter().all(|s| s.1 == Pending && s.2 == 0));
    assert_eq!(*h.sources.trees_read.lock().unwrap(), 0);
    assert!(h.sources.take_reads().is_empty());
    assert!(h.versions().await.is_empty());
    assert!(
        h.queue.waiting_jobs().await.unwrap().is_empty(),
        "the job is dropped, not pushed again"
    );
}

#[tokio::test]
async fn a_sync_leased_by_a_live_worker_is_not_run() {
    a_sync_leased_elsewhere_is_not_run(true).await;
}

#[tokio::test]
async fn a_live_lease_taken_without_the_lock_is_not_taken_over() {
    a_sync_leased_elsewhere_is_not_run(false).await;
}

#[tokio::test]
async fn the_reconciler_pushes_a_sync_whose_job_was_lost() {
    let h = Harness::new(FILES).await;
    h.spawn_worker();
    // Recorded, but the push failed: only the reconciler can ring.
    let id = h.create_sync().await;
    h.store().mark_unpushed(id).await.unwrap();
    let metrics = projsync_metrics::Metrics::default();
    tokio::spawn(run_reconciler(
        h.store().clone(),
        h.queue.clone(),
        ReconcilerOptions {
            interval: Duration::from_millis(50),
            redeliver_after: Duration::from_secs(60),
            takeover: false,
            metrics: metrics.clone(),
        },
        h.shutdown.clone(),
    ));
    let sync = h.wait_for_end(id).await;
    assert_eq!(sync.status, SyncStatus::Succeeded, "{sync:#?}");
    assert_eq!(h.active().await, h.expected());
    let rendered = metrics.render(None);
    assert!(
        rendered.contains("projsync_reconciler_pushes_total 1\n"),
        "{rendered}"
    );
}

#[tokio::test]
async fn presence_lists_the_worker_until_it_stops() {
    let h = Harness::new(FILES).await;
    let info = worker_info("presence-test", "0.0.0-test", 3);
    let stop = CancellationToken::new();
    let presence = tokio::spawn(run_presence(h.store().clone(), info.clone(), stop.clone()));
    let live = || async {
        h.store()
            .live_workers(LIVE_WITHIN)
            .await
            .unwrap()
            .into_iter()
            .find(|w| w.name == info.name)
    };
    let listed = eventually("the worker registered", live).await;
    assert_eq!(
        (
            &listed.hostname,
            listed.pid,
            listed.concurrency,
            &*listed.version
        ),
        (&info.hostname, std::process::id() as i32, 3, "0.0.0-test")
    );
    stop.cancel();
    presence.await.unwrap();
    assert_eq!(live().await, None, "a clean stop leaves the fleet");
}
