//! The verdicts: per statement, per file, and how `projsync migrate --check`
//! prints them.

use std::collections::BTreeSet;
use std::fmt;

/// A consent line: `-- projsync: allow-destructive <table>[.<column>] because <reason>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// `table` or `table.column`, normalized (lower case, no `public.`).
    pub object: String,
    pub reason: String,
    pub line: usize,
}

/// What the guard says about one thing a statement does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Safe,
    /// Allowed, but worth a look (locks, rewrites, SQL the guard cannot read).
    Warning(String),
    /// Destroys a protected object, and a consent line covers it.
    Consented {
        /// The object destroyed (`table`, `table.column`, or `vector`).
        object: String,
        reason: String,
    },
    /// Destroys a protected object without consent: the migration must not run.
    Refused(String),
}

/// One statement of a migration and the guard's verdicts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// 1-based line of the statement's first token.
    pub line: usize,
    /// What it is, e.g. `ALTER TABLE`, `DROP EXTENSION`, `DO`.
    pub kind: String,
    /// The statement's text, trimmed, without its `;`.
    pub sql: String,
    /// Empty when the statement is safe.
    pub verdicts: Vec<Verdict>,
}

impl Statement {
    pub fn refused(&self) -> bool {
        self.verdicts
            .iter()
            .any(|v| matches!(v, Verdict::Refused(_)))
    }
}

/// The guard's verdict on one migration file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Every well-formed consent line, for the runner to record.
    pub consents: Vec<Consent>,
    pub statements: Vec<Statement>,
    /// (line, message): SQL the parser cannot read, malformed consent lines.
    /// Any error refuses the file.
    pub errors: Vec<(usize, String)>,
    /// (line, message): file-level warnings, such as a consent that matches
    /// no destructive statement.
    pub warnings: Vec<(usize, String)>,
}

impl Report {
    /// Whether the migration must not run: a statement is refused, a
    /// statement cannot be read, or a consent line is malformed.
    pub fn refused(&self) -> bool {
        !self.errors.is_empty() || self.statements.iter().any(Statement::refused)
    }

    /// The objects (`table`, `table.column`, `vector`) this migration
    /// destroys with consent, for the runner's tripwire.
    pub fn consented_objects(&self) -> BTreeSet<&str> {
        self.consented().map(|(_, object, _)| object).collect()
    }

    /// The tables whose rows or columns this migration may destroy with
    /// consent (the table part of [`Report::consented_objects`]; `vector`
    /// stands for the extension). A protected table outside this set must
    /// not lose a row.
    pub fn consented_tables(&self) -> BTreeSet<&str> {
        self.consented_objects()
            .into_iter()
            .map(|o| o.split_once('.').map_or(o, |(table, _)| table))
            .collect()
    }

    /// Each consented destruction: (statement, object, reason).
    pub fn consented(&self) -> impl Iterator<Item = (&Statement, &str, &str)> {
        self.statements.iter().flat_map(|s| {
            s.verdicts.iter().filter_map(move |v| match v {
                Verdict::Consented { object, reason } => {
                    Some((s, object.as_str(), reason.as_str()))
                }
                _ => None,
            })
        })
    }

    /// How many warnings, on statements and on the file.
    pub fn warning_count(&self) -> usize {
        self.warnings.len()
            + self
                .statements
                .iter()
                .flat_map(|s| &s.verdicts)
                .filter(|v| matches!(v, Verdict::Warning(_)))
                .count()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Safe => f.write_str("safe"),
            Verdict::Warning(m) => write!(f, "warning: {m}"),
            Verdict::Consented { object, reason } => {
                write!(f, "consented: destroys {object} because {reason}")
            }
            Verdict::Refused(m) => write!(f, "refused: {m}"),
        }
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}  {}  ", self.line, self.kind)?;
        if self.verdicts.is_empty() {
            return f.write_str("safe");
        }
        for (i, v) in self.verdicts.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

/// One line per statement (`line N  KIND  verdict…`), with the consent
/// lines, errors and file warnings in line order, then a summary line.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines: Vec<(usize, String)> = Vec::new();
        lines.extend(self.statements.iter().map(|s| (s.line, s.to_string())));
        lines.extend(self.consents.iter().map(|c| {
            (
                c.line,
                format!(
                    "line {}  consent: {} because {}",
                    c.line, c.object, c.reason
                ),
            )
        }));
        lines.extend(
            self.errors
                .iter()
                .map(|(l, m)| (*l, format!("line {l}  error: {m}"))),
        );
        lines.extend(
            self.warnings
                .iter()
                .map(|(l, m)| (*l, format!("line {l}  warning: {m}"))),
        );
        lines.sort_by_key(|(line, _)| *line);
        for (_, text) in &lines {
            writeln!(f, "{text}")?;
        }
        let refused = self.statements.iter().filter(|s| s.refused()).count();
        let consented = self.consented().count();
        write!(
            f,
            "{}: {} statements, {} refused, {} consented, {} warnings, {} errors",
            if self.refused() { "refused" } else { "ok" },
            self.statements.len(),
            refused,
            consented,
            self.warning_count(),
            self.errors.len()
        )
    }
}
