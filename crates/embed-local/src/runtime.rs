//! ONNX Runtime, loaded once per process from its shared library.
//!
//! `ort` keeps the library and its environment in process-wide globals: the
//! first successful load wins and every later [`LocalEmbedder`] shares it.
//!
//! [`LocalEmbedder`]: crate::LocalEmbedder

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use projsync_embed::{EmbedError, Result};

static ENVIRONMENT: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

/// The process's ONNX Runtime environment, loading the library at `library`
/// the first time.
pub(crate) fn environment(library: &Path) -> Result<Environment> {
    let mut loaded = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((path, environment)) = loaded.as_ref() {
        if path != library {
            tracing::warn!(
                loaded = %path.display(),
                requested = %library.display(),
                "ONNX Runtime is already loaded in this process; using the loaded library"
            );
        }
        return Ok(environment.clone());
    }
    if !library.exists() {
        return Err(EmbedError::fatal(format!(
            "ONNX Runtime library not found at {}; run scripts/services.sh (or scripts/fetch-model.sh) or set embeddings.runtime_path",
            library.display()
        )));
    }
    let builder = ort::init_from(library).map_err(|e| {
        EmbedError::fatal(format!(
            "cannot load ONNX Runtime from {}: {e}; it must be libonnxruntime {} or later, as scripts/fetch-model.sh installs",
            library.display(),
            crate::RUNTIME_VERSION
        ))
    })?;
    let environment = builder
        .with_name("projsync")
        .with_telemetry(false)
        .build()
        .map_err(|e| EmbedError::fatal(format!("cannot start ONNX Runtime: {e}")))?;
    tracing::debug!(library = %library.display(), "ONNX Runtime loaded");
    *loaded = Some((library.to_path_buf(), environment.clone()));
    Ok(environment)
}
