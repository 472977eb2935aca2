//! The web dashboard (served at `/` by the API) driven in a headless
//! Chromium through chromedriver (WebDriver, with fantoccini), and its
//! journey also in a headless Firefox through geckodriver, against the
//! real API, worker, PostgreSQL and Redis of `spawn_app`. The tests use only
//! the dashboard's DOM contract: the `data-testid`s, their `data-*`
//! attributes and the hash routes shared by the frontend and these tests
//! (spec/dashboard-contract.md).
//!
//! Debian's `/usr/bin/chromium`, `/usr/bin/chromedriver` and
//! `/usr/bin/firefox-esr`, and geckodriver (`cargo install`ed into
//! `$CARGO_HOME/bin`) are required (scripts/services.sh installs them): a
//! test fails, never skips, when they are absent. Each test writes its screenshots (and, on failure, one of the
//! failing page, its browser console and chromedriver's log) to
//! `target/browser-artifacts/<test>/` (`PROJSYNC_ARTIFACTS_DIR` overrides
//! the root); the directory is printed.
//!
//! Syncs are slowed down, to be watched mid-way, by the worker's
//! `CountingSources` (a delay before every batch of blob reads; the batch is
//! `worker.import_batch_size` = 4 files): per test, unlike the process-wide
//! `PROJSYNC_FAILPOINT`.

use crate::helpers::{create_key, spawn_app_full, CountingSources, TestApp};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use projsync::Settings;
use projsync_domain::Role;
use projsync_test_support::GitRepo;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a wait for the page lasts unless it says otherwise.
const WAIT: Duration = Duration::from_secs(20);
/// How often a wait looks at the page again.
const POLL: Duration = Duration::from_millis(100);

/// The message of the sign-in page after any 401 (the contract's words).
const SESSION_ENDED: &str =
    "Your session has ended or your API key was revoked or expired. Sign in again.";

const PHASES: [&str; 7] = [
    "prepare", "scan", "import", "analyze", "docs", "embed", "finalize",
];

// ------------------------------------------------------------------ harness

/// A browser engine the tests drive: Debian's Chromium through
/// chromedriver (every test), and Debian's Firefox ESR through geckodriver
/// (the journey, so that the dashboard is seen working in both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Chromium,
    Firefox,
}

const FIREFOX: &str = "/usr/bin/firefox-esr";

/// geckodriver is not packaged by Debian: scripts/services.sh installs it
/// with `cargo install`, into `$CARGO_HOME/bin` (or `PROJSYNC_GECKODRIVER`).
fn geckodriver() -> PathBuf {
    if let Some(p) = std::env::var_os("PROJSYNC_GECKODRIVER") {
        return PathBuf::from(p);
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default();
    let in_cargo = cargo_home.join("bin/geckodriver");
    if in_cargo.is_file() {
        return in_cargo;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("geckodriver"))
                .find(|p| p.is_file())
        })
        .unwrap_or(in_cargo)
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Chromium => "Chromium",
            Engine::Firefox => "Firefox",
        }
    }

    /// (browser, driver, what installs them)
    fn binaries(self) -> [(PathBuf, &'static str); 2] {
        match self {
            Engine::Chromium => [
                (PathBuf::from(CHROMIUM), "apt-get install chromium"),
                (
                    PathBuf::from(CHROMEDRIVER),
                    "apt-get install chromium-driver",
                ),
            ],
            Engine::Firefox => [
                (PathBuf::from(FIREFOX), "apt-get install firefox-esr"),
                (
                    geckodriver(),
                    "cargo install geckodriver --version 0.37.1 --locked",
                ),
            ],
        }
    }

    fn capabilities(self) -> serde_json::Map<String, Value> {
        let caps = match self {
            Engine::Chromium => json!({
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1280,900"],
                },
                "goog:loggingPrefs": { "browser": "ALL" },
            }),
            Engine::Firefox => json!({
                "moz:firefoxOptions": {
                    "binary": FIREFOX,
                    "args": ["-headless", "--width=1280", "--height=900"],
                },
            }),
        };
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        caps
    }
}

