//! C and C++: functions (definitions, and prototypes the file does not
//! define), structs, unions, classes and their methods, enums, typedefs
//! and aliases, namespaces, object-like macros; the comments directly
//! above as docs; `#include`s.
//!
//! Headers wrap everything in include guards and `extern "C"` blocks, so
//! the walk goes through preprocessor conditionals and linkage blocks as
//! if they were not there.

use tree_sitter::Node;

use crate::collect::{join, slash_comment_doc, Collector, Def};
use crate::imports::include_candidates;
use crate::{SymbolKind, Visibility};

/// Where declarations are being walked: a file or namespace, or a class
/// body with the access in force.
#[derive(Clone, Copy, PartialEq)]
enum Within {
    Namespace,
    /// An anonymous namespace: like `static`, its names stay in the file.
    Anonymous,
    Class(Visibility),
}

pub(super) fn extract(c: &mut Collector<'_>, root: Node<'_>) {
    declarations(c, root, "", Within::Namespace);
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        if node.kind() == "preproc_include" {
            include(c, node);
            continue;
        }
        let mut cursor = node.walk();
        let mut children: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
        children.reverse();
        stack.extend(children);
    }
}

fn declarations(c: &mut Collector<'_>, container: Node<'_>, scope: &str, within: Within) {
    if !c.enter() {
        return;
    }
    let mut cursor = container.walk();
    let children: Vec<Node<'_>> = container.named_children(&mut cursor).collect();
    let mut within = within;
    for node in children {
        if node.kind() == "access_specifier" {
            let access = if c.text(node).starts_with("public") {
                Visibility::Public
            } else {
                Visibility::Private
            };
            within = Within::Class(access);
            continue;
        }
        declaration(c, node, node, scope, within);
    }
    c.leave();
}

/// `outer` carries the lines and the doc comment (a `template <…>` line is
/// part of the declaration it introduces).
fn declaration(
    c: &mut Collector<'_>,
    outer: Node<'_>,
    node: Node<'_>,
    scope: &str,
    within: Within,
) {
    // Templates and linkage blocks nest without `declarations` between.
    if !c.enter() {
        return;
    }
    declaration_in(c, outer, node, scope, within);
    c.leave();
}

