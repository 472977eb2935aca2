//! Emptying a protected table: `TRUNCATE`, or `SET UNLOGGED` (a crash then
//! truncates it).
//!
//! The danger: every row goes at once, and TRUNCATE does not even fire the
//! DELETE triggers. There is no safer spelling; a migration that means it
//! says so with a consent line.

use pg_query::protobuf::AlterTableType;
use pg_query::NodeEnum;

use super::{alter_cmds, object_name, table_key, Ctx, Finding};

pub(super) fn check(node: &NodeEnum, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    match node {
        NodeEnum::TruncateStmt(s) => {
            for relation in &s.relations {
                let table = object_name(relation);
                if ctx.protects(&table) {
                    out.push(Finding::destroys(
                        &table,
                        format!("truncates {}: every row goes", ctx.table_desc(&table)),
                    ));
                }
            }
        }
        NodeEnum::AlterTableStmt(s) => {
            let Some(table) = s.relation.as_ref().map(table_key) else {
                return;
            };
            if ctx.protects(&table)
                && alter_cmds(s).any(|c| c.subtype() == AlterTableType::AtSetUnLogged)
            {
                out.push(Finding::destroys(
                    &table,
                    format!(
                        "makes {} UNLOGGED: a crash empties it",
                        ctx.table_desc(&table)
                    ),
                ));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{verdicts, V};

    #[test]
    fn truncating_a_protected_table_is_refused() {
        assert_eq!(
            verdicts("TRUNCATE project_syncs"),
            vec![V::refused(
                "truncates the protected table project_syncs: every row goes"
            )]
        );
        assert_eq!(
            verdicts("TRUNCATE TABLE ONLY notes, public.sync_steps RESTART IDENTITY"),
            vec![V::refused("truncates the protected table sync_steps")]
        );
        assert_eq!(verdicts("TRUNCATE notes"), vec![]);
        assert_eq!(
            verdicts("-- projsync: allow-destructive project_syncs because the history is archived in 0012\n\
                      TRUNCATE project_syncs"),
            vec![V::consented("project_syncs", "the history is archived in 0012")]
        );
    }

    #[test]
    fn set_unlogged_on_a_protected_table_is_refused() {
        assert_eq!(
            verdicts("ALTER TABLE memory_chunks SET UNLOGGED"),
            vec![V::refused(
                "makes the protected table memory_chunks UNLOGGED"
            )]
        );
        assert_eq!(
            verdicts("ALTER TABLE memory_chunks SET LOGGED; ALTER TABLE notes SET UNLOGGED"),
            vec![]
        );
    }
}
