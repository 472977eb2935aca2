//! `bench-embed`: embeddings and search, measured. Prints, from one run
//! against the local PostgreSQL (with pgvector) and Redis, four tables:
//!
//! 1. **The local provider against sentence-transformers.** About 600 code
//!    chunks of about 200 tokens, cut by `chunk_text` with the model's own
//!    tokenizer from real Rust files on this machine (this repository, then
//!    the cargo registry), embedded by the local provider (all-MiniLM-L6-v2
//!    on ONNX Runtime, batch 16, every core, as the worker runs it) and, in
//!    the same run, by sentence-transformers on PyTorch (`torch.set_num_threads(2)`,
//!    `model.encode(chunks, batch_size=32)`, timed inside Python without the
//!    load) from the same model folder: chunks/s each, the ratio, the cosine
//!    between both vectors of every chunk, and the local provider's latency
//!    for one short query (what search pays per query with it).
//! 2. **Model calls over a real history, with and without the cache.** The
//!    commits of a real repository (this checkout by default) replayed oldest
//!    to newest into a scratch repository with a sync after each, embedding
//!    through the fake OpenAI server of test-support: the chunks each sync
//!    writes (what it would send without the content cache) against the
//!    inputs the fake received; then a rename-only commit and a restore to an
//!    earlier sync through the HTTP API (target: 0 model calls each).
//! 3. **Search latency over 100,000 chunks, HNSW against exact.** A project
//!    of real code files of the cargo registry cut by the chunker, written
//!    straight into Postgres with 384-dimension vectors (the fake's vector of
//!    each chunk's text by default, so that query vectors live in the same
//!    space; `--vectors random` for uniform random unit vectors). 200 queries
//!    each through the HNSW index (`Store::search_semantic`), the exact scan
//!    (the same statement ordered by an expression the index cannot serve),
//!    keyword search, hybrid at the store level (semantic, keyword, fusion, as
//!    the API runs them) and hybrid through the HTTP API (the query embedded
//!    by the fake over loopback): p50 and p99, recall@10 of HNSW against
//!    exact, how many chunks a keyword query matches, and the `EXPLAIN` that
//!    shows the HNSW index. Target: hybrid p50 ≤ 20 ms. Then (3b) the same
//!    store functions on a small project (5,000 chunks), as they run and with
//!    `plan_cache_mode = force_custom_plan`, with the generic plan Postgres
//!    may switch to from a prepared statement's sixth run on a connection.
//! 4. **Worker RSS while it embeds.** A real `projsync worker` process with
//!    the local provider syncs a repository of a few hundred real source
//!    files; its VmRSS is sampled every 100 ms: baseline (idle after start,
//!    model loaded) and peak.
//!
//! ```sh
//! cargo build --release -p projsync -p projsync-bench   # section 4 runs the real worker binary
//! target/release/bench-embed
//! # a quick run:
//! target/release/bench-embed --chunks 20000 --st-chunks 200 --queries 50 --commits 10 \
//!     --small-chunks 2000 --rss-files 60
//! ```
//!
//! Needs PostgreSQL with pgvector and Redis (`PROJSYNC_TEST_DATABASE_URL`,
//! `PROJSYNC_TEST_REDIS_URL`; scripts/services.sh), the local model and ONNX
//! Runtime (scripts/fetch-model.sh), git, and python3 for the comparison in
//! section 1: `--python` names an interpreter that has sentence-transformers;
//! otherwise the virtualenv at `--venv` (default /tmp/projsync-bench-venv) is
//! used, or another one under the temp directory that can import it, or
//! `--venv` is created with `pip install sentence-transformers` (PyTorch: a
//! large download). It is never a project dependency; `--no-python` skips it.
//! Each section runs on a fresh database and Redis namespace, removed at the
//! end; `--only speed,cache,search,rss` runs some of them. Nothing is
//! asserted.

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::{Parser, ValueEnum};
use projsync_bench::{
    check_succeeded, percentile, projsync_binary, wait_for_end, Bench, Rng, Table, WorkerProcesses,
    POLL_INTERVAL, SYNC_TIMEOUT,
};
use projsync_domain::search::{keyword_queries, searchable_text, without_overlaps};
use projsync_domain::{content_hash, ProjectId, SyncId, SyncPhase};
use projsync_embed::chunk::{chunk_text, Chunk, ChunkOptions, EstimateCounter};
use projsync_embed::{Embedder, TokenCounter};
use projsync_embed_local::{
    default_model_path, default_runtime_path, LocalEmbedder, LocalOptions, RUNTIME_VERSION,
};
use projsync_store::{ConnectOptions, SearchFilter, Store, SyncRecord};
use projsync_test_support::fake_openai::{fake_embedding, DEFAULT_DIMENSIONS, DEFAULT_MODEL};
use projsync_test_support::{FakeOpenAi, GitRepo};
use serde_json::{json, Value};
use sqlx::Row;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The local model, named as `config/default.toml` names it.
const LOCAL_MODEL: &str = "all-MiniLM-L6-v2";
/// The model name of the search project's vectors (and of the fake that
/// embeds its queries).
const SEARCH_MODEL: &str = "bench-model";
const DIMENSIONS: usize = 384;
/// What the API asks of each ranking for `k = 10`: `max(4k, 20)`.
const CANDIDATES: i64 = 40;
/// Section 4 leaves out larger files (generated code).
const RSS_MAX_FILE_BYTES: usize = 64 * 1024;
/// Queries run before each timed series, not counted.
const WARM_UP: usize = 20;

/// Measure the local embedding provider against sentence-transformers,
/// model calls over a replayed history with the content cache, search
/// latency over 100k chunks (HNSW, exact, keyword, hybrid) and the worker's
/// RSS while it embeds. See the top of the source file for details.
#[derive(Debug, Parser)]
#[command(name = "bench-embed")]
struct Args {
    /// Section 1: code chunks embedded by both the local provider and
    /// sentence-transformers.
    #[arg(long, default_value_t = 600)]
    st_chunks: usize,
    /// Section 1: tokens a chunk may hold; chunks of 90-100% of this are kept.
    #[arg(long, default_value_t = 200)]
    chunk_tokens: usize,
    /// Section 1: a Python interpreter that can import sentence_transformers.
    #[arg(long)]
    python: Option<PathBuf>,
    /// Section 1: the throwaway virtualenv used, or created, when --python is
    /// not given.
    #[arg(long, default_value = "/tmp/projsync-bench-venv")]
    venv: PathBuf,
    /// Section 1: skip sentence-transformers.
    #[arg(long)]
    no_python: bool,
    /// Section 2: the Git repository whose first-parent history is replayed
    /// (default: this checkout).
    #[arg(long)]
    history_repo: Option<PathBuf>,
    /// Section 2: replay only the oldest N commits (0: all).
    #[arg(long, default_value_t = 0)]
    commits: usize,
    /// Section 2: tokens a chunk may hold (estimated: the fake has no
    /// tokenizer). 256 is about what the default local model takes; 0 means
    /// the provider's limit (8191), about one chunk a file.
    #[arg(long, default_value_t = 256)]
    history_chunk_tokens: usize,
    /// Section 3: chunks in the search project.
    #[arg(long, default_value_t = 100_000)]
    chunks: usize,
    /// Section 3: timed queries per search mode.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Section 3: chunks in the small project that shows the generic plans.
    #[arg(long, default_value_t = 5_000)]
    small_chunks: usize,
    /// Section 3: the search project's vectors.
    #[arg(long, value_enum, default_value_t = Vectors::Text)]
    vectors: Vectors,
    /// Section 4: real source files in the repository the worker embeds.
    #[arg(long, default_value_t = 300)]
    rss_files: usize,
    /// Run only these sections (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Vectors {
    /// The fake OpenAI server's vector of each chunk's text (a hashed bag
    /// of its words): texts that share words are near, as with a model.
    Text,
    /// Uniform random unit vectors: no structure at all, the worst case for
    /// an approximate index.
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    Speed,
    Cache,
    Search,
    Rss,
}

/// The last table: each headline figure next to its target.
#[derive(Default)]
struct Summary(Vec<[String; 3]>);

