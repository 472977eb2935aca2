//! `projsync migrate`, guarded: the only way the schema changes, and a way
//! that cannot silently lose data.
//!
//! Why: a team once lost 382 embeddings to a schema push that dropped a
//! `vector` column "accepting data loss". Linters catch such statements;
//! none checks that the data is still there afterwards. This does both:
//!
//! 1. every pending migration is parsed with PostgreSQL's own parser
//!    (`projsync-migrate-lint`) before anything runs, and a statement that
//!    destroys a protected object is refused unless the file carries a
//!    consent line (`-- projsync: allow-destructive <object> because …`);
//! 2. inside each migration's transaction the rows of every protected table
//!    and the stored vectors are counted before and after; a drop that no
//!    consent allows rolls the migration back (the tripwire);
//! 3. `verify` compares the live schema with the schema the applied
//!    migrations produce, built in a scratch database (drift).
//!
//! The ledger of applied migrations is sqlx's `_sqlx_migrations` (same
//! versions, checksums and advisory lock), so databases migrated before the
//! guard existed carry on. Consents are recorded in
//! `projsync_migration_consents`.

mod drift;

pub use drift::{verify, Difference};

use projsync_migrate_lint::{lint, Protection, Report, Verdict};
use sqlx::migrate::{Migrate, Migration, Migrator};
use sqlx::{Connection, PgConnection, Row};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Tripwire(String),
    #[error("{0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("cannot read the migrations: {0}")]
    Source(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where migrations come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The ones built into the binary (`migrations/`).
    Embedded,
    /// A directory of `NNNN_name.sql` files (`--source DIR`).
    Dir(std::path::PathBuf),
}

impl Source {
    pub async fn load(&self) -> Result<Vec<Migration>> {
        let migrations = match self {
            Source::Embedded => projsync_store::MIGRATOR.iter().cloned().collect(),
            Source::Dir(dir) => {
                if !dir.is_dir() {
                    return Err(Error::Invalid(format!(
                        "--source {}: no such directory",
                        dir.display()
                    )));
                }
                Migrator::new(dir.as_path())
                    .await?
                    .iter()
                    .cloned()
                    .collect()
            }
        };
        Ok(migrations)
    }
}

/// How the guard runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub source: Source,
    /// Objects protected on top of the defaults and the live vector
    /// columns: `table` or `table.column` (`migrate.protected`).
    pub protected: Vec<String>,
    /// Each migration's `lock_timeout`.
    pub lock_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            source: Source::Embedded,
            protected: Vec::new(),
            lock_timeout: Duration::from_secs(5),
        }
    }
}

/// One pending migration and what the guard says of it.
#[derive(Debug)]
pub struct Pending {
    pub version: i64,
    pub description: String,
    pub no_tx: bool,
    pub report: Report,
}

impl Pending {
    pub fn refused(&self) -> bool {
        self.report.refused()
    }
}

/// What `apply` did.
#[derive(Debug, Default)]
pub struct Applied {
    pub versions: Vec<(i64, String)>,
    /// Warnings of the applied migrations (locks, unchecked dynamic SQL).
    pub warnings: Vec<String>,
}

/// The protection set of this database: the defaults, the configured
/// objects, every `vector` column of the live schema (and its table), and
/// for each table which protected tables depend on it through a foreign
/// key (what a CASCADE would reach).
pub async fn protection(conn: &mut PgConnection, extra: &[String]) -> Result<Protection> {
    let mut p = Protection::defaults();
    for spec in extra {
        p = p.with_object(spec).map_err(Error::Invalid)?;
    }
    let vectors = vector_columns(conn).await?;
    for (table, column) in &vectors {
        p = p.with_column(table, column);
    }
    let protected: Vec<String> = p.tables().map(str::to_string).collect();
    // Tables a protected table references: dropping or truncating one with
    // CASCADE reaches the protected table.
    let refs: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT r.relname::text, c.relname::text FROM pg_constraint k \
         JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE k.contype = 'f' AND n.nspname = 'public'",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut dependents: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (referenced, referencing) in refs {
        if protected.contains(&referencing) {
            dependents.entry(referenced).or_default().push(referencing);
        }
    }
    for (object, deps) in dependents {
        p = p.with_dependents(&object, deps);
    }
    Ok(p)
}

/// Every `vector` column of the schema: (table, column).
async fn vector_columns(conn: &mut PgConnection) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT c.relname::text, a.attname::text FROM pg_attribute a \
         JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_type t ON t.oid = a.atttypid \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND t.typname = 'vector' \
           AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .fetch_all(&mut *conn)
    .await?)
}

/// The applied versions and their checksums (none when the ledger does not
/// exist yet).
async fn applied(conn: &mut PgConnection) -> Result<BTreeMap<i64, Vec<u8>>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(BTreeMap::new());
    }
    let dirty: Option<i64> = sqlx::query_scalar(
        "SELECT version FROM _sqlx_migrations WHERE NOT success ORDER BY version LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(v) = dirty {
        return Err(Error::Invalid(format!(
            "migration {v} is recorded as partially applied; repair it by hand, then delete its \
             row from _sqlx_migrations"
        )));
    }
    let rows: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows.into_iter().collect())
}

