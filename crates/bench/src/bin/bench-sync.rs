//! `bench-sync`: diff-aware sync against a generated repository, compared
//! with re-importing everything, and the analysis rate there and on a real
//! repository. Prints figures; see `--help`.

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use projsync_bench::{
    change_files, generate_repo, generated_code_files, generated_path, secs, spread, Bench,
    SyncRun, Table, FILES_PER_DIR,
};
use projsync_domain::{ProjectId, SyncPhase};
use projsync_store::copy::BinaryCopy;
use projsync_test_support::GitRepo;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// Measure diff-aware sync on a generated repository: the first import, a
/// resync with no change, after 1 changed file and after 100 changed files,
/// each compared with a naive full re-import (a new project on the same
/// repository at the same head). Then the first import of a real
/// repository (--real-repo), for the analysis rate on real code. Needs
/// PostgreSQL and Redis
/// (PROJSYNC_TEST_DATABASE_URL, PROJSYNC_TEST_REDIS_URL; scripts/services.sh);
/// uses a fresh database and Redis namespace, removed at the end. With
/// BENCH_TRACE set to a tracing filter (say
/// `sqlx::query=debug,projsync_pipeline=info`), the in-process worker's
/// phase spans and statements are printed to stderr with their times.
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
    /// A Git checkout whose HEAD commit is synced once as a project (a
    /// first import, every file analysed) for the analysis rate on real
    /// code; uncommitted changes are not part of it. Default: the projsync
    /// checkout this benchmark was built from (or else the one the current
    /// directory is in).
    #[arg(long, value_name = "PATH")]
    real_repo: Option<PathBuf>,
    /// Each resync is compared with a naive full re-import (three more
    /// first imports) only up to this many files: at 100,000 files they
    /// would take most of the run's 10 minutes, and the diff-aware figures
    /// do not depend on them.
    #[arg(long, default_value_t = 20_000)]
    naive_max_files: usize,
}

struct Case {
    label: String,
    diff: SyncRun,
    /// `None` above `--naive-max-files`.
    naive: Option<SyncRun>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // Where a run's time goes, statement by statement (off by default: it
    // slows the run it shows).
    if std::env::var_os("BENCH_TRACE").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("BENCH_TRACE"))
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_writer(std::io::stderr)
            .init();
    }
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
    // Before anything is started: a wrong path fails at once.
    let real_repo = real_repo_checkout(args.real_repo.as_deref())?;
    // Sync, not the model: the harness runs the worker with embeddings
    // off, so entries are still chunked but no vector is computed
    // (bench-embed measures that).
    let bench = Bench::start(|_| {}).await?;
    let result = measure(&bench, args, &real_repo).await;
    bench.stop().await?;
    result
}

