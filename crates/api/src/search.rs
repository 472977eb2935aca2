//! Search, embedding status and backfills, callable without HTTP (the CLI
//! uses them too).

use crate::service::check_text;
use crate::{ApiError, AppState};
use projsync_domain::search::{keyword_queries, reciprocal_rank_fusion, without_overlaps};
use projsync_domain::{ProjectId, SearchMode, SyncId};
use projsync_embed::Embedder;
use projsync_store::{ChunkScope, EnqueueOutcome, SearchFilter, SearchHit, Store};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Embeddings as the API uses them.
#[derive(Clone)]
pub struct SearchSettings {
    /// The configured model; `None` when the deployment turned embeddings off.
    pub embedder: Option<Arc<dyn Embedder>>,
    /// Whether projects that do not say have embeddings (`embeddings.enabled`).
    pub enabled: bool,
    /// `k` above this is capped.
    pub max_k: usize,
    /// Whether each project's vectors are complete, for a few seconds: the
    /// count walks every active chunk, too slow to do on every query.
    readiness: Arc<Mutex<HashMap<ProjectId, Readiness>>>,
}

/// When a project's vector counts were taken, at which history head, and
/// the chunks missing a vector and the entries not chunked then.
type Readiness = (Instant, Option<SyncId>, i64, i64);

impl SearchSettings {
    pub fn new(embedder: Option<Arc<dyn Embedder>>, enabled: bool, max_k: usize) -> Self {
        Self {
            embedder,
            enabled,
            max_k: max_k.max(1),
            readiness: Default::default(),
        }
    }

    /// No model: keyword search only.
    pub fn disabled() -> Self {
        Self::new(None, false, 100)
    }
}

