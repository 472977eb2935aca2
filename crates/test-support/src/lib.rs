//! Test fixtures shared by the suite (a dev-dependency only): a fresh
//! PostgreSQL database per test, migrated the way `projsync migrate` does it;
//! a Redis key namespace per test; and Git repositories built on disk with
//! the git CLI. Real services over TCP, never mocks of our own storage.
//!
//! `PROJSYNC_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and `PROJSYNC_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`) point at
//! the servers; `scripts/services.sh` starts them.

mod counting;
mod fake_github;
pub mod fake_openai;
pub mod fake_otlp;
mod git;

pub use counting::CountingSources;
pub use fake_github::{FakeGitHub, Fault};
pub use fake_openai::{FakeOpenAi, OpenAiFault};
pub use fake_otlp::{FakeOtlp, OtlpLog, OtlpRequest, OtlpSpan};
pub use git::GitRepo;

use projsync_store::{with_database, Store};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};

pub fn admin_database_url() -> String {
    std::env::var("PROJSYNC_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("PROJSYNC_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// `url` with its user replaced by `user` (no password: trust auth on
/// these machines).
pub fn with_user(url: &str, user: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    format!("{}{user}@{host}", &url[..scheme_end])
}

/// The role the API and the workers connect as, as `projsync migrate`
/// creates it.
pub const APP_ROLE: &str = "projsync_app";

/// A database of its own for one test, dropped with it, migrated the way
/// `projsync migrate` does it: as the owner, then the application role.
pub struct TestDb {
    pub name: String,
    /// The application role's URL (`database.url`).
    pub url: String,
    /// The owner's URL (`database.admin_url`).
    pub admin_url: String,
    /// The owner's pool: raw SQL that inspects every tenant's rows.
    pub admin: sqlx::PgPool,
    /// The application role's store, scoped to the `default` tenant.
    pub store: Store,
}

impl TestDb {
    /// Create an empty, migrated database.
    pub async fn new() -> Self {
        let name = format!("projsync_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_database_url();
        let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("cannot reach PostgreSQL at {admin}: {e}; run scripts/services.sh")
        });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        let admin_url = with_database(&admin, &name);
        let admin_pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&admin_url)
            .await
            .expect("connect to test database");
        let owner = Store::from_pool(admin_pool.clone());
        // Guarded, as `projsync migrate` applies them.
        let mut conn = admin_pool.acquire().await.expect("a connection");
        projsync_migrate::apply(&mut conn, &projsync_migrate::Options::default())
            .await
            .expect("migrations apply");
        drop(conn);
        owner
            .ensure_app_role(APP_ROLE, None)
            .await
            .expect("the application role");
        let url = with_user(&admin_url, APP_ROLE);
        let pool = projsync_store::pool_options()
            .max_connections(10)
            .connect(&url)
            .await
            .expect("connect to test database as the application role");
        let store = Store::from_pool(pool).scoped(projsync_store::DEFAULT_TENANT);
        Self {
            name,
            url,
            admin_url,
            admin: admin_pool,
            store,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // For looking at what a test or benchmark left (plans, rows):
        // PROJSYNC_KEEP_TEST_DB=1 keeps the database, and says its name.
        if std::env::var_os("PROJSYNC_KEEP_TEST_DB").is_some_and(|v| v == "1") {
            eprintln!("test-support: kept database {name} (PROJSYNC_KEEP_TEST_DB=1)");
            return;
        }
        let admin = admin_database_url();
        // Drop runs outside async: use a runtime of our own on a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// A Redis key namespace of its own for one test; its keys go with it.
pub struct TestRedis {
    pub url: String,
    pub namespace: String,
}

impl TestRedis {
    pub fn new() -> Self {
        Self {
            url: redis_url(),
            namespace: format!("projsync-test-{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

impl Default for TestRedis {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let (url, pattern) = (self.url.clone(), format!("{}*", self.namespace));
        let _ = std::thread::spawn(move || -> Option<()> {
            let client = redis::Client::open(url).ok()?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(&pattern)
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                if !keys.is_empty() {
                    let _: Option<i64> = redis::cmd("DEL")
                        .arg(keys)
                        .query_async(&mut conn)
                        .await
                        .ok();
                }
                Some(())
            })
        })
        .join();
    }
}
