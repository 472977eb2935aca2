//! A fake OpenAI API for tests: an in-process axum server on `127.0.0.1:0`
//! speaking the real request, response, error and header shapes of
//! `POST /v1/embeddings` and `POST /v1/chat/completions`, with
//! deterministic answers, counters and injectable faults.
//!
//! Vectors come from [`fake_embedding`]: a normalised, signed, hashed bag of
//! the text's lower-cased word pieces (identifiers split on `_` and
//! camelCase), so texts that share words are closer than texts that do not,
//! and the same text always gets the same vector. Chat replies come from
//! [`fake_chat_reply`] of the last user message, so a test can tell which
//! prompt a reply answers.
//!
//! Both endpoints check the same key and draw on the same fault queue; a
//! test that needs to fail one and not the other starts two fakes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};

/// The model the fake knows unless told otherwise.
pub const DEFAULT_MODEL: &str = "text-embedding-3-small";
/// The chat model the fake knows unless told otherwise.
pub const DEFAULT_CHAT_MODEL: &str = "gpt-4o-mini";
/// How much of the user message's first line a chat reply repeats.
pub const CHAT_REPLY_CHARS: usize = 60;
/// The length of the fake's vectors unless told otherwise.
pub const DEFAULT_DIMENSIONS: usize = 384;

const REQUESTS_PER_MINUTE: u64 = 3000;
const TOKENS_PER_MINUTE: u64 = 1_000_000;
const API_KEYS_URL: &str = "https://platform.openai.com/account/api-keys";
const RATE_LIMITS_URL: &str = "https://platform.openai.com/account/rate-limits";

/// A fault, queued with [`FakeOpenAi::inject`] (one request each, in order,
/// embeddings or chat alike) or set for every request with
/// [`FakeOpenAi::set_fault_every_request`]. Queued faults go first. A fault
/// about the other endpoint's answer (vectors on a chat request, a chat
/// reply on an embeddings request) is used up and the request served
/// normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenAiFault {
    /// `status` with OpenAI's body for it: 500 "The server had an error",
    /// 503 "overloaded", 502/504 the HTML page of the load balancer.
    ServerError { status: u16 },
    /// 503 "overloaded" with `Retry-After: <retry_after>`, verbatim: seconds
    /// or an HTTP date.
    Unavailable { retry_after: String },
    /// 429 with OpenAI's rate-limit body, `retry-after: <secs>` and
    /// `x-ratelimit-*` headers showing the request budget spent.
    RateLimited { retry_after_secs: u64 },
    /// The same, with `retry-after-ms` (as OpenAI and Azure send it) and no
    /// `retry-after`.
    RateLimitedMs { retry_after_ms: u64 },
    /// Served normally after `delay_ms`.
    Slow { delay_ms: u64 },
    /// No response: the connection is closed.
    DropConnection,
    /// Served with vectors of this length.
    WrongDimensions { dimensions: usize },
    /// Served with the last `missing` vectors left out.
    MissingVectors { missing: usize },
    /// Served with `data` in reverse order (each `index` still right).
    Reversed,
    /// A chat completion served with this `message.content` (`null` when
    /// `None`) and `finish_reason` (`"content_filter"`, `"length"`).
    ChatReply {
        content: Option<String>,
        finish_reason: String,
    },
    /// Any answer at all: for other providers' dialects.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
}

/// A fake OpenAI-compatible server; it stops when dropped.
pub struct FakeOpenAi {
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

/// How a [`FakeOpenAi`] behaves; [`FakeOpenAiBuilder::start`] runs it.
#[derive(Debug, Clone)]
pub struct FakeOpenAiBuilder {
    api_key: Option<String>,
    azure_auth: bool,
    models: Vec<String>,
    chat_models: Vec<String>,
    dimensions: usize,
    max_batch: Option<usize>,
}

struct Shared {
    config: FakeOpenAiBuilder,
    base_url: String,
    state: Mutex<Counters>,
    seq: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

#[derive(Default)]
struct Counters {
    requests: u64,
    batch_sizes: Vec<usize>,
    inputs: Vec<String>,
    inputs_embedded: u64,
    last_request: Option<Value>,
    chat_requests: u64,
    last_chat_request: Option<Value>,
    faults: VecDeque<OpenAiFault>,
    every: Option<OpenAiFault>,
    window_start: Option<Instant>,
    window_requests: u64,
}

impl Default for FakeOpenAiBuilder {
    fn default() -> Self {
        Self {
            api_key: None,
            azure_auth: false,
            models: vec![DEFAULT_MODEL.to_string()],
            chat_models: vec![DEFAULT_CHAT_MODEL.to_string()],
            dimensions: DEFAULT_DIMENSIONS,
            max_batch: None,
        }
    }
}

impl FakeOpenAiBuilder {
    /// Require `Authorization: Bearer <key>`; without it any key, or none,
    /// is accepted.
    pub fn with_api_key(mut self, key: &str) -> Self {
        self.api_key = Some(key.to_string());
        self
    }