/// Longest query accepted, in bytes.
const MAX_QUERY_BYTES: usize = 16 * 1024;
/// How long a project's readiness is trusted while its history is unchanged.
const READINESS_TTL: Duration = Duration::from_secs(10);
/// The RRF constant from the original paper.
const RRF_K: f64 = 60.0;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub query: String,
    pub k: Option<usize>,
    pub mode: Option<SearchMode>,
    pub path_prefix: Option<String>,
    pub language: Option<String>,
    /// Search the knowledge base as it was right after this sync.
    pub as_of: Option<SyncId>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SearchResult {
    pub path: String,
    pub kind: String,
    pub start_line: i32,
    pub end_line: i32,
    pub score: f64,
    pub content: String,
    pub entry_id: i64,
    pub sync_id: SyncId,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SearchResponse {
    /// The embedding model semantic ranking used (or would use).
    pub model: Option<String>,
    /// The mode asked for.
    pub mode: SearchMode,
    /// The `k` applied (capped).
    pub k: usize,
    pub results: Vec<SearchResult>,
    /// The query was longer than the model takes and was cut for embedding.
    pub query_truncated: bool,
    /// Why semantic ranking was not used, when it was asked for and is not
    /// ready: `unavailable: N chunks missing`. Results are then by keyword.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semantic: Option<String>,
}

/// Search a project's knowledge base.
pub async fn search(
    state: &AppState,
    project_id: ProjectId,
    req: SearchRequest,
) -> Result<SearchResponse, ApiError> {
    let query = req.query.trim();
    if query.is_empty() {
        return Err(ApiError::Invalid("query must not be empty".into()));
    }
    check_text("query", query, MAX_QUERY_BYTES, true)?;
    for (field, v) in [
        ("path_prefix", &req.path_prefix),
        ("language", &req.language),
    ] {
        if let Some(v) = v {
            check_text(field, v, 4096, false)?;
        }
    }
    let settings = &state.search;
    let k = req.k.unwrap_or(10).clamp(1, settings.max_k);
    let mode = req.mode.unwrap_or_default();
    let project = state.store.project(project_id).await?;
    if let Some(as_of) = req.as_of {
        if !state.store.is_history_point(project_id, as_of).await? {
            return Err(ApiError::Invalid(format!(
                "as_of: sync {as_of} is not a succeeded sync or restore of this project"
            )));
        }
    }
    let filter = SearchFilter {
        path_prefix: req.path_prefix.filter(|p| !p.is_empty()),
        language: req.language.filter(|l| !l.is_empty()),
        as_of: req.as_of,
    };
    // More candidates than asked, so that dropping overlaps still leaves k.
    let candidates = (k * 4).max(20) as i64;
    let model = settings.embedder.as_ref().map(|e| e.model().to_string());

    // Semantic and keyword ranking run side by side.
    let semantic = async {
        if mode == SearchMode::Keyword {
            return Ok((None, None, false));
        }
        semantic_hits(state, &project, query, &filter, candidates).await
    };
    let keyword = async {
        if mode == SearchMode::Semantic {
            return Ok(None);
        }
        keyword_hits(&state.store, project_id, query, &filter, k, candidates)
            .await
            .map(Some)
    };
    let (semantic, keyword) = tokio::join!(semantic, keyword);
    let (semantic_hits, semantic_note, query_truncated) = semantic?;
    let keyword_hits = match keyword.map_err(ApiError::from)? {
        Some(hits) => Some(hits),
        // Semantic ranking was asked for alone and is not available: the
        // answer is by keyword.
        None if semantic_hits.is_none() => {
            Some(keyword_hits(&state.store, project_id, query, &filter, k, candidates).await?)
        }
        None => None,
    };
    let ranked: Vec<SearchHit> = match (semantic_hits, keyword_hits) {
        (Some(s), None) => s,
        (None, Some(kw)) => kw,
        (Some(s), Some(kw)) => fuse(s, kw),
        (None, None) => Vec::new(),
    };
    let results = without_overlaps(ranked, k)
        .into_iter()
        .map(|h| SearchResult {
            path: h.path,
            kind: h.kind,
            start_line: h.start_line,
            end_line: h.end_line,
            score: h.score,
            content: h.content,
            entry_id: h.entry_id,
            sync_id: h.sync_id,
        })
        .collect();
    Ok(SearchResponse {
        model,
        mode,
        k,
        results,
        query_truncated,
        semantic: semantic_note,
    })
}

/// The semantic ranking, or why there is none (the note), and whether the
/// query was cut for the model.
async fn semantic_hits(
    state: &AppState,
    project: &projsync_store::Project,
    query: &str,
    filter: &SearchFilter,
    candidates: i64,
) -> Result<(Option<Vec<SearchHit>>, Option<String>, bool), ApiError> {
    let embedder = match semantic_ready(state, project).await? {
        Ok(e) => e,
        Err(note) => return Ok((None, Some(note), false)),
    };
    let (text, cut) = embedder.truncate(query, embedder.max_tokens());
    let vector = match embedder.embed(&[text.into_owned()]).await {
        Ok(mut v) if v.len() == 1 => v.remove(0),
        Ok(_) => {
            return Ok((
                None,
                Some("unavailable: the model returned no vector".into()),
                cut,
            ))
        }
        Err(e) => {
            tracing::warn!("cannot embed the query: {e}");
            return Ok((
                None,
                Some(format!("unavailable: the embedding provider failed: {e}")),
                cut,
            ));
        }
    };
    let hits = state
        .store
        .search_semantic(
            project.id,
            embedder.model(),
            embedder.dimensions(),
            &vector,
            filter,
            candidates,
        )
        .await?;
    Ok((Some(hits), None, cut))
}

/// The keyword ranking: chunks that match every word first, then any two
/// words, then any term, each tier run only while fewer than `k` chunks
/// were found, so that a common term does not make every chunk a candidate.
pub async fn keyword_hits(
    store: &Store,
    project_id: ProjectId,
    query: &str,
    filter: &SearchFilter,
    k: usize,
    candidates: i64,
) -> Result<Vec<SearchHit>, projsync_store::Error> {
    let mut hits: Vec<SearchHit> = Vec::new();
    for tier in keyword_queries(query) {
        let found = store
            .search_keyword(project_id, &tier, filter, candidates)
            .await?;
        for h in found {
            if hits.len() < candidates as usize && !hits.iter().any(|o| o.chunk_id == h.chunk_id) {
                hits.push(h);
            }
        }
        if hits.len() >= k {
            break;
        }
    }
    Ok(hits)
}

/// Reciprocal rank fusion of the semantic and keyword lists; the score is
/// the fused one.
pub fn fuse(semantic: Vec<SearchHit>, keyword: Vec<SearchHit>) -> Vec<SearchHit> {
    let lists = [
        semantic.iter().map(|h| h.chunk_id).collect::<Vec<_>>(),
        keyword.iter().map(|h| h.chunk_id).collect::<Vec<_>>(),
    ];
    let mut by_id: HashMap<i64, SearchHit> = semantic
        .into_iter()
        .chain(keyword)
        .map(|h| (h.chunk_id, h))
        .collect();
    reciprocal_rank_fusion(&lists, RRF_K)
        .into_iter()
        .filter_map(|(id, score)| {
            by_id.remove(&id).map(|mut h| {
                h.score = score;
                h
            })
        })
        .collect()
}

/// The embedder when every active chunk of the project has its vector;
/// otherwise what the response says about it.
async fn semantic_ready(
    state: &AppState,
    project: &projsync_store::Project,
) -> Result<Result<Arc<dyn Embedder>, String>, ApiError> {
    let settings = &state.search;
    let Some(embedder) = settings.embedder.clone() else {
        return Ok(Err(
            "unavailable: embeddings are off in this deployment".into()
        ));
    };
    if !project.embeddings_enabled.unwrap_or(settings.enabled) {
        return Ok(Err(
            "unavailable: embeddings are off for this project".into()
        ));
    }
    let cached = settings
        .readiness
        .lock()
        .expect("readiness lock")
        .get(&project.id)
        .filter(|(at, last, _, _)| at.elapsed() < READINESS_TTL && *last == project.last_sync_id)
        .map(|(_, _, missing, unchunked)| (*missing, *unchunked));
    let (missing, unchunked) = match cached {
        Some(c) => c,
        None => {
            let c = state
                .store
                .unembedded(ChunkScope::Active(project.id), embedder.model())
                .await?;
            settings
                .readiness
                .lock()
                .expect("readiness lock")
                .insert(project.id, (Instant::now(), project.last_sync_id, c.0, c.1));
            c
        }
    };
    if unchunked > 0 {
        return Ok(Err(format!(
            "unavailable: {unchunked} entries are not chunked yet; run `projsync embeddings \
             backfill --project {}`",
            project.name
        )));
    }
    if missing > 0 {
        return Ok(Err(format!("unavailable: {missing} chunks missing")));
    }
    Ok(Ok(embedder))
}

/// `GET /projects/{id}/embeddings`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EmbeddingStatus {
    pub model: Option<String>,
    pub dimensions: Option<usize>,
    /// Whether this project's syncs embed.
    pub enabled: bool,
    pub entries: i64,
    pub chunks: i64,
    pub embedded_chunks: i64,
    /// Active chunks without a vector of the configured model.
    pub missing: i64,
    /// Active entries not cut into chunks yet (a backfill chunks them).
    pub unchunked_entries: i64,
}

