//! Renaming a protected table or column, or moving a protected table to
//! another schema.
//!
//! The danger: the data stays, but every reader of the old name breaks at
//! once (the API, the workers, other services), and a rollback to the old
//! binary cannot find it. The safer way for a column is in steps: add the new
//! column, backfill it, switch the readers, then drop the old one.

use pg_query::protobuf::ObjectType;
use pg_query::NodeEnum;

use super::{table_key, Ctx, Finding};

pub(super) fn check(node: &NodeEnum, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    match node {
        NodeEnum::RenameStmt(s) => {
            let Some(table) = s.relation.as_ref().map(table_key) else {
                return;
            };
            if !ctx.protects(&table) {
                return;
            }
            match s.rename_type() {
                ObjectType::ObjectTable => out.push(Finding::destroys(
                    &table,
                    format!(
                        "renames {} to {}: everything that reads {table} breaks",
                        ctx.table_desc(&table),
                        s.newname
                    ),
                )),
                ObjectType::ObjectColumn => {
                    let column = s.subname.to_lowercase();
                    out.push(
                        Finding::destroys(
                            format!("{table}.{column}"),
                            format!(
                                "renames {} to {}: everything that reads it breaks",
                                ctx.column_desc(&table, &column),
                                s.newname
                            ),
                        )
                        .instead("add the new column, backfill it, switch the readers, then drop the old one"),
                    )
                }
                _ => {}
            }
        }
        NodeEnum::AlterObjectSchemaStmt(s) if s.object_type() == ObjectType::ObjectTable => {
            let Some(table) = s.relation.as_ref().map(table_key) else {
                return;
            };
            if ctx.protects(&table) {
                out.push(Finding::destroys(
                    &table,
                    format!(
                        "moves {} to schema {}: projsync reads it from public",
                        ctx.table_desc(&table),
                        s.newschema
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
    fn renaming_a_protected_table_is_refused() {
        assert_eq!(
            verdicts("ALTER TABLE project_syncs RENAME TO syncs"),
            vec![V::refused(
                "renames the protected table project_syncs to syncs"
            )]
        );
        assert_eq!(
            verdicts("ALTER TABLE IF EXISTS public.Projects RENAME TO old_projects"),
            vec![V::refused(
                "renames the protected table projects to old_projects"
            )]
        );
        assert_eq!(verdicts("ALTER TABLE notes RENAME TO old_notes"), vec![]);
    }

    #[test]
    fn renaming_a_column_of_a_protected_table_is_refused() {
        assert_eq!(
            verdicts(r#"ALTER TABLE memory_chunks RENAME COLUMN "Content" TO body"#),
            vec![V::refused(
                "renames column memory_chunks.content of the protected table memory_chunks to body: everything \
                 that reads it breaks; add the new column, backfill it, switch the readers, then drop the old \
                 one; if this is intended"
            )]
        );
        assert_eq!(
            verdicts("-- projsync: allow-destructive memory_chunks.content because the API reads body since 0.9\n\
                      ALTER TABLE memory_chunks RENAME COLUMN content TO body"),
            vec![V::consented("memory_chunks.content", "the API reads body since 0.9")]
        );
        // Renaming a constraint or an index loses nothing.
        assert_eq!(
            verdicts("ALTER TABLE projects RENAME CONSTRAINT a TO b; ALTER INDEX projects_pkey RENAME TO p"),
            vec![]
        );
    }

    #[test]
    fn a_renamed_table_stays_protected_under_its_new_name() {
        let sql = "-- projsync: allow-destructive projects because renamed\n\
                   ALTER TABLE projects RENAME TO workspaces;\nDROP TABLE workspaces;";
        assert_eq!(
            verdicts(sql),
            vec![
                V::consented("projects", "renamed"),
                V::refused("drops the protected table workspaces")
            ]
        );
    }

    #[test]
    fn moving_a_protected_table_to_another_schema_is_refused() {
        assert_eq!(
            verdicts(
                "ALTER TABLE embeddings SET SCHEMA archive; ALTER TABLE notes SET SCHEMA archive"
            ),
            vec![V::refused(
                "moves the protected table embeddings to schema archive"
            )]
        );
    }
}
