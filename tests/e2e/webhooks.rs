//! GitHub push webhooks (`POST /api/v1/webhooks/github`) against the real
//! API, Postgres and Redis, with projects on the fake GitHub server: signed
//! deliveries request syncs with trigger `webhook:<delivery>`, unsigned and
//! wrongly signed ones are refused, redeliveries start nothing new, a burst
//! of pushes is one or two syncs that end at the newest head, and a
//! tenant's secret reaches only that tenant's projects.

use crate::helpers::{create_tenant_key, spawn_app_full, TestApp};
use projsync_api::webhooks::sign;
use projsync_sources::{DefaultSources, GitHubConfig};
use projsync_store::{Actor, Store};
use projsync_test_support::{FakeGitHub, GitRepo};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Hooked {
    app: TestApp,
    // Serves the repository for as long as the test runs.
    #[allow(dead_code)]
    fake: FakeGitHub,
    repo: GitRepo,
    /// The `default` tenant's project on acme/widgets, branch main.
    project: String,
    /// The `default` tenant's webhook secret.
    secret: String,
    plain: reqwest::Client,
}

/// The app (with a worker when `worker`) and a project of `default` on the
/// fake GitHub's acme/widgets; `tweak` adjusts the settings.
async fn hooked(worker: bool, tweak: impl FnOnce(&mut projsync::Settings)) -> Hooked {
    let repo = GitRepo::new();
    repo.write("README.md", "# widgets\n")
        .write("src/lib.rs", "pub fn widget() {}\n");
    repo.commit("first");
    repo.git(&["branch", "release"]);
    let fake = FakeGitHub::start("acme", "widgets", repo.path(), None).await;
    let url = fake.base_url();
    let sources = worker.then(|| {
        Arc::new(
            DefaultSources::new(
                GitHubConfig {
                    api_url: url.clone(),
                    request_timeout: Duration::from_secs(5),
                    ..Default::default()
                },
                None,
            )
            .with_local_roots([crate::helpers::local_root()]),
        ) as Arc<dyn projsync_domain::source::SourceFactory>
    });
    let app = spawn_app_full(sources, |s| {
        s.github.api_url = url.clone();
        s.worker.reconcile_interval_ms = 100;
        tweak(s);
    })
    .await;
    let (status, project) = app
        .post(
            "/projects",
            json!({ "name": "widgets", "repository": {
                "provider": "github", "repository": "acme/widgets", "branch": "main" } }),
        )
        .await;
    assert_eq!(status, 201, "{project}");
    let secret = webhook_secret(&app, "default").await;
    Hooked {
        project: project["id"].as_str().unwrap().to_string(),
        app,
        fake,
        repo,
        secret,
        plain: reqwest::Client::new(),
    }
}

/// Create (or rotate) `tenant`'s secret, as `projsync webhook secret` does.
async fn webhook_secret(app: &TestApp, tenant: &str) -> String {
    let admin = Store::from_pool(app.db.admin.clone());
    let tenant = admin.tenant_by_name(tenant).await.unwrap();
    let (secret, _) = admin
        .rotate_webhook_secret(&tenant, &Actor::cli())
        .await
        .unwrap();
    secret
}

fn push(branch: &str, after: &str) -> Value {
    json!({
        "ref": format!("refs/heads/{branch}"),
        "before": "0000000000000000000000000000000000000000",
        "after": after,
        "created": false,
        "deleted": false,
        "forced": false,
        "repository": { "id": 1, "name": "widgets", "full_name": "Acme/Widgets" },
        "commits": [],
    })
}

/// How a delivery is sent.
struct Send<'a> {
    query: &'a str,
    event: &'a str,
    delivery: Option<&'a str>,
    /// Signed with this secret; `None`: no signature header.
    secret: Option<&'a str>,
    content_type: &'a str,
}

impl Default for Send<'_> {
    fn default() -> Self {
        Self {
            query: "",
            event: "push",
            delivery: None,
            secret: None,
            content_type: "application/json",
        }
    }
}

impl Hooked {
    fn url(&self, query: &str) -> String {
        format!("{}/webhooks/github{query}", self.app.base)
    }

