//! The docs phase against the real database: one doc per module with code,
//! what it holds, new versions only for the modules whose inputs changed,
//! removal with the module's code, and the chat model's summaries (a fake
//! OpenAI-compatible server) cached by the hash of the inputs.

mod common;

use common::Harness;
use projsync_domain::SyncStatus;
use projsync_embed::chat::{ChatClient, ChatOptions};
use projsync_pipeline::DocsSettings;
use projsync_test_support::fake_openai::{FakeOpenAi, DEFAULT_CHAT_MODEL};
use std::collections::BTreeMap;
use std::sync::Arc;

const REPO: &[(&str, &str)] = &[
    ("README.md", "# shapes\n\nShapes and sizes.\n"),
    (
        "src/lib.rs",
        "//! Shapes and their areas.\nmod util;\nuse crate::util::square;\n\n/// A square.\n\
         pub struct Square {\n    pub side: f64,\n}\n\n/// Its area.\npub fn area(s: &Square) -> f64 {\n    \
         square(s.side)\n}\n\nfn private_helper() {}\n",
    ),
    (
        "src/util.rs",
        "/// The square of `x`.\npub fn square(x: f64) -> f64 {\n    x * x\n}\n",
    ),
    (
        "app/models.py",
        "\"\"\"Models of the app.\"\"\"\nfrom .util import slug\n\n\nclass User:\n    def save(self):\n        \
         return slug(self.name)\n",
    ),
    ("app/util.py", "def slug(text):\n    return text.lower()\n"),
    ("web/README.md", "# Web\n\nThe browser side of the app.\n"),
    ("web/index.js", "export function render() {}\n"),
    ("notes/todo.md", "- nothing\n"),
];

/// The active docs: path → content.
async fn docs(h: &Harness) -> BTreeMap<String, String> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT path, content FROM memory_entries \
         WHERE project_id = $1 AND kind = 'doc' AND status = 'active'",
    )
    .bind(h.project.0)
    .fetch_all(&h.db.admin)
    .await
    .unwrap();
    rows.into_iter().collect()
}

/// Doc versions written by a sync.
async fn docs_by(h: &Harness, sync: projsync_domain::SyncId) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT path FROM memory_entries WHERE created_by_sync_id = $1 AND kind = 'doc' \
         ORDER BY path",
    )
    .bind(sync.0)
    .fetch_all(&h.db.admin)
    .await
    .unwrap()
}

/// How many modules the sync's docs phase looked at (its checkpoint).
async fn modules_looked_at(h: &Harness, sync: projsync_domain::SyncId) -> u64 {
    let checkpoint: serde_json::Value = sqlx::query_scalar(
        "SELECT checkpoint FROM sync_steps WHERE sync_id = $1 AND phase = 'docs'",
    )
    .bind(sync.0)
    .fetch_one(&h.db.admin)
    .await
    .unwrap();
    checkpoint["done"].as_u64().unwrap()
}

