//! The store against the real database: import batches through binary
//! COPY (idempotent, fenced), what scan reads of the stored state, and the
//! repository identity a source is opened with.

use projsync_domain::source::RemoteIdentity;
use projsync_domain::{SkipReason, Stats};
use projsync_store::{BatchWrite, NewEntry, NewProject, PlanRow};
use projsync_test_support::TestDb;
use serde_json::json;

mod common;
use common::{claimed, taken_over};

fn entry(path: &str, content: &str, language: Option<&str>) -> NewEntry {
    NewEntry {
        path: path.into(),
        content: content.into(),
        content_hash: format!("hash-{path}"),
        blob_sha: format!("{:0>40}", path.len()),
        language: language.map(str::to_string),
        size: content.len() as i64,
    }
}

#[tokio::test]
async fn an_import_batch_goes_through_copy_once_and_only_with_the_fence() {
    let db = TestDb::new().await;
    let (store, _project, claim) = claimed(&db, "w1").await;
    let batch = vec![
        entry("a.rs", "fn a() {}\n", Some("rust")),
        entry("dir/é ü.txt", "tab\there, quote ' and \\ backslash\n", None),
        entry("empty", "", None),
    ];
    let skips = vec![("bin.dat".to_string(), SkipReason::Binary)];
    // Written twice (a redelivered batch): the second changes nothing.
    for _ in 0..2 {
        assert_eq!(
            store
                .write_import_batch(&claim, &batch, &skips, json!({ "after": "empty" }))
                .await
                .unwrap(),
            BatchWrite::Written
        );
    }
    let rows: Vec<(String, String, Option<String>, i64, String)> = sqlx::query_as(
        "SELECT path, content, language, size_bytes, status FROM memory_entries ORDER BY path",
    )
    .fetch_all(&db.admin)
    .await
    .unwrap();
    assert_eq!(rows.len(), 3);
    for (row, e) in rows.iter().zip(&batch) {
        assert_eq!(
            (&row.0, &row.1, &row.2, row.3, row.4.as_str()),
            (&e.path, &e.content, &e.language, e.size, "pending")
        );
    }
    let checkpoint: serde_json::Value = sqlx::query_scalar(
        "SELECT checkpoint FROM sync_steps WHERE sync_id = $1 AND phase = 'import'",
    )
    .bind(claim.sync_id.0)
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(checkpoint, json!({ "after": "empty" }));

    // Another worker takes the sync over: the first one's writes are refused.
    let taken = taken_over(&db, &claim, "w2").await;
    let err = store
        .write_import_batch(&claim, &[entry("late.rs", "late", None)], &[], json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, projsync_store::Error::LeaseLost(_)), "{err}");
    // The new owner's batch lands; the staging table was left empty.
    assert_eq!(
        store
            .write_import_batch(&taken, &[entry("b.rs", "b", None)], &[], json!({}))
            .await
            .unwrap(),
        BatchWrite::Written
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM memory_entries")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert_eq!(n, 4);

    // Once a cancel is asked for, a batch is not written (its fence check
    // is the boundary's cancel check).
    store.request_cancel(claim.sync_id).await.unwrap();
    assert_eq!(
        store
            .write_import_batch(
                &taken,
                &[entry("c.rs", "c", None)],
                &[],
                json!({ "after": "c" })
            )
            .await
            .unwrap(),
        BatchWrite::CancelRequested
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM memory_entries")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert_eq!(n, 4);
}

#[tokio::test]
async fn scan_base_sums_up_the_stored_files() {
    let db = TestDb::new().await;
    let (store, project, claim) = claimed(&db, "w1").await;
    let repository = store.project(project).await.unwrap().repository.id;
    assert_eq!(
        store.scan_base(repository).await.unwrap(),
        projsync_store::ScanBase::default()
    );
    let row = |path: &str, skip: Option<SkipReason>| PlanRow {
        path: path.into(),
        change: projsync_domain::ChangeKind::Added,
        kind: projsync_domain::EntryKind::File,
        blob_sha: Some(format!("{:0>40}", path.len())),
        old_blob_sha: None,
        old_path: None,
        size: Some(1),
        language: None,
        skip_reason: skip,
        needs_entry: false,
    };
    let plan = vec![
        row("a", None),
        row("b", Some(SkipReason::Binary)),
        row("c", Some(SkipReason::TooLarge)),
        row("d", Some(SkipReason::Binary)),
    ];
    store
        .write_plan(&claim, &plan, &Stats::default(), Some("f1"))
        .await
        .unwrap();
    store
        .finalize(
            &claim,
            repository,
            "c0ffee",
            "changed",
            Stats::default(),
            None,
        )
        .await
        .unwrap();
    let base = store.scan_base(repository).await.unwrap();
    assert_eq!(base.last_synced_commit.as_deref(), Some("c0ffee"));
    assert_eq!(base.synced_filter.as_deref(), Some("f1"));
    assert_eq!(base.files, 4);
    assert_eq!(
        base.skipped_by_reason,
        [("binary".to_string(), 2), ("too_large".to_string(), 1)].into()
    );
    let at = store
        .stored_files_at(repository, &["b".into(), "zz".into()])
        .await
        .unwrap();
    assert_eq!(at.len(), 1);
    assert_eq!(at[0].1, Some(SkipReason::Binary));
}

#[tokio::test]
async fn the_repository_identity_is_kept_and_filled_in_once() {
    let db = TestDb::new().await;
    let new = |name: &str, remote: Option<RemoteIdentity>| NewProject {
        name: name.into(),
        provider: "github".into(),
        location: "ACME/Widgets".into(),
        default_branch: "main".into(),
        credential: None,
        ignore_patterns: Vec::new(),
        max_file_bytes: None,
        embeddings_enabled: None,
        analysis_enabled: None,
        remote,
        schedule: None,
    };
    let identity = |name: &str, id| RemoteIdentity {
        name: name.into(),
        id: Some(id),
    };
    // Connected with what the source said: kept, and handed to the source.
    let connected = db
        .store
        .create_project(&new("connected", Some(identity("acme/widgets", 7))))
        .await
        .unwrap();
    let read = db.store.project(connected.id).await.unwrap();
    assert_eq!(read.repository.remote, Some(identity("acme/widgets", 7)));
    let spec = read.repository.spec(Some("env:TOKEN"));
    assert_eq!(
        (spec.location, spec.credentials_ref, spec.remote),
        (
            "ACME/Widgets",
            Some("env:TOKEN"),
            Some(&identity("acme/widgets", 7))
        )
    );
    // Not part of the API's answers.
    let json = serde_json::to_value(&read).unwrap();
    assert!(json["repository"].get("remote").is_none(), "{json}");
    // A store that did not keep it refuses to overwrite it.
    assert!(!db
        .store
        .keep_repository_remote(read.repository.id, &identity("acme/other", 8))
        .await
        .unwrap());

    // Connected before it was kept: filled in once, never overwritten.
    let older = db.store.create_project(&new("older", None)).await.unwrap();
    assert_eq!(older.repository.remote, None);
    assert_eq!(older.repository.spec(None).remote, None);
    assert!(db
        .store
        .keep_repository_remote(older.repository.id, &identity("acme/widgets", 7))
        .await
        .unwrap());
    assert!(!db
        .store
        .keep_repository_remote(older.repository.id, &identity("acme/other", 8))
        .await
        .unwrap());
    let read = db.store.project(older.id).await.unwrap();
    assert_eq!(read.repository.remote, Some(identity("acme/widgets", 7)));
}

/// The last import batch ends the import step in its own transaction: the
/// step succeeds with the batch's checkpoint, the sync takes the stats, and
/// the analyze step is started. With a cancel asked for, nothing of it is
/// written; for a worker that lost the lease, nothing either.
#[tokio::test]
async fn the_last_import_batch_ends_the_step_and_starts_the_next() {
    let db = TestDb::new().await;
    let (store, _project, claim) = claimed(&db, "w1").await;
    let stats = Stats {
        imported: 1,
        files_seen: 1,
        ..Stats::default()
    };
    let (written, next) = store
        .write_last_import_batch(
            &claim,
            &[entry("a.rs", "fn a() {}\n", Some("rust"))],
            &[],
            json!({ "after": "a.rs", "done": 1 }),
            &stats,
        )
        .await
        .unwrap();
    assert_eq!(written, BatchWrite::Written);
    match next {
        Some(projsync_store::StepStart::Started(step)) => {
            assert_eq!(step.phase, projsync_domain::SyncPhase::Analyze);
            assert_eq!(step.status, projsync_domain::PhaseStatus::Running);
            assert_eq!(step.attempts, 1);
        }
        other => panic!("the analyze step should have started: {other:?}"),
    }
    let (status, checkpoint): (String, serde_json::Value) = sqlx::query_as(
        "SELECT status, checkpoint FROM sync_steps WHERE sync_id = $1 AND phase = 'import'",
    )
    .bind(claim.sync_id.0)
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(status, "succeeded");
    assert_eq!(checkpoint, json!({ "after": "a.rs", "done": 1 }));
    let (imported, phase): (i64, Option<String>) = sqlx::query_as(
        "SELECT (stats->>'imported')::bigint, current_phase FROM project_syncs WHERE id = $1",
    )
    .bind(claim.sync_id.0)
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!((imported, phase.as_deref()), (1, Some("analyze")));

    // Another worker took the sync over: the first one's last batch is
    // refused, and the steps are as they were.
    let taken = taken_over(&db, &claim, "w2").await;
    let err = store
        .write_last_import_batch(&claim, &[entry("b.rs", "b", None)], &[], json!({}), &stats)
        .await
        .unwrap_err();
    assert!(matches!(err, projsync_store::Error::LeaseLost(_)), "{err}");

    // A cancel asked for: not written, no step moved.
    store.request_cancel(taken.sync_id).await.unwrap();
    let (written, next) = store
        .write_last_import_batch(&taken, &[entry("c.rs", "c", None)], &[], json!({}), &stats)
        .await
        .unwrap();
    assert_eq!(
        (written, next.is_none()),
        (BatchWrite::CancelRequested, true)
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM memory_entries")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let attempts: i32 = sqlx::query_scalar(
        "SELECT attempts FROM sync_steps WHERE sync_id = $1 AND phase = 'analyze'",
    )
    .bind(claim.sync_id.0)
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(attempts, 1);
}
