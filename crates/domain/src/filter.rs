//! Which files become memory entries. Every file that does not gets a
//! `SkipReason`; checks that need no content run before any fetch.

use crate::plan::SkipReason;
use crate::source::EntryKind;
use globset::{Glob, GlobSet, GlobSetBuilder};

/// Default size limit for an imported file.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Lock files, vendored and generated code: rarely useful to an AI
/// knowledge base and often huge. Projects can add their own patterns.
pub const DEFAULT_IGNORES: &[&str] = &[
    "node_modules/",
    "vendor/",
    ".git/",
    "*.min.js",
    "*.min.css",
    "*.map",
    "Cargo.lock",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "poetry.lock",
    "Pipfile.lock",
    "Gemfile.lock",
    "composer.lock",
    "go.sum",
];

/// How many leading bytes are examined for a NUL byte, as Git does.
const BINARY_SNIFF_BYTES: usize = 8000;

#[derive(Debug, Clone)]
pub struct Filter {
    max_file_bytes: u64,
    ignores: GlobSet,
}

/// The `pattern` of a [`PatternError`] raised by the set as a whole (too
/// large or complex to compile together), not by one pattern.
pub const ALL_PATTERNS: &str = "<all>";

#[derive(Debug, thiserror::Error)]
#[error("invalid ignore pattern `{pattern}`: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

impl Filter {
    /// `extra_ignores` are .gitignore-style patterns: a pattern without a
    /// slash matches a name at any depth, a trailing slash matches a
    /// directory and everything below it, a leading slash anchors at the root.
    pub fn new(max_file_bytes: u64, extra_ignores: &[String]) -> Result<Self, PatternError> {
        let mut b = GlobSetBuilder::new();
        for p in DEFAULT_IGNORES
            .iter()
            .map(|s| s.to_string())
            .chain(extra_ignores.iter().cloned())
        {
            for g in gitignore_to_globs(&p) {
                let glob = Glob::new(&g).map_err(|e| PatternError {
                    pattern: p.clone(),
                    reason: e.kind().to_string(),
                })?;
                b.add(glob);
            }
        }
        let ignores = b.build().map_err(|e| PatternError {
            pattern: ALL_PATTERNS.into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            max_file_bytes,
            ignores,
        })
    }

    pub fn max_file_bytes(&self) -> u64 {
        self.max_file_bytes
    }

    /// Decide from the tree entry alone, before any content is read.
    pub fn before_fetch(
        &self,
        path: &str,
        kind: EntryKind,
        size: Option<u64>,
        path_lossy: bool,
    ) -> Option<SkipReason> {
        match kind {
            EntryKind::Symlink => return Some(SkipReason::Symlink),
            EntryKind::Submodule => return Some(SkipReason::Submodule),
            EntryKind::File | EntryKind::Executable => {}
        }
        if path_lossy {
            return Some(SkipReason::InvalidPath);
        }
        if self.ignores.is_match(path) {
            return Some(SkipReason::Ignored);
        }
        if size.is_some_and(|s| s > self.max_file_bytes) {
            return Some(SkipReason::TooLarge);
        }
        None
    }
}

/// Decide from the content: text (UTF-8 without any NUL byte) or a reason to
/// skip. Git's own test looks at the first 8000 bytes only; a NUL later on
/// still makes the file binary here, because Postgres text cannot hold it.
pub fn classify_content(data: &[u8]) -> Result<&str, SkipReason> {
    let head = &data[..data.len().min(BINARY_SNIFF_BYTES)];
    if head.contains(&0) || data[head.len()..].contains(&0) {
        return Err(SkipReason::Binary);
    }
    std::str::from_utf8(data).map_err(|_| SkipReason::InvalidUtf8)
}

fn gitignore_to_globs(pattern: &str) -> Vec<String> {
    let p = pattern.trim();
    let (dir_only, p) = match p.strip_suffix('/') {
        Some(rest) => (true, rest),
        None => (false, p),
    };
    let anchored = p.starts_with('/') || p.contains('/');
    let p = p.trim_start_matches('/');
    let base = if anchored {
        p.to_string()
    } else {
        format!("**/{p}")
    };
    if dir_only {
        vec![format!("{base}/**")]
    } else {
        // A pattern naming a directory also covers what is inside it.
        vec![base.clone(), format!("{base}/**")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f() -> Filter {
        Filter::new(
            100,
            &["docs/generated/".into(), "*.snap".into(), "/TOP".into()],
        )
        .unwrap()
    }

    #[test]
    fn skips_by_kind_size_and_pattern() {
        let f = f();
        let file = EntryKind::File;
        assert_eq!(f.before_fetch("a/b.rs", file, Some(10), false), None);
        assert_eq!(
            f.before_fetch("a/b.rs", file, Some(101), false),
            Some(SkipReason::TooLarge)
        );
        assert_eq!(
            f.before_fetch("l", EntryKind::Symlink, Some(1), false),
            Some(SkipReason::Symlink)
        );
        assert_eq!(
            f.before_fetch("m", EntryKind::Submodule, None, false),
            Some(SkipReason::Submodule)
        );
        for ignored in [
            "Cargo.lock",
            "sub/Cargo.lock",
            "node_modules/x/index.js",
            "web/node_modules/y.js",
            "docs/generated/api.md",
            "x/y.snap",
            "TOP",
            "app.min.js",
        ] {
            assert_eq!(
                f.before_fetch(ignored, file, Some(1), false),
                Some(SkipReason::Ignored),
                "{ignored}"
            );
        }
        for kept in ["sub/TOP", "docs/generated.md", "vendored.rs", "src/lock.rs"] {
            assert_eq!(f.before_fetch(kept, file, Some(1), false), None, "{kept}");
        }
        assert_eq!(
            f.before_fetch("x", file, Some(1), true),
            Some(SkipReason::InvalidPath)
        );
    }

    #[test]
    fn content_classification() {
        assert_eq!(classify_content(b"fn main() {}\n"), Ok("fn main() {}\n"));
        assert_eq!(classify_content(b""), Ok(""));
        assert_eq!(classify_content(b"\x89PNG\0\0"), Err(SkipReason::Binary));
        assert_eq!(classify_content(b"caf\xe9"), Err(SkipReason::InvalidUtf8));
        assert_eq!(classify_content("héllo ✓".as_bytes()), Ok("héllo ✓"));
    }

    #[test]
    fn bad_pattern_is_reported() {
        let err = Filter::new(1, &["a[".into()]).unwrap_err();
        assert!(
            err.to_string().contains("invalid ignore pattern `a[`"),
            "{err}"
        );
    }
}
