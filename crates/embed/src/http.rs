//! The HTTP plumbing every client of an OpenAI-compatible endpoint shares:
//! the embeddings provider ([`crate::openai`]) and the chat client
//! ([`crate::chat`]). One place sends the key, builds the endpoint's URL,
//! sorts failures into [`EmbedError::Retryable`] and [`EmbedError::Fatal`],
//! reads the provider's word on when to come back (`Retry-After`, the
//! rate-limit reset headers), understands the error dialects of the servers
//! that speak the API, keeps the key out of every message, and retries
//! inside a call.
//!
//! The two clients differ only in what their messages name: the request
//! ("embeddings", "chat"), the settings to fix (`embeddings.*` or the chat
//! client's section) and the advice for a slow, throttled or oversized
//! request. A [`Service`] carries those words, so a failure points at the
//! settings of the client that failed.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{EmbedError, Result};

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

/// What one client's messages call its requests and which settings they
/// tell the operator to change. The advice strings complete a sentence and
/// start lowercase.
#[derive(Debug)]
pub(crate) struct Service {
    /// Names the request and the provider: "the {what} request",
    /// "the {what} provider".
    pub(crate) what: &'static str,
    /// The configuration section with `base_url`, `model`,
    /// `credentials_ref` and `timeout`.
    pub(crate) section: &'static str,
    /// Appended to the base URL's path, `/` between segments.
    pub(crate) path: &'static str,
    /// What a successful answer is: "embeddings list", "chat completion".
    pub(crate) answer: &'static str,
    /// What a retryable failure puts off: "the batch", "the request".
    pub(crate) retried: &'static str,
    /// After a timeout: what to change if it keeps happening.
    pub(crate) when_slow: &'static str,
    /// After a 429: what to change if it keeps happening, if anything.
    pub(crate) when_throttled: Option<&'static str>,
    /// After a 413.
    pub(crate) when_too_large: &'static str,
    /// After any other client error, which names the model.
    pub(crate) when_rejected: &'static str,
}

/// How often and how long a client retries inside one call before the
/// error goes back to the caller, which reschedules the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOptions {
    /// Retries after the first attempt; 0 sends each request once.
    pub max_retries: usize,
    /// Backoff between retries: exponential with jitter between these.
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// The longest provider-requested pause (`Retry-After`) slept through
    /// inside a call; a longer one ends the call at once and is handed back
    /// in `retry_after`, instead of holding a worker.
    pub max_wait: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        Self {
            max_retries: 3,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
            max_wait: Duration::from_secs(20),
        }
    }
}

