//! Cutting an entry's text into chunks a model can take whole.
//!
//! Chunks are runs of whole lines whose token count (by the model's own
//! tokenizer) stays under the model's limit, so nothing is silently cut off
//! when embedding. A chunk ends, where it can, at a blank line or before a
//! top-level declaration, so that a function or a section tends to land in
//! one chunk. Consecutive chunks share a line or two of overlap, so a
//! question about the seam still finds one of them. Only a single line longer
//! than the limit is split inside the line.

use crate::TokenCounter;
use std::borrow::Cow;

/// How to cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkOptions {
    /// Content tokens a chunk may hold (the model's limit, without special
    /// tokens).
    pub max_tokens: usize,
    /// Lines of the previous chunk repeated at the start of the next one.
    pub overlap_lines: usize,
}

impl ChunkOptions {
    pub fn new(max_tokens: usize) -> Self {
        Self {
            max_tokens: max_tokens.max(8),
            overlap_lines: 2,
        }
    }
}

/// One chunk of an entry: lines `start_line..=end_line` (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub start_line: u32,
    pub end_line: u32,
    pub content: String,
    pub token_count: usize,
}

/// A piece of the text no larger than the limit: a whole line, or part of
/// one that was too long.
struct Unit<'a> {
    line: u32,
    text: Cow<'a, str>,
    tokens: usize,
    blank: bool,
    /// How good a place the start of this unit is to begin a chunk.
    boundary: u8,
}

/// Cut `text` into chunks. An empty or whitespace-only text has none.
/// Memory stays proportional to the text (one small record per line).
pub fn chunk_text(text: &str, counter: &dyn TokenCounter, opts: &ChunkOptions) -> Vec<Chunk> {
    if text.trim().is_empty() {
        return Vec::new();
    }
    let max = opts.max_tokens.max(1);
    let units = units(text, counter, max);
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < units.len() {
        // Skip leading blank lines: a chunk starts with content.
        while start < units.len() && units[start].blank {
            start += 1;
        }
        if start >= units.len() {
            break;
        }
        // Take units while they fit.
        let mut clean_cut = false;
        let mut end = start;
        let mut tokens = 0;
        while end < units.len() && (end == start || tokens + units[end].tokens <= max) {
            tokens += units[end].tokens;
            end += 1;
        }
        if end < units.len() {
            // Not the last chunk: prefer to end before a good boundary in
            // the second half of the chunk.
            let half = tokens / 2;
            let mut acc = 0;
            let mut best: Option<(u8, usize)> = None;
            for (i, u) in units.iter().enumerate().take(end).skip(start + 1) {
                acc += units[i - 1].tokens;
                if acc >= half && u.boundary > 0 && best.is_none_or(|(b, _)| u.boundary >= b) {
                    best = Some((u.boundary, i));
                }
            }
            if let Some((_, i)) = best {
                end = i;
                clean_cut = true;
            }
        }
        let body = &units[start..end];
        let last_content = body.iter().rposition(|u| !u.blank).unwrap_or(0);
        let body = &body[..=last_content];
        let mut content = String::new();
        for u in body {
            content.push_str(&u.text);
        }
        let content = content.trim_end_matches(['\n', '\r']).to_string();
        chunks.push(Chunk {
            start_line: body[0].line,
            end_line: body[body.len() - 1].line,
            token_count: body.iter().map(|u| u.tokens).sum(),
            content,
        });
        if end >= units.len() {
            break;
        }
        // A cut inside a block repeats its last few lines in the next chunk
        // (a cut at a blank line or a declaration needs no overlap), but the
        // next chunk always moves on.
        let mut next = end;
        let (mut back, mut overlap_tokens) = (0, 0);
        while !clean_cut && back < opts.overlap_lines && next > start + 1 {
            let u = &units[next - 1];
            if overlap_tokens + u.tokens > max / 4 {
                break;
            }
            overlap_tokens += u.tokens;
            next -= 1;
            if !u.blank {
                back += 1;
            }
        }
        start = next.max(start + 1);
    }
    chunks
}

