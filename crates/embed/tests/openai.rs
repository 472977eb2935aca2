//! The OpenAI-compatible provider against the fake OpenAI server: batching,
//! order, the concurrency cap, and how every failure is classified.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_lowercase, fatal, retryable};

use projsync_embed::openai::{ApiKeyHeader, OpenAiEmbedder, OpenAiOptions};
use projsync_embed::{EmbedError, Embedder, TokenCounter};
use projsync_test_support::fake_openai::{fake_embedding, DEFAULT_MODEL};
use projsync_test_support::{FakeOpenAi, OpenAiFault};

const KEY: &str = "sk-test-0123456789abcdefghij";

/// Fast settings: the fake answers in microseconds.
fn options(fake: &FakeOpenAi) -> OpenAiOptions {
    let mut opts = OpenAiOptions::new(DEFAULT_MODEL, 384);
    opts.base_url = fake.base_url();
    opts.timeout = Duration::from_secs(5);
    opts.retry_min_delay = Duration::from_millis(5);
    opts.retry_max_delay = Duration::from_millis(20);
    opts.max_retry_wait = Duration::from_secs(2);
    opts
}

fn embedder(opts: OpenAiOptions) -> OpenAiEmbedder {
    OpenAiEmbedder::new(opts).expect("embedder")
}

fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("chunk {i}: fn parse_config_{i}() reads the ConfigFile"))
        .collect()
}

fn expected(inputs: &[String], dimensions: usize) -> Vec<Vec<f32>> {
    inputs
        .iter()
        .map(|t| fake_embedding(t, dimensions))
        .collect()
}

#[tokio::test]
async fn batches_keep_order_and_respect_the_concurrency_cap() {
    let fake = FakeOpenAi::start().await;
    // Slow enough for batches to overlap if the cap let them.
    fake.set_fault_every_request(Some(OpenAiFault::Slow { delay_ms: 40 }));
    let mut opts = options(&fake);
    opts.max_concurrency = 2;
    let embedder = embedder(opts);

    let inputs = texts(150);
    let vectors = embedder.embed(&inputs).await.expect("embed");
    assert_eq!(vectors, expected(&inputs, 384));
    let mut sizes = fake.batch_sizes();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![22, 64, 64]);
    assert_eq!(fake.requests(), 3);
    assert_eq!(fake.inputs_embedded(), 150);
    let mut seen = fake.inputs();
    seen.sort();
    let mut all = inputs.clone();
    all.sort();
    assert_eq!(seen, all);
    assert_eq!(fake.max_concurrent(), 2);
    let body = fake.last_request().expect("a request");
    assert_eq!(body["model"], DEFAULT_MODEL);
    assert_eq!(body["encoding_format"], "float");
    assert!(body.get("dimensions").is_none(), "{body}");

    // The cap holds across concurrent calls of one embedder.
    fake.reset_counts();
    let embedder = Arc::new(embedder);
    let (a, b, c) = (texts(100), texts(70), texts(5));
    let (ra, rb, rc) = tokio::join!(embedder.embed(&a), embedder.embed(&b), embedder.embed(&c));
    assert_eq!(ra.expect("a"), expected(&a, 384));
    assert_eq!(rb.expect("b"), expected(&b, 384));
    assert_eq!(rc.expect("c"), expected(&c, 384));
    assert_eq!(fake.requests(), 5);
    assert_eq!(fake.max_concurrent(), 2);
}

#[tokio::test]
async fn answers_are_put_back_in_input_order_by_index() {
    let fake = FakeOpenAi::start().await;
    fake.inject(OpenAiFault::Reversed);
    let embedder = embedder(options(&fake));
    let inputs = texts(10);
    assert_eq!(
        embedder.embed(&inputs).await.expect("embed"),
        expected(&inputs, 384)
    );
}

#[tokio::test]
async fn no_inputs_no_request() {
    let fake = FakeOpenAi::start().await;
    let embedder = embedder(options(&fake));
    assert_eq!(
        embedder.embed(&[]).await.expect("embed"),
        Vec::<Vec<f32>>::new()
    );
    assert_eq!(fake.requests(), 0);
}

