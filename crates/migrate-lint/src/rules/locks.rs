//! Locks and rewrites on a protected table that already holds rows:
//! warnings, not refusals (nothing is lost, but the API and the workers
//! stall while the lock is held).
//!
//! - `CREATE INDEX` without `CONCURRENTLY` blocks writes while it builds;
//!   `CONCURRENTLY` cannot run in a transaction, so the file must start with
//!   `-- no-transaction` (sqlx's directive).
//! - `ADD COLUMN` with a volatile default (or serial, identity, a stored
//!   generated column) rewrites the table under ACCESS EXCLUSIVE. PostgreSQL
//!   cannot tell volatility from the syntax, so it goes by function name;
//!   `now()` and `CURRENT_TIMESTAMP` are stable and cost nothing since 11.
//! - `ADD CONSTRAINT … FOREIGN KEY / CHECK` without `NOT VALID` checks every
//!   row under a lock; `PRIMARY KEY` / `UNIQUE` builds its index under one.
//! - `SET NOT NULL` scans the table under ACCESS EXCLUSIVE.
//!
//! (`ALTER COLUMN … TYPE` is in `column_type`.)

use pg_query::protobuf::{AlterTableType, ColumnDef, ConstrType};
use pg_query::{Node, NodeEnum};

use super::{alter_cmds, last_name, table_key, Ctx, Finding};

/// Functions whose call in a DEFAULT forces a rewrite.
pub const VOLATILE_FUNCTIONS: &[&str] = &[
    "gen_random_uuid",
    "random",
    "clock_timestamp",
    "uuid_generate_v4",
    "uuid_generate_v1",
    "uuidv4",
    "uuidv7",
    "nextval",
    "timeofday",
];

const SERIAL_TYPES: &[&str] = &[
    "smallserial",
    "serial",
    "bigserial",
    "serial2",
    "serial4",
    "serial8",
];

const NO_TRANSACTION: &str =
    "cannot run inside a transaction: put `-- no-transaction` on the first line of \
                              this migration (and keep it to statements that need no transaction)";