/// The engine's WebDriver server (`chromedriver` or `geckodriver`) on a
/// free port, in a process group of its own: the whole group (the driver
/// and the browser it started) is killed on drop.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    async fn start(engine: Engine, log: &Path) -> Self {
        let [_, (driver, _)] = engine.binaries();
        for (bin, install) in engine.binaries() {
            assert!(
                bin.is_file(),
                "{} is missing: the dashboard's browser tests drive {} through WebDriver; \
                 install it with scripts/services.sh (as root) or `{install}`",
                bin.display(),
                engine.name()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port for the WebDriver server")
            .port();
        let out = std::fs::File::create(log).expect("WebDriver log file");
        let err = out.try_clone().unwrap();
        let mut child = {
            use std::os::unix::process::CommandExt;
            let mut cmd = Command::new(&driver);
            match engine {
                Engine::Chromium => cmd.arg(format!("--port={port}")),
                Engine::Firefox => cmd.args(["--port", &port.to_string(), "--host", "127.0.0.1"]),
            };
            cmd.stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()))
        };
        let driver = driver.display().to_string();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(15);
        let http = reqwest::Client::new();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{driver} on port {port} exited ({status}) before it was ready; its \
                     output:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            if let Ok(resp) = http.get(format!("{url}/status")).send().await {
                if let Ok(body) = resp.json::<Value>().await {
                    if body["value"]["ready"] == true {
                        break;
                    }
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "{driver} on port {port} was not ready within 15 s; its output:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, url }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The group: chromedriver and every Chromium process it started.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver's `POST /session/{id}/se/log` (`{"type": "browser"}`): the
/// browser console's entries since the last call.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// One console entry of the page.
#[derive(Debug, Clone, Deserialize)]
struct ConsoleEntry {
    level: String,
    source: Option<String>,
    message: String,
}

/// A headless Chromium on the dashboard of one test app.
struct Browser {
    client: Client,
    /// `http://127.0.0.1:<port>`: the page's origin (the API's, or a proxy's).
    root: String,
    dir: PathBuf,
    shots: AtomicU32,
    console: Mutex<Vec<ConsoleEntry>>,
    /// A failure was already recorded (screenshot, console): Drop adds none.
    failed: AtomicBool,
    /// Dropped after the client: its whole process group is killed then.
    engine: Engine,
    _driver: ChromeDriver,
}

/// What a wait saw when it looked: ready with a value, or not yet (and what
/// was there instead, for the failure message).
enum Seen<T> {
    Ready(T),
    Not(String),
}

/// The JavaScript helpers every page script starts with.
const JS_PRELUDE: &str = r#"
const $ = (s, r) => (r || document).querySelector(s);
const $$ = (s, r) => Array.from((r || document).querySelectorAll(s));
const vis = e => !!e && e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
const txt = e => e ? e.textContent.trim().replace(/\s+/g, ' ') : null;
"#;

fn artifacts_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("PROJSYNC_ARTIFACTS_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/e2e-<hash>: the target directory, wherever it is.
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .map(|target| target.join("browser-artifacts"))
        .expect("the test binary lives in <target>/<profile>/deps")
}

fn slug(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out.truncate(60);
    out.trim_matches('-').to_string()
}

impl Browser {
    /// Chromium on `root` (the page's origin); artifacts under `<root dir>/<test>`.
    async fn start(test: &str, root: &str) -> Self {
        Self::start_with(Engine::Chromium, test, root).await
    }

    /// `engine` on `root`; artifacts under `<root dir>/<test>`.
    async fn start_with(engine: Engine, test: &str, root: &str) -> Self {
        let dir = artifacts_root().join(test);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        eprintln!("browser artifacts of {test}: {}", dir.display());
        let driver = ChromeDriver::start(engine, &dir.join("chromedriver.log")).await;
        let caps = engine.capabilities();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot open a {} session through its WebDriver server: {e}; the \
                     server's log:\n{}",
                    engine.name(),
                    std::fs::read_to_string(dir.join("chromedriver.log")).unwrap_or_default()
                )
            });
        Self {
            client,
            root: root.trim_end_matches('/').to_string(),
            dir,
            shots: AtomicU32::new(0),
            console: Mutex::new(Vec::new()),
            failed: AtomicBool::new(false),
            engine,
            _driver: driver,
        }
    }

    /// Save a PNG of the page as `<NN>-<name>.png`; returns its path.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let n = self.shots.fetch_add(1, Ordering::SeqCst) + 1;
        let path = self.dir.join(format!("{n:02}-{}.png", slug(name)));
        match self.client.screenshot().await {
            Ok(png) => std::fs::write(&path, png)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display())),
            Err(e) => eprintln!("screenshot {name} failed: {e}"),
        }
        path
    }

    /// Scroll the element into the middle of the window (for a screenshot).
    async fn scroll_to(&self, selector: &str) {
        self.js(
            "const e = $(arguments[0]); if (e) e.scrollIntoView({block: 'center'});",
            vec![json!(selector)],
        )
        .await;
    }

    /// The console entries since the last look, kept for the test's end.
    async fn drain_console(&self) -> Vec<ConsoleEntry> {
        // chromedriver hands the console over (`se/log`); geckodriver has no
        // such command (Firefox's console is checked by the Chromium runs).
        if self.engine == Engine::Firefox {
            return Vec::new();
        }
        let fresh: Vec<ConsoleEntry> = match self.client.issue_cmd(BrowserLog).await {
            Ok(v) => serde_json::from_value(v).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let mut all = self.console.lock().unwrap();
        all.extend(fresh.iter().cloned());
        fresh
    }

    fn write_console(&self) -> PathBuf {
        let path = self.dir.join("console.log");
        let lines: Vec<String> = self
            .console
            .lock()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{} [{}] {}",
                    e.level,
                    e.source.as_deref().unwrap_or("?"),
                    e.message
                )
            })
            .collect();
        let _ = std::fs::write(&path, lines.join("\n") + "\n");
        path
    }

    /// Fail the test: a screenshot, the page's URL, flash and console.
    async fn fail(&self, what: &str, detail: &str) -> ! {
        self.failed.store(true, Ordering::SeqCst);
        let url = match self.client.current_url().await {
            Ok(u) => u.to_string(),
            Err(e) => format!("<unknown: {e}>"),
        };
        let shot = self.screenshot(&format!("FAILED-{what}")).await;
        let flash = self
            .client
            .execute(
                &format!("{JS_PRELUDE} const f = $('[data-testid=flash]'); return f ? `[${{f.dataset.kind}}] ${{txt(f)}}` : null;"),
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "(none)".into());
        self.drain_console().await;
        let console = self.write_console();
        let errors: Vec<String> = self
            .console
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.level == "SEVERE")
            .map(|e| format!("    {}", e.message))
            .collect();
        panic!(
            "{what}: {detail}\n  page: {url}\n  screenshot: {}\n  flash: {flash}\n  console \
             errors ({} in {}):\n{}\n  artifacts: {}",
            shot.display(),
            errors.len(),
            console.display(),
            errors.join("\n"),
            self.dir.display()
        );
    }

    /// Assert `cond` about the page; on failure, fail as a wait does.
    async fn check(&self, cond: bool, what: &str, detail: impl std::fmt::Display) {
        if !cond {
            self.fail(what, &detail.to_string()).await;
        }
    }

    /// A sync's detail page lists its five steps, in phase order.
    async fn check_steps_listed(&self) {
        let steps = self
            .js(
                "return $$('[data-testid=step-row]').map(e => e.dataset.phase);",
                vec![],
            )
            .await;
        self.check(
            steps == json!(PHASES),
            "the detail lists the five steps in order",
            &steps,
        )
        .await;
    }

    /// Run `body` (a function body, `arguments` = `args`) in the page.
    async fn js(&self, body: &str, args: Vec<Value>) -> Value {
        match self
            .client
            .execute(&format!("{JS_PRELUDE}\n{body}"), args)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                self.fail("running a script in the page", &e.to_string())
                    .await
            }
        }
    }

    /// Look at the page until `probe` is ready, at most `timeout`; fail
    /// naming `what` and what was seen last.
    async fn wait_for<T, F, Fut>(&self, what: &str, timeout: Duration, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Seen<T>>,
    {
        let start = Instant::now();
        loop {
            let seen = match probe().await {
                Seen::Ready(v) => return v,
                Seen::Not(seen) => seen,
            };
            if start.elapsed() > timeout {
                self.fail(
                    &format!("waiting for {what}"),
                    &format!("not there after {timeout:?}; last seen: {seen}"),
                )
                .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Wait until the script returns `{ok: true, value}`; `{ok: false, seen}`
    /// says what is there instead.
    async fn wait_js(&self, what: &str, timeout: Duration, body: &str, args: Vec<Value>) -> Value {
        let script = format!("{JS_PRELUDE}\n{body}");
        self.wait_for(what, timeout, || async {
            match self.client.execute(&script, args.clone()).await {
                Ok(v) if v["ok"] == true => Seen::Ready(v["value"].clone()),
                Ok(v) => Seen::Not(v["seen"].to_string()),
                Err(e) => Seen::Not(format!("script error: {e}")),
            }
        })
        .await
    }

    /// Wait for a visible element; returns it.
    async fn visible(&self, selector: &str, what: &str) -> Element {
        self.wait_js(
            &format!("{what} ({selector}) to be visible"),
            WAIT,
            "const e = $(arguments[0]); return vis(e) ? {ok: true} : {ok: false, seen: e ? 'present but hidden' : 'absent'};",
            vec![json!(selector)],
        )
        .await;
        match self.client.find(Locator::Css(selector)).await {
            Ok(e) => e,
            Err(e) => self.fail(what, &format!("{selector}: {e}")).await,
        }
    }

    /// Wait until the element's attribute has this value.
    async fn attr_is(&self, selector: &str, attr: &str, want: &str, what: &str, timeout: Duration) {
        self.wait_js(
            &format!("{what} ({selector} with {attr}=\"{want}\")"),
            timeout,
            "const e = $(arguments[0]); const v = e ? e.getAttribute(arguments[1]) : null; \
             return v === arguments[2] ? {ok: true} : {ok: false, seen: e ? `${arguments[1]}=${JSON.stringify(v)}` : 'no such element'};",
            vec![json!(selector), json!(attr), json!(want)],
        )
        .await;
    }

    /// The element's text (whitespace collapsed), `None` if absent.
    async fn text(&self, selector: &str) -> Option<String> {
        self.js("return txt($(arguments[0]));", vec![json!(selector)])
            .await
            .as_str()
            .map(str::to_string)
    }

    /// Wait until the element's text (whitespace collapsed) contains `want`.
    async fn text_contains(&self, selector: &str, want: &str, what: &str) -> String {
        self.wait_js(
            &format!("{what} ({selector} showing \"{want}\")"),
            WAIT,
            "const e = $(arguments[0]); const t = txt(e); \
             return t !== null && t.includes(arguments[1]) ? {ok: true, value: t} : {ok: false, seen: e ? JSON.stringify(t) : 'no such element'};",
            vec![json!(selector), json!(want)],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    async fn click(&self, selector: &str, what: &str) {
        self.wait_js(
            &format!("{what} ({selector}) to be visible and enabled"),
            WAIT,
            "const e = $(arguments[0]); return vis(e) && !e.disabled ? {ok: true} : \
             {ok: false, seen: !e ? 'absent' : e.disabled ? 'disabled' : 'hidden'};",
            vec![json!(selector)],
        )
        .await;
        let el = self.visible(selector, what).await;
        if let Err(e) = el.click().await {
            self.fail(&format!("clicking {what}"), &format!("{selector}: {e}"))
                .await;
        }
    }

    /// Type into a field (WebDriver's element send keys).
    async fn fill(&self, selector: &str, text: &str, what: &str) {
        let el = self.visible(selector, what).await;
        let result = async {
            el.clear().await?;
            el.send_keys(text).await
        }
        .await;
        if let Err(e) = result {
            self.fail(&format!("typing into {what}"), &format!("{selector}: {e}"))
                .await;
        }
    }

    async fn select(&self, selector: &str, value: &str, what: &str) {
        let el = self.visible(selector, what).await;
        if let Err(e) = el.select_by_value(value).await {
            self.fail(
                &format!("choosing {value:?} in {what}"),
                &format!("{selector}: {e}"),
            )
            .await;
        }
    }

    /// Open a hash route (`#/projects`) of the dashboard.
    async fn goto(&self, hash: &str) {
        let url = format!("{}/{hash}", self.root);
        if let Err(e) = self.client.goto(&url).await {
            self.fail(&format!("opening {url}"), &e.to_string()).await;
        }
    }

    async fn hash(&self) -> String {
        self.client
            .current_url()
            .await
            .ok()
            .and_then(|u| u.fragment().map(str::to_string))
            .unwrap_or_default()
    }

    /// Wait until the route (the URL's fragment, without `#`) satisfies `ok`.
    async fn wait_route(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.wait_for(&format!("the route {what}"), WAIT, || async {
            let h = self.hash().await;
            if ok(&h) {
                Seen::Ready(h)
            } else {
                Seen::Not(format!("#{h}"))
            }
        })
        .await
    }

    /// Key strokes to whatever has the focus (WebDriver key actions).
    async fn keys(&self, text: &str) {
        let mut seq = KeyActions::new("keyboard".into());
        for c in text.chars() {
            seq = seq
                .then(KeyAction::Down { value: c })
                .then(KeyAction::Up { value: c });
        }
        if let Err(e) = self.client.perform_actions(seq).await {
            self.fail("pressing keys", &e.to_string()).await;
        }
    }

    /// The `data-testid` of the focused element.
    async fn focused(&self) -> String {
        self.js(
            "const e = document.activeElement; return e ? (e.dataset.testid || e.tagName.toLowerCase()) : '';",
            vec![],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Press Tab until the element `testid` has the focus (at most 25 times).
    async fn tab_to(&self, testid: &str) {
        let mut path = Vec::new();
        for _ in 0..25 {
            let now = self.focused().await;
            if now == testid {
                return;
            }
            path.push(now);
            self.keys(&Key::Tab.to_string()).await;
        }
        self.fail(
            &format!("reaching {testid} with the Tab key"),
            &format!("the focus went through {path:?}"),
        )
        .await;
    }

    /// Sign in by typing the key and pressing the button; lands on #/projects.
    async fn sign_in(&self, key: &str) {
        self.goto("#/signin").await;
        self.fill("[data-testid=signin-key]", key, "the API key field")
            .await;
        self.click("[data-testid=signin-submit]", "the sign-in button")
            .await;
        self.wait_route("#/projects after signing in", |h| h == "/projects")
            .await;
        self.visible("[data-testid=projects-table]", "the projects table")
            .await;
    }

    /// The live banner as the page shows it now (`None` without one).
    async fn banner(&self) -> Option<Banner> {
        let v = self.js(BANNER_JS, vec![]).await;
        if v.is_null() {
            return None;
        }
        match serde_json::from_value(v.clone()) {
            Ok(b) => Some(b),
            Err(e) => {
                self.fail("reading the sync banner", &format!("{e}: {v}"))
                    .await
            }
        }
    }

    /// Watch the banner until its sync ends (polling), ignoring the banner of
    /// the `earlier` syncs; every distinct state seen, in order. `on_state`
    /// runs on each new one; a screenshot is taken the first time it returns
    /// true.
    async fn follow_banner(
        &self,
        what: &str,
        timeout: Duration,
        earlier: &[&str],
        mut on_state: impl FnMut(&Banner) -> bool,
    ) -> Vec<Banner> {
        let mut seen: Vec<Banner> = Vec::new();
        let start = Instant::now();
        let (mut shot_wanted, mut shot_taken) = (false, false);
        loop {
            let banner = self
                .banner()
                .await
                .filter(|b| !earlier.contains(&b.sync_id.as_deref().unwrap_or_default()));
            if let Some(b) = banner {
                if seen.last().is_none_or(|last| !last.same_state(&b)) {
                    shot_wanted |= on_state(&b) && !shot_taken;
                    seen.push(b.clone());
                }
                if shot_wanted {
                    self.screenshot(&format!("{what}-mid-sync")).await;
                    (shot_wanted, shot_taken) = (false, true);
                }
                if b.is_final() {
                    return seen;
                }
            }
            if start.elapsed() > timeout {
                let states: Vec<String> = seen.iter().map(Banner::summary).collect();
                self.fail(
                    &format!("following {what} to its end"),
                    &format!(
                        "not ended after {timeout:?}; states seen:\n    {}",
                        states.join("\n    ")
                    ),
                )
                .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Check the console for uncaught JavaScript errors, keep it, close the
    /// browser.
    async fn finish(self) {
        self.drain_console().await;
        let path = self.write_console();
        let uncaught: Vec<String> = self
            .console
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.source.as_deref() == Some("javascript"))
            .map(|e| e.message.clone())
            .collect();
        if !uncaught.is_empty() {
            self.fail(
                "the page's JavaScript",
                &format!(
                    "uncaught errors in the console ({}):\n    {}",
                    path.display(),
                    uncaught.join("\n    ")
                ),
            )
            .await;
        }
        eprintln!("browser artifacts: {}", self.dir.display());
        self.failed.store(true, Ordering::SeqCst);
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !std::thread::panicking() || self.failed.load(Ordering::SeqCst) {
            return;
        }
        // A plain assert failed: keep the page as it was. The session's
        // task runs on the runtime's workers, so this thread may block on it.
        let client = self.client.clone();
        let dir = self.dir.clone();
        let shot = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                tokio::time::timeout(Duration::from_secs(10), client.screenshot()).await
            })
        });
        if let Ok(Ok(png)) = shot {
            let path = dir.join("FAILED-on-panic.png");
            if std::fs::write(&path, png).is_ok() {
                eprintln!("screenshot of the page at the panic: {}", path.display());
            }
        }
    }
}

/// The banner, read in one script.
const BANNER_JS: &str = r#"
const b = $('[data-testid=sync-banner]');
if (!vis(b)) return null;
const q = s => $(`[data-testid=${s}]`, b);
const p = q('progress');
const cancel = q('cancel-button');
return {
  sync_id: b.dataset.syncId || null,
  status: b.dataset.status || null,
  connection: b.dataset.connection || null,
  phases: Object.fromEntries($$('[data-testid=phase]', b).map(e => [e.dataset.phase, e.dataset.state || null])),
  progress_text: txt(q('progress-text')),
  progress_value: p ? p.getAttribute('value') : null,
  progress_max: p ? p.getAttribute('max') : null,
  counts: Object.fromEntries(['added', 'modified', 'deleted', 'renamed', 'unchanged', 'skipped']
    .map(k => [k, txt(q('count-' + k))])),
  rate: txt(q('rate')),
  eta: txt(q('eta')),
  message: txt(q('banner-message')),
  cancel_enabled: cancel ? (vis(cancel) && !cancel.disabled) : null,
  text: b.innerText,
};
"#;

#[derive(Debug, Clone, Deserialize, PartialEq)]
struct Banner {
    sync_id: Option<String>,
    status: Option<String>,
    connection: Option<String>,
    phases: BTreeMap<String, Option<String>>,
    progress_text: Option<String>,
    progress_value: Option<String>,
    progress_max: Option<String>,
    counts: BTreeMap<String, Option<String>>,
    rate: Option<String>,
    eta: Option<String>,
    message: Option<String>,
    cancel_enabled: Option<bool>,
    text: String,
}

impl Banner {
    fn is_final(&self) -> bool {
        matches!(
            self.status.as_deref(),
            Some("succeeded" | "failed" | "cancelled")
        ) && self.connection.as_deref() != Some("live")
    }

    fn status(&self) -> &str {
        self.status.as_deref().unwrap_or("<none>")
    }

    fn phase(&self, phase: &str) -> &str {
        self.phases
            .get(phase)
            .and_then(|s| s.as_deref())
            .unwrap_or("<none>")
    }

    fn count(&self, name: &str) -> Option<u64> {
        self.counts.get(name)?.as_deref()?.parse().ok()
    }

    /// Everything but the rate and ETA, which change on their own.
    fn same_state(&self, other: &Banner) -> bool {
        (
            &self.sync_id,
            &self.status,
            &self.connection,
            &self.phases,
            &self.progress_text,
            &self.counts,
            &self.message,
        ) == (
            &other.sync_id,
            &other.status,
            &other.connection,
            &other.phases,
            &other.progress_text,
            &other.counts,
            &other.message,
        )
    }

    fn summary(&self) -> String {
        let phases: Vec<String> = PHASES
            .iter()
            .map(|p| format!("{p}={}", self.phase(p)))
            .collect();
        format!(
            "{} [{}] {} progress={:?} counts={:?}",
            self.status(),
            self.connection.as_deref().unwrap_or("-"),
            phases.join(" "),
            self.progress_text,
            self.counts
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("-")))
                .collect::<Vec<_>>()
        )
    }
}

// --------------------------------------------------------------------- app

/// A fresh app whose worker reads through `CountingSources` (to slow syncs
/// down), with quick retries; the page's host (127.0.0.1) allowed.
async fn spawn(tweak: impl FnOnce(&mut Settings)) -> (TestApp, CountingSources) {
    let sources = CountingSources::default();
    let app = spawn_app_full(Some(Arc::new(sources.clone())), |s| {
        for host in ["127.0.0.1", "localhost"] {
            if !s.api.allowed_hosts.iter().any(|h| h == host || h == "*") {
                s.api.allowed_hosts.push(host.into());
            }
        }
        s.worker.retry_min_delay_ms = 100;
        s.worker.retry_max_delay_secs = 1;
        s.worker.max_attempts = 2;
        tweak(s);
    })
    .await;
    (app, sources)
}

/// The page's origin: the API's, without `/api/v1`.
fn root_of(app: &TestApp) -> String {
    app.base.trim_end_matches("/api/v1").to_string()
}

/// `n` text files `docs/page-NN.md`, committed.
fn pages(repo: &GitRepo, n: usize, version: &str) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for i in 0..n {
        let path = format!("docs/page-{i:02}.md");
        let content = format!("# Page {i}\n\n{version} text of page {i}.\n");
        repo.write(&path, &content);
        files.insert(path, content);
    }
    files
}

async fn api_sync(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get(&format!("/syncs/{id}")).await;
    assert_eq!(status, 200, "GET /syncs/{id}: {body}");
    body
}

fn sel_attr(testid: &str, attr: &str, value: &str) -> String {
    format!("[data-testid={testid}][{attr}=\"{value}\"]")
}

// ------------------------------------------------------------------- tests

/// Keyboard sign-in, connect a local repository through the form, pick a
/// branch, sync and follow the live banner to success; the memory browser,
/// search, the ops pages and a narrow window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_journey_from_sign_in_to_a_followed_sync() {
    journey(Engine::Chromium, "journey").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_journey_in_firefox() {
    journey(Engine::Firefox, "journey-firefox").await;
}

/// Sign in by keyboard, connect a repository, follow a sync through every
/// phase, read the memory, look at the operations pages, at 1280 and 400 px.
async fn journey(engine: Engine, test: &str) {
    let (app, sources) = spawn(|_| {}).await;
    let repo = GitRepo::new();
    pages(&repo, 6, "main");
    repo.write("src/lib.rs", "//! The quokka module.\npub fn quokka() {}\n");
    repo.commit("main");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    let mut files = pages(&repo, 14, "feature");
    files.insert(
        "src/lib.rs".into(),
        "//! The quokka module.\npub fn quokka() {}\n".into(),
    );
    let feature_head = repo.commit("feature");
    repo.git(&["checkout", "-q", "main"]);
    let n = files.len() as u64; // 15 on `feature`, 7 on `main`
    let key = create_key(&app.db, Role::Admin).await;
    let b = Browser::start_with(engine, test, &root_of(&app)).await;

    // Not signed in: the page sends us to the sign-in form.
    b.goto("").await;
    b.wait_route("#/signin for a visitor", |h| h.starts_with("/signin"))
        .await;
    b.visible("[data-testid=signin-form]", "the sign-in form")
        .await;
    b.screenshot("signin").await;

    // Keyboard only: Tab to the field, type, Tab to the button, Enter.
    b.tab_to("signin-key").await;
    b.keys(&key).await;
    b.tab_to("signin-submit").await;
    b.keys(&Key::Enter.to_string()).await;
    b.wait_route("#/projects after a keyboard sign-in", |h| h == "/projects")
        .await;
    b.visible("[data-testid=projects-table]", "the projects table")
        .await;
    let whoami = b
        .text_contains("[data-testid=whoami]", "default", "who is signed in")
        .await;
    b.check(
        whoami.contains("admin"),
        "whoami shows the role",
        format!("{whoami:?}"),
    )
    .await;
    b.screenshot("projects").await;

    // Connect the repository through the form: first a path outside the
    // allowed root, refused with the API's message; then the repository.
    b.fill("[data-testid=connect-name]", "journey", "the name field")
        .await;
    b.select("[data-testid=connect-kind]", "local", "the repository kind")
        .await;
    let outside = "/projsync-not-an-allowed-root/repo";
    b.fill(
        "[data-testid=connect-path]",
        outside,
        "the local path field",
    )
    .await;
    b.fill("[data-testid=connect-branch]", "main", "the branch field")
        .await;
    b.click("[data-testid=connect-submit]", "the connect button")
        .await;
    let (status, refused) = app
        .post(
            "/projects",
            json!({ "name": "journey", "repository": { "provider": "local", "path": outside, "branch": "main" } }),
        )
        .await;
    assert_eq!(status, 422, "a path outside the allowed roots: {refused}");
    let want = collapse(refused["error"]["message"].as_str().unwrap());
    b.text_contains(
        "[data-testid=connect-error]",
        &want,
        "the API's refusal under the connect form",
    )
    .await;
    let path = repo.path().to_string_lossy().into_owned();
    b.fill("[data-testid=connect-path]", &path, "the local path field")
        .await;
    b.fill("[data-testid=connect-branch]", "main", "the branch field")
        .await;
    b.screenshot("connect-form").await;
    b.click("[data-testid=connect-submit]", "the connect button")
        .await;
    let route = b
        .wait_route("#/projects/<new id> after connecting", |h| {
            h.strip_prefix("/projects/")
                .is_some_and(|id| id.parse::<uuid::Uuid>().is_ok())
        })
        .await;
    let project = route.trim_start_matches("/projects/").to_string();
    let (status, listed) = app.get(&format!("/projects/{project}")).await;
    assert_eq!(status, 200, "the new project exists: {listed}");
    b.text_contains(
        "[data-testid=project-name]",
        "journey",
        "the project's name",
    )
    .await;

    // The branch picker: both branches, the default one selected; pick the other.
    let options = b
        .wait_js(
            "the branch picker filled with main and feature",
            WAIT,
            "const s = $('[data-testid=branch-select]'); if (!s) return {ok: false, seen: 'absent'}; \
             const o = Array.from(s.options).map(o => o.value); \
             return o.includes('main') && o.includes('feature') ? {ok: true, value: {options: o, selected: s.value}} : {ok: false, seen: o};",
            vec![],
        )
        .await;
    b.check(
        options["selected"] == "main",
        "the branch picker selects the project's default branch",
        &options,
    )
    .await;
    b.select(
        "[data-testid=branch-select]",
        "feature",
        "the branch picker",
    )
    .await;

    // Sync, slowed: 500 ms before each batch of 4 files (4 batches).
    sources.set_read_delay(Duration::from_millis(500));
    b.click("[data-testid=sync-button]", "the Sync button")
        .await;
    let seen = b
        .follow_banner("the journey's sync", Duration::from_secs(60), &[], |s| {
            s.status() == "running" && s.phase("import") == "running"
        })
        .await;
    let last = seen.last().unwrap().clone();
    let states: Vec<String> = seen.iter().map(Banner::summary).collect();
    eprintln!("banner states seen:\n    {}", states.join("\n    "));
    let sync_id = last.sync_id.clone().unwrap_or_default();
    let sync = api_sync(&app, &sync_id).await;
    b.check(
        sync["status"] == "succeeded" && last.status() == "succeeded",
        "the sync succeeds and the banner says so",
        format!("banner {}; API {sync}", last.summary()),
    )
    .await;
    b.check(
        sync["branch"] == "feature" && sync["head_commit"] == feature_head.as_str(),
        "the sync ran on the branch picked",
        &sync,
    )
    .await;
    b.check(
        seen.iter()
            .any(|s| s.status() == "running" && s.phase("import") == "running"),
        "the banner showed the import running",
        states.join("\n    "),
    )
    .await;
    for phase in PHASES {
        b.check(
            last.phase(phase) == "done",
            &format!("the {phase} phase ends done"),
            last.summary(),
        )
        .await;
        // Once done, a phase stays done.
        let first_done = seen.iter().position(|s| s.phase(phase) == "done");
        if let Some(i) = first_done {
            b.check(
                seen[i..].iter().all(|s| s.phase(phase) == "done"),
                &format!("the {phase} phase stays done once done"),
                states.join("\n    "),
            )
            .await;
        }
    }
    // While import ran, prepare and scan were done.
    for s in seen.iter().filter(|s| s.phase("import") == "running") {
        b.check(
            s.phase("prepare") == "done" && s.phase("scan") == "done",
            "prepare and scan are done while import runs",
            s.summary(),
        )
        .await;
    }
    let total = format!("{n} / {n}");
    b.check(
        last.progress_text.as_deref() == Some(total.as_str())
            && last.progress_value.as_deref() == Some(n.to_string().as_str())
            && last.progress_max.as_deref() == Some(n.to_string().as_str()),
        "the progress ends at total / total",
        format!(
            "want {total:?} (value = max = {n}); got text {:?}, value {:?}, max {:?}",
            last.progress_text, last.progress_value, last.progress_max
        ),
    )
    .await;
    // A first sync of the branch: every file added, nothing else.
    for (count, want) in [
        ("added", n),
        ("modified", 0),
        ("deleted", 0),
        ("renamed", 0),
        ("unchanged", 0),
        ("skipped", 0),
    ] {
        b.check(
            last.count(count) == Some(want),
            &format!("count-{count} is {want}"),
            last.summary(),
        )
        .await;
    }
    b.check(
        sync["stats"]["added"] == n,
        "the API counts agree",
        &sync["stats"],
    )
    .await;
    b.check(
        last.connection.as_deref() == Some("closed") && last.cancel_enabled != Some(true),
        "the ended banner's event stream is closed and Cancel is off",
        last.summary(),
    )
    .await;
    b.check(
        last.rate.is_some() && last.eta.is_some(),
        "the banner shows a rate and an ETA",
        format!("rate {:?}, eta {:?}", last.rate, last.eta),
    )
    .await;

    // History: the sync, succeeded, without a Restore button (it is the active one).
    let row = sel_attr("history-row", "data-sync-id", &sync_id);
    b.attr_is(
        &row,
        "data-status",
        "succeeded",
        "the sync's history row",
        WAIT,
    )
    .await;
    b.attr_is(&row, "data-kind", "sync", "the sync's history row", WAIT)
        .await;
    let restore_here = b
        .js(
            "return !!$(arguments[0] + ' [data-testid=restore-button]');",
            vec![json!(row)],
        )
        .await;
    b.check(
        restore_here == false,
        "no Restore button on the active sync's row",
        &row,
    )
    .await;
    b.scroll_to("[data-testid=sync-banner]").await;
    b.screenshot("project-after-success").await;

    // Memory browser: open an entry; search.
    let item = sel_attr("memory-item", "data-path", "src/lib.rs");
    let mut more_clicks = 0;
    loop {
        let found = b.js("return !!$(arguments[0]);", vec![json!(item)]).await;
        if found == true {
            break;
        }
        let more = b
            .js("return vis($('[data-testid=memory-more]'));", vec![])
            .await;
        if more == true && more_clicks < 10 {
            b.click("[data-testid=memory-more]", "the memory list's More button")
                .await;
            more_clicks += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        } else {
            b.visible(&item, "the memory list's entry src/lib.rs").await;
        }
    }
    let listed = b
        .js(
            "return $$('[data-testid=memory-item]').map(e => e.dataset.path);",
            vec![],
        )
        .await;
    b.check(
        listed.as_array().is_some_and(|a| {
            a.len() <= files.len()
                && a.iter()
                    .all(|p| files.contains_key(p.as_str().unwrap_or("")))
        }),
        "the memory list shows the synced files",
        &listed,
    )
    .await;
    b.click(&item, "the memory entry src/lib.rs").await;
    b.text_contains(
        "[data-testid=entry-path]",
        "src/lib.rs",
        "the open entry's path",
    )
    .await;
    let content = b
        .wait_js(
            "the open entry's content",
            WAIT,
            "const e = $('[data-testid=entry-content]'); return e && e.textContent.includes('quokka') ? {ok: true, value: e.textContent} : {ok: false, seen: e ? e.textContent : 'absent'};",
            vec![],
        )
        .await;
    b.check(
        content.as_str().map(str::trim_end) == Some(files["src/lib.rs"].trim_end()),
        "the entry shows the file's content",
        &content,
    )
    .await;
    b.scroll_to("[data-testid=entry-content]").await;
    b.screenshot("memory-entry-open").await;
    b.fill("[data-testid=search-input]", "quokka", "the search field")
        .await;
    b.click("[data-testid=search-submit]", "the search button")
        .await;
    b.visible(
        &sel_attr("search-result", "data-path", "src/lib.rs"),
        "the search result src/lib.rs for \"quokka\"",
    )
    .await;
    b.scroll_to("[data-testid=search-result]").await;
    b.screenshot("memory-search").await;

    // Ops: the queue's health, the failed tab, the sync's detail.
    b.click("[data-testid=nav-ops]", "the Ops link").await;
    b.wait_route("#/ops", |h| h.starts_with("/ops")).await;
    b.visible("[data-testid=ops-table]", "the ops table").await;
    let depth = b
        .wait_js(
            "the queue depth as a number",
            WAIT,
            "const t = txt($('[data-testid=queue-depth]')); return t !== null && /^\\d+$/.test(t) ? {ok: true, value: t} : {ok: false, seen: t};",
            vec![],
        )
        .await;
    b.check(depth == "0", "nothing is queued", &depth).await;
    b.visible("[data-testid=worker-row]", "a worker in the workers table")
        .await;
    b.visible("[data-testid=throughput-chart]", "the throughput chart")
        .await;
    for testid in ["queue-oldest", "queue-running"] {
        b.visible(&format!("[data-testid={testid}]"), testid).await;
    }
    b.screenshot("ops").await;
    b.goto("#/ops?status=failed").await;
    b.attr_is(
        &sel_attr("status-tab", "data-status", "failed"),
        "aria-current",
        "page",
        "the Failed tab marked current",
        WAIT,
    )
    .await;
    b.screenshot("ops-failed").await;
    b.goto(&format!("#/ops/syncs/{sync_id}")).await;
    b.attr_is(
        "[data-testid=sync-detail]",
        "data-status",
        "succeeded",
        "the sync's detail page",
        WAIT,
    )
    .await;
    b.check_steps_listed().await;
    b.screenshot("ops-sync-detail").await;

    // The projects list: the project's row with its last sync and entries.
    b.click("[data-testid=nav-projects]", "the Projects link")
        .await;
    let row = sel_attr("project-row", "data-project-id", &project);
    let cells = b
        .wait_js(
            "the project's row in the projects table",
            WAIT,
            "const r = $(arguments[0]); if (!r) return {ok: false, seen: 'no row'}; \
             const c = t => txt($(`[data-testid=${t}]`, r)); const a = $('a[data-testid=project-link]', r); \
             return {ok: true, value: {link: a ? a.getAttribute('href') : null, name: a ? txt(a) : null, \
               repo: c('project-repo'), branch: c('project-branch'), status: c('project-last-status'), \
               commit: c('project-last-commit'), took: c('project-last-took'), \
               entries: c('project-entries')}};",
            vec![json!(row)],
        )
        .await;
    b.check(
        cells["link"] == format!("#/projects/{project}").as_str()
            && cells["name"] == "journey"
            && cells["branch"] == "main"
            && cells["status"] == "succeeded"
            && cells["commit"].as_str().is_some_and(|c| c.contains(&feature_head[..12]))
            && cells["took"].as_str().is_some_and(|t| t.chars().any(|c| c.is_ascii_digit()))
            && cells["entries"] == n.to_string().as_str()
            && cells["repo"].as_str().is_some_and(|r| r.contains(&path)),
        "the project's row: link, name, repository, default branch, last sync (status, commit, time taken), entries",
        &cells,
    )
    .await;

    // A narrow window: the project page still fits.
    if let Err(e) = b.client.set_window_size(400, 900).await {
        b.fail("resizing the window to 400 px", &e.to_string())
            .await;
    }
    b.goto(&format!("#/projects/{project}")).await;
    b.visible("[data-testid=project-name]", "the project's name at 400 px")
        .await;
    let fits = b
        .wait_js(
            "the Sync button and the branch picker inside a 400 px window",
            WAIT,
            "const w = document.documentElement.clientWidth; \
             const r = ['sync-button', 'branch-select'].map(t => { const e = $(`[data-testid=${t}]`); \
               if (!vis(e)) return [t, null]; const b = e.getBoundingClientRect(); return [t, b.left >= 0 && b.right <= w + 1]; }); \
             return r.every(([, ok]) => ok) ? {ok: true, value: w} : {ok: false, seen: {width: w, fits: r}};",
            vec![],
        )
        .await;
    eprintln!("project page at 400 px: client width {fits}");
    b.screenshot("project-400px").await;
    b.finish().await;
}

/// Cancel a running sync from its banner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_cancel_a_running_sync() {
    let (app, sources) = spawn(|_| {}).await;
    let repo = GitRepo::new();
    pages(&repo, 40, "v1");
    repo.commit("v1");
    let project = app.create_project("cancel", repo.path(), "main").await;
    let key = create_key(&app.db, Role::Admin).await;
    let b = Browser::start("cancel", &root_of(&app)).await;
    b.sign_in(&key).await;
    b.goto(&format!("#/projects/{project}")).await;
    branch_picker_ready(&b, "main").await;

    // 10 batches of 4 files, a second each: time enough to press Cancel.
    sources.set_read_delay(Duration::from_secs(1));
    b.click("[data-testid=sync-button]", "the Sync button")
        .await;
    let running = wait_banner(&b, "the banner of a running import", |s| {
        s.status() == "running" && s.phase("import") == "running"
    })
    .await;
    b.check(
        running.cancel_enabled == Some(true),
        "Cancel is enabled while the sync runs",
        running.summary(),
    )
    .await;
    b.screenshot("running").await;
    b.click("[data-testid=cancel-button]", "the Cancel button")
        .await;
    let seen = b
        .follow_banner("the cancelled sync", Duration::from_secs(30), &[], |_| {
            false
        })
        .await;
    let last = seen.last().unwrap();
    b.check(
        last.status() == "cancelled",
        "the banner ends cancelled",
        last.summary(),
    )
    .await;
    b.check(
        last.connection.as_deref() == Some("closed") && last.cancel_enabled != Some(true),
        "the event stream is closed and Cancel is off",
        last.summary(),
    )
    .await;
    b.check(
        last.message.as_deref().is_some_and(|m| !m.is_empty()),
        "the banner says how it ended",
        last.summary(),
    )
    .await;
    let sync_id = last.sync_id.clone().unwrap_or_default();
    let sync = api_sync(&app, &sync_id).await;
    b.check(
        sync["status"] == "cancelled",
        "the API has the sync cancelled",
        &sync,
    )
    .await;
    b.attr_is(
        &sel_attr("history-row", "data-sync-id", &sync_id),
        "data-status",
        "cancelled",
        "the sync's history row",
        WAIT,
    )
    .await;
    b.scroll_to("[data-testid=sync-banner]").await;
    b.screenshot("cancelled").await;
    b.finish().await;
}

/// Wait until the branch picker lists `branch` (it is filled from the API).
async fn branch_picker_ready(b: &Browser, branch: &str) {
    b.wait_js(
        &format!("the branch picker listing {branch}"),
        WAIT,
        "const s = $('[data-testid=branch-select]'); \
         return s && Array.from(s.options).some(o => o.value === arguments[0]) ? {ok: true} : {ok: false, seen: s ? Array.from(s.options).map(o => o.value) : 'absent'};",
        vec![json!(branch)],
    )
    .await;
}

/// Wait until the banner shows a state `ok` accepts; returns it.
async fn wait_banner(b: &Browser, what: &str, ok: impl Fn(&Banner) -> bool) -> Banner {
    b.wait_for(what, WAIT, || async {
        match b.banner().await {
            Some(s) if ok(&s) => Seen::Ready(s),
            Some(s) => Seen::Not(s.summary()),
            None => Seen::Not("no banner".into()),
        }
    })
    .await
}

/// A directory moved away, moved back on drop if the test did not.
struct Moved {
    from: PathBuf,
    to: PathBuf,
}

impl Moved {
    fn away(from: &Path) -> Self {
        let to = from.with_extension("moved-away");
        std::fs::rename(from, &to).expect("move the repository away");
        Self {
            from: from.to_path_buf(),
            to,
        }
    }

    fn back(&self) {
        if self.to.exists() {
            std::fs::rename(&self.to, &self.from).expect("put the repository back");
        }
    }
}

impl Drop for Moved {
    fn drop(&mut self) {
        self.back();
    }
}

/// A failed sync seen in the ops pages, its detail, retried from there
/// once its cause is gone; a retry that is no longer possible (a stale
/// page) shows the API's 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_retry_a_failed_sync_from_ops() {
    let (app, _sources) = spawn(|_| {}).await;
    let repo = GitRepo::new();
    pages(&repo, 5, "v1");
    repo.commit("v1");
    let project = app.create_project("retry", repo.path(), "main").await;
    // The repository goes away: four syncs fail.
    let moved = Moved::away(repo.path());
    let mut failed = Vec::new();
    for _ in 0..4 {
        let sync = app.sync(&project, None).await;
        assert_eq!(sync["status"], "failed", "{sync}");
        failed.push(sync["id"].as_str().unwrap().to_string());
    }
    let [a_id, stale_id, c_id, d_id] = <[String; 4]>::try_from(failed).unwrap();

    let key = create_key(&app.db, Role::Admin).await;
    let b = Browser::start("retry", &root_of(&app)).await;
    b.sign_in(&key).await;
    b.goto("#/ops?status=failed").await;
    b.attr_is(
        &sel_attr("status-tab", "data-status", "failed"),
        "aria-current",
        "page",
        "the Failed tab marked current",
        WAIT,
    )
    .await;
    for id in [&a_id, &stale_id, &c_id, &d_id] {
        b.attr_is(
            &sel_attr("ops-row", "data-sync-id", id),
            "data-status",
            "failed",
            "the failed sync's row in the ops table",
            WAIT,
        )
        .await;
    }
    b.screenshot("ops-failed").await;

    // Its detail: error class and message as the API has them, advice, steps.
    b.click(
        &format!(
            "{} [data-testid=ops-link]",
            sel_attr("ops-row", "data-sync-id", &a_id)
        ),
        "the failed sync's link",
    )
    .await;
    b.wait_route("#/ops/syncs/<id>", |h| h == format!("/ops/syncs/{a_id}"))
        .await;
    b.attr_is(
        "[data-testid=sync-detail]",
        "data-status",
        "failed",
        "the failed sync's detail",
        WAIT,
    )
    .await;
    let detail = api_sync(&app, &a_id).await;
    let class = detail["error_class"].as_str().unwrap_or_default();
    b.text_contains("[data-testid=error-class]", class, "the error class")
        .await;
    let message = detail["error_message"].as_str().unwrap_or_default();
    let shown = b
        .text("[data-testid=error-message]")
        .await
        .unwrap_or_default();
    b.check(
        !message.is_empty() && shown.contains(&collapse(message)),
        "the detail shows the error message",
        format!("want {message:?}, shown {shown:?}"),
    )
    .await;
    let advice = b
        .wait_js(
            "the advice for the failed sync",
            WAIT,
            "const t = txt($('[data-testid=advice]')); return t ? {ok: true, value: t} : {ok: false, seen: t};",
            vec![],
        )
        .await;
    if let Some(want) = detail["advice"].as_str() {
        b.check(
            advice.as_str() == Some(collapse(want).as_str()),
            "the advice is the API's",
            format!("want {want:?}, shown {advice}"),
        )
        .await;
    }
    b.check_steps_listed().await;
    b.screenshot("failed-detail").await;

    // The cause is gone: retry from the page, and it succeeds.
    moved.back();
    b.click("[data-testid=action-retry]", "the Retry button")
        .await;
    wait_detail_status(&b, "succeeded", "the retried sync's detail").await;
    b.check(
        api_sync(&app, &a_id).await["status"] == "succeeded",
        "the API has the retried sync succeeded",
        &a_id,
    )
    .await;
    b.screenshot("retried-succeeded").await;

    // A page left open on the other failed sync, retried meanwhile by
    // someone else: its Retry is a 409, and the page says why.
    b.goto(&format!("#/ops/syncs/{stale_id}")).await;
    b.attr_is(
        "[data-testid=sync-detail]",
        "data-status",
        "failed",
        "the other failed sync's detail",
        WAIT,
    )
    .await;
    b.visible("[data-testid=action-retry]", "the Retry button")
        .await;
    let (status, body) = app
        .post(&format!("/syncs/{stale_id}/retry"), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(app.wait_for(&stale_id).await["status"], "succeeded");
    let (status, conflict) = app
        .post(&format!("/syncs/{stale_id}/retry"), json!({}))
        .await;
    assert_eq!(status, 409, "retrying a succeeded sync: {conflict}");
    let want = conflict["error"]["message"].as_str().unwrap().to_string();
    b.click("[data-testid=action-retry]", "the (stale) Retry button")
        .await;
    b.attr_is(
        "[data-testid=flash]",
        "data-kind",
        "error",
        "an error in the flash",
        WAIT,
    )
    .await;
    b.text_contains(
        "[data-testid=flash]",
        &collapse(&want),
        "the API's 409 message",
    )
    .await;
    b.scroll_to("[data-testid=flash]").await;
    b.screenshot("stale-retry-409").await;

    // Bulk retry from a stale list: of the two failed syncs shown, one was
    // retried meanwhile; it is refused with the API's 409, the other runs,
    // and the flash says so for each.
    b.goto("#/ops?status=failed").await;
    for id in [&c_id, &d_id] {
        let row = sel_attr("ops-row", "data-sync-id", id);
        b.attr_is(&row, "data-status", "failed", "a failed sync's row", WAIT)
            .await;
    }
    let (status, body) = app.post(&format!("/syncs/{d_id}/retry"), json!({})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(app.wait_for(&d_id).await["status"], "succeeded");
    let (status, conflict) = app.post(&format!("/syncs/{d_id}/retry"), json!({})).await;
    assert_eq!(status, 409, "retrying a succeeded sync: {conflict}");
    let want = collapse(conflict["error"]["message"].as_str().unwrap());
    for id in [&c_id, &d_id] {
        b.click(
            &format!(
                "{} [data-testid=ops-select]",
                sel_attr("ops-row", "data-sync-id", id)
            ),
            "a failed sync's checkbox",
        )
        .await;
    }
    b.click("[data-testid=bulk-retry]", "Retry selected").await;
    b.wait_js(
        "the bulk retry's results in the flash: both syncs, the 409's message",
        WAIT,
        "const f = $('[data-testid=flash]'); const t = txt(f); \
         return t && t.includes(arguments[0]) && t.includes(arguments[1]) && t.includes(arguments[2]) \
           ? {ok: true} : {ok: false, seen: t};",
        vec![json!(c_id), json!(d_id), json!(want)],
    )
    .await;
    b.attr_is(
        "[data-testid=flash]",
        "data-kind",
        "error",
        "the bulk retry's flash (one refused)",
        WAIT,
    )
    .await;
    b.check(
        app.wait_for(&c_id).await["status"] == "succeeded",
        "the other sync of the bulk retry ran and succeeded",
        &c_id,
    )
    .await;
    b.scroll_to("[data-testid=flash]").await;
    b.screenshot("bulk-retry").await;
    b.finish().await;
}

/// Whitespace collapsed, as the page's text is read.
fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Wait until the sync detail page shows `status`, reloading it every
/// second (the page loads the sync; it need not follow it).
async fn wait_detail_status(b: &Browser, status: &str, what: &str) {
    let polls = AtomicU32::new(0);
    b.wait_for(
        &format!("{what} with data-status=\"{status}\""),
        Duration::from_secs(30),
        || async {
            if polls.fetch_add(1, Ordering::SeqCst) % 10 == 9 {
                let _ = b.client.refresh().await;
            }
            let v = b
                .js(
                    "const e = $('[data-testid=sync-detail]'); return e ? e.dataset.status || '' : null;",
                    vec![],
                )
                .await;
            match v.as_str() {
                Some(s) if s == status => Seen::Ready(()),
                _ => Seen::Not(format!("data-status={v}")),
            }
        },
    )
    .await;
}

/// Restore an earlier sync from the history, through the confirm dialog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_restore_an_earlier_sync() {
    let (app, _sources) = spawn(|_| {}).await;
    let repo = GitRepo::new();
    let first_files = pages(&repo, 4, "first");
    repo.commit("first");
    let project = app.create_project("restore", repo.path(), "main").await;
    let first = app.sync(&project, None).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    pages(&repo, 4, "second");
    repo.write("extra.md", "only in the second version\n");
    repo.commit("second");
    let second = app.sync(&project, None).await;
    assert_eq!(second["status"], "succeeded", "{second}");
    let first_id = first["id"].as_str().unwrap().to_string();
    let second_id = second["id"].as_str().unwrap().to_string();

    let key = create_key(&app.db, Role::Admin).await;
    let b = Browser::start("restore", &root_of(&app)).await;
    b.sign_in(&key).await;
    b.goto(&format!("#/projects/{project}")).await;
    let first_row = sel_attr("history-row", "data-sync-id", &first_id);
    let second_row = sel_attr("history-row", "data-sync-id", &second_id);
    for row in [&first_row, &second_row] {
        b.attr_is(row, "data-status", "succeeded", "a history row", WAIT)
            .await;
    }
    let restore_first = format!("{first_row} [data-testid=restore-button]");
    b.visible(&restore_first, "Restore on the first sync's row")
        .await;
    let on_active = b
        .js(
            "return !!$(arguments[0]);",
            vec![json!(format!("{second_row} [data-testid=restore-button]"))],
        )
        .await;
    b.check(
        on_active == false,
        "no Restore on the active (latest) sync's row",
        &second_row,
    )
    .await;

    // Cancel in the dialog: nothing happens.
    b.click(&restore_first, "Restore on the first sync's row")
        .await;
    dialog_open(&b, true).await;
    b.click("[data-testid=confirm-cancel]", "the dialog's Cancel")
        .await;
    dialog_open(&b, false).await;
    let (_, history) = app.get(&format!("/projects/{project}/syncs")).await;
    b.check(
        history.as_array().map(Vec::len) == Some(2),
        "cancelling the dialog restores nothing",
        &history,
    )
    .await;

    // OK: the banner follows the restore to its end.
    b.click(&restore_first, "Restore on the first sync's row")
        .await;
    dialog_open(&b, true).await;
    let text = b
        .text("[data-testid=confirm-dialog]")
        .await
        .unwrap_or_default();
    b.check(!text.is_empty(), "the dialog says what it will do", &text)
        .await;
    b.screenshot("confirm-restore").await;
    b.click("[data-testid=confirm-ok]", "the dialog's OK").await;
    dialog_open(&b, false).await;
    let seen = b
        .follow_banner(
            "the restore",
            Duration::from_secs(60),
            &[first_id.as_str(), second_id.as_str()],
            |_| false,
        )
        .await;
    let last = seen.last().unwrap();
    b.check(
        last.status() == "succeeded",
        "the restore succeeds",
        last.summary(),
    )
    .await;
    let restore_id = last.sync_id.clone().unwrap_or_default();
    let restore = api_sync(&app, &restore_id).await;
    b.check(
        restore["kind"] == "restore" && restore["restore_of_sync_id"] == first_id.as_str(),
        "the banner followed a restore of the first sync",
        &restore,
    )
    .await;
    let restore_row = sel_attr("history-row", "data-sync-id", &restore_id);
    b.attr_is(
        &restore_row,
        "data-kind",
        "restore",
        "the restore's history row",
        WAIT,
    )
    .await;
    b.attr_is(
        &restore_row,
        "data-status",
        "succeeded",
        "the restore's history row",
        WAIT,
    )
    .await;
    b.scroll_to("[data-testid=sync-banner]").await;
    b.screenshot("restored").await;

    // The memory browser shows the first version again.
    let path = "docs/page-00.md";
    b.click(
        &sel_attr("memory-item", "data-path", path),
        "the memory entry docs/page-00.md",
    )
    .await;
    let want = first_files[path].clone();
    b.wait_js(
        "the first version's content in the open entry",
        WAIT,
        "const e = $('[data-testid=entry-content]'); const t = e ? e.textContent : null; \
         return t !== null && t.trimEnd() === arguments[0].trimEnd() ? {ok: true} : {ok: false, seen: t};",
        vec![json!(want)],
    )
    .await;
    b.scroll_to("[data-testid=entry-content]").await;
    b.screenshot("restored-entry").await;
    // Loaded afresh, the list has no entry of the second version only.
    b.client.refresh().await.unwrap();
    b.visible(
        &sel_attr("memory-item", "data-path", path),
        "the memory list after a reload",
    )
    .await;
    let extra = b
        .js(
            "return !!$('[data-testid=memory-item][data-path=\"extra.md\"]');",
            vec![],
        )
        .await;
    b.check(
        extra == false,
        "extra.md (second version only) is gone from the memory list",
        "it is still listed",
    )
    .await;
    assert_eq!(
        app.active_entries(&project).await,
        first_files,
        "the entries are the first sync's"
    );
    b.finish().await;
}

async fn dialog_open(b: &Browser, open: bool) {
    b.wait_js(
        &format!(
            "the confirm dialog to be {}",
            if open { "open" } else { "closed" }
        ),
        WAIT,
        "const d = $('[data-testid=confirm-dialog]'); const o = !!d && d.open && vis(d); \
         return o === arguments[0] ? {ok: true} : {ok: false, seen: d ? `open=${d.open}` : 'absent'};",
        vec![json!(open)],
    )
    .await;
}

/// An expired session and a revoked key: the next request is a 401 and
/// the page goes back to the sign-in form, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_an_expired_session_or_revoked_key_goes_back_to_sign_in() {
    let (app, _sources) = spawn(|_| {}).await;
    let key = create_key(&app.db, Role::Admin).await;
    let b = Browser::start("signed-out", &root_of(&app)).await;

    // Signing out closes the session: its cookie no longer works.
    b.sign_in(&key).await;
    b.click("[data-testid=signout]", "the Sign out button")
        .await;
    b.wait_route("#/signin after signing out", |h| h.starts_with("/signin"))
        .await;
    let (sessions,): (i64,) = sqlx::query_as("SELECT count(*) FROM api_sessions")
        .fetch_one(&app.db.admin)
        .await
        .unwrap();
    b.check(sessions == 0, "signing out deletes the session", sessions)
        .await;

    // The session expires: a reload lands on the sign-in form.
    b.sign_in(&key).await;
    sqlx::query("UPDATE api_sessions SET expires_at = now() - interval '1 second'")
        .execute(&app.db.admin)
        .await
        .unwrap();
    b.client.refresh().await.unwrap();
    b.wait_route("#/signin after the session expired", |h| {
        h.starts_with("/signin")
    })
    .await;
    b.text_contains(
        "[data-testid=signin-message]",
        SESSION_ENDED,
        "the sign-in message after the session expired",
    )
    .await;
    b.screenshot("session-expired").await;

    // The key is revoked: the next navigation lands there too.
    b.sign_in(&key).await;
    let principal = app.db.store.authenticate(&key).await.unwrap().unwrap();
    projsync_store::Store::from_pool(app.db.admin.clone())
        .revoke_key(principal.key_id, &projsync_store::Actor::cli())
        .await
        .unwrap();
    b.click("[data-testid=nav-ops]", "the Ops link").await;
    b.wait_route("#/signin after the key was revoked", |h| {
        h.starts_with("/signin")
    })
    .await;
    b.text_contains(
        "[data-testid=signin-message]",
        SESSION_ENDED,
        "the sign-in message after the key was revoked (the Ops page's two requests both 401)",
    )
    .await;
    b.screenshot("key-revoked").await;

    // The revoked key does not sign in again; the page stays and says why.
    let (status, refused) = app.post("/session", json!({ "key": key })).await;
    assert_eq!(status, 401, "{refused}");
    let want = refused["error"]["message"].as_str().unwrap().to_string();
    b.fill("[data-testid=signin-key]", &key, "the API key field")
        .await;
    b.click("[data-testid=signin-submit]", "the sign-in button")
        .await;
    b.text_contains("[data-testid=signin-message]", &want, "the refusal")
        .await;
    b.check(
        b.hash().await.starts_with("/signin"),
        "a refused sign-in stays on #/signin",
        b.hash().await,
    )
    .await;
    b.finish().await;
}