/// The pending migrations with the guard's verdicts; applies nothing.
/// A changed checksum of an applied migration is an error, as is an
/// applied version the source no longer has.
pub async fn check(conn: &mut PgConnection, opts: &Options) -> Result<Vec<Pending>> {
    let migrations = opts.source.load().await?;
    let applied = applied(conn).await?;
    for (version, checksum) in &applied {
        match migrations.iter().find(|m| m.version == *version) {
            None => {
                return Err(Error::Invalid(format!(
                    "migration {version} is applied to this database but missing from the \
                     source; use the binary (or --source) the database was migrated with"
                )))
            }
            Some(m) if m.checksum.as_ref() != checksum.as_slice() => {
                return Err(Error::Refused(format!(
                    "migration {version} ({}) was changed after it was applied (its checksum \
                     differs); applied migrations are never edited: restore the file and put \
                     the change in a new migration",
                    m.description
                )))
            }
            Some(_) => {}
        }
    }
    let protection = protection(conn, &opts.protected).await?;
    Ok(migrations
        .iter()
        .filter(|m| !applied.contains_key(&m.version))
        .map(|m| Pending {
            version: m.version,
            description: m.description.to_string(),
            no_tx: m.no_tx,
            report: lint(&m.sql, &protection),
        })
        .collect())
}

/// Rows of every protected table and the stored vectors.
async fn counts(conn: &mut PgConnection, protection: &Protection) -> Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    for table in protection.tables() {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("public.\"{}\"", table.replace('"', "\"\"")))
            .fetch_one(&mut *conn)
            .await?;
        if !exists {
            continue;
        }
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM public.\"{}\"",
            table.replace('"', "\"\"")
        ))
        .fetch_one(&mut *conn)
        .await?;
        out.insert(table.to_string(), n);
    }
    let vectors = vector_columns(conn).await?;
    for (table, column) in vectors {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(\"{}\") FROM public.\"{}\"",
            column.replace('"', "\"\""),
            table.replace('"', "\"\"")
        ))
        .fetch_one(&mut *conn)
        .await?;
        out.insert(format!("{table}.{column}"), n);
    }
    Ok(out)
}

/// A drop of a count that no consent of the migration allows: (object,
/// before, after).
fn unconsented_drops(
    before: &BTreeMap<String, i64>,
    after: &BTreeMap<String, i64>,
    report: &Report,
) -> Vec<(String, i64, i64)> {
    let consented = |object: &str| {
        report.consents.iter().any(|c| {
            c.object.eq_ignore_ascii_case(object)
                || object
                    .split_once('.')
                    .is_some_and(|(t, _)| c.object.eq_ignore_ascii_case(t))
        })
    };
    before
        .iter()
        .filter_map(|(object, b)| {
            // A counted object that is gone counts as zero.
            let a = after.get(object).copied().unwrap_or(0);
            (a < *b && !consented(object)).then(|| (object.clone(), *b, a))
        })
        .collect()
}

const CONSENTS_TABLE: &str = "CREATE TABLE IF NOT EXISTS projsync_migration_consents ( \
    version bigint NOT NULL, checksum bytea NOT NULL, object text NOT NULL, \
    reason text NOT NULL, line integer NOT NULL, \
    recorded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (version, object))";

/// Apply the pending migrations, each guarded. Stops at the first refusal
/// or tripwire (nothing of that migration is applied).
pub async fn apply(conn: &mut PgConnection, opts: &Options) -> Result<Applied> {
    conn.lock().await?;
    let result = apply_locked(conn, opts).await;
    conn.unlock().await?;
    result
}

async fn apply_locked(conn: &mut PgConnection, opts: &Options) -> Result<Applied> {
    conn.ensure_migrations_table().await?;
    sqlx::raw_sql(CONSENTS_TABLE).execute(&mut *conn).await?;
    let pending = check(conn, opts).await?;
    if let Some(p) = pending.iter().find(|p| p.refused()) {
        return Err(Error::Refused(format!(
            "migration {} ({}) is refused; nothing was applied:\n  {}",
            p.version,
            p.description,
            refusals(&p.report).join("\n  ")
        )));
    }
    let migrations = opts.source.load().await?;
    let mut done = Applied::default();
    for p in pending {
        let m = migrations
            .iter()
            .find(|m| m.version == p.version)
            .expect("pending migrations come from the source");
        // The protection set may grow as migrations add vector columns.
        let protection = protection(conn, &opts.protected).await?;
        let started = Instant::now();
        if m.no_tx {
            apply_without_transaction(conn, m, &p.report, &protection).await?;
        } else {
            let mut tx = conn.begin().await?;
            sqlx::raw_sql(&format!(
                "SET LOCAL lock_timeout = '{}ms'",
                opts.lock_timeout.as_millis()
            ))
            .execute(&mut *tx)
            .await?;
            let before = counts(&mut tx, &protection).await?;
            sqlx::raw_sql(m.sql.as_ref())
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    Error::Invalid(format!(
                        "migration {} ({}) failed and was rolled back; nothing of it is \
                         applied: {e}",
                        m.version, m.description
                    ))
                })?;
            let after = counts(&mut tx, &protection).await?;
            let drops = unconsented_drops(&before, &after, &p.report);
            if !drops.is_empty() {
                tx.rollback().await?;
                return Err(Error::Tripwire(tripwire_message(m, &drops)));
            }
            record(&mut tx, m, &p.report, started.elapsed()).await?;
            tx.commit().await?;
        }
        done.warnings.extend(
            warnings(&p.report)
                .into_iter()
                .map(|w| format!("migration {} ({}): {w}", m.version, m.description)),
        );
        done.versions.push((m.version, m.description.to_string()));
    }
    Ok(done)
}

