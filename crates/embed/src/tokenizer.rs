//! A Hugging Face `tokenizer.json`, to count tokens as a model does and to
//! turn text into the ids a local model takes.

use std::borrow::Cow;
use std::path::Path;

use tokenizers::{Encoding, PostProcessor, Tokenizer, TruncationDirection};

use crate::{EmbedError, Result, TokenCounter};

/// A tokenizer loaded from a `tokenizer.json` file.
///
/// The truncation and padding that the file may carry (sentence-transformers
/// folders often ship `"max_length": 128, "Fixed"` padding) are switched off:
/// counting must see every token, and the caller says how long a model
/// input may be.
#[derive(Clone)]
pub struct HfTokenizer {
    inner: Tokenizer,
    pad_id: u32,
    added_tokens: usize,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer")
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .field("pad_id", &self.pad_id)
            .field("added_tokens", &self.added_tokens)
            .finish()
    }
}

/// Model inputs for a batch, padded to its longest sequence, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// `rows × seq_len` token ids; padding positions hold the pad id.
    pub input_ids: Vec<i64>,
    /// `rows × seq_len`: 1 for a real token, 0 for padding.
    pub attention_mask: Vec<i64>,
    pub rows: usize,
    pub seq_len: usize,
}

impl HfTokenizer {
    /// Loads `tokenizer.json` from `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(EmbedError::fatal(format!(
                "tokenizer not found at {}; point the model path at a folder that holds tokenizer.json",
                path.display()
            )));
        }
        let mut inner = Tokenizer::from_file(path).map_err(|e| {
            EmbedError::fatal(format!(
                "cannot load the tokenizer at {}: {e}; the file must be a Hugging Face tokenizer.json",
                path.display()
            ))
        })?;
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| inner.token_to_id("[PAD]"))
            .unwrap_or(0);
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| {
            EmbedError::fatal(format!(
                "cannot switch off truncation in {}: {e}",
                path.display()
            ))
        })?;
        let added_tokens = inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        Ok(Self {
            inner,
            pad_id,
            added_tokens,
        })
    }

    /// Special tokens the model adds to one sequence (2 for BERT: `[CLS]`, `[SEP]`).
    pub fn added_tokens(&self) -> usize {
        self.added_tokens
    }

    /// The id used for padding positions.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Token ids of `text` without special tokens.
    pub fn ids(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.encode_plain(text)?.get_ids().to_vec())
    }

    /// Token ids of each text as a model takes them: special tokens added and
    /// at most `max_len` tokens in all, the content cut on the right the way
    /// Hugging Face tokenizers do with `truncation=True, max_length=max_len`.
    pub fn encode_for_model(&self, texts: &[&str], max_len: usize) -> Result<Vec<Vec<u32>>> {
        let budget = max_len.saturating_sub(self.added_tokens);
        let encodings = self
            .inner
            .encode_batch_fast(texts.to_vec(), false)
            .map_err(|e| EmbedError::fatal(format!("tokenizer failed: {e}")))?;
        encodings
            .into_iter()
            .map(|mut encoding| {
                encoding.truncate(budget, 0, TruncationDirection::Right);
                let encoding = self
                    .inner
                    .post_process(encoding, None, true)
                    .map_err(|e| EmbedError::fatal(format!("tokenizer failed: {e}")))?;
                Ok(encoding.get_ids().to_vec())
            })
            .collect()
    }

    /// Pads `sequences` to the longest of them with [`HfTokenizer::pad_id`].
    pub fn pad<S: AsRef<[u32]>>(&self, sequences: &[S]) -> TokenBatch {
        let rows = sequences.len();
        let seq_len = sequences
            .iter()
            .map(|s| s.as_ref().len())
            .max()
            .unwrap_or(0);
        let mut input_ids = Vec::with_capacity(rows * seq_len);
        let mut attention_mask = Vec::with_capacity(rows * seq_len);
        for sequence in sequences {
            let sequence = sequence.as_ref();
            input_ids.extend(sequence.iter().map(|&id| i64::from(id)));
            input_ids.extend(std::iter::repeat_n(
                i64::from(self.pad_id),
                seq_len - sequence.len(),
            ));
            attention_mask.extend(std::iter::repeat_n(1, sequence.len()));
            attention_mask.extend(std::iter::repeat_n(0, seq_len - sequence.len()));
        }
        TokenBatch {
            input_ids,
            attention_mask,
            rows,
            seq_len,
        }
    }

    fn encode_plain(&self, text: &str) -> Result<Encoding> {
        self.inner
            .encode_fast(text, false)
            .map_err(|e| EmbedError::fatal(format!("tokenizer failed: {e}")))
    }
}

