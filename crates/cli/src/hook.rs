//! `projsync hook install` and `projsync hook notify`: a Git `post-receive`
//! hook that keeps a local repository's project fresh.
//!
//! `install` writes the repository's `post-receive` hook (where
//! `git rev-parse --git-path hooks` says hooks live, so `core.hooksPath` is
//! honoured) and, beside it, a file with the API key, readable by its owner
//! only. The hook runs this binary's `hook notify`, which reads the pushed
//! refs from standard input and, when the project's branch is among them,
//! asks the API for a sync with `trigger: hook`. The API does not make the
//! push wait for the sync: the request joins the project's queued sync, or
//! has one more run after the running one, so the newest push is synced.
//! A hook cannot refuse a push that already happened; a failure to reach the
//! API is printed for the pusher (as `remote: …`) and the exit code is 1.

use anyhow::{bail, Context, Result};
use projsync_domain::ProjectId;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The line that marks a hook as ours: `install` replaces such a hook, and
/// refuses to replace any other without `--force`.
pub const MARKER: &str = "# projsync post-receive hook";

/// The key file's name, in the hooks directory.
pub const KEY_FILE: &str = "projsync-hook.key";

/// How long `notify` waits for the API.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// What `install` is asked to do.
#[derive(Debug)]
pub struct Install {
    /// The API's base URL (`http://127.0.0.1:8080`).
    pub api: String,
    /// An API key of the project's tenant, with the write role.
    pub key: String,
    /// The project: its id or name.
    pub project: String,
    /// The repository (bare, or a working tree).
    pub repo: PathBuf,
    /// Replace a `post-receive` hook that projsync did not write.
    pub force: bool,
}

/// What `install` did.
#[derive(Debug)]
pub struct Installed {
    pub hook: PathBuf,
    pub key_file: PathBuf,
    pub project_id: ProjectId,
    pub project_name: String,
    pub branch: String,
    /// A hook of ours was there and is replaced.
    pub replaced: bool,
}

/// The project as the API shows it (the fields the hook needs).
#[derive(Debug, serde::Deserialize)]
struct ApiProject {
    id: ProjectId,
    name: String,
    repository: ApiRepository,
}

#[derive(Debug, serde::Deserialize)]
struct ApiRepository {
    provider: String,
    location: String,
    default_branch: String,
}

fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(API_TIMEOUT)
        .build()
        .context("cannot build an HTTP client")
}

/// `GET {api}{path}` with the key, as JSON, with the next page's cursor;
/// `None` for a 404. Errors say what to do.
async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    api: &str,
    key: &str,
    path: &str,
) -> Result<Option<(T, Option<String>)>> {
    let url = format!("{api}{path}");
    let response = client
        .get(&url)
        .bearer_auth(key)
        .send()
        .await
        .with_context(|| {
            format!("cannot reach the API at {api}: is `projsync api` running there? (--api)")
        })?;
    let status = response.status();
    let next = response
        .headers()
        .get("x-next-cursor")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if status == reqwest::StatusCode::UNAUTHORIZED {
        bail!("the API at {api} does not accept this key: give a key of the project's tenant (--key, PROJSYNC_API_KEY)");
    }
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("GET {url} answered {status}: {}", body.trim());
    }
    let body = response
        .json()
        .await
        .with_context(|| format!("GET {url}: not the expected JSON"))?;
    Ok(Some((body, next)))
}

/// Find the project by id or name among the key's tenant's projects.
async fn find_project(
    client: &reqwest::Client,
    api: &str,
    key: &str,
    project: &str,
) -> Result<ApiProject> {
    if let Ok(id) = project.parse::<uuid::Uuid>() {
        let path = format!("/api/v1/projects/{id}");
        if let Some((p, _)) = get_json::<ApiProject>(client, api, key, &path).await? {
            return Ok(p);
        }
    }
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/projects?limit=100&cursor={c}"),
            None => "/api/v1/projects?limit=100".to_string(),
        };
        let (page, next) = get_json::<Vec<ApiProject>>(client, api, key, &path)
            .await?
            .with_context(|| format!("GET {api}{path} answered 404: is {api} a projsync API?"))?;
        if let Some(p) = page.into_iter().find(|p| p.name == project) {
            return Ok(p);
        }
        match next {
            Some(n) => cursor = Some(n),
            None => bail!(
                "no project `{project}` is visible to this key (its tenant's projects: `projsync project list`)"
            ),
        }
    }
}

/// Ask Git where the repository's hooks live (absolute).
fn hooks_dir(repo: &Path) -> Result<PathBuf> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--path-format=absolute", "--git-path", "hooks"])
        .output()
        .context("cannot run git: install Git (apt-get install git)")?;
    if !out.status.success() {
        bail!(
            "{} is not a Git repository: {}",
            repo.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(dir)
}

/// The Git directory of a repository, for comparing two paths that name
/// the same repository (a working tree and its `.git`, a symlink).
fn git_dir(repo: &Path) -> Option<PathBuf> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--absolute-git-dir"])
        .output()
        .ok()?;
    out.status.success().then(|| {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        p.canonicalize().unwrap_or(p)
    })
}

