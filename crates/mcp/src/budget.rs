//! Bounded answers. An assistant's context window is the scarce resource:
//! no tool answer and no resource is longer than `mcp.max_result_bytes`.
//! What does not fit is left out in whole items where the answer is a list
//! (the caller gets a cursor or is told how to narrow the query), and cut
//! at a character boundary where it is one text (the caller gets the byte
//! offset to continue from). Cut text ends with [`MARKER`], and the
//! answer's `truncated` field says what was left out and how to get it.

use serde_json::Value;

/// The end of every text that was cut.
pub const MARKER: &str = "[… truncated by projsync …]";

/// `doc` as compact JSON within `budget` bytes. When it is longer, items
/// are dropped from the end of the array at `doc[list]`, and `note(shown,
/// total)` goes in `doc["truncated"]`; when not even one item fits, the
/// first item's `content` string is cut (ending with [`MARKER`]). Returns
/// the text and how many items it shows.
pub fn fit_list(
    mut doc: Value,
    list: &str,
    budget: usize,
    note: impl Fn(usize, usize) -> String,
) -> (String, usize) {
    let text = doc.to_string();
    let total = doc[list].as_array().map_or(0, Vec::len);
    if text.len() <= budget {
        return (text, total);
    }
    let items = match doc[list].take() {
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    let render = |doc: &mut Value, n: usize, first: Option<Value>| -> String {
        let mut shown: Vec<Value> = items[..n].to_vec();
        if let Some(first) = first {
            shown[0] = first;
        }
        doc[list] = Value::Array(shown);
        doc["truncated"] = Value::String(note(n, total));
        doc.to_string()
    };
    // The most items that fit: rendering grows with n, so search.
    let (mut lo, mut hi) = (0usize, total);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if render(&mut doc, mid, None).len() <= budget {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    if lo > 0 || total == 0 {
        return (render(&mut doc, lo, None), lo);
    }
    // Not one item fits whole: the first, with its content cut.
    let first = items[0].clone();
    let content = first["content"].as_str().unwrap_or_default().to_string();
    let with = |doc: &mut Value, end: usize| -> String {
        let mut item = first.clone();
        item["content"] = Value::String(format!("{}\n{MARKER}", &content[..end]));
        render(doc, 1, Some(item))
    };
    match longest_prefix(&content, |end| with(&mut doc, end).len() <= budget) {
        Some(end) => (with(&mut doc, end), 1),
        None => {
            // Even the item's other fields are over the budget.
            let mut minimal = serde_json::json!({ list: [] });
            minimal["truncated"] = Value::String(note(0, total));
            (minimal.to_string(), 0)
        }
    }
}

/// The longest prefix of `text`, ending at a character boundary, for which
/// `fits(end)` holds (it must hold for shorter prefixes whenever it holds
/// for a longer one); `None` when not even the empty prefix fits.
pub fn longest_prefix(text: &str, mut fits: impl FnMut(usize) -> bool) -> Option<usize> {
    if !fits(0) {
        return None;
    }
    let (mut lo, mut hi) = (0usize, text.len());
    while lo < hi {
        let mid = floor_boundary(text, (lo + hi).div_ceil(2));
        if mid <= lo {
            // No boundary strictly between: try the next one up.
            let next = ceil_boundary(text, lo + 1);
            if next <= hi && fits(next) {
                lo = next;
                continue;
            }
            break;
        }
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// The largest character boundary at or below `i`.
pub fn floor_boundary(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest character boundary at or above `i`.
pub fn ceil_boundary(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Where to end a window of `text` that may go up to `end`: after the
/// window's last newline, if that keeps at least half of it, so that a
/// continuation starts at a line; otherwise `end`.
pub fn at_line_end(text: &str, start: usize, end: usize) -> usize {
    if end >= text.len() {
        return end;
    }
    match text[start..end].rfind('\n') {
        Some(i) if i + 1 >= (end - start) / 2 => start + i + 1,
        _ => end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_list_keeps_whole_items_and_says_what_was_left_out() {
        let doc = json!({
            "results": (0..50).map(|i| json!({ "path": format!("f{i}.rs"), "content": "x".repeat(100) })).collect::<Vec<_>>()
        });
        let (text, shown) = fit_list(doc, "results", 1000, |n, t| format!("{n} of {t}"));
        assert!(text.len() <= 1000, "{}", text.len());
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["results"].as_array().unwrap().len(), shown);
        assert!(shown > 0 && shown < 50);
        assert_eq!(v["truncated"], format!("{shown} of 50"));
    }

    #[test]
    fn one_long_item_is_cut_at_a_character_boundary_with_the_marker() {
        let doc = json!({ "results": [{ "path": "a", "content": "é€😀\n".repeat(500) }] });
        let (text, shown) = fit_list(doc, "results", 700, |n, t| format!("{n}/{t}"));
        assert_eq!(shown, 1);
        assert!(text.len() <= 700);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(v["results"][0]["content"]
            .as_str()
            .unwrap()
            .ends_with(MARKER));
    }

    #[test]
    fn what_fits_is_left_alone() {
        let doc = json!({ "results": [{ "content": "short" }] });
        let (text, shown) = fit_list(doc.clone(), "results", 1000, |_, _| unreachable!());
        assert_eq!((text, shown), (doc.to_string(), 1));
    }

    #[test]
    fn prefixes_end_at_boundaries() {
        let s = "aé€😀b";
        for budget in 0..=s.len() {
            let end = longest_prefix(s, |e| e <= budget).unwrap();
            assert!(s.is_char_boundary(end));
            assert!(end <= budget);
            assert!(ceil_boundary(s, end + 1) > budget || end == s.len());
        }
        assert_eq!(at_line_end("ab\ncd\nef", 0, 7), 6);
        assert_eq!(at_line_end("abcdefgh\nij", 0, 8), 8);
    }
}
