//! Git repositories built in a test, with the git CLI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A repository in a temporary directory, removed on drop.
pub struct GitRepo {
    dir: PathBuf,
}

impl GitRepo {
    /// `git init` on branch `main`, with a test identity.
    pub fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("projsync-repo-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create repo dir");
        let repo = Self { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["config", "user.name", "projsync test"]);
        repo.git(&["config", "user.email", "test@projsync.invalid"]);
        repo.git(&["config", "commit.gpgsign", "false"]);
        repo.git(&["config", "core.autocrlf", "false"]);
        repo
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Run git in the repository; panics with its stderr on failure.
    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn write(&self, path: &str, content: impl AsRef<[u8]>) -> &Self {
        let full = self.dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).expect("create parent dirs");
        }
        std::fs::write(&full, content).expect("write file");
        self
    }

    pub fn remove(&self, path: &str) -> &Self {
        let full = self.dir.join(path);
        if full.is_dir() {
            std::fs::remove_dir_all(full).expect("remove dir");
        } else {
            std::fs::remove_file(full).expect("remove file");
        }
        self
    }

    pub fn rename(&self, from: &str, to: &str) -> &Self {
        let to_full = self.dir.join(to);
        if let Some(parent) = to_full.parent() {
            std::fs::create_dir_all(parent).expect("create parent dirs");
        }
        std::fs::rename(self.dir.join(from), to_full).expect("rename");
        self
    }

    #[cfg(unix)]
    pub fn symlink(&self, target: &str, path: &str) -> &Self {
        std::os::unix::fs::symlink(target, self.dir.join(path)).expect("symlink");
        self
    }

    #[cfg(unix)]
    pub fn set_executable(&self, path: &str, executable: bool) -> &Self {
        use std::os::unix::fs::PermissionsExt;
        let full = self.dir.join(path);
        let mode = if executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(full, std::fs::Permissions::from_mode(mode)).expect("chmod");
        self
    }

    /// Stage everything and commit; returns the commit SHA.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.head()
    }

    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    /// Every regular file of the commit with its bytes, read with git
    /// itself (not with projsync's source), keyed by path.
    pub fn files_at(&self, commit: &str) -> BTreeMap<String, Vec<u8>> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(["ls-tree", "-r", "-z", "--full-tree", commit])
            .output()
            .expect("git ls-tree");
        let mut files = BTreeMap::new();
        for rec in out.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
            let tab = rec.iter().position(|b| *b == b'\t').expect("tab");
            let meta = String::from_utf8_lossy(&rec[..tab]).to_string();
            let path = String::from_utf8_lossy(&rec[tab + 1..]).to_string();
            let mut fields = meta.split_whitespace();
            let mode = fields.next().unwrap_or_default();
            let sha = fields.nth(1).unwrap_or_default();
            if mode != "100644" && mode != "100755" {
                continue;
            }
            let blob = Command::new("git")
                .arg("-C")
                .arg(&self.dir)
                .args(["cat-file", "blob", sha])
                .output()
                .expect("git cat-file");
            files.insert(path, blob.stdout);
        }
        files
    }
}

impl Default for GitRepo {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for GitRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
