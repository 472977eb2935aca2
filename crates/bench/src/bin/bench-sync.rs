//! `bench-sync`: diff-aware sync against a generated repository, compared
//! with re-importing everything. Prints figures; see `--help`.

use anyhow::{ensure, Result};
use clap::Parser;
use projsync_bench::{
    change_files, generate_repo, secs, spread, Bench, SyncRun, Table, FILES_PER_DIR,
};
use projsync_domain::{ProjectId, SyncPhase};
use projsync_store::copy::BinaryCopy;
use serde_json::json;
use std::process::ExitCode;
use std::time::{Duration, Instant};

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
    /// No-change and 1-file resyncs run this many times more, alternately,
    /// for the resync figure (their medians).
    #[arg(long, default_value_t = 7)]
    samples: usize,
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
    // Sync, not the model: entries are still chunked, but no vector is
    // computed (bench-embed measures that).
    let bench = Bench::start(|s| s.embeddings.enabled = false).await?;
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
    // The worker runs in this process: its peak is the process's.
    let worker_max_rss_mb = max_rss_mb();
    let copy = copy_baseline(bench, project).await?;

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

    // The resync figure: tens of milliseconds each, so one run of each is
    // mostly noise. Medians of `samples` more of each, alternately.
    let mut no_change_samples = Vec::new();
    let mut one_file_samples = Vec::new();
    let one = spread(files, 1);
    for i in 0..args.samples {
        let run = bench.run_sync(project).await?;
        ensure!(run.outcome() == "unchanged", "a no-change resync changed");
        no_change_samples.push(run.wall);
        change_files(&repo, &one, 1000 + i as u32);
        let run = bench.run_sync(project).await?;
        ensure!(
            run.record.stats.imported == 1 && scan_mode(&run) == "diff",
            "a 1-file resync wrote {} entries ({})",
            run.record.stats.imported,
            scan_mode(&run)
        );
        one_file_samples.push(run.wall);
    }
    let no_change_median = median(&no_change_samples).unwrap_or(cases[0].diff.wall);
    let one_file_median = median(&one_file_samples).unwrap_or(cases[1].diff.wall);

    println!(
        "bench-sync: {files} files in {} directories (1-3 KB of text each; one commit, packed as a clone is), import batch size {}, \
         worker concurrency {}, queue poll {} ms, embeddings off (entries are chunked, no vector is \
         computed); all figures below come from this one run.",
        files.div_ceil(FILES_PER_DIR),
        bench.settings.worker.import_batch_size,
        bench.settings.worker.concurrency,
        bench.settings.redis.poll_interval_ms,
    );
    println!(
        "(generating, committing and packing the repository took {} s, not counted. wall = enqueue to \
         terminal status, polling the ledger every 1 ms for 250 ms, then every 10 ms; worker = from the claim (the sync's \
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
        "scan",
        "entries written",
        "prepare s",
        "scan s",
        "import s",
        "embed s",
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
            scan_mode(r).to_string(),
            r.record.stats.imported.to_string(),
            phase(SyncPhase::Prepare),
            phase(SyncPhase::Scan),
            phase(SyncPhase::Import),
            phase(SyncPhase::Embed),
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
    println!();

    println!(
        "resync samples (wall s, {} of each, alternately, after the runs above): no change {}; \
         1 changed file {}",
        no_change_samples.len(),
        list(&no_change_samples),
        list(&one_file_samples)
    );
    println!();

    // The figures, side by side with their baselines.
    let one_file = &cases[1].diff;
    let import_s = first
        .phase(SyncPhase::Import)
        .unwrap_or_default()
        .as_secs_f64();
    let import_rows_per_s = first.record.stats.imported as f64 / import_s.max(1e-9);
    let mut figures = Table::new(&["figure", "value", "baseline", "ratio"]);
    figures.row(vec![
        "resync after 1 changed file, median wall s (scan mode)".into(),
        format!("{} ({})", secs(one_file_median), scan_mode(one_file)),
        format!("no-change resync {} s", secs(no_change_median)),
        format!(
            "{:.2}x",
            one_file_median.as_secs_f64() / no_change_median.as_secs_f64()
        ),
    ]);
    figures.row(vec![
        "first import, files/s (wall, all phases)".into(),
        format!("{:.0}", first.files_per_sec()),
        format!("raw COPY {:.0} rows/s", copy.rows_per_s),
        format!("{:.0}%", 100.0 * first.files_per_sec() / copy.rows_per_s),
    ]);
    figures.row(vec![
        "first import, import phase rows/s".into(),
        format!("{import_rows_per_s:.0}"),
        format!("raw COPY {:.0} rows/s", copy.rows_per_s),
        format!("{:.0}%", 100.0 * import_rows_per_s / copy.rows_per_s),
    ]);
    figures.row(vec![
        "worker max RSS, MB (in-process worker: this process's peak)".into(),
        format!("{worker_max_rss_mb:.0}"),
        "-".into(),
        "-".into(),
    ]);
    print!("{}", figures.render());
    println!(
        "(raw COPY: the first import's {} rows, read back, in one binary COPY into \
         memory_entries itself (its indexes, checks and foreign keys; as the table's owner, \
         rolled back), {} MB, {} s; into a table made LIKE memory_entries INCLUDING ALL, \
         the same indexes without foreign keys: {:.0} rows/s, and the import phase is {:.0}% \
         of that)",
        copy.rows,
        copy.bytes / (1 << 20),
        secs(copy.elapsed),
        copy.like_rows_per_s,
        100.0 * import_rows_per_s / copy.like_rows_per_s
    );

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
                "scan_mode": scan_mode(r),
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
            "import_phase_rows_per_s": import_rows_per_s,
            "copy_rows_per_s": copy.rows_per_s,
            "copy_like_rows_per_s": copy.like_rows_per_s,
            "copy_rows": copy.rows,
            "resync_no_change_wall_s": no_change_median.as_secs_f64(),
            "resync_1_file_wall_s": one_file_median.as_secs_f64(),
            "resync_no_change_samples_s": no_change_samples.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
            "resync_1_file_samples_s": one_file_samples.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
            "resync_1_file_scan_mode": scan_mode(one_file),
            "worker_max_rss_mb": worker_max_rss_mb,
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

/// The middle value (the upper one of an even count).
fn median(samples: &[Duration]) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied()
}

