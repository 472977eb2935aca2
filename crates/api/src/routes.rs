//! Routes and handlers. Paths, bodies and status codes are a contract: keep
//! `openapi.yaml` in step.

use crate::auth::Scoped;
use crate::page::{self, PageQuery, Paged};
use crate::service::{self, CreateProject};
use crate::{ApiError, AppState, OPENAPI_YAML};
use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use projsync_domain::{ProjectId, Role, SyncId, SyncTrigger};
use projsync_store::{ActiveEntry, Project, StepRecord, SyncRecord};
use serde::{Deserialize, Serialize};

pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The API with `extra` routes served beside it, behind the same request
/// guard and trace span (the binary adds the MCP endpoint this way: its
/// crate is built on this one, so it cannot be named here).
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    let health = crate::health::Health::new(
        state.store.clone(),
        state.queue_opts.clone(),
        state.metrics.clone(),
    );
    Router::new()
        // /healthz, /readyz, /metrics (health.rs), behind the same guard.
        .merge(crate::health::router(health))
        // / and /assets/{name}: the web dashboard (crates/dashboard).
        .merge(projsync_dashboard::router())
        .route("/api/v1/openapi.yaml", get(openapi))
        .route(
            "/api/v1/session",
            post(crate::session::sign_in)
                .get(crate::session::whoami)
                .delete(crate::session::sign_out),
        )
        .route("/api/v1/projects", post(create_project).get(list_projects))
        .route(
            "/api/v1/projects/{id}",
            get(get_project).patch(update_project),
        )
        .route(
            "/api/v1/projects/{id}/syncs",
            post(enqueue_sync).get(list_syncs),
        )
        .route("/api/v1/projects/{id}/branches", get(list_branches))
        .route("/api/v1/projects/{id}/memory", get(list_memory))
        .route("/api/v1/projects/{id}/memory/entry", get(get_memory_entry))
        .route("/api/v1/projects/{id}/memory/restore", post(restore_memory))
        .route("/api/v1/projects/{id}/search", post(search))
        .route(
            "/api/v1/projects/{id}/symbols",
            get(crate::code::list_symbols),
        )
        .route(
            "/api/v1/projects/{id}/symbols/{qualified_name}/references",
            get(crate::code::symbol_references),
        )
        .route(
            "/api/v1/projects/{id}/dependencies",
            get(crate::code::dependencies),
        )
        .route("/api/v1/projects/{id}/embeddings", get(embedding_status))
        .route(
            "/api/v1/projects/{id}/embeddings/backfill",
            post(backfill_embeddings),
        )
        .route("/api/v1/syncs", get(list_syncs_by_status))
        .route("/api/v1/syncs/retry", post(crate::ops::retry_syncs))
        .route("/api/v1/ops/queue", get(crate::ops::queue_health))
        .route("/api/v1/syncs/{id}", get(get_sync))
        .route("/api/v1/syncs/{id}/cancel", post(cancel_sync))
        .route("/api/v1/syncs/{id}/retry", post(retry_sync))
        .route("/api/v1/syncs/{id}/discard", post(discard_sync))
        .route("/api/v1/syncs/{id}/events", get(crate::events::sync_events))
        .merge(extra)
        // The guard buffers the body under api.max_body_bytes; the
        // extractors' own limit must not be lower.
        .layer(axum::extract::DefaultBodyLimit::max(
            state.limits.max_body_bytes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::limits::guard,
        ))
        // GitHub's deliveries: signed instead of keyed, with a body limit
        // of their own, so outside the guard (webhooks.rs says why).
        .route("/api/v1/webhooks/github", post(crate::webhooks::github))
        // Outermost: the span covers the guard's refusals too.
        .layer(axum::middleware::from_fn(crate::trace::http_span))
        .with_state(state)
}

/// An optional JSON body: empty (or only whitespace) means the defaults;
/// anything else must be the endpoint's JSON shape.
fn optional_json<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::Invalid(format!("invalid request body: {e}")))
}

/// The body of an action without options: empty, or `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

pub(crate) fn project_id(raw: &str) -> Result<ProjectId, ApiError> {
    raw.parse().map_err(ApiError::NotFound)
}

