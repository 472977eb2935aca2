//! The provider for any OpenAI-compatible `POST {base_url}/embeddings`
//! endpoint: OpenAI itself, Azure OpenAI's v1-compatible endpoint,
//! text-embeddings-inference, Ollama, vLLM.
//!
//! Failures are sorted the way the pipeline acts on them: a provider that is
//! busy or briefly down ([`EmbedError::Retryable`]) is retried a few times
//! inside the call, and when it asks for a longer pause than
//! [`OpenAiOptions::max_retry_wait`] the call gives up at once and hands the
//! wait back in `retry_after`, so that the job is rescheduled instead of
//! holding a worker. Anything that will fail the same way again (a bad key,
//! an unknown model, vectors of the wrong length) is [`EmbedError::Fatal`].
//!
//! The API key is sent with every request and never appears in a log line,
//! a `Debug` output or an error message.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use futures::stream::{self, StreamExt as _, TryStreamExt as _};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::chunk::EstimateCounter;
use crate::{EmbedError, Embedder, Result, TokenCounter};

/// OpenAI's public API.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Provider messages are quoted in errors; a proxy's HTML page is not worth
/// more than this.
const MAX_MESSAGE_CHARS: usize = 500;

/// Which header carries the API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApiKeyHeader {
    /// `Authorization: Bearer KEY`: OpenAI, vLLM, TEI, Ollama behind a proxy.
    #[default]
    Authorization,
    /// `api-key: KEY`: Azure OpenAI.
    ApiKey,
}

impl std::str::FromStr for ApiKeyHeader {
    type Err = EmbedError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "authorization" | "bearer" => Ok(ApiKeyHeader::Authorization),
            "api-key" => Ok(ApiKeyHeader::ApiKey),
            other => Err(EmbedError::fatal(format!(
                "unknown API key header `{other}`; use `authorization` (Bearer, OpenAI and most servers) or `api-key` (Azure OpenAI)"
            ))),
        }
    }
}

/// How to reach the provider and how hard to push it.
#[derive(Clone)]
pub struct OpenAiOptions {
    /// The API root; `/embeddings` is appended (a query string is kept).
    pub base_url: String,
    /// The model (Azure: the deployment) and the name recorded with every
    /// vector, so changing it re-embeds everything.
    pub model: String,
    /// The length every vector must have; checked on every response so that
    /// a model swapped behind the same name cannot corrupt the index.
    pub dimensions: usize,
    /// Send `dimensions` in the request, for models that can shorten their
    /// vectors (OpenAI's `text-embedding-3-*`). Others reject the field.
    pub send_dimensions: bool,
    /// Local servers usually need none.
    pub api_key: Option<String>,
    pub api_key_header: ApiKeyHeader,
    /// Inputs per request: providers cap it (OpenAI 2048, TEI 32 by
    /// default), and smaller requests are cheaper to retry.
    pub batch_size: usize,
    /// Requests in flight at once for this embedder, across all its calls:
    /// the knob that keeps a process under the provider's rate limit.
    pub max_concurrency: usize,
    /// Per request, from connecting to the last byte of the body.
    pub timeout: Duration,
    /// Retries of one batch inside a call before the error goes back to the
    /// caller, which reschedules the job.
    pub max_retries: usize,
    /// Backoff between those retries: exponential with jitter between these.
    pub retry_min_delay: Duration,
    pub retry_max_delay: Duration,
    /// The longest provider-requested pause (`Retry-After`) slept through
    /// inside a call; a longer one is returned as `retry_after` instead of
    /// holding a worker.
    pub max_retry_wait: Duration,
    /// Content tokens one input may hold (OpenAI: 8191).
    pub max_tokens: usize,
    /// The model's `tokenizer.json`, for exact token counts. Without it
    /// counts are estimated with [`EstimateCounter`]: one token per 3 bytes
    /// of UTF-8, rounded up, truncating on a char boundary. BPE tokenizers
    /// average about 4 bytes a token on English prose and 3 to 4 on code, so
    /// the estimate overcounts those and chunks come out a little smaller
    /// than they could, rather than being cut by the provider. It can
    /// undercount text dense in rare tokens (CJK, emoji, base64 or hex
    /// blobs): set the path when that matters.
    pub tokenizer_path: Option<PathBuf>,
}