fn declaration_in(
    c: &mut Collector<'_>,
    outer: Node<'_>,
    node: Node<'_>,
    scope: &str,
    within: Within,
) {
    match node.kind() {
        "function_definition" => function(c, outer, node, scope, within, false),
        "declaration" | "field_declaration" => {
            if let Some(ty) = node.child_by_field_name("type") {
                if ty.child_by_field_name("body").is_some() {
                    declaration(c, outer, ty, scope, within);
                }
            }
            let mut cursor = node.walk();
            let is_function = node
                .children_by_field_name("declarator", &mut cursor)
                .any(|d| function_declarator(d).is_some());
            if is_function {
                function(c, outer, node, scope, within, true);
            }
        }
        "struct_specifier" | "union_specifier" | "class_specifier" | "enum_specifier" => {
            let (Some(name), Some(body)) = (
                node.child_by_field_name("name"),
                node.child_by_field_name("body"),
            ) else {
                return;
            };
            let kind = match node.kind() {
                "class_specifier" => SymbolKind::Class,
                "enum_specifier" => SymbolKind::Enum,
                _ => SymbolKind::Type,
            };
            let name = last_segment(c.text(name));
            let child_scope = add(
                c,
                outer,
                node,
                scope,
                name,
                kind,
                body.start_byte(),
                within,
                false,
            );
            if kind != SymbolKind::Enum {
                let access = if kind == SymbolKind::Class {
                    Visibility::Private
                } else {
                    Visibility::Public
                };
                declarations(c, body, &child_scope, Within::Class(access));
            }
        }
        "type_definition" => {
            let mut cursor = node.walk();
            let declarators: Vec<Node<'_>> = node
                .children_by_field_name("declarator", &mut cursor)
                .collect();
            for d in declarators {
                if let Some(name) = declared_name(d) {
                    let name = c.text(name).to_string();
                    add(
                        c,
                        outer,
                        node,
                        scope,
                        name,
                        SymbolKind::Type,
                        node.end_byte(),
                        within,
                        false,
                    );
                }
            }
        }
        "alias_declaration" => {
            if let Some(name) = node.child_by_field_name("name") {
                let name = c.text(name).to_string();
                add(
                    c,
                    outer,
                    node,
                    scope,
                    name,
                    SymbolKind::Type,
                    node.end_byte(),
                    within,
                    false,
                );
            }
        }
        "namespace_definition" => {
            let Some(body) = node.child_by_field_name("body") else {
                return;
            };
            match node.child_by_field_name("name") {
                Some(name) => {
                    let name: String = c.text(name).split_whitespace().collect();
                    let child_scope = add(
                        c,
                        outer,
                        node,
                        scope,
                        name,
                        SymbolKind::Module,
                        body.start_byte(),
                        within,
                        false,
                    );
                    declarations(c, body, &child_scope, Within::Namespace);
                }
                None => declarations(c, body, scope, Within::Anonymous),
            }
        }
        "template_declaration" => {
            let mut cursor = node.walk();
            let inner = node
                .named_children(&mut cursor)
                .find(|n| n.kind() != "template_parameter_list" && n.kind() != "comment");
            if let Some(inner) = inner {
                declaration(c, outer, inner, scope, within);
            }
        }
        "preproc_def" if scope.is_empty() => {
            // Include guards are no API: `#define GUARD_H` has no value,
            // and `#define _STDIO_H 1` says what it is by its name.
            let (Some(name), Some(_)) = (
                node.child_by_field_name("name"),
                node.child_by_field_name("value"),
            ) else {
                return;
            };
            let name = c.text(name).to_string();
            if is_guard(&name) {
                return;
            }
            add(
                c,
                outer,
                node,
                scope,
                name,
                SymbolKind::Const,
                node.end_byte(),
                within,
                false,
            );
        }
        "preproc_ifdef"
        | "preproc_if"
        | "preproc_else"
        | "preproc_elif"
        | "preproc_elifdef"
        | "linkage_specification"
        | "declaration_list"
        | "ERROR" => {
            let inner = if node.kind() == "linkage_specification" {
                node.child_by_field_name("body").unwrap_or(node)
            } else {
                node
            };
            if inner.kind() == "declaration" || inner.kind() == "function_definition" {
                declaration(c, inner, inner, scope, within);
            } else {
                declarations(c, inner, scope, within);
            }
        }
        _ => {}
    }
}

#[allow(clippy::too_many_arguments)]
fn add(
    c: &mut Collector<'_>,
    outer: Node<'_>,
    node: Node<'_>,
    scope: &str,
    name: String,
    kind: SymbolKind,
    sig_end: usize,
    within: Within,
    declaration_only: bool,
) -> String {
    let (doc, doc_start) = comment_doc(c, outer);
    let visibility = match within {
        Within::Class(access) => access,
        Within::Anonymous => Visibility::Private,
        Within::Namespace if is_static(c, node) => Visibility::Private,
        Within::Namespace => Visibility::Public,
    };
    c.add(Def {
        scope,
        name,
        kind,
        node: outer,
        sig: (outer.start_byte(), sig_end),
        doc,
        doc_start,
        visibility,
        declaration_only,
    })
}

fn function(
    c: &mut Collector<'_>,
    outer: Node<'_>,
    node: Node<'_>,
    scope: &str,
    within: Within,
    prototype: bool,
) {
    let mut cursor = node.walk();
    let Some(declarator) = node
        .children_by_field_name("declarator", &mut cursor)
        .find_map(function_declarator)
    else {
        return;
    };
    let Some(name_node) = declarator.child_by_field_name("declarator") else {
        return;
    };
    // `int Shape::area()` defines a member of `Shape` outside its class.
    let (qualifier, name) = split_qualified(c, name_node);
    let scope = match &qualifier {
        Some(q) => join(scope, q),
        None => scope.to_string(),
    };
    let kind = match (within, &qualifier) {
        (Within::Class(_), _) => SymbolKind::Method,
        (_, Some(_)) if !c.is_module(&scope) => SymbolKind::Method,
        _ => SymbolKind::Function,
    };
    let body = node.child_by_field_name("body");
    let sig_end = body.map_or(node.end_byte(), |b| b.start_byte());
    let declaration_only = prototype;
    add(
        c,
        outer,
        node,
        &scope,
        name,
        kind,
        sig_end,
        within,
        declaration_only,
    );
}

