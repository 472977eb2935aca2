//! JavaScript, TypeScript and TSX: functions (declared, or arrow and
//! function expressions bound to a name), classes and their methods,
//! interfaces, type aliases, enums, namespaces, top-level `const`s; JSDoc
//! `/** */` comments; `import`, `export … from`, `require()` and `import()`.

use tree_sitter::Node;

use crate::collect::{comments_above, walk_tree, Collector, Def};
use crate::imports::js_candidates;
use crate::text::{clean_block_comment, doc, end_line, start_line, value_cut};
use crate::{SymbolKind, Visibility};

pub(super) fn extract(c: &mut Collector<'_>, root: Node<'_>) {
    c.module_doc = file_doc(c, root);
    statements(c, root, "");
    walk_tree(root, |node| {
        imports(c, node);
        true
    });
}

fn statements(c: &mut Collector<'_>, container: Node<'_>, scope: &str) {
    if !c.enter() {
        return;
    }
    let mut cursor = container.walk();
    let children: Vec<Node<'_>> = container.named_children(&mut cursor).collect();
    for node in children {
        match node.kind() {
            "export_statement" => {
                if let Some(decl) = node.child_by_field_name("declaration") {
                    declaration(c, node, decl, scope, true);
                }
            }
            "expression_statement" => {
                // `namespace N {}` parses as an expression statement.
                if let Some(inner) = node.named_child(0) {
                    if matches!(inner.kind(), "internal_module" | "module") {
                        declaration(c, node, inner, scope, false);
                    }
                }
            }
            "ambient_declaration" => {
                let mut cursor = node.walk();
                let inner: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
                for decl in inner {
                    declaration(c, node, decl, scope, false);
                }
            }
            "ERROR" => statements(c, node, scope),
            _ => declaration(c, node, node, scope, false),
        }
    }
    c.leave();
}

/// `outer` is the whole statement (`export …`, `declare …`), `decl` the
/// declaration in it.
fn declaration(
    c: &mut Collector<'_>,
    outer: Node<'_>,
    decl: Node<'_>,
    scope: &str,
    exported: bool,
) {
    let kind = match decl.kind() {
        "function_declaration" | "generator_function_declaration" | "function_signature" => {
            SymbolKind::Function
        }
        "class_declaration" | "abstract_class_declaration" | "class" => SymbolKind::Class,
        "interface_declaration" => SymbolKind::Interface,
        "type_alias_declaration" => SymbolKind::Type,
        "enum_declaration" => SymbolKind::Enum,
        "internal_module" | "module" => SymbolKind::Module,
        "lexical_declaration" | "variable_declaration" => {
            variables(c, outer, decl, scope, exported);
            return;
        }
        _ => return,
    };
    let Some(name) = decl.child_by_field_name("name") else {
        return;
    };
    let name = c
        .text(name)
        .trim_matches(|ch| ch == '"' || ch == '\'')
        .to_string();
    let body = decl.child_by_field_name("body");
    let (doc, doc_start) = jsdoc(c, outer);
    let child_scope = c.add(Def {
        scope,
        name,
        kind,
        node: outer,
        sig: (
            outer.start_byte(),
            body.map_or(outer.end_byte(), |b| b.start_byte()),
        ),
        doc,
        doc_start,
        visibility: if exported {
            Visibility::Public
        } else {
            Visibility::Private
        },
        // TypeScript overloads: signatures, then the one implementation.
        declaration_only: decl.kind() == "function_signature",
    });
    match (kind, body) {
        (SymbolKind::Class | SymbolKind::Interface, Some(body)) => members(c, body, &child_scope),
        (SymbolKind::Module, Some(body)) => statements(c, body, &child_scope),
        _ => {}
    }
}

/// `const f = () => …` is a function; other `const`s at the top of a module
/// or namespace are constants; `let` and `var` that hold no function are
/// state, not API.
fn variables(c: &mut Collector<'_>, outer: Node<'_>, decl: Node<'_>, scope: &str, exported: bool) {
    let is_const = decl.child(0).is_some_and(|k| c.text(k) == "const");
    let mut cursor = decl.walk();
    let declarators: Vec<Node<'_>> = decl
        .named_children(&mut cursor)
        .filter(|n| n.kind() == "variable_declarator")
        .collect();
    let single = declarators.len() == 1;
    for d in declarators {
        let Some(name) = d
            .child_by_field_name("name")
            .filter(|n| n.kind() == "identifier")
        else {
            continue;
        };
        let value = d.child_by_field_name("value");
        let function = value.filter(|v| is_function_value(*v));
        if value.is_some_and(|v| is_load(c, v)) {
            // `const x = require("x")` is an import (listed as one), not API.
            continue;
        }
        let kind = match function {
            Some(_) => SymbolKind::Function,
            None if is_const => SymbolKind::Const,
            None => continue,
        };
        // One declarator: the statement is the symbol; several: each
        // declarator is.
        let node = if single { outer } else { d };
        let sig_end = match function {
            Some(f) => f
                .child_by_field_name("body")
                .map_or(f.end_byte(), |b| b.start_byte()),
            None => value_cut(c.src, node.end_byte(), value),
        };
        let (doc, doc_start) = if single {
            jsdoc(c, outer)
        } else {
            (None, None)
        };
        c.add(Def {
            scope,
            name: c.text(name).to_string(),
            kind,
            node,
            sig: (node.start_byte(), sig_end),
            doc,
            doc_start,
            visibility: if exported {
                Visibility::Public
            } else {
                Visibility::Private
            },
            declaration_only: false,
        });
    }
}