impl OpenAiOptions {
    /// Defaults for everything but the model and its vector length.
    pub fn new(model: impl Into<String>, dimensions: usize) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_string(),
            model: model.into(),
            dimensions,
            send_dimensions: false,
            api_key: None,
            api_key_header: ApiKeyHeader::Authorization,
            batch_size: 64,
            max_concurrency: 4,
            timeout: Duration::from_secs(30),
            max_retries: 3,
            retry_min_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(5),
            max_retry_wait: Duration::from_secs(20),
            max_tokens: 8191,
            tokenizer_path: None,
        }
    }
}

impl fmt::Debug for OpenAiOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiOptions")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .field("send_dimensions", &self.send_dimensions)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_header", &self.api_key_header)
            .field("batch_size", &self.batch_size)
            .field("max_concurrency", &self.max_concurrency)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_min_delay", &self.retry_min_delay)
            .field("retry_max_delay", &self.retry_max_delay)
            .field("max_retry_wait", &self.max_retry_wait)
            .field("max_tokens", &self.max_tokens)
            .field("tokenizer_path", &self.tokenizer_path)
            .finish()
    }
}

/// An [`Embedder`] over an OpenAI-compatible HTTP endpoint. Share one per
/// process (behind an `Arc`): its concurrency limit covers all its calls.
pub struct OpenAiEmbedder {
    http: reqwest::Client,
    endpoint: Url,
    opts: OpenAiOptions,
    tokens: Arc<dyn TokenCounter>,
    permits: Arc<Semaphore>,
}

impl fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("endpoint", &self.endpoint.as_str())
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    /// Optional: a few servers leave it out and answer in order.
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

