//! The MCP server (`projsync mcp` over stdio, `/mcp` on the API over
//! Streamable HTTP) driven by the official MCP Python SDK (PyPI `mcp`, pinned
//! in scripts/requirements-dev.txt), a client nobody here wrote. Each test
//! builds a ripgrep-sized repository, syncs it twice, adds a small second
//! project to the tenant, and hands tests/mcp/client.py a scenario: what the
//! projects are called, which keys to use, and what every answer must be.
//! The driver initializes, lists tools and resources, searches, reads as of
//! the first sync, pages a file larger than the result budget, checks tool
//! errors, role and tenant refusals and what leaving `project` out means
//! (`--project` over stdio, an error over HTTP with two projects), then
//! subscribes to resources, starts a sync with a write key and waits for
//! `notifications/resources/updated`.
//!
//! The Python tools are never optional: a missing venv fails the test with
//! scripts/dev-venv.sh's message.

use crate::cli::projsync;
use crate::helpers::{create_key, create_tenant_key, spawn_app_full, test_sources, TestApp};
use projsync_domain::Role;
use projsync_test_support::GitRepo;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The project's name, in resource URIs (`projsync://rg/...`).
const PROJECT: &str = "rg";
/// A second, small project of the same tenant: a tool call that names no
/// project is then ambiguous, unless `projsync mcp --project` scopes it.
const SIBLING: &str = "rg-site";
/// `[mcp] max_result_bytes`: the default (the HTTP test's app), and a
/// smaller one the stdio test sets through the environment.
const DEFAULT_BUDGET: usize = 16384;
const STDIO_BUDGET: usize = 8192;
/// The file the keyword search must rank first, and its function.
const NEEDLE_PATH: &str = "crates/searcher/src/searcher/glue.rs";
const NEEDLE_FN: &str = "galactic_checksum";
const NEEDLE_CALLER: &str = "same_haystack";
const NEEDLE: &str = "//! Glue between the searcher and its sinks.

