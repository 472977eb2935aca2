//! `Source` for a Git repository on local disk: the offline default, and the
//! way to sync a mirror.
//!
//! It shells out to the `git` CLI rather than linking gix or libgit2: the tree
//! and blob SHAs come straight from the object database (`ls-tree`,
//! `cat-file --batch`), with Git's own semantics for every odd path, mode and
//! packfile; it adds nothing to the build; and `cat-file --batch` streams any
//! number of blobs through one process. The working directory is never read.

use async_trait::async_trait;
use projsync_domain::{
    Blob, Branch, EntryKind, Source, SourceError, TreeChange, TreeDiff, TreeEntry,
};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// Counts of what was read from the repository, for tests and benchmarks.
#[derive(Debug, Default)]
pub struct ReadCounters {
    pub trees: AtomicU64,
    pub blobs: AtomicU64,
    pub blob_bytes: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct GitSource {
    path: PathBuf,
    /// Whether `path` is the top of its repository, learned when opened.
    top: bool,
    counters: Arc<ReadCounters>,
}

impl GitSource {
    /// Open the repository at `path` (a work tree or a bare repository).
    /// One `git rev-parse` says both that it is a repository and where
    /// `path` lies in it.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, SourceError> {
        let path = path.as_ref();
        if !path.is_dir() {
            return Err(SourceError::not_found(format!(
                "no directory at {}; give the path of a Git repository on this machine",
                path.display()
            )));
        }
        let path = path
            .canonicalize()
            .map_err(|e| SourceError::invalid(format!("cannot read {}: {e}", path.display())))?;
        let mut source = Self {
            path,
            top: false,
            counters: Arc::default(),
        };
        // `--show-cdup` (not `--show-toplevel`, which fails outside a work
        // tree) prints nothing in a bare repository or a git directory.
        let out = source
            .git(&[
                "rev-parse",
                "--is-bare-repository",
                "--is-inside-git-dir",
                "--absolute-git-dir",
                "--show-cdup",
            ])
            .await?;
        if !out.status.success() {
            return Err(SourceError::invalid(format!(
                "{} is not a Git repository; run `git init` there or give another path",
                source.path.display()
            )));
        }
        source.top = source.is_top(&out.stdout);
        Ok(source)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is the top of its repository: the top of a work tree,
    /// or a bare repository's own directory; not a subdirectory of a work
    /// tree (Git would walk up to the enclosing repository) and not the
    /// `.git` folder inside one.
    pub async fn is_repository_top(&self) -> Result<bool, SourceError> {
        Ok(self.top)
    }

    /// Read `rev-parse --is-bare-repository --is-inside-git-dir
    /// --absolute-git-dir --show-cdup`.
    fn is_top(&self, out: &[u8]) -> bool {
        // Bytes, not text: a path need not be UTF-8.
        let mut lines = out.split(|b| *b == b'\n');
        let bare = lines.next() == Some(b"true");
        let in_git_dir = lines.next() == Some(b"true");
        let git_dir = lines
            .next()
            .map(|d| PathBuf::from(std::ffi::OsString::from_vec(d.to_vec())));
        let cdup = lines.next().unwrap_or_default();
        match (bare, in_git_dir) {
            // A bare repository's own directory, not one of its folders.
            (true, _) => {
                git_dir.and_then(|d| d.canonicalize().ok()).as_deref() == Some(self.path.as_path())
            }
            (false, true) => false,
            (false, false) => cdup.is_empty(),
        }
    }

