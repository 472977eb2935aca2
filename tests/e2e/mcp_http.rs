//! The MCP endpoint's HTTP edges, spoken as raw JSON-RPC over Streamable
//! HTTP (the Python client's journeys are in mcp.rs): keys, sessions bound
//! to a tenant, session termination, and the size budget followed to the
//! end of a long file.

use crate::helpers::{create_tenant_key, spawn_app_full, test_sources, TestApp};
use projsync_domain::Role;
use projsync_test_support::GitRepo;
use serde_json::{json, Value};
use std::sync::Arc;

const PROTOCOL: &str = "2025-11-25";

struct Session {
    url: String,
    http: reqwest::Client,
    id: String,
    next: i64,
}

fn mcp_url(app: &TestApp) -> String {
    format!("{}/mcp", app.base.trim_end_matches("/api/v1"))
}

/// The JSON-RPC message answering `id` in a response: a JSON body, or
/// the `data:` lines of an SSE body.
fn reply(body: &str, id: i64) -> Value {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        return v;
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("no reply to {id} in {body}"))
}

fn post(http: &reqwest::Client, url: &str, key: &str) -> reqwest::RequestBuilder {
    http.post(url)
        .bearer_auth(key)
        .header("Accept", "application/json, text/event-stream")
        .header("Content-Type", "application/json")
}

