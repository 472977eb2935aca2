//! A client for any OpenAI-compatible `POST {base_url}/chat/completions`
//! endpoint (OpenAI, Azure OpenAI's v1-compatible endpoint, vLLM, Ollama,
//! llama.cpp's server), for short texts written from a prompt: a system
//! and a user message in, the assistant's reply out.
//!
//! It sends, classifies and retries requests exactly as the embeddings
//! provider does (the plumbing is shared): a busy or briefly unavailable
//! provider is retried inside the call and a long `Retry-After` is handed
//! back in [`EmbedError::Retryable`]'s `retry_after`; a bad key, an unknown
//! model, or a reply that holds no text is [`EmbedError::Fatal`], since
//! asking again would get the same answer. The pipeline acts on both the way
//! it acts on embedding failures.
//!
//! Messages point at the `docs.llm.*` settings (`base_url`, `model`,
//! `credentials_ref`, `timeout`, `max_tokens`), where this client is
//! configured. The API key never appears in a log line, a `Debug` output or
//! an error message.

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::http::{Endpoint, Service};
use crate::{EmbedError, Result};

pub use crate::http::{ApiKeyHeader, RetryOptions, DEFAULT_BASE_URL};

/// What the chat client's messages name.
pub(crate) static CHAT: Service = Service {
    what: "chat",
    section: "docs.llm",
    path: "chat/completions",
    answer: "chat completion",
    retried: "the request",
    when_slow: "raise docs.llm.timeout or lower docs.llm.max_tokens",
    // One request per summary, no knob of its own to slow down.
    when_throttled: None,
    when_too_large: "the prompt is longer than the provider accepts; use a model with a larger context",
    when_rejected: "check docs.llm.model, docs.llm.max_tokens and docs.llm.temperature against the provider's limits",
};

/// How to reach the provider and what to ask of the model.
#[derive(Clone)]
pub struct ChatOptions {
    /// The API root; `/chat/completions` is appended (a query string is
    /// kept).
    pub base_url: String,
    /// The model (Azure: the deployment).
    pub model: String,
    /// Local servers usually need none.
    pub api_key: Option<String>,
    pub api_key_header: ApiKeyHeader,
    /// Per request, from connecting to the last byte of the body. Replies
    /// are written token by token, so this is longer than for embeddings.
    pub timeout: Duration,
    /// Retries inside one [`ChatClient::complete`].
    pub retry: RetryOptions,
    /// The reply's length limit in tokens (`max_tokens`): a summary is short,
    /// and the limit bounds both the cost and the wait.
    pub max_tokens: u32,
    /// Sampling temperature, 0 to 2. The default 0 keeps replies as stable
    /// as the provider allows, so that a summary does not churn between runs.
    pub temperature: f32,
}

impl ChatOptions {
    /// Defaults for everything but the model.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_string(),
            model: model.into(),
            api_key: None,
            api_key_header: ApiKeyHeader::Authorization,
            timeout: Duration::from_secs(60),
            retry: RetryOptions::default(),
            max_tokens: 256,
            temperature: 0.0,
        }
    }
}

impl fmt::Debug for ChatOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatOptions")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_header", &self.api_key_header)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("max_tokens", &self.max_tokens)
            .field("temperature", &self.temperature)
            .finish()
    }
}

/// A chat completions client for one model. Cheap to share behind an `Arc`;
/// it holds one connection pool.
pub struct ChatClient {
    endpoint: Endpoint,
    opts: ChatOptions,
}

impl fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatClient")
            .field("endpoint", &self.endpoint.url().as_str())
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    max_tokens: u32,
    temperature: f32,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<Reply>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Reply {
    #[serde(default)]
    content: Option<String>,
    /// OpenAI's models say why they would not answer here, `content` null.
    #[serde(default)]
    refusal: Option<String>,
}

