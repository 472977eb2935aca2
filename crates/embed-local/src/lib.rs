//! The default embedding provider: a sentence-transformers BERT model
//! (all-MiniLM-L6-v2 out of the box) run in-process on the CPU by ONNX
//! Runtime. It owns reading the model folder, building the model graph from
//! its safetensors weights, loading the runtime's shared library, and
//! batching, padding, pooling and normalising.
//!
//! It knows nothing of chunks, stores, queues or configuration files: callers
//! hand it [`LocalOptions`] and see only the [`Embedder`] trait.

mod bert;
mod folder;
mod runtime;

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use projsync_embed::tokenizer::HfTokenizer;
use projsync_embed::{EmbedError, Embedder, Result, TokenCounter};

/// The ONNX Runtime release `scripts/fetch-model.sh` installs and this crate
/// is built against (`ort` feature `api-31`).
pub const RUNTIME_VERSION: &str = "1.31.1";

/// The model the default configuration runs.
pub const DEFAULT_MODEL_NAME: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// How to load a [`LocalEmbedder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOptions {
    /// The name recorded with every vector (the cache key).
    pub model_name: String,
    /// A sentence-transformers folder: `config.json`, `tokenizer.json`,
    /// `model.safetensors`, and optionally `modules.json`,
    /// `sentence_bert_config.json`, `1_Pooling/config.json`.
    pub model_path: PathBuf,
    /// ONNX Runtime's shared library, `libonnxruntime.so`.
    pub runtime_path: PathBuf,
    /// Intra-op threads; the machine's available cores when `None`.
    pub threads: Option<usize>,
    /// Inputs per model run.
    pub batch_size: usize,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self {
            model_name: DEFAULT_MODEL_NAME.to_string(),
            model_path: default_model_path(),
            runtime_path: default_runtime_path(),
            threads: None,
            batch_size: 16,
        }
    }
}

/// `$PROJSYNC_CACHE_DIR`, or `$HOME/.cache/projsync`.
pub fn default_cache_dir() -> PathBuf {
    match std::env::var_os("PROJSYNC_CACHE_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => std::env::var_os("HOME")
            .map_or_else(|| PathBuf::from("."), PathBuf::from)
            .join(".cache")
            .join("projsync"),
    }
}

/// Where `scripts/fetch-model.sh` puts all-MiniLM-L6-v2.
pub fn default_model_path() -> PathBuf {
    default_cache_dir().join("models").join("all-MiniLM-L6-v2")
}

/// Where `scripts/fetch-model.sh` puts ONNX Runtime.
pub fn default_runtime_path() -> PathBuf {
    default_cache_dir()
        .join("onnxruntime")
        .join("libonnxruntime.so")
}

/// A sentence-transformers model run by ONNX Runtime on the CPU.
#[derive(Clone)]
pub struct LocalEmbedder {
    model_name: String,
    inner: Arc<Inner>,
}

struct Inner {
    tokenizer: HfTokenizer,
    session: Mutex<Session>,
    dimensions: usize,
    /// Tokens of one model input, special tokens included.
    max_seq_length: usize,
    batch_size: usize,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("model", &self.model_name)
            .field("dimensions", &self.inner.dimensions)
            .field("max_seq_length", &self.inner.max_seq_length)
            .field("batch_size", &self.inner.batch_size)
            .finish()
    }
}

