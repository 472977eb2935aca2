//! The incident, as tests: a knowledge base holding 382 stored vectors, and
//! migrations that would lose them. `projsync migrate` refuses the
//! destructive statement, rolls back what its lint cannot see (the
//! tripwire), applies what is additive, and `--verify` catches a schema
//! changed by hand.

use crate::cli::{projsync, run};
use projsync_test_support::{TestDb, TestRedis};
use std::path::{Path, PathBuf};

/// The repository's migrations plus `extra` (name, SQL), in a directory of
/// their own (`--source`).
fn source_with(extra: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "projsync-migrations-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    for entry in std::fs::read_dir(repo).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    for (name, sql) in extra {
        std::fs::write(dir.join(name), sql).unwrap();
    }
    dir
}

/// 382 stored vectors of the default tenant (and the entries and chunks
/// they belong to).
async fn knowledge_base(db: &TestDb) {
    sqlx::raw_sql(
        "SELECT set_config('projsync.tenant_id', '00000000-0000-0000-0000-000000000001', false); \
         INSERT INTO embeddings (model, content_hash, dimensions, embedding) \
         SELECT 'incident', md5(i::text), 3, ('[' || i || ',1,0]')::vector \
         FROM generate_series(1, 382) i;",
    )
    .execute(&db.admin)
    .await
    .unwrap();
}

async fn vectors(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(embedding) FROM embeddings")
        .fetch_one(&db.admin)
        .await
        .unwrap()
}

