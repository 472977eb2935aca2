//! The symbols, doc comments and imports of one source file, read from its
//! tree-sitter syntax tree.
//!
//! [`analyze`] takes a repository path and the file's bytes and returns an
//! [`Analysis`]: the definitions (functions, methods, types, traits,
//! interfaces, classes, enums, constants, modules) with their qualified
//! names, signatures, doc comments, lines and content hashes, and the
//! imports, each with the repository paths it may name. Files that are not
//! worth parsing (generated, minified, too large, not UTF-8, a language
//! without a grammar here) come back as a [`Skip`] with the reason.
//!
//! This crate is pure: no database, no queue, no file system, no clock but
//! the parse deadline. It knows nothing of syncs or projects; the pipeline
//! decides what to analyse and where the results go. It is a crate of its
//! own because the grammars are large generated C parsers: keeping them
//! here means a change elsewhere never recompiles them, and a change here
//! rebuilds only this crate and its dependants.
//!
//! Symbols come from walking the syntax tree per language (one module per
//! grammar family, in `lang/`), not from the grammars' `tags.scm` queries:
//! the qualified names, parents, visibility and signatures need the
//! enclosing declarations, which a walk carries naturally.

mod collect;
mod imports;
mod lang;
mod screen;
mod text;

use std::fmt;
use std::time::Duration;

pub use imports::resolve_imports;
pub use lang::Lang;

/// What one file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// The language the file was parsed as, named as
    /// `projsync_domain::language::detect` names it ("rust", "python",
    /// "javascript", "typescript" (TSX too), "go", "java", "c", "cpp"); a
    /// `.h` header written in C++ is "cpp".
    pub language: &'static str,
    /// In source order; qualified names are unique within one analysis.
    pub symbols: Vec<Symbol>,
    /// In source order.
    pub imports: Vec<Import>,
    /// The syntax tree has errors: the symbols are those found in the parts
    /// that parsed, and some may be missing.
    pub partial: bool,
    /// The file's own doc comment: Rust `//!`, a Python module docstring,
    /// Go's package comment, a leading JS/TS `/** */` file comment.
    pub module_doc: Option<String>,
}

/// One definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// `path#Outer::name`: the repository path, `#`, then the enclosing
    /// declarations and the name joined with `::` in every language
    /// (`src/lib.rs#Store::open`, `app/models.py#User::save`,
    /// `src/lib.rs#inner::f`). A name that repeats in one file (overloads,
    /// a trait method implemented twice, a redefinition) gets `~2`, `~3`…
    /// in source order, so the name is a key.
    pub qualified_name: String,
    pub name: String,
    pub kind: SymbolKind,
    /// The declaration up to its body, whitespace collapsed, at most
    /// [`SIGNATURE_MAX_CHARS`] characters (then ending in `…`).
    pub signature: String,
    /// The doc comment without its comment markers.
    pub doc: Option<String>,
    /// 1-based and inclusive: the declaration itself (Python decorators
    /// and JS/TS `export` included, Rust attributes and doc comments not).
    pub start_line: u32,
    pub end_line: u32,
    /// The qualified name of the enclosing symbol, when that symbol is in
    /// this file (a Rust `impl` of a type defined elsewhere has none).
    pub parent: Option<String>,
    pub visibility: Visibility,
    /// SHA-256 (hex) of [`Symbol::text`]: an edit inside one method
    /// changes that method's hash and not its class's.
    pub content_hash: String,
    /// The symbol's source, doc comment included, with each nested symbol
    /// cut down to its signature and ` …`: what a reader (or a search)
    /// needs of this symbol alone.
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SymbolKind {
    Function,
    Method,
    /// A struct, union, typedef or type alias.
    Type,
    /// A Rust trait.
    Trait,
    Interface,
    Class,
    Enum,
    /// A constant, a static, a module-level constant, an object-like macro.
    Const,
    /// A module or namespace with a body in this file.
    Module,
}

impl SymbolKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SymbolKind::Function => "function",
            SymbolKind::Method => "method",
            SymbolKind::Type => "type",
            SymbolKind::Trait => "trait",
            SymbolKind::Interface => "interface",
            SymbolKind::Class => "class",
            SymbolKind::Enum => "enum",
            SymbolKind::Const => "const",
            SymbolKind::Module => "module",
        }
    }
}

/// Whether other files may use the symbol, as far as the syntax tells:
/// Rust `pub` (not `pub(crate)`), a capitalised Go name, a Python name
/// without a leading underscore (dunders are public), JS/TS `export` (class
/// members unless `private`, `protected` or `#name`), Java `public` (and
/// interface members), C/C++ not `static` (class members by access).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Visibility {
    Public,
    Private,
}