    /// A push delivery signed with the tenant's secret.
    async fn deliver(&self, delivery: &str, event: &str, body: &Value) -> (u16, Value) {
        self.send(
            &serde_json::to_vec(body).unwrap(),
            Send {
                event,
                delivery: Some(delivery),
                secret: Some(&self.secret),
                ..Default::default()
            },
        )
        .await
    }

    async fn send(&self, body: &[u8], how: Send<'_>) -> (u16, Value) {
        let mut req = self
            .plain
            .post(self.url(how.query))
            .header("content-type", how.content_type)
            .header("x-github-event", how.event)
            .header("user-agent", "GitHub-Hookshot/test")
            .body(body.to_vec());
        if let Some(d) = how.delivery {
            req = req.header("x-github-delivery", d);
        }
        if let Some(secret) = how.secret {
            req = req.header("x-hub-signature-256", sign(secret.as_bytes(), body));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn syncs_of(&self, project: &str) -> Vec<Value> {
        self.app
            .get_all(&format!("/projects/{project}/syncs"))
            .await
    }

    /// The `projsync_webhook_deliveries_total` sample of `outcome`.
    async fn delivered(&self, outcome: &str) -> f64 {
        let root = self.app.base.trim_end_matches("/api/v1");
        let text = self
            .plain
            .get(format!("{root}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let series = format!("projsync_webhook_deliveries_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {text}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_queues_a_webhook_sync_and_a_redelivery_starts_nothing() {
    let h = hooked(false, |s| {
        s.webhooks.debounce_ms = 60_000;
        s.webhooks.max_body_bytes = 65_536;
    })
    .await;
    let head = h.repo.head();

    let (status, ping) = h
        .deliver(
            "ping-1",
            "ping",
            &json!({ "zen": "Keep it logically awesome.", "hook_id": 1 }),
        )
        .await;
    assert_eq!(status, 200, "{ping}");
    assert_eq!(ping["outcome"], "ignored", "{ping}");

    let (status, first) = h.deliver("d-1", "push", &push("main", &head)).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["delivery"], "d-1");
    assert_eq!(first["event"], "push");
    assert_eq!(first["outcome"], "queued", "{first}");
    let syncs = first["syncs"].as_array().unwrap();
    assert_eq!(syncs.len(), 1, "{first}");
    assert_eq!(syncs[0]["project_id"], h.project.as_str());
    assert_eq!(syncs[0]["outcome"], "queued");
    let sync_id = syncs[0]["sync_id"].as_str().unwrap().to_string();
    let (status, sync) = h.app.get(&format!("/syncs/{sync_id}")).await;
    assert_eq!(status, 200, "{sync}");
    assert_eq!(sync["trigger"], "webhook:d-1", "{sync}");
    assert_eq!(sync["status"], "queued", "{sync}");
    assert_eq!(sync["branch"], "main", "{sync}");

    // GitHub's redelivery: the same id, nothing new, what the first did.
    let (status, again) = h.deliver("d-1", "push", &push("main", &head)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["outcome"], "duplicate", "{again}");
    assert_eq!(again["syncs"], json!([]));
    assert_eq!(again["original"]["outcome"], "queued", "{again}");
    assert_eq!(again["original"]["syncs"][0]["sync_id"], sync_id.as_str());
    assert_eq!(h.syncs_of(&h.project).await.len(), 1);

    // Another push within the debounce joins the queued sync.
    let (status, next) = h.deliver("d-2", "push", &push("main", &head)).await;
    assert_eq!(status, 202, "{next}");
    assert_eq!(next["outcome"], "coalesced", "{next}");
    assert_eq!(next["syncs"][0]["sync_id"], sync_id.as_str());
    assert_eq!(h.syncs_of(&h.project).await.len(), 1);

    // Bad input is a 4xx, never a 500, and requests nothing.
    let body = serde_json::to_vec(&push("main", &head)).unwrap();
    let signed = |delivery| Send {
        delivery,
        secret: Some(&h.secret),
        ..Default::default()
    };
    let (status, e) = h.send(&body, signed(None)).await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("X-GitHub-Delivery"),
        "{e}"
    );
    let (status, e) = h.send(&body, signed(Some("not a delivery id!"))).await;
    assert_eq!(status, 400, "{e}");
    let (status, e) = h.send(b"{not json", signed(Some("d-3"))).await;
    assert_eq!(status, 400, "{e}");
    let (status, e) = h
        .send(b"{\"ref\": \"refs/heads/main\"}", signed(Some("d-4")))
        .await;
    assert_eq!(status, 400, "{e}");
    let (status, e) = h
        .send(
            b"payload=%7B%7D",
            Send {
                content_type: "application/x-www-form-urlencoded",
                ..signed(Some("d-5"))
            },
        )
        .await;
    assert_eq!(status, 415, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("application/json"),
        "{e}"
    );
    let (status, e) = h
        .send(
            &body,
            Send {
                query: "?tenant=default&x=1",
                ..signed(Some("d-6"))
            },
        )
        .await;
    assert_eq!(status, 400, "{e}");
    let mut large = push("main", &head);
    large["padding"] = json!("x".repeat(70_000));
    let (status, e) = h
        .send(&serde_json::to_vec(&large).unwrap(), signed(Some("d-7")))
        .await;
    assert_eq!(status, 413, "{e}");
    // A failed delivery id is not remembered: sent properly, it is handled.
    let (status, ok) = h.deliver("d-3", "push", &push("main", &head)).await;
    assert_eq!(status, 202, "{ok}");
    assert_eq!(ok["outcome"], "coalesced", "{ok}");
    assert_eq!(h.syncs_of(&h.project).await.len(), 1);

    assert_eq!(h.delivered("queued").await, 1.0);
    assert_eq!(h.delivered("coalesced").await, 2.0);
    assert_eq!(h.delivered("duplicate").await, 1.0);
    assert_eq!(h.delivered("ignored").await, 1.0);
    assert_eq!(h.delivered("invalid").await, 7.0);
    assert_eq!(h.delivered("unauthorized").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_and_wrongly_signed_deliveries_are_refused() {
    let h = hooked(false, |_| {}).await;
    let body = serde_json::to_vec(&push("main", &h.repo.head())).unwrap();
    let wrong = "0123456789abcdef0123456789abcdef0123456789abcdef";
    for (n, (query, secret)) in [
        ("", None),
        ("", Some(wrong)),
        ("?tenant=default", None),
        ("?tenant=default", Some(wrong)),
        ("?tenant=no-such-tenant", Some(h.secret.as_str())),
    ]
    .into_iter()
    .enumerate()
    {
        let delivery = format!("u-{n}");
        let (status, e) = h
            .send(
                &body,
                Send {
                    query,
                    delivery: Some(&delivery),
                    secret,
                    ..Default::default()
                },
            )
            .await;
        assert_eq!(status, 401, "{query} {secret:?}: {e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains("projsync webhook secret"), "{e}");
        assert!(!message.contains(&h.secret), "{e}");
    }
    // A signature of another body.
    let other = serde_json::to_vec(&push("release", &h.repo.head())).unwrap();
    let resp = h
        .plain
        .post(h.url(""))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", "u-9")
        .header("x-hub-signature-256", sign(h.secret.as_bytes(), &other))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(h.syncs_of(&h.project).await.is_empty());
    assert_eq!(h.delivered("unauthorized").await, 6.0);

    // The secret rotated: the old one is refused, the new one accepted.
    let old = h.secret.clone();
    let new = webhook_secret(&h.app, "default").await;
    let (status, e) = h
        .send(
            &body,
            Send {
                delivery: Some("u-10"),
                secret: Some(&old),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(status, 401, "{e}");
    let (status, ok) = h
        .send(
            &body,
            Send {
                query: "?tenant=default",
                delivery: Some("u-11"),
                secret: Some(&new),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(status, 202, "{ok}");
    // The rotation is in the audit trail, the secret is not.
    let admin = Store::from_pool(h.app.db.admin.clone());
    let audit = admin.audit_log(None, 50).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert!(actions.contains(&"webhook_secret.create"), "{actions:?}");
    assert!(actions.contains(&"webhook_secret.rotate"), "{actions:?}");
    assert!(!format!("{audit:?}").contains(&new));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_elsewhere_are_acknowledged_and_ignored() {
    let h = hooked(false, |_| {}).await;
    let head = h.repo.head();
    let mut unknown = push("main", &head);
    unknown["repository"] = json!({ "id": 99, "full_name": "acme/gadgets" });
    let mut deleted = push("main", &head);
    deleted["deleted"] = json!(true);
    let mut tag = push("main", &head);
    tag["ref"] = json!("refs/tags/v1");
    let repo = json!({ "id": 1, "full_name": "acme/widgets" });
    for (n, (event, body, says)) in [
        ("push", push("release", &head), "no project"),
        ("push", unknown, "acme/gadgets"),
        ("push", deleted, "deleted"),
        ("push", tag, "not to a branch"),
        (
            "delete",
            json!({ "ref": "main", "ref_type": "branch", "repository": repo }),
            "widgets",
        ),
        (
            "create",
            json!({ "ref": "v2", "ref_type": "tag", "repository": repo }),
            "tag",
        ),
        ("issues", json!({ "action": "opened" }), "issues"),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, answer) = h.deliver(&format!("i-{n}"), event, &body).await;
        assert_eq!(status, 200, "{event}: {answer}");
        assert_eq!(answer["outcome"], "ignored", "{event}: {answer}");
        assert_eq!(answer["syncs"], json!([]), "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{answer}"
        );
    }
    assert!(h.syncs_of(&h.project).await.is_empty());

    // The branch created (again) on GitHub: a sync.
    let (status, created) = h
        .deliver(
            "i-create",
            "create",
            &json!({ "ref": "main", "ref_type": "branch", "repository": repo }),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["outcome"], "queued", "{created}");
    let syncs = h.syncs_of(&h.project).await;
    assert_eq!(syncs.len(), 1);
    assert_eq!(syncs[0]["trigger"], "webhook:i-create");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_secret_reaches_only_its_own_projects() {
    let h = hooked(false, |_| {}).await;
    // Tenant `other` has a project on the same repository, and a secret.
    let other_key = create_tenant_key(&h.app.db, "other", projsync_domain::Role::Admin).await;
    let other_http = crate::helpers::client_with_key(&other_key);
    let resp = other_http
        .post(format!("{}/projects", h.app.base))
        .json(&json!({ "name": "theirs", "repository": {
            "provider": "github", "repository": "acme/widgets", "branch": "main" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let theirs: Value = resp.json().await.unwrap();
    let theirs = theirs["id"].as_str().unwrap().to_string();
    let other_secret = webhook_secret(&h.app, "other").await;
    let body = serde_json::to_vec(&push("main", &h.repo.head())).unwrap();
    let other_syncs = || async {
        let resp = other_http
            .get(format!("{}/projects/{theirs}/syncs", h.app.base))
            .send()
            .await
            .unwrap();
        let list: Value = resp.json().await.unwrap();
        list.as_array().unwrap().clone()
    };

    // `other`'s secret, named for `default`: refused.
    let (status, e) = h
        .send(
            &body,
            Send {
                query: "?tenant=default",
                delivery: Some("t-1"),
                secret: Some(&other_secret),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(status, 401, "{e}");
    // Without `?tenant=`, `other`'s secret is `other`'s delivery: its
    // project syncs, `default`'s does not.
    let (status, answer) = h
        .send(
            &body,
            Send {
                delivery: Some("t-2"),
                secret: Some(&other_secret),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer["syncs"][0]["project_id"],
        theirs.as_str(),
        "{answer}"
    );
    assert!(h.syncs_of(&h.project).await.is_empty());
    assert_eq!(other_syncs().await.len(), 1);

    // `default`'s secret (and its tenant by id): only `default`'s project.
    let tenant_id = projsync_store::DEFAULT_TENANT.to_string();
    let (status, answer) = h
        .send(
            &body,
            Send {
                query: &format!("?tenant={tenant_id}"),
                delivery: Some("t-2"),
                secret: Some(&h.secret),
                ..Default::default()
            },
        )
        .await;
    // The same delivery id in another tenant is a delivery of its own.
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["outcome"], "queued", "{answer}");
    assert_eq!(answer["syncs"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(answer["syncs"][0]["project_id"], h.project.as_str());
    assert_eq!(other_syncs().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_sixteen_tenants_secrets_a_delivery_must_name_its_tenant() {
    let h = hooked(false, |_| {}).await;
    let admin = Store::from_pool(h.app.db.admin.clone());
    // `default` has a secret: 16 more tenants with one make 17.
    for n in 0..projsync_api::webhooks::MAX_SECRETS_TRIED {
        let tenant = admin
            .create_tenant(&format!("t{n}"), &Actor::cli())
            .await
            .unwrap();
        admin
            .rotate_webhook_secret(&tenant, &Actor::cli())
            .await
            .unwrap();
    }
    let body = serde_json::to_vec(&push("main", &h.repo.head())).unwrap();
    let (status, e) = h
        .send(
            &body,
            Send {
                delivery: Some("many-1"),
                secret: Some(&h.secret),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(status, 401, "{e}");
    assert!(e.to_string().contains("?tenant=NAME"), "{e}");
    assert!(h.syncs_of(&h.project).await.is_empty());
    // Named, the same delivery is checked against its tenant's secret.
    let (status, answer) = h
        .send(
            &body,
            Send {
                query: "?tenant=default",
                delivery: Some("many-1"),
                secret: Some(&h.secret),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(status, 202, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_pushes_is_one_or_two_syncs_that_end_at_the_newest_head() {
    // The burst must fit in the debounce for a single sync; a push that
    // lands while the sync runs asks for one more after it.
    let h = hooked(true, |s| s.webhooks.debounce_ms = 4000).await;
    let first = h.app.sync(&h.project, None).await;
    assert_eq!(first["status"], "succeeded", "{first}");

    let started = Instant::now();
    for n in 0..20 {
        h.repo
            .write(&format!("src/file{n}.rs"), format!("pub fn f{n}() {{}}\n"));
        h.repo
            .write("src/lib.rs", format!("pub fn widget() -> u32 {{ {n} }}\n"));
        let head = h.repo.commit(&format!("push {n}"));
        let (status, answer) = h
            .deliver(&format!("burst-{n}"), "push", &push("main", &head))
            .await;
        assert_eq!(status, 202, "{answer}");
        assert!(
            matches!(
                answer["outcome"].as_str(),
                Some("queued" | "coalesced" | "wanted")
            ),
            "{answer}"
        );
    }
    let burst = started.elapsed();
    let newest = h.repo.head();

    // Wait until every webhook sync has ended and none is queued or running.
    let deadline = Instant::now() + Duration::from_secs(90);
    let hooked_syncs = loop {
        let syncs = h.syncs_of(&h.project).await;
        let webhook: Vec<Value> = syncs
            .into_iter()
            .filter(|s| s["trigger"].as_str().unwrap_or("").starts_with("webhook:"))
            .collect();
        let ended = webhook.iter().all(|s| {
            matches!(
                s["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        });
        let at_newest = webhook
            .iter()
            .any(|s| s["status"] == "succeeded" && s["head_commit"] == newest.as_str());
        if !webhook.is_empty() && ended && at_newest {
            break webhook;
        }
        assert!(
            Instant::now() < deadline,
            "the burst ({burst:?}) did not end at {newest}: {webhook:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        (1..=2).contains(&hooked_syncs.len()),
        "a burst of 20 pushes in {burst:?} made {} syncs: {hooked_syncs:#?}",
        hooked_syncs.len()
    );
    assert!(hooked_syncs.iter().all(|s| s["status"] == "succeeded"));
    // The oldest is the first delivery's.
    assert_eq!(
        hooked_syncs.last().unwrap()["trigger"],
        "webhook:burst-0",
        "{hooked_syncs:#?}"
    );
    let entries = h.app.active_entries(&h.project).await;
    assert_eq!(
        entries,
        crate::helpers::expected_entries(h.repo.files_at("HEAD"), &[])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_command_prints_a_secret_that_signs_deliveries() {
    use crate::cli::{projsync, run};
    let h = hooked(false, |_| {}).await;
    let (db, redis) = (&h.app.db, &h.app.redis);

    let (code, stdout, stderr) = run(projsync(db, redis).args(["webhook", "secret"]));
    assert_ne!(code, 0, "{stdout}");
    assert!(stderr.contains("--tenant"), "{stderr}");

    let (code, stdout, stderr) =
        run(projsync(db, redis).args(["webhook", "secret", "--tenant", "default"]));
    assert_eq!(code, 0, "{stderr}");
    let secret = stdout.trim();
    assert_eq!(secret.len(), 64, "{stdout}");
    assert!(stderr.contains("rotated"), "{stderr}");
    assert!(
        stderr.contains("/api/v1/webhooks/github?tenant=default"),
        "{stderr}"
    );
    assert!(stderr.contains("application/json"), "{stderr}");
    // The rotation replaced the test's secret.
    let body = serde_json::to_vec(&push("main", &h.repo.head())).unwrap();
    let signed = |delivery, secret| Send {
        delivery: Some(delivery),
        secret: Some(secret),
        ..Default::default()
    };
    let (status, e) = h.send(&body, signed("c-1", &h.secret)).await;
    assert_eq!(status, 401, "{e}");
    let (status, ok) = h.send(&body, signed("c-2", secret)).await;
    assert_eq!(status, 202, "{ok}");

    let (code, stdout, stderr) = run(projsync(db, redis)
        .env(
            "PROJSYNC__WEBHOOKS__PUBLIC_URL",
            "https://projsync.example.com/",
        )
        .args(["webhook", "secret", "--tenant", "default", "--json"]));
    assert_eq!(code, 0, "{stderr}");
    let printed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed["tenant"], "default");
    assert_eq!(
        printed["url"],
        "https://projsync.example.com/api/v1/webhooks/github?tenant=default"
    );
    assert_eq!(printed["content_type"], "application/json");
    assert_ne!(printed["secret"], secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_past_the_retention_are_pruned_and_handled_again() {
    // Retention 0: every delivery prunes the ones before it.
    let h = hooked(false, |s| s.webhooks.delivery_retention_hours = 0).await;
    let body = push("main", &h.repo.head());
    let (status, first) = h.deliver("o-1", "push", &body).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["outcome"], "queued", "{first}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (status, again) = h.deliver("o-1", "push", &body).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["outcome"], "coalesced", "{again}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries")
        .fetch_one(&h.app.db.admin)
        .await
        .unwrap();
    assert_eq!(rows, 1, "the older rows were pruned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_handler_died_is_handled_again_after_a_minute() {
    let h = hooked(false, |_| {}).await;
    // Rows without outcome, as a process that died mid-delivery leaves them.
    for (id, age) in [("a-1", "2 minutes"), ("a-2", "1 second")] {
        sqlx::query(
            "INSERT INTO webhook_deliveries (tenant_id, delivery_id, event, received_at) \
             VALUES ($1, $2, 'push', now() - $3::interval)",
        )
        .bind(projsync_store::DEFAULT_TENANT.0)
        .bind(id)
        .bind(age)
        .execute(&h.app.db.admin)
        .await
        .unwrap();
    }
    let body = push("main", &h.repo.head());
    let (status, taken) = h.deliver("a-1", "push", &body).await;
    assert_eq!(status, 202, "{taken}");
    assert_eq!(taken["outcome"], "queued", "{taken}");
    let (status, busy) = h.deliver("a-2", "push", &body).await;
    assert_eq!(status, 200, "{busy}");
    assert_eq!(busy["outcome"], "duplicate", "{busy}");
    assert_eq!(busy["original"]["outcome"], Value::Null, "{busy}");
    assert!(
        busy["message"].as_str().unwrap().contains("being handled"),
        "{busy}"
    );
    assert_eq!(h.syncs_of(&h.project).await.len(), 1);
}
