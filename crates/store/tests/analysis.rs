//! Analysis and docs batches against the real database: written once
//! (a batch run again changes nothing), only with the fence and never
//! after a cancel; and the symbol listing's filters, with odd characters.

mod common;

use common::claimed;
use projsync_store::{AnalyzedFile, BatchWrite, Edge, NewDoc, NewSymbol, SymbolFilter, SymbolMeta};
use projsync_test_support::TestDb;
use serde_json::json;

fn symbol(file: &str, name: &str, kind: &str) -> NewSymbol {
    let content = format!("fn {name}() {{}}");
    NewSymbol {
        qualified_name: format!("{file}#{name}"),
        source_path: file.into(),
        symbol_id: uuid::Uuid::new_v4(),
        content_hash: projsync_domain::content_hash(&content),
        content,
        blob_sha: None,
        language: "rust".into(),
        meta: SymbolMeta {
            kind: kind.into(),
            name: name.into(),
            signature: format!("fn {name}()"),
            doc: None,
            start_line: 1,
            end_line: 1,
            parent: None,
            visibility: "public".into(),
            partial: false,
        },
        chunks: None,
    }
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.admin).await.unwrap()
}

#[tokio::test]
async fn analysis_and_docs_batches_are_written_once_and_never_after_a_cancel() {
    let db = TestDb::new().await;
    let (store, _project, claim) = claimed(&db, "w1").await;
    let symbols = vec![
        symbol("src/a.rs", "open", "function"),
        symbol("src/a.rs", "close", "function"),
    ];
    let files = vec![AnalyzedFile {
        path: "src/a.rs".into(),
        language: Some("rust".into()),
        kept_symbols: vec!["src/a.rs#kept\nwith a newline".into()],
        ..Default::default()
    }];
    let edges = vec![Edge {
        from_path: "src/a.rs".into(),
        raw: "crate::b".into(),
        line: 2,
        candidates: vec!["src/b.rs".into(), "src/b/mod.rs".into()],
    }];
    for _ in 0..2 {
        assert_eq!(
            store
                .write_analysis_batch(
                    &claim,
                    &symbols,
                    &files,
                    &edges,
                    json!({ "after": "src/a.rs" })
                )
                .await
                .unwrap(),
            BatchWrite::Written
        );
    }
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM memory_entries WHERE kind = 'symbol' AND status = 'pending'"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM dependency_edges WHERE status = 'pending'"
        )
        .await,
        1
    );
    let kept: Vec<String> =
        sqlx::query_scalar("SELECT unnest(kept_symbols) FROM sync_analyzed_files")
            .fetch_all(&db.admin)
            .await
            .unwrap();
    assert_eq!(
        kept,
        ["src/a.rs#kept\nwith a newline"],
        "a name is kept whole"
    );
    let candidates: Vec<String> =
        sqlx::query_scalar("SELECT unnest(candidates) FROM dependency_edges")
            .fetch_all(&db.admin)
            .await
            .unwrap();
    assert_eq!(candidates, ["src/b.rs", "src/b/mod.rs"], "in order");
    let doc = NewDoc {
        path: "src/".into(),
        content: "# Module `src`\n".into(),
        content_hash: projsync_domain::content_hash("# Module `src`\n"),
        meta: json!({ "inputs_key": "k" }),
    };
    for _ in 0..2 {
        assert_eq!(
            store
                .write_docs_batch(
                    &claim,
                    std::slice::from_ref(&doc),
                    &["old/".into()],
                    json!({})
                )
                .await
                .unwrap(),
            BatchWrite::Written
        );
    }
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM memory_entries WHERE kind = 'doc'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM sync_doc_removals").await,
        1
    );

    store.request_cancel(claim.sync_id).await.unwrap();
    assert_eq!(
        store
            .write_analysis_batch(
                &claim,
                &[symbol("src/c.rs", "c", "function")],
                &[],
                &[],
                json!({})
            )
            .await
            .unwrap(),
        BatchWrite::CancelRequested
    );
    assert_eq!(
        store
            .write_docs_batch(&claim, &[], &["x/".into()], json!({}))
            .await
            .unwrap(),
        BatchWrite::CancelRequested
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM memory_entries WHERE kind = 'symbol'"
        )
        .await,
        2
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM sync_doc_removals").await,
        1
    );
}