#[tokio::test]
async fn one_doc_per_module_with_code_and_new_versions_only_where_inputs_changed() {
    let h = Harness::new(REPO).await;
    let first = h.sync().await;
    assert_eq!(first.status, SyncStatus::Succeeded, "{first:#?}");
    let all = docs(&h).await;
    assert_eq!(
        all.keys().collect::<Vec<_>>(),
        ["app/", "src/", "web/"],
        "modules with code only (not the top, not notes/)"
    );
    assert_eq!(first.stats.docs_regenerated, 3);
    assert_eq!(
        all["src/"],
        "# Module `src`\n\nShapes and their areas.\n\n## Public symbols\n\n\
         - `pub struct Square` (type `src/lib.rs#Square`, line 6): A square.\n\
         - `pub fn area(s: &Square) -> f64` (function `src/lib.rs#area`, line 11): Its area.\n\
         - `pub fn square(x: f64) -> f64` (function `src/util.rs#square`, line 2): The square of `x`.\n\n\
         ## Files\n\n- `src/lib.rs` (rust)\n- `src/util.rs` (rust)\n\n\
         ## Depends on\n\nNothing outside the module.\n\n\
         ## Used by\n\nNo other module imports it.\n"
    );
    assert!(
        all["web/"].contains("The browser side of the app."),
        "the README when there is no module doc comment: {}",
        all["web/"]
    );
    assert!(
        all["app/"].contains("Models of the app."),
        "{}",
        all["app/"]
    );

    // An edit inside a function body: no doc changes.
    h.repo.write(
        "src/util.rs",
        "/// The square of `x`.\npub fn square(x: f64) -> f64 {\n    x.powi(2)\n}\n",
    );
    h.repo.commit("body");
    let second = h.sync().await;
    assert_eq!(second.status, SyncStatus::Succeeded, "{second:#?}");
    assert_eq!(second.stats.docs_regenerated, 0);
    assert!(docs_by(&h, second.id).await.is_empty());
    assert_eq!(
        modules_looked_at(&h, second.id).await,
        0,
        "the file's doc digest is its active version's: no module is looked at"
    );

    // A changed doc line: only the touched module's doc.
    h.repo.write(
        "src/util.rs",
        "/// `x` times `x`.\npub fn square(x: f64) -> f64 {\n    x.powi(2)\n}\n",
    );
    h.repo.commit("doc line");
    let third = h.sync().await;
    assert_eq!(third.stats.docs_regenerated, 1);
    assert_eq!(docs_by(&h, third.id).await, ["src/"]);
    assert_eq!(modules_looked_at(&h, third.id).await, 1);
    assert!(docs(&h).await["src/"].contains("`x` times `x`."));

    // An import from another module: both ends' docs, nothing else.
    h.repo.write(
        "web/index.js",
        "import { helper } from '../lib/helper.js';\nexport function render() {}\n",
    );
    h.repo
        .write("lib/helper.js", "export function helper() {}\n");
    h.repo.commit("a lib module used by web");
    let fourth = h.sync().await;
    assert_eq!(docs_by(&h, fourth.id).await, ["lib/", "web/"]);
    let all = docs(&h).await;
    assert!(
        all["web/"].contains("- `lib/` (1 import)"),
        "{}",
        all["web/"]
    );
    assert!(
        all["lib/"].contains("## Used by\n\n- `web/` (1 import)"),
        "{}",
        all["lib/"]
    );

    // A module whose code goes loses its doc.
    h.repo.remove("lib/helper.js");
    h.repo.commit("no lib");
    let fifth = h.sync().await;
    assert_eq!(fifth.status, SyncStatus::Succeeded, "{fifth:#?}");
    let all = docs(&h).await;
    assert!(!all.contains_key("lib/"), "{:?}", all.keys());
    assert!(
        all["web/"].contains("from elsewhere: `../lib/helper.js`"),
        "an import whose target is gone: {}",
        all["web/"]
    );

    // A file renamed within a module, and another deleted from one that
    // keeps a file: each module's doc lists its files as the sync leaves
    // them (read against the sync's own versions, deletions and renames).
    h.repo.rename("src/util.rs", "src/maths.rs");
    h.repo.remove("app/models.py");
    h.repo
        .write("app/views.py", "def index():\n    return 'ok'\n");
    h.repo.commit("rename and delete");
    let sixth = h.sync().await;
    assert_eq!(sixth.status, SyncStatus::Succeeded, "{sixth:#?}");
    let all = docs(&h).await;
    assert!(
        all["src/"].contains("## Files\n\n- `src/lib.rs` (rust)\n- `src/maths.rs` (rust)\n\n"),
        "{}",
        all["src/"]
    );
    assert!(
        all["app/"].contains("- `app/views.py` (python)") && !all["app/"].contains("models.py"),
        "{}",
        all["app/"]
    );
}

#[tokio::test]
async fn a_chat_model_adds_a_summary_cached_by_the_inputs() {
    let fake = FakeOpenAi::start().await;
    let mut h = Harness::new(REPO).await;
    let mut opts = ChatOptions::new(DEFAULT_CHAT_MODEL);
    opts.base_url = fake.base_url();
    let llm = Arc::new(ChatClient::new(opts).unwrap());
    h.pipeline = h.pipeline.clone().with_docs(DocsSettings {
        llm: Some(llm),
        ..DocsSettings::default()
    });
    let first = h.sync().await;
    assert_eq!(first.status, SyncStatus::Succeeded, "{first:#?}");
    assert_eq!(fake.chat_requests(), 3, "one call per doc");
    let all = docs(&h).await;
    assert!(
        all["src/"].starts_with("# Module `src`\n\n**Summary:** Summary: # Module `src`\n\n"),
        "{}",
        all["src/"]
    );

    // The same inputs again (a revert): the cache answers.
    h.repo.write(
        "src/util.rs",
        "pub fn square(x: f64) -> f64 {\n    x * x\n}\n",
    );
    h.repo.commit("no doc");
    let second = h.sync().await;
    assert_eq!(second.stats.docs_regenerated, 1);
    assert_eq!(fake.chat_requests(), 4, "one module changed");
    h.repo.write(
        "src/util.rs",
        "/// The square of `x`.\npub fn square(x: f64) -> f64 {\n    x * x\n}\n",
    );
    h.repo.commit("revert");
    let third = h.sync().await;
    assert_eq!(third.stats.docs_regenerated, 1);
    assert_eq!(
        fake.chat_requests(),
        4,
        "the reverted module's summary is cached"
    );
    assert_eq!(docs(&h).await["src/"], all["src/"]);
}

#[tokio::test]
async fn a_model_that_refuses_the_key_fails_the_sync_with_what_to_fix() {
    let fake = FakeOpenAi::builder().with_api_key("right").start().await;
    let mut h = Harness::new(REPO).await;
    let mut opts = ChatOptions::new(DEFAULT_CHAT_MODEL);
    opts.base_url = fake.base_url();
    opts.api_key = Some("wrong".into());
    h.pipeline = h.pipeline.clone().with_docs(DocsSettings {
        llm: Some(Arc::new(ChatClient::new(opts).unwrap())),
        ..DocsSettings::default()
    });
    let sync = h.sync().await;
    assert_eq!(sync.status, SyncStatus::Failed, "{sync:#?}");
    let message = sync.error_message.unwrap_or_default();
    assert!(message.contains("docs.llm"), "{message}");
    assert!(
        !message.contains("wrong"),
        "the key is not echoed: {message}"
    );
    assert_eq!(
        h.count_versions("active").await,
        0,
        "nothing became visible"
    );
}