impl Summary {
    fn add(&mut self, figure: impl Into<String>, value: impl Into<String>, target: &str) {
        self.0
            .push([figure.into(), value.into(), target.to_string()]);
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-embed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<()> {
    ensure!(args.st_chunks > 0, "--st-chunks must be at least 1");
    ensure!(
        args.chunk_tokens >= 16,
        "--chunk-tokens must be at least 16"
    );
    ensure!(args.chunks > 0, "--chunks must be at least 1");
    ensure!(args.queries > 0, "--queries must be at least 1");
    ensure!(args.small_chunks > 0, "--small-chunks must be at least 1");
    ensure!(args.rss_files > 0, "--rss-files must be at least 1");
    let wanted = |s: Section| args.only.is_empty() || args.only.contains(&s);
    projsync_bench::check_services().await?;
    println!(
        "bench-embed: {} CPU cores; every figure below comes from this one run. Latencies are \
         wall-clock on this machine, nothing else was stopped for the run.",
        cores()
    );
    let mut summary = Summary::default();
    if wanted(Section::Speed) {
        println!();
        speed(args, &mut summary)
            .await
            .context("section 1 (local provider vs sentence-transformers)")?;
    }
    if wanted(Section::Cache) {
        println!();
        cache(args, &mut summary)
            .await
            .context("section 2 (model calls over a replayed history)")?;
    }
    if wanted(Section::Search) {
        println!();
        search(args, &mut summary)
            .await
            .context("section 3 (search latency)")?;
    }
    if wanted(Section::Rss) {
        println!();
        rss(args, &mut summary)
            .await
            .context("section 4 (worker RSS)")?;
    }
    println!();
    println!("Summary");
    let mut table = Table::new(&["figure", "measured", "target"]);
    for row in summary.0 {
        table.row(row.to_vec());
    }
    print!("{}", table.render());
    Ok(())
}

// ---------------------------------------------------------------------------
// 1. The local provider against sentence-transformers.

/// Run by the virtualenv's Python: the same model folder, the same chunks,
/// 2 torch threads, batch 32; a warm-up batch, then the timed encode.
const SENTENCE_TRANSFORMERS: &str = r#"
import json, sys, time
import torch
import sentence_transformers
from sentence_transformers import SentenceTransformer
model_dir, chunks_path, out_path = sys.argv[1:4]
torch.set_num_threads(2)
chunks = json.load(open(chunks_path))
model = SentenceTransformer(model_dir, device="cpu")
model.encode(chunks[:32], batch_size=32)
start = time.perf_counter()
vectors = model.encode(chunks, batch_size=32)
seconds = time.perf_counter() - start
json.dump({
    "seconds": seconds,
    "torch": torch.__version__,
    "sentence_transformers": sentence_transformers.__version__,
    "threads": torch.get_num_threads(),
    "max_seq_length": model.max_seq_length,
    "vectors": vectors.tolist(),
}, open(out_path, "w"))
"#;

struct StRun {
    python: PathBuf,
    seconds: f64,
    torch: String,
    version: String,
    threads: i64,
    vectors: Vec<Vec<f32>>,
}

/// The local provider's batch, as the worker runs it (`cli::app`).
const LOCAL_BATCH: usize = 16;

async fn speed(args: &Args, summary: &mut Summary) -> Result<()> {
    let options = LocalOptions {
        model_name: LOCAL_MODEL.into(),
        model_path: default_model_path(),
        runtime_path: default_runtime_path(),
        threads: None,
        batch_size: LOCAL_BATCH,
    };
    let model_path = options.model_path.clone();
    let loading = Instant::now();
    let embedder = tokio::task::spawn_blocking(move || LocalEmbedder::load(options))
        .await?
        .map_err(|e| anyhow!("cannot load the local model: {e}; run scripts/fetch-model.sh"))?;
    let load = loading.elapsed();

    let (chunks, origins) = code_chunks(&embedder, args.st_chunks, args.chunk_tokens);
    ensure!(
        !chunks.is_empty(),
        "no chunk of {} tokens found in {} or {}",
        args.chunk_tokens,
        repo_root().display(),
        cargo_registry().display()
    );
    let tokens: Vec<usize> = chunks.iter().map(|c| embedder.count_tokens(c)).collect();

    embedder.embed(&chunks[..chunks.len().min(32)]).await?;
    let started = Instant::now();
    let ours = embedder.embed(&chunks).await?;
    let local_secs = started.elapsed().as_secs_f64();

    // One short query at a time, as search embeds it.
    let queries = queries_from(chunks.iter().flat_map(|c| c.lines()), 50, 7);
    let mut query_ms = Vec::new();
    for q in &queries {
        let t = Instant::now();
        embedder.embed(std::slice::from_ref(q)).await?;
        query_ms.push(ms(t.elapsed()));
    }
    drop(embedder);

    let st = if args.no_python {
        Err(anyhow!("skipped (--no-python)"))
    } else {
        sentence_transformers(args, &model_path, &chunks).await
    };

    println!("1. Local provider vs sentence-transformers: the same chunks, in this run");
    let from: Vec<String> = origins
        .iter()
        .filter(|o| o.chunks > 0)
        .map(|o| format!("{} from {} files of {}", o.chunks, o.files, o.label))
        .collect();
    println!(
        "{} chunks of {}-{} tokens (mean {:.0}), cut by chunk_text with the model's tokenizer from \
         real Rust files: {}.",
        chunks.len(),
        tokens.iter().min().copied().unwrap_or(0),
        tokens.iter().max().copied().unwrap_or(0),
        tokens.iter().sum::<usize>() as f64 / tokens.len() as f64,
        from.join(", ")
    );
    println!(
        "Model {LOCAL_MODEL} from {}, f32 on the CPU. Each side embeds a warm-up batch of 32 first; \
         times exclude loading (local: {:.2} s).",
        model_path.display(),
        load.as_secs_f64()
    );
    println!();
    let mut table = Table::new(&[
        "provider", "threads", "batch", "chunks", "seconds", "chunks/s",
    ]);
    let local_rate = chunks.len() as f64 / local_secs;
    table.row(vec![
        format!("local: projsync-embed-local, ONNX Runtime {RUNTIME_VERSION}"),
        cores().to_string(),
        LOCAL_BATCH.to_string(),
        chunks.len().to_string(),
        format!("{local_secs:.2}"),
        format!("{local_rate:.1}"),
    ]);
    if let Ok(st) = &st {
        table.row(vec![
            format!(
                "sentence-transformers {}, torch {} ({})",
                st.version,
                st.torch,
                st.python.display()
            ),
            st.threads.to_string(),
            "32".into(),
            chunks.len().to_string(),
            format!("{:.2}", st.seconds),
            format!("{:.1}", chunks.len() as f64 / st.seconds),
        ]);
    }
    print!("{}", table.render());
    println!();
    match &st {
        Ok(st) => {
            let ratio = local_rate / (chunks.len() as f64 / st.seconds);
            let cosines: Vec<f64> = ours
                .iter()
                .zip(&st.vectors)
                .map(|(a, b)| cosine(a, b))
                .collect();
            let min = cosines.iter().copied().fold(f64::INFINITY, f64::min);
            let mean = cosines.iter().sum::<f64>() / cosines.len().max(1) as f64;
            println!(
                "local / sentence-transformers: {ratio:.2}x the chunks/s. The two vectors of each \
                 chunk agree: cosine min {min:.6}, mean {mean:.6}."
            );
            summary.add(
                "1. local provider / sentence-transformers, chunks/s",
                format!(
                    "{ratio:.2}x ({local_rate:.1} vs {:.1})",
                    chunks.len() as f64 / st.seconds
                ),
                "-",
            );
        }
        Err(e) => {
            println!("sentence-transformers: not measured: {e:#}");
            summary.add(
                "1. local provider, chunks/s",
                format!("{local_rate:.1} (sentence-transformers not measured)"),
                "-",
            );
        }
    }
    println!(
        "Local provider, one short query at a time ({} queries of 2-4 words): p50 {:.1} ms, p99 \
         {:.1} ms.",
        query_ms.len(),
        percentile(&query_ms, 0.5),
        percentile(&query_ms, 0.99)
    );
    Ok(())
}

struct Origin {
    label: &'static str,
    files: usize,
    chunks: usize,
}

/// Up to `count` chunks of 90-100% of `tokens` tokens, cut by the chunker
/// from the Rust files of this repository, then of the cargo registry.
fn code_chunks(
    counter: &dyn TokenCounter,
    count: usize,
    tokens: usize,
) -> (Vec<String>, Vec<Origin>) {
    let opts = ChunkOptions::new(tokens);
    let low = tokens * 9 / 10;
    let mut chunks = Vec::new();
    let mut origins = Vec::new();
    for (label, files) in source_files() {
        let mut origin = Origin {
            label,
            files: 0,
            chunks: 0,
        };
        for file in files {
            if chunks.len() >= count {
                break;
            }
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let before = chunks.len();
            for c in chunk_text(&text, counter, &opts) {
                if c.token_count >= low && chunks.len() < count {
                    chunks.push(c.content);
                }
            }
            if chunks.len() > before {
                origin.files += 1;
                origin.chunks += chunks.len() - before;
            }
        }
        origins.push(origin);
        if chunks.len() >= count {
            break;
        }
    }
    (chunks, origins)
}

async fn sentence_transformers(args: &Args, model: &Path, chunks: &[String]) -> Result<StRun> {
    let python = find_python(args).await?;
    let dir = std::env::temp_dir();
    let chunks_path = dir.join(format!("projsync-bench-embed-{}.json", std::process::id()));
    let out_path = dir.join(format!(
        "projsync-bench-embed-{}-st.json",
        std::process::id()
    ));
    std::fs::write(&chunks_path, serde_json::to_vec(chunks)?)?;
    let output = tokio::process::Command::new(&python)
        .args(["-c", SENTENCE_TRANSFORMERS])
        .arg(model)
        .arg(&chunks_path)
        .arg(&out_path)
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("cannot run {}", python.display()));
    let _ = std::fs::remove_file(&chunks_path);
    let output = output?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&out_path);
        bail!(
            "{} failed ({}): {}",
            python.display(),
            output.status,
            tail(&String::from_utf8_lossy(&output.stderr), 15)
        );
    }
    let text = std::fs::read_to_string(&out_path);
    let _ = std::fs::remove_file(&out_path);
    let out: Value = serde_json::from_str(&text?)?;
    let vectors = out["vectors"]
        .as_array()
        .ok_or_else(|| anyhow!("sentence-transformers wrote no vectors"))?
        .iter()
        .map(|v| {
            v.as_array()
                .map(|xs| {
                    xs.iter()
                        .filter_map(Value::as_f64)
                        .map(|x| x as f32)
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    Ok(StRun {
        python,
        seconds: out["seconds"].as_f64().unwrap_or(f64::NAN),
        torch: out["torch"].as_str().unwrap_or("?").to_string(),
        version: out["sentence_transformers"]
            .as_str()
            .unwrap_or("?")
            .to_string(),
        threads: out["threads"].as_i64().unwrap_or(0),
        vectors,
    })
}

/// `--python`; else the virtualenv at `--venv` if it can import
/// sentence-transformers; else another virtualenv in the temp directory that
/// can (one made by an earlier run or for the local provider's reference
/// tests); else `--venv`, created now.
async fn find_python(args: &Args) -> Result<PathBuf> {
    if let Some(python) = &args.python {
        ensure!(
            has_sentence_transformers(python).await,
            "{} cannot import sentence_transformers and torch",
            python.display()
        );
        return Ok(python.clone());
    }
    let ours = args.venv.join("bin").join("python");
    if ours.is_file() && has_sentence_transformers(&ours).await {
        return Ok(ours);
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        let mut candidates: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin").join("python"))
            .filter(|p| p.is_file() && *p != ours)
            .collect();
        candidates.sort();
        for python in candidates {
            if has_sentence_transformers(&python).await {
                return Ok(python);
            }
        }
    }
    create_venv(&args.venv).await?;
    ensure!(
        has_sentence_transformers(&ours).await,
        "{} still cannot import sentence_transformers after pip install",
        ours.display()
    );
    Ok(ours)
}

async fn has_sentence_transformers(python: &Path) -> bool {
    let check = tokio::process::Command::new(python)
        .args(["-c", "import sentence_transformers, torch"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .status();
    matches!(
        tokio::time::timeout(Duration::from_secs(180), check).await,
        Ok(Ok(status)) if status.success()
    )
}

/// `python3 -m venv DIR` and `pip install sentence-transformers` in it,
/// in the background with a note every minute (PyTorch is a large download).
async fn create_venv(dir: &Path) -> Result<()> {
    let log_path = dir.with_extension("log");
    eprintln!(
        "bench-embed: creating a throwaway virtualenv at {} with sentence-transformers (PyTorch \
         is a download of several hundred MB; this takes minutes); pip's log: {}",
        dir.display(),
        log_path.display()
    );
    let status = tokio::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(dir)
        .status()
        .await
        .context("cannot run python3; install python3 and python3-venv")?;
    ensure!(
        status.success(),
        "python3 -m venv {} failed ({status}); install python3-venv",
        dir.display()
    );
    let log = std::fs::File::create(&log_path)?;
    let mut pip = tokio::process::Command::new(dir.join("bin").join("pip"))
        .args(["install", "--progress-bar", "off", "sentence-transformers"])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("cannot run the virtualenv's pip")?;
    let started = Instant::now();
    loop {
        tokio::select! {
            status = pip.wait() => {
                let status = status?;
                ensure!(
                    status.success(),
                    "pip install sentence-transformers failed ({status}): {}",
                    tail(&std::fs::read_to_string(&log_path).unwrap_or_default(), 10)
                );
                return Ok(());
            }
            _ = tokio::time::sleep(Duration::from_secs(60)) => {
                let elapsed = started.elapsed().as_secs();
                if elapsed > 3600 {
                    bail!("pip install sentence-transformers still runs after an hour; see {}", log_path.display());
                }
                eprintln!("bench-embed: pip install sentence-transformers: {elapsed} s so far");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 2. Model calls over a replayed history.

struct HistoryRow {
    label: String,
    record: SyncRecord,
    requests: u64,
    inputs: u64,
}

async fn cache(args: &Args, summary: &mut Summary) -> Result<()> {
    let source = args.history_repo.clone().unwrap_or_else(repo_root);
    let fake = FakeOpenAi::start().await;
    let base_url = fake.base_url();
    let chunk_tokens = args.history_chunk_tokens;
    let bench = Bench::start(|s| {
        s.embeddings.enabled = true;
        s.embeddings.provider = "openai".into();
        s.embeddings.base_url = base_url;
        s.embeddings.model = DEFAULT_MODEL.into();
        s.embeddings.dimensions = DEFAULT_DIMENSIONS;
        s.embeddings.credentials_ref = String::new();
        s.embeddings.max_chunk_tokens = chunk_tokens;
    })
    .await?;
    let shutdown = CancellationToken::new();
    let listener = projsync::app::bind("127.0.0.1:0").await?;
    let (addr, api) = projsync::app::spawn_api(
        listener,
        bench.state.clone(),
        Default::default(),
        shutdown.clone(),
    )?;
    let result = replay(&bench, &fake, addr, &source, args, summary).await;
    shutdown.cancel();
    let _ = api.await;
    bench.stop().await?;
    result
}

async fn replay(
    bench: &Bench,
    fake: &FakeOpenAi,
    api: SocketAddr,
    source: &Path,
    args: &Args,
    summary: &mut Summary,
) -> Result<()> {
    let repo = GitRepo::new();
    let dir = repo.path();
    git(
        dir,
        &[
            "fetch",
            "-q",
            "--no-tags",
            &source.to_string_lossy(),
            "+HEAD:refs/heads/source",
        ],
    )
    .with_context(|| format!("{} is not a Git repository with commits", source.display()))?;
    let log = git(
        dir,
        &[
            "log",
            "--reverse",
            "--first-parent",
            "--format=%H %s",
            "refs/heads/source",
        ],
    )?;
    let mut commits: Vec<(String, String)> = log
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(sha, subject)| (sha.to_string(), subject.to_string()))
        .collect();
    let available = commits.len();
    if args.commits > 0 {
        commits.truncate(args.commits);
    }
    ensure!(!commits.is_empty(), "{} has no commits", source.display());

    git(dir, &["update-ref", "refs/heads/main", &commits[0].0])?;
    let project = bench.create_project("history", &repo).await?;
    let mut rows = Vec::new();
    for (i, (sha, subject)) in commits.iter().enumerate() {
        git(dir, &["update-ref", "refs/heads/main", sha])?;
        fake.reset_counts();
        let run = bench
            .run_sync(project)
            .await
            .with_context(|| format!("the sync of commit {}", &sha[..10]))?;
        rows.push(HistoryRow {
            label: format!("{}. {} {}", i + 1, &sha[..7], clip(subject, 44)),
            record: run.record,
            requests: fake.requests(),
            inputs: fake.inputs_embedded(),
        });
    }

    // A rename-only commit: the directory of the largest file moves.
    git(dir, &["reset", "-q", "--hard", "refs/heads/main"])?;
    let (moved, files) = move_largest_dir(dir)?;
    git(dir, &["add", "-A"])?;
    git(dir, &["commit", "-q", "-m", "rename only"])?;
    fake.reset_counts();
    let rename = bench.run_sync(project).await.context("the rename sync")?;
    let rename = HistoryRow {
        label: format!("rename-only commit: {moved} ({files} files)"),
        record: rename.record,
        requests: fake.requests(),
        inputs: fake.inputs_embedded(),
    };

    // A restore, through the HTTP API, to the sync of the middle commit.
    let target_index = rows.len() / 2;
    let target = rows[target_index].record.id;
    fake.reset_counts();
    let client = http_client()?;
    let response = client
        .post(format!(
            "http://{api}/api/v1/projects/{project}/memory/restore"
        ))
        .json(&json!({ "sync_id": target }))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    ensure!(
        status.is_success(),
        "POST …/memory/restore answered {status}: {body}"
    );
    let restore_id: SyncId = serde_json::from_value(body["sync_id"].clone())
        .context("the restore response has no sync_id")?;
    let record = wait_ledger(&bench.db.store, restore_id).await?;
    check_succeeded(&record)?;
    let restore = HistoryRow {
        label: format!(
            "restore to the sync of commit {} (POST …/memory/restore)",
            target_index + 1
        ),
        record,
        requests: fake.requests(),
        inputs: fake.inputs_embedded(),
    };

    let shown = if commits.len() < available {
        format!("the oldest {} of its {available} commits", commits.len())
    } else {
        format!("all {available} commits")
    };
    println!("2. Model calls over a real history, with the content cache and without");
    println!(
        "{}: {shown} (first parent), replayed oldest to newest, a sync after each, embeddings \
         through the fake OpenAI server of test-support ({DEFAULT_MODEL}, {DEFAULT_DIMENSIONS} \
         dimensions, batch {}), chunks of at most {} estimated tokens.",
        source.display(),
        bench.settings.embeddings.batch_size,
        if args.history_chunk_tokens == 0 {
            "8191".to_string()
        } else {
            args.history_chunk_tokens.to_string()
        }
    );
    println!(
        "chunks written = chunks of the entry versions the sync wrote: what a sync sends without \
         a content cache. sent = inputs the fake received (= stats.embedded); hits = \
         stats.embedding_cache_hits."
    );
    println!();
    let mut table = Table::new(&[
        "sync",
        "outcome",
        "files changed",
        "entries written",
        "chunks written",
        "sent",
        "hits",
        "requests",
    ]);
    let add = |table: &mut Table, r: &HistoryRow| {
        let s = &r.record.stats;
        table.row(vec![
            r.label.clone(),
            r.record.outcome.clone().unwrap_or_else(|| "-".into()),
            (s.added + s.modified + s.deleted + s.renamed + s.type_changed).to_string(),
            s.imported.to_string(),
            s.chunks.to_string(),
            r.inputs.to_string(),
            s.embedding_cache_hits.to_string(),
            r.requests.to_string(),
        ]);
    };
    for r in &rows {
        add(&mut table, r);
    }
    let total = |f: &dyn Fn(&HistoryRow) -> u64| rows.iter().map(f).sum::<u64>();
    let chunks = total(&|r| r.record.stats.chunks);
    let sent = total(&|r| r.inputs);
    let embedded = total(&|r| r.record.stats.embedded);
    let requests = total(&|r| r.requests);
    table.row(vec![
        format!("total over the {} syncs", rows.len()),
        String::new(),
        total(&|r| {
            let s = &r.record.stats;
            s.added + s.modified + s.deleted + s.renamed + s.type_changed
        })
        .to_string(),
        total(&|r| r.record.stats.imported).to_string(),
        chunks.to_string(),
        sent.to_string(),
        total(&|r| r.record.stats.embedding_cache_hits).to_string(),
        requests.to_string(),
    ]);
    add(&mut table, &rename);
    add(&mut table, &restore);
    print!("{}", table.render());
    println!();
    let saved = 1.0 - sent as f64 / chunks.max(1) as f64;
    println!(
        "Replay: without the cache {chunks} chunks would go to the model; with it {sent} did \
         ({:.0}% fewer, {requests} requests; stats.embedded adds up to {embedded}).",
        saved * 100.0
    );
    println!(
        "Rename-only commit: {} model requests, {} inputs. Restore: {} model requests, {} inputs.",
        rename.requests, rename.inputs, restore.requests, restore.inputs
    );
    summary.add(
        "2. model inputs over the replay, without / with the cache",
        format!("{chunks} / {sent} ({:.0}% fewer)", saved * 100.0),
        "-",
    );
    summary.add(
        "2. model requests, rename-only commit",
        rename.requests.to_string(),
        "0",
    );
    summary.add(
        "2. model requests, restore to an earlier sync",
        restore.requests.to_string(),
        "0",
    );
    Ok(())
}

/// Move the directory that holds the most bytes of files of its own (not
/// counting subdirectories; the root excluded) to a new name, with
/// everything under it: a refactor that changes paths, not content. What
/// moved, and how many files.
fn move_largest_dir(dir: &Path) -> Result<(String, usize)> {
    let listing = git(dir, &["ls-tree", "-r", "-l", "HEAD"])?;
    let files: Vec<(u64, &str)> = listing
        .lines()
        .filter_map(|l| {
            let (meta, path) = l.split_once('\t')?;
            let size: u64 = meta.split_whitespace().nth(3)?.parse().ok()?;
            meta.starts_with("100").then_some((size, path))
        })
        .collect();
    let mut by_dir: HashMap<&str, u64> = HashMap::new();
    for (size, path) in &files {
        if let Some((parent, _)) = path.rsplit_once('/') {
            *by_dir.entry(parent).or_default() += size;
        }
    }
    let from = by_dir
        .into_iter()
        .max_by_key(|(d, size)| (*size, std::cmp::Reverse(*d)))
        .map(|(d, _)| d.to_string())
        .ok_or_else(|| anyhow!("the last commit has no file in a directory"))?;
    let to = format!("{from}-renamed");
    let prefix = format!("{from}/");
    let files = files.iter().filter(|(_, p)| p.starts_with(&prefix)).count();
    std::fs::rename(dir.join(&from), dir.join(&to))
        .with_context(|| format!("rename {from} to {to}"))?;
    Ok((format!("{from} → {to}"), files))
}

/// Poll the ledger until the sync ends.
async fn wait_ledger(store: &Store, id: SyncId) -> Result<SyncRecord> {
    let started = Instant::now();
    loop {
        let record = store.sync(id).await?;
        if record.status.is_terminal() {
            return Ok(record);
        }
        if started.elapsed() > SYNC_TIMEOUT {
            bail!("sync {id} did not end within {SYNC_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

// ---------------------------------------------------------------------------
// 3. Search latency.

/// One source file of the search project, cut as the pipeline cuts it
/// without a model at hand (estimated tokens, 256 a chunk).
struct CorpusFile {
    path: String,
    content: String,
    chunks: Vec<Chunk>,
}

/// One timed series.
struct Series {
    label: String,
    ms: Vec<f64>,
    results: usize,
}

async fn search(args: &Args, summary: &mut Summary) -> Result<()> {
    let fake = FakeOpenAi::builder()
        .with_models(&[SEARCH_MODEL])
        .with_dimensions(DIMENSIONS)
        .start()
        .await;
    let bench = search_bench_db(&fake).await?;
    let result = search_large(&bench, &fake, args, summary).await;
    bench.stop().await?;
    result?;
    // The same store functions on a small project, in a database of its own.
    let bench = search_bench_db(&fake).await?;
    let result = search_small(&bench, &fake, args, summary).await;
    bench.stop().await?;
    result
}

/// A fresh database whose API embeds queries through `fake` as model
/// `bench-model`.
async fn search_bench_db(fake: &FakeOpenAi) -> Result<Bench> {
    let base_url = fake.base_url();
    Bench::without_worker(|s| {
        s.embeddings.enabled = true;
        s.embeddings.provider = "openai".into();
        s.embeddings.base_url = base_url;
        s.embeddings.model = SEARCH_MODEL.into();
        s.embeddings.dimensions = DIMENSIONS;
        s.embeddings.credentials_ref = String::new();
    })
    .await
}

/// A search project loaded straight into Postgres, and its queries.
struct SearchProject {
    project: ProjectId,
    files: usize,
    chunks: usize,
    text_bytes: usize,
    vectors: usize,
    loaded_in: Duration,
    indexed_in: Duration,
    queries: Vec<String>,
    query_vectors: Vec<Vec<f32>>,
    /// Vectors of whole chunks of the corpus, as queries from the data's
    /// own distribution (text vectors only).
    chunk_vectors: Vec<Vec<f32>>,
    /// Sessions with plan_cache_mode = force_custom_plan.
    custom: Store,
}

async fn load_search_project(
    bench: &Bench,
    chunks: usize,
    vectors: Vectors,
    queries: usize,
) -> Result<SearchProject> {
    let loader = tenant_store(&bench.db.admin_url, "", 4).await?;
    let store = &loader;
    let loading = Instant::now();
    let files = corpus(chunks);
    let chunk_count: usize = files.iter().map(|f| f.chunks.len()).sum();
    ensure!(
        chunk_count > 0,
        "no source files found under {}",
        cargo_registry().display()
    );
    let text_bytes: usize = files
        .iter()
        .flat_map(|f| &f.chunks)
        .map(|c| c.content.len())
        .sum();

    // A project whose active entries are these files, as if one sync had
    // written them: the ledger row is all search needs of that sync.
    let repo = GitRepo::new();
    repo.write("README.md", "search benchmark\n");
    repo.commit("search benchmark");
    let project = bench.create_project("search", &repo).await?;
    let sync_id = SyncId::new();
    sqlx::query(
        "INSERT INTO project_syncs (id, project_id, kind, branch, status, outcome, started_at, \
             finished_at) VALUES ($1, $2, 'sync', 'main', 'succeeded', 'changed', now(), now())",
    )
    .bind(sync_id.0)
    .bind(project.0)
    .execute(store.pool())
    .await?;
    sqlx::query("UPDATE projects SET last_sync_id = $1 WHERE id = $2")
        .bind(sync_id.0)
        .bind(project.0)
        .execute(store.pool())
        .await?;
    let mut rng = Rng::new(0xbe9c4);
    let written = insert_corpus(store, project, sync_id, &files, vectors, &mut rng).await?;
    sqlx::raw_sql("VACUUM ANALYZE memory_entries, memory_chunks, embeddings")
        .execute(store.pool())
        .await?;
    let loaded_in = loading.elapsed();

    // The index is built on the loaded table, with room for the graph in
    // memory (the server's default 64 MB makes the build spill); in a
    // deployment it grows as syncs write vectors.
    let indexing = Instant::now();
    let builder = Store::connect(&ConnectOptions {
        url: with_pg_options(&bench.db.url, "-c maintenance_work_mem=1GB"),
        max_connections: 1,
        connect_timeout: Duration::from_secs(10),
    })
    .await?;
    builder
        .ensure_embedding_index(SEARCH_MODEL, DIMENSIONS)
        .await?;
    builder.pool().close().await;
    let indexed_in = indexing.elapsed();
    sqlx::query("ANALYZE embeddings")
        .execute(store.pool())
        .await?;

    let custom = tenant_store(&bench.db.url, " -c plan_cache_mode=force_custom_plan", 10).await?;
    let lines = files
        .iter()
        .flat_map(|f| f.chunks.iter().flat_map(|c| c.content.lines()));
    let queries = queries_from(lines, queries, 11);
    let query_vectors = match vectors {
        Vectors::Text => queries
            .iter()
            .map(|q| fake_embedding(q, DIMENSIONS))
            .collect(),
        Vectors::Random => queries.iter().map(|_| random_unit(&mut rng)).collect(),
    };
    let all_chunks: Vec<&Chunk> = files.iter().flat_map(|f| &f.chunks).collect();
    let chunk_vectors = match vectors {
        Vectors::Text => (0..40)
            .map(|_| fake_embedding(&rng.pick(&all_chunks).content, DIMENSIONS))
            .collect(),
        Vectors::Random => Vec::new(),
    };
    Ok(SearchProject {
        project,
        files: files.len(),
        chunks: chunk_count,
        text_bytes,
        vectors: written,
        loaded_in,
        indexed_in,
        queries,
        query_vectors,
        chunk_vectors,
        custom,
    })
}

/// Section 3 proper: every search path over the large project.
async fn search_large(
    bench: &Bench,
    fake: &FakeOpenAi,
    args: &Args,
    summary: &mut Summary,
) -> Result<()> {
    let app_store = tenant_store(&bench.db.url, "", 10).await?;
    let store = &app_store;
    let sp = load_search_project(bench, args.chunks, args.vectors, args.queries).await?;
    let (project, queries, query_vectors) = (sp.project, &sp.queries, &sp.query_vectors);
    let filter = SearchFilter::default();
    let plan = store
        .explain_semantic(
            project,
            SEARCH_MODEL,
            DIMENSIONS,
            &query_vectors[0],
            &filter,
            CANDIDATES,
            false,
        )
        .await?;
    let exact_plan = explain_exact(&sp.custom, project, &query_vectors[0]).await?;

    let n = queries.len();
    let mut series = Vec::new();
    let mut hnsw_hits = Vec::new();
    series.push(
        timed(
            "semantic, HNSW index: Store::search_semantic",
            n,
            async |i, counted| {
                let hits = store
                    .search_semantic(
                        project,
                        SEARCH_MODEL,
                        DIMENSIONS,
                        &query_vectors[i],
                        &filter,
                        CANDIDATES,
                    )
                    .await?;
                let found = hits.len();
                if counted {
                    hnsw_hits.push(hits.into_iter().map(|h| (h.chunk_id, h.score)).collect());
                }
                Ok(found)
            },
        )
        .await?,
    );
    let mut exact_hits = Vec::new();
    series.push(
        timed(
            "semantic, exact: the same query, unindexed order",
            n,
            async |i, counted| {
                let hits = search_exact(&sp.custom, project, &query_vectors[i]).await?;
                let found = hits.len();
                if counted {
                    exact_hits.push(hits);
                }
                Ok(found)
            },
        )
        .await?,
    );
    // The loosest tier (any term), for the count of matching chunks below.
    let tsqueries: Vec<String> = queries
        .iter()
        .map(|q| keyword_queries(q).pop().unwrap_or_default())
        .collect();
    series.push(
        timed(
            "keyword: every word, then any two, then any term (api::search::keyword_hits)",
            n,
            async |i, _| {
                let hits = projsync_api::search::keyword_hits(
                    store,
                    project,
                    &queries[i],
                    &filter,
                    10,
                    CANDIDATES,
                )
                .await?;
                Ok(hits.len())
            },
        )
        .await?,
    );
    series.push(
        timed(
            "hybrid in the store: semantic + keyword + fusion, k 10",
            n,
            async |i, _| hybrid_in_store(store, project, &queries[i], &query_vectors[i]).await,
        )
        .await?,
    );
    let mut fallbacks = Vec::new();
    fake.reset_counts();
    series.push(
        api_series(
            bench,
            store,
            project,
            "hybrid through the HTTP API: POST …/search, k 10",
            queries,
            n,
            &mut fallbacks,
        )
        .await?,
    );
    let query_embeddings = fake.inputs_embedded();

    // How much the keyword ranking has to rank: chunks matching the
    // OR-ed terms of each query.
    let mut matched = Vec::new();
    for q in tsqueries.iter().filter(|q| !q.is_empty()) {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM memory_chunks c JOIN memory_entries m ON m.id = c.entry_id \
             WHERE m.project_id = $1 AND m.status = 'active' \
                 AND c.tsv @@ to_tsquery('english', $2)",
        )
        .bind(project.0)
        .bind(q)
        .fetch_one(sp.custom.pool())
        .await?;
        matched.push(count as f64);
    }

    // Recall@10 against exact, for the short queries and for whole chunks
    // as queries.
    let recall_short = recall_at_10(&hnsw_hits, &exact_hits);
    let mut chunk_hnsw = Vec::new();
    let mut chunk_exact = Vec::new();
    for v in &sp.chunk_vectors {
        let hits = store
            .search_semantic(project, SEARCH_MODEL, DIMENSIONS, v, &filter, CANDIDATES)
            .await?;
        chunk_hnsw.push(hits.into_iter().map(|h| (h.chunk_id, h.score)).collect());
        chunk_exact.push(search_exact(&sp.custom, project, v).await?);
    }
    let recall_chunks = recall_at_10(&chunk_hnsw, &chunk_exact);

    println!(
        "3. Search latency over {} chunks: HNSW against exact, keyword, hybrid",
        sp.chunks
    );
    println!(
        "{} real Rust files of the cargo registry, {} chunks ({:.0} MB of text) cut by chunk_text \
         (no model: 256 estimated tokens a chunk), written straight into Postgres as one \
         project's active entries with their tsvector; {} distinct 384-dimension vectors of model \
         `{SEARCH_MODEL}`: {}. Loaded in {:.1} s; the HNSW index built afterwards in {:.1} s \
         (pgvector's defaults m 16, ef_construction 64; maintenance_work_mem 1 GB for the build).",
        sp.files,
        sp.chunks,
        sp.text_bytes as f64 / 1e6,
        sp.vectors,
        match args.vectors {
            Vectors::Text =>
                "each chunk's vector from the fake OpenAI server (a hashed bag of its words)",
            Vectors::Random => "uniform random unit vectors",
        },
        sp.loaded_in.as_secs_f64(),
        sp.indexed_in.as_secs_f64(),
    );
    println!(
        "{n} queries of 2-4 identifiers taken from lines of the corpus (e.g. \"{}\"); query \
         vectors: {}. Each series runs the queries one after the other after {WARM_UP} warm-up \
         queries; the store is asked for {CANDIDATES} candidates per ranking, as the API does for \
         k 10 (hnsw.ef_search {CANDIDATES}, iterative scan relaxed_order). The store's functions \
         run on its own pool, as the API runs them; the exact query (the store's statement with \
         ORDER BY distance + 0) on a pool with plan_cache_mode = force_custom_plan.",
        queries[0],
        match args.vectors {
            Vectors::Text =>
                "the fake's, computed in process at the store level and by the fake over \
                 loopback through the API",
            Vectors::Random => "random unit vectors at the store level, the fake's through the API",
        }
    );
    println!();
    print!("{}", series_table(&series).render());
    println!();
    println!(
        "Recall@10 of HNSW against exact (a result as close as the exact tenth counts): {}.",
        match &recall_chunks {
            Some((mean, min)) => format!(
                "the {} queries above: mean {:.3}, min {:.2}; {} whole chunks of the corpus as \
                 queries: mean {mean:.3}, min {min:.2}",
                n,
                recall_short.map_or(f64::NAN, |r| r.0),
                recall_short.map_or(f64::NAN, |r| r.1),
                sp.chunk_vectors.len()
            ),
            None => format!(
                "mean {:.3}, min {:.2} over {n} queries",
                recall_short.map_or(f64::NAN, |r| r.0),
                recall_short.map_or(f64::NAN, |r| r.1)
            ),
        }
    );
    println!(
        "Keyword search ranks chunks matching every word of the query first and falls back to \
         any two words, then to any term (domain::search::keyword_queries), while it has fewer \
         than k; the loosest tier alone would match per query p50 {:.0}, p99 {:.0}, max {:.0} \
         chunks of {}.",
        percentile(&matched, 0.5),
        percentile(&matched, 0.99),
        percentile(&matched, 1.0),
        sp.chunks
    );
    println!(
        "The fake embedded {query_embeddings} query texts for the API series (warm-up included)."
    );
    if !fallbacks.is_empty() {
        println!(
            "Warning: {} API searches fell back to keyword ranking: {}",
            fallbacks.len(),
            fallbacks[0]
        );
    }
    let index_line = plan
        .lines()
        .find(|l| l.contains("embeddings_hnsw"))
        .map(str::trim)
        .unwrap_or("(no HNSW index scan in the plan!)");
    println!("EXPLAIN (Store::explain_semantic): {index_line}");
    for line in plan.lines() {
        println!("    {}", clip(line, 160));
    }
    let exact_line = exact_plan
        .lines()
        .find(|l| l.contains("on embeddings"))
        .map(str::trim)
        .unwrap_or("-");
    println!("EXPLAIN of the exact query reads the vectors with: {exact_line}");

    let p50 = |i: usize| percentile(&series[i].ms, 0.5);
    let p99 = |i: usize| percentile(&series[i].ms, 0.99);
    summary.add(
        format!(
            "3. hybrid search p50 / p99 over {} chunks, HTTP API",
            sp.chunks
        ),
        format!("{:.1} ms / {:.1} ms", p50(4), p99(4)),
        "p50 <= 20 ms",
    );
    summary.add(
        "3. p50: semantic HNSW / exact / keyword",
        format!("{:.1} ms / {:.1} ms / {:.1} ms", p50(0), p50(1), p50(2)),
        "-",
    );
    summary.add(
        "3. recall@10 of HNSW against exact (short queries)",
        format!("{:.3}", recall_short.map_or(f64::NAN, |r| r.0)),
        "-",
    );
    sp.custom.pool().close().await;
    Ok(())
}

/// Section 3, last part: a small project, where Postgres's generic plan
/// for the semantic statement (chosen from a statement's sixth run on a
/// connection) does not use the index.
async fn search_small(
    bench: &Bench,
    fake: &FakeOpenAi,
    args: &Args,
    summary: &mut Summary,
) -> Result<()> {
    let app_store = tenant_store(&bench.db.url, "", 10).await?;
    let store = &app_store;
    let chunks = args.small_chunks.min(args.chunks);
    let sp = load_search_project(bench, chunks, args.vectors, args.queries).await?;
    let (project, queries, query_vectors) = (sp.project, &sp.queries, &sp.query_vectors);
    let n = queries.len().min(50);
    let filter = SearchFilter::default();
    let generic_plan = explain_generic(store, project, &query_vectors[0]).await?;
    let mut series = Vec::new();
    for (label, pool) in [
        ("semantic, HNSW: Store::search_semantic", store),
        (
            "semantic, HNSW: the same, plan_cache_mode = force_custom_plan",
            &sp.custom,
        ),
    ] {
        series.push(
            timed(label, n, async |i, _| {
                let hits = pool
                    .search_semantic(
                        project,
                        SEARCH_MODEL,
                        DIMENSIONS,
                        &query_vectors[i],
                        &filter,
                        CANDIDATES,
                    )
                    .await?;
                Ok(hits.len())
            })
            .await?,
        );
    }
    let mut fallbacks = Vec::new();
    fake.reset_counts();
    for (label, pool) in [
        ("hybrid through the HTTP API", store),
        ("hybrid through the HTTP API, force_custom_plan", &sp.custom),
    ] {
        series.push(api_series(bench, pool, project, label, queries, n, &mut fallbacks).await?);
    }

    println!();
    println!(
        "3b. The same on a small project: {} chunks of {} files, in a database of its own",
        sp.chunks, sp.files
    );
    println!(
        "The store runs its queries as prepared statements; from a statement's sixth run on a \
         connection Postgres may switch to a generic plan, costed without the query's values. \
         The second series of each pair runs the same store functions on a pool whose sessions \
         set plan_cache_mode = force_custom_plan. {n} queries a series after {WARM_UP} warm-up \
         queries."
    );
    println!();
    print!("{}", series_table(&series).render());
    println!();
    println!(
        "The generic plan of the semantic statement (PREPARE, plan_cache_mode = \
         force_generic_plan, EXPLAIN EXECUTE): it sorts every chunk of the project instead of \
         walking the index:"
    );
    for line in generic_plan.lines() {
        println!("    {}", clip(line, 160));
    }
    if !fallbacks.is_empty() {
        println!(
            "Warning: {} API searches fell back to keyword ranking: {}",
            fallbacks.len(),
            fallbacks[0]
        );
    }
    summary.add(
        format!(
            "3b. semantic p50 over {} chunks: as shipped / force_custom_plan",
            sp.chunks
        ),
        format!(
            "{:.1} ms / {:.1} ms",
            percentile(&series[0].ms, 0.5),
            percentile(&series[1].ms, 0.5)
        ),
        "-",
    );
    summary.add(
        format!(
            "3b. hybrid API p50 over {} chunks: as shipped / force_custom_plan",
            sp.chunks
        ),
        format!(
            "{:.1} ms / {:.1} ms",
            percentile(&series[2].ms, 0.5),
            percentile(&series[3].ms, 0.5)
        ),
        "p50 <= 20 ms",
    );
    sp.custom.pool().close().await;
    Ok(())
}

/// Hybrid searches through the HTTP API of an API state on `store`, the
/// query embedded by the fake; searches that fell back to keyword ranking
/// are added to `fallbacks`.
async fn api_series(
    bench: &Bench,
    store: &Store,
    project: ProjectId,
    label: &str,
    queries: &[String],
    count: usize,
    fallbacks: &mut Vec<String>,
) -> Result<Series> {
    let embedder = projsync::app::embedder(&bench.settings, store).await?;
    let state = projsync::app::api_state_with_search(
        &bench.settings,
        store.clone(),
        projsync::app::search_settings(&bench.settings, embedder),
    )
    .await?;
    let shutdown = CancellationToken::new();
    let listener = projsync::app::bind("127.0.0.1:0").await?;
    let (addr, api) =
        projsync::app::spawn_api(listener, state, Default::default(), shutdown.clone())?;
    let client = http_client()?;
    let url = format!("http://{addr}/api/v1/projects/{project}/search");
    let result = timed(label, count, async |i, counted| {
        let body = api_search(&client, &url, &queries[i]).await?;
        if let (true, Some(note)) = (counted, body["semantic"].as_str()) {
            fallbacks.push(note.to_string());
        }
        Ok(body["results"].as_array().map_or(0, Vec::len))
    })
    .await;
    shutdown.cancel();
    let _ = api.await;
    result
}

fn series_table(series: &[Series]) -> Table {
    let mut table = Table::new(&[
        "series", "queries", "p50 ms", "p99 ms", "mean ms", "max ms", "results",
    ]);
    for s in series {
        table.row(vec![
            s.label.clone(),
            s.ms.len().to_string(),
            format!("{:.2}", percentile(&s.ms, 0.5)),
            format!("{:.2}", percentile(&s.ms, 0.99)),
            format!("{:.2}", s.ms.iter().sum::<f64>() / s.ms.len().max(1) as f64),
            format!("{:.2}", percentile(&s.ms, 1.0)),
            format!("{:.1}", s.results as f64 / s.ms.len().max(1) as f64),
        ]);
    }
    table
}

/// Mean and minimum recall@10 of `approximate` against `exact` (chunk id,
/// score, best first); a result as close as the exact tenth counts, since
/// repeated content has equal vectors.
fn recall_at_10(approximate: &[Vec<(i64, f64)>], exact: &[Vec<(i64, f64)>]) -> Option<(f64, f64)> {
    let mut recall = Vec::new();
    for (a, e) in approximate.iter().zip(exact) {
        let Some(tenth) = e.get(e.len().min(10).wrapping_sub(1)).map(|x| x.1) else {
            continue;
        };
        let found = a
            .iter()
            .take(10)
            .filter(|(id, score)| e.iter().take(10).any(|x| x.0 == *id) || *score >= tenth - 1e-9)
            .count();
        recall.push(found as f64 / e.len().min(10) as f64);
    }
    if recall.is_empty() {
        return None;
    }
    Some((
        recall.iter().sum::<f64>() / recall.len() as f64,
        recall.iter().copied().fold(f64::INFINITY, f64::min),
    ))
}

/// Run `run(query index, counted)` for `WARM_UP` queries, not counted, then
/// for queries `0..count`, timed one by one. `run` returns how many results
/// it got.
async fn timed(
    label: &str,
    count: usize,
    mut run: impl AsyncFnMut(usize, bool) -> Result<usize>,
) -> Result<Series> {
    for i in 0..WARM_UP {
        run(i % count, false).await?;
    }
    let mut ms_each = Vec::with_capacity(count);
    let mut results = 0;
    for i in 0..count {
        let t = Instant::now();
        results += run(i, true).await?;
        ms_each.push(ms(t.elapsed()));
    }
    Ok(Series {
        label: label.to_string(),
        ms: ms_each,
        results,
    })
}

/// `url` with `options` (server settings for every session) added.
/// A store of the `default` tenant whose sessions also carry the tenant, so
/// that the benchmark's own raw SQL (loading, exact scans, EXPLAIN) sees
/// the tenant's rows under row-level security like the store does.
async fn tenant_store(url: &str, extra_options: &str, connections: u32) -> Result<Store> {
    let options = format!(
        "-c projsync.tenant_id={}{extra_options}",
        projsync_store::DEFAULT_TENANT
    );
    Ok(Store::connect(&ConnectOptions {
        url: with_pg_options(url, &options),
        max_connections: connections,
        connect_timeout: Duration::from_secs(10),
    })
    .await?
    .scoped(projsync_store::DEFAULT_TENANT))
}

fn with_pg_options(url: &str, options: &str) -> String {
    let encoded: String = options
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options={encoded}")
}

/// The plan Postgres uses for the store's semantic statement once it
/// switches to a generic plan: prepared, then explained with
/// plan_cache_mode = force_generic_plan, in one transaction.
async fn explain_generic(store: &Store, project: ProjectId, query: &[f32]) -> Result<String> {
    let sql = exact_sql().replace(" + 0 LIMIT", " LIMIT");
    let script = format!(
        "BEGIN; \
         SET LOCAL hnsw.ef_search = {CANDIDATES}; \
         SET LOCAL hnsw.iterative_scan = relaxed_order; \
         SET LOCAL plan_cache_mode = force_generic_plan; \
         PREPARE bench_generic (uuid, text, bigint, text, text) AS {sql}; \
         EXPLAIN EXECUTE bench_generic ('{project}', '{}', {CANDIDATES}, NULL, NULL); \
         DEALLOCATE bench_generic; \
         COMMIT;",
        vector_text(query)
    );
    let mut conn = store.pool().acquire().await?;
    let rows = sqlx::raw_sql(&script).fetch_all(&mut *conn).await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.try_get::<String, _>(0).ok())
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Distinct files of the cargo registry (see [`registry_files`]), cut into
/// chunks, until `count` chunks.
fn corpus(count: usize) -> Vec<CorpusFile> {
    let root = cargo_registry();
    let opts = ChunkOptions::new(256);
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    let mut total = 0;
    for path in registry_files() {
        if total >= count {
            break;
        }
        let Ok(content) = std::fs::read_to_string(&path) else {
            continue;
        };
        if content.len() > 1 << 20 || content.contains('\0') || !seen.insert(content_hash(&content))
        {
            continue;
        }
        let mut chunks = chunk_text(&content, &EstimateCounter, &opts);
        if chunks.is_empty() {
            continue;
        }
        chunks.truncate(count - total);
        total += chunks.len();
        let relative = path.strip_prefix(&root).unwrap_or(&path);
        files.push(CorpusFile {
            path: relative.to_string_lossy().into_owned(),
            content,
            chunks,
        });
    }
    files
}

/// Entries, chunks and vectors, in batches; returns the vectors written
/// (repeated content shares one, as in the cache).
async fn insert_corpus(
    store: &Store,
    project: ProjectId,
    sync_id: SyncId,
    files: &[CorpusFile],
    vectors: Vectors,
    rng: &mut Rng,
) -> Result<usize> {
    let mut seen: HashSet<String> = HashSet::new();
    for batch in files.chunks(200) {
        let rows = sqlx::query(
            "INSERT INTO memory_entries (project_id, path, kind, content, content_hash, language, \
                 size_bytes, status, created_by_sync_id, chunk_count) \
             SELECT $1, t.path, 'file', t.content, t.hash, 'rust', t.size, 'active', $2, t.n \
             FROM UNNEST($3::text[], $4::text[], $5::text[], $6::bigint[], $7::int[]) \
                 AS t(path, content, hash, size, n) \
             RETURNING id, path",
        )
        .bind(project.0)
        .bind(sync_id.0)
        .bind(batch.iter().map(|f| f.path.as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|f| f.content.as_str()).collect::<Vec<_>>())
        .bind(
            batch
                .iter()
                .map(|f| content_hash(&f.content))
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|f| f.content.len() as i64)
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|f| f.chunks.len() as i32)
                .collect::<Vec<_>>(),
        )
        .fetch_all(store.pool())
        .await?;
        let ids: HashMap<String, i64> = rows
            .iter()
            .map(|r| (r.get::<String, _>("path"), r.get::<i64, _>("id")))
            .collect();
        let (mut entry_ids, mut ordinals, mut starts, mut ends) = (vec![], vec![], vec![], vec![]);
        let (mut contents, mut hashes, mut tokens, mut texts) = (vec![], vec![], vec![], vec![]);
        let (mut new_hashes, mut new_vectors) = (vec![], vec![]);
        for f in batch {
            for (i, c) in f.chunks.iter().enumerate() {
                let hash = content_hash(&c.content);
                entry_ids.push(ids[&f.path]);
                ordinals.push(i as i32);
                starts.push(c.start_line as i32);
                ends.push(c.end_line as i32);
                contents.push(c.content.as_str());
                tokens.push(c.token_count as i32);
                texts.push(searchable_text(&c.content));
                if seen.insert(hash.clone()) {
                    let v = match vectors {
                        Vectors::Text => fake_embedding(&c.content, DIMENSIONS),
                        Vectors::Random => random_unit(rng),
                    };
                    new_hashes.push(hash.clone());
                    new_vectors.push(vector_text(&v));
                }
                hashes.push(hash);
            }
        }
        sqlx::query(
            "INSERT INTO memory_chunks (entry_id, ordinal, start_line, end_line, content, \
                 content_hash, token_count, tsv) \
             SELECT t.entry, t.ord, t.s, t.e, t.content, t.hash, t.tokens, \
                 to_tsvector('english', t.searchable) \
             FROM UNNEST($1::bigint[], $2::int[], $3::int[], $4::int[], $5::text[], $6::text[], \
                 $7::int[], $8::text[]) AS t(entry, ord, s, e, content, hash, tokens, searchable)",
        )
        .bind(&entry_ids)
        .bind(&ordinals)
        .bind(&starts)
        .bind(&ends)
        .bind(&contents)
        .bind(&hashes)
        .bind(&tokens)
        .bind(&texts)
        .execute(store.pool())
        .await?;
        sqlx::query(
            "INSERT INTO embeddings (model, content_hash, dimensions, embedding) \
             SELECT $1, t.hash, $2, t.v::vector \
             FROM UNNEST($3::text[], $4::text[]) AS t(hash, v) \
             ON CONFLICT (model, content_hash) DO NOTHING",
        )
        .bind(SEARCH_MODEL)
        .bind(DIMENSIONS as i32)
        .bind(&new_hashes)
        .bind(&new_vectors)
        .execute(store.pool())
        .await?;
    }
    Ok(seen.len())
}

/// The store's semantic query (`semantic_sql` in crates/store, no filter
/// set) with an `ORDER BY` the index cannot serve (`distance + 0`): every
/// vector of the model is compared.
fn exact_sql() -> String {
    let distance = format!("(v.embedding::vector({DIMENSIONS}) <=> $2::vector({DIMENSIONS}))");
    format!(
        "SELECT c.id AS chunk_id, m.id AS entry_id, m.path, m.kind, c.start_line, c.end_line, \
             c.content, m.created_by_sync_id, (1 - {distance})::float8 AS score \
         FROM embeddings v \
         JOIN memory_chunks c ON c.content_hash = v.content_hash \
         JOIN memory_entries m ON m.id = c.entry_id \
         WHERE v.model = '{SEARCH_MODEL}' AND m.project_id = $1 AND m.status = 'active' \
             AND ($4::text IS NULL OR starts_with(m.path, $4)) \
             AND ($5::text IS NULL OR m.language = $5) \
         ORDER BY {distance} + 0 LIMIT $3"
    )
}

/// Exact nearest chunks: (chunk id, score), best first.
async fn search_exact(store: &Store, project: ProjectId, query: &[f32]) -> Result<Vec<(i64, f64)>> {
    let mut tx = store.pool().begin().await?;
    let rows = sqlx::query(&exact_sql())
        .bind(project.0)
        .bind(vector_text(query))
        .bind(CANDIDATES)
        .bind(None::<&str>)
        .bind(None::<&str>)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<i64, _>("chunk_id"), r.get::<f64, _>("score")))
        .collect())
}

async fn explain_exact(store: &Store, project: ProjectId, query: &[f32]) -> Result<String> {
    let rows = sqlx::query(&format!("EXPLAIN {}", exact_sql()))
        .bind(project.0)
        .bind(vector_text(query))
        .bind(CANDIDATES)
        .bind(None::<&str>)
        .bind(None::<&str>)
        .fetch_all(store.pool())
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// What the API's hybrid search does below HTTP and the query embedding:
/// both rankings (one after the other here), reciprocal rank fusion,
/// overlaps dropped down to 10 results. Returns the number of results.
async fn hybrid_in_store(
    store: &Store,
    project: ProjectId,
    query: &str,
    vector: &[f32],
) -> Result<usize> {
    let filter = SearchFilter::default();
    let semantic = store
        .search_semantic(
            project,
            SEARCH_MODEL,
            DIMENSIONS,
            vector,
            &filter,
            CANDIDATES,
        )
        .await?;
    let keyword =
        projsync_api::search::keyword_hits(store, project, query, &filter, 10, CANDIDATES).await?;
    let fused = projsync_api::search::fuse(semantic, keyword);
    Ok(without_overlaps(fused, 10).len())
}

async fn api_search(client: &reqwest::Client, url: &str, query: &str) -> Result<Value> {
    let response = client
        .post(url)
        .json(&json!({ "query": query, "k": 10, "mode": "hybrid" }))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    ensure!(status.is_success(), "POST {url} answered {status}: {body}");
    Ok(body)
}

// ---------------------------------------------------------------------------
// 4. Worker RSS.

async fn rss(args: &Args, summary: &mut Summary) -> Result<()> {
    let binary = projsync_binary()?;
    let bench = Bench::without_worker(|_| {}).await?;
    let mut settings = bench.worker_settings()?;
    settings.embeddings.enabled = true;
    settings.embeddings.provider = "local".into();
    settings.embeddings.model = LOCAL_MODEL.into();
    settings.embeddings.dimensions = DIMENSIONS;

    let repo = GitRepo::new();
    let root = cargo_registry();
    let mut bytes = 0;
    let mut count = 0;
    let mut seen = HashSet::new();
    for path in registry_files() {
        if count >= args.rss_files {
            break;
        }
        let Ok(content) = std::fs::read_to_string(&path) else {
            continue;
        };
        // Files of ordinary size: a few generated files of hundreds of KB
        // would make the sync's length depend on the sample.
        if content.trim().is_empty()
            || content.len() > RSS_MAX_FILE_BYTES
            || !seen.insert(content_hash(&content))
        {
            continue;
        }
        let relative = path.strip_prefix(&root).unwrap_or(&path);
        repo.write(&relative.to_string_lossy(), &content);
        bytes += content.len();
        count += 1;
    }
    ensure!(count > 0, "no source files under {}", root.display());
    repo.commit("real source files");
    let project = bench.create_project("rss", &repo).await?;

    let log_dir = std::env::temp_dir().join(format!("projsync-bench-embed-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir)?;
    let mut workers = WorkerProcesses::new(&binary, &log_dir, "rss");
    let index = workers.spawn(&settings)?;
    workers.wait_registered(&settings, 1).await?;
    let pid = workers.pid(index);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(read_status_kb(pid, "VmRSS:")?);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let baseline = *idle.iter().max().unwrap_or(&0);

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(kb) = read_status_kb(pid, "VmRSS:") {
                    samples.push(kb);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        })
    };
    let started = Instant::now();
    let id = bench.enqueue(project).await?;
    let record = wait_for_end(&bench, &mut workers, id).await;
    let wall = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let samples = sampler
        .join()
        .map_err(|_| anyhow!("the RSS sampler panicked"))?;
    let record = record?;
    check_succeeded(&record)?;
    let after = read_status_kb(pid, "VmRSS:")?;
    let hwm = read_status_kb(pid, "VmHWM:")?;
    let peak = samples.iter().copied().max().unwrap_or(0).max(baseline);
    let embed_time = phase_time(&bench.db.store, id, SyncPhase::Embed, SyncPhase::Finalize).await?;
    drop(workers);
    let _ = std::fs::remove_dir_all(&log_dir);
    bench.stop().await?;

    let mib = |kb: u64| kb as f64 / 1024.0;
    let s = &record.stats;
    println!("4. Worker RSS while it embeds (a real `projsync worker` process, local provider)");
    println!(
        "{} (`projsync worker`, default settings: concurrency {}, the model's threads = every core) \
         syncs a repository of {count} real Rust files from the cargo registry ({:.1} MB): {} chunks, \
         {} embedded by the model, {} from the cache; sync wall {:.1} s, embed phase {:.1} s ({:.1} \
         chunks/s). VmRSS read from /proc/{pid}/status every 100 ms ({} samples).",
        binary.display(),
        settings.worker.concurrency,
        bytes as f64 / 1e6,
        s.chunks,
        s.embedded,
        s.embedding_cache_hits,
        wall.as_secs_f64(),
        embed_time.as_secs_f64(),
        s.embedded as f64 / embed_time.as_secs_f64().max(1e-9),
        samples.len()
    );
    println!();
    let mut table = Table::new(&["worker RSS", "MiB"]);
    table.row(vec![
        "baseline: idle, 2 s after it registered (model loaded)".into(),
        format!("{:.1}", mib(baseline)),
    ]);
    table.row(vec![
        "peak while syncing".into(),
        format!("{:.1}", mib(peak)),
    ]);
    table.row(vec![
        "peak - baseline".into(),
        format!("{:.1}", mib(peak.saturating_sub(baseline))),
    ]);
    table.row(vec!["after the sync".into(), format!("{:.1}", mib(after))]);
    table.row(vec![
        "VmHWM (the kernel's high-water mark)".into(),
        format!("{:.1}", mib(hwm)),
    ]);
    print!("{}", table.render());
    summary.add(
        "4. worker RSS baseline / peak while embedding",
        format!("{:.0} MiB / {:.0} MiB", mib(baseline), mib(peak)),
        "-",
    );
    Ok(())
}

/// `VmRSS:` or `VmHWM:` of a process, in kB.
fn read_status_kb(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))
}

/// From the start of `phase` to the start of `next`, from the step rows.
async fn phase_time(
    store: &Store,
    id: SyncId,
    phase: SyncPhase,
    next: SyncPhase,
) -> Result<Duration> {
    let steps = store.steps(id).await?;
    let start = |p: SyncPhase| {
        steps
            .iter()
            .find(|s| s.phase == p)
            .and_then(|s| s.started_at)
    };
    match (start(phase), start(next)) {
        (Some(a), Some(b)) => Ok((b - a).to_std().unwrap_or_default()),
        _ => Ok(Duration::ZERO),
    }
}

// ---------------------------------------------------------------------------
// Shared helpers.

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// This checkout (the benchmark's crate is `crates/bench`).
fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    root.canonicalize().unwrap_or(root)
}

/// `$CARGO_HOME/registry/src`, or `~/.cargo/registry/src`.
fn cargo_registry() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(".cargo")
        });
    home.join("registry").join("src")
}

/// Where section 1 takes its chunks: this repository's files, then the
/// registry's.
fn source_files() -> Vec<(&'static str, Vec<PathBuf>)> {
    vec![
        ("this repository", rust_files(&repo_root())),
        ("the cargo registry", registry_files()),
    ]
}

/// The `.rs` files under `dir`, sorted, without build output or hidden
/// directories.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    stack.push(path);
                }
            } else if kind.is_file() && name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The `.rs` files of the cargo registry in a fixed pseudo-random order (by
/// a hash of their path inside the registry), so that a sample of any size
/// spans many crates rather than the first few in alphabetical order.
fn registry_files() -> Vec<PathBuf> {
    let root = cargo_registry();
    let mut files = rust_files(&root);
    files.sort_by_cached_key(|p| {
        content_hash(&p.strip_prefix(&root).unwrap_or(p).to_string_lossy())
    });
    files
}

/// Words too common in Rust code to make a query.
const COMMON: &[&str] = &[
    "let", "mut", "pub", "self", "impl", "use", "struct", "return", "match", "some", "none",
    "string", "vec", "true", "false", "where", "for", "else", "const", "static", "mod", "crate",
    "super", "type", "enum", "trait", "ref", "move", "async", "await", "loop", "while", "break",
    "continue", "unsafe", "dyn", "usize", "isize", "str", "bool", "new", "the", "and", "this",
    "that", "with", "from", "into", "unwrap", "clone", "result", "option", "box", "err", "fn",
    "not", "are", "can", "i16", "i32", "i64", "i128", "u16", "u32", "u64", "u128", "f32", "f64",
    "inline", "derive", "debug", "cfg", "test", "allow", "doc",
];

/// `count` queries of 2-4 distinct identifiers from code lines, picked
/// deterministically.
fn queries_from<'a>(lines: impl Iterator<Item = &'a str>, count: usize, seed: u64) -> Vec<String> {
    let mut candidates = Vec::new();
    for line in lines {
        let mut words: Vec<&str> = Vec::new();
        for w in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            let plain = w.trim_matches('_');
            if plain.len() >= 3
                && !plain.starts_with(|c: char| c.is_ascii_digit())
                && !COMMON.contains(&plain.to_ascii_lowercase().as_str())
                && !words.contains(&plain)
            {
                words.push(plain);
            }
        }
        if words.len() >= 2 {
            words.truncate(4);
            candidates.push(words.join(" "));
        }
    }
    if candidates.is_empty() {
        return vec!["embedding model search".to_string(); count];
    }
    let mut rng = Rng::new(seed);
    (0..count).map(|_| rng.pick(&candidates).clone()).collect()
}

fn random_unit(rng: &mut Rng) -> Vec<f32> {
    let mut v: Vec<f32> = (0..DIMENSIONS)
        .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
        .collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// pgvector's text form, `[1,2,3]`.
fn vector_text(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(f32::to_string).collect();
    format!("[{}]", parts.join(","))
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max - 1).collect::<String>())
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// Run git in `dir`; its stdout, or an error with its stderr.
fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "safe.directory=*"])
        .args(args)
        .output()
        .context("cannot run git")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_skip_keywords_and_short_words() {
        let lines = ["let mut reader = BufReader::with_capacity(len, file);", "}"];
        let q = queries_from(lines.into_iter(), 3, 1);
        assert_eq!(q, vec!["reader BufReader with_capacity len"; 3]);
    }

    #[test]
    fn random_vectors_are_unit_length() {
        let mut rng = Rng::new(1);
        let v = random_unit(&mut rng);
        assert_eq!(v.len(), DIMENSIONS);
        let norm: f32 = v.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        assert_eq!(vector_text(&[1.0, -0.5]), "[1,-0.5]");
    }

    #[test]
    fn exact_sql_cannot_use_the_index() {
        assert!(exact_sql().contains("+ 0 LIMIT $3"));
    }
}
