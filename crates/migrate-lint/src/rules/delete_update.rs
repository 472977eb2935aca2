//! `DELETE` without `WHERE` on a protected table, and `UPDATE` without
//! `WHERE` that sets a column of a protected table to NULL (the way to lose
//! every vector while keeping the rows). Also inside a `WITH` clause.
//!
//! `WHERE true` counts as no WHERE. `SET c = DEFAULT` counts as NULL: the
//! default of a vector column is NULL unless the schema says otherwise.
//! The safer way: a WHERE clause that names the rows.

use pg_query::protobuf::{a_const, Node};
use pg_query::{NodeEnum, NodeRef};

use super::{table_key, Ctx, Finding};

pub(super) fn check(node: &NodeEnum, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    if !matches!(
        node,
        NodeEnum::DeleteStmt(_)
            | NodeEnum::UpdateStmt(_)
            | NodeEnum::SelectStmt(_)
            | NodeEnum::InsertStmt(_)
    ) {
        return;
    }
    // All the statements of the tree: the statement and those of its WITH clause.
    for (n, ..) in node.nodes() {
        match n {
            NodeRef::DeleteStmt(d) => {
                let Some(table) = d.relation.as_ref().map(table_key) else {
                    continue;
                };
                if ctx.protects(&table) && !has_where(d.where_clause.as_deref()) {
                    out.push(
                        Finding::destroys(
                            &table,
                            format!("deletes every row of {} (no WHERE)", ctx.table_desc(&table)),
                        )
                        .instead("add a WHERE clause that names the rows"),
                    );
                }
            }
            NodeRef::UpdateStmt(u) => {
                let Some(table) = u.relation.as_ref().map(table_key) else {
                    continue;
                };
                if !ctx.protects(&table) || has_where(u.where_clause.as_deref()) {
                    continue;
                }
                for target in &u.target_list {
                    let Some(NodeEnum::ResTarget(t)) = &target.node else {
                        continue;
                    };
                    let Some(null) = t.val.as_deref().and_then(assigns_null) else {
                        continue;
                    };
                    let column = t.name.to_lowercase();
                    out.push(
                        Finding::destroys(
                            format!("{table}.{column}"),
                            format!(
                                "sets {} to {null} in every row (no WHERE)",
                                ctx.column_desc(&table, &column)
                            ),
                        )
                        .instead("add a WHERE clause that names the rows"),
                    );
                }
            }
            _ => {}
        }
    }
}

fn has_where(clause: Option<&Node>) -> bool {
    match clause.and_then(|w| w.node.as_ref()) {
        None => false,
        Some(NodeEnum::AConst(c)) => !matches!(&c.val, Some(a_const::Val::Boolval(b)) if b.boolval),
        Some(_) => true,
    }
}

/// `Some("NULL")` or `Some("its DEFAULT")` when the value may be NULL.
fn assigns_null(value: &Node) -> Option<&'static str> {
    match value.node.as_ref()? {
        NodeEnum::AConst(c) if c.isnull => Some("NULL"),
        NodeEnum::TypeCast(c) => c.arg.as_deref().and_then(assigns_null),
        NodeEnum::SetToDefault(_) => Some("its DEFAULT (NULL unless one is set)"),
        NodeEnum::MultiAssignRef(m) => match m.source.as_deref().and_then(|s| s.node.as_ref()) {
            Some(NodeEnum::RowExpr(row)) => usize::try_from(m.colno - 1)
                .ok()
                .and_then(|i| row.args.get(i))
                .and_then(assigns_null),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{verdicts, verdicts_with, V};
    use crate::Protection;

    #[test]
    fn delete_without_where_on_a_protected_table_is_refused() {
        assert_eq!(
            verdicts("DELETE FROM memory_entries"),
            vec![V::refused(
                "deletes every row of the protected table memory_entries (no WHERE); add a WHERE clause that names \
                 the rows; if this is intended"
            )]
        );
        assert_eq!(
            verdicts("DELETE FROM ONLY public.memory_entries e USING projects p WHERE true"),
            vec![V::refused(
                "deletes every row of the protected table memory_entries"
            )]
        );
        assert_eq!(
            verdicts("DELETE FROM memory_entries WHERE status = 'superseded'"),
            vec![]
        );
        assert_eq!(verdicts("DELETE FROM notes"), vec![]);
    }

    #[test]
    fn delete_in_a_with_clause() {
        assert_eq!(
            verdicts(
                "WITH gone AS (DELETE FROM memory_chunks RETURNING id) SELECT count(*) FROM gone"
            ),
            vec![V::refused(
                "deletes every row of the protected table memory_chunks"
            )]
        );
        assert_eq!(
            verdicts("WITH gone AS (DELETE FROM embeddings RETURNING *) INSERT INTO archive SELECT * FROM gone"),
            vec![V::refused("deletes every row of the protected table embeddings")]
        );
    }

    #[test]
    fn update_setting_null_without_where() {
        assert_eq!(
            verdicts("UPDATE embeddings SET embedding = NULL"),
            vec![V::refused(
                "sets column embeddings.embedding of the protected table embeddings to NULL in every row (no WHERE)"
            )]
        );
        assert_eq!(
            verdicts("UPDATE embeddings SET embedding = NULL::vector, model = 'x'"),
            vec![V::refused("sets column embeddings.embedding")]
        );
        assert_eq!(
            verdicts("UPDATE embeddings SET (model, embedding) = ('m', NULL)"),
            vec![V::refused("sets column embeddings.embedding")]
        );
        assert_eq!(
            verdicts("UPDATE memory_entries SET embedding = DEFAULT"),
            vec![V::refused("sets column memory_entries.embedding of the protected table memory_entries to its DEFAULT")]
        );
        assert_eq!(
            verdicts("-- projsync: allow-destructive embeddings.embedding because re-embed with the new model\n\
                      UPDATE embeddings SET embedding = NULL"),
            vec![V::consented("embeddings.embedding", "re-embed with the new model")]
        );
    }

    #[test]
    fn update_that_keeps_the_data_is_safe() {
        assert_eq!(
            verdicts(
                "UPDATE embeddings SET embedding = NULL WHERE model = 'old';
                 UPDATE project_syncs SET last_pushed_at = created_at;
                 UPDATE notes SET body = NULL;"
            ),
            vec![]
        );
    }

    #[test]
    fn a_vector_column_from_the_catalog_is_protected() {
        let p = Protection::default().with_column("notes", "embedding");
        assert_eq!(
            verdicts_with("UPDATE notes SET embedding = NULL", &p),
            vec![V::refused(
                "sets the protected column notes.embedding to NULL in every row"
            )]
        );
    }
}
