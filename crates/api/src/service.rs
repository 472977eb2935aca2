//! What the API does, callable without HTTP (the CLI uses it too).

use crate::{ApiError, AppState};
use projsync_domain::source::RepositorySpec;
use projsync_domain::{ProjectId, SyncStatus};
use projsync_store::{EnqueueOutcome, NewProject, Project};
use serde::Deserialize;
use tracing::Instrument as _;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    pub name: String,
    pub repository: RepositoryInput,
    #[serde(default)]
    pub ignore_patterns: Vec<String>,
    pub max_file_bytes: Option<i64>,
    /// `{"enabled": false}` turns embeddings off for this project.
    #[serde(default)]
    pub embeddings: Option<Switch>,
    /// `{"enabled": false}` turns code analysis off for this project.
    #[serde(default)]
    pub analysis: Option<Switch>,
    /// `every 15m`, or a cron expression in UTC: the scheduler syncs the
    /// project by itself. Absent or null: no schedule.
    #[serde(default)]
    pub schedule: Option<String>,
}

/// A schedule as the caller spelled it, parsed; else a 422 naming `field`
/// and the forms accepted.
pub fn parse_schedule(field: &str, text: &str) -> Result<projsync_domain::Schedule, ApiError> {
    text.parse()
        .map_err(|e: projsync_domain::schedule::ScheduleError| {
            ApiError::Invalid(format!("{field}: {e}"))
        })
}

/// A project's own setting for a capability the deployment turns on or
/// off (`enabled` absent or null: the deployment's setting).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Switch {
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case", deny_unknown_fields)]
pub enum RepositoryInput {
    /// A Git repository on the worker's disk.
    Local { path: String, branch: String },
    /// A GitHub (or GitHub Enterprise) repository, `owner/name`.
    Github {
        repository: String,
        branch: String,
        /// The name of a credential an operator registered for this
        /// tenant (`projsync credential add`). Absent for public
        /// repositories. (`credentials_ref` is accepted as an older name.)
        #[serde(alias = "credentials_ref")]
        credential: Option<String>,
    },
}

