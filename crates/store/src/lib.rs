//! The ledger in Postgres (ARCHITECTURE.md, invariant 1): projects, repositories,
//! syncs and their steps, the scan's change plan, the stored files and the
//! memory entries. Every write of a phase checks the sync's fence inside its
//! transaction (invariant 3), and entry versions go `pending` → `active` →
//! `superseded` only in `finalize` (invariant 4).
//!
//! This crate knows SQL and the domain types. It must not know about Redis,
//! HTTP or where code comes from.

mod embeddings;
mod entries;
mod error;
mod projects;
mod syncs;

pub use embeddings::{
    ChunkScope, ChunkToEmbed, EmbeddingCounts, NewChunk, SearchFilter, SearchHit, UnchunkedEntry,
    VectorExtension, PGVECTOR_MISSING,
};
pub use entries::{ActiveEntry, ImportRow, MemoryKey, NewEntry};
pub use error::{Error, Result};
pub use projects::{NewProject, Project, ProjectKey, Repository};
pub use syncs::{
    CancelOutcome, Claim, ClaimOutcome, EnqueueOutcome, Heartbeat, PlanRow, StepRecord, SyncKey,
    SyncRecord,
};

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

use projsync_domain::redact_url;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use std::str::FromStr;
use std::time::Duration;

/// The migrations under `migrations/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Handle on the ledger. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
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
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.connect_timeout)
            .connect_with(pg)
            .await
            .map_err(connect_err)?;
        Ok(Self { pool })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Apply pending migrations. Safe to run concurrently: sqlx takes an
    /// advisory lock.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
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