fn list(samples: &[Duration]) -> String {
    let mut out: Vec<String> = samples.iter().map(|d| secs(*d)).collect();
    out.push(format!(
        "(median {})",
        median(samples).map_or_else(|| "-".into(), secs)
    ));
    out.join(" ")
}

fn scan_mode(r: &SyncRun) -> &'static str {
    r.record.stats.scan_mode.map(|m| m.as_str()).unwrap_or("-")
}

/// The peak resident set of this process (`VmHWM`), in MB.
fn max_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// project, path, content, hash, blob, language, size, sync, tenant
type EntryRow = (
    uuid::Uuid,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    uuid::Uuid,
    uuid::Uuid,
);

struct CopyBaseline {
    rows: u64,
    bytes: usize,
    elapsed: std::time::Duration,
    /// Into memory_entries itself.
    rows_per_s: f64,
    /// Into a copy of it without foreign keys.
    like_rows_per_s: f64,
}

/// The columns the COPY baseline writes.
const COPY_COLUMNS: &str = "(project_id, path, kind, content, content_hash, blob_sha, language, \
                            size_bytes, status, created_by_sync_id, tenant_id)";

/// One binary COPY of `data` (`rows` rows) into `table`: how long it took.
async fn timed_copy(
    conn: &mut sqlx::PgConnection,
    table: &str,
    data: Vec<u8>,
    rows: u64,
) -> Result<Duration> {
    let started = Instant::now();
    let mut sink = conn
        .copy_in_raw(&format!(
            "COPY {table} {COPY_COLUMNS} FROM STDIN (FORMAT binary)"
        ))
        .await?;
    sink.send(data).await?;
    let copied = sink.finish().await?;
    let elapsed = started.elapsed();
    ensure!(
        copied == rows,
        "COPY into {table} wrote {copied} rows of {rows}"
    );
    Ok(elapsed)
}

/// The same rows the first import wrote, in one binary `COPY` into
/// memory_entries itself (its indexes, defaults, checks and foreign keys;
/// as the owner, so without row-level security, which refuses `COPY FROM`
/// to the application role), in a transaction that is rolled back: what
/// the database can take at best, measured in this run. Also into a table
/// made `LIKE memory_entries INCLUDING ALL` (the same indexes, no foreign
/// keys): the stricter figure printed beside it.
async fn copy_baseline(bench: &Bench, project: ProjectId) -> Result<CopyBaseline> {
    let admin = &bench.db.admin;
    let rows: Vec<EntryRow> = sqlx::query_as(
        "SELECT project_id, path, content, content_hash, blob_sha, language, size_bytes, \
             created_by_sync_id, tenant_id \
         FROM memory_entries WHERE project_id = $1",
    )
    .bind(project.0)
    .fetch_all(admin)
    .await?;
    let Some(first) = rows.first() else {
        anyhow::bail!("the first import wrote no entry to copy");
    };
    // A sync of the project for the copied versions to belong to (rolled
    // back with them): the import's own keys are taken.
    let (copy_sync, tenant) = (uuid::Uuid::new_v4(), first.8);
    let encode = |sync: Option<uuid::Uuid>| {
        let mut copy = BinaryCopy::new();
        for (project_id, path, content, hash, sha, lang, size, created_by, tenant) in &rows {
            copy.row(11)
                .uuid(*project_id)
                .text(Some(path))
                .text(Some("file"))
                .text(Some(content))
                .text(Some(hash))
                .text(sha.as_deref())
                .text(lang.as_deref())
                .int8(*size)
                .text(Some("pending"))
                .uuid(sync.unwrap_or(*created_by))
                .uuid(*tenant);
        }
        (copy.rows(), copy.finish())
    };
    let (n, data) = encode(Some(copy_sync));
    let bytes = data.len();
    let mut tx = admin.begin().await?;
    sqlx::query(
        "INSERT INTO project_syncs (id, project_id, branch, status, tenant_id) \
         VALUES ($1, $2, 'bench-copy', 'failed', $3)",
    )
    .bind(copy_sync)
    .bind(project.0)
    .bind(tenant)
    .execute(&mut *tx)
    .await?;
    let elapsed = timed_copy(&mut tx, "memory_entries", data, n).await?;
    tx.rollback().await?;

    let (_, data) = encode(None);
    sqlx::query("CREATE TABLE bench_copy_baseline (LIKE memory_entries INCLUDING ALL)")
        .execute(admin)
        .await?;
    let like_elapsed =
        timed_copy(&mut *admin.acquire().await?, "bench_copy_baseline", data, n).await?;
    drop(rows);
    sqlx::query("DROP TABLE bench_copy_baseline")
        .execute(admin)
        .await?;
    Ok(CopyBaseline {
        rows: n,
        bytes,
        elapsed,
        rows_per_s: n as f64 / elapsed.as_secs_f64().max(1e-9),
        like_rows_per_s: n as f64 / like_elapsed.as_secs_f64().max(1e-9),
    })
}
