//! Live progress of a sync as Server-Sent Events. Every stream of this
//! process follows its sync's Redis channel through one shared pub/sub
//! connection (`projsync_queue::EventHub`), and at most `api.max_streams`
//! streams are open at once: past that, a 503 with `Retry-After`.

use crate::auth::Scoped;
use crate::routes::sync_id;
use crate::ApiError;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::convert::Infallible;
use std::time::Duration;

/// What a client told "too many streams" should wait before trying again.
const RETRY_AFTER_SECS: u64 = 5;

/// The latest snapshot first, then live events from the sync's channel,
/// until the sync ends. Each event's id is its `seq`; with `Last-Event-ID`
/// only newer events are sent.
pub(crate) async fn sync_events(
    Scoped(state): Scoped,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = sync_id(&id)?;
    let last_seen: i64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Subscribe before reading the snapshot, so nothing falls in between.
    let live = match state.events.subscribe(id).await {
        Ok(live) => live,
        Err(e @ projsync_queue::Error::TooManyStreams { .. }) => {
            let mut response = ApiError::Unavailable(e.to_string()).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            return Ok(response);
        }
        Err(e) => return Err(ApiError::Unavailable(e.to_string())),
    };
    let sync = state.store.sync(id).await?;
    let snapshot = sync.progress;
    let to_event = |ev: &projsync_domain::ProgressEvent| -> Result<Event, Infallible> {
        Ok(Event::default()
            .id(ev.seq.to_string())
            .event("progress")
            .data(serde_json::to_string(ev).expect("events serialize")))
    };
    let start_seq = snapshot.as_ref().map(|e| e.seq).unwrap_or(0).max(last_seen);
    // A sync cancelled while queued ended without any event: the ledger,
    // not only the snapshot, says whether more can come.
    let already_final =
        sync.status.is_terminal() || snapshot.as_ref().is_some_and(|e| e.is_final());
    let first: Vec<Result<Event, Infallible>> = snapshot
        .iter()
        .filter(|e| e.seq > last_seen)
        .map(to_event)
        .collect();
    let stream = futures::stream::iter(first);
    if already_final {
        // Nothing live to wait for: the stream's slot is given back now.
        drop(live);
        return Ok(sse(stream.boxed()));
    }
    // Drop events already sent; end right after the final one (not at the
    // next message on the channel, which may never come).
    let live = futures::stream::unfold(
        (live.into_stream(), start_seq, false),
        |(mut live, seen, ended)| async move {
            if ended {
                return None;
            }
            loop {
                let ev = live.next().await?;
                if ev.seq > seen {
                    let (seen, ended) = (ev.seq, ev.is_final());
                    return Some((ev, (live, seen, ended)));
                }
            }
        },
    )
    .map(move |ev| to_event(&ev));
    Ok(sse(stream.chain(live).boxed()))
}

fn sse(body: futures::stream::BoxStream<'static, Result<Event, Infallible>>) -> Response {
    Sse::new(body)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
