//! Attacks, as an outsider, another tenant, a low role, a browser and a
//! query that forgets its filter: identities, tenants with row-level
//! security, operator-owned sources and credentials, sessions, rate limits
//! and the audit trail.

use crate::cli::{projsync, run};
use crate::helpers::{client_with_key, create_key, create_tenant_key, spawn_app_with, TestApp};
use projsync_domain::Role;
use projsync_test_support::{GitRepo, TestDb, TestRedis};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

fn small_repo() -> GitRepo {
    let repo = GitRepo::new();
    repo.write("README.md", "# secure\n")
        .write("src/lib.rs", "pub fn secret() {}\n");
    repo.commit("first");
    repo
}

async fn send(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client.request(method.parse().unwrap(), url);
    if method == "POST" {
        req = req.json(&body.unwrap_or(json!({})));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

/// A project with one succeeded sync; returns (project id, sync id).
async fn synced_project(app: &TestApp, name: &str, repo: &GitRepo) -> (String, String) {
    let project = app.create_project(name, repo.path(), "main").await;
    let sync = app.sync(&project, None).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    (project, sync["id"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_route_needs_a_valid_key_and_a_high_enough_role() {
    let app = spawn_app_with(true, |_| {}).await;
    let repo = small_repo();
    let (project, sync) = synced_project(&app, "guarded", &repo).await;
    let routes = [
        ("GET", "/projects".to_string()),
        ("POST", "/projects".to_string()),
        ("GET", format!("/projects/{project}")),
        ("GET", format!("/projects/{project}/syncs")),
        ("POST", format!("/projects/{project}/syncs")),
        ("GET", format!("/projects/{project}/branches")),
        ("GET", format!("/projects/{project}/memory")),
        ("POST", format!("/projects/{project}/memory/restore")),
        ("POST", format!("/projects/{project}/search")),
        ("GET", format!("/projects/{project}/embeddings")),
        ("POST", format!("/projects/{project}/embeddings/backfill")),
        ("GET", format!("/projects/{project}/symbols")),
        (
            "GET",
            format!("/projects/{project}/symbols/src%2Flib.rs%23secret/references"),
        ),
        (
            "GET",
            format!("/projects/{project}/dependencies?path=src/lib.rs"),
        ),
        ("GET", "/syncs".to_string()),
        ("GET", format!("/syncs/{sync}")),
        ("POST", format!("/syncs/{sync}/cancel")),
        ("POST", format!("/syncs/{sync}/retry")),
        ("POST", format!("/syncs/{sync}/discard")),
        ("GET", format!("/syncs/{sync}/events")),
        ("GET", "/session".to_string()),
        ("DELETE", "/session".to_string()),
    ];
    let anonymous = reqwest::Client::new();
    let forged =
        client_with_key("psk_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    for (method, path) in &routes {
        let url = format!("{}{path}", app.base);
        for (who, client) in [("no key", &anonymous), ("a forged key", &forged)] {
            let (status, headers, body) = send(client, method, &url, None).await;
            assert_eq!(status, 401, "{method} {path} with {who}: {body}");
            assert_eq!(body["error"]["code"], "unauthorized", "{body}");
            assert!(headers.contains_key("www-authenticate"), "{method} {path}");
        }
    }
    // The document and the health check are open.
    assert_eq!(
        anonymous
            .get(format!("{}/openapi.yaml", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Roles: read < write < admin.
    let read = client_with_key(&create_key(&app.db, Role::Read).await);
    let write = client_with_key(&create_key(&app.db, Role::Write).await);
    let base = &app.base;
    let (status, _, body) = send(
        &read,
        "GET",
        &format!("{base}/projects/{project}/memory"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = send(
        &read,
        "POST",
        &format!("{base}/projects/{project}/search"),
        Some(json!({"query": "secret", "mode": "keyword"})),
    )
    .await;
    assert_eq!(status, 200, "read may search: {body}");
    for (method, path) in [
        ("POST", format!("/projects/{project}/syncs")),
        ("POST", format!("/syncs/{sync}/cancel")),
        ("POST", "/projects".to_string()),
    ] {
        let (status, _, body) = send(&read, method, &format!("{base}{path}"), None).await;
        assert_eq!(status, 403, "read {method} {path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("role `read`"),
            "{body}"
        );
    }
    let (status, _, body) = send(
        &write,
        "POST",
        &format!("{base}/projects"),
        Some(json!({ "name": "w", "repository": { "provider": "local", "path": repo.path(), "branch": "main" } })),
    )
    .await;
    assert_eq!(
        status, 403,
        "creating a project binds a source: admin only: {body}"
    );
    for path in [
        format!("/syncs/{sync}/retry"),
        format!("/syncs/{sync}/discard"),
    ] {
        let (status, _, body) = send(&write, "POST", &format!("{base}{path}"), None).await;
        assert_eq!(status, 403, "write {path}: {body}");
    }
    let (status, _, body) = send(
        &write,
        "POST",
        &format!("{base}/projects/{project}/syncs"),
        None,
    )
    .await;
    assert_eq!(status, 202, "write may sync: {body}");

    // A revoked key stops working at once.
    let key = create_key(&app.db, Role::Admin).await;
    let client = client_with_key(&key);
    assert_eq!(
        send(&client, "GET", &format!("{base}/projects"), None)
            .await
            .0,
        200
    );
    let admin = projsync_store::Store::from_pool(app.db.admin.clone());
    let principal = app.db.store.authenticate(&key).await.unwrap().unwrap();
    admin
        .revoke_key(principal.key_id, &projsync_store::Actor::cli())
        .await
        .unwrap();
    assert_eq!(
        send(&client, "GET", &format!("{base}/projects"), None)
            .await
            .0,
        401
    );
    // Keys are stored only as a hash.
    let stored: Vec<String> = sqlx::query_scalar("SELECT secret_hash FROM api_keys")
        .fetch_all(&app.db.admin)
        .await
        .unwrap();
    assert!(stored
        .iter()
        .all(|h| h.len() == 64 && !h.starts_with("psk_")));
    assert!(stored.contains(&projsync_store::secret_hash(&key)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_sees_nothing_and_gets_404_never_403() {
    let app = spawn_app_with(true, |_| {}).await;
    let repo = small_repo();
    let (project, sync) = synced_project(&app, "ours", &repo).await;
    let other = client_with_key(&create_tenant_key(&app.db, "rival", Role::Admin).await);
    let base = &app.base;

    let (status, _, list) = send(&other, "GET", &format!("{base}/projects"), None).await;
    assert_eq!((status, list.clone()), (200, json!([])), "{list}");
    let (status, _, list) = send(
        &other,
        "GET",
        &format!("{base}/syncs?status=succeeded"),
        None,
    )
    .await;
    assert_eq!((status, list.clone()), (200, json!([])), "{list}");
    for (method, path) in [
        ("GET", format!("/projects/{project}")),
        ("GET", format!("/projects/{project}/syncs")),
        ("GET", format!("/projects/{project}/memory")),
        ("GET", format!("/projects/{project}/branches")),
        ("GET", format!("/projects/{project}/embeddings")),
        ("GET", format!("/projects/{project}/symbols")),
        (
            "GET",
            format!("/projects/{project}/symbols/src%2Flib.rs%23secret/references"),
        ),
        (
            "GET",
            format!("/projects/{project}/dependencies?path=src/lib.rs"),
        ),
        ("POST", format!("/projects/{project}/syncs")),
        ("POST", format!("/projects/{project}/search")),
        ("GET", format!("/syncs/{sync}")),
        ("GET", format!("/syncs/{sync}/events")),
        ("POST", format!("/syncs/{sync}/cancel")),
        ("POST", format!("/syncs/{sync}/retry")),
        ("POST", format!("/syncs/{sync}/discard")),
    ] {
        let body =
            (method == "POST" && path.ends_with("search")).then(|| json!({"query": "secret"}));
        let (status, _, body) = send(&other, method, &format!("{base}{path}"), body).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
    // A restore of another tenant's sync into one's own project is refused too.
    let (status, _, mine) = send(
        &other,
        "POST",
        &format!("{base}/projects"),
        Some(json!({ "name": "ours", "repository": { "provider": "local", "path": repo.path(), "branch": "main" } })),
    )
    .await;
    assert_eq!(status, 201, "names are per tenant: {mine}");
    let mine = mine["id"].as_str().unwrap();
    let (status, _, body) = send(
        &other,
        "POST",
        &format!("{base}/projects/{mine}/memory/restore"),
        Some(json!({ "sync_id": sync })),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    // The owner still sees its own.
    assert_eq!(app.get(&format!("/projects/{project}")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_holds_for_raw_sql_as_the_application_role() {
    let app = spawn_app_with(true, |_| {}).await;
    let repo = small_repo();
    synced_project(&app, "rls", &repo).await;
    create_tenant_key(&app.db, "rival", Role::Read).await;
    let tables = [
        "projects",
        "repositories",
        "project_syncs",
        "sync_steps",
        "sync_changes",
        "repository_files",
        "memory_entries",
        "memory_chunks",
        "credentials",
        "api_sessions",
        "audit_log",
        "active_memory_entries",
    ];
    let count = |table: &str| format!("SELECT count(*) FROM {table}");
    let mut owner_counts = Vec::new();
    for t in tables {
        let n: i64 = sqlx::query_scalar(&count(t))
            .fetch_one(&app.db.admin)
            .await
            .unwrap();
        owner_counts.push(n);
    }
    assert!(owner_counts[0] > 0 && owner_counts[6] > 0 && owner_counts[7] > 0);

    // The application role, as the API and the workers connect.
    let mut conn = PgConnection::connect(&app.db.url).await.unwrap();
    let who: (String, bool) = sqlx::query_as(
        "SELECT current_user::text, rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(who, ("projsync_app".to_string(), false));
    // A query that forgets its tenant sees nothing at all.
    for t in tables {
        let n: i64 = sqlx::query_scalar(&count(t))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(n, 0, "{t} without a tenant");
    }
    let rival: uuid::Uuid = sqlx::query_scalar("SELECT id FROM tenants WHERE name = 'rival'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let set = |t: String| format!("SELECT set_config('projsync.tenant_id', '{t}', false)");
    // Another tenant sees none of these rows, even unfiltered.
    sqlx::query(&set(rival.to_string()))
        .execute(&mut conn)
        .await
        .unwrap();
    for t in tables {
        // The rival's own trail (its creation, its key) is its own.
        let sql = match t {
            "audit_log" => format!("{} WHERE tenant_id <> '{rival}'", count(t)),
            _ => count(t),
        };
        let n: i64 = sqlx::query_scalar(&sql).fetch_one(&mut conn).await.unwrap();
        assert_eq!(n, 0, "{t} as another tenant");
    }
    // ... and cannot write rows into the default tenant.
    let err = sqlx::query("INSERT INTO projects (id, name, tenant_id) VALUES ($1, 'x', $2)")
        .bind(uuid::Uuid::new_v4())
        .bind(projsync_store::DEFAULT_TENANT.0)
        .execute(&mut conn)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("row-level security"), "{err}");
    let changed = sqlx::query("UPDATE memory_entries SET content = 'pwned'")
        .execute(&mut conn)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(changed, 0);
    // The owning tenant sees exactly what the owner sees.
    sqlx::query(&set(projsync_store::DEFAULT_TENANT.to_string()))
        .execute(&mut conn)
        .await
        .unwrap();
    for (t, expected) in tables.iter().zip(&owner_counts) {
        let n: i64 = sqlx::query_scalar(&count(t))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if *t != "audit_log" && *t != "credentials" && *t != "api_sessions" {
            assert_eq!(n, *expected, "{t} as its tenant");
        }
    }
    // No tenant set: a new row cannot land without one.
    sqlx::query("SELECT set_config('projsync.tenant_id', '', false)")
        .execute(&mut conn)
        .await
        .unwrap();
    let err = sqlx::query("INSERT INTO projects (id, name) VALUES ($1, 'y')")
        .bind(uuid::Uuid::new_v4())
        .execute(&mut conn)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no tenant is set"), "{err}");
    // What the role may not do at all.
    for sql in [
        "SELECT count(*) FROM api_keys",
        "SELECT count(*) FROM projsync_migration_consents",
        "DELETE FROM _sqlx_migrations",
        "UPDATE audit_log SET action = 'x'",
        "DELETE FROM audit_log",
        "INSERT INTO credentials (tenant_id, name, reference) VALUES ('00000000-0000-0000-0000-000000000001', 'x', 'env:HOME')",
        "INSERT INTO tenants (id, name) VALUES (gen_random_uuid(), 'mine')",
        "ALTER TABLE projects DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE projects NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON projects",
        "SET ROLE postgres",
    ] {
        let err = sqlx::query(sql).execute(&mut conn).await;
        assert!(err.is_err(), "{sql} must be refused");
    }
    conn.close().await.ok();

    // Every table of the schema is under forced row-level security, but the
    // tenants' names, the migrator's ledgers and the worker fleet (the
    // deployment's processes: names, hosts, sizes; no tenant's data).
    let unprotected: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') \
           AND NOT (c.relrowsecurity AND c.relforcerowsecurity) ORDER BY 1",
    )
    .fetch_all(&app.db.admin)
    .await
    .unwrap();
    // The migrator's ledgers are the owner's: the application role has no
    // privilege on them at all (checked above).
    assert_eq!(
        unprotected,
        [
            "_sqlx_migrations",
            "projsync_migration_consents",
            "tenants",
            "workers"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sessions_need_their_csrf_token() {
    let app = spawn_app_with(true, |_| {}).await;
    let repo = small_repo();
    let (project, _) = synced_project(&app, "browser", &repo).await;
    let key = create_key(&app.db, Role::Write).await;
    let browser = reqwest::Client::new();
    let base = &app.base;

    let (status, _, body) = send(
        &browser,
        "POST",
        &format!("{base}/session"),
        Some(json!({"key": "psk_nope"})),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let resp = browser
        .post(format!("{base}/session"))
        .json(&json!({ "key": key }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let session: Value = resp.json().await.unwrap();
    assert_eq!(session["tenant"], "default");
    assert_eq!(session["role"], "write");
    let csrf = session["csrf_token"].as_str().unwrap().to_string();
    let cookie = set_cookie.split(';').next().unwrap().to_string();

    let with_cookie = |method: &str, path: &str| {
        browser
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .header("cookie", &cookie)
    };
    let resp = with_cookie("GET", &format!("/projects/{project}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let who: Value = with_cookie("GET", "/session")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who["role"], "write");
    // A forged cross-site request carries the cookie but not the token.
    let resp = with_cookie("POST", &format!("/projects/{project}/syncs"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = with_cookie("POST", &format!("/projects/{project}/syncs"))
        .header("x-csrf-token", "not-the-token")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = with_cookie("POST", &format!("/projects/{project}/syncs"))
        .header("x-csrf-token", &csrf)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    // Signing out ends the session.
    let resp = with_cookie("DELETE", "/session")
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = with_cookie("GET", &format!("/projects/{project}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Only hashes are stored.
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT id_hash, csrf_hash FROM api_sessions")
        .fetch_all(&app.db.admin)
        .await
        .unwrap();
    assert!(rows
        .iter()
        .all(|(id, c)| id.len() == 64 && c.len() == 64 && *c != csrf));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_repositories_only_at_the_top_of_an_allowed_root() {
    let root = tempfile_dir("root");
    let outside = small_repo();
    let app = spawn_app_with(false, {
        let root = root.clone();
        move |s| s.sources.local.allowed_roots = vec![root.to_string_lossy().into_owned()]
    })
    .await;
    let inside = root.join("app");
    std::fs::create_dir_all(&inside).unwrap();
    let git = |args: &[&str]| {
        assert!(std::process::Command::new("git")
            .arg("-C")
            .arg(&inside)
            .args(args)
            .status()
            .unwrap()
            .success());
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(inside.join("src")).unwrap();
    std::fs::write(inside.join("src/lib.rs"), "x\n").unwrap();
    git(&["add", "-A"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t.invalid",
        "commit",
        "-qm",
        "c",
    ]);
    std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
    std::os::unix::fs::symlink(&inside, root.join("alias")).unwrap();

    let app = &app;
    let create = |name: &str, path: String| {
        let body = json!({ "name": name, "repository": { "provider": "local", "path": path, "branch": "main" } });
        async move { app.post("/projects", body).await }
    };
    let refused = [
        ("subdir", inside.join("src").to_string_lossy().into_owned()),
        ("gitdir", inside.join(".git").to_string_lossy().into_owned()),
        ("dotdot", format!("{}/app/../app", root.display())),
        (
            "symlink-out",
            root.join("escape").to_string_lossy().into_owned(),
        ),
        ("outside", outside.path().to_string_lossy().into_owned()),
        (
            "missing",
            root.join("nothing-here").to_string_lossy().into_owned(),
        ),
        (
            "file",
            inside.join("src/lib.rs").to_string_lossy().into_owned(),
        ),
        ("etc", "/etc".into()),
    ];
    let mut messages = Vec::new();
    for (name, path) in &refused {
        let (status, body) = create(name, path.clone()).await;
        assert_eq!(status, 422, "{name}: {body}");
        let message = body["error"]["message"]
            .as_str()
            .unwrap()
            .replace(path.as_str(), "PATH");
        messages.push(message);
    }
    // One text for every refusal: nothing tells which server paths exist.
    messages.dedup();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].contains("sources.local.allowed_roots"),
        "{}",
        messages[0]
    );
    // The top of a repository under the root is fine, through a symlink inside it too.
    assert_eq!(
        create("top", inside.to_string_lossy().into_owned()).await.0,
        201
    );
    assert_eq!(
        create("alias", root.join("alias").to_string_lossy().into_owned())
            .await
            .0,
        201
    );

    // With no roots configured (the default), no local repository at all.
    let closed = spawn_app_with(false, |s| s.sources.local.allowed_roots = vec![]).await;
    let (status, body) = closed
        .post(
            "/projects",
            json!({ "name": "n", "repository": { "provider": "local", "path": inside, "branch": "main" } }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not enabled"),
        "{body}"
    );
    std::fs::remove_dir_all(&root).ok();
}

fn tempfile_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir()
        .canonicalize()
        .unwrap()
        .join(format!("projsync-{tag}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_name_registered_credentials_and_never_a_variable_or_a_file() {
    // Nothing here may reach GitHub: a request would fail as unavailable.
    let app = spawn_app_with(false, |s| s.github.api_url = "http://127.0.0.1:9".into()).await;
    let github = |credential: Value, field: &str| {
        let mut repository =
            json!({ "provider": "github", "repository": "acme/widgets", "branch": "main" });
        repository[field] = credential;
        json!({ "name": "gh", "repository": repository })
    };
    for (value, field) in [
        (json!("env:PROJSYNC__DATABASE__URL"), "credential"),
        (json!("file:/etc/hostname"), "credentials_ref"),
        (json!("app:1:2:file:/etc/shadow"), "credential"),
        (json!("../../etc/passwd"), "credential"),
    ] {
        let (status, body) = app.post("/projects", github(value.clone(), field)).await;
        assert_eq!(status, 422, "{value}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("credential add"),
            "{body}"
        );
    }
    let (status, body) = app
        .post("/projects", github(json!("unregistered"), "credential"))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no credential named `unregistered`"),
        "{body}"
    );
    // A credential of another tenant is not one of ours.
    let admin = projsync_store::Store::from_pool(app.db.admin.clone());
    let actor = projsync_store::Actor::cli();
    let rival = admin.create_tenant("rival", &actor).await.unwrap();
    admin
        .add_credential(&rival, "theirs", "env:CARGO_PKG_NAME", &actor)
        .await
        .unwrap();
    let (status, body) = app
        .post("/projects", github(json!("theirs"), "credential"))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no credential named `theirs`"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_records_every_change_with_its_key() {
    let app = spawn_app_with(true, |_| {}).await;
    let repo = small_repo();
    let (project, sync) = synced_project(&app, "audited", &repo).await;
    assert_eq!(
        app.post(
            &format!("/projects/{project}/memory/restore"),
            json!({ "sync_id": sync })
        )
        .await
        .0,
        202
    );
    let admin = projsync_store::Store::from_pool(app.db.admin.clone());
    let tenant = admin.tenant_by_name("default").await.unwrap();
    let trail = admin.audit_log(Some(&tenant), 50).await.unwrap();
    let actions: Vec<&str> = trail.iter().rev().map(|a| a.action.as_str()).collect();
    for expected in [
        "key.create",
        "project.create",
        "sync.enqueue",
        "memory.restore",
    ] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
    let create = trail.iter().find(|a| a.action == "project.create").unwrap();
    assert!(
        create.actor.starts_with("key:") && create.key_id.is_some(),
        "{create:?}"
    );
    assert_eq!(create.target, format!("project:{project}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let app = spawn_app_with(false, |s| s.api.rate_limit_per_key = 3).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let resp = app
            .http
            .get(format!("{}/projects", app.base))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 {
            retry_after = resp.headers().get("retry-after").cloned();
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let secs: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
    // Another key has its own allowance.
    let other = client_with_key(&create_key(&app.db, Role::Read).await);
    assert_eq!(
        other
            .get(format!("{}/projects", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_manage_tenants_keys_and_credentials_from_the_cli() {
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    let (code, stdout, stderr) = run(projsync(&db, &redis).args(["tenant", "add", "acme"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.trim().parse::<uuid::Uuid>().is_ok(), "{stdout}");
    let (code, _, stderr) = run(projsync(&db, &redis).args(["tenant", "add", "acme"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("already exists"), "{stderr}");
    let (code, _, stderr) = run(projsync(&db, &redis).args(["tenant", "add", "Bad Name"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("not a valid tenant name"), "{stderr}");

    let (code, stdout, stderr) = run(projsync(&db, &redis).args([
        "key", "create", "--tenant", "acme", "--role", "read", "--name", "ci", "--json",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let created: Value = serde_json::from_str(&stdout).unwrap();
    let secret = created["key"].as_str().unwrap();
    assert!(secret.starts_with("psk_"));
    let (code, _, stderr) = run(projsync(&db, &redis).args(["key", "create"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("--tenant"), "{stderr}");

    // The key authenticates; `key list` shows its last use but never the key.
    let principal = db.store.authenticate(secret).await.unwrap().unwrap();
    assert_eq!(principal.role, Role::Read);
    let (code, stdout, _) = run(projsync(&db, &redis).args(["key", "list", "--tenant", "acme"]));
    assert_eq!(code, 0);
    assert!(
        stdout.contains("acme") && stdout.contains("ci") && !stdout.contains("never"),
        "{stdout}"
    );
    assert!(!stdout.contains(secret));
    let id = created["id"].as_str().unwrap();
    let (code, _, stderr) = run(projsync(&db, &redis).args(["key", "revoke", id]));
    assert_eq!(code, 0, "{stderr}");
    assert!(db.store.authenticate(secret).await.unwrap().is_none());

    let (code, _, stderr) = run(projsync(&db, &redis).args([
        "credential",
        "add",
        "gh",
        "--tenant",
        "acme",
        "--env",
        "GITHUB_TOKEN",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(projsync(&db, &redis).args([
        "credential",
        "add",
        "app",
        "--tenant",
        "acme",
        "--github-app",
        "12:34",
        "--key-file",
        "/run/secrets/app.pem",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(projsync(&db, &redis).args([
        "credential",
        "add",
        "bad",
        "--tenant",
        "acme",
        "--file",
        "relative.txt",
    ]));
    assert_eq!(code, 2);
    assert!(stderr.contains("absolute"), "{stderr}");
    let (_, stdout, _) = run(projsync(&db, &redis).args(["credential", "list"]));
    assert!(
        stdout.contains("env:GITHUB_TOKEN")
            && stdout.contains("app:12:34:file:/run/secrets/app.pem"),
        "{stdout}"
    );
    let (code, _, stderr) =
        run(projsync(&db, &redis).args(["credential", "remove", "gh", "--tenant", "acme"]));
    assert_eq!(code, 0, "{stderr}");

    let (code, stdout, _) =
        run(projsync(&db, &redis).args(["audit", "--tenant", "acme", "--json"]));
    assert_eq!(code, 0);
    let actions: Vec<String> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        actions,
        [
            "credential.remove",
            "credential.add",
            "credential.add",
            "key.revoke",
            "key.create",
            "tenant.add"
        ]
    );
    assert!(stdout.contains("\"actor\":\"cli:"), "{stdout}");
}
