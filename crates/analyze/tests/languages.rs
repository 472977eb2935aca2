//! One realistic file per grammar, with the exact symbols expected
//! (qualified name, kind, parent, lines), and the docs, signatures and
//! visibility of a few.

use projsync_analyze::{analyze, Analysis, Limits, SymbolKind, Visibility};
use SymbolKind::*;

type Row = (&'static str, SymbolKind, Option<&'static str>, u32, u32);

/// Analyse a fixture and compare every symbol with `expected`, whose names
/// and parents are written without the `path#` prefix (checked here).
fn check(path: &str, src: &str, language: &str, expected: &[Row]) -> Analysis {
    let a = analyze(path, src.as_bytes(), &Limits::default())
        .unwrap_or_else(|skip| panic!("{path}: {skip}"));
    assert_eq!(a.language, language);
    assert!(!a.partial, "{path} parses without errors");
    let got: Vec<(String, SymbolKind, Option<String>, u32, u32)> = a
        .symbols
        .iter()
        .map(|s| {
            (
                s.qualified_name.clone(),
                s.kind,
                s.parent.clone(),
                s.start_line,
                s.end_line,
            )
        })
        .collect();
    let want: Vec<(String, SymbolKind, Option<String>, u32, u32)> = expected
        .iter()
        .map(|(q, k, p, s, e)| {
            (
                format!("{path}#{q}"),
                *k,
                p.map(|p| format!("{path}#{p}")),
                *s,
                *e,
            )
        })
        .collect();
    assert_eq!(got, want, "{path}");
    a
}

fn symbol<'a>(a: &'a Analysis, name: &str) -> &'a projsync_analyze::Symbol {
    a.symbols
        .iter()
        .find(|s| s.qualified_name.ends_with(&format!("#{name}")))
        .unwrap_or_else(|| panic!("no symbol {name}"))
}

fn doc<'a>(a: &'a Analysis, name: &str) -> Option<&'a str> {
    symbol(a, name).doc.as_deref()
}

fn sig<'a>(a: &'a Analysis, name: &str) -> &'a str {
    &symbol(a, name).signature
}

fn vis(a: &Analysis, name: &str) -> Visibility {
    symbol(a, name).visibility
}

#[test]
fn rust() {
    let path = "crates/kv/src/store.rs";
    let a = check(
        path,
        include_str!("fixtures/store.rs"),
        "rust",
        &[
            ("MAX_VALUE", Const, None, 13, 13),
            ("Store", Type, None, 17, 19),
            ("StoreError", Enum, None, 22, 25),
            ("Backend", Trait, None, 27, 34),
            ("Backend::get", Method, Some("Backend"), 29, 29),
            ("Backend::len", Method, Some("Backend"), 31, 33),
            ("Store::open", Method, Some("Store"), 41, 44),
            ("Store::compact", Method, Some("Store"), 46, 48),
            ("Store::get", Method, Some("Store"), 52, 54),
            ("inner", Module, None, 57, 63),
            ("inner::checksum", Function, Some("inner"), 60, 62),
            ("Bytes", Type, None, 65, 65),
        ],
    );
    assert_eq!(
        a.module_doc.as_deref(),
        Some("A key-value store kept in one file.\n\nWrites go to a log first.")
    );
    assert_eq!(doc(&a, "Store"), Some("An open store."));
    assert_eq!(
        doc(&a, "Store::open"),
        Some("Open the store at `path`.\n\nCreates it when missing.")
    );
    assert_eq!(doc(&a, "Backend::get"), Some("Read one key."));
    assert_eq!(doc(&a, "inner"), Some("Helpers."));
    assert_eq!(doc(&a, "Store::compact"), None);
    assert_eq!(
        sig(&a, "Store::open"),
        "pub fn open(path: &str) -> Result<Self, StoreError>"
    );
    assert_eq!(sig(&a, "MAX_VALUE"), "pub const MAX_VALUE: usize = 1 << 20");
    assert_eq!(sig(&a, "Store"), "pub struct Store");
    assert_eq!(vis(&a, "Store::open"), Visibility::Public);
    assert_eq!(vis(&a, "Store::compact"), Visibility::Private);
    assert_eq!(
        vis(&a, "inner"),
        Visibility::Private,
        "pub(crate) is not public"
    );
    assert_eq!(
        vis(&a, "Backend::len"),
        Visibility::Public,
        "a pub trait's methods are"
    );
}