/// Folds every line of the haystack into a galactic checksum, so that two
/// searches over the same bytes can be compared without keeping them.
pub fn galactic_checksum(haystack: &[u8]) -> u64 {
    haystack
        .split(|b| *b == b'\\n')
        .fold(0xcbf2_9ce4_8422_2325, |acc, line| {
            line.iter()
                .fold(acc, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
        })
}

/// Whether two haystacks hold the same lines.
pub fn same_haystack(a: &[u8], b: &[u8]) -> bool {
    galactic_checksum(a) == galactic_checksum(b)
}
";
/// Read as of the first sync: only its first version says `quasar`.
const CHANGELOG_V1: &str = "# Changelog\n\n## 0.1.0\n\nThe first quasar release: search a tree.\n";
const CHANGELOG_V2: &str =
    "# Changelog\n\n## 0.2.0\n\nNebula: faster walks.\n\n## 0.1.0\n\nThe first release: search a tree.\n";
/// A small file whose name needs percent-encoding in its URI.
const GUIDE_PATH: &str = "doc/user guide.md";
const GUIDE: &str = "# User guide\n\nRun `rg PATTERN` in a directory.\n";
/// Larger than the budget: read in pages.
const BIG_PATH: &str = "tests/data/sherlock_long.txt";

/// Ten crates of thirty Rust files, ~5 KB each (about 1.5 MB in all, the
/// size of ripgrep's tree), their manifests, docs and test data. Names and
/// bodies come from a fixed LCG, so every run syncs the same bytes.
fn ripgrep_sized_tree() -> Vec<(String, String)> {
    const CRATES: [&str; 10] = [
        "cli", "core", "globset", "grep", "ignore", "matcher", "pcre2", "printer", "regex",
        "searcher",
    ];
    const VERBS: [&str; 12] = [
        "find", "build", "read", "write", "parse", "scan", "fill", "emit", "check", "split",
        "push", "walk",
    ];
    // No keyword, and no name the bodies use for something else. `checksum`
    // and `haystack` are decoys for the needle's query.
    const NOUNS: [&str; 20] = [
        "glob", "walker", "entry", "sink", "config", "pattern", "searcher", "printer", "color",
        "stats", "encoding", "context", "column", "literal", "matcher", "builder", "filter",
        "depth", "checksum", "haystack",
    ];
    let mut state: u64 = 0x853c_49e6_748f_ea9b;
    let mut pick = |n: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as usize) % n
    };
    let mut files = Vec::new();
    for krate in CRATES {
        files.push((
            format!("crates/{krate}/Cargo.toml"),
            format!(
                "[package]\nname = \"grep-{krate}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"
            ),
        ));
        for f in 0..30 {
            let module = format!("{}_{f}", NOUNS[pick(NOUNS.len())]);
            let mut src =
                format!("//! The {module} module of grep-{krate} (generated).\n\nuse std::io;\n\n");
            for i in 0..12 {
                let name = format!(
                    "{}_{}_{i}",
                    VERBS[pick(VERBS.len())],
                    NOUNS[pick(NOUNS.len())]
                );
                let noun = NOUNS[pick(NOUNS.len())];
                src.push_str(&format!(
                    "/// Reads the {noun} in the buffer from `offset` and returns how many\n\
                     /// of its lines the {module} step counted.\n\
                     pub fn {name}(buffer: &[u8], offset: usize) -> io::Result<usize> {{\n    \
                         let {noun} = buffer.len().saturating_sub(offset);\n    \
                         if {noun} == 0 {{\n        return Ok(0);\n    }}\n    \
                         let mut lines = 0usize;\n    \
                         for byte in &buffer[offset..] {{\n        \
                             if *byte == b'\\n' {{\n            lines += {i} + 1;\n        }}\n    \
                         }}\n    \
                         Ok(lines.min({noun}))\n\
                     }}\n\n"
                ));
            }
            files.push((format!("crates/{krate}/src/{module}.rs"), src));
        }
    }
    let sherlock: String = (0..420)
        .map(|i| {
            format!(
                "{i:05} For the Doctor Watsons of this world, as opposed to the Sherlock \
                 Holmeses, success in the province of detective work must always be, to a \
                 very large extent, the result of luck.\n"
            )
        })
        .collect();
    files.extend([
        (NEEDLE_PATH.to_string(), NEEDLE.to_string()),
        (BIG_PATH.to_string(), sherlock),
        (GUIDE_PATH.to_string(), GUIDE.to_string()),
        ("CHANGELOG.md".to_string(), CHANGELOG_V1.to_string()),
        ("README.md".to_string(), readme(1)),
        (
            "Cargo.toml".to_string(),
            "[workspace]\nmembers = [\"crates/*\"]\n".to_string(),
        ),
    ]);
    files
}

fn readme(version: u32) -> String {
    format!("# ripgrep-sized\n\nA generated tree, revision {version}.\n")
}

/// The app with a worker, the repository synced twice (the second sync
/// rewrites CHANGELOG.md), and a third commit for the client's own sync;
/// beside it, the sibling project, synced once.
struct World {
    app: TestApp,
    repo: GitRepo,
    project_id: String,
    first_sync: String,
    second_sync: String,
    paths: Vec<String>,
    sibling_id: String,
    sibling_paths: Vec<String>,
    _sibling: GitRepo,
}

