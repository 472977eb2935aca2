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

/// What a sync's state means for an operator and what to do next, as the
/// operations pages and `GET /syncs/{id}` show it (`advice`). `None` when
/// there is nothing to do (queued in time, running with a live lease,
/// succeeded).
pub fn advice(
    status: crate::SyncStatus,
    error_class: Option<&str>,
    failed_phase: Option<crate::SyncPhase>,
    lease_expired: bool,
    waiting_for_retry: bool,
) -> Option<String> {
    use crate::SyncStatus as S;
    let phase = failed_phase
        .map(|p| format!(" in the {p} phase"))
        .unwrap_or_default();
    let text = match status {
        S::Failed => match error_class {
            Some("retryable") => format!(
                "The sync failed{phase} on a temporary error (network, rate limit, database or \
                 provider unavailable) and its automatic retries ran out. Once the dependency \
                 named in the error answers again, retry from the failed phase: finished phases \
                 and checkpoints are kept. Discard it to give up; the active entries are untouched."
            ),
            _ => format!(
                "The sync failed{phase} on an error that retrying alone will not fix (an unknown \
                 repository or branch, a bad or missing credential, invalid input). Fix the cause \
                 named in the error, then retry from the failed phase, or from the start if the \
                 repository was rewritten or moved. Discard it to give up; the active entries are \
                 untouched."
            ),
        },
        S::Cancelled => "The sync was cancelled; nothing it wrote became active. Retry it to run \
             it again from where it stopped, or discard it."
            .to_string(),
        S::Running if lease_expired => "The worker holding this sync's lease stopped renewing it \
             (it died or lost its connection). The reconciler hands the sync to another worker; \
             if none is running, start one."
            .to_string(),
        S::Queued if waiting_for_retry => "The sync is waiting before an automatic retry \
             (after a temporary error or a rate limit); it starts by itself after `not_before`."
            .to_string(),
        _ => return None,
    };
    Some(text)
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

    #[test]
    fn advice_says_what_to_do_next() {
        use crate::{SyncPhase, SyncStatus};
        let fatal = advice(
            SyncStatus::Failed,
            Some("fatal"),
            Some(SyncPhase::Prepare),
            false,
            false,
        )
        .unwrap();
        assert!(
            fatal.contains("prepare phase") && fatal.contains("Fix the cause"),
            "{fatal}"
        );
        let retryable = advice(SyncStatus::Failed, Some("retryable"), None, false, false).unwrap();
        assert!(retryable.contains("temporary error"), "{retryable}");
        assert!(advice(SyncStatus::Cancelled, None, None, false, false).is_some());
        assert!(advice(SyncStatus::Running, None, None, true, false).is_some());
        assert!(advice(SyncStatus::Running, None, None, false, false).is_none());
        assert!(advice(SyncStatus::Succeeded, None, None, false, false).is_none());
    }
}
