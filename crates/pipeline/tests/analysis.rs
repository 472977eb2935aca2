//! The analyze phase against the real database: symbols of every language
//! as entries, versioned by content hash; identities kept across edits and
//! renames; imports as edges; files that cannot be analysed; a project
//! that turns analysis off, and on again.

mod common;

use common::Harness;
use projsync_domain::{PhaseStatus, SyncPhase, SyncStatus};
use projsync_pipeline::AnalysisSettings;
use std::collections::BTreeMap;

const LIB_RS: &str = "//! Shapes and their areas.
use crate::util::square;

/// A shape with an area.
pub trait Shape {
    fn area(&self) -> f64;
}

/// A square.
pub struct Square {
    pub side: f64,
}

impl Shape for Square {
    fn area(&self) -> f64 {
        square(self.side)
    }
}

/// Doubles a number.
pub fn double(x: f64) -> f64 {
    x * 2.0
}
";

const REPO: &[(&str, &str)] = &[
    ("README.md", "# shapes\n"),
    ("src/lib.rs", LIB_RS),
    (
        "src/util.rs",
        "/// The square of `x`.\npub fn square(x: f64) -> f64 {\n    x * x\n}\n",
    ),
    (
        "app/models.py",
        "\"\"\"Models of the app.\"\"\"\nfrom .util import slug\n\n\nclass User:\n    \
         \"\"\"A user of the app.\"\"\"\n\n    def save(self):\n        return slug(self.name)\n\n\n\
         def helper():\n    return 1\n",
    ),
    (
        "app/util.py",
        "def slug(text):\n    \"\"\"Lower-case words joined by dashes.\"\"\"\n    return '-'.join(text.lower().split())\n",
    ),
    (
        "web/index.js",
        "import { slug } from './slug.js';\n\nexport function render(title) {\n  return slug(title);\n}\n\n\
         class View {\n  draw() {\n    return render('x');\n  }\n}\n",
    ),
    (
        "web/slug.js",
        "export const slug = (s) => s.toLowerCase();\n",
    ),
    (
        "web/app.tsx",
        "interface Props {\n  name: string;\n}\n\nexport function App(props: Props) {\n  return <p>{props.name}</p>;\n}\n",
    ),
    (
        "cmd/main.go",
        "// Package main runs the tool.\npackage main\n\nimport \"fmt\"\n\n// Greeter greets.\ntype Greeter struct{}\n\n\
         // Greet says hello.\nfunc (g Greeter) Greet() {\n\tfmt.Println(\"hello\")\n}\n\nfunc main() {\n\tGreeter{}.Greet()\n}\n",
    ),
    (
        "java/src/main/java/com/acme/App.java",
        "package com.acme;\n\nimport com.acme.util.Strings;\n\n/** The app. */\npublic class App {\n    \
         /** Runs it. */\n    public void run() {\n        Strings.trim(\"x\");\n    }\n}\n",
    ),
    (
        "c/list.h",
        "#define LIST_MAX 16\n\n/** Push. */\nint push(int x);\n",
    ),
    (
        "c/list.c",
        "#include \"list.h\"\n#include <stdio.h>\n\nint push(int x) {\n    return x + 1;\n}\n\n\
         static int helper(void) {\n    return 0;\n}\n",
    ),
    (
        "cpp/vec.cpp",
        "#include <vector>\n\nnamespace geo {\nclass Vec {\npublic:\n    double len() const { return 0; }\n};\n}\n",
    ),
];

/// The active symbols: qualified name → symbol kind.
async fn symbols(h: &Harness) -> BTreeMap<String, String> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT path, meta->>'kind' FROM memory_entries \
         WHERE project_id = $1 AND kind = 'symbol' AND status = 'active' ORDER BY path",
    )
    .bind(h.project.0)
    .fetch_all(&h.db.admin)
    .await
    .unwrap();
    rows.into_iter().collect()
}