impl Session {
    async fn open(url: &str, key: &str) -> Session {
        let http = reqwest::Client::new();
        let resp = post(&http, url, key)
            .json(&json!({
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {
                    "protocolVersion": PROTOCOL,
                    "capabilities": {},
                    "clientInfo": { "name": "e2e", "version": "1" }
                }
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let id = resp.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        let init = reply(&resp.text().await.unwrap(), 0);
        assert_eq!(init["result"]["protocolVersion"], PROTOCOL, "{init}");
        assert_eq!(init["result"]["serverInfo"]["name"], "projsync");
        let resp = post(&http, url, key)
            .header("Mcp-Session-Id", &id)
            .header("Mcp-Protocol-Version", PROTOCOL)
            .json(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        Session {
            url: url.into(),
            http,
            id,
            next: 1,
        }
    }

    /// A request on this session, sent with `key`.
    async fn call(&mut self, key: &str, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        let resp = post(&self.http, &self.url, key)
            .header("Mcp-Session-Id", &self.id)
            .header("Mcp-Protocol-Version", PROTOCOL)
            .json(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        reply(&resp.text().await.unwrap(), id)
    }

    /// A tool's text and whether it is an error.
    async fn tool(&mut self, key: &str, name: &str, args: Value) -> (String, bool) {
        let r = self
            .call(
                key,
                "tools/call",
                json!({ "name": name, "arguments": args }),
            )
            .await;
        let result = &r["result"];
        assert!(result.is_object(), "a tool answers with a result: {r}");
        (
            result["content"][0]["text"].as_str().unwrap().to_string(),
            result["isError"] == true,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_sessions_and_the_size_budget_over_http() {
    let app = spawn_app_full(Some(Arc::new(test_sources())), |s| {
        s.mcp.max_result_bytes = 2048;
    })
    .await;
    let url = mcp_url(&app);
    let repo = GitRepo::new();
    // A long file of numbered lines, with multi-byte characters.
    let long: String = (0..400)
        .map(|i| format!("line {i:03} — ünïcödé {}\n", "x".repeat(i % 40)))
        .collect();
    repo.write("src/long.txt", &long);
    for i in 0..30 {
        repo.write(
            &format!("src/m{i:02}.rs"),
            format!("pub fn needle_{i}() -> u32 {{ {i} }} // needle haystack\n"),
        );
    }
    repo.commit("files");
    let project = app.create_project("budget", repo.path(), "main").await;
    assert_eq!(app.sync(&project, None).await["status"], "succeeded");

    // No key, a bad key: the API's 401, before any MCP.
    let resp = reqwest::Client::new()
        .post(&url)
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    let resp = post(&reqwest::Client::new(), &url, "psk_nope")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let mut s = Session::open(&url, &app.key).await;

    // The long file, read part by part: every answer within the budget,
    // each part but the last ending with the marker, all of it in order.
    let mut offset = 0u64;
    let mut read = String::new();
    let mut parts = 0;
    loop {
        let (text, err) = s
            .tool(
                &app.key,
                "read_entry",
                json!({ "path": "src/long.txt", "offset": offset }),
            )
            .await;
        assert!(!err, "{text}");
        assert!(text.len() <= 2048, "{} bytes", text.len());
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["offset"], offset);
        assert_eq!(v["total_bytes"], long.len());
        let content = v["content"].as_str().unwrap();
        parts += 1;
        match v["next_offset"].as_u64() {
            Some(next) => {
                let cut = content
                    .strip_suffix(&format!("\n{}", projsync_mcp::budget::MARKER))
                    .unwrap_or_else(|| panic!("no marker: {content}"));
                assert!(
                    v["truncated"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("offset={next}")),
                    "{v}"
                );
                read.push_str(cut);
                assert_eq!(read.len() as u64, next);
                offset = next;
            }
            None => {
                assert!(v["truncated"].is_null());
                read.push_str(content);
                break;
            }
        }
    }
    assert_eq!(read, long);
    assert!(parts > 5, "{parts} parts");

    // Search: whole results while they fit, and a note saying what was left.
    let (text, err) = s
        .tool(
            &app.key,
            "search",
            json!({ "query": "needle haystack", "mode": "keyword", "k": 30 }),
        )
        .await;
    assert!(!err, "{text}");
    assert!(text.len() <= 2048);
    let v: Value = serde_json::from_str(&text).unwrap();
    let shown = v["results"].as_array().unwrap().len();
    assert!((1..30).contains(&shown), "{shown}");
    assert!(
        v["truncated"].as_str().unwrap().contains("results shown"),
        "{v}"
    );

    // Resources: a page at a time, within the page size.
    let r = s.call(&app.key, "resources/list", json!({})).await;
    let uris: Vec<&str> = r["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    assert!(uris.contains(&"projsync://budget/src/long.txt"), "{uris:?}");
    let r = s
        .call(
            &app.key,
            "resources/read",
            json!({ "uri": "projsync://budget/src/long.txt" }),
        )
        .await;
    let text = r["result"]["contents"][0]["text"].as_str().unwrap();
    assert!(text.len() <= 2048);
    assert!(text.contains(projsync_mcp::budget::MARKER), "{text}");
    assert!(text.contains("read_entry"), "{text}");
    let r = s
        .call(
            &app.key,
            "resources/read",
            json!({ "uri": "file:///etc/passwd" }),
        )
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("projsync://"),
        "{r}"
    );

    // Bad arguments and unknown projects are tool errors that say what to do.
    let (text, err) = s.tool(&app.key, "search", json!({ "k": 3 })).await;
    assert!(err && text.contains("query"), "{text}");
    let (text, err) = s
        .tool(&app.key, "search", json!({ "query": "x", "mode": "fuzzy" }))
        .await;
    assert!(
        err && text.contains("hybrid, semantic or keyword"),
        "{text}"
    );
    let (text, err) = s
        .tool(
            &app.key,
            "read_entry",
            json!({ "project": "nope", "path": "a" }),
        )
        .await;
    assert!(err && text.contains("list_projects"), "{text}");
    let (text, err) = s
        .tool(
            &app.key,
            "read_entry",
            json!({ "path": "src/long.txt", "as_of": "yesterday" }),
        )
        .await;
    assert!(err && text.contains("not a sync id"), "{text}");
    let (text, err) = s
        .tool(&app.key, "list_projects", json!({ "cursor": "garbage" }))
        .await;
    assert!(err && text.contains("next_cursor"), "{text}");

    // A session belongs to the tenant that opened it: another tenant's
    // key on it gets nothing.
    let other = create_tenant_key(&app.db, "other", Role::Admin).await;
    let (text, err) = s.tool(&other, "list_projects", json!({})).await;
    assert!(err && text.contains("another tenant"), "{text}");
    let mut theirs = Session::open(&url, &other).await;
    let (text, err) = theirs.tool(&other, "list_projects", json!({})).await;
    assert!(!err);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["projects"],
        json!([])
    );
    let (text, err) = theirs
        .tool(
            &other,
            "read_entry",
            json!({ "project": "budget", "path": "src/long.txt" }),
        )
        .await;
    assert!(err && text.contains("no project"), "{text}");
    let r = theirs.call(&other, "resources/list", json!({})).await;
    assert_eq!(r["result"]["resources"], json!([]), "{r}");

    // Counted by tool and outcome.
    let metrics = reqwest::get(format!("{}/metrics", app.base.trim_end_matches("/api/v1")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |tool: &str, outcome: &str| -> f64 {
        let series =
            format!("projsync_mcp_tool_calls_total{{outcome=\"{outcome}\",tool=\"{tool}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {metrics}"))
    };
    assert_eq!(count("read_entry", "ok"), parts as f64);
    // (Arguments that do not deserialize are refused by the SDK before the
    // tool runs, and are not counted.)
    assert_eq!(count("search", "error"), 1.0);

    // Ending a session: 204, and the session is gone.
    let resp = s
        .http
        .delete(&s.url)
        .bearer_auth(&app.key)
        .header("Mcp-Session-Id", &s.id)
        .header("Mcp-Protocol-Version", PROTOCOL)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = post(&s.http, &s.url, &app.key)
        .header("Mcp-Session-Id", &s.id)
        .header("Mcp-Protocol-Version", PROTOCOL)
        .json(&json!({ "jsonrpc": "2.0", "id": 99, "method": "tools/list" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

/// `projsync mcp` refuses a bad key or an unknown project before it speaks
/// MCP: exit 2 and a message on stderr, nothing on stdout (the protocol's
/// channel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_refuses_a_bad_key_or_project_before_speaking() {
    let app = spawn_app_full(None, |_| {}).await;
    let run = |args: &[&str]| {
        let mut cmd = crate::cli::projsync(&app.db, &app.redis);
        cmd.arg("mcp").args(args);
        crate::cli::run(&mut cmd)
    };
    let (code, out, err) = run(&["--key", "psk_0000"]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("not valid"), "{err}");
    let (code, out, err) = run(&["--key", &app.key, "--project", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("--project nope"), "{err}");
}