fn tripwire_message(m: &Migration, drops: &[(String, i64, i64)]) -> String {
    let lines: Vec<String> = drops
        .iter()
        .map(|(object, before, after)| format!("  {object}: {before} before, {after} after"))
        .collect();
    format!(
        "migration {} ({}) was rolled back: it removed data no consent line allows\n{}\n\
         if this is intended, add `-- projsync: allow-destructive <object> because <reason>` \
         for each object above",
        m.version,
        m.description,
        lines.join("\n")
    )
}

/// `CREATE INDEX CONCURRENTLY` and the like: no transaction to roll back,
/// but the counts before and after are still taken and reported.
async fn apply_without_transaction(
    conn: &mut PgConnection,
    m: &Migration,
    report: &Report,
    protection: &Protection,
) -> Result<()> {
    let started = Instant::now();
    let before = counts(conn, protection).await?;
    // One statement at a time, as the linter read them: several in one
    // query string would run as one implicit transaction, in which
    // `CREATE INDEX CONCURRENTLY` (the reason for such a migration) fails.
    for statement in &report.statements {
        sqlx::raw_sql(&statement.sql)
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                Error::Invalid(format!(
                    "migration {} ({}) runs outside a transaction and failed at line {}: {e}; \
                     the statements before it are applied: check the schema (projsync \
                     migrate --verify) before running it again",
                    m.version, m.description, statement.line
                ))
            })?;
    }
    let after = counts(conn, protection).await?;
    let drops = unconsented_drops(&before, &after, report);
    if !drops.is_empty() {
        return Err(Error::Tripwire(format!(
            "{}\n(it ran outside a transaction and could not be rolled back; it is not \
             recorded as applied)",
            tripwire_message(m, &drops)
        )));
    }
    let mut tx = conn.begin().await?;
    record(&mut tx, m, report, started.elapsed()).await?;
    tx.commit().await?;
    Ok(())
}

/// The ledger row (sqlx's format) and the consents it carried.
async fn record(
    conn: &mut PgConnection,
    m: &Migration,
    report: &Report,
    elapsed: Duration,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, $2, TRUE, $3, $4)",
    )
    .bind(m.version)
    .bind(m.description.as_ref())
    .bind(m.checksum.as_ref())
    .bind(elapsed.as_nanos() as i64)
    .execute(&mut *conn)
    .await?;
    for c in &report.consents {
        sqlx::query(
            "INSERT INTO projsync_migration_consents (version, checksum, object, reason, line) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(m.version)
        .bind(m.checksum.as_ref())
        .bind(&c.object)
        .bind(&c.reason)
        .bind(c.line as i32)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The consents recorded so far: (version, object, reason).
pub async fn consents(conn: &mut PgConnection) -> Result<Vec<(i64, String, String)>> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('projsync_migration_consents') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT version, object, reason FROM projsync_migration_consents ORDER BY version, object",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get("version"), r.get("object"), r.get("reason")))
        .collect())
}

/// What a report refuses (file-level errors and refused statements), one
/// line each.
fn refusals(report: &Report) -> Vec<String> {
    lines(&report.errors, report, |v| match v {
        Verdict::Refused(why) => Some(why),
        _ => None,
    })
}

/// What a report warns about, one line each.
fn warnings(report: &Report) -> Vec<String> {
    lines(&report.warnings, report, |v| match v {
        Verdict::Warning(w) => Some(w),
        _ => None,
    })
}

/// File-level lines, then the statements' verdicts that `pick` keeps.
fn lines(
    file_level: &[(usize, String)],
    report: &Report,
    pick: impl Fn(&Verdict) -> Option<&String>,
) -> Vec<String> {
    let mut out: Vec<String> = file_level
        .iter()
        .map(|(line, text)| format!("line {line}: {text}"))
        .collect();
    for s in &report.statements {
        out.extend(
            s.verdicts
                .iter()
                .filter_map(&pick)
                .map(|text| format!("line {}: {}: {text}", s.line, s.kind)),
        );
    }
    out
}

/// The verdict lines of `--check`.
pub fn render(pending: &[Pending]) -> String {
    let mut out = String::new();
    if pending.is_empty() {
        out.push_str("no pending migrations\n");
    }
    for p in pending {
        out.push_str(&format!(
            "migration {} ({}){}: {}\n",
            p.version,
            p.description,
            if p.no_tx { ", no transaction" } else { "" },
            if p.refused() { "REFUSED" } else { "ok" }
        ));
        for line in p.report.to_string().lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
