//! Embedding throughput of the local provider, and of sentence-transformers
//! on the same chunks in the same run.
//!
//! ```text
//! cargo run --release -p projsync-embed-local --example speed -- \
//!     [--source DIR] [--chunks 600] [--tokens 200] [--batch 32[,64…]] [--threads N[,M…]] \
//!     [--rounds 1] [--python /tmp/projsync-st-venv/bin/python] [--save-chunks chunks.json]
//! ```
//!
//! Chunks are cut from the `.rs` files under `--source` (default: the cargo
//! registry's sources), a few per file, each about `--tokens` tokens. With
//! `--python` (a virtualenv that has sentence-transformers, as
//! `tests/reference/make_reference.py` makes), the same chunks are embedded by
//! `SentenceTransformer.encode(chunks, batch_size=32)` with 2 torch threads in
//! a separate process, taking turns with the local provider round after
//! round so that both see the same machine; the best round of each is
//! reported, and the cosine between both vectors of every chunk.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use projsync_embed::TokenCounter;
use projsync_embed_local::{LocalEmbedder, LocalOptions};

const PER_FILE: usize = 3;

/// Reads the chunks, loads the model, then embeds them all on every `go`
/// line and answers with the seconds it took; `vectors PATH` writes the last
/// vectors to PATH.
const SENTENCE_TRANSFORMERS: &str = r#"
import json, sys, time
import torch
from sentence_transformers import SentenceTransformer
model_dir, chunks_path = sys.argv[1:3]
torch.set_num_threads(2)
chunks = json.load(open(chunks_path))
model = SentenceTransformer(model_dir, device="cpu")
model.encode(chunks[:32], batch_size=32)
print("ready", flush=True)
vectors = None
for line in sys.stdin:
    if line.startswith("go"):
        start = time.perf_counter()
        vectors = model.encode(chunks, batch_size=32)
        print(time.perf_counter() - start, flush=True)
    elif line.startswith("vectors "):
        json.dump(vectors.tolist(), open(line.split(" ", 1)[1].strip(), "w"))
        print("written", flush=True)
"#;

struct Args {
    source: PathBuf,
    chunks: usize,
    tokens: usize,
    batches: Vec<usize>,
    threads: Vec<usize>,
    rounds: usize,
    python: Option<PathBuf>,
    save_chunks: Option<PathBuf>,
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
        rounds: 1,
        python: None,
        save_chunks: None,
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
            "--rounds" => args.rounds = value.parse()?,
            "--python" => args.python = Some(value.into()),
            "--save-chunks" => args.save_chunks = Some(value.into()),
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

/// sentence-transformers in a child process, driven line by line.
struct Reference {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Reference {
    fn start(python: &Path, model: &Path, chunks: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(python)
            .args(["-c", SENTENCE_TRANSFORMERS])
            .arg(model)
            .arg(chunks)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", python.display()))?;
        let stdin = child.stdin.take().context("child stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("child stdout")?);
        let mut reference = Self {
            child,
            stdin,
            stdout,
        };
        let ready = reference.read_line()?;
        if ready != "ready" {
            bail!("sentence-transformers did not start: {ready:?}");
        }
        Ok(reference)
    }

    fn read_line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("sentence-transformers exited");
        }
        Ok(line.trim().to_string())
    }

    fn seconds(&mut self) -> anyhow::Result<f64> {
        writeln!(self.stdin, "go")?;
        Ok(self.read_line()?.parse()?)
    }

    fn vectors(&mut self, path: &Path) -> anyhow::Result<Vec<Vec<f32>>> {
        writeln!(self.stdin, "vectors {}", path.display())?;
        self.read_line()?;
        let vectors = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        let _ = std::fs::remove_file(path);
        Ok(vectors)
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let defaults = LocalOptions::default();
    let mut embedders = Vec::new();
    for &threads in &args.threads {
        for &batch_size in &args.batches {
            let start = Instant::now();
            let embedder = LocalEmbedder::load(LocalOptions {
                threads: Some(threads),
                batch_size,
                ..defaults.clone()
            })?;
            let label = format!("threads {threads}, batch {batch_size}");
            println!(
                "loaded local model ({label}) in {:.2} s",
                start.elapsed().as_secs_f64()
            );
            embedders.push((label, embedder));
        }
    }
    let Some((_, first)) = embedders.first() else {
        bail!("no configuration to measure");
    };
    let chunks = chunks(first, &args);
    let tokens: usize = chunks.iter().map(|c| first.count_tokens(c)).sum();
    println!(
        "{} chunks from {}, {:.0} tokens each on average",
        chunks.len(),
        args.source.display(),
        tokens as f64 / chunks.len().max(1) as f64
    );
    let chunks_path = match &args.save_chunks {
        Some(path) => path.clone(),
        None => std::env::temp_dir().join(format!("projsync-speed-{}.json", std::process::id())),
    };
    std::fs::write(&chunks_path, serde_json::to_string(&chunks)?)?;
    let mut reference = match &args.python {
        Some(python) => Some(Reference::start(
            python,
            &defaults.model_path,
            &chunks_path,
        )?),
        None => None,
    };

    for (_, embedder) in &embedders {
        embedder.embed_blocking(&chunks[..32.min(chunks.len())])?;
    }
    let per_second = |seconds: f64| chunks.len() as f64 / seconds;
    let mut best = vec![0f64; embedders.len()];
    let mut best_reference = 0f64;
    let mut ours = Vec::new();
    for round in 1..=args.rounds {
        for (i, (label, embedder)) in embedders.iter().enumerate() {
            let start = Instant::now();
            ours = embedder.embed_blocking(&chunks)?;
            let rate = per_second(start.elapsed().as_secs_f64());
            best[i] = best[i].max(rate);
            println!("round {round}: local (ONNX Runtime), {label}: {rate:.1} chunks/s");
        }
        if let Some(reference) = reference.as_mut() {
            let rate = per_second(reference.seconds()?);
            best_reference = best_reference.max(rate);
            println!("round {round}: sentence-transformers (PyTorch), torch threads 2, batch 32: {rate:.1} chunks/s");
        }
    }
    println!("best of {} rounds:", args.rounds);
    for ((label, _), rate) in embedders.iter().zip(&best) {
        println!("  local (ONNX Runtime), {label}: {rate:.1} chunks/s");
    }
    if let Some(reference) = reference.as_mut() {
        println!("  sentence-transformers (PyTorch), torch threads 2, batch 32: {best_reference:.1} chunks/s");
        let path =
            std::env::temp_dir().join(format!("projsync-speed-st-{}.json", std::process::id()));
        let theirs = reference.vectors(&path)?;
        let similarities: Vec<f32> = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| cosine(a, b))
            .collect();
        let lowest = similarities.iter().copied().fold(f32::INFINITY, f32::min);
        let mean = similarities.iter().sum::<f32>() / similarities.len().max(1) as f32;
        println!("cosine local vs sentence-transformers over the chunks: min {lowest:.6}, mean {mean:.6}");
    }
    if args.save_chunks.is_none() {
        let _ = std::fs::remove_file(&chunks_path);
    }
    Ok(())
}
