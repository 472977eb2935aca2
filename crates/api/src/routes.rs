//! Routes and handlers. Paths, bodies and status codes are a contract: keep
//! `openapi.yaml` in step.

use crate::service::{self, CreateProject};
use crate::{ApiError, AppState, OPENAPI_YAML};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use projsync_domain::{ProjectId, SyncId};
use projsync_store::{ActiveEntry, Project, StepRecord, SyncRecord};
use serde::{Deserialize, Serialize};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/api/v1/openapi.yaml", get(openapi))
        .route("/api/v1/projects", post(create_project).get(list_projects))
        .route("/api/v1/projects/{id}", get(get_project))
        .route(
            "/api/v1/projects/{id}/syncs",
            post(enqueue_sync).get(list_syncs),
        )
        .route("/api/v1/projects/{id}/branches", get(list_branches))
        .route("/api/v1/projects/{id}/memory", get(list_memory))
        .route("/api/v1/projects/{id}/memory/restore", post(restore_memory))
        .route("/api/v1/projects/{id}/search", post(search))
        .route("/api/v1/projects/{id}/embeddings", get(embedding_status))
        .route(
            "/api/v1/projects/{id}/embeddings/backfill",
            post(backfill_embeddings),
        )
        .route("/api/v1/syncs", get(list_syncs_by_status))
        .route("/api/v1/syncs/{id}", get(get_sync))
        .route("/api/v1/syncs/{id}/cancel", post(cancel_sync))
        .route("/api/v1/syncs/{id}/retry", post(retry_sync))
        .route("/api/v1/syncs/{id}/discard", post(discard_sync))
        .route("/api/v1/syncs/{id}/events", get(crate::events::sync_events))
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

fn project_id(raw: &str) -> Result<ProjectId, ApiError> {
    raw.parse().map_err(ApiError::NotFound)
}

pub(crate) fn sync_id(raw: &str) -> Result<SyncId, ApiError> {
    raw.parse().map_err(ApiError::NotFound)
}

async fn health(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    sqlx_ping(&state).await?;
    Ok("ok")
}

async fn sqlx_ping(state: &AppState) -> Result<(), ApiError> {
    state.store.list_syncs(ProjectId::new(), 1).await?;
    Ok(())
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML)
}

async fn create_project(
    State(state): State<AppState>,
    body: Result<Json<CreateProject>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Project>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let project = service::create_project(&state, body).await?;
    Ok((StatusCode::CREATED, Json(project)))
}

async fn list_projects(State(state): State<AppState>) -> Result<Json<Vec<Project>>, ApiError> {
    Ok(Json(state.store.list_projects().await?))
}

async fn get_project(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Project>, ApiError> {
    Ok(Json(state.store.project(project_id(&id)?).await?))
}

#[derive(Debug, Default, Deserialize)]
struct EnqueueBody {
    branch: Option<String>,
}

#[derive(Debug, Serialize)]
struct EnqueueResponse {
    sync_id: SyncId,
    /// `false` when an already queued or running sync (or the sync with the
    /// same Idempotency-Key) is returned instead of a new one.
    created: bool,
    sync: SyncRecord,
}

/// 202 with a new sync; 200 with the existing one when the project already
/// has a queued or running sync, or the Idempotency-Key was seen before.
async fn enqueue_sync(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<EnqueueResponse>), ApiError> {
    let body: EnqueueBody = optional_json(&body)?;
    let outcome = service::enqueue_sync(
        &state,
        project_id(&id)?,
        body.branch.as_deref(),
        idempotency_key(&headers)?,
    )
    .await?;
    Ok(enqueue_response(outcome))
}

async fn search(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<crate::search::SearchRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<crate::search::SearchResponse>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::Invalid(e.body_text()))?;
    Ok(Json(
        crate::search::search(&state, project_id(&id)?, body).await?,
    ))
}

async fn embedding_status(
    State(state): State<AppState>,
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
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<BackfillResponse>), ApiError> {
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
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<RestoreBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<EnqueueResponse>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError::Invalid(e.body_text()))?;
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
            sync: outcome.sync,
        }),
    )
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    limit: Option<i64>,
}

async fn list_syncs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<SyncRecord>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let id = project_id(&id)?;
    state.store.project(id).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    Ok(Json(state.store.list_syncs(id, limit).await?))
}

#[derive(Debug, Serialize)]
struct BranchOut {
    name: String,
    head: String,
    default: bool,
}

async fn list_branches(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<BranchOut>>, ApiError> {
    let project = state.store.project(project_id(&id)?).await?;
    let r = &project.repository;
    let source = state
        .sources
        .open(&projsync_domain::source::RepositorySpec {
            provider: &r.provider,
            location: &r.location,
            credentials_ref: r.credentials_ref.as_deref(),
        })
        .await?;
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

async fn list_memory(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<ActiveEntry>>, ApiError> {
    let id = project_id(&id)?;
    state.store.project(id).await?;
    Ok(Json(state.store.active_entries(id).await?))
}

#[derive(Debug, Deserialize)]
struct StatusQuery {
    /// Comma-separated statuses; default: failed,running,queued.
    status: Option<String>,
    limit: Option<i64>,
}

/// Ops: syncs of every project by status, newest first, from the ledger.
async fn list_syncs_by_status(
    State(state): State<AppState>,
    q: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<SyncRecord>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let statuses = parse_statuses(q.status.as_deref())?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(state.store.syncs_by_status(&statuses, limit).await?))
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
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<CancelResponse>), ApiError> {
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
struct RetryBody {
    #[serde(default)]
    from_start: bool,
}

/// 202 with the sync queued again; 409 unless it failed or was cancelled,
/// or when the project has another active sync.
async fn retry_sync(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<SyncRecord>), ApiError> {
    let body: RetryBody = optional_json(&body)?;
    let sync = service::retry_sync(&state, sync_id(&id)?, body.from_start).await?;
    Ok((StatusCode::ACCEPTED, Json(sync)))
}

/// 200 with the sync, now `discarded`; 409 unless it failed or was cancelled.
async fn discard_sync(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SyncRecord>, ApiError> {
    Ok(Json(state.store.discard_sync(sync_id(&id)?).await?))
}

#[derive(Debug, Serialize)]
struct SyncDetail {
    #[serde(flatten)]
    sync: SyncRecord,
    steps: Vec<StepRecord>,
}

async fn get_sync(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SyncDetail>, ApiError> {
    let id = sync_id(&id)?;
    let sync = state.store.sync(id).await?;
    let steps = state.store.steps(id).await?;
    Ok(Json(SyncDetail { sync, steps }))
}

#[cfg(test)]
mod tests {
    /// Every route is described in openapi.yaml, and nothing else is.
    #[test]
    fn openapi_paths_match_the_routes() {
        let source = include_str!("routes.rs");
        // Only the router, not this test's own text.
        let source = &source[..source.find("#[cfg(test)]").unwrap()];
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
