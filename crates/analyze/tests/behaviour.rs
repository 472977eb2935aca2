//! Imports and their resolution, content hashes, partial parses, skips and
//! the parse deadline.

use std::collections::HashSet;
use std::time::Duration;

use projsync_analyze::{analyze, resolve_imports, Analysis, Limits, Skip, SymbolKind, Visibility};

fn run(path: &str, src: &str) -> Analysis {
    analyze(path, src.as_bytes(), &Limits::default())
        .unwrap_or_else(|skip| panic!("{path}: {skip}"))
}

fn known(paths: &[&str]) -> HashSet<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

/// (raw, line, target) after resolution against `paths`.
fn resolved(a: &Analysis, paths: &[&str]) -> Vec<(String, u32, Option<String>)> {
    let mut imports = a.imports.clone();
    resolve_imports(&mut imports, &known(paths));
    imports
        .into_iter()
        .map(|i| (i.raw, i.line, i.target))
        .collect()
}

fn row(raw: &str, line: u32, target: Option<&str>) -> (String, u32, Option<String>) {
    (raw.to_string(), line, target.map(str::to_string))
}

#[test]
fn rust_imports_resolve_to_module_files() {
    let a = run("crates/kv/src/store.rs", include_str!("fixtures/store.rs"));
    assert!(
        a.imports.iter().all(|i| i.target.is_none()),
        "analyze alone resolves nothing"
    );
    let got = resolved(
        &a,
        &[
            "crates/kv/src/codec/mod.rs",
            "crates/kv/src/lib.rs",
            "crates/kv/src/store/codec.rs",
        ],
    );
    assert_eq!(
        got,
        vec![
            row("std::collections::HashMap", 5, None),
            row("std::io", 6, None),
            row("std::io::Write", 6, None),
            row(
                "crate::codec::decode",
                7,
                Some("crates/kv/src/codec/mod.rs")
            ),
            row(
                "crate::codec::Encoder",
                7,
                Some("crates/kv/src/codec/mod.rs")
            ),
            row("super::Error", 8, None),
            row("mod codec", 10, Some("crates/kv/src/store/codec.rs")),
        ]
    );
    // `mod x;` in a crate root looks beside it, a directory module inside.
    let a = run("src/lib.rs", "mod a;\nmod b;\n");
    assert_eq!(
        resolved(&a, &["src/a.rs", "src/b/mod.rs"]),
        vec![
            row("mod a", 1, Some("src/a.rs")),
            row("mod b", 2, Some("src/b/mod.rs"))
        ]
    );
}

#[test]
fn python_imports_resolve_relative_and_absolute_modules() {
    let a = run("shop/models.py", include_str!("fixtures/models.py"));
    let got = resolved(
        &a,
        &[
            "shop/db/__init__.py",
            "shop/fields.py",
            "util/text.py",
            "shop/__init__.py",
        ],
    );
    assert_eq!(
        got,
        vec![
            row("os", 6, None),
            row("json", 7, None),
            row(".db", 8, Some("shop/db/__init__.py")),
            row(".fields", 9, Some("shop/fields.py")),
            row("..util.text", 10, Some("util/text.py")),
            row("csv", 43, None),
        ]
    );
    // `from . import name` falls back to the package when `name` is not a module.
    let a = run(
        "app/views.py",
        "from . import settings\nimport app.models\n",
    );
    assert_eq!(
        resolved(&a, &["app/__init__.py", "src/app/models.py"]),
        vec![
            row(".settings", 1, Some("app/__init__.py")),
            row("app.models", 2, Some("src/app/models.py")),
        ]
    );
}

#[test]
fn js_and_ts_imports_try_the_bundlers_extensions() {
    let a = run("web/src/widget.jsx", include_str!("fixtures/widget.jsx"));
    assert_eq!(
        resolved(&a, &["web/src/format/index.js", "web/src/styles.css"]),
        vec![
            row("react", 5, None),
            row("./format", 6, Some("web/src/format/index.js")),
            row("./styles.css", 7, Some("web/src/styles.css")),
        ]
    );
    let a = run("web/src/api.ts", include_str!("fixtures/api.ts"));
    assert_eq!(
        resolved(
            &a,
            &[
                "web/src/options.ts",
                "web/http/request.ts",
                "web/src/types.d.ts"
            ]
        ),
        vec![
            row("./options", 3, Some("web/src/options.ts")),
            // TypeScript's ESM style: `.js` names the `.ts` file it compiles from.
            row("../http/request.js", 4, Some("web/http/request.ts")),
            row("./types", 5, Some("web/src/types.d.ts")),
        ]
    );
    let a = run("web/lazy.js", "const m = await import(\"./heavy\");\n");
    assert_eq!(
        resolved(&a, &["web/heavy.js"]),
        vec![row("./heavy", 1, Some("web/heavy.js"))]
    );
}