/// The function declarator in a declarator chain (`*f(int)`, `&Foo::get()`),
/// unless it declares a pointer to a function (`(*fp)(int)`), a variable.
fn function_declarator(mut node: Node<'_>) -> Option<Node<'_>> {
    loop {
        match node.kind() {
            "function_declarator" => {
                let inner = node.child_by_field_name("declarator")?;
                return (inner.kind() != "parenthesized_declarator").then_some(node);
            }
            "pointer_declarator"
            | "reference_declarator"
            | "attributed_declarator"
            | "init_declarator" => {
                node = node
                    .child_by_field_name("declarator")
                    .or_else(|| last_named_child(node))?;
            }
            _ => return None,
        }
    }
}

fn last_named_child(node: Node<'_>) -> Option<Node<'_>> {
    node.named_child(u32::try_from(node.named_child_count().checked_sub(1)?).ok()?)
}

/// The name a declarator declares (`cb` in `(*cb)(void)`, `T` in `T`).
fn declared_name(mut node: Node<'_>) -> Option<Node<'_>> {
    loop {
        match node.kind() {
            "type_identifier" | "identifier" | "primitive_type" => return Some(node),
            "function_declarator"
            | "pointer_declarator"
            | "reference_declarator"
            | "array_declarator"
            | "attributed_declarator"
            | "init_declarator" => {
                node = node.child_by_field_name("declarator")?;
            }
            "parenthesized_declarator" => node = node.named_child(0)?,
            _ => return None,
        }
    }
}

/// `ns::Shape::area` → (`ns::Shape`, `area`); templates lose their
/// arguments (`Foo<T>::get` → `Foo`, `get`).
fn split_qualified(c: &Collector<'_>, node: Node<'_>) -> (Option<String>, String) {
    let mut scope: Vec<String> = Vec::new();
    let mut node = node;
    while node.kind() == "qualified_identifier" {
        if let Some(s) = node.child_by_field_name("scope") {
            let s = s.child_by_field_name("name").unwrap_or(s);
            scope.push(c.text(s).to_string());
        }
        match node.child_by_field_name("name") {
            Some(n) => node = n,
            None => break,
        }
    }
    if node.kind() == "template_function" {
        node = node.child_by_field_name("name").unwrap_or(node);
    }
    let name: String = c
        .text(node)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    ((!scope.is_empty()).then(|| scope.join("::")), name)
}

fn is_guard(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "_H",
        "_H_",
        "_H__",
        "_HPP",
        "_HPP_",
        "_HH",
        "_INCLUDED",
        "_INCLUDED_",
    ]
    .iter()
    .any(|s| upper.ends_with(s))
}

fn last_segment(text: &str) -> String {
    text.rsplit("::").next().unwrap_or(text).trim().to_string()
}

fn is_static(c: &Collector<'_>, node: Node<'_>) -> bool {
    let mut cursor = node.walk();
    let found = node
        .children(&mut cursor)
        .any(|n| n.kind() == "storage_class_specifier" && c.text(n) == "static");
    found
}

/// The comments directly above: a run of `//` lines or a `/* */` block.
fn comment_doc(c: &Collector<'_>, node: Node<'_>) -> (Option<String>, Option<usize>) {
    slash_comment_doc(c, node, &["///", "//!", "//"])
}

fn include(c: &mut Collector<'_>, node: Node<'_>) {
    let Some(path) = node.child_by_field_name("path") else {
        return;
    };
    let raw = c.text(path).trim().to_string();
    let quoted = raw.starts_with('"');
    let header = raw.trim_matches(|ch| ch == '"' || ch == '<' || ch == '>');
    let candidates = include_candidates(c.path, header, quoted);
    c.import(raw.clone(), node, candidates);
}
