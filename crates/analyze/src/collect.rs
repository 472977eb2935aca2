//! What the language walks record into, and the finishing pass that makes
//! names unique, links parents and hashes each symbol.

use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};
use tree_sitter::Node;

use crate::text::{clean_block_comment, clean_line_comments, doc, end_line, start_line};
use crate::{Import, Symbol, SymbolKind, Visibility};

/// One definition as a walk finds it.
pub(crate) struct Def<'t> {
    /// The enclosing declarations' names joined with `::` (empty at the top).
    pub scope: &'t str,
    pub name: String,
    pub kind: SymbolKind,
    /// The whole declaration: lines and the end of the hashed text.
    pub node: Node<'t>,
    /// The signature's text: `sig.0..sig.1`.
    pub sig: (usize, usize),
    pub doc: Option<String>,
    /// Where the doc comment starts, when there is one: the hash covers it.
    pub doc_start: Option<usize>,
    pub visibility: Visibility,
    /// A declaration without a body (a C prototype, a C++ member declared
    /// in its class, a TypeScript overload signature): dropped when the
    /// same file also defines it, and the definition takes its doc if it
    /// has none.
    pub declaration_only: bool,
}

struct Raw {
    name_path: String,
    name: String,
    kind: SymbolKind,
    signature: String,
    doc: Option<String>,
    start_line: u32,
    end_line: u32,
    parent: Option<String>,
    visibility: Visibility,
    span: (usize, usize),
    declaration_only: bool,
}

pub(crate) struct Collector<'s> {
    pub path: &'s str,
    pub src: &'s str,
    raw: Vec<Raw>,
    imports: Vec<Import>,
    pub module_doc: Option<String>,
    depth: usize,
    modules: HashSet<String>,
}

/// Declarations nested deeper than this (modules in modules, classes in
/// classes, error nodes in error nodes) are not walked: real code stays far
/// below it, and a hostile file must not exhaust the stack.
const MAX_DEPTH: usize = 64;

/// Visit every named node of a tree, parents first; `visit` says whether to
/// go into a node's children. Iterative: a deep tree (20,000 nested
/// brackets parse fine) costs no stack.
pub(crate) fn walk_tree<'t>(root: Node<'t>, mut visit: impl FnMut(Node<'t>) -> bool) {
    let mut cursor = root.walk();
    loop {
        let node = cursor.node();
        let descend = node.is_named() && visit(node);
        if descend && cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return;
            }
        }
    }
}

/// `scope::name`, or `name` at the top.
pub(crate) fn join(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        format!("{scope}::{name}")
    }
}

impl<'s> Collector<'s> {
    pub(crate) fn new(path: &'s str, src: &'s str) -> Self {
        Collector {
            path,
            src,
            raw: Vec::new(),
            imports: Vec::new(),
            module_doc: None,
            depth: 0,
            modules: HashSet::new(),
        }
    }

    /// Enter a nested container; `false` (and nothing to leave) past
    /// [`MAX_DEPTH`].
    pub(crate) fn enter(&mut self) -> bool {
        if self.depth >= MAX_DEPTH {
            return false;
        }
        self.depth += 1;
        true
    }