pub async fn embedding_status(
    state: &AppState,
    project_id: ProjectId,
) -> Result<EmbeddingStatus, ApiError> {
    let project = state.store.project(project_id).await?;
    let settings = &state.search;
    let model = settings.embedder.as_ref().map(|e| e.model().to_string());
    let counts = state
        .store
        .embedding_counts(project_id, model.as_deref().unwrap_or(""))
        .await?;
    Ok(EmbeddingStatus {
        dimensions: settings.embedder.as_ref().map(|e| e.dimensions()),
        enabled: settings.embedder.is_some()
            && project.embeddings_enabled.unwrap_or(settings.enabled),
        model,
        entries: counts.entries,
        chunks: counts.chunks,
        embedded_chunks: counts.embedded_chunks,
        missing: counts.missing(),
        unchunked_entries: counts.unchunked_entries,
    })
}

/// Enqueue a backfill: a job that chunks active entries that have no chunks
/// and embeds every active chunk lacking a vector of the configured model
/// (all of them after a model change). `prune` then deletes the vectors of
/// other models. A queued or running backfill of the project is returned
/// instead of a new one; a running sync is a conflict.
pub async fn enqueue_backfill(
    state: &AppState,
    project_id: ProjectId,
    prune: bool,
    idempotency_key: Option<&str>,
) -> Result<EnqueueOutcome, ApiError> {
    let project = state.store.project(project_id).await?;
    if prune && state.search.embedder.is_none() {
        return Err(ApiError::Invalid(
            "cannot prune: embeddings are off in this deployment, so no model's vectors would be kept"
                .into(),
        ));
    }
    let outcome = state
        .store
        .create_backfill(
            project_id,
            &project.repository.default_branch,
            serde_json::json!({ "prune": prune }),
            idempotency_key,
            projsync_telemetry::current_traceparent().as_deref(),
            &state.trigger(),
        )
        .await?;
    if !outcome.created && outcome.sync.kind != "backfill" {
        return Err(ApiError::Conflict(format!(
            "project {} has a {} {} ({}); run the backfill after it ends",
            project.name, outcome.sync.status, outcome.sync.kind, outcome.sync.id
        )));
    }
    crate::trace::record_sync_id(outcome.sync.id);
    crate::service::push_new_or_queued(state, &outcome).await?;
    if outcome.created {
        crate::service::audit(
            state,
            "embeddings.backfill",
            format!("sync:{}", outcome.sync.id),
            serde_json::json!({ "project_id": project_id, "prune": prune }),
        )
        .await;
    }
    Ok(outcome)
}