#[tokio::test]
async fn the_symbol_listing_filters_by_name_kind_and_path_prefix_literally() {
    let db = TestDb::new().await;
    let (store, project, claim) = claimed(&db, "w1").await;
    let symbols = vec![
        symbol("src/a.rs", "open_file", "function"),
        symbol("src/a.rs", "Opener", "type"),
        symbol("src/a_b.rs", "close", "function"),
        symbol("srcx/c.rs", "open", "function"),
        symbol("src/100%.rs", "percent", "const"),
    ];
    assert_eq!(
        store
            .write_analysis_batch(&claim, &symbols, &[], &[], json!({}))
            .await
            .unwrap(),
        BatchWrite::Written
    );
    // As finalize would make them: active.
    sqlx::query("UPDATE memory_entries SET status = 'active'")
        .execute(&db.admin)
        .await
        .unwrap();
    let list = |q: Option<&str>,
                kind: Option<&str>,
                prefix: Option<&str>,
                after: Option<String>,
                limit: i64| {
        let store = store.clone();
        let filter = SymbolFilter {
            q: q.map(Into::into),
            kind: kind.map(Into::into),
            path_prefix: prefix.map(Into::into),
        };
        async move {
            let page = store
                .symbols_page(project, &filter, after.as_deref(), limit)
                .await
                .unwrap();
            (
                page.items
                    .into_iter()
                    .map(|s| s.qualified_name)
                    .collect::<Vec<_>>(),
                page.next,
            )
        }
    };
    assert_eq!(
        list(Some("OPEN"), None, None, None, 10).await.0,
        ["src/a.rs#Opener", "src/a.rs#open_file", "srcx/c.rs#open"]
    );
    assert_eq!(
        list(None, Some("function"), Some("src/"), None, 10).await.0,
        ["src/a.rs#open_file", "src/a_b.rs#close"]
    );
    assert_eq!(
        list(Some("_"), None, None, None, 10).await.0,
        ["src/a.rs#open_file"],
        "_ is literal"
    );
    assert_eq!(
        list(None, None, Some("src/100%"), None, 10).await.0,
        ["src/100%.rs#percent"]
    );
    assert_eq!(
        list(Some("%"), None, None, None, 10).await.0,
        Vec::<String>::new()
    );
    // Pages: two at a time, each symbol once.
    let (first, next) = list(None, None, None, None, 2).await;
    let (second, next) = list(None, None, None, next, 2).await;
    let (third, next) = list(None, None, None, next, 2).await;
    assert_eq!(next, None);
    assert_eq!([first, second, third].concat().len(), 5);
}

/// A symbol entry carries its file's blob SHA; the content reused for that
/// blob (by a rename, a revert or a restore) is the file's, never a symbol's.
#[tokio::test]
async fn known_content_is_the_files_not_a_symbols_with_the_same_blob() {
    let db = TestDb::new().await;
    let (store, project, claim) = claimed(&db, "w1").await;
    let sha = "b".repeat(40);
    let file = projsync_store::NewEntry {
        path: "src/a.rs".into(),
        content: "fn open() {}\nfn close() {}\n".into(),
        content_hash: projsync_domain::content_hash("fn open() {}\nfn close() {}\n"),
        blob_sha: sha.clone(),
        language: Some("rust".into()),
        size: 28,
    };
    let symbols: Vec<NewSymbol> = ["open", "close"]
        .iter()
        .map(|n| NewSymbol {
            blob_sha: Some(sha.clone()),
            ..symbol("src/a.rs", n, "function")
        })
        .collect();
    let written = store
        .write_analysis_batch(&claim, &symbols, &[], &[], json!({}))
        .await
        .unwrap();
    assert_eq!(written, BatchWrite::Written);
    // Written after the symbols, so a scan meets the symbols first.
    let written = store
        .write_import_batch(&claim, std::slice::from_ref(&file), &[], json!({}))
        .await
        .unwrap();
    assert_eq!(written, BatchWrite::Written);
    // Whatever order the rows come in, only the file's content is offered.
    for _ in 0..5 {
        let known = store
            .known_content(project, std::slice::from_ref(&sha))
            .await
            .unwrap();
        assert_eq!(known.len(), 1);
        assert_eq!(known[&sha].content, file.content);
        assert_eq!(known[&sha].content_hash, file.content_hash);
    }
}

/// Symbols cut into chunks by the analysis are written with their chunks
/// and chunk count in one statement: once, whatever the number of runs,
/// and the embed phase finds nothing left to chunk (an empty symbol is
/// chunked too, with no chunk).
#[tokio::test]
async fn symbols_written_with_their_chunks_are_chunked_once() {
    let db = TestDb::new().await;
    let (store, _project, claim) = claimed(&db, "w1").await;
    let chunk = |n: i32, text: &str| projsync_store::NewChunk {
        start_line: n,
        end_line: n,
        content: text.into(),
        content_hash: projsync_domain::content_hash(text),
        token_count: 3,
        searchable: format!("{text} open_file open file"),
    };
    let symbols = vec![
        NewSymbol {
            chunks: Some(vec![chunk(1, "fn open_file() {"), chunk(2, "}")]),
            ..symbol("src/a.rs", "open_file", "function")
        },
        NewSymbol {
            chunks: Some(vec![]),
            ..symbol("src/a.rs", "empty\nname", "function")
        },
        // Left to the embed phase.
        symbol("src/a.rs", "close", "function"),
    ];
    for _ in 0..2 {
        assert_eq!(
            store
                .write_analysis_batch(&claim, &symbols, &[], &[], json!({}))
                .await
                .unwrap(),
            BatchWrite::Written
        );
    }
    let counts: Vec<(String, Option<i32>, i64)> = sqlx::query_as(
        "SELECT m.path, m.chunk_count, (SELECT count(*) FROM memory_chunks c WHERE c.entry_id = m.id) \
         FROM memory_entries m WHERE m.kind = 'symbol' ORDER BY m.path",
    )
    .fetch_all(&db.admin)
    .await
    .unwrap();
    assert_eq!(
        counts,
        vec![
            ("src/a.rs#close".to_string(), None, 0),
            ("src/a.rs#empty\nname".to_string(), Some(0), 0),
            ("src/a.rs#open_file".to_string(), Some(2), 2),
        ]
    );
    // The chunks are searchable as the embed phase's are.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM memory_chunks WHERE tsv @@ to_tsquery('english', 'open & file')"
        )
        .await,
        2
    );
    let left = store
        .unchunked_entries(
            projsync_store::ChunkScope::Sync(claim.sync_id),
            None,
            100,
            1 << 20,
        )
        .await
        .unwrap();
    assert_eq!(
        left.iter().map(|e| e.key.1.as_str()).collect::<Vec<_>>(),
        vec!["src/a.rs#close"]
    );
}
