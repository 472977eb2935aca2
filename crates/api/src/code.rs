//! What code analysis found, read back: a project's symbols, who uses one,
//! and what a file depends on and what depends on it. Everything comes
//! from the active state (the last successful sync); import targets are
//! resolved against the active files when read.

use crate::auth::Scoped;
use crate::page::{self, Paged};
use crate::routes::project_id;
use crate::{ApiError, AppState};
use axum::extract::{Path, Query};
use axum::http::Uri;
use axum::Json;
use projsync_domain::ProjectId;
use projsync_store::{SymbolFilter, SymbolRecord};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};

/// The symbol kinds analysis writes (`?kind=`).
pub const SYMBOL_KINDS: &[&str] = &[
    "function",
    "method",
    "type",
    "trait",
    "interface",
    "class",
    "enum",
    "const",
    "module",
];

/// Longest `?q=` accepted, in characters.
const MAX_QUERY_CHARS: usize = 200;

/// Files read to find references, at most: the symbol's own file and the
/// files whose imports resolve to it.
const MAX_REFERENCING_FILES: i64 = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SymbolsQuery {
    q: Option<String>,
    kind: Option<String>,
    path_prefix: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /projects/{id}/symbols`: active symbols by qualified name, a page
/// at a time.
pub(crate) async fn list_symbols(
    Scoped(state): Scoped,
    Path(id): Path<String>,
    uri: Uri,
    q: Result<Query<SymbolsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Paged<SymbolRecord>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let id = project_id(&id)?;
    let limit = page::limit(q.limit, 100, state.limits.max_page_size)?;
    let after = page::decode::<page::Symbols>(q.cursor.as_deref())?;
    let filter = symbol_filter(q.q, q.kind, q.path_prefix)?;
    let found = symbols(&state, id, &filter, after.as_deref(), limit).await?;
    let next = found.next.as_ref().map(page::encode::<page::Symbols>);
    Ok(Paged::new(&uri, found.items, next))
}

/// A symbol listing's filters, checked: `kind` one of [`SYMBOL_KINDS`],
/// `q` and `path_prefix` without NUL and at most 200 characters (empty:
/// no filter).
pub fn symbol_filter(
    q: Option<String>,
    kind: Option<String>,
    path_prefix: Option<String>,
) -> Result<SymbolFilter, ApiError> {
    if let Some(kind) = kind.as_deref() {
        if !SYMBOL_KINDS.contains(&kind) {
            return Err(ApiError::Invalid(format!(
                "kind must be one of {}, got `{}`",
                SYMBOL_KINDS.join(", "),
                kind.escape_debug()
            )));
        }
    }
    let text = |name: &str, v: Option<String>| -> Result<Option<String>, ApiError> {
        match v {
            Some(v) if v.contains('\0') => Err(ApiError::Invalid(format!(
                "{name} must not contain NUL bytes"
            ))),
            Some(v) if v.chars().count() > MAX_QUERY_CHARS => Err(ApiError::Invalid(format!(
                "{name} is longer than {MAX_QUERY_CHARS} characters"
            ))),
            Some(v) if v.is_empty() => Ok(None),
            v => Ok(v),
        }
    };
    Ok(SymbolFilter {
        q: text("q", q)?,
        kind,
        path_prefix: text("path_prefix", path_prefix)?,
    })
}

/// A page of the project's active symbols by qualified name, after `after`.
pub async fn symbols(
    state: &AppState,
    id: ProjectId,
    filter: &SymbolFilter,
    after: Option<&str>,
    limit: i64,
) -> Result<projsync_store::Page<SymbolRecord, String>, ApiError> {
    state.store.project(id).await?;
    Ok(state.store.symbols_page(id, filter, after, limit).await?)
}

/// Who uses a symbol.
#[derive(Debug, Serialize)]
pub struct References {
    pub symbol: SymbolRecord,
    /// In path and line order.
    pub references: Vec<Reference>,
    /// More references were found than `limit`.
    pub truncated: bool,
}

/// One line that names the symbol.
#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    pub path: String,
    pub line: u32,
    /// `import`: the line imports the symbol's file; `use`: any other line.
    pub kind: &'static str,
    /// The innermost symbol the line is in, if any.
    pub in_symbol: Option<String>,
    /// The line, trimmed, at most 300 characters.
    pub text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReferencesQuery {
    limit: Option<i64>,
}

/// `GET /projects/{id}/symbols/{qualified_name}/references`: the lines
/// that name the symbol in its own file (outside its definition) and in
/// the files whose imports resolve to its file.
pub(crate) async fn symbol_references(
    Scoped(state): Scoped,
    Path((id, qualified_name)): Path<(String, String)>,
    q: Result<Query<ReferencesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<References>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let id = project_id(&id)?;
    let limit = page::limit(q.limit, 100, state.limits.max_page_size)? as usize;
    Ok(Json(references(&state, id, &qualified_name, limit).await?))
}

/// The lines that name the symbol `qualified_name` in its own file
/// (outside its definition) and in the files whose imports resolve to
/// its file, at most `limit`.
pub async fn references(
    state: &AppState,
    id: ProjectId,
    qualified_name: &str,
    limit: usize,
) -> Result<References, ApiError> {
    if qualified_name.contains('\0') {
        return Err(ApiError::Invalid(
            "the qualified name must not contain NUL bytes".into(),
        ));
    }
    state.store.project(id).await?;
    let Some((symbol, _)) = state.store.symbol(id, qualified_name).await? else {
        return Err(ApiError::NotFound(format!(
            "no active symbol `{}` in this project; qualified names are `path#Outer::name` \
             (percent-encode `/` and `#` in the URL), as GET /api/v1/projects/{id}/symbols \
             lists them",
            qualified_name.escape_debug()
        )));
    };
    let (_, inbound) = state
        .store
        .dependencies(id, &symbol.path, MAX_REFERENCING_FILES)
        .await?;
    let import_lines: HashSet<(&str, u32)> = inbound
        .iter()
        .map(|d| (d.from_path.as_str(), d.line))
        .collect();
    let files: Vec<String> = std::iter::once(symbol.path.clone())
        .chain(inbound.iter().map(|d| d.from_path.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (contents, symbols) = tokio::try_join!(
        state.store.active_files(id, &files),
        state.store.symbols_in(id, &files),
    )?;
    let mut references = Vec::new();
    for (path, content) in &contents {
        for (i, line) in content.lines().enumerate() {
            let n = i as u32 + 1;
            let own = *path == symbol.path
                && (symbol.meta.start_line..=symbol.meta.end_line).contains(&n);
            if own || is_comment(line) || !names(line, &symbol.meta.name) {
                continue;
            }
            let in_symbol = symbols
                .iter()
                .filter(|s| s.path == *path && s.qualified_name != symbol.qualified_name)
                .filter(|s| (s.meta.start_line..=s.meta.end_line).contains(&n))
                .min_by_key(|s| s.meta.end_line - s.meta.start_line)
                .map(|s| s.qualified_name.clone());
            references.push(Reference {
                path: path.clone(),
                line: n,
                kind: if import_lines.contains(&(path.as_str(), n)) {
                    "import"
                } else {
                    "use"
                },
                in_symbol,
                text: line.trim().chars().take(300).collect(),
            });
        }
    }
    references.sort();
    let truncated = references.len() > limit;
    references.truncate(limit);
    Ok(References {
        symbol,
        references,
        truncated,
    })
}

/// Whether `line` holds `name` as a whole identifier.
fn names(line: &str, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    line.match_indices(name).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + name.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// Whether the line is a comment as a whole (prose that happens to hold
/// the name, not a use): `//`, `/*`, ` * `, or `# ` of Python and shells
/// (not `#[attr]`, `#include`).
fn is_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("//")
        || t.starts_with("/*")
        || t.starts_with("* ")
        || t.starts_with("*/")
        || t == "*"
        || t == "#"
        || t.starts_with("# ")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DependenciesQuery {
    path: String,
    limit: Option<i64>,
}

/// What a file depends on and what depends on it.
#[derive(Debug, Serialize)]
pub(crate) struct Dependencies {
    pub path: String,
    /// Its imports in line order, each with its target among the active
    /// files (`null`: a package from elsewhere, or a file that is not there).
    pub depends_on: Vec<Import>,
    /// The imports of other files whose target is this file.
    pub depended_on_by: Vec<Importer>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Import {
    pub raw: String,
    pub line: u32,
    pub target: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Importer {
    pub path: String,
    pub raw: String,
    pub line: u32,
}

/// `GET /projects/{id}/dependencies?path=`.
pub(crate) async fn dependencies(
    Scoped(state): Scoped,
    Path(id): Path<String>,
    q: Result<Query<DependenciesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Dependencies>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let id = project_id(&id)?;
    let limit = page::limit(q.limit, 1000, state.limits.max_page_size)?;
    if q.path.contains('\0') {
        return Err(ApiError::Invalid("path must not contain NUL bytes".into()));
    }
    state.store.project(id).await?;
    // A file of the knowledge base: a 404 says so rather than an empty
    // answer for a path that is not there.
    state.store.active_entry(id, &q.path).await?;
    let (out, inbound) = state.store.dependencies(id, &q.path, limit).await?;
    Ok(Json(Dependencies {
        path: q.path,
        depends_on: out
            .into_iter()
            .map(|d| Import {
                raw: d.raw,
                line: d.line,
                target: d.target,
            })
            .collect(),
        depended_on_by: inbound
            .into_iter()
            .map(|d| Importer {
                path: d.from_path,
                raw: d.raw,
                line: d.line,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::{is_comment, names};

    #[test]
    fn comment_lines_are_prose() {
        for line in [
            "/// The square.",
            "  // square",
            "/* square */",
            " * square",
            "# square",
        ] {
            assert!(is_comment(line), "{line}");
        }
        for line in [
            "#[inline]",
            "#include \"square.h\"",
            "square(x) // twice",
            "x * y",
        ] {
            assert!(!is_comment(line), "{line}");
        }
    }

    #[test]
    fn names_match_whole_identifiers_only() {
        assert!(names("    square(self.side)", "square"));
        assert!(names("use crate::util::square;", "square"));
        assert!(!names("let squared = 1;", "square"));
        assert!(!names("my_square(x)", "square"));
        assert!(!names("$square", "square"));
        assert!(names("a square, then square", "square"));
        assert!(!names("anything", ""));
        assert!(names("é square é", "square"));
    }
}
