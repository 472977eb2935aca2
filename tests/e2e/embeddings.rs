//! Embeddings and search end to end: the embed phase against the fake
//! OpenAI-compatible server (mechanics, faults, cache accounting), search in
//! every mode with its filters and bad input, backfills, and the real local
//! model answering a question phrased in words.

use crate::helpers::test_sources;
use crate::helpers::{spawn_app_full, TestApp};
use projsync_test_support::{FakeOpenAi, GitRepo, OpenAiFault};
use serde_json::{json, Value};
use std::sync::Arc;

const MODEL: &str = projsync_test_support::fake_openai::DEFAULT_MODEL;

/// The app with a worker embedding through `fake`.
async fn app_with_fake(fake: &FakeOpenAi) -> TestApp {
    let base = fake.base_url();
    spawn_app_full(Some(Arc::new(test_sources())), move |s| {
        s.embeddings.enabled = true;
        s.embeddings.provider = "openai".into();
        s.embeddings.base_url = base;
        s.embeddings.model = MODEL.into();
        s.embeddings.dimensions = 384;
        s.embeddings.batch_size = 8;
        // Small chunks, so that one file makes several.
        s.embeddings.max_chunk_tokens = 64;
        s.embeddings.max_tokens = 512;
        s.worker.max_attempts = 2;
        s.worker.retry_min_delay_ms = 50;
    })
    .await
}

fn stats(sync: &Value) -> (u64, u64, u64) {
    let s = &sync["stats"];
    (
        s["chunks"].as_u64().unwrap(),
        s["embedded"].as_u64().unwrap(),
        s["embedding_cache_hits"].as_u64().unwrap(),
    )
}

fn code_repo() -> GitRepo {
    let repo = GitRepo::new();
    repo.write(
        "src/retry.rs",
        "/// Wait longer after each failed attempt, with jitter.\n\
         pub fn exponentialBackoff(attempt: u32) -> u64 {\n    100 * 2u64.pow(attempt)\n}\n",
    )
    .write(
        "src/http_server.rs",
        "pub fn parse_http_request(raw: &str) -> Option<Request> {\n    raw.lines().next().map(Request::new)\n}\n",
    )
    .write("docs/guide.md", "# Guide\n\nHow to deploy the service on a cluster.\n")
    .write("empty.txt", "   \n\n")
    .write(
        "src/big.rs",
        (0..400)
            .map(|i| format!("fn item_{i}() -> u32 {{ {i} }}\n"))
            .collect::<String>(),
    );
    repo.commit("code");
    repo
}

/// The paths of a search response's results, best first.
fn result_paths(body: &Value) -> Vec<&str> {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect()
}