#[test]
fn go_java_and_c_imports() {
    let a = run("server/server.go", include_str!("fixtures/server.go"));
    assert_eq!(
        resolved(&a, &[]),
        vec![row("fmt", 7, None), row("net/http", 8, None)],
        "Go imports name packages, not files"
    );
    assert!(a.imports.iter().all(|i| i.candidates.is_empty()));

    let a = run(
        "src/main/java/com/acme/cache/Cache.java",
        include_str!("fixtures/Cache.java"),
    );
    assert_eq!(
        resolved(
            &a,
            &[
                "src/main/java/com/acme/util/Clock.java",
                "src/main/java/com/acme/util/Strings.java"
            ]
        ),
        vec![
            row("java.util.HashMap", 3, None),
            row("java.util.Map", 4, None),
            row(
                "com.acme.util.Clock",
                5,
                Some("src/main/java/com/acme/util/Clock.java")
            ),
            row(
                "com.acme.util.Strings.trim",
                6,
                Some("src/main/java/com/acme/util/Strings.java")
            ),
        ]
    );

    let a = run("lib/list.c", include_str!("fixtures/list.c"));
    assert_eq!(
        resolved(&a, &["lib/list.h", "util/alloc.h", "include/stdlib.h"]),
        vec![
            row("<stdlib.h>", 1, Some("include/stdlib.h")),
            row("\"list.h\"", 2, Some("lib/list.h")),
            row("\"../util/alloc.h\"", 3, Some("util/alloc.h")),
        ]
    );
}

#[test]
fn a_c_header_in_cpp_is_parsed_as_cpp() {
    let src = "#ifndef SHAPE_H\n#define SHAPE_H\nnamespace geo {\nclass Shape {\npublic:\n  double area() const;\n};\n}\n#endif\n";
    let a = run("include/shape.h", src);
    assert_eq!(a.language, "cpp");
    assert!(!a.partial);
    let names: Vec<&str> = a
        .symbols
        .iter()
        .map(|s| s.qualified_name.as_str())
        .collect();
    assert_eq!(
        names,
        vec![
            "include/shape.h#geo",
            "include/shape.h#geo::Shape",
            "include/shape.h#geo::Shape::area"
        ]
    );
    // A plain C header stays C, include guard and all.
    let a = run(
        "include/list.h",
        "#ifndef LIST_H\n#define LIST_H 1\n#define LIST_MAX 8\n/* Push. */\nint push(int v);\n#endif\n",
    );
    assert_eq!(a.language, "c");
    let names: Vec<&str> = a
        .symbols
        .iter()
        .map(|s| s.qualified_name.as_str())
        .collect();
    assert_eq!(
        names,
        vec!["include/list.h#LIST_MAX", "include/list.h#push"]
    );
    assert_eq!(a.symbols[1].doc.as_deref(), Some("Push."));
}

fn hashes(a: &Analysis) -> Vec<(String, String)> {
    a.symbols
        .iter()
        .map(|s| (s.qualified_name.clone(), s.content_hash.clone()))
        .collect()
}

