//! Go: functions, methods (under their receiver's type), types (structs,
//! interfaces with their methods, aliases), constants; the `//` comments
//! directly above as docs, the package comment as the module doc; imports
//! (packages, not files: no candidates).

use tree_sitter::Node;

use crate::collect::{slash_comment_doc, Collector, Def};
use crate::text::value_cut;
use crate::{SymbolKind, Visibility};

pub(super) fn extract(c: &mut Collector<'_>, root: Node<'_>) {
    let mut cursor = root.walk();
    let children: Vec<Node<'_>> = root.named_children(&mut cursor).collect();
    top(c, &children);
}

fn top(c: &mut Collector<'_>, children: &[Node<'_>]) {
    if !c.enter() {
        return;
    }
    for &node in children {
        match node.kind() {
            "package_clause" => c.module_doc = comment_doc(c, node).0,
            "function_declaration" | "method_declaration" => function(c, node),
            "type_declaration" => specs(c, node, SymbolKind::Type),
            "const_declaration" => specs(c, node, SymbolKind::Const),
            "import_declaration" => imports(c, node),
            "ERROR" => {
                let mut cursor = node.walk();
                let inner: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
                top(c, &inner);
            }
            _ => {}
        }
    }
    c.leave();
}

fn visibility(name: &str) -> Visibility {
    if name.chars().next().is_some_and(char::is_uppercase) {
        Visibility::Public
    } else {
        Visibility::Private
    }
}

fn function(c: &mut Collector<'_>, node: Node<'_>) {
    let Some(name) = node.child_by_field_name("name") else {
        return;
    };
    let name = c.text(name).to_string();
    let (kind, scope) = match node.child_by_field_name("receiver") {
        Some(receiver) => (
            SymbolKind::Method,
            receiver_type(c, receiver).unwrap_or_default(),
        ),
        None => (SymbolKind::Function, String::new()),
    };
    let body = node.child_by_field_name("body");
    let (doc, doc_start) = comment_doc(c, node);
    c.add(Def {
        scope: &scope,
        visibility: visibility(&name),
        name,
        kind,
        node,
        sig: (
            node.start_byte(),
            body.map_or(node.end_byte(), |b| b.start_byte()),
        ),
        doc,
        doc_start,
        declaration_only: false,
    });
}

/// `Store` in `(s *Store[T])`.
fn receiver_type(c: &Collector<'_>, receiver: Node<'_>) -> Option<String> {
    let param = receiver.named_child(0)?;
    let mut ty = param.child_by_field_name("type")?;
    loop {
        match ty.kind() {
            "pointer_type" | "parenthesized_type" => ty = ty.named_child(0)?,
            "generic_type" => ty = ty.child_by_field_name("type")?,
            _ => return Some(c.text(ty).to_string()),
        }
    }
}

/// `type (…)` and `const (…)` hold one spec or a group; a lone spec takes
/// the whole declaration (the `type` keyword, the comment above it).
fn specs(c: &mut Collector<'_>, decl: Node<'_>, default: SymbolKind) {
    let mut cursor = decl.walk();
    let specs: Vec<Node<'_>> = decl
        .named_children(&mut cursor)
        .filter(|n| matches!(n.kind(), "type_spec" | "type_alias" | "const_spec"))
        .collect();
    let grouped = specs.len() != 1
        || decl
            .named_children(&mut decl.walk())
            .any(|n| n.kind() == "comment");
    for spec in specs {
        let node = if grouped { spec } else { decl };
        let (doc, doc_start) = comment_doc(c, node);
        let ty = spec.child_by_field_name("type");
        let kind = match ty.map(|t| t.kind()) {
            Some("interface_type") if default == SymbolKind::Type => SymbolKind::Interface,
            _ => default,
        };
        // The signature stops at the struct's or interface's brace.
        let sig_end = match ty {
            Some(t) if matches!(t.kind(), "struct_type" | "interface_type") => {
                t.start_byte() + c.text(t).find('{').unwrap_or(t.end_byte() - t.start_byte())
            }
            _ => value_cut(c.src, node.end_byte(), spec.child_by_field_name("value")),
        };
        let mut names = spec.walk();
        let names: Vec<Node<'_>> = spec
            .children_by_field_name("name", &mut names)
            .filter(|n| n.is_named())
            .collect();
        for name in names {
            let name = c.text(name).to_string();
            let scope = c.add(Def {
                scope: "",
                visibility: visibility(&name),
                name,
                kind,
                node,
                sig: (node.start_byte(), sig_end),
                doc: doc.clone(),
                doc_start,
                declaration_only: false,
            });
            if let (SymbolKind::Interface, Some(t)) = (kind, ty) {
                interface_methods(c, t, &scope);
            }
        }
    }
}

fn interface_methods(c: &mut Collector<'_>, ty: Node<'_>, scope: &str) {
    let mut cursor = ty.walk();
    let elems: Vec<Node<'_>> = ty
        .named_children(&mut cursor)
        .filter(|n| n.kind() == "method_elem")
        .collect();
    for elem in elems {
        let Some(name) = elem.child_by_field_name("name") else {
            continue;
        };
        let name = c.text(name).to_string();
        let (doc, doc_start) = comment_doc(c, elem);
        c.add(Def {
            scope,
            visibility: visibility(&name),
            name,
            kind: SymbolKind::Method,
            node: elem,
            sig: (elem.start_byte(), elem.end_byte()),
            doc,
            doc_start,
            declaration_only: false,
        });
    }
}

/// The comment lines directly above, as Go's doc comments are.
fn comment_doc(c: &Collector<'_>, node: Node<'_>) -> (Option<String>, Option<usize>) {
    slash_comment_doc(c, node, &["//"])
}

fn imports(c: &mut Collector<'_>, decl: Node<'_>) {
    let mut stack = vec![decl];
    while let Some(node) = stack.pop() {
        if node.kind() == "import_spec" {
            if let Some(path) = node.child_by_field_name("path") {
                let spec = c
                    .text(path)
                    .trim_matches(|ch| ch == '"' || ch == '`')
                    .to_string();
                c.import(spec, node, Vec::new());
            }
            continue;
        }
        let mut cursor = node.walk();
        let mut children: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
        children.reverse();
        stack.extend(children);
    }
}
