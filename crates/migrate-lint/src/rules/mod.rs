//! The rules, one file each: what a statement does to the protected
//! objects, judged on its syntax tree.
//!
//! A rule reports [`Finding`]s; `lint` turns a [`Finding::Destroys`] into a
//! refusal or, when a consent line covers its object, a consented verdict.

mod bodies;
mod cascade;
mod column_type;
mod delete_update;
mod drop;
pub(crate) mod locks;
mod rename;
mod truncate;

use std::collections::BTreeSet;

use pg_query::protobuf::{AlterTableType, DropBehavior, ObjectType, RangeVar};
use pg_query::{Node, NodeEnum};

use crate::protection::{normalize, Protection, VECTOR_TYPES};

/// What a rule found in a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finding {
    /// Destroys the protected `target` (`table`, `table.column`, or an object
    /// such as `vector`): refused unless a consent covers it.
    Destroys {
        target: String,
        /// What the statement does, for the message.
        what: String,
        /// The safer way, if there is one.
        instead: String,
    },
    Warning(String),
    /// Refused whatever the consents say.
    Refused(String),
}

impl Finding {
    fn destroys(target: impl Into<String>, what: impl Into<String>) -> Self {
        Finding::Destroys {
            target: target.into(),
            what: what.into(),
            instead: String::new(),
        }
    }

    fn instead(self, text: impl Into<String>) -> Self {
        match self {
            Finding::Destroys { target, what, .. } => Finding::Destroys {
                target,
                what,
                instead: text.into(),
            },
            other => other,
        }
    }

    /// The finding of a statement nested in a body, with where it is.
    fn within(self, label: &str) -> Self {
        match self {
            Finding::Destroys {
                target,
                what,
                instead,
            } => Finding::Destroys {
                target,
                what: format!("{label}: {what}"),
                instead,
            },
            Finding::Warning(m) => Finding::Warning(format!("{label}: {m}")),
            Finding::Refused(m) => Finding::Refused(format!("{label}: {m}")),
        }
    }
}

/// What the guard knows while it reads a file, statement after statement.
pub(crate) struct Ctx<'a> {
    /// The whole file, for line numbers.
    pub file: &'a str,
    /// The caller's protection, plus the vector columns this file creates.
    pub protection: Protection,
    /// Tables this file creates (empty, so locks and rewrites cost nothing).
    pub created: BTreeSet<String>,
    /// The file starts with `-- no-transaction` (sqlx runs it outside a
    /// transaction).
    pub no_transaction: bool,
}

impl<'a> Ctx<'a> {
    pub fn new(file: &'a str, protection: Protection) -> Self {
        Ctx {
            file,
            protection,
            created: BTreeSet::new(),
            no_transaction: file.starts_with("-- no-transaction"),
        }
    }

    fn protects(&self, table: &str) -> bool {
        self.protection.protects_table(table)
    }

    /// Whether a lock or a rewrite of `table` would hurt: it is protected
    /// and already holds rows (this file did not just create it).
    fn watches_locks(&self, table: &str) -> bool {
        self.protects(table) && !self.created.contains(table)
    }

    fn table_desc(&self, table: &str) -> String {
        format!("the protected table {table}")
    }

    fn column_desc(&self, table: &str, column: &str) -> String {
        if self.protection.protects_column_itself(table, column) {
            format!("the protected column {table}.{column}")
        } else {
            format!("column {table}.{column} of the protected table {table}")
        }
    }
}

/// The findings on one statement. `text` is its SQL; `base` is the offset
/// in the file that its node locations count from, when known.
pub(crate) fn check(
    node: &NodeEnum,
    text: &str,
    base: Option<usize>,
    ctx: &mut Ctx<'_>,
    depth: usize,
) -> Vec<Finding> {
    let mut out = Vec::new();
    drop::check(node, ctx, &mut out);
    rename::check(node, ctx, &mut out);
    column_type::check(node, ctx, &mut out);
    truncate::check(node, ctx, &mut out);
    cascade::check(node, ctx, &mut out);
    delete_update::check(node, ctx, &mut out);
    locks::check(node, ctx, &mut out);
    bodies::check(node, text, base, ctx, &mut out, depth);
    learn(node, ctx);
    out
}

