//! The change plan: what scan decided about every path, and the running stats.
//!
//! `diff` is the heart of diff-aware sync (ARCHITECTURE.md, invariant 5): it compares
//! the head tree with the files stored for the repository by blob SHA, so that
//! only added and modified blobs are ever fetched.

use crate::source::{EntryKind, TreeEntry};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
    /// Same blob SHA under a new path, the old path gone: no content fetch.
    Renamed,
    Unchanged,
    /// file ↔ symlink ↔ submodule at the same path.
    TypeChanged,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Modified => "modified",
            ChangeKind::Deleted => "deleted",
            ChangeKind::Renamed => "renamed",
            ChangeKind::Unchanged => "unchanged",
            ChangeKind::TypeChanged => "type_changed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "added" => ChangeKind::Added,
            "modified" => ChangeKind::Modified,
            "deleted" => ChangeKind::Deleted,
            "renamed" => ChangeKind::Renamed,
            "unchanged" => ChangeKind::Unchanged,
            "type_changed" => ChangeKind::TypeChanged,
            _ => return None,
        })
    }
}

/// Why a file of the tree has no memory entry. Every skip records one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    TooLarge,
    Binary,
    InvalidUtf8,
    Ignored,
    Symlink,
    Submodule,
    /// The path itself is not valid UTF-8.
    InvalidPath,
}

impl SkipReason {
    pub const ALL: &'static [SkipReason] = &[
        SkipReason::TooLarge,
        SkipReason::Binary,
        SkipReason::InvalidUtf8,
        SkipReason::Ignored,
        SkipReason::Symlink,
        SkipReason::Submodule,
        SkipReason::InvalidPath,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::TooLarge => "too_large",
            SkipReason::Binary => "binary",
            SkipReason::InvalidUtf8 => "invalid_utf8",
            SkipReason::Ignored => "ignored",
            SkipReason::Symlink => "symlink",
            SkipReason::Submodule => "submodule",
            SkipReason::InvalidPath => "invalid_path",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A file as stored for the repository after the last successful sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub path: String,
    pub sha: String,
    pub kind: EntryKind,
    pub size: Option<u64>,
}

impl StoredFile {
    /// As an entry of the tree it came from.
    pub fn to_tree_entry(&self) -> TreeEntry {
        TreeEntry {
            path: self.path.clone(),
            kind: self.kind,
            sha: self.sha.clone(),
            size: self.size,
            path_lossy: false,
        }
    }
}

/// What scan decided for one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedChange {
    pub path: String,
    pub change: ChangeKind,
    /// Kind in the head tree (for deletions: the stored kind).
    pub kind: EntryKind,
    /// Blob SHA in the head tree; `None` for deletions.
    pub sha: Option<String>,
    /// Blob SHA stored before; `None` for additions.
    pub old_sha: Option<String>,
    /// For renames: the path the blob had before.
    pub old_path: Option<String>,
    pub size: Option<u64>,
}

impl PlannedChange {
    /// Whether import must read this blob from the source.
    pub fn needs_content(&self) -> bool {
        matches!(
            self.change,
            ChangeKind::Added | ChangeKind::Modified | ChangeKind::TypeChanged
        ) && self.kind.is_regular()
    }
}

