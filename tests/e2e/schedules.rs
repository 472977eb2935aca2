//! Schedules: set through the API and the CLI, fired by the scheduler of
//! two real `projsync worker` processes over about a minute of fast ticks,
//! with no double fire; scheduled syncs are ordinary syncs that succeed.

use crate::cli::{projsync, run};
use crate::helpers::{client_with_key, create_key, spawn_app_with};
use chrono::{DateTime, Utc};
use projsync_domain::Role;
use projsync_test_support::{GitRepo, TestDb, TestRedis};
use serde_json::{json, Value};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_sets_shows_and_clears_a_schedule() {
    let app = spawn_app_with(false, |_| {}).await;
    let repo = GitRepo::new();
    repo.write("a.txt", "a\n");
    repo.commit("a");
    let id = app
        .create_project_with(
            "scheduled",
            repo.path(),
            "main",
            json!({ "schedule": "*/30 * * * *" }),
        )
        .await;
    let (status, p) = app.get(&format!("/projects/{id}")).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["schedule"], "*/30 * * * *");
    let next: DateTime<Utc> = p["next_scheduled_at"].as_str().unwrap().parse().unwrap();
    assert!(next > Utc::now() && next <= Utc::now() + chrono::TimeDelta::minutes(30));

    let patch = |client: reqwest::Client, body: Value| {
        let url = format!("{}/projects/{id}", app.base);
        async move {
            let resp = client.patch(url).json(&body).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let write = client_with_key(&create_key(&app.db, Role::Write).await);
    let (status, p) = patch(write.clone(), json!({ "schedule": "every 15m" })).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["schedule"], "every 15m");
    let next: DateTime<Utc> = p["next_scheduled_at"].as_str().unwrap().parse().unwrap();
    assert!(next > Utc::now() + chrono::TimeDelta::minutes(14), "{p}");
    assert!(
        p.get("active_entries").is_some(),
        "the project's overview: {p}"
    );

    // A schedule that does not parse says what is accepted.
    for bad in ["every 5s", "every 15 minutes", "61 * * * *", "sometimes"] {
        let (status, body) = patch(write.clone(), json!({ "schedule": bad })).await;
        assert_eq!(status, 422, "{bad}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("every <n><s|m|h|d>") && message.contains("cron"),
            "{message}"
        );
    }
    let (status, body) = app
        .post(
            "/projects",
            json!({ "name": "bad", "schedule": "every 1x",
                    "repository": { "provider": "local", "path": repo.path(), "branch": "main" } }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    // Unknown fields are refused; an empty body changes nothing.
    let (status, _) = patch(write.clone(), json!({ "schedules": "every 1h" })).await;
    assert_eq!(status, 422);
    let (status, p) = patch(write.clone(), json!({})).await;
    assert_eq!((status, p["schedule"].as_str()), (200, Some("every 15m")));
    // Read keys may not change it.
    let read = client_with_key(&create_key(&app.db, Role::Read).await);
    let (status, _) = patch(read, json!({ "schedule": null })).await;
    assert_eq!(status, 403);

    let (status, p) = patch(write, json!({ "schedule": null })).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["schedule"], Value::Null);
    assert_eq!(p["next_scheduled_at"], Value::Null);
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'project.schedule'")
            .fetch_one(&app.db.admin)
            .await
            .unwrap();
    assert_eq!(audited, 2);
}

fn worker(db: &TestDb, redis: &TestRedis) -> Child {
    projsync(db, redis)
        .arg("worker")
        .env("PROJSYNC__SCHEDULER__TICK_MS", "200")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Read a child's stderr to its end on a thread (so it never blocks on a
/// full pipe); joined for the log once the child is killed.
fn drain(child: &mut Child) -> std::thread::JoinHandle<String> {
    use std::io::Read;
    let mut err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    })
}

