//! `projsync hook install` on a real bare repository: each push of the
//! project's branch asks the running API for a sync (trigger `hook`), a
//! burst of pushes ends at the newest head, and other branches are left
//! alone. The tests run on several threads: the binary and `git push` are
//! waited for on this one while the in-process API answers them.

use crate::helpers::{create_key, local_root, spawn_app, TestApp};
use projsync_test_support::GitRepo;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A bare repository under the allowed root, removed on drop.
struct Bare(PathBuf);

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bare_clone_of(work: &GitRepo) -> Bare {
    let path = local_root().join(format!(
        "projsync-bare-{}.git",
        uuid::Uuid::new_v4().simple()
    ));
    let out = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(work.path())
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    work.git(&["remote", "add", "origin", &path.to_string_lossy()]);
    Bare(path)
}

fn install(app: &TestApp, key: &str, project: &str, repo: &Path, force: bool) -> Output {
    let api = app.base.trim_end_matches("/api/v1");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_projsync"));
    for (name, _) in std::env::vars() {
        if name.starts_with("PROJSYNC") {
            cmd.env_remove(name);
        }
    }
    cmd.args([
        "hook",
        "install",
        "--project",
        project,
        "--key",
        key,
        "--api",
        api,
    ]);
    if force {
        cmd.arg("--force");
    }
    cmd.arg(repo).stdin(Stdio::null()).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `git push` from the work tree; returns what the remote side printed.
fn push(work: &GitRepo, refspec: &str) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(work.path())
        .args(["push", "-q", "origin", refspec])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn syncs(app: &TestApp, project: &str) -> Vec<Value> {
    app.get_all(&format!("/projects/{project}/syncs")).await
}

/// Wait until the project's newest succeeded sync is of `head`.
async fn wait_for_head(app: &TestApp, project: &str, head: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let all = syncs(app, project).await;
        let active = all
            .iter()
            .any(|s| matches!(s["status"].as_str(), Some("queued" | "running")));
        let newest_done = all
            .iter()
            .filter(|s| s["status"] == "succeeded")
            .max_by_key(|s| s["finished_at"].as_str().unwrap_or("").to_string());
        if !active && newest_done.is_some_and(|s| s["head_commit"] == head) {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "the project did not reach {head}: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The app with a worker, a write key, a work tree with one commit, its
/// bare clone, and a project `name` on the bare one.
struct Setup {
    app: TestApp,
    key: String,
    work: GitRepo,
    bare: Bare,
    project: String,
}

async fn setup(name: &str) -> Setup {
    let app = spawn_app().await;
    let key = create_key(&app.db, projsync_domain::Role::Write).await;
    let work = GitRepo::new();
    work.write("README.md", "# hooked\n").commit("first");
    let bare = bare_clone_of(&work);
    let project = app.create_project(name, &bare.0, "main").await;
    Setup {
        app,
        key,
        work,
        bare,
        project,
    }
}

/// Wait until the project has had no queued or running sync, and the same
/// number of syncs, for longer than a scheduler tick; returns that number.
async fn settle(app: &TestApp, project: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    loop {
        let all = syncs(app, project).await;
        let active = all
            .iter()
            .any(|s| matches!(s["status"].as_str(), Some("queued" | "running")));
        if !active && last == Some(all.len()) {
            return all.len();
        }
        last = (!active).then_some(all.len());
        assert!(
            Instant::now() < deadline,
            "the syncs did not settle: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_receive_hook_syncs_each_push_of_the_branch() {
    let Setup {
        app,
        key,
        work,
        bare,
        project,
    } = setup("hooked").await;
    let first = app.sync(&project, None).await;
    assert_eq!(first["status"], "succeeded", "{first}");

    // Installed by name; the hook and its key file are there.
    let out = install(&app, &key, "hooked", &bare.0, false);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("installed the post-receive hook"),
        "{}",
        text(&out)
    );
    let hook = bare.0.join("hooks/post-receive");
    let key_file = bare.0.join("hooks/projsync-hook.key");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&hook), 0o755);
        assert_eq!(mode(&key_file), 0o600, "the key is its owner's only");
    }
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), key);

    // A push of the branch: a sync of the pushed commit, by the hook.
    work.write("src/lib.rs", "pub fn one() {}\n").commit("one");
    let said = push(&work, "main");
    assert!(
        said.contains("projsync: sync"),
        "the pusher is told: {said}"
    );
    let head = work.head();
    let all = wait_for_head(&app, &project, &head).await;
    let newest = all
        .iter()
        .find(|s| s["head_commit"] == head.as_str())
        .unwrap();
    assert_eq!(newest["trigger"], "hook", "{newest}");

    // A burst of pushes ends at the newest head, in few syncs.
    let before = syncs(&app, &project).await.len();
    for i in 0..5 {
        work.write("src/lib.rs", format!("pub fn n() -> u32 {{ {i} }}\n"))
            .commit(&format!("burst {i}"));
        push(&work, "main");
    }
    let last = work.head();
    let all = wait_for_head(&app, &project, &last).await;
    let burst = all.len() - before;
    assert!(
        (1..=5).contains(&burst),
        "5 pushes made {burst} syncs: {all:#?}"
    );
    assert!(all[..burst].iter().all(|s| s["trigger"] == "hook"));

    // Another branch: acknowledged by nobody, no sync. (First, what the
    // burst may still start: a push that came while a sync ran, before
    // that sync read the head, leaves a wanted sync with nothing new to
    // read, started at the scheduler's next tick.)
    let settled = settle(&app, &project).await;
    work.git(&["checkout", "-q", "-b", "dev"]);
    work.write("dev.txt", "dev\n").commit("dev");
    let said = push(&work, "dev");
    assert!(!said.contains("projsync: sync"), "{said}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(syncs(&app, &project).await.len(), settled);

    // Installing again replaces our hook; a hook of someone else's is
    // kept unless --force.
    let out = install(&app, &key, &project, &bare.0, false);
    assert!(
        text(&out).contains("replaced the post-receive hook"),
        "{}",
        text(&out)
    );
    std::fs::write(&hook, "#!/bin/sh\necho theirs\n").unwrap();
    let out = install(&app, &key, "hooked", &bare.0, false);
    assert!(!out.status.success());
    assert!(text(&out).contains("--force"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&hook).unwrap(),
        "#!/bin/sh\necho theirs\n"
    );
    let out = install(&app, &key, "hooked", &bare.0, true);
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_install_refuses_what_cannot_work() {
    let Setup {
        app,
        key,
        work,
        bare,
        ..
    } = setup("mirror").await;

    // The work clone is not the repository the project reads.
    let out = install(&app, &key, "mirror", work.path(), false);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("reads the repository at"),
        "{}",
        text(&out)
    );
    // An unknown project, a bad key, a path that is not a repository.
    let out = install(&app, &key, "nope", &bare.0, false);
    assert!(text(&out).contains("no project `nope`"), "{}", text(&out));
    let out = install(&app, "psk_not-a-key", "mirror", &bare.0, false);
    assert!(
        text(&out).contains("does not accept this key"),
        "{}",
        text(&out)
    );
    let out = install(
        &app,
        &key,
        "mirror",
        &local_root().join("no-such-repo"),
        false,
    );
    assert!(
        text(&out).contains("not a Git repository"),
        "{}",
        text(&out)
    );
    assert!(!bare.0.join("hooks/post-receive").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_takes_a_hook_request_without_waiting() {
    // No worker: the first request's sync stays queued.
    let app = crate::helpers::spawn_app_with(false, |_| {}).await;
    let work = GitRepo::new();
    work.write("a.txt", "a\n").commit("a");
    let project = app.create_project("p", work.path(), "main").await;
    let path = format!("/projects/{project}/syncs");
    let (status, body) = app
        .post(&path, serde_json::json!({ "trigger": "hook" }))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["sync"]["trigger"], "hook");
    assert_eq!(body["follow_up"], false);
    // Asked again while it is queued: that sync takes the request.
    let (status, again) = app
        .post(&path, serde_json::json!({ "trigger": "hook" }))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["created"], false);
    assert_eq!(again["sync_id"], body["sync_id"]);
    // Only api and hook can be asked for; a hook's sync has no branch.
    for bad in [
        serde_json::json!({ "trigger": "schedule" }),
        serde_json::json!({ "trigger": "webhook:x" }),
        serde_json::json!({ "trigger": "hook", "branch": "main" }),
    ] {
        let (status, body) = app.post(&path, bad.clone()).await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
    let other = app.create_project("q", work.path(), "main").await;
    let (status, plain) = app
        .post(&format!("/projects/{other}/syncs"), serde_json::json!({}))
        .await;
    assert_eq!(status, 202, "{plain}");
    assert_eq!(plain["sync"]["trigger"], "api");
}
