//! The GitHub source's requests against the fake GitHub of test-support:
//! conditional branch reads (304, no budget), ETags kept per token, the
//! comparison path of `Source::diff` against the tree path, its fallbacks,
//! opening a connected repository without a lookup, the errors that
//! replace the repository lookup, and the retries of server errors and
//! dropped connections.

use projsync_domain::source::{RemoteIdentity, TreeChange, TreeDiff};
use projsync_domain::{Source, SourceError, SourceErrorKind, TreeEntry};
use projsync_source_github::{
    Budget, Credentials, GitHubConfig, GitHubSource, RepoCache, RepoInfo, ETAG_TTL_SECS,
};
use projsync_test_support::{FakeGitHub, Fault, GitRepo, TestRedis};
use std::collections::BTreeMap;
use std::time::Duration;

async fn redis(ns: &TestRedis) -> redis::aio::ConnectionManager {
    let client = redis::Client::open(ns.url.as_str()).unwrap();
    redis::aio::ConnectionManager::new(client).await.unwrap()
}

async fn open(
    fake: &FakeGitHub,
    ns: &TestRedis,
    repos: &RepoCache,
    location: &str,
    token: &str,
    compare_min_entries: u64,
) -> Result<GitHubSource, SourceError> {
    let credentials = Credentials::Token(token.into());
    let budget = Budget::new(redis(ns).await, &ns.namespace, &credentials);
    GitHubSource::open(
        &GitHubConfig {
            api_url: fake.base_url(),
            request_timeout: Duration::from_secs(5),
            compare_min_entries,
            ..Default::default()
        },
        location,
        credentials,
        Some(budget),
        Default::default(),
        repos.clone(),
        Default::default(),
    )
    .await
}

/// Open a repository whose lookup was kept when its project was connected.
async fn open_known(fake: &FakeGitHub, ns: &TestRedis, known: &RemoteIdentity) -> GitHubSource {
    let credentials = Credentials::Token("tok".into());
    let budget = Budget::new(redis(ns).await, &ns.namespace, &credentials);
    GitHubSource::open_known(
        &GitHubConfig {
            api_url: fake.base_url(),
            request_timeout: Duration::from_secs(5),
            ..Default::default()
        },
        RepoInfo {
            id: known.id.map(|id| id as u64),
            full_name: known.name.clone(),
            default_branch: String::new(),
        },
        credentials,
        Some(budget),
        Default::default(),
        Default::default(),
    )
    .unwrap()
}

async fn source(
    fake: &FakeGitHub,
    ns: &TestRedis,
    location: &str,
    token: &str,
    compare_min_entries: u64,
) -> GitHubSource {
    open(
        fake,
        ns,
        &RepoCache::default(),
        location,
        token,
        compare_min_entries,
    )
    .await
    .unwrap()
}