async fn world() -> World {
    let app = spawn_app_full(Some(Arc::new(test_sources())), |s| {
        // Hundreds of files: the tests' small batches would only add round trips.
        s.worker.import_batch_size = 500;
    })
    .await;
    let repo = GitRepo::new();
    let tree = ripgrep_sized_tree();
    let bytes: usize = tree.iter().map(|(_, c)| c.len()).sum();
    assert!(
        tree.len() > 300 && (1_000_000..2_500_000).contains(&bytes),
        "ripgrep-sized: {} files, {bytes} bytes",
        tree.len()
    );
    for (path, content) in &tree {
        repo.write(path, content);
    }
    repo.commit("ripgrep-sized tree");
    let project_id = app.create_project(PROJECT, repo.path(), "main").await;
    let first = app.sync(&project_id, None).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    repo.write("CHANGELOG.md", CHANGELOG_V2);
    repo.commit("changelog for 0.2.0");
    let second = app.sync(&project_id, None).await;
    assert_eq!(second["status"], "succeeded", "{second}");
    let paths = repo.files_at(&repo.head()).into_keys().collect();
    // Pushed but not synced: the sync the client starts takes it.
    repo.write("README.md", readme(2));
    repo.commit("readme");

    let sibling = GitRepo::new();
    sibling
        .write("index.html", "<h1>ripgrep</h1>\n")
        .write("README.md", "# The site\n")
        .write("css/site.css", "h1 { color: teal; }\n");
    sibling.commit("site");
    let sibling_id = app.create_project(SIBLING, sibling.path(), "main").await;
    let synced = app.sync(&sibling_id, None).await;
    assert_eq!(synced["status"], "succeeded", "{synced}");
    let sibling_paths = sibling.files_at(&sibling.head()).into_keys().collect();
    World {
        sibling_id,
        sibling_paths,
        _sibling: sibling,
        first_sync: first["id"].as_str().unwrap().to_string(),
        second_sync: second["id"].as_str().unwrap().to_string(),
        app,
        repo,
        project_id,
        paths,
    }
}

