//! Syncing local Git repositories through the real API, Redis and worker.

use crate::helpers::{expected_entries, spawn_app, spawn_app_with};
use futures::StreamExt;
use projsync_domain::ProgressEvent;
use projsync_test_support::GitRepo;
use serde_json::json;
use std::time::Duration;

/// A repository with every kind of file a sync must handle, over three commits.
fn fixture_repo() -> GitRepo {
    let repo = GitRepo::new();
    repo.write("README.md", "# fixture\n")
        .write("src/main.rs", "fn main() {}\n")
        .write("src/nested/deep/mod.rs", "pub mod deeper;\n")
        .write("docs/with space.md", "spaces in the path\n")
        .write("unicode/héllo wörld ✓.txt", "ünïcödé ✓\n")
        .write("empty.txt", "")
        .write("assets/logo.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
        .write("big/data.txt", "x".repeat(1024 * 1024 + 1))
        .write("latin1.txt", b"caf\xe9\n")
        .write("Cargo.lock", "# lock file\n")
        .write("tmp.txt", "short-lived\n")
        .symlink("README.md", "link");
    repo.commit("first");
    repo.write("src/main.rs", "fn main() {\n    println!(\"hi\");\n}\n")
        .write("src/lib.rs", "pub fn lib() {}\n");
    repo.commit("second");
    repo.write("scripts/run.sh", "#!/bin/sh\necho run\n")
        .set_executable("scripts/run.sh", true)
        .remove("tmp.txt");
    repo.commit("third");
    repo
}

const FIXTURE_SKIPPED: &[&str] = &[
    "assets/logo.png",
    "big/data.txt",
    "latin1.txt",
    "Cargo.lock",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_imports_the_head_tree_byte_for_byte() {
    let app = spawn_app().await;
    let repo = fixture_repo();
    let project = app.create_project("fixture", repo.path(), "main").await;

    let sync = app.sync(&project, None).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    assert_eq!(sync["outcome"], "changed");
    assert_eq!(sync["head_commit"], repo.head());
    for step in sync["steps"].as_array().unwrap() {
        // Embeddings are off in these tests: the entries are chunked and
        // the embed step ends skipped.
        let want = if step["phase"] == "embed" {
            "skipped"
        } else {
            "succeeded"
        };
        assert_eq!(step["status"], want, "{step}");
        assert_eq!(step["attempts"], 1);
    }

    let expected = expected_entries(repo.files_at("HEAD"), FIXTURE_SKIPPED);
    assert_eq!(app.active_entries(&project).await, expected);
    assert!(expected.contains_key("unicode/héllo wörld ✓.txt"));
    assert_eq!(expected["empty.txt"], "");

    let stats = &sync["stats"];
    assert_eq!(stats["files_seen"], 13, "{stats}");
    assert_eq!(stats["imported"], expected.len() as u64);
    assert_eq!(
        stats["skipped_by_reason"],
        json!({ "binary": 1, "ignored": 1, "invalid_utf8": 1, "symlink": 1, "too_large": 1 })
    );

    // The ledger agrees with the API, and every entry records its blob.
    let rows: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT path, status, blob_sha, content_hash FROM memory_entries WHERE kind = 'file' \
         ORDER BY path",
    )
    .fetch_all(&app.db.admin)
    .await
    .unwrap();
    assert_eq!(rows.len(), expected.len());
    assert!(rows.iter().all(|(_, status, sha, hash)| status == "active"
        && sha.as_deref().is_some_and(|s| s.len() == 40)
        && hash.len() == 64));
    let files: i64 = sqlx::query_scalar("SELECT count(*) FROM repository_files")
        .fetch_one(&app.db.admin)
        .await
        .unwrap();
    assert_eq!(files, 13);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_applies_only_the_changes_and_keeps_history() {
    let app = spawn_app().await;
    let repo = fixture_repo();
    let project = app.create_project("resync", repo.path(), "main").await;
    let first = app.sync(&project, None).await;
    assert_eq!(first["status"], "succeeded", "{first}");

    // Nothing changed: prepare short-circuits.
    let same = app.sync(&project, None).await;
    assert_eq!(same["status"], "succeeded");
    assert_eq!(same["outcome"], "unchanged");
    assert_eq!(
        same["stats"]["files_seen"], 13,
        "an unchanged sync reports the tree it kept"
    );
    assert_eq!(same["stats"]["unchanged"], 13);
    assert_eq!(same["stats"]["imported"], 0);
    assert_eq!(
        same["stats"]["skipped_by_reason"],
        first["stats"]["skipped_by_reason"]
    );
    assert_eq!(same["steps"][1]["status"], "skipped");

    repo.write("README.md", "# fixture, edited\n")
        .remove("src/lib.rs")
        .rename("src/nested/deep/mod.rs", "src/moved.rs")
        .write("empty.txt", "not empty any more\n");
    repo.commit("fourth");
    let second = app.sync(&project, None).await;
    assert_eq!(second["status"], "succeeded", "{second}");
    let stats = &second["stats"];
    assert_eq!(
        (
            &stats["modified"],
            &stats["deleted"],
            &stats["renamed"],
            &stats["imported"]
        ),
        (&json!(2), &json!(1), &json!(1), &json!(3)),
        "{stats}"
    );
    assert_eq!(
        app.active_entries(&project).await,
        expected_entries(repo.files_at("HEAD"), FIXTURE_SKIPPED)
    );
    let superseded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM memory_entries WHERE kind = 'file' AND status = 'superseded' \
         AND superseded_by_sync_id = $1::uuid",
    )
    .bind(second["id"].as_str().unwrap())
    .fetch_one(&app.db.admin)
    .await
    .unwrap();
    assert_eq!(
        superseded, 4,
        "README, empty.txt, lib.rs and the renamed file's old path"
    );

    // History, newest first, chained through previous_sync_id.
    let (status, history) = app.get(&format!("/projects/{project}/syncs")).await;
    assert_eq!(status, 200);
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0]["previous_sync_id"], history[1]["id"]);
    assert_eq!(history[1]["previous_sync_id"], history[2]["id"]);
    assert!(history[2]["previous_sync_id"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_events_are_versioned_numbered_and_cover_every_batch() {
    let app = spawn_app().await;
    let repo = fixture_repo();
    let project = app.create_project("progress", repo.path(), "main").await;

    let client = redis::Client::open(app.redis.url.as_str()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(format!("projsync:project:{project}"))
        .await
        .unwrap();
    let sync_id = app.enqueue(&project, None).await;
    let mut events: Vec<ProgressEvent> = Vec::new();
    let mut stream = pubsub.into_on_message();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(msg) = stream.next().await {
            let payload: String = msg.get_payload().unwrap();
            let ev: ProgressEvent = serde_json::from_str(&payload).unwrap();
            let last = ev.is_final();
            events.push(ev);
            if last {
                break;
            }
        }
    })
    .await
    .expect("the sync ends within a minute");

    assert!(events
        .iter()
        .all(|e| e.v == 1 && e.sync_id.to_string() == sync_id));
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>());
    for phase in ["prepare", "scan", "import", "finalize"] {
        let of_phase: Vec<_> = events
            .iter()
            .filter(|e| e.phase.as_str() == phase)
            .collect();
        assert_eq!(
            of_phase.first().unwrap().phase_status.as_str(),
            "running",
            "{phase}"
        );
        assert_eq!(
            of_phase.last().unwrap().phase_status.as_str(),
            "succeeded",
            "{phase}"
        );
    }
    // 10 files need content (two turn out binary or not UTF-8), 4 per
    // batch: 3 batches, one event each.
    let batches: Vec<_> = events
        .iter()
        .filter(|e| e.phase.as_str() == "import" && e.message.starts_with("batch"))
        .collect();
    assert_eq!(batches.len(), 3);
    assert_eq!(batches.last().map(|e| (e.done, e.total)), Some((10, 10)));
    let last = events.last().unwrap();
    assert_eq!(last.sync_status.as_str(), "succeeded");
    assert_eq!(last.stats.skipped, 5);

    // The ledger keeps the last event as the snapshot for late subscribers.
    let (_, sync) = app.get(&format!("/syncs/{sync_id}")).await;
    assert_eq!(sync["progress"]["seq"], last.seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let app = spawn_app().await;
    let repo = fixture_repo();
    let project = app.create_project("errors", repo.path(), "main").await;

    // An unknown branch is refused at enqueue, naming the branches there are.
    let (status, err) = app
        .post(
            &format!("/projects/{project}/syncs"),
            json!({ "branch": "nope" }),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("branch: branch `nope` does not exist")
            && msg.contains("`main`")
            && msg.contains(&format!("/projects/{project}/branches")),
        "{msg}"
    );
    // A default branch deleted after the project was created fails the
    // sync at once, naming the branches there are.
    repo.git(&["branch", "doomed"]);
    let doomed = app.create_project("doomed", repo.path(), "doomed").await;
    repo.git(&["branch", "-D", "doomed"]);
    let sync = app.sync(&doomed, None).await;
    assert_eq!(sync["status"], "failed");
    assert_eq!(sync["failed_phase"], "prepare");
    assert_eq!(sync["error_class"], "fatal");
    let msg = sync["error_message"].as_str().unwrap();
    assert!(
        msg.contains("branch `doomed` not found") && msg.contains("main"),
        "{msg}"
    );
    assert_eq!(sync["steps"][0]["status"], "failed");
    // The knowledge base is untouched and the next sync works.
    assert!(app.active_entries(&project).await.is_empty());
    assert_eq!(app.sync(&project, None).await["status"], "succeeded");

    // An empty repository can be connected; its sync says what to do.
    let empty = GitRepo::new();
    let empty_project = app.create_project("empty", empty.path(), "main").await;
    let sync = app.sync(&empty_project, None).await;
    assert_eq!(sync["status"], "failed");
    let msg = sync["error_message"].as_str().unwrap();
    assert!(msg.contains("no commits yet"), "{msg}");

    let not_a_repo = std::env::temp_dir();
    for (body, needle) in [
        (
            json!({ "name": "x1", "repository": { "provider": "local", "path": not_a_repo, "branch": "main" } }),
            "is not a repository this server may read",
        ),
        (
            json!({ "name": "x2", "repository": { "provider": "local", "path": "relative/path", "branch": "main" } }),
            "must be absolute",
        ),
        (
            json!({ "name": "x3", "repository": { "provider": "local", "path": "/no/such/dir", "branch": "main" } }),
            "is not a repository this server may read",
        ),
        (
            json!({ "name": "x4", "repository": { "provider": "local", "path": repo.path(), "branch": "main" }, "ignore_patterns": ["a["] }),
            "invalid ignore pattern",
        ),
        (json!({ "name": "x5" }), "repository"),
    ] {
        let (status, err) = app.post("/projects", body).await;
        assert_eq!(status, 422, "{err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(needle),
            "{message} should contain {needle}"
        );
    }
    let (status, err) = app
        .post(
            "/projects",
            json!({ "name": "errors", "repository": { "provider": "local", "path": repo.path(), "branch": "main" } }),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "conflict");

    let unknown = uuid::Uuid::new_v4();
    assert_eq!(app.get(&format!("/projects/{unknown}")).await.0, 404);
    assert_eq!(
        app.post(&format!("/projects/{unknown}/syncs"), json!({}))
            .await
            .0,
        404
    );
    assert_eq!(app.get(&format!("/syncs/{unknown}")).await.0, 404);
    assert_eq!(app.get("/syncs/not-a-uuid").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_active_sync_per_project_and_idempotency_keys() {
    // No worker: syncs stay queued.
    let app = spawn_app_with(false, |_| {}).await;
    let repo = fixture_repo();
    let project = app.create_project("exclusive", repo.path(), "main").await;

    let key_request = |key: &'static str| {
        app.http
            .post(format!("{}/projects/{project}/syncs", app.base))
            .header("Idempotency-Key", key)
            .json(&json!({}))
            .send()
    };
    let first = key_request("k-1").await.unwrap();
    assert_eq!(first.status().as_u16(), 202);
    let first: serde_json::Value = first.json().await.unwrap();
    assert_eq!(first["created"], true);
    assert_eq!(first["sync"]["status"], "queued");

    let again = key_request("k-1").await.unwrap();
    assert_eq!(again.status().as_u16(), 200);
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(
        (again["sync_id"].clone(), again["created"].clone()),
        (first["sync_id"].clone(), json!(false))
    );

    // Another request while one is queued gets the queued one.
    let (status, other) = app
        .post(&format!("/projects/{project}/syncs"), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(other["sync_id"], first["sync_id"]);

    let queued: i64 =
        sqlx::query_scalar("SELECT count(*) FROM project_syncs WHERE status = 'queued'")
            .fetch_one(&app.db.admin)
            .await
            .unwrap();
    assert_eq!(queued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_are_listed_with_the_default_marked() {
    let app = spawn_app_with(false, |_| {}).await;
    let repo = fixture_repo();
    repo.git(&["branch", "feature/x"]);
    let project = app.create_project("branches", repo.path(), "main").await;
    let (status, branches) = app.get(&format!("/projects/{project}/branches")).await;
    assert_eq!(status, 200);
    let mut names: Vec<(String, bool)> = branches
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["default"].as_bool().unwrap(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![("feature/x".into(), false), ("main".into(), true)]
    );
    assert!(branches[0]["head"].as_str().unwrap().len() == 40);
}

/// Two names that are not UTF-8 and differ only there (`caf\xe9.txt`,
/// `caf\xe8.txt`) stay two paths: both are skipped as `invalid_path`, and
/// the repository syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_are_not_utf8_are_kept_apart_and_skipped() {
    use std::os::unix::ffi::OsStrExt;
    let app = spawn_app().await;
    let repo = GitRepo::new();
    repo.write("ok.txt", "fine\n");
    for name in [&b"caf\xe9.txt"[..], b"caf\xe8.txt"] {
        std::fs::write(
            repo.path().join(std::ffi::OsStr::from_bytes(name)),
            "latin-1 name\n",
        )
        .unwrap();
    }
    repo.commit("odd names");
    let project = app.create_project("odd", repo.path(), "main").await;
    let sync = app.sync(&project, None).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    assert_eq!(sync["stats"]["files_seen"], 3, "{sync}");
    assert_eq!(
        sync["stats"]["skipped_by_reason"]["invalid_path"], 2,
        "{sync}"
    );
    assert_eq!(
        app.active_entries(&project)
            .await
            .keys()
            .collect::<Vec<_>>(),
        ["ok.txt"]
    );
}

/// NUL and control characters in a name, path or branch are a 422 that
/// names the field, never a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_and_control_characters_are_refused_with_the_field() {
    let app = spawn_app().await;
    let repo = GitRepo::new();
    repo.write("a.txt", "a\n");
    repo.commit("a");
    for (body, field) in [
        (
            json!({ "name": "a\u{0}b", "repository": { "provider": "local", "path": repo.path(), "branch": "main" } }),
            "name",
        ),
        (
            json!({ "name": "ok", "repository": { "provider": "local", "path": repo.path(), "branch": "ma\u{0}in" } }),
            "repository.branch",
        ),
        (
            json!({ "name": "ok", "repository": { "provider": "local", "path": repo.path(), "branch": "main\u{1b}[2J" } }),
            "repository.branch",
        ),
    ] {
        let (status, resp) = app.post("/projects", body).await;
        assert_eq!(status, 422, "{resp}");
        let msg = resp["error"]["message"].as_str().unwrap();
        assert!(msg.starts_with(field), "{field}: {msg}");
    }
    let project = app.create_project("ok", repo.path(), "main").await;
    let (status, resp) = app
        .post(
            &format!("/projects/{project}/syncs"),
            json!({ "branch": "main\u{0}" }),
        )
        .await;
    assert_eq!(status, 422, "{resp}");
    assert!(resp["error"]["message"].as_str().unwrap().contains("NUL"));
}
