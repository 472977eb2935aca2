//! Wiring: build each component from `Settings`.

use crate::Settings;
use anyhow::{Context, Result};
use projsync_api::search::SearchSettings;
use projsync_api::AppState;
use projsync_embed::openai::{ApiKeyHeader, OpenAiEmbedder, OpenAiOptions};
use projsync_embed::Embedder;
use projsync_metrics::{Metrics, Process};
use projsync_pipeline::{
    run_reconciler, run_scheduler, AnalysisSettings, DocsSettings, EmbedSettings, Pipeline,
    PipelineOptions, ReconcilerOptions, SchedulerOptions, SourceFactory,
};
use projsync_queue::{JobQueue, Publisher};
use projsync_sources::DefaultSources;
use projsync_store::Store;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Connect to the ledger as the application role, scoped to no tenant
/// (the error names the URL without its password).
pub async fn store(settings: &Settings) -> Result<Store> {
    Ok(Store::connect(&settings.connect_options()).await?)
}

/// The application role's store, scoped to the tenant named `tenant`.
pub async fn tenant_store(settings: &Settings, tenant: &str) -> Result<Store> {
    let store = store(settings).await?;
    let tenant = store.tenant_by_name(tenant).await?;
    Ok(store.scoped(tenant.id))
}

/// The store of the sync's tenant, whichever it is (an operator's commands
/// on one sync: watch, cancel, ops inspect|retry|discard).
pub async fn sync_store(settings: &Settings, sync_id: projsync_domain::SyncId) -> Result<Store> {
    let store = store(settings).await?;
    match store.sync_tenant(sync_id).await? {
        Some(tenant) => Ok(store.scoped(tenant)),
        None => anyhow::bail!("sync {sync_id} not found"),
    }
}

/// The owner's connection (`database.admin_url`): migrations and the
/// operator's commands that cross tenants.
pub async fn admin_store(settings: &Settings) -> Result<Store> {
    Ok(Store::connect(&settings.admin_connect_options()).await?)
}

/// The API and the workers refuse a role that would see every tenant.
pub async fn require_app_role(store: &Store) -> Result<()> {
    store.check_app_role().await?;
    Ok(())
}

/// The guard's options: migrations from `source` (default: built in),
/// `migrate.protected` and `migrate.lock_timeout_ms`.
pub fn migrate_options(settings: &Settings, source: Option<&Path>) -> projsync_migrate::Options {
    projsync_migrate::Options {
        source: match source {
            Some(dir) => projsync_migrate::Source::Dir(dir.to_path_buf()),
            None => projsync_migrate::Source::Embedded,
        },
        protected: settings.migrate.protected.clone(),
        lock_timeout: Duration::from_millis(settings.migrate.lock_timeout_ms),
    }
}

/// Create the database if needed, apply the built-in migrations as the
/// owner (guarded), and create or update the application role of
/// `database.url`.
pub async fn migrate(settings: &Settings) -> Result<Store> {
    migrate_from(settings, None).await
}

/// [`migrate`] with migrations from `source` (`--source DIR`).
pub async fn migrate_from(settings: &Settings, source: Option<&Path>) -> Result<Store> {
    let created = projsync_store::create_database_if_missing(&settings.database.admin_url).await?;
    if created {
        tracing::info!(
            "created database {}",
            projsync_domain::redact_url(&settings.database.admin_url)
        );
    }
    let admin = admin_store(settings).await?;
    admin.check_owner_role().await?;
    if admin.vector_extension().await? == projsync_store::VectorExtension::Missing {
        anyhow::bail!("{}", projsync_store::PGVECTOR_MISSING);
    }
    let mut conn = admin.pool().acquire().await?;
    let applied = projsync_migrate::apply(&mut conn, &migrate_options(settings, source)).await?;
    drop(conn);
    for (version, description) in &applied.versions {
        tracing::info!("applied migration {version} ({description})");
    }
    for warning in &applied.warnings {
        tracing::warn!("{warning}");
    }
    let (user, password) = projsync_store::url_user(&settings.database.url)?;
    match admin.ensure_app_role(&user, password.as_deref()).await? {
        projsync_store::AppRole::Created => tracing::info!("created the application role {user}"),
        projsync_store::AppRole::Updated => tracing::debug!("updated the grants of role {user}"),
    }
    Ok(admin)
}