pub(super) fn check(node: &NodeEnum, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    match node {
        NodeEnum::IndexStmt(s) => {
            if s.concurrent {
                if !ctx.no_transaction {
                    out.push(Finding::Warning(format!(
                        "CREATE INDEX CONCURRENTLY {NO_TRANSACTION}"
                    )));
                }
                return;
            }
            let Some(table) = s.relation.as_ref().map(table_key) else {
                return;
            };
            if ctx.watches_locks(&table) {
                out.push(Finding::Warning(format!(
                    "CREATE INDEX on the protected table {table} blocks its writes while the index builds: use \
                     CREATE INDEX CONCURRENTLY in a migration with -- no-transaction"
                )));
            }
        }
        NodeEnum::DropStmt(s) if s.concurrent && !ctx.no_transaction => {
            out.push(Finding::Warning(format!(
                "DROP INDEX CONCURRENTLY {NO_TRANSACTION}"
            )));
        }
        NodeEnum::AlterTableStmt(s) => {
            let Some(table) = s.relation.as_ref().map(table_key) else {
                return;
            };
            if !ctx.watches_locks(&table) {
                return;
            }
            for cmd in alter_cmds(s) {
                let def = cmd.def.as_deref().and_then(|d| d.node.as_ref());
                match (cmd.subtype(), def) {
                    (AlterTableType::AtAddColumn, Some(NodeEnum::ColumnDef(column))) => {
                        if let Some((cause, instead)) = rewrite_cause(column) {
                            out.push(Finding::Warning(format!(
                                "ADD COLUMN {} {cause} rewrites the protected table {table} under an ACCESS \
                                 EXCLUSIVE lock: {instead}",
                                column.colname
                            )));
                        }
                    }
                    (AlterTableType::AtAddConstraint, Some(NodeEnum::Constraint(c))) => {
                        let name = if c.conname.is_empty() { String::new() } else { format!(" {}", c.conname) };
                        match c.contype() {
                            kind @ (ConstrType::ConstrForeign | ConstrType::ConstrCheck) if !c.skip_validation => {
                                let kind = if kind == ConstrType::ConstrForeign { "FOREIGN KEY" } else { "CHECK" };
                                out.push(Finding::Warning(format!(
                                    "ADD CONSTRAINT{name} {kind} checks every row of the protected table {table} \
                                     under a lock that blocks its writes: add it NOT VALID, then VALIDATE \
                                     CONSTRAINT in a later statement"
                                )));
                            }
                            kind @ (ConstrType::ConstrPrimary | ConstrType::ConstrUnique) if c.indexname.is_empty() => {
                                let kind = if kind == ConstrType::ConstrPrimary { "PRIMARY KEY" } else { "UNIQUE" };
                                out.push(Finding::Warning(format!(
                                    "ADD{} {kind} builds an index on the protected table {table} under an ACCESS \
                                     EXCLUSIVE lock: CREATE UNIQUE INDEX CONCURRENTLY first (in a migration with \
                                     -- no-transaction), then ADD CONSTRAINT … USING INDEX",
                                    if name.is_empty() { String::new() } else { format!(" CONSTRAINT{name}") }
                                )));
                            }
                            _ => {}
                        }
                    }
                    (AlterTableType::AtSetNotNull, _) => out.push(Finding::Warning(format!(
                        "SET NOT NULL on {table}.{column} scans the protected table {table} under an ACCESS \
                         EXCLUSIVE lock: add CHECK ({column} IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT \
                         NULL (the scan is skipped)",
                        column = cmd.name
                    ))),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// Why adding this column rewrites the table, and what to do instead.
fn rewrite_cause(column: &ColumnDef) -> Option<(String, &'static str)> {
    const BACKFILL: &str =
        "add the column without a default, backfill it in batches, then set the default";
    let type_name = column.type_name.as_ref().and_then(|t| last_name(&t.names));
    if let Some(t) = type_name.filter(|t| SERIAL_TYPES.contains(&t.as_str())) {
        return Some((format!("{t} (a sequence default)"), BACKFILL));
    }
    for c in &column.constraints {
        let Some(NodeEnum::Constraint(c)) = &c.node else {
            continue;
        };
        match c.contype() {
            ConstrType::ConstrDefault => {
                if let Some(f) = c.raw_expr.as_deref().and_then(volatile_call) {
                    return Some((format!("DEFAULT {f}() (volatile)"), BACKFILL));
                }
            }
            ConstrType::ConstrIdentity => return Some(("GENERATED AS IDENTITY".into(), BACKFILL)),
            ConstrType::ConstrGenerated if c.generated_kind != "v" => {
                return Some((
                    "GENERATED … STORED".into(),
                    "add a plain column, backfill it in batches, or make it VIRTUAL",
                ))
            }
            _ => {}
        }
    }
    None
}

/// The first volatile function called in an expression.
fn volatile_call(node: &Node) -> Option<String> {
    let any = |nodes: &[Node]| nodes.iter().find_map(volatile_call);
    let one = |node: &Option<Box<Node>>| node.as_deref().and_then(volatile_call);
    match node.node.as_ref()? {
        NodeEnum::FuncCall(f) => match last_name(&f.funcname) {
            Some(name) if VOLATILE_FUNCTIONS.contains(&name.as_str()) => Some(name),
            _ => any(&f.args),
        },
        NodeEnum::TypeCast(c) => one(&c.arg),
        NodeEnum::CollateClause(c) => one(&c.arg),
        NodeEnum::AExpr(e) => one(&e.lexpr).or_else(|| one(&e.rexpr)),
        NodeEnum::BoolExpr(b) => any(&b.args),
        NodeEnum::CoalesceExpr(c) => any(&c.args),
        NodeEnum::MinMaxExpr(m) => any(&m.args),
        NodeEnum::NullTest(n) => one(&n.arg),
        NodeEnum::CaseExpr(c) => one(&c.arg)
            .or_else(|| any(&c.args))
            .or_else(|| one(&c.defresult)),
        NodeEnum::CaseWhen(w) => one(&w.expr).or_else(|| one(&w.result)),
        NodeEnum::RowExpr(r) => any(&r.args),
        NodeEnum::AArrayExpr(a) => any(&a.elements),
        NodeEnum::List(l) => any(&l.items),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{verdicts, V};

    #[test]
    fn create_index_on_a_protected_table() {
        assert_eq!(
            verdicts("CREATE INDEX memory_chunks_by_entry ON memory_chunks (entry_id)"),
            vec![V::warning(
                "CREATE INDEX on the protected table memory_chunks blocks its writes while the index builds: use \
                 CREATE INDEX CONCURRENTLY in a migration with -- no-transaction"
            )]
        );
        assert_eq!(
            verdicts("-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON memory_chunks (entry_id)"),
            vec![]
        );
        assert_eq!(
            verdicts("CREATE INDEX CONCURRENTLY i ON memory_chunks (entry_id)"),
            vec![V::warning(
                "CREATE INDEX CONCURRENTLY cannot run inside a transaction"
            )]
        );
        assert_eq!(
            verdicts("DROP INDEX CONCURRENTLY i"),
            vec![V::warning(
                "DROP INDEX CONCURRENTLY cannot run inside a transaction"
            )]
        );
        assert_eq!(verdicts("CREATE INDEX i ON notes (a)"), vec![]);
    }

    #[test]
    fn a_table_created_in_the_same_file_has_no_rows_to_lock() {
        assert_eq!(
            verdicts(
                "CREATE TABLE docs (id bigint, v vector(3));\nCREATE INDEX docs_id ON docs (id);\n\
                 ALTER TABLE docs ADD COLUMN u uuid DEFAULT gen_random_uuid();"
            ),
            vec![]
        );
        // IF NOT EXISTS: the table may already be there, with rows.
        assert_eq!(
            verdicts("CREATE TABLE IF NOT EXISTS docs (id bigint, v vector(3));\nCREATE INDEX docs_id ON docs (id);"),
            vec![V::warning("CREATE INDEX on the protected table docs")]
        );
    }

    #[test]
    fn add_column_with_a_volatile_default() {
        assert_eq!(
            verdicts("ALTER TABLE memory_chunks ADD COLUMN uid uuid NOT NULL DEFAULT gen_random_uuid()"),
            vec![V::warning(
                "ADD COLUMN uid DEFAULT gen_random_uuid() (volatile) rewrites the protected table memory_chunks \
                 under an ACCESS EXCLUSIVE lock: add the column without a default, backfill it in batches, then \
                 set the default"
            )]
        );
        assert_eq!(
            verdicts("ALTER TABLE projects ADD COLUMN r float8 DEFAULT (random() * 10)::float8"),
            vec![V::warning("ADD COLUMN r DEFAULT random() (volatile)")]
        );
        assert_eq!(
            verdicts("ALTER TABLE projects ADD COLUMN n bigserial"),
            vec![V::warning("ADD COLUMN n bigserial (a sequence default)")]
        );
        assert_eq!(
            verdicts("ALTER TABLE projects ADD COLUMN n int GENERATED ALWAYS AS IDENTITY"),
            vec![V::warning("ADD COLUMN n GENERATED AS IDENTITY")]
        );
        assert_eq!(
            verdicts(
                "ALTER TABLE projects ADD COLUMN l int GENERATED ALWAYS AS (length(name)) STORED"
            ),
            vec![V::warning("ADD COLUMN l GENERATED … STORED rewrites")]
        );
        // Stable or constant defaults cost nothing since PostgreSQL 11.
        assert_eq!(
            verdicts(
                "ALTER TABLE projects ADD COLUMN a timestamptz DEFAULT now(), ADD COLUMN b timestamptz NOT NULL \
                 DEFAULT CURRENT_TIMESTAMP, ADD COLUMN c jsonb NOT NULL DEFAULT '{}', ADD COLUMN d text;
                 ALTER TABLE projects ADD COLUMN v int GENERATED ALWAYS AS (1) VIRTUAL;
                 ALTER TABLE notes ADD COLUMN u uuid DEFAULT gen_random_uuid();"
            ),
            vec![]
        );
    }

    #[test]
    fn constraints_without_not_valid() {
        assert_eq!(
            verdicts("ALTER TABLE sync_steps ADD CONSTRAINT c CHECK (attempts >= 0)"),
            vec![V::warning(
                "ADD CONSTRAINT c CHECK checks every row of the protected table sync_steps under a lock that blocks \
                 its writes: add it NOT VALID, then VALIDATE CONSTRAINT in a later statement"
            )]
        );
        assert_eq!(
            verdicts("ALTER TABLE repositories ADD CONSTRAINT fk FOREIGN KEY (t) REFERENCES tenants (id)"),
            vec![V::warning("ADD CONSTRAINT fk FOREIGN KEY checks every row")]
        );
        assert_eq!(
            verdicts("ALTER TABLE embeddings ADD PRIMARY KEY (tenant_id, model)"),
            vec![V::warning(
                "ADD PRIMARY KEY builds an index on the protected table embeddings"
            )]
        );
        assert_eq!(
            verdicts(
                "ALTER TABLE repositories ADD CONSTRAINT fk FOREIGN KEY (t) REFERENCES tenants (id) NOT VALID;
                 ALTER TABLE repositories VALIDATE CONSTRAINT fk;
                 ALTER TABLE projects ADD CONSTRAINT u UNIQUE USING INDEX projects_u;
                 ALTER TABLE notes ADD CONSTRAINT c CHECK (a > 0);"
            ),
            vec![]
        );
    }

    #[test]
    fn set_not_null() {
        assert_eq!(
            verdicts("ALTER TABLE projects ALTER COLUMN tenant_id SET NOT NULL"),
            vec![V::warning(
                "SET NOT NULL on projects.tenant_id scans the protected table projects"
            )]
        );
    }
}