    pub fn counters(&self) -> Arc<ReadCounters> {
        self.counters.clone()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("git");
        cmd.arg("-C")
            .arg(&self.path)
            // The repository may belong to another user (a mirror, a CI checkout).
            .args(["-c", "safe.directory=*"])
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            // Never look for a repository above this one.
            .env(
                "GIT_CEILING_DIRECTORIES",
                self.path.parent().unwrap_or(Path::new("/")),
            )
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    async fn git(&self, args: &[&str]) -> Result<std::process::Output, SourceError> {
        self.command(args).output().await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                SourceError::invalid(
                    "the `git` command is not installed; install Git (apt-get install git)",
                )
            } else {
                SourceError::unavailable(format!("cannot run git: {e}"))
            }
        })
    }

    async fn git_ok(&self, args: &[&str]) -> Result<Vec<u8>, SourceError> {
        let out = self.git(args).await?;
        if !out.status.success() {
            return Err(SourceError::unavailable(format!(
                "git {} failed in {}: {}",
                args.join(" "),
                self.path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(out.stdout)
    }

    async fn has_commits(&self) -> Result<bool, SourceError> {
        let out = self
            .git_ok(&["for-each-ref", "--count=1", "--format=%(objectname)"])
            .await?;
        Ok(!out.is_empty())
    }
}

fn valid_sha(sha: &str) -> bool {
    (4..=64).contains(&sha.len()) && sha.bytes().all(|b| b.is_ascii_hexdigit())
}

#[async_trait]
impl Source for GitSource {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    async fn list_branches(&self) -> Result<Vec<Branch>, SourceError> {
        let out = self
            .git_ok(&[
                "for-each-ref",
                "--format=%(refname:short)%00%(objectname)",
                "refs/heads",
            ])
            .await?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| l.split_once('\0'))
            .map(|(name, head)| Branch {
                name: name.to_string(),
                head: head.to_string(),
            })
            .collect())
    }

    async fn resolve_branch(&self, branch: &str) -> Result<String, SourceError> {
        // Before git sees it: `-rf` must not become an option, nor
        // `main@{0}` a reflog lookup.
        projsync_domain::names::check_branch_name(branch).map_err(SourceError::invalid)?;
        let refname = format!("refs/heads/{branch}^{{commit}}");
        let out = self
            .git(&["rev-parse", "--verify", "--quiet", &refname])
            .await?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        if !self.has_commits().await? {
            return Err(SourceError::not_found(format!(
                "branch `{branch}` not found in {}: the repository has no commits yet; \
                 commit something, then sync again",
                self.path.display()
            )));
        }
        let names: Vec<String> = self
            .list_branches()
            .await?
            .into_iter()
            .map(|b| b.name)
            .collect();
        Err(SourceError::not_found(format!(
            "branch `{branch}` not found in {}; its branches are: {}",
            self.path.display(),
            names.join(", ")
        )))
    }

    async fn read_tree(&self, commit: &str) -> Result<Vec<TreeEntry>, SourceError> {
        if !valid_sha(commit) {
            return Err(SourceError::invalid(format!(
                "`{commit}` is not a commit SHA"
            )));
        }
        self.counters.trees.fetch_add(1, Ordering::Relaxed);
        let out = self
            .git(&["ls-tree", "-r", "-l", "-z", "--full-tree", commit])
            .await?;
        if !out.status.success() {
            return Err(SourceError::not_found(format!(
                "commit {commit} not found in {}: {}",
                self.path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        parse_ls_tree(&out.stdout)
    }

    /// `git diff-tree -r`: Git compares tree SHAs first and never lists a
    /// subtree whose SHA is the same on both sides. The sizes of the new
    /// blobs come from one `cat-file --batch-check`.
    async fn diff(&self, from: &str, to: &str) -> Result<Option<TreeDiff>, SourceError> {
        for sha in [from, to] {
            if !valid_sha(sha) {
                return Err(SourceError::invalid(format!("`{sha}` is not a commit SHA")));
            }
        }
        let out = self
            .git(&[
                "diff-tree",
                "-r",
                "-z",
                "--raw",
                "--no-renames",
                "--no-abbrev",
                "--no-commit-id",
                from,
                to,
            ])
            .await?;
        if !out.status.success() {
            // Asked only when the comparison failed (one process less in
            // the usual case): the last synced commit is gone (a
            // force-push and a gc), and the caller walks the whole tree.
            let from_commit = format!("{from}^{{commit}}");
            if !self
                .git(&["cat-file", "-e", &from_commit])
                .await?
                .status
                .success()
            {
                return Ok(None);
            }
            return Err(SourceError::not_found(format!(
                "cannot compare {from} with {to} in {}: {}",
                self.path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        self.counters.trees.fetch_add(1, Ordering::Relaxed);
        let mut changes = parse_diff_tree(&out.stdout)?;
        let wanted: Vec<String> = changes
            .iter()
            .filter_map(|c| c.new.as_ref())
            .filter(|e| e.kind != EntryKind::Submodule)
            .map(|e| e.sha.clone())
            .collect();
        let sizes = self.blob_sizes(&wanted).await?;
        for c in &mut changes {
            if let Some(e) = c.new.as_mut() {
                if e.kind != EntryKind::Submodule {
                    e.size = sizes.get(&e.sha).copied();
                }
            }
        }
        Ok(Some(TreeDiff { changes }))
    }

    async fn read_blobs(&self, shas: &[String]) -> Result<Vec<Blob>, SourceError> {
        if shas.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(bad) = shas.iter().find(|s| !valid_sha(s)) {
            return Err(SourceError::invalid(format!("`{bad}` is not a blob SHA")));
        }
        let (mut child, writer) = self.cat_file("--batch", shas)?;
        let mut reader = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut blobs = Vec::with_capacity(shas.len());
        let mut header = String::new();
        for sha in shas {
            header.clear();
            let n = reader
                .read_line(&mut header)
                .await
                .map_err(|e| SourceError::unavailable(format!("git cat-file: {e}")))?;
            let fields: Vec<&str> = header.split_whitespace().collect();
            match fields.as_slice() {
                [_, "blob", size] => {
                    let size: usize = size.parse().map_err(|_| {
                        SourceError::unavailable(format!("git cat-file: bad header `{header}`"))
                    })?;
                    let mut data = vec![0; size + 1];
                    reader
                        .read_exact(&mut data)
                        .await
                        .map_err(|e| SourceError::unavailable(format!("git cat-file: {e}")))?;
                    data.truncate(size);
                    self.counters.blobs.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .blob_bytes
                        .fetch_add(size as u64, Ordering::Relaxed);
                    blobs.push(Blob {
                        sha: sha.clone(),
                        data,
                    });
                }
                _ if n == 0 => {
                    return Err(SourceError::unavailable(
                        "git cat-file ended before answering every request",
                    ))
                }
                [_, "missing"] => {
                    return Err(SourceError::not_found(format!(
                        "blob {sha} not found in {}",
                        self.path.display()
                    )))
                }
                _ => {
                    return Err(SourceError::invalid(format!(
                        "object {sha} in {} is not a blob ({})",
                        self.path.display(),
                        header.trim()
                    )))
                }
            }
        }
        let _ = writer.await;
        let _ = child.wait().await;
        Ok(blobs)
    }
}

impl GitSource {
    /// The sizes of these blobs, through one `cat-file --batch-check`.
    async fn blob_sizes(
        &self,
        shas: &[String],
    ) -> Result<std::collections::HashMap<String, u64>, SourceError> {
        let mut sizes = std::collections::HashMap::new();
        if shas.is_empty() {
            return Ok(sizes);
        }
        let (mut child, writer) =
            self.cat_file("--batch-check=%(objectname) %(objectsize)", shas)?;
        let mut out = Vec::new();
        child
            .stdout
            .take()
            .expect("piped stdout")
            .read_to_end(&mut out)
            .await
            .map_err(|e| SourceError::unavailable(format!("git cat-file: {e}")))?;
        let _ = writer.await;
        let _ = child.wait().await;
        for line in String::from_utf8_lossy(&out).lines() {
            if let Some((sha, size)) = line.split_once(' ') {
                if let Ok(size) = size.parse() {
                    sizes.insert(sha.to_string(), size);
                }
            }
        }
        Ok(sizes)
    }

    /// `git cat-file <mode>` fed `shas` (one a line) on its stdin by a task
    /// of its own: writing while the caller reads, since a large request
    /// would otherwise fill both pipes.
    #[allow(clippy::type_complexity)]
    fn cat_file(
        &self,
        mode: &str,
        shas: &[String],
    ) -> Result<
        (
            tokio::process::Child,
            tokio::task::JoinHandle<std::io::Result<()>>,
        ),
        SourceError,
    > {
        let mut child = self
            .command(&["cat-file", mode])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| SourceError::unavailable(format!("cannot run git cat-file: {e}")))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input: Vec<u8> = shas
            .iter()
            .flat_map(|s| format!("{s}\n").into_bytes())
            .collect();
        let writer = tokio::spawn(async move {
            stdin.write_all(&input).await?;
            stdin.shutdown().await
        });
        Ok((child, writer))
    }
}

/// Parse `git diff-tree -r -z --raw` output:
/// `:<old mode> <new mode> <old sha> <new sha> <status>\0<path>\0`.
fn parse_diff_tree(out: &[u8]) -> Result<Vec<TreeChange>, SourceError> {
    let mut changes = Vec::new();
    let mut fields = out.split(|b| *b == 0);
    while let Some(meta) = fields.next() {
        if meta.is_empty() {
            continue;
        }
        let raw_path = fields
            .next()
            .ok_or_else(|| SourceError::unavailable("git diff-tree: record without a path"))?;
        let meta = String::from_utf8_lossy(meta);
        let parts: Vec<&str> = meta.trim_start_matches(':').split_whitespace().collect();
        let [old_mode, new_mode, old_sha, new_sha, _status] = parts.as_slice() else {
            return Err(SourceError::unavailable(format!(
                "git diff-tree: unexpected record `{meta}`"
            )));
        };
        let (path, path_lossy) = match std::str::from_utf8(raw_path) {
            Ok(p) => (p.to_string(), false),
            Err(_) => (escape_non_utf8(raw_path), true),
        };
        let side = |mode: &str, sha: &str| {
            EntryKind::from_mode(mode).map(|kind| TreeEntry {
                path: path.clone(),
                kind,
                sha: sha.to_string(),
                size: None,
                path_lossy,
            })
        };
        let old = side(old_mode, old_sha);
        let new = side(new_mode, new_sha);
        if old.is_none() && new.is_none() {
            continue; // neither side is an entry we list (mode 000000 both ways)
        }
        changes.push(TreeChange { path, old, new });
    }
    Ok(changes)
}

/// Parse `git ls-tree -r -l -z` output: `<mode> <type> <sha> <size>\t<path>\0`.
fn parse_ls_tree(out: &[u8]) -> Result<Vec<TreeEntry>, SourceError> {
    let mut entries = Vec::new();
    for record in out.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let tab = record
            .iter()
            .position(|b| *b == b'\t')
            .ok_or_else(|| SourceError::unavailable("git ls-tree: record without a tab"))?;
        let meta = String::from_utf8_lossy(&record[..tab]);
        let raw_path = &record[tab + 1..];
        let fields: Vec<&str> = meta.split_whitespace().collect();
        let [mode, _type, sha, size] = fields.as_slice() else {
            return Err(SourceError::unavailable(format!(
                "git ls-tree: unexpected record `{meta}`"
            )));
        };
        let Some(kind) = EntryKind::from_mode(mode) else {
            continue; // trees are not listed with -r; anything else is unknown
        };
        let (path, path_lossy) = match std::str::from_utf8(raw_path) {
            Ok(p) => (p.to_string(), false),
            Err(_) => (escape_non_utf8(raw_path), true),
        };
        entries.push(TreeEntry {
            path,
            kind,
            sha: sha.to_string(),
            size: size.parse().ok(),
            path_lossy,
        });
    }
    Ok(entries)
}

/// A path that is not UTF-8, as text that keeps it apart from every other:
/// each invalid byte becomes `\xNN` (and a backslash `\\`), where a lossy
/// conversion would turn `caf\xe9` and `caf\xe8` into the same text. Such
/// paths are skipped (`invalid_path`), but they must stay distinct rows of
/// the plan.
fn escape_non_utf8(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len() + 8);
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn paths_that_are_not_utf8_stay_apart() {
        assert_eq!(escape_non_utf8(b"caf\xe9.txt"), "caf\\xE9.txt");
        assert_ne!(
            escape_non_utf8(b"caf\xe9.txt"),
            escape_non_utf8(b"caf\xe8.txt")
        );
        assert_eq!(escape_non_utf8(b"a\\b\xff"), "a\\\\b\\xFF");
    }

    #[test]
    fn parses_ls_tree_records() {
        let out = [
            &b"100644 blob aaaa       12\ta b/c.rs"[..],
            b"120000 blob bbbb 4\tlink",
            b"160000 commit cccc       -\tsub",
            b"100755 blob dddd 0\t\xff.sh",
        ]
        .join(&b'\0');
        let e = parse_ls_tree(&out).unwrap();
        assert_eq!(e.len(), 4);
        assert_eq!(e[0].path, "a b/c.rs");
        assert_eq!(e[0].size, Some(12));
        assert_eq!(e[1].kind, EntryKind::Symlink);
        assert_eq!(e[2].kind, EntryKind::Submodule);
        assert_eq!(e[2].size, None);
        assert!(e[3].path_lossy);
        assert_eq!(e[3].kind, EntryKind::Executable);
    }

    #[test]
    fn parses_diff_tree_records() {
        let out = [
            &b":100644 100644 aaaa bbbb M"[..],
            b"src/a.rs",
            b":000000 100755 0000 cccc A",
            b"bin/x",
            b":100644 000000 dddd 0000 D",
            b"gone",
            b":100644 120000 eeee ffff T",
            b"link",
            b"",
        ]
        .join(&b'\0');
        let c = parse_diff_tree(&out).unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(c[0].path, "src/a.rs");
        assert_eq!(c[0].old.as_ref().unwrap().sha, "aaaa");
        assert_eq!(c[0].new.as_ref().unwrap().sha, "bbbb");
        assert!(c[1].old.is_none());
        assert_eq!(c[1].new.as_ref().unwrap().kind, EntryKind::Executable);
        assert!(c[2].new.is_none());
        assert_eq!(c[3].new.as_ref().unwrap().kind, EntryKind::Symlink);
    }

    #[tokio::test]
    async fn diff_lists_only_what_changed_and_gives_up_on_a_missing_base() {
        let repo = projsync_test_support::GitRepo::new();
        repo.write("keep/a.txt", "a\n");
        repo.write("edit.txt", "1\n");
        repo.write("gone.txt", "g\n");
        let first = repo.commit("first");
        repo.write("edit.txt", "22\n");
        repo.remove("gone.txt");
        repo.write("new/b.txt", "bbb\n");
        let second = repo.commit("second");
        let source = GitSource::open(repo.path()).await.unwrap();
        let diff = source.diff(&first, &second).await.unwrap().unwrap();
        let mut got: Vec<(String, Option<String>, Option<u64>)> = diff
            .changes
            .iter()
            .map(|c| {
                (
                    c.path.clone(),
                    c.new.as_ref().map(|e| e.sha.clone()),
                    c.new.as_ref().and_then(|e| e.size),
                )
            })
            .collect();
        got.sort();
        let tree = source.read_tree(&second).await.unwrap();
        let sha = |p: &str| tree.iter().find(|e| e.path == p).map(|e| e.sha.clone());
        assert_eq!(
            got,
            vec![
                ("edit.txt".into(), sha("edit.txt"), Some(3)),
                ("gone.txt".into(), None, None),
                ("new/b.txt".into(), sha("new/b.txt"), Some(4)),
            ]
        );
        let missing = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(source.diff(missing, &second).await.unwrap(), None);
    }

    #[tokio::test]
    async fn knows_whether_it_was_opened_at_the_top_of_its_repository() {
        let repo = projsync_test_support::GitRepo::new();
        repo.write("src/a.txt", "a\n");
        repo.commit("first");
        // `None`: not a repository at all (git never looks above the path
        // it was given).
        let top = |p: PathBuf| async move {
            match GitSource::open(&p).await {
                Ok(source) => Some(source.is_repository_top().await.unwrap()),
                Err(_) => None,
            }
        };
        assert_eq!(top(repo.path().to_path_buf()).await, Some(true));
        assert_eq!(top(repo.path().join(".git")).await, Some(false));
        assert_eq!(top(repo.path().join(".git/refs")).await, None);
        assert_eq!(top(repo.path().join("src")).await, None);

        // A bare repository, under a name that is not UTF-8.
        // Beside the work tree's folder (unique as it is), removed at the end.
        let mut name = repo.path().file_name().unwrap().to_os_string();
        name.push(std::ffi::OsStr::from_bytes(b"-bare-\xff.git"));
        let bare = repo.path().with_file_name(name);
        let status = std::process::Command::new("git")
            .args(["init", "-q", "--bare"])
            .arg(&bare)
            .status()
            .unwrap();
        assert!(status.success());
        let bare_top = top(bare.clone()).await;
        let bare_refs_top = top(bare.join("refs")).await;
        std::fs::remove_dir_all(&bare).unwrap();
        assert_eq!(bare_top, Some(true));
        assert_ne!(bare_refs_top, Some(true));
    }

    #[tokio::test]
    async fn refuses_branch_names_git_would_misread() {
        let repo = projsync_test_support::GitRepo::new();
        repo.write("a.txt", "a\n");
        repo.commit("first");
        let source = GitSource::open(repo.path()).await.unwrap();
        assert!(source.resolve_branch("main").await.is_ok());
        // `main@{0}` names a reflog entry and `-rf` an option: neither is
        // handed to git as a branch.
        for name in ["main@{0}", "-rf", "--upload-pack=x", "main^", "a..b", "a b"] {
            let err = source.resolve_branch(name).await.unwrap_err();
            assert_eq!(
                err.kind,
                projsync_domain::SourceErrorKind::Invalid,
                "{name}"
            );
            assert!(err.message.contains("not a valid branch name"), "{err}");
        }
    }
}