impl ChatClient {
    /// Checks the options; nothing is sent yet, so a bad key shows up on the
    /// first [`ChatClient::complete`].
    pub fn new(opts: ChatOptions) -> Result<Self> {
        if opts.max_tokens == 0 {
            return Err(EmbedError::fatal(
                "docs.llm.max_tokens is 0; set it to the longest reply wanted, in tokens, e.g. 256",
            ));
        }
        if !(0.0..=2.0).contains(&opts.temperature) {
            return Err(EmbedError::fatal(format!(
                "docs.llm.temperature is {}; set it between 0 and 2 (0 for the steadiest replies)",
                opts.temperature
            )));
        }
        let endpoint = Endpoint::new(
            &CHAT,
            &opts.base_url,
            &opts.model,
            opts.api_key.as_deref(),
            opts.api_key_header,
            opts.timeout,
        )?;
        Ok(Self { endpoint, opts })
    }

    /// `{base_url}/chat/completions`.
    pub fn endpoint(&self) -> &Url {
        self.endpoint.url()
    }

    pub fn options(&self) -> &ChatOptions {
        &self.opts
    }

    /// The model's reply to `user` under the instructions in `system`,
    /// trimmed, with the in-call retries. A blank `system` is left out, as
    /// some servers' chat templates refuse an empty system message.
    pub async fn complete(&self, system: &str, user: &str) -> Result<String> {
        let mut messages = Vec::with_capacity(2);
        if !system.trim().is_empty() {
            messages.push(Message {
                role: "system",
                content: system,
            });
        }
        messages.push(Message {
            role: "user",
            content: user,
        });
        let body = ChatRequest {
            model: &self.opts.model,
            messages,
            max_tokens: self.opts.max_tokens,
            temperature: self.opts.temperature,
        };
        let on_retry = |error: &EmbedError, wait: Duration| {
            tracing::warn!(
                model = %self.opts.model,
                retry_in_ms = wait.as_millis() as u64,
                "chat request failed, retrying: {error}"
            );
        };
        let body = &body;
        let send = move || async move { self.reply(self.endpoint.post(body).await?) };
        self.endpoint.retry(self.opts.retry, send, on_retry).await
    }

    /// The first choice's text. Anything but text is fatal: the provider
    /// would answer the same prompt the same way.
    fn reply(&self, response: ChatResponse) -> Result<String> {
        let endpoint = self.endpoint.url();
        let model = &self.opts.model;
        let Some(choice) = response.choices.into_iter().next() else {
            return Err(self.endpoint.fatal(format!(
                "the chat provider at {endpoint} returned no choices for model `{model}`; it is not OpenAI-compatible, check docs.llm.base_url"
            )));
        };
        let finish_reason = choice.finish_reason.as_deref().unwrap_or("none");
        if finish_reason == "content_filter" {
            return Err(self.endpoint.fatal(format!(
                "the chat provider at {endpoint} withheld the reply of model `{model}`: its content filter stopped it (finish_reason content_filter); the same text would be stopped again, so it is not retried"
            )));
        }
        let reply = choice.message.unwrap_or_default();
        if let Some(refusal) = reply.refusal.as_deref().map(str::trim) {
            if !refusal.is_empty() {
                return Err(self.endpoint.fatal(format!(
                    "model `{model}` at {endpoint} refused to answer: {refusal}"
                )));
            }
        }
        let content = reply.content.as_deref().map(str::trim).unwrap_or("");
        if content.is_empty() {
            let hint = if finish_reason == "length" {
                "; it ran out of tokens before writing any text (reasoning models spend them thinking): raise docs.llm.max_tokens"
            } else {
                "; check that docs.llm.model is a chat model"
            };
            return Err(self.endpoint.fatal(format!(
                "the chat provider at {endpoint} returned an empty reply from model `{model}` (finish_reason {finish_reason}){hint}"
            )));
        }
        if finish_reason == "length" {
            tracing::debug!(
                model = %model,
                max_tokens = self.opts.max_tokens,
                "chat reply cut at docs.llm.max_tokens"
            );
        }
        Ok(content.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_shows_in_debug() {
        let mut opts = ChatOptions::new("m");
        opts.api_key = Some("sk-chat-secret".into());
        let client = ChatClient::new(opts.clone()).expect("client");
        for text in [format!("{opts:?}"), format!("{client:?}")] {
            assert!(
                !text.contains("sk-chat-secret") && text.contains("<redacted>"),
                "{text}"
            );
        }
    }
}
