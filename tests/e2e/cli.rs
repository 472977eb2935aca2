//! The real `projsync` binary: demo, worker + sync --watch + watch + history,
//! configuration errors and exit codes.

use projsync_test_support::{GitRepo, TestDb, TestRedis};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn projsync(db: &TestDb, redis: &TestRedis) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_projsync"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PROJSYNC") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.env("PROJSYNC__DATABASE__URL", &db.url)
        .env("PROJSYNC__DATABASE__ADMIN_URL", &db.admin_url)
        .env(
            "PROJSYNC__SOURCES__LOCAL__ALLOWED_ROOTS",
            crate::helpers::local_root(),
        )
        .env("PROJSYNC__REDIS__URL", &redis.url)
        .env("PROJSYNC__REDIS__NAMESPACE", &redis.namespace)
        .env("PROJSYNC__REDIS__POLL_INTERVAL_MS", "50")
        .env("PROJSYNC__API__LISTEN", "127.0.0.1:0")
        // Tests run side by side: no fixed port for workers' health listeners.
        .env("PROJSYNC__WORKER__LISTEN", "127.0.0.1:0")
        // Only the demo embeds with the local model; other commands test the CLI.
        .env("PROJSYNC__EMBEDDINGS__ENABLED", "false")
        .stdin(Stdio::null());
    cmd
}