fn units<'a>(text: &'a str, counter: &dyn TokenCounter, max: usize) -> Vec<Unit<'a>> {
    let mut out = Vec::new();
    let mut prev_blank = true;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let n = (i + 1) as u32;
        let blank = line.trim().is_empty();
        let boundary = if blank {
            0
        } else if top_level_declaration(line) {
            if prev_blank {
                3
            } else {
                2
            }
        } else if prev_blank {
            2
        } else {
            0
        };
        prev_blank = blank;
        let tokens = if blank { 0 } else { counter.count_tokens(line) };
        if tokens <= max {
            out.push(Unit {
                line: n,
                text: Cow::Borrowed(line),
                tokens,
                blank,
                boundary,
            });
            continue;
        }
        // A line longer than the limit: cut it into pieces that fit.
        let mut rest: &str = line;
        let mut first = true;
        while !rest.is_empty() {
            let piece_len = fitting_prefix(counter, rest, max);
            let mut piece_len = piece_len;
            if piece_len == 0 {
                // The counter could not fit even one token: take one char.
                piece_len = rest.chars().next().map_or(rest.len(), char::len_utf8);
            }
            let piece = &rest[..piece_len];
            out.push(Unit {
                line: n,
                text: Cow::Borrowed(piece),
                tokens: counter.count_tokens(piece).min(max),
                blank: piece.trim().is_empty(),
                boundary: if first { boundary } else { 0 },
            });
            first = false;
            rest = &rest[piece_len..];
        }
    }
    out
}

/// The length of the longest prefix of `text` that fits in `max` tokens.
/// The tokenizer sees a window a few times the size of what fits, not the
/// whole rest of a megabyte-long minified line, so cutting such a line is
/// linear in its length instead of quadratic.
fn fitting_prefix(counter: &dyn TokenCounter, text: &str, max: usize) -> usize {
    let mut window = max.saturating_mul(8).max(64);
    loop {
        let mut end = window.min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        let (piece, cut) = counter.truncate(&text[..end], max);
        if cut || end == text.len() {
            return piece.len();
        }
        window = window.saturating_mul(4);
    }
}

/// A line that starts a top-level item in common languages, or a heading.
fn top_level_declaration(line: &str) -> bool {
    if line.starts_with(char::is_whitespace) {
        return false;
    }
    const STARTS: &[&str] = &[
        "fn ",
        "pub ",
        "pub(",
        "impl",
        "struct ",
        "enum ",
        "trait ",
        "mod ",
        "type ",
        "const ",
        "static ",
        "#[",
        "class ",
        "def ",
        "async ",
        "func ",
        "function ",
        "export ",
        "interface ",
        "package ",
        "module ",
        "@",
        "# ",
        "## ",
        "### ",
        "CREATE ",
        "create ",
        "---",
    ];
    STARTS.iter().any(|s| line.starts_with(s))
}

/// A conservative token count for when no tokenizer is at hand: one token
/// per three bytes, rounded up (code averages three to four bytes a token).
#[derive(Debug, Clone, Copy, Default)]
pub struct EstimateCounter;

impl TokenCounter for EstimateCounter {
    fn count_tokens(&self, text: &str) -> usize {
        text.len().div_ceil(3)
    }