impl OpenAiEmbedder {
    /// Checks the options and loads the tokenizer; nothing is sent yet, so
    /// a bad key shows up on the first [`Embedder::embed`].
    pub fn new(opts: OpenAiOptions) -> Result<Self> {
        if opts.model.trim().is_empty() {
            return Err(EmbedError::fatal(
                "embeddings.model is empty; set it to the provider's model name (Azure: the deployment name)",
            ));
        }
        if opts.dimensions == 0 {
            return Err(EmbedError::fatal(
                "embeddings.dimensions is 0; set it to the length of the model's vectors",
            ));
        }
        for (name, value) in [
            ("batch_size", opts.batch_size),
            ("max_concurrency", opts.max_concurrency),
            ("max_tokens", opts.max_tokens),
        ] {
            if value == 0 {
                return Err(EmbedError::fatal(format!(
                    "embeddings.{name} is 0; set it to at least 1"
                )));
            }
        }
        if opts.timeout.is_zero() {
            return Err(EmbedError::fatal(
                "embeddings.timeout is 0; set it to how long one request may take, e.g. 30s",
            ));
        }
        let endpoint = endpoint_url(&opts.base_url)?;
        let tokens: Arc<dyn TokenCounter> = match &opts.tokenizer_path {
            Some(path) => {
                Arc::new(crate::tokenizer::HfTokenizer::from_file(path).map_err(|e| {
                    EmbedError::fatal(format!("cannot use embeddings.tokenizer_path: {e}"))
                })?)
            }
            None => Arc::new(EstimateCounter),
        };

        let mut headers = HeaderMap::new();
        if let Some(key) = opts
            .api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            // `HeaderValue` takes spaces, tabs and bytes above 0x7f; no key
            // holds them, and an inner one means a mangled secret file.
            if !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(EmbedError::fatal(
                    "the API key holds a line break, a space, a control character or non-ASCII text, which cannot be sent in an HTTP header; store the key alone, on one line, where embeddings.credentials_ref names it",
                ));
            }
            let (name, value) = match opts.api_key_header {
                ApiKeyHeader::Authorization => (AUTHORIZATION, format!("Bearer {key}")),
                ApiKeyHeader::ApiKey => (HeaderName::from_static("api-key"), key.to_string()),
            };
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                EmbedError::fatal(
                    "the API key holds characters that cannot be sent in an HTTP header; check the key named by embeddings.credentials_ref",
                )
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("projsync/", env!("CARGO_PKG_VERSION")))
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| {
                EmbedError::fatal(format!(
                    "cannot build the HTTP client for embeddings: {}",
                    error_chain(&e)
                ))
            })?;
        Ok(Self {
            http,
            endpoint,
            permits: Arc::new(Semaphore::new(opts.max_concurrency)),
            opts,
            tokens,
        })
    }

    /// `{base_url}/embeddings`.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    pub fn options(&self) -> &OpenAiOptions {
        &self.opts
    }

    /// One batch, with the in-call retries. The permit is held across the
    /// retries so that a throttled provider sees fewer requests, not more.
    async fn embed_batch(&self, batch: &[String]) -> Result<Vec<Vec<f32>>> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| EmbedError::fatal("the embedder is shut down"))?;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.opts.retry_min_delay)
            .with_max_delay(self.opts.retry_max_delay.max(self.opts.retry_min_delay))
            .with_jitter()
            .with_max_times(self.opts.max_retries);
        let max_wait = self.opts.max_retry_wait;
        (|| self.send(batch))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(EmbedError::is_retryable)
            .adjust(|error, backoff| {
                let backoff = backoff?;
                match error {
                    EmbedError::Retryable {
                        retry_after: Some(wait),
                        ..
                    } => (*wait <= max_wait).then_some(*wait),
                    _ => Some(backoff),
                }
            })
            .notify(|error, wait| {
                tracing::warn!(
                    model = %self.opts.model,
                    inputs = batch.len(),
                    retry_in_ms = wait.as_millis() as u64,
                    "embeddings request failed, retrying: {error}"
                );
            })
            .await
    }

    /// One request, its failure classified.
    async fn send(&self, batch: &[String]) -> Result<Vec<Vec<f32>>> {
        let body = EmbeddingsRequest {
            model: &self.opts.model,
            input: batch,
            encoding_format: "float",
            dimensions: self.opts.send_dimensions.then_some(self.opts.dimensions),
        };
        let started = std::time::Instant::now();
        let response = self
            .http
            .post(self.endpoint.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?;
        tracing::debug!(
            model = %self.opts.model,
            inputs = batch.len(),
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            request_id = headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            "embeddings request"
        );
        if !status.is_success() {
            return Err(self.status_error(status, &headers, &bytes));
        }
        self.parse(batch.len(), &bytes)
    }

    fn parse(&self, expected: usize, bytes: &[u8]) -> Result<Vec<Vec<f32>>> {
        let response: EmbeddingsResponse = serde_json::from_slice(bytes).map_err(|e| {
            self.fatal(format!(
                "the answer from {} is not an OpenAI embeddings list ({e}); check embeddings.base_url points at an OpenAI-compatible API (it usually ends in /v1)",
                self.endpoint
            ))
        })?;
        if response.data.len() != expected {
            return Err(self.fatal(format!(
                "the provider returned {} embeddings for {expected} inputs to model `{}`; check that embeddings.batch_size is within the provider's limit",
                response.data.len(),
                self.opts.model
            )));
        }
        let mut out: Vec<Option<Vec<f32>>> = vec![None; expected];
        for (position, item) in response.data.into_iter().enumerate() {
            let index = item.index.unwrap_or(position);
            let len = item.embedding.len();
            if len != self.opts.dimensions {
                let hint = if self.opts.send_dimensions {
                    "; the model may not support shortening its vectors: unset embeddings.send_dimensions and set embeddings.dimensions to its native length"
                } else {
                    ""
                };
                return Err(self.fatal(format!(
                    "the model returned {len} dimensions but embeddings.dimensions is {}; set embeddings.dimensions to {len} (stored vectors are re-embedded) or use a model that returns {}{hint}",
                    self.opts.dimensions, self.opts.dimensions
                )));
            }
            match out.get_mut(index) {
                Some(slot @ None) => *slot = Some(item.embedding),
                _ => {
                    return Err(self.fatal(format!(
                        "the provider returned embedding index {index} twice or out of range for {expected} inputs; it is not OpenAI-compatible, check embeddings.base_url"
                    )))
                }
            }
        }
        // Every slot is filled: `expected` distinct in-range indexes.
        Ok(out.into_iter().flatten().collect())
    }

    fn transport_error(&self, error: &reqwest::Error) -> EmbedError {
        // The endpoint is in our message already; reqwest's adds it again.
        let mut detail = error_chain(error);
        if let Some(url) = error.url() {
            detail = detail.replace(&format!(" for url ({url})"), "");
        }
        let message = if error.is_timeout() {
            format!(
                "the embeddings request to {} timed out after {:?}; the provider is slow or overloaded (raise embeddings.timeout or lower embeddings.batch_size if this persists)",
                self.endpoint, self.opts.timeout
            )
        } else if error.is_connect() {
            format!(
                "cannot connect to the embeddings provider at {}: {detail}; check embeddings.base_url and that the server is up",
                self.endpoint
            )
        } else if error.is_builder() {
            return self.fatal(format!(
                "cannot build the embeddings request to {}: {detail}; check embeddings.base_url",
                self.endpoint
            ));
        } else {
            format!(
                "the embeddings request to {} failed: {detail}",
                self.endpoint
            )
        };
        EmbedError::retryable(self.scrub(message))
    }

    fn status_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> EmbedError {
        let error = ProviderError::parse(body);
        let message = &error.message;
        let model = &self.opts.model;
        let endpoint = &self.endpoint;
        match status.as_u16() {
            401 | 403 => self.fatal(format!(
                "the embeddings provider at {endpoint} refused the request ({status}): {message}; check the key named by embeddings.credentials_ref (and that it may use model `{model}`)"
            )),
            404 if error.is_unknown_model() => self.fatal(format!(
                "the embeddings provider at {endpoint} does not know model `{model}` ({status}): {message}; check embeddings.model (Azure: the deployment name)"
            )),
            404 => self.fatal(format!(
                "the embeddings provider answered {status} for model `{model}` at {endpoint}: {message}; check embeddings.base_url (it usually ends in /v1) and embeddings.model"
            )),
            400 | 422 if error.is_unknown_model() => self.fatal(format!(
                "the embeddings provider at {endpoint} does not know model `{model}` ({status}): {message}; check embeddings.model (Azure: the deployment name)"
            )),
            413 => self.fatal(format!(
                "the embeddings provider at {endpoint} found the request too large ({status}): {message}; lower embeddings.batch_size or embeddings.max_tokens"
            )),
            408 | 409 | 425 | 429 | 500..=599 => {
                let retry_after = match status.as_u16() {
                    429 => retry_after(headers).or_else(|| rate_limit_reset(headers)),
                    503 => retry_after(headers),
                    _ => None,
                };
                let what = if status == StatusCode::TOO_MANY_REQUESTS {
                    "is rate limiting requests"
                } else {
                    "failed"
                };
                let advice = if status == StatusCode::TOO_MANY_REQUESTS {
                    "; the batch is retried later (lower embeddings.max_concurrency if this persists)"
                } else {
                    "; the batch is retried later"
                };
                EmbedError::Retryable {
                    message: self.scrub(format!(
                        "the embeddings provider at {endpoint} {what} ({status}): {message}{advice}"
                    )),
                    retry_after,
                }
            }
            _ => self.fatal(format!(
                "the embeddings provider at {endpoint} rejected the request for model `{model}` ({status}): {message}; check embeddings.model, embeddings.dimensions, embeddings.batch_size and embeddings.max_tokens against the provider's limits"
            )),
        }
    }

    fn fatal(&self, message: String) -> EmbedError {
        EmbedError::Fatal(self.scrub(message))
    }

    /// Providers sometimes echo the key back; it never leaves in a message.
    fn scrub(&self, message: String) -> String {
        match self.opts.api_key.as_deref().map(str::trim) {
            Some(key) if !key.is_empty() && message.contains(key) => {
                message.replace(key, "<redacted>")
            }
            _ => message,
        }
    }
}

