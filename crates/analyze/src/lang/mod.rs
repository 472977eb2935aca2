//! The grammars: which one a path takes, one parser per grammar and thread,
//! and the per-language walks that turn a tree into symbols and imports.

mod c;
mod go;
mod java;
mod js;
mod python;
mod rust;

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use tree_sitter::{Language, Node, ParseOptions, Parser, Tree};

use crate::collect::Collector;
use crate::Skip;

/// A grammar. TypeScript and TSX are two grammars of one language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    Rust,
    Python,
    JavaScript,
    TypeScript,
    Tsx,
    Go,
    Java,
    C,
    Cpp,
}

const COUNT: usize = 9;

impl Lang {
    /// The grammar for a path's extension; `.h` starts as C (a header that
    /// does not parse as C is tried as C++).
    pub fn from_path(path: &str) -> Option<Lang> {
        let name = path.rsplit('/').next().unwrap_or(path);
        let (_, ext) = name.rsplit_once('.')?;
        Some(match ext.to_ascii_lowercase().as_str() {
            "rs" => Lang::Rust,
            "py" | "pyi" => Lang::Python,
            "js" | "mjs" | "cjs" | "jsx" => Lang::JavaScript,
            "ts" | "mts" | "cts" => Lang::TypeScript,
            "tsx" => Lang::Tsx,
            "go" => Lang::Go,
            "java" => Lang::Java,
            "c" | "h" => Lang::C,
            "cc" | "cpp" | "cxx" | "c++" | "hpp" | "hh" | "hxx" | "h++" | "ipp" | "inl" => {
                Lang::Cpp
            }
            _ => return None,
        })
    }

    /// The language's name as `projsync_domain::language::detect` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::JavaScript => "javascript",
            Lang::TypeScript | Lang::Tsx => "typescript",
            Lang::Go => "go",
            Lang::Java => "java",
            Lang::C => "c",
            Lang::Cpp => "cpp",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn grammar(self) -> Language {
        match self {
            Lang::Rust => tree_sitter_rust::LANGUAGE.into(),
            Lang::Python => tree_sitter_python::LANGUAGE.into(),
            Lang::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Lang::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            Lang::Tsx => tree_sitter_typescript::LANGUAGE_TSX.into(),
            Lang::Go => tree_sitter_go::LANGUAGE.into(),
            Lang::Java => tree_sitter_java::LANGUAGE.into(),
            Lang::C => tree_sitter_c::LANGUAGE.into(),
            Lang::Cpp => tree_sitter_cpp::LANGUAGE.into(),
        }
    }
}

thread_local! {
    /// A `Parser` is neither `Send` nor `Sync` and costs an allocation and
    /// the grammar's setup; one per grammar and thread is reused for every
    /// file.
    static PARSERS: RefCell<[Option<Parser>; COUNT]> = RefCell::new(Default::default());
}

/// Parse within the timeout; a `.h` header that only parses as C++ is C++
/// (both parses share the one deadline).
pub(crate) fn parse(
    lang: Lang,
    path: &str,
    src: &str,
    timeout: Duration,
) -> Result<(Lang, Tree), Skip> {
    let deadline = Instant::now() + timeout;
    let tree = parse_with(lang, src, deadline)?;
    let header = path.to_ascii_lowercase().ends_with(".h");
    if lang == Lang::C && header && tree.root_node().has_error() && looks_like_cpp(src) {
        let cpp = parse_with(Lang::Cpp, src, deadline)?;
        if !cpp.root_node().has_error() {
            return Ok((Lang::Cpp, cpp));
        }
    }
    Ok((lang, tree))
}

/// Only worth a second parse when C++ syntax is likely.
fn looks_like_cpp(src: &str) -> bool {
    [
        "class ",
        "namespace ",
        "template",
        "::",
        "public:",
        "private:",
    ]
    .iter()
    .any(|m| src.contains(m))
}

fn parse_with(lang: Lang, src: &str, deadline: Instant) -> Result<Tree, Skip> {
    PARSERS.with(|parsers| {
        let mut parsers = parsers.borrow_mut();
        let slot = &mut parsers[lang.index()];
        let parser = match slot {
            Some(p) => p,
            None => {
                let mut p = Parser::new();
                // The grammars are pinned together with the core; an ABI
                // mismatch is a build mistake that every test catches.
                p.set_language(&lang.grammar())
                    .expect("grammar ABI matches the tree-sitter core");
                slot.insert(p)
            }
        };
        let mut over = |_: &tree_sitter::ParseState| {
            if Instant::now() >= deadline {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let bytes = src.as_bytes();
        let tree = parser.parse_with_options(
            &mut |at, _| bytes.get(at..).unwrap_or_default(),
            None,
            Some(ParseOptions::new().progress_callback(&mut over)),
        );
        match tree {
            Some(tree) => Ok(tree),
            None => {
                // A cancelled parse would otherwise resume on the next call.
                parser.reset();
                Err(Skip::Timeout)
            }
        }
    })
}

pub(crate) fn extract(lang: Lang, c: &mut Collector<'_>, root: Node<'_>) {
    match lang {
        Lang::Rust => rust::extract(c, root),
        Lang::Python => python::extract(c, root),
        Lang::JavaScript | Lang::TypeScript | Lang::Tsx => js::extract(c, root),
        Lang::Go => go::extract(c, root),
        Lang::Java => java::extract(c, root),
        Lang::C | Lang::Cpp => c::extract(c, root),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_pick_grammars_and_names() {
        let cases = [
            ("src/lib.rs", Some(("rust", Lang::Rust))),
            ("a/b.pyi", Some(("python", Lang::Python))),
            ("web/x.MJS", Some(("javascript", Lang::JavaScript))),
            ("web/x.jsx", Some(("javascript", Lang::JavaScript))),
            ("web/x.cts", Some(("typescript", Lang::TypeScript))),
            ("web/x.tsx", Some(("typescript", Lang::Tsx))),
            ("cmd/main.go", Some(("go", Lang::Go))),
            ("A.java", Some(("java", Lang::Java))),
            ("x.h", Some(("c", Lang::C))),
            ("x.hpp", Some(("cpp", Lang::Cpp))),
            ("Makefile", None),
            ("notes.md", None),
        ];
        for (path, want) in cases {
            let got = Lang::from_path(path).map(|l| (l.name(), l));
            assert_eq!(got, want, "{path}");
        }
    }
}
