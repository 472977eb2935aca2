//! The domain of projsync: ids, sync phases and statuses, the change plan, the
//! file filters, progress events, the `Source` trait and the error classes.
//!
//! This crate owns the vocabulary every other crate speaks. It must not know
//! about tokio, sqlx, redis, axum or octocrab: it is plain data and pure logic,
//! so it can be unit tested without any service running.

pub mod error;
pub mod filter;
pub mod ids;
pub mod job;
pub mod language;
pub mod names;
pub mod phase;
pub mod plan;
pub mod progress;
pub mod schedule;
pub mod search;
pub mod source;
pub mod tenancy;
pub mod trigger;

pub use error::{advice, ErrorClass, PhaseError};
pub use ids::{KeyId, ProjectId, RepositoryId, SyncId, TenantId};
pub use job::SyncJob;
pub use phase::{PhaseStatus, SyncPhase, SyncStatus};
pub use plan::{ChangeKind, ScanMode, SkipReason, Stats};
pub use progress::ProgressEvent;
pub use schedule::Schedule;
pub use search::SearchMode;
pub use source::{
    Blob, Branch, EntryKind, Source, SourceError, SourceErrorKind, TreeChange, TreeDiff, TreeEntry,
};
pub use tenancy::Role;
pub use trigger::SyncTrigger;

/// `scheme://user:password@host/...` → `scheme://user:***@host/...`, and a
/// `password=` (or `sslpassword=`) query parameter → `password=***`, so that
/// a URL can be shown in an error or a log.
pub fn redact_url(url: &str) -> String {
    let redacted = redact_userinfo(url);
    match redacted.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.to_ascii_lowercase().ends_with("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => redacted,
    }
}

fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => match authority[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end],
                &authority[..colon],
                &rest[at..]
            ),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// The content hash of an entry: SHA-256 of its text, hex-encoded.
pub fn content_hash(content: &str) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(content.as_bytes()))
}

/// `bytes` as lowercase hexadecimal, two digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_two_lowercase_digits_a_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(super::hex(&[]), "");
        assert_eq!(
            super::content_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn redacts_passwords_only() {
        use super::redact_url;
        assert_eq!(
            redact_url("postgres://u:s3cret@db:5432/x?a=b"),
            "postgres://u:***@db:5432/x?a=b"
        );
        assert_eq!(redact_url("redis://:pw@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redact_url("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(
            redact_url("postgres://u@db/x?sslmode=require&password=s3cret"),
            "postgres://u@db/x?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("postgres://u:a@db/x?PASSWORD=b"),
            "postgres://u:***@db/x?PASSWORD=***"
        );
    }
}
