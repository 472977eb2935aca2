//! Python: functions, classes and their methods, module-level constants
//! (UPPER_CASE names) and `type` aliases; docstrings; `import` and
//! `from … import` anywhere in the file.

use tree_sitter::Node;

use crate::collect::{walk_tree, Collector, Def};
use crate::imports::python_candidates;
use crate::text::{clean_docstring, doc, value_cut};
use crate::{SymbolKind, Visibility};

pub(super) fn extract(c: &mut Collector<'_>, root: Node<'_>) {
    c.module_doc = docstring(c, root);
    block(c, root, "", false);
    walk_tree(root, |node| imports(c, node));
}

fn block(c: &mut Collector<'_>, container: Node<'_>, scope: &str, in_class: bool) {
    if !c.enter() {
        return;
    }
    let mut cursor = container.walk();
    let children: Vec<Node<'_>> = container.named_children(&mut cursor).collect();
    for node in children {
        statement(c, node, node, scope, in_class);
    }
    c.leave();
}

/// `outer` is the statement as a whole (a decorated definition), `node` the
/// definition in it.
fn statement(c: &mut Collector<'_>, outer: Node<'_>, node: Node<'_>, scope: &str, in_class: bool) {
    match node.kind() {
        "decorated_definition" => {
            if let Some(def) = node.child_by_field_name("definition") {
                statement(c, node, def, scope, in_class);
            }
        }
        "function_definition" | "class_definition" => {
            let (Some(name), Some(body)) = (
                node.child_by_field_name("name"),
                node.child_by_field_name("body"),
            ) else {
                return;
            };
            let name = c.text(name).to_string();
            let kind = match (node.kind(), in_class) {
                ("class_definition", _) => SymbolKind::Class,
                (_, true) => SymbolKind::Method,
                _ => SymbolKind::Function,
            };
            let child_scope = c.add(Def {
                scope,
                kind,
                node: outer,
                sig: (node.start_byte(), body.start_byte()),
                doc: docstring(c, body),
                doc_start: None,
                visibility: visibility(&name),
                declaration_only: false,
                name,
            });
            if kind == SymbolKind::Class {
                block(c, body, &child_scope, true);
            }
        }
        "expression_statement" if scope.is_empty() => {
            let Some(assignment) = node.named_child(0).filter(|n| n.kind() == "assignment") else {
                return;
            };
            let Some(left) = assignment
                .child_by_field_name("left")
                .filter(|l| l.kind() == "identifier")
            else {
                return;
            };
            let name = c.text(left).to_string();
            if is_constant_name(&name) {
                c.add(Def {
                    scope,
                    kind: SymbolKind::Const,
                    node,
                    sig: (
                        node.start_byte(),
                        value_cut(
                            c.src,
                            node.end_byte(),
                            assignment.child_by_field_name("right"),
                        ),
                    ),
                    doc: None,
                    doc_start: None,
                    visibility: visibility(&name),
                    declaration_only: false,
                    name,
                });
            }
        }
        "type_alias_statement" if scope.is_empty() => {
            let Some(left) = node.child_by_field_name("left") else {
                return;
            };
            // `type Pair[T] = …`: the name is the first identifier.
            let name = c
                .text(left)
                .split(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                .next()
                .unwrap_or("")
                .to_string();
            if name.is_empty() {
                return;
            }
            c.add(Def {
                scope,
                kind: SymbolKind::Type,
                node,
                sig: (node.start_byte(), node.end_byte()),
                doc: None,
                doc_start: None,
                visibility: visibility(&name),
                declaration_only: false,
                name,
            });
        }
        "ERROR" => block(c, node, scope, in_class),
        _ => {}
    }
}

/// `MAX_SIZE`, `DEFAULT`: the convention for module constants (PEP 8).
fn is_constant_name(name: &str) -> bool {
    name.chars().any(|c| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A leading underscore is private by convention; `__dunder__` names are
/// the language's protocol and public.
fn visibility(name: &str) -> Visibility {
    let dunder = name.len() > 4 && name.starts_with("__") && name.ends_with("__");
    if name.starts_with('_') && !dunder {
        Visibility::Private
    } else {
        Visibility::Public
    }
}

/// The string that opens a module, class or function body.
fn docstring(c: &Collector<'_>, body: Node<'_>) -> Option<String> {
    let mut cursor = body.walk();
    let first = body
        .named_children(&mut cursor)
        .find(|n| n.kind() != "comment")?;
    if first.kind() != "expression_statement" || first.named_child_count() != 1 {
        return None;
    }
    let string = first.named_child(0).filter(|n| n.kind() == "string")?;
    let mut cursor = string.walk();
    let content: String = string
        .named_children(&mut cursor)
        .filter(|n| n.kind() == "string_content")
        .map(|n| c.text(n))
        .collect();
    doc(clean_docstring(&content))
}

/// Imports anywhere (functions import lazily); whether to look inside.
fn imports(c: &mut Collector<'_>, node: Node<'_>) -> bool {
    match node.kind() {
        "import_statement" => {
            let mut names = node.walk();
            let modules: Vec<Node<'_>> = node.children_by_field_name("name", &mut names).collect();
            for m in modules {
                let dotted = m.child_by_field_name("name").unwrap_or(m);
                let module = c.text(dotted).to_string();
                let candidates = python_candidates(c.path, 0, &module);
                c.import(module, node, candidates);
            }
            false
        }
        "import_from_statement" => {
            from_import(c, node);
            false
        }
        _ => true,
    }
}

fn from_import(c: &mut Collector<'_>, node: Node<'_>) {
    let Some(module) = node.child_by_field_name("module_name") else {
        return;
    };
    let text: String = c.text(module).split_whitespace().collect();
    let dots = text.chars().take_while(|ch| *ch == '.').count();
    let rest = &text[dots..];
    if dots > 0 && rest.is_empty() {
        // `from . import a, b`: each name is a module of the package (or
        // something its `__init__` defines).
        let mut names = node.walk();
        let named: Vec<Node<'_>> = node.children_by_field_name("name", &mut names).collect();
        for n in named {
            let dotted = n.child_by_field_name("name").unwrap_or(n);
            let name = c.text(dotted).to_string();
            let mut candidates = python_candidates(c.path, dots, &name);
            candidates.extend(python_candidates(c.path, dots, ""));
            c.import(format!("{text}{name}"), node, candidates);
        }
        if node
            .children_by_field_name("name", &mut node.walk())
            .next()
            .is_none()
        {
            let candidates = python_candidates(c.path, dots, "");
            c.import(text.clone(), node, candidates);
        }
        return;
    }
    let candidates = python_candidates(c.path, dots, rest);
    c.import(text, node, candidates);
}
