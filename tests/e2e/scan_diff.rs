//! Scan in O(changes): a resync diffs the last synced commit against the
//! head and plans only the changed paths; a previous state that cannot be
//! trusted falls back to the full walk, and says so in the stats.

use crate::helpers::{expected_entries, spawn_app_full, CountingSources, TestApp};
use projsync_test_support::GitRepo;
use serde_json::json;
use std::sync::Arc;

async fn counted_app(
    tweak: impl FnOnce(&mut projsync::config::Settings),
) -> (TestApp, CountingSources) {
    let sources = CountingSources::default();
    let app = spawn_app_full(Some(Arc::new(sources.clone())), |s| {
        s.worker.import_batch_size = 4;
        tweak(s);
    })
    .await;
    (app, sources)
}

async fn plan_rows(app: &TestApp, sync: &serde_json::Value) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sync_changes WHERE sync_id = $1::uuid")
        .bind(sync["id"].as_str().unwrap())
        .fetch_one(&app.db.admin)
        .await
        .unwrap()
}

fn seed(repo: &GitRepo) {
    for i in 0..30 {
        repo.write(&format!("src/m{}/f{i}.rs", i % 3), format!("// file {i}\n"));
    }
    repo.write("docs/readme.md", "# docs\n")
        .write("bin.dat", b"\0binary")
        .write("old/name.txt", "moving\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_plans_only_what_changed_and_reuses_renamed_content() {
    let (app, sources) = counted_app(|_| {}).await;
    let repo = GitRepo::new();
    seed(&repo);
    repo.commit("first");
    let project = app.create_project("diff", repo.path(), "main").await;
    let first = app.sync(&project, None).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["stats"]["scan_mode"], "full");
    sources.take_reads();

    repo.write("src/m0/f0.rs", "// edited\n")
        .write("new.txt", "new\n")
        .remove("docs/readme.md")
        .rename("old/name.txt", "new/name.txt")
        .set_executable("src/m1/f1.rs", true);
    let head = repo.commit("second");
    let second = app.sync(&project, None).await;
    assert_eq!(second["status"], "succeeded", "{second}");
    let stats = &second["stats"];
    assert_eq!(stats["scan_mode"], "diff", "{second}");
    assert_eq!(
        (
            &stats["modified"],
            &stats["added"],
            &stats["deleted"],
            &stats["renamed"]
        ),
        (&json!(1), &json!(1), &json!(1), &json!(1))
    );
    // The same counts of the whole tree as a full walk would give.
    assert_eq!(stats["files_seen"], first["stats"]["files_seen"]);
    assert_eq!(stats["skipped"], 1);
    assert_eq!(stats["skipped_by_reason"], json!({ "binary": 1 }));
    assert_eq!(stats["unchanged"], 30);
    // Plan rows: the 5 changed paths (the mode change is one), nothing else.
    assert_eq!(plan_rows(&app, &second).await, 5);
    // Only the edited and the new file are read; the rename reuses content.
    assert_eq!(sources.take_reads().len(), 2);
    assert_eq!(
        app.active_entries(&project).await,
        expected_entries(repo.files_at(&head), &["bin.dat"])
    );
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM repository_files f JOIN repositories r ON r.id = f.repository_id \
         JOIN projects p ON p.id = r.project_id WHERE p.id = $1::uuid",
    )
    .bind(&project)
    .fetch_one(&app.db.admin)
    .await
    .unwrap();
    assert_eq!(stored as usize, repo.files_at(&head).len());

    // Restoring the first state works through the diff's plan.
    let (status, body) = app
        .post(
            &format!("/projects/{project}/memory/restore"),
            json!({ "sync_id": first["id"] }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let restored = app.wait_for(body["sync_id"].as_str().unwrap()).await;
    assert_eq!(restored["status"], "succeeded", "{restored}");
    let first_commit = repo.git(&["rev-parse", "HEAD~1"]);
    assert_eq!(
        app.active_entries(&project).await,
        expected_entries(repo.files_at(first_commit.trim()), &["bin.dat"])
    );
    // After a restore, the next sync walks the whole tree.
    let back = app.sync(&project, None).await;
    assert_eq!(back["status"], "succeeded", "{back}");
    assert_eq!(back["stats"]["scan_mode"], "full");
    assert_eq!(
        app.active_entries(&project).await,
        expected_entries(repo.files_at(&head), &["bin.dat"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_that_cannot_be_trusted_falls_back_to_the_full_walk() {
    let (app, _sources) = counted_app(|_| {}).await;
    let repo = GitRepo::new();
    seed(&repo);
    repo.commit("first");
    let project = app.create_project("fallback", repo.path(), "main").await;
    assert_eq!(app.sync(&project, None).await["status"], "succeeded");

    // A force-push: the last synced commit is gone from the repository.
    repo.git(&["checkout", "-q", "--orphan", "rewritten"]);
    repo.write("src/m0/f0.rs", "// rewritten\n");
    repo.commit("rewritten history");
    repo.git(&["branch", "-q", "-D", "main"]);
    repo.git(&["branch", "-q", "-m", "main"]);
    repo.git(&["reflog", "expire", "--expire=now", "--all"]);
    repo.git(&["gc", "-q", "--prune=now"]);
    let forced = app.sync(&project, None).await;
    assert_eq!(forced["status"], "succeeded", "{forced}");
    assert_eq!(forced["stats"]["scan_mode"], "full", "{forced}");
    assert_eq!(
        app.active_entries(&project).await,
        expected_entries(repo.files_at(&repo.head()), &["bin.dat"])
    );

    // A diff is trusted again after that.
    repo.write("a.txt", "a\n");
    repo.commit("a");
    let next = app.sync(&project, None).await;
    assert_eq!(next["stats"]["scan_mode"], "diff", "{next}");

    // Stored files that do not match the last synced commit.
    sqlx::query(
        "DELETE FROM repository_files WHERE path = 'src/m1/f1.rs' AND repository_id = \
         (SELECT id FROM repositories WHERE project_id = $1::uuid)",
    )
    .bind(&project)
    .execute(&app.db.admin)
    .await
    .unwrap();
    repo.write("b.txt", "b\n");
    repo.commit("b");
    let mismatch = app.sync(&project, None).await;
    assert_eq!(mismatch["status"], "succeeded", "{mismatch}");
    assert_eq!(mismatch["stats"]["scan_mode"], "full", "{mismatch}");
    assert_eq!(
        app.active_entries(&project).await,
        expected_entries(repo.files_at(&repo.head()), &["bin.dat"])
    );

    // Another filter: the stored verdicts are not this filter's.
    sqlx::query("UPDATE projects SET ignore_patterns = '{\"docs/\"}' WHERE id = $1::uuid")
        .bind(&project)
        .execute(&app.db.admin)
        .await
        .unwrap();
    repo.write("c.txt", "c\n");
    repo.commit("c");
    let refiltered = app.sync(&project, None).await;
    assert_eq!(refiltered["stats"]["scan_mode"], "full", "{refiltered}");
    assert_eq!(
        app.active_entries(&project).await,
        expected_entries(repo.files_at(&repo.head()), &["bin.dat", "docs/readme.md"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_plans_are_pruned_except_what_the_kept_syncs_build_on() {
    let (app, _sources) = counted_app(|s| s.sync.plan_retention_hours = 0).await;
    let repo = GitRepo::new();
    seed(&repo);
    repo.commit("first");
    let project = app.create_project("prune", repo.path(), "main").await;
    let s1 = app.sync(&project, None).await;
    repo.write("a.txt", "a\n");
    repo.commit("a");
    let s2 = app.sync(&project, None).await;
    assert_eq!(s2["stats"]["scan_mode"], "diff");
    // Another filter: a full walk, which the later diff syncs build on.
    sqlx::query("UPDATE projects SET ignore_patterns = '{\"docs/\"}' WHERE id = $1::uuid")
        .bind(&project)
        .execute(&app.db.admin)
        .await
        .unwrap();
    repo.write("b.txt", "b\n");
    repo.commit("b");
    let s3 = app.sync(&project, None).await;
    assert_eq!(s3["stats"]["scan_mode"], "full");
    repo.write("c.txt", "c\n");
    repo.commit("c");
    let s4 = app.sync(&project, None).await;
    assert_eq!(s4["stats"]["scan_mode"], "diff");

    assert_eq!(plan_rows(&app, &s1).await, 0, "pruned");
    assert_eq!(plan_rows(&app, &s2).await, 0, "pruned");
    assert!(plan_rows(&app, &s3).await > 30, "the head's base is kept");
    assert_eq!(plan_rows(&app, &s4).await, 1, "the head is kept");

    // A kept state can be restored, a pruned one cannot.
    let (status, body) = app
        .post(
            &format!("/projects/{project}/memory/restore"),
            json!({ "sync_id": s3["id"] }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let ok = app.wait_for(body["sync_id"].as_str().unwrap()).await;
    assert_eq!(ok["status"], "succeeded", "{ok}");
    let (status, body) = app
        .post(
            &format!("/projects/{project}/memory/restore"),
            json!({ "sync_id": s1["id"] }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let refused = app.wait_for(body["sync_id"].as_str().unwrap()).await;
    assert_eq!(refused["status"], "failed", "{refused}");
}
