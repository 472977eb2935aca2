//! A process of its own: ONNX Runtime, once loaded, stays loaded, so the
//! error for a missing library can only be seen before any load.

use projsync_embed_local::{LocalEmbedder, LocalOptions};

#[test]
fn a_missing_runtime_says_how_to_install_it() {
    let err = LocalEmbedder::load(LocalOptions {
        runtime_path: "/nonexistent/libonnxruntime.so".into(),
        ..LocalOptions::default()
    })
    .unwrap_err();
    assert!(!err.is_retryable());
    let message = err.to_string();
    // Without the model the model's error comes first; both name the script.
    assert!(message.contains("scripts/fetch-model.sh"), "{message}");
    if LocalOptions::default()
        .model_path
        .join("config.json")
        .is_file()
    {
        assert!(
            message.contains("/nonexistent/libonnxruntime.so"),
            "{message}"
        );
    }
}