impl TokenCounter for HfTokenizer {
    fn count_tokens(&self, text: &str) -> usize {
        match self.encode_plain(text) {
            Ok(encoding) => encoding.len(),
            Err(e) => {
                // WordPiece never yields more tokens than characters, so this
                // keeps chunks under the limit even when encoding fails.
                tracing::warn!(error = %e, "token count failed; counting characters instead");
                text.chars().count()
            }
        }
    }

    fn truncate<'a>(&self, text: &'a str, max_tokens: usize) -> (Cow<'a, str>, bool) {
        let encoding = match self.inner.encode(text, false) {
            Ok(encoding) => encoding,
            Err(e) => {
                tracing::warn!(error = %e, "tokenizer failed; cutting by characters instead");
                return match text.char_indices().nth(max_tokens) {
                    Some((end, _)) => (Cow::Borrowed(&text[..end]), true),
                    None => (Cow::Borrowed(text), false),
                };
            }
        };
        if encoding.len() <= max_tokens {
            return (Cow::Borrowed(text), false);
        }
        let end = match max_tokens {
            0 => 0,
            n => encoding.get_offsets()[n - 1].1,
        };
        (Cow::Borrowed(&text[..floor_char_boundary(text, end)]), true)
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_char_boundary_stays_inside_a_char() {
        let text = "aé";
        assert_eq!(floor_char_boundary(text, 2), 1);
        assert_eq!(floor_char_boundary(text, 3), 3);
        assert_eq!(floor_char_boundary(text, 9), 3);
    }

    /// A tiny BERT-style tokenizer.json: the same components as
    /// all-MiniLM-L6-v2's, with a vocabulary of a few words.
    fn tiny() -> HfTokenizer {
        let json = r###"{
          "version": "1.0",
          "truncation": {"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0},
          "padding": {"strategy": {"Fixed": 8}, "direction": "Right", "pad_to_multiple_of": null,
                      "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
          "added_tokens": [],
          "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                         "strip_accents": null, "lowercase": true},
          "pre_tokenizer": {"type": "BertPreTokenizer"},
          "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                               "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
          "decoder": null,
          "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                    "max_input_chars_per_word": 100,
                    "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "hello": 4, "wor": 5,
                              "##ld": 6, "!": 7, "é": 8}}
        }"###;
        // One file per call: tests run in parallel threads of one process.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "projsync-tiny-tokenizer-{}-{}.json",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::write(&path, json).unwrap();
        let tokenizer = HfTokenizer::from_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        tokenizer
    }

    #[test]
    fn counts_without_special_tokens_and_ignores_the_file_truncation() {
        let t = tiny();
        assert_eq!(t.added_tokens(), 2);
        assert_eq!(t.ids("Hello world!").unwrap(), vec![4, 5, 6, 7]);
        assert_eq!(t.count_tokens("Hello world! hello world! hello"), 9);
        assert_eq!(t.count_tokens("   "), 0);
    }

    #[test]
    fn truncate_cuts_on_a_token_boundary_and_borrows_when_it_fits() {
        let t = tiny();
        let text = "Hello world! é";
        assert_eq!(t.truncate(text, 5), (Cow::Borrowed(text), false));
        assert!(matches!(t.truncate(text, 5).0, Cow::Borrowed(_)));
        assert_eq!(t.truncate(text, 4), (Cow::Borrowed("Hello world!"), true));
        assert_eq!(t.truncate(text, 2), (Cow::Borrowed("Hello wor"), true));
        assert_eq!(t.truncate(text, 0), (Cow::Borrowed(""), true));
    }

    #[test]
    fn model_inputs_hold_specials_within_the_limit_and_pad_to_the_longest() {
        let t = tiny();
        let ids = t
            .encode_for_model(&["hello world!", "hello", ""], 4)
            .unwrap();
        assert_eq!(ids, vec![vec![2, 4, 5, 3], vec![2, 4, 3], vec![2, 3]]);
        let batch = t.pad(&ids);
        assert_eq!((batch.rows, batch.seq_len), (3, 4));
        assert_eq!(batch.input_ids, vec![2, 4, 5, 3, 2, 4, 3, 0, 2, 3, 0, 0]);
        assert_eq!(
            batch.attention_mask,
            vec![1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0]
        );
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let err = HfTokenizer::from_file("/nonexistent/tokenizer.json").unwrap_err();
        assert!(!err.is_retryable());
        assert!(
            err.to_string().contains("/nonexistent/tokenizer.json"),
            "{err}"
        );
    }
}