/// Compare the head tree with the stored files. The result is sorted by path
/// and holds one change per path of either side (a rename covers two paths
/// and is one change, under its new path).
pub fn diff(head: &[TreeEntry], stored: &[StoredFile]) -> Vec<PlannedChange> {
    let stored_by_path: HashMap<&str, &StoredFile> =
        stored.iter().map(|f| (f.path.as_str(), f)).collect();
    let head_paths: std::collections::HashSet<&str> =
        head.iter().map(|e| e.path.as_str()).collect();

    let mut out = Vec::with_capacity(head.len());
    let mut added = Vec::new();
    for e in head {
        match stored_by_path.get(e.path.as_str()) {
            None => added.push(e),
            Some(old) => {
                let change = if old.kind.is_regular() != e.kind.is_regular()
                    || (!e.kind.is_regular() && old.kind != e.kind)
                {
                    ChangeKind::TypeChanged
                } else if old.sha == e.sha {
                    ChangeKind::Unchanged
                } else {
                    ChangeKind::Modified
                };
                out.push(PlannedChange {
                    path: e.path.clone(),
                    change,
                    kind: e.kind,
                    sha: Some(e.sha.clone()),
                    old_sha: Some(old.sha.clone()),
                    old_path: None,
                    size: e.size,
                });
            }
        }
    }

    // Deleted regular files, by blob SHA, are candidates for rename sources.
    let mut deleted: Vec<&StoredFile> = stored
        .iter()
        .filter(|f| !head_paths.contains(f.path.as_str()))
        .collect();
    deleted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut rename_sources: HashMap<(&str, bool), Vec<&StoredFile>> = HashMap::new();
    for f in deleted.iter().rev() {
        rename_sources
            .entry((f.sha.as_str(), f.kind.is_regular()))
            .or_default()
            .push(f);
    }
    let mut renamed_from = std::collections::HashSet::new();
    added.sort_by(|a, b| a.path.cmp(&b.path));
    for e in added {
        let source = if e.kind.is_regular() {
            rename_sources
                .get_mut(&(e.sha.as_str(), true))
                .and_then(|v| v.pop())
        } else {
            None
        };
        match source {
            Some(old) => {
                renamed_from.insert(old.path.as_str());
                out.push(PlannedChange {
                    path: e.path.clone(),
                    change: ChangeKind::Renamed,
                    kind: e.kind,
                    sha: Some(e.sha.clone()),
                    old_sha: Some(old.sha.clone()),
                    old_path: Some(old.path.clone()),
                    size: e.size,
                });
            }
            None => out.push(PlannedChange {
                path: e.path.clone(),
                change: ChangeKind::Added,
                kind: e.kind,
                sha: Some(e.sha.clone()),
                old_sha: None,
                old_path: None,
                size: e.size,
            }),
        }
    }
    for f in deleted {
        if renamed_from.contains(f.path.as_str()) {
            continue;
        }
        out.push(PlannedChange {
            path: f.path.clone(),
            change: ChangeKind::Deleted,
            kind: f.kind,
            sha: None,
            old_sha: Some(f.sha.clone()),
            old_path: None,
            size: None,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Running counts of a sync, sent in every progress event and stored with
/// the sync when it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Non-directory entries in the head tree.
    pub files_seen: u64,
    pub added: u64,
    pub modified: u64,
    pub deleted: u64,
    pub renamed: u64,
    pub unchanged: u64,
    pub type_changed: u64,
    /// Memory entry versions written by this sync.
    pub imported: u64,
    /// Files of the head tree without an entry, all reasons together.
    pub skipped: u64,
    #[serde(default)]
    pub skipped_by_reason: BTreeMap<String, u64>,
    /// Chunks of the entry versions this sync wrote (or, for a backfill, of
    /// the active entries it covered).
    #[serde(default)]
    pub chunks: u64,
    /// Chunks sent to the embedding model.
    #[serde(default)]
    pub embedded: u64,
    /// Chunks whose vector the cache already had (no model call).
    #[serde(default)]
    pub embedding_cache_hits: u64,
    /// How scan found the changes; `None` when no scan ran (an unchanged
    /// head, a backfill) or in stats stored before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_mode: Option<ScanMode>,
    /// Changed source files the analyze phase parsed.
    #[serde(default)]
    pub analyzed_files: u64,
    /// Of those, the ones whose syntax tree had errors (their symbols are
    /// the ones that parsed).
    #[serde(default)]
    pub analyzed_partial: u64,
    /// Changed files not analysed, by reason (`unsupported_language`,
    /// `generated`, `minified`, `long_lines`, `too_large`, `timeout`…).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub analysis_skipped_by_reason: BTreeMap<String, u64>,
    /// Symbol versions this sync wrote (new and edited symbols) plus the
    /// symbols it removed.
    #[serde(default)]
    pub symbols_changed: u64,
    /// Module docs this sync wrote a new version of (their inputs changed).
    #[serde(default)]
    pub docs_regenerated: u64,
}

/// How scan found the changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanMode {
    /// The last synced commit against the head, through `Source::diff`:
    /// the plan holds only the paths that change.
    Diff,
    /// The whole head tree against the stored files: the plan holds every
    /// path of the tree and every deleted one.
    Full,
}

impl ScanMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanMode::Diff => "diff",
            ScanMode::Full => "full",
        }
    }
}

