use projsync_domain::{PhaseError, SyncId};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot reach the database at {url}: {source}; check that PostgreSQL is running \
         and that PROJSYNC__DATABASE__URL (database.url) points at it"
    )]
    Connect { url: String, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// Another worker claimed the sync since: this one must stop writing.
    #[error("lost the lease on sync {0}: another worker owns it now")]
    LeaseLost(SyncId),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl Error {
    /// Worth retrying: the database went away or is overloaded, or a
    /// serialization conflict. A constraint violation is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { .. } => true,
            Error::Db(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Protocol(_)
                | sqlx::Error::Tls(_) => true,
                sqlx::Error::Database(db) => {
                    // 40001 serialization failure, 40P01 deadlock, 57P01 admin
                    // shutdown (pg_terminate_backend), 08* connection exceptions
                    let code = db.code().unwrap_or_default();
                    code == "40001"
                        || code == "40P01"
                        || code.starts_with("57P")
                        || code.starts_with("08")
                }
                _ => false,
            },
            _ => false,
        }
    }

    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Error::Db(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23505"))
    }
}

impl From<Error> for PhaseError {
    fn from(e: Error) -> Self {
        match &e {
            Error::LeaseLost(_) => PhaseError::retryable(e.to_string()),
            _ if e.is_retryable() => PhaseError::retryable(e.to_string()),
            _ => PhaseError::fatal(e.to_string()),
        }
    }
}
