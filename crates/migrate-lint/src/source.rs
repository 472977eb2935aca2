//! A migration file as the PostgreSQL parser sees it: its statements (with
//! byte spans and lines), its comments, and where it cannot be read.
//!
//! The parser's Rust API drops the position of a syntax error, and the
//! workspace forbids `unsafe` (so no FFI to get it back). The position is
//! recovered with safe calls instead: the file is split into statements at
//! the scanner's `;` tokens, and within a statement that fails, the shortest
//! run of tokens that fails *before* its end ends at the offending token (the
//! grammar is LALR(1): every shorter prefix is a valid start of a statement).

use pg_query::protobuf::Token;
use pg_query::NodeEnum;

/// One parsed statement.
pub(crate) struct Parsed {
    /// Byte span of the statement in the file, from its first token to the
    /// end of its last one (comments around it and the `;` excluded).
    pub start: usize,
    pub end: usize,
    pub node: NodeEnum,
    /// Where the parser's input began in the file: node locations are
    /// relative to it.
    pub base: usize,
}

/// The file, split.
pub(crate) struct Source<'a> {
    pub sql: &'a str,
    pub statements: Vec<Parsed>,
    /// Byte spans of the `--` comments (empty if the file cannot be scanned).
    pub line_comments: Vec<(usize, usize)>,
    /// (byte offset, message) of what cannot be read.
    pub errors: Vec<(usize, String)>,
    /// Whether the scanner could read the file (if not, comments are unknown).
    pub scanned: bool,
}

impl<'a> Source<'a> {
    pub fn read(sql: &'a str) -> Self {
        let mut source = Source {
            sql,
            statements: Vec::new(),
            line_comments: Vec::new(),
            errors: Vec::new(),
            scanned: false,
        };
        if let Some(nul) = sql.find('\0') {
            source.errors.push((
                nul,
                "the file contains a NUL byte: it is not SQL text".into(),
            ));
            return source;
        }
        let scan = match pg_query::scan(sql) {
            Ok(scan) => scan,
            Err(e) => {
                let message = message(&e);
                let offset = lexer_error_offset(sql, &message);
                source.errors.push((
                    offset,
                    format!("cannot read the SQL: {}", shorten(&message)),
                ));
                return source;
            }
        };
        source.scanned = true;
        // (start, end, is `;`) of each token but comments.
        let mut tokens: Vec<(usize, usize, bool)> = Vec::new();
        for t in &scan.tokens {
            let (start, end) = (t.start as usize, t.end as usize);
            if t.token == Token::SqlComment as i32 {
                source.line_comments.push((start, end));
            } else if t.token != Token::CComment as i32 {
                tokens.push((start, end, t.token == Token::Ascii59 as i32));
            }
        }

        if let Ok(parsed) = pg_query::parse(sql, 0) {
            source.push_statements(&tokens, 0, sql.len(), parsed);
            return source;
        }
        // Something does not parse: parse statement by statement (split at
        // the `;` tokens), so the error has a line and the rest is judged.
        // A piece cut short at a `;` that belongs to it (`BEGIN ATOMIC … END`)
        // is joined with the next one.
        let mut pieces: Vec<(usize, usize)> = Vec::new(); // token index ranges
        let mut start = 0;
        for (i, t) in tokens.iter().enumerate() {
            if t.2 {
                if i > start {
                    pieces.push((start, i));
                }
                start = i + 1;
            }
        }
        if tokens.len() > start {
            pieces.push((start, tokens.len()));
        }
        let mut i = 0;
        while i < pieces.len() {
            let mut j = i;
            loop {
                let (first, last) = (pieces[i].0, pieces[j].1);
                let (from, to) = (tokens[first].0, tokens[last - 1].1);
                match pg_query::parse(&sql[from..to], 0) {
                    Ok(parsed) => source.push_statements(&tokens, from, to, parsed),
                    Err(e) if j + 1 < pieces.len() && message(&e).ends_with("at end of input") => {
                        j += 1;
                        continue;
                    }
                    Err(e) => {
                        let at = syntax_error_offset(sql, from, &tokens[first..last]);
                        source.errors.push((
                            at,
                            format!("cannot parse this statement: {}", shorten(&message(&e))),
                        ));
                    }
                }
                break;
            }
            i = j + 1;
        }
        source
    }

