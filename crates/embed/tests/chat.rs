//! The chat completions client against the fake OpenAI server: the round
//! trip, the key, and how every failure is classified.

mod common;

use std::time::{Duration, Instant};

use common::{fatal, retryable};
use projsync_embed::chat::{ChatClient, ChatOptions};
use projsync_test_support::fake_openai::{fake_chat_reply, DEFAULT_CHAT_MODEL};
use projsync_test_support::{FakeOpenAi, OpenAiFault};
use serde_json::json;

const KEY: &str = "sk-test-0123456789abcdefghij";
const SYSTEM: &str = "Summarise the module in one sentence.";
const USER: &str = "Module `projsync_embed::chat`: a chat completions client\nfn complete()";

/// Fast settings: the fake answers in microseconds.
fn options(fake: &FakeOpenAi) -> ChatOptions {
    let mut opts = ChatOptions::new(DEFAULT_CHAT_MODEL);
    opts.base_url = fake.base_url();
    opts.timeout = Duration::from_secs(5);
    opts.retry.min_delay = Duration::from_millis(5);
    opts.retry.max_delay = Duration::from_millis(20);
    opts.retry.max_wait = Duration::from_secs(2);
    opts
}

fn client(opts: ChatOptions) -> ChatClient {
    ChatClient::new(opts).expect("chat client")
}

#[tokio::test]
async fn a_completion_round_trip() {
    let fake = FakeOpenAi::start().await;
    let mut opts = options(&fake);
    opts.max_tokens = 120;
    opts.temperature = 0.2;
    let chat = client(opts);
    assert_eq!(
        chat.endpoint().as_str(),
        format!("{}/chat/completions", fake.base_url())
    );

    let reply = chat.complete(SYSTEM, USER).await.expect("complete");
    assert_eq!(reply, fake_chat_reply(USER));
    assert_eq!(
        reply,
        "Summary: Module `projsync_embed::chat`: a chat completions client"
    );
    assert_eq!(fake.chat_requests(), 1);
    assert_eq!(fake.requests(), 1);
    let body = fake.last_chat_request().expect("a chat request");
    assert_eq!(body["model"], DEFAULT_CHAT_MODEL);
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": USER},
        ])
    );
    assert_eq!(body["max_tokens"], 120);
    assert!((body["temperature"].as_f64().expect("temperature") - 0.2).abs() < 1e-6);
    assert_eq!(fake.last_request(), None, "no embeddings request");

    // The reply comes back trimmed; a blank system message is left out.
    fake.inject(OpenAiFault::ChatReply {
        content: Some("\n  A client for chat completions.  \n".into()),
        finish_reason: "stop".into(),
    });
    assert_eq!(
        chat.complete(" ", "x").await.expect("complete"),
        "A client for chat completions."
    );
    let body = fake.last_chat_request().expect("a chat request");
    assert_eq!(body["messages"], json!([{"role": "user", "content": "x"}]));

    // A reply cut at max_tokens is still a reply.
    fake.inject(OpenAiFault::ChatReply {
        content: Some("A client for".into()),
        finish_reason: "length".into(),
    });
    assert_eq!(
        chat.complete(SYSTEM, USER).await.expect("cut"),
        "A client for"
    );
}

