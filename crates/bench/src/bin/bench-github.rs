//! `bench-github`: requests and wall time of GitHub syncs against the fake
//! GitHub server of test-support (GitHub itself cannot be reached from CI
//! machines). Prints, from one run:
//! - the first import of a generated repository (tarball);
//! - a resync with no change, after 1 changed file, and after 500;
//! - `Source::diff` through the comparison API for 1 changed file;
//! - the same first import done blob by blob, as a ratio.
//!
//! Each row gives the API requests (the archive download counted apart),
//! the 304 answers among them and the rate-limit budget units spent, as the
//! fake counts them (a 304 to an authorized conditional request costs none).
//! `--json` adds every figure as one JSON object on the last line.

use anyhow::{bail, Context, Result};
use clap::Parser;
use projsync_api::service::{self, CreateProject, RepositoryInput};
use projsync_bench::Bench;
use projsync_bench::{generated_content, generated_path};
use projsync_domain::{ProjectId, SyncStatus};
use projsync_test_support::{CountingSources, FakeGitHub, GitRepo};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Files in the generated repository.
    #[arg(long, default_value_t = 5000)]
    files: usize,
    /// Files changed for the large resync.
    #[arg(long, default_value_t = 500)]
    changed: usize,
    /// Also print every figure as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

async fn deploy(fake: &FakeGitHub, archive_min_files: u64) -> Result<Bench> {
    let url = fake.base_url();
    Bench::start_with(
        |s| {
            s.github.api_url = url;
            s.sync.archive_min_files = archive_min_files;
        },
        |settings| async move {
            let sources = projsync::app::sources(&settings).await?;
            Ok(Some(CountingSources::wrapping(Arc::new(sources))))
        },
    )
    .await
}

trait GitHubBench {
    async fn project(&self, name: &str, credential: &str) -> Result<ProjectId>;
    async fn sync(&self, fake: &FakeGitHub, project: ProjectId) -> Result<Row>;
}