/// A TCP proxy between the browser and the API that the test can cut: open
/// connections are dropped and new ones refused until `restore`. It keeps
/// what the browser sent on each connection (to read request headers).
struct CutProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<CancellationToken>>,
    /// Per connection, in the order they were accepted: the bytes sent up.
    sent: Arc<Mutex<Vec<Arc<Mutex<String>>>>>,
    shutdown: CancellationToken,
}

impl CutProxy {
    async fn start(upstream: SocketAddr) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(CancellationToken::new()));
        let sent: Arc<Mutex<Vec<Arc<Mutex<String>>>>> = Default::default();
        let shutdown = CancellationToken::new();
        let (c, k, log, stop) = (cut.clone(), conns.clone(), sent.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((inbound, _)) = accepted else {
                    continue;
                };
                if c.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let token = k.lock().unwrap().clone();
                let up_log = Arc::new(Mutex::new(String::new()));
                log.lock().unwrap().push(up_log.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut from_browser, mut to_browser) = inbound.into_split();
                    let (mut from_api, mut to_api) = outbound.into_split();
                    let up = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n @ 1..) = from_browser.read(&mut buf).await {
                            up_log
                                .lock()
                                .unwrap()
                                .push_str(&String::from_utf8_lossy(&buf[..n]));
                            if to_api.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = to_api.shutdown().await;
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut from_api, &mut to_browser).await;
                        let _ = to_browser.shutdown().await;
                    };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = async { tokio::join!(up, down) } => {}
                    }
                });
            }
        });
        Self {
            addr,
            cut,
            conns,
            sent,
            shutdown,
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        let mut token = self.conns.lock().unwrap();
        token.cancel();
        *token = CancellationToken::new();
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// The head (request line and headers) of every request the browser
    /// sent for `path`, in order.
    fn request_heads(&self, path: &str) -> Vec<String> {
        let line = format!("GET {path} ");
        let mut heads = Vec::new();
        for conn in self.sent.lock().unwrap().iter() {
            let text = conn.lock().unwrap().clone();
            let mut rest = text.as_str();
            while let Some(i) = rest.find(&line) {
                let head = &rest[i..];
                let end = head.find("\r\n\r\n").unwrap_or(head.len());
                heads.push(head[..end].to_string());
                rest = &head[end..];
            }
        }
        heads
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.conns.lock().unwrap().cancel();
    }
}

