//! What the guard protects: tables, columns, and which protected objects
//! depend on an object (so a `CASCADE` can be judged).

use std::collections::{BTreeMap, BTreeSet};

/// The tables protected by default: memory entries and their chunks, the
/// vector cache, the sync history, repositories and projects. This is the one
/// list; configuration and the live catalog (its vector columns) add to it.
pub const DEFAULT_PROTECTED_TABLES: &[&str] = &[
    "memory_entries",
    "memory_chunks",
    "embeddings",
    "project_syncs",
    "sync_steps",
    "repositories",
    "projects",
];

/// The pgvector types: a column of one of them is protected wherever it is.
pub const VECTOR_TYPES: &[&str] = &["vector", "halfvec", "sparsevec"];

/// The set of protected objects a migration is judged against.
///
/// A table that holds a protected column is protected as a whole: dropping,
/// truncating or emptying the table destroys the column too, and the tables
/// that hold vectors are protected by rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Protection {
    tables: BTreeSet<String>,
    columns: BTreeSet<(String, String)>,
    dependents: BTreeMap<String, Vec<String>>,
}

impl Protection {
    /// The default protected tables ([`DEFAULT_PROTECTED_TABLES`]).
    pub fn defaults() -> Self {
        DEFAULT_PROTECTED_TABLES
            .iter()
            .fold(Self::default(), |p, t| p.with_table(t))
    }

    /// Protects a table (name compared case-insensitively, `public.` optional).
    pub fn with_table(mut self, table: &str) -> Self {
        self.protect_table(table);
        self
    }

    /// Protects a column, and with it its table.
    pub fn with_column(mut self, table: &str, column: &str) -> Self {
        self.protect_column(table, column);
        self
    }

    /// Protects `table` or `table.column`, as written in the configuration.
    pub fn with_object(self, spec: &str) -> Result<Self, String> {
        Ok(match parse_object(spec)? {
            (table, None) => self.with_table(&table),
            (table, Some(column)) => self.with_column(&table, &column),
        })
    }

    /// Records which protected objects (`table` or `table.column`) depend on
    /// `object`, so that a `CASCADE` on it can be judged. An object with no
    /// entry has unknown dependents, and a `CASCADE` on it is refused; an empty
    /// list says that nothing protected depends on it.
    pub fn with_dependents(mut self, object: &str, dependents: Vec<String>) -> Self {
        let dependents = dependents.iter().map(|d| normalize(d)).collect();
        self.dependents.insert(normalize(object), dependents);
        self
    }

    /// The protected tables, for the runner's row counts.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.tables.iter().map(String::as_str)
    }

    /// The protected columns, as (table, column).
    pub fn columns(&self) -> impl Iterator<Item = (&str, &str)> {
        self.columns.iter().map(|(t, c)| (t.as_str(), c.as_str()))
    }

    pub(crate) fn protect_table(&mut self, table: &str) {
        self.tables.insert(normalize(table));
    }

    pub(crate) fn protect_column(&mut self, table: &str, column: &str) {
        let table = normalize(table);
        self.columns.insert((table.clone(), column.to_lowercase()));
        self.tables.insert(table);
    }

    /// Whether `table` (already normalized) is protected.
    pub fn protects_table(&self, table: &str) -> bool {
        self.tables.contains(table)
    }

    pub(crate) fn protects_column_itself(&self, table: &str, column: &str) -> bool {
        self.columns
            .contains(&(table.to_string(), column.to_lowercase()))
    }

    /// The protected objects that depend on `object`, or `None` when unknown.
    pub(crate) fn dependents_of(&self, object: &str) -> Option<&[String]> {
        self.dependents.get(object).map(Vec::as_slice)
    }
}

/// Lower case, without an optional `public.` schema.
pub(crate) fn normalize(name: &str) -> String {
    let name = name.trim().to_lowercase();
    match name.strip_prefix("public.") {
        Some(rest) if !rest.is_empty() => rest.to_string(),
        _ => name,
    }
}

/// Parses `table` or `table.column` (an optional `public.` first), as written
/// in a consent line or the configuration.
pub(crate) fn parse_object(spec: &str) -> Result<(String, Option<String>), String> {
    let normalized = normalize(spec);
    let parts: Vec<&str> = normalized.split('.').collect();
    let valid = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
    };
    match parts.as_slice() {
        [t] if valid(t) => Ok((t.to_string(), None)),
        [t, c] if valid(t) && valid(c) => Ok((t.to_string(), Some(c.to_string()))),
        _ => Err(format!(
            "`{}` is not a protected object: write `table` or `table.column`",
            spec.trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_one_list() {
        let p = Protection::defaults();
        let tables: Vec<&str> = p.tables().collect();
        let mut expected = DEFAULT_PROTECTED_TABLES.to_vec();
        expected.sort_unstable();
        assert_eq!(tables, expected);
    }

    #[test]
    fn names_are_case_insensitive_and_public_is_optional() {
        let p = Protection::default()
            .with_table("public.Notes")
            .with_column("PUBLIC.Docs", "Vec");
        assert!(p.protects_table("notes"));
        assert!(
            p.protects_table("docs"),
            "a protected column protects its table"
        );
        assert!(p.protects_column_itself("docs", "vec"));
        assert_eq!(p.columns().collect::<Vec<_>>(), vec![("docs", "vec")]);
    }

    #[test]
    fn objects_from_configuration() {
        let p = Protection::default()
            .with_object("notes")
            .unwrap()
            .with_object("public.docs.body")
            .unwrap();
        assert!(p.protects_table("notes"));
        assert!(p.protects_column_itself("docs", "body"));
        for bad in ["", "a.b.c", "a.", ".b", "a b", "a;drop"] {
            assert!(Protection::default().with_object(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dependents_are_normalized() {
        let p = Protection::default()
            .with_dependents("public.Users", vec!["public.Projects".into()])
            .with_dependents("tags", vec![]);
        assert_eq!(
            p.dependents_of("users"),
            Some(&["projects".to_string()][..])
        );
        assert_eq!(p.dependents_of("tags"), Some(&[][..]));
        assert_eq!(p.dependents_of("other"), None);
    }
}