#[tokio::test]
async fn the_key_is_sent_and_a_bad_one_is_fatal_and_never_shown() {
    let fake = FakeOpenAi::builder().with_api_key(KEY).start().await;
    let wrong = "sk-wrong-9876543210zyxwvutsrq";

    let mut opts = options(&fake);
    opts.api_key = Some(KEY.into());
    assert_eq!(
        client(opts).complete(SYSTEM, USER).await.expect("complete"),
        fake_chat_reply(USER)
    );

    let mut opts = options(&fake);
    opts.api_key = Some(wrong.into());
    let message = fatal(client(opts.clone()).complete(SYSTEM, USER).await);
    assert!(message.contains("401"), "{message}");
    assert!(message.contains("Incorrect API key provided"), "{message}");
    assert!(message.contains("docs.llm.credentials_ref"), "{message}");
    assert!(!message.contains(wrong), "{message}");
    assert!(!format!("{opts:?}").contains(wrong));
    assert_eq!(fake.chat_requests(), 2, "not retried");

    let message = fatal(client(options(&fake)).complete(SYSTEM, USER).await);
    assert!(message.contains("didn't provide an API key"), "{message}");

    // A proxy that echoes the key back, in a dialect of its own.
    fake.inject(OpenAiFault::Respond {
        status: 401,
        headers: vec![],
        body: format!(r#"{{"detail":"token {wrong} was revoked"}}"#),
    });
    let message = fatal(client(opts).complete(SYSTEM, USER).await);
    assert!(!message.contains(wrong), "{message}");
    assert!(message.contains("<redacted>"), "{message}");
}

#[tokio::test]
async fn an_unknown_model_is_fatal_and_named() {
    let fake = FakeOpenAi::start().await;
    let mut opts = options(&fake);
    opts.model = "gpt-9-imaginary".into();
    let message = fatal(client(opts).complete(SYSTEM, USER).await);
    assert!(message.contains("`gpt-9-imaginary`"), "{message}");
    assert!(message.contains("does not know model"), "{message}");
    assert!(message.contains("does not exist"), "{message}");
    assert!(message.contains("docs.llm.model"), "{message}");
    assert_eq!(fake.chat_requests(), 1, "not retried");

    // A wrong path, not a wrong model.
    fake.inject(OpenAiFault::Respond {
        status: 404,
        headers: vec![],
        body: "404 page not found".into(),
    });
    let message = fatal(client(options(&fake)).complete(SYSTEM, USER).await);
    assert!(message.contains("docs.llm.base_url"), "{message}");
}

#[tokio::test]
async fn a_rate_limit_is_waited_out_then_the_request_succeeds() {
    let fake = FakeOpenAi::start().await;
    let chat = client(options(&fake));

    fake.inject(OpenAiFault::RateLimited {
        retry_after_secs: 1,
    });
    let started = Instant::now();
    assert_eq!(
        chat.complete(SYSTEM, USER).await.expect("complete"),
        fake_chat_reply(USER)
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(fake.chat_requests(), 2);

    // A longer pause than max_retry_wait goes back to the caller at once.
    fake.inject(OpenAiFault::RateLimited {
        retry_after_secs: 60,
    });
    let started = Instant::now();
    let (message, retry_after) = retryable(chat.complete(SYSTEM, USER).await);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(retry_after, Some(Duration::from_secs(60)));
    assert!(message.contains("429"), "{message}");
    assert!(message.contains("is rate limiting requests"), "{message}");
    assert_eq!(fake.chat_requests(), 3, "not retried in the call");
}

#[tokio::test]
async fn server_errors_past_the_retries_are_retryable() {
    let fake = FakeOpenAi::start().await;
    fake.inject(OpenAiFault::ServerError { status: 502 });
    fake.inject(OpenAiFault::DropConnection);
    let mut opts = options(&fake);
    opts.retry.max_retries = 2;
    let chat = client(opts);
    assert_eq!(
        chat.complete(SYSTEM, USER).await.expect("recovers"),
        fake_chat_reply(USER)
    );
    assert_eq!(fake.chat_requests(), 3);

    fake.reset_counts();
    fake.set_fault_every_request(Some(OpenAiFault::ServerError { status: 500 }));
    let (message, retry_after) = retryable(chat.complete(SYSTEM, USER).await);
    assert!(message.contains("the chat provider"), "{message}");
    assert!(message.contains("500"), "{message}");
    assert!(message.contains("The server had an error"), "{message}");
    assert_eq!(retry_after, None);
    assert_eq!(fake.chat_requests(), 3, "one try and two retries");
}

#[tokio::test]
async fn a_timeout_is_retryable_and_names_the_setting() {
    let fake = FakeOpenAi::start().await;
    fake.set_fault_every_request(Some(OpenAiFault::Slow { delay_ms: 2_000 }));
    let mut opts = options(&fake);
    opts.timeout = Duration::from_millis(150);
    opts.retry.max_retries = 0;
    let (message, _) = retryable(client(opts).complete(SYSTEM, USER).await);
    assert!(message.contains("timed out"), "{message}");
    assert!(message.contains("docs.llm.timeout"), "{message}");
    assert_eq!(fake.chat_requests(), 1);
}

#[tokio::test]
async fn a_reply_without_text_is_fatal() {
    let fake = FakeOpenAi::start().await;
    let chat = client(options(&fake));
    let reply = |content: Option<&str>, finish_reason: &str| OpenAiFault::ChatReply {
        content: content.map(str::to_string),
        finish_reason: finish_reason.to_string(),
    };

    fake.inject(reply(Some(""), "stop"));
    let message = fatal(chat.complete(SYSTEM, USER).await);
    assert!(message.contains("empty reply"), "{message}");
    assert!(message.contains(DEFAULT_CHAT_MODEL), "{message}");
    assert_eq!(fake.chat_requests(), 1, "not retried");

    fake.inject(reply(None, "stop"));
    let message = fatal(chat.complete(SYSTEM, USER).await);
    assert!(message.contains("empty reply"), "{message}");

    fake.inject(reply(Some(" \n "), "length"));
    let message = fatal(chat.complete(SYSTEM, USER).await);
    assert!(message.contains("docs.llm.max_tokens"), "{message}");

    fake.inject(reply(None, "content_filter"));
    let message = fatal(chat.complete(SYSTEM, USER).await);
    assert!(message.contains("content filter"), "{message}");
    // Even with some text: a filtered reply is not a summary.
    fake.inject(reply(Some("partial"), "content_filter"));
    fatal(chat.complete(SYSTEM, USER).await);

    fake.inject(OpenAiFault::Respond {
        status: 200,
        headers: vec![],
        body: r#"{"id":"x","object":"chat.completion","choices":[],"model":"m"}"#.into(),
    });
    let message = fatal(chat.complete(SYSTEM, USER).await);
    assert!(message.contains("no choices"), "{message}");

    fake.inject(OpenAiFault::Respond {
        status: 200,
        headers: vec![],
        body: r#"{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}"#.into(),
    });
    let message = fatal(chat.complete(SYSTEM, USER).await);
    assert!(message.contains("refused"), "{message}");
    assert!(message.contains("I can't help with that."), "{message}");

    fake.inject(OpenAiFault::Respond {
        status: 200,
        headers: vec![],
        body: "<html>sign in</html>".into(),
    });
    let message = fatal(chat.complete(SYSTEM, USER).await);
    assert!(
        message.contains("not an OpenAI chat completion"),
        "{message}"
    );
    assert_eq!(fake.chat_requests(), 8);
}

/// A change to otherwise good options.
type Edit = fn(&mut ChatOptions);

#[tokio::test]
async fn bad_options_are_fatal_up_front_and_name_the_setting() {
    let fake = FakeOpenAi::start().await;
    let cases: [(&str, Edit); 7] = [
        ("docs.llm.model", |o| o.model = " ".into()),
        ("docs.llm.max_tokens", |o| o.max_tokens = 0),
        ("docs.llm.temperature", |o| o.temperature = 2.5),
        ("docs.llm.temperature", |o| o.temperature = f32::NAN),
        ("docs.llm.timeout", |o| o.timeout = Duration::ZERO),
        ("docs.llm.base_url", |o| o.base_url = "ftp://x/v1".into()),
        ("docs.llm.credentials_ref", |o| {
            o.api_key = Some("sk abc".into())
        }),
    ];
    for (setting, edit) in cases {
        let mut opts = options(&fake);
        edit(&mut opts);
        let message = fatal(ChatClient::new(opts));
        assert!(message.contains(setting), "{message}");
    }
    assert_eq!(fake.requests(), 0);
}
