//! Diff-aware resyncs, atomic finalize, history and restore.

use crate::helpers::{expected_entries, spawn_app_full, CountingSources, TestApp};
use projsync_test_support::GitRepo;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

async fn counted_app(batch: usize) -> (TestApp, CountingSources) {
    let sources = CountingSources::default();
    let app = spawn_app_full(Some(Arc::new(sources.clone())), |s| {
        s.worker.import_batch_size = batch;
    })
    .await;
    (app, sources)
}

/// Blob SHAs of the commit's regular files whose content differs from every
/// blob of `before` (what a diff-aware sync may have to read).
fn new_blobs(repo: &GitRepo, before: Option<&str>, now: &str) -> BTreeSet<String> {
    let shas = |commit: &str| -> BTreeSet<String> {
        repo.git(&["ls-tree", "-r", "--full-tree", commit])
            .lines()
            .filter(|l| l.starts_with("100"))
            .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
            .collect()
    };
    let old = before.map(shas).unwrap_or_default();
    shas(now).difference(&old).cloned().collect()
}

async fn restore(app: &TestApp, project: &str, sync_id: &str) -> serde_json::Value {
    let (status, body) = app
        .post(
            &format!("/projects/{project}/memory/restore"),
            json!({ "sync_id": sync_id }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    app.wait_for(body["sync_id"].as_str().unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_history_matches_every_tree_and_every_sync_can_be_restored() {
    let (app, sources) = counted_app(3).await;
    let repo = GitRepo::new();
    let skipped = ["bin.dat"];
    type Step = fn(&GitRepo);
    let steps: Vec<(&str, Step)> = vec![
        ("initial", |r| {
            r.write("a.txt", "a1\n")
                .write("dir/b.rs", "fn b() {}\n")
                .write("dir/c.md", "# c\n")
                .write("x", "x is a file\n")
                .write("link", "a file that becomes a symlink\n")
                .write("mode.sh", "echo mode\n")
                .write("bin.dat", b"\0binary");
        }),
        ("edit, add, delete", |r| {
            r.write("a.txt", "a2\n")
                .write("d/e.txt", "e\n")
                .remove("dir/c.md");
        }),
        ("rename and mode change", |r| {
            r.rename("dir/b.rs", "src/b.rs")
                .set_executable("mode.sh", true);
        }),
        ("file becomes a directory, file becomes a symlink", |r| {
            r.remove("x")
                .write("x/inner.txt", "inside x\n")
                .remove("link")
                .symlink("a.txt", "link");
        }),
        ("revert", |r| {
            r.git(&["revert", "--no-edit", "HEAD"]);
        }),
        ("edits", |r| {
            r.write("a.txt", "a3\n")
                .write("d/e.txt", "e2\n")
                .write("new.txt", "new\n");
        }),
    ];

    let project = {
        steps[0].1(&repo);
        repo.commit(steps[0].0);
        app.create_project("replay", repo.path(), "main").await
    };
    let mut history: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    let mut previous: Option<String> = None;
    for (i, (name, step)) in steps.iter().enumerate() {
        if i > 0 {
            step(&repo);
            if *name != "revert" {
                repo.commit(name);
            }
        }
        let head = repo.head();
        let sync = app.sync(&project, None).await;
        assert_eq!(sync["status"], "succeeded", "{name}: {sync}");
        let expected = expected_entries(repo.files_at(&head), &skipped);
        assert_eq!(
            app.active_entries(&project).await,
            expected,
            "after `{name}`"
        );

        // Only blobs never seen before are read; renames, mode changes and the
        // revert read nothing.
        let reads: BTreeSet<String> = sources.take_reads().into_iter().collect();
        let allowed = new_blobs(&repo, previous.as_deref(), &head);
        assert!(
            reads.is_subset(&allowed),
            "{name}: read {reads:?}, allowed {allowed:?}"
        );
        if matches!(*name, "rename and mode change" | "revert") {
            assert!(reads.is_empty(), "{name} read {reads:?}");
        }
        previous = Some(head);
        history.push((sync["id"].as_str().unwrap().to_string(), expected));
    }

    // No version is lost or duplicated: one active version per path.
    let dup: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT path FROM memory_entries WHERE status = 'active' GROUP BY path HAVING count(*) > 1) d",
    )
    .fetch_one(&app.db.admin)
    .await
    .unwrap();
    assert_eq!(dup, 0);

    // Any file as of any sync of the history, through the API.
    for (sync_id, expected) in &history {
        for (path, content) in expected {
            let enc = path.replace('/', "%2F");
            let (status, body) = app
                .get(&format!(
                    "/projects/{project}/memory/entry?path={enc}&as_of={sync_id}"
                ))
                .await;
            assert_eq!(status, 200, "{path} as of {sync_id}: {body}");
            assert_eq!(body["content"], content.as_str());
        }
    }
    let (status, body) = app
        .get(&format!(
            "/projects/{project}/memory/entry?path=dir%2Fc.md&as_of={}",
            history[1].0
        ))
        .await;
    assert_eq!(status, 404, "deleted by then: {body}");
    let (status, body) = app
        .get(&format!(
            "/projects/{project}/memory/entry?path=a.txt&as_of=nope"
        ))
        .await;
    assert_eq!(status, 422, "{body}");

    // Restore every earlier state, out of order, then undo the last restore.
    let trees_before = *sources.trees_read.lock().unwrap();
    for i in [1, 4, 0, 2, 5, 3] {
        let (sync_id, expected) = &history[i];
        let r = restore(&app, &project, sync_id).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["kind"], "restore");
        assert_eq!(r["outcome"], "restored");
        assert_eq!(r["restore_of_sync_id"], sync_id.as_str());
        assert_eq!(
            &app.active_entries(&project).await,
            expected,
            "restore of step {i}"
        );
    }
    assert!(
        sources.take_reads().is_empty(),
        "a restore fetches no content"
    );
    assert_eq!(*sources.trees_read.lock().unwrap(), trees_before);

    // A normal sync after restores brings the head back, reading nothing new.
    let back = app.sync(&project, None).await;
    assert_eq!(back["status"], "succeeded", "{back}");
    assert_eq!(&app.active_entries(&project).await, &history[5].1);
    assert!(sources.take_reads().is_empty());

    let (_, all) = app
        .get(&format!("/projects/{project}/syncs?limit=100"))
        .await;
    let kinds: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "restore").count(), 6);
    assert_eq!(kinds.len(), 13);

    // Restoring something that is not a succeeded sync of the project is refused.
    let (status, err) = app
        .post(
            &format!("/projects/{project}/memory/restore"),
            json!({ "sync_id": uuid::Uuid::new_v4() }),
        )
        .await;
    assert_eq!(status, 422, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_mixed_state_during_an_import() {
    let (app, _) = counted_app(4).await;
    let repo = GitRepo::new();
    for i in 0..400 {
        repo.write(&format!("f/{i:03}.txt"), format!("v1 {i}\n"));
    }
    repo.commit("v1");
    let project = app.create_project("readers", repo.path(), "main").await;
    assert_eq!(app.sync(&project, None).await["status"], "succeeded");
    let v1 = expected_entries(repo.files_at("HEAD"), &[]);
    for i in 0..400 {
        repo.write(&format!("f/{i:03}.txt"), format!("v2 {i}\n"));
    }
    repo.commit("v2");
    let v2 = expected_entries(repo.files_at("HEAD"), &[]);

    let sync_id = app.enqueue(&project, None).await;
    let pool = app.db.admin.clone();
    let (mut polls, mut during_import) = (0, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let phase: (String, Option<String>) =
            sqlx::query_as("SELECT status, current_phase FROM project_syncs WHERE id = $1::uuid")
                .bind(&sync_id)
                .fetch_one(&pool)
                .await
                .unwrap();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT path, content FROM active_memory_entries WHERE project_id = $1::uuid",
        )
        .bind(&project)
        .fetch_all(&pool)
        .await
        .unwrap();
        let seen: BTreeMap<String, String> = rows.into_iter().collect();
        assert!(seen == v1 || seen == v2, "a reader saw a mixed state");
        polls += 1;
        if phase.1.as_deref() == Some("import") {
            during_import += 1;
            assert_eq!(seen, v1, "pending versions are invisible");
        }
        if phase.0 == "succeeded" {
            assert_eq!(seen, v2);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "sync did not finish");
    }
    assert!(
        during_import > 0,
        "polled {polls} times, never during import"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_branches_and_earlier_commits_are_diff_aware() {
    let (app, sources) = counted_app(10).await;
    let repo = GitRepo::new();
    for i in 0..20 {
        repo.write(&format!("src/{i}.rs"), format!("// {i}\n"));
    }
    let first = repo.commit("main");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("src/3.rs", "// three, on feature\n")
        .write("feature.md", "new\n");
    repo.commit("feature");
    repo.git(&["checkout", "-q", "main"]);
    let project = app.create_project("branches", repo.path(), "main").await;

    assert_eq!(app.sync(&project, None).await["status"], "succeeded");
    assert_eq!(sources.take_reads().len(), 20);

    let feature = app.sync(&project, Some("feature")).await;
    assert_eq!(feature["status"], "succeeded", "{feature}");
    assert_eq!(feature["stats"]["modified"], 1);
    assert_eq!(feature["stats"]["added"], 1);
    assert_eq!(feature["stats"]["unchanged"], 19);
    assert_eq!(
        sources.take_reads().len(),
        2,
        "only the changed and the new file"
    );
    assert_eq!(
        app.active_entries(&project).await,
        expected_entries(repo.files_at("feature"), &[])
    );

    // Back to main: everything it needs is stored already.
    let back = app.sync(&project, Some("main")).await;
    assert_eq!(back["status"], "succeeded");
    assert!(sources.take_reads().is_empty());
    assert_eq!(
        app.active_entries(&project).await,
        expected_entries(repo.files_at(&first), &[])
    );
}