    /// Take the key from `api-key: <key>` instead, as Azure OpenAI does.
    pub fn with_azure_auth(mut self) -> Self {
        self.azure_auth = true;
        self
    }

    /// The embedding models served (default [`DEFAULT_MODEL`]); others
    /// answer 404 `model_not_found`.
    pub fn with_models(mut self, models: &[&str]) -> Self {
        self.models = models.iter().map(|m| m.to_string()).collect();
        self
    }

    /// The chat models served (default [`DEFAULT_CHAT_MODEL`]); others
    /// answer 404 `model_not_found`.
    pub fn with_chat_models(mut self, models: &[&str]) -> Self {
        self.chat_models = models.iter().map(|m| m.to_string()).collect();
        self
    }

    /// The models' native vector length (default 384); a request's
    /// `dimensions` may ask for fewer.
    pub fn with_dimensions(mut self, dimensions: usize) -> Self {
        self.dimensions = dimensions.max(1);
        self
    }

    /// Answer 400 to requests with more than `n` inputs, as real providers
    /// do (OpenAI 2048, TEI 32 by default).
    pub fn with_max_batch(mut self, n: usize) -> Self {
        self.max_batch = Some(n.max(1));
        self
    }

    pub async fn start(self) -> FakeOpenAi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake OpenAI");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared {
            config: self,
            base_url: format!("http://127.0.0.1:{port}/v1"),
            state: Mutex::new(Counters::default()),
            seq: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route("/v1/embeddings", post(embeddings_handler))
            .route("/v1/chat/completions", post(chat_handler))
            .fallback(fallback_handler)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeOpenAi { shared, server }
    }
}

impl FakeOpenAi {
    /// Defaults: no key required, [`DEFAULT_MODEL`] and
    /// [`DEFAULT_CHAT_MODEL`], 384 dimensions, no batch limit.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    pub fn builder() -> FakeOpenAiBuilder {
        FakeOpenAiBuilder::default()
    }

    /// The API root, `http://127.0.0.1:PORT/v1`, as an `OPENAI_BASE_URL`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Queue `fault` for the next request (after those already queued).
    pub fn inject(&self, fault: OpenAiFault) {
        self.shared.lock().faults.push_back(fault);
    }

    /// Queue `fault` for the next `n` requests.
    pub fn inject_times(&self, fault: OpenAiFault, n: usize) {
        let mut state = self.shared.lock();
        state.faults.extend(std::iter::repeat_n(fault, n));
    }

    /// Apply `fault` to every request the queue does not cover; `None` stops.
    pub fn set_fault_every_request(&self, fault: Option<OpenAiFault>) {
        self.shared.lock().every = fault;
    }

    /// Drop queued faults and the every-request fault.
    pub fn clear_faults(&self) {
        let mut state = self.shared.lock();
        state.faults.clear();
        state.every = None;
    }

    /// Queued faults not yet applied.
    pub fn pending_faults(&self) -> usize {
        self.shared.lock().faults.len()
    }

    /// HTTP requests that reached the server, embeddings and chat, faulted
    /// and rejected ones included: 0 means no model call was made.
    pub fn requests(&self) -> u64 {
        self.shared.lock().requests
    }

    /// Inputs answered with vectors, over all requests.
    pub fn inputs_embedded(&self) -> u64 {
        self.shared.lock().inputs_embedded
    }

    /// The number of inputs in each embeddings request, in arrival order,
    /// faulted and rejected ones included.
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.shared.lock().batch_sizes.clone()
    }

    /// The inputs answered with vectors, in the order they were served.
    pub fn inputs(&self) -> Vec<String> {
        self.shared.lock().inputs.clone()
    }

    /// The most requests (embeddings or chat) seen in flight at once.
    pub fn max_concurrent(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// The JSON body of the latest embeddings request.
    pub fn last_request(&self) -> Option<Value> {
        self.shared.lock().last_request.clone()
    }

    /// Chat completion requests that reached the server, faulted and
    /// rejected ones included: 0 means no chat call was made.
    pub fn chat_requests(&self) -> u64 {
        self.shared.lock().chat_requests
    }

    /// The JSON body of the latest chat completion request.
    pub fn last_chat_request(&self) -> Option<Value> {
        self.shared.lock().last_chat_request.clone()
    }

    /// Zero the counters; faults stay.
    pub fn reset_counts(&self) {
        let mut state = self.shared.lock();
        state.requests = 0;
        state.batch_sizes.clear();
        state.inputs.clear();
        state.inputs_embedded = 0;
        state.last_request = None;
        state.chat_requests = 0;
        state.last_chat_request = None;
        self.shared.max_in_flight.store(
            self.shared.in_flight.load(Ordering::SeqCst),
            Ordering::SeqCst,
        );
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Counters> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts a request in flight until dropped, a dropped connection included.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The fake's vector for `text`: L2-normalised, `dimensions` long. Each
/// word piece adds ±1 at a hashed position, so shared words raise the
/// cosine similarity and unrelated texts sit near 0.
pub fn fake_embedding(text: &str, dimensions: usize) -> Vec<f32> {
    let dimensions = dimensions.max(1);
    let mut vector = vec![0f32; dimensions];
    let mut pieces = word_pieces(text);
    if pieces.is_empty() {
        pieces.push(text.to_string());
    }
    for piece in &pieces {
        let hash = fnv1a(piece.as_bytes());
        let sign = if hash >> 63 == 1 { -1.0 } else { 1.0 };
        vector[(hash % dimensions as u64) as usize] += sign;
    }
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|v| *v /= norm);
    } else {
        vector[0] = 1.0;
    }
    vector
}

