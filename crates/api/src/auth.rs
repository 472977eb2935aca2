//! Who makes a request, and what it may do.
//!
//! Every `/api/v1` route but the OpenAPI document and sign-in takes a
//! [`Scoped`] state: the request is authenticated (a bearer API key, or a
//! browser session cookie with its CSRF token), rate limited, and the
//! state's store is scoped to the caller's tenant, so that row-level
//! security shows the handler nothing else. A project or sync of another
//! tenant is then simply not found (404, never 403).

use crate::{ApiError, AppState};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use projsync_domain::{KeyId, Role, TenantId};
use projsync_store::{Actor, Principal};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// The name of the browser session cookie.
pub const SESSION_COOKIE: &str = "projsync_session";
/// The header a browser sends its CSRF token in, with every request that
/// changes something.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How requests are authenticated and limited.
#[derive(Clone)]
pub struct AuthSettings {
    pub session_ttl: Duration,
    /// Mark the session cookie `Secure` (served over HTTPS).
    pub cookie_secure: bool,
    pub limits: Arc<RateLimits>,
}

impl AuthSettings {
    pub fn new(
        session_ttl: Duration,
        cookie_secure: bool,
        per_key_per_minute: u32,
        per_tenant_per_minute: u32,
    ) -> Self {
        Self {
            session_ttl,
            cookie_secure,
            limits: Arc::new(RateLimits::new(per_key_per_minute, per_tenant_per_minute)),
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self::new(Duration::from_secs(8 * 3600), false, 0, 0)
    }
}

/// Requests per minute per API key and per tenant, in this process (GCRA,
/// through `governor`); a burst of up to a minute's allowance passes.
pub struct RateLimits {
    per_key: Option<DefaultKeyedRateLimiter<KeyId>>,
    per_tenant: Option<DefaultKeyedRateLimiter<TenantId>>,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(per_key_per_minute: u32, per_tenant_per_minute: u32) -> Self {
        Self {
            per_key: NonZeroU32::new(per_key_per_minute)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            per_tenant: NonZeroU32::new(per_tenant_per_minute)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            clock: DefaultClock::default(),
        }
    }

    fn check(&self, principal: &Principal) -> Result<(), ApiError> {
        let now = self.clock.now();
        if let Some(l) = &self.per_key {
            if let Err(not_until) = l.check_key(&principal.key_id) {
                return Err(too_many("this API key", not_until.wait_time_from(now)));
            }
        }
        if let Some(l) = &self.per_tenant {
            if let Err(not_until) = l.check_key(&principal.tenant) {
                return Err(too_many("this tenant", not_until.wait_time_from(now)));
            }
        }
        Ok(())
    }
}

fn too_many(who: &str, wait: Duration) -> ApiError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::TooManyRequests {
        message: format!(
            "rate limit of {who} reached (api.rate_limit_per_key / api.rate_limit_per_tenant); \
             retry in {secs} s"
        ),
        retry_after_secs: secs.max(1),
    }
}

/// The application state of an authenticated request: its store is scoped
/// to the caller's tenant and `principal` says who the caller is.
pub struct Scoped(pub AppState);

impl FromRequestParts<AppState> for Scoped {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = authenticate(state, &parts.headers, &parts.method).await?;
        state.auth.limits.check(&principal)?;
        Ok(Scoped(state.for_principal(principal)))
    }
}

/// The caller of a request that must carry a bearer API key (the MCP
/// endpoint: its clients hold no browser session), rate limited like
/// every other request.
pub async fn bearer_principal(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    if headers.get(header::AUTHORIZATION).is_none() {
        return Err(ApiError::Unauthorized(
            "authentication required: send `Authorization: Bearer <API key>` (an operator \
             creates keys with `projsync key create --tenant NAME`)"
                .into(),
        ));
    }
    let principal = authenticate(state, headers, &Method::GET).await?;
    state.auth.limits.check(&principal)?;
    Ok(principal)
}

/// The bearer key, or else the session cookie (and, for a request that
/// changes something, its CSRF token).
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
) -> Result<Principal, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let key = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be `Bearer <API key>`".into())
            })?;
        return state.store.authenticate(key).await?.ok_or_else(|| {
            ApiError::Unauthorized(
                "this API key is not valid (unknown or revoked); ask an operator for one \
                 (`projsync key create --tenant NAME`)"
                    .into(),
            )
        });
    }
    let Some(cookie) = session_cookie(headers) else {
        return Err(ApiError::Unauthorized(
            "authentication required: send `Authorization: Bearer <API key>`, or sign in \
             with POST /api/v1/session"
                .into(),
        ));
    };
    let (principal, csrf_hash) = state.store.session(&cookie).await?.ok_or_else(|| {
        ApiError::Unauthorized("the session has expired or was closed; sign in again".into())
    })?;
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let token = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if token.is_empty() || projsync_store::secret_hash(token) != csrf_hash {
            return Err(ApiError::Forbidden(
                "a request signed in with a session cookie must send the session's CSRF token \
                 in the X-CSRF-Token header"
                    .into(),
            ));
        }
    }
    Ok(principal)
}

/// The value of the session cookie, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl AppState {
    /// This state, for a request of `principal`: the store scoped to its
    /// tenant.
    pub fn for_principal(&self, principal: Principal) -> Self {
        let mut state = self.clone();
        state.store = self.store.scoped(principal.tenant);
        state.principal = Some(principal);
        state
    }

    /// Fail with 403 unless the caller's role is at least `role`. The
    /// operator's CLI (no principal) may do everything.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        match &self.principal {
            Some(p) if p.role < role => Err(ApiError::Forbidden(format!(
                "this API key has role `{}`; this needs `{role}` or higher",
                p.role
            ))),
            _ => Ok(()),
        }
    }

    /// What a sync this state starts is started by: `api` for a request,
    /// `cli` for the operator's command line.
    pub fn trigger(&self) -> projsync_domain::SyncTrigger {
        match &self.principal {
            Some(_) => projsync_domain::SyncTrigger::Api,
            None => projsync_domain::SyncTrigger::Cli,
        }
    }

    /// Who is acting, for the audit trail.
    pub fn actor(&self) -> Actor {
        match &self.principal {
            Some(p) => Actor::Key(p.key_id),
            None => Actor::cli(),
        }
    }
}
