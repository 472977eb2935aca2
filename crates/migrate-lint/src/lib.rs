//! The migration guard's linter: reads migration SQL with the real
//! PostgreSQL parser (libpg_query) and judges each statement against the
//! protected objects — refused, consented, warned or safe.
//!
//! It owns the rules (one file each under `rules/`), the default list of
//! protected tables ([`DEFAULT_PROTECTED_TABLES`]), the consent lines
//! (`-- projsync: allow-destructive <table>[.<column>] because <reason>`) and
//! the `--check` rendering. It must not know about the database: the runner
//! (`projsync migrate`) passes what only the live catalog knows — the vector
//! columns and which objects depend on which — through [`Protection`], and
//! records the consents and runs the row-count tripwire itself.

mod consent;
mod protection;
mod report;
mod rules;
mod source;

pub use protection::{Protection, DEFAULT_PROTECTED_TABLES, VECTOR_TYPES};
pub use report::{Consent, Report, Statement, Verdict};
pub use rules::locks::VOLATILE_FUNCTIONS;

use rules::{Ctx, Finding};
use source::{line_of, Source};

/// Judges a migration file. Never fails: what cannot be read is an error in
/// the report, and an error refuses the file.
///
/// ```
/// use projsync_migrate_lint::{lint, Protection, Verdict};
///
/// let sql = "-- projsync: allow-destructive embeddings.embedding because re-embedded in 0007\n\
///            ALTER TABLE embeddings DROP COLUMN embedding;\n\
///            DELETE FROM memory_entries;";
/// let report = lint(sql, &Protection::defaults());
/// assert!(report.refused()); // the DELETE has no WHERE
/// assert!(matches!(&report.statements[0].verdicts[..], [Verdict::Consented { .. }]));
/// assert_eq!(report.consents[0].object, "embeddings.embedding");
/// println!("{report}"); // what `projsync migrate --check` prints
/// ```
pub fn lint(sql: &str, protection: &Protection) -> Report {
    let source = Source::read(sql);
    let (consents, consent_errors) = consent::consents(&source);
    let mut used = vec![false; consents.len()];
    let mut ctx = Ctx::new(sql, protection.clone());

    let mut statements = Vec::with_capacity(source.statements.len());
    for parsed in &source.statements {
        let text = source.text(parsed.start, parsed.end);
        let findings = rules::check(&parsed.node, text, Some(parsed.base), &mut ctx, 0);
        let mut verdicts: Vec<Verdict> = Vec::with_capacity(findings.len());
        for finding in findings {
            let verdict = resolve(finding, &consents, &mut used);
            if !verdicts.contains(&verdict) {
                verdicts.push(verdict);
            }
        }
        statements.push(Statement {
            line: line_of(sql, parsed.start),
            kind: rules::kind(&parsed.node),
            sql: text.to_string(),
            verdicts,
        });
    }

    let mut errors: Vec<(usize, String)> = source
        .errors
        .iter()
        .map(|(at, message)| (line_of(sql, *at), message.clone()))
        .chain(consent_errors)
        .collect();
    errors.sort_by_key(|(line, _)| *line);

    let warnings = consents
        .iter()
        .zip(&used)
        .filter(|(_, used)| !**used)
        .map(|(c, _)| {
            (
                c.line,
                format!(
                    "the consent for {} matches no destructive statement: remove it, or check the object's name",
                    c.object
                ),
            )
        })
        .collect();

    Report {
        consents,
        statements,
        errors,
        warnings,
    }
}

