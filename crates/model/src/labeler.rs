//! Sequence labeller (BiLSTM-CRF, Lample et al. 2016; BiLSTM-CNN-CRF, Ma & Hovy 2016): per
//! token, a word embedding joined with a character-level representation of the word (a char
//! BiLSTM's two final states, or a char CNN max-pooled over positions), dropout, a
//! bidirectional [`Lstm`], dropout, a linear projection to one score per tag, and on top a
//! linear-chain [`Crf`] (or, as the ablation, an independent softmax per token).
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use model::labeler::{CharBatch, CharConfig, CharEncoder, LabelerConfig, SequenceLabeler};
//! use model::{config::LstmConfig, crf::CrfConfig, init::seeded_var_builder};
//!
//! let chars = CharConfig { vocab_size: 30, dim: 8, encoder: CharEncoder::Lstm, hidden: 8, width: 3 };
//! let mut lstm = LstmConfig::new(16 + chars.output_size(), 16); // word dim + char features
//! lstm.bidirectional = true;
//! let cfg = LabelerConfig {
//!     vocab_size: 50, embedding_dim: 16, chars: Some(chars), lstm, num_tags: 5,
//!     crf: Some(CrfConfig::new(5)), embedding_dropout: 0.0, dropout: 0.0,
//! };
//! let varmap = candle_nn::VarMap::new();
//! let net = SequenceLabeler::new(&cfg, seeded_var_builder(&varmap, 1, DType::F32, &Device::Cpu))?;
//! // Two sentences of 3 and 2 words; characters of the 5 real words, padded to 4.
//! let words = Tensor::new(&[[4u32, 9, 2], [7, 3, 0]], &Device::Cpu)?;
//! let chars = CharBatch { ids: vec![5; 5 * 4], lengths: vec![4, 2, 1, 3, 4], width: 4 };
//! let scores = net.forward(&words, &[3, 2], Some(&chars), false, None)?;
//! assert_eq!(scores.dims(), &[2, 3, 5]); // (batch, time, tags)
//! let loss = net.loss(&scores, &[1, 2, 0, 3, 4, 0], &[3, 2])?; // mean over sentences
//! assert_eq!(loss.dims(), &[] as &[usize]);
//! assert_eq!(net.decode(&scores, &[3, 2])?.iter().map(Vec::len).collect::<Vec<_>>(), [3, 2]);
//! # Ok::<(), model::Error>(())
//! ```

use crate::classifier::{input_dropout, pool, Pooling};
use crate::config::LstmConfig;
use crate::crf::{argmax_tags, Crf, CrfConfig};
use crate::rng::SeededRng;
use crate::{Error, Lstm, LstmInput, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Conv1d, Conv1dConfig, Embedding, Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

/// How the characters of a word become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CharEncoder {
    /// A bidirectional LSTM over the characters; the two final states (Lample et al.).
    #[default]
    Lstm,
    /// A convolution over the characters, max-pooled over positions (Ma & Hovy).
    Cnn,
}

/// The character-level part of [`LabelerConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CharConfig {
    /// Rows of the character table (id 0 is padding, 1 unknown).
    pub vocab_size: usize,
    /// Width of each character embedding.
    pub dim: usize,
    /// BiLSTM or CNN.
    pub encoder: CharEncoder,
    /// LSTM: hidden size per direction; CNN: filters.
    pub hidden: usize,
    /// CNN only: kernel width in characters.
    pub width: usize,
}

impl CharConfig {
    /// Features per word: 2 × hidden for the BiLSTM, the filters for the CNN.
    pub fn output_size(&self) -> usize {
        match self.encoder {
            CharEncoder::Lstm => 2 * self.hidden,
            CharEncoder::Cnn => self.hidden,
        }
    }
}

/// Configuration of [`SequenceLabeler`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelerConfig {
    /// Rows of the word table.
    pub vocab_size: usize,
    /// Width of each word embedding.
    pub embedding_dim: usize,
    /// Character features; None = words only.
    pub chars: Option<CharConfig>,
    /// The sentence-level recurrent layer; `input_size` = embedding_dim + char features.
    pub lstm: LstmConfig,
    /// Tags (scores per token).
    pub num_tags: usize,
    /// The CRF layer; None = independent softmax per token.
    pub crf: Option<CrfConfig>,
    /// Dropout on each token's joined word and character features, in [0, 1).
    pub embedding_dropout: f64,
    /// Dropout on the recurrent layer's outputs before the projection, in [0, 1).
    pub dropout: f64,
}