impl TokenCounter for OpenAiEmbedder {
    fn count_tokens(&self, text: &str) -> usize {
        self.tokens.count_tokens(text)
    }

    fn truncate<'a>(&self, text: &'a str, max_tokens: usize) -> (Cow<'a, str>, bool) {
        self.tokens.truncate(text, max_tokens)
    }
}

#[async_trait::async_trait]
impl Embedder for OpenAiEmbedder {
    fn model(&self) -> &str {
        &self.opts.model
    }

    fn dimensions(&self) -> usize {
        self.opts.dimensions
    }

    fn max_tokens(&self) -> usize {
        self.opts.max_tokens
    }

    async fn embed(&self, inputs: &[String]) -> Result<Vec<Vec<f32>>> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        // `buffered` keeps batch order; the semaphore bounds the requests
        // across concurrent calls. The first error drops the other batches.
        // (The futures are made up front: a closure inside the stream would
        // not be `Send` for every lifetime, as `async_trait` needs.)
        let requests: Vec<_> = inputs
            .chunks(self.opts.batch_size)
            .map(|batch| self.embed_batch(batch))
            .collect();
        let batches: Vec<Vec<Vec<f32>>> = stream::iter(requests)
            .buffered(self.opts.max_concurrency)
            .try_collect()
            .await?;
        Ok(batches.into_iter().flatten().collect())
    }
}

