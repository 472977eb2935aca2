//! Embedding throughput of the local provider, and of sentence-transformers
//! on the same chunks in the same run.
//!
//! ```text
//! cargo run --release -p projsync-embed-local --example speed -- \
//!     [--source DIR] [--chunks 600] [--tokens 200] [--batch 32[,64…]] [--threads N[,M…]] \
//!     [--python /tmp/projsync-st-venv/bin/python]
//! ```
//!
//! Chunks are cut from the `.rs` files under `--source` (default: the cargo
//! registry's sources), a few per file, each about `--tokens` tokens. With
//! `--python` (a virtualenv that has sentence-transformers, as
//! `tests/reference/make_reference.py` makes), the same chunks are embedded by
//! `SentenceTransformer.encode(chunks, batch_size=32)` with 2 torch threads, and
//! the cosine between both vectors of every chunk is reported.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use projsync_embed::TokenCounter;
use projsync_embed_local::{LocalEmbedder, LocalOptions};

const PER_FILE: usize = 3;

const SENTENCE_TRANSFORMERS: &str = r#"
import json, sys, time
import torch
from sentence_transformers import SentenceTransformer
model_dir, chunks_path, out_path = sys.argv[1:4]
torch.set_num_threads(2)
chunks = json.load(open(chunks_path))
model = SentenceTransformer(model_dir, device="cpu")
model.encode(chunks[:32], batch_size=32)
start = time.perf_counter()
vectors = model.encode(chunks, batch_size=32)
elapsed = time.perf_counter() - start
json.dump({"seconds": elapsed, "vectors": vectors.tolist()}, open(out_path, "w"))
"#;

struct Args {
    source: PathBuf,
    chunks: usize,
    tokens: usize,
    batches: Vec<usize>,
    threads: Vec<usize>,
    python: Option<PathBuf>,
}

fn parse_list(value: &str) -> anyhow::Result<Vec<usize>> {
    value
        .split(',')
        .map(|v| v.parse().with_context(|| format!("not a number: {v}")))
        .collect()
}

fn args() -> anyhow::Result<Args> {
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    let mut args = Args {
        source: Path::new(&home).join(".cargo/registry/src"),
        chunks: 600,
        tokens: 200,
        batches: vec![32],
        threads: vec![std::thread::available_parallelism().map_or(1, |n| n.get())],
        python: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--source" => args.source = value.into(),
            "--chunks" => args.chunks = value.parse()?,
            "--tokens" => args.tokens = value.parse()?,
            "--batch" => args.batches = parse_list(&value)?,
            "--threads" => args.threads = parse_list(&value)?,
            "--python" => args.python = Some(value.into()),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(args)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Runs of whole lines of about `tokens` tokens, at most a few per file.
fn chunks(counter: &dyn TokenCounter, args: &Args) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&args.source, &mut files);
    let (low, high) = (args.tokens * 9 / 10, args.tokens * 11 / 10);
    let mut chunks = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let mut taken = 0;
        let mut current = String::new();
        let mut count = 0;
        for line in text.lines() {
            current.push_str(line);
            current.push('\n');
            count += counter.count_tokens(line);
            if count >= args.tokens {
                let exact = counter.count_tokens(&current);
                if (low..=high).contains(&exact) {
                    chunks.push(std::mem::take(&mut current));
                    taken += 1;
                    if chunks.len() == args.chunks {
                        return chunks;
                    }
                }
                current.clear();
                count = 0;
                if taken == PER_FILE {
                    break;
                }
            }
        }
    }
    chunks
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let defaults = LocalOptions::default();
    let mut last = None;
    let mut chunk_set = None;
    for &threads in &args.threads {
        for &batch_size in &args.batches {
            let start = Instant::now();
            let embedder = LocalEmbedder::load(LocalOptions {
                threads: Some(threads),
                batch_size,
                ..defaults.clone()
            })?;
            let load = start.elapsed();
            let chunks = chunk_set.get_or_insert_with(|| {
                let chunks = chunks(&embedder, &args);
                let tokens: usize = chunks.iter().map(|c| embedder.count_tokens(c)).sum();
                println!(
                    "{} chunks from {}, {:.0} tokens each on average",
                    chunks.len(),
                    args.source.display(),
                    tokens as f64 / chunks.len().max(1) as f64
                );
                chunks
            });
            embedder.embed_blocking(&chunks[..32.min(chunks.len())])?;
            let start = Instant::now();
            let vectors = embedder.embed_blocking(chunks)?;
            let seconds = start.elapsed().as_secs_f64();
            println!(
                "local (ONNX Runtime), threads {threads}, batch {batch_size}: {:.1} chunks/s ({seconds:.2} s; load {:.2} s)",
                chunks.len() as f64 / seconds,
                load.as_secs_f64()
            );
            last = Some(vectors);
        }
    }
    let (Some(python), Some(ours), Some(chunks)) = (&args.python, last, chunk_set) else {
        return Ok(());
    };
    let dir = std::env::temp_dir();
    let chunks_path = dir.join(format!("projsync-speed-chunks-{}.json", std::process::id()));
    let out_path = dir.join(format!("projsync-speed-st-{}.json", std::process::id()));
    std::fs::write(&chunks_path, serde_json::to_string(&chunks)?)?;
    let status = Command::new(python)
        .args(["-c", SENTENCE_TRANSFORMERS])
        .arg(&defaults.model_path)
        .arg(&chunks_path)
        .arg(&out_path)
        .status()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !status.success() {
        bail!("sentence-transformers run failed ({status})");
    }
    #[derive(serde::Deserialize)]
    struct Output {
        seconds: f64,
        vectors: Vec<Vec<f32>>,
    }
    let output: Output = serde_json::from_str(&std::fs::read_to_string(&out_path)?)?;
    let _ = std::fs::remove_file(&chunks_path);
    let _ = std::fs::remove_file(&out_path);
    println!(
        "sentence-transformers (PyTorch), torch threads 2, batch 32: {:.1} chunks/s ({:.2} s)",
        chunks.len() as f64 / output.seconds,
        output.seconds
    );
    let similarities: Vec<f32> = ours
        .iter()
        .zip(&output.vectors)
        .map(|(a, b)| cosine(a, b))
        .collect();
    let lowest = similarities.iter().copied().fold(f32::INFINITY, f32::min);
    let mean = similarities.iter().sum::<f32>() / similarities.len().max(1) as f32;
    println!(
        "cosine local vs sentence-transformers over the chunks: min {lowest:.6}, mean {mean:.6}"
    );
    Ok(())
}