/// The symbols whose hash differs between two analyses of the same names.
fn changed(before: &Analysis, after: &Analysis) -> Vec<String> {
    let (b, a) = (hashes(before), hashes(after));
    assert_eq!(
        b.iter().map(|x| &x.0).collect::<Vec<_>>(),
        a.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    b.into_iter()
        .zip(a)
        .filter(|(x, y)| x.1 != y.1)
        .map(|(x, _)| x.0)
        .collect()
}

#[test]
fn an_edit_inside_one_function_changes_one_hash() {
    let src = include_str!("fixtures/store.rs");
    let before = run("src/store.rs", src);
    assert!(before.symbols.iter().all(|s| s.content_hash.len() == 64));
    // A method inside an impl: not its type, not the other methods.
    let edited = src.replace(
        "self.entries.shrink_to_fit();",
        "self.entries.clear();\n        self.entries.shrink_to_fit();",
    );
    assert_eq!(
        changed(&before, &run("src/store.rs", &edited)),
        vec!["src/store.rs#Store::compact"]
    );
    // A function inside a module: not the module.
    let edited = src.replace("sum()", "sum::<u32>()");
    assert_eq!(
        changed(&before, &run("src/store.rs", &edited)),
        vec!["src/store.rs#inner::checksum"]
    );
    // A field of the struct: the struct alone.
    let edited = src.replace(
        "entries: HashMap<String, Vec<u8>>,",
        "entries: HashMap<String, Vec<u8>>,\n    dirty: bool,",
    );
    assert_eq!(
        changed(&before, &run("src/store.rs", &edited)),
        vec!["src/store.rs#Store"]
    );
    // Its doc comment counts as its text.
    let edited = src.replace("/// An open store.", "/// An open store, or a closed one.");
    assert_eq!(
        changed(&before, &run("src/store.rs", &edited)),
        vec!["src/store.rs#Store"]
    );

    let src = include_str!("fixtures/models.py");
    let before = run("m.py", src);
    let edited = src.replace("return self.price > 0", "return self.price >= 0");
    assert_eq!(
        changed(&before, &run("m.py", &edited)),
        vec!["m.py#Product::_check"]
    );

    let src = include_str!("fixtures/shape.cpp");
    let before = run("s.cpp", src);
    let edited = src.replace("return 3.14159 * r_ * r_;", "return 3.14 * r_ * r_;");
    assert_eq!(
        changed(&before, &run("s.cpp", &edited)),
        vec!["s.cpp#geo::Circle::area"]
    );
}

#[test]
fn repeated_names_get_a_suffix() {
    let src = "struct A;\nimpl std::fmt::Display for A {\n    fn fmt(&self) {}\n}\nimpl std::fmt::Debug for A {\n    fn fmt(&self) {}\n}\n";
    let a = run("src/a.rs", src);
    let names: Vec<&str> = a
        .symbols
        .iter()
        .map(|s| s.qualified_name.as_str())
        .collect();
    assert_eq!(
        names,
        vec!["src/a.rs#A", "src/a.rs#A::fmt", "src/a.rs#A::fmt~2"]
    );
    assert!(a.symbols[1..]
        .iter()
        .all(|s| s.parent.as_deref() == Some("src/a.rs#A")));
}

#[test]
fn a_parent_defined_elsewhere_is_no_parent() {
    let a = run(
        "src/impls.rs",
        "impl Store {\n    pub fn close(self) {}\n}\n",
    );
    assert_eq!(a.symbols.len(), 1);
    assert_eq!(a.symbols[0].qualified_name, "src/impls.rs#Store::close");
    assert_eq!(a.symbols[0].kind, SymbolKind::Method);
    assert_eq!(a.symbols[0].parent, None);
}

#[test]
fn a_broken_file_still_lists_what_parsed() {
    let src =
        "pub fn good() -> u32 {\n    1\n}\n\nfn broken( {\n\npub struct Kept {\n    a: u32,\n}\n";
    let a = run("src/broken.rs", src);
    assert!(a.partial);
    let names: Vec<&str> = a.symbols.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"good"), "{names:?}");

    let src = "def ok():\n    return 1\n\ndef bad(:\n    pass\n\nclass Later:\n    def m(self):\n        pass\n";
    let a = run("x.py", src);
    assert!(a.partial);
    let names: Vec<&str> = a.symbols.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"ok"), "{names:?}");
    assert!(names.contains(&"Later"), "{names:?}");

    let a = run("ok.py", "def ok():\n    return 1\n");
    assert!(!a.partial);
}