#[test]
fn python() {
    let path = "shop/models.py";
    let a = check(
        path,
        include_str!("fixtures/models.py"),
        "python",
        &[
            ("DEFAULT_PAGE_SIZE", Const, None, 12, 12),
            ("Product", Class, None, 16, 34),
            ("Product::__init__", Method, Some("Product"), 21, 23),
            ("Product::label", Method, Some("Product"), 25, 31),
            ("Product::_check", Method, Some("Product"), 33, 34),
            ("load", Function, None, 37, 39),
            ("_private_helper", Function, None, 42, 44),
        ],
    );
    assert_eq!(
        a.module_doc.as_deref(),
        Some("Models of the shop.\n\nEach model maps to one table.")
    );
    assert_eq!(doc(&a, "Product"), Some("A thing for sale."));
    assert_eq!(
        doc(&a, "Product::label"),
        Some("The name as shown.\n\nLower-cased.")
    );
    assert_eq!(
        sig(&a, "load"),
        "async def load(path: str) -> list[Product]"
    );
    assert_eq!(sig(&a, "Product"), "class Product(db.Model)");
    assert_eq!(vis(&a, "Product::__init__"), Visibility::Public);
    assert_eq!(vis(&a, "Product::_check"), Visibility::Private);
    assert_eq!(vis(&a, "_private_helper"), Visibility::Private);
}

#[test]
fn javascript_with_jsx() {
    let path = "web/src/widget.jsx";
    let a = check(
        path,
        include_str!("fixtures/widget.jsx"),
        "javascript",
        &[
            ("MAX", Const, None, 10, 10),
            ("Counter", Function, None, 16, 19),
            ("Panel", Class, None, 21, 32),
            ("Panel::toggle", Method, Some("Panel"), 24, 26),
            ("Panel::render", Method, Some("Panel"), 29, 31),
            ("double", Function, None, 34, 34),
        ],
    );
    assert_eq!(a.module_doc.as_deref(), Some("The widget and its helpers."));
    assert_eq!(
        doc(&a, "Counter"),
        Some("A counter button.\n@param {object} props")
    );
    assert_eq!(doc(&a, "Panel::render"), Some("Draw it."));
    assert_eq!(doc(&a, "MAX"), Some("The largest count shown."));
    assert_eq!(sig(&a, "Counter"), "export function Counter({ start })");
    assert_eq!(sig(&a, "double"), "const double = (x) =>");
    assert_eq!(vis(&a, "Counter"), Visibility::Public);
    assert_eq!(vis(&a, "double"), Visibility::Private);
}

#[test]
fn typescript() {
    let path = "web/src/api.ts";
    let a = check(
        path,
        include_str!("fixtures/api.ts"),
        "typescript",
        &[
            ("Failure", Enum, None, 8, 11),
            ("Id", Type, None, 13, 13),
            ("Client", Interface, None, 16, 19),
            ("Client::get", Method, Some("Client"), 17, 17),
            ("HttpClient", Class, None, 21, 34),
            (
                "HttpClient::constructor",
                Method,
                Some("HttpClient"),
                24,
                24,
            ),
            ("HttpClient::get", Method, Some("HttpClient"), 27, 29),
            ("HttpClient::backoff", Method, Some("HttpClient"), 31, 33),
            ("Defaults", Module, None, 36, 38),
            ("Defaults::TIMEOUT_MS", Const, Some("Defaults"), 37, 37),
            ("internal", Function, None, 40, 40),
            ("now", Function, None, 42, 42),
        ],
    );
    assert_eq!(a.module_doc.as_deref(), Some("Client for the HTTP API."));
    assert_eq!(doc(&a, "Client"), Some("What every client can do."));
    assert_eq!(doc(&a, "HttpClient::get"), Some("Fetch one item."));
    assert_eq!(
        sig(&a, "HttpClient::get"),
        "async get(id: Id): Promise<unknown>"
    );
    assert_eq!(
        sig(&a, "HttpClient"),
        "export class HttpClient implements Client"
    );
    assert_eq!(vis(&a, "HttpClient::backoff"), Visibility::Private);
    assert_eq!(vis(&a, "internal"), Visibility::Private);
    assert_eq!(vis(&a, "Defaults::TIMEOUT_MS"), Visibility::Public);
}

#[test]
fn tsx() {
    let path = "web/src/Button.tsx";
    let a = check(
        path,
        include_str!("fixtures/Button.tsx"),
        "typescript",
        &[
            ("ButtonProps", Interface, None, 4, 7),
            ("ButtonProps::onPress", Method, Some("ButtonProps"), 6, 6),
            ("Button", Function, None, 10, 14),
            ("Toolbar", Function, None, 16, 18),
        ],
    );
    assert_eq!(a.module_doc, None, "an import opens the file");
    assert_eq!(doc(&a, "Button"), Some("A themed button."));
    assert_eq!(
        sig(&a, "Button"),
        "export const Button = ({ label, onPress }: ButtonProps) =>"
    );
}

