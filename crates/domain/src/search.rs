//! Search vocabulary and the pure parts of ranking: modes, identifier
//! splitting for full-text search over code, reciprocal rank fusion, and
//! the rule that no two results cover overlapping lines of one file.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

crate::phase::string_enum!(
    /// How a search ranks chunks.
    SearchMode {
        Semantic => "semantic",
        Keyword => "keyword",
        Hybrid => "hybrid",
    }
);

// The enum comes from a macro, which has no `#[default]` variant.
#[allow(clippy::derivable_impls)]
impl Default for SearchMode {
    fn default() -> Self {
        SearchMode::Hybrid
    }
}

/// The parts of an identifier: `parse_http_request`, `parseHTTPRequest` and
/// `ParseHttpRequest2` all give `parse`, `http`, `request` (and `2`).
pub fn identifier_parts(ident: &str) -> Vec<String> {
    let mut parts = Vec::new();
    for piece in ident.split(['_', '-', '$']) {
        let chars: Vec<char> = piece.chars().collect();
        let mut current = String::new();
        for (i, &c) in chars.iter().enumerate() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                None => false,
                Some(p) => {
                    (p.is_lowercase() && c.is_uppercase())
                        || (p.is_alphabetic() && c.is_ascii_digit())
                        || (p.is_ascii_digit() && c.is_alphabetic())
                        // HTTPRequest: the R starts a new word
                        || (p.is_uppercase()
                            && c.is_uppercase()
                            && next.is_some_and(|n| n.is_lowercase()))
                }
            };
            if boundary && !current.is_empty() {
                parts.push(std::mem::take(&mut current).to_lowercase());
            }
            current.push(c);
        }
        if !current.is_empty() {
            parts.push(current.to_lowercase());
        }
    }
    parts
}

/// Identifier-like words of `text`.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

/// The text that full-text search indexes for a chunk: the chunk itself,
/// then the parts of every compound identifier in it, so that a search for
/// `request` finds `parseHttpRequest` and `parse_http_request`.
pub fn searchable_text(content: &str) -> String {
    let mut extra: BTreeSet<String> = BTreeSet::new();
    for w in words(content) {
        let parts = identifier_parts(w);
        if parts.len() > 1 {
            extra.extend(parts);
        }
    }
    let mut out = String::with_capacity(content.len() + extra.len() * 8);
    out.push_str(content);
    for p in extra {
        out.push(' ');
        out.push_str(&p);
    }
    out
}

/// The terms one word of a query must match, as `to_tsquery` operands:
/// the parts of a compound identifier (the full-text parser splits
/// `parse_http_request` itself, and `searchable_text` adds the parts of
/// `parseHttpRequest`), plus the whole camelCase word, which the parser
/// keeps as one token. Only `[a-z0-9]` is kept, so no input can break the
/// expression's syntax.
fn word_terms(word: &str) -> Vec<String> {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_lowercase()
    };
    let mut terms: Vec<String> = identifier_parts(word)
        .iter()
        .map(|p| clean(p))
        .filter(|p| !p.is_empty())
        .collect();
    if terms.len() > 1 && !word.contains(['_', '-', '$']) {
        let whole = clean(word);
        if !whole.is_empty() {
            terms.push(whole);
        }
    }
    terms.dedup();
    terms
}

/// `to_tsquery` expressions for a free-text query, from the strictest to
/// the loosest: every word; any two words (for three or more); any term.
/// Search runs them in turn until it has enough results, so the common case
/// ranks only the few chunks that match every word instead of every chunk
/// that shares one term with the query. Empty when the query has no word.
pub fn keyword_queries(query: &str) -> Vec<String> {
    let mut groups: Vec<String> = Vec::new();
    let mut all_terms: BTreeSet<String> = BTreeSet::new();
    for w in words(query) {
        let terms = word_terms(w);
        if terms.is_empty() {
            continue;
        }
        all_terms.extend(terms.iter().cloned());
        let group = match terms.len() {
            1 => terms[0].clone(),
            _ => format!("({})", terms.join(" & ")),
        };
        if !groups.contains(&group) {
            groups.push(group);
        }
        if groups.len() == 16 {
            break;
        }
    }
    if groups.is_empty() {
        return Vec::new();
    }
    let mut tiers = vec![groups.join(" & ")];
    if groups.len() >= 3 {
        let mut pairs = Vec::new();
        for (i, a) in groups.iter().enumerate() {
            for b in &groups[i + 1..] {
                pairs.push(format!("({a} & {b})"));
            }
        }
        tiers.push(pairs.join(" | "));
    }
    if groups.len() >= 2 || all_terms.len() > 1 {
        tiers.push(all_terms.into_iter().collect::<Vec<_>>().join(" | "));
    }
    tiers.dedup();
    tiers
}

