//! Java: classes, records, interfaces, annotation types and enums (nested
//! too), methods and constructors, `static final` fields and interface
//! constants; Javadoc; imports, found under the file's source root (the
//! directory its `package` names).

use tree_sitter::Node;

use crate::collect::{comments_above, Collector, Def};
use crate::imports::{dir_of, under};
use crate::text::{clean_block_comment, doc, value_cut};
use crate::{SymbolKind, Visibility};

pub(super) fn extract(c: &mut Collector<'_>, root: Node<'_>) {
    let mut cursor = root.walk();
    let children: Vec<Node<'_>> = root.named_children(&mut cursor).collect();
    let package = children
        .iter()
        .find(|n| n.kind() == "package_declaration")
        .and_then(|p| p.named_child(0))
        .map(|n| c.text(n).to_string());
    let root_dir = source_root(c.path, package.as_deref());
    for node in &children {
        if node.kind() == "import_declaration" {
            import(c, *node, &root_dir);
        }
    }
    body(c, root, "", false);
}

/// `src/main/java` for `src/main/java/com/acme/App.java` in `com.acme`.
fn source_root(path: &str, package: Option<&str>) -> String {
    let dir = dir_of(path);
    let Some(package) = package else {
        return dir.to_string();
    };
    let rel = package.replace('.', "/");
    if dir == rel {
        String::new()
    } else {
        dir.strip_suffix(&format!("/{rel}"))
            .unwrap_or(dir)
            .to_string()
    }
}

fn body(c: &mut Collector<'_>, container: Node<'_>, scope: &str, in_interface: bool) {
    if !c.enter() {
        return;
    }
    let mut cursor = container.walk();
    let children: Vec<Node<'_>> = container.named_children(&mut cursor).collect();
    for node in children {
        let kind = match node.kind() {
            "class_declaration" | "record_declaration" => SymbolKind::Class,
            "interface_declaration" | "annotation_type_declaration" => SymbolKind::Interface,
            "enum_declaration" => SymbolKind::Enum,
            "method_declaration"
            | "constructor_declaration"
            | "compact_constructor_declaration" => SymbolKind::Method,
            "field_declaration" | "constant_declaration" => {
                constants(c, node, scope, in_interface);
                continue;
            }
            "enum_body_declarations" | "ERROR" => {
                body(c, node, scope, in_interface);
                continue;
            }
            _ => continue,
        };
        let Some(name) = node.child_by_field_name("name") else {
            continue;
        };
        let name = c.text(name).to_string();
        let b = node.child_by_field_name("body");
        let (doc, doc_start) = javadoc(c, node);
        let child_scope = c.add(Def {
            scope,
            name,
            kind,
            node,
            sig: (
                node.start_byte(),
                b.map_or(node.end_byte(), |b| b.start_byte()),
            ),
            doc,
            doc_start,
            visibility: visibility(c, node, in_interface),
            declaration_only: false,
        });
        if let (SymbolKind::Class | SymbolKind::Interface | SymbolKind::Enum, Some(b)) = (kind, b) {
            body(c, b, &child_scope, kind == SymbolKind::Interface);
        }
    }
    c.leave();
}

fn modifiers(c: &Collector<'_>, node: Node<'_>) -> Vec<String> {
    let mut cursor = node.walk();
    let Some(mods) = node
        .named_children(&mut cursor)
        .find(|n| n.kind() == "modifiers")
    else {
        return Vec::new();
    };
    let mut cursor = mods.walk();
    mods.children(&mut cursor)
        .map(|m| c.text(m).to_string())
        .collect()
}

/// `public`, or a member of an interface that is not `private`.
fn visibility(c: &Collector<'_>, node: Node<'_>, in_interface: bool) -> Visibility {
    let mods = modifiers(c, node);
    let public = mods.iter().any(|m| m == "public")
        || (in_interface && !mods.iter().any(|m| m == "private"));
    if public {
        Visibility::Public
    } else {
        Visibility::Private
    }
}

/// `static final` fields, and every field of an interface.
fn constants(c: &mut Collector<'_>, node: Node<'_>, scope: &str, in_interface: bool) {
    let mods = modifiers(c, node);
    let constant =
        in_interface || (mods.iter().any(|m| m == "static") && mods.iter().any(|m| m == "final"));
    if !constant {
        return;
    }
    let mut cursor = node.walk();
    let declarators: Vec<Node<'_>> = node
        .children_by_field_name("declarator", &mut cursor)
        .collect();
    let (doc, doc_start) = javadoc(c, node);
    for d in declarators {
        let Some(name) = d.child_by_field_name("name") else {
            continue;
        };
        c.add(Def {
            scope,
            name: c.text(name).to_string(),
            kind: SymbolKind::Const,
            node,
            sig: (
                node.start_byte(),
                value_cut(c.src, node.end_byte(), d.child_by_field_name("value")),
            ),
            doc: doc.clone(),
            doc_start,
            visibility: visibility(c, node, in_interface),
            declaration_only: false,
        });
    }
}

/// The `/** */` comment before a declaration (annotations are inside the
/// declaration, so it is the previous sibling).
fn javadoc(c: &Collector<'_>, node: Node<'_>) -> (Option<String>, Option<usize>) {
    let comments = comments_above(
        node,
        |n| matches!(n.kind(), "block_comment" | "line_comment"),
        |_| false,
        false,
    );
    match comments
        .iter()
        .rev()
        .find(|n| n.kind() == "block_comment" && c.text(**n).starts_with("/**"))
    {
        Some(n) => (doc(clean_block_comment(c.text(*n))), Some(n.start_byte())),
        None => (None, None),
    }
}

fn import(c: &mut Collector<'_>, node: Node<'_>, root: &str) {
    let text = c.text(node);
    let name: String = text
        .trim_start_matches("import")
        .trim_end_matches(';')
        .split_whitespace()
        .filter(|w| *w != "static")
        .collect();
    let mut candidates = Vec::new();
    if !name.ends_with(".*") {
        // `a.b.C.D` may be a nested class or a static member: the longest
        // prefixes that can be files first.
        let parts: Vec<&str> = name.split('.').collect();
        for n in (1..=parts.len()).rev() {
            if parts[n - 1].chars().next().is_some_and(char::is_uppercase) {
                candidates.push(under(root, &format!("{}.java", parts[..n].join("/"))));
            }
        }
    }
    c.import(name, node, candidates);
}