pub(crate) fn sync_id(raw: &str) -> Result<SyncId, ApiError> {
    raw.parse().map_err(ApiError::NotFound)
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML)
}

async fn create_project(
    Scoped(state): Scoped,
    body: Result<Json<CreateProject>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Project>), ApiError> {
    state.require(Role::Admin)?;
    let Json(body) = body?;
    let project = service::create_project(&state, body).await?;
    Ok((StatusCode::CREATED, Json(project)))
}

/// Projects by name, a page at a time.
async fn list_projects(
    Scoped(state): Scoped,
    uri: Uri,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Paged<ProjectOverview>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let limit = page::limit(q.limit, 100, state.limits.max_page_size)?;
    let after = page::decode::<page::Projects>(q.cursor.as_deref())?;
    let found = state
        .store
        .list_projects_page(after.as_ref(), limit)
        .await?;
    let next = found.next.as_ref().map(page::encode::<page::Projects>);
    let items = project_overviews(&state, found.items).await?;
    Ok(Paged::new(&uri, items, next))
}

/// A project with what the projects page shows beside it.
#[derive(Debug, Serialize)]
pub(crate) struct ProjectOverview {
    #[serde(flatten)]
    project: Project,
    /// The newest sync or restore, whatever its status; null before the first.
    latest_sync: Option<SyncRecord>,
    /// The project's active file entries.
    active_entries: i64,
}

async fn project_overviews(
    state: &AppState,
    projects: Vec<Project>,
) -> Result<Vec<ProjectOverview>, ApiError> {
    let ids: Vec<ProjectId> = projects.iter().map(|p| p.id).collect();
    let mut facts = state.store.project_facts(&ids).await?;
    Ok(projects
        .into_iter()
        .map(|project| {
            let f = facts.remove(&project.id).unwrap_or_default();
            ProjectOverview {
                project,
                latest_sync: f.latest_sync,
                active_entries: f.active_entries,
            }
        })
        .collect())
}

async fn get_project(
    Scoped(state): Scoped,
    Path(id): Path<String>,
) -> Result<Json<ProjectOverview>, ApiError> {
    let project = state.store.project(project_id(&id)?).await?;
    let mut overview = project_overviews(&state, vec![project]).await?;
    Ok(Json(overview.remove(0)))
}

/// A project's settings to change: a field absent is left as it is.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateProject {
    /// `"every 15m"` or a cron expression sets the schedule; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    schedule: Option<Option<String>>,
}

