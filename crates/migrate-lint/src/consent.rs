//! Consent lines: `-- projsync: allow-destructive <table>[.<column>] because <reason>`.
//!
//! Only real `--` comments count (the scanner finds them, so a string or a
//! function body that contains the words is not a consent). Any `projsync:`
//! comment that is not a well-formed consent is an error, so a typo cannot
//! silently fail to consent, or consent to something else.

use crate::protection::parse_object;
use crate::report::Consent;
use crate::source::{line_of, Source};

const PREFIX: &str = "projsync:";
const DIRECTIVE: &str = "allow-destructive";
const USAGE: &str = "write `-- projsync: allow-destructive <table>[.<column>] because <reason>`";

/// The consents of a file, and the errors of its malformed `projsync:` lines.
pub(crate) fn consents(source: &Source<'_>) -> (Vec<Consent>, Vec<(usize, String)>) {
    let comments: Vec<(usize, &str)> = if source.scanned {
        source
            .line_comments
            .iter()
            .map(|&(start, end)| (line_of(source.sql, start), &source.sql[start..end]))
            .collect()
    } else {
        // The file cannot be scanned (it is refused anyway): read the lines
        // that start with a comment, so its consents are still reported.
        source
            .sql
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim_start().starts_with("--"))
            .map(|(i, l)| (i + 1, l.trim_start()))
            .collect()
    };
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for (line, comment) in comments {
        let body = comment.trim_start_matches('-').trim();
        let is_directive = body
            .get(..PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX));
        if !is_directive {
            continue;
        }
        match parse(&body[PREFIX.len()..]) {
            Ok((object, reason)) => found.push(Consent {
                object,
                reason,
                line,
            }),
            Err(e) => errors.push((line, format!("malformed consent line: {e}"))),
        }
    }
    (found, errors)
}

/// Parses what follows `projsync:`.
fn parse(rest: &str) -> Result<(String, String), String> {
    let rest = rest.trim_start();
    let (directive, rest) = split_word(rest);
    if directive.is_empty() {
        return Err(format!("no directive; {USAGE}"));
    }
    if directive != DIRECTIVE {
        return Err(format!("unknown directive `{directive}`; {USAGE}"));
    }
    let (object, rest) = split_word(rest);
    if object.is_empty() {
        return Err(format!("no object named; {USAGE}"));
    }
    let (table, column) = parse_object(object).map_err(|e| format!("{e}; {USAGE}"))?;
    let (because, reason) = split_word(rest);
    if because != "because" {
        return Err(format!(
            "`because <reason>` is missing after `{object}`; {USAGE}"
        ));
    }
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(format!("the reason after `because` is empty; {USAGE}"));
    }
    let object = match column {
        Some(column) => format!("{table}.{column}"),
        None => table,
    };
    Ok((object, reason.to_string()))
}

/// The first whitespace-separated word, and what follows it.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(sql: &str) -> (Vec<Consent>, Vec<(usize, String)>) {
        consents(&Source::read(sql))
    }

    #[test]
    fn a_consent_names_an_object_and_a_reason() {
        let sql = "SELECT 1;\n-- projsync: allow-destructive public.Embeddings.embedding because  re-embedded in 0007 \n";
        let (found, errors) = read(sql);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            found,
            vec![Consent {
                object: "embeddings.embedding".into(),
                reason: "re-embedded in 0007".into(),
                line: 2
            }]
        );
    }

    #[test]
    fn consents_may_sit_anywhere_and_after_code() {
        let sql = "DROP TABLE old_notes; -- projsync: allow-destructive old_notes because replaced by notes\n\
                   SELECT 1;\n--projsync: allow-destructive projects because merged";
        let (found, errors) = read(sql);
        assert!(errors.is_empty(), "{errors:?}");
        let objects: Vec<(&str, usize)> =
            found.iter().map(|c| (c.object.as_str(), c.line)).collect();
        assert_eq!(objects, vec![("old_notes", 1), ("projects", 3)]);
    }

    #[test]
    fn malformed_lines_are_errors() {
        for (line, expected) in [
            (
                "-- projsync: allow-destructive embeddings",
                "`because <reason>` is missing",
            ),
            (
                "-- projsync: allow-destructive embeddings because",
                "reason after `because` is empty",
            ),
            (
                "-- projsync: allow-destructive embeddings because   ",
                "reason after `because` is empty",
            ),
            (
                "-- projsync: allow-destructive embeddings since it is old",
                "`because <reason>` is missing",
            ),
            (
                "-- projsync: allow-destroy embeddings because x",
                "unknown directive `allow-destroy`",
            ),
            ("-- projsync:", "no directive"),
            ("-- projsync: allow-destructive", "no object named"),
            (
                "-- projsync: allow-destructive a.b.c because x",
                "not a protected object",
            ),
            (
                "-- PROJSYNC: Allow-Destructive embeddings because x",
                "unknown directive",
            ),
        ] {
            let (found, errors) = read(&format!("SELECT 1;\n{line}\n"));
            assert!(found.is_empty(), "{line}");
            assert_eq!(errors.len(), 1, "{line}");
            assert_eq!(errors[0].0, 2);
            assert!(errors[0].1.contains(expected), "{line}: {}", errors[0].1);
        }
    }

    #[test]
    fn other_comments_and_strings_are_not_consents() {
        let sql = "-- projsync ledger, first cut.\n\
                   SELECT '-- projsync: allow-destructive embeddings because in a string';\n\
                   DO $$ BEGIN -- projsync: allow-destructive embeddings because in a body\nNULL; END $$;\n\
                   /* projsync: allow-destructive embeddings because in a block comment */";
        let (found, errors) = read(sql);
        assert!(found.is_empty(), "{found:?}");
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn consents_are_still_read_when_the_file_cannot_be_scanned() {
        let sql = "-- projsync: allow-destructive embeddings because gone\nSELECT 'unterminated";
        let (found, errors) = read(sql);
        assert!(errors.is_empty());
        assert_eq!(found[0].object, "embeddings");
    }
}