    /// Adds the statements parsed from `sql[base..input_end]`.
    fn push_statements(
        &mut self,
        tokens: &[(usize, usize, bool)],
        base: usize,
        input_end: usize,
        parsed: pg_query::ParseResult,
    ) {
        for raw in parsed.protobuf.stmts {
            let from = base + raw.stmt_location.max(0) as usize;
            let to = if raw.stmt_len == 0 {
                input_end
            } else {
                (from + raw.stmt_len as usize).min(input_end)
            };
            let Some(node) = raw.stmt.and_then(|n| n.node) else {
                continue;
            };
            let (start, end) = span(tokens, from, to);
            self.statements.push(Parsed {
                start,
                end,
                node,
                base,
            });
        }
    }

    /// The text of `[start, end)`.
    pub fn text(&self, start: usize, end: usize) -> &'a str {
        &self.sql[start..end]
    }
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(sql: &str, offset: usize) -> usize {
    let offset = offset.min(sql.len());
    1 + sql.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// From the first token at or after `from` to the end of the last token that
/// ends by `to`.
fn span(tokens: &[(usize, usize, bool)], from: usize, to: usize) -> (usize, usize) {
    // Tokens are in order: find the range by bisection.
    let lo = tokens.partition_point(|t| t.0 < from);
    let hi = tokens.partition_point(|t| t.1 <= to).max(lo);
    let mut inside = tokens[lo..hi].iter().filter(|t| !t.2);
    match inside.next() {
        Some(&(start, end, _)) => (start, inside.next_back().map_or(end, |t| t.1)),
        None => (from, from),
    }
}

/// The offset of the token at which a statement stops parsing. `tokens` are
/// the statement's tokens (comments excluded), `from` its start.
fn syntax_error_offset(sql: &str, from: usize, tokens: &[(usize, usize, bool)]) -> usize {
    // Whether the first `k` tokens fail somewhere before their end.
    let fails_inside = |k: usize| match pg_query::parse(&sql[from..tokens[k - 1].1], 0) {
        Ok(_) => false,
        Err(e) => !message(&e).ends_with("at end of input"),
    };
    let n = tokens.len();
    if n == 0 {
        return from;
    }
    if !fails_inside(n) {
        // The statement is cut short: point at its last token.
        return tokens[n - 1].0;
    }
    let (mut lo, mut hi) = (1, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fails_inside(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    tokens[lo - 1].0
}

/// A scanner error says `… at or near "<rest>"`, where the rest runs from
/// the error to the end of an unterminated literal or comment (so to the end
/// of the file), or is the bad token.
fn lexer_error_offset(sql: &str, message: &str) -> usize {
    let near = message
        .split_once("at or near \"")
        .and_then(|(_, rest)| rest.strip_suffix('"'));
    match near {
        Some(near) if !near.is_empty() && sql.ends_with(near) => sql.len() - near.len(),
        Some(near) if !near.is_empty() => sql.find(near).unwrap_or(0),
        _ => 0,
    }
}

pub(crate) fn message(e: &pg_query::Error) -> String {
    match e {
        pg_query::Error::Parse(m) | pg_query::Error::Scan(m) | pg_query::Error::Split(m) => {
            m.clone()
        }
        other => other.to_string(),
    }
}

/// The parser quotes the rest of the input after an unterminated literal:
/// keep the first line, and not much of it.
fn shorten(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    let mut out: String = first.chars().take(100).collect();
    if out.len() < message.len() {
        out.push('…');
        if first.contains("at or near \"") {
            out.push('"');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<(usize, &str)> {
        let s = Source::read(sql);
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        s.statements
            .iter()
            .map(|p| (line_of(sql, p.start), s.text(p.start, p.end)))
            .collect()
    }

    fn errors(sql: &str) -> Vec<(usize, String)> {
        Source::read(sql)
            .errors
            .into_iter()
            .map(|(at, m)| (line_of(sql, at), m))
            .collect()
    }

    #[test]
    fn statements_are_trimmed_of_comments_and_semicolons() {
        let sql = "-- header\n\n  /* c */ SELECT 1;\nSELECT 2 -- trailing\n;\n\nSELECT\n  3 -- end";
        assert_eq!(
            texts(sql),
            vec![(3, "SELECT 1"), (4, "SELECT 2"), (7, "SELECT\n  3")]
        );
    }

    #[test]
    fn comments_are_found_but_not_inside_strings() {
        let sql =
            "-- a\nSELECT '-- not a comment'; -- b\nDO $$ -- not one either\nBEGIN NULL; END $$;";
        let s = Source::read(sql);
        let comments: Vec<&str> = s.line_comments.iter().map(|&(a, b)| &sql[a..b]).collect();
        assert_eq!(comments, vec!["-- a", "-- b"]);
    }

    #[test]
    fn a_syntax_error_is_reported_on_its_line() {
        let sql =
            "SELECT 1;\nALTER TABLE t\n  ADD COLUMN x int,\n  ALTER x SET DEFALT 0;\nSELECT 2;";
        let e = errors(sql);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, 4);
        assert!(
            e[0].1.contains("syntax error at or near \"DEFALT\""),
            "{}",
            e[0].1
        );
    }

    #[test]
    fn the_statements_around_a_bad_one_are_still_read() {
        let sql = "SELECT 1;\nALTER TABEL t ADD COLUMN x int;\nSELECT 2;\nSELECT 3 -- end";
        let s = Source::read(sql);
        let texts: Vec<&str> = s
            .statements
            .iter()
            .map(|p| s.text(p.start, p.end))
            .collect();
        assert_eq!(texts, vec!["SELECT 1", "SELECT 2", "SELECT 3"]);
        assert_eq!(s.errors.len(), 1);
        assert_eq!(line_of(sql, s.errors[0].0), 2);
    }

    #[test]
    fn lines_count_bytes_not_characters() {
        // Multibyte characters before the error, on earlier lines and on its own.
        let sql = "-- é, ü, 日本語\nCOMMENT ON TABLE t IS 'été';\nSELECT 'ß' FORM t;";
        assert_eq!(errors(sql)[0].0, 3);
        let sql = "SELECT '日本語日本語日本語日本語日本語日本語日本語日本語日本語日本語',\n 2 3;";
        assert_eq!(errors(sql)[0].0, 2);
    }

    #[test]
    fn a_statement_cut_short_points_at_its_last_token() {
        let e = errors("SELECT 1;\nCREATE TABLE t (\n  a int,\n");
        assert_eq!(e[0].0, 3);
        assert!(e[0].1.contains("at end of input"), "{}", e[0].1);
    }

    #[test]
    fn lexer_errors_are_located() {
        let e = errors("SELECT 1;\nSELECT 2;\nSELECT 'unterminated\nand more\nand more");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, 3);
        assert!(
            e[0].1
                .starts_with("cannot read the SQL: unterminated quoted string"),
            "{}",
            e[0].1
        );
        assert!(
            e[0].1.len() < 140,
            "the rest of the file is not quoted: {}",
            e[0].1
        );

        let e = errors("SELECT 1;\n\nSELECT 1x;");
        assert_eq!(e[0].0, 3);
        let e = errors("SELECT 1;\n/* never closed\nSELECT 2;");
        assert_eq!(e[0].0, 2);
        let e = errors("SELECT 1;\nSELECT $$ never closed;");
        assert_eq!(e[0].0, 2);
    }

    #[test]
    fn a_statement_with_semicolons_inside_survives_an_error_elsewhere() {
        let sql = "CREATE PROCEDURE p() BEGIN ATOMIC\n  SELECT 1;\n  SELECT 2;\nEND;\nSELECT * FORM t;\nSELECT 3;";
        let s = Source::read(sql);
        let errors: Vec<usize> = s.errors.iter().map(|e| line_of(sql, e.0)).collect();
        assert_eq!(errors, vec![5]);
        let starts: Vec<usize> = s.statements.iter().map(|p| line_of(sql, p.start)).collect();
        assert_eq!(starts, vec![1, 6]);
        // A statement cut short by a stray `;` is reported where it breaks.
        let sql = "SELECT 1;\nCREATE TABLE t (a int;\nSELECT 2;";
        assert_eq!(errors_of(sql), vec![2]);
    }

    fn errors_of(sql: &str) -> Vec<usize> {
        Source::read(sql)
            .errors
            .iter()
            .map(|e| line_of(sql, e.0))
            .collect()
    }

    #[test]
    fn a_nul_byte_is_an_error() {
        assert_eq!(errors("SELECT 1;\nSELECT\0 2;")[0].0, 2);
    }

    #[test]
    fn empty_and_comment_only_files_have_no_statements() {
        assert!(texts("").is_empty());
        assert!(texts("-- nothing\n/* here */\n").is_empty());
    }
}