/// Lower-cased pieces of `text`: split on anything not alphanumeric (so on
/// `_`), then on camelCase humps (`parseHTTPHeader` → parse, http, header).
pub fn word_pieces(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        let chars: Vec<char> = word.chars().collect();
        let mut start = 0;
        for i in 1..chars.len() {
            let (prev, cur) = (chars[i - 1], chars[i]);
            let next_lower = chars.get(i + 1).is_some_and(|c| c.is_lowercase());
            let hump = (cur.is_uppercase() && (prev.is_lowercase() || prev.is_numeric()))
                || (cur.is_uppercase() && prev.is_uppercase() && next_lower);
            if hump {
                pieces.push(chars[start..i].iter().collect::<String>().to_lowercase());
                start = i;
            }
        }
        if start < chars.len() {
            pieces.push(chars[start..].iter().collect::<String>().to_lowercase());
        }
    }
    pieces
}

/// The fake's chat reply to `user`: `Summary: ` and the first
/// [`CHAT_REPLY_CHARS`] characters of its first line, trimmed.
pub fn fake_chat_reply(user: &str) -> String {
    let first_line = user.trim_start().lines().next().unwrap_or("").trim();
    let head: String = first_line.chars().take(CHAT_REPLY_CHARS).collect();
    format!("Summary: {}", head.trim_end())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

// ---------------------------------------------------------------------------
// Handlers.

async fn fallback_handler(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    shared.lock().requests += 1;
    let message = format!("Invalid URL ({} {})", req.method(), req.uri().path());
    with_common_headers(
        openai_error(
            StatusCode::NOT_FOUND,
            &message,
            "invalid_request_error",
            None,
            None,
        ),
        seq,
        0,
    )
}

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Embeddings,
    Chat,
}

async fn embeddings_handler(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(Api::Embeddings, shared, headers, body).await
}

async fn chat_handler(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(Api::Chat, shared, headers, body).await
}

/// What both endpoints do: count the request, apply the next fault, and
/// serve it when the fault does not answer in its place.
async fn handle(api: Api, shared: Arc<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let _in_flight = InFlight::enter(&shared);
    let started = Instant::now();
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let inputs = match api {
        Api::Embeddings => parsed.as_ref().map(|v| parse_inputs(v.get("input"))),
        Api::Chat => None,
    };
    let fault = {
        let mut state = shared.lock();
        state.requests += 1;
        match api {
            Api::Embeddings => {
                let size = match &inputs {
                    Some(Ok(inputs)) => inputs.len(),
                    _ => 0,
                };
                state.batch_sizes.push(size);
                state.last_request = parsed.clone();
            }
            Api::Chat => {
                state.chat_requests += 1;
                state.last_chat_request = parsed.clone();
            }
        }
        state.faults.pop_front().or_else(|| state.every.clone())
    };

    let mut served_fault = None;
    match fault {
        None => {}
        Some(OpenAiFault::DropConnection) => {
            // Unwinding out of the connection task makes hyper drop the
            // socket without writing a response; `resume_unwind` skips the
            // panic hook, so nothing is printed.
            std::panic::resume_unwind(Box::new("fake OpenAI: DropConnection fault"));
        }
        Some(OpenAiFault::Slow { delay_ms }) => {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        Some(fault @ OpenAiFault::ServerError { .. })
        | Some(fault @ OpenAiFault::Unavailable { .. })
        | Some(fault @ OpenAiFault::RateLimited { .. })
        | Some(fault @ OpenAiFault::RateLimitedMs { .. })
        | Some(fault @ OpenAiFault::Respond { .. }) => {
            let default_model = match api {
                Api::Embeddings => DEFAULT_MODEL,
                Api::Chat => DEFAULT_CHAT_MODEL,
            };
            let model = parsed
                .as_ref()
                .and_then(|v| v.get("model"))
                .and_then(Value::as_str)
                .unwrap_or(default_model);
            return with_common_headers(fault_response(&fault, model), seq, elapsed_ms(started));
        }
        Some(fault) => served_fault = Some(fault),
    }

    let response = match api {
        Api::Embeddings => serve(&shared, &headers, parsed.as_ref(), inputs, served_fault),
        Api::Chat => serve_chat(&shared, &headers, parsed.as_ref(), served_fault),
    };
    with_common_headers(response, seq, elapsed_ms(started))
}

/// The key, a JSON body and a model this fake serves (one of `models`):
/// the body and the model, or OpenAI's answer to what is wrong.
fn check_request<'a>(
    config: &FakeOpenAiBuilder,
    headers: &HeaderMap,
    body: Option<&'a Value>,
    models: &[String],
) -> Result<(&'a Value, &'a str), Box<Response>> {
    if let Some(rejection) = check_key(config, headers) {
        return Err(Box::new(rejection));
    }
    let Some(body) = body else {
        return Err(Box::new(invalid_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)",
            None,
        )));
    };
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return Err(Box::new(invalid_request(
            "you must provide a model parameter",
            None,
        )));
    };
    if !models.iter().any(|m| m == model) {
        return Err(Box::new(openai_error(
            StatusCode::NOT_FOUND,
            &format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
            None,
            Some("model_not_found"),
        )));
    }
    Ok((body, model))
}