fn sample() -> GitRepo {
    let repo = GitRepo::new();
    repo.write("README.md", "# sample\n")
        .write("src/lib.rs", "pub fn a() {}\n")
        .write("src/deep/nested/mod.rs", "mod x;\n")
        .write("src/gone.rs", "// gone\n")
        .write("src/old_name.rs", "// renamed, same bytes\n")
        .write("run.sh", "#!/bin/sh\n")
        .write("becomes_dir", "a file, then a directory\n")
        .write("becomes_link", "a file, then a symlink\n")
        .symlink("README.md", "link");
    repo.commit("first");
    repo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmoved_branch_costs_one_304_and_no_budget() {
    let repo = sample();
    let fake = FakeGitHub::start("acme", "widgets", repo.path(), Some("tok")).await;
    let ns = TestRedis::new();
    // The repository is looked up once per process (and token); later
    // opens reuse the lookup, with GitHub's spelling of the name.
    let repos = RepoCache::default();
    let first = open(&fake, &ns, &repos, "ACME/Widgets", "tok", 10_000)
        .await
        .unwrap();
    assert_eq!(fake.request_count("repo"), 1, "{:?}", fake.requests());
    assert_eq!(first.describe(), "github:acme/widgets");
    assert_eq!(first.repository().unwrap().default_branch, "main");
    fake.reset_counts();
    let source = open(&fake, &ns, &repos, "acme/widgets", "tok", 10_000)
        .await
        .unwrap();
    assert_eq!(fake.total_requests(), 0, "{:?}", fake.requests());

    let head = source.resolve_branch("main").await.unwrap();
    assert_eq!(head, repo.head());
    assert_eq!(fake.budget_units(), 1);
    fake.reset_counts();
    for _ in 0..3 {
        assert_eq!(source.resolve_branch("main").await.unwrap(), head);
    }
    assert_eq!(fake.total_requests(), 3, "{:?}", fake.requests());
    assert_eq!(fake.not_modified(), 3);
    assert_eq!(fake.budget_units(), 0, "a 304 costs no budget");
    assert_eq!(
        source
            .counters()
            .not_modified
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );

    // The branch moves: a 200 with the new head, one unit.
    repo.write("src/lib.rs", "pub fn b() {}\n");
    let moved = repo.commit("move");
    fake.reset_counts();
    assert_eq!(source.resolve_branch("main").await.unwrap(), moved);
    assert_eq!((fake.not_modified(), fake.budget_units()), (0, 1));
    // Strong ETags work the same way.
    fake.set_strong_etags(true);
    assert_eq!(source.resolve_branch("main").await.unwrap(), moved);
    fake.reset_counts();
    assert_eq!(source.resolve_branch("main").await.unwrap(), moved);
    assert_eq!((fake.not_modified(), fake.budget_units()), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_are_kept_per_token_and_never_name_it() {
    let repo = sample();
    // No token required: any bearer is accepted, and answers vary by it.
    let fake = FakeGitHub::start("acme", "widgets", repo.path(), None).await;
    let ns = TestRedis::new();
    let alpha = source(&fake, &ns, "acme/widgets", "alpha-secret", 10_000).await;
    let beta = source(&fake, &ns, "acme/widgets", "beta-secret", 10_000).await;
    alpha.resolve_branch("main").await.unwrap();
    fake.reset_counts();
    alpha.resolve_branch("main").await.unwrap();
    assert_eq!(fake.not_modified(), 1);
    // Another token does not use alpha's ETag: its first read is a 200.
    fake.reset_counts();
    beta.resolve_branch("main").await.unwrap();
    assert_eq!((fake.not_modified(), fake.budget_units()), (0, 1));
    beta.resolve_branch("main").await.unwrap();
    assert_eq!(fake.not_modified(), 1);

    let mut conn = redis(&ns).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:github:etag:*", ns.namespace))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in &keys {
        let value: String = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        for secret in ["alpha", "beta"] {
            assert!(!key.contains(secret) && !value.contains(secret), "{key}");
        }
        let ttl: i64 = redis::cmd("TTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= ETAG_TTL_SECS as i64, "{ttl}");
    }
    let identities: Vec<String> = ["alpha-secret", "beta-secret"]
        .iter()
        .map(|t| Credentials::Token(t.to_string()).budget_identity())
        .collect();
    for id in &identities {
        assert_eq!(
            keys.iter().filter(|k| k.contains(id.as_str())).count(),
            1,
            "{keys:?}"
        );
    }
}

/// The diff the tree path implies: every path whose entry differs.
fn tree_diff(old: &[TreeEntry], new: &[TreeEntry]) -> Vec<TreeChange> {
    let mut sides: BTreeMap<String, (Option<TreeEntry>, Option<TreeEntry>)> = BTreeMap::new();
    for e in old {
        sides.entry(e.path.clone()).or_default().0 = Some(e.clone());
    }
    for e in new {
        sides.entry(e.path.clone()).or_default().1 = Some(e.clone());
    }
    sides
        .into_iter()
        .filter(|(_, (o, n))| o != n)
        .map(|(path, (old, new))| TreeChange { path, old, new })
        .collect()
}

fn sorted(mut d: TreeDiff) -> Vec<TreeChange> {
    d.changes.sort_by(|a, b| a.path.cmp(&b.path));
    d.changes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_comparison_gives_what_the_trees_give() {
    let repo = sample();
    let before = repo.head();
    repo.write("src/lib.rs", "pub fn a() -> u8 { 1 }\n")
        .write("src/deep/nested/new.rs", "// new\n")
        .remove("src/gone.rs")
        .rename("src/old_name.rs", "src/new_name.rs")
        .set_executable("README.md", true)
        .remove("becomes_dir")
        .write("becomes_dir/inside.txt", "now a directory\n")
        .remove("becomes_link")
        .symlink("src/lib.rs", "becomes_link");
    let after = repo.commit("many kinds of change");
    let fake = FakeGitHub::start("acme", "widgets", repo.path(), Some("tok")).await;
    let ns = TestRedis::new();
    let gh = source(&fake, &ns, "acme/widgets", "tok", 0).await;
    let old = gh.read_tree(&before).await.unwrap();
    let new = gh.read_tree(&after).await.unwrap();
    let expected = tree_diff(&old, &new);
    assert!(expected.len() >= 8, "{expected:?}");

    fake.reset_counts();
    let diff = gh.diff(&before, &after).await.unwrap().expect("a diff");
    assert_eq!(sorted(diff), expected);
    // The old side came from the listings the full read left behind.
    assert_eq!(fake.request_count("compare"), 1, "{:?}", fake.requests());

    // From a fresh process (no listings in memory, none in Redis): the
    // same answer, the directories listed on demand.
    let cold_ns = TestRedis::new();
    let cold = source(&fake, &cold_ns, "acme/widgets", "tok", 0).await;
    let diff = cold.diff(&before, &after).await.unwrap().expect("a diff");
    assert_eq!(sorted(diff), expected);

    // Nothing changed: an empty diff.
    let same = gh.diff(&after, &after).await.unwrap().expect("a diff");
    assert!(same.changes.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_tree_is_read_when_the_comparison_cannot_be_trusted() {
    let repo = sample();
    let first = repo.head();
    for i in 0..301 {
        repo.write(&format!("many/f{i:03}.txt"), format!("{i}\n"));
    }
    let big = repo.commit("301 files");
    repo.git(&["checkout", "-q", "-b", "side", &first]);
    repo.write("side.txt", "side\n");
    let side = repo.commit("side");
    repo.git(&["checkout", "-q", "main"]);
    let fake = FakeGitHub::start("acme", "widgets", repo.path(), Some("tok")).await;
    let ns = TestRedis::new();
    let gh = source(&fake, &ns, "acme/widgets", "tok", 0).await;

    // 301 files, listed as 300 (GitHub's cap): the list is cut.
    fake.reset_counts();
    assert_eq!(gh.diff(&first, &big).await.unwrap(), None);
    assert_eq!(fake.request_count("compare"), 1, "{:?}", fake.requests());
    // Diverged histories (the base is not an ancestor): no diff.
    assert_eq!(gh.diff(&big, &side).await.unwrap(), None);
    // A base GitHub does not know (a force-push, a gc): no diff, no error.
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    assert_eq!(gh.diff(unknown, &big).await.unwrap(), None);

    // Below `compare_min_entries`, no comparison is asked for at all.
    let small_repo = source(&fake, &ns, "acme/widgets", "tok", 10_000).await;
    small_repo.read_tree(&first).await.unwrap();
    fake.reset_counts();
    assert_eq!(small_repo.diff(&first, &big).await.unwrap(), None);
    assert_eq!(fake.total_requests(), 0, "{:?}", fake.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_moved_and_rejected_repositories_say_so() {
    let repo = sample();
    let fake = FakeGitHub::start("acme", "renamed", repo.path(), Some("tok")).await;
    fake.set_previous_name("acme", "widgets");
    let ns = TestRedis::new();

    let repos = RepoCache::default();
    let moved = |name| open(&fake, &ns, &repos, name, "tok", 10_000);
    let renamed = |e: &SourceError| {
        e.kind == SourceErrorKind::NotFound
            && e.message.contains("renamed or transferred")
            && e.message.contains("acme/renamed")
    };
    let err = moved("acme/widgets").await.err().unwrap();
    assert!(renamed(&err), "{err}");

    // Renamed after the lookup was kept: the branch request says so.
    let kept = RepoCache::default();
    let fake2 = FakeGitHub::start("acme", "widgets", repo.path(), Some("tok")).await;
    let before = open(&fake2, &ns, &kept, "acme/widgets", "tok", 10_000)
        .await
        .unwrap();
    before.resolve_branch("main").await.unwrap();
    drop(before);
    let after = open(&fake2, &ns, &kept, "acme/widgets", "tok", 10_000)
        .await
        .unwrap();
    fake2.set_previous_name("acme", "widgets");
    let err = after.resolve_branch("main").await.unwrap_err();
    assert_eq!(err.kind, SourceErrorKind::NotFound, "{err}");
    assert!(err.message.contains("renamed or transferred"), "{err}");

    let err = moved("acme/nope").await.err().unwrap();
    assert_eq!(err.kind, SourceErrorKind::NotFound, "{err}");
    assert!(
        err.message
            .contains("repository acme/nope not found, or the token cannot read it"),
        "{err}"
    );

    let good = source(&fake, &ns, "acme/renamed", "tok", 10_000).await;
    let err = good.resolve_branch("nope").await.unwrap_err();
    assert_eq!(err.kind, SourceErrorKind::NotFound, "{err}");
    assert!(err.message.contains("branch `nope` not found"), "{err}");
    good.resolve_branch("main").await.unwrap();

    // A wrong token: a clear 401.
    let err = open(&fake, &ns, &repos, "acme/renamed", "wrong", 10_000)
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind, SourceErrorKind::Unauthorized, "{err}");
    assert!(err.message.contains("rejected the credentials"), "{err}");
    // A token revoked after its ETag was kept: the conditional request is
    // refused, never answered from the kept answer.
    good.resolve_branch("main").await.unwrap();
    fake.revoke_token();
    let err = good.resolve_branch("main").await.unwrap_err();
    assert_eq!(err.kind, SourceErrorKind::Unauthorized, "{err}");
    assert!(err.message.contains("rejected the credentials"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_repository_is_opened_without_a_lookup() {
    let repo = sample();
    let fake = FakeGitHub::start("acme", "widgets", repo.path(), Some("tok")).await;
    let ns = TestRedis::new();
    // Connecting looks the repository up once, and says what to keep:
    // GitHub's spelling of the name and the repository's id.
    let connected = open(
        &fake,
        &ns,
        &RepoCache::default(),
        "ACME/Widgets",
        "tok",
        10_000,
    )
    .await
    .unwrap();
    assert_eq!(fake.request_count("repo"), 1, "{:?}", fake.requests());
    let kept = connected.remote().expect("what to keep");
    assert_eq!(
        kept,
        RemoteIdentity {
            name: "acme/widgets".into(),
            id: Some(1),
        }
    );

    // A sync opens it with what was kept: nothing is sent to open it, and
    // a whole sync's reads send no `GET /repos/{owner}/{name}`.
    fake.reset_counts();
    let source = open_known(&fake, &ns, &kept).await;
    assert_eq!(fake.total_requests(), 0, "{:?}", fake.requests());
    assert_eq!(source.describe(), "github:acme/widgets");
    assert_eq!(source.remote(), Some(kept.clone()));
    let head = source.resolve_branch("main").await.unwrap();
    assert_eq!(head, repo.head());
    let tree = source.read_tree(&head).await.unwrap();
    let wanted = tree.iter().map(|e| e.sha.clone()).collect();
    source.read_archive(&head, &wanted).await.unwrap().unwrap();
    assert_eq!(fake.request_count("repo"), 0, "{:?}", fake.requests());
    // A missing branch is still told from a missing repository: the 404
    // is explained by one lookup, which finds the repository.
    fake.reset_counts();
    let err = source.resolve_branch("nope").await.unwrap_err();
    assert_eq!(err.kind, SourceErrorKind::NotFound, "{err}");
    assert!(err.message.contains("branch `nope` not found"), "{err}");
    assert_eq!(fake.request_count("repo"), 1, "{:?}", fake.requests());

    // Renamed since it was connected: the first request says so and names
    // the repository's new name, whatever it asked for.
    fake.rename("acme", "gadgets");
    let renamed = |e: &SourceError| {
        e.kind == SourceErrorKind::NotFound
            && e.message.contains("renamed or transferred")
            && e.message.contains("acme/widgets")
    };
    let source = open_known(&fake, &ns, &kept).await;
    let err = source.resolve_branch("main").await.unwrap_err();
    assert!(renamed(&err), "{err}");
    assert!(
        err.message.contains("GitHub now calls it acme/gadgets"),
        "{err}"
    );
    let err = source.read_tree(&head).await.unwrap_err();
    assert!(renamed(&err), "{err}");

    // Deleted since (or the token lost access to it, which GitHub answers
    // alike): the branch's 404 is looked up, and it is the repository that
    // is missing; the ETag kept for the branch does not hide it.
    let fake = FakeGitHub::start("acme", "widgets", repo.path(), Some("tok")).await;
    let source = open_known(&fake, &ns, &kept).await;
    source.resolve_branch("main").await.unwrap();
    fake.delete_repository();
    let err = source.resolve_branch("main").await.unwrap_err();
    assert_eq!(err.kind, SourceErrorKind::NotFound, "{err}");
    assert!(
        err.message
            .contains("repository acme/widgets not found, or the token cannot read it"),
        "{err}"
    );
    let err = source.read_tree(&head).await.unwrap_err();
    assert!(
        err.message.contains("repository acme/widgets not found"),
        "{err}"
    );
}

/// A 5xx answer or a dropped connection is tried again, after growing
/// pauses (200 ms, 400 ms, 800 ms, each with up to as much again of
/// jitter), `request_retries` times (3 by default); then the request fails
/// as unavailable, saying how often GitHub answered what.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_dropped_connections_are_tried_again_then_reported() {
    let repo = sample();
    let fake = FakeGitHub::start("acme", "widgets", repo.path(), Some("tok")).await;
    let ns = TestRedis::new();
    let source = source(&fake, &ns, "acme/widgets", "tok", 10_000).await;
    fake.reset_counts();

    fake.inject(Fault::ServerErrors {
        count: 3,
        status: 502,
    });
    let started = std::time::Instant::now();
    assert_eq!(source.resolve_branch("main").await.unwrap(), repo.head());
    assert_eq!(fake.request_count("branch"), 4, "{:?}", fake.requests());
    assert!(
        started.elapsed() >= Duration::from_millis(1_400),
        "the three pauses add up to at least 1.4 s: {:?}",
        started.elapsed()
    );

    fake.reset_counts();
    fake.inject(Fault::DropConnection { count: 2 });
    assert_eq!(source.resolve_branch("main").await.unwrap(), repo.head());
    assert_eq!(fake.request_count("branch"), 3, "{:?}", fake.requests());

    fake.reset_counts();
    fake.inject(Fault::ServerErrors {
        count: 4,
        status: 503,
    });
    let err = source.resolve_branch("main").await.unwrap_err();
    assert_eq!(err.kind, SourceErrorKind::Unavailable, "{err}");
    assert!(
        err.message.contains("GitHub answered 503") && err.message.contains("4 times"),
        "{err}"
    );
    assert_eq!(fake.request_count("branch"), 4, "{:?}", fake.requests());
    // The next request is served again.
    assert_eq!(source.resolve_branch("main").await.unwrap(), repo.head());
}
