//! Where code comes from. A `Source` lists branches, resolves a branch head,
//! reads a tree with blob SHAs and reads blobs. Implementations: a local Git
//! repository (source-git) and a GitHub repository (source-github); the
//! binary picks one per project through `projsync-sources`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// What a tree entry is, from its Git mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// 100644
    File,
    /// 100755
    Executable,
    /// 120000
    Symlink,
    /// 160000 (a gitlink)
    Submodule,
}

impl EntryKind {
    pub fn from_mode(mode: &str) -> Option<Self> {
        match mode {
            "100644" | "100664" => Some(EntryKind::File),
            "100755" => Some(EntryKind::Executable),
            "120000" => Some(EntryKind::Symlink),
            "160000" => Some(EntryKind::Submodule),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Executable => "executable",
            EntryKind::Symlink => "symlink",
            EntryKind::Submodule => "submodule",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "file" => Some(EntryKind::File),
            "executable" => Some(EntryKind::Executable),
            "symlink" => Some(EntryKind::Symlink),
            "submodule" => Some(EntryKind::Submodule),
            _ => None,
        }
    }

    /// Regular files (executable or not) carry content worth importing.
    pub fn is_regular(self) -> bool {
        matches!(self, EntryKind::File | EntryKind::Executable)
    }
}

/// One non-directory entry of a recursive tree listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// Path from the repository root, `/`-separated.
    pub path: String,
    pub kind: EntryKind,
    /// Blob SHA (or the commit SHA of a submodule).
    pub sha: String,
    /// Size in bytes; `None` for submodules.
    pub size: Option<u64>,
    /// The raw path was not valid UTF-8 and `path` is a lossy rendering.
    #[serde(default)]
    pub path_lossy: bool,
}

/// One path whose entry differs between two commits' trees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeChange {
    /// Path from the repository root, `/`-separated.
    pub path: String,
    /// The entry at `from`: `None` when the path was added. Its `size` may
    /// be `None` (it is not used).
    pub old: Option<TreeEntry>,
    /// The entry at `to`: `None` when the path was deleted. Its `size` must
    /// be given for regular files, as in `read_tree` (the size filter reads it).
    pub new: Option<TreeEntry>,
}