async fn status(app: &TestApp, project: &str) -> Value {
    let (code, body) = app.get(&format!("/projects/{project}/embeddings")).await;
    assert_eq!(code, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_chunk_is_embedded_once_and_renames_restores_and_copies_cost_no_call() {
    let fake = FakeOpenAi::start().await;
    let app = app_with_fake(&fake).await;
    let repo = code_repo();
    // Files only: the counts below are of file entries' chunks.
    let project = app
        .create_project_with(
            "emb",
            repo.path(),
            "main",
            json!({ "analysis": { "enabled": false } }),
        )
        .await;
    let first = app.sync(&project, None).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let (chunks, embedded, hits) = stats(&first);
    assert!(chunks > 4, "big.rs is cut into several chunks: {first}");
    // Each distinct chunk content went to the model once; duplicates are hits.
    assert_eq!(embedded + hits, chunks);
    assert_eq!(fake.inputs_embedded(), embedded);
    assert!(
        fake.batch_sizes().iter().all(|b| *b <= 8),
        "{:?}",
        fake.batch_sizes()
    );
    let st = status(&app, &project).await;
    assert_eq!(st["model"], MODEL);
    assert_eq!(st["dimensions"], 384);
    assert_eq!(st["entries"], 5);
    assert_eq!(st["chunks"].as_u64(), Some(chunks));
    assert_eq!(st["missing"], 0);
    // The whitespace-only file has an entry but no chunk.
    let empty_chunks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM memory_chunks c JOIN memory_entries m ON m.id = c.entry_id \
         WHERE m.path = 'empty.txt'",
    )
    .fetch_one(&app.db.admin)
    .await
    .unwrap();
    assert_eq!(empty_chunks, 0);
    // Every chunk fits the model and keeps its line range.
    let bad: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM memory_chunks WHERE token_count > 64 OR end_line < start_line",
    )
    .fetch_one(&app.db.admin)
    .await
    .unwrap();
    assert_eq!(bad, 0);

    // A rename: new versions, the same chunks, no model call.
    fake.reset_counts();
    repo.rename("src/retry.rs", "src/backoff.rs");
    repo.commit("rename");
    let renamed = app.sync(&project, None).await;
    assert_eq!(renamed["status"], "succeeded", "{renamed}");
    assert_eq!(renamed["stats"]["renamed"], 1);
    let (c, e, h) = stats(&renamed);
    assert_eq!((e, h), (0, c), "{renamed}");
    assert!(c >= 1);
    assert_eq!(fake.requests(), 0);

    // A restore to the first sync: no model call.
    let (code, body) = app
        .post(
            &format!("/projects/{project}/memory/restore"),
            json!({ "sync_id": first["id"] }),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    let restored = app.wait_for(body["sync_id"].as_str().unwrap()).await;
    assert_eq!(restored["status"], "succeeded", "{restored}");
    assert_eq!(stats(&restored).1, 0);
    assert_eq!(fake.requests(), 0);

    // The same files in another project: no model call.
    let other = app
        .create_project_with(
            "emb-copy",
            repo.path(),
            "main",
            json!({ "analysis": { "enabled": false } }),
        )
        .await;
    let copy = app.sync(&other, None).await;
    assert_eq!(copy["status"], "succeeded", "{copy}");
    assert_eq!(stats(&copy).1, 0, "{copy}");
    assert_eq!(fake.requests(), 0);

    // An edit: only the changed chunk goes to the model.
    repo.write(
        "src/backoff.rs",
        "/// Wait longer after each failed attempt.\npub fn backoff() -> u64 { 7 }\n",
    );
    repo.commit("edit");
    let edited = app.sync(&project, None).await;
    let (_, e, _) = stats(&edited);
    assert_eq!(e, 1, "{edited}");
    assert_eq!(fake.inputs_embedded(), 1);
    // The superseded version keeps its chunks.
    let superseded_chunks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM memory_chunks c JOIN memory_entries m ON m.id = c.entry_id \
         WHERE m.status = 'superseded' AND m.path = 'src/backoff.rs'",
    )
    .fetch_one(&app.db.admin)
    .await
    .unwrap();
    assert!(superseded_chunks >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_faults_are_retried_or_fail_the_sync_with_their_message() {
    let fake = FakeOpenAi::builder().with_api_key("sk-good").start().await;
    std::env::set_var("PROJSYNC_TEST_FAKE_OPENAI_KEY", "sk-good");
    let base = fake.base_url();
    let app = spawn_app_full(Some(Arc::new(test_sources())), move |s| {
        s.embeddings.enabled = true;
        s.embeddings.provider = "openai".into();
        s.embeddings.base_url = base;
        s.embeddings.model = MODEL.into();
        s.embeddings.credentials_ref = "env:PROJSYNC_TEST_FAKE_OPENAI_KEY".into();
        s.worker.max_attempts = 2;
        s.worker.retry_min_delay_ms = 50;
    })
    .await;
    let repo = code_repo();
    let project = app.create_project("faults", repo.path(), "main").await;

    // 5xx and a short 429 are retried within the call.
    fake.inject(OpenAiFault::ServerError { status: 502 });
    fake.inject(OpenAiFault::RateLimited {
        retry_after_secs: 1,
    });
    let ok = app.sync(&project, None).await;
    assert_eq!(ok["status"], "succeeded", "{ok}");
    assert_eq!(fake.pending_faults(), 0);

    // Wrong dimensions: fatal, with what to change; nothing becomes active.
    repo.write("src/new.rs", "pub fn brand_new() {}\n");
    repo.commit("new");
    fake.set_fault_every_request(Some(OpenAiFault::WrongDimensions { dimensions: 12 }));
    let failed = app.sync(&project, None).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["failed_phase"], "embed");
    assert_eq!(failed["error_class"], "fatal");
    let msg = failed["error_message"].as_str().unwrap();
    assert!(msg.contains("dimensions"), "{msg}");
    assert!(!app
        .active_entries(&project)
        .await
        .contains_key("src/new.rs"));

    // A bad key: fatal, the message says what to check and never shows a key.
    fake.set_fault_every_request(None);
    let (code, body) = app
        .post(
            &format!("/syncs/{}/discard", failed["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    std::env::set_var("PROJSYNC_TEST_FAKE_OPENAI_KEY", "sk-wrong");
    // The worker read the key at start: a new app reads the wrong one.
    let base = fake.base_url();
    let db_url = app.db.url.clone();
    let bad = spawn_app_full(Some(Arc::new(test_sources())), move |s| {
        s.embeddings.enabled = true;
        s.embeddings.provider = "openai".into();
        s.embeddings.base_url = base;
        s.embeddings.model = MODEL.into();
        s.embeddings.credentials_ref = "env:PROJSYNC_TEST_FAKE_OPENAI_KEY".into();
        let _ = db_url;
    })
    .await;
    let p2 = bad.create_project("badkey", repo.path(), "main").await;
    let failed = bad.sync(&p2, None).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error_class"], "fatal");
    let msg = failed["error_message"].as_str().unwrap();
    assert!(msg.to_lowercase().contains("key"), "{msg}");
    assert!(!msg.contains("sk-wrong"), "{msg}");
    assert!(bad.active_entries(&p2).await.is_empty());
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM memory_entries WHERE status = 'active'")
            .fetch_one(&bad.db.admin)
            .await
            .unwrap();
    assert_eq!(pending, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_modes_filters_as_of_and_bad_input() {
    let fake = FakeOpenAi::start().await;
    let app = app_with_fake(&fake).await;
    let repo = code_repo();
    // Files only: the ranks below are of file entries.
    let project = app
        .create_project_with(
            "search",
            repo.path(),
            "main",
            json!({ "analysis": { "enabled": false } }),
        )
        .await;
    let first = app.sync(&project, None).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let search = |body: Value| {
        let app = &app;
        let project = project.clone();
        async move { app.post(&format!("/projects/{project}/search"), body).await }
    };

    // Keyword search splits identifiers: `request` finds parse_http_request,
    // `backoff` finds exponentialBackoff.
    for (q, path) in [
        ("request", "src/http_server.rs"),
        ("backoff", "src/retry.rs"),
        ("exponential backoff", "src/retry.rs"),
    ] {
        let (code, body) = search(json!({ "query": q, "mode": "keyword" })).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["results"][0]["path"], path, "{q}: {body}");
    }
    // Hybrid (the default) and semantic answer with the model and results.
    let (code, body) = search(json!({ "query": "parse http request" })).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["mode"], "hybrid");
    assert!(body.get("semantic").is_none(), "{body}");
    assert_eq!(body["results"][0]["path"], "src/http_server.rs", "{body}");
    let r = &body["results"][0];
    for field in [
        "path",
        "kind",
        "start_line",
        "end_line",
        "score",
        "content",
        "entry_id",
        "sync_id",
    ] {
        assert!(!r[field].is_null(), "{field} in {r}");
    }
    let (code, body) = search(json!({ "query": "item", "mode": "semantic", "k": 50 })).await;
    assert_eq!(code, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert!(!results.is_empty());
    // No two results overlap in lines of the same file.
    for (i, a) in results.iter().enumerate() {
        for b in &results[i + 1..] {
            if a["path"] == b["path"] {
                let (as_, ae) = (
                    a["start_line"].as_i64().unwrap(),
                    a["end_line"].as_i64().unwrap(),
                );
                let (bs, be) = (
                    b["start_line"].as_i64().unwrap(),
                    b["end_line"].as_i64().unwrap(),
                );
                assert!(ae < bs || be < as_, "{a} overlaps {b}");
            }
        }
    }
    // Scores are best first.
    let scores: Vec<f64> = results
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // k is capped.
    let (_, body) = search(json!({ "query": "item", "mode": "keyword", "k": 100000 })).await;
    assert_eq!(body["k"], 100);
    // Filters.
    let (_, body) = search(json!({ "query": "guide deploy", "path_prefix": "src/" })).await;
    assert!(
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["path"].as_str().unwrap().starts_with("src/")),
        "{body}"
    );
    let (_, body) =
        search(json!({ "query": "deploy", "language": "markdown", "mode": "keyword" })).await;
    assert_eq!(body["results"][0]["path"], "docs/guide.md", "{body}");

    // as_of reads the knowledge base as it was after a sync.
    repo.remove("docs/guide.md");
    repo.write("src/deploy.rs", "pub fn deploy_to_cluster() {}\n");
    repo.commit("move docs");
    let second = app.sync(&project, None).await;
    assert_eq!(second["status"], "succeeded", "{second}");
    let (_, now) = search(json!({ "query": "deploy cluster", "mode": "keyword" })).await;
    let paths = result_paths(&now);
    assert!(
        paths.contains(&"src/deploy.rs") && !paths.contains(&"docs/guide.md"),
        "{paths:?}"
    );
    for mode in ["keyword", "semantic", "hybrid"] {
        let (code, then) =
            search(json!({ "query": "deploy cluster", "mode": mode, "as_of": first["id"] })).await;
        assert_eq!(code, 200, "{then}");
        let paths = result_paths(&then);
        assert!(
            paths.contains(&"docs/guide.md") && !paths.contains(&"src/deploy.rs"),
            "{mode}: {paths:?}"
        );
    }

    // Bad input: a clear 422, never a 500.
    for (body, needle) in [
        (json!({ "query": "   " }), "empty"),
        (json!({ "query": "a\u{0}b" }), "NUL"),
        (json!({ "query": "x", "mode": "fuzzy" }), "mode"),
        (
            json!({ "query": "x", "as_of": uuid::Uuid::new_v4() }),
            "as_of",
        ),
        (json!({ "query": "x", "unknown": 1 }), "unknown"),
        (json!({ "query": "x".repeat(20_000) }), "bytes"),
    ] {
        let (code, resp) = search(body).await;
        assert_eq!(code, 422, "{resp}");
        let msg = resp["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    // Only symbols: no keyword terms, still a 200.
    let (code, body) = search(json!({ "query": "!!!", "mode": "keyword" })).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["results"], json!([]));
    // A query longer than the model's limit is cut, and the response says so.
    let long: String = (0..1500).map(|i| format!("word{i} ")).collect();
    let (code, body) = search(json!({ "query": long, "mode": "semantic" })).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["query_truncated"], true);
    let (code, _) = app
        .post(
            &format!("/projects/{}/search", uuid::Uuid::new_v4()),
            json!({ "query": "x" }),
        )
        .await;
    assert_eq!(code, 404);

    // The semantic query walks the model's HNSW index.
    let plan = app
        .db
        .store
        .explain_semantic(
            project.parse().unwrap(),
            MODEL,
            384,
            &vec![0.05; 384],
            &Default::default(),
            10,
            true,
        )
        .await
        .unwrap();
    assert!(plan.contains("Index Scan using embeddings_hnsw_"), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_vectors_come_back_with_one_backfill_and_projects_can_turn_embeddings_off() {
    let fake = FakeOpenAi::start().await;
    let app = app_with_fake(&fake).await;
    let repo = code_repo();
    // Files only: the ranks below are of file entries.
    let project = app
        .create_project_with(
            "backfill",
            repo.path(),
            "main",
            json!({ "analysis": { "enabled": false } }),
        )
        .await;
    let synced = app.sync(&project, None).await;
    let (chunks, _, _) = stats(&synced);

    // Vectors lost: search says so and answers by keyword.
    sqlx::query("DELETE FROM embeddings WHERE content_hash IN (SELECT content_hash FROM embeddings ORDER BY content_hash LIMIT 3)")
        .execute(&app.db.admin)
        .await
        .unwrap();
    let st = status(&app, &project).await;
    let missing = st["missing"].as_u64().unwrap();
    assert!(missing >= 3, "{st}");
    tokio::time::sleep(std::time::Duration::from_secs(11)).await; // readiness cache
    let (code, body) = app
        .post(
            &format!("/projects/{project}/search"),
            json!({ "query": "parse request", "mode": "semantic" }),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["semantic"],
        format!("unavailable: {missing} chunks missing"),
        "{body}"
    );
    assert_eq!(body["results"][0]["path"], "src/http_server.rs", "{body}");

    // One backfill brings them back, sending only what is missing.
    fake.reset_counts();
    let (code, body) = app
        .post(
            &format!("/projects/{project}/embeddings/backfill"),
            json!({}),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    let job = body["job_id"].as_str().unwrap().to_string();
    let done = app.wait_for(&job).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["kind"], "backfill");
    let (c, e, h) = stats(&done);
    assert_eq!(c, chunks);
    assert_eq!(e, fake.inputs_embedded());
    assert!(e >= 3 && e <= missing, "{done}");
    assert_eq!(e + h, c);
    assert_eq!(status(&app, &project).await["missing"], 0);
    // A backfill changes no entry and is not part of the history chain.
    assert!(done["previous_sync_id"].is_null());
    // Again: everything cached, no model call.
    fake.reset_counts();
    let (_, body) = app
        .post(
            &format!("/projects/{project}/embeddings/backfill"),
            json!({ "prune": true }),
        )
        .await;
    let again = app.wait_for(body["job_id"].as_str().unwrap()).await;
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(stats(&again).1, 0);
    assert_eq!(fake.requests(), 0);
    let (code, _) = app
        .post(
            &format!("/projects/{project}/embeddings/backfill"),
            json!({ "prune": "yes" }),
        )
        .await;
    assert_eq!(code, 422);

    // A project with embeddings off: chunked (keyword search works), the
    // embed step skipped, no model call.
    let (code, body) = app
        .post(
            "/projects",
            json!({ "name": "no-vectors", "embeddings": { "enabled": false },
                    "analysis": { "enabled": false },
                    "repository": { "provider": "local", "path": repo.path(), "branch": "main" } }),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let off = body["id"].as_str().unwrap().to_string();
    assert_eq!(body["embeddings_enabled"], false);
    let sync = app.sync(&off, None).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    let steps = sync["steps"].as_array().unwrap();
    let embed = steps.iter().find(|s| s["phase"] == "embed").unwrap();
    assert_eq!(embed["status"], "skipped", "{sync}");
    assert_eq!(stats(&sync).1, 0);
    assert_eq!(fake.requests(), 0);
    let (_, body) = app
        .post(
            &format!("/projects/{off}/search"),
            json!({ "query": "parse request" }),
        )
        .await;
    assert_eq!(
        body["semantic"], "unavailable: embeddings are off for this project",
        "{body}"
    );
    assert_eq!(body["results"][0]["path"], "src/http_server.rs", "{body}");
    assert_eq!(status(&app, &off).await["enabled"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_model_finds_the_right_file_for_a_question_in_words() {
    let app = spawn_app_full(Some(Arc::new(test_sources())), |s| {
        s.embeddings.enabled = true;
    })
    .await;
    let repo = GitRepo::new();
    repo.write(
        "src/retry.rs",
        "pub fn next_delay(attempt: u32) -> Duration {\n    let base = Duration::from_millis(100);\n    base * 2u32.pow(attempt.min(10))\n}\n",
    )
    .write(
        "src/invoice.rs",
        "pub fn total_with_tax(lines: &[Line], rate: f64) -> f64 {\n    lines.iter().map(|l| l.price * l.qty as f64).sum::<f64>() * (1.0 + rate)\n}\n",
    )
    .write(
        "src/avatar.rs",
        "pub fn resize_avatar(img: &Image) -> Image {\n    img.thumbnail(128, 128)\n}\n",
    )
    .write(
        "src/login.rs",
        "pub fn verify_password(hash: &str, password: &str) -> bool {\n    argon2::verify(hash, password)\n}\n",
    );
    repo.commit("app");
    let project = app.create_project("local", repo.path(), "main").await;
    let sync = app.sync(&project, None).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    for (question, path) in [
        ("how long do we wait before trying again", "src/retry.rs"),
        (
            "how much does the customer pay including taxes",
            "src/invoice.rs",
        ),
        (
            "check that the user typed the right secret to sign in",
            "src/login.rs",
        ),
        ("make the profile picture smaller", "src/avatar.rs"),
    ] {
        let (code, body) = app
            .post(
                &format!("/projects/{project}/search"),
                json!({ "query": question, "mode": "semantic", "k": 1 }),
            )
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["model"], "all-MiniLM-L6-v2");
        // The file, or one of its symbols (`path#name`).
        let found = body["results"][0]["path"].as_str().unwrap_or_default();
        assert!(
            found == path || found.starts_with(&format!("{path}#")),
            "{question}: {body}"
        );
    }
}