fn endpoint_url(base_url: &str) -> Result<Url> {
    let invalid = |why: &str| {
        EmbedError::fatal(format!(
            "embeddings.base_url `{base_url}` {why}; set it to the API root, e.g. {DEFAULT_BASE_URL}"
        ))
    };
    let mut url =
        Url::parse(base_url.trim()).map_err(|e| invalid(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("is not an http(s) URL"));
    }
    url.path_segments_mut()
        .map_err(|_| invalid("cannot have a path"))?
        .pop_if_empty()
        .push("embeddings");
    Ok(url)
}

/// `error` and its sources, which reqwest keeps out of its `Display`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The error a provider put in its body, whichever dialect it speaks:
/// OpenAI and Azure `{"error":{"message","code","type"}}`, Ollama and TEI
/// `{"error":"..."}`, vLLM `{"message","type","code"}`, FastAPI
/// `{"detail":...}`, or plain text.
#[derive(Debug, Default)]
struct ProviderError {
    message: String,
    code: Option<String>,
    kind: Option<String>,
}

impl ProviderError {
    fn parse(body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        let mut error = match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(value) => Self::from_json(&value).unwrap_or_else(|| Self {
                message: value.to_string(),
                ..Self::default()
            }),
            Err(_) => Self {
                message: text.trim().to_string(),
                ..Self::default()
            },
        };
        error.message = shorten(error.message.trim());
        if error.message.is_empty() {
            error.message = "no message".to_string();
        }
        error
    }

    fn from_json(value: &serde_json::Value) -> Option<Self> {
        let as_text = |v: &serde_json::Value| match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        };
        let object = value.as_object()?;
        if let Some(inner) = object.get("error") {
            if let Some(inner) = inner.as_object() {
                return Some(Self {
                    message: inner.get("message").and_then(as_text).unwrap_or_default(),
                    code: inner.get("code").and_then(as_text),
                    kind: inner.get("type").and_then(as_text),
                });
            }
            if let Some(message) = as_text(inner) {
                return Some(Self {
                    message,
                    code: None,
                    kind: object.get("error_type").and_then(as_text),
                });
            }
        }
        for key in ["message", "detail"] {
            if let Some(message) = object.get(key).and_then(as_text) {
                return Some(Self {
                    message,
                    code: object.get("code").and_then(as_text),
                    kind: object.get("type").and_then(as_text),
                });
            }
        }
        None
    }

    fn is_unknown_model(&self) -> bool {
        let code = self.code.as_deref().unwrap_or("").to_ascii_lowercase();
        let kind = self.kind.as_deref().unwrap_or("").to_ascii_lowercase();
        let message = self.message.to_ascii_lowercase();
        code == "model_not_found"
            || code == "deploymentnotfound"
            || kind == "notfounderror"
            || ((message.contains("model") || message.contains("deployment"))
                && (message.contains("not found")
                    || message.contains("does not exist")
                    || message.contains("unknown")))
    }
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// `retry-after-ms` (OpenAI, Azure) or `Retry-After` in seconds or as an
/// HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let value = header("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (date.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// OpenAI's 429s often come without `Retry-After` but say when the
/// exhausted budget refills: `x-ratelimit-reset-requests: 1s`,
/// `x-ratelimit-reset-tokens: 6m0s`.
fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    ["requests", "tokens"]
        .into_iter()
        .filter(|kind| header(&format!("x-ratelimit-remaining-{kind}")) == Some("0"))
        .filter_map(|kind| header(&format!("x-ratelimit-reset-{kind}")).and_then(go_duration))
        .max()
}