#[test]
fn each_skip_has_its_reason() {
    let limits = Limits::default();
    let skip = |path: &str, bytes: &[u8]| analyze(path, bytes, &limits).unwrap_err();

    let s = skip("README.md", b"# Title\n");
    assert_eq!(s, Skip::UnsupportedLanguage(".md".into()));
    assert_eq!(s.reason(), "unsupported_language");
    assert!(s.to_string().contains("`.md`"), "{s}");
    assert_eq!(
        skip("Makefile", b"all:\n"),
        Skip::UnsupportedLanguage("Makefile".into())
    );

    for path in ["api/v1/user.pb.go", "proto/user_pb2.py"] {
        assert_eq!(skip(path, b"x = 1\n"), Skip::Generated, "{path}");
    }
    let s = skip(
        "gen/types.go",
        b"// Code generated by stringer. DO NOT EDIT.\n\npackage gen\n",
    );
    assert_eq!(s, Skip::Generated);
    assert_eq!(s.reason(), "generated");
    assert_eq!(
        skip(
            "src/schema.rs",
            b"// @generated by diesel\npub mod schema {}\n"
        ),
        Skip::Generated
    );

    assert_eq!(skip("vendor/jquery.min.js", b"var a=1;\n"), Skip::Minified);
    let minified = format!("var a={};\n", "1+".repeat(3000) + "1");
    let s = skip("dist/app.js", minified.as_bytes());
    assert_eq!(s, Skip::Minified);
    assert_eq!(s.reason(), "minified");

    let long = format!("fn a() {{}}\n{}\n", "// ".to_string() + &"x".repeat(5000));
    let mut lines = "fn f() {}\n".repeat(500);
    lines.push_str(&long);
    let s = skip("src/long.rs", lines.as_bytes());
    assert_eq!(s, Skip::LongLines { longest: 5003 });
    assert_eq!(s.reason(), "long_lines");

    let big = "fn f() {}\n".repeat(200_000);
    let s = skip("src/big.rs", big.as_bytes());
    assert_eq!(s, Skip::TooLarge { bytes: big.len() });
    assert_eq!(s.reason(), "too_large");
    assert!(s.to_string().contains("max_bytes"), "{s}");

    let s = skip("src/latin1.rs", b"// caf\xe9\nfn f() {}\n");
    assert_eq!(s, Skip::NotUtf8);
    assert_eq!(s.reason(), "not_utf8");
}

#[test]
fn a_pathological_input_hits_the_deadline() {
    // Deeply nested brackets: a lot of parsing for few bytes.
    let src = format!(
        "fn f() {{ let x = {}1{}; }}\n",
        "[(\n".repeat(20_000),
        ")]\n".repeat(20_000)
    );
    let tight = Limits {
        timeout: Duration::from_micros(1),
        ..Limits::default()
    };
    assert!(
        analyze("src/deep.rs", src.as_bytes(), &Limits::default()).is_ok(),
        "it parses given time"
    );
    let s = analyze("src/deep.rs", src.as_bytes(), &tight).unwrap_err();
    assert_eq!(s, Skip::Timeout);
    assert_eq!(s.reason(), "timeout");
    // The parser that gave up is ready for the next file on this thread.
    let a = run("src/next.rs", "pub fn next() {}\n");
    assert_eq!(a.symbols.len(), 1);
    assert_eq!(a.symbols[0].visibility, Visibility::Public);
}

#[test]
fn threads_each_parse_on_their_own() {
    let handles: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let path = format!("src/t{i}.go");
                for _ in 0..20 {
                    let a = run(&path, include_str!("fixtures/server.go"));
                    assert_eq!(a.symbols.len(), 10);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a thread panicked");
    }
}

#[test]
fn long_signatures_are_cut_with_a_marker() {
    let params: Vec<String> = (0..100).map(|i| format!("a{i}: u32")).collect();
    let src = format!("fn many({}) {{}}\n", params.join(", "));
    let a = run("src/many.rs", &src);
    let sig = &a.symbols[0].signature;
    assert_eq!(
        sig.chars().count(),
        projsync_analyze::SIGNATURE_MAX_CHARS + 1
    );
    assert!(sig.ends_with('…'));
}

#[test]
fn deep_nesting_costs_no_stack() {
    let n = 3_000;
    let nested = |open: &str, close: &str| format!("{}{}", open.repeat(n), close.repeat(n));
    let python: String = (0..100)
        .map(|i| format!("{}class C{i}:\n", "    ".repeat(i)))
        .collect::<String>()
        + &"    ".repeat(100)
        + "pass\n";
    let cases = [
        ("src/deep.rs", nested("mod a {\n", "}\n")),
        (
            "src/uses.rs",
            format!("use {}b{};\n", "a::{\n".repeat(n), "}\n".repeat(n)),
        ),
        ("deep.py", python),
        ("deep.ts", nested("namespace A {\n", "}\n")),
        (
            "deep.js",
            format!("f({}1{});\n", "[(\n".repeat(n), ")]\n".repeat(n)),
        ),
        (
            "deep.go",
            format!(
                "package p\nfunc f() {{ _ = {}1{} }}\n",
                "(\n".repeat(n),
                ")\n".repeat(n)
            ),
        ),
        ("Deep.java", nested("class A {\n", "}\n")),
        ("deep.cpp", nested("namespace a {\n", "}\n")),
        (
            "deep.c",
            format!("int x = {}1{};\n", "(\n".repeat(n), ")\n".repeat(n)),
        ),
    ];
    for (path, src) in cases {
        let a = analyze(path, src.as_bytes(), &Limits::default())
            .unwrap_or_else(|s| panic!("{path}: {s}"));
        // The outer declarations are listed; past a depth nothing is.
        let declares = [
            "src/deep.rs",
            "deep.py",
            "deep.ts",
            "deep.go",
            "Deep.java",
            "deep.cpp",
        ]
        .contains(&path);
        assert_eq!(!a.symbols.is_empty(), declares, "{path}");
        assert!(a.symbols.len() < 100, "{path}: {}", a.symbols.len());
    }
}

