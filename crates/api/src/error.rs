//! HTTP errors. Each variant documents its status. Internal errors are
//! logged and never sent: the client gets a generic message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 404: the project or sync does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 409: a unique name is taken.
    #[error("{0}")]
    Conflict(String),
    /// 422: the request is well-formed but cannot be done as asked.
    #[error("{0}")]
    Invalid(String),
    /// 400: the request cannot be read as HTTP for this API (a `Host` that
    /// is not served here, a malformed header).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no credentials, or credentials that are not valid.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: valid credentials whose role is too low, or a browser request
    /// without its CSRF token or from a foreign `Origin`.
    #[error("{0}")]
    Forbidden(String),
    /// 413: the body is larger than `api.max_body_bytes`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: a body that is not `application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: a rate limit; `Retry-After` says when to come back (seconds).
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// 503: a dependency (Redis, Postgres, the repository) is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure; details only in the log.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl ApiError {
    /// The status and the `error` object of the response (an internal
    /// error is logged here, and its detail never leaves).
    pub(crate) fn parts(&self) -> (StatusCode, serde_json::Value) {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(detail) = self {
            tracing::error!("internal error: {detail}");
        }
        (status, json!({ "code": code, "message": self.to_string() }))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error) = self.parts();
        let body = json!({ "error": error });
        let mut response = (status, Json(body)).into_response();
        match &self {
            ApiError::Unauthorized(_) => {
                response.headers_mut().insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer realm=\"projsync\""),
                );
            }
            ApiError::TooManyRequests {
                retry_after_secs, ..
            } => {
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(*retry_after_secs),
                );
            }
            _ => {}
        }
        response
    }
}

impl From<projsync_store::Error> for ApiError {
    fn from(e: projsync_store::Error) -> Self {
        use projsync_store::Error as E;
        match e {
            E::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            E::Conflict(m) => ApiError::Conflict(m),
            E::Invalid(m) => ApiError::Invalid(m),
            e if e.is_retryable() => ApiError::Unavailable(format!(
                "the database is unavailable; try again shortly ({e})"
            )),
            e if e.is_unique_violation() => ApiError::Conflict(e.to_string()),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<projsync_domain::SourceError> for ApiError {
    fn from(e: projsync_domain::SourceError) -> Self {
        use projsync_domain::SourceErrorKind as K;
        match e.kind {
            K::NotFound => ApiError::NotFound(e.message),
            K::Unauthorized | K::Invalid => ApiError::Invalid(e.message),
            K::Unavailable | K::RateLimited => ApiError::Unavailable(e.message),
        }
    }
}