impl GitHubBench for Bench {
    async fn project(&self, name: &str, reference: &str) -> Result<ProjectId> {
        // An operator registers where the token is; the project names it.
        let admin = projsync_store::Store::from_pool(self.db.admin.clone());
        let tenant = admin.tenant_by_name("default").await?;
        admin
            .add_credential(&tenant, name, reference, &projsync_store::Actor::cli())
            .await?;
        let p = service::create_project(
            &self.state,
            CreateProject {
                name: name.into(),
                repository: RepositoryInput::Github {
                    repository: "acme/bench".into(),
                    branch: "main".into(),
                    credential: Some(name.into()),
                },
                ignore_patterns: vec![],
                max_file_bytes: None,
                embeddings: None,
                analysis: None,
                schedule: None,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("create project: {e:?}"))?;
        Ok(p.id)
    }

    /// Enqueue, wait; the requests the fake saw and the wall time.
    async fn sync(&self, fake: &FakeGitHub, project: ProjectId) -> Result<Row> {
        fake.reset_counts();
        let started = Instant::now();
        let outcome =
            service::enqueue_sync(&self.state, project, None, None, &self.state.trigger())
                .await
                .map_err(|e| anyhow::anyhow!("enqueue: {e:?}"))?;
        let id = outcome.sync.id;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let s = self.db.store.sync(id).await?;
            if s.status.is_terminal() {
                if s.status != SyncStatus::Succeeded {
                    bail!("sync {id} ended {}: {:?}", s.status, s.error_message);
                }
                return Ok(Row::read(
                    fake,
                    started.elapsed(),
                    s.stats.imported,
                    s.outcome.unwrap_or_default(),
                ));
            }
            if Instant::now() > deadline {
                bail!("sync {id} did not end within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

struct Row {
    wall: Duration,
    /// API requests, the archive download not counted.
    requests: u64,
    /// Archive downloads (`codeload`): no token, no budget.
    downloads: u64,
    not_modified: u64,
    budget_units: u64,
    breakdown: String,
    imported: u64,
    outcome: String,
}

impl Row {
    fn read(fake: &FakeGitHub, wall: Duration, imported: u64, outcome: String) -> Self {
        let counts = fake.requests();
        let downloads = counts.get("codeload").copied().unwrap_or(0);
        Row {
            wall,
            requests: fake.total_requests() - downloads,
            downloads,
            not_modified: fake.not_modified(),
            budget_units: fake.budget_units(),
            breakdown: counts
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            imported,
            outcome,
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "outcome": self.outcome,
            "wall_s": self.wall.as_secs_f64(),
            "requests": self.requests,
            "archive_downloads": self.downloads,
            "not_modified": self.not_modified,
            "budget_units": self.budget_units,
            "entries": self.imported,
            "breakdown": self.breakdown,
        })
    }
}

fn print(label: &str, target: &str, r: &Row) {
    println!(
        "{label:<40} {:>9} {:>8.3} {:>8} {:>5} {:>5} {:>6} {:>7} {target:>14}  {}",
        r.outcome,
        r.wall.as_secs_f64(),
        r.requests,
        r.downloads,
        r.not_modified,
        r.budget_units,
        r.imported,
        r.breakdown
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    projsync_bench::check_services().await?;
    let repo = GitRepo::new();
    for i in 0..args.files {
        repo.write(&generated_path(i), generated_content(i, 0));
    }
    repo.commit("generated");
    // A token, in a file as a mounted secret would be: a conditional
    // request costs no budget only when it is authorized, as on GitHub.
    let token = "bench-token";
    let token_file = std::env::temp_dir().join(format!(
        "projsync-bench-github-{}-token",
        std::process::id()
    ));
    std::fs::write(&token_file, token)?;
    let reference = format!("file:{}", token_file.display());
    let fake = FakeGitHub::start("acme", "bench", repo.path(), Some(token)).await;

    println!(
        "bench-github: {} generated files (1-3 KB each) served by the fake GitHub of test-support over \
         loopback, with a token; import batch 100; tarball used for imports of at least 100 files; \
         embeddings off (entries are chunked, no vector is computed). All figures from this one run. \
         requests = API requests the fake received for the sync (the API's own check when the \
         project is connected is not counted), the archive download apart (dl); 304 = answers Not \
         Modified; units = rate-limit budget units spent (a 304 to an authorized \
         conditional request costs none, as on GitHub).\n",
        args.files
    );
    println!(
        "{:<40} {:>9} {:>8} {:>8} {:>5} {:>5} {:>6} {:>7} {:>14}  breakdown",
        "sync", "outcome", "wall s", "requests", "dl", "304", "units", "entries", "target"
    );
    let tarball = deploy(&fake, 100).await?;
    let project = tarball.project("tarball", &reference).await?;
    let first = tarball.sync(&fake, project).await.context("first import")?;
    print("1. first import (tarball)", "3 + download", &first);
    let none = tarball.sync(&fake, project).await.context("no change")?;
    print("2. resync, no change", "1 (304, 0 u)", &none);
    let before_one = repo.head();
    repo.write(&generated_path(7), generated_content(7, 1));
    let after_one = repo.commit("one");
    let one = tarball.sync(&fake, project).await.context("one change")?;
    print("3. resync, 1 changed file", "3", &one);

    // The comparison path alone, for a repository large enough to take it
    // (`compare_min_entries`; here forced to 0): `Source::diff` from the
    // previous head, after one full tree read has filled the listings.
    let diff_row = {
        use projsync_domain::source::{RepositorySpec, SourceFactory};
        let conn = tarball.settings.queue_options().connect().await?;
        let sources = projsync_sources::DefaultSources::new(
            projsync_sources::GitHubConfig {
                api_url: fake.base_url(),
                compare_min_entries: 0,
                ..Default::default()
            },
            Some((conn, format!("{}-diff", tarball.settings.redis.namespace))),
        );
        let source = sources
            .open(&RepositorySpec {
                provider: "github",
                location: "acme/bench",
                credentials_ref: Some(&reference),
                remote: None,
            })
            .await
            .map_err(|e| anyhow::anyhow!("open: {e}"))?;
        source
            .read_tree(&before_one)
            .await
            .map_err(|e| anyhow::anyhow!("tree: {e}"))?;
        fake.reset_counts();
        let started = Instant::now();
        let diff = source
            .diff(&before_one, &after_one)
            .await
            .map_err(|e| anyhow::anyhow!("diff: {e}"))?;
        let (outcome, changed) = match diff {
            Some(d) => ("diff".to_string(), d.changes.len() as u64),
            None => ("full tree".to_string(), 0),
        };
        Row::read(&fake, started.elapsed(), changed, outcome)
    };
    print("3b. Source::diff, 1 file (comparison)", "-", &diff_row);

    for i in 0..args.changed.min(args.files) {
        let index = (i * 7919) % args.files;
        repo.write(&generated_path(index), generated_content(index, 2));
    }
    repo.commit("many");
    let many = tarball.sync(&fake, project).await.context("many changes")?;
    print(
        &format!("4. resync, {} changed files", args.changed),
        "-",
        &many,
    );
    drop(tarball);

    // The same first import, blob by blob. It needs more than GitHub's
    // 5,000 requests an hour (projsync would wait for the reset, as it
    // should); the fake's budget is raised so that the time is measurable.
    fake.set_rate_limit(1_000_000);
    let per_blob = deploy(&fake, u64::MAX).await?;
    let project = per_blob.project("per-blob", &reference).await?;
    let blobs = per_blob
        .sync(&fake, project)
        .await
        .context("per-blob import")?;
    print("5. first import, blob by blob", "-", &blobs);
    let _ = std::fs::remove_file(&token_file);
    println!(
        "\nfirst import, blob by blob vs tarball: {:.1}x the wall time, {:.0}x the requests ({} vs {})",
        blobs.wall.as_secs_f64() / first.wall.as_secs_f64(),
        blobs.requests as f64 / first.requests.max(1) as f64,
        blobs.requests,
        first.requests
    );
    if args.json {
        let out = serde_json::json!({
            "files": args.files,
            "changed": args.changed,
            "requests_first_import": first.requests,
            "archive_downloads_first_import": first.downloads,
            "budget_units_first_import": first.budget_units,
            "requests_no_change": none.requests,
            "not_modified_no_change": none.not_modified,
            "budget_units_no_change": none.budget_units,
            "requests_1_file": one.requests,
            "budget_units_1_file": one.budget_units,
            "requests_diff_1_file_compare": diff_row.requests,
            "requests_many_files": many.requests,
            "requests_first_import_per_blob": blobs.requests,
            "rows": {
                "first_import": first.json(),
                "no_change": none.json(),
                "one_file": one.json(),
                "diff_one_file_compare": diff_row.json(),
                "many_files": many.json(),
                "first_import_per_blob": blobs.json(),
            },
        });
        println!("{out}");
    }
    Ok(())
}