/// The active symbols' identities: qualified name → symbol_id.
async fn identities(h: &Harness) -> BTreeMap<String, uuid::Uuid> {
    let rows: Vec<(String, uuid::Uuid)> = sqlx::query_as(
        "SELECT path, symbol_id FROM memory_entries \
         WHERE project_id = $1 AND kind = 'symbol' AND status = 'active'",
    )
    .bind(h.project.0)
    .fetch_all(&h.db.admin)
    .await
    .unwrap();
    rows.into_iter().collect()
}

/// The active edges: (from, raw, candidates).
async fn edges(h: &Harness) -> Vec<(String, String, Vec<String>)> {
    sqlx::query_as(
        "SELECT from_path, raw, candidates FROM dependency_edges \
         WHERE project_id = $1 AND status = 'active' ORDER BY from_path, line, raw",
    )
    .bind(h.project.0)
    .fetch_all(&h.db.admin)
    .await
    .unwrap()
}

fn names(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(n, k)| (n.to_string(), k.to_string()))
        .collect()
}

fn expected_symbols() -> BTreeMap<String, String> {
    names(&[
        ("app/models.py#User", "class"),
        ("app/models.py#User::save", "method"),
        ("app/models.py#helper", "function"),
        ("app/util.py#slug", "function"),
        ("c/list.c#helper", "function"),
        ("c/list.c#push", "function"),
        ("c/list.h#LIST_MAX", "const"),
        ("c/list.h#push", "function"),
        ("cmd/main.go#Greeter", "type"),
        ("cmd/main.go#Greeter::Greet", "method"),
        ("cmd/main.go#main", "function"),
        ("cpp/vec.cpp#geo", "module"),
        ("cpp/vec.cpp#geo::Vec", "class"),
        ("cpp/vec.cpp#geo::Vec::len", "method"),
        ("java/src/main/java/com/acme/App.java#App", "class"),
        ("java/src/main/java/com/acme/App.java#App::run", "method"),
        ("src/lib.rs#Shape", "trait"),
        ("src/lib.rs#Shape::area", "method"),
        ("src/lib.rs#Square", "type"),
        ("src/lib.rs#Square::area", "method"),
        ("src/lib.rs#double", "function"),
        ("src/util.rs#square", "function"),
        ("web/app.tsx#App", "function"),
        ("web/app.tsx#Props", "interface"),
        ("web/index.js#View", "class"),
        ("web/index.js#View::draw", "method"),
        ("web/index.js#render", "function"),
        ("web/slug.js#slug", "function"),
    ])
}