#[tokio::test]
async fn server_errors_and_dropped_connections_are_retried() {
    let fake = FakeOpenAi::start().await;
    fake.inject(OpenAiFault::ServerError { status: 500 });
    fake.inject(OpenAiFault::ServerError { status: 502 });
    fake.inject(OpenAiFault::DropConnection);
    let embedder = embedder(options(&fake));
    let inputs = texts(3);
    assert_eq!(
        embedder.embed(&inputs).await.expect("embed"),
        expected(&inputs, 384)
    );
    assert_eq!(fake.requests(), 4);
    assert_eq!(fake.inputs_embedded(), 3);
}

#[tokio::test]
async fn server_errors_past_the_retries_are_retryable() {
    let fake = FakeOpenAi::start().await;
    fake.set_fault_every_request(Some(OpenAiFault::ServerError { status: 500 }));
    let mut opts = options(&fake);
    opts.max_retries = 2;
    let embedder = embedder(opts);
    let (message, retry_after) = retryable(embedder.embed(&texts(2)).await);
    assert!(message.contains("500"), "{message}");
    assert!(message.contains("The server had an error"), "{message}");
    assert_eq!(retry_after, None);
    assert_eq!(fake.requests(), 3);

    fake.set_fault_every_request(Some(OpenAiFault::DropConnection));
    let (message, _) = retryable(embedder.embed(&texts(2)).await);
    assert!(message.contains("embeddings request"), "{message}");
}