/// A request's answer when no fault cut it short.
fn serve(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    body: Option<&Value>,
    inputs: Option<Result<Vec<String>, String>>,
    fault: Option<OpenAiFault>,
) -> Response {
    let config = &shared.config;
    let (body, model) = match check_request(config, headers, body, &config.models) {
        Ok(checked) => checked,
        Err(rejection) => return *rejection,
    };
    let inputs = match inputs {
        Some(Ok(inputs)) => inputs,
        Some(Err(message)) => return invalid_request(&message, Some("input")),
        // Only when the body is not JSON, answered above.
        None => return invalid_request("'$.input' is invalid.", Some("input")),
    };
    if let Some(max) = config.max_batch {
        if inputs.len() > max {
            return invalid_request(
                &format!(
                    "Too many inputs. The max number of inputs is {max}. We recommend sending smaller batches; this request had {}.",
                    inputs.len()
                ),
                Some("input"),
            );
        }
    }
    let dimensions = match body.get("dimensions") {
        None | Some(Value::Null) => config.dimensions,
        Some(value) => match value.as_u64() {
            Some(n) if n >= 1 && n as usize <= config.dimensions => n as usize,
            _ => {
                return invalid_request(
                    &format!(
                        "Invalid value for 'dimensions' = {value}. Must be between 1 and {} for {model}.",
                        config.dimensions
                    ),
                    Some("dimensions"),
                )
            }
        },
    };
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return invalid_request(
                &format!(
                    "Invalid value for 'encoding_format' = {other}. Supported values are: 'float' and 'base64'."
                ),
                Some("encoding_format"),
            )
        }
    };

    let vector_len = match &fault {
        Some(OpenAiFault::WrongDimensions { dimensions }) => *dimensions,
        _ => dimensions,
    };
    let mut data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = fake_embedding(text, dimensions);
            let mut vector: Vec<f32> = vector.into_iter().cycle().take(vector_len).collect();
            vector.resize(vector_len, 0.0);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    match fault {
        Some(OpenAiFault::MissingVectors { missing }) => {
            data.truncate(data.len().saturating_sub(missing))
        }
        Some(OpenAiFault::Reversed) => data.reverse(),
        _ => {}
    }
    let tokens: usize = inputs.iter().map(|t| word_pieces(t).len().max(1)).sum();

    let remaining = {
        let mut state = shared.lock();
        state.inputs_embedded += inputs.len() as u64;
        state.inputs.extend(inputs.iter().cloned());
        spend_request(&mut state)
    };
    served(
        &json!({
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }),
        model,
        remaining,
        tokens,
    )
}