#[test]
fn docs_are_the_comments_directly_above() {
    // A trailing comment belongs to the line it ends; a blank line detaches.
    let a = run(
        "x.c",
        "int a(void); // about a\nint b(void);\n\n// detached\n\nint c(void);\n/* c'est d */\nint d(void);\n",
    );
    let docs: Vec<(&str, Option<&str>)> = a
        .symbols
        .iter()
        .map(|s| (s.name.as_str(), s.doc.as_deref()))
        .collect();
    assert_eq!(
        docs,
        vec![
            ("a", None),
            ("b", None),
            ("c", None),
            ("d", Some("c'est d"))
        ]
    );

    // Go: a spec in a group takes the comment above it.
    let a = run(
        "g.go",
        "package g\n\nconst (\n\t// A is first.\n\tA = 1\n\tB = 2\n)\n",
    );
    let docs: Vec<(&str, Option<&str>)> = a
        .symbols
        .iter()
        .map(|s| (s.name.as_str(), s.doc.as_deref()))
        .collect();
    assert_eq!(docs, vec![("A", Some("A is first.")), ("B", None)]);

    // Rust: a plain comment is no doc, attributes between doc and item are fine.
    let a = run(
        "r.rs",
        "// not a doc\nfn a() {}\n/// Doc of b.\n#[inline]\n// aside\nfn b() {}\n",
    );
    let docs: Vec<(&str, Option<&str>)> = a
        .symbols
        .iter()
        .map(|s| (s.name.as_str(), s.doc.as_deref()))
        .collect();
    assert_eq!(docs, vec![("a", None), ("b", Some("Doc of b."))]);

    // JS: only `/** */` is JSDoc.
    let a = run(
        "j.js",
        "// plain\nfunction a() {}\n/** Doc of b. */\nfunction b() {}\n",
    );
    let docs: Vec<(&str, Option<&str>)> = a
        .symbols
        .iter()
        .map(|s| (s.name.as_str(), s.doc.as_deref()))
        .collect();
    assert_eq!(docs, vec![("a", None), ("b", Some("Doc of b."))]);
}

#[test]
fn a_constant_signature_keeps_a_short_value_and_drops_a_table() {
    let a = run(
        "src/k.rs",
        "pub const MAX: usize = 64;\npub const ALL: &[&str] = &[\n    \"a\",\n    \"b\",\n];\n",
    );
    let sigs: Vec<&str> = a.symbols.iter().map(|s| s.signature.as_str()).collect();
    assert_eq!(
        sigs,
        vec!["pub const MAX: usize = 64", "pub const ALL: &[&str]"]
    );
    let a = run("k.py", "LIMIT = 10\nNAMES = [\n    'a',\n]\n");
    let sigs: Vec<&str> = a.symbols.iter().map(|s| s.signature.as_str()).collect();
    assert_eq!(sigs, vec!["LIMIT = 10", "NAMES"]);
}

#[test]
fn typescript_overloads_are_one_symbol() {
    let src = "export function f(a: string): string;\nexport function f(a: number): number;\nexport function f(a: any): any {\n  return a;\n}\nclass C {\n  m(a: string): void;\n  m(a: any): void {}\n}\ninterface I {\n  m(): void;\n}\n";
    let a = run("o.ts", src);
    let rows: Vec<(&str, u32)> = a
        .symbols
        .iter()
        .map(|s| (s.qualified_name.as_str(), s.start_line))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("o.ts#f", 3),
            ("o.ts#C", 6),
            ("o.ts#C::m", 8),
            ("o.ts#I", 10),
            ("o.ts#I::m", 11)
        ]
    );
}

#[test]
fn a_header_or_module_doc_above_the_first_item_is_not_part_of_it() {
    let src = "// Licence header.\n//! The module.\n\n/// Adds.\npub fn add() {}\n";
    let edited = src
        .replace("Licence header.", "Licence header, 2027.")
        .replace("The module.", "The crate.");
    assert!(changed(&run("src/lib.rs", src), &run("src/lib.rs", &edited)).is_empty());
    let text = &run("src/lib.rs", src).symbols[0].text;
    assert_eq!(text, "/// Adds.\npub fn add() {}");
}