/// The event stream's connection drops mid-sync: the banner says
/// "reconnecting", then is live again and follows the sync to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_a_dropped_event_stream_reconnects() {
    let (app, sources) = spawn(|_| {}).await;
    let repo = GitRepo::new();
    pages(&repo, 40, "v1");
    repo.commit("v1");
    let project = app.create_project("reconnect", repo.path(), "main").await;
    let key = create_key(&app.db, Role::Admin).await;
    let api: SocketAddr = root_of(&app).trim_start_matches("http://").parse().unwrap();
    let proxy = CutProxy::start(api).await;
    let b = Browser::start("sse-reconnect", &format!("http://{}", proxy.addr)).await;
    b.sign_in(&key).await;
    b.goto(&format!("#/projects/{project}")).await;
    branch_picker_ready(&b, "main").await;

    // 10 batches, a second each, until the stream is back.
    sources.set_read_delay(Duration::from_secs(1));
    b.click("[data-testid=sync-button]", "the Sync button")
        .await;
    wait_banner(&b, "a live banner of the running import", |s| {
        s.status() == "running"
            && s.phase("import") == "running"
            && s.connection.as_deref() == Some("live")
    })
    .await;
    proxy.cut();
    let reconnecting = wait_banner(&b, "the banner reconnecting after the cut", |s| {
        s.connection.as_deref() == Some("reconnecting")
    })
    .await;
    b.check(
        reconnecting.text.contains("Reconnecting…"),
        "the banner shows \"Reconnecting…\"",
        format!("{:?}", reconnecting.text),
    )
    .await;
    b.screenshot("reconnecting").await;
    proxy.restore();
    let live = wait_banner(&b, "the banner live again after the cut", |s| {
        s.connection.as_deref() == Some("live")
    })
    .await;
    b.check(
        live.status() == "running",
        "live again while the sync still runs",
        live.summary(),
    )
    .await;
    b.screenshot("live-again").await;
    // The browser's own reconnect: it said where it was (Last-Event-ID).
    let sync_id = live.sync_id.clone().unwrap_or_default();
    let heads = proxy.request_heads(&format!("/api/v1/syncs/{sync_id}/events"));
    let resumed = heads.iter().skip(1).any(|h| {
        h.lines().any(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("last-event-id:")
                .is_some_and(|v| v.trim().parse::<u64>().is_ok_and(|n| n >= 1))
        })
    });
    b.check(
        heads.len() >= 2 && resumed,
        "the reconnect to the event stream sends Last-Event-ID",
        format!("the event stream requests seen: {heads:#?}"),
    )
    .await;
    sources.set_read_delay(Duration::ZERO);
    let seen = b
        .follow_banner(
            "the sync after the reconnect",
            Duration::from_secs(60),
            &[],
            |_| false,
        )
        .await;
    let last = seen.last().unwrap();
    b.check(
        last.status() == "succeeded"
            && last.progress_text.as_deref() == Some("40 / 40")
            && last.count("added") == Some(40),
        "the banner follows the sync to its end after the reconnect",
        last.summary(),
    )
    .await;
    b.finish().await;
}