/// The sources of this deployment: local repositories and GitHub, whose
/// rate-limit budgets are shared through Redis.
pub async fn sources(settings: &Settings) -> Result<DefaultSources> {
    let conn = settings.queue_options().connect().await?;
    Ok(DefaultSources::new(
        settings.github_config(),
        Some((conn, settings.redis.namespace.clone())),
    )
    .with_local_roots(
        settings
            .sources
            .local
            .allowed_roots
            .iter()
            .map(std::path::PathBuf::from),
    ))
}

/// The configured embedding model, loaded (the local model's weights are
/// read and its graph built; an HTTP provider is only configured), and its
/// HNSW index created. `None` when `embeddings.enabled` is false.
pub async fn embedder(settings: &Settings, store: &Store) -> Result<Option<Arc<dyn Embedder>>> {
    let e = &settings.embeddings;
    if !e.enabled {
        return Ok(None);
    }
    // One model per process and configuration: the demo's API and worker,
    // and tests, share it instead of loading the weights again.
    static LOADED: std::sync::Mutex<Vec<(String, Arc<dyn Embedder>)>> =
        std::sync::Mutex::new(Vec::new());
    let key = format!("{e:?}");
    let cached = LOADED
        .lock()
        .expect("embedder cache")
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, m)| m.clone());
    let embedder = match cached {
        Some(m) => m,
        None => {
            let m = load_embedder(settings)?;
            let m = match m {
                Loader::Ready(m) => m,
                Loader::Local(opts) => {
                    let local = tokio::task::spawn_blocking(move || {
                        projsync_embed_local::LocalEmbedder::load(opts)
                    })
                    .await?
                    .map_err(|err| {
                        anyhow::anyhow!("cannot load the local embedding model: {err}")
                    })?;
                    Arc::new(local) as Arc<dyn Embedder>
                }
            };
            // Only the local model is worth keeping: an HTTP provider is
            // cheap to set up, and its key may have changed.
            if e.provider == "local" {
                LOADED
                    .lock()
                    .expect("embedder cache")
                    .push((key, m.clone()));
            }
            m
        }
    };
    if embedder.dimensions() != e.dimensions {
        anyhow::bail!(
            "model `{}` gives {} dimensions but embeddings.dimensions is {}; set \
             PROJSYNC__EMBEDDINGS__DIMENSIONS={}",
            e.model,
            embedder.dimensions(),
            e.dimensions,
            embedder.dimensions()
        );
    }
    store
        .ensure_embedding_index(embedder.model(), embedder.dimensions())
        .await?;
    Ok(Some(embedder))
}

enum Loader {
    Ready(Arc<dyn Embedder>),
    Local(projsync_embed_local::LocalOptions),
}

fn load_embedder(settings: &Settings) -> Result<Loader> {
    let e = &settings.embeddings;
    let nonempty = |s: &str| (!s.trim().is_empty()).then(|| std::path::PathBuf::from(s));
    Ok(match e.provider.as_str() {
        "local" => Loader::Local(projsync_embed_local::LocalOptions {
            model_name: e.model.clone(),
            model_path: nonempty(&e.model_path)
                .unwrap_or_else(projsync_embed_local::default_model_path),
            runtime_path: nonempty(&e.runtime_path)
                .unwrap_or_else(projsync_embed_local::default_runtime_path),
            threads: (e.threads > 0).then_some(e.threads),
            // Measured faster than 32 on 2 cores, and half the peak memory
            // (the attention scores of a batch are the largest buffers).
            batch_size: 16,
        }),
        _ => {
            let mut opts = OpenAiOptions::new(e.model.clone(), e.dimensions);
            opts.base_url = e.base_url.clone();
            opts.send_dimensions = e.send_dimensions;
            opts.api_key = read_secret("embeddings.credentials_ref", &e.credentials_ref)?;
            opts.api_key_header = match e.api_key_header.as_str() {
                "api-key" => ApiKeyHeader::ApiKey,
                _ => ApiKeyHeader::Authorization,
            };
            opts.batch_size = e.batch_size;
            opts.max_concurrency = e.max_concurrency;
            opts.timeout = Duration::from_secs(e.request_timeout_secs);
            opts.max_tokens = e.max_tokens;
            opts.tokenizer_path = nonempty(&e.tokenizer_path);
            Loader::Ready(Arc::new(OpenAiEmbedder::new(opts).map_err(|err| {
                anyhow::anyhow!("cannot set up the embeddings endpoint: {err}")
            })?))
        }
    })
}