    pub(crate) fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    pub(crate) fn text(&self, node: Node<'_>) -> &'s str {
        &self.src[node.byte_range()]
    }

    /// Record a definition; returns the scope for what it encloses.
    pub(crate) fn add(&mut self, def: Def<'_>) -> String {
        let name_path = join(def.scope, &def.name);
        if def.kind == SymbolKind::Module {
            self.modules.insert(name_path.clone());
        }
        let start = def
            .doc_start
            .unwrap_or(def.node.start_byte())
            .min(def.node.start_byte());
        self.raw.push(Raw {
            name_path: name_path.clone(),
            name: def.name,
            kind: def.kind,
            signature: crate::text::signature(self.src, def.sig.0, def.sig.1),
            doc: def.doc,
            start_line: start_line(def.node),
            end_line: end_line(def.node),
            parent: (!def.scope.is_empty()).then(|| def.scope.to_string()),
            visibility: def.visibility,
            span: (start, def.node.end_byte()),
            declaration_only: def.declaration_only,
        });
        name_path
    }

    /// Whether a module or namespace has been recorded under `name_path`.
    pub(crate) fn is_module(&self, name_path: &str) -> bool {
        self.modules.contains(name_path)
    }

    pub(crate) fn import(&mut self, raw: String, node: Node<'_>, candidates: Vec<String>) {
        let mut seen = HashSet::new();
        let candidates = candidates
            .into_iter()
            .filter(|c| seen.insert(c.clone()))
            .collect();
        self.imports.push(Import {
            raw,
            line: start_line(node),
            candidates,
            target: None,
        });
    }

    pub(crate) fn finish(self) -> (Vec<Symbol>, Vec<Import>, Option<String>) {
        let mut raw = self.raw;
        let defined: HashSet<String> = raw
            .iter()
            .filter(|r| !r.declaration_only)
            .map(|r| r.name_path.clone())
            .collect();
        let mut declared_docs: HashMap<String, String> = HashMap::new();
        raw.retain_mut(|r| {
            if !r.declaration_only || !defined.contains(&r.name_path) {
                return true;
            }
            if let Some(doc) = r.doc.take() {
                declared_docs.entry(r.name_path.clone()).or_insert(doc);
            }
            false
        });
        for r in raw.iter_mut().filter(|r| r.doc.is_none()) {
            r.doc = declared_docs.remove(&r.name_path);
        }

        let texts = texts(self.src, &raw);
        let names: HashSet<String> = raw.iter().map(|r| r.name_path.clone()).collect();
        let mut seen: HashMap<String, u32> = HashMap::new();
        let symbols = raw
            .into_iter()
            .zip(texts)
            .map(|(r, (text, content_hash))| {
                let n = seen.entry(r.name_path.clone()).or_insert(0);
                *n += 1;
                let name_path = if *n == 1 {
                    r.name_path
                } else {
                    format!("{}~{n}", r.name_path)
                };
                Symbol {
                    qualified_name: format!("{}#{name_path}", self.path),
                    name: r.name,
                    kind: r.kind,
                    signature: r.signature,
                    doc: r.doc,
                    start_line: r.start_line,
                    end_line: r.end_line,
                    parent: r
                        .parent
                        .filter(|p| names.contains(p))
                        .map(|p| format!("{}#{p}", self.path)),
                    visibility: r.visibility,
                    content_hash,
                    text,
                }
            })
            .collect();
        let mut imports = self.imports;
        imports.sort_by_key(|i| i.line);
        (symbols, imports, self.module_doc)
    }
}

/// Each symbol's text is its source less the symbols nested in it, each
/// of which leaves its signature and ` …` in its place; the hash is of that
/// text. An edit inside a method changes the method's hash alone, and a
/// class's entry reads as an outline of its members.
fn texts(src: &str, raw: &[Raw]) -> Vec<(String, String)> {
    let mut order: Vec<usize> = (0..raw.len()).collect();
    order.sort_by_key(|&i| (raw[i].span.0, std::cmp::Reverse(raw[i].span.1)));
    raw.iter()
        .map(|r| {
            let (start, end) = r.span;
            let mut text = String::with_capacity(end - start);
            let mut at = start;
            // Only the symbols that start inside this one can be cut out.
            let first = order.partition_point(|&j| raw[j].span.0 < start);
            for &j in &order[first..] {
                let (s, e) = raw[j].span;
                if s < at || e > end || (s, e) == r.span {
                    continue;
                }
                if s >= end {
                    break;
                }
                text.push_str(&src[at..s]);
                text.push_str(&raw[j].signature);
                text.push_str(" …");
                at = e;
            }
            text.push_str(&src[at..end]);
            let hash = hex(&Sha256::digest(text.as_bytes()));
            (text, hash)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// The comments directly above `node`, in source order. `skip` passes over
/// attributes and decorators. With `adjacent`, a blank line ends the run,
/// and a comment that trails code on its line is not one of them.
pub(crate) fn comments_above<'t>(
    node: Node<'t>,
    is_comment: impl Fn(Node<'t>) -> bool,
    skip: impl Fn(Node<'t>) -> bool,
    adjacent: bool,
) -> Vec<Node<'t>> {
    let mut found = Vec::new();
    let mut top = start_line(node);
    let mut prev = node.prev_sibling();
    while let Some(p) = prev {
        let close = end_line(p) + 1 >= top;
        if adjacent && !close {
            break;
        }
        if skip(p) {
            top = start_line(p);
        } else if is_comment(p) {
            if adjacent {
                if let Some(before) = p.prev_sibling() {
                    if end_line(before) == start_line(p) && before.end_byte() <= p.start_byte() {
                        break;
                    }
                }
            }
            found.push(p);
            top = start_line(p);
        } else {
            break;
        }
        prev = p.prev_sibling();
    }
    found.reverse();
    found
}

/// The `//` or `/* */` comments directly above `node` as its doc (line
/// comments lose the first of `line_prefixes` they start with), and where
/// they start: the doc comments of C, C++ and Go.
pub(crate) fn slash_comment_doc(
    c: &Collector<'_>,
    node: Node<'_>,
    line_prefixes: &[&str],
) -> (Option<String>, Option<usize>) {
    let comments = comments_above(node, |n| n.kind() == "comment", |_| false, true);
    let Some(first) = comments.first() else {
        return (None, None);
    };
    let text: Vec<String> = comments
        .iter()
        .map(|n| {
            let t = c.text(*n);
            if t.starts_with("/*") {
                clean_block_comment(t)
            } else {
                clean_line_comments([t], line_prefixes)
            }
        })
        .collect();
    (doc(text.join("\n")), Some(first.start_byte()))
}
