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
//!
//! How a request is sent, classified and retried is shared with the chat
//! client ([`crate::chat`]); this module adds what is particular to
//! embeddings: batching, the concurrency cap, and checking the vectors.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt as _, TryStreamExt as _};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::chunk::EstimateCounter;
use crate::http::{Endpoint, RetryOptions, Service};
use crate::{EmbedError, Embedder, Result, TokenCounter};

pub use crate::http::{ApiKeyHeader, DEFAULT_BASE_URL};

/// What the embedder's messages name.
pub(crate) static EMBEDDINGS: Service = Service {
    what: "embeddings",
    section: "embeddings",
    path: "embeddings",
    answer: "embeddings list",
    retried: "the batch",
    when_slow: "raise embeddings.timeout or lower embeddings.batch_size",
    when_throttled: Some("lower embeddings.max_concurrency"),
    when_too_large: "lower embeddings.batch_size or embeddings.max_tokens",
    when_rejected: "check embeddings.model, embeddings.dimensions, embeddings.batch_size and embeddings.max_tokens against the provider's limits",
};

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
        let retry = RetryOptions::default();
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
            max_retries: retry.max_retries,
            retry_min_delay: retry.min_delay,
            retry_max_delay: retry.max_delay,
            max_retry_wait: retry.max_wait,
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
    endpoint: Endpoint,
    retries: RetryOptions,
    opts: OpenAiOptions,
    tokens: Arc<dyn TokenCounter>,
    permits: Arc<Semaphore>,
}

impl fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("endpoint", &self.endpoint.url().as_str())
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
        let endpoint = Endpoint::new(
            &EMBEDDINGS,
            &opts.base_url,
            &opts.model,
            opts.api_key.as_deref(),
            opts.api_key_header,
            opts.timeout,
        )?;
        let tokens: Arc<dyn TokenCounter> = match &opts.tokenizer_path {
            Some(path) => {
                Arc::new(crate::tokenizer::HfTokenizer::from_file(path).map_err(|e| {
                    EmbedError::fatal(format!("cannot use embeddings.tokenizer_path: {e}"))
                })?)
            }
            None => Arc::new(EstimateCounter),
        };
        Ok(Self {
            endpoint,
            retries: RetryOptions {
                max_retries: opts.max_retries,
                min_delay: opts.retry_min_delay,
                max_delay: opts.retry_max_delay,
                max_wait: opts.max_retry_wait,
            },
            permits: Arc::new(Semaphore::new(opts.max_concurrency)),
            opts,
            tokens,
        })
    }

    /// `{base_url}/embeddings`.
    pub fn endpoint(&self) -> &Url {
        self.endpoint.url()
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
        let on_retry = |error: &EmbedError, wait: Duration| {
            tracing::warn!(
                model = %self.opts.model,
                inputs = batch.len(),
                retry_in_ms = wait.as_millis() as u64,
                "embeddings request failed, retrying: {error}"
            );
        };
        self.endpoint
            .retry(self.retries, || self.send(batch), on_retry)
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
        let response = self.endpoint.post(&body).await?;
        self.vectors(batch.len(), response)
    }

    /// The vectors in input order, each checked.
    fn vectors(&self, expected: usize, response: EmbeddingsResponse) -> Result<Vec<Vec<f32>>> {
        if response.data.len() != expected {
            return Err(self.endpoint.fatal(format!(
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
                return Err(self.endpoint.fatal(format!(
                    "the model returned {len} dimensions but embeddings.dimensions is {}; set embeddings.dimensions to {len} (stored vectors are re-embedded) or use a model that returns {}{hint}",
                    self.opts.dimensions, self.opts.dimensions
                )));
            }
            match out.get_mut(index) {
                Some(slot @ None) => *slot = Some(item.embedding),
                _ => {
                    return Err(self.endpoint.fatal(format!(
                        "the provider returned embedding index {index} twice or out of range for {expected} inputs; it is not OpenAI-compatible, check embeddings.base_url"
                    )))
                }
            }
        }
        // Every slot is filled: `expected` distinct in-range indexes.
        Ok(out.into_iter().flatten().collect())
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

#[cfg(test)]
mod tests {
    use super::*;

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
