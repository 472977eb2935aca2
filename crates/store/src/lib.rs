//! The ledger in Postgres (ARCHITECTURE.md, invariant 1): projects, repositories,
//! syncs and their steps, the scan's change plan, the stored files and the
//! memory entries. Every write of a phase checks the sync's fence inside its
//! transaction (invariant 3), and entry versions go `pending` → `active` →
//! `superseded` only in `finalize` (invariant 4).
//!
//! This crate knows SQL and the domain types. It must not know about Redis,
//! HTTP or where code comes from.

mod analysis;
pub mod copy;
mod docs;
mod embeddings;
mod entries;
mod error;
mod locks;
mod ops;
mod projects;
mod schedules;
mod syncs;
mod tenancy;
mod webhooks;

pub use analysis::{
    ActiveSymbol, AnalysisInput, AnalyzedFile, Dependency, Edge, NewSymbol, SymbolFilter,
    SymbolMeta, SymbolRecord,
};
pub use docs::{ModuleEdge, ModuleState, ModuleSymbol, NewDoc};
pub use embeddings::{
    ChunkScope, ChunkToEmbed, EmbeddingCounts, NewChunk, SearchFilter, SearchHit, UnchunkedEntry,
    VectorExtension, PGVECTOR_MISSING,
};
pub use entries::{
    ActiveEntry, EntryInfo, GrownTable, ImportRow, LastSync, MemoryKey, NewEntry, ScanBase,
};
pub use error::{Error, Result};
pub use locks::{sync_lock_key, SyncLockGuard, SyncLocks};
pub use ops::{ProjectFacts, QueueCounts, RunningSync, ThroughputBucket, WorkerInfo};
pub use projects::{NewProject, Project, ProjectKey, Repository};
pub use schedules::{ScheduleFire, ScheduleOutcome};
pub use syncs::{
    BatchWrite, CancelOutcome, Claim, ClaimOutcome, DuePush, EnqueueOutcome, Heartbeat, PlanRow,
    StepRecord, StepStart, SyncCount, SyncKey, SyncRecord, SyncRequest,
};
pub use tenancy::{
    random_secret, secret_hash, Actor, ApiKey, AppRole, AuditRecord, CreatedKey, Credential,
    Principal, Tenant,
};
pub use webhooks::{Delivery, DeliveryClaim, WebhookSecret};

/// One page of a keyset-paginated list: the rows, and the sort key of the
/// last one when more rows follow (`None` on the last page). The next page
/// starts strictly after that key, so rows inserted meanwhile never shift
/// the pages.
#[derive(Debug, Clone)]
pub struct Page<T, K> {
    pub items: Vec<T>,
    pub next: Option<K>,
}

impl<T, K: Clone> Page<T, K> {
    /// Cut rows fetched with `LIMIT limit + 1`, each with its sort key: the
    /// extra row only says that another page exists.
    pub(crate) fn from_rows(mut rows: Vec<(T, K)>, limit: i64) -> Self {
        let limit = usize::try_from(limit).unwrap_or(0);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more {
            rows.last().map(|(_, key)| key.clone())
        } else {
            None
        };
        Self {
            items: rows.into_iter().map(|(item, _)| item).collect(),
            next,
        }
    }
}

use projsync_domain::{redact_url, TenantId};
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// The tenant that owns everything recorded before tenants existed
/// (migration 0005), and the CLI's default.
pub const DEFAULT_TENANT: TenantId = TenantId(uuid::Uuid::from_u128(1));

/// The migrations under `migrations/`, embedded in the binary. They are
/// applied by `projsync-migrate`, which guards them.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Handle on the ledger. Cheap to clone.
///
/// A store is scoped to one tenant ([`Store::scoped`]) or to none. Every
/// transaction it opens sets `projsync.tenant_id` to its tenant (to nothing
/// when it has none), and row-level security shows each transaction only
/// its tenant's rows: a store without a tenant sees no tenant-owned row at
/// all. The few questions that cross tenants go through `SECURITY DEFINER`
/// functions ([`Store::sync_tenant`], [`Store::due_for_push`],
/// [`Store::authenticate`]).
/// A pooled connection idle at least this long is pinged before it is used.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// The pool settings every pool of the application's role uses (tests and
/// benchmarks too, so that they measure what runs): set its size and
/// timeouts on top.
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        // A connection coming back to the pool is pinged (which also ends
        // what it left open) before another task can take it; a second
        // ping when it is taken, sqlx's default, is a round trip more for
        // every transaction (a small sync runs about sixty). Only a
        // connection that sat idle, which the server may have dropped
        // since (a restart, an idle timeout), is pinged again.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IDLE_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    tenant: Option<TenantId>,
}

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub url: String,
    pub max_connections: u32,
    pub connect_timeout: Duration,
}

