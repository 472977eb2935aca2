//! `bench-github`: requests and wall time of GitHub syncs against the fake
//! GitHub server of test-support (GitHub itself cannot be reached from CI
//! machines). Prints, from one run:
//! - the first import of a generated repository (tarball);
//! - a resync with no change, after 1 changed file, and after 500;
//! - the same first import done blob by blob, as a ratio.

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
    async fn project(&self, name: &str) -> Result<ProjectId>;
    async fn sync(&self, fake: &FakeGitHub, project: ProjectId) -> Result<Row>;
}

impl GitHubBench for Bench {
    async fn project(&self, name: &str) -> Result<ProjectId> {
        let p = service::create_project(
            &self.state,
            CreateProject {
                name: name.into(),
                repository: RepositoryInput::Github {
                    repository: "acme/bench".into(),
                    branch: "main".into(),
                    credential: None,
                },
                ignore_patterns: vec![],
                max_file_bytes: None,
                embeddings: None,
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
        let outcome = service::enqueue_sync(&self.state, project, None, None)
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
                let counts = fake.requests();
                let breakdown = counts
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Ok(Row {
                    wall: started.elapsed(),
                    requests: fake.total_requests(),
                    breakdown,
                    imported: s.stats.imported,
                    outcome: s.outcome.unwrap_or_default(),
                });
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
    requests: u64,
    breakdown: String,
    imported: u64,
    outcome: String,
}

fn print(label: &str, target: &str, r: &Row) {
    println!(
        "{label:<38} {:>9} {:>8.3} {:>9} {:>8} {target:>8}  {}",
        r.outcome,
        r.wall.as_secs_f64(),
        r.requests,
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
    let fake = FakeGitHub::start("acme", "bench", repo.path(), None).await;

    println!(
        "bench-github: {} generated files (1-3 KB each) served by the fake GitHub of test-support over \
         loopback; import batch 100; tarball used for imports of at least 100 files. All figures from \
         this one run. requests = requests the fake received for the sync (the API's own check when \
         the project is connected is not counted).\n",
        args.files
    );
    println!(
        "{:<38} {:>9} {:>8} {:>9} {:>8} {:>8}  breakdown",
        "sync", "outcome", "wall s", "requests", "entries", "target"
    );
    let tarball = deploy(&fake, 100).await?;
    let project = tarball.project("tarball").await?;
    let first = tarball.sync(&fake, project).await.context("first import")?;
    print("1. first import (tarball)", "<= 5", &first);
    let none = tarball.sync(&fake, project).await.context("no change")?;
    print("2. resync, no change", "<= 2", &none);
    repo.write(&generated_path(7), generated_content(7, 1));
    repo.commit("one");
    let one = tarball.sync(&fake, project).await.context("one change")?;
    print("3. resync, 1 changed file", "<= 4", &one);
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
    let project = per_blob.project("per-blob").await?;
    let blobs = per_blob
        .sync(&fake, project)
        .await
        .context("per-blob import")?;
    print("5. first import, blob by blob", "-", &blobs);
    println!(
        "\nfirst import, blob by blob vs tarball: {:.1}x the wall time, {:.0}x the requests ({} vs {})",
        blobs.wall.as_secs_f64() / first.wall.as_secs_f64(),
        blobs.requests as f64 / first.requests.max(1) as f64,
        blobs.requests,
        first.requests
    );
    Ok(())
}
