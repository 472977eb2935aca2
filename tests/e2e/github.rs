//! The GitHub source, through octocrab, against the fake GitHub server of
//! test-support. The fake speaks the real REST shapes and headers and serves
//! a real Git repository built in the test.
//!
//! Tokens: the registered credential is `env:CARGO_PKG_NAME`, an environment
//! variable that cargo sets for every test process (value `projsync`).
//! Reading it needs no `set_var`, which would race with the parallel tests.

use crate::helpers::{expected_entries, spawn_app_full, CountingSources, TestApp};
use projsync_sources::{DefaultSources, GitHubConfig};
use projsync_test_support::{FakeGitHub, Fault, GitRepo};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "projsync";
const CREDENTIALS: &str = "env:CARGO_PKG_NAME";

struct Gh {
    app: TestApp,
    fake: FakeGitHub,
    sources: CountingSources,
    repo: GitRepo,
}

async fn github_app(archive_min_files: u64) -> Gh {
    let repo = GitRepo::new();
    repo.write("README.md", "# widgets\n")
        .write("src/lib.rs", "pub fn widget() {}\n")
        .write("src/deep/nested/mod.rs", "mod x;\n")
        .write("docs/with space.md", "spaces\n")
        .write("unicode/ünï ✓.txt", "ünïcödé\n")
        .write("empty.txt", "")
        .write("logo.png", b"\x89PNG\0\0binary")
        .write("Cargo.lock", "# ignored\n")
        .symlink("README.md", "link");
    repo.commit("first");
    repo.git(&["branch", "feature/x"]);
    repo.git(&["branch", "release"]);
    let fake = FakeGitHub::start("acme", "widgets", repo.path(), Some(TOKEN)).await;
    let url = fake.base_url();
    let app = spawn_app_full(None, |s| {
        s.github.api_url = url.clone();
        s.sync.archive_min_files = archive_min_files;
    })
    .await;
    // The worker reads through a counting wrapper over the real sources.
    let conn = app.settings.queue_options().connect().await.unwrap();
    let inner = DefaultSources::new(
        GitHubConfig {
            api_url: url,
            request_timeout: Duration::from_secs(5),
            ..Default::default()
        },
        Some((conn, app.settings.redis.namespace.clone())),
    )
    .with_local_roots([crate::helpers::local_root()]);
    let counting = CountingSources::wrapping(Arc::new(inner));
    projsync::app::spawn_worker_with(
        &app.settings,
        app.db.store.clone(),
        Arc::new(counting.clone()),
        app.shutdown_token(),
    )
    .await
    .unwrap();
    Gh {
        app,
        fake,
        sources: counting,
        repo,
    }
}

async fn connect(
    gh: &Gh,
    name: &str,
    repository: &str,
    credentials: &str,
) -> (u16, serde_json::Value) {
    // An operator registers where the token is; the project names it.
    let credential = register_credential(&gh.app, credentials).await;
    gh.app
        .post(
            "/projects",
            json!({ "name": name, "repository": {
                "provider": "github", "repository": repository, "branch": "main",
                "credential": credential } }),
        )
        .await
}