impl Stats {
    /// Count the plan's changes (skips are counted by import, which is where
    /// most of them are found).
    pub fn from_plan(plan: &[PlannedChange]) -> Self {
        let mut s = Stats::default();
        for c in plan {
            if c.change != ChangeKind::Deleted {
                s.files_seen += 1;
            }
            match c.change {
                ChangeKind::Added => s.added += 1,
                ChangeKind::Modified => s.modified += 1,
                ChangeKind::Deleted => s.deleted += 1,
                ChangeKind::Renamed => s.renamed += 1,
                ChangeKind::Unchanged => s.unchanged += 1,
                ChangeKind::TypeChanged => s.type_changed += 1,
            }
        }
        s
    }

    pub fn add_skip(&mut self, reason: SkipReason) {
        self.skipped += 1;
        *self
            .skipped_by_reason
            .entry(reason.as_str().to_string())
            .or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(path: &str, sha: &str) -> TreeEntry {
        TreeEntry {
            path: path.into(),
            kind: EntryKind::File,
            sha: sha.into(),
            size: Some(1),
            path_lossy: false,
        }
    }
    fn s(path: &str, sha: &str) -> StoredFile {
        StoredFile {
            path: path.into(),
            sha: sha.into(),
            kind: EntryKind::File,
            size: Some(1),
        }
    }
    fn kinds(plan: &[PlannedChange]) -> Vec<(&str, ChangeKind)> {
        plan.iter().map(|c| (c.path.as_str(), c.change)).collect()
    }

    #[test]
    fn first_sync_adds_everything() {
        let plan = diff(&[t("b", "2"), t("a", "1")], &[]);
        assert_eq!(
            kinds(&plan),
            vec![("a", ChangeKind::Added), ("b", ChangeKind::Added)]
        );
        assert!(plan.iter().all(PlannedChange::needs_content));
    }

    #[test]
    fn classifies_each_kind_of_change() {
        let mut link = t("link", "9");
        link.kind = EntryKind::Symlink;
        let plan = diff(
            &[t("same", "1"), t("edit", "3"), t("new/name", "4"), link],
            &[
                s("same", "1"),
                s("edit", "2"),
                s("old", "4"),
                s("gone", "5"),
                s("link", "9"),
            ],
        );
        assert_eq!(
            kinds(&plan),
            vec![
                ("edit", ChangeKind::Modified),
                ("gone", ChangeKind::Deleted),
                ("link", ChangeKind::TypeChanged),
                ("new/name", ChangeKind::Renamed),
                ("same", ChangeKind::Unchanged),
            ]
        );
        let rename = plan
            .iter()
            .find(|c| c.change == ChangeKind::Renamed)
            .unwrap();
        assert_eq!(rename.old_path.as_deref(), Some("old"));
        assert!(!rename.needs_content());
        let stats = Stats::from_plan(&plan);
        assert_eq!((stats.files_seen, stats.deleted, stats.renamed), (4, 1, 1));
    }

    #[test]
    fn a_copy_is_an_add_when_the_old_path_stays() {
        let plan = diff(&[t("a", "1"), t("b", "1")], &[s("a", "1")]);
        assert_eq!(
            kinds(&plan),
            vec![("a", ChangeKind::Unchanged), ("b", ChangeKind::Added)]
        );
    }

    #[test]
    fn file_replaced_by_directory() {
        let plan = diff(&[t("x/inner", "7")], &[s("x", "6")]);
        assert_eq!(
            kinds(&plan),
            vec![("x", ChangeKind::Deleted), ("x/inner", ChangeKind::Added)]
        );
    }

    #[test]
    fn skips_are_counted_by_reason() {
        let mut st = Stats::default();
        st.add_skip(SkipReason::Binary);
        st.add_skip(SkipReason::Binary);
        st.add_skip(SkipReason::TooLarge);
        assert_eq!(st.skipped, 3);
        assert_eq!(st.skipped_by_reason["binary"], 2);
        assert_eq!(SkipReason::parse("too_large"), Some(SkipReason::TooLarge));
    }
}
