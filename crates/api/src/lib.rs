//! The HTTP server (axum): the JSON API (projects, syncs, history,
//! branches, active memory, search, ops) and live progress (Server-Sent
//! Events), plus the dashboard's static assets, whose router
//! `projsync-dashboard` hands in.
//!
//! It is thin: a sync request is a row in the ledger and a `{sync_id}` pushed
//! to the queue; the work happens in workers. It must not know about the
//! pipeline's phases beyond what the ledger records. The contract is
//! described in `openapi.yaml`, served at `/api/v1/openapi.yaml`.

pub mod auth;
pub mod code;
mod error;
mod events;
pub mod health;
pub mod limits;
mod ops;
mod page;
mod routes;
pub mod search;
pub mod service;
mod session;
mod trace;
pub mod webhooks;

pub use error::ApiError;
pub use routes::{parse_statuses, router, router_with};

use projsync_domain::source::SourceFactory;
use projsync_queue::{JobQueue, QueueOptions};
use projsync_store::Store;
use std::sync::Arc;

/// The OpenAPI description of this API.
pub const OPENAPI_YAML: &str = include_str!("../openapi.yaml");

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub queue: JobQueue,
    pub queue_opts: QueueOptions,
    pub sources: Arc<dyn SourceFactory>,
    /// Size limit applied to projects that set none (shown, validated).
    pub default_max_file_bytes: u64,
    /// The embedding model for queries, and search limits.
    pub search: search::SearchSettings,
    /// Sessions and rate limits.
    pub auth: auth::AuthSettings,
    /// Who makes the request, once authenticated (`None`: the operator's
    /// CLI, which calls the service layer directly).
    pub principal: Option<projsync_store::Principal>,
    /// Request checks and size limits (`[api]`).
    pub limits: limits::Limits,
    /// Live progress: one Redis pub/sub connection for every SSE stream,
    /// and the cap on streams (`api.max_streams`).
    pub events: projsync_queue::EventHub,
    /// The process's metrics, served at `/metrics`.
    pub metrics: projsync_metrics::Metrics,
    /// GitHub webhooks (`[webhooks]`).
    pub webhooks: webhooks::WebhookSettings,
}

/// Serve `app` (the [`router`], perhaps with more routes) on `listener`
/// until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
