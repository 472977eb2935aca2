//! GitHub push webhooks: `POST /api/v1/webhooks/github`.
//!
//! A delivery carries no API key. It is signed: `X-Hub-Signature-256` is
//! `sha256=` and the hex HMAC-SHA256 of the raw body under the tenant's
//! webhook secret (`projsync webhook secret --tenant NAME`). The tenant is
//! the one `?tenant=` names (name or id), or else the one whose secret
//! verifies the signature. Then, deduplicated by `X-GitHub-Delivery`:
//!
//! - `push` to `refs/heads/<b>`, `create` of branch `<b>`: every project of
//!   the tenant on that repository whose branch is `<b>` gets a sync
//!   through [`projsync_store::Store::request_sync`], debounced by
//!   `webhooks.debounce_ms` (a burst of pushes is one sync that ends at the
//!   newest head);
//! - `ping`, `delete` of a branch, a push that deletes a branch or to a
//!   tag, another branch or repository, any other event: acknowledged and
//!   ignored, with the reason in the answer.
//!
//! The handler waits only on Postgres, never on Redis or the queue (the
//! reconciler pushes the syncs when they are due), so it answers within
//! GitHub's 10 s whatever the queue's state.
//!
//! The route is mounted outside the API's request guard (`limits::guard`):
//! its body limit is `webhooks.max_body_bytes` (GitHub sends up to 25 MB),
//! not `api.max_body_bytes`, and its `Host` is whatever public name GitHub
//! was given. A page of another site gains nothing by calling it: without
//! the secret it is refused (401) before anything is read from the ledger.
//! The content type is still checked (415), and every bad input is a 4xx.

use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use projsync_domain::{ProjectId, SyncId, SyncTrigger, TenantId};
use projsync_store::{DeliveryClaim, Store, SyncRequest};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;
use std::time::Duration;

/// The webhook's settings (`[webhooks]` in the configuration).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// How long a sync a delivery creates waits for more pushes
    /// (`not_before`); pushes within it join that sync.
    pub debounce: Duration,
    /// How long a delivery id is remembered: a redelivery within it starts
    /// nothing new.
    pub delivery_retention: Duration,
    /// Largest delivery body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(2000),
            delivery_retention: Duration::from_secs(7 * 24 * 3600),
            max_body_bytes: 10 * 1024 * 1024,
        }
    }
}

/// The signature header GitHub sends (HMAC-SHA256).
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// The event header (`push`, `ping`, …).
pub const EVENT_HEADER: &str = "x-github-event";
/// The delivery id header: the same id on a redelivery.
pub const DELIVERY_HEADER: &str = "x-github-delivery";