/// Reciprocal rank fusion: each list votes `1 / (k + rank)` (rank from 1)
/// for its items. Returns the items with their fused scores, best first.
pub fn reciprocal_rank_fusion<T: Clone + Eq + std::hash::Hash>(
    lists: &[Vec<T>],
    k: f64,
) -> Vec<(T, f64)> {
    let mut scores: HashMap<T, (f64, usize)> = HashMap::new();
    let mut order = 0;
    for list in lists {
        for (rank, item) in list.iter().enumerate() {
            let e = scores.entry(item.clone()).or_insert_with(|| {
                order += 1;
                (0.0, order)
            });
            e.0 += 1.0 / (k + rank as f64 + 1.0);
        }
    }
    let mut out: Vec<(T, f64, usize)> = scores.into_iter().map(|(t, (s, o))| (t, s, o)).collect();
    // Ties keep first-seen order, so the result is deterministic.
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
    out.into_iter().map(|(t, s, _)| (t, s)).collect()
}

/// Something with a line range in a file.
pub trait LineRange {
    fn path(&self) -> &str;
    fn lines(&self) -> (i32, i32);
}

/// Keep results in order, dropping any whose lines overlap a better result
/// of the same file, until `k` are kept.
pub fn without_overlaps<T: LineRange>(ranked: Vec<T>, k: usize) -> Vec<T> {
    let mut kept: Vec<T> = Vec::new();
    for r in ranked {
        if kept.len() >= k {
            break;
        }
        let (s, e) = r.lines();
        let overlaps = kept.iter().any(|o| {
            let (os, oe) = o.lines();
            o.path() == r.path() && s <= oe && os <= e
        });
        if !overlaps {
            kept.push(r);
        }
    }
    kept
}

/// Why semantic ranking could not be used, as the response says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SemanticUnavailable(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_split_on_underscores_and_case() {
        assert_eq!(
            identifier_parts("parse_http_request"),
            ["parse", "http", "request"]
        );
        assert_eq!(
            identifier_parts("parseHTTPRequest"),
            ["parse", "http", "request"]
        );
        assert_eq!(
            identifier_parts("ParseHttpRequest2"),
            ["parse", "http", "request", "2"]
        );
        assert_eq!(identifier_parts("plain"), ["plain"]);
    }

    #[test]
    fn searchable_text_adds_parts_of_compound_identifiers() {
        let t = searchable_text("fn loadUserProfile(user_id: u64)");
        assert!(t.starts_with("fn loadUserProfile(user_id: u64)"));
        for w in ["load", "user", "profile", "id"] {
            assert!(t.split(' ').any(|x| x == w), "{w} in {t}");
        }
    }

    #[test]
    fn keyword_queries_go_from_every_word_to_any_term_and_are_safe() {
        assert_eq!(
            keyword_queries("retryBackoff & 'drop table'!"),
            [
                "(retry & backoff & retrybackoff) & drop & table",
                "((retry & backoff & retrybackoff) & drop) | ((retry & backoff & retrybackoff) & table) | (drop & table)",
                "backoff | drop | retry | retrybackoff | table",
            ]
        );
        // snake_case: the parser splits it, so only its parts are required.
        assert_eq!(
            keyword_queries("parse_http_request"),
            ["(parse & http & request)", "http | parse | request"]
        );
        assert_eq!(keyword_queries("retry"), ["retry"]);
        assert!(keyword_queries("!!! ...").is_empty());
        assert!(keyword_queries("é").is_empty());
    }

    #[test]
    fn rrf_rewards_items_both_lists_agree_on() {
        let fused = reciprocal_rank_fusion(&[vec!["a", "b", "c"], vec!["d", "b", "e"]], 60.0);
        let order: Vec<_> = fused.iter().map(|(t, _)| *t).collect();
        assert_eq!(order[0], "b");
        assert_eq!(order.len(), 5);
    }

    struct R(&'static str, i32, i32);
    impl LineRange for R {
        fn path(&self) -> &str {
            self.0
        }
        fn lines(&self) -> (i32, i32) {
            (self.1, self.2)
        }
    }

    #[test]
    fn overlapping_results_of_one_file_are_dropped() {
        let kept = without_overlaps(
            vec![
                R("a", 10, 20),
                R("a", 18, 30),
                R("b", 10, 20),
                R("a", 21, 25),
            ],
            10,
        );
        let got: Vec<_> = kept.iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(got, [("a", 10), ("b", 10), ("a", 21)]);
        assert_eq!(
            without_overlaps(vec![R("a", 1, 2), R("b", 1, 2)], 1).len(),
            1
        );
    }
}
