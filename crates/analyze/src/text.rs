//! Small text helpers shared by the languages: lines, signatures, comment
//! markers.

use tree_sitter::Node;

/// 1-based first line of a node.
pub(crate) fn start_line(node: Node<'_>) -> u32 {
    node.start_position().row as u32 + 1
}

/// 1-based last line of a node. Some nodes (line comments, preprocessor
/// lines) end with their newline, at column 0 of the next row; that row is
/// not theirs.
pub(crate) fn end_line(node: Node<'_>) -> u32 {
    let end = node.end_position();
    if end.column == 0 && end.row > node.start_position().row {
        end.row as u32
    } else {
        end.row as u32 + 1
    }
}

/// Collapse runs of whitespace to one space and cut to `max` characters,
/// marking the cut with `…`.
pub(crate) fn collapse(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 4));
    let mut chars = 0usize;
    for word in text.split_whitespace() {
        if chars > 0 {
            out.push(' ');
            chars += 1;
        }
        for c in word.chars() {
            if chars >= max {
                out.push('…');
                return out;
            }
            out.push(c);
            chars += 1;
        }
    }
    out
}

/// Cut to `max` characters, marking the cut with `…`.
pub(crate) fn bound(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => {
            let mut cut = text[..at].to_string();
            cut.push('…');
            cut
        }
        None => text,
    }
}

/// A declaration's signature: its text from `start` up to `end` (the body,
/// or the end of the declaration), collapsed, without the punctuation that
/// opens a body or ends a statement.
pub(crate) fn signature(src: &str, start: usize, end: usize) -> String {
    let text = src[start..end.max(start)].trim_end();
    let text = text.trim_end_matches([';', ':', '{', '=']).trim_end();
    collapse(text, crate::SIGNATURE_MAX_CHARS)
}

/// Where a constant's signature ends: after its value when that fits on
/// one line (`const MAX: usize = 64`), before it when the value is a table
/// over many lines.
pub(crate) fn value_cut(src: &str, end: usize, value: Option<Node<'_>>) -> usize {
    match value {
        Some(v) if src[v.byte_range()].contains('\n') => v.start_byte(),
        _ => end,
    }
}

/// The text of a `/* … */`, `/** … */` or `/*! … */` comment without the
/// markers and the `*` that starts each inner line.
pub(crate) fn clean_block_comment(text: &str) -> String {
    let inner = text
        .strip_prefix("/**")
        .or_else(|| text.strip_prefix("/*!"))
        .or_else(|| text.strip_prefix("/*"))
        .unwrap_or(text);
    let inner = inner.strip_suffix("*/").unwrap_or(inner);
    let lines: Vec<&str> = inner
        .lines()
        .map(|line| {
            let t = line.trim_start();
            match t.strip_prefix('*') {
                Some(rest) => rest.strip_prefix(' ').unwrap_or(rest),
                None => t,
            }
            .trim_end()
        })
        .collect();
    join_trimmed(&lines)
}

/// Lines of `//`-style comments (or `#`) without `marker` and one space.
pub(crate) fn clean_line_comments<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    markers: &[&str],
) -> String {
    let lines: Vec<&str> = lines
        .into_iter()
        .map(|line| {
            let t = line.trim();
            let rest = markers.iter().find_map(|m| t.strip_prefix(m)).unwrap_or(t);
            rest.strip_prefix(' ').unwrap_or(rest).trim_end()
        })
        .collect();
    join_trimmed(&lines)
}

/// Like Python's `inspect.cleandoc`: the first line stripped, the rest
/// dedented by their common indentation.
pub(crate) fn clean_docstring(text: &str) -> String {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("").trim();
    let rest: Vec<&str> = lines.collect();
    let indent = rest
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut all = vec![first];
    all.extend(
        rest.iter()
            .map(|l| l.get(indent..).unwrap_or("").trim_end()),
    );
    join_trimmed(&all)
}

/// Join lines, dropping blank lines at both ends; `None`-worthy results are
/// empty strings.
fn join_trimmed(lines: &[&str]) -> String {
    let start = lines.iter().position(|l| !l.trim().is_empty());
    let end = lines.iter().rposition(|l| !l.trim().is_empty());
    match (start, end) {
        (Some(s), Some(e)) => lines[s..=e].join("\n"),
        _ => String::new(),
    }
}

/// A doc that is empty after cleaning is no doc; a long one is cut.
pub(crate) fn doc(text: String) -> Option<String> {
    if text.trim().is_empty() {
        None
    } else {
        Some(bound(text, crate::DOC_MAX_CHARS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapse_cuts_with_a_marker() {
        assert_eq!(collapse("fn  a(\n  x: u8,\n)", 100), "fn a( x: u8, )");
        assert_eq!(collapse("abcdef", 3), "abc…");
    }

    #[test]
    fn block_comments_lose_their_stars() {
        assert_eq!(
            clean_block_comment("/**\n * One.\n *\n * Two.\n */"),
            "One.\n\nTwo."
        );
        assert_eq!(clean_block_comment("/** Opens. */"), "Opens.");
    }

    #[test]
    fn docstrings_are_dedented() {
        assert_eq!(
            clean_docstring("Sum.\n\n    Args:\n      x: one\n    "),
            "Sum.\n\nArgs:\n  x: one"
        );
    }
}
