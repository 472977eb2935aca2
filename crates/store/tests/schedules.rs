//! Schedules and wanted syncs against the real Postgres: a due schedule
//! fires once per tick whatever the number of schedulers, missed ticks run
//! once, and a wanted sync starts once the running one has ended.

use chrono::{TimeDelta, Utc};
use projsync_domain::{ProjectId, Schedule, SyncStatus, SyncTrigger};
use projsync_store::{Actor, ClaimOutcome, NewProject, ScheduleOutcome, Store, SyncRequest};
use projsync_test_support::TestDb;
use std::collections::HashMap;
use std::time::Duration;

fn schedule(s: &str) -> Schedule {
    s.parse().unwrap()
}

/// Make every scheduled project due, an hour late (as after downtime).
async fn all_due(db: &TestDb) {
    sqlx::query(
        "UPDATE projects SET next_scheduled_at = now() - interval '1 hour' \
         WHERE schedule IS NOT NULL",
    )
    .execute(&db.admin)
    .await
    .unwrap();
}

/// End every active sync, as if it ran.
async fn end_all(db: &TestDb) {
    sqlx::query(
        "UPDATE project_syncs SET status = 'succeeded', finished_at = now() \
         WHERE status IN ('queued', 'running')",
    )
    .execute(&db.admin)
    .await
    .unwrap();
}

#[tokio::test]
async fn two_schedulers_fire_each_due_project_once_per_tick() {
    let db = TestDb::new().await;
    let owner = Store::from_pool(db.admin.clone());
    let other = owner
        .create_tenant("other", &Actor::Cli("test".into()))
        .await
        .unwrap();
    let other_store = db.store.scoped(other.id);
    let mut projects = Vec::new();
    for i in 0..12 {
        let store = if i % 3 == 0 { &other_store } else { &db.store };
        let mut new = NewProject::local(format!("p{i}"), "/tmp/nowhere");
        new.schedule = Some(schedule("every 10s"));
        let p = store.create_project(&new).await.unwrap();
        assert_eq!(p.schedule.as_deref(), Some("every 10s"));
        let next = p.next_scheduled_at.expect("a next time");
        assert!(next > Utc::now() && next <= Utc::now() + TimeDelta::seconds(11));
        projects.push(p.id);
    }
    // One without a schedule never fires.
    let quiet = db
        .store
        .create_project(&NewProject::local("quiet", "/tmp/nowhere"))
        .await
        .unwrap();
    // Nothing is due yet.
    assert!(db.store.fire_schedules(100).await.unwrap().is_empty());

    // The schedulers of two workers: connections of their own, unscoped.
    let opts = projsync_store::ConnectOptions {
        url: db.url.clone(),
        max_connections: 2,
        connect_timeout: Duration::from_secs(5),
    };
    let a = Store::connect(&opts).await.unwrap();
    let b = Store::connect(&opts).await.unwrap();
    for tick in 0..3 {
        all_due(&db).await;
        let run = |s: Store| async move {
            let mut fired = Vec::new();
            // Small batches, so that the two interleave.
            loop {
                let f = s.fire_schedules(2).await.unwrap();
                if f.is_empty() {
                    return fired;
                }
                fired.extend(f);
            }
        };
        let (fa, fb) = tokio::join!(run(a.clone()), run(b.clone()));
        let mut per_project: HashMap<ProjectId, usize> = HashMap::new();
        for f in fa.iter().chain(&fb) {
            assert!(
                matches!(&f.outcome, ScheduleOutcome::Started(s) if s.trigger == SyncTrigger::Schedule),
                "{f:?}"
            );
            let next = f.next_at.unwrap();
            // From now, not from the missed tick an hour ago.
            assert!(
                next > Utc::now() + TimeDelta::seconds(5),
                "tick {tick}: {next}"
            );
            *per_project.entry(f.project_id).or_default() += 1;
        }
        assert_eq!(per_project.len(), projects.len(), "tick {tick}");
        assert!(
            per_project.values().all(|&n| n == 1),
            "tick {tick}: {per_project:?}"
        );
        assert!(!per_project.contains_key(&quiet.id));
        let in_ledger: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM project_syncs WHERE trigger = 'schedule' \
             AND status = 'queued' AND last_pushed_at IS NOT NULL",
        )
        .fetch_one(&db.admin)
        .await
        .unwrap();
        assert_eq!(in_ledger, projects.len() as i64);
        // Not due again until the next time.
        assert!(a.fire_schedules(100).await.unwrap().is_empty());
        end_all(&db).await;
    }
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM project_syncs WHERE trigger = 'schedule'")
            .fetch_one(&db.admin)
            .await
            .unwrap();
    assert_eq!(total, 3 * projects.len() as i64);
}

