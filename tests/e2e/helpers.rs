//! `spawn_app`: a fresh database, a Redis namespace, the API on port 0 and a
//! worker, all in this process (the binary itself is driven in `cli.rs`).

use projsync::{app, Settings};
use projsync_test_support::{TestDb, TestRedis};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use projsync_domain::source::SourceFactory;
use projsync_sources::DefaultSources;
pub use projsync_test_support::CountingSources;

pub struct TestApp {
    pub db: TestDb,
    pub redis: TestRedis,
    #[allow(dead_code)]
    pub settings: Settings,
    pub base: String,
    /// The admin key of the `default` tenant that `http` sends.
    pub key: String,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn test_settings(db: &TestDb, redis: &TestRedis) -> Settings {
    let mut s = Settings::load(None).expect("default settings load");
    s.database.url = db.url.clone();
    s.database.admin_url = db.admin_url.clone();
    // Test repositories are made under the temporary directory.
    s.sources.local.allowed_roots = vec![local_root().to_string_lossy().into_owned()];
    s.redis.url = redis.url.clone();
    s.redis.namespace = redis.namespace.clone();
    s.api.listen = "127.0.0.1:0".into();
    // No worker health listener unless a test asks for one (observability.rs).
    s.worker.listen = String::new();
    s.worker.import_batch_size = 4;
    s.redis.poll_interval_ms = 50;
    // Sync mechanics run without a model (entries are still chunked);
    // tests/e2e/embeddings.rs turns embeddings on with the fake or local model.
    s.embeddings.enabled = false;
    s
}

/// Where test repositories are made: the one allowed local root.
pub fn local_root() -> std::path::PathBuf {
    std::env::temp_dir().canonicalize().unwrap()
}

/// The sources a test worker reads through: the deployment's, with the
/// temporary directory allowed.
pub fn test_sources() -> DefaultSources {
    DefaultSources::default().with_local_roots([local_root()])
}

/// A key of `role` for the `default` tenant (the one `db.store` is scoped to).
pub async fn create_key(db: &TestDb, role: projsync_domain::Role) -> String {
    create_tenant_key(db, "default", role).await
}

/// A key of `role` for `tenant`, which is created if it does not exist.
pub async fn create_tenant_key(db: &TestDb, tenant: &str, role: projsync_domain::Role) -> String {
    let admin = projsync_store::Store::from_pool(db.admin.clone());
    let actor = projsync_store::Actor::cli();
    let tenant = match admin.tenant_by_name(tenant).await {
        Ok(t) => t,
        Err(_) => admin.create_tenant(tenant, &actor).await.unwrap(),
    };
    admin
        .create_key(&tenant, role, "test", &actor)
        .await
        .unwrap()
        .secret
}

/// An HTTP client that sends `key` as its bearer token.
pub fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(true, |_| {}).await
}

pub async fn spawn_app_with(worker: bool, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let sources: Option<Arc<dyn SourceFactory>> = worker.then(|| Arc::new(test_sources()) as _);
    spawn_app_full(sources, tweak).await
}

