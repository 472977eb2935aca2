//! The local provider against sentence-transformers: the vectors and token
//! ids in `reference/all-MiniLM-L6-v2.json` were written by
//! `reference/make_reference.py` from the same model folder.
//!
//! Needs the model and ONNX Runtime that `scripts/fetch-model.sh` installs;
//! without them these tests fail (they never skip).

use std::sync::OnceLock;

use projsync_embed::{Embedder, TokenCounter};
use projsync_embed_local::{default_model_path, default_runtime_path, LocalEmbedder, LocalOptions};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    max_seq_length: usize,
    dimensions: usize,
    inputs: Vec<Input>,
}

#[derive(Deserialize)]
struct Input {
    text: String,
    token_ids: Option<Vec<u32>>,
    model_tokens: usize,
    vector: Vec<f32>,
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        serde_json::from_str(include_str!("reference/all-MiniLM-L6-v2.json"))
            .expect("reference/all-MiniLM-L6-v2.json parses")
    })
}

fn options() -> LocalOptions {
    let options = LocalOptions {
        batch_size: 4,
        ..LocalOptions::default()
    };
    assert!(
        options.model_path.join("model.safetensors").is_file(),
        "all-MiniLM-L6-v2 not found at {}; run scripts/fetch-model.sh (it also installs ONNX Runtime at {})",
        options.model_path.display(),
        default_runtime_path().display()
    );
    assert_eq!(options.model_path, default_model_path());
    options
}

fn embedder() -> &'static LocalEmbedder {
    static EMBEDDER: OnceLock<LocalEmbedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| {
        LocalEmbedder::load(options())
            .unwrap_or_else(|e| panic!("cannot load the local model: {e}"))
    })
}

fn texts() -> Vec<String> {
    reference().inputs.iter().map(|i| i.text.clone()).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn assert_matches_reference(vectors: &[Vec<f32>]) {
    let reference = reference();
    assert_eq!(vectors.len(), reference.inputs.len());
    let mut lowest = (f32::INFINITY, 0);
    for (i, (vector, input)) in vectors.iter().zip(&reference.inputs).enumerate() {
        assert_eq!(vector.len(), reference.dimensions, "input {i}: dimensions");
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "input {i}: norm {norm}");
        let similarity = cosine(vector, &input.vector);
        if similarity < lowest.0 {
            lowest = (similarity, i);
        }
    }
    eprintln!(
        "lowest cosine with sentence-transformers: {:.6} (input {})",
        lowest.0, lowest.1
    );
    assert!(
        lowest.0 >= 0.99,
        "input {}: cosine {} with the reference vector",
        lowest.1,
        lowest.0
    );
}

#[tokio::test]
async fn vectors_match_sentence_transformers() {
    let embedder = embedder();
    assert_eq!(embedder.model(), "sentence-transformers/all-MiniLM-L6-v2");
    assert_eq!(embedder.dimensions(), 384);
    assert_eq!(reference().max_seq_length, 256);
    assert_eq!(embedder.max_tokens(), 254);
    let vectors = embedder.embed(&texts()).await.unwrap();
    assert_matches_reference(&vectors);
}

#[tokio::test]
async fn order_is_kept_across_batches_of_mixed_lengths() {
    // Reversed and interleaved so that sorting by length moves every input,
    // with batches of 4 splitting them.
    let n = reference().inputs.len();
    let order: Vec<usize> = (0..n).rev().chain([4, 7, 0]).collect();
    let inputs: Vec<String> = order.iter().map(|&i| texts()[i].clone()).collect();
    let vectors = embedder().embed(&inputs).await.unwrap();
    assert_eq!(vectors.len(), order.len());
    for (vector, &i) in vectors.iter().zip(&order) {
        let similarity = cosine(vector, &reference().inputs[i].vector);
        assert!(
            similarity >= 0.99,
            "input {i} came back as another: cosine {similarity}"
        );
    }
}

#[tokio::test]
async fn a_long_input_is_truncated_like_sentence_transformers() {
    let embedder = embedder();
    let long = reference()
        .inputs
        .iter()
        .find(|i| i.model_tokens == reference().max_seq_length)
        .expect("the reference has an input that fills the model");
    assert!(embedder.count_tokens(&long.text) > embedder.max_tokens());

    let (cut, truncated) = embedder.truncate(&long.text, embedder.max_tokens());
    assert!(truncated);
    assert_eq!(embedder.count_tokens(&cut), embedder.max_tokens());

    let vectors = embedder
        .embed(&[long.text.clone(), cut.into_owned()])
        .await
        .unwrap();
    assert!(cosine(&vectors[0], &long.vector) >= 0.99);
    // The model's own truncation and the chunker's cut see the same tokens.
    assert!(cosine(&vectors[0], &vectors[1]) > 0.9999);
}

#[test]
fn token_ids_match_the_reference_tokenizer() {
    let embedder = embedder();
    let mut checked = 0;
    for input in &reference().inputs {
        let model_ids = embedder
            .tokenizer()
            .encode_for_model(&[input.text.as_str()], reference().max_seq_length)
            .unwrap();
        assert_eq!(model_ids[0].len(), input.model_tokens, "{:?}", input.text);
        if let Some(ids) = &input.token_ids {
            assert_eq!(&model_ids[0], ids, "{:?}", input.text);
            assert_eq!(embedder.count_tokens(&input.text), ids.len() - 2);
            checked += 1;
        }
    }
    assert_eq!(checked, 2);
}

#[tokio::test]
async fn no_inputs_give_no_vectors() {
    assert!(embedder().embed(&[]).await.unwrap().is_empty());
}

#[test]
fn a_second_embedder_in_the_same_process_works() {
    let first = embedder();
    let second = LocalEmbedder::load(LocalOptions {
        threads: Some(1),
        batch_size: 1,
        ..options()
    })
    .expect("a second load shares the runtime");
    let inputs = texts()[..3].to_vec();
    let a = first.embed_blocking(&inputs).unwrap();
    let b = second.embed_blocking(&inputs).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!(cosine(x, y) > 0.9999);
    }
}

#[test]
fn a_missing_model_says_how_to_fetch_it() {
    let err = LocalEmbedder::load(LocalOptions {
        model_path: "/nonexistent/all-MiniLM-L6-v2".into(),
        ..options()
    })
    .unwrap_err();
    assert!(!err.is_retryable());
    let message = err.to_string();
    assert!(
        message.contains("/nonexistent/all-MiniLM-L6-v2"),
        "{message}"
    );
    assert!(message.contains("scripts/fetch-model.sh"), "{message}");
}