#[tokio::test]
async fn a_busy_project_consumes_its_tick_and_a_schedule_can_be_cleared() {
    let db = TestDb::new().await;
    let store = &db.store;
    let mut new = NewProject::local("p", "/tmp/nowhere");
    new.schedule = Some(schedule("*/5 * * * *"));
    let p = store.create_project(&new).await.unwrap();
    let api = store
        .create_sync(p.id, None, None, None, &SyncTrigger::Api)
        .await
        .unwrap();
    assert!(api.created);
    all_due(&db).await;
    let fired = store.fire_schedules(10).await.unwrap();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].outcome, ScheduleOutcome::Busy);
    // The tick is consumed: not due again, no sync stacked.
    assert!(store.fire_schedules(10).await.unwrap().is_empty());
    assert_eq!(store.list_syncs(p.id, 10).await.unwrap().len(), 1);

    let changed = store
        .set_schedule(p.id, Some(&schedule("every 1h")))
        .await
        .unwrap();
    assert_eq!(changed.schedule.as_deref(), Some("every 1h"));
    assert!(changed.next_scheduled_at.unwrap() > Utc::now() + TimeDelta::minutes(59));
    let cleared = store.set_schedule(p.id, None).await.unwrap();
    assert_eq!(cleared.schedule, None);
    assert_eq!(cleared.next_scheduled_at, None);
    all_due(&db).await;
    assert!(store.fire_schedules(10).await.unwrap().is_empty());

    // Another tenant's project is not found.
    let owner = Store::from_pool(db.admin.clone());
    let other = owner
        .create_tenant("other", &Actor::Cli("test".into()))
        .await
        .unwrap();
    assert!(matches!(
        store.scoped(other.id).set_schedule(p.id, None).await,
        Err(projsync_store::Error::NotFound(_))
    ));
}

#[tokio::test]
async fn a_wanted_sync_starts_once_the_running_one_ends() {
    let db = TestDb::new().await;
    let store = &db.store;
    let p = store
        .create_project(&NewProject::local("p", "/tmp/nowhere"))
        .await
        .unwrap();
    let running = store
        .create_sync(p.id, None, None, None, &SyncTrigger::Api)
        .await
        .unwrap()
        .sync;
    let ClaimOutcome::Claimed { claim, .. } = store
        .claim(running.id, "w1", Duration::from_secs(30))
        .await
        .unwrap()
    else {
        panic!("claim")
    };
    // A burst of pushes while it runs: one wanted sync, the first's trigger.
    for delivery in ["d1", "d2", "d3"] {
        let r = store
            .request_sync(p.id, &SyncTrigger::Webhook(delivery.into()), Duration::ZERO)
            .await
            .unwrap();
        assert!(matches!(r, SyncRequest::Wanted(_)), "{r:?}");
    }
    // Still running: nothing starts.
    assert!(store.start_wanted(10).await.unwrap().is_empty());

    store.request_cancel(running.id).await.unwrap();
    store.finish_cancelled(&claim).await.unwrap();
    // Two schedulers at once: one starts it.
    let (a, b) = tokio::join!(store.start_wanted(10), store.start_wanted(10));
    let started: Vec<_> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    assert_eq!(started.len(), 1, "{started:?}");
    let sync = &started[0];
    assert_eq!(sync.trigger, SyncTrigger::Webhook("d1".into()));
    assert_eq!(sync.status, SyncStatus::Queued);
    assert_eq!(sync.project_id, p.id);
    // Cleared: no second one.
    assert!(store.start_wanted(10).await.unwrap().is_empty());
    let (at, trigger): (Option<chrono::DateTime<Utc>>, Option<String>) =
        sqlx::query_as("SELECT sync_wanted_at, sync_wanted_trigger FROM projects WHERE id = $1")
            .bind(p.id.0)
            .fetch_one(&db.admin)
            .await
            .unwrap();
    assert_eq!((at, trigger), (None, None));
}