/// A chat completion's answer when no fault cut it short: the reply is
/// [`fake_chat_reply`] of the last user message.
fn serve_chat(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    body: Option<&Value>,
    fault: Option<OpenAiFault>,
) -> Response {
    let config = &shared.config;
    let (body, model) = match check_request(config, headers, body, &config.chat_models) {
        Ok(checked) => checked,
        Err(rejection) => return *rejection,
    };
    let messages = match parse_messages(body.get("messages")) {
        Ok(messages) => messages,
        Err((message, param)) => return invalid_request(&message, Some(&param)),
    };
    if let Some(value) = body.get("temperature").filter(|v| !v.is_null()) {
        if !value.as_f64().is_some_and(|t| (0.0..=2.0).contains(&t)) {
            return invalid_request(
                &format!("Invalid 'temperature': expected a number between 0 and 2, but got {value} instead."),
                Some("temperature"),
            );
        }
    }
    for name in ["max_tokens", "max_completion_tokens"] {
        if let Some(value) = body.get(name).filter(|v| !v.is_null()) {
            if matches!(value.as_u64(), None | Some(0)) {
                return invalid_request(
                    &format!("Invalid '{name}': integer below minimum value. Expected a value >= 1, but got {value} instead."),
                    Some(name),
                );
            }
        }
    }

    let user = messages
        .iter()
        .rev()
        .find(|(role, _)| role == "user")
        .map(|(_, text)| text.as_str())
        .unwrap_or("");
    let (content, finish_reason) = match fault {
        Some(OpenAiFault::ChatReply {
            content,
            finish_reason,
        }) => (content, finish_reason),
        _ => (Some(fake_chat_reply(user)), "stop".to_string()),
    };
    let count = |text: &str| word_pieces(text).len().max(1);
    let prompt_tokens: usize = messages.iter().map(|(_, text)| count(text)).sum();
    let completion_tokens = content.as_deref().map_or(0, count);
    let tokens = prompt_tokens + completion_tokens;
    let (remaining, n) = {
        let mut state = shared.lock();
        (spend_request(&mut state), state.chat_requests)
    };
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    served(
        &json!({
            "id": format!("chatcmpl-{:024x}", fnv1a(&n.to_le_bytes())),
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": null},
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": tokens,
            },
            "system_fingerprint": "fp_fake",
        }),
        model,
        remaining,
        tokens,
    )
}

/// A 200 with `value`, the model and the rate-limit budget in its headers.
fn served(value: &Value, model: &str, remaining: u64, tokens: usize) -> Response {
    let mut response = json_response(StatusCode::OK, value);
    set_header(&mut response, "openai-model", model);
    set_header(&mut response, "openai-organization", "user-fake");
    set_rate_headers(&mut response, remaining, "20ms");
    set_header(
        &mut response,
        "x-ratelimit-remaining-tokens",
        &TOKENS_PER_MINUTE.saturating_sub(tokens as u64).to_string(),
    );
    response
}

/// The `(role, text)` of each chat message; text given as content parts is
/// joined. On error, OpenAI's message and the offending `param`.
fn parse_messages(messages: Option<&Value>) -> Result<Vec<(String, String)>, (String, String)> {
    const ROLES: [&str; 6] = [
        "system",
        "developer",
        "user",
        "assistant",
        "tool",
        "function",
    ];
    let items = match messages {
        None | Some(Value::Null) => {
            return Err((
                "Missing required parameter: 'messages'.".into(),
                "messages".into(),
            ))
        }
        Some(Value::Array(items)) if items.is_empty() => {
            return Err((
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.".into(),
                "messages".into(),
            ))
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err((
                format!("Invalid type for 'messages': expected an array, but got {other} instead."),
                "messages".into(),
            ))
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let role = item.get("role").and_then(Value::as_str).unwrap_or("");
        if !ROLES.contains(&role) {
            return Err((
                format!("Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."),
                format!("messages[{i}].role"),
            ));
        }
        let text = match item.get("content") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            None | Some(Value::Null) if role == "assistant" => String::new(),
            _ => {
                return Err((
                    format!("Invalid type for 'messages[{i}].content': expected one of a string or array of objects, but got {} instead.", item.get("content").unwrap_or(&Value::Null)),
                    format!("messages[{i}].content"),
                ))
            }
        };
        out.push((role.to_string(), text));
    }
    Ok(out)
}

/// The inputs of a request body: one string or an array of strings.
fn parse_inputs(input: Option<&Value>) -> Result<Vec<String>, String> {
    const INVALID: &str = "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.";
    let inputs = match input {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => {
            if items.iter().any(|i| !i.is_string()) {
                return Err(
                    "the fake OpenAI server takes inputs as strings only, not token ids".into(),
                );
            }
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect()
        }
        None => return Err("you must provide an input parameter".into()),
        Some(_) => return Err(INVALID.into()),
    };
    if inputs.iter().any(String::is_empty) {
        return Err(INVALID.into());
    }
    Ok(inputs)
}

fn check_key(config: &FakeOpenAiBuilder, headers: &HeaderMap) -> Option<Response> {
    let Some(expected) = &config.api_key else {
        return None;
    };
    let given = if config.azure_auth {
        headers
            .get("api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    } else {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
    };
    match given {
        Some(key) if key == expected => None,
        _ if config.azure_auth => Some(json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": {
                "code": "401",
                "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
            }}),
        )),
        None => Some(openai_error(
            StatusCode::UNAUTHORIZED,
            &format!("You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from {API_KEYS_URL}."),
            "invalid_request_error",
            None,
            None,
        )),
        Some(key) => Some(openai_error(
            StatusCode::UNAUTHORIZED,
            &format!(
                "Incorrect API key provided: {}. You can find your API key at {API_KEYS_URL}.",
                mask_key(key)
            ),
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        )),
    }
}

/// OpenAI shows a key's first 3 and last 4 characters.
fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

