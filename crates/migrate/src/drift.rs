//! Drift: does the live schema still equal what the applied migrations
//! produce? A difference means someone changed the schema by hand or with
//! a schema-push tool, which is how the 382 vectors were lost.
//!
//! The expected schema is built by applying the same applied migrations to
//! a scratch database, then both catalogs are read the same way and
//! compared: tables, columns (types, nullability, defaults), indexes,
//! constraints, extensions, row-level security and its policies.

use crate::{Error, Result, Source};
use projsync_store::with_database;
use sqlx::{Connection, PgConnection};
use std::collections::BTreeSet;

/// One difference between the live schema and the migrations' schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// In the live database only.
    Unexpected(String),
    /// In the migrations' schema only.
    Missing(String),
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Unexpected(s) => write!(f, "+ {s}   (live only: not made by a migration)"),
            Difference::Missing(s) => write!(f, "- {s}   (made by the migrations, missing live)"),
        }
    }
}

/// What is not made by the migrations themselves: one HNSW index per
/// embedding model, created at run time (`Store::ensure_embedding_index`),
/// and the ledgers of the migrator and the guard.
fn runtime_object(line: &str) -> bool {
    line.contains("embeddings_hnsw_")
        || line.contains("_sqlx_migrations")
        || line.contains("projsync_migration_consents")
}

/// The schema of `public` as sorted, comparable lines.
async fn snapshot(conn: &mut PgConnection) -> Result<BTreeSet<String>> {
    let queries = [
        // tables, with row-level security
        "SELECT format('table %s rls=%s force=%s', c.relname, c.relrowsecurity, c.relforcerowsecurity) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')",
        // columns
        "SELECT format('column %s.%s %s%s%s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod), \
                CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, \
                coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')) \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped",
        // indexes
        "SELECT format('index %s', indexdef) FROM pg_indexes WHERE schemaname = 'public'",
        // constraints
        "SELECT format('constraint %s.%s %s', c.relname, k.conname, pg_get_constraintdef(k.oid)) \
         FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'",
        // extensions
        "SELECT format('extension %s', extname) FROM pg_extension",
        // policies
        "SELECT format('policy %s.%s %s %s using (%s) check (%s)', tablename, policyname, permissive, cmd, \
                coalesce(qual, ''), coalesce(with_check, '')) FROM pg_policies WHERE schemaname = 'public'",
        // functions
        "SELECT format('function %s(%s) returns %s %s', p.proname, pg_get_function_identity_arguments(p.oid), \
                pg_get_function_result(p.oid), CASE WHEN p.prosecdef THEN 'security definer' ELSE '' END) \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' \
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')",
    ];
    let mut out = BTreeSet::new();
    for q in queries {
        let rows: Vec<String> = sqlx::query_scalar(q).fetch_all(&mut *conn).await?;
        out.extend(rows.into_iter().filter(|l| !runtime_object(l)));
    }
    Ok(out)
}

/// Compare the live schema of the database at `admin_url` with the schema
/// its applied migrations produce (built in a scratch database on the same
/// server, dropped afterwards). Empty: no drift.
pub async fn verify(admin_url: &str, source: &Source) -> Result<Vec<Difference>> {
    let mut live = PgConnection::connect(admin_url).await?;
    let applied: Vec<i64> = match sqlx::query_scalar::<_, i64>(
        "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(&mut live)
    .await
    {
        Ok(v) => v,
        Err(_) => {
            return Err(Error::Invalid(
                "this database has no applied migrations; run `projsync migrate` first".into(),
            ))
        }
    };
    let migrations = source.load().await?;
    let scratch = format!("projsync_verify_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(&format!("CREATE DATABASE {scratch}"))
        .execute(&mut live)
        .await?;
    let built = async {
        let mut conn = PgConnection::connect(&with_database(admin_url, &scratch)).await?;
        for version in &applied {
            let m = migrations
                .iter()
                .find(|m| m.version == *version)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "migration {version} is applied but missing from the source"
                    ))
                })?;
            if m.no_tx {
                // Statement by statement, as `projsync migrate` applies it.
                let report = projsync_migrate_lint::lint(
                    m.sql.as_ref(),
                    &projsync_migrate_lint::Protection::defaults(),
                );
                for statement in &report.statements {
                    sqlx::raw_sql(&statement.sql).execute(&mut conn).await?;
                }
            } else {
                sqlx::raw_sql(m.sql.as_ref()).execute(&mut conn).await?;
            }
        }
        let expected = snapshot(&mut conn).await;
        conn.close().await.ok();
        expected
    }
    .await;
    let dropped = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {scratch} WITH (FORCE)"))
        .execute(&mut live)
        .await;
    let expected = built?;
    dropped?;
    let actual = snapshot(&mut live).await?;
    let mut out: Vec<Difference> = actual
        .difference(&expected)
        .map(|s| Difference::Unexpected(s.clone()))
        .collect();
    out.extend(
        expected
            .difference(&actual)
            .map(|s| Difference::Missing(s.clone())),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_urls_keep_user_host_and_options() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/projsync?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
