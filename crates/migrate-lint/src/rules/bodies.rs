//! Statements inside `DO` blocks and function bodies.
//!
//! A `DO` block runs during the migration; a function runs when something
//! calls it (the migration, a trigger, the application). Their bodies are
//! strings to the parser: PL/pgSQL bodies are read with the PL/pgSQL parser,
//! and each SQL statement in them is judged like a top-level one (reported
//! on the `DO` or `CREATE FUNCTION` statement, with the body's line). SQL
//! functions are parsed as SQL. `EXECUTE` of a string built at run time is
//! opaque: a warning says it cannot be checked.

use pg_query::protobuf::DefElem;
use pg_query::NodeEnum;
use serde_json::Value;

use super::{check as check_statement, Ctx, Finding};
use crate::source::{line_of, message};

/// Bodies within bodies within bodies: enough.
const MAX_DEPTH: usize = 4;

pub(super) fn check(
    node: &NodeEnum,
    text: &str,
    base: Option<usize>,
    ctx: &mut Ctx<'_>,
    out: &mut Vec<Finding>,
    depth: usize,
) {
    match node {
        NodeEnum::DoStmt(s) => {
            let options = def_elems(&s.args);
            let language = string_option(&options, "language").unwrap_or_else(|| "plpgsql".into());
            let body_line = body_line(&options, base, ctx);
            let label = "in the DO block";
            if language == "plpgsql" {
                plpgsql(text, label, body_line, ctx, out, depth);
            } else {
                out.push(unreadable(label, &language));
            }
        }
        NodeEnum::CreateFunctionStmt(f) => {
            let options = def_elems(&f.options);
            let name = f
                .funcname
                .iter()
                .filter_map(|n| match &n.node {
                    Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(".");
            let label = format!(
                "in {} {name}",
                if f.is_procedure {
                    "procedure"
                } else {
                    "function"
                }
            );
            let language = string_option(&options, "language").unwrap_or_else(|| {
                if f.sql_body.is_some() {
                    "sql".into()
                } else {
                    String::new()
                }
            });
            let body_line = body_line(&options, base, ctx);
            match language.as_str() {
                "plpgsql" => plpgsql(text, &label, body_line, ctx, out, depth),
                "sql" => {
                    if let Some(body) = &f.sql_body {
                        // BEGIN ATOMIC … END: already parsed, one list per statement.
                        for statement in atomic_statements(body) {
                            for finding in check_statement(statement, "", None, ctx, depth + 1) {
                                out.push(finding.within(&label));
                            }
                        }
                    } else if let Some(body) = body_string(&options) {
                        sql(&body, &label, body_line, ctx, out, depth);
                    }
                }
                "c" | "internal" | "" => {}
                other => out.push(unreadable(&label, other)),
            }
        }
        _ => {}
    }
}

fn unreadable(label: &str, language: &str) -> Finding {
    Finding::Warning(format!(
        "{label}: the guard cannot read language {language}, so what it runs is not checked: review it by hand"
    ))
}

/// Judges each statement of a SQL string. `first_line` is the line of the
/// string's first character in the file, when known.
fn sql(
    body: &str,
    label: &str,
    first_line: Option<usize>,
    ctx: &mut Ctx<'_>,
    out: &mut Vec<Finding>,
    depth: usize,
) {
    if depth >= MAX_DEPTH {
        out.push(Finding::Warning(format!(
            "{label}: nested too deep to check"
        )));
        return;
    }
    let parsed = match pg_query::parse(body, 0) {
        Ok(parsed) => parsed,
        Err(e) => {
            out.push(Finding::Warning(format!(
                "{label}: cannot parse `{}` ({}), so it was not checked",
                excerpt(body),
                message(&e)
            )));
            return;
        }
    };
    for raw in &parsed.protobuf.stmts {
        let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
            continue;
        };
        let start = (raw.stmt_location.max(0) as usize).min(body.len());
        let end = if raw.stmt_len == 0 {
            body.len()
        } else {
            (start + raw.stmt_len as usize).min(body.len())
        };
        let text = body[start..end].trim();
        let label = match first_line {
            Some(line) => format!("{label}, line {}", line + line_of(body, start) - 1),
            None => label.to_string(),
        };
        for finding in check_statement(node, text, None, ctx, depth + 1) {
            out.push(finding.within(&label));
        }
    }
}

/// Judges the SQL statements of a PL/pgSQL body (`text` is the whole `DO` or
/// `CREATE FUNCTION` statement).
fn plpgsql(
    text: &str,
    label: &str,
    body_line: Option<usize>,
    ctx: &mut Ctx<'_>,
    out: &mut Vec<Finding>,
    depth: usize,
) {
    let parsed = pg_query::parse_plpgsql(text).or_else(|e| {
        // libpg_query cannot render a trigger function's tree (its JSON
        // breaks on the trigger variables); the same body parses as a
        // function of a plain type, with the same lines, which is all the
        // walk needs.
        as_plain_function(text)
            .and_then(|plain| pg_query::parse_plpgsql(&plain).ok())
            .ok_or(e)
    });
    match parsed {
        Ok(tree) => walk(&tree, None, label, body_line, ctx, out, depth),
        Err(e) => out.push(Finding::Warning(format!(
            "{label}: the PL/pgSQL body cannot be parsed ({}), so it was not checked",
            message(&e)
        ))),
    }
}

/// `text` (a `CREATE FUNCTION … RETURNS trigger` statement) as a function
/// returning `integer`; `None` when it does not return `trigger`.
fn as_plain_function(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let at = lower.find("returns trigger")?;
    let end = at + "returns trigger".len();
    // A whole word: not `returns triggers_table` or the like.
    if lower[end..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some(format!("{}RETURNS integer{}", &text[..at], &text[end..]))
}

/// Walks the PL/pgSQL tree (JSON from libpg_query): every statement-level SQL
/// expression (parse mode 0: `PLpgSQL_stmt_execsql`, `RETURN QUERY`, `FOR …
/// IN SELECT`, `PERFORM`) is judged; dynamic SQL is reported.
fn walk(
    value: &Value,
    lineno: Option<u64>,
    label: &str,
    body_line: Option<usize>,
    ctx: &mut Ctx<'_>,
    out: &mut Vec<Finding>,
    depth: usize,
) {
    match value {
        Value::Object(map) => {
            let lineno = map.get("lineno").and_then(Value::as_u64).or(lineno);
            let here = match (body_line, lineno) {
                (Some(first), Some(n)) => format!("{label}, line {}", first + n as usize - 1),
                _ => label.to_string(),
            };
            for (key, child) in map {
                match key.as_str() {
                    "PLpgSQL_stmt_dynexecute" | "PLpgSQL_stmt_dynfors" => {
                        let line = child.get("lineno").and_then(Value::as_u64).or(lineno);
                        let here = match (body_line, line) {
                            (Some(first), Some(n)) => {
                                format!("{label}, line {}", first + n as usize - 1)
                            }
                            _ => label.to_string(),
                        };
                        dynamic(child.get("query"), &here, ctx, out, depth);
                    }
                    "dynquery" => dynamic(Some(child), &here, ctx, out, depth),
                    "PLpgSQL_expr" if child.get("parseMode").and_then(Value::as_u64) == Some(0) => {
                        if let Some(query) = child.get("query").and_then(Value::as_str) {
                            sql(query, &here, None, ctx, out, depth);
                        }
                    }
                    _ => {}
                }
                walk(child, lineno, label, body_line, ctx, out, depth);
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, lineno, label, body_line, ctx, out, depth);
            }
        }
        _ => {}
    }
}

/// `EXECUTE <expr>`: a string constant is judged like any SQL; anything
/// else is built at run time and cannot be checked.
fn dynamic(
    expr: Option<&Value>,
    label: &str,
    ctx: &mut Ctx<'_>,
    out: &mut Vec<Finding>,
    depth: usize,
) {
    let expr = expr
        .and_then(|e| e.get("PLpgSQL_expr"))
        .and_then(|e| e.get("query"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    match string_constant(expr) {
        Some(statement) => sql(&statement, label, None, ctx, out, depth),
        None => out.push(Finding::Warning(format!(
            "{label}: EXECUTE {} runs SQL built at run time, which the guard cannot check: review what it runs \
             by hand",
            excerpt(expr)
        ))),
    }
}

/// The value of an expression that is a single string literal.
fn string_constant(expr: &str) -> Option<String> {
    let parsed = pg_query::parse(&format!("SELECT {expr}"), 0).ok()?;
    let [raw] = parsed.protobuf.stmts.as_slice() else {
        return None;
    };
    let Some(NodeEnum::SelectStmt(select)) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
        return None;
    };
    let [target] = select.target_list.as_slice() else {
        return None;
    };
    let Some(NodeEnum::ResTarget(target)) = &target.node else {
        return None;
    };
    match target.val.as_deref().and_then(|v| v.node.as_ref()) {
        Some(NodeEnum::AConst(c)) => match &c.val {
            Some(pg_query::protobuf::a_const::Val::Sval(s)) => Some(s.sval.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn def_elems(nodes: &[pg_query::Node]) -> Vec<&DefElem> {
    nodes
        .iter()
        .filter_map(|n| match &n.node {
            Some(NodeEnum::DefElem(d)) => Some(&**d),
            _ => None,
        })
        .collect()
}

fn string_option(options: &[&DefElem], name: &str) -> Option<String> {
    options.iter().find(|d| d.defname == name).and_then(|d| {
        match d.arg.as_deref().and_then(|a| a.node.as_ref()) {
            Some(NodeEnum::String(s)) => Some(s.sval.to_lowercase()),
            _ => None,
        }
    })
}

/// The body of `AS '…'` (a function's is a list: the body, or a C library and symbol).
fn body_string(options: &[&DefElem]) -> Option<String> {
    let arg = options.iter().find(|d| d.defname == "as")?.arg.as_deref()?;
    match arg.node.as_ref()? {
        NodeEnum::String(s) => Some(s.sval.clone()),
        NodeEnum::List(l) => match l.items.first()?.node.as_ref()? {
            NodeEnum::String(s) => Some(s.sval.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The line in the file where the `AS` string starts (PL/pgSQL counts its
/// lines from there), when the statement's position in the file is known.
fn body_line(options: &[&DefElem], base: Option<usize>, ctx: &Ctx<'_>) -> Option<usize> {
    let base = base?;
    let at = options.iter().find(|d| d.defname == "as")?.arg_location;
    let at = usize::try_from(at).ok()?;
    Some(line_of(ctx.file, base + at))
}

fn atomic_statements(body: &pg_query::Node) -> Vec<&NodeEnum> {
    let mut out = Vec::new();
    let mut stack = vec![body];
    while let Some(node) = stack.pop() {
        match &node.node {
            Some(NodeEnum::List(l)) => stack.extend(l.items.iter().rev()),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn excerpt(sql: &str) -> String {
    let flat = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 80 {
        format!("{}…", flat.chars().take(80).collect::<String>())
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{verdicts, V};

    #[test]
    fn a_do_block_deleting_from_a_protected_table() {
        let sql = "SELECT 1;\nDO $$\nBEGIN\n    DELETE FROM memory_entries;\nEND\n$$;";
        assert_eq!(
            verdicts(sql),
            vec![V::refused(
                "in the DO block, line 4: deletes every row of the protected table memory_entries (no WHERE)"
            )]
        );
        let report = crate::lint(sql, &crate::Protection::defaults());
        assert_eq!(report.statements[1].line, 2, "reported on the DO statement");
        assert_eq!(report.statements[1].kind, "DO");
        assert_eq!(
            verdicts(
                "-- projsync: allow-destructive memory_entries because the ledger is rebuilt by a full sync\n\
                 DO $$ BEGIN IF true THEN DELETE FROM memory_entries; END IF; END $$;"
            ),
            vec![V::consented("memory_entries", "the ledger is rebuilt by a full sync")]
        );
        assert_eq!(
            verdicts("DO $$ BEGIN DELETE FROM memory_entries WHERE id = 1; END $$"),
            vec![]
        );
    }

    #[test]
    fn a_trigger_functions_body_is_judged() {
        let sql = "CREATE FUNCTION t() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n  \
                   IF TG_OP = 'DELETE' THEN\n    DELETE FROM memory_chunks;\n  END IF;\n  \
                   RETURN NULL;\nEND\n$$;";
        assert_eq!(
            verdicts(sql),
            vec![V::refused(
                "in function t, line 4: deletes every row of the protected table memory_chunks (no WHERE)"
            )]
        );
        assert_eq!(
            super::as_plain_function("CREATE FUNCTION t() RETURNS triggers_t AS $$ $$"),
            None
        );
    }

    #[test]
    fn all_the_static_sql_of_a_body_is_judged() {
        let sql = "DO $$\nDECLARE n int;\nBEGIN\n  FOR n IN SELECT 1 LOOP\n    PERFORM 1;\n  END LOOP;\n  \
                   WITH d AS (DELETE FROM embeddings RETURNING 1) SELECT count(*) INTO n FROM d;\n  \
                   ALTER TABLE memory_chunks DROP COLUMN tsv;\n  CREATE INDEX i ON projects (name);\nEND $$";
        assert_eq!(
            verdicts(sql),
            vec![
                V::refused(
                    "in the DO block, line 7: deletes every row of the protected table embeddings"
                ),
                V::refused("in the DO block, line 8: drops column memory_chunks.tsv"),
                V::warning("in the DO block, line 9: CREATE INDEX on the protected table projects"),
            ]
        );
    }

    #[test]
    fn dynamic_sql_cannot_be_checked() {
        let sql = "DO $$\nDECLARE t text := 'embeddings';\nBEGIN\n  EXECUTE format('TRUNCATE %I', t);\nEND $$;";
        assert_eq!(
            verdicts(sql),
            vec![V::warning(
                "in the DO block, line 4: EXECUTE format('TRUNCATE %I', t) runs SQL built at run time, which the \
                 guard cannot check: review what it runs by hand"
            )]
        );
        assert_eq!(
            verdicts("DO $$ DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT ' || 1 LOOP END LOOP; END $$"),
            vec![V::warning("in the DO block, line 1: EXECUTE 'SELECT ' || 1 runs SQL built at run time")]
        );
        // A constant string is not dynamic: it is judged.
        assert_eq!(
            verdicts("DO $$ BEGIN EXECUTE 'TRUNCATE embeddings'; END $$"),
            vec![V::refused(
                "in the DO block, line 1: truncates the protected table embeddings"
            )]
        );
    }

    #[test]
    fn function_bodies_are_judged() {
        let sql = "CREATE FUNCTION purge() RETURNS void LANGUAGE plpgsql AS $$\nBEGIN\n  \
                   UPDATE embeddings SET embedding = NULL;\nEND $$;\n\
                   CREATE FUNCTION purge2() RETURNS void LANGUAGE sql AS $$\n  SELECT 1;\n  \
                   DELETE FROM memory_chunks;\n$$;\n\
                   CREATE PROCEDURE purge3() BEGIN ATOMIC\n  DELETE FROM sync_steps;\nEND;\n\
                   CREATE FUNCTION py() RETURNS void LANGUAGE plpython3u AS 'plpy.execute(\"TRUNCATE embeddings\")';\n\
                   CREATE FUNCTION c() RETURNS void LANGUAGE c AS 'lib', 'sym';";
        assert_eq!(
            verdicts(sql),
            vec![
                V::refused("in function purge, line 3: sets column embeddings.embedding"),
                V::refused("in function purge2, line 7: deletes every row of the protected table memory_chunks"),
                V::refused("in procedure purge3: deletes every row of the protected table sync_steps"),
                V::warning("in function py: the guard cannot read language plpython3u"),
            ]
        );
    }

    #[test]
    fn other_languages_in_do_blocks_are_opaque() {
        assert_eq!(
            verdicts("DO LANGUAGE plperl $$ spi_exec_query('TRUNCATE embeddings') $$"),
            vec![V::warning(
                "in the DO block: the guard cannot read language plperl"
            )]
        );
    }
}