async fn applied(db: &TestDb) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&db.admin)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_vector_column_is_refused_and_all_382_remain() {
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    knowledge_base(&db).await;
    let dir = source_with(&[(
        "0100_push.sql",
        "-- what the schema push did\nALTER TABLE embeddings DROP COLUMN embedding;\n",
    )]);
    let source = dir.to_string_lossy().into_owned();

    let (code, stdout, stderr) =
        run(projsync(&db, &redis).args(["migrate", "--check", "--source", &source]));
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("migration 100 (push): REFUSED"), "{stdout}");
    assert!(
        stdout.contains("REFUSED") && stdout.contains("line 2"),
        "{stdout}"
    );

    let (code, _, stderr) = run(projsync(&db, &redis).args(["migrate", "--source", &source]));
    assert_ne!(code, 0);
    assert!(
        stderr.contains("refused") && stderr.contains("embeddings.embedding"),
        "{stderr}"
    );
    assert!(
        stderr.contains("allow-destructive"),
        "says what to do: {stderr}"
    );
    assert_eq!(vectors(&db).await, 382);
    assert!(!applied(&db).await.contains(&100));
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_whose_consent_names_another_object_is_rolled_back_by_the_tripwire() {
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    knowledge_base(&db).await;
    let dir = source_with(&[(
        "0100_cleanup.sql",
        "-- projsync: allow-destructive memory_chunks because old chunks go\n\
         DELETE FROM embeddings WHERE model = 'incident';\n",
    )]);
    let (code, _, stderr) =
        run(projsync(&db, &redis).args(["migrate", "--source", &dir.to_string_lossy()]));
    assert_ne!(code, 0);
    assert!(
        stderr.contains("100") && stderr.contains("rolled back"),
        "{stderr}"
    );
    assert!(
        stderr.contains("embeddings: 382 before, 0 after"),
        "{stderr}"
    );
    assert_eq!(vectors(&db).await, 382);
    assert!(!applied(&db).await.contains(&100));

    // With a consent that names it, the same migration applies, and the
    // consent is recorded.
    std::fs::write(
        dir.join("0100_cleanup.sql"),
        "-- projsync: allow-destructive embeddings because the incident model is retired\n\
         DELETE FROM embeddings WHERE model = 'incident';\n",
    )
    .unwrap();
    let (code, _, stderr) =
        run(projsync(&db, &redis).args(["migrate", "--source", &dir.to_string_lossy()]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(vectors(&db).await, 0);
    let consents: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT version, object, reason FROM projsync_migration_consents ORDER BY version",
    )
    .fetch_all(&db.admin)
    .await
    .unwrap();
    // 0005 carried one too (a column rename): every consent is recorded.
    assert_eq!(consents.len(), 2, "{consents:?}");
    assert_eq!(
        (consents[0].0, consents[0].1.as_str()),
        (5, "repositories.credentials_ref")
    );
    assert_eq!(
        consents[1],
        (
            100,
            "embeddings".into(),
            "the incident model is retired".into()
        )
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn additive_migrations_apply_and_failed_ones_leave_everything_as_it_was() {
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    knowledge_base(&db).await;
    let dir = source_with(&[(
        "0100_notes.sql",
        "ALTER TABLE embeddings ADD COLUMN note text;\n\
         CREATE TABLE review_notes (id bigint PRIMARY KEY, body text NOT NULL);\n",
    )]);
    let source = dir.to_string_lossy().into_owned();
    let (code, stdout, stderr) = run(projsync(&db, &redis).args(["migrate", "--source", &source]));
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(applied(&db).await.contains(&100));
    assert_eq!(vectors(&db).await, 382);
    let (code, stdout, stderr) =
        run(projsync(&db, &redis).args(["migrate", "--verify", "--source", &source]));
    assert_eq!(
        code, 0,
        "no drift after the guard applied it:\n{stdout}\n{stderr}"
    );

    // Half-way: the first statement works, the second fails.
    std::fs::write(
        dir.join("0101_half.sql"),
        "CREATE TABLE half_done (id int);\nDELETE FROM embeddings WHERE model = 'incident';\n\
         INSERT INTO no_such_table VALUES (1);\n",
    )
    .unwrap();
    let (code, _, stderr) = run(projsync(&db, &redis).args(["migrate", "--source", &source]));
    assert_ne!(code, 0);
    assert!(
        stderr.contains("101") && stderr.contains("rolled back"),
        "{stderr}"
    );
    let half: bool = sqlx::query_scalar("SELECT to_regclass('half_done') IS NOT NULL")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert!(!half);
    assert_eq!(vectors(&db).await, 382);
    assert!(!applied(&db).await.contains(&101));

    // An applied migration edited afterwards is refused.
    std::fs::remove_file(dir.join("0101_half.sql")).unwrap();
    std::fs::write(
        dir.join("0100_notes.sql"),
        "ALTER TABLE embeddings ADD COLUMN note text;\n",
    )
    .unwrap();
    let (code, _, stderr) = run(projsync(&db, &redis).args(["migrate", "--source", &source]));
    assert_ne!(code, 0);
    assert!(stderr.contains("changed after it was applied"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_an_alter_table_made_by_hand() {
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    let (code, stdout, stderr) = run(projsync(&db, &redis).args(["migrate", "--verify"]));
    assert_eq!(
        code, 0,
        "a fresh database has no drift:\n{stdout}\n{stderr}"
    );
    sqlx::raw_sql(
        "ALTER TABLE projects ADD COLUMN pushed_by_hand integer; \
         ALTER TABLE embeddings ALTER COLUMN dimensions DROP NOT NULL; \
         DROP INDEX memory_chunks_tsv;",
    )
    .execute(&db.admin)
    .await
    .unwrap();
    let (code, stdout, _) = run(projsync(&db, &redis).args(["migrate", "--verify"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("projects.pushed_by_hand"), "{stdout}");
    assert!(stdout.contains("embeddings.dimensions"), "{stdout}");
    assert!(stdout.contains("memory_chunks_tsv"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_outside_a_transaction_are_counted_and_reported_too() {
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    knowledge_base(&db).await;
    let dir = source_with(&[
        (
            "0100_index.sql",
            "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS embeddings_by_model ON embeddings (model);\n\
             CREATE INDEX CONCURRENTLY IF NOT EXISTS embeddings_by_created ON embeddings (created_at);\n",
        ),
        (
            "0101_locking.sql",
            "CREATE INDEX embeddings_by_dimensions ON embeddings (dimensions);\n",
        ),
    ]);
    let source = dir.to_string_lossy().into_owned();
    // --check warns about the index that locks a protected table.
    let (code, stdout, _) =
        run(projsync(&db, &redis).args(["migrate", "--check", "--source", &source]));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("CONCURRENTLY"), "{stdout}");
    let (code, _, stderr) = run(projsync(&db, &redis).args(["migrate", "--source", &source]));
    assert_eq!(code, 0, "{stderr}");
    assert!(applied(&db).await.ends_with(&[100, 101]));

    // Outside a transaction nothing can be rolled back, but the drop is
    // still caught, reported, and the migration is not recorded.
    std::fs::write(
        dir.join("0102_purge.sql"),
        "-- no-transaction\nDELETE FROM embeddings WHERE model = 'incident';\n",
    )
    .unwrap();
    let (code, _, stderr) = run(projsync(&db, &redis).args(["migrate", "--source", &source]));
    assert_ne!(code, 0);
    assert!(
        stderr.contains("embeddings: 382 before, 0 after")
            && stderr.contains("could not be rolled back"),
        "{stderr}"
    );
    assert!(!applied(&db).await.contains(&102));
    std::fs::remove_dir_all(dir).ok();
}