#[tokio::test]
async fn a_first_sync_writes_every_languages_symbols_and_imports() {
    let h = Harness::new(REPO).await;
    let sync = h.sync().await;
    assert_eq!(sync.status, SyncStatus::Succeeded, "{sync:#?}");
    assert_eq!(symbols(&h).await, expected_symbols());
    let stats = &sync.stats;
    assert_eq!(stats.analyzed_files, 12, "{stats:#?}");
    assert_eq!(stats.symbols_changed, 28);
    assert_eq!(
        stats.analysis_skipped_by_reason,
        BTreeMap::from([("unsupported_language".to_string(), 1)])
    );
    assert_eq!(stats.analyzed_partial, 0);

    // What a symbol entry holds: its source (doc included, nested symbols
    // cut to their signatures), its file and what the parser read.
    let (content, source_path, meta): (String, String, serde_json::Value) = sqlx::query_as(
        "SELECT content, source_path, meta FROM memory_entries \
         WHERE project_id = $1 AND kind = 'symbol' AND path = 'src/lib.rs#Shape'",
    )
    .bind(h.project.0)
    .fetch_one(&h.db.admin)
    .await
    .unwrap();
    assert_eq!(source_path, "src/lib.rs");
    assert!(
        content.starts_with("/// A shape with an area.\npub trait Shape {"),
        "{content}"
    );
    assert!(content.contains("fn area(&self) -> f64 …"), "{content}");
    assert_eq!(meta["signature"], "pub trait Shape");
    assert_eq!(meta["doc"], "A shape with an area.");
    assert_eq!(
        (meta["start_line"].as_u64(), meta["end_line"].as_u64()),
        (Some(5), Some(7))
    );
    assert_eq!(meta["visibility"], "public");
    assert_eq!(meta["partial"], false);

    // Symbols are chunked like any entry.
    let unchunked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM memory_entries WHERE project_id = $1 AND kind = 'symbol' \
         AND chunk_count IS NULL",
    )
    .bind(h.project.0)
    .fetch_one(&h.db.admin)
    .await
    .unwrap();
    assert_eq!(unchunked, 0);

    // Each import with its target: the first candidate that is a file of
    // the tree (as the dependency API resolves it when read).
    let edges = edges(&h).await;
    let find = |from: &str| {
        edges
            .iter()
            .filter(|e| e.0 == from)
            .map(|e| {
                let target = e.2.iter().find(|c| REPO.iter().any(|(p, _)| p == c));
                (e.1.as_str(), target.map(String::as_str))
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        find("src/lib.rs"),
        [("crate::util::square", Some("src/util.rs"))]
    );
    assert_eq!(find("app/models.py"), [(".util", Some("app/util.py"))]);
    assert_eq!(find("web/index.js"), [("./slug.js", Some("web/slug.js"))]);
    assert_eq!(find("cmd/main.go"), [("fmt", None)]);
    assert_eq!(
        find("c/list.c"),
        [("\"list.h\"", Some("c/list.h")), ("<stdio.h>", None)]
    );
}

#[tokio::test]
async fn an_edit_inside_one_function_supersedes_that_symbol_alone() {
    let h = Harness::new(REPO).await;
    let first = h.sync().await;
    let ids = identities(&h).await;
    h.repo
        .write("src/lib.rs", LIB_RS.replace("x * 2.0", "x + x"));
    h.repo.commit("double by adding");
    let second = h.sync().await;
    assert_eq!(second.status, SyncStatus::Succeeded, "{second:#?}");
    assert_eq!(second.stats.analyzed_files, 1, "only the changed file");
    assert_eq!(second.stats.symbols_changed, 1);
    let versions = h.versions_of("symbol").await;
    let double: Vec<_> = versions
        .iter()
        .filter(|v| v.path == "src/lib.rs#double")
        .map(|v| (v.status.as_str(), v.created_by, v.superseded_by))
        .collect();
    assert_eq!(
        double,
        [
            ("superseded", first.id, Some(second.id)),
            ("active", second.id, None)
        ]
    );
    assert_eq!(
        versions
            .iter()
            .filter(|v| v.created_by == second.id)
            .count(),
        1,
        "no other symbol got a version"
    );
    assert_eq!(
        identities(&h).await,
        ids,
        "the edited symbol keeps its identity"
    );
    // The file's imports did not change: its edge is the first sync's.
    let edge_syncs: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT created_by_sync_id FROM dependency_edges WHERE project_id = $1 \
         AND from_path = 'src/lib.rs' AND status = 'active'",
    )
    .bind(h.project.0)
    .fetch_all(&h.db.admin)
    .await
    .unwrap();
    assert_eq!(edge_syncs, [first.id.0]);
}

#[tokio::test]
async fn a_renamed_file_keeps_its_symbols_identities_and_a_deleted_one_loses_its_symbols() {
    let h = Harness::new(REPO).await;
    h.sync().await;
    let ids = identities(&h).await;
    h.repo.rename("src/util.rs", "src/maths.rs");
    h.repo.remove("app/util.py");
    h.repo.write(
        "web/index.js",
        "export function render(title) {\n  return title;\n}\n",
    );
    h.repo.commit("rename, delete, drop an import");
    let sync = h.sync().await;
    assert_eq!(sync.status, SyncStatus::Succeeded, "{sync:#?}");
    let after = identities(&h).await;
    assert_eq!(
        after.get("src/maths.rs#square"),
        ids.get("src/util.rs#square")
    );
    assert!(!after.contains_key("src/util.rs#square"));
    assert!(!after.contains_key("app/util.py#slug"));
    assert!(!after.contains_key("web/index.js#View"));
    assert_eq!(
        after.get("web/index.js#render"),
        ids.get("web/index.js#render")
    );
    assert!(edges(&h).await.iter().all(|e| e.0 != "web/index.js"));
    // square moved (its new name a new version, its old one gone), slug,
    // View and View::draw went, render changed.
    assert_eq!(sync.stats.symbols_changed, 6, "{:#?}", sync.stats);
}

