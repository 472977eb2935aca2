//! What a sentence-transformers folder says about its model: the BERT
//! configuration, the pooling, the longest input.

use std::path::{Path, PathBuf};

use projsync_embed::{EmbedError, Result};
use serde::Deserialize;

/// The fields of a Hugging Face BERT `config.json` the graph is built from.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BertConfig {
    #[serde(default = "bert")]
    pub model_type: String,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    pub vocab_size: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "gelu")]
    pub hidden_act: String,
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
}

fn bert() -> String {
    "bert".into()
}
fn default_eps() -> f64 {
    1e-12
}
fn default_type_vocab() -> usize {
    2
}
fn gelu() -> String {
    "gelu".into()
}
fn absolute() -> String {
    "absolute".into()
}

impl BertConfig {
    pub fn head_size(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pooling {
    /// Average of the token vectors under the attention mask.
    Mean,
    /// The vector of the first token (`[CLS]`).
    Cls,
}

/// A sentence-transformers folder, read and checked.
#[derive(Debug, Clone)]
pub(crate) struct ModelFolder {
    pub config: BertConfig,
    pub pooling: Pooling,
    /// Tokens of one model input, special tokens included.
    pub max_seq_length: usize,
    pub tokenizer: PathBuf,
    pub weights: PathBuf,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode: Option<String>,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

impl ModelFolder {
    pub fn read(dir: &Path) -> Result<Self> {
        if !dir.join("config.json").is_file() {
            return Err(EmbedError::fatal(format!(
                "embedding model not found at {}; run scripts/services.sh (or scripts/fetch-model.sh) or set embeddings.model_path",
                dir.display()
            )));
        }
        let config: BertConfig = read_json(&dir.join("config.json"))?;
        check_config(&config, dir)?;

        let modules: Vec<ModuleEntry> = if dir.join("modules.json").is_file() {
            read_json(&dir.join("modules.json"))?
        } else {
            Vec::new()
        };
        if let Some(m) = modules.iter().find(|m| {
            !matches!(
                m.kind.rsplit('.').next(),
                Some("Transformer" | "Pooling" | "Normalize")
            )
        }) {
            return Err(EmbedError::fatal(format!(
                "{} lists a {} module, which the local provider does not run; use a model made of Transformer, Pooling and Normalize modules",
                dir.join("modules.json").display(),
                m.kind
            )));
        }
        let pooling_dir = modules
            .iter()
            .find(|m| m.kind.ends_with(".Pooling"))
            .map_or_else(|| "1_Pooling".to_string(), |m| m.path.clone());
        let pooling = read_pooling(&dir.join(pooling_dir).join("config.json"))?;

        let max_seq_length = if dir.join("sentence_bert_config.json").is_file() {
            read_json::<SentenceBertConfig>(&dir.join("sentence_bert_config.json"))?.max_seq_length
        } else {
            None
        }
        .unwrap_or(512)
        .min(config.max_position_embeddings);

        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(EmbedError::fatal(format!(
                "model weights not found at {}; the local provider reads model.safetensors (convert pytorch_model.bin first, or run scripts/fetch-model.sh)",
                weights.display()
            )));
        }
        Ok(Self {
            config,
            pooling,
            max_seq_length,
            tokenizer: dir.join("tokenizer.json"),
            weights,
        })
    }
}

fn check_config(config: &BertConfig, dir: &Path) -> Result<()> {
    let unsupported = |what: String| {
        Err(EmbedError::fatal(format!(
            "{}: {what}; the local provider runs BERT models (model_type \"bert\", absolute positions, gelu)",
            dir.join("config.json").display()
        )))
    };
    if config.model_type != "bert" {
        return unsupported(format!(
            "model_type {:?} is not supported",
            config.model_type
        ));
    }
    if config.hidden_act != "gelu" {
        return unsupported(format!(
            "hidden_act {:?} is not supported",
            config.hidden_act
        ));
    }
    if config.position_embedding_type != "absolute" {
        return unsupported(format!(
            "position_embedding_type {:?} is not supported",
            config.position_embedding_type
        ));
    }
    if config.num_attention_heads == 0
        || config.hidden_size == 0
        || !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
    {
        return unsupported(format!(
            "hidden_size {} is not a multiple of num_attention_heads {}",
            config.hidden_size, config.num_attention_heads
        ));
    }
    if config.type_vocab_size == 0 || config.max_position_embeddings == 0 {
        return unsupported("type_vocab_size and max_position_embeddings must be positive".into());
    }
    Ok(())
}

fn read_pooling(path: &Path) -> Result<Pooling> {
    if !path.is_file() {
        // sentence-transformers falls back to mean pooling without a Pooling module.
        return Ok(Pooling::Mean);
    }
    let config: PoolingConfig = read_json(path)?;
    let mode = match config.pooling_mode.as_deref() {
        Some(mode) => mode.to_string(),
        None => {
            let flags = [
                (config.pooling_mode_cls_token, "cls"),
                (config.pooling_mode_mean_tokens, "mean"),
                (config.pooling_mode_max_tokens, "max"),
                (
                    config.pooling_mode_mean_sqrt_len_tokens,
                    "mean_sqrt_len_tokens",
                ),
                (config.pooling_mode_weightedmean_tokens, "weightedmean"),
                (config.pooling_mode_lasttoken, "lasttoken"),
            ];
            let on: Vec<&str> = flags.iter().filter(|f| f.0).map(|f| f.1).collect();
            match on.as_slice() {
                [one] => (*one).to_string(),
                [] => "none".to_string(),
                many => many.join("+"),
            }
        }
    };
    match mode.as_str() {
        "mean" | "mean_tokens" => Ok(Pooling::Mean),
        "cls" | "cls_token" => Ok(Pooling::Cls),
        other => Err(EmbedError::fatal(format!(
            "{}: pooling mode {other:?} is not supported; the local provider pools by mean or cls",
            path.display()
        ))),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EmbedError::fatal(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| EmbedError::fatal(format!("cannot parse {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pooling(json: &str) -> Result<Pooling> {
        let path = std::env::temp_dir().join(format!(
            "projsync-pooling-{}-{}.json",
            std::process::id(),
            json.len()
        ));
        std::fs::write(&path, json).unwrap();
        let result = read_pooling(&path);
        std::fs::remove_file(&path).unwrap();
        result
    }

    #[test]
    fn pooling_modes_are_read_from_either_format() {
        assert_eq!(
            pooling(r#"{"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": false}"#)
                .unwrap(),
            Pooling::Mean
        );
        assert_eq!(
            pooling(r#"{"pooling_mode_cls_token": true}"#).unwrap(),
            Pooling::Cls
        );
        assert_eq!(
            pooling(r#"{"pooling_mode": "mean"}"#).unwrap(),
            Pooling::Mean
        );
        let err = pooling(r#"{"pooling_mode_max_tokens": true}"#).unwrap_err();
        assert!(
            err.to_string().contains("\"max\" is not supported"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_folder_says_how_to_fetch_the_model() {
        let err = ModelFolder::read(Path::new("/nonexistent/model")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/nonexistent/model"), "{message}");
        assert!(message.contains("scripts/fetch-model.sh"), "{message}");
    }
}
