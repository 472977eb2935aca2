//! Code analysis through the API: symbols listed and filtered a page at a
//! time, who uses a symbol, what a file depends on and what depends on it,
//! bad input, and search finding a function from what it does.

use crate::helpers::{spawn_app, spawn_app_full, test_sources};
use projsync_test_support::GitRepo;
use serde_json::{json, Value};
use std::sync::Arc;

fn repo() -> GitRepo {
    let repo = GitRepo::new();
    repo.write("README.md", "# shapes\n")
        .write(
            "src/lib.rs",
            "//! Shapes.\nmod util;\nuse crate::util::square;\n\n/// A square.\npub struct Square {\n    \
             pub side: f64,\n}\n\nimpl Square {\n    /// Its area.\n    pub fn area(&self) -> f64 {\n        \
             square(self.side)\n    }\n}\n",
        )
        .write(
            "src/util.rs",
            "/// The square of `x`.\npub fn square(x: f64) -> f64 {\n    x * x\n}\n\n\
             /// Half of `x`.\npub fn half(x: f64) -> f64 {\n    x / 2.0\n}\n",
        )
        .write(
            "app/models.py",
            "from .util import slug\n\n\nclass User:\n    def save(self):\n        return slug(self.name)\n",
        )
        .write("app/util.py", "def slug(text):\n    return text.lower()\n");
    repo.commit("shapes");
    repo
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|s| {
            s["qualified_name"]
                .as_str()
                .unwrap_or_else(|| panic!("{list}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbols_references_and_dependencies_through_the_api() {
    let app = spawn_app().await;
    let repo = repo();
    let project = app.create_project("shapes", repo.path(), "main").await;
    let sync = app.sync(&project, None).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    assert_eq!(sync["stats"]["analyzed_files"], 4, "{sync}");
    let steps: Vec<&str> = sync["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["prepare", "scan", "import", "analyze", "docs", "embed", "finalize"]
    );

    // Every symbol, by qualified name, with what the parser read.
    let (code, all) = app.get(&format!("/projects/{project}/symbols")).await;
    assert_eq!(code, 200, "{all}");
    assert_eq!(
        names(&all),
        [
            "app/models.py#User",
            "app/models.py#User::save",
            "app/util.py#slug",
            "src/lib.rs#Square",
            "src/lib.rs#Square::area",
            "src/util.rs#half",
            "src/util.rs#square",
        ]
    );
    let square = &all[6];
    assert_eq!(square["kind"], "function");
    assert_eq!(square["name"], "square");
    assert_eq!(square["path"], "src/util.rs");
    assert_eq!(square["language"], "rust");
    assert_eq!(square["signature"], "pub fn square(x: f64) -> f64");
    assert_eq!(square["doc"], "The square of `x`.");
    assert_eq!(
        (square["start_line"].clone(), square["end_line"].clone()),
        (json!(2), json!(4))
    );
    assert_eq!(square["visibility"], "public");
    assert_eq!(square["partial"], false);
    assert_eq!(square["created_by_sync_id"], sync["id"]);
    assert!(square["symbol_id"].is_string());
    assert_eq!(all[4]["parent"], "src/lib.rs#Square");

    // Filters, and pages.
    let get = |query: &'static str| {
        let app = &app;
        let project = project.clone();
        async move {
            app.get(&format!("/projects/{project}/symbols?{query}"))
                .await
        }
    };
    let (_, found) = get("q=SQU").await;
    assert_eq!(
        names(&found),
        ["src/lib.rs#Square", "src/util.rs#square"],
        "names containing it, in any case"
    );
    let (_, found) = get("kind=method").await;
    assert_eq!(
        names(&found),
        ["app/models.py#User::save", "src/lib.rs#Square::area"]
    );
    let (_, found) = get("path_prefix=src/util").await;
    assert_eq!(names(&found), ["src/util.rs#half", "src/util.rs#square"]);
    let (_, found) = get("q=%25&kind=function").await;
    assert_eq!(
        names(&found),
        Vec::<&str>::new(),
        "% is a character, not a wildcard"
    );
    let resp = app
        .http
        .get(format!("{}/projects/{project}/symbols?limit=4", app.base))
        .send()
        .await
        .unwrap();
    let cursor = resp.headers()["x-next-cursor"]
        .to_str()
        .unwrap()
        .to_string();
    let first: Value = resp.json().await.unwrap();
    let (_, second) = app
        .get(&format!(
            "/projects/{project}/symbols?limit=4&cursor={cursor}"
        ))
        .await;
    assert_eq!(
        [names(&first), names(&second)].concat(),
        names(&all),
        "two pages are the whole list"
    );
    for (query, status) in [
        ("kind=lambda", 422),
        ("limit=0", 422),
        ("cursor=nope", 422),
        ("colour=red", 422),
    ] {
        let (code, body) = app
            .get(&format!("/projects/{project}/symbols?{query}"))
            .await;
        assert_eq!(code, status, "{query}: {body}");
    }

    // Who uses square: the import of its file, and the call in a method.
    let (code, refs) = app
        .get(&format!(
            "/projects/{project}/symbols/src%2Futil.rs%23square/references"
        ))
        .await;
    assert_eq!(code, 200, "{refs}");
    assert_eq!(refs["symbol"]["qualified_name"], "src/util.rs#square");
    assert_eq!(
        refs["references"],
        json!([
            { "path": "src/lib.rs", "line": 3, "kind": "import", "in_symbol": null,
              "text": "use crate::util::square;" },
            { "path": "src/lib.rs", "line": 13, "kind": "use",
              "in_symbol": "src/lib.rs#Square::area", "text": "square(self.side)" },
        ]),
        "{refs}"
    );
    assert_eq!(refs["truncated"], false);
    let (code, refs) = app
        .get(&format!(
            "/projects/{project}/symbols/app%2Futil.py%23slug/references"
        ))
        .await;
    assert_eq!(code, 200, "{refs}");
    let lines: Vec<(String, u64)> = refs["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap().into(),
                r["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("app/models.py".to_string(), 1),
            ("app/models.py".to_string(), 6)
        ]
    );
    let (code, body) = app
        .get(&format!(
            "/projects/{project}/symbols/src%2Futil.rs%23cube/references"
        ))
        .await;
    assert_eq!(code, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/symbols"),
        "says where names are listed: {body}"
    );

    // What a file depends on, and what depends on it.
    let (code, deps) = app
        .get(&format!("/projects/{project}/dependencies?path=src/lib.rs"))
        .await;
    assert_eq!(code, 200, "{deps}");
    assert_eq!(
        deps,
        json!({
            "path": "src/lib.rs",
            "depends_on": [
                { "raw": "mod util", "line": 2, "target": "src/util.rs" },
                { "raw": "crate::util::square", "line": 3, "target": "src/util.rs" },
            ],
            "depended_on_by": [],
        })
    );
    let (_, deps) = app
        .get(&format!(
            "/projects/{project}/dependencies?path=src/util.rs"
        ))
        .await;
    assert_eq!(
        deps["depended_on_by"],
        json!([
            { "path": "src/lib.rs", "raw": "mod util", "line": 2 },
            { "path": "src/lib.rs", "raw": "crate::util::square", "line": 3 },
        ])
    );
    for query in ["path=src/nope.rs", "path="] {
        let (code, body) = app
            .get(&format!("/projects/{project}/dependencies?{query}"))
            .await;
        assert_eq!(code, 404, "{query}: {body}");
    }
    let (code, _) = app.get(&format!("/projects/{project}/dependencies")).await;
    assert_eq!(code, 422, "path is required");

    // An edit of one function: one new symbol version; the edges stay.
    repo.write(
        "src/util.rs",
        "/// The square of `x`.\npub fn square(x: f64) -> f64 {\n    x.powi(2)\n}\n\n\
         /// Half of `x`.\npub fn half(x: f64) -> f64 {\n    x / 2.0\n}\n",
    );
    repo.commit("powi");
    let second = app.sync(&project, None).await;
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(second["stats"]["symbols_changed"], 1, "{second}");
    let (_, after) = app
        .get(&format!(
            "/projects/{project}/symbols?q=square&path_prefix=src/util.rs"
        ))
        .await;
    assert_eq!(after[0]["created_by_sync_id"], second["id"]);
    assert_eq!(after[0]["symbol_id"], square["symbol_id"]);
    let (_, half) = app
        .get(&format!("/projects/{project}/symbols?q=half"))
        .await;
    assert_eq!(
        half[0]["created_by_sync_id"], sync["id"],
        "half is untouched"
    );
}

/// A question about what a function does finds that function's symbol
/// entry (the local model, a handful of inputs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_a_function_from_what_it_does() {
    let app = spawn_app_full(Some(Arc::new(test_sources())), |s| {
        s.embeddings.enabled = true;
    })
    .await;
    let repo = GitRepo::new();
    repo.write(
        "src/billing.rs",
        "/// Adds the sales tax to an amount in cents.\npub fn with_tax(cents: u64) -> u64 {\n    \
         cents * 120 / 100\n}\n\n/// Sends the monthly newsletter to every subscriber.\n\
         pub fn send_newsletter(list: &[String]) {\n    for to in list {\n        mail(to);\n    }\n}\n",
    );
    repo.commit("billing");
    let project = app.create_project("billing", repo.path(), "main").await;
    let sync = app.sync(&project, None).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    for (question, symbol) in [
        (
            "how much does the customer pay including taxes",
            "src/billing.rs#with_tax",
        ),
        (
            "email the subscribers each month",
            "src/billing.rs#send_newsletter",
        ),
    ] {
        let (code, body) = app
            .post(
                &format!("/projects/{project}/search"),
                json!({ "query": question, "mode": "semantic", "k": 1 }),
            )
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["results"][0]["path"], symbol, "{question}: {body}");
        assert_eq!(body["results"][0]["kind"], "symbol", "{body}");
    }
}