impl LabelerConfig {
    /// Checks sizes and that the parts fit together; the error names the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, msg: String| Err(Error::Config { key: key.into(), msg });
        self.lstm.validate()?;
        let char_out = self.chars.as_ref().map_or(0, CharConfig::output_size);
        if self.lstm.input_size != self.embedding_dim + char_out {
            return bad(
                "lstm.input_size",
                format!(
                    "must be embedding_dim + char features = {}, got {}",
                    self.embedding_dim + char_out,
                    self.lstm.input_size
                ),
            );
        }
        if self.vocab_size == 0 || self.embedding_dim == 0 || self.num_tags == 0 {
            return bad("vocab_size", "vocabulary, embedding width and tags must be at least 1".into());
        }
        if let Some(c) = &self.chars {
            if c.vocab_size < 2 || c.dim == 0 || c.hidden == 0 || c.width == 0 {
                return bad("chars", "character vocabulary ≥ 2, dim, hidden and width ≥ 1 expected".into());
            }
        }
        if let Some(crf) = &self.crf {
            crf.validate()?;
            if crf.num_tags != self.num_tags {
                return bad("crf.num_tags", format!("must equal num_tags {}, got {}", self.num_tags, crf.num_tags));
            }
        }
        Ok(())
    }
}

/// The characters of a batch's real words, row-major by sentence then position:
/// `ids` (words × width) padded with 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharBatch {
    /// Character ids, (words, width) row-major.
    pub ids: Vec<u32>,
    /// Characters of each word (1..=width).
    pub lengths: Vec<usize>,
    /// Columns: the longest word's length.
    pub width: usize,
}

enum Chars {
    Lstm { table: Embedding, lstm: Lstm },
    Cnn { table: Embedding, conv: Conv1d },
}

/// Word + character features → BiLSTM → per-token tag scores → CRF (or softmax).
pub struct SequenceLabeler {
    embedding: Embedding,
    chars: Option<Chars>,
    lstm: Lstm,
    head: Linear,
    crf: Option<Crf>,
    cfg: LabelerConfig,
    sparse_grad: Option<crate::ops::SparseGradSlot>,
}

impl SequenceLabeler {
    /// Parameters: `embedding.weight`, `chars.embedding.weight` with `chars.lstm.*`
    /// (PyTorch names) or `chars.conv.{weight,bias}`, `lstm.*`, `head.{weight,bias}`,
    /// `crf.{transitions,start,end}`.
    pub fn new(cfg: &LabelerConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let embedding = candle_nn::embedding(cfg.vocab_size, cfg.embedding_dim, vb.pp("embedding"))?;
        let chars = match &cfg.chars {
            None => None,
            Some(c) => {
                let vc = vb.pp("chars");
                let table = candle_nn::embedding(c.vocab_size, c.dim, vc.pp("embedding"))?;
                Some(match c.encoder {
                    CharEncoder::Lstm => {
                        let mut lc = LstmConfig::new(c.dim, c.hidden);
                        lc.bidirectional = true;
                        lc.fused = cfg.lstm.fused;
                        Chars::Lstm { table, lstm: Lstm::new(&lc, vc.pp("lstm"))? }
                    }
                    CharEncoder::Cnn => {
                        let conv_cfg = Conv1dConfig { padding: c.width / 2, ..Default::default() };
                        Chars::Cnn {
                            table,
                            conv: candle_nn::conv1d(c.dim, c.hidden, c.width, conv_cfg, vc.pp("conv"))?,
                        }
                    }
                })
            }
        };
        let lstm = Lstm::new(&cfg.lstm, vb.pp("lstm"))?;
        let head = candle_nn::linear(cfg.lstm.output_size(), cfg.num_tags, vb.pp("head"))?;
        let crf = match &cfg.crf {
            Some(c) => Some(Crf::new(c, vb.pp("crf"))?),
            None => None,
        };
        Ok(Self { embedding, chars, lstm, head, crf, cfg: cfg.clone(), sparse_grad: None })
    }

