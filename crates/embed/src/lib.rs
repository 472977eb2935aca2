//! Embeddings: the [`Embedder`] trait every provider implements, the
//! chunker that cuts entries into pieces a model can take, the tokenizer
//! wrapper used to count tokens, and the OpenAI-compatible HTTP provider.
//! Beside it, [`chat`]: a client for OpenAI-compatible chat completions,
//! which writes short texts from a prompt. Both send, classify and retry
//! their requests through the same private HTTP plumbing, and fail with the
//! same [`EmbedError`], so the pipeline treats their failures alike.
//!
//! This crate knows nothing of Postgres, Redis, queues or sources. The local
//! CPU provider lives in `projsync-embed-local`, so the ONNX Runtime binding
//! is compiled only by the binary that wires it in.

pub mod chat;
pub mod chunk;
mod http;
pub mod openai;
pub mod tokenizer;

use std::borrow::Cow;
use std::time::Duration;

/// How a provider call failed, as the pipeline needs to know it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmbedError {
    /// Worth another attempt later: 5xx, 429, timeouts, a dropped connection.
    /// `retry_after` is the provider's own word on when (`Retry-After`).
    #[error("{message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Will fail the same way every time: a bad key, an unknown model, a
    /// dimension mismatch, a model folder that cannot be loaded, a chat
    /// reply with no text.
    #[error("{0}")]
    Fatal(String),
}

impl EmbedError {
    pub fn retryable(message: impl Into<String>) -> Self {
        EmbedError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        EmbedError::Fatal(message.into())
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, EmbedError::Retryable { .. })
    }
}

pub type Result<T, E = EmbedError> = std::result::Result<T, E>;

/// Counts tokens the way a model does, so that chunks fit its input.
pub trait TokenCounter: Send + Sync {
    /// Tokens of `text` without the special tokens a model adds.
    fn count_tokens(&self, text: &str) -> usize;

    /// `text` cut to at most `max_tokens` content tokens, on a token
    /// boundary, and whether anything was cut.
    fn truncate<'a>(&self, text: &'a str, max_tokens: usize) -> (Cow<'a, str>, bool);
}

/// A text embedding model. Inputs in, one vector per input out, in order.
#[async_trait::async_trait]
pub trait Embedder: TokenCounter {
    /// The model's name as recorded with every vector: the cache key.
    fn model(&self) -> &str;

    /// Length of every vector this model returns.
    fn dimensions(&self) -> usize;

    /// Content tokens one input may hold (special tokens excluded). Longer
    /// inputs are truncated by the model, so chunks stay under this.
    fn max_tokens(&self) -> usize;

    /// Embed `inputs`; the result has one vector per input, each of
    /// [`Embedder::dimensions`] values. A provider that returns anything else
    /// fails with [`EmbedError::Fatal`].
    async fn embed(&self, inputs: &[String]) -> Result<Vec<Vec<f32>>>;
}