/// A Go duration: `20ms`, `1s`, `6m0s`, `1h2m3.5s`.
fn go_duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let (unit, scale) = [
            ("ms", 1e-3),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("ns", 1e-9),
            ("h", 3600.0),
            ("m", 60.0),
            ("s", 1.0),
        ]
        .into_iter()
        .find(|(unit, _)| rest.starts_with(unit))?;
        rest = &rest[unit.len()..];
        total += number * scale;
    }
    total.is_finite().then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(
            go_duration("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(go_duration(""), None);
        assert_eq!(go_duration("soon"), None);
        assert_eq!(go_duration("5"), None);
    }

    #[test]
    fn retry_after_forms() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));

        let mut headers = HeaderMap::new();
        let date = (chrono::Utc::now() + chrono::Duration::seconds(90))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        headers.insert("retry-after", HeaderValue::from_str(&date).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(85) && wait <= Duration::from_secs(90),
            "{wait:?}"
        );
        headers.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert("retry-after", HeaderValue::from_static("later"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn rate_limit_reset_of_the_exhausted_budget() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("0"),
        );
        headers.insert("x-ratelimit-reset-requests", HeaderValue::from_static("1s"));
        headers.insert(
            "x-ratelimit-remaining-tokens",
            HeaderValue::from_static("5000"),
        );
        headers.insert("x-ratelimit-reset-tokens", HeaderValue::from_static("6m0s"));
        assert_eq!(rate_limit_reset(&headers), Some(Duration::from_secs(1)));
        headers.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("3"),
        );
        assert_eq!(rate_limit_reset(&headers), None);
    }

    #[test]
    fn provider_error_dialects() {
        let openai = ProviderError::parse(
            br#"{"error":{"message":"The model `x` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#,
        );
        assert_eq!(openai.code.as_deref(), Some("model_not_found"));
        assert!(openai.is_unknown_model());
        let ollama =
            ProviderError::parse(br#"{"error":"model \"nomic\" not found, try pulling it first"}"#);
        assert!(ollama.is_unknown_model());
        assert!(ollama.message.starts_with("model \"nomic\""));
        let tei = ProviderError::parse(
            br#"{"error":"batch size 100 > maximum allowed batch size 32","error_type":"Validation"}"#,
        );
        assert!(!tei.is_unknown_model());
        assert_eq!(tei.kind.as_deref(), Some("Validation"));
        let vllm = ProviderError::parse(
            br#"{"object":"error","message":"The model `m` does not exist.","type":"NotFoundError","param":null,"code":404}"#,
        );
        assert!(vllm.is_unknown_model());
        assert_eq!(vllm.code.as_deref(), Some("404"));
        let html = ProviderError::parse(b"<html>Bad Gateway</html>\n");
        assert_eq!(html.message, "<html>Bad Gateway</html>");
        assert_eq!(ProviderError::parse(b"").message, "no message");
        let long = "x".repeat(2000);
        assert_eq!(
            ProviderError::parse(long.as_bytes())
                .message
                .chars()
                .count(),
            MAX_MESSAGE_CHARS + 1
        );
    }

    #[test]
    fn endpoints() {
        let url = |base: &str| endpoint_url(base).map(|u| u.to_string());
        assert_eq!(
            url("https://api.openai.com/v1").unwrap(),
            "https://api.openai.com/v1/embeddings"
        );
        assert_eq!(
            url("https://api.openai.com/v1/").unwrap(),
            "https://api.openai.com/v1/embeddings"
        );
        assert_eq!(
            url("https://r.openai.azure.com/openai/v1/?api-version=preview").unwrap(),
            "https://r.openai.azure.com/openai/v1/embeddings?api-version=preview"
        );
        assert_eq!(
            url("http://localhost:8080").unwrap(),
            "http://localhost:8080/embeddings"
        );
        assert!(url("api.openai.com/v1").is_err());
        assert!(url("ftp://example.com").is_err());
    }

    #[test]
    fn keys_that_cannot_be_sent_in_a_header_are_refused_without_echo() {
        for key in ["abc\ndef", "abc def", "abc\u{1}def", "abcédef"] {
            let mut opts = OpenAiOptions::new("m", 3);
            opts.base_url = "http://127.0.0.1:9/v1".into();
            opts.api_key = Some(format!("{key}\n"));
            let err = OpenAiEmbedder::new(opts)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("HTTP header"), "{err}");
            assert!(!err.contains("abc"), "{err}");
        }
        let mut opts = OpenAiOptions::new("m", 3);
        opts.base_url = "http://127.0.0.1:9/v1".into();
        opts.api_key = Some("sk-ok\n".into());
        assert!(OpenAiEmbedder::new(opts).is_ok());
    }

    #[test]
    fn options_debug_redacts_the_key() {
        let mut opts = OpenAiOptions::new("m", 3);
        opts.api_key = Some("sk-secret-123456".into());
        let text = format!("{opts:?}");
        assert!(!text.contains("sk-secret"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
}
