//! The sources of a deployment: which `Source` opens a repository of each
//! provider, and how a project's `credentials_ref` becomes credentials.
//!
//! This is where concrete sources meet: the pipeline and the API see only
//! the `SourceFactory` trait of the domain, and the binary hands them a
//! [`DefaultSources`]. Nothing here knows about the ledger or the queue.

use async_trait::async_trait;
use projsync_domain::source::{RepositorySpec, SourceFactory};
use projsync_domain::{Source, SourceError};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

pub use projsync_source_github::GitHubConfig;

/// Local repositories through the git CLI, GitHub through octocrab.
#[derive(Clone, Default)]
pub struct DefaultSources {
    github: GitHubConfig,
    /// Directories under which local repositories may be read (empty:
    /// none may).
    local_roots: Vec<PathBuf>,
    /// Where the GitHub rate-limit budgets are shared, and under which key
    /// prefix (none: each request only learns from its own answer).
    redis: Option<(redis::aio::ConnectionManager, String)>,
    tree_cache: projsync_source_github::TreeCache,
    /// Repository lookups of projects connected before the lookup was kept
    /// in the ledger (`RepositorySpec::remote`), kept so that only a
    /// process's first sync of such a repository (per token) asks for it.
    repo_cache: projsync_source_github::RepoCache,
    /// Where GitHub requests and rate-limit budgets are counted.
    metrics: projsync_metrics::Metrics,
}

impl DefaultSources {
    pub fn new(
        github: GitHubConfig,
        redis: Option<(redis::aio::ConnectionManager, String)>,
    ) -> Self {
        Self {
            github,
            local_roots: Vec::new(),
            redis,
            tree_cache: Default::default(),
            repo_cache: Default::default(),
            metrics: Default::default(),
        }
    }

    /// Count GitHub requests in the process's metrics.
    pub fn with_metrics(mut self, metrics: projsync_metrics::Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Allow local repositories under these directories (the operator's
    /// `sources.local.allowed_roots`). Roots that do not exist are ignored.
    pub fn with_local_roots(mut self, roots: impl IntoIterator<Item = PathBuf>) -> Self {
        self.local_roots = roots
            .into_iter()
            .filter_map(|r| r.canonicalize().ok())
            .collect();
        self
    }

    /// Open a local repository if the operator allows it: the path,
    /// symlinks resolved, must lie under an allowed root and be the top of
    /// a repository. Every refusal has the same text, so that a caller
    /// learns nothing about the server's files.
    async fn open_local(
        &self,
        location: &str,
    ) -> Result<projsync_source_git::GitSource, SourceError> {
        if self.local_roots.is_empty() {
            return Err(SourceError::invalid(
                "local repositories are not enabled on this server; an operator allows \
                 directories with sources.local.allowed_roots",
            ));
        }
        let refused = || {
            SourceError::invalid(format!(
                "`{}` is not a repository this server may read: give the top directory of a \
                 Git repository under one of the directories an operator allowed \
                 (sources.local.allowed_roots)",
                location.escape_debug()
            ))
        };
        let path = Path::new(location);
        if !path.is_absolute()
            || path
                .components()
                .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
            || path.file_name().is_some_and(|n| n == ".git")
        {
            return Err(refused());
        }
        let real = path.canonicalize().map_err(|_| refused())?;
        if !self.local_roots.iter().any(|root| real.starts_with(root)) {
            return Err(refused());
        }
        let source = projsync_source_git::GitSource::open(&real)
            .await
            .map_err(|_| refused())?;
        if !source.is_repository_top().await.map_err(|_| refused())? {
            return Err(refused());
        }
        Ok(source)
    }
}

/// The credentials a `credentials_ref` names. Secrets are never stored in
/// the ledger, only where to find them in this process's environment:
/// - `env:NAME` or `file:PATH`: a token in the environment variable NAME,
///   or in a file (a mounted secret);
/// - `app:APP_ID:INSTALLATION_ID:env:NAME` or `…:file:PATH`: a GitHub App
///   installation whose private key (PEM; `\n` escapes allowed in a
///   variable) is there.
pub fn resolve_credentials(
    credentials_ref: Option<&str>,
) -> Result<projsync_source_github::Credentials, SourceError> {
    use projsync_source_github::Credentials;
    let Some(r) = credentials_ref else {
        return Ok(Credentials::Anonymous);
    };
    let read = |kind: &str, name: &str, what: &str| -> Result<String, SourceError> {
        let value = match kind {
            "env" => std::env::var(name).ok(),
            _ => std::fs::read_to_string(name).ok(),
        };
        match value {
            Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
            _ if kind == "env" => Err(SourceError::unauthorized(format!(
                "credentials `{r}` are not set on this process; export {name} with {what}"
            ))),
            _ => Err(SourceError::unauthorized(format!(
                "credentials `{r}`: cannot read {what} from {name}"
            ))),
        }
    };
    let parts: Vec<&str> = r.splitn(5, ':').collect();
    match parts.as_slice() {
        [kind @ ("env" | "file"), name] if !name.is_empty() => {
            let token = read(kind, name, "a GitHub token")?;
            Ok(Credentials::Token(checked_token(r, &token)?.to_string()))
        }
        ["app", app, installation, kind @ ("env" | "file"), name] if !name.is_empty() => {
            let (Ok(app_id), Ok(installation_id)) = (app.parse(), installation.parse()) else {
                return Err(SourceError::invalid(format!(
                    "`{r}`: the app id and installation id must be numbers"
                )));
            };
            Ok(Credentials::App {
                app_id,
                installation_id,
                private_key_pem: read(kind, name, "the app's private key (PEM)")?
                    .replace("\\n", "\n"),
            })
        }
        _ => Err(SourceError::invalid(format!(
            "unknown credentials reference `{r}`; use env:VARIABLE, file:PATH or \
             app:APP_ID:INSTALLATION_ID:env:VARIABLE (or :file:PATH)"
        ))),
    }
}

/// A token is sent as an HTTP header: anything that cannot be (an inner
/// line break, a control character, non-ASCII) is refused here, with a
/// message that names the reference and never the secret.
fn checked_token<'a>(reference: &str, token: &'a str) -> Result<&'a str, SourceError> {
    projsync_domain::names::clean_header_secret(
        token,
        &format!("the GitHub token named by credentials `{reference}`"),
    )
    .map_err(SourceError::unauthorized)
}