fn fault_response(fault: &OpenAiFault, model: &str) -> Response {
    match fault {
        OpenAiFault::ServerError { status } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            match status.as_u16() {
                502 | 504 => {
                    let reason = status.canonical_reason().unwrap_or("Error");
                    let mut response = Response::new(Body::from(format!(
                        "<html>\r\n<head><title>{} {reason}</title></head>\r\n<body>\r\n<center><h1>{} {reason}</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n",
                        status.as_u16(),
                        status.as_u16()
                    )));
                    *response.status_mut() = status;
                    set_header(&mut response, "content-type", "text/html");
                    response
                }
                503 => overloaded(),
                _ => openai_error(
                    status,
                    "The server had an error while processing your request. Sorry about that!",
                    "server_error",
                    None,
                    None,
                ),
            }
        }
        OpenAiFault::Unavailable { retry_after } => {
            let mut response = overloaded();
            set_header(&mut response, "retry-after", retry_after);
            response
        }
        OpenAiFault::RateLimited { retry_after_secs } => {
            let mut response = rate_limited(model, &format!("{retry_after_secs}s"));
            set_header(&mut response, "retry-after", &retry_after_secs.to_string());
            response
        }
        OpenAiFault::RateLimitedMs { retry_after_ms } => {
            let mut response = rate_limited(model, &format!("{retry_after_ms}ms"));
            set_header(&mut response, "retry-after-ms", &retry_after_ms.to_string());
            response
        }
        OpenAiFault::Respond {
            status,
            headers,
            body,
        } => {
            let mut response = Response::new(Body::from(body.clone()));
            *response.status_mut() =
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let content_type = if serde_json::from_str::<Value>(body).is_ok() {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            set_header(&mut response, "content-type", content_type);
            for (name, value) in headers {
                if let (Ok(name), Ok(value)) = (
                    axum::http::HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    response.headers_mut().insert(name, value);
                }
            }
            response
        }
        // Not answers of their own: handled before.
        OpenAiFault::Slow { .. }
        | OpenAiFault::DropConnection
        | OpenAiFault::WrongDimensions { .. }
        | OpenAiFault::MissingVectors { .. }
        | OpenAiFault::Reversed
        | OpenAiFault::ChatReply { .. } => openai_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "fake OpenAI: misplaced fault",
            "server_error",
            None,
            None,
        ),
    }
}

fn overloaded() -> Response {
    openai_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "The engine is currently overloaded, please try again later.",
        "server_error",
        None,
        None,
    )
}

fn rate_limited(model: &str, reset: &str) -> Response {
    let mut response = openai_error(
        StatusCode::TOO_MANY_REQUESTS,
        &format!(
            "Rate limit reached for {model} in organization org-fake on requests per min (RPM): Limit {REQUESTS_PER_MINUTE}, Used {REQUESTS_PER_MINUTE}, Requested 1. Please try again in {reset}. Visit {RATE_LIMITS_URL} to learn more."
        ),
        "requests",
        None,
        Some("rate_limit_exceeded"),
    );
    set_rate_headers(&mut response, 0, reset);
    set_header(
        &mut response,
        "x-ratelimit-remaining-tokens",
        &TOKENS_PER_MINUTE.to_string(),
    );
    response
}

/// One request off the per-minute budget; what remains.
fn spend_request(state: &mut Counters) -> u64 {
    let now = Instant::now();
    match state.window_start {
        Some(start) if now.duration_since(start) < Duration::from_secs(60) => {}
        _ => {
            state.window_start = Some(now);
            state.window_requests = 0;
        }
    }
    state.window_requests += 1;
    REQUESTS_PER_MINUTE.saturating_sub(state.window_requests)
}

fn set_rate_headers(response: &mut Response, remaining_requests: u64, reset_requests: &str) {
    set_header(
        response,
        "x-ratelimit-limit-requests",
        &REQUESTS_PER_MINUTE.to_string(),
    );
    set_header(
        response,
        "x-ratelimit-remaining-requests",
        &remaining_requests.to_string(),
    );
    set_header(response, "x-ratelimit-reset-requests", reset_requests);
    set_header(
        response,
        "x-ratelimit-limit-tokens",
        &TOKENS_PER_MINUTE.to_string(),
    );
    set_header(response, "x-ratelimit-reset-tokens", "0s");
}

fn with_common_headers(mut response: Response, seq: u64, processing_ms: u64) -> Response {
    set_header(
        &mut response,
        "x-request-id",
        &format!("req_{:032x}", fnv1a(&seq.to_le_bytes())),
    );
    set_header(
        &mut response,
        "openai-processing-ms",
        &processing_ms.to_string(),
    );
    set_header(&mut response, "openai-version", "2020-10-01");
    response
}

fn elapsed_ms(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

fn invalid_request(message: &str, param: Option<&str>) -> Response {
    openai_error(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        param,
        None,
    )
}

fn openai_error(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    json_response(
        status,
        &json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
    )
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).expect("serialize JSON");
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    set_header(&mut response, "content-type", "application/json");
    response
}