/// A secret named by `env:NAME` or `file:PATH` (empty: none), for the
/// setting `setting`. The secret itself is never in the configuration.
fn read_secret(setting: &str, reference: &str) -> Result<Option<String>> {
    let reference = reference.trim();
    if reference.is_empty() {
        return Ok(None);
    }
    let value = match reference.split_once(':') {
        Some(("env", name)) => std::env::var(name)
            .with_context(|| format!("{setting} `{reference}`: export {name} with the API key"))?,
        Some(("file", path)) => std::fs::read_to_string(path).with_context(|| {
            format!("{setting} `{reference}`: cannot read the API key from {path}")
        })?,
        _ => anyhow::bail!("{setting} must be env:NAME or file:PATH, got `{reference}`"),
    };
    let value = value.trim().to_string();
    if value.is_empty() || value.contains(['\n', '\r', '\0']) {
        anyhow::bail!("{setting} `{reference}` holds an empty or multi-line key");
    }
    Ok(Some(value))
}

/// The pipeline's generated-docs settings, with the summary model when
/// `docs.llm.model` is set.
pub fn docs_settings(settings: &Settings) -> Result<DocsSettings> {
    let d = &settings.docs;
    let llm = if d.llm.model.trim().is_empty() {
        None
    } else {
        let mut opts = projsync_embed::chat::ChatOptions::new(d.llm.model.clone());
        opts.base_url = d.llm.base_url.clone();
        opts.api_key = read_secret("docs.llm.credentials_ref", &d.llm.credentials_ref)?;
        opts.api_key_header = match d.llm.api_key_header.as_str() {
            "api-key" => ApiKeyHeader::ApiKey,
            _ => ApiKeyHeader::Authorization,
        };
        opts.max_tokens = d.llm.max_tokens;
        opts.timeout = Duration::from_secs(d.llm.request_timeout_secs);
        Some(Arc::new(
            projsync_embed::chat::ChatClient::new(opts)
                .map_err(|err| anyhow::anyhow!("cannot set up docs.llm: {err}"))?,
        ))
    };
    Ok(DocsSettings {
        enabled: d.enabled,
        batch_modules: d.batch_modules,
        llm,
    })
}

/// The pipeline's embedding settings for a loaded (or absent) model.
pub fn embed_settings(settings: &Settings, embedder: Option<Arc<dyn Embedder>>) -> EmbedSettings {
    let e = &settings.embeddings;
    EmbedSettings {
        embedder,
        enabled: e.enabled,
        batch_size: e.batch_size,
        max_chunk_tokens: (e.max_chunk_tokens > 0).then_some(e.max_chunk_tokens),
        ..EmbedSettings::default()
    }
}

/// The pipeline's code analysis settings.
pub fn analysis_settings(settings: &Settings) -> AnalysisSettings {
    let a = &settings.analysis;
    AnalysisSettings {
        enabled: a.enabled,
        batch_files: a.batch_files,
        limits: projsync_analyze::Limits {
            max_bytes: a.max_file_bytes,
            max_line_len: a.max_line_chars,
            timeout: Duration::from_millis(a.parse_timeout_ms),
        },
    }
}

/// The API's search settings for a loaded (or absent) model.
pub fn search_settings(settings: &Settings, embedder: Option<Arc<dyn Embedder>>) -> SearchSettings {
    SearchSettings::new(
        embedder,
        settings.embeddings.enabled,
        settings.embeddings.search_max_k,
    )
}

