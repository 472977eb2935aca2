//! Configuration: `config/default.toml` (compiled in), then an optional file
//! (`--config` or `PROJSYNC_CONFIG`), then `PROJSYNC__SECTION__KEY`
//! environment variables; validated before anything starts.

use anyhow::{bail, Context, Result};
use projsync_queue::QueueOptions;
use projsync_store::ConnectOptions;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// GitHub's largest webhook delivery (25 MB).
const WEBHOOK_BODY_MAX: u64 = 25 * 1024 * 1024;

const DEFAULTS: &str = include_str!("../../../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub database: Database,
    pub redis: Redis,
    pub api: Api,
    pub worker: Worker,
    pub sync: Sync,
    pub github: GitHub,
    pub log: Log,
    pub embeddings: Embeddings,
    pub analysis: Analysis,
    pub docs: Docs,
    pub sources: Sources,
    pub migrate: Migrate,
    pub telemetry: Telemetry,
    pub webhooks: Webhooks,
    pub scheduler: Scheduler,
    pub mcp: Mcp,
}

/// `[mcp]`: the MCP server (`projsync mcp` and `/mcp` on the API).
#[derive(Debug, Clone, Deserialize)]
pub struct Mcp {
    /// No tool answer or resource text is longer than this (bytes).
    pub max_result_bytes: usize,
    /// Resources per page of resources/list.
    pub page_size: usize,
}

/// GitHub webhooks (`POST /api/v1/webhooks/github`).
#[derive(Debug, Clone, Deserialize)]
pub struct Webhooks {
    pub debounce_ms: u64,
    pub delivery_retention_hours: u64,
    pub max_body_bytes: u64,
    /// The API's public base URL, for the payload URL `projsync webhook
    /// secret` prints; empty: a placeholder.
    pub public_url: String,
}

/// `[scheduler]`: every worker's scheduler, which fires due project
/// schedules and starts wanted syncs (once per tick across workers).
#[derive(Debug, Clone, Deserialize)]
pub struct Scheduler {
    pub enabled: bool,
    pub tick_ms: u64,
}

/// `[telemetry]`: traces and logs over OTLP/HTTP (docs/telemetry.md).
#[derive(Clone, Deserialize)]
pub struct Telemetry {
    /// The OTLP/HTTP base URL (`{endpoint}/v1/traces`, `{endpoint}/v1/logs`);
    /// empty: nothing is exported.
    pub otlp_endpoint: String,
    /// Headers sent with every export (`Authorization`): a table, or one
    /// string `Name=value,Name=value` (the form an environment variable can
    /// hold, like `OTEL_EXPORTER_OTLP_HEADERS`).
    #[serde(deserialize_with = "headers::deserialize")]
    pub otlp_headers: std::collections::BTreeMap<String, String>,
    /// Headers of the traces only, over `otlp_headers` (Axiom's
    /// `X-Axiom-Dataset`: a dataset per signal).
    #[serde(deserialize_with = "headers::deserialize")]
    pub otlp_traces_headers: std::collections::BTreeMap<String, String>,
    /// Headers of the logs only, over `otlp_headers`.
    #[serde(deserialize_with = "headers::deserialize")]
    pub otlp_logs_headers: std::collections::BTreeMap<String, String>,
    /// Export the logs as well as the traces.
    pub otlp_logs: bool,
    /// `gzip` or `none`.
    pub otlp_compression: String,
    pub otlp_timeout_ms: u64,
    pub service_name: String,
}

impl std::fmt::Debug for Telemetry {
    /// Header values hold API tokens: only their names show.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("otlp_endpoint", &self.otlp_endpoint)
            .field(
                "otlp_headers",
                &self.otlp_headers.keys().collect::<Vec<_>>(),
            )
            .field("otlp_timeout_ms", &self.otlp_timeout_ms)
            .field("service_name", &self.service_name)
            .finish()
    }
}

mod headers {
    use serde::{Deserialize, Deserializer};
    use std::collections::BTreeMap;