/// What later statements of the file must know: the tables it creates, the
/// vector columns it adds, the new names of protected objects.
fn learn(node: &NodeEnum, ctx: &mut Ctx<'_>) {
    match node {
        NodeEnum::CreateStmt(s) => {
            let Some(table) = s.relation.as_ref().map(table_key) else {
                return;
            };
            if !s.if_not_exists {
                ctx.created.insert(table.clone());
            }
            for elt in &s.table_elts {
                if let Some(NodeEnum::ColumnDef(c)) = &elt.node {
                    if is_vector(c.type_name.as_ref()) {
                        ctx.protection.protect_column(&table, &c.colname);
                    }
                }
            }
        }
        NodeEnum::AlterTableStmt(s) => {
            let Some(table) = s.relation.as_ref().map(table_key) else {
                return;
            };
            for cmd in alter_cmds(s) {
                if cmd.subtype() == AlterTableType::AtAddColumn {
                    if let Some(NodeEnum::ColumnDef(c)) =
                        cmd.def.as_ref().and_then(|d| d.node.as_ref())
                    {
                        if is_vector(c.type_name.as_ref()) {
                            ctx.protection.protect_column(&table, &c.colname);
                        }
                    }
                }
            }
        }
        NodeEnum::RenameStmt(s) => {
            let Some(table) = s.relation.as_ref().map(table_key) else {
                return;
            };
            match s.rename_type() {
                ObjectType::ObjectTable if ctx.protects(&table) => {
                    ctx.protection.protect_table(&s.newname)
                }
                ObjectType::ObjectColumn
                    if ctx.protection.protects_column_itself(&table, &s.subname) =>
                {
                    ctx.protection.protect_column(&table, &s.newname)
                }
                _ => {}
            }
        }
        _ => {}
    }
}

/// `table` or `schema.table`, lower case, `public.` dropped.
pub(crate) fn table_key(r: &RangeVar) -> String {
    if r.schemaname.is_empty() {
        normalize(&r.relname)
    } else {
        normalize(&format!("{}.{}", r.schemaname, r.relname))
    }
}

/// The name of an object in a `DROP` list, normalized.
pub(crate) fn object_name(node: &Node) -> String {
    fn parts(nodes: &[Node]) -> String {
        nodes.iter().map(raw_name).collect::<Vec<_>>().join(".")
    }
    fn raw_name(node: &Node) -> String {
        match &node.node {
            Some(NodeEnum::String(s)) => s.sval.clone(),
            Some(NodeEnum::List(l)) => parts(&l.items),
            Some(NodeEnum::TypeName(t)) => parts(&t.names),
            Some(NodeEnum::ObjectWithArgs(o)) => parts(&o.objname),
            Some(NodeEnum::RangeVar(r)) => table_key(r),
            _ => "?".into(),
        }
    }
    normalize(&raw_name(node))
}

/// The last part of a possibly qualified name (`pg_catalog.int4` → `int4`).
fn last_name(names: &[Node]) -> Option<String> {
    match names.last().and_then(|n| n.node.as_ref()) {
        Some(NodeEnum::String(s)) => Some(s.sval.to_lowercase()),
        _ => None,
    }
}

pub(crate) fn is_vector(type_name: Option<&pg_query::protobuf::TypeName>) -> bool {
    type_name
        .and_then(|t| last_name(&t.names))
        .is_some_and(|n| VECTOR_TYPES.contains(&n.as_str()))
}

fn is_cascade(behavior: DropBehavior) -> bool {
    behavior == DropBehavior::DropCascade
}

fn alter_cmds(
    s: &pg_query::protobuf::AlterTableStmt,
) -> impl Iterator<Item = &pg_query::protobuf::AlterTableCmd> {
    s.cmds.iter().filter_map(|c| match &c.node {
        Some(NodeEnum::AlterTableCmd(cmd)) => Some(&**cmd),
        _ => None,
    })
}