#[tokio::test]
async fn short_retry_after_is_slept_through() {
    let fake = FakeOpenAi::start().await;
    let embedder = embedder(options(&fake));
    let inputs = texts(4);

    fake.inject(OpenAiFault::RateLimitedMs {
        retry_after_ms: 150,
    });
    let started = Instant::now();
    assert_eq!(
        embedder.embed(&inputs).await.expect("embed"),
        expected(&inputs, 384)
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(fake.requests(), 2);

    fake.inject(OpenAiFault::RateLimited {
        retry_after_secs: 1,
    });
    let started = Instant::now();
    assert_eq!(
        embedder.embed(&inputs).await.expect("embed"),
        expected(&inputs, 384)
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(fake.requests(), 4);

    // 503 honours it too, in seconds or as a date.
    fake.inject(OpenAiFault::Unavailable {
        retry_after: "0".into(),
    });
    fake.inject(OpenAiFault::ServerError { status: 503 });
    assert_eq!(
        embedder.embed(&inputs).await.expect("embed"),
        expected(&inputs, 384)
    );
    assert_eq!(fake.requests(), 7);
}

#[tokio::test]
async fn long_retry_after_is_handed_back_to_the_caller() {
    let fake = FakeOpenAi::start().await;
    let embedder = embedder(options(&fake));

    fake.inject(OpenAiFault::RateLimited {
        retry_after_secs: 60,
    });
    let started = Instant::now();
    let (message, retry_after) = retryable(embedder.embed(&texts(3)).await);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(retry_after, Some(Duration::from_secs(60)));
    assert!(message.contains("429"), "{message}");
    assert!(message.contains("Rate limit reached"), "{message}");
    assert_eq!(fake.requests(), 1, "not retried in the call");

    let date = httpdate_in(Duration::from_secs(120));
    fake.inject(OpenAiFault::Unavailable { retry_after: date });
    let (_, retry_after) = retryable(embedder.embed(&texts(3)).await);
    let wait = retry_after.expect("retry_after from the date");
    assert!(
        wait > Duration::from_secs(110) && wait <= Duration::from_secs(120),
        "{wait:?}"
    );
    assert_eq!(fake.requests(), 2);

    // The request budget's reset when a 429 carries no Retry-After.
    fake.inject(OpenAiFault::Respond {
        status: 429,
        headers: vec![
            ("x-ratelimit-remaining-requests".into(), "0".into()),
            ("x-ratelimit-reset-requests".into(), "6m0s".into()),
        ],
        body: r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#.into(),
    });
    let (_, retry_after) = retryable(embedder.embed(&texts(3)).await);
    assert_eq!(retry_after, Some(Duration::from_secs(360)));
}

fn httpdate_in(wait: Duration) -> String {
    let at = chrono::Utc::now() + chrono::Duration::from_std(wait).expect("duration");
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[tokio::test]
async fn a_timeout_is_retryable() {
    let fake = FakeOpenAi::start().await;
    fake.set_fault_every_request(Some(OpenAiFault::Slow { delay_ms: 2_000 }));
    let mut opts = options(&fake);
    opts.timeout = Duration::from_millis(150);
    opts.max_retries = 1;
    let embedder = embedder(opts);
    let started = Instant::now();
    let (message, retry_after) = retryable(embedder.embed(&texts(2)).await);
    assert!(started.elapsed() < Duration::from_millis(1_500));
    assert!(message.contains("timed out"), "{message}");
    assert!(message.contains("embeddings.timeout"), "{message}");
    assert_eq!(retry_after, None);
    assert_eq!(fake.requests(), 2);
}

#[tokio::test]
async fn an_unreachable_server_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let mut opts = OpenAiOptions::new("m", 8);
    opts.base_url = format!("http://127.0.0.1:{port}/v1");
    opts.max_retries = 1;
    opts.retry_min_delay = Duration::from_millis(5);
    let (message, _) = retryable(embedder(opts).embed(&texts(1)).await);
    assert!(message.contains("cannot connect"), "{message}");
    assert!(message.contains("embeddings.base_url"), "{message}");
}

#[tokio::test]
async fn a_bad_key_is_fatal_and_never_shown() {
    let fake = FakeOpenAi::builder().with_api_key(KEY).start().await;
    let wrong = "sk-wrong-9876543210zyxwvutsrq";

    let mut opts = options(&fake);
    opts.api_key = Some(wrong.into());
    let message = fatal(embedder(opts).embed(&texts(2)).await);
    assert!(message.contains("Incorrect API key provided"), "{message}");
    assert!(message.contains("embeddings.credentials_ref"), "{message}");
    assert!(message.contains("401"), "{message}");
    assert!(!message.contains(wrong), "{message}");
    assert_eq!(fake.requests(), 1, "not retried");

    let message = fatal(embedder(options(&fake)).embed(&texts(2)).await);
    assert!(message.contains("didn't provide an API key"), "{message}");

    let mut opts = options(&fake);
    opts.api_key = Some(KEY.into());
    let inputs = texts(2);
    assert_eq!(
        embedder(opts).embed(&inputs).await.expect("embed"),
        expected(&inputs, 384)
    );

    // A provider that echoes the key back.
    fake.inject(OpenAiFault::Respond {
        status: 403,
        headers: vec![],
        body: format!(r#"{{"error":{{"message":"key {wrong} is disabled"}}}}"#),
    });
    let mut opts = options(&fake);
    opts.api_key = Some(wrong.into());
    let message = fatal(embedder(opts.clone()).embed(&texts(1)).await);
    assert!(!message.contains(wrong), "{message}");
    assert!(message.contains("<redacted>"), "{message}");
    assert!(!format!("{opts:?}").contains(wrong));
}

#[tokio::test]
async fn azure_takes_the_key_in_api_key() {
    let fake = FakeOpenAi::builder()
        .with_api_key(KEY)
        .with_azure_auth()
        .start()
        .await;
    let mut opts = options(&fake);
    opts.api_key = Some(KEY.into());
    opts.api_key_header = ApiKeyHeader::ApiKey;
    let inputs = texts(2);
    assert_eq!(
        embedder(opts.clone()).embed(&inputs).await.expect("embed"),
        expected(&inputs, 384)
    );

    opts.api_key_header = ApiKeyHeader::Authorization;
    let message = fatal(embedder(opts).embed(&inputs).await);
    assert!(message.contains("Access denied"), "{message}");
    assert_eq!("api-key".parse::<ApiKeyHeader>(), Ok(ApiKeyHeader::ApiKey));
    assert!("x-key".parse::<ApiKeyHeader>().is_err());
}

#[tokio::test]
async fn an_unknown_model_is_fatal_and_named() {
    let fake = FakeOpenAi::start().await;
    let mut opts = options(&fake);
    opts.model = "text-embedding-9-huge".into();
    let message = fatal(embedder(opts).embed(&texts(2)).await);
    assert!(message.contains("`text-embedding-9-huge`"), "{message}");
    assert!(message.contains("does not exist"), "{message}");
    assert!(message.contains("embeddings.model"), "{message}");
    assert_eq!(fake.requests(), 1);

    // Ollama's dialect.
    fake.inject(OpenAiFault::Respond {
        status: 404,
        headers: vec![],
        body: r#"{"error":"model \"nomic-embed-text\" not found, try pulling it first"}"#.into(),
    });
    let message = fatal(embedder(options(&fake)).embed(&texts(1)).await);
    assert!(message.contains("try pulling it first"), "{message}");
    assert!(message.contains("does not know model"), "{message}");

    // A wrong path, not a wrong model.
    fake.inject(OpenAiFault::Respond {
        status: 404,
        headers: vec![],
        body: "404 page not found".into(),
    });
    let message = fatal(embedder(options(&fake)).embed(&texts(1)).await);
    assert!(message.contains("embeddings.base_url"), "{message}");
    assert!(message.contains(DEFAULT_MODEL), "{message}");
}

#[tokio::test]
async fn vectors_of_the_wrong_length_are_fatal() {
    let fake = FakeOpenAi::start().await;
    fake.inject(OpenAiFault::WrongDimensions { dimensions: 256 });
    let message = fatal(embedder(options(&fake)).embed(&texts(3)).await);
    assert!(
        message.contains("the model returned 256 dimensions but embeddings.dimensions is 384"),
        "{message}"
    );
    assert_eq!(fake.requests(), 1, "not retried");

    // A model whose native length differs from the configured one.
    let fake = FakeOpenAi::builder().with_dimensions(768).start().await;
    let message = fatal(embedder(options(&fake)).embed(&texts(3)).await);
    assert!(message.contains("returned 768 dimensions"), "{message}");
}

#[tokio::test]
async fn dimensions_are_sent_when_asked() {
    let fake = FakeOpenAi::builder().with_dimensions(1536).start().await;
    let mut opts = options(&fake);
    opts.dimensions = 256;
    opts.send_dimensions = true;
    let inputs = texts(3);
    assert_eq!(
        embedder(opts).embed(&inputs).await.expect("embed"),
        expected(&inputs, 256)
    );
    assert_eq!(fake.last_request().expect("request")["dimensions"], 256);
}

#[tokio::test]
async fn fewer_vectors_than_inputs_is_fatal() {
    let fake = FakeOpenAi::start().await;
    fake.inject(OpenAiFault::MissingVectors { missing: 1 });
    let message = fatal(embedder(options(&fake)).embed(&texts(5)).await);
    assert!(
        message.contains("returned 4 embeddings for 5 inputs"),
        "{message}"
    );
}

#[tokio::test]
async fn other_client_errors_are_fatal_with_the_providers_message() {
    let fake = FakeOpenAi::builder().with_max_batch(32).start().await;
    let message = fatal(embedder(options(&fake)).embed(&texts(40)).await);
    assert!(message.contains("400"), "{message}");
    assert!(message.contains("Too many inputs"), "{message}");
    assert!(message.contains("embeddings.batch_size"), "{message}");

    // text-embeddings-inference's dialect.
    fake.inject(OpenAiFault::Respond {
        status: 422,
        headers: vec![],
        body: r#"{"error":"Input validation error: inputs must have less than 512 tokens","error_type":"Validation"}"#.into(),
    });
    let message = fatal(embedder(options(&fake)).embed(&texts(1)).await);
    assert!(
        message.contains("inputs must have less than 512 tokens"),
        "{message}"
    );

    // A 200 that is not an embeddings list.
    fake.inject(OpenAiFault::Respond {
        status: 200,
        headers: vec![],
        body: "<html>sign in</html>".into(),
    });
    let message = fatal(embedder(options(&fake)).embed(&texts(1)).await);
    assert!(
        message.contains("not an OpenAI embeddings list"),
        "{message}"
    );
}

#[tokio::test]
async fn bad_options_are_fatal_up_front() {
    let fake = FakeOpenAi::start().await;
    let check = |edit: &dyn Fn(&mut OpenAiOptions), needle: &str| {
        let mut opts = options(&fake);
        edit(&mut opts);
        match OpenAiEmbedder::new(opts) {
            Err(EmbedError::Fatal(message)) => {
                assert_lowercase(&message);
                assert!(message.contains(needle), "{message}");
            }
            other => panic!("expected a fatal error, got {other:?}"),
        }
    };
    check(
        &|o| o.base_url = "api.openai.com/v1".into(),
        "embeddings.base_url",
    );
    check(&|o| o.dimensions = 0, "embeddings.dimensions");
    check(&|o| o.batch_size = 0, "embeddings.batch_size");
    check(&|o| o.max_concurrency = 0, "embeddings.max_concurrency");
    check(&|o| o.model = " ".into(), "embeddings.model");
    check(
        &|o| o.tokenizer_path = Some("/nonexistent/tokenizer.json".into()),
        "embeddings.tokenizer_path",
    );
}

#[tokio::test]
async fn without_a_tokenizer_a_token_is_three_bytes() {
    let fake = FakeOpenAi::start().await;
    let estimate = embedder(options(&fake));
    assert_eq!(estimate.count_tokens(""), 0);
    assert_eq!(estimate.count_tokens("abc"), 1);
    assert_eq!(estimate.count_tokens("abcd"), 2);
    assert_eq!(estimate.count_tokens("héllo"), 2); // 6 bytes

    let (text, cut) = estimate.truncate("abcdef", 2);
    assert_eq!((text.as_ref(), cut), ("abcdef", false));
    let (text, cut) = estimate.truncate("abcdefg", 2);
    assert_eq!((text.as_ref(), cut), ("abcdef", true));
    // "aé" is 3 bytes, "aéé" 5: a cut at 3 bytes lands after the first é.
    let (text, cut) = estimate.truncate("aéé", 1);
    assert_eq!((text.as_ref(), cut), ("aé", true));
    // A cut inside a 4-byte char backs off to the boundary before it.
    let (text, cut) = estimate.truncate("ab🦀", 1);
    assert_eq!((text.as_ref(), cut), ("ab", true));
    let (text, cut) = estimate.truncate("abc", 0);
    assert_eq!((text.as_ref(), cut), ("", true));
}

#[tokio::test]
async fn the_embedder_counts_with_the_estimate_or_the_tokenizer() {
    let fake = FakeOpenAi::start().await;
    let embedder = embedder(options(&fake));
    assert_eq!(embedder.model(), DEFAULT_MODEL);
    assert_eq!(embedder.dimensions(), 384);
    assert_eq!(embedder.max_tokens(), 8191);
    assert_eq!(embedder.count_tokens("hello world"), 4);
    assert_eq!(embedder.truncate("hello world", 2).0, "hello ");

    // A word-level tokenizer: one token per known word.
    let path = std::env::temp_dir().join(format!(
        "projsync-openai-test-{}-tokenizer.json",
        std::process::id()
    ));
    std::fs::write(
        &path,
        r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
            "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,
            "decoder":null,"model":{"type":"WordLevel","vocab":{"hello":0,"world":1,"[UNK]":2},
            "unk_token":"[UNK]"}}"#,
    )
    .expect("write tokenizer");
    let mut opts = options(&fake);
    opts.tokenizer_path = Some(path.clone());
    let result = OpenAiEmbedder::new(opts);
    std::fs::remove_file(&path).ok();
    let embedder = result.expect("embedder with a tokenizer");
    assert_eq!(embedder.count_tokens("hello world hello"), 3);
    let (text, cut) = embedder.truncate("hello world hello", 2);
    assert!(cut);
    assert_eq!(text.trim_end(), "hello world");
}