fn is_function_value(v: Node<'_>) -> bool {
    matches!(
        v.kind(),
        "arrow_function" | "function_expression" | "function" | "generator_function"
    )
}

fn members(c: &mut Collector<'_>, body: Node<'_>, scope: &str) {
    let mut cursor = body.walk();
    let children: Vec<Node<'_>> = body.named_children(&mut cursor).collect();
    for node in children {
        let value = node.child_by_field_name("value");
        let callable = match node.kind() {
            "method_definition" | "method_signature" | "abstract_method_signature" => true,
            "public_field_definition" | "field_definition" => value.is_some_and(is_function_value),
            _ => false,
        };
        if !callable {
            continue;
        }
        let Some(name) = node
            .child_by_field_name("name")
            .or_else(|| node.child_by_field_name("property"))
        else {
            continue;
        };
        let name = c.text(name).to_string();
        let mut private = name.starts_with('#');
        let mut inner = node.walk();
        for child in node.children(&mut inner) {
            if child.kind() == "accessibility_modifier" && c.text(child) != "public" {
                private = true;
            }
        }
        let body_start = node
            .child_by_field_name("body")
            .or_else(|| value.and_then(|v| v.child_by_field_name("body")))
            .map_or(node.end_byte(), |b| b.start_byte());
        let (doc, doc_start) = jsdoc(c, node);
        c.add(Def {
            scope,
            name,
            kind: SymbolKind::Method,
            node,
            sig: (node.start_byte(), body_start),
            doc,
            doc_start,
            visibility: if private {
                Visibility::Private
            } else {
                Visibility::Public
            },
            declaration_only: node.kind() == "method_signature",
        });
    }
}

fn is_jsdoc(c: &Collector<'_>, n: Node<'_>) -> bool {
    n.kind() == "comment" && c.text(n).starts_with("/**") && !is_file_doc(c.text(n))
}

fn is_file_doc(text: &str) -> bool {
    ["@file", "@fileoverview", "@module", "@packageDocumentation"]
        .iter()
        .any(|t| text.contains(t))
}

/// The `/** */` comment directly above (the last one, when several are).
fn jsdoc(c: &Collector<'_>, node: Node<'_>) -> (Option<String>, Option<usize>) {
    let comments = comments_above(
        node,
        |n| n.kind() == "comment",
        |n| n.kind() == "decorator",
        true,
    );
    match comments.last().filter(|n| is_jsdoc(c, **n)) {
        Some(n) => (doc(clean_block_comment(c.text(*n))), Some(n.start_byte())),
        None => (None, None),
    }
}

/// A `/** */` comment that opens the file and belongs to no declaration: it
/// says it is the file's (`@file`, `@module`…), or a blank line or the end
/// of the file follows it.
fn file_doc(c: &Collector<'_>, root: Node<'_>) -> Option<String> {
    let mut cursor = root.walk();
    let mut children = root
        .named_children(&mut cursor)
        .skip_while(|n| n.kind() == "hash_bang_line");
    let first = children.next()?;
    let text = c.text(first);
    if first.kind() != "comment" || !text.starts_with("/**") {
        return None;
    }
    let detached = match children.next() {
        Some(next) => start_line(next) > end_line(first) + 1,
        None => true,
    };
    if is_file_doc(text) || detached {
        let cleaned = clean_block_comment(text);
        let untagged = ["@fileoverview", "@file"]
            .iter()
            .find_map(|tag| cleaned.strip_prefix(tag))
            .map_or(cleaned.as_str(), str::trim_start);
        doc(untagged.to_string())
    } else {
        None
    }
}

fn imports(c: &mut Collector<'_>, node: Node<'_>) {
    match node.kind() {
        "import_statement" | "export_statement" => {
            if let Some(source) = node.child_by_field_name("source") {
                add(c, node, source);
            }
        }
        "call_expression" if is_load(c, node) => {
            let first = node
                .child_by_field_name("arguments")
                .and_then(|a| a.named_child(0))
                .filter(|a| a.kind() == "string");
            if let Some(spec) = first {
                add(c, node, spec);
            }
        }
        _ => {}
    }
}

/// `require(…)` or `import(…)`.
fn is_load(c: &Collector<'_>, node: Node<'_>) -> bool {
    node.kind() == "call_expression"
        && node
            .child_by_field_name("function")
            .is_some_and(|f| f.kind() == "import" || c.text(f) == "require")
}

fn add(c: &mut Collector<'_>, node: Node<'_>, string: Node<'_>) {
    let spec = c
        .text(string)
        .trim_matches(|ch| ch == '"' || ch == '\'' || ch == '`')
        .to_string();
    let candidates = js_candidates(c.path, &spec);
    c.import(spec, node, candidates);
}