/// Fail with what to install when pgvector is missing (api and worker).
pub async fn require_pgvector(store: &Store) -> Result<()> {
    store.require_vector_extension().await?;
    Ok(())
}

/// The API's state without an embedding model: enough for every command
/// but search (which gets [`api_state_with_search`]).
pub async fn api_state(settings: &Settings, store: Store) -> Result<AppState> {
    api_state_with_search(settings, store, SearchSettings::disabled()).await
}

pub async fn api_state_with_search(
    settings: &Settings,
    store: Store,
    search: SearchSettings,
) -> Result<AppState> {
    let queue_opts = settings.queue_options();
    let queue = JobQueue::connect(&queue_opts).await?;
    let events = projsync_queue::EventHub::new(queue_opts.clone(), settings.api.max_streams);
    let metrics = Metrics::new(Process::Api);
    Ok(AppState {
        store,
        queue,
        queue_opts,
        sources: Arc::new(sources(settings).await?.with_metrics(metrics.clone())),
        default_max_file_bytes: settings.sync.max_file_bytes,
        search,
        auth: projsync_api::auth::AuthSettings::new(
            Duration::from_secs(settings.api.session_ttl_secs),
            settings.api.cookie_secure,
            settings.api.rate_limit_per_key,
            settings.api.rate_limit_per_tenant,
        ),
        principal: None,
        limits: settings.api_limits(),
        events,
        metrics,
        webhooks: settings.webhook_settings(),
    })
}

/// Bind the API's address; `Err` names the address.
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}; is another projsync api running? set api.listen (PROJSYNC__API__LISTEN)"))
}

/// Serve the API, with the MCP endpoint at `/mcp`, in the background
/// until `shutdown` is cancelled.
pub fn spawn_api(
    listener: tokio::net::TcpListener,
    state: AppState,
    mcp: projsync_mcp::McpSettings,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let addr = listener.local_addr()?;
    let mcp = projsync_mcp::router(&state, mcp, shutdown.child_token());
    let app = projsync_api::router_with(state, mcp);
    let handle = tokio::spawn(projsync_api::serve(listener, app, async move {
        shutdown.cancelled().await
    }));
    Ok((addr, handle))
}

pub async fn pipeline(
    settings: &Settings,
    store: Store,
    worker_name: &str,
    sources: Arc<dyn SourceFactory>,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<Pipeline> {
    require_pgvector(&store).await?;
    let embedder = embedder(settings, &store).await?;
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
            import_batch_bytes: w.import_batch_bytes,
            max_file_bytes: settings.sync.max_file_bytes,
            max_attempts: w.max_attempts,
            retry_min_delay: Duration::from_millis(w.retry_min_delay_ms),
            retry_max_delay: Duration::from_secs(w.retry_max_delay_secs),
            archive_min_files: settings.sync.archive_min_files,
            archive_max_bytes: settings.sync.archive_max_bytes,
            plan_retention: Duration::from_secs(
                settings.sync.plan_retention_hours.saturating_mul(3600),
            ),
            progress_interval: Duration::from_millis(w.progress_interval_ms),
        },
        shutdown,
    )
    .with_embeddings(embed_settings(settings, embedder))
    .with_analysis(analysis_settings(settings))
    .with_docs(docs_settings(settings)?)
    .with_metrics(metrics))
}

/// Bind the worker's listener for /healthz, /readyz and /metrics
/// (`worker.listen`); `None` when it is empty.
pub async fn bind_worker_listener(settings: &Settings) -> Result<Option<tokio::net::TcpListener>> {
    let addr = settings.worker.listen.trim();
    if addr.is_empty() {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} for the worker's /healthz, /readyz and /metrics; is another \
             worker on this host using it? give each worker its own worker.listen \
             (PROJSYNC__WORKER__LISTEN), 127.0.0.1:0 for any free port, or an empty value for \
             no listener"
        )
    })?;
    Ok(Some(listener))
}

