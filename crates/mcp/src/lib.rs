//! projsync as an MCP (Model Context Protocol) server, for AI assistants
//! and agents: tools over search, entries, symbols and syncs, and the
//! active entries as resources, built on the official Rust SDK (`rmcp`).
//!
//! Two transports, one server ([`server::ProjsyncMcp`]):
//! - stdio ([`serve_stdio`]): `projsync mcp --key KEY [--project P]`, for an
//!   assistant that starts the server itself. Every call is answered as
//!   the key's principal.
//! - Streamable HTTP ([`router`]): `/mcp` on `projsync api`, behind the
//!   API's request guard. Each request is authenticated with its bearer API
//!   key, like every API request; a session is bound to the tenant of the
//!   key that opened it.
//!
//! The tools call the API's service layer (`projsync_api::service`,
//! `search`, `code`), so an assistant sees exactly what the HTTP API shows
//! the same key, with the same checks and messages; only the shape of the
//! answers differs: JSON text within a size budget ([`budget`]).

pub mod budget;
pub mod server;
mod subscriptions;
pub mod uri;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use projsync_api::AppState;
use projsync_store::Principal;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt as _;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub use server::ProjsyncMcp;

/// `[mcp]`.
#[derive(Debug, Clone)]
pub struct McpSettings {
    /// No tool answer or resource text is longer than this (bytes).
    pub max_result_bytes: usize,
    /// Resources per page of resources/list.
    pub page_size: usize,
}

impl Default for McpSettings {
    fn default() -> Self {
        Self {
            max_result_bytes: 16 * 1024,
            page_size: 100,
        }
    }
}

/// The `/mcp` route (Streamable HTTP) for the API's router
/// (`projsync_api::router_with`). Requests are authenticated by bearer key
/// before the MCP service sees them; a missing or bad key gets the API's
/// 401. Sessions live in this process (an API behind a load balancer needs
/// sticky sessions for `/mcp`); they end when `shutdown` is cancelled.
pub fn router(
    state: &AppState,
    settings: McpSettings,
    shutdown: CancellationToken,
) -> axum::Router<AppState> {
    let settings = Arc::new(settings);
    let base = state.clone();
    let service: StreamableHttpService<ProjsyncMcp, LocalSessionManager> =
        StreamableHttpService::new(
            move || Ok(ProjsyncMcp::new(base.clone(), None, None, settings.clone())),
            Default::default(),
            // Host and Origin are checked by the API's guard against
            // api.allowed_hosts, like every route; the SDK's own loopback-only
            // default would refuse a deployment's public name.
            StreamableHttpServerConfig::default()
                .disable_allowed_hosts()
                .disable_allowed_origins()
                .with_cancellation_token(shutdown),
        );
    axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
}

/// Put the caller's [`Principal`] in the request's extensions (the MCP
/// service hands them to each call), or answer 401/429 as the API does.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    match projsync_api::auth::bearer_principal(&state, req.headers()).await {
        Ok(principal) => {
            req.extensions_mut().insert::<Principal>(principal);
            let delete = req.method() == http::Method::DELETE;
            let mut response = next.run(req).await;
            // The SDK ends a session with 202; clients expect 200 or 204
            // (the official Python client warns on anything else).
            if delete && response.status() == http::StatusCode::ACCEPTED {
                *response.status_mut() = http::StatusCode::NO_CONTENT;
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

/// Serve MCP on stdin/stdout as `principal` until the client closes the
/// stream. `project`: the project tools use when not given one.
pub async fn serve_stdio(
    state: AppState,
    principal: Principal,
    project: Option<String>,
    settings: McpSettings,
) -> anyhow::Result<()> {
    let server = ProjsyncMcp::new(state, Some(principal), project, Arc::new(settings));
    let running = server.serve(rmcp::transport::stdio()).await?;
    running.waiting().await?;
    Ok(())
}
