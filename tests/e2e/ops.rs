//! The operations endpoints behind the dashboard: the queue's health with
//! the live workers and syncs per minute, the projects' overview, one
//! entry by path, a failed sync's advice, and retrying a selection.

use crate::helpers::{client_with_key, create_tenant_key, spawn_app};
use projsync_domain::Role;
use projsync_test_support::GitRepo;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_health_overview_entry_advice_and_bulk_retry() {
    let app = spawn_app().await;
    let repo = GitRepo::new();
    repo.write("README.md", "# hello\n")
        .write("src/lib.rs", "pub fn f() {}\n");
    repo.commit("initial");
    let project = app.create_project("ops", repo.path(), "main").await;

    // Before any sync: no latest sync, no entries.
    let (status, overview) = app.get(&format!("/projects/{project}")).await;
    assert_eq!(status, 200, "{overview}");
    assert_eq!(overview["latest_sync"], Value::Null);
    assert_eq!(overview["active_entries"], 0);

    let ok = app.sync(&project, None).await;
    assert_eq!(ok["status"], "succeeded", "{ok}");
    let ok_id = ok["id"].as_str().unwrap().to_string();

    // The projects page's facts.
    let (status, list) = app.get("/projects").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list[0]["latest_sync"]["id"], ok_id.as_str());
    assert_eq!(list[0]["latest_sync"]["status"], "succeeded");
    assert_eq!(list[0]["active_entries"], 2);
    assert_eq!(list[0]["name"], "ops", "the project's own fields stay flat");

    // One entry by path; a path with no entry is a 404; the parameter is required.
    let (status, entry) = app
        .get(&format!(
            "/projects/{project}/memory/entry?path=src%2Flib.rs"
        ))
        .await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["content"], "pub fn f() {}\n");
    let (status, body) = app
        .get(&format!("/projects/{project}/memory/entry?path=nope.txt"))
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope.txt"),
        "{body}"
    );
    let (status, _) = app.get(&format!("/projects/{project}/memory/entry")).await;
    assert_eq!(status, 422);
    let (status, body) = app
        .get(&format!("/projects/{project}/memory/entry?path=a%00b"))
        .await;
    assert_eq!(status, 422, "{body}");

    // A sync that fails: the repository is gone.
    let moved = repo.path().with_extension("moved");
    std::fs::rename(repo.path(), &moved).unwrap();
    let failed = app.sync(&project, None).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let failed_id = failed["id"].as_str().unwrap().to_string();
    let (_, detail) = app.get(&format!("/syncs/{failed_id}")).await;
    assert_eq!(detail["error_class"], "fatal", "{detail}");
    let advice = detail["advice"].as_str().unwrap();
    assert!(advice.contains("Fix the cause"), "{advice}");
    let (_, detail) = app.get(&format!("/syncs/{ok_id}")).await;
    assert_eq!(detail["advice"], Value::Null);

    // The queue: this worker is live, and this minute saw one success and one failure.
    let (status, health) = app.get("/ops/queue").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["depth"], 0, "{health}");
    assert_eq!(health["oldest_queued_age_seconds"], Value::Null);
    let workers = health["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1, "{health}");
    assert_eq!(workers[0]["version"], env!("CARGO_PKG_VERSION"));
    assert!(workers[0]["name"]
        .as_str()
        .unwrap()
        .starts_with(&app.settings.worker.name_prefix));
    let buckets = health["throughput"]["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 60);
    let total = |key: &str| {
        buckets
            .iter()
            .map(|b| b[key].as_i64().unwrap())
            .sum::<i64>()
    };
    assert_eq!((total("succeeded"), total("failed")), (1, 1), "{health}");

    // Bulk retry: each id on its own; the failures do not stop the others.
    std::fs::rename(&moved, repo.path()).unwrap();
    let (status, body) = app
        .post(
            "/syncs/retry",
            json!({ "ids": [failed_id, ok_id, "not-a-sync", uuid::Uuid::new_v4()] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    let statuses: Vec<i64> = results
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [202, 409, 404, 404], "{body}");
    assert_eq!(results[0]["sync"]["status"], "queued");
    assert_eq!(results[0]["error"], Value::Null);
    assert_eq!(results[1]["sync"], Value::Null);
    assert_eq!(results[1]["error"]["code"], "conflict");
    let retried = app.wait_for(&failed_id).await;
    assert_eq!(retried["status"], "succeeded", "{retried}");

    // Bounds and roles.
    let (status, _) = app.post("/syncs/retry", json!({ "ids": [] })).await;
    assert_eq!(status, 422);
    let ids: Vec<String> = (0..101).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let (status, _) = app.post("/syncs/retry", json!({ "ids": ids })).await;
    assert_eq!(status, 422);
    let writer = client_with_key(&crate::helpers::create_key(&app.db, Role::Write).await);
    let resp = writer
        .post(format!("{}/syncs/retry", app.base))
        .json(&json!({ "ids": [failed_id] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);

    // Another tenant sees the fleet but none of this tenant's work.
    let other = client_with_key(&create_tenant_key(&app.db, "other", Role::Admin).await);
    let health: Value = other
        .get(format!("{}/ops/queue", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["workers"].as_array().unwrap().len(), 1);
    let buckets = health["throughput"]["buckets"].as_array().unwrap();
    assert!(
        buckets
            .iter()
            .all(|b| b["succeeded"] == 0 && b["failed"] == 0),
        "{health}"
    );
    let resp = other
        .get(format!(
            "{}/projects/{project}/memory/entry?path=README.md",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}