/// A field that is present, even as `null` (`Some(None)`), as opposed to absent.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Change a project's settings (write role): today its schedule.
async fn update_project(
    Scoped(state): Scoped,
    Path(id): Path<String>,
    body: Result<Json<UpdateProject>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ProjectOverview>, ApiError> {
    state.require(Role::Write)?;
    let id = project_id(&id)?;
    let Json(body) = body?;
    let project = match body.schedule {
        Some(schedule) => service::set_schedule(&state, id, schedule.as_deref()).await?,
        None => state.store.project(id).await?,
    };
    let mut overview = project_overviews(&state, vec![project]).await?;
    Ok(Json(overview.remove(0)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnqueueBody {
    branch: Option<String>,
    /// What asks for the sync, when it is not a person: `hook` (a Git
    /// `post-receive` hook, `projsync hook install`). Default `api`.
    trigger: Option<String>,
}

#[derive(Debug, Serialize)]
struct EnqueueResponse {
    sync_id: SyncId,
    /// `false` when an already queued or running sync (or the sync with the
    /// same Idempotency-Key) is returned instead of a new one.
    created: bool,
    /// A hook's request (`trigger: hook`) that came while the project's
    /// sync (`sync`) was running: one more sync starts after it ends.
    follow_up: bool,
    sync: SyncRecord,
}

/// 202 with a new sync; 200 with the existing one when the project already
/// has a queued or running sync, or the Idempotency-Key was seen before.
async fn enqueue_sync(
    Scoped(state): Scoped,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<EnqueueResponse>), ApiError> {
    state.require(Role::Write)?;
    let body: EnqueueBody = optional_json(&body)?;
    let trigger = match body.trigger.as_deref() {
        None | Some("api") => SyncTrigger::Api,
        Some("hook") => SyncTrigger::Hook,
        Some(other) => {
            return Err(ApiError::Invalid(format!(
                "trigger `{}` cannot be asked for: a request's sync is started by `api` \
                 (the default) or `hook` (a Git hook); webhooks and schedules start their own",
                other.escape_debug()
            )))
        }
    };
    if trigger == SyncTrigger::Hook {
        // A hook does not wait for its sync: its request joins the queued
        // one, or follows the running one, so the newest push is synced.
        if body.branch.is_some() {
            return Err(ApiError::Invalid(
                "a hook's sync is of the project's branch: leave `branch` out".into(),
            ));
        }
        let request = service::request_sync(
            &state,
            project_id(&id)?,
            &trigger,
            std::time::Duration::ZERO,
        )
        .await?;
        let (created, follow_up) = match &request {
            projsync_store::SyncRequest::Created(_) => (true, false),
            projsync_store::SyncRequest::Queued(_) => (false, false),
            projsync_store::SyncRequest::Wanted(_) => (false, true),
        };
        let sync = request.sync().clone();
        let status = if created {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        return Ok((
            status,
            Json(EnqueueResponse {
                sync_id: sync.id,
                created,
                follow_up,
                sync,
            }),
        ));
    }
    let outcome = service::enqueue_sync(
        &state,
        project_id(&id)?,
        body.branch.as_deref(),
        idempotency_key(&headers)?,
        &trigger,
    )
    .await?;
    Ok(enqueue_response(outcome))
}

async fn search(
    Scoped(state): Scoped,
    Path(id): Path<String>,
    body: Result<Json<crate::search::SearchRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<crate::search::SearchResponse>, ApiError> {
    let Json(body) = body?;
    Ok(Json(
        crate::search::search(&state, project_id(&id)?, body).await?,
    ))
}

async fn embedding_status(
    Scoped(state): Scoped,
    Path(id): Path<String>,
) -> Result<Json<crate::search::EmbeddingStatus>, ApiError> {
    Ok(Json(
        crate::search::embedding_status(&state, project_id(&id)?).await?,
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillBody {
    #[serde(default)]
    prune: bool,
}

#[derive(Debug, Serialize)]
struct BackfillResponse {
    /// The backfill's id: a job of the ledger, followed like a sync
    /// (`/syncs/{id}`, `/syncs/{id}/events`, ops).
    job_id: SyncId,
    created: bool,
    sync: SyncRecord,
}

/// 202 with a new backfill job; 200 with the project's queued or running
/// backfill; 409 while a sync of the project is queued or running.
async fn backfill_embeddings(
    Scoped(state): Scoped,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<BackfillResponse>), ApiError> {
    state.require(Role::Write)?;
    let body: BackfillBody = optional_json(&body)?;
    let outcome = crate::search::enqueue_backfill(
        &state,
        project_id(&id)?,
        body.prune,
        idempotency_key(&headers)?,
    )
    .await?;
    let status = if outcome.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(BackfillResponse {
            job_id: outcome.sync.id,
            created: outcome.created,
            sync: outcome.sync,
        }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    sync_id: SyncId,
}

/// The `Idempotency-Key` header of any enqueue (sync, restore, backfill).
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::Invalid("Idempotency-Key must be visible ASCII".into()))
        })
        .transpose()?;
    if key.is_some_and(|k| k.is_empty() || k.len() > 200) {
        return Err(ApiError::Invalid(
            "Idempotency-Key must be 1 to 200 characters".into(),
        ));
    }
    Ok(key)
}

/// 202 with the new restore sync (200 with the project's active sync when
/// one is already queued or running).
async fn restore_memory(
    Scoped(state): Scoped,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<RestoreBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<EnqueueResponse>), ApiError> {
    state.require(Role::Write)?;
    let Json(body) = body?;
    let outcome = service::enqueue_restore(
        &state,
        project_id(&id)?,
        body.sync_id,
        idempotency_key(&headers)?,
    )
    .await?;
    Ok(enqueue_response(outcome))
}

fn enqueue_response(
    outcome: projsync_store::EnqueueOutcome,
) -> (StatusCode, Json<EnqueueResponse>) {
    let status = if outcome.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(EnqueueResponse {
            sync_id: outcome.sync.id,
            created: outcome.created,
            follow_up: false,
            sync: outcome.sync,
        }),
    )
}

/// The project's syncs, newest first, a page at a time.
async fn list_syncs(
    Scoped(state): Scoped,
    Path(id): Path<String>,
    uri: Uri,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Paged<SyncRecord>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let id = project_id(&id)?;
    let limit = page::limit(q.limit, 50, state.limits.max_page_size)?;
    let after = page::decode::<page::History>(q.cursor.as_deref())?
        .map(page::sync_key_in)
        .transpose()?;
    state.store.project(id).await?;
    let found = state
        .store
        .list_syncs_page(id, after.as_ref(), limit)
        .await?;
    let next = found
        .next
        .as_ref()
        .map(|k| page::encode::<page::History>(&page::sync_key_out(k)));
    Ok(Paged::new(&uri, found.items, next))
}

#[derive(Debug, Serialize)]
struct BranchOut {
    name: String,
    head: String,
    default: bool,
}

async fn list_branches(
    Scoped(state): Scoped,
    Path(id): Path<String>,
) -> Result<Json<Vec<BranchOut>>, ApiError> {
    let project = state.store.project(project_id(&id)?).await?;
    let r = &project.repository;
    let source = service::open_source(&state, &project).await?;
    let branches = source.list_branches().await?;
    Ok(Json(
        branches
            .into_iter()
            .map(|b| BranchOut {
                default: b.name == r.default_branch,
                name: b.name,
                head: b.head,
            })
            .collect(),
    ))
}

/// The project's active entries by path, a page at a time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryQuery {
    path: String,
    /// The entry as it was right after this sync (or restore).
    as_of: Option<String>,
}

/// The active entry at `?path=` (its whole content), or the version that
/// was active right after sync `?as_of=`; 404 when the project had none
/// there.
async fn get_memory_entry(
    Scoped(state): Scoped,
    Path(id): Path<String>,
    q: Result<Query<EntryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ActiveEntry>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let id = project_id(&id)?;
    let as_of = q
        .as_of
        .as_deref()
        .map(|s| {
            s.parse::<SyncId>().map_err(|_| {
                ApiError::Invalid(format!("as_of: `{}` is not a sync id", s.escape_debug()))
            })
        })
        .transpose()?;
    Ok(Json(service::read_entry(&state, id, &q.path, as_of).await?))
}

async fn list_memory(
    Scoped(state): Scoped,
    Path(id): Path<String>,
    uri: Uri,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Paged<ActiveEntry>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let id = project_id(&id)?;
    let limit = page::limit(q.limit, 100, state.limits.max_page_size)?;
    let after = page::decode::<page::Memory>(q.cursor.as_deref())?;
    state.store.project(id).await?;
    let found = state
        .store
        .active_entries_page(id, after.as_ref(), limit)
        .await?;
    let next = found.next.as_ref().map(page::encode::<page::Memory>);
    Ok(Paged::new(&uri, found.items, next))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    /// Comma-separated statuses; default: failed,running,queued.
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Ops: syncs of every project by status, newest first, from the ledger,
/// a page at a time.
async fn list_syncs_by_status(
    Scoped(state): Scoped,
    uri: Uri,
    q: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Paged<SyncRecord>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let statuses = parse_statuses(q.status.as_deref())?;
    let limit = page::limit(q.limit, 100, state.limits.max_page_size)?;
    let after = page::decode::<page::Ops>(q.cursor.as_deref())?
        .map(page::sync_key_in)
        .transpose()?;
    let found = state
        .store
        .syncs_by_status_page(&statuses, after.as_ref(), limit)
        .await?;
    let next = found
        .next
        .as_ref()
        .map(|k| page::encode::<page::Ops>(&page::sync_key_out(k)));
    Ok(Paged::new(&uri, found.items, next))
}

/// `failed,running` → statuses; none → failed, running and queued.
pub fn parse_statuses(raw: Option<&str>) -> Result<Vec<projsync_domain::SyncStatus>, ApiError> {
    use projsync_domain::SyncStatus;
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(vec![
            SyncStatus::Failed,
            SyncStatus::Running,
            SyncStatus::Queued,
        ]),
        Some(list) => list
            .split(',')
            .map(|s| s.trim().parse::<SyncStatus>().map_err(ApiError::Invalid))
            .collect(),
    }
}

#[derive(Debug, Serialize)]
struct CancelResponse {
    /// `cancelled` (it was queued) or `cancel_requested` (it stops at its
    /// next batch boundary).
    outcome: &'static str,
    sync: SyncRecord,
}

/// 202: cancelled or cancel requested; 409 when the sync already ended.
async fn cancel_sync(
    Scoped(state): Scoped,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CancelResponse>), ApiError> {
    state.require(Role::Write)?;
    let NoFields {} = optional_json(&body)?;
    let id = sync_id(&id)?;
    let outcome = service::cancel_sync(&state, id).await?;
    let outcome = match outcome {
        projsync_store::CancelOutcome::Cancelled => "cancelled",
        projsync_store::CancelOutcome::Requested => "cancel_requested",
    };
    let sync = state.store.sync(id).await?;
    Ok((StatusCode::ACCEPTED, Json(CancelResponse { outcome, sync })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    #[serde(default)]
    from_start: bool,
}

/// 202 with the sync queued again; 409 unless it failed or was cancelled,
/// or when the project has another active sync.
async fn retry_sync(
    Scoped(state): Scoped,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<SyncRecord>), ApiError> {
    state.require(Role::Admin)?;
    let body: RetryBody = optional_json(&body)?;
    let sync = service::retry_sync(&state, sync_id(&id)?, body.from_start).await?;
    Ok((StatusCode::ACCEPTED, Json(sync)))
}

/// 200 with the sync, now `discarded`; 409 unless it failed or was cancelled.
async fn discard_sync(
    Scoped(state): Scoped,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<SyncRecord>, ApiError> {
    state.require(Role::Admin)?;
    let NoFields {} = optional_json(&body)?;
    Ok(Json(service::discard_sync(&state, sync_id(&id)?).await?))
}

#[derive(Debug, Serialize)]
struct SyncDetail {
    #[serde(flatten)]
    sync: SyncRecord,
    steps: Vec<StepRecord>,
    /// What the sync's state means and what to do next; null when there
    /// is nothing to do.
    advice: Option<String>,
}

async fn get_sync(
    Scoped(state): Scoped,
    Path(id): Path<String>,
) -> Result<Json<SyncDetail>, ApiError> {
    let id = sync_id(&id)?;
    let sync = state.store.sync(id).await?;
    let steps = state.store.steps(id).await?;
    let now = chrono::Utc::now();
    let advice = projsync_domain::advice(
        sync.status,
        sync.error_class.as_deref(),
        sync.failed_phase,
        sync.lease_expires_at.is_some_and(|t| t < now),
        sync.not_before.is_some_and(|t| t > now),
    );
    Ok(Json(SyncDetail {
        sync,
        steps,
        advice,
    }))
}

#[cfg(test)]
mod tests {
    /// Every route is described in openapi.yaml, and nothing else is.
    #[test]
    fn openapi_paths_match_the_routes() {
        // Only the routers, not this test's own text.
        let routers = |source: &'static str| match source.find("#[cfg(test)]") {
            Some(end) => &source[..end],
            None => source,
        };
        let source = [
            routers(include_str!("routes.rs")),
            routers(include_str!("health.rs")),
            routers(include_str!("../../dashboard/src/lib.rs")),
        ]
        .concat();
        let mut routes: Vec<&str> = source
            .split(".route(")
            .skip(1)
            .filter_map(|rest| rest.trim_start().strip_prefix('"')?.split('"').next())
            .collect();
        routes.sort();
        let mut paths: Vec<&str> = crate::OPENAPI_YAML
            .lines()
            .skip_while(|l| !l.starts_with("paths:"))
            .skip(1)
            .take_while(|l| l.is_empty() || l.starts_with(' ') || l.starts_with('#'))
            .filter(|l| l.starts_with("  /") && l.trim_end().ends_with(':'))
            .map(|l| {
                l.trim()
                    .trim_end_matches(':')
                    .trim_matches('"')
                    .trim_matches('\'')
            })
            .collect();
        paths.sort();
        assert_eq!(routes, paths);
    }
}