/// Register `reference` as a credential of the `default` tenant (as
/// `projsync credential add` does); returns its name.
pub async fn register_credential(app: &TestApp, reference: &str) -> String {
    let name = format!("c-{}", &projsync_domain::content_hash(reference)[..12]);
    let admin = projsync_store::Store::from_pool(app.db.admin.clone());
    let tenant = admin.tenant_by_name("default").await.unwrap();
    admin
        .add_credential(&tenant, &name, reference, &projsync_store::Actor::cli())
        .await
        .unwrap();
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_sync_equals_local_sync_and_resyncs_read_only_changes() {
    let gh = github_app(1000).await;
    let (status, project) = connect(&gh, "gh", "acme/widgets", CREDENTIALS).await;
    assert_eq!(status, 201, "{project}");
    let project = project["id"].as_str().unwrap().to_string();
    let local = gh.app.create_project("local", gh.repo.path(), "main").await;

    let a = gh.app.sync(&project, None).await;
    assert_eq!(a["status"], "succeeded", "{a}");
    let b = gh.app.sync(&local, None).await;
    assert_eq!(b["status"], "succeeded", "{b}");
    let entries = gh.app.active_entries(&project).await;
    assert_eq!(entries, gh.app.active_entries(&local).await);
    assert_eq!(
        entries,
        expected_entries(gh.repo.files_at("HEAD"), &["logo.png", "Cargo.lock"])
    );
    assert_eq!(
        a["stats"]["skipped_by_reason"],
        b["stats"]["skipped_by_reason"]
    );

    // Nothing changed: at most two requests.
    gh.fake.reset_counts();
    let same = gh.app.sync(&project, None).await;
    assert_eq!(same["outcome"], "unchanged");
    assert!(gh.fake.total_requests() <= 2, "{:?}", gh.fake.requests());

    // One file changed: at most four requests, one blob.
    gh.repo.write("src/lib.rs", "pub fn widget() -> u8 { 1 }\n");
    gh.repo.commit("edit");
    gh.fake.reset_counts();
    gh.sources.take_reads();
    let one = gh.app.sync(&project, None).await;
    assert_eq!(one["status"], "succeeded", "{one}");
    assert!(gh.fake.total_requests() <= 4, "{:?}", gh.fake.requests());
    assert_eq!(gh.fake.request_count("blob"), 1);
    assert_eq!(gh.sources.take_reads().len(), 1);
    assert_eq!(
        gh.app.active_entries(&project).await,
        expected_entries(gh.repo.files_at("HEAD"), &["logo.png", "Cargo.lock"])
    );

    // Branches, paginated one per page.
    gh.fake.set_page_size_cap(1);
    let (status, branches) = gh.app.get(&format!("/projects/{project}/branches")).await;
    assert_eq!(status, 200, "{branches}");
    let names: Vec<&str> = branches
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["feature/x", "main", "release"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_import_uses_the_tarball_and_truncated_trees_use_the_comparison() {
    let gh = github_app(3).await;
    let (status, project) = connect(&gh, "gh", "acme/widgets", CREDENTIALS).await;
    assert_eq!(status, 201, "{project}");
    let project = project["id"].as_str().unwrap().to_string();
    gh.fake.reset_counts();
    let sync = gh.app.sync(&project, None).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    let counts = gh.fake.requests();
    assert_eq!(counts.get("blob"), None, "{counts:?}");
    assert_eq!(counts.get("tarball"), Some(&1), "{counts:?}");
    assert!(gh.fake.total_requests() <= 5, "{counts:?}");
    let expected = expected_entries(gh.repo.files_at("HEAD"), &["logo.png", "Cargo.lock"]);
    assert_eq!(gh.app.active_entries(&project).await, expected);

    // A tree GitHub truncates is rebuilt from the stored tree and the
    // comparison: the truncated listing, the comparison, then root, src,
    // src/deep and src/deep/nested only.
    gh.fake.set_truncate_threshold(Some(2));
    gh.repo.write("src/deep/nested/new.rs", "// new\n");
    gh.repo.commit("new file");
    gh.fake.reset_counts();
    let sync = gh.app.sync(&project, None).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    assert_eq!(
        gh.fake.request_count("compare"),
        1,
        "{:?}",
        gh.fake.requests()
    );
    assert!(
        gh.fake.request_count("tree") <= 5,
        "{:?}",
        gh.fake.requests()
    );
    assert_eq!(
        gh.app.active_entries(&project).await,
        expected_entries(gh.repo.files_at("HEAD"), &["logo.png", "Cargo.lock"])
    );

    // Again after one deep change: only the changed directories are listed.
    gh.repo.write("src/deep/nested/mod.rs", "mod y;\n");
    gh.repo.commit("deep change");
    gh.fake.reset_counts();
    let sync = gh.app.sync(&project, None).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    assert!(
        gh.fake.request_count("tree") <= 5,
        "{:?}",
        gh.fake.requests()
    );
    assert_eq!(
        gh.app.active_entries(&project).await,
        expected_entries(gh.repo.files_at("HEAD"), &["logo.png", "Cargo.lock"])
    );

    // A branch behind the stored commit: the comparison cannot list the way
    // there, so the truncated tree is walked instead, with the same result.
    gh.fake.reset_counts();
    let sync = gh.app.sync(&project, Some("release")).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    assert_eq!(gh.fake.request_count("compare"), 1);
    assert_eq!(
        gh.app.active_entries(&project).await,
        expected_entries(gh.repo.files_at("release"), &["logo.png", "Cargo.lock"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_is_survived_within_budget() {
    let gh = github_app(1000).await;
    let (status, project) = connect(&gh, "gh", "acme/widgets", CREDENTIALS).await;
    assert_eq!(status, 201, "{project}");
    let project = project["id"].as_str().unwrap().to_string();
    assert_eq!(gh.app.sync(&project, None).await["status"], "succeeded");

    let faults = [
        (
            "5xx burst",
            Fault::ServerErrors {
                count: 3,
                status: 502,
            },
        ),
        (
            "secondary limit",
            Fault::SecondaryRateLimit {
                retry_after_secs: 1,
            },
        ),
        (
            "429",
            Fault::TooManyRequests {
                retry_after_secs: 1,
            },
        ),
        (
            "primary exhausted",
            Fault::ExhaustPrimary { reset_in_secs: 2 },
        ),
        (
            "slow",
            Fault::Slow {
                count: 3,
                delay_ms: 300,
            },
        ),
        ("dropped connections", Fault::DropConnection { count: 2 }),
    ];
    for (i, (name, fault)) in faults.into_iter().enumerate() {
        gh.repo.write("src/lib.rs", format!("// change {i}\n"));
        gh.repo.commit(name);
        gh.fake.reset_counts();
        gh.fake.inject(fault);
        let started = std::time::Instant::now();
        let sync = gh.app.sync(&project, None).await;
        assert_eq!(sync["status"], "succeeded", "{name}: {sync}");
        assert_eq!(
            gh.app.active_entries(&project).await,
            expected_entries(gh.repo.files_at("HEAD"), &["logo.png", "Cargo.lock"]),
            "{name}"
        );
        // 4 requests for a one-file resync, plus the faulted ones and their retries.
        let total = gh.fake.total_requests();
        assert!(total <= 10, "{name}: {:?}", gh.fake.requests());
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{name} took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_errors_say_what_to_do() {
    let gh = github_app(1000).await;
    let cred = register_credential(&gh.app, CREDENTIALS).await;
    let (status, err) = connect(&gh, "nope", "acme/nope", CREDENTIALS).await;
    assert_eq!(status, 422, "{err}");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("repository acme/nope not found, or the token cannot read it"),
        "{msg}"
    );

    let (status, err) = connect(&gh, "badtoken", "acme/widgets", "env:CARGO_PKG_VERSION").await;
    assert_eq!(status, 422, "{err}");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(msg.contains("rejected the credentials"), "{msg}");

    let (status, err) = connect(
        &gh,
        "unset",
        "acme/widgets",
        "env:PROJSYNC_SURELY_UNSET_VARIABLE",
    )
    .await;
    assert_eq!(status, 422, "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("export PROJSYNC_SURELY_UNSET_VARIABLE"));

    let (status, err) = connect(&gh, "badname", "not-a-repo", CREDENTIALS).await;
    assert_eq!(status, 422, "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("owner/name"));

    let (status, project) = connect(&gh, "gh", "acme/widgets", CREDENTIALS).await;
    assert_eq!(status, 201);
    let project = project["id"].as_str().unwrap().to_string();
    let (status, err) = gh
        .app
        .post(
            &format!("/projects/{project}/syncs"),
            json!({ "branch": "nope" }),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("branch `nope` does not exist in github:acme/widgets")
            && msg.contains("`feature/x`"),
        "{msg}"
    );
    // A branch deleted after the project was created fails the sync.
    gh.repo.git(&["branch", "doomed"]);
    let (status, doomed) = gh
        .app
        .post(
            "/projects",
            json!({ "name": "doomed", "repository": {
                "provider": "github", "repository": "acme/widgets", "branch": "doomed",
                "credential": cred } }),
        )
        .await;
    assert_eq!(status, 201, "{doomed}");
    gh.repo.git(&["branch", "-D", "doomed"]);
    let sync = gh.app.sync(doomed["id"].as_str().unwrap(), None).await;
    assert_eq!(sync["status"], "failed");
    assert_eq!(sync["error_class"], "fatal");
    let msg = sync["error_message"].as_str().unwrap();
    assert!(
        msg.contains("branch `doomed` not found in acme/widgets"),
        "{msg}"
    );
}

/// What the API's check of the repository learned, as the ledger keeps it.
async fn kept_remote(gh: &Gh, project: &str) -> (Option<String>, Option<i64>) {
    sqlx::query_as("SELECT remote_name, remote_id FROM repositories WHERE project_id = $1::uuid")
        .bind(project)
        .fetch_one(&gh.app.db.admin)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_project_syncs_without_a_repository_lookup() {
    let gh = github_app(3).await;
    // Connecting looks the repository up (the API's check), and the ledger
    // keeps GitHub's spelling of its name and its id.
    gh.fake.reset_counts();
    let (status, project) = connect(&gh, "gh", "ACME/Widgets", CREDENTIALS).await;
    assert_eq!(status, 201, "{project}");
    assert_eq!(gh.fake.request_count("repo"), 1, "{:?}", gh.fake.requests());
    let project = project["id"].as_str().unwrap().to_string();
    assert_eq!(
        kept_remote(&gh, &project).await,
        (Some("acme/widgets".into()), Some(1))
    );

    // Its syncs never ask for `GET /repos/{owner}/{name}`: a first import
    // is the branch, the tree and the tarball (plus its download), a
    // resync with no change one 304.
    gh.fake.reset_counts();
    let first = gh.app.sync(&project, None).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let counts = gh.fake.requests();
    assert_eq!(counts.get("repo"), None, "{counts:?}");
    assert_eq!(
        gh.fake.total_requests() - gh.fake.request_count("codeload"),
        3,
        "{counts:?}"
    );
    gh.fake.reset_counts();
    let same = gh.app.sync(&project, None).await;
    assert_eq!(same["outcome"], "unchanged", "{same}");
    assert_eq!(gh.fake.total_requests(), 1, "{:?}", gh.fake.requests());
    assert_eq!(gh.fake.not_modified(), 1);

    // A project connected before the lookup was kept: its first sync looks
    // the repository up, and the ledger keeps the answer from then on.
    sqlx::query("UPDATE repositories SET remote_name = NULL, remote_id = NULL")
        .execute(&gh.app.db.admin)
        .await
        .unwrap();
    gh.repo.write("src/lib.rs", "pub fn widget() -> u8 { 1 }\n");
    gh.repo.commit("edit");
    let sync = gh.app.sync(&project, None).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    assert_eq!(
        kept_remote(&gh, &project).await,
        (Some("acme/widgets".into()), Some(1))
    );

    // A kept identity is trusted only when it names the project's
    // repository; one that names another is not, and a lookup is made.
    let sources = DefaultSources::new(
        GitHubConfig {
            api_url: gh.fake.base_url(),
            request_timeout: Duration::from_secs(5),
            ..Default::default()
        },
        None,
    );
    let elsewhere = projsync_domain::source::RemoteIdentity {
        name: "acme/elsewhere".into(),
        id: Some(9),
    };
    gh.fake.reset_counts();
    let source = projsync_domain::source::SourceFactory::open(
        &sources,
        &projsync_domain::source::RepositorySpec {
            provider: "github",
            location: "acme/widgets",
            credentials_ref: Some(CREDENTIALS),
            remote: Some(&elsewhere),
        },
    )
    .await
    .unwrap();
    assert_eq!(gh.fake.request_count("repo"), 1, "{:?}", gh.fake.requests());
    assert_eq!(source.describe(), "github:acme/widgets");

    // Renamed on GitHub after it was connected: the sync fails and says
    // what the repository is called now.
    gh.fake.rename("acme", "gadgets");
    gh.repo.write("src/lib.rs", "pub fn widget() -> u8 { 2 }\n");
    gh.repo.commit("after the rename");
    let sync = gh.app.sync(&project, None).await;
    assert_eq!(sync["status"], "failed", "{sync}");
    assert_eq!(sync["error_class"], "fatal", "{sync}");
    let msg = sync["error_message"].as_str().unwrap();
    assert!(
        msg.contains("repository acme/widgets was renamed or transferred")
            && msg.contains("GitHub now calls it acme/gadgets"),
        "{msg}"
    );

    // Deleted after it was connected (or the token lost access to it,
    // which GitHub answers alike): the sync fails and says so, even though
    // the branch's answer was kept.
    let (status, gadgets) = connect(&gh, "gadgets", "acme/gadgets", CREDENTIALS).await;
    assert_eq!(status, 201, "{gadgets}");
    let gadgets = gadgets["id"].as_str().unwrap().to_string();
    let sync = gh.app.sync(&gadgets, None).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    gh.fake.delete_repository();
    let sync = gh.app.sync(&gadgets, None).await;
    assert_eq!(sync["status"], "failed", "{sync}");
    assert_eq!(sync["error_class"], "fatal", "{sync}");
    let msg = sync["error_message"].as_str().unwrap();
    assert!(
        msg.contains("repository acme/gadgets not found, or the token cannot read it"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_app_installation_tokens_are_obtained_and_refreshed() {
    let gh = github_app(1000).await;
    // Tokens live 31 s; octocrab renews a token with less than 30 s left, so
    // every request after the first second needs a fresh one.
    gh.fake.enable_app(4242, 77, 31);
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/e2e/fixtures/github-app-test-key.pem"
    );

    let (status, err) = connect(
        &gh,
        "wrong-app",
        "acme/widgets",
        &format!("app:1:77:file:{key}"),
    )
    .await;
    assert_eq!(status, 422, "{err}");

    let (status, project) = connect(
        &gh,
        "app",
        "acme/widgets",
        &format!("app:4242:77:file:{key}"),
    )
    .await;
    assert_eq!(status, 201, "{project}");
    let project = project["id"].as_str().unwrap().to_string();
    let sync = gh.app.sync(&project, None).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    assert_eq!(
        gh.app.active_entries(&project).await,
        expected_entries(gh.repo.files_at("HEAD"), &["logo.png", "Cargo.lock"])
    );
    let first = gh.fake.request_count("access_token");
    assert!(first >= 1);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    gh.repo.write("src/lib.rs", "// after refresh\n");
    gh.repo.commit("after refresh");
    let sync = gh.app.sync(&project, None).await;
    assert_eq!(sync["status"], "succeeded", "{sync}");
    assert!(
        gh.fake.request_count("access_token") > first,
        "the installation token was refreshed"
    );
}

/// Names GitHub would misread never leave the process: no request reaches
/// the server for them, from the API or from the source itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_never_reach_github() {
    let gh = github_app(1000).await;
    let cred = register_credential(&gh.app, CREDENTIALS).await;
    let (status, project) = connect(&gh, "gh", "acme/widgets", CREDENTIALS).await;
    assert_eq!(status, 201, "{project}");
    let project = project["id"].as_str().unwrap().to_string();
    gh.fake.reset_counts();

    for repository in ["acme/..", "acme/.", "-acme/widgets", "acme/a b", "a/b/c"] {
        let (status, err) = connect(&gh, "bad", repository, CREDENTIALS).await;
        assert_eq!(status, 422, "{repository}: {err}");
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with("repository.repository:") && msg.contains("owner/name"),
            "{msg}"
        );
    }
    for branch in ["-rf", "main@{0}", "main..x", "a:b", "@"] {
        let (status, err) = gh
            .app
            .post(
                "/projects",
                json!({ "name": "bad", "repository": {
                    "provider": "github", "repository": "acme/widgets", "branch": branch,
                    "credential": cred } }),
            )
            .await;
        assert_eq!(status, 422, "{branch}: {err}");
        assert!(err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("repository.branch:"));
        let (status, err) = gh
            .app
            .post(
                &format!("/projects/{project}/syncs"),
                json!({ "branch": branch }),
            )
            .await;
        assert_eq!(status, 422, "{branch}: {err}");
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with("branch:") && msg.contains("not a valid branch name"),
            "{msg}"
        );
    }
    assert_eq!(gh.fake.total_requests(), 0, "{:?}", gh.fake.requests());

    // The source refuses them too, before any request.
    let sources = DefaultSources::new(
        GitHubConfig {
            api_url: gh.fake.base_url(),
            ..Default::default()
        },
        None,
    );
    let spec = |location| projsync_domain::source::RepositorySpec {
        provider: "github",
        location,
        credentials_ref: Some(CREDENTIALS),
        remote: None,
    };
    use projsync_domain::source::SourceFactory;
    let err = sources.open(&spec("acme/..")).await.err().unwrap();
    assert_eq!(err.kind, projsync_domain::SourceErrorKind::Invalid, "{err}");
    assert_eq!(gh.fake.total_requests(), 0, "{:?}", gh.fake.requests());
    let source = sources.open(&spec("acme/widgets")).await.unwrap();
    for branch in ["-rf", "main@{0}"] {
        let err = source.resolve_branch(branch).await.unwrap_err();
        assert_eq!(err.kind, projsync_domain::SourceErrorKind::Invalid, "{err}");
    }
    assert_eq!(
        gh.fake.request_count("branch"),
        0,
        "{:?}",
        gh.fake.requests()
    );
}

/// A token with a line inside. Its parts are not hex: the error names the
/// file, whose temporary directory's name is hex.
const BROKEN_TOKEN: &str = "tok_one\ntok_two";

/// A token file with a line inside (not a token GitHub could take) is a
/// clean error at the API and in the worker, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_cannot_be_a_header_is_a_clean_error() {
    let gh = github_app(1000).await;
    let dir = GitRepo::new();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, BROKEN_TOKEN).unwrap();
    let reference = format!("file:{}", token_file.display());
    let (status, err) = connect(&gh, "gh", "acme/widgets", &reference).await;
    assert_eq!(status, 422, "{err}");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&reference) && msg.contains("line break") && msg.contains("HTTP header"),
        "{msg}"
    );
    assert!(
        !msg.contains("tok_one") && !msg.contains("tok_two"),
        "{msg}"
    );

    // A good token (a trailing newline is fine), mangled after the project
    // was created: the worker's sync fails once, with the same message.
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let (status, project) = connect(&gh, "gh", "acme/widgets", &reference).await;
    assert_eq!(status, 201, "{project}");
    let project = project["id"].as_str().unwrap().to_string();
    std::fs::write(&token_file, BROKEN_TOKEN).unwrap();
    let sync = gh.app.sync(&project, None).await;
    assert_eq!(sync["status"], "failed", "{sync}");
    assert_eq!(sync["error_class"], "fatal");
    assert_eq!(sync["steps"][0]["attempts"], 1);
    let msg = sync["error_message"].as_str().unwrap();
    assert!(
        msg.contains("line break") && !msg.contains("tok_one"),
        "{msg}"
    );
    // The API is still up.
    assert_eq!(gh.app.get(&format!("/projects/{project}")).await.0, 200);
}
