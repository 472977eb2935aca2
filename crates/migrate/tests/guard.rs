//! The guard against a real PostgreSQL (with pgvector): a fresh database is
//! migrated through it, then checked, verified and attacked.
//! `PROJSYNC_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).

use projsync_migrate::{apply, check, protection, verify, Options, Source};
use sqlx::{Connection, PgConnection};

async fn fresh_database() -> (String, String) {
    let admin = std::env::var("PROJSYNC_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("projsync_guard_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin)
        .await
        .expect("PostgreSQL is reachable (scripts/services.sh)");
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    (projsync_store::with_database(&admin, &name), name)
}

async fn drop_database(url: &str, name: &str) {
    let mut conn = PgConnection::connect(&projsync_store::with_database(url, "postgres"))
        .await
        .unwrap();
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_fresh_database_is_migrated_through_the_guard_without_drift() {
    let (url, name) = fresh_database().await;
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let options = Options::default();
    let pending = check(&mut conn, &options).await.unwrap();
    assert!(pending.len() >= 5 && pending.iter().all(|p| !p.refused()));

    let applied = apply(&mut conn, &options).await.unwrap();
    assert_eq!(applied.versions.len(), pending.len());
    assert!(check(&mut conn, &options).await.unwrap().is_empty());
    // Applying again does nothing.
    assert!(apply(&mut conn, &options)
        .await
        .unwrap()
        .versions
        .is_empty());

    // The live vector column is protected, and what references the
    // protected tables is known for CASCADE.
    let p = protection(&mut conn, &["notes.body".to_string()])
        .await
        .unwrap();
    let columns: Vec<(&str, &str)> = p.columns().collect();
    assert!(
        columns.contains(&("embeddings", "embedding")),
        "{columns:?}"
    );
    assert!(columns.contains(&("notes", "body")), "{columns:?}");

    assert_eq!(verify(&url, &Source::Embedded).await.unwrap(), vec![]);
    sqlx::raw_sql("ALTER TABLE memory_entries ADD COLUMN by_hand text")
        .execute(&mut conn)
        .await
        .unwrap();
    let drift = verify(&url, &Source::Embedded).await.unwrap();
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert!(drift[0].to_string().contains("memory_entries.by_hand"));
    conn.close().await.ok();
    drop_database(&url, &name).await;
}
