//! Request limits and checks (security issue): unknown fields, body size,
//! JSON-only POSTs, `Host` and `Origin`, input limits, expensive validation
//! off the request threads, and cursor pagination of every list.

use crate::helpers::{spawn_app_with, TestApp};
use projsync_test_support::GitRepo;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn one_file_repo() -> GitRepo {
    let repo = GitRepo::new();
    repo.write("a.txt", "a\n");
    repo.commit("first");
    repo
}

fn project_body(name: &str, repo: &GitRepo) -> Value {
    json!({
        "name": name,
        "repository": { "provider": "local", "path": repo.path(), "branch": "main" },
    })
}

/// `host:port` of the app.
fn addr(app: &TestApp) -> String {
    app.base
        .trim_start_matches("http://")
        .trim_end_matches("/api/v1")
        .to_string()
}

/// A response read off the wire.
struct Raw {
    status: u16,
    headers: String,
    body: Value,
}

/// Send `head` (request line and headers, without the blank line) and
/// `body` as written, on a connection of its own, and read the answer.
async fn raw(app: &TestApp, head: &str, body: &[u8]) -> Raw {
    let mut stream = tokio::net::TcpStream::connect(addr(app)).await.unwrap();
    let mut request = format!("{head}\r\nConnection: close\r\n\r\n").into_bytes();
    request.extend_from_slice(body);
    let (mut read, mut write) = stream.split();
    // The server may answer before it has read the whole body: write and
    // read side by side, and ignore a write cut short by that answer.
    let writing = async {
        let _ = write.write_all(&request).await;
    };
    let mut response = Vec::new();
    let reading = async {
        let _ =
            tokio::time::timeout(Duration::from_secs(20), read.read_to_end(&mut response)).await;
    };
    tokio::join!(writing, reading);
    let text = String::from_utf8_lossy(&response).to_string();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    Raw {
        status,
        headers: headers.to_ascii_lowercase(),
        body: serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    }
}