    /// From now on the word table's gradient is left in the returned slot as the rows a batch
    /// used ([`crate::ops::embed`]); each training forward clears it.
    pub fn sparse_embedding_grad(&mut self) -> crate::ops::SparseGradSlot {
        self.sparse_grad.get_or_insert_with(Default::default).clone()
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &LabelerConfig {
        &self.cfg
    }

    /// Character features of each real word: (words, features).
    fn char_features(&self, chars: &CharBatch, device: &Device) -> Result<Tensor> {
        let n = chars.lengths.len();
        if chars.ids.len() != n * chars.width || chars.lengths.iter().any(|&l| l == 0 || l > chars.width) {
            return Err(Error::Input(format!(
                "characters: {} ids and lengths {:?} do not fit {n} words × width {}",
                chars.ids.len(),
                chars.lengths.iter().take(8).collect::<Vec<_>>(),
                chars.width
            )));
        }
        let ids = Tensor::from_slice(&chars.ids, (n, chars.width), device)?;
        match self.chars.as_ref().expect("checked by the caller") {
            Chars::Lstm { table, lstm } => {
                let x = table.forward(&ids)?; // (words, width, dim)
                let out = lstm.forward(&x, &LstmInput::new().lengths(&chars.lengths))?;
                pool(&out, lstm.config(), Pooling::Last, &chars.lengths)
            }
            Chars::Cnn { table, conv } => {
                let x = table.forward(&ids)?.transpose(1, 2)?.contiguous()?; // (words, dim, width)
                Ok(conv.forward(&x)?.max(D::Minus1)?) // (words, filters)
            }
        }
    }

    /// Tag scores (batch, time, tags). `words`: (batch, time) u32 padded; `lengths`: real
    /// words per sentence (≥ 1); `chars`: the real words' characters, required when the
    /// model has character features. `rng` draws the dropout masks in training mode.
    pub fn forward(
        &self,
        words: &Tensor,
        lengths: &[usize],
        chars: Option<&CharBatch>,
        train: bool,
        mut rng: Option<&mut SeededRng>,
    ) -> Result<Tensor> {
        let (b, t) = words.dims2()?;
        if lengths.len() != b || lengths.iter().any(|&l| l == 0 || l > t) {
            return Err(Error::Input(format!("labeler: lengths {lengths:?} do not fit a ({b}, {t}) batch")));
        }
        let device = words.device();
        if train {
            if let Some(s) = &self.sparse_grad {
                s.clear();
            }
        }
        let mut x = crate::ops::embed(self.embedding.embeddings(), words, None, self.sparse_grad.as_ref())?;
        if self.chars.is_some() {
            let chars = chars.ok_or_else(|| Error::Input("labeler: the model reads characters; none given".into()))?;
            let n: usize = lengths.iter().sum();
            if chars.lengths.len() != n {
                return Err(Error::Input(format!("characters of {} words for {n} real words", chars.lengths.len())));
            }
            let feats = self.char_features(chars, device)?; // (words, features)
                                                            // Scatter the real words' features to (batch, time); padding reads a zero row.
            let zero = Tensor::zeros((1, feats.dim(1)?), feats.dtype(), device)?;
            let table = Tensor::cat(&[&feats, &zero], 0)?;
            let mut index = vec![n as u32; b * t];
            let mut next = 0u32;
            for (row, &len) in lengths.iter().enumerate() {
                for slot in &mut index[row * t..row * t + len] {
                    *slot = next;
                    next += 1;
                }
            }
            let index = Tensor::from_vec(index, b * t, device)?;
            let per_token = table.index_select(&index, 0)?.reshape((b, t, feats.dim(1)?))?;
            x = Tensor::cat(&[&x, &per_token], 2)?;
        }
        let c = &self.cfg;
        x = input_dropout(x, c.embedding_dropout, false, rng.as_deref_mut(), train, "embedding dropout")?;
        let mut input = LstmInput::new().lengths(lengths);
        if train {
            input = match rng.as_deref_mut() {
                Some(r) => input.train(r),
                None => LstmInput { train: true, ..input },
            };
        }
        let out = self.lstm.forward(&x, &input)?.output;
        drop(input);
        let out = input_dropout(out, c.dropout, false, rng, train, "dropout")?;
        Ok(self.head.forward(&out)?)
    }

    /// Training loss, averaged over sentences: the CRF's negative log-likelihood, or the
    /// summed token cross-entropy without a CRF. `tags`: (batch × time) row-major, padding
    /// ignored.
    pub fn loss(&self, scores: &Tensor, tags: &[u32], lengths: &[usize]) -> Result<Tensor> {
        let (b, t, k) = scores.dims3()?;
        if tags.len() != b * t {
            return Err(Error::Input(format!("labeler: {} tags for a ({b}, {t}) batch", tags.len())));
        }
        let per_sentence = match &self.crf {
            Some(crf) => crf.neg_log_likelihood(scores, tags, lengths)?,
            None => {
                if let Some(&bad) = tags.iter().find(|&&y| y as usize >= k) {
                    return Err(Error::Input(format!("labeler: tag {bad} outside 0..{k}")));
                }
                let logp = candle_nn::ops::log_softmax(scores, D::Minus1)?;
                let ids = Tensor::from_slice(tags, (b, t, 1), scores.device())?;
                let mask: Vec<f32> = (0..b * t).map(|i| if i % t < lengths[i / t] { 1.0 } else { 0.0 }).collect();
                let mask = Tensor::from_vec(mask, (b, t), scores.device())?.to_dtype(scores.dtype())?;
                logp.contiguous()?.gather(&ids, 2)?.squeeze(2)?.mul(&mask)?.sum(1)?.neg()?
            }
        };
        Ok((per_sentence.sum_all()? / b as f64)?)
    }

    /// The tags of each sentence's real words: Viterbi through the CRF, or the per-token
    /// argmax without one.
    pub fn decode(&self, scores: &Tensor, lengths: &[usize]) -> Result<Vec<Vec<usize>>> {
        match &self.crf {
            Some(crf) => crf.viterbi(scores, lengths),
            None => argmax_tags(&scores.to_dtype(DType::F32)?, lengths),
        }
    }
}

#[cfg(test)]
#[path = "labeler_tests.rs"]
mod tests;