/// A sync as the test reads it: project name, created, status, outcome, trigger.
type SyncRow = (String, DateTime<Utc>, String, Option<String>, String);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_fire_each_schedule_once_per_tick() {
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    let repo = GitRepo::new();
    repo.write("a.txt", "a\n");
    repo.commit("a");
    for (name, schedule) in [
        ("every-a", "every 10s"),
        ("every-b", "every 10s"),
        ("cron", "*/10 * * * * *"),
    ] {
        let (code, _, stderr) = run(projsync(&db, &redis)
            .args(["project", "add", "--name", name, "--schedule", schedule])
            .arg("--path")
            .arg(repo.path()));
        assert_eq!(code, 0, "{stderr}");
    }
    let (code, _, stderr) = run(projsync(&db, &redis)
        .args(["project", "add", "--name", "bad", "--schedule", "every 1s"])
        .arg("--path")
        .arg(repo.path()));
    assert_ne!(code, 0);
    assert!(stderr.contains("every <n><s|m|h|d>"), "{stderr}");
    let (code, stdout, _) = run(projsync(&db, &redis).args(["project", "list"]));
    assert_eq!(code, 0);
    assert!(
        stdout.contains("every 10s (next ") && stdout.contains("*/10 * * * * * (next "),
        "{stdout}"
    );

    let started = Instant::now();
    let mut workers = [worker(&db, &redis), worker(&db, &redis)];
    let logs: Vec<_> = workers.iter_mut().map(drain).collect();
    // A change midway: one scheduled sync of each project imports it, the
    // others find nothing changed.
    tokio::time::sleep(Duration::from_secs(25)).await;
    repo.write("b.txt", "b\n");
    repo.commit("b");
    while started.elapsed() < Duration::from_secs(65) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Stop firing, then let the last syncs end.
    for name in ["every-a", "every-b", "cron"] {
        let (code, stdout, stderr) =
            run(projsync(&db, &redis).args(["project", "schedule", name, "--clear"]));
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("no schedule"), "{stdout}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let active: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM project_syncs WHERE status IN ('queued', 'running')",
        )
        .fetch_one(&db.admin)
        .await
        .unwrap();
        if active == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{active} syncs did not end");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, ops, _) =
        run(projsync(&db, &redis).args(["ops", "list", "--status", "succeeded", "--limit", "5"]));
    assert_eq!(code, 0);
    let (_, history, _) = run(projsync(&db, &redis).args(["history", "--project", "cron"]));
    for w in &mut workers {
        w.kill().ok();
        w.wait().ok();
    }
    let logs: Vec<String> = logs.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(ops.contains(" schedule "), "{ops}");
    assert!(history.contains(" schedule "), "{history}");

    let rows: Vec<SyncRow> = sqlx::query_as(
        "SELECT p.name, s.created_at, s.status, s.outcome, s.trigger \
         FROM project_syncs s JOIN projects p ON p.id = s.project_id ORDER BY s.created_at",
    )
    .fetch_all(&db.admin)
    .await
    .unwrap();
    for name in ["every-a", "every-b", "cron"] {
        let mine: Vec<_> = rows.iter().filter(|r| r.0 == name).collect();
        let summary = format!("{name}: {mine:?}");
        assert!(mine.iter().all(|r| r.4 == "schedule"), "{summary}");
        assert!(mine.iter().all(|r| r.2 == "succeeded"), "{summary}");
        // About one a 10 s tick over a minute, whatever the two workers
        // did: a double fire would show as more, and as a short gap.
        assert!((4..=7).contains(&mine.len()), "{summary}");
        for pair in mine.windows(2) {
            let gap = pair[1].1 - pair[0].1;
            assert!(
                gap >= chrono::TimeDelta::seconds(8),
                "two fires {gap} apart: {summary}"
            );
        }
        assert_eq!(
            mine.iter()
                .filter(|r| r.3.as_deref() == Some("changed"))
                .count(),
            2,
            "the first sync and the one after the change import: {summary}"
        );
    }
    // Both schedulers ran; each fire was one worker's.
    let fired: Vec<usize> = logs
        .iter()
        .map(|l| l.matches("schedule fired a sync").count())
        .collect();
    assert_eq!(
        fired.iter().sum::<usize>(),
        rows.len(),
        "{fired:?}\n{}",
        logs.join("\n----\n")
    );
}