/// Whether `signature` (`sha256=<64 hex digits>`, any case) is the
/// HMAC-SHA256 of `body` under `secret`. Compared in constant time.
pub fn verify_signature(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(tag) = signature
        .strip_prefix("sha256=")
        .and_then(|hex| decode_hex(hex.trim()))
    else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`: what GitHub
/// sends (for tests and tools that sign a delivery).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!("sha256={}", projsync_domain::hex(&tag))
}

/// 32 bytes from 64 hex digits; `None` for anything else.
fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    hex.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookQuery {
    /// The tenant's name or id.
    tenant: Option<String>,
}

/// The repository of an event's payload.
#[derive(Debug, Deserialize)]
struct Repository {
    full_name: String,
    id: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct PushEvent {
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    deleted: bool,
    after: Option<String>,
    repository: Repository,
}

/// `create` and `delete`: `ref` is the bare name, `ref_type` `branch` or `tag`.
#[derive(Debug, Deserialize)]
struct RefEvent {
    #[serde(rename = "ref")]
    git_ref: String,
    ref_type: String,
    repository: Repository,
}

/// One project's sync that a delivery requested.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RequestedSync {
    project_id: ProjectId,
    project: String,
    sync_id: SyncId,
    /// `queued` (a new sync, due after the debounce), `coalesced` (the
    /// project's queued sync takes the push) or `wanted` (a sync after the
    /// running one).
    outcome: String,
}

/// The answer to a delivery. `outcome`: `queued` when any project got a
/// new sync, else `wanted`, else `coalesced`; `ignored` when no sync was
/// requested; `duplicate` for a delivery id seen before (`original` then
/// says what the first delivery did).
#[derive(Debug, Serialize)]
struct Answer {
    delivery: String,
    event: String,
    outcome: String,
    message: String,
    syncs: Vec<RequestedSync>,
    #[serde(skip_serializing_if = "Option::is_none")]
    original: Option<serde_json::Value>,
}

/// A delivery refused before it was handled: its status, metric outcome
/// and message.
struct Refusal {
    error: ApiError,
    outcome: &'static str,
}

impl Refusal {
    fn invalid(error: ApiError) -> Self {
        Self {
            error,
            outcome: "invalid",
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::invalid(ApiError::BadRequest(message.into()))
    }
}

/// `POST /api/v1/webhooks/github`.
pub(crate) async fn github(State(state): State<AppState>, req: Request) -> Response {
    match handle(&state, req).await {
        Ok(answer) => {
            state.metrics.webhook_delivery(&answer.outcome);
            let status = match answer.outcome.as_str() {
                "queued" | "coalesced" | "wanted" => StatusCode::ACCEPTED,
                _ => StatusCode::OK,
            };
            (status, Json(answer)).into_response()
        }
        Err(refusal) => {
            // A database failure is neither: it is logged by ApiError, and
            // GitHub shows the 503 (or 500) in its Recent Deliveries.
            if !matches!(
                refusal.error,
                ApiError::Unavailable(_) | ApiError::Internal(_)
            ) {
                state.metrics.webhook_delivery(refusal.outcome);
            }
            let mut response = refusal.error.into_response();
            // Not a bearer realm: the remedy is the signing secret.
            response.headers_mut().remove(header::WWW_AUTHENTICATE);
            response
        }
    }
}

async fn handle(state: &AppState, req: Request) -> Result<Answer, Refusal> {
    let settings = &state.webhooks;
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    check_content_type(headers)?;
    let event = header_text(headers, EVENT_HEADER)
        .filter(|e| {
            !e.is_empty()
                && e.len() <= 64
                && e.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .ok_or_else(|| {
            Refusal::bad_request(
                "missing or invalid X-GitHub-Event header; this endpoint takes GitHub webhook \
                 deliveries (push, create, delete, ping)",
            )
        })?
        .to_string();
    let delivery = header_text(headers, DELIVERY_HEADER)
        .filter(|d| {
            !d.is_empty()
                && d.len() <= projsync_domain::trigger::DELIVERY_ID_MAX
                && d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .ok_or_else(|| {
            Refusal::bad_request(format!(
                "missing or invalid X-GitHub-Delivery header (1 to {} letters, digits or `-`); \
                 GitHub sends one with every delivery",
                projsync_domain::trigger::DELIVERY_ID_MAX
            ))
        })?
        .to_string();
    let Query(query) = Query::<WebhookQuery>::try_from_uri(&parts.uri).map_err(|e| {
        Refusal::bad_request(format!(
            "invalid query ({}); the only parameter is `tenant` (a tenant's name or id)",
            e.body_text()
        ))
    })?;
    let tenant_ref = query.tenant.filter(|t| !t.is_empty());
    if tenant_ref
        .as_ref()
        .is_some_and(|t| t.len() > 100 || t.chars().any(|c| c.is_control() || c.is_whitespace()))
    {
        return Err(Refusal::bad_request(
            "invalid `tenant`: give a tenant's name or id",
        ));
    }
    let body = read_body(body, settings.max_body_bytes, headers).await?;

    let tenant = verify(
        state,
        headers,
        &body,
        tenant_ref.as_deref(),
        &event,
        &delivery,
    )
    .await?;
    let store = state.store.scoped(tenant);
    let payload: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        Refusal::bad_request(format!(
            "the body is not JSON ({e}); set the webhook's content type to application/json"
        ))
    })?;
    let action = Action::of(&event, payload)?;

    let claim = store
        .claim_delivery(&delivery, &event, settings.delivery_retention)
        .await
        .map_err(|e| Refusal::invalid(e.into()))?;
    if let DeliveryClaim::Seen(first) = claim {
        tracing::info!(%delivery, %event, %tenant, "webhook delivery seen before; nothing new");
        let message = match &first.outcome {
            Some(outcome) => format!(
                "delivery {delivery} was received at {} ({outcome}); a redelivery starts \
                 nothing new",
                first.received_at.to_rfc3339()
            ),
            None => format!(
                "delivery {delivery} is being handled since {}; a redelivery starts nothing new",
                first.received_at.to_rfc3339()
            ),
        };
        let mut original = first.detail.clone();
        if let Some(o) = original.as_object_mut() {
            o.insert("outcome".into(), json!(first.outcome));
            o.insert("received_at".into(), json!(first.received_at));
        }
        return Ok(Answer {
            delivery,
            event,
            outcome: "duplicate".into(),
            message,
            syncs: Vec::new(),
            original: Some(original),
        });
    }
    let done = act(&store, settings, &delivery, action).await;
    let (outcome, message, syncs) = match done {
        Ok(done) => done,
        Err(e) => {
            // Handled afresh when GitHub (or someone) redelivers it.
            if let Err(release) = store.release_delivery(&delivery).await {
                tracing::warn!(%delivery, "cannot forget the failed webhook delivery: {release}");
            }
            return Err(Refusal::invalid(e.into()));
        }
    };
    let detail = json!({ "message": message, "syncs": syncs });
    if let Err(e) = store.finish_delivery(&delivery, &outcome, &detail).await {
        // The syncs are requested; a redelivery finds the row unfinished
        // and, after a minute, requests them again (which coalesces).
        tracing::warn!(%delivery, "cannot record the webhook delivery's outcome: {e}");
    }
    tracing::info!(%delivery, %event, %tenant, %outcome, syncs = syncs.len(), "webhook delivery: {message}");
    Ok(Answer {
        delivery,
        event,
        outcome,
        message,
        syncs,
        original: None,
    })
}

/// A delivery without `?tenant=` is checked against at most this many
/// tenants' secrets.
pub const MAX_SECRETS_TRIED: usize = 16;

/// The tenant whose secret signed `body`; 401 when none did (logged
/// without the body).
async fn verify(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    tenant_ref: Option<&str>,
    event: &str,
    delivery: &str,
) -> Result<TenantId, Refusal> {
    let unauthorized = |message: String| {
        tracing::warn!(%delivery, %event, tenant = tenant_ref.unwrap_or("-"), "webhook delivery refused: {message}");
        Refusal {
            error: ApiError::Unauthorized(message),
            outcome: "unauthorized",
        }
    };
    let how_to = match tenant_ref {
        Some(t) => format!(
            "set the webhook's secret in GitHub to the one `projsync webhook secret --tenant {t}` \
             printed (running it again makes a new one)"
        ),
        None => "set the webhook's secret in GitHub to the one `projsync webhook secret \
                 --tenant NAME` printed, and add `?tenant=NAME` to the payload URL"
            .to_string(),
    };
    let Some(signature) = header_text(headers, SIGNATURE_HEADER) else {
        return Err(unauthorized(format!(
            "the delivery is not signed (no X-Hub-Signature-256 header); {how_to}"
        )));
    };
    let secrets = state
        .store
        .webhook_secrets(tenant_ref)
        .await
        .map_err(|e| Refusal::invalid(e.into()))?;
    // Without `?tenant=`, every secret is tried, and each try hashes the
    // whole body: past a few tenants, an unsigned caller could make the
    // API hash megabytes many times over per request.
    if tenant_ref.is_none() && secrets.len() > MAX_SECRETS_TRIED {
        return Err(unauthorized(format!(
            "this deployment has webhook secrets for more than {MAX_SECRETS_TRIED} tenants: \
             add `?tenant=NAME` to the payload URL in GitHub"
        )));
    }
    let signature = signature.to_string();
    let body = axum::body::Bytes::copy_from_slice(body);
    // HMAC over a body of megabytes, maybe once per tenant: off the
    // request threads.
    let matching = tokio::task::spawn_blocking(move || {
        secrets
            .iter()
            .filter(|s| verify_signature(s.secret.as_bytes(), &body, &signature))
            .map(|s| s.tenant)
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| Refusal::invalid(ApiError::Internal(format!("signature check: {e}"))))?;
    match matching[..] {
        [tenant] => Ok(tenant),
        [] => Err(unauthorized(format!(
            "the signature (X-Hub-Signature-256) does not match {}; {how_to}",
            match tenant_ref {
                Some(t) => format!("the webhook secret of tenant `{t}` (or it has none)"),
                None => "any tenant's webhook secret".to_string(),
            }
        ))),
        _ => Err(unauthorized(format!(
            "the signature matches more than one tenant's secret; {how_to}"
        ))),
    }
}

/// What a delivery asks for.
enum Action {
    /// Sync the projects on `repository` at `branch`.
    Sync {
        repository: Repository,
        branch: String,
        head: Option<String>,
    },
    /// Nothing, for this reason.
    Ignore(String),
    /// A branch was deleted: said, and logged, for its projects.
    BranchDeleted {
        repository: Repository,
        branch: String,
    },
}

impl Action {
    fn of(event: &str, payload: serde_json::Value) -> Result<Self, Refusal> {
        let shape = |e: serde_json::Error| {
            Refusal::bad_request(format!("the {event} payload is not GitHub's: {e}"))
        };
        Ok(match event {
            "ping" => Action::Ignore("ping received: the webhook is set up".into()),
            "push" => {
                let push: PushEvent = serde_json::from_value(payload).map_err(shape)?;
                match push.git_ref.strip_prefix("refs/heads/") {
                    None => Action::Ignore(format!(
                        "push to {} is not to a branch; ignored",
                        push.git_ref
                    )),
                    Some(branch) if push.deleted => Action::BranchDeleted {
                        repository: push.repository,
                        branch: branch.to_string(),
                    },
                    Some(branch) => Action::Sync {
                        branch: branch.to_string(),
                        repository: push.repository,
                        head: push.after,
                    },
                }
            }
            "create" | "delete" => {
                let r: RefEvent = serde_json::from_value(payload).map_err(shape)?;
                if r.ref_type != "branch" {
                    Action::Ignore(format!("{event} of {} {}; ignored", r.ref_type, r.git_ref))
                } else if event == "create" {
                    Action::Sync {
                        repository: r.repository,
                        branch: r.git_ref,
                        head: None,
                    }
                } else {
                    Action::BranchDeleted {
                        repository: r.repository,
                        branch: r.git_ref,
                    }
                }
            }
            other => Action::Ignore(format!(
                "event `{other}` is not one projsync syncs on (push, create); ignored"
            )),
        })
    }
}

/// Do what the delivery asks: its outcome, message and requested syncs.
async fn act(
    store: &Store,
    settings: &WebhookSettings,
    delivery: &str,
    action: Action,
) -> Result<(String, String, Vec<RequestedSync>), projsync_store::Error> {
    let (repository, branch, head) = match action {
        Action::Ignore(reason) => return Ok(("ignored".into(), reason, Vec::new())),
        Action::BranchDeleted { repository, branch } => {
            let projects = store
                .github_projects_on(&repository.full_name, repository.id, &branch)
                .await?;
            let message = if projects.is_empty() {
                format!(
                    "branch {branch} of {} was deleted; no project follows it",
                    repository.full_name
                )
            } else {
                let names: Vec<&str> = projects.iter().map(|(_, n)| n.as_str()).collect();
                tracing::warn!(%delivery, repository = %repository.full_name, %branch, projects = ?names,
                    "the branch of these projects was deleted on GitHub; their knowledge base stays as last synced");
                format!(
                    "branch {branch} of {} was deleted; project(s) {} keep their knowledge base \
                     as last synced (no sync)",
                    repository.full_name,
                    names.join(", ")
                )
            };
            return Ok(("ignored".into(), message, Vec::new()));
        }
        Action::Sync {
            repository,
            branch,
            head,
        } => (repository, branch, head),
    };
    let projects = store
        .github_projects_on(&repository.full_name, repository.id, &branch)
        .await?;
    if projects.is_empty() {
        return Ok((
            "ignored".into(),
            format!(
                "no project of this tenant follows {} at branch {branch}; ignored",
                repository.full_name
            ),
            Vec::new(),
        ));
    }
    let trigger = SyncTrigger::Webhook(delivery.to_string());
    let mut syncs = Vec::with_capacity(projects.len());
    for (project_id, project) in projects {
        let request = match store
            .request_sync(project_id, &trigger, settings.debounce)
            .await
        {
            Ok(r) => r,
            // Deleted since it was found.
            Err(projsync_store::Error::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        let outcome = match &request {
            SyncRequest::Created(_) => "queued",
            SyncRequest::Queued(_) => "coalesced",
            SyncRequest::Wanted(_) => "wanted",
        };
        syncs.push(RequestedSync {
            project_id,
            project,
            sync_id: request.sync().id,
            outcome: outcome.into(),
        });
    }
    let outcome = ["queued", "wanted", "coalesced"]
        .into_iter()
        .find(|o| syncs.iter().any(|s| s.outcome == *o))
        .unwrap_or("ignored");
    let at = head
        .as_deref()
        .map(|h| format!(" (head {})", h.chars().take(12).collect::<String>()))
        .unwrap_or_default();
    let message = format!(
        "{} at branch {branch}{at}: sync requested for {} project(s)",
        repository.full_name,
        syncs.len()
    );
    Ok((outcome.into(), message, syncs))
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// GitHub's "Content type: application/json" (its other choice,
/// `application/x-www-form-urlencoded`, is refused with what to change).
fn check_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let value = header_text(headers, header::CONTENT_TYPE.as_str()).unwrap_or("");
    let media = value.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(Refusal::invalid(ApiError::UnsupportedMediaType(format!(
        "the delivery's content type is `{}`; set the webhook's content type to \
         application/json in GitHub",
        value.escape_debug()
    ))))
}

/// The body, refused (413) as soon as it is larger than `max`.
async fn read_body(
    body: Body,
    max: usize,
    headers: &HeaderMap,
) -> Result<axum::body::Bytes, Refusal> {
    let too_large = || {
        Refusal::invalid(ApiError::PayloadTooLarge(format!(
            "the delivery is larger than {max} bytes, the limit set by webhooks.max_body_bytes \
             (GitHub sends at most 25 MB); an operator can raise it"
        )))
    };
    let declared =
        header_text(headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, max).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            source = err.source();
        }
        Refusal::bad_request(format!("cannot read the request body: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // GitHub's documented example ("Validating webhook deliveries").
    const DOC_SECRET: &[u8] = b"It's a Secret to Everybody";
    const DOC_BODY: &[u8] = b"Hello, World!";
    const DOC_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn githubs_example_verifies() {
        assert_eq!(sign(DOC_SECRET, DOC_BODY), DOC_SIGNATURE);
        assert!(verify_signature(DOC_SECRET, DOC_BODY, DOC_SIGNATURE));
        // Hex digits in either case.
        assert!(verify_signature(
            DOC_SECRET,
            DOC_BODY,
            &DOC_SIGNATURE
                .to_ascii_uppercase()
                .replace("SHA256=", "sha256=")
        ));
    }

    #[test]
    fn anything_else_does_not() {
        let hex = DOC_SIGNATURE.trim_start_matches("sha256=");
        for bad in [
            "",
            hex,
            "sha1=757107ea0eb2509fc211221cce984b8a37570b6d",
            &format!("sha256={}", &hex[..62]),
            &format!("sha256={hex}00"),
            &format!("sha256={}0", &hex[..63]),
            &format!("sha256={}zz", &hex[..62]),
            "sha256=",
        ] {
            assert!(!verify_signature(DOC_SECRET, DOC_BODY, bad), "{bad}");
        }
        assert!(!verify_signature(
            b"another secret",
            DOC_BODY,
            DOC_SIGNATURE
        ));
        assert!(!verify_signature(
            DOC_SECRET,
            b"Hello, World?",
            DOC_SIGNATURE
        ));
        // A multi-byte character where a hex digit should be.
        let odd = format!("sha256={}é", &hex[..62]);
        assert!(!verify_signature(DOC_SECRET, DOC_BODY, &odd));
    }

    #[test]
    fn events_map_to_actions() {
        let repo = json!({ "full_name": "acme/widgets", "id": 7 });
        let push = |r: &str, deleted: bool| {
            Action::of(
                "push",
                json!({ "ref": r, "deleted": deleted, "after": "abc", "repository": repo }),
            )
            .ok()
            .unwrap()
        };
        assert!(
            matches!(push("refs/heads/main", false), Action::Sync { branch, .. } if branch == "main")
        );
        assert!(matches!(
            push("refs/heads/main", true),
            Action::BranchDeleted { .. }
        ));
        assert!(matches!(push("refs/tags/v1", false), Action::Ignore(_)));
        let create = Action::of(
            "create",
            json!({ "ref": "feature/x", "ref_type": "branch", "repository": repo }),
        );
        assert!(
            matches!(create.ok().unwrap(), Action::Sync { branch, .. } if branch == "feature/x")
        );
        let tag = Action::of(
            "create",
            json!({ "ref": "v1", "ref_type": "tag", "repository": repo }),
        );
        assert!(matches!(tag.ok().unwrap(), Action::Ignore(_)));
        assert!(matches!(
            Action::of("issues", json!({})).ok().unwrap(),
            Action::Ignore(_)
        ));
        assert!(matches!(
            Action::of("ping", json!({"zen": "x"})).ok().unwrap(),
            Action::Ignore(_)
        ));
        // A push without its repository is not GitHub's: a 400.
        let bad = Action::of("push", json!({ "ref": "refs/heads/main" }));
        assert!(matches!(
            bad,
            Err(Refusal {
                outcome: "invalid",
                ..
            })
        ));
    }
}