/// Refuse text that Postgres cannot store (NUL) or that no name, path or
/// branch should hold (control characters; a free-text `multiline` field
/// may hold newlines and tabs), and text longer than `max` bytes.
pub(crate) fn check_text(
    field: &str,
    value: &str,
    max: usize,
    multiline: bool,
) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::Invalid(format!(
            "{field} must not contain NUL bytes"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
    {
        return Err(ApiError::Invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    if value.len() > max {
        return Err(ApiError::Invalid(format!(
            "{field} is {} bytes; at most {max} are accepted",
            value.len()
        )));
    }
    Ok(())
}

/// A branch name as Git takes it (`git check-ref-format --branch`), else a
/// 422 naming `field`.
fn check_branch(field: &str, branch: &str) -> Result<(), ApiError> {
    projsync_domain::names::check_branch_name(branch)
        .map_err(|e| ApiError::Invalid(format!("{field}: {e}")))
}

/// A source's answer to a request's input: what is unavailable now is a
/// 503 (try again), anything else a 422 (the input must change).
fn source_error(e: projsync_domain::SourceError) -> ApiError {
    use projsync_domain::SourceErrorKind as K;
    match e.kind {
        K::Unavailable | K::RateLimited => ApiError::Unavailable(e.message),
        K::NotFound | K::Unauthorized | K::Invalid => ApiError::Invalid(e.message),
    }
}

/// `branch` must exist in `source`; else a 422 naming `field`, the branch
/// and the branches there are, then `hint`. With `allow_empty`, a
/// repository that has no branch at all (no commits yet) passes.
async fn require_branch(
    source: &dyn projsync_domain::Source,
    field: &str,
    branch: &str,
    allow_empty: bool,
    hint: &str,
) -> Result<(), ApiError> {
    let not_found = match source.resolve_branch(branch).await {
        Ok(_) => return Ok(()),
        Err(e) if e.kind == projsync_domain::SourceErrorKind::NotFound => e,
        Err(e) => return Err(source_error(e)),
    };
    let names: Vec<String> = match source.list_branches().await {
        Ok(branches) => branches.into_iter().map(|b| b.name).collect(),
        // The branch is missing either way; say so without the list.
        Err(_) => {
            return Err(ApiError::Invalid(format!(
                "{field}: {}; {hint}",
                not_found.message
            )))
        }
    };
    if names.is_empty() && allow_empty {
        return Ok(());
    }
    const SHOWN: usize = 20;
    let mut list = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        list.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    let there = if names.is_empty() {
        "the repository has no branches yet".to_string()
    } else {
        format!("its branches are {list}")
    };
    Err(ApiError::Invalid(format!(
        "{field}: branch `{branch}` does not exist in {}; {there}; {hint}",
        source.describe()
    )))
}

pub async fn create_project(state: &AppState, input: CreateProject) -> Result<Project, ApiError> {
    check_text("name", &input.name, 4096, false)?;
    match &input.repository {
        RepositoryInput::Local { path, branch } => {
            check_text("repository.path", path, 4096, false)?;
            check_text("repository.branch", branch, 255, false)?;
        }
        RepositoryInput::Github {
            repository,
            branch,
            credential,
        } => {
            check_text("repository.repository", repository, 255, false)?;
            check_text("repository.branch", branch, 255, false)?;
            if let Some(c) = credential {
                check_text("repository.credential", c, 255, false)?;
                // A caller names a registered credential, never a variable or a file.
                projsync_domain::tenancy::check_credential_name(c)
                    .map_err(|e| ApiError::Invalid(format!("repository.credential: {e}")))?;
            }
            projsync_domain::names::check_github_repository(repository)
                .map_err(|e| ApiError::Invalid(format!("repository.repository: {e}")))?;
        }
    }
    let schedule = input
        .schedule
        .as_deref()
        .map(|s| parse_schedule("schedule", s))
        .transpose()?;
    let name = input.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::Invalid(
            "project name must be 1 to 200 characters".into(),
        ));
    }
    if let Some(m) = input.max_file_bytes {
        if m <= 0 {
            return Err(ApiError::Invalid("max_file_bytes must be positive".into()));
        }
        let limit = state.limits.max_file_bytes_limit;
        if m as u64 > limit {
            return Err(ApiError::Invalid(format!(
                "max_file_bytes is {m}; at most {limit} is accepted (api.max_file_bytes_limit)"
            )));
        }
    }
    crate::limits::check_ignore_patterns(
        &state.limits,
        state.default_max_file_bytes,
        &input.ignore_patterns,
    )
    .await?;
    let (provider, location, branch, credential) = match input.repository {
        RepositoryInput::Local { path, branch } => {
            let path = std::path::Path::new(&path);
            if !path.is_absolute() {
                return Err(ApiError::Invalid(format!(
                    "repository path `{}` must be absolute",
                    path.display()
                )));
            }
            ("local", path.to_string_lossy().into_owned(), branch, None)
        }
        RepositoryInput::Github {
            repository,
            branch,
            credential,
        } => ("github", repository, branch, credential),
    };
    let branch = branch.trim().to_string();
    check_branch("repository.branch", &branch)?;
    // Opening it checks that the repository exists and can be read with
    // this credential (one of the caller's tenant).
    let reference = state
        .store
        .credential_reference(credential.as_deref())
        .await?;
    let source = state
        .sources
        .open(&RepositorySpec {
            provider,
            location: &location,
            credentials_ref: reference.as_deref(),
            remote: None,
        })
        .await
        .map_err(source_error)?;
    // A repository without commits has no branch yet: it can be connected,
    // and its first sync says what to do.
    require_branch(
        &*source,
        "repository.branch",
        &branch,
        true,
        "give one of them",
    )
    .await?;
    let project = state
        .store
        .create_project(&NewProject {
            name: name.to_string(),
            provider: provider.into(),
            location,
            default_branch: branch,
            credential,
            ignore_patterns: input.ignore_patterns,
            max_file_bytes: input.max_file_bytes,
            embeddings_enabled: input.embeddings.and_then(|e| e.enabled),
            analysis_enabled: input.analysis.and_then(|a| a.enabled),
            // What the check learned (GitHub: the canonical owner/name and
            // the id): syncs open the repository with it and look it up
            // no more.
            remote: source.remote(),
            schedule,
        })
        .await?;
    audit(
        state,
        "project.create",
        format!("project:{}", project.id),
        serde_json::json!({ "name": project.name, "provider": provider }),
    )
    .await;
    Ok(project)
}

/// Set (`Some`) or clear (`None`) a project's schedule; audited.
pub async fn set_schedule(
    state: &AppState,
    project_id: ProjectId,
    schedule: Option<&str>,
) -> Result<Project, ApiError> {
    let schedule = schedule
        .map(|s| parse_schedule("schedule", s))
        .transpose()?;
    let project = state
        .store
        .set_schedule(project_id, schedule.as_ref())
        .await?;
    audit(
        state,
        "project.schedule",
        format!("project:{}", project.id),
        serde_json::json!({ "schedule": project.schedule }),
    )
    .await;
    Ok(project)
}

/// Open a project's repository with the credential it names (one of the
/// caller's tenant).
pub async fn open_source(
    state: &AppState,
    project: &Project,
) -> Result<std::sync::Arc<dyn projsync_domain::Source>, ApiError> {
    let r = &project.repository;
    let reference = state
        .store
        .credential_reference(r.credential.as_deref())
        .await?;
    Ok(state.sources.open(&r.spec(reference.as_deref())).await?)
}

/// Record a state-changing call in the audit trail: who (the request's
/// key, or the operator's CLI), what and on which target. The change is
/// already committed; a trail that cannot be written is logged loudly.
pub async fn audit(state: &AppState, action: &str, target: String, detail: serde_json::Value) {
    let actor = state.actor();
    if let Err(e) = state.store.audit(&actor, action, &target, detail).await {
        tracing::error!(action, target, "cannot write the audit trail: {e}");
    }
}

/// A project's file entry at `path`: the active version, or the one
/// that was active right after `as_of` (a succeeded sync or restore of
/// the project).
pub async fn read_entry(
    state: &AppState,
    project_id: ProjectId,
    path: &str,
    as_of: Option<projsync_domain::SyncId>,
) -> Result<projsync_store::ActiveEntry, ApiError> {
    // No stored path holds NUL (Git forbids it, and Postgres text cannot
    // even be compared with one); other odd bytes are real paths.
    if path.contains('\0') {
        return Err(ApiError::Invalid("path must not contain NUL bytes".into()));
    }
    state.store.project(project_id).await?;
    if let Some(sync) = as_of {
        if !state.store.is_history_point(project_id, sync).await? {
            return Err(ApiError::Invalid(format!(
                "as_of: sync {sync} is not a succeeded sync or restore of this project"
            )));
        }
    }
    Ok(state.store.entry_as_of(project_id, path, as_of).await?)
}

/// Record a sync in the ledger, then push its id to the queue. The project's
/// active sync (or the one with the same idempotency key) is returned
/// instead of a new one. A new sync keeps the W3C trace context of the
/// current span (the request's): its runs join that trace.
pub async fn enqueue_sync(
    state: &AppState,
    project_id: ProjectId,
    branch: Option<&str>,
    idempotency_key: Option<&str>,
    trigger: &projsync_domain::SyncTrigger,
) -> Result<EnqueueOutcome, ApiError> {
    if let Some(b) = branch {
        check_text("branch", b, 255, false)?;
    }
    let named = branch.map(str::trim).filter(|b| !b.is_empty());
    if let Some(b) = named {
        check_branch("branch", b)?;
    }
    // A branch named in the request must exist in the repository. The
    // default branch was checked when the project was created; if it is
    // gone since, prepare fails the sync with the branches there are (and
    // a periodic sync costs the source nothing more than before): the
    // usual enqueue reads nothing before it records the sync.
    if let Some(b) = named {
        let project = state.store.project(project_id).await?;
        let r = &project.repository;
        let reference = state
            .store
            .credential_reference(r.credential.as_deref())
            .await?;
        let source = state
            .sources
            .open(&r.spec(reference.as_deref()))
            .await
            .map_err(source_error)?;
        let hint = format!("GET /api/v1/projects/{project_id}/branches lists them");
        require_branch(&*source, "branch", b, false, &hint).await?;
    }
    let outcome = state
        .store
        .create_sync(
            project_id,
            named,
            idempotency_key,
            projsync_telemetry::current_traceparent().as_deref(),
            trigger,
        )
        .await?;
    crate::trace::record_sync_id(outcome.sync.id);
    push_new_or_queued(state, &outcome).await?;
    if outcome.created {
        audit(
            state,
            "sync.enqueue",
            format!("sync:{}", outcome.sync.id),
            serde_json::json!({
                "project_id": project_id,
                "branch": outcome.sync.branch,
                "trigger": outcome.sync.trigger,
            }),
        )
        .await;
    }
    Ok(outcome)
}

/// Ask for a sync on behalf of something that does not wait for it (a Git
/// hook; GitHub webhooks go through the store's `request_sync` with their
/// debounce): a burst of requests is one sync that ends at the newest head.
/// The project's queued sync takes the request; while a sync runs, one
/// more is started after it (by the workers' scheduler); otherwise a new
/// sync is recorded, due after `delay`, and pushed at once when that is
/// zero (the reconciler pushes it otherwise, and if the push fails).
pub async fn request_sync(
    state: &AppState,
    project_id: ProjectId,
    trigger: &projsync_domain::SyncTrigger,
    delay: std::time::Duration,
) -> Result<projsync_store::SyncRequest, ApiError> {
    let request = state.store.request_sync(project_id, trigger, delay).await?;
    if let projsync_store::SyncRequest::Created(sync) = &request {
        crate::trace::record_sync_id(sync.id);
        if delay.is_zero() {
            let outcome = EnqueueOutcome {
                sync: sync.clone(),
                created: true,
            };
            push_new_or_queued(state, &outcome).await?;
        }
        audit(
            state,
            "sync.enqueue",
            format!("sync:{}", sync.id),
            serde_json::json!({
                "project_id": project_id,
                "branch": sync.branch,
                "trigger": sync.trigger,
            }),
        )
        .await;
    }
    Ok(request)
}

/// Enqueue a restore of `target`: the project's active entries become what
/// they were after that sync. It runs like any sync, fetches no content and
/// appears in the history as kind `restore`.
pub async fn enqueue_restore(
    state: &AppState,
    project_id: ProjectId,
    target: projsync_domain::SyncId,
    idempotency_key: Option<&str>,
) -> Result<EnqueueOutcome, ApiError> {
    state.store.project(project_id).await?;
    let sync = match state.store.sync(target).await {
        Ok(s) if s.project_id == project_id => s,
        Ok(_) | Err(projsync_store::Error::NotFound(_)) => {
            return Err(ApiError::Invalid(format!(
                "sync {target} is not a sync of project {project_id}"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    if sync.status != SyncStatus::Succeeded {
        return Err(ApiError::Invalid(format!(
            "sync {target} is {}; only a succeeded sync can be restored",
            sync.status
        )));
    }
    let outcome = state
        .store
        .create_restore(
            project_id,
            &sync,
            idempotency_key,
            projsync_telemetry::current_traceparent().as_deref(),
            &state.trigger(),
        )
        .await?;
    crate::trace::record_sync_id(outcome.sync.id);
    push_new_or_queued(state, &outcome).await?;
    if outcome.created {
        audit(
            state,
            "memory.restore",
            format!("sync:{}", outcome.sync.id),
            serde_json::json!({ "project_id": project_id, "restore_of": target }),
        )
        .await;
    }
    Ok(outcome)
}

/// Push a new sync, or push a queued one again. The ledger row is already
/// committed (invariant 1), so a push that fails loses nothing: the sync is
/// marked unpushed and the reconciler pushes it as soon as Redis answers.
pub(crate) async fn push_new_or_queued(
    state: &AppState,
    outcome: &EnqueueOutcome,
) -> Result<(), ApiError> {
    if !(outcome.created || outcome.sync.status == SyncStatus::Queued) {
        return Ok(());
    }
    let id = outcome.sync.id;
    // One immediate retry: a connection manager answers the first command
    // after a Redis restart with an error, then reconnects.
    let mut result = state.queue.push(id).await;
    if result.is_err() {
        result = state.queue.push(id).await;
    }
    if let Err(e) = result {
        tracing::warn!(sync_id = %id, "cannot push the sync: {e}; the reconciler will push it");
        state.store.mark_unpushed(id).await?;
    }
    Ok(())
}

/// Cancel a sync: a queued one at once, a running one at its next batch
/// boundary. Either way its pending versions are discarded and the active
/// knowledge base is untouched.
pub async fn cancel_sync(
    state: &AppState,
    sync_id: projsync_domain::SyncId,
) -> Result<projsync_store::CancelOutcome, ApiError> {
    let outcome = state.store.request_cancel(sync_id).await?;
    audit(
        state,
        "sync.cancel",
        format!("sync:{sync_id}"),
        serde_json::json!({ "outcome": match outcome {
            projsync_store::CancelOutcome::Cancelled => "cancelled",
            projsync_store::CancelOutcome::Requested => "cancel_requested",
        } }),
    )
    .await;
    Ok(outcome)
}

/// Discard a failed or cancelled sync (its pending work is dropped).
pub async fn discard_sync(
    state: &AppState,
    sync_id: projsync_domain::SyncId,
) -> Result<projsync_store::SyncRecord, ApiError> {
    let sync = state.store.discard_sync(sync_id).await?;
    audit(
        state,
        "sync.discard",
        format!("sync:{sync_id}"),
        serde_json::json!({}),
    )
    .await;
    Ok(sync)
}

/// Queue a failed or cancelled sync again, from its failed phase or from
/// the start, and push it.
pub async fn retry_sync(
    state: &AppState,
    sync_id: projsync_domain::SyncId,
    from_start: bool,
) -> Result<projsync_store::SyncRecord, ApiError> {
    let traced = projsync_telemetry::current_traceparent();
    let sync = state
        .store
        .retry_sync(sync_id, from_start, traced.as_deref())
        .await?;
    crate::trace::record_sync_id(sync_id);
    // The sync keeps its trace: the push goes into it, linked to this
    // request (whose own trace it is not, unless the sync had none).
    let span = tracing::info_span!("sync.retry", %sync_id, from_start);
    if traced.is_some() {
        let stored = state.store.trace_context(sync_id).await.ok().flatten();
        projsync_telemetry::set_parent_from(&span, stored.as_deref());
        projsync_telemetry::link_to_current(&span);
    }
    if let Err(e) = state.queue.push(sync_id).instrument(span).await {
        // It is queued in the ledger: the reconciler pushes it once Redis is back.
        tracing::warn!(%sync_id, "cannot push the retried sync: {e}; the reconciler will");
    }
    audit(
        state,
        "sync.retry",
        format!("sync:{sync_id}"),
        serde_json::json!({ "from_start": from_start }),
    )
    .await;
    Ok(sync)
}