/// A worker process's parts: the queue consumer, running pipeline syncs,
/// and the reconciler. Resolves when both have stopped after `shutdown`
/// and the syncs in flight have handed back their work.
pub async fn spawn_worker(
    settings: &Settings,
    store: Store,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>> {
    let metrics = Metrics::new(Process::Worker);
    let listener = bind_worker_listener(settings).await?;
    let sources = Arc::new(sources(settings).await?.with_metrics(metrics.clone()));
    spawn_worker_on(settings, store, sources, metrics, listener, shutdown).await
}

/// `spawn_worker` with the sources of your choice (tests count reads).
pub async fn spawn_worker_with(
    settings: &Settings,
    store: Store,
    sources: Arc<dyn SourceFactory>,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>> {
    let listener = bind_worker_listener(settings).await?;
    let metrics = Metrics::new(Process::Worker);
    spawn_worker_on(settings, store, sources, metrics, listener, shutdown).await
}

/// `spawn_worker` with the metrics and the health listener of your choice
/// (`None`: no listener). The listener serves until the worker has stopped.
pub async fn spawn_worker_on(
    settings: &Settings,
    store: Store,
    sources: Arc<dyn SourceFactory>,
    metrics: Metrics,
    listener: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>> {
    let name = projsync_queue::unique_worker_name(&settings.worker.name_prefix);
    let pipeline = pipeline(
        settings,
        store.clone(),
        &name,
        sources,
        metrics.clone(),
        shutdown.clone(),
    )
    .await?;
    // Up while the worker drains, so that probes see it until it exits.
    let health_stop = CancellationToken::new();
    let health = match listener {
        Some(listener) => {
            let addr = listener.local_addr()?;
            tracing::info!(
                "worker health and metrics on http://{addr} (/healthz, /readyz, /metrics)"
            );
            let health = projsync_api::health::Health::new(
                store.clone(),
                settings.queue_options(),
                metrics.clone(),
            );
            let stop = health_stop.clone();
            Some(tokio::spawn(async move {
                let stopped = async move { stop.cancelled().await };
                if let Err(e) = projsync_api::health::serve(listener, health, stopped).await {
                    tracing::warn!("the worker's health and metrics listener stopped: {e}");
                }
            }))
        }
        None => None,
    };
    // In the fleet until the worker has drained, not just until it stops pulling.
    let presence_stop = CancellationToken::new();
    let presence = tokio::spawn(projsync_pipeline::presence::run_presence(
        store.clone(),
        projsync_pipeline::presence::worker_info(
            &name,
            env!("CARGO_PKG_VERSION"),
            settings.worker.concurrency,
        ),
        presence_stop.clone(),
    ));
    let consumer = projsync_queue::spawn_worker(
        settings.queue_options(),
        name,
        settings.worker.concurrency,
        Arc::new(pipeline.clone()),
        shutdown.clone(),
    );
    let queue = JobQueue::connect(&settings.queue_options()).await?;
    // Every worker ticks; Postgres makes one fire per due time.
    let scheduler = settings.scheduler.enabled.then(|| {
        tokio::spawn(run_scheduler(
            store.clone(),
            queue.clone(),
            SchedulerOptions {
                tick: Duration::from_millis(settings.scheduler.tick_ms),
                metrics: metrics.clone(),
            },
            shutdown.clone(),
        ))
    });
    let reconciler = tokio::spawn(run_reconciler(
        store,
        queue,
        ReconcilerOptions {
            interval: Duration::from_millis(settings.worker.reconcile_interval_ms),
            redeliver_after: Duration::from_secs(settings.worker.redeliver_after_secs),
            takeover: settings.worker.takeover,
            metrics,
        },
        shutdown,
    ));
    Ok(tokio::spawn(async move {
        let _ = consumer.await;
        let _ = reconciler.await;
        if let Some(scheduler) = scheduler {
            let _ = scheduler.await;
        }
        pipeline.drained().await;
        presence_stop.cancel();
        let _ = presence.await;
        health_stop.cancel();
        if let Some(health) = health {
            let _ = health.await;
        }
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