/// The JSON error body, with its code, and the message.
fn error_message(body: &Value, code: &str) -> String {
    assert_eq!(body["error"]["code"], code, "{body}");
    body["error"]["message"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_and_query_parameters_are_named() {
    let app = spawn_app_with(false, |_| {}).await;
    let repo = one_file_repo();
    let project = app.create_project("fields", repo.path(), "main").await;
    let sync = app.enqueue(&project, None).await;

    let mut with_extra = project_body("extra", &repo);
    with_extra["colour"] = json!("blue");
    let mut nested = project_body("nested", &repo);
    nested["repository"]["depth"] = json!(1);
    let mut in_embeddings = project_body("embeddings", &repo);
    in_embeddings["embeddings"] = json!({ "enabled": true, "model": "x" });
    let cases = [
        ("/projects".to_string(), with_extra, "colour"),
        ("/projects".to_string(), nested, "depth"),
        ("/projects".to_string(), in_embeddings, "model"),
        (
            format!("/projects/{project}/syncs"),
            json!({ "branch": "main", "brnach": "x" }),
            "brnach",
        ),
        (
            format!("/projects/{project}/memory/restore"),
            json!({ "sync_id": sync, "force": true }),
            "force",
        ),
        (
            format!("/projects/{project}/search"),
            json!({ "query": "a", "limit": 3 }),
            "limit",
        ),
        (
            format!("/projects/{project}/embeddings/backfill"),
            json!({ "prune": false, "all": true }),
            "all",
        ),
        (
            format!("/syncs/{sync}/retry"),
            json!({ "from_start": true, "fast": 1 }),
            "fast",
        ),
        (
            format!("/syncs/{sync}/cancel"),
            json!({ "why": "x" }),
            "why",
        ),
        (
            format!("/syncs/{sync}/discard"),
            json!({ "why": "x" }),
            "why",
        ),
    ];
    for (path, body, field) in cases {
        let (status, err) = app.post(&path, body).await;
        assert_eq!(status, 422, "POST {path}: {err}");
        let message = error_message(&err, "invalid");
        assert!(message.contains(&format!("`{field}`")), "{path}: {message}");
    }

    for (path, field) in [
        ("/projects?limit=5&page=2".to_string(), "page"),
        (format!("/projects/{project}/memory?offset=10"), "offset"),
        (format!("/projects/{project}/syncs?limt=3"), "limt"),
        ("/syncs?state=failed".to_string(), "state"),
        (format!("/projects/{project}?expand=all"), "expand"),
        (format!("/syncs/{sync}?steps=0"), "steps"),
        (format!("/projects/{project}/embeddings?x=1"), "x"),
    ] {
        let (status, err) = app.get(&path).await;
        assert_eq!(status, 422, "GET {path}: {err}");
        let message = error_message(&err, "invalid");
        assert!(message.contains(&format!("`{field}`")), "{path}: {message}");
    }
    let healthz = raw(
        &app,
        &format!("GET /healthz?verbose=1 HTTP/1.1\r\nHost: {}", addr(&app)),
        b"",
    )
    .await;
    assert_eq!(healthz.status, 422);
    assert!(error_message(&healthz.body, "invalid").contains("`verbose`"));
    // A POST with a query string is refused too.
    let (status, err) = app
        .post(&format!("/projects/{project}/syncs?branch=main"), json!({}))
        .await;
    assert_eq!(status, 422, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_a_413_with_the_json_error() {
    let app = spawn_app_with(false, |_| {}).await;
    let host = addr(&app);
    let ten_mb = vec![b' '; 10 * 1024 * 1024];
    for (method, path) in [
        ("POST", "/api/v1/projects"),
        (
            "POST",
            "/api/v1/syncs/00000000-0000-0000-0000-000000000000/retry",
        ),
        ("GET", "/healthz"),
    ] {
        let started = Instant::now();
        let r = raw(
            &app,
            &format!(
                "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}",
                ten_mb.len()
            ),
            &ten_mb,
        )
        .await;
        assert_eq!(r.status, 413, "{method} {path}: {}", r.body);
        assert!(r.headers.contains("content-type: application/json"));
        let message = error_message(&r.body, "payload_too_large");
        assert!(
            message.contains("1048576") && message.contains("api.max_body_bytes"),
            "{message}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    // Without a Content-Length (chunked), the limit applies while reading.
    let mut chunked = Vec::new();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
        chunked.extend_from_slice(&[b' '; 64 * 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = raw(
        &app,
        &format!(
            "POST /api/v1/projects HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked"
        ),
        &chunked,
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(error_message(&r.body, "payload_too_large").contains("api.max_body_bytes"));

    // A smaller limit is configurable, and a body under it is read.
    let small = spawn_app_with(false, |s| s.api.max_body_bytes = 100).await;
    let repo = one_file_repo();
    let mut body = project_body("small", &repo);
    body["ignore_patterns"] = json!(["x".repeat(100)]);
    let (status, err) = small.post("/projects", body).await;
    assert_eq!(status, 413, "{err}");
    assert!(error_message(&err, "payload_too_large").contains("100 bytes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_must_be_json() {
    let app = spawn_app_with(false, |_| {}).await;
    let repo = one_file_repo();
    let project = app.create_project("json-only", repo.path(), "main").await;
    let url = |path: &str| format!("{}{path}", app.base);
    let json_body = project_body("form", &repo).to_string();

    // What a browser sends cross-site without a preflight.
    for content_type in [
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
        Some("application/json; charset=latin1"),
        None,
    ] {
        for path in [
            "/projects".to_string(),
            format!("/projects/{project}/syncs"),
            format!("/projects/{project}/search"),
        ] {
            let mut request = app.http.post(url(&path)).body(json_body.clone());
            if let Some(ct) = content_type {
                request = request.header("content-type", ct);
            }
            let resp = request.send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 415, "{path} {content_type:?}");
            let body: Value = resp.json().await.unwrap();
            let message = error_message(&body, "unsupported_media_type");
            assert!(message.contains("application/json"), "{message}");
        }
    }
    // No sync was made by any of them.
    assert_eq!(
        app.get(&format!("/projects/{project}/syncs"))
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // An optional body may be empty, with the JSON content type.
    let resp = app
        .http
        .post(url(&format!("/projects/{project}/syncs")))
        .header("content-type", "application/json; charset=UTF-8")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let sync: Value = resp.json().await.unwrap();
    let sync_id = sync["sync_id"].as_str().unwrap();
    let resp = app
        .http
        .post(url(&format!("/syncs/{sync_id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let resp = app
        .http
        .post(url(&format!("/syncs/{sync_id}/cancel")))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_origin_must_be_allowed() {
    let app = spawn_app_with(false, |_| {}).await;
    let port = addr(&app).rsplit(':').next().unwrap().to_string();
    // An unauthenticated route that the Host check covers (probes are exempt,
    // below).
    let get = |host: Option<&str>, origin: Option<&str>| {
        let mut head = "GET /api/v1/openapi.yaml HTTP/1.1".to_string();
        if let Some(h) = host {
            head.push_str(&format!("\r\nHost: {h}"));
        }
        if let Some(o) = origin {
            head.push_str(&format!("\r\nOrigin: {o}"));
        }
        head
    };
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "LOCALHOST".to_string(),
        format!("[::1]:{port}"),
    ] {
        let r = raw(&app, &get(Some(&host), None), b"").await;
        assert_eq!(r.status, 200, "{host}: {}", r.body);
    }
    // DNS rebinding: a foreign name pointing at this address.
    for host in [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        "localhost.evil.example".to_string(),
        "127.0.0.2".to_string(),
    ] {
        let r = raw(&app, &get(Some(&host), None), b"").await;
        assert_eq!(r.status, 400, "{host}: {}", r.body);
        let message = error_message(&r.body, "bad_request");
        assert!(message.contains("api.allowed_hosts"), "{message}");
    }
    let r = raw(&app, "GET /api/v1/openapi.yaml HTTP/1.0", b"").await;
    assert_eq!(r.status, 400, "no Host: {}", r.body);
    // Probes and scrapers call by IP and port: GET of the three probe paths
    // passes any Host, or none; the origin check still applies, and any
    // other method is checked.
    for path in ["/healthz", "/readyz", "/metrics"] {
        for host in ["Host: 10.1.2.3:8080", "Host: evil.example", ""] {
            let head = format!("GET {path} HTTP/1.1\r\n{host}");
            let r = raw(&app, head.trim_end(), b"").await;
            assert_eq!(r.status, 200, "{path} {host}: {}", r.body);
        }
        let r = raw(
            &app,
            &format!("GET {path} HTTP/1.1\r\nHost: 10.1.2.3\r\nOrigin: https://evil.example"),
            b"",
        )
        .await;
        assert_eq!(r.status, 403, "{path} with a foreign origin: {}", r.body);
        let r = raw(
            &app,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json\r\n\
                 Content-Length: 2"
            ),
            b"{}",
        )
        .await;
        assert_eq!(r.status, 400, "POST {path}: {}", r.body);
    }
    // Every route, not only /openapi.yaml.
    let r = raw(
        &app,
        "POST /api/v1/projects HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json\r\nContent-Length: 2",
        b"{}",
    )
    .await;
    assert_eq!(r.status, 400);

    let local = format!("127.0.0.1:{port}");
    for origin in [
        "http://localhost:3000",
        "https://127.0.0.1",
        "http://[::1]:8080",
    ] {
        let r = raw(&app, &get(Some(&local), Some(origin)), b"").await;
        assert_eq!(r.status, 200, "{origin}: {}", r.body);
    }
    for origin in [
        "https://evil.example",
        "http://localhost.evil.example",
        "null",
        "localhost",
    ] {
        let r = raw(&app, &get(Some(&local), Some(origin)), b"").await;
        assert_eq!(r.status, 403, "{origin}: {}", r.body);
        assert!(error_message(&r.body, "forbidden").contains("origin"));
    }
    // A cross-site form post is refused for its origin before its type.
    let r = raw(
        &app,
        &format!(
            "POST /api/v1/projects HTTP/1.1\r\nHost: {local}\r\nOrigin: https://evil.example\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3"
        ),
        b"a=b",
    )
    .await;
    assert_eq!(r.status, 403);

    // The public name is added in the configuration.
    let public = spawn_app_with(false, |s| {
        s.api.allowed_hosts.push("projsync.example.com".into())
    })
    .await;
    let r = raw(
        &public,
        &get(
            Some("projsync.example.com"),
            Some("https://projsync.example.com"),
        ),
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = raw(&public, &get(Some("other.example.com"), None), b"").await;
    assert_eq!(r.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_limits_are_422_naming_the_limit() {
    let app = spawn_app_with(false, |_| {}).await;
    let repo = one_file_repo();
    let with = |field: &str, value: Value| {
        let mut body = project_body("limited", &repo);
        body[field] = value;
        body
    };
    let cases = [
        (
            with("ignore_patterns", json!(vec!["*.tmp"; 1001])),
            "api.max_ignore_patterns",
        ),
        (
            with("ignore_patterns", json!(["ok", "x".repeat(1025)])),
            "ignore_patterns[1]",
        ),
        (
            with("ignore_patterns", json!(vec!["y".repeat(1000); 70])),
            "api.max_ignore_patterns_bytes",
        ),
        (
            with("max_file_bytes", json!(100 * 1024 * 1024 + 1)),
            "api.max_file_bytes_limit",
        ),
    ];
    for (body, needle) in cases {
        let (status, err) = app.post("/projects", body).await;
        assert_eq!(status, 422, "{err}");
        let message = error_message(&err, "invalid");
        assert!(message.contains(needle), "{needle}: {message}");
    }
    // At the limits it is accepted.
    let mut body = with("ignore_patterns", json!(vec!["*.tmp"; 1000]));
    body["max_file_bytes"] = json!(100 * 1024 * 1024);
    let (status, created) = app.post("/projects", body).await;
    assert_eq!(status, 201, "{created}");
    let project = created["id"].as_str().unwrap();

    for path in [
        "/projects?limit=1001".to_string(),
        "/projects?limit=0".to_string(),
        format!("/projects/{project}/memory?limit=-1"),
        format!("/projects/{project}/syncs?limit=5000"),
        "/syncs?limit=1001".to_string(),
    ] {
        let (status, err) = app.get(&path).await;
        assert_eq!(status, 422, "{path}: {err}");
        assert!(error_message(&err, "invalid").contains("api.max_page_size"));
    }
    assert_eq!(app.get("/projects?limit=1000").await.0, 200);

    // Cursors: garbage, and a valid cursor of another list.
    let (_, _) = app
        .post(
            "/projects",
            json!({ "name": "second", "repository": { "provider": "local", "path": repo.path(), "branch": "main" } }),
        )
        .await;
    let resp = app
        .http
        .get(format!("{}/projects?limit=1", app.base))
        .send()
        .await
        .unwrap();
    let projects_cursor = resp.headers()["x-next-cursor"]
        .to_str()
        .unwrap()
        .to_string();
    for path in [
        "/projects?cursor=%%%".to_string(),
        "/projects?cursor=bm90LWpzb24".to_string(),
        format!("/projects/{project}/memory?cursor={projects_cursor}"),
        format!("/syncs?cursor={projects_cursor}"),
    ] {
        let (status, err) = app.get(&path).await;
        assert_eq!(status, 422, "{path}: {err}");
        assert!(error_message(&err, "invalid").contains("cursor"));
    }
}

/// The reported case: 200,000 patterns in one request. Refused by count at
/// once, and /healthz is not held up by pattern compilation, which runs on
/// the blocking pool, two at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_limits_answer_quickly_and_healthz_stays_responsive() {
    let app = spawn_app_with(false, |_| {}).await;
    let repo = one_file_repo();
    let mut body = project_body("huge", &repo);
    body["ignore_patterns"] = json!(vec!["a"; 200_000]);
    let started = Instant::now();
    let (status, err) = app.post("/projects", body).await;
    assert_eq!(status, 422, "{err}");
    assert!(error_message(&err, "invalid").contains("api.max_ignore_patterns"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );

    // Big but allowed: 64 patterns of 1000 bytes full of wildcards, the
    // costliest shape to compile, in four requests at once.
    let patterns: Vec<String> = (0..64)
        .map(|i| {
            let mut p = format!("{i}{}", "*a".repeat(500));
            p.truncate(1000);
            p
        })
        .collect();
    let healthz = format!("http://{}/healthz", addr(&app));
    let creating: Vec<_> = (0..4)
        .map(|i| {
            let http = app.http.clone();
            let url = format!("{}/projects", app.base);
            let mut body = project_body(&format!("big-{i}"), &repo);
            body["ignore_patterns"] = json!(patterns);
            tokio::spawn(async move {
                let resp = http.post(url).json(&body).send().await.unwrap();
                resp.status().as_u16()
            })
        })
        .collect();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut probes = 0;
    while creating.iter().any(|t| !t.is_finished()) {
        let t = Instant::now();
        let resp = app.http.get(&healthz).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        slowest = slowest.max(t.elapsed());
        probes += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let validating = started.elapsed();
    for task in creating {
        let status = task.await.unwrap();
        assert!(matches!(status, 201 | 422), "{status}");
    }
    eprintln!("validation took {validating:?}; {probes} /healthz probes, the slowest {slowest:?}");
    assert!(
        slowest < Duration::from_millis(750),
        "/healthz took {slowest:?} during validation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_pages_through_each_item_exactly_once() {
    let app = spawn_app_with(true, |s| s.worker.import_batch_size = 100).await;
    let repo = GitRepo::new();
    for i in 0..230 {
        repo.write(&format!("files/{i:03}.txt"), format!("file {i}\n"));
    }
    repo.write("A top.md", "capital and space\n");
    repo.commit("many files");
    let project = app.create_project("paged", repo.path(), "main").await;
    assert_eq!(app.sync(&project, None).await["status"], "succeeded");
    let expected: BTreeSet<String> = repo
        .files_at(&repo.head())
        .into_keys()
        .collect::<BTreeSet<_>>();
    assert_eq!(expected.len(), 231);

    // The default page is 100 entries.
    let resp = app
        .http
        .get(format!("{}/projects/{project}/memory", app.base))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().contains_key("link"));
    let first: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(first.len(), 100);

    // Walk with a small page; rows added meanwhile before the cursor are
    // not seen, rows after it are, and nothing comes twice.
    let memory = format!("{}/projects/{project}/memory?limit=17", app.base);
    let mut seen: Vec<String> = Vec::new();
    let mut url = memory.clone();
    let mut pages = 0;
    loop {
        let resp = app.http.get(&url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let link = resp
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_string());
        let page: Vec<Value> = resp.json().await.unwrap();
        assert!(page.len() <= 17);
        seen.extend(page.iter().map(|e| e["path"].as_str().unwrap().to_string()));
        pages += 1;
        if pages == 2 {
            repo.write("000 before.txt", "new\n")
                .write("zzz after.txt", "new\n");
            repo.commit("two more");
            assert_eq!(app.sync(&project, None).await["status"], "succeeded");
        }
        let Some(link) = link else { break };
        // `</api/v1/…?limit=17&cursor=…>; rel="next"`, relative to the request.
        let target = link
            .strip_prefix('<')
            .and_then(|l| l.split_once(">; rel=\"next\""))
            .map(|(t, _)| t)
            .unwrap_or_else(|| panic!("{link}"));
        assert!(target.starts_with(&format!(
            "/api/v1/projects/{project}/memory?limit=17&cursor="
        )));
        url = format!("http://{}{target}", addr(&app));
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "an entry came twice");
    let mut want = expected.clone();
    want.insert("zzz after.txt".into());
    assert_eq!(unique, want);
    assert_eq!(pages, 232usize.div_ceil(17));
    assert_eq!(app.active_entries(&project).await.len(), 233);

    // Projects by name, a project's history and the ops list, 2 at a time.
    for name in ["delta", "alpha", "charlie", "bravo"] {
        app.create_project(name, repo.path(), "main").await;
    }
    let projects = app.get_all("/projects?limit=2").await;
    let names: Vec<&str> = projects
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "bravo", "charlie", "delta", "paged"]);

    for _ in 0..3 {
        repo.write("files/000.txt", format!("{:?}\n", Instant::now()));
        repo.commit("edit");
        app.sync(&project, None).await;
    }
    let history = app
        .get_all(&format!("/projects/{project}/syncs?limit=2"))
        .await;
    let ids: Vec<&str> = history.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 5);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 5);
    let created: Vec<&str> = history
        .iter()
        .map(|s| s["created_at"].as_str().unwrap())
        .collect();
    assert!(
        created.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {created:?}"
    );
    let ops = app.get_all("/syncs?status=succeeded&limit=2").await;
    let ops_ids: BTreeSet<&str> = ops.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ops_ids, ids.iter().copied().collect());
}

/// `api.allowed_hosts` from the environment is a comma-separated list, and
/// a name with a port is refused at start-up with the key's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_come_from_the_environment_as_a_list() {
    let (db, redis) = (
        projsync_test_support::TestDb::new().await,
        projsync_test_support::TestRedis::new(),
    );
    let migrate = |hosts: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_projsync"));
        for (key, _) in std::env::vars() {
            if key.starts_with("PROJSYNC") {
                cmd.env_remove(key);
            }
        }
        let out = cmd
            .env("PROJSYNC__DATABASE__URL", &db.url)
            // The test's own database for the admin connection too: its
            // default is the machine's `projsync` database, which a test
            // must not migrate (it may hold a developer's work).
            .env("PROJSYNC__DATABASE__ADMIN_URL", &db.admin_url)
            .env("PROJSYNC__REDIS__URL", &redis.url)
            .env("PROJSYNC__API__ALLOWED_HOSTS", hosts)
            .arg("migrate")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = migrate("localhost,127.0.0.1,::1,projsync.example.com");
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = migrate("projsync.example.com");
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = migrate("localhost,projsync.example.com:8080");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("api.allowed_hosts") && stderr.contains("without scheme or port"),
        "{stderr}"
    );
}
