//! Changing the type of a column of a protected table.
//!
//! The danger: a cast that loses precision or fails half-way through data
//! (a vector to a smaller dimension, text to an enum); and PostgreSQL
//! rewrites the whole table and its indexes under an ACCESS EXCLUSIVE lock
//! (unless the types are binary-compatible). The safer way: add a column of
//! the new type, backfill it in batches, switch the readers, drop the old one.

use pg_query::protobuf::AlterTableType;
use pg_query::NodeEnum;

use super::{alter_cmds, table_key, Ctx, Finding};

pub(super) fn check(node: &NodeEnum, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let NodeEnum::AlterTableStmt(s) = node else {
        return;
    };
    let Some(table) = s.relation.as_ref().map(table_key) else {
        return;
    };
    if !ctx.protects(&table) {
        return;
    }
    for cmd in alter_cmds(s) {
        if cmd.subtype() != AlterTableType::AtAlterColumnType {
            continue;
        }
        let column = cmd.name.to_lowercase();
        out.push(
            Finding::destroys(
                format!("{table}.{column}"),
                format!(
                    "changes the type of {}: a lossy or failing cast loses or blocks its data",
                    ctx.column_desc(&table, &column)
                ),
            )
            .instead("add a column of the new type, backfill it in batches, switch the readers, then drop the old one"),
        );
        if ctx.watches_locks(&table) {
            out.push(Finding::Warning(format!(
                "ALTER COLUMN {column} TYPE rewrites the protected table {table} and its indexes under an \
                 ACCESS EXCLUSIVE lock (unless the types are binary-compatible): add a new column and \
                 backfill it in batches instead"
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{verdicts, V};

    #[test]
    fn changing_a_column_type_on_a_protected_table_is_refused_and_warned() {
        assert_eq!(
            verdicts("ALTER TABLE embeddings ALTER COLUMN embedding TYPE vector(384)"),
            vec![
                V::refused("changes the type of column embeddings.embedding of the protected table embeddings"),
                V::warning("ALTER COLUMN embedding TYPE rewrites the protected table embeddings"),
            ]
        );
        assert_eq!(
            verdicts(
                "ALTER TABLE sync_steps ALTER attempts SET DATA TYPE bigint USING attempts::bigint"
            ),
            vec![
                V::refused("changes the type of column sync_steps.attempts"),
                V::warning("ALTER COLUMN attempts TYPE")
            ]
        );
    }

    #[test]
    fn consent_keeps_the_rewrite_warning() {
        assert_eq!(
            verdicts(
                "-- projsync: allow-destructive sync_steps because bigint is wider\n\
                      ALTER TABLE sync_steps ALTER COLUMN attempts TYPE bigint"
            ),
            vec![
                V::consented("sync_steps.attempts", "bigint is wider"),
                V::warning("ALTER COLUMN attempts TYPE rewrites the protected table sync_steps")
            ]
        );
    }

    #[test]
    fn other_tables_are_not_judged() {
        assert_eq!(
            verdicts("ALTER TABLE notes ALTER COLUMN n TYPE bigint"),
            vec![]
        );
        // A table this file creates is empty: refused (it is protected), but no rewrite to warn about.
        assert_eq!(
            verdicts("CREATE TABLE docs (v vector(3), n int);\nALTER TABLE docs ALTER COLUMN n TYPE bigint"),
            vec![V::refused("changes the type of column docs.n of the protected table docs")]
        );
    }
}
