//! Error classes. Every failure of a phase is either worth retrying (the world
//! may be better in a moment) or fatal (retrying cannot help: the user must act).

use crate::source::{SourceError, SourceErrorKind};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Network, 5xx, rate limits, a lost database connection, lease conflicts.
    Retryable,
    /// Unknown repository or branch, bad credentials, invalid input.
    Fatal,
}

/// The error of one phase, as recorded in the ledger and shown to users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub struct PhaseError {
    pub class: ErrorClass,
    pub message: String,
    /// Do not retry before this long (a rate limit's reset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<std::time::Duration>,
}

impl fmt::Display for PhaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl PhaseError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Retryable,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Fatal,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.class == ErrorClass::Retryable
    }
}

impl From<SourceError> for PhaseError {
    fn from(e: SourceError) -> Self {
        match e.kind {
            SourceErrorKind::Unavailable | SourceErrorKind::RateLimited => PhaseError {
                retry_after: e.retry_after,
                ..PhaseError::retryable(e.message)
            },
            SourceErrorKind::NotFound
            | SourceErrorKind::Unauthorized
            | SourceErrorKind::Invalid => PhaseError::fatal(e.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_errors_are_classified() {
        let e: PhaseError = SourceError::not_found("branch x not found").into();
        assert_eq!(e.class, ErrorClass::Fatal);
        let e: PhaseError = SourceError::unavailable("timeout").into();
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "timeout");
    }
}
