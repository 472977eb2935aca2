//! Wiring: build each component from `Settings`.

use crate::Settings;
use anyhow::{Context, Result};
use projsync_api::AppState;
use projsync_pipeline::{
    run_reconciler, DefaultSources, Pipeline, PipelineOptions, ReconcilerOptions, SourceFactory,
};
use projsync_queue::{JobQueue, Publisher};
use projsync_store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Connect to the ledger (the error names the URL without its password).
pub async fn store(settings: &Settings) -> Result<Store> {
    Ok(Store::connect(&settings.connect_options()).await?)
}

/// Create the database if needed and apply migrations.
pub async fn migrate(settings: &Settings) -> Result<Store> {
    let created = projsync_store::create_database_if_missing(&settings.database.url).await?;
    if created {
        tracing::info!(
            "created database {}",
            projsync_domain::redact_url(&settings.database.url)
        );
    }
    let store = store(settings).await?;
    store.migrate().await?;
    Ok(store)
}

/// The sources of this deployment: local repositories and GitHub, whose
/// rate-limit budgets are shared through Redis.
pub async fn sources(settings: &Settings) -> Result<DefaultSources> {
    let conn = settings.queue_options().connect().await?;
    Ok(DefaultSources::new(
        settings.github_config(),
        Some((conn, settings.redis.namespace.clone())),
    ))
}

pub async fn api_state(settings: &Settings, store: Store) -> Result<AppState> {
    let queue_opts = settings.queue_options();
    let queue = JobQueue::connect(&queue_opts).await?;
    Ok(AppState {
        store,
        queue,
        queue_opts,
        sources: Arc::new(sources(settings).await?),
        default_max_file_bytes: settings.sync.max_file_bytes,
    })
}

/// Bind the API's address; `Err` names the address.
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}; is another projsync api running? set api.listen (PROJSYNC__API__LISTEN)"))
}

/// Serve the API in the background until `shutdown` is cancelled.
pub fn spawn_api(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let addr = listener.local_addr()?;
    let handle = tokio::spawn(projsync_api::serve(listener, state, async move {
        shutdown.cancelled().await
    }));
    Ok((addr, handle))
}

pub async fn pipeline(
    settings: &Settings,
    store: Store,
    worker_name: &str,
    sources: Arc<dyn SourceFactory>,
    shutdown: CancellationToken,
) -> Result<Pipeline> {
    let opts = settings.queue_options();
    let publisher = Publisher::connect(&opts).await?;
    let queue = JobQueue::connect(&opts).await?;
    let w = &settings.worker;
    Ok(Pipeline::new(
        store,
        publisher,
        queue,
        sources,
        PipelineOptions {
            worker_name: worker_name.to_string(),
            lease_ttl: Duration::from_secs(w.lease_ttl_secs),
            import_batch_size: w.import_batch_size,
            max_file_bytes: settings.sync.max_file_bytes,
            max_attempts: w.max_attempts,
            retry_min_delay: Duration::from_millis(w.retry_min_delay_ms),
            retry_max_delay: Duration::from_secs(w.retry_max_delay_secs),
            archive_min_files: settings.sync.archive_min_files,
            archive_max_bytes: settings.sync.archive_max_bytes,
        },
        shutdown,
    ))
}

/// A worker process's parts: the queue consumer, running pipeline syncs,
/// and the reconciler. Resolves when both have stopped after `shutdown`
/// and the syncs in flight have handed back their work.
pub async fn spawn_worker(
    settings: &Settings,
    store: Store,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>> {
    let sources = Arc::new(sources(settings).await?);
    spawn_worker_with(settings, store, sources, shutdown).await
}

/// `spawn_worker` with the sources of your choice (tests count reads).
pub async fn spawn_worker_with(
    settings: &Settings,
    store: Store,
    sources: Arc<dyn SourceFactory>,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>> {
    let name = projsync_queue::unique_worker_name(&settings.worker.name_prefix);
    let pipeline = pipeline(settings, store.clone(), &name, sources, shutdown.clone()).await?;
    let consumer = projsync_queue::spawn_worker(
        settings.queue_options(),
        name,
        settings.worker.concurrency,
        Arc::new(pipeline.clone()),
        shutdown.clone(),
    );
    let queue = JobQueue::connect(&settings.queue_options()).await?;
    let reconciler = tokio::spawn(run_reconciler(
        store,
        queue,
        ReconcilerOptions {
            interval: Duration::from_millis(settings.worker.reconcile_interval_ms),
            redeliver_after: Duration::from_secs(settings.worker.redeliver_after_secs),
        },
        shutdown,
    ));
    Ok(tokio::spawn(async move {
        let _ = consumer.await;
        let _ = reconciler.await;
        pipeline.drained().await;
    }))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