/// What a statement is, as a reader of SQL would say it: `ALTER TABLE`,
/// `DROP EXTENSION`, `CREATE INDEX`, …
pub(crate) fn kind(node: &NodeEnum) -> String {
    let fixed = match node {
        NodeEnum::CreateStmt(_) => "CREATE TABLE",
        NodeEnum::IndexStmt(_) => "CREATE INDEX",
        NodeEnum::ViewStmt(_) => "CREATE VIEW",
        NodeEnum::CreateTableAsStmt(_) => "CREATE TABLE AS",
        NodeEnum::CreateFunctionStmt(f) if f.is_procedure => "CREATE PROCEDURE",
        NodeEnum::CreateFunctionStmt(_) => "CREATE FUNCTION",
        NodeEnum::CreateTrigStmt(_) => "CREATE TRIGGER",
        NodeEnum::CreateSeqStmt(_) => "CREATE SEQUENCE",
        NodeEnum::CreateEnumStmt(_) | NodeEnum::CompositeTypeStmt(_) => "CREATE TYPE",
        NodeEnum::InsertStmt(_) => "INSERT",
        NodeEnum::UpdateStmt(_) => "UPDATE",
        NodeEnum::DeleteStmt(_) => "DELETE",
        NodeEnum::MergeStmt(_) => "MERGE",
        NodeEnum::SelectStmt(_) => "SELECT",
        NodeEnum::TruncateStmt(_) => "TRUNCATE",
        NodeEnum::DoStmt(_) => "DO",
        NodeEnum::VariableSetStmt(_) => "SET",
        NodeEnum::TransactionStmt(_) => "TRANSACTION",
        NodeEnum::CommentStmt(_) => "COMMENT",
        NodeEnum::GrantStmt(g) if g.is_grant => "GRANT",
        NodeEnum::GrantStmt(_) => "REVOKE",
        NodeEnum::AlterTableStmt(s) => return format!("ALTER {}", object_words(s.objtype())),
        NodeEnum::RenameStmt(s) => {
            let t = match s.rename_type() {
                ObjectType::ObjectColumn | ObjectType::ObjectTabconstraint => s.relation_type(),
                other => other,
            };
            return format!("ALTER {}", object_words(t));
        }
        NodeEnum::AlterObjectSchemaStmt(s) => {
            return format!("ALTER {}", object_words(s.object_type()))
        }
        NodeEnum::DropStmt(s) => return format!("DROP {}", object_words(s.remove_type())),
        _ => "",
    };
    if !fixed.is_empty() {
        return fixed.to_string();
    }
    // `CreateExtensionStmt(..)` → `CREATE EXTENSION`
    let debug = format!("{node:?}");
    let variant = debug.split('(').next().unwrap_or_default();
    camel_words(variant.strip_suffix("Stmt").unwrap_or(variant))
}

fn object_words(t: ObjectType) -> String {
    match t {
        ObjectType::ObjectMatview => "MATERIALIZED VIEW".into(),
        ObjectType::ObjectTabconstraint => "CONSTRAINT".into(),
        ObjectType::ObjectFdw => "FOREIGN DATA WRAPPER".into(),
        ObjectType::ObjectStatisticExt => "STATISTICS".into(),
        ObjectType::Undefined => "TABLE".into(),
        other => {
            let debug = format!("{other:?}");
            camel_words(debug.strip_prefix("Object").unwrap_or(&debug))
        }
    }
}

fn camel_words(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<String> {
        pg_query::parse(sql, 0)
            .unwrap()
            .protobuf
            .stmts
            .iter()
            .map(|s| kind(s.stmt.as_ref().unwrap().node.as_ref().unwrap()))
            .collect()
    }

    #[test]
    fn statement_kinds_read_like_sql() {
        assert_eq!(
            kinds(
                "CREATE TABLE t (a int); CREATE UNIQUE INDEX i ON t (a); ALTER TABLE t ADD COLUMN b int;
                 ALTER TABLE t RENAME COLUMN a TO c; ALTER TABLE t RENAME TO u; ALTER INDEX i RENAME TO j;
                 DROP TABLE u; DROP EXTENSION vector; DROP MATERIALIZED VIEW m; CREATE EXTENSION vector;
                 DO $$ BEGIN NULL; END $$; COMMENT ON TABLE t IS 'x'; REVOKE ALL ON t FROM PUBLIC;
                 ALTER VIEW v SET (security_invoker = true); CREATE POLICY p ON t USING (true);
                 ALTER TABLE t SET SCHEMA s; DELETE FROM t; TRUNCATE t"
            ),
            vec![
                "CREATE TABLE",
                "CREATE INDEX",
                "ALTER TABLE",
                "ALTER TABLE",
                "ALTER TABLE",
                "ALTER INDEX",
                "DROP TABLE",
                "DROP EXTENSION",
                "DROP MATERIALIZED VIEW",
                "CREATE EXTENSION",
                "DO",
                "COMMENT",
                "REVOKE",
                "ALTER VIEW",
                "CREATE POLICY",
                "ALTER TABLE",
                "DELETE",
                "TRUNCATE"
            ]
        );
    }

    #[test]
    fn names_are_normalized() {
        let stmts =
            pg_query::parse(r#"DROP TABLE public."Projects", audit.Log, "x""y""#, 0).unwrap();
        let Some(NodeEnum::DropStmt(d)) =
            stmts.protobuf.stmts[0].stmt.as_ref().unwrap().node.as_ref()
        else {
            panic!()
        };
        let names: Vec<String> = d.objects.iter().map(object_name).collect();
        assert_eq!(names, vec!["projects", "audit.log", "x\"y"]);
    }
}