impl Store {
    /// Connect, failing with the (password-less) URL and a hint when the
    /// database cannot be reached.
    pub async fn connect(opts: &ConnectOptions) -> Result<Self> {
        let connect_err = |source: sqlx::Error| Error::Connect {
            url: redact_url(&opts.url),
            source,
        };
        let pg = PgConnectOptions::from_str(&opts.url).map_err(connect_err)?;
        let pool = pool_options()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.connect_timeout)
            .connect_with(pg)
            .await
            .map_err(connect_err)?;
        Ok(Self { pool, tenant: None })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool, tenant: None }
    }

    /// The same pool, scoped to `tenant`.
    pub fn scoped(&self, tenant: TenantId) -> Self {
        Self {
            pool: self.pool.clone(),
            tenant: Some(tenant),
        }
    }

    /// The tenant this store is scoped to.
    pub fn tenant(&self) -> Option<TenantId> {
        self.tenant
    }

    /// A read-only transaction of this store's tenant, for one statement:
    /// `q.fetch_all(&mut *self.read().await?)`. It is rolled back when
    /// dropped (which only ends it: it cannot write).
    pub(crate) async fn read(&self) -> Result<Transaction<'static, Postgres>> {
        begin_whole(
            &self.pool,
            begin_sql("BEGIN READ ONLY", self.tenant, Commit::Durable),
        )
        .await
    }

    /// Begin a transaction of this store's tenant.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        self.begin_committing(Commit::Durable).await
    }

    /// Begin a transaction of this store's tenant that commits as `commit`
    /// says.
    pub(crate) async fn begin_committing(
        &self,
        commit: Commit,
    ) -> Result<Transaction<'static, Postgres>> {
        begin_whole(&self.pool, begin_sql("BEGIN", self.tenant, commit)).await
    }

    /// [`Store::begin_committing`], with each statement planned for its
    /// own parameters (`plan_cache_mode = force_custom_plan`): for
    /// finalize, whose statements join a sync's rows with a project's (its
    /// plan with the stored files, its versions with the active ones).
    /// PostgreSQL's generic plan for a statement run often on one
    /// connection guesses "a sync's rows" from the average sync: after a
    /// first import of 5,000 files, a resync's finalize scanned every plan
    /// row and every stored file to delete none (8.8 ms at 5,000 files,
    /// measured, and growing with the repository), where the plan for the
    /// sync at hand reads its one row by index. Not for batch writes: a
    /// custom plan of a statement over arrays of a thousand values costs
    /// more than it saves (the first import of 10,000 files took 20.3 s
    /// with every fenced write planned so, 17.2 s without).
    pub(crate) async fn begin_custom_plans(
        &self,
        commit: Commit,
    ) -> Result<Transaction<'static, Postgres>> {
        let sql = format!(
            "{}; SET LOCAL plan_cache_mode = force_custom_plan",
            begin_sql("BEGIN", self.tenant, commit)
        );
        begin_whole(&self.pool, sql).await
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Begin a transaction on a connection of `pool` with `sql`, to the end
/// even when the caller stops waiting (a request whose client went away, a
/// `try_join!` whose other half failed). sqlx 0.8 counts a transaction only
/// once its `BEGIN` has answered, so a begin dropped half-way returned its
/// connection to the pool still inside the transaction, and the next user
/// of that connection ran in it (seen: an API key's `last_used_at` update
/// failing "in a read-only transaction"). Run on a task of its own, the
/// begin always completes, and a transaction nobody receives is rolled back
/// when dropped, like any other.
pub(crate) async fn begin_whole(
    pool: &PgPool,
    sql: impl Into<std::borrow::Cow<'static, str>>,
) -> Result<Transaction<'static, Postgres>> {
    let (pool, sql) = (pool.clone(), sql.into());
    match tokio::spawn(async move { pool.begin_with(sql).await }).await {
        Ok(tx) => Ok(tx?),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down.
        Err(_) => Err(Error::Db(sqlx::Error::WorkerCrashed)),
    }
}

