//! Cursor pagination of lists. The body stays a JSON array; `?limit=` sets
//! the page size (at most `api.max_page_size`) and `?cursor=` resumes after
//! the last row of the previous page. The next page is announced in a
//! `Link: <…>; rel="next"` header and in `X-Next-Cursor`; the last page has
//! neither.
//!
//! A cursor is the base64url of the last row's sort key, tagged with its
//! list so that a cursor of another list is refused. Clients treat it as
//! opaque: its content may change between versions.

use crate::ApiError;
use axum::http::{header, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// `?limit=&cursor=` of a list without other parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Longest cursor accepted: keys hold at most a path or a name.
const MAX_CURSOR_CHARS: usize = 16 * 1024;

/// The lists, each with the type of its sort key.
pub(crate) trait List {
    /// Written into every cursor of the list.
    const TAG: &'static str;
    /// The sort key as stored in the cursor.
    type Key: Serialize + DeserializeOwned;
}

/// The page size asked for, or the list's default; outside 1..=`max` is a 422.
pub(crate) fn limit(raw: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match raw {
        None => Ok(default.min(max)),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::Invalid(format!(
            "limit must be between 1 and {max} (api.max_page_size), got {n}; follow the \
             Link or X-Next-Cursor header for more"
        ))),
    }
}

pub(crate) fn decode<L: List>(cursor: Option<&str>) -> Result<Option<L::Key>, ApiError> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::Invalid(format!(
            "cursor is not a cursor of this list; pass the X-Next-Cursor (or the Link) of a \
             previous page of {}, or no cursor for the first page",
            L::TAG
        ))
    };
    if cursor.len() > MAX_CURSOR_CHARS {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let (tag, key): (String, L::Key) = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if tag != L::TAG {
        return Err(invalid());
    }
    Ok(Some(key))
}

pub(crate) fn encode<L: List>(key: &L::Key) -> String {
    let json = serde_json::to_vec(&(L::TAG, key)).expect("sort keys serialize");
    URL_SAFE_NO_PAD.encode(json)
}

/// A page as the API answers it: the items as a JSON array, and the headers
/// that lead to the next page.
pub(crate) struct Paged<T> {
    items: Vec<T>,
    /// The next page's cursor and link.
    next: Option<(String, String)>,
}

impl<T> Paged<T> {
    /// `next` is the cursor of the following page; its link keeps the
    /// request's path and its other parameters (a relative reference,
    /// resolved against the request's URL).
    pub(crate) fn new(uri: &Uri, items: Vec<T>, next: Option<String>) -> Self {
        let next = next.map(|cursor| {
            let mut query: Vec<&str> = uri
                .query()
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty() && p.split('=').next() != Some("cursor"))
                .collect();
            let param = format!("cursor={cursor}");
            query.push(&param);
            let link = format!("<{}?{}>; rel=\"next\"", uri.path(), query.join("&"));
            (cursor, link)
        });
        Self { items, next }
    }
}

impl<T: Serialize> IntoResponse for Paged<T> {
    fn into_response(self) -> Response {
        let mut response = Json(self.items).into_response();
        if let Some((cursor, link)) = self.next {
            // Both are visible ASCII: base64url, and a path and query as
            // the server received them.
            if let (Ok(c), Ok(l)) = (HeaderValue::from_str(&cursor), HeaderValue::from_str(&link)) {
                let headers = response.headers_mut();
                headers.insert("x-next-cursor", c);
                headers.insert(header::LINK, l);
            }
        }
        response
    }
}

pub(crate) struct Memory;
impl List for Memory {
    const TAG: &'static str = "memory";
    type Key = projsync_store::MemoryKey;
}

/// A project's symbols, by qualified name.
pub(crate) struct Symbols;
impl List for Symbols {
    const TAG: &'static str = "symbols";
    type Key = String;
}

pub(crate) struct Projects;
impl List for Projects {
    const TAG: &'static str = "projects";
    type Key = projsync_store::ProjectKey;
}

/// A project's history, by `created_at`: the timestamp goes into the
/// cursor in microseconds, Postgres's precision, so it compares exactly.
pub(crate) struct History;
impl List for History {
    const TAG: &'static str = "history";
    type Key = (i64, projsync_domain::SyncId);
}

/// The ops list, by `updated_at` (microseconds).
pub(crate) struct Ops;
impl List for Ops {
    const TAG: &'static str = "ops";
    type Key = (i64, projsync_domain::SyncId);
}

/// A sync key of the store as a cursor key, and back.
pub(crate) fn sync_key_out(key: &projsync_store::SyncKey) -> (i64, projsync_domain::SyncId) {
    (key.0.timestamp_micros(), key.1)
}

pub(crate) fn sync_key_in(
    key: (i64, projsync_domain::SyncId),
) -> Result<projsync_store::SyncKey, ApiError> {
    chrono::DateTime::from_timestamp_micros(key.0)
        .map(|at| (at, key.1))
        .ok_or_else(|| ApiError::Invalid("cursor is not a cursor of this list".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_are_tied_to_their_list() {
        let key = ("file".to_string(), "src/ä b&c.rs".to_string());
        let c = encode::<Memory>(&key);
        assert!(c
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'));
        assert_eq!(decode::<Memory>(Some(&c)).unwrap(), Some(key));
        assert!(decode::<Projects>(Some(&c)).is_err());
        for bad in ["", "!!", "bm90IGpzb24", &"A".repeat(MAX_CURSOR_CHARS + 1)] {
            assert!(decode::<Memory>(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(decode::<Memory>(None).unwrap(), None);
    }

    #[test]
    fn limits_are_checked() {
        assert_eq!(limit(None, 100, 1000).unwrap(), 100);
        assert_eq!(limit(None, 100, 10).unwrap(), 10);
        assert_eq!(limit(Some(1000), 100, 1000).unwrap(), 1000);
        for bad in [0, -1, 1001] {
            let e = limit(Some(bad), 100, 1000).unwrap_err().to_string();
            assert!(e.contains("between 1 and 1000"), "{e}");
        }
    }

    #[test]
    fn next_link_keeps_other_parameters() {
        let uri: Uri = "/api/v1/syncs?status=failed&cursor=old&limit=5"
            .parse()
            .unwrap();
        let r = Paged::new(&uri, vec![1, 2], Some("NEXT".into())).into_response();
        assert_eq!(r.headers()["x-next-cursor"], "NEXT");
        assert_eq!(
            r.headers()[header::LINK],
            "</api/v1/syncs?status=failed&limit=5&cursor=NEXT>; rel=\"next\""
        );
        let last = Paged::new(&uri, vec![1], None).into_response();
        assert!(last.headers().get(header::LINK).is_none());
        assert!(last.headers().get("x-next-cursor").is_none());
    }
}