impl LocalEmbedder {
    /// Reads the model folder, builds the model graph and starts an ONNX
    /// Runtime session. Takes about a second; call it once and share the
    /// embedder (it is cheap to clone).
    pub fn load(options: LocalOptions) -> Result<LocalEmbedder> {
        if options.batch_size == 0 {
            return Err(EmbedError::fatal(
                "embedding batch size must be at least 1; set embeddings.batch_size",
            ));
        }
        let folder = folder::ModelFolder::read(&options.model_path)?;
        let tokenizer = HfTokenizer::from_file(&folder.tokenizer)?;
        let environment = runtime::environment(&options.runtime_path)?;
        let model = bert::build_model(&folder)?;

        let threads = options.threads.filter(|&n| n > 0).unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let session_error =
            |e: String| EmbedError::fatal(format!("cannot start an ONNX Runtime session: {e}"));
        let builder = Session::builder(&environment)
            .map_err(|e| session_error(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| session_error(e.to_string()))?
            .with_intra_threads(threads)
            .map_err(|e| session_error(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| session_error(e.to_string()))?;
        let session = model
            .into_session(&builder)
            .map_err(|e| session_error(e.to_string()))?;
        tracing::info!(
            model = %options.model_name,
            path = %options.model_path.display(),
            threads,
            "local embedding model loaded"
        );
        Ok(LocalEmbedder {
            model_name: options.model_name,
            inner: Arc::new(Inner {
                tokenizer,
                session: Mutex::new(session),
                dimensions: folder.config.hidden_size,
                max_seq_length: folder.max_seq_length,
                batch_size: options.batch_size,
            }),
        })
    }

    /// The tokenizer the model reads its inputs with.
    pub fn tokenizer(&self) -> &HfTokenizer {
        &self.inner.tokenizer
    }

    /// Embeds on the calling thread; [`Embedder::embed`] runs this on
    /// tokio's blocking pool.
    pub fn embed_blocking(&self, inputs: &[String]) -> Result<Vec<Vec<f32>>> {
        self.inner.embed(inputs)
    }
}

impl Inner {
    fn embed(&self, inputs: &[String]) -> Result<Vec<Vec<f32>>> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let texts: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let ids = self
            .tokenizer
            .encode_for_model(&texts, self.max_seq_length)?;

        // Longest first, so each batch pads to about its own length.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));

        let mut vectors = vec![Vec::new(); inputs.len()];
        let mut session = self.session.lock().map_err(|_| {
            EmbedError::fatal("the local embedding session failed earlier; restart the process")
        })?;
        for batch in order.chunks(self.batch_size) {
            let sequences: Vec<&[u32]> = batch.iter().map(|&i| ids[i].as_slice()).collect();
            let padded = self.tokenizer.pad(&sequences);
            let shape = [padded.rows, padded.seq_len];
            let run_error =
                |e: String| EmbedError::fatal(format!("local embedding model failed: {e}"));
            let input_ids = Tensor::from_array((shape, padded.input_ids))
                .map_err(|e| run_error(e.to_string()))?;
            let attention_mask = Tensor::from_array((shape, padded.attention_mask))
                .map_err(|e| run_error(e.to_string()))?;
            let outputs = session
                .run(ort::inputs![
                    bert::INPUT_IDS => input_ids,
                    bert::ATTENTION_MASK => attention_mask,
                ])
                .map_err(|e| run_error(e.to_string()))?;
            let (out_shape, data) = outputs[bert::OUTPUT]
                .try_extract_tensor::<f32>()
                .map_err(|e| run_error(e.to_string()))?;
            if **out_shape != [padded.rows as i64, self.dimensions as i64] {
                return Err(run_error(format!(
                    "output shape {:?}, expected [{}, {}]",
                    &**out_shape, padded.rows, self.dimensions
                )));
            }
            for (&i, row) in batch.iter().zip(data.chunks_exact(self.dimensions)) {
                vectors[i] = row.to_vec();
            }
        }
        Ok(vectors)
    }
}

impl TokenCounter for LocalEmbedder {
    fn count_tokens(&self, text: &str) -> usize {
        self.inner.tokenizer.count_tokens(text)
    }

    fn truncate<'a>(&self, text: &'a str, max_tokens: usize) -> (Cow<'a, str>, bool) {
        self.inner.tokenizer.truncate(text, max_tokens)
    }
}

#[async_trait::async_trait]
impl Embedder for LocalEmbedder {
    fn model(&self) -> &str {
        &self.model_name
    }

    fn dimensions(&self) -> usize {
        self.inner.dimensions
    }

    fn max_tokens(&self) -> usize {
        self.inner
            .max_seq_length
            .saturating_sub(self.inner.tokenizer.added_tokens())
    }

    async fn embed(&self, inputs: &[String]) -> Result<Vec<Vec<f32>>> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let inner = Arc::clone(&self.inner);
        let inputs = inputs.to_vec();
        tokio::task::spawn_blocking(move || inner.embed(&inputs))
            .await
            .map_err(|e| EmbedError::fatal(format!("local embedding task failed: {e}")))?
    }
}