impl World {
    /// What the driver checks, for `transport` reached through `connection`
    /// with a result budget of `budget` bytes.
    async fn scenario(&self, transport: &str, budget: usize, connection: Value) -> Value {
        let db = &self.app.db;
        let (status, project) = self
            .app
            .get(&format!("/projects/{}", self.project_id))
            .await;
        assert_eq!(status, 200, "{project}");
        let mut scenario = json!({
            "transport": transport,
            "keys": {
                "read": create_key(db, Role::Read).await,
                "write": create_key(db, Role::Write).await,
                "other": create_tenant_key(db, "other", Role::Read).await,
            },
            "budget": budget,
            "project": { "name": PROJECT, "id": self.project_id },
            "last_sync": project["last_sync_id"],
            "files": self.paths,
            "sibling": { "name": SIBLING, "id": self.sibling_id, "files": self.sibling_paths },
            "resource": { "path": GUIDE_PATH, "content": GUIDE },
            "update": { "path": "README.md", "content": readme(2) },
            "search": { "query": "galactic checksum", "path": NEEDLE_PATH },
            "wide_query": "buffer lines",
            "symbol": { "name": NEEDLE_FN, "path": NEEDLE_PATH, "caller": NEEDLE_CALLER },
            "history": {
                "path": "CHANGELOG.md",
                "first_sync": self.first_sync,
                "first_content": CHANGELOG_V1,
                "second_sync": self.second_sync,
                "second_content": CHANGELOG_V2,
                "old_words": "quasar",
            },
            "big": { "path": BIG_PATH, "file": self.repo.path().join(BIG_PATH) },
            "call_timeout": 10,
            "sync_timeout": 30,
        });
        scenario
            .as_object_mut()
            .unwrap()
            .extend(connection.as_object().unwrap().clone());
        scenario
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The venv's python, made by scripts/dev-venv.sh if it is not there yet
/// (a minute, once). Missing tools fail the test: never a skip.
fn venv_python() -> Result<PathBuf, String> {
    let out = Command::new("bash")
        .args(["scripts/dev-venv.sh", "--print-python"])
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run scripts/dev-venv.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/dev-venv.sh failed; the MCP tests need its pinned `mcp` client:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Run tests/mcp/client.py on `scenario` (on stdin), on the blocking pool so
/// the in-process API and worker keep their threads; fails with everything
/// it printed. Returns its stdout.
async fn run_driver(scenario: Value) -> String {
    let outcome = tokio::task::spawn_blocking(move || {
        let python = venv_python()?;
        let mut child = Command::new(&python)
            .args(["tests/mcp/client.py", "-"])
            .current_dir(repo_root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("run {}: {e}", python.display()))?;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(scenario.to_string().as_bytes())
            .unwrap();
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = pipe.read_to_string(&mut s);
                s
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        // The driver has a deadline of its own (50 s); this one catches a
        // driver that cannot even start.
        let deadline = Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
        match status {
            Some(s) if s.success() => Ok(stdout),
            Some(s) => Err(format!(
                "tests/mcp/client.py {s}\nstdout:\n{stdout}\nstderr:\n{stderr}"
            )),
            None => Err(format!(
                "tests/mcp/client.py ran over 90 s\nstdout:\n{stdout}\nstderr:\n{stderr}"
            )),
        }
    })
    .await
    .unwrap();
    match outcome {
        Ok(stdout) => {
            println!("{stdout}");
            stdout
        }
        Err(report) => panic!("{report}"),
    }
}

/// The driver's closing line, and one `ok` line per check it made.
fn assert_all_passed(stdout: &str, transport: &str) {
    assert!(
        stdout.contains(&format!("all checks passed over {transport}")),
        "{stdout}"
    );
    for needle in [
        "initialize:",
        "tools/list:",
        "resources/list:",
        "search 'galactic checksum'",
        "read_entry CHANGELOG.md: as of",
        "project left out",
        "pages within",
        "start_sync with a read key: refused",
        "another tenant",
        "notifications/resources/updated",
    ] {
        assert!(stdout.contains(needle), "`{needle}` not checked:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_drives_projsync_mcp_over_stdio() {
    let world = world().await;
    // `projsync mcp` gets the environment every projsync command of the
    // tests gets (this test's database and Redis namespace), and a budget
    // of its own.
    let mut cmd = projsync(&world.app.db, &world.app.redis);
    cmd.env("PROJSYNC__MCP__MAX_RESULT_BYTES", STDIO_BUDGET.to_string());
    let env: serde_json::Map<String, Value> = cmd
        .get_envs()
        .filter_map(|(k, v)| {
            Some((
                k.to_string_lossy().into_owned(),
                Value::from(v?.to_string_lossy().into_owned()),
            ))
        })
        .collect();
    let scenario = world
        .scenario(
            "stdio",
            STDIO_BUDGET,
            json!({ "command": env!("CARGO_BIN_EXE_projsync"), "env": env, "scoped": true }),
        )
        .await;
    let stdout = run_driver(scenario).await;
    assert_all_passed(&stdout, "stdio");
    // The client's sync took the pushed README.
    let entries = world.app.active_entries(&world.project_id).await;
    assert_eq!(entries["README.md"], readme(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_drives_the_api_mcp_endpoint_over_streamable_http() {
    let world = world().await;
    let url = format!("{}/mcp", world.app.base.trim_end_matches("/api/v1"));
    let scenario = world
        .scenario("http", DEFAULT_BUDGET, json!({ "url": url }))
        .await;
    let stdout = run_driver(scenario).await;
    assert_all_passed(&stdout, "http");
    let entries = world.app.active_entries(&world.project_id).await;
    assert_eq!(entries["README.md"], readme(2));
}

/// A bad key is refused before any MCP: `projsync mcp` exits 2 with a
/// message on stderr and nothing on stdout (a client would otherwise wait
/// for an initialize answer); `/mcp` answers 401 with a JSON error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_is_refused_before_mcp_on_both_transports() {
    let app = spawn_app_full(None, |_| {}).await;
    let (db, redis) = (&app.db, &app.redis);
    for args in [
        vec!["mcp", "--key", "psk_not_a_key"],
        // No key at all: `projsync()` leaves no PROJSYNC_API_KEY either.
        vec!["mcp"],
    ] {
        let mut cmd = projsync(db, redis);
        cmd.args(&args);
        let out = tokio::task::spawn_blocking(move || cmd.output().expect("run projsync mcp"))
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{args:?} wrote to stdout: {:?}",
            out.stdout
        );
        assert!(!stderr.trim().is_empty(), "{args:?}: no message on stderr");
    }

    let url = format!("{}/mcp", app.base.trim_end_matches("/api/v1"));
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": { "name": "e2e", "version": "0" }
        }
    });
    for auth in [None, Some("Bearer psk_not_a_key")] {
        let mut req = reqwest::Client::new()
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{auth:?}");
        assert!(
            resp.headers().get("mcp-session-id").is_none(),
            "{auth:?}: a session was made"
        );
        // The API's error shape: {"error": {"code", "message"}}.
        let body: Value = resp.json().await.unwrap();
        assert!(!body["error"].is_null(), "{auth:?}: {body}");
    }
}
