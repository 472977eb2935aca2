//! `CASCADE` that reaches a protected object.
//!
//! The danger: `DROP … CASCADE` also drops what depends on the object
//! (`DROP EXTENSION vector CASCADE` drops every vector column), and
//! `TRUNCATE … CASCADE` empties every table that references it. Which
//! objects depend on which is in the live catalog, not in the SQL: the caller
//! passes it ([`crate::Protection::with_dependents`]). When it is unknown,
//! the CASCADE is refused, to be safe. The safer way: RESTRICT (the default),
//! and drop or change the dependents by name.

use pg_query::protobuf::AlterTableType;
use pg_query::NodeEnum;

use super::{alter_cmds, is_cascade, object_name, table_key, Ctx, Finding};

pub(super) fn check(node: &NodeEnum, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    match node {
        NodeEnum::DropStmt(s) if is_cascade(s.behavior()) => {
            for object in &s.objects {
                let name = object_name(object);
                reach(ctx, out, &name, &format!("DROP … {name} CASCADE"));
            }
        }
        NodeEnum::TruncateStmt(s) if is_cascade(s.behavior()) => {
            for relation in &s.relations {
                let name = object_name(relation);
                reach(ctx, out, &name, &format!("TRUNCATE {name} CASCADE"));
            }
        }
        NodeEnum::AlterTableStmt(s) => {
            let Some(table) = s.relation.as_ref().map(table_key) else {
                return;
            };
            for cmd in alter_cmds(s).filter(|c| is_cascade(c.behavior())) {
                let what = match cmd.subtype() {
                    AlterTableType::AtDropColumn => "COLUMN",
                    AlterTableType::AtDropConstraint => "CONSTRAINT",
                    _ => continue,
                };
                let name = format!("{table}.{}", cmd.name.to_lowercase());
                reach(
                    ctx,
                    out,
                    &name,
                    &format!("ALTER TABLE {table} DROP {what} {} CASCADE", cmd.name),
                );
            }
        }
        _ => {}
    }
}

fn reach(ctx: &Ctx<'_>, out: &mut Vec<Finding>, object: &str, statement: &str) {
    match ctx.protection.dependents_of(object) {
        Some(dependents) => {
            for dependent in dependents {
                out.push(
                    Finding::destroys(
                        dependent,
                        format!("{statement} reaches the protected {dependent}, which depends on {object}"),
                    )
                    .instead(format!("use RESTRICT (the default) and deal with {dependent} by name")),
                );
            }
        }
        None => out.push(
            Finding::destroys(
                object,
                format!(
                    "{statement} also destroys whatever depends on {object}, and the guard does not know \
                     what does"
                ),
            )
            .instead("use RESTRICT (the default) and drop the dependents by name"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{verdicts, verdicts_with, V};
    use crate::Protection;

    #[test]
    fn cascade_with_unknown_dependents_is_refused() {
        assert_eq!(
            verdicts("DROP TABLE notes CASCADE"),
            vec![V::refused(
                "DROP … notes CASCADE also destroys whatever depends on notes, and the guard does not know what \
                 does; use RESTRICT (the default) and drop the dependents by name; if this is intended, after a \
                 backfill plan, add `-- projsync: allow-destructive notes because <reason>`"
            )]
        );
        assert_eq!(
            verdicts("DROP FUNCTION f(int) CASCADE"),
            vec![V::refused(
                "DROP … f CASCADE also destroys whatever depends on f"
            )]
        );
        assert_eq!(
            verdicts("-- projsync: allow-destructive notes because only views depend on it\nDROP TABLE notes CASCADE"),
            vec![V::consented("notes", "only views depend on it")]
        );
        assert_eq!(verdicts("DROP TABLE notes RESTRICT; DROP VIEW v"), vec![]);
    }

    #[test]
    fn drop_extension_vector_cascade() {
        assert_eq!(
            verdicts("DROP EXTENSION vector CASCADE"),
            vec![
                V::refused("drops the pgvector extension"),
                V::refused("DROP … vector CASCADE also destroys whatever depends on vector")
            ]
        );
        // The catalog says what depends on it: each protected dependent needs its consent.
        let p = Protection::defaults()
            .with_column("embeddings", "embedding")
            .with_dependents("vector", vec!["embeddings.embedding".into()]);
        let sql = "-- projsync: allow-destructive vector because leaving pgvector\nDROP EXTENSION vector CASCADE;";
        assert_eq!(
            verdicts_with(sql, &p),
            vec![
                V::consented("vector", "leaving pgvector"),
                V::refused("DROP … vector CASCADE reaches the protected embeddings.embedding, which depends on vector")
            ]
        );
        let sql = format!("{sql}\n-- projsync: allow-destructive embeddings.embedding because re-embedded elsewhere");
        assert_eq!(
            verdicts_with(&sql, &p),
            vec![
                V::consented("vector", "leaving pgvector"),
                V::consented("embeddings.embedding", "re-embedded elsewhere")
            ]
        );
    }

    #[test]
    fn cascade_reaching_a_protected_table_through_dependents() {
        let p = Protection::defaults()
            .with_dependents("tenants", vec!["projects".into()])
            .with_dependents("tags", vec![]);
        assert_eq!(
            verdicts_with("TRUNCATE tenants CASCADE", &p),
            vec![V::refused(
                "TRUNCATE tenants CASCADE reaches the protected projects, which depends on tenants"
            )]
        );
        assert_eq!(
            verdicts_with("DROP TABLE public.tenants CASCADE", &p),
            vec![V::refused(
                "DROP … tenants CASCADE reaches the protected projects"
            )]
        );
        // Known to reach nothing protected.
        assert_eq!(
            verdicts_with("DROP TABLE tags CASCADE; TRUNCATE tags CASCADE", &p),
            vec![]
        );
        // A consent on the table reached covers it; one on the dropped table does not.
        assert_eq!(
            verdicts_with(
                "-- projsync: allow-destructive tenants because x\nTRUNCATE tenants CASCADE",
                &p
            ),
            vec![V::refused(
                "TRUNCATE tenants CASCADE reaches the protected projects"
            )]
        );
        assert_eq!(
            verdicts_with(
                "-- projsync: allow-destructive projects because reset\nTRUNCATE tenants CASCADE",
                &p
            ),
            vec![V::consented("projects", "reset")]
        );
    }

    #[test]
    fn alter_table_drop_cascade() {
        assert_eq!(
            verdicts("ALTER TABLE notes DROP COLUMN tag CASCADE"),
            vec![V::refused("ALTER TABLE notes DROP COLUMN tag CASCADE also destroys whatever depends on notes.tag")]
        );
        let p = Protection::defaults().with_dependents("notes.tag", vec![]);
        assert_eq!(
            verdicts_with("ALTER TABLE notes DROP COLUMN tag CASCADE", &p),
            vec![]
        );
        assert_eq!(
            verdicts("ALTER TABLE notes DROP CONSTRAINT notes_pkey CASCADE"),
            vec![V::refused(
                "ALTER TABLE notes DROP CONSTRAINT notes_pkey CASCADE also destroys"
            )]
        );
    }
}