/// What changed between two commits' trees, path by path: an addition, a
/// deletion or a change of SHA or mode. No rename detection: a rename is a
/// deletion plus an addition (the plan pairs them by blob SHA). A path that
/// turns from a file into a directory is a deletion of the file plus an
/// addition per file below it. Unchanged paths are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeDiff {
    pub changes: Vec<TreeChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branch {
    pub name: String,
    /// Commit SHA of the branch head.
    pub head: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub sha: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceErrorKind {
    /// Repository, branch or object does not exist (or cannot be seen).
    NotFound,
    /// Credentials missing or rejected.
    Unauthorized,
    /// The request itself is wrong (bad path, not a repository, ...).
    Invalid,
    /// Transient: network, 5xx, a process that died; retry later.
    Unavailable,
    /// A rate limit was hit; retry after it resets.
    RateLimited,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    pub kind: SourceErrorKind,
    pub message: String,
    /// When the source said when to come back (a rate limit's reset).
    pub retry_after: Option<std::time::Duration>,
}

impl SourceError {
    pub fn new(kind: SourceErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn rate_limited(retry_after: std::time::Duration, message: impl Into<String>) -> Self {
        Self {
            kind: SourceErrorKind::RateLimited,
            message: message.into(),
            retry_after: Some(retry_after),
        }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(SourceErrorKind::Unauthorized, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(SourceErrorKind::NotFound, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(SourceErrorKind::Invalid, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(SourceErrorKind::Unavailable, message)
    }
}

/// A place code is read from. Implementations must be cheap to call
/// repeatedly: the pipeline asks only for what changed.
#[async_trait]
pub trait Source: Send + Sync {
    /// A human-readable name for messages, such as a path or `owner/name`.
    fn describe(&self) -> String;

    async fn list_branches(&self) -> Result<Vec<Branch>, SourceError>;

    /// The head commit SHA of `branch`.
    async fn resolve_branch(&self, branch: &str) -> Result<String, SourceError>;

    /// Every non-directory entry of the tree at `commit`, recursively.
    async fn read_tree(&self, commit: &str) -> Result<Vec<TreeEntry>, SourceError>;

    /// `read_tree`, knowing the tree stored for `base_commit` (the last
    /// sync's): a source may use it to ask for less. The default ignores it.
    async fn read_tree_since(
        &self,
        commit: &str,
        _base_commit: &str,
        _base: &[TreeEntry],
    ) -> Result<Vec<TreeEntry>, SourceError> {
        self.read_tree(commit).await
    }

    /// The paths that differ between the trees of commits `from` (the last
    /// synced one) and `to`, read in O(changes) (an unchanged subtree is
    /// never listed). `Ok(None)` means "cannot": the caller walks the whole
    /// tree of `to` instead. It must also answer `Ok(None)`, not an error,
    /// when `from` is no longer in the repository (a force-push, a gc).
    /// Errors are for `to` or the source itself. The default: `Ok(None)`.
    async fn diff(&self, _from: &str, _to: &str) -> Result<Option<TreeDiff>, SourceError> {
        Ok(None)
    }

    /// The blobs with these SHAs, in any order. A missing blob is an error.
    async fn read_blobs(&self, shas: &[String]) -> Result<Vec<Blob>, SourceError>;

    /// The regular files of the commit whose blob SHA is in `wanted`, from
    /// one archive download; `None` if the source has no cheaper way than
    /// `read_blobs`. Used for large imports.
    async fn read_archive(
        &self,
        _commit: &str,
        _wanted: &std::collections::HashSet<String>,
    ) -> Result<Option<Vec<Blob>>, SourceError> {
        Ok(None)
    }

    /// What the source learned about the repository when it was opened,
    /// worth keeping with the project so that later opens need not ask
    /// again (`RepositorySpec::remote`). `None` (the default): nothing.
    fn remote(&self) -> Option<RemoteIdentity> {
        None
    }
}

/// The Git blob SHA-1 of `data` (`blob <len>\0<data>`), to match archive
/// contents with tree entries.
pub fn git_blob_sha(data: &[u8]) -> String {
    use sha1_smol::Sha1;
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", data.len()).as_bytes());
    h.update(data);
    h.digest().to_string()
}

/// What a provider said about a repository when its project was
/// connected, kept in the ledger (`repositories.remote_name`, `remote_id`):
/// a sync that is given it opens the repository without looking it up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteIdentity {
    /// The provider's own spelling of the location (GitHub: `owner/name`
    /// as GitHub writes it).
    pub name: String,
    /// The provider's id of the repository (GitHub's survives renames and
    /// transfers).
    pub id: Option<i64>,
}

/// Where a repository lives, as stored with its project.
#[derive(Debug, Clone, Copy)]
pub struct RepositorySpec<'a> {
    /// `local` or `github`.
    pub provider: &'a str,
    /// A path (local) or `owner/name` (github).
    pub location: &'a str,
    /// The name of the secret holding credentials, never the secret.
    pub credentials_ref: Option<&'a str>,
    /// What the source said when the project was connected (`Source::remote`),
    /// trusted as is; `None`: not known (a project connected before it was
    /// kept, or a new one), and the source may look the repository up.
    pub remote: Option<&'a RemoteIdentity>,
}

/// Opens the `Source` of a repository: the seam where GitHub plugs in, and
/// where tests count reads.
#[async_trait]
pub trait SourceFactory: Send + Sync {
    async fn open(
        &self,
        repo: &RepositorySpec<'_>,
    ) -> Result<std::sync::Arc<dyn Source>, SourceError>;
}