pub(crate) fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run projsync");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_syncs_a_repository_end_to_end() {
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    let repo = GitRepo::new();
    repo.write("src/lib.rs", "pub fn answer() -> u32 { 42 }\n")
        .write("README.md", "demo\n")
        .write("logo.bin", b"\0\x01\x02");
    repo.commit("demo");
    // The demo embeds with the real local model, as a user's first run does.
    let (code, stdout, stderr) = run(projsync(&db, &redis)
        .env("PROJSYNC__EMBEDDINGS__ENABLED", "true")
        .arg("demo")
        .arg(repo.path()));
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    for needle in [
        "migrated",
        "succeeded (changed)",
        "3 seen, 2 imported, 1 skipped",
        "skipped   binary 1",
        "active_memory_entries",
        "redis-cli SUBSCRIBE projsync:sync:",
        "search (all-MiniLM-L6-v2)",
        "[   embed]",
    ] {
        assert!(
            stdout.contains(needle),
            "`{needle}` missing from:\n{stdout}"
        );
    }
    // One line per event when not on a terminal, import batches included.
    assert!(stdout.contains("[  import] running"), "{stdout}");
    let entries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM active_memory_entries WHERE kind = 'file'")
            .fetch_one(&db.admin)
            .await
            .unwrap();
    assert_eq!(entries, 2);
    let missing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM memory_chunks c JOIN memory_entries m ON m.id = c.entry_id \
         WHERE m.status = 'active' AND NOT EXISTS (SELECT 1 FROM embeddings v \
             WHERE v.model = 'all-MiniLM-L6-v2' AND v.content_hash = c.content_hash)",
    )
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(missing, 0, "every active chunk has its vector");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process_sync_watch_history_and_exit_codes() {
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    let repo = GitRepo::new();
    let (code, _, stderr) = run(projsync(&db, &redis)
        .args(["project", "add", "--name", "cli"])
        .arg("--path")
        .arg(repo.path()));
    assert_eq!(code, 0, "{stderr}");

    let mut worker = projsync(&db, &redis)
        .arg("worker")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The repository has no commits: the sync fails, and so does the command.
    let (code, stdout, stderr) =
        run(projsync(&db, &redis).args(["sync", "--project", "cli", "--watch"]));
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("failed") && stdout.contains("no commits yet"),
        "{stdout}"
    );

    repo.write("a.txt", "a\n");
    repo.commit("a");
    let (code, stdout, stderr) =
        run(projsync(&db, &redis).args(["sync", "--project", "cli", "--watch"]));
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let sync_id = stdout.lines().next().unwrap().trim().to_string();
    assert!(stdout.contains("succeeded (changed)"), "{stdout}");

    // Watching a finished sync returns at once with its exit code.
    let (code, stdout, _) = run(projsync(&db, &redis).args(["watch", &sync_id]));
    assert_eq!(code, 0, "{stdout}");

    let (code, stdout, _) = run(projsync(&db, &redis).args(["history", "--project", "cli"]));
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(
        stdout.lines().next().unwrap().starts_with(&sync_id),
        "{stdout}"
    );

    // SIGTERM: the worker stops by itself, promptly.
    let pid = worker.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = worker.try_wait().unwrap() {
            assert!(status.success(), "worker exit: {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "worker did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_are_clear_and_hide_passwords() {
    let (db, redis) = (TestDb::new().await, TestRedis::new());

    let (code, _, stderr) = run(projsync(&db, &redis)
        .env(
            "PROJSYNC__DATABASE__ADMIN_URL",
            "postgres://someone:hunter2@127.0.0.1:9/nothing",
        )
        .arg("migrate"));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("postgres://someone:***@127.0.0.1:9/nothing"),
        "{stderr}"
    );
    assert!(
        stderr.contains("check that PostgreSQL is running"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");

    let (code, _, stderr) = run(projsync(&db, &redis)
        .env("PROJSYNC__WORKER__CONCURRENCY", "0")
        .arg("migrate"));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("worker.concurrency must be greater than 0"),
        "{stderr}"
    );

    let (code, _, stderr) =
        run(projsync(&db, &redis).args(["--config", "/no/such.toml", "migrate"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("/no/such.toml does not exist"), "{stderr}");

    // A config file is layered under the environment.
    let file = std::env::temp_dir().join(format!("projsync-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&file, "[worker]\nconcurrency = 0\n").unwrap();
    let (code, _, stderr) = run(projsync(&db, &redis)
        .env("PROJSYNC_CONFIG", &file)
        .arg("migrate"));
    assert_eq!(code, 2, "{stderr}");
    let (code, stdout, stderr) = run(projsync(&db, &redis)
        .env("PROJSYNC_CONFIG", &file)
        .env("PROJSYNC__WORKER__CONCURRENCY", "3")
        .arg("migrate"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    std::fs::remove_file(file).ok();

    let (code, _, stderr) = run(projsync(&db, &redis)
        .env("PROJSYNC__REDIS__URL", "redis://:pw@127.0.0.1:9")
        .args(["sync", "--project", "none"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("project `none` not found"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_commands_list_inspect_retry_cancel_and_discard() {
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    let repo = GitRepo::new();
    let (code, _, stderr) = run(projsync(&db, &redis)
        .args(["project", "add", "--name", "ops"])
        .arg("--path")
        .arg(repo.path()));
    assert_eq!(code, 0, "{stderr}");

    // No worker yet: a queued sync cancelled now never starts.
    let (code, stdout, _) = run(projsync(&db, &redis).args(["sync", "--project", "ops"]));
    assert_eq!(code, 0);
    let queued = stdout.trim().to_string();
    let (code, stdout, _) = run(projsync(&db, &redis).args(["cancel", &queued]));
    assert_eq!(code, 0);
    assert!(stdout.contains("cancelled"), "{stdout}");

    let mut worker = projsync(&db, &redis)
        .arg("worker")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The empty repository makes the next sync fail.
    let (code, stdout, _) =
        run(projsync(&db, &redis).args(["sync", "--project", "ops", "--watch"]));
    assert_eq!(code, 1, "{stdout}");
    let failed = stdout.lines().next().unwrap().trim().to_string();

    let (code, stdout, _) =
        run(projsync(&db, &redis).args(["ops", "list", "--status", "failed,cancelled"]));
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&failed) && stdout.contains(&queued),
        "{stdout}"
    );
    assert!(stdout.contains("no commits yet"), "{stdout}");

    let (code, stdout, _) = run(projsync(&db, &redis).args(["ops", "inspect", &failed]));
    assert_eq!(code, 0);
    for needle in [
        "prepare   failed",
        "scan      pending",
        "lease     owner -",
        "queue     last pushed",
    ] {
        assert!(stdout.contains(needle), "`{needle}` missing:\n{stdout}");
    }

    // Fix the cause, retry from the failed phase, and follow it.
    repo.write("a.txt", "a\n");
    repo.commit("a");
    let (code, stdout, stderr) =
        run(projsync(&db, &redis).args(["ops", "retry", &failed, "--watch"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("succeeded (changed)"), "{stdout}");

    // Discard: only failed or cancelled syncs.
    let (code, _, stderr) = run(projsync(&db, &redis).args(["ops", "discard", &failed]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("only a failed or cancelled sync can be discarded"),
        "{stderr}"
    );
    let (code, stdout, _) = run(projsync(&db, &redis).args(["ops", "discard", &queued]));
    assert_eq!(code, 0, "{stdout}");
    let (_, stdout, _) = run(projsync(&db, &redis).args(["history", "--project", "ops"]));
    assert!(stdout.contains("discarded"), "{stdout}");

    // A cancelled sync never ran: it has no claims.
    let claims: i32 = sqlx::query_scalar("SELECT attempts FROM project_syncs WHERE id = $1::uuid")
        .bind(&queued)
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert_eq!(claims, 0);
    worker.kill().ok();
    worker.wait().ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_and_embeddings_commands_through_the_binary() {
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    let fake = projsync_test_support::FakeOpenAi::builder()
        .with_models(&[
            projsync_test_support::fake_openai::DEFAULT_MODEL,
            "other-model",
        ])
        .start()
        .await;
    // The binary with embeddings through the fake, with this model.
    let cli = |model: &str| {
        let mut cmd = projsync(&db, &redis);
        cmd.env("PROJSYNC__EMBEDDINGS__ENABLED", "true")
            .env("PROJSYNC__EMBEDDINGS__PROVIDER", "openai")
            .env("PROJSYNC__EMBEDDINGS__BASE_URL", fake.base_url())
            .env("PROJSYNC__EMBEDDINGS__MODEL", model);
        cmd
    };
    let first_model = projsync_test_support::fake_openai::DEFAULT_MODEL;
    let repo = GitRepo::new();
    repo.write(
        "src/upload.rs",
        "pub fn retry_failed_upload(attempts: u32) {}\n",
    )
    .write("src/colors.rs", "pub fn pick_theme_color() {}\n");
    repo.commit("app");
    let (code, _, stderr) = run(projsync(&db, &redis)
        .args(["project", "add", "--name", "cli-search", "--no-analysis"])
        .arg("--path")
        .arg(repo.path()));
    assert_eq!(code, 0, "{stderr}");
    let mut worker = cli(first_model)
        .arg("worker")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (code, stdout, stderr) =
        run(cli(first_model).args(["sync", "--project", "cli-search", "--watch"]));
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");

    let (code, stdout, stderr) = run(cli(first_model).args([
        "search",
        "--project",
        "cli-search",
        "--k",
        "1",
        "--json",
        "retry",
        "upload",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let body: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(body["results"][0]["path"], "src/upload.rs", "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 1);

    let (code, stdout, _) = run(cli(first_model).args([
        "search",
        "--project",
        "cli-search",
        "--mode",
        "keyword",
        "theme",
    ]));
    assert_eq!(code, 0);
    assert!(stdout.contains("src/colors.rs:1-1"), "{stdout}");

    let (code, stdout, stderr) = run(cli(first_model).args([
        "embeddings",
        "backfill",
        "--project",
        "cli-search",
        "--watch",
    ]));
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("succeeded (embedded)"), "{stdout}");

    let (code, stdout, _) =
        run(cli(first_model).args(["embeddings", "status", "--project", "cli-search", "--json"]));
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["chunks"], 2, "{status}");
    assert_eq!(status["missing"], 0, "{status}");

    // A bad mode is refused by the command line itself.
    let (code, _, stderr) = run(projsync(&db, &redis).args([
        "search",
        "--project",
        "cli-search",
        "--mode",
        "fuzzy",
        "x",
    ]));
    assert_eq!(code, 2, "{stderr}");
    worker.kill().ok();
    worker.wait().ok();
    // A model change: the backfill embeds every chunk for the new model,
    // search says vectors are missing until then, and --prune drops the old
    // model's vectors afterwards.
    let mut worker = cli("other-model")
        .arg("worker")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (_, stdout, _) =
        run(cli("other-model").args(["embeddings", "status", "--project", "cli-search", "--json"]));
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["model"], "other-model", "{status}");
    assert_eq!(status["missing"], 2, "{status}");
    let (code, _, stderr) =
        run(cli("other-model").args(["search", "--project", "cli-search", "retry"]));
    assert_eq!(code, 0);
    assert!(stderr.contains("unavailable: 2 chunks missing"), "{stderr}");
    let (code, stdout, stderr) = run(cli("other-model").args([
        "embeddings",
        "backfill",
        "--project",
        "cli-search",
        "--prune",
        "--watch",
    ]));
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let (_, stdout, _) =
        run(cli("other-model").args(["embeddings", "status", "--project", "cli-search", "--json"]));
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["missing"], 0, "{status}");
    let models: Vec<String> = sqlx::query_scalar("SELECT DISTINCT model FROM embeddings")
        .fetch_all(&db.admin)
        .await
        .unwrap();
    assert_eq!(models, ["other-model"]);
    worker.kill().ok();
    worker.wait().ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_worker_refuse_a_database_without_pgvector_and_say_what_to_do() {
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    // A database that was never migrated: the extension is not created.
    let name = format!("projsync_bare_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&db.admin)
        .await
        .unwrap();
    let url = projsync_test_support::with_user(
        &format!(
            "{}/{name}",
            projsync_test_support::admin_database_url()
                .rsplit_once('/')
                .unwrap()
                .0
        ),
        projsync_test_support::APP_ROLE,
    );
    for command in ["worker", "api"] {
        let (code, _, stderr) = run(projsync(&db, &redis)
            .env("PROJSYNC__DATABASE__URL", &url)
            .arg(command));
        assert_eq!(code, 2, "{command}: {stderr}");
        assert!(
            stderr.contains("run `projsync migrate`"),
            "{command}: {stderr}"
        );
    }
    sqlx::query(&format!("DROP DATABASE {name}"))
        .execute(&db.admin)
        .await
        .unwrap();
}
