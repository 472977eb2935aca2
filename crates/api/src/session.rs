//! Browser sessions: sign in with an API key, get an `HttpOnly`,
//! `SameSite=Strict` cookie and a CSRF token to send back in `X-CSRF-Token`
//! with every request that changes something.

use crate::auth::{session_cookie, Scoped, SESSION_COOKIE};
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use projsync_domain::{KeyId, Role};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// An API key (`psk_…`).
    key: String,
}

#[derive(Debug, Serialize)]
pub struct Session {
    key_id: KeyId,
    tenant: String,
    role: Role,
    /// Only in the answer to sign-in: send it in `X-CSRF-Token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<DateTime<Utc>>,
}

async fn tenant_name(state: &AppState) -> Result<String, ApiError> {
    let p = state.principal.expect("a signed-in state");
    Ok(state.store.tenant_name(p.tenant).await?)
}

/// 201 with the session and its cookie; 401 for a key that is not valid.
pub async fn sign_in(
    State(state): State<AppState>,
    body: Result<Json<SignIn>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let principal = state
        .store
        .authenticate(body.key.trim())
        .await?
        .ok_or_else(|| {
            ApiError::Unauthorized("this API key is not valid (unknown or revoked)".into())
        })?;
    let state = state.for_principal(principal);
    let (cookie, csrf, expires_at) = state
        .store
        .create_session(&principal, state.auth.session_ttl)
        .await?;
    crate::service::audit(
        &state,
        "session.create",
        format!("key:{}", principal.key_id),
        serde_json::json!({}),
    )
    .await;
    let set_cookie = format!(
        "{SESSION_COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        state.auth.session_ttl.as_secs(),
        if state.auth.cookie_secure {
            "; Secure"
        } else {
            ""
        }
    );
    let body = Session {
        key_id: principal.key_id,
        tenant: tenant_name(&state).await?,
        role: principal.role,
        csrf_token: Some(csrf),
        expires_at: Some(expires_at),
    };
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&set_cookie).expect("a cookie of hex digits"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// 200 with who the request is (key or session).
pub async fn whoami(Scoped(state): Scoped) -> Result<Json<Session>, ApiError> {
    let p = state.principal.expect("a signed-in state");
    Ok(Json(Session {
        key_id: p.key_id,
        tenant: tenant_name(&state).await?,
        role: p.role,
        csrf_token: None,
        expires_at: None,
    }))
}

/// 204: the session is closed and its cookie cleared.
pub async fn sign_out(Scoped(state): Scoped, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(cookie) = session_cookie(&headers) {
        state.store.delete_session(&cookie).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("projsync_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(response)
}
