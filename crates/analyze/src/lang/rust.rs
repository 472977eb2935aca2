//! Rust: items, `impl` and `trait` members, inline modules; `use`, `mod`
//! and `extern crate` as imports; `///`, `/** */` and `//!` docs.

use tree_sitter::Node;

use crate::collect::{comments_above, join, walk_tree, Collector, Def};
use crate::imports::{rust_mod_candidates, rust_use_candidates};
use crate::text::{clean_block_comment, clean_line_comments, doc, value_cut};
use crate::{SymbolKind, Visibility};

/// What the items being walked sit in.
#[derive(Clone, Copy)]
enum Within {
    Module,
    /// An inherent `impl` (`false`) or a trait `impl` (`true`).
    Impl(bool),
    /// A trait, with its visibility.
    Trait(Visibility),
}

pub(super) fn extract(c: &mut Collector<'_>, root: Node<'_>) {
    c.module_doc = inner_doc(c, root);
    items(c, root, "", Within::Module);
    walk_tree(root, |node| uses(c, node));
}

fn items(c: &mut Collector<'_>, container: Node<'_>, scope: &str, within: Within) {
    if !c.enter() {
        return;
    }
    let mut cursor = container.walk();
    let children: Vec<Node<'_>> = container.named_children(&mut cursor).collect();
    for node in children {
        item(c, node, scope, within);
    }
    c.leave();
}

fn item(c: &mut Collector<'_>, node: Node<'_>, scope: &str, within: Within) {
    let kind = match node.kind() {
        "function_item" | "function_signature_item" => match within {
            Within::Module => SymbolKind::Function,
            _ => SymbolKind::Method,
        },
        "struct_item" | "union_item" | "type_item" => SymbolKind::Type,
        "enum_item" => SymbolKind::Enum,
        "trait_item" => SymbolKind::Trait,
        "const_item" | "static_item" => SymbolKind::Const,
        "mod_item" => SymbolKind::Module,
        "impl_item" => {
            if let (Some(ty), Some(body)) = (
                node.child_by_field_name("type"),
                node.child_by_field_name("body"),
            ) {
                let name = type_name(c, ty);
                let trait_impl = node.child_by_field_name("trait").is_some();
                items(c, body, &join(scope, &name), Within::Impl(trait_impl));
            }
            return;
        }
        "foreign_mod_item" | "ERROR" => {
            // `extern "C" { fn f(); }` declares module-level functions; an
            // ERROR node holds whatever parsed around the error.
            let inner = node.child_by_field_name("body").unwrap_or(node);
            items(c, inner, scope, within);
            return;
        }
        _ => return,
    };
    let Some(name) = node.child_by_field_name("name") else {
        return;
    };
    let name = c.text(name).to_string();
    let body = node.child_by_field_name("body");

    if kind == SymbolKind::Module && body.is_none() {
        // `mod x;` is the module's file, not a definition here.
        c.import(
            format!("mod {name}"),
            node,
            rust_mod_candidates(c.path, &name),
        );
        return;
    }

    let visibility = match within {
        Within::Trait(v) => v,
        Within::Impl(true) => Visibility::Public,
        _ => own_visibility(c, node),
    };
    let comments = comments_above(node, is_comment, |n| n.kind() == "attribute_item", false);
    let mut doc_text = outer_doc(c, &comments);
    if let (SymbolKind::Module, Some(body)) = (kind, body) {
        if let Some(inner) = inner_doc(c, body) {
            doc_text = Some(match doc_text {
                Some(outer) => format!("{outer}\n\n{inner}"),
                None => inner,
            });
        }
    }
    let attrs_start = first_attribute(node).map(|a| a.start_byte());
    let start = attrs_start.unwrap_or(node.start_byte());
    let sig_end = match kind {
        // A tuple struct's fields are part of what it is.
        SymbolKind::Type if body.is_some_and(|b| b.kind() == "ordered_field_declaration_list") => {
            node.end_byte()
        }
        SymbolKind::Const => value_cut(c.src, node.end_byte(), node.child_by_field_name("value")),
        _ => body.map_or(node.end_byte(), |b| b.start_byte()),
    };
    let child_scope = c.add(Def {
        scope,
        name,
        kind,
        node,
        sig: (node.start_byte(), sig_end),
        doc: doc_text,
        // From the first doc comment: a plain `//` or a file's `//!`
        // above the item is not part of it (a licence header's edit must
        // not make a new version of the file's first symbol).
        doc_start: comments
            .iter()
            .find(|n| is_outer_doc(**n))
            .map(|n| n.start_byte())
            .or(attrs_start)
            .map(|s| s.min(start)),
        visibility,
        declaration_only: false,
    });
    match (kind, body) {
        (SymbolKind::Trait, Some(body)) => items(c, body, &child_scope, Within::Trait(visibility)),
        (SymbolKind::Module, Some(body)) => items(c, body, &child_scope, Within::Module),
        _ => {}
    }
}