#[async_trait]
impl SourceFactory for DefaultSources {
    async fn open(&self, repo: &RepositorySpec<'_>) -> Result<Arc<dyn Source>, SourceError> {
        match repo.provider {
            "local" => Ok(Arc::new(self.open_local(repo.location).await?)),
            "github" => {
                let credentials = resolve_credentials(repo.credentials_ref)?;
                let budget = self
                    .redis
                    .clone()
                    .map(|(conn, ns)| projsync_source_github::Budget::new(conn, &ns, &credentials));
                // What the connect-time lookup gave is trusted, as long as
                // it names this location (GitHub's spelling may differ in
                // case only): no lookup.
                if let Some(remote) = repo
                    .remote
                    .filter(|r| r.name.eq_ignore_ascii_case(repo.location))
                {
                    let known = projsync_source_github::RepoInfo {
                        id: remote.id.and_then(|id| u64::try_from(id).ok()),
                        full_name: remote.name.clone(),
                        default_branch: String::new(),
                    };
                    return Ok(Arc::new(projsync_source_github::GitHubSource::open_known(
                        &self.github,
                        known,
                        credentials,
                        budget,
                        self.tree_cache.clone(),
                        self.metrics.clone(),
                    )?));
                }
                Ok(Arc::new(
                    projsync_source_github::GitHubSource::open(
                        &self.github,
                        repo.location,
                        credentials,
                        budget,
                        self.tree_cache.clone(),
                        self.repo_cache.clone(),
                        self.metrics.clone(),
                    )
                    .await?,
                ))
            }
            other => Err(SourceError::invalid(format!(
                "unknown repository provider `{other}`"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use projsync_domain::SourceErrorKind;
    use projsync_source_github::Credentials;

    fn token_file(content: &str) -> (std::path::PathBuf, String) {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("projsync-token-{}-{n}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        let reference = format!("file:{}", path.display());
        (path, reference)
    }

    #[test]
    fn a_token_file_with_a_trailing_newline_is_trimmed() {
        let (path, reference) = token_file("ghp_trailing\n");
        let creds = resolve_credentials(Some(&reference)).unwrap();
        std::fs::remove_file(path).ok();
        match creds {
            Credentials::Token(t) => assert_eq!(t, "ghp_trailing"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tokens_that_cannot_be_sent_in_a_header_are_refused_without_echo() {
        for content in [
            "abc\ndef",
            "abc\rdef\n",
            "abc def",
            "abc\u{7}def",
            "abcédef",
        ] {
            let (path, reference) = token_file(content);
            let err = resolve_credentials(Some(&reference)).unwrap_err();
            std::fs::remove_file(path).ok();
            assert_eq!(err.kind, SourceErrorKind::Unauthorized, "{content:?}");
            assert!(err.message.contains(&reference), "{err}");
            assert!(err.message.contains("HTTP header"), "{err}");
            assert!(
                !err.message.contains("abc") && !err.message.contains("def"),
                "the secret is echoed: {err}"
            );
        }
    }
}