/// The app with a worker reading through `sources`.
pub async fn spawn_app_full(
    sources: Option<Arc<dyn SourceFactory>>,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    // The in-process app's warnings and errors (an internal error's detail,
    // say) go to the test's captured output, shown when it fails;
    // PROJSYNC_TEST_LOG (a tracing filter, e.g. `debug`) shows more.
    let filter = std::env::var("PROJSYNC_TEST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_test_writer()
        .try_init();
    let db = TestDb::new().await;
    let redis = TestRedis::new();
    let mut settings = test_settings(&db, &redis);
    tweak(&mut settings);
    let shutdown = CancellationToken::new();
    let listener = app::bind(&settings.api.listen).await.unwrap();
    let embedder = app::embedder(&settings, &db.store).await.unwrap();
    let search = app::search_settings(&settings, embedder);
    let state = app::api_state_with_search(&settings, db.store.clone(), search)
        .await
        .unwrap();
    let (addr, _api) =
        app::spawn_api(listener, state, settings.mcp_settings(), shutdown.clone()).unwrap();
    if let Some(sources) = sources {
        app::spawn_worker_with(&settings, db.store.clone(), sources, shutdown.clone())
            .await
            .unwrap();
    }
    let key = create_key(&db, projsync_domain::Role::Admin).await;
    TestApp {
        db,
        redis,
        settings,
        base: format!("http://{addr}/api/v1"),
        http: client_with_key(&key),
        key,
        shutdown,
    }
}

impl TestApp {
    /// Cancelled when the app is dropped: extra workers stop with it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Connect a local repository; returns the project id.
    pub async fn create_project(&self, name: &str, path: &std::path::Path, branch: &str) -> String {
        self.create_project_with(name, path, branch, json!({}))
            .await
    }

    /// [`TestApp::create_project`] with more fields of the request
    /// (`{"analysis": {"enabled": false}}`).
    pub async fn create_project_with(
        &self,
        name: &str,
        path: &std::path::Path,
        branch: &str,
        more: Value,
    ) -> String {
        let mut request = json!({ "name": name, "repository": { "provider": "local", "path": path, "branch": branch } });
        if let (Some(request), Some(more)) = (request.as_object_mut(), more.as_object()) {
            request.extend(more.clone());
        }
        let (status, body) = self.post("/projects", request).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// Enqueue a sync; returns its id.
    pub async fn enqueue(&self, project_id: &str, branch: Option<&str>) -> String {
        let (status, body) = self
            .post(
                &format!("/projects/{project_id}/syncs"),
                json!({ "branch": branch }),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        body["sync_id"].as_str().unwrap().to_string()
    }

    /// Poll the API until the sync ends (bounded); returns it with its steps.
    pub async fn wait_for(&self, sync_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self.get(&format!("/syncs/{sync_id}")).await;
            assert_eq!(status, 200, "{body}");
            if matches!(
                body["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            ) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "sync did not end in time: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Enqueue and wait; returns the finished sync.
    pub async fn sync(&self, project_id: &str, branch: Option<&str>) -> Value {
        let id = self.enqueue(project_id, branch).await;
        self.wait_for(&id).await
    }

    /// The active entries through the API: path → content, every page.
    pub async fn active_entries(&self, project_id: &str) -> BTreeMap<String, String> {
        self.get_all(&format!("/projects/{project_id}/memory"))
            .await
            .iter()
            .map(|e| {
                (
                    e["path"].as_str().unwrap().to_string(),
                    e["content"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Every item of a paginated list, following `X-Next-Cursor` (and
    /// checking that `Link` says the same).
    pub async fn get_all(&self, path: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = match &cursor {
                Some(c) => format!("{}{path}{sep}cursor={c}", self.base),
                None => format!("{}{path}", self.base),
            };
            let resp = self.http.get(url).send().await.unwrap();
            let status = resp.status().as_u16();
            let next = resp
                .headers()
                .get("x-next-cursor")
                .map(|v| v.to_str().unwrap().to_string());
            let link = resp
                .headers()
                .get("link")
                .map(|v| v.to_str().unwrap().to_string());
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 200, "{body}");
            items.extend(body.as_array().unwrap().iter().cloned());
            assert_eq!(
                next.is_some(),
                link.is_some(),
                "X-Next-Cursor and Link go together"
            );
            if let (Some(next), Some(link)) = (&next, &link) {
                assert!(link.contains(&format!("cursor={next}>")), "{link}");
            }
            match next {
                Some(c) => cursor = Some(c),
                None => return items,
            }
        }
    }
}

/// The expected entries: the tree's regular files minus `skipped`, content as text.
pub fn expected_entries(
    files: BTreeMap<String, Vec<u8>>,
    skipped: &[&str],
) -> BTreeMap<String, String> {
    files
        .into_iter()
        .filter(|(p, _)| !skipped.contains(&p.as_str()))
        .map(|(p, bytes)| {
            (
                p,
                String::from_utf8(bytes).expect("expected entries are text"),
            )
        })
        .collect()
}
