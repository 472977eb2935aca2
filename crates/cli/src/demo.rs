//! `projsync demo`: everything on one machine, no credentials. Migrates,
//! creates a tenant and an API key for itself, allows the repository as a
//! local source, starts the API and a worker in this process, connects the
//! repository through the HTTP API, enqueues a sync through the HTTP API,
//! follows it live and prints a summary and a query to look at the entries.

use crate::watch::{self, Output};
use crate::{app, Settings};
use anyhow::{bail, Context, Result};
use projsync_domain::{SyncId, SyncStatus};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The projsync checkout this binary was built from.
pub fn default_repository() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    here.canonicalize().unwrap_or(here)
}

fn current_branch(path: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(path)
        .args(["symbolic-ref", "--quiet", "--short", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|b| !b.is_empty())
}

async fn api_json(resp: reqwest::Response) -> Result<(u16, Value)> {
    let status = resp.status().as_u16();
    let body: Value = resp
        .json()
        .await
        .context("the API answered with invalid JSON")?;
    Ok((status, body))
}

/// The id of the project called `name`, paging through the list.
async fn project_by_name(http: &reqwest::Client, base: &str, name: &str) -> Result<String> {
    let mut url = format!("{base}/projects?limit=100");
    loop {
        let resp = http.get(&url).send().await?;
        let next = resp
            .headers()
            .get("x-next-cursor")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (status, list) = api_json(resp).await?;
        if status != 200 {
            bail!(api_error(status, &list));
        }
        let found = list
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .and_then(|p| p["id"].as_str());
        if let Some(id) = found {
            return Ok(id.to_string());
        }
        match next {
            Some(cursor) => url = format!("{base}/projects?limit=100&cursor={cursor}"),
            None => bail!("project {name} exists but was not listed"),
        }
    }
}

fn api_error(status: u16, body: &Value) -> String {
    let msg = body["error"]["message"].as_str().unwrap_or("unknown error");
    format!("the API answered {status}: {msg}")
}

/// Run the demo; returns the sync's final status.
pub async fn run(
    settings: &Settings,
    path: Option<PathBuf>,
    branch: Option<String>,
) -> Result<SyncStatus> {
    let started = Instant::now();
    let path = path.unwrap_or_else(default_repository);
    let path = path
        .canonicalize()
        .with_context(|| format!("no repository at {}", path.display()))?;
    let branch = branch
        .or_else(|| current_branch(&path))
        .unwrap_or_else(|| "main".into());

    // The demo may read the one repository it shows.
    let mut settings = settings.clone();
    settings.sources.local.allowed_roots = vec![path.to_string_lossy().into_owned()];
    let settings = &settings;

    println!("projsync demo: {} (branch {branch})", path.display());
    println!(
        "  database  {}",
        projsync_domain::redact_url(&settings.database.url)
    );
    println!(
        "  redis     {}",
        projsync_domain::redact_url(&settings.redis.url)
    );
    let admin = app::migrate(settings).await?;
    println!("  migrated");
    let tenant = match admin.tenant_by_name("demo").await {
        Ok(t) => t,
        Err(projsync_store::Error::NotFound(_)) => {
            admin
                .create_tenant("demo", &projsync_store::Actor::cli())
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    let key = admin
        .create_key(
            &tenant,
            projsync_domain::Role::Admin,
            "demo",
            &projsync_store::Actor::cli(),
        )
        .await?;
    println!("  tenant    {} ({})", tenant.name, tenant.id);
    println!(
        "  api key   {} (role admin, id {}; revoke with: projsync key revoke {})",
        key.secret, key.key.id, key.key.id
    );
    let store = app::store(settings).await?;

    let shutdown = CancellationToken::new();
    let listener = match app::bind(&settings.api.listen).await {
        Ok(l) => l,
        // A demo should not fail because another one holds the port.
        Err(_) => app::bind("127.0.0.1:0").await?,
    };
    let embedder = app::embedder(settings, &store).await?;
    let search = app::search_settings(settings, embedder);
    let state = app::api_state_with_search(settings, store.clone(), search).await?;
    let (mut addr, api) =
        app::spawn_api(listener, state, settings.mcp_settings(), shutdown.clone())?;
    if addr.ip().is_unspecified() {
        // Bound to every address (0.0.0.0): call it by loopback, a name
        // api.allowed_hosts has by default.
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let worker_listener = match app::bind_worker_listener(settings).await {
        Ok(l) => l,
        // Nor because a worker holds the health port.
        Err(_) => Some(app::bind("127.0.0.1:0").await?),
    };
    let worker_addr = worker_listener.as_ref().and_then(|l| l.local_addr().ok());
    let metrics = projsync_metrics::Metrics::new(projsync_metrics::Process::Worker);
    let sources = Arc::new(app::sources(settings).await?.with_metrics(metrics.clone()));
    let worker = app::spawn_worker_on(
        settings,
        store.clone(),
        sources,
        metrics,
        worker_listener,
        shutdown.clone(),
    )
    .await?;
    let base = format!("http://{addr}/api/v1");
    println!("  api       http://{addr} (OpenAPI at {base}/openapi.yaml, metrics at /metrics)");
    match worker_addr {
        Some(w) => println!("  worker    started (health and metrics at http://{w}/metrics)\n"),
        None => println!("  worker    started\n"),
    }

    let result = async {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", key.secret).parse()?,
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .default_headers(headers)
            .build()?;
        let dir = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "repo".into());
        let tag = &projsync_domain::content_hash(&path.to_string_lossy())[..8];
        let name = format!("demo-{dir}-{tag}");
        let (status, body) = api_json(
            http.post(format!("{base}/projects"))
                .json(&json!({
                    "name": name,
                    "repository": { "provider": "local", "path": path, "branch": branch },
                }))
                .send()
                .await?,
        )
        .await?;
        let project_id = match status {
            201 => body["id"].as_str().unwrap_or_default().to_string(),
            409 => project_by_name(&http, &base, &name).await?,
            _ => bail!(api_error(status, &body)),
        };
        println!("project {name} ({project_id})");
        let (status, body) = api_json(
            http.post(format!("{base}/projects/{project_id}/syncs"))
                .json(&json!({ "branch": branch }))
                .send()
                .await?,
        )
        .await?;
        if !(status == 202 || status == 200) {
            bail!(api_error(status, &body));
        }
        let sync_id: SyncId = body["sync_id"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(anyhow::Error::msg)?;
        println!("sync {sync_id} enqueued; follow it elsewhere with: redis-cli SUBSCRIBE projsync:sync:{sync_id}\n");
        let record = watch::watch(settings, &store.scoped(tenant.id), sync_id, Output::auto()).await?;
        println!("\n{}", watch::summary(&record));
        if record.status == projsync_domain::SyncStatus::Succeeded {
            let question = "how does a failed step get retried later";
            let (status, body) = api_json(
                http.post(format!("{base}/projects/{project_id}/search"))
                    .json(&json!({ "query": question, "k": 3 }))
                    .send()
                    .await?,
            )
            .await?;
            if status == 200 {
                println!("\nsearch ({}): \"{question}\"", body["model"].as_str().unwrap_or("keyword"));
                if let Some(note) = body["semantic"].as_str() {
                    println!("  semantic ranking {note}; results by keyword");
                }
                for hit in body["results"].as_array().into_iter().flatten() {
                    println!(
                        "  {}:{}-{}  score {:.4}",
                        hit["path"].as_str().unwrap_or(""),
                        hit["start_line"],
                        hit["end_line"],
                        hit["score"].as_f64().unwrap_or(0.0)
                    );
                }
                println!("ask your own: projsync search --tenant demo --project {name} \"…\"");
            }
        }
        println!("demo finished in {:.1}s", started.elapsed().as_secs_f64());
        println!(
            "\nlook at the entries:\n  psql '{}' -c \"SELECT path, language, size_bytes FROM active_memory_entries WHERE project_id = '{project_id}' ORDER BY path LIMIT 20\"",
            projsync_domain::redact_url(&settings.database.admin_url)
        );
        println!(
            "\nor in the dashboard: run `projsync api` (and `projsync worker` to sync from it), \
             open http://{}/ and sign in with the api key above",
            settings.api.listen
        );
        Ok(record.status)
    }
    .await;

    shutdown.cancel();
    let _ = tokio::time::timeout(
        Duration::from_secs(settings.worker.shutdown_timeout_secs),
        worker,
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), api).await;
    result
}
