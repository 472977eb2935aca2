//! What the provider tests share: failures unpacked by class, each checked
//! to read as our messages do.

use std::fmt::Debug;
use std::time::Duration;

use projsync_embed::EmbedError;

/// The message of a fatal error; anything else fails the test.
pub fn fatal<T: Debug>(result: projsync_embed::Result<T>) -> String {
    match result {
        Err(EmbedError::Fatal(message)) => {
            assert_lowercase(&message);
            message
        }
        other => panic!("expected a fatal error, got {other:?}"),
    }
}

/// The message and wait of a retryable error; anything else fails the test.
pub fn retryable<T: Debug>(result: projsync_embed::Result<T>) -> (String, Option<Duration>) {
    match result {
        Err(EmbedError::Retryable {
            message,
            retry_after,
        }) => {
            assert_lowercase(&message);
            (message, retry_after)
        }
        other => panic!("expected a retryable error, got {other:?}"),
    }
}

pub fn assert_lowercase(message: &str) {
    assert!(
        message.chars().next().is_some_and(|c| c.is_lowercase()),
        "errors start lowercase: {message}"
    );
}
