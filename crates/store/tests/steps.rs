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