fn set_header(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
    }

    async fn post(fake: &FakeOpenAi, body: Value) -> (u16, HeaderMap, Value) {
        let response = client()
            .post(format!("{}/embeddings", fake.base_url()))
            .json(&body)
            .send()
            .await
            .expect("send");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, value)
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn pieces_split_identifiers() {
        assert_eq!(
            word_pieces("parse_config parseHTTPHeader v2Value"),
            ["parse", "config", "parse", "http", "header", "v2", "value"]
        );
        assert!(word_pieces("  --  ").is_empty());
    }

    #[test]
    fn vectors_are_unit_length_deterministic_and_closer_for_shared_words() {
        let a = fake_embedding("fn parse_config(path) reads the config file", 384);
        let b = fake_embedding("parseConfig: read a config file from a path", 384);
        let c = fake_embedding("the quick brown fox jumps over the lazy dog", 384);
        assert_eq!(a.len(), 384);
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5);
        assert_eq!(
            a,
            fake_embedding("fn parse_config(path) reads the config file", 384)
        );
        assert!(
            cosine(&a, &b) > cosine(&a, &c) + 0.2,
            "{} vs {}",
            cosine(&a, &b),
            cosine(&a, &c)
        );
        assert_eq!(fake_embedding("!!!", 8).len(), 8);
    }

    #[tokio::test]
    async fn speaks_the_openai_shapes() {
        let fake = FakeOpenAi::builder().with_max_batch(2).start().await;
        let (status, headers, body) = post(
            &fake,
            json!({"model": DEFAULT_MODEL, "input": ["alpha beta", "gamma"], "encoding_format": "float"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["object"], "list");
        assert_eq!(body["model"], DEFAULT_MODEL);
        assert_eq!(body["data"][1]["index"], 1);
        assert_eq!(body["data"][1]["object"], "embedding");
        assert_eq!(
            body["data"][0]["embedding"].as_array().map(Vec::len),
            Some(384)
        );
        assert_eq!(body["usage"]["prompt_tokens"], 3);
        for name in [
            "x-request-id",
            "openai-model",
            "openai-processing-ms",
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ] {
            assert!(headers.contains_key(name), "{name} missing");
        }

        // One string, base64, fewer dimensions.
        let (status, _, body) = post(
            &fake,
            json!({"model": DEFAULT_MODEL, "input": "alpha", "encoding_format": "base64", "dimensions": 16}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body["data"][0]["embedding"].as_str().expect("base64"))
            .expect("decode");
        let vector: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(vector, fake_embedding("alpha", 16));

        // Over the batch limit, an empty input, an unknown model, a wrong path.
        let (status, _, body) = post(
            &fake,
            json!({"model": DEFAULT_MODEL, "input": ["a", "b", "c"]}),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["param"], "input");
        let (status, _, _) = post(&fake, json!({"model": DEFAULT_MODEL, "input": [""]})).await;
        assert_eq!(status, 400);
        let (status, _, body) = post(&fake, json!({"model": "nope", "input": "a"})).await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], "model_not_found");
        let response = client()
            .post(format!("{}/v2/embeddings", fake.base_url()))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status().as_u16(), 404);

        assert_eq!(fake.requests(), 6);
        assert_eq!(fake.batch_sizes(), [2, 1, 3, 0, 1]);
        assert_eq!(fake.inputs(), ["alpha beta", "gamma", "alpha"]);
        assert_eq!(fake.inputs_embedded(), 3);
        assert_eq!(fake.max_concurrent(), 1);
    }

    #[test]
    fn chat_replies_repeat_the_first_line() {
        assert_eq!(
            fake_chat_reply("  Module `config`: reads settings\nfn load()"),
            "Summary: Module `config`: reads settings"
        );
        let long = "é".repeat(100);
        assert_eq!(
            fake_chat_reply(&long),
            format!("Summary: {}", "é".repeat(CHAT_REPLY_CHARS))
        );
        assert_eq!(fake_chat_reply(""), "Summary: ");
    }

    #[tokio::test]
    async fn speaks_the_chat_completions_shapes() {
        let fake = FakeOpenAi::builder()
            .with_api_key("sk-abcdefghijklmnop")
            .start()
            .await;
        let send = |body: Value, key: Option<&str>| {
            let mut request = client()
                .post(format!("{}/chat/completions", fake.base_url()))
                .json(&body);
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            async move {
                let response = request.send().await.expect("send");
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let body: Value = response.json().await.expect("json");
                (status, headers, body)
            }
        };
        let key = Some("sk-abcdefghijklmnop");
        let request = json!({
            "model": DEFAULT_CHAT_MODEL,
            "messages": [
                {"role": "system", "content": "Summarise."},
                {"role": "user", "content": "crate `embed`: vectors\nmore"},
            ],
            "max_tokens": 50,
            "temperature": 0.0,
        });
        let (status, headers, body) = send(request.clone(), key).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["object"], "chat.completion");
        assert!(body["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-")));
        assert!(body["created"].as_u64().is_some_and(|t| t > 1_600_000_000));
        assert_eq!(body["model"], DEFAULT_CHAT_MODEL);
        let choice = &body["choices"][0];
        assert_eq!(choice["index"], 0);
        assert_eq!(choice["message"]["role"], "assistant");
        assert_eq!(
            choice["message"]["content"],
            "Summary: crate `embed`: vectors"
        );
        assert_eq!(choice["finish_reason"], "stop");
        // "summarise" + "crate embed vectors more"; "summary crate embed vectors".
        assert_eq!(body["usage"]["prompt_tokens"], 5);
        assert_eq!(body["usage"]["completion_tokens"], 4);
        assert_eq!(body["usage"]["total_tokens"], 9);
        assert_eq!(headers["openai-model"], DEFAULT_CHAT_MODEL);
        assert!(headers.contains_key("x-request-id"));
        assert_eq!(fake.last_chat_request(), Some(request.clone()));

        // The key, the model, the messages, a fault's reply.
        let (status, _, body) = send(request.clone(), None).await;
        assert_eq!(status, 401);
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("You didn't provide an API key")));
        let (status, _, body) = send(request.clone(), Some("sk-wrongwrongwrong1234")).await;
        assert_eq!(status, 401);
        assert_eq!(body["error"]["code"], "invalid_api_key");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(body["error"].get("param").is_some());
        let (status, _, body) = send(
            json!({"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "x"}]}),
            key,
        )
        .await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], "model_not_found");
        let (status, _, body) =
            send(json!({"model": DEFAULT_CHAT_MODEL, "messages": []}), key).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["param"], "messages");
        let (status, _, body) = send(
            json!({"model": DEFAULT_CHAT_MODEL, "messages": [{"role": "robot", "content": "x"}]}),
            key,
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["param"], "messages[0].role");
        fake.inject(OpenAiFault::ChatReply {
            content: None,
            finish_reason: "content_filter".into(),
        });
        let (status, _, body) = send(request.clone(), key).await;
        assert_eq!(status, 200);
        assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
        fake.inject(OpenAiFault::RateLimited {
            retry_after_secs: 3,
        });
        let (status, headers, body) = send(request.clone(), key).await;
        assert_eq!(status, 429);
        assert_eq!(headers["retry-after"], "3");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(DEFAULT_CHAT_MODEL)));

        assert_eq!(fake.chat_requests(), 8);
        assert_eq!(fake.requests(), 8);
        assert_eq!(fake.batch_sizes(), Vec::<usize>::new());
        assert_eq!(fake.last_request(), None);
        fake.reset_counts();
        assert_eq!(fake.chat_requests(), 0);
        assert_eq!(fake.last_chat_request(), None);
    }

    #[tokio::test]
    async fn checks_the_key_and_applies_faults_in_order() {
        let fake = FakeOpenAi::builder()
            .with_api_key("sk-abcdefghijklmnop")
            .start()
            .await;
        let request = json!({"model": DEFAULT_MODEL, "input": ["a"]});
        let (status, _, body) = post(&fake, request.clone()).await;
        assert_eq!(status, 401);
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("You didn't provide an API key")));
        let wrong = client()
            .post(format!("{}/embeddings", fake.base_url()))
            .bearer_auth("sk-wrongwrongwrong1234")
            .json(&request)
            .send()
            .await
            .expect("send");
        assert_eq!(wrong.status().as_u16(), 401);
        let body: Value = wrong.json().await.expect("json");
        assert_eq!(body["error"]["code"], "invalid_api_key");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains("sk-***************1234"), "{message}");

        fake.inject(OpenAiFault::RateLimited {
            retry_after_secs: 7,
        });
        fake.inject_times(OpenAiFault::ServerError { status: 502 }, 2);
        let send = || {
            client()
                .post(format!("{}/embeddings", fake.base_url()))
                .bearer_auth("sk-abcdefghijklmnop")
                .json(&request)
                .send()
        };
        let limited = send().await.expect("send");
        assert_eq!(limited.status().as_u16(), 429);
        assert_eq!(limited.headers()["retry-after"], "7");
        assert_eq!(limited.headers()["x-ratelimit-remaining-requests"], "0");
        let body: Value = limited.json().await.expect("json");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        for _ in 0..2 {
            assert_eq!(send().await.expect("send").status().as_u16(), 502);
        }
        fake.set_fault_every_request(Some(OpenAiFault::DropConnection));
        assert!(send().await.is_err());
        fake.clear_faults();
        assert_eq!(send().await.expect("send").status().as_u16(), 200);
        assert_eq!(fake.pending_faults(), 0);
        assert_eq!(fake.inputs_embedded(), 1);
    }
}
