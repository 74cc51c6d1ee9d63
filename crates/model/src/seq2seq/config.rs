//! The encoder–decoder's configuration and attention score functions.

use crate::config::{CellKind, LstmConfig};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The attention score function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AttentionKind {
    /// Additive: vᵀ tanh(W_q h_t + b_q + W_k h̄_s) (Bahdanau et al. 2015).
    Bahdanau,
    /// h_tᵀ h̄_s (Luong et al. 2015); needs decoder hidden = memory width, which holds by
    /// construction here.
    Dot,
    /// h_tᵀ W_a h̄_s (Luong et al. 2015).
    #[default]
    General,
}

/// The encoder–decoder's shape and regularisation (the `[model]` section of a translation
/// config, filled in with the tokenizers' sizes and special ids).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Seq2SeqConfig {
    /// Rows of the source embedding table.
    pub src_vocab_size: usize,
    /// Rows of the target embedding table and of the generator's output.
    pub tgt_vocab_size: usize,
    /// Width of both embedding tables.
    pub embedding_dim: usize,
    /// The encoder (`input_size` must equal `embedding_dim`). The decoder has the same number
    /// of layers with `hidden_size × directions` units, so each decoder layer starts from the
    /// encoder layer's final states with the directions concatenated (no bridge weights).
    pub encoder: LstmConfig,
    /// The attention score function.
    pub attention: AttentionKind,
    /// Feed h̃_{t−1} into the decoder's first layer with the embedding (Luong et al. 2015).
    pub input_feeding: bool,
    /// The generator reuses the target embedding table (Press & Wolf 2017); h̃ then has
    /// `embedding_dim` units instead of the decoder's hidden size.
    pub tie_embeddings: bool,
    /// Dropout on source and target embeddings.
    pub embedding_dropout: f64,
    /// Dropout between stacked decoder layers (the encoder uses `encoder.dropout`).
    pub dropout: f64,
    /// Dropout on h̃ (what the generator and the next step's input see).
    pub output_dropout: f64,
    /// Pointer-generator copying (See et al. 2017): a switch p_gen mixes the generator's
    /// distribution with the attention over the source, so source words outside the
    /// vocabulary can be output. Adds `pointer.weight` and `pointer.bias`. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub copy: bool,
    /// Coverage (See et al. 2017): the sum of past attention distributions is fed to the
    /// attention score, so the decoder can see what it has already attended to: w_c·c_s is
    /// added to every key (inside the tanh for "bahdanau"; for "dot"/"general" that adds
    /// c_s·w_cᵀh_t to the score). Adds `attention.coverage.weight`. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub coverage: bool,
    /// Target padding id.
    pub pad_id: u32,
    /// Target id every decoder input starts with.
    pub bos_id: u32,
    /// Target id that ends a decoded sentence.
    pub eos_id: u32,
}

impl Seq2SeqConfig {
    /// Units per decoder layer: the encoder's hidden size times its directions.
    pub fn decoder_hidden(&self) -> usize {
        self.encoder.hidden_size * self.encoder.num_directions()
    }
    /// Width of the encoder's outputs.
    pub fn memory_size(&self) -> usize {
        self.encoder.output_size()
    }
    /// Width of h̃.
    pub fn attentional_size(&self) -> usize {
        if self.tie_embeddings {
            self.embedding_dim
        } else {
            self.decoder_hidden()
        }
    }

    /// Refuses inconsistent settings, naming the key: sizes, LSTM cells, dropout ranges and
    /// special ids inside the target vocabulary (then the encoder's own checks).
    pub fn validate(&self) -> Result<()> {
        let cfg = |key: &str, msg: String| Err(Error::Config { key: key.into(), msg });
        if self.src_vocab_size == 0 || self.tgt_vocab_size == 0 {
            return cfg("vocab_size", "vocabularies must not be empty".into());
        }
        if self.encoder.input_size != self.embedding_dim {
            return cfg(
                "encoder.input_size",
                format!("expected embedding_dim = {}, got {}", self.embedding_dim, self.encoder.input_size),
            );
        }
        if self.encoder.cell != CellKind::Lstm {
            return cfg(
                "encoder.cell",
                "the encoder–decoder needs LSTM cells (the decoder starts from h and c)".into(),
            );
        }
        for (key, p) in [
            ("embedding_dropout", self.embedding_dropout),
            ("dropout", self.dropout),
            ("output_dropout", self.output_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return cfg(key, format!("expected a probability in [0, 1), got {p}"));
            }
        }
        let v = self.tgt_vocab_size as u32;
        for (key, id) in [("pad_id", self.pad_id), ("bos_id", self.bos_id), ("eos_id", self.eos_id)] {
            if id >= v {
                return cfg(key, format!("id {id} is outside the target vocabulary of {v}"));
            }
        }
        self.encoder.validate()
    }
}