fn own_visibility(c: &Collector<'_>, node: Node<'_>) -> Visibility {
    let mut cursor = node.walk();
    let public = node
        .children(&mut cursor)
        .any(|n| n.kind() == "visibility_modifier" && c.text(n) == "pub");
    if public {
        Visibility::Public
    } else {
        Visibility::Private
    }
}

/// The type an `impl` is for, without generics or path: `Store` for
/// `impl<T> crate::Store<T>`.
fn type_name(c: &Collector<'_>, ty: Node<'_>) -> String {
    match ty.kind() {
        "generic_type" => ty
            .child_by_field_name("type")
            .map_or_else(|| c.text(ty).to_string(), |t| type_name(c, t)),
        "scoped_type_identifier" => ty
            .child_by_field_name("name")
            .map_or_else(|| c.text(ty).to_string(), |n| c.text(n).to_string()),
        "reference_type" | "pointer_type" => ty
            .child_by_field_name("type")
            .map_or_else(|| c.text(ty).to_string(), |t| type_name(c, t)),
        _ => c.text(ty).split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// The attributes directly above an item, outermost first.
fn first_attribute(node: Node<'_>) -> Option<Node<'_>> {
    let mut first = None;
    let mut prev = node.prev_sibling();
    while let Some(p) = prev {
        match p.kind() {
            "attribute_item" => first = Some(p),
            "line_comment" | "block_comment" => {}
            _ => break,
        }
        prev = p.prev_sibling();
    }
    first
}

fn is_comment(n: Node<'_>) -> bool {
    matches!(n.kind(), "line_comment" | "block_comment")
}

fn marker(n: Node<'_>, field: &str) -> bool {
    is_comment(n) && n.child_by_field_name(field).is_some()
}

fn is_outer_doc(n: Node<'_>) -> bool {
    marker(n, "outer")
}

fn outer_doc(c: &Collector<'_>, comments: &[Node<'_>]) -> Option<String> {
    doc_of(c, comments.iter().copied().filter(|n| is_outer_doc(*n)))
}

/// `//!` and `/*! */` at the start of a file or an inline module.
fn inner_doc(c: &Collector<'_>, container: Node<'_>) -> Option<String> {
    let mut cursor = container.walk();
    let leading: Vec<Node<'_>> = container
        .named_children(&mut cursor)
        .take_while(|n| is_comment(*n))
        .filter(|n| marker(*n, "inner"))
        .collect();
    doc_of(c, leading.into_iter())
}

fn doc_of<'t>(c: &Collector<'_>, comments: impl Iterator<Item = Node<'t>>) -> Option<String> {
    let mut lines: Vec<String> = Vec::new();
    for n in comments {
        let text = c.text(n);
        if n.kind() == "block_comment" {
            lines.push(clean_block_comment(text));
        } else {
            lines.push(clean_line_comments([text], &["///", "//!"]));
        }
    }
    doc(lines.join("\n"))
}

/// `use` declarations anywhere (functions may have their own) and
/// `extern crate`; whether to look inside `node`.
fn uses(c: &mut Collector<'_>, node: Node<'_>) -> bool {
    match node.kind() {
        "use_declaration" => {
            if let Some(arg) = node.child_by_field_name("argument") {
                let mut paths = Vec::new();
                expand(c, arg, "", &mut paths, 0);
                for p in paths {
                    let candidates = rust_use_candidates(c.path, &p);
                    c.import(p, node, candidates);
                }
            }
            false
        }
        "extern_crate_declaration" => {
            if let Some(name) = node.child_by_field_name("name") {
                c.import(c.text(name).to_string(), node, Vec::new());
            }
            false
        }
        _ => true,
    }
}

/// The leaf paths of a use tree: `a::{b, c::d}` is `a::b` and `a::c::d`.
fn expand(c: &Collector<'_>, node: Node<'_>, prefix: &str, out: &mut Vec<String>, depth: usize) {
    // Nobody nests use lists this deep but a file built to break parsers.
    if depth > 32 {
        return;
    }
    match node.kind() {
        "scoped_use_list" => {
            let prefix = match node.child_by_field_name("path") {
                Some(path) => join(prefix, c.text(path)),
                None => prefix.to_string(),
            };
            if let Some(list) = node.child_by_field_name("list") {
                expand(c, list, &prefix, out, depth + 1);
            }
        }
        "use_list" => {
            let mut cursor = node.walk();
            for child in node.named_children(&mut cursor) {
                expand(c, child, prefix, out, depth + 1);
            }
        }
        "use_as_clause" => {
            if let Some(path) = node.child_by_field_name("path") {
                expand(c, path, prefix, out, depth + 1);
            }
        }
        "line_comment" | "block_comment" => {}
        // `use a::{self, b}`: `self` is `a` itself.
        "self" if !prefix.is_empty() => out.push(prefix.to_string()),
        _ => {
            let text: String = c.text(node).split_whitespace().collect();
            out.push(join(prefix, &text));
        }
    }
}
