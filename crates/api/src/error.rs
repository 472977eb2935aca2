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
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(detail) = &self {
            tracing::error!("internal error: {detail}");
        }
        let body = json!({ "error": { "code": code, "message": self.to_string() } });
        (status, Json(body)).into_response()
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