/// A POSIX shell word: `'…'` with each `'` written `'\''`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Install the hook; see the module doc.
pub async fn install(args: &Install) -> Result<Installed> {
    let api = args.api.trim_end_matches('/').to_string();
    let hooks = hooks_dir(&args.repo)?;
    let client = client()?;
    let project = find_project(&client, &api, &args.key, &args.project).await?;
    if project.repository.provider != "local" {
        bail!(
            "project {} syncs the {} repository {}: a Git hook is for local repositories; \
             for GitHub, register a webhook (projsync webhook secret --tenant T)",
            project.name,
            project.repository.provider,
            project.repository.location
        );
    }
    let theirs = git_dir(Path::new(&project.repository.location));
    let ours = git_dir(&args.repo);
    if theirs.is_none() || theirs != ours {
        bail!(
            "project {} reads the repository at {}, not {}: install the hook in the repository \
             the project syncs (a push elsewhere would not change what it reads)",
            project.name,
            project.repository.location,
            args.repo.display()
        );
    }
    std::fs::create_dir_all(&hooks)
        .with_context(|| format!("cannot create {}", hooks.display()))?;
    let hook = hooks.join("post-receive");
    let mut replaced = false;
    if let Ok(existing) = std::fs::read_to_string(&hook) {
        if existing.contains(MARKER) {
            replaced = true;
        } else if !args.force {
            bail!(
                "{} exists and was not written by projsync: merge it by hand (call `{}` from it), \
                 or replace it with --force",
                hook.display(),
                "projsync hook notify …"
            );
        }
    } else if hook.exists() {
        bail!("{} exists and cannot be read", hook.display());
    }
    let key_file = hooks.join(KEY_FILE);
    write_private(&key_file, &format!("{}\n", args.key))?;
    let exe = std::env::current_exe().context("cannot tell where this projsync binary is")?;
    let script = format!(
        "#!/bin/sh\n{MARKER} (installed by `projsync hook install`; run it again to change it).\n\
         # It asks the projsync API for a sync of project {name} when branch {branch} is pushed.\n\
         exec {exe} hook notify --api {api} --project {id} --branch {branch_q} --key-file {key}\n",
        name = project.name.escape_debug(),
        branch = project.repository.default_branch.escape_debug(),
        exe = sh_quote(&exe.to_string_lossy()),
        api = sh_quote(&api),
        id = project.id,
        branch_q = sh_quote(&project.repository.default_branch),
        key = sh_quote(&key_file.to_string_lossy()),
    );
    write_executable(&hook, &script)?;
    Ok(Installed {
        hook,
        key_file,
        project_id: project.id,
        project_name: project.name,
        branch: project.repository.default_branch,
        replaced,
    })
}

#[cfg(unix)]
fn write_private(path: &Path, content: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::os::unix::fs::PermissionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // An existing file keeps its mode on open: make it private.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(content.as_bytes())?;
    Ok(())
}

#[cfg(unix)]
fn write_executable(path: &Path, content: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, content).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// What `notify` is asked to do (the hook's arguments).
#[derive(Debug)]
pub struct Notify {
    pub api: String,
    pub project: ProjectId,
    pub branch: String,
    pub key_file: PathBuf,
}

/// The refs a `post-receive` hook was given (`<old> <new> <ref>` per line)
/// that update `refs/heads/{branch}` (not delete it).
pub fn pushes_branch(stdin: &str, branch: &str) -> bool {
    let want = format!("refs/heads/{branch}");
    stdin.lines().any(|line| {
        let mut parts = line.split_whitespace();
        let (_old, new, name) = (parts.next(), parts.next(), parts.next());
        name == Some(want.as_str()) && new.is_some_and(|n| n.chars().any(|c| c != '0'))
    })
}

/// What the API answered a hook's request.
#[derive(Debug, serde::Deserialize)]
struct Requested {
    sync_id: projsync_domain::SyncId,
    created: bool,
    #[serde(default)]
    follow_up: bool,
}

/// Run the hook: returns the line to show the pusher, or `None` when the
/// push did not touch the project's branch.
pub async fn notify(args: &Notify, stdin: &str) -> Result<Option<String>> {
    if !pushes_branch(stdin, &args.branch) {
        return Ok(None);
    }
    let key = std::fs::read_to_string(&args.key_file)
        .with_context(|| format!("cannot read the API key from {}", args.key_file.display()))?;
    let api = args.api.trim_end_matches('/');
    let url = format!("{api}/api/v1/projects/{}/syncs", args.project);
    let response = client()?
        .post(&url)
        .bearer_auth(key.trim())
        .json(&serde_json::json!({ "trigger": "hook" }))
        .send()
        .await
        .with_context(|| {
            format!("cannot reach the projsync API at {api}; the push is kept, sync it later")
        })?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("the projsync API answered {status}: {}", body.trim());
    }
    let r: Requested = response
        .json()
        .await
        .context("the projsync API's answer is not the expected JSON")?;
    Ok(Some(if r.created {
        format!("projsync: sync {} queued", r.sync_id)
    } else if r.follow_up {
        format!(
            "projsync: sync {} is running; another follows it with this push",
            r.sync_id
        )
    } else {
        format!(
            "projsync: sync {} was queued already and takes this push",
            r.sync_id
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::{pushes_branch, sh_quote};

    #[test]
    fn only_an_update_of_the_branch_counts() {
        let z = "0".repeat(40);
        let a = "a".repeat(40);
        assert!(pushes_branch(&format!("{z} {a} refs/heads/main\n"), "main"));
        assert!(pushes_branch(
            &format!("{a} {a} refs/heads/dev\n{z} {a} refs/heads/main\n"),
            "main"
        ));
        assert!(
            !pushes_branch(&format!("{a} {z} refs/heads/main\n"), "main"),
            "a delete"
        );
        assert!(!pushes_branch(
            &format!("{z} {a} refs/heads/mainline\n"),
            "main"
        ));
        assert!(!pushes_branch(&format!("{z} {a} refs/tags/main\n"), "main"));
        assert!(!pushes_branch("", "main"));
    }

    #[test]
    fn shell_words_survive_quotes() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