/// One import, include, `use` or `mod` declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// What the file names, as the language writes it: a Rust path
    /// (`crate::store::Store`, `mod inner` for a module file), a Python
    /// module (`os.path`, `.models`, `..util`), a JS/TS specifier (`./x`,
    /// `react`), a Go import path, a Java name (`java.util.List`), a C/C++
    /// include with its delimiters (`"x.h"`, `<stdio.h>`).
    pub raw: String,
    /// 1-based.
    pub line: u32,
    /// The repository paths the import may name, most likely first, worked
    /// out from the text and the importing file's path alone (relative
    /// imports, Rust modules, Python modules, Java classes under the
    /// file's source root, quoted includes). Empty for packages from
    /// elsewhere (`std`, `react`, Go import paths).
    pub candidates: Vec<String>,
    /// The first candidate that exists, once [`resolve_imports`] has been
    /// given the repository's paths; `None` before.
    pub target: Option<String>,
}

/// Why a file is not analysed. `Display` says it to a person, [`Skip::reason`]
/// is the key for counting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// No grammar here for the file's extension (the extension, or the file
    /// name when it has none).
    UnsupportedLanguage(String),
    /// Generated code: by its name (`*.pb.go`, `*_pb2.py`…) or a header
    /// comment (`@generated`, `DO NOT EDIT`).
    Generated,
    /// Minified: by its name (`*.min.js`) or lines far longer on average
    /// than anyone writes.
    Minified,
    /// A line longer than [`Limits::max_line_len`] (characters).
    LongLines {
        longest: usize,
    },
    /// More than [`Limits::max_bytes`].
    TooLarge {
        bytes: usize,
    },
    NotUtf8,
    /// Parsing took longer than [`Limits::timeout`].
    Timeout,
}

impl Skip {
    /// A short stable key (`too_large`, `generated`…), for counters and
    /// stats; the details are in `Display`.
    pub fn reason(&self) -> &'static str {
        match self {
            Skip::UnsupportedLanguage(_) => "unsupported_language",
            Skip::Generated => "generated",
            Skip::Minified => "minified",
            Skip::LongLines { .. } => "long_lines",
            Skip::TooLarge { .. } => "too_large",
            Skip::NotUtf8 => "not_utf8",
            Skip::Timeout => "timeout",
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::UnsupportedLanguage(ext) => write!(
                f,
                "no grammar for `{ext}` files: only Rust, Python, JavaScript, TypeScript, Go, Java, C and C++ are analysed"
            ),
            Skip::Generated => write!(
                f,
                "generated code (by its name or an @generated / DO NOT EDIT header): analyse its source instead"
            ),
            Skip::Minified => write!(f, "minified code: analyse its source instead"),
            Skip::LongLines { longest } => write!(
                f,
                "a line of {longest} characters is longer than the limit: raise max_line_len if the file is hand-written"
            ),
            Skip::TooLarge { bytes } => write!(
                f,
                "{bytes} bytes is more than the limit: raise max_bytes to analyse files this large"
            ),
            Skip::NotUtf8 => write!(f, "the file is not UTF-8 text"),
            Skip::Timeout => write!(
                f,
                "parsing took longer than the limit: raise the timeout if files this complex must be analysed"
            ),
        }
    }
}

impl std::error::Error for Skip {}

/// Bounds on what one file may cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: usize,
    /// In characters.
    pub max_line_len: usize,
    /// For the parse itself (the walk after it is linear in the tree).
    pub timeout: Duration,
}

impl Default for Limits {
    /// One MiB, 4,000-character lines, two seconds: hand-written files fit
    /// easily (a megabyte parses in well under a second), data dumps and
    /// bundles do not.
    fn default() -> Self {
        Limits {
            max_bytes: 1 << 20,
            max_line_len: 4_000,
            timeout: Duration::from_secs(2),
        }
    }
}

/// Signatures longer than this are cut (and end in `…`).
pub const SIGNATURE_MAX_CHARS: usize = 300;
/// Doc comments longer than this are cut (and end in `…`).
pub const DOC_MAX_CHARS: usize = 8_000;

/// Parse one file and list its symbols and imports.
///
/// `path` is the file's path in the repository (`/`-separated, no leading
/// `/`): it picks the grammar and prefixes the qualified names. Cheap to
/// call repeatedly: each thread keeps one parser per grammar.
pub fn analyze(path: &str, bytes: &[u8], limits: &Limits) -> Result<Analysis, Skip> {
    let lang = Lang::from_path(path).ok_or_else(|| Skip::UnsupportedLanguage(extension(path)))?;
    let src = screen::screen(path, bytes, limits)?;
    let (lang, tree) = lang::parse(lang, path, src, limits.timeout)?;
    let mut collector = collect::Collector::new(path, src);
    lang::extract(lang, &mut collector, tree.root_node());
    let partial = tree.root_node().has_error();
    let (symbols, imports, module_doc) = collector.finish();
    Ok(Analysis {
        language: lang.name(),
        symbols,
        imports,
        partial,
        module_doc,
    })
}

fn extension(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!(".{ext}"),
        _ => name.to_string(),
    }
}