#[test]
fn go() {
    let path = "server/server.go";
    let a = check(
        path,
        include_str!("fixtures/server.go"),
        "go",
        &[
            ("DefaultPort", Const, None, 12, 12),
            ("readTimeout", Const, None, 15, 15),
            ("writeTimeout", Const, None, 16, 16),
            ("Server", Type, None, 20, 22),
            ("Handler", Interface, None, 25, 28),
            ("Handler::Serve", Method, Some("Handler"), 27, 27),
            ("port", Type, None, 30, 30),
            ("New", Function, None, 33, 35),
            ("Server::Start", Method, Some("Server"), 38, 40),
            ("Server::addr", Method, Some("Server"), 42, 42),
        ],
    );
    assert_eq!(
        a.module_doc.as_deref(),
        Some("Package server answers HTTP requests.\n\nIt keeps no state of its own.")
    );
    assert_eq!(doc(&a, "Server::Start"), Some("Start listens."));
    assert_eq!(doc(&a, "Handler::Serve"), Some("Serve answers."));
    assert_eq!(doc(&a, "Server::addr"), None);
    assert_eq!(sig(&a, "Server::Start"), "func (s *Server) Start() error");
    assert_eq!(sig(&a, "Server"), "type Server struct");
    assert_eq!(vis(&a, "New"), Visibility::Public);
    assert_eq!(vis(&a, "readTimeout"), Visibility::Private);
}

#[test]
fn java() {
    let path = "src/main/java/com/acme/cache/Cache.java";
    let a = check(
        path,
        include_str!("fixtures/Cache.java"),
        "java",
        &[
            ("Cache", Class, None, 13, 37),
            ("Cache::DEFAULT_SIZE", Const, Some("Cache"), 14, 14),
            ("Cache::Cache", Method, Some("Cache"), 18, 18),
            ("Cache::get", Method, Some("Cache"), 23, 26),
            ("Cache::evict", Method, Some("Cache"), 28, 30),
            ("Cache::Listener", Interface, Some("Cache"), 32, 34),
            (
                "Cache::Listener::evicted",
                Method,
                Some("Cache::Listener"),
                33,
                33,
            ),
            ("Cache::State", Enum, Some("Cache"), 36, 36),
        ],
    );
    assert_eq!(
        doc(&a, "Cache"),
        Some("A cache with expiry.\n\n@param <V> the value type")
    );
    assert_eq!(doc(&a, "Cache::get"), Some("Look a key up."));
    assert_eq!(sig(&a, "Cache::get"), "@Override public V get(String key)");
    assert_eq!(vis(&a, "Cache::evict"), Visibility::Private);
    assert_eq!(
        vis(&a, "Cache::Listener::evicted"),
        Visibility::Public,
        "interface members are"
    );
}

#[test]
fn c() {
    let path = "lib/list.c";
    let a = check(
        path,
        include_str!("fixtures/list.c"),
        "c",
        &[
            ("LIST_MAX", Const, None, 5, 5),
            ("node", Type, None, 8, 11),
            ("list_t", Type, None, 13, 16),
            ("order", Enum, None, 18, 18),
            ("list_push", Function, None, 24, 27),
            ("compare", Function, None, 29, 31),
            ("list_len", Function, None, 33, 33),
        ],
    );
    assert_eq!(doc(&a, "node"), Some("A node of the list."));
    assert_eq!(
        doc(&a, "list_push"),
        Some("Append a value.\nReturns 0 on success.")
    );
    assert_eq!(
        sig(&a, "list_push"),
        "int list_push(list_t *list, int value)"
    );
    assert_eq!(vis(&a, "compare"), Visibility::Private);
    assert_eq!(vis(&a, "list_len"), Visibility::Public);
}

#[test]
fn cpp() {
    let path = "src/geo/shape.cpp";
    let a = check(
        path,
        include_str!("fixtures/shape.cpp"),
        "cpp",
        &[
            ("geo", Module, None, 4, 36),
            ("geo::Shape", Class, Some("geo"), 7, 15),
            ("geo::Shape::~Shape", Method, Some("geo::Shape"), 9, 9),
            ("geo::Shape::area", Method, Some("geo::Shape"), 11, 11),
            ("geo::Point", Type, Some("geo"), 17, 21),
            ("geo::Point::dot", Method, Some("geo::Point"), 20, 20),
            ("geo::Circle", Class, Some("geo"), 23, 28),
            ("geo::Shapes", Type, Some("geo"), 30, 30),
            ("geo::helper", Function, Some("geo"), 33, 33),
            ("geo::Circle::area", Method, Some("geo::Circle"), 38, 40),
            ("geo::Circle::Circle", Method, Some("geo::Circle"), 42, 42),
        ],
    );
    assert_eq!(doc(&a, "geo::Shape"), Some("A closed figure."));
    assert_eq!(
        doc(&a, "geo::Shape::area"),
        Some("The area, in square units.")
    );
    assert_eq!(sig(&a, "geo::Point"), "template <typename T> struct Point");
    assert_eq!(
        sig(&a, "geo::Circle::area"),
        "double geo::Circle::area() const"
    );
    assert_eq!(
        vis(&a, "geo::helper"),
        Visibility::Private,
        "an anonymous namespace hides it"
    );
}