    /// A scalar as text: environment variables are parsed (`try_parsing`),
    /// so a value such as `123` arrives as a number.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Int(i64),
        Float(f64),
        Bool(bool),
    }

    impl Scalar {
        fn text(self) -> String {
            match self {
                Scalar::Text(s) => s,
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Bool(b) => b.to_string(),
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Headers {
        Table(BTreeMap<String, Scalar>),
        Text(String),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, String>, D::Error> {
        Ok(match Headers::deserialize(d)? {
            Headers::Table(t) => t.into_iter().map(|(k, v)| (k, v.text())).collect(),
            Headers::Text(s) => parse(&s).map_err(serde::de::Error::custom)?,
        })
    }

    /// `Name=value,Name=value` (a value may hold `=`, not `,`).
    pub(super) fn parse(s: &str) -> Result<BTreeMap<String, String>, String> {
        s.split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
            .enumerate()
            .map(|(i, pair)| match pair.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    Ok((k.trim().to_string(), v.trim().to_string()))
                }
                // Not echoed: it may be a token.
                _ => Err(format!(
                    "telemetry.otlp_headers: entry {} is not Name=value; give \
                     Name=value,Name=value",
                    i + 1
                )),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Migrate {
    /// Protected objects on top of the defaults: `table` or `table.column`.
    pub protected: Vec<String>,
    pub lock_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Sources {
    pub local: LocalSources,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LocalSources {
    pub allowed_roots: Vec<String>,
}

/// `[analysis]`: code analysis of changed source files (the analyze phase).
#[derive(Debug, Clone, Deserialize)]
pub struct Analysis {
    pub enabled: bool,
    pub batch_files: usize,
    pub max_file_bytes: usize,
    pub max_line_chars: usize,
    pub parse_timeout_ms: u64,
}

/// `[docs]`: generated module docs (the docs phase).
#[derive(Debug, Clone, Deserialize)]
pub struct Docs {
    pub enabled: bool,
    pub batch_modules: usize,
    pub llm: DocsLlm,
}

/// `[docs.llm]`: the chat model that writes each doc's summary.
#[derive(Debug, Clone, Deserialize)]
pub struct DocsLlm {
    pub base_url: String,
    pub model: String,
    pub credentials_ref: String,
    pub api_key_header: String,
    pub max_tokens: u32,
    pub request_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Embeddings {
    pub enabled: bool,
    pub provider: String,
    pub model: String,
    pub dimensions: usize,
    pub batch_size: usize,
    pub max_chunk_tokens: usize,
    pub search_max_k: usize,
    pub model_path: String,
    pub runtime_path: String,
    pub threads: usize,
    pub base_url: String,
    pub credentials_ref: String,
    pub api_key_header: String,
    pub send_dimensions: bool,
    pub max_concurrency: usize,
    pub request_timeout_secs: u64,
    pub max_tokens: usize,
    pub tokenizer_path: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GitHub {
    pub api_url: String,
    pub max_concurrent_requests: usize,
    pub request_timeout_secs: u64,
    /// Diff through the comparison API from this many tree entries (0: always).
    pub compare_min_entries: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Database {
    pub url: String,
    pub admin_url: String,
    pub max_connections: u32,
    pub connect_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Redis {
    pub url: String,
    pub namespace: String,
    pub heartbeat_interval_secs: u64,
    pub missed_heartbeats: usize,
    pub poll_interval_ms: u64,
    pub response_timeout_ms: u64,
    pub connect_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Api {
    pub listen: String,
    pub session_ttl_secs: u64,
    pub cookie_secure: bool,
    pub rate_limit_per_key: u32,
    pub rate_limit_per_tenant: u32,
    pub allowed_hosts: Vec<String>,
    pub max_body_bytes: u64,
    pub max_ignore_patterns: u64,
    pub max_pattern_bytes: u64,
    pub max_ignore_patterns_bytes: u64,
    pub max_file_bytes_limit: u64,
    pub max_page_size: u64,
    pub validation_concurrency: u64,
    /// SSE streams open at once per API process (one shared Redis
    /// connection serves them); past it, 503 with Retry-After.
    pub max_streams: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Worker {
    pub concurrency: usize,
    pub lease_ttl_secs: u64,
    pub import_batch_size: usize,
    pub import_batch_bytes: u64,
    pub progress_interval_ms: u64,
    pub name_prefix: String,
    pub shutdown_timeout_secs: u64,
    pub max_attempts: u32,
    pub retry_min_delay_ms: u64,
    pub retry_max_delay_secs: u64,
    pub reconcile_interval_ms: u64,
    pub redeliver_after_secs: u64,
    /// Push running syncs whose worker's lock connection is gone at once
    /// (see ARCHITECTURE.md, invariant 3).
    #[serde(default)]
    pub takeover: bool,
    /// The worker's own listener for /healthz, /readyz and /metrics;
    /// empty: none.
    pub listen: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Sync {
    pub max_file_bytes: u64,
    pub archive_min_files: u64,
    pub archive_max_bytes: u64,
    pub plan_retention_hours: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Log {
    pub format: String,
    pub level: String,
}

impl Settings {
    /// Load the layers and validate them.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        let env_file = std::env::var_os("PROJSYNC_CONFIG").filter(|v| !v.is_empty());
        let file = file.map(Path::to_path_buf).or(env_file.map(Into::into));
        if let Some(path) = &file {
            if !path.is_file() {
                bail!(
                    "configuration file {} does not exist; check --config or PROJSYNC_CONFIG",
                    path.display()
                );
            }
            builder = builder.add_source(config::File::from(path.as_path()).required(true));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("PROJSYNC")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("sources.local.allowed_roots")
                .with_list_parse_key("api.allowed_hosts")
                .with_list_parse_key("migrate.protected"),
        );
        let settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .context("invalid configuration (defaults, config file, PROJSYNC__* variables)")?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<()> {
        let scheme = |url: &str| url.split_once("://").map(|(s, _)| s.to_string());
        for (name, url, var) in [
            (
                "database.url",
                &self.database.url,
                "PROJSYNC__DATABASE__URL",
            ),
            (
                "database.admin_url",
                &self.database.admin_url,
                "PROJSYNC__DATABASE__ADMIN_URL",
            ),
        ] {
            match scheme(url).as_deref() {
                Some("postgres" | "postgresql") => {}
                _ => bail!(
                    "{name} must be a postgres:// URL, got `{}` ({var})",
                    projsync_domain::redact_url(url)
                ),
            }
        }
        for root in &self.sources.local.allowed_roots {
            if !Path::new(root).is_absolute() {
                bail!(
                    "sources.local.allowed_roots must hold absolute paths, got `{}`",
                    root.escape_debug()
                );
            }
        }
        match scheme(&self.redis.url).as_deref() {
            Some("redis" | "rediss" | "redis+unix" | "unix") => {}
            _ => bail!(
                "redis.url must be a redis:// URL, got `{}` (PROJSYNC__REDIS__URL)",
                projsync_domain::redact_url(&self.redis.url)
            ),
        }
        if self.redis.namespace.trim().is_empty() {
            bail!("redis.namespace must not be empty");
        }
        if self.api.listen.parse::<SocketAddr>().is_err() {
            bail!(
                "api.listen must be an address like 127.0.0.1:8080, got `{}`",
                self.api.listen
            );
        }
        if !self.worker.listen.trim().is_empty()
            && self.worker.listen.trim().parse::<SocketAddr>().is_err()
        {
            bail!(
                "worker.listen must be an address like 127.0.0.1:9091, or empty for no health                  and metrics listener, got `{}` (PROJSYNC__WORKER__LISTEN)",
                self.worker.listen.escape_debug()
            );
        }
        if let Err(e) = projsync_api::limits::AllowedHosts::parse(&self.api.allowed_hosts) {
            bail!("api.allowed_hosts: {e} (PROJSYNC__API__ALLOWED_HOSTS, comma-separated)");
        }
        let e = &self.embeddings;
        if !matches!(e.provider.as_str(), "local" | "openai") {
            bail!(
                "embeddings.provider must be `local` or `openai`, got `{}` (PROJSYNC__EMBEDDINGS__PROVIDER)",
                e.provider
            );
        }
        if e.model.trim().is_empty() {
            bail!("embeddings.model must not be empty");
        }
        if !(1..=16000).contains(&e.dimensions) {
            bail!(
                "embeddings.dimensions must be between 1 and 16000, got {}",
                e.dimensions
            );
        }
        if !matches!(e.api_key_header.as_str(), "authorization" | "api-key") {
            bail!(
                "embeddings.api_key_header must be `authorization` or `api-key`, got `{}`",
                e.api_key_header
            );
        }
        if e.provider == "openai" && !e.base_url.starts_with("http") {
            bail!(
                "embeddings.base_url must be an http(s) URL, got `{}`",
                e.base_url
            );
        }
        let positive = [
            (
                "database.max_connections",
                self.database.max_connections as u64,
            ),
            (
                "redis.heartbeat_interval_secs",
                self.redis.heartbeat_interval_secs,
            ),
            (
                "redis.missed_heartbeats",
                self.redis.missed_heartbeats as u64,
            ),
            ("redis.poll_interval_ms", self.redis.poll_interval_ms),
            ("redis.response_timeout_ms", self.redis.response_timeout_ms),
            ("api.max_streams", self.api.max_streams as u64),
            ("worker.concurrency", self.worker.concurrency as u64),
            ("worker.lease_ttl_secs", self.worker.lease_ttl_secs),
            (
                "worker.import_batch_size",
                self.worker.import_batch_size as u64,
            ),
            ("worker.import_batch_bytes", self.worker.import_batch_bytes),
            ("sync.max_file_bytes", self.sync.max_file_bytes),
            ("api.session_ttl_secs", self.api.session_ttl_secs),
            ("migrate.lock_timeout_ms", self.migrate.lock_timeout_ms),
            ("api.max_body_bytes", self.api.max_body_bytes),
            ("api.max_ignore_patterns", self.api.max_ignore_patterns),
            ("api.max_pattern_bytes", self.api.max_pattern_bytes),
            (
                "api.max_ignore_patterns_bytes",
                self.api.max_ignore_patterns_bytes,
            ),
            ("api.max_file_bytes_limit", self.api.max_file_bytes_limit),
            ("api.max_page_size", self.api.max_page_size),
            (
                "api.validation_concurrency",
                self.api.validation_concurrency,
            ),
            (
                "github.max_concurrent_requests",
                self.github.max_concurrent_requests as u64,
            ),
            (
                "github.request_timeout_secs",
                self.github.request_timeout_secs,
            ),
            ("embeddings.batch_size", e.batch_size as u64),
            ("embeddings.search_max_k", e.search_max_k as u64),
            ("embeddings.max_concurrency", e.max_concurrency as u64),
            ("embeddings.request_timeout_secs", e.request_timeout_secs),
            ("embeddings.max_tokens", e.max_tokens as u64),
            ("analysis.batch_files", self.analysis.batch_files as u64),
            (
                "analysis.max_file_bytes",
                self.analysis.max_file_bytes as u64,
            ),
            (
                "analysis.max_line_chars",
                self.analysis.max_line_chars as u64,
            ),
            ("analysis.parse_timeout_ms", self.analysis.parse_timeout_ms),
            ("docs.batch_modules", self.docs.batch_modules as u64),
            ("docs.llm.max_tokens", u64::from(self.docs.llm.max_tokens)),
            (
                "docs.llm.request_timeout_secs",
                self.docs.llm.request_timeout_secs,
            ),
        ];
        let llm = &self.docs.llm;
        if !matches!(llm.api_key_header.as_str(), "authorization" | "api-key") {
            bail!(
                "docs.llm.api_key_header must be `authorization` or `api-key`, got `{}`",
                llm.api_key_header
            );
        }
        if !llm.model.trim().is_empty() && !llm.base_url.starts_with("http") {
            bail!(
                "docs.llm.base_url must be an http(s) URL, got `{}` (PROJSYNC__DOCS__LLM__BASE_URL)",
                llm.base_url
            );
        }
        if self.scheduler.tick_ms < 10 {
            bail!(
                "scheduler.tick_ms must be at least 10, got {} (PROJSYNC__SCHEDULER__TICK_MS)",
                self.scheduler.tick_ms
            );
        }
        for (name, value) in positive {
            if value == 0 {
                bail!("{name} must be greater than 0");
            }
        }
        if !(self.github.api_url.starts_with("https://")
            || self.github.api_url.starts_with("http://"))
        {
            bail!(
                "github.api_url must be an http(s) URL, got `{}` (PROJSYNC__GITHUB__API_URL)",
                self.github.api_url
            );
        }
        let t = &self.telemetry;
        if t.service_name.trim().is_empty() {
            bail!("telemetry.service_name must not be empty (PROJSYNC__TELEMETRY__SERVICE_NAME)");
        }
        if t.otlp_timeout_ms == 0 {
            bail!("telemetry.otlp_timeout_ms must be greater than 0");
        }
        if !matches!(t.otlp_compression.as_str(), "gzip" | "none") {
            bail!(
                "telemetry.otlp_compression must be `gzip` or `none`, got `{}` \
                 (PROJSYNC__TELEMETRY__OTLP_COMPRESSION)",
                t.otlp_compression.escape_debug()
            );
        }
        if self.mcp.max_result_bytes < 2048 {
            bail!(
                "mcp.max_result_bytes must be at least 2048, got {} (PROJSYNC__MCP__MAX_RESULT_BYTES)",
                self.mcp.max_result_bytes
            );
        }
        if !(1..=1000).contains(&self.mcp.page_size) {
            bail!(
                "mcp.page_size must be between 1 and 1000, got {} (PROJSYNC__MCP__PAGE_SIZE)",
                self.mcp.page_size
            );
        }
        if let Some(options) = self.telemetry_options("check") {
            if let Err(e) = projsync_telemetry::check(&options) {
                bail!("{e} (the [telemetry] section, or its PROJSYNC__TELEMETRY__* variable)");
            }
        }
        if self.worker.progress_interval_ms > 10_000 {
            bail!(
                "worker.progress_interval_ms must be at most 10000 (10 seconds), got {}; live \
                 progress would lag behind the sync (PROJSYNC__WORKER__PROGRESS_INTERVAL_MS)",
                self.worker.progress_interval_ms
            );
        }
        let w = &self.webhooks;
        if w.debounce_ms > 600_000 {
            bail!(
                "webhooks.debounce_ms must be at most 600000 (10 minutes), got {} \
                 (PROJSYNC__WEBHOOKS__DEBOUNCE_MS)",
                w.debounce_ms
            );
        }
        if !(1..=24 * 365).contains(&w.delivery_retention_hours) {
            bail!(
                "webhooks.delivery_retention_hours must be between 1 and 8760, got {}; GitHub \
                 redelivers deliveries of the last 3 days (PROJSYNC__WEBHOOKS__DELIVERY_RETENTION_HOURS)",
                w.delivery_retention_hours
            );
        }
        if !(1024..=WEBHOOK_BODY_MAX).contains(&w.max_body_bytes) {
            bail!(
                "webhooks.max_body_bytes must be between 1024 and {WEBHOOK_BODY_MAX} (GitHub's \
                 25 MB), got {} (PROJSYNC__WEBHOOKS__MAX_BODY_BYTES)",
                w.max_body_bytes
            );
        }
        if !w.public_url.is_empty()
            && !matches!(scheme(&w.public_url).as_deref(), Some("http" | "https"))
        {
            bail!(
                "webhooks.public_url must be an http(s) URL or empty, got `{}` \
                 (PROJSYNC__WEBHOOKS__PUBLIC_URL)",
                w.public_url
            );
        }
        if !matches!(self.log.format.as_str(), "human" | "json") {
            bail!(
                "log.format must be `human` or `json`, got `{}`",
                self.log.format
            );
        }
        Ok(())
    }

    /// The MCP server's settings (`[mcp]`).
    pub fn mcp_settings(&self) -> projsync_mcp::McpSettings {
        projsync_mcp::McpSettings {
            max_result_bytes: self.mcp.max_result_bytes,
            page_size: self.mcp.page_size,
        }
    }

    /// The webhook endpoint's settings (`[webhooks]`).
    pub fn webhook_settings(&self) -> projsync_api::webhooks::WebhookSettings {
        let w = &self.webhooks;
        projsync_api::webhooks::WebhookSettings {
            debounce: Duration::from_millis(w.debounce_ms),
            delivery_retention: Duration::from_secs(
                w.delivery_retention_hours.saturating_mul(3600),
            ),
            max_body_bytes: usize::try_from(w.max_body_bytes).unwrap_or(usize::MAX),
        }
    }

    /// The API's request limits (`[api]`).
    pub fn api_limits(&self) -> projsync_api::limits::Limits {
        use projsync_api::limits::{AllowedHosts, Limits, Validation};
        let a = &self.api;
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Limits {
            max_body_bytes: size(a.max_body_bytes),
            allowed_hosts: AllowedHosts::parse(&a.allowed_hosts).unwrap_or_default(),
            max_ignore_patterns: size(a.max_ignore_patterns),
            max_pattern_bytes: size(a.max_pattern_bytes),
            max_ignore_patterns_bytes: size(a.max_ignore_patterns_bytes),
            max_file_bytes_limit: a.max_file_bytes_limit,
            max_page_size: i64::try_from(a.max_page_size).unwrap_or(i64::MAX),
            validation: Validation::new(size(a.validation_concurrency)),
        }
    }

    /// Where this process (`api`, `worker`, a CLI command) exports its
    /// traces and logs; `None` when `telemetry.otlp_endpoint` is empty.
    pub fn telemetry_options(&self, process: &str) -> Option<projsync_telemetry::OtlpOptions> {
        let t = &self.telemetry;
        let endpoint = t.otlp_endpoint.trim();
        if endpoint.is_empty() {
            return None;
        }
        let pairs = |h: &std::collections::BTreeMap<String, String>| {
            h.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        Some(projsync_telemetry::OtlpOptions {
            endpoint: endpoint.to_string(),
            headers: pairs(&t.otlp_headers),
            traces_headers: pairs(&t.otlp_traces_headers),
            logs_headers: pairs(&t.otlp_logs_headers),
            logs: t.otlp_logs,
            service_name: t.service_name.trim().to_string(),
            resource: vec![("projsync.process".into(), process.to_string())],
            timeout: Duration::from_millis(t.otlp_timeout_ms),
            gzip: t.otlp_compression == "gzip",
        })
    }

    pub fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            url: self.database.url.clone(),
            max_connections: self.database.max_connections,
            connect_timeout: Duration::from_secs(self.database.connect_timeout_secs),
        }
    }

    /// The owner's connection (migrations and operator commands).
    pub fn admin_connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            url: self.database.admin_url.clone(),
            max_connections: 4,
            connect_timeout: Duration::from_secs(self.database.connect_timeout_secs),
        }
    }

    pub fn github_config(&self) -> projsync_sources::GitHubConfig {
        projsync_sources::GitHubConfig {
            api_url: self.github.api_url.trim_end_matches('/').to_string(),
            max_concurrent_requests: self.github.max_concurrent_requests,
            request_timeout: Duration::from_secs(self.github.request_timeout_secs),
            compare_min_entries: self.github.compare_min_entries,
            ..Default::default()
        }
    }

    pub fn queue_options(&self) -> QueueOptions {
        QueueOptions {
            url: self.redis.url.clone(),
            namespace: self.redis.namespace.clone(),
            heartbeat_interval: Duration::from_secs(self.redis.heartbeat_interval_secs),
            missed_heartbeats: self.redis.missed_heartbeats,
            poll_interval: Duration::from_millis(self.redis.poll_interval_ms),
            response_timeout: Duration::from_millis(self.redis.response_timeout_ms),
            connect_timeout: Duration::from_millis(self.redis.connect_timeout_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults with `toml` laid over them.
    fn load(toml: &str) -> Settings {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        let s = load("");
        s.validate().unwrap();
        assert_eq!(s.sync.max_file_bytes, 1024 * 1024);
        // The compiled-in defaults agree with the source's own.
        let github = projsync_sources::GitHubConfig::default();
        let configured = s.github_config();
        assert_eq!(configured.compare_min_entries, github.compare_min_entries);
        assert_eq!(
            configured.max_concurrent_requests,
            github.max_concurrent_requests
        );
        assert_eq!(configured.request_timeout, github.request_timeout);
    }

    #[test]
    fn compare_min_entries_is_settable_and_zero_means_always() {
        let s = load("[github]\ncompare_min_entries = 0\n");
        s.validate().unwrap();
        assert_eq!(s.github_config().compare_min_entries, 0);
        let s = load("[github]\ncompare_min_entries = 250\n");
        assert_eq!(s.github_config().compare_min_entries, 250);
    }

    #[test]
    fn bad_values_are_named() {
        let mut s = load("");
        s.database.url = "mysql://u:secret@h/db".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.contains("postgres://") && !err.contains("secret"),
            "{err}"
        );
        s.database.url = "postgres://h/db".into();
        s.database.admin_url = "http://h/db".into();
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("database.admin_url"));
        s.database.admin_url = "postgres://h/db".into();
        s.sources.local.allowed_roots = vec!["srv/git".into()];
        assert!(s.validate().unwrap_err().to_string().contains("absolute"));
        s.sources.local.allowed_roots = vec!["/srv/git".into()];
        s.worker.concurrency = 0;
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("worker.concurrency"));
        s.worker.concurrency = 1;
        s.api.max_streams = 0;
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("api.max_streams must be greater than 0"));
        s.api.max_streams = 1;
        s.worker.listen = "9091".into();
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("worker.listen"));
        s.worker.listen = String::new();
        s.validate().unwrap();
        s.telemetry.otlp_endpoint = "api.axiom.co".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("telemetry.otlp_endpoint"), "{err}");
        s.telemetry.otlp_endpoint = "https://api.axiom.co".into();
        s.telemetry.otlp_logs_headers =
            [("X-Axiom-Dataset".to_string(), "a\nb".to_string())].into();
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.contains("telemetry.otlp_logs_headers") && err.contains("X-Axiom-Dataset"),
            "{err}"
        );
        s.telemetry.otlp_logs_headers.clear();
        s.validate().unwrap();
    }

    #[test]
    fn telemetry_is_off_unless_an_endpoint_is_set() {
        let s = load("");
        assert!(s.telemetry_options("api").is_none());
        assert_eq!(s.telemetry.service_name, "projsync");
    }

    #[test]
    fn otlp_headers_come_as_a_table_or_as_one_string() {
        let table = load(
            "[telemetry]\notlp_endpoint = \"https://api.axiom.co\"\n\
             [telemetry.otlp_headers]\nAuthorization = \"Bearer xaat-1\"\n\
             X-Axiom-Dataset = \"projsync\"\n",
        );
        let text = load(
            "[telemetry]\notlp_endpoint = \"https://api.axiom.co\"\n\
             otlp_headers = \" Authorization=Bearer xaat-1 , X-Axiom-Dataset=projsync,\"\n",
        );
        for s in [&table, &text] {
            let o = s.telemetry_options("worker").unwrap();
            let mut headers = o.headers.clone();
            headers.sort();
            assert_eq!(
                headers,
                [
                    ("Authorization".to_string(), "Bearer xaat-1".to_string()),
                    ("X-Axiom-Dataset".to_string(), "projsync".to_string())
                ]
            );
            assert_eq!(o.endpoint, "https://api.axiom.co");
            assert!(
                !format!("{s:?}").contains("xaat"),
                "secrets stay out of Debug"
            );
        }
        let err = headers::parse("X-Axiom-Dataset=p,Bearer xaat-2").unwrap_err();
        assert!(err.contains("entry 2") && !err.contains("xaat"), "{err}");
        assert!(headers::parse("=x").is_err());
        assert_eq!(headers::parse("a=b=c").unwrap()["a"], "b=c");
    }
}
