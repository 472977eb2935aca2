//! `bench-sync`: diff-aware sync against a generated repository, compared
//! with re-importing everything. Prints figures; see `--help`.

use anyhow::{ensure, Result};
use clap::Parser;
use projsync_bench::{
    change_files, generate_repo, secs, spread, Bench, SyncRun, Table, FILES_PER_DIR,
};
use projsync_domain::SyncPhase;
use serde_json::json;
use std::process::ExitCode;
use std::time::Instant;

/// Measure diff-aware sync on a generated repository: the first import, a
/// resync with no change, after 1 changed file and after 100 changed files,
/// each compared with a naive full re-import (a new project on the same
/// repository at the same head). Needs PostgreSQL and Redis
/// (PROJSYNC_TEST_DATABASE_URL, PROJSYNC_TEST_REDIS_URL; scripts/services.sh);
/// uses a fresh database and Redis namespace, removed at the end.
#[derive(Debug, Parser)]
#[command(name = "bench-sync")]
struct Args {
    /// Files in the generated repository (100 per directory, 1-3 KB each).
    #[arg(long, default_value_t = 10_000)]
    files: usize,
    /// Files changed by the larger change.
    #[arg(long, default_value_t = 100)]
    changed: usize,
    /// Also print every figure as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

struct Case {
    label: String,
    diff: SyncRun,
    naive: SyncRun,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-sync: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<()> {
    ensure!(args.files > 0, "--files must be at least 1");
    ensure!(args.changed > 0, "--changed must be at least 1");
    let bench = Bench::start(|_| {}).await?;
    let result = measure(&bench, args).await;
    bench.stop().await?;
    result
}

async fn measure(bench: &Bench, args: &Args) -> Result<()> {
    let files = args.files;
    let generating = Instant::now();
    let repo = generate_repo(files);
    let generated_in = generating.elapsed();

    let project = bench.create_project("bench", &repo).await?;
    let first = bench.run_sync(project).await?;
    ensure!(
        first.record.stats.imported == files as u64,
        "the first import wrote {} entries for {files} files",
        first.record.stats.imported
    );

    let mut cases = Vec::new();
    let many = spread(files, args.changed);
    let steps = [
        ("no change".to_string(), Vec::new()),
        ("1 changed file".to_string(), spread(files, 1)),
        (format!("{} changed files", many.len()), many),
    ];
    for (revision, (label, changed)) in (0u32..).zip(steps) {
        if !changed.is_empty() {
            change_files(&repo, &changed, revision);
        }
        let diff = bench.run_sync(project).await?;
        ensure!(
            diff.record.stats.imported == changed.len() as u64,
            "the resync after {label} wrote {} entries, expected {}",
            diff.record.stats.imported,
            changed.len()
        );
        let naive_project = bench
            .create_project(&format!("naive-{revision}"), &repo)
            .await?;
        let naive = bench.run_sync(naive_project).await?;
        cases.push(Case { label, diff, naive });
    }

    println!(
        "bench-sync: {files} files in {} directories (1-3 KB of text each), import batch size {}, \
         worker concurrency {}, queue poll {} ms; all figures below come from this one run.",
        files.div_ceil(FILES_PER_DIR),
        bench.settings.worker.import_batch_size,
        bench.settings.worker.concurrency,
        bench.settings.redis.poll_interval_ms,
    );
    println!(
        "(generating and committing the repository took {} s, not counted. wall = enqueue to \
         terminal status, polling the ledger every 10 ms; worker = from the claim (the sync's \
         started_at) to the same end; phase s = from the phase's start to the next one's, the \
         last to the end)",
        secs(generated_in)
    );
    println!();

    let mut syncs = Table::new(&[
        "sync",
        "outcome",
        "wall s",
        "worker s",
        "files/s",
        "blob reads",
        "tree reads",
        "entries written",
        "prepare s",
        "scan s",
        "import s",
        "finalize s",
    ]);
    let mut add = |name: String, r: &SyncRun, rate: bool| {
        let phase = |p| r.phase(p).map(secs).unwrap_or_else(|| "-".into());
        syncs.row(vec![
            name,
            r.outcome().to_string(),
            secs(r.wall),
            r.worker.map(secs).unwrap_or_else(|| "-".into()),
            if rate {
                format!("{:.0}", r.files_per_sec())
            } else {
                "-".into()
            },
            r.blob_reads.to_string(),
            r.tree_reads.to_string(),
            r.record.stats.imported.to_string(),
            phase(SyncPhase::Prepare),
            phase(SyncPhase::Scan),
            phase(SyncPhase::Import),
            phase(SyncPhase::Finalize),
        ]);
    };
    add("1. first import".into(), &first, true);
    for (i, c) in cases.iter().enumerate() {
        add(format!("{}. resync, {}", i + 2, c.label), &c.diff, false);
    }
    for (i, c) in cases.iter().enumerate() {
        add(
            format!("5.{}. naive, {} (full import)", i + 1, c.label),
            &c.naive,
            true,
        );
    }
    print!("{}", syncs.render());
    println!();

    let mut ratios = Table::new(&[
        "resync",
        "diff-aware wall s",
        "naive wall s",
        "naive/diff-aware wall",
        "diff-aware blob reads",
        "naive blob reads",
        "diff-aware entries",
        "naive entries",
    ]);
    for c in &cases {
        ratios.row(vec![
            c.label.clone(),
            secs(c.diff.wall),
            secs(c.naive.wall),
            format!(
                "{:.1}x",
                c.naive.wall.as_secs_f64() / c.diff.wall.as_secs_f64()
            ),
            c.diff.blob_reads.to_string(),
            c.naive.blob_reads.to_string(),
            c.diff.record.stats.imported.to_string(),
            c.naive.record.stats.imported.to_string(),
        ]);
    }
    print!("{}", ratios.render());

    if args.json {
        let run_json = |r: &SyncRun| {
            json!({
                "outcome": r.outcome(),
                "wall_s": r.wall.as_secs_f64(),
                "worker_s": r.worker.map(|d| d.as_secs_f64()),
                "blob_reads": r.blob_reads,
                "tree_reads": r.tree_reads,
                "entries_written": r.record.stats.imported,
                "files_seen": r.record.stats.files_seen,
                "phases_s": r.phases.iter()
                    .map(|(p, d)| (p.to_string(), json!(d.as_secs_f64())))
                    .collect::<serde_json::Map<_, _>>(),
            })
        };
        let out = json!({
            "files": files,
            "import_batch_size": bench.settings.worker.import_batch_size,
            "first_import": run_json(&first),
            "first_import_files_per_s": first.files_per_sec(),
            "resyncs": cases.iter().map(|c| json!({
                "case": c.label,
                "diff_aware": run_json(&c.diff),
                "naive": run_json(&c.naive),
                "naive_over_diff_aware_wall": c.naive.wall.as_secs_f64() / c.diff.wall.as_secs_f64(),
            })).collect::<Vec<_>>(),
        });
        println!("{out}");
    }
    Ok(())
}