    fn truncate<'a>(&self, text: &'a str, max_tokens: usize) -> (Cow<'a, str>, bool) {
        let max_bytes = max_tokens.saturating_mul(3);
        if text.len() <= max_bytes {
            return (Cow::Borrowed(text), false);
        }
        let mut cut = max_bytes;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        (Cow::Borrowed(&text[..cut]), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One token per whitespace-separated word, like WordPiece on plain words.
    struct Words;
    impl TokenCounter for Words {
        fn count_tokens(&self, text: &str) -> usize {
            text.split_whitespace().count()
        }
        fn truncate<'a>(&self, text: &'a str, max: usize) -> (Cow<'a, str>, bool) {
            let mut seen = 0;
            for (i, _) in text.match_indices(|c: char| !c.is_whitespace()) {
                let at_word_start = i == 0 || text[..i].ends_with(char::is_whitespace);
                if at_word_start {
                    if seen == max {
                        return (Cow::Borrowed(&text[..i]), true);
                    }
                    seen += 1;
                }
            }
            (Cow::Borrowed(text), false)
        }
    }

    fn opts(max: usize) -> ChunkOptions {
        ChunkOptions {
            max_tokens: max,
            overlap_lines: 1,
        }
    }

    #[test]
    fn empty_and_blank_texts_have_no_chunks() {
        assert!(chunk_text("", &Words, &opts(10)).is_empty());
        assert!(chunk_text("  \n\n\t\n", &Words, &opts(10)).is_empty());
    }

    #[test]
    fn a_small_text_is_one_chunk_with_its_line_range() {
        let c = chunk_text("\n\nfn main() {\n    run();\n}\n\n", &Words, &opts(50));
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].start_line, c[0].end_line), (3, 5));
        assert_eq!(c[0].content, "fn main() {\n    run();\n}");
        assert_eq!(c[0].token_count, 5);
    }

    #[test]
    fn chunks_fit_the_limit_and_cover_every_line() {
        let text: String = (1..=200)
            .map(|i| format!("word{i} a b c\n"))
            .collect::<String>();
        let c = chunk_text(&text, &Words, &opts(30));
        assert!(c.len() > 20);
        for ch in &c {
            assert!(ch.token_count <= 30, "{ch:?}");
            assert_eq!(Words.count_tokens(&ch.content), ch.token_count);
        }
        // Every line is in some chunk, and chunks go forward.
        let mut covered = vec![false; 201];
        for w in c.windows(2) {
            assert!(w[1].start_line > w[0].start_line);
            assert!(w[1].start_line <= w[0].end_line + 1);
        }
        for ch in &c {
            for l in ch.start_line..=ch.end_line {
                covered[l as usize] = true;
            }
        }
        assert!(covered[1..].iter().all(|c| *c));
    }

    #[test]
    fn consecutive_chunks_overlap_by_a_line() {
        let text: String = (1..=40).map(|i| format!("l{i} x y\n")).collect();
        let c = chunk_text(&text, &Words, &opts(15));
        assert!(c.len() > 1, "{c:?}");
        assert_eq!(c[1].start_line, c[0].end_line, "{c:?}");
    }

    #[test]
    fn prefers_to_cut_at_blank_lines_and_declarations() {
        let mut text = String::new();
        for f in 0..6 {
            text.push_str(&format!(
                "fn f{f}() {{\n    one two three\n    four five\n}}\n\n"
            ));
        }
        // Each function is 2 + 3 + 2 + 1 = 8 tokens; 20 fit two of them.
        let c = chunk_text(&text, &Words, &opts(20));
        assert!(c.len() >= 3);
        for ch in &c {
            assert!(ch.content.starts_with("fn "), "{ch:?}");
            assert!(ch.content.ends_with('}'), "{ch:?}");
        }
    }

    #[test]
    fn a_line_longer_than_the_limit_is_split_inside_the_line() {
        let long: String = (0..100).map(|i| format!("w{i} ")).collect();
        let text = format!("short line\n{long}\nend\n");
        let c = chunk_text(&text, &Words, &opts(25));
        assert!(c.iter().all(|ch| ch.token_count <= 25), "{c:?}");
        assert!(c.iter().any(|ch| ch.start_line == 2 && ch.end_line == 2));
        let words: usize = c
            .iter()
            .filter(|ch| ch.start_line == 2 && ch.end_line == 2)
            .map(|ch| ch.token_count)
            .sum();
        assert!(words >= 100);
    }

    /// Words, and the longest text it was ever given.
    struct Watching(std::sync::atomic::AtomicUsize);
    impl TokenCounter for Watching {
        fn count_tokens(&self, text: &str) -> usize {
            Words.count_tokens(text)
        }
        fn truncate<'a>(&self, text: &'a str, max: usize) -> (Cow<'a, str>, bool) {
            self.0
                .fetch_max(text.len(), std::sync::atomic::Ordering::Relaxed);
            Words.truncate(text, max)
        }
    }

    #[test]
    fn a_megabyte_line_is_cut_in_bounded_windows() {
        let line: String = (0..200_000)
            .map(|i| format!("value{} ", i % 1000))
            .collect();
        assert!(line.len() > 1_000_000);
        let counter = Watching(Default::default());
        let c = chunk_text(&line, &counter, &opts(100));
        assert!(c.iter().all(|ch| ch.token_count <= 100));
        assert_eq!(c.iter().map(|ch| ch.token_count).sum::<usize>(), 200_000);
        // The tokenizer never saw more than a small window at once.
        let widest = counter.0.load(std::sync::atomic::Ordering::Relaxed);
        assert!(widest <= 100 * 8 * 4, "{widest}");
    }

    #[test]
    fn estimate_counter_truncates_on_char_boundaries() {
        let (t, cut) = EstimateCounter.truncate("ééééé", 1);
        assert!(cut);
        assert_eq!(t, "é");
        assert_eq!(EstimateCounter.count_tokens("abcd"), 2);
    }
}