#[tokio::test]
async fn files_that_cannot_be_analysed_say_why_and_partial_ones_keep_what_parsed() {
    // Ten lines of 500 characters; a hundred short lines and one of 5,000.
    let minified = format!("{}\n", "b();".repeat(125)).repeat(10);
    let long_line = format!("{}X = '{}'\n", "a = 1\n".repeat(100), "x".repeat(5000));
    let files: &[(&str, &str)] = &[
        (
            "gen/api.pb.go",
            "// Code generated by protoc. DO NOT EDIT.\npackage api\n\nfunc X() {}\n",
        ),
        ("web/app.js", &minified),
        ("src/data.py", &long_line),
        (
            "src/broken.rs",
            "pub fn good() -> u32 {\n    1\n}\n\nfn bad( {\n",
        ),
    ];
    let h = Harness::new(files).await;
    let sync = h.sync().await;
    assert_eq!(sync.status, SyncStatus::Succeeded, "{sync:#?}");
    assert_eq!(
        sync.stats.analysis_skipped_by_reason,
        BTreeMap::from([
            ("generated".to_string(), 1),
            ("long_lines".to_string(), 1),
            ("minified".to_string(), 1)
        ])
    );
    assert_eq!(sync.stats.analyzed_partial, 1);
    let partial: Vec<(String, bool)> = sqlx::query_as(
        "SELECT path, (meta->>'partial')::bool FROM memory_entries WHERE project_id = $1 \
         AND kind = 'symbol' AND status = 'active' ORDER BY path",
    )
    .bind(h.project.0)
    .fetch_all(&h.db.admin)
    .await
    .unwrap();
    assert!(
        partial.contains(&("src/broken.rs#good".to_string(), true)),
        "{partial:?}"
    );
}

#[tokio::test]
async fn a_project_with_analysis_off_skips_the_phase_and_catches_up_when_it_is_on_again() {
    let mut h = Harness::new(REPO).await;
    h.pipeline = h.pipeline.clone().with_analysis(AnalysisSettings {
        enabled: false,
        ..AnalysisSettings::default()
    });
    let first = h.sync().await;
    assert_eq!(first.status, SyncStatus::Succeeded, "{first:#?}");
    let analyze = h
        .steps(first.id)
        .await
        .into_iter()
        .find(|s| s.0 == SyncPhase::Analyze)
        .unwrap();
    assert_eq!(analyze.1, PhaseStatus::Skipped);
    assert!(symbols(&h).await.is_empty());
    assert_eq!(first.stats.analyzed_files, 0);

    // On again: the next sync changes one file and analyses the whole tree.
    h.pipeline = h
        .pipeline
        .clone()
        .with_analysis(AnalysisSettings::default());
    h.repo.write(
        "src/util.rs",
        "pub fn square(x: f64) -> f64 {\n    x.powi(2)\n}\n",
    );
    h.repo.commit("powi");
    let second = h.sync().await;
    assert_eq!(second.status, SyncStatus::Succeeded, "{second:#?}");
    assert_eq!(second.stats.analyzed_files, 12);
    assert_eq!(symbols(&h).await, expected_symbols());

    // And a sync after it reads only what changed.
    h.repo.write("README.md", "# shapes and more\n");
    h.repo.commit("readme");
    let third = h.sync().await;
    assert_eq!(third.stats.analyzed_files, 0, "{:#?}", third.stats);
    assert_eq!(symbols(&h).await, expected_symbols());
}
