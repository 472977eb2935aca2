//! Dropping a protected object: `DROP TABLE`, `ALTER TABLE … DROP COLUMN`,
//! `DROP EXTENSION vector`, `DROP TYPE vector`; and `DROP OWNED` and
//! `DROP DATABASE`, which drop everything.
//!
//! The danger: the rows or the vectors are gone, and with embeddings each
//! one costs a model call to get back. There is no safer spelling of a drop;
//! a migration that means it says so with a consent line, after a backfill
//! plan.

use pg_query::protobuf::{AlterTableType, ObjectType};
use pg_query::NodeEnum;

use super::{alter_cmds, object_name, table_key, Ctx, Finding};
use crate::protection::VECTOR_TYPES;

pub(super) fn check(node: &NodeEnum, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    match node {
        NodeEnum::DropStmt(s) => {
            for object in &s.objects {
                let name = object_name(object);
                match s.remove_type() {
                    ObjectType::ObjectTable if ctx.protects(&name) => out.push(Finding::destroys(
                        &name,
                        format!("drops {}, and every row in it", ctx.table_desc(&name)),
                    )),
                    ObjectType::ObjectExtension if name == "vector" => out.push(Finding::destroys(
                        "vector",
                        "drops the pgvector extension, and with it every vector column and its vectors",
                    )),
                    ObjectType::ObjectType | ObjectType::ObjectDomain
                        if VECTOR_TYPES.contains(&name.as_str()) =>
                    {
                        out.push(Finding::destroys(
                            &name,
                            format!("drops the type {name}, and with it every column of that type"),
                        ))
                    }
                    _ => {}
                }
            }
        }
        NodeEnum::AlterTableStmt(s) => {
            let Some(table) = s.relation.as_ref().map(table_key) else {
                return;
            };
            if !ctx.protects(&table) {
                return;
            }
            for cmd in alter_cmds(s) {
                if cmd.subtype() == AlterTableType::AtDropColumn {
                    let column = cmd.name.to_lowercase();
                    out.push(Finding::destroys(
                        format!("{table}.{column}"),
                        format!("drops {}, and its data", ctx.column_desc(&table, &column)),
                    ));
                }
            }
        }
        NodeEnum::DropdbStmt(_) => out.push(Finding::Refused(
            "DROP DATABASE drops every table, protected or not: a migration never does this".into(),
        )),
        NodeEnum::DropOwnedStmt(_) => out.push(Finding::Refused(
            "DROP OWNED drops every object the role owns, protected tables included, and no consent \
             line can name them all: drop the objects by name instead"
                .into(),
        )),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{verdicts, V};
    use crate::Protection;

    #[test]
    fn dropping_a_protected_table_is_refused() {
        for sql in [
            "DROP TABLE embeddings",
            "DROP TABLE IF EXISTS public.embeddings",
            r#"DROP TABLE "Embeddings""#,
            "DROP TABLE notes, embeddings",
        ] {
            assert_eq!(
                verdicts(sql),
                vec![V::refused(
                    "drops the protected table embeddings, and every row in it"
                )],
                "{sql}"
            );
        }
    }

    #[test]
    fn dropping_another_table_is_safe() {
        assert_eq!(
            verdicts("DROP TABLE notes; DROP TABLE audit.embeddings"),
            vec![]
        );
    }

    #[test]
    fn dropping_a_column_of_a_protected_table_is_refused() {
        assert_eq!(
            verdicts("ALTER TABLE embeddings DROP COLUMN embedding"),
            vec![V::refused(
                "drops column embeddings.embedding of the protected table embeddings, and its data; if this is \
                 intended, after a backfill plan, add `-- projsync: allow-destructive embeddings.embedding \
                 because <reason>`"
            )]
        );
        assert_eq!(
            verdicts("ALTER TABLE notes DROP COLUMN body, DROP COLUMN IF EXISTS title"),
            vec![]
        );
    }

    #[test]
    fn a_consent_covers_exactly_its_object() {
        let consent = "-- projsync: allow-destructive embeddings.embedding because moved to embeddings_v2 (0009)\n";
        assert_eq!(
            verdicts(&format!(
                "{consent}ALTER TABLE embeddings DROP COLUMN embedding;"
            )),
            vec![V::consented(
                "embeddings.embedding",
                "moved to embeddings_v2 (0009)"
            )]
        );
        // Another column, another table: not covered.
        let report = crate::lint(
            &format!("{consent}ALTER TABLE embeddings DROP COLUMN model;\nDROP TABLE embeddings;"),
            &Protection::defaults(),
        );
        assert!(report.refused());
        assert_eq!(report.statements[0].verdicts.len(), 1);
        assert!(
            matches!(&report.statements[0].verdicts[0], crate::Verdict::Refused(m) if m.contains("embeddings.model"))
        );
        assert!(
            matches!(&report.statements[1].verdicts[0], crate::Verdict::Refused(m) if m.contains("drops the protected table embeddings"))
        );
        // A table consent covers its columns.
        assert_eq!(
            verdicts("-- projsync: allow-destructive embeddings because rebuilt\nALTER TABLE embeddings DROP COLUMN model;"),
            vec![V::consented("embeddings.model", "rebuilt")]
        );
    }

    #[test]
    fn a_vector_column_protects_its_table() {
        let p = Protection::default().with_column("notes", "embedding");
        let report = crate::lint(
            "ALTER TABLE notes DROP COLUMN embedding; DROP TABLE notes;",
            &p,
        );
        let messages: Vec<String> = report
            .statements
            .iter()
            .flat_map(|s| &s.verdicts)
            .map(|v| v.to_string())
            .collect();
        assert!(
            messages[0].starts_with("refused: drops the protected column notes.embedding"),
            "{messages:?}"
        );
        assert!(
            messages[1].starts_with("refused: drops the protected table notes"),
            "{messages:?}"
        );
    }

    #[test]
    fn dropping_the_vector_extension_or_type_is_refused_unless_vector_is_named() {
        assert_eq!(
            verdicts("DROP EXTENSION IF EXISTS vector"),
            vec![V::refused(
                "drops the pgvector extension, and with it every vector column and its vectors"
            )]
        );
        assert_eq!(
            verdicts("DROP TYPE public.halfvec"),
            vec![V::refused(
                "drops the type halfvec, and with it every column of that type"
            )]
        );
        assert_eq!(
            verdicts("-- projsync: allow-destructive vector because the deployment moves to another store\nDROP EXTENSION vector"),
            vec![V::consented("vector", "the deployment moves to another store")]
        );
        assert_eq!(
            verdicts("-- projsync: allow-destructive embeddings because no\nDROP EXTENSION vector"),
            vec![V::refused("drops the pgvector extension")]
        );
        assert_eq!(verdicts("DROP EXTENSION pg_trgm; DROP TYPE mood"), vec![]);
    }

    #[test]
    fn drop_database_is_always_refused() {
        assert_eq!(
            verdicts("DROP DATABASE IF EXISTS projsync"),
            vec![V::refused("DROP DATABASE drops every table")]
        );
    }

    #[test]
    fn drop_owned_is_always_refused() {
        assert_eq!(
            verdicts(
                "-- projsync: allow-destructive projects because x\nDROP OWNED BY projsync_app"
            )[0],
            V::refused("DROP OWNED drops every object the role owns")
        );
    }
}