async fn measure(bench: &Bench, args: &Args, real_repo: &Checkout) -> Result<()> {
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
        let naive = if files <= args.naive_max_files {
            let naive_project = bench
                .create_project(&format!("naive-{revision}"), &repo)
                .await?;
            Some(bench.run_sync(naive_project).await?)
        } else {
            None
        };
        cases.push(Case { label, diff, naive });
    }

    // The resync figure: tens of milliseconds each, so one run of each is
    // mostly noise. Medians of `samples` more of each, alternately.
    let mut no_change_samples = Vec::new();
    let mut one_file_samples = Vec::new();
    let mut one_file_analyzed = Vec::new();
    let mut one_file_docs = vec![cases[1].diff.record.stats.docs_regenerated];
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
        one_file_analyzed.push(run.record.stats.analyzed_files);
        one_file_docs.push(run.record.stats.docs_regenerated);
    }
    let no_change_median = median(&no_change_samples).unwrap_or(cases[0].diff.wall);
    let one_file_median = median(&one_file_samples).unwrap_or(cases[1].diff.wall);

    // The real repository: a first import, so its whole tree is analysed.
    let real_copy = real_repo.copy()?;
    let real_project = bench.create_project("real-repo", &real_copy).await?;
    let real = bench.run_sync(real_project).await?;

    println!(
        "bench-sync: {files} files in {} directories (1-3 KB each; {} of them .rs, .py, .ts and .go files of code, \
         the others .md and .txt text; one commit, packed as a clone is), import batch size {}, \
         analysis batch {} files, worker concurrency {}, queue poll {} ms, embeddings off (entries are chunked, no vector is \
         computed); all figures below come from this one run.",
        files.div_ceil(FILES_PER_DIR),
        generated_code_files(files),
        bench.settings.worker.import_batch_size,
        bench.settings.analysis.batch_files,
        bench.settings.worker.concurrency,
        bench.settings.redis.poll_interval_ms,
    );
    println!(
        "(generating, committing and packing the repository took {} s, not counted. wall = enqueue to \
         terminal status, seen within 1 ms from the in-process worker's count of ended syncs (then read from the \
         ledger), not by polling the database; worker = from the claim (the sync's \
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
        "analyze s",
        "docs s",
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
            phase(SyncPhase::Analyze),
            phase(SyncPhase::Docs),
            phase(SyncPhase::Embed),
            phase(SyncPhase::Finalize),
        ]);
    };
    add("1. first import".into(), &first, true);
    for (i, c) in cases.iter().enumerate() {
        add(format!("{}. resync, {}", i + 2, c.label), &c.diff, false);
    }
    for (i, c) in cases.iter().enumerate() {
        if let Some(naive) = &c.naive {
            add(
                format!("5.{}. naive, {} (full import)", i + 1, c.label),
                naive,
                true,
            );
        }
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
        let Some(naive) = &c.naive else {
            continue;
        };
        ratios.row(vec![
            c.label.clone(),
            secs(c.diff.wall),
            secs(naive.wall),
            format!(
                "{:.1}x",
                naive.wall.as_secs_f64() / c.diff.wall.as_secs_f64()
            ),
            c.diff.blob_reads.to_string(),
            naive.blob_reads.to_string(),
            c.diff.record.stats.imported.to_string(),
            naive.record.stats.imported.to_string(),
        ]);
    }
    if cases.iter().all(|c| c.naive.is_some()) {
        print!("{}", ratios.render());
    } else {
        println!(
            "(no naive full re-imports: {files} files is above --naive-max-files {})",
            args.naive_max_files
        );
    }
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
    println!();

    // Code analysis (issue 13).
    let first_rates = AnalysisRates::of(&first);
    let one_file_rates = AnalysisRates::of(one_file);
    let real_rates = AnalysisRates::of(&real);
    let real_stats = &real.record.stats;
    println!(
        "real repository: {} at {} (HEAD; uncommitted changes are not synced), synced as a new project: \
         {} files seen, {} imported, {} not imported ({}), wall {} s",
        real_repo.top.display(),
        real_repo.short_commit(),
        real_stats.files_seen,
        real_stats.imported,
        real_stats.skipped,
        if real_stats.skipped_by_reason.is_empty() {
            "-".to_string()
        } else {
            real_stats
                .skipped_by_reason
                .iter()
                .map(|(reason, n)| format!("{reason} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        secs(real.wall),
    );
    let mut analysis = Table::new(&[
        "analysis",
        "analyze s",
        "files analysed",
        "partial",
        "not analysed (reason)",
        "symbols changed",
        "files/s",
        "symbols/s",
        "docs regenerated",
    ]);
    let mut add_analysis = |name: String, r: &SyncRun| {
        let a = AnalysisRates::of(r);
        let stats = &r.record.stats;
        analysis.row(vec![
            name,
            a.phase.map(secs).unwrap_or_else(|| "-".into()),
            stats.analyzed_files.to_string(),
            stats.analyzed_partial.to_string(),
            skipped_by_reason(r),
            stats.symbols_changed.to_string(),
            rate(a.files_per_s),
            rate(a.symbols_per_s),
            stats.docs_regenerated.to_string(),
        ]);
    };
    add_analysis("generated, 1. first import".into(), &first);
    for (i, c) in cases.iter().enumerate().skip(1) {
        add_analysis(
            format!("generated, {}. resync, {}", i + 2, c.label),
            &c.diff,
        );
    }
    add_analysis("real repository, first import".into(), &real);
    print!("{}", analysis.render());
    println!(
        "(analyze s = from the analyze phase's start to the docs phase's; files/s and symbols/s = \
         files analysed and symbols changed over it; symbols changed = symbol versions written plus \
         symbols removed, on a first import the symbols written; not analysed = files of the sync \
         in no language analysis reads, by reason)"
    );

    // What the run must show; said, and the run fails, otherwise.
    let code_files = generated_code_files(files) as u64;
    let one_file_path = generated_path(spread(files, 1)[0]);
    let mut checks = vec![
        (
            format!("the resync after 1 changed file ({one_file_path}) analysed exactly 1 file"),
            one_file.record.stats.analyzed_files == 1,
            format!("it analysed {}", one_file.record.stats.analyzed_files),
        ),
        (
            format!(
                "each of the {} sampled 1-file resyncs analysed exactly 1 file",
                one_file_analyzed.len()
            ),
            one_file_analyzed.iter().all(|&n| n == 1),
            format!("they analysed {one_file_analyzed:?}"),
        ),
        (
            format!(
                "the first import analysed all {code_files} generated code files, none partial"
            ),
            first.record.stats.analyzed_files == code_files
                && first.record.stats.analyzed_partial == 0,
            format!(
                "it analysed {} ({} partial; not analysed: {})",
                first.record.stats.analyzed_files,
                first.record.stats.analyzed_partial,
                skipped_by_reason(&first)
            ),
        ),
    ];
    // A 1-file change regenerates at most the doc of the module it is in
    // (a body edit: none; its imports did not change).
    checks.push((
        format!("each 1-file resync regenerated at most 1 module doc (that of {one_file_path})"),
        one_file_docs.iter().all(|&n| n <= 1),
        format!("they regenerated {one_file_docs:?}"),
    ));
    // A repository with no file in a language analysis reads (docs, data)
    // has nothing to analyse: that is no failure of the analysis.
    let no_code = real_stats
        .analysis_skipped_by_reason
        .keys()
        .all(|reason| reason == "unsupported_language");
    checks.push((
        "the real repository's first import analysed at least one file, unless it has no \
         file in a language analysis reads"
            .into(),
        real_stats.analyzed_files > 0 || no_code,
        format!(
            "it analysed none (not analysed: {})",
            skipped_by_reason(&real)
        ),
    ));
    let mut failed = Vec::new();
    for (what, ok, otherwise) in &checks {
        if *ok {
            println!("check: {what}: ok");
        } else {
            println!("check FAILED: {what}: {otherwise}");
            failed.push(format!("{what}: {otherwise}"));
        }
    }

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
                "analyzed_files": r.record.stats.analyzed_files,
                "analyzed_partial": r.record.stats.analyzed_partial,
                "analysis_skipped_by_reason": r.record.stats.analysis_skipped_by_reason,
                "symbols_changed": r.record.stats.symbols_changed,
                "docs_regenerated": r.record.stats.docs_regenerated,
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
            "analysis_files_per_s": first_rates.files_per_s,
            "analysis_symbols_per_s": first_rates.symbols_per_s,
            "analysis_1_file_analyzed_files": one_file.record.stats.analyzed_files,
            "analysis_1_file_symbols_changed": one_file.record.stats.symbols_changed,
            "analysis_1_file_docs_regenerated": one_file.record.stats.docs_regenerated,
            "first_import_docs_regenerated": first.record.stats.docs_regenerated,
            "analysis_1_file_files_per_s": one_file_rates.files_per_s,
            "analysis_1_file_symbols_per_s": one_file_rates.symbols_per_s,
            "analysis_1_file_samples_analyzed_files": one_file_analyzed,
            "real_repo_analysis_files_per_s": real_rates.files_per_s,
            "real_repo_analysis_symbols_per_s": real_rates.symbols_per_s,
            "real_repo_files": real_stats.analyzed_files,
            "real_repo_symbols": real_stats.symbols_changed,
            "real_repo_files_seen": real_stats.files_seen,
            "real_repo_commit": real_repo.commit,
            "real_repo": run_json(&real),
            "resyncs": cases.iter().map(|c| json!({
                "case": c.label,
                "diff_aware": run_json(&c.diff),
                "naive": c.naive.as_ref().map(run_json),
                "naive_over_diff_aware_wall": c.naive.as_ref()
                    .map(|n| n.wall.as_secs_f64() / c.diff.wall.as_secs_f64()),
            })).collect::<Vec<_>>(),
        });
        println!("{out}");
    }
    if !failed.is_empty() {
        bail!("{} check(s) failed: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}

/// The analyze phase's time and rates in one sync.
struct AnalysisRates {
    phase: Option<Duration>,
    files_per_s: Option<f64>,
    symbols_per_s: Option<f64>,
}

impl AnalysisRates {
    fn of(r: &SyncRun) -> Self {
        let phase = r.phase(SyncPhase::Analyze);
        let per_s = |n: u64| {
            phase
                .filter(|d| !d.is_zero())
                .map(|d| n as f64 / d.as_secs_f64())
        };
        Self {
            phase,
            files_per_s: per_s(r.record.stats.analyzed_files),
            symbols_per_s: per_s(r.record.stats.symbols_changed),
        }
    }
}

fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{r:.0}"))
}

/// `reason n, …`, or `-`.
fn skipped_by_reason(r: &SyncRun) -> String {
    let by = &r.record.stats.analysis_skipped_by_reason;
    if by.is_empty() {
        return "-".into();
    }
    by.iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The real repository to sync: a Git checkout and its HEAD commit.
struct Checkout {
    top: PathBuf,
    commit: String,
}

impl Checkout {
    fn short_commit(&self) -> &str {
        &self.commit[..self.commit.len().min(12)]
    }

    /// Its HEAD commit as branch `main` of a new repository under the
    /// allowed local root (the temporary directory), fetched as a clone
    /// fetches it; removed when dropped.
    fn copy(&self) -> Result<GitRepo> {
        let repo = GitRepo::new();
        let source = self.top.to_string_lossy();
        git(
            repo.path(),
            &["fetch", "-q", "--no-tags", &source, &self.commit],
        )
        .with_context(|| format!("fetch {} from {}", self.commit, self.top.display()))?;
        git(
            repo.path(),
            &["update-ref", "refs/heads/main", "FETCH_HEAD"],
        )?;
        let fetched = git(repo.path(), &["rev-parse", "refs/heads/main"])?;
        ensure!(
            fetched == self.commit,
            "fetched {fetched} from {}, whose HEAD was {} (a commit was made meanwhile?)",
            self.top.display(),
            self.commit
        );
        Ok(repo)
    }
}

/// `--real-repo`, or the projsync checkout this benchmark was built from,
/// or the one the current directory is in: its top level and HEAD commit.
fn real_repo_checkout(path: Option<&Path>) -> Result<Checkout> {
    let top = match path {
        Some(path) => git(path, &["rev-parse", "--show-toplevel"]).map_err(|e| {
            anyhow::anyhow!(
                "--real-repo {}: not a Git repository ({e:#}); pass --real-repo with the path \
                 of a Git checkout (a working tree with at least one commit)",
                path.display()
            )
        })?,
        None => {
            let built_from = Path::new(env!("CARGO_MANIFEST_DIR"));
            git(built_from, &["rev-parse", "--show-toplevel"])
                .or_else(|_| git(Path::new("."), &["rev-parse", "--show-toplevel"]))
                .map_err(|e| {
                    anyhow::anyhow!(
                        "no real repository to sync: neither {} (where this benchmark was built) \
                         nor the current directory is in a Git checkout ({e:#}); pass --real-repo \
                         with the path of a Git checkout",
                        built_from.display()
                    )
                })?
        }
    };
    let top = PathBuf::from(top);
    let commit = git(&top, &["rev-parse", "--verify", "HEAD^{commit}"]).map_err(|e| {
        anyhow::anyhow!(
            "{} has no commit to sync ({e:#}); commit first, or pass --real-repo with another checkout",
            top.display()
        )
    })?;
    Ok(Checkout { top, commit })
}

/// Run git in `dir`: its stdout, trimmed, or an error with its stderr.
fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .context("run git (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "git {} in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
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
         FROM memory_entries WHERE project_id = $1 AND kind = 'file'",
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
