//! A step's start against the real database: it is also the phase
//! boundary's cancel check, and the end of the step before can make it.

use projsync_domain::{PhaseStatus, Stats, SyncPhase};
use projsync_store::StepStart;
use projsync_test_support::TestDb;

mod common;
use common::claimed;

#[tokio::test]
async fn a_step_starts_unless_a_cancel_was_asked_for() {
    let db = TestDb::new().await;
    let (store, _, claim) = claimed(&db, "w").await;
    let sync = store.sync(claim.sync_id).await.unwrap();

    let StepStart::Started(step) = store.start_step(&claim, SyncPhase::Prepare).await.unwrap()
    else {
        panic!("the step should start")
    };
    assert_eq!((step.status, step.attempts), (PhaseStatus::Running, 1));

    store.request_cancel(sync.id).await.unwrap();
    assert_eq!(
        store.start_step(&claim, SyncPhase::Scan).await.unwrap(),
        StepStart::CancelRequested
    );
    // Nothing was written: the scan step is still pending, and the sync's
    // current phase is still prepare.
    let steps = store.steps(sync.id).await.unwrap();
    let scan = steps.iter().find(|s| s.phase == SyncPhase::Scan).unwrap();
    assert_eq!((scan.status, scan.attempts), (PhaseStatus::Pending, 0));
    assert_eq!(
        store.sync(sync.id).await.unwrap().current_phase,
        Some(SyncPhase::Prepare)
    );
}

#[tokio::test]
async fn a_step_end_starts_the_next_step_unless_a_cancel_was_asked_for() {
    let db = TestDb::new().await;
    let (store, _, claim) = claimed(&db, "w").await;
    let sync = store.sync(claim.sync_id).await.unwrap();
    let head = "0123456789012345678901234567890123456789";
    let _ = store.start_step(&claim, SyncPhase::Prepare).await.unwrap();

    // Prepare's end starts scan, in the same transaction.
    let next = store
        .finish_prepare(&claim, head, serde_json::json!({}))
        .await
        .unwrap();
    let Some(StepStart::Started(scan)) = next else {
        panic!("scan should be started: {next:?}")
    };
    assert_eq!(
        (scan.phase, scan.status, scan.attempts),
        (SyncPhase::Scan, PhaseStatus::Running, 1)
    );
    assert_eq!(
        store.sync(sync.id).await.unwrap().current_phase,
        Some(SyncPhase::Scan)
    );

    // After a cancel, scan's end is still recorded, but import is not
    // started.
    store.request_cancel(sync.id).await.unwrap();
    let next = store
        .write_plan(&claim, &[], &Stats::default(), None)
        .await
        .unwrap();
    assert_eq!(next, Some(StepStart::CancelRequested));
    let steps = store.steps(sync.id).await.unwrap();
    let status = |p: SyncPhase| {
        let s = steps.iter().find(|s| s.phase == p).unwrap();
        (s.status, s.attempts)
    };
    assert_eq!(status(SyncPhase::Prepare), (PhaseStatus::Succeeded, 1));
    assert_eq!(status(SyncPhase::Scan), (PhaseStatus::Succeeded, 1));
    assert_eq!(status(SyncPhase::Import), (PhaseStatus::Pending, 0));
}

#[tokio::test]
async fn a_step_end_after_a_takeover_writes_nothing() {
    // A worker whose sync was taken over cannot end its step: nothing of
    // the transaction (scan's plan here) is written, and the new owner's
    // steps are as it left them.
    let db = TestDb::new().await;
    let (store, _, claim) = claimed(&db, "w1").await;
    let _ = store.start_step(&claim, SyncPhase::Prepare).await.unwrap();
    let head = "0123456789012345678901234567890123456789";
    let _ = store
        .finish_prepare(&claim, head, serde_json::json!({}))
        .await
        .unwrap();
    let taken = common::taken_over(&db, &claim, "w2").await;

    let row = projsync_store::PlanRow {
        path: "a.rs".into(),
        change: projsync_domain::ChangeKind::Added,
        kind: projsync_domain::EntryKind::File,
        blob_sha: Some("0".repeat(40)),
        old_blob_sha: None,
        old_path: None,
        size: Some(1),
        language: None,
        skip_reason: None,
        needs_entry: true,
    };
    let err = store
        .write_plan(&claim, &[row], &Stats::default(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, projsync_store::Error::LeaseLost(_)), "{err}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_changes WHERE sync_id = $1")
        .bind(claim.sync_id.0)
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert_eq!(rows, 0, "the plan was rolled back");
    let steps = store.steps(taken.sync_id).await.unwrap();
    let scan = steps.iter().find(|s| s.phase == SyncPhase::Scan).unwrap();
    let import = steps.iter().find(|s| s.phase == SyncPhase::Import).unwrap();
    assert_eq!(scan.status, PhaseStatus::Running);
    assert_eq!((import.status, import.attempts), (PhaseStatus::Pending, 0));
    let sync = store.sync(taken.sync_id).await.unwrap();
    assert_eq!(
        (sync.current_phase, sync.fence),
        (Some(SyncPhase::Scan), taken.fence)
    );

    // The new owner's end of the same step goes through.
    let next = store
        .finish_step_with_stats(
            &taken,
            SyncPhase::Scan,
            PhaseStatus::Succeeded,
            serde_json::json!({}),
            &Stats::default(),
        )
        .await
        .unwrap();
    assert!(
        matches!(next, Some(StepStart::Started(ref s)) if s.phase == SyncPhase::Import),
        "{next:?}"
    );
}