/// One OpenAI-compatible endpoint used with one model: a client that sends
/// the key with every request, the URL, and what messages must name.
pub(crate) struct Endpoint {
    service: &'static Service,
    http: reqwest::Client,
    url: Url,
    model: String,
    /// Kept only to scrub it from messages.
    api_key: Option<String>,
    timeout: Duration,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url.as_str())
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Checks what every client needs (a model, a timeout, a URL, a key that
    /// fits in a header) and builds the HTTP client; nothing is sent yet.
    pub(crate) fn new(
        service: &'static Service,
        base_url: &str,
        model: &str,
        api_key: Option<&str>,
        api_key_header: ApiKeyHeader,
        timeout: Duration,
    ) -> Result<Self> {
        let section = service.section;
        if model.trim().is_empty() {
            return Err(EmbedError::fatal(format!(
                "{section}.model is empty; set it to the provider's model name (Azure: the deployment name)"
            )));
        }
        if timeout.is_zero() {
            return Err(EmbedError::fatal(format!(
                "{section}.timeout is 0; set it to how long one request may take, e.g. 30s"
            )));
        }
        let url = endpoint_url(service, base_url)?;
        let api_key = api_key.map(str::trim).filter(|k| !k.is_empty());

        let mut headers = HeaderMap::new();
        if let Some(key) = api_key {
            // `HeaderValue` takes spaces, tabs and bytes above 0x7f; no key
            // holds them, and an inner one means a mangled secret file.
            if !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(EmbedError::fatal(format!(
                    "the API key holds a line break, a space, a control character or non-ASCII text, which cannot be sent in an HTTP header; store the key alone, on one line, where {section}.credentials_ref names it"
                )));
            }
            let (name, value) = match api_key_header {
                ApiKeyHeader::Authorization => (AUTHORIZATION, format!("Bearer {key}")),
                ApiKeyHeader::ApiKey => (HeaderName::from_static("api-key"), key.to_string()),
            };
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                EmbedError::fatal(format!(
                    "the API key holds characters that cannot be sent in an HTTP header; check the key named by {section}.credentials_ref"
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("projsync/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| {
                EmbedError::fatal(format!(
                    "cannot build the HTTP client for {}: {}",
                    service.what,
                    error_chain(&e)
                ))
            })?;
        Ok(Self {
            service,
            http,
            url,
            model: model.to_string(),
            api_key: api_key.map(str::to_string),
            timeout,
        })
    }

    /// `{base_url}/{path}`.
    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    /// POST `body` as JSON once: a 2xx answer's body as `R`, or the failure
    /// classified. A body that is not an `R` is fatal: the URL leads to
    /// something that does not speak the API.
    pub(crate) async fn post<B, R>(&self, body: &B) -> Result<R>
    where
        B: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let started = std::time::Instant::now();
        let response = self
            .http
            .post(self.url.clone())
            .json(body)
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
            model = %self.model,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            request_id = headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            "{} request",
            self.service.what
        );
        if !status.is_success() {
            return Err(self.status_error(status, &headers, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            self.fatal(format!(
                "the answer from {} is not an OpenAI {} ({e}); check {}.base_url points at an OpenAI-compatible API (it usually ends in /v1)",
                self.url, self.service.answer, self.service.section
            ))
        })
    }

    /// `send` until it succeeds, fails for good, or the retries run out.
    /// A provider-requested pause is slept through when it is at most
    /// `max_wait`; a longer one ends the call at once with the wait in
    /// `retry_after`, so that the job is rescheduled instead of holding a
    /// worker. `on_retry` sees each failure that is retried and the pause.
    pub(crate) async fn retry<T, F, Fut>(
        &self,
        retries: RetryOptions,
        send: F,
        on_retry: impl FnMut(&EmbedError, Duration),
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(retries.min_delay)
            .with_max_delay(retries.max_delay.max(retries.min_delay))
            .with_jitter()
            .with_max_times(retries.max_retries);
        send.retry(backoff)
            .sleep(tokio::time::sleep)
            .when(EmbedError::is_retryable)
            .adjust(|error, backoff| {
                let backoff = backoff?;
                match error {
                    EmbedError::Retryable {
                        retry_after: Some(wait),
                        ..
                    } => (*wait <= retries.max_wait).then_some(*wait),
                    _ => Some(backoff),
                }
            })
            .notify(on_retry)
            .await
    }

    fn transport_error(&self, error: &reqwest::Error) -> EmbedError {
        let Service {
            what,
            section,
            when_slow,
            ..
        } = self.service;
        let url = &self.url;
        // The endpoint is in our message already; reqwest's adds it again.
        let mut detail = error_chain(error);
        if let Some(url) = error.url() {
            detail = detail.replace(&format!(" for url ({url})"), "");
        }
        let message = if error.is_timeout() {
            format!(
                "the {what} request to {url} timed out after {:?}; the provider is slow or overloaded ({when_slow} if this persists)",
                self.timeout
            )
        } else if error.is_connect() {
            format!(
                "cannot connect to the {what} provider at {url}: {detail}; check {section}.base_url and that the server is up"
            )
        } else if error.is_builder() {
            return self.fatal(format!(
                "cannot build the {what} request to {url}: {detail}; check {section}.base_url"
            ));
        } else {
            format!("the {what} request to {url} failed: {detail}")
        };
        EmbedError::retryable(self.scrub(message))
    }

    fn status_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> EmbedError {
        let Service {
            what,
            section,
            retried,
            when_throttled,
            when_too_large,
            when_rejected,
            ..
        } = self.service;
        let error = ProviderError::parse(body);
        let message = &error.message;
        let model = &self.model;
        let endpoint = &self.url;
        match status.as_u16() {
            401 | 403 => self.fatal(format!(
                "the {what} provider at {endpoint} refused the request ({status}): {message}; check the key named by {section}.credentials_ref (and that it may use model `{model}`)"
            )),
            404 | 400 | 422 if error.is_unknown_model() => self.fatal(format!(
                "the {what} provider at {endpoint} does not know model `{model}` ({status}): {message}; check {section}.model (Azure: the deployment name)"
            )),
            404 => self.fatal(format!(
                "the {what} provider answered {status} for model `{model}` at {endpoint}: {message}; check {section}.base_url (it usually ends in /v1) and {section}.model"
            )),
            413 => self.fatal(format!(
                "the {what} provider at {endpoint} found the request too large ({status}): {message}; {when_too_large}"
            )),
            408 | 409 | 425 | 429 | 500..=599 => {
                let throttled = status == StatusCode::TOO_MANY_REQUESTS;
                let retry_after = match status.as_u16() {
                    429 => retry_after(headers).or_else(|| rate_limit_reset(headers)),
                    503 => retry_after(headers),
                    _ => None,
                };
                let happened = if throttled {
                    "is rate limiting requests"
                } else {
                    "failed"
                };
                let advice = match when_throttled {
                    Some(advice) if throttled => format!(" ({advice} if this persists)"),
                    _ => String::new(),
                };
                EmbedError::Retryable {
                    message: self.scrub(format!(
                        "the {what} provider at {endpoint} {happened} ({status}): {message}; {retried} is retried later{advice}"
                    )),
                    retry_after,
                }
            }
            _ => self.fatal(format!(
                "the {what} provider at {endpoint} rejected the request for model `{model}` ({status}): {message}; {when_rejected}"
            )),
        }
    }

    /// A fatal error whose message never shows the key.
    pub(crate) fn fatal(&self, message: String) -> EmbedError {
        EmbedError::Fatal(self.scrub(message))
    }

    /// Providers sometimes echo the key back; it never leaves in a message.
    fn scrub(&self, message: String) -> String {
        match self.api_key.as_deref() {
            Some(key) if message.contains(key) => message.replace(key, "<redacted>"),
            _ => message,
        }
    }
}