/// How a transaction's commit waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// Until the commit is on disk (PostgreSQL's default): what a caller is
    /// told has happened survives a crash of the database server.
    Durable,
    /// Not for the disk (`synchronous_commit = off`): visible to every
    /// other session at once, and durable a moment later, unless the
    /// database server itself crashes first; then it is lost together with
    /// every later transaction, never a part of it, and never before an
    /// earlier one. For a run's intermediate writes (steps, checkpoints,
    /// batches, progress): after such a crash the run resumes from an
    /// earlier checkpoint, and each is idempotent. A run's last write (its
    /// end: succeeded, failed, cancelled, handed back or retried later) is
    /// durable, and its flush carries every deferred commit before it.
    Deferred,
}

/// The one statement that begins a transaction of `tenant` (the tenant is
/// set with it, in the same round trip: a simple query of several
/// statements, the first of which opens the transaction).
///
/// JIT compilation is off in every transaction. The ledger's statements
/// read few rows through indexes, but some (the docs phase's next-state
/// reads, with correlated subqueries) carry planner estimates above
/// `jit_above_cost`, and PostgreSQL then spends 50 ms compiling a query
/// that runs in 2: measured with `auto_explain` on `bench-sync`, where it
/// was most of the docs phase. Set here rather than on the connection so
/// that it holds behind a transaction-mode pooler too.
fn begin_sql(begin: &str, tenant: Option<TenantId>, commit: Commit) -> String {
    // A UUID's text is hex digits and dashes: nothing to escape.
    let tenant = tenant.map(|t| t.to_string()).unwrap_or_default();
    let deferred = match commit {
        Commit::Durable => "",
        Commit::Deferred => "; SET LOCAL synchronous_commit = off",
    };
    format!(
        "{begin}; SELECT set_config('projsync.tenant_id', '{tenant}', true), \
         set_config('jit', 'off', true){deferred}"
    )
}

/// Set the tenant of the current transaction (`None`: no tenant, which
/// sees no tenant-owned row).
pub async fn set_tenant(conn: &mut sqlx::PgConnection, tenant: Option<TenantId>) -> Result<()> {
    sqlx::query("SELECT set_config('projsync.tenant_id', $1, true)")
        .bind(tenant.map(|t| t.to_string()).unwrap_or_default())
        .execute(conn)
        .await?;
    Ok(())
}

/// The user (and password, if any) a `postgres://` URL connects as;
/// the user defaults to the OS user, as libpq's does.
pub fn url_user(url: &str) -> Result<(String, Option<String>)> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::Invalid(format!("`{}` is not a valid URL: {e}", redact_url(url))))?;
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            match (
                bytes[i],
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (b'%', Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                (b, _, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let mut user = decode(parsed.username());
    if let Some((_, u)) = parsed.query_pairs().find(|(k, _)| k == "user") {
        user = u.into_owned();
    }
    if user.is_empty() {
        user = std::env::var("USER").unwrap_or_else(|_| "postgres".into());
    }
    let mut password = parsed.password().map(decode);
    if let Some((_, p)) = parsed.query_pairs().find(|(k, _)| k == "password") {
        password = Some(p.into_owned());
    }
    Ok((user, password))
}

/// `url` with its database replaced by `name` (user, host and options kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Create the database named in `url` if it does not exist yet.
pub async fn create_database_if_missing(url: &str) -> Result<bool> {
    let connect_err = |source: sqlx::Error| Error::Connect {
        url: redact_url(url),
        source,
    };
    if Postgres::database_exists(url).await.map_err(connect_err)? {
        return Ok(false);
    }
    Postgres::create_database(url).await.map_err(connect_err)?;
    Ok(true)
}
