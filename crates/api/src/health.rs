//! Liveness, readiness and metrics, for load balancers, orchestrators and
//! Prometheus: `GET /healthz`, `GET /readyz`, `GET /metrics`. The API serves
//! them among its routes, and each worker on its own small listener
//! (`worker.listen`), from this one router.
//!
//! - `/healthz`: the process answers; it touches no dependency, so that a
//!   database outage does not get every process restarted.
//! - `/readyz`: Postgres and Redis both answer within [`PROBE_TIMEOUT`]
//!   (200), else 503; the JSON body names each check's result.
//! - `/metrics`: the process's [`Metrics`] plus the ledger's numbers, read at
//!   scrape time through one SECURITY DEFINER function (every tenant's
//!   syncs: the application role alone sees none).
//!
//! None of them needs credentials. On the API they are exempt from the
//! `Host` check (probes and scrapers call by IP and port), and only from
//! that one ([`crate::limits`]); what they show is aggregate, with no
//! tenant, project or path in it. Each answers, never a 500: a dependency
//! that fails is a 503 (readiness) or an absent family with
//! `projsync_ledger_scrape_success 0` (metrics).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use projsync_metrics::{LedgerSnapshot, LedgerSyncs, Metrics};
use projsync_queue::QueueOptions;
use projsync_store::Store;
use serde_json::json;
use std::future::Future;
use std::time::Duration;

/// How long each readiness check (and the ledger read of a scrape) may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The paths of this router: no credentials, no `Host` check.
pub const PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// What the probes check and the metrics show. Cheap to clone.
#[derive(Clone)]
pub struct Health {
    /// The ledger, scoped to no tenant (the probe and the scrape read no
    /// tenant's rows).
    store: Store,
    /// Where Redis is; each readiness check opens its own connection.
    redis: QueueOptions,
    metrics: Metrics,
}

impl Health {
    pub fn new(store: Store, redis: QueueOptions, metrics: Metrics) -> Self {
        Self {
            store,
            redis,
            metrics,
        }
    }
}

/// `/healthz`, `/readyz` and `/metrics`, for any router state.
pub fn router<S: Clone + Send + Sync + 'static>(health: Health) -> Router<S> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

/// Serve [`router`] alone on `listener` until `shutdown` resolves (a
/// worker's listener).
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router::<()>(health))
        .with_graceful_shutdown(shutdown)
        .await
}

const NO_STORE: (header::HeaderName, &str) = (header::CACHE_CONTROL, "no-store");

async fn healthz() -> impl IntoResponse {
    ([NO_STORE], "ok")
}

/// A check's result as shown: `ok`, or `error: …` (short; never a URL or
/// a password: the messages are the drivers' own, about the connection).
async fn check<E: std::fmt::Display>(what: impl Future<Output = Result<(), E>>) -> String {
    match tokio::time::timeout(PROBE_TIMEOUT, what).await {
        Ok(Ok(())) => "ok".into(),
        Ok(Err(e)) => {
            let mut message = format!("error: {e}");
            if message.len() > 300 {
                let cut = (0..=300).rev().find(|i| message.is_char_boundary(*i));
                message.truncate(cut.unwrap_or(0));
                message.push('…');
            }
            message
        }
        Err(_) => format!("error: no answer within {} ms", PROBE_TIMEOUT.as_millis()),
    }
}

async fn readyz(State(h): State<Health>) -> Response {
    let (postgres, redis) = tokio::join!(
        check(h.store.ping()),
        check(projsync_queue::ping(&h.redis, PROBE_TIMEOUT)),
    );
    let ready = postgres == "ok" && redis == "ok";
    if !ready {
        tracing::warn!(%postgres, %redis, "not ready");
    }
    let (status, word) = if ready {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    let body = json!({ "status": word, "checks": { "postgres": postgres, "redis": redis } });
    (status, [NO_STORE], Json(body)).into_response()
}

async fn metrics(State(h): State<Health>) -> Response {
    let ledger = match tokio::time::timeout(PROBE_TIMEOUT, h.store.sync_metrics()).await {
        Ok(Ok(rows)) => Some(snapshot(rows)),
        Ok(Err(e)) => {
            tracing::warn!("metrics: cannot read the ledger: {e}");
            None
        }
        Err(_) => {
            tracing::warn!("metrics: the ledger did not answer within {PROBE_TIMEOUT:?}");
            None
        }
    };
    let text = h.metrics.render(ledger.as_ref());
    (
        [
            (header::CONTENT_TYPE, projsync_metrics::CONTENT_TYPE),
            NO_STORE,
        ],
        text,
    )
        .into_response()
}

fn snapshot(rows: Vec<projsync_store::SyncCount>) -> LedgerSnapshot {
    let queued = rows.iter().filter(|r| r.status == "queued");
    LedgerSnapshot {
        queued: queued.clone().map(|r| r.count).sum(),
        oldest_queued_age_secs: queued.map(|r| r.oldest_age_secs).fold(0.0, f64::max),
        syncs: rows
            .into_iter()
            .map(|r| LedgerSyncs {
                status: r.status,
                outcome: r.outcome,
                count: r.count,
            })
            .collect(),
    }
}