/// `{base_url}/{service.path}`, a query string kept (Azure's `api-version`).
fn endpoint_url(service: &Service, base_url: &str) -> Result<Url> {
    let invalid = |why: &str| {
        EmbedError::fatal(format!(
            "{}.base_url `{base_url}` {why}; set it to the API root, e.g. {DEFAULT_BASE_URL}",
            service.section
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
        .extend(service.path.split('/'));
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
        let url =
            |service: &Service, base: &str| endpoint_url(service, base).map(|u| u.to_string());
        let embeddings = &crate::openai::EMBEDDINGS;
        assert_eq!(
            url(embeddings, "https://api.openai.com/v1").unwrap(),
            "https://api.openai.com/v1/embeddings"
        );
        assert_eq!(
            url(embeddings, "https://api.openai.com/v1/").unwrap(),
            "https://api.openai.com/v1/embeddings"
        );
        assert_eq!(
            url(
                embeddings,
                "https://r.openai.azure.com/openai/v1/?api-version=preview"
            )
            .unwrap(),
            "https://r.openai.azure.com/openai/v1/embeddings?api-version=preview"
        );
        assert_eq!(
            url(embeddings, "http://localhost:8080").unwrap(),
            "http://localhost:8080/embeddings"
        );
        assert!(url(embeddings, "api.openai.com/v1").is_err());
        assert!(url(embeddings, "ftp://example.com").is_err());

        // Two segments, not an escaped slash.
        let chat = &crate::chat::CHAT;
        assert_eq!(
            url(chat, "http://localhost:11434/v1/").unwrap(),
            "http://localhost:11434/v1/chat/completions"
        );
        assert_eq!(
            url(
                chat,
                "https://r.openai.azure.com/openai/v1?api-version=preview"
            )
            .unwrap(),
            "https://r.openai.azure.com/openai/v1/chat/completions?api-version=preview"
        );
        let err = url(chat, "localhost:11434").err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.starts_with("docs.llm.base_url")),
            "{err:?}"
        );
    }
}