/// A destruction is consented when a consent names its object, or the
/// table of its column; otherwise it is refused, with the way to consent.
fn resolve(finding: Finding, consents: &[Consent], used: &mut [bool]) -> Verdict {
    match finding {
        Finding::Warning(m) => Verdict::Warning(m),
        Finding::Refused(m) => Verdict::Refused(m),
        Finding::Destroys {
            target,
            what,
            instead,
        } => {
            let table = target.split_once('.').map(|(t, _)| t);
            let found = consents
                .iter()
                .position(|c| c.object == target)
                .or_else(|| {
                    consents
                        .iter()
                        .position(|c| Some(c.object.as_str()) == table)
                });
            match found {
                Some(i) => {
                    used[i] = true;
                    Verdict::Consented {
                        object: target,
                        reason: consents[i].reason.clone(),
                    }
                }
                None => {
                    let instead = if instead.is_empty() {
                        String::new()
                    } else {
                        format!("; {instead}")
                    };
                    Verdict::Refused(format!(
                        "{what}{instead}; if this is intended, after a backfill plan, add \
                         `-- projsync: allow-destructive {target} because <reason>`"
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An expected verdict: messages compare by prefix, so a test names the
    /// part it is about.
    #[derive(Debug)]
    pub(crate) enum V {
        Refused(String),
        Warning(String),
        Consented(String, String),
    }

    impl V {
        pub fn refused(m: &str) -> Self {
            V::Refused(m.into())
        }
        pub fn warning(m: &str) -> Self {
            V::Warning(m.into())
        }
        pub fn consented(object: &str, reason: &str) -> Self {
            V::Consented(object.into(), reason.into())
        }
    }

    impl PartialEq for V {
        fn eq(&self, other: &Self) -> bool {
            let prefix = |a: &str, b: &str| a.starts_with(b) || b.starts_with(a);
            match (self, other) {
                (V::Refused(a), V::Refused(b)) | (V::Warning(a), V::Warning(b)) => prefix(a, b),
                (V::Consented(o1, r1), V::Consented(o2, r2)) => o1 == o2 && r1 == r2,
                _ => false,
            }
        }
    }

    /// The verdicts of all the statements of `sql`, with the default
    /// protection; the file must parse.
    pub(crate) fn verdicts(sql: &str) -> Vec<V> {
        verdicts_with(sql, &Protection::defaults())
    }

    pub(crate) fn verdicts_with(sql: &str, protection: &Protection) -> Vec<V> {
        let report = lint(sql, protection);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        report
            .statements
            .iter()
            .flat_map(|s| &s.verdicts)
            .map(|v| match v {
                Verdict::Refused(m) => V::Refused(m.clone()),
                Verdict::Warning(m) => V::Warning(m.clone()),
                Verdict::Consented { object, reason } => {
                    V::Consented(object.clone(), reason.clone())
                }
                Verdict::Safe => panic!("Safe is never stored: no verdict means safe"),
            })
            .collect()
    }

    #[test]
    fn additive_statements_are_safe() {
        let sql = "-- no-transaction\n\
                   CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL, embedding vector(384));\n\
                   ALTER TABLE memory_entries ADD COLUMN summary text;\n\
                   ALTER TABLE projects ADD COLUMN archived_at timestamptz;\n\
                   CREATE INDEX CONCURRENTLY memory_entries_summary ON memory_entries (summary);\n\
                   CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS notes_body ON public.notes (body);\n\
                   COMMENT ON COLUMN notes.body IS 'markdown';\n\
                   INSERT INTO notes (body) VALUES ('hello');\n";
        let report = lint(sql, &Protection::defaults());
        assert!(!report.refused());
        assert_eq!(report.statements.len(), 7);
        for s in &report.statements {
            assert!(s.verdicts.is_empty(), "{s}");
        }
        assert_eq!(report.warning_count(), 0);
        assert!(report
            .to_string()
            .ends_with("ok: 7 statements, 0 refused, 0 consented, 0 warnings, 0 errors"));
    }

    #[test]
    fn the_issue_example() {
        let sql = "-- projsync: allow-destructive embeddings.embedding because re-embedded by the backfill in 0007\n\
                   ALTER TABLE embeddings DROP COLUMN embedding;\n\
                   DELETE FROM memory_entries;\n\
                   DELETE FROM memory_entries WHERE status = 'superseded';\n\
                   UPDATE embeddings SET embedding = NULL;\n";
        let report = lint(sql, &Protection::defaults());
        assert!(report.refused());
        assert_eq!(
            report.consents,
            vec![Consent {
                object: "embeddings.embedding".into(),
                reason: "re-embedded by the backfill in 0007".into(),
                line: 1
            }]
        );
        let lines: Vec<(usize, &str, bool)> = report
            .statements
            .iter()
            .map(|s| (s.line, s.kind.as_str(), s.refused()))
            .collect();
        assert_eq!(
            lines,
            vec![
                (2, "ALTER TABLE", false),
                (3, "DELETE", true),
                (4, "DELETE", false),
                (5, "UPDATE", false)
            ]
        );
        // The consent covers the column wherever it is destroyed.
        assert_eq!(report.consented().count(), 2);
        assert_eq!(
            report.consented_objects().into_iter().collect::<Vec<_>>(),
            vec!["embeddings.embedding"]
        );
        assert_eq!(
            report.consented_tables().into_iter().collect::<Vec<_>>(),
            vec!["embeddings"]
        );
        assert_eq!(report.statements[1].sql, "DELETE FROM memory_entries");
    }

    #[test]
    fn render_for_check() {
        let sql =
            "-- projsync: allow-destructive embeddings.embedding because re-embedded in 0007\n\
                   ALTER TABLE embeddings DROP COLUMN embedding;\n\
                   CREATE INDEX i ON memory_chunks (ordinal);\n\
                   TRUNCATE sync_steps;\n\
                   CREATE TABLE t (a int);\n\
                   -- projsync: allow-destructive projects because nothing\n\
                   SELECT * FORM t;\n";
        let rendered = lint(sql, &Protection::defaults()).to_string();
        let expected = "\
line 1  consent: embeddings.embedding because re-embedded in 0007
line 2  ALTER TABLE  consented: destroys embeddings.embedding because re-embedded in 0007
line 3  CREATE INDEX  warning: CREATE INDEX on the protected table memory_chunks blocks its writes while the index builds: use CREATE INDEX CONCURRENTLY in a migration with -- no-transaction
line 4  TRUNCATE  refused: truncates the protected table sync_steps: every row goes; if this is intended, after a backfill plan, add `-- projsync: allow-destructive sync_steps because <reason>`
line 5  CREATE TABLE  safe
line 6  consent: projects because nothing
line 6  warning: the consent for projects matches no destructive statement: remove it, or check the object's name
line 7  error: cannot parse this statement: syntax error at or near \"FORM\"
refused: 4 statements, 1 refused, 1 consented, 2 warnings, 1 errors";
        assert_eq!(rendered, expected);
    }

    #[test]
    fn a_malformed_consent_refuses_the_file() {
        let report = lint(
            "-- projsync: allow-destructive embeddings.embedding\nALTER TABLE embeddings DROP COLUMN embedding;",
            &Protection::defaults(),
        );
        assert!(report.refused());
        assert_eq!(report.errors.len(), 1);
        assert_eq!(report.errors[0].0, 1);
        assert!(report.consents.is_empty());
        assert!(report.statements[0].refused());
    }

    #[test]
    fn an_unparseable_statement_refuses_the_file_with_its_line() {
        let sql = "CREATE TABLE a (x int);\n-- é à ü: multibyte before the error\nALTER TABLE a\n    ADD COLUMN y int,\n    DROP COLUMNN x;\nCREATE TABLE b (x int);";
        let report = lint(sql, &Protection::defaults());
        assert!(report.refused());
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        assert_eq!(report.errors[0].0, 5);
        assert!(
            report.errors[0].1.contains("syntax error at or near \"x\""),
            "{}",
            report.errors[0].1
        );
        // The statements around it are still judged.
        assert_eq!(
            report.statements.iter().map(|s| s.line).collect::<Vec<_>>(),
            vec![1, 6]
        );

        let report = lint(
            "SELECT 1;\n\n-- ß\nSELECT 'never closed;\n",
            &Protection::defaults(),
        );
        assert!(report.refused());
        assert_eq!(report.errors[0].0, 4);
        assert!(report.errors[0].1.contains("unterminated quoted string"));
    }

    #[test]
    fn unused_consents_are_warned() {
        let report = lint(
            "-- projsync: allow-destructive embeddings.model because x\nALTER TABLE embeddings DROP COLUMN embedding;",
            &Protection::defaults(),
        );
        assert!(
            report.refused(),
            "a consent for another column does not cover this one"
        );
        assert_eq!(report.warnings.len(), 1);
        assert_eq!(report.warnings[0].0, 1);
        assert!(report.warnings[0]
            .1
            .contains("embeddings.model matches no destructive statement"));
    }

    #[test]
    fn quoted_identifiers_and_public_prefixes() {
        assert_eq!(
            verdicts(r#"ALTER TABLE "public"."Embeddings" DROP COLUMN "Embedding""#),
            vec![V::refused(
                "drops column embeddings.embedding of the protected table embeddings"
            )]
        );
        assert_eq!(
            verdicts("-- projsync: allow-destructive public.EMBEDDINGS.Embedding because case\nALTER TABLE public.embeddings DROP COLUMN embedding"),
            vec![V::consented("embeddings.embedding", "case")]
        );
        // Another schema is another table.
        assert_eq!(
            verdicts("DROP TABLE archive.embeddings; TRUNCATE archive.projects"),
            vec![]
        );
    }

    #[test]
    fn a_vector_column_created_in_the_file_is_protected_for_the_rest_of_it() {
        assert_eq!(
            verdicts("CREATE TABLE notes (id int, body text);\nALTER TABLE notes ADD COLUMN e vector(3);\nDELETE FROM notes;"),
            vec![V::refused("deletes every row of the protected table notes")]
        );
    }

    /// The repository's migrations, judged with the default protection.
    /// 0001–0005 were written before the guard: their verdicts are recorded
    /// here as documentation (what a new migration doing the same would get),
    /// and they must all parse.
    #[test]
    fn the_repository_migrations() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "sql"))
            .collect();
        files.sort();
        let mut seen = Vec::new();
        let mut mismatches = Vec::new();
        for path in &files {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let sql = std::fs::read_to_string(path).unwrap();
            let report = lint(&sql, &Protection::defaults());
            println!("== {name}\n{report}\n");
            assert!(
                report.errors.is_empty(),
                "{name} must parse: {:?}",
                report.errors
            );
            let judged: Vec<String> = report
                .statements
                .iter()
                .flat_map(|s| {
                    s.verdicts.iter().map(move |v| {
                        let tag = match v {
                            Verdict::Refused(_) => "refused",
                            Verdict::Warning(_) => "warning",
                            Verdict::Consented { .. } => "consented",
                            Verdict::Safe => "safe",
                        };
                        format!("{} {} {tag}", s.line, s.kind)
                    })
                })
                .collect();
            let expected: &[&str] = match name.as_str() {
                // Creates the ledger: indexes on tables it creates lock nothing.
                "0001_init.sql" => &[],
                // A CHECK added to project_syncs without NOT VALID.
                "0002_restore.sql" => &["6 ALTER TABLE warning"],
                // Two CHECKs without NOT VALID, and an index built without CONCURRENTLY.
                // (`UPDATE project_syncs SET last_pushed_at = created_at` sets no NULL: safe.)
                "0003_durability.sql" => &[
                    "17 ALTER TABLE warning",
                    "21 ALTER TABLE warning",
                    "25 CREATE INDEX warning",
                ],
                // An index on memory_entries, two CHECKs without NOT VALID.
                "0004_embeddings.sql" => &[
                    "33 CREATE INDEX warning",
                    "59 ALTER TABLE warning",
                    "73 ALTER TABLE warning",
                ],
                "0005_tenants.sql" => &[
                    // The DO block adds tenant_id through EXECUTE format(…): opaque (3 EXECUTEs).
                    "48 DO warning",
                    "48 DO warning",
                    "48 DO warning",
                    // UNIQUE and PRIMARY KEY built under ACCESS EXCLUSIVE.
                    "66 ALTER TABLE warning",
                    "71 ALTER TABLE warning",
                    "73 CREATE INDEX warning",
                    "74 CREATE INDEX warning",
                    // Renames repositories.credentials_ref, with its consent line.
                    "93 ALTER TABLE consented",
                    // A FOREIGN KEY without NOT VALID.
                    "101 ALTER TABLE warning",
                    // Row-level security through EXECUTE format(…) (3 EXECUTEs).
                    "142 DO warning",
                    "142 DO warning",
                    "142 DO warning",
                    // The embedding index is created by EXECUTE format(…) in a function.
                    "214 CREATE FUNCTION warning",
                ],
                other => {
                    // A migration written with the guard in place passes it.
                    assert!(!report.refused(), "{other} is refused:\n{report}");
                    seen.push(name.clone());
                    continue;
                }
            };
            if judged != expected {
                mismatches.push(format!("{name}: {judged:#?}\n{report}"));
            }
            seen.push(name);
        }
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
        assert!(seen.len() >= 5, "{seen:?}");
    }
}
