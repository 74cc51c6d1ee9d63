//! Attention encoder–decoder for translation.
//!
//! ```text
//! source ids ─► embedding ─► bidirectional Lstm (our layer, lengths) ─► memory (B, S, M)
//!                                                 └─ final states ─► decoder initial states
//! target ids ─► embedding ─┐
//!                          ├─► decoder LSTM (stacked cells) ─► h_t ─► attention over memory
//!   h̃_{t−1} (input feeding) ┘                                            │
//!                       h̃_t = tanh(W_out [c_t ; h_t]) ◄── context c_t ◄──┘
//!                       logits_t = W_gen h̃_t + b   (W_gen = target embedding when tied)
//! ```
//! This is the "global attention" decoder of Luong et al. (2015) with input feeding; the
//! score function is selectable: `dot` (h_tᵀ h̄_s), `general` (h_tᵀ W_a h̄_s) or `bahdanau`
//! (additive, vᵀ tanh(W_q h_t + W_k h̄_s), Bahdanau et al. 2015), as OpenNMT-py arranges them.
//! Padded source positions get a score of −1e9 before the softmax, so their weight is
//! exactly 0 in f32 and f64 (exp underflows), and the padded memory rows are zero anyway.
//!
//! # Speed
//!
//! Input feeding makes the decoder sequential, so it runs step by step on candle ops with
//! autograd. What is computed once per batch instead of once per step: the embedding part
//! of the first layer's input projection (one matmul for all steps, cut with
//! [`crate::lstm::split_steps`]), the concatenated recurrent weights `[W_ih_feed W_hh]ᵀ`
//! (one matmul per layer per step), the attention keys (`W_a h̄_s`, `W_k h̄_s`) and the
//! padding bias. The vocabulary projection is not in the loop: [`Seq2Seq::forward`] returns
//! the stacked h̃ (B, T, D) and the caller projects all steps at once and takes the loss with
//! [`label_smoothed_cross_entropy`], one fused pass over the logits forward and one backward.
//!
//! # Parameter names
//!
//! `src_embedding.weight`, `tgt_embedding.weight`, `encoder.*` and `decoder.*` (PyTorch
//! `nn.LSTM` names, gate order i, f, g, o; decoder layer 0's `weight_ih_l0` columns are
//! [embedding ; h̃_{t−1}]), `attention.linear_in.weight` (general), `attention.linear_query.*`,
//! `attention.linear_context.weight`, `attention.v.weight` (bahdanau),
//! `attention.linear_out.weight`, `generator.weight` (absent when tied), `generator.bias`.

use crate::config::{CellKind, LstmConfig, Variant};
use crate::lstm::{per_use, split_steps};
use crate::ops::{contiguous, cpu_slice};
use crate::rng::SeededRng;
use crate::{Error, Lstm, LstmInput, Result};
use candle_core::{CpuStorage, DType, Layout, Shape, Tensor, D};
use candle_nn::{Init, Module, VarBuilder};
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Seq2SeqConfig {
    pub src_vocab_size: usize,
    pub tgt_vocab_size: usize,
    /// Width of both embedding tables.
    pub embedding_dim: usize,
    /// The encoder (`input_size` must equal `embedding_dim`). The decoder has the same number
    /// of layers with `hidden_size × directions` units, so each decoder layer starts from the
    /// encoder layer's final states with the directions concatenated (no bridge weights).
    pub encoder: LstmConfig,
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
    pub pad_id: u32,
    pub bos_id: u32,
    pub eos_id: u32,
}

impl Seq2SeqConfig {
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

/// Decoder state: (h, c) per layer, each (N, H), and h̃ of the previous step (N, D).
#[derive(Debug, Clone)]
pub struct DecoderState {
    pub h: Vec<Tensor>,
    pub c: Vec<Tensor>,
    pub feed: Tensor,
}

impl DecoderState {
    fn select(&self, idx: &Tensor) -> Result<Self> {
        let sel = |t: &Tensor| -> Result<Tensor> { Ok(t.index_select(idx, 0)?.detach()) };
        Ok(Self {
            h: self.h.iter().map(sel).collect::<Result<_>>()?,
            c: self.c.iter().map(sel).collect::<Result<_>>()?,
            feed: sel(&self.feed)?,
        })
    }
    fn detach(&self) -> Self {
        Self {
            h: self.h.iter().map(Tensor::detach).collect(),
            c: self.c.iter().map(Tensor::detach).collect(),
            feed: self.feed.detach(),
        }
    }
}

/// The encoder's output in the form every decoder step reads.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// (N, S, M) encoder outputs, zero at padding.
    pub memory: Tensor,
    /// (N, S, H) what the query is scored against: memory (dot), W_a·memory (general),
    /// W_k·memory (bahdanau).
    pub keys: Tensor,
    /// (N, S): 0 at real tokens, −1e9 at padding.
    pub mask_bias: Tensor,
    pub src_lengths: Vec<usize>,
    pub initial: DecoderState,
}

impl Encoded {
    /// Rows `idx` (u32 indices), detached: for decoding, where no gradient is wanted.
    pub fn select(&self, idx: &[u32]) -> Result<Self> {
        let t = Tensor::from_slice(idx, idx.len(), self.memory.device())?;
        let sel = |x: &Tensor| -> Result<Tensor> { Ok(x.index_select(&t, 0)?.detach()) };
        Ok(Self {
            memory: sel(&self.memory)?,
            keys: sel(&self.keys)?,
            mask_bias: sel(&self.mask_bias)?,
            src_lengths: idx.iter().map(|&i| self.src_lengths[i as usize]).collect(),
            initial: self.initial.select(&t)?,
        })
    }
}

/// Per-batch views of the decoder weights, so each step is one matmul per layer.
struct StepWeights {
    /// Layer 0: (E, 4H) embedding columns of W_ih, transposed.
    w_emb_t: Tensor,
    /// Per layer: ([feed|input ; h] width, 4H), the rest of W_ih and W_hh side by side, transposed.
    w_rec_t: Vec<Tensor>,
    /// Per layer: b_ih + b_hh (4H).
    bias: Vec<Tensor>,
}

pub struct Seq2SeqOutput {
    /// (B, T, D): h̃ for every target step; project with [`Seq2Seq::logits`].
    pub hidden: Tensor,
    /// (B, T, S) attention weights, when asked for.
    pub attention: Option<Tensor>,
}

/// Decoding settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    /// 1 = greedy-equivalent beam search.
    pub beam: usize,
    /// GNMT's α in lp(Y) = ((5 + |Y|) / 6)^α; 0 = raw log-probability.
    pub length_penalty: f64,
    /// Hypotheses have at most ⌈ratio · source length⌉ + `max_len_extra` tokens (EOS included).
    pub max_len_ratio: f64,
    pub max_len_extra: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self { beam: 5, length_penalty: 0.6, max_len_ratio: 1.5, max_len_extra: 5 }
    }
}

impl DecodeOptions {
    pub fn max_len(&self, src_len: usize) -> usize {
        ((self.max_len_ratio * src_len as f64).ceil() as usize + self.max_len_extra).max(1)
    }
}

/// GNMT length penalty (Wu et al. 2016, eq. 14): lp(Y) = (5 + |Y|)^α / (5 + 1)^α.
pub fn length_penalty(len: usize, alpha: f64) -> f64 {
    ((5.0 + len as f64) / 6.0).powf(alpha)
}

/// A decoded sentence: target ids without BOS/EOS, its log-probability and the score beam
/// search ranked it by (log-probability / length penalty).
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    pub tokens: Vec<u32>,
    pub log_prob: f64,
    pub score: f64,
}

pub struct Seq2Seq {
    cfg: Seq2SeqConfig,
    src_embedding: Tensor,
    tgt_embedding: Tensor,
    encoder: Lstm,
    decoder: Lstm,
    linear_in: Option<Tensor>,
    linear_query: Option<(Tensor, Tensor)>,
    linear_context: Option<Tensor>,
    v: Option<Tensor>,
    linear_out: Tensor,
    generator_w: Tensor,
    generator_b: Tensor,
}

impl Seq2Seq {
    pub fn new(cfg: &Seq2SeqConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let e = cfg.embedding_dim;
        let h = cfg.decoder_hidden();
        let m = cfg.memory_size();
        let d = cfg.attentional_size();
        // OpenNMT-py's default uniform(±0.1) for the tables: candle-nn's N(0, 1) would make
        // tied output logits far too large at the start.
        let u = Init::Uniform { lo: -0.1, up: 0.1 };
        let src_embedding = vb.get_with_hints((cfg.src_vocab_size, e), "src_embedding.weight", u)?;
        let tgt_embedding = vb.get_with_hints((cfg.tgt_vocab_size, e), "tgt_embedding.weight", u)?;
        let encoder = Lstm::new(&cfg.encoder, vb.pp("encoder"))?;
        let dec_cfg = LstmConfig {
            input_size: e + if cfg.input_feeding { d } else { 0 },
            hidden_size: h,
            num_layers: cfg.encoder.num_layers,
            bidirectional: false,
            variant: Variant::Vanilla,
            cell: CellKind::Lstm,
            dropout: cfg.dropout,
            variational_dropout: false,
            orthogonal_init: cfg.encoder.orthogonal_init,
            forget_bias: cfg.encoder.forget_bias,
            fused: false,
        };
        let decoder = Lstm::new(&dec_cfg, vb.pp("decoder"))?;
        let a = vb.pp("attention");
        let kaiming = candle_nn::init::DEFAULT_KAIMING_NORMAL;
        let (mut linear_in, mut linear_query, mut linear_context, mut v) = (None, None, None, None);
        match cfg.attention {
            AttentionKind::Dot => {}
            AttentionKind::General => linear_in = Some(a.get_with_hints((h, m), "linear_in.weight", kaiming)?),
            AttentionKind::Bahdanau => {
                let bound = 1.0 / (h as f64).sqrt();
                linear_query = Some((
                    a.get_with_hints((h, h), "linear_query.weight", kaiming)?,
                    a.get_with_hints(h, "linear_query.bias", Init::Uniform { lo: -bound, up: bound })?,
                ));
                linear_context = Some(a.get_with_hints((h, m), "linear_context.weight", kaiming)?);
                v = Some(a.get_with_hints((1, h), "v.weight", kaiming)?);
            }
        }
        let linear_out = a.get_with_hints((d, m + h), "linear_out.weight", kaiming)?;
        let generator_w = if cfg.tie_embeddings {
            tgt_embedding.clone()
        } else {
            vb.get_with_hints((cfg.tgt_vocab_size, d), "generator.weight", u)?
        };
        let bound = 1.0 / (d as f64).sqrt();
        let generator_b =
            vb.get_with_hints(cfg.tgt_vocab_size, "generator.bias", Init::Uniform { lo: -bound, up: bound })?;
        Ok(Self {
            cfg: cfg.clone(),
            src_embedding,
            tgt_embedding,
            encoder,
            decoder,
            linear_in,
            linear_query,
            linear_context,
            v,
            linear_out,
            generator_w,
            generator_b,
        })
    }

    pub fn config(&self) -> &Seq2SeqConfig {
        &self.cfg
    }

    /// Runs the encoder over `src` (B, S) u32 and prepares everything the decoder steps read.
    /// `lengths` are ≥ 1 and ≤ S.
    pub fn encode(
        &self,
        src: &Tensor,
        lengths: &[usize],
        train: bool,
        mut rng: Option<&mut SeededRng>,
    ) -> Result<Encoded> {
        let (b, s) = src.dims2()?;
        if lengths.len() != b || lengths.iter().any(|&l| l == 0 || l > s) {
            return Err(Error::Input(format!(
                "source lengths {lengths:?} do not fit a batch of {b} sequences of {s} steps (each must be in 1..={s})"
            )));
        }
        let mut x = embed(&self.src_embedding, src)?; // (B, S, E)
        x = self.dropout(x, self.cfg.embedding_dropout, train, rng.as_deref_mut(), "source embedding dropout")?;
        let mut input = LstmInput::new().lengths(lengths);
        if train {
            input = match rng {
                Some(r) => input.train(r),
                None => LstmInput { train: true, ..input },
            };
        }
        let out = self.encoder.forward(&x, &input)?;
        drop(input);
        let memory = out.output; // (B, S, M)
        let h = self.cfg.decoder_hidden();
        let keys = match self.cfg.attention {
            AttentionKind::Dot => memory.clone(),
            AttentionKind::General => project(&memory, self.linear_in.as_ref().expect("general"))?,
            AttentionKind::Bahdanau => project(&memory, self.linear_context.as_ref().expect("bahdanau"))?,
        }; // (B, S, H)
        let bias: Vec<f32> =
            lengths.iter().flat_map(|&l| (0..s).map(move |j| if j < l { 0.0 } else { -1e9 })).collect();
        let mask_bias = Tensor::from_vec(bias, (b, s), src.device())?.to_dtype(memory.dtype())?;
        let dirs = self.cfg.encoder.num_directions();
        let (mut hs, mut cs) = (Vec::new(), Vec::new());
        for layer in 0..self.cfg.encoder.num_layers {
            let st = &out.final_states[layer * dirs..(layer + 1) * dirs];
            let hh: Vec<Tensor> = st.iter().map(|s| s.h.clone()).collect();
            let cc: Vec<Tensor> = st
                .iter()
                .map(|s| s.c.clone().ok_or_else(|| Error::Input("encoder state without a cell".into())))
                .collect::<Result<_>>()?;
            hs.push(Tensor::cat(&hh, 1)?);
            cs.push(Tensor::cat(&cc, 1)?);
        }
        debug_assert_eq!(hs[0].dim(1)?, h);
        let feed = Tensor::zeros((b, self.cfg.attentional_size()), memory.dtype(), memory.device())?;
        Ok(Encoded {
            memory,
            keys,
            mask_bias,
            src_lengths: lengths.to_vec(),
            initial: DecoderState { h: hs, c: cs, feed },
        })
    }

    fn step_weights(&self) -> Result<StepWeights> {
        let e = self.cfg.embedding_dim;
        let layers = self.cfg.encoder.num_layers;
        let (mut w_rec_t, mut bias) = (Vec::new(), Vec::new());
        let mut w_emb_t = None;
        for l in 0..layers {
            let w = self.decoder.direction_weights(l, 0);
            let in_size = w.w_ih.dim(1)?;
            let rec = if l == 0 {
                w_emb_t = Some(w.w_ih.narrow(1, 0, e)?.t()?);
                if in_size > e {
                    Tensor::cat(&[&w.w_ih.narrow(1, e, in_size - e)?, &w.w_hh], 1)?
                } else {
                    w.w_hh.clone()
                }
            } else {
                Tensor::cat(&[&w.w_ih, &w.w_hh], 1)?
            };
            w_rec_t.push(rec.t()?.contiguous()?);
            bias.push((&w.b_ih + &w.b_hh)?);
        }
        Ok(StepWeights { w_emb_t: w_emb_t.expect("≥ 1 layer").contiguous()?, w_rec_t, bias })
    }

    /// One decoder step. `x0` (N, 4H) is layer 0's input projection of the embedding, bias
    /// included; `masks` are the dropout masks of this step (between layers, on h̃).
    fn step(
        &self,
        w: &StepWeights,
        enc: &Encoded,
        x0: &Tensor,
        state: &DecoderState,
        layer_masks: &[Tensor],
        out_mask: Option<&Tensor>,
    ) -> Result<(DecoderState, Tensor)> {
        let layers = state.h.len();
        let (mut hs, mut cs) = (Vec::with_capacity(layers), Vec::with_capacity(layers));
        let mut below: Option<Tensor> = None;
        for l in 0..layers {
            let gates = if l == 0 {
                let rec_in = if self.cfg.input_feeding {
                    Tensor::cat(&[&state.feed, &state.h[0]], 1)?
                } else {
                    state.h[0].clone()
                };
                (x0 + rec_in.matmul(&per_use(&w.w_rec_t[0])?)?)?
            } else {
                let mut x = below.take().expect("layer below");
                if let Some(m) = layer_masks.get(l - 1) {
                    x = (x * m)?;
                }
                Tensor::cat(&[&x, &state.h[l]], 1)?
                    .matmul(&per_use(&w.w_rec_t[l])?)?
                    .broadcast_add(&per_use(&w.bias[l])?)?
            };
            let (h, c) = lstm_cell(&gates, &state.c[l])?;
            below = Some(h.clone());
            hs.push(h);
            cs.push(c);
        }
        let query = hs.last().expect("≥ 1 layer");
        let (ctx, attn) = self.attend(enc, query)?;
        let mut feed = Tensor::cat(&[&ctx, query], 1)?.matmul(&per_use(&self.linear_out)?.t()?)?.tanh()?; // (N, D)
        if let Some(m) = out_mask {
            feed = (feed * m)?;
        }
        Ok((DecoderState { h: hs, c: cs, feed }, attn))
    }

    /// Context (N, M) and weights (N, S) for query (N, H).
    fn attend(&self, enc: &Encoded, query: &Tensor) -> Result<(Tensor, Tensor)> {
        let (keys, memory) = (per_use(&enc.keys)?, per_use(&enc.memory)?);
        let (n, s, h) = keys.dims3()?;
        let scores = match self.cfg.attention {
            AttentionKind::Dot | AttentionKind::General => keys.matmul(&query.unsqueeze(2)?)?.squeeze(2)?,
            AttentionKind::Bahdanau => {
                let (wq, bq) = self.linear_query.as_ref().expect("bahdanau");
                let q = query.matmul(&per_use(wq)?.t()?)?.broadcast_add(&per_use(bq)?)?; // (N, H)
                let e = keys.broadcast_add(&q.unsqueeze(1)?)?.tanh()?; // (N, S, H)
                let v = self.v.as_ref().expect("bahdanau");
                e.reshape((n * s, h))?.matmul(&per_use(v)?.t()?)?.reshape((n, s))?
            }
        };
        let weights = candle_nn::ops::softmax(&(scores + &enc.mask_bias)?, D::Minus1)?; // (N, S)
        let ctx = weights.unsqueeze(1)?.matmul(&memory)?.squeeze(1)?; // (N, M)
        Ok((ctx, weights))
    }

    /// Teacher-forced decoding of `dec_input` (B, T) (BOS + target): h̃ for every step.
    pub fn decode(
        &self,
        enc: &Encoded,
        dec_input: &Tensor,
        train: bool,
        mut rng: Option<&mut SeededRng>,
        return_attention: bool,
    ) -> Result<Seq2SeqOutput> {
        let (b, t) = dec_input.dims2()?;
        let w = self.step_weights()?;
        let mut y = embed(&self.tgt_embedding, dec_input)?; // (B, T, E)
        y = self.dropout(y, self.cfg.embedding_dropout, train, rng.as_deref_mut(), "target embedding dropout")?;
        let e = self.cfg.embedding_dim;
        // All steps' embedding projections in one matmul, time-major for split_steps.
        let x0 = y.reshape((b * t, e))?.matmul(&w.w_emb_t)?.broadcast_add(&w.bias[0])?;
        let x0 = x0.reshape((b, t, ()))?.transpose(0, 1)?.contiguous()?; // (T, B, 4H)
        let x0 = split_steps(&x0)?;
        let layers = self.cfg.encoder.num_layers;
        let hdim = self.cfg.decoder_hidden();
        let ddim = self.cfg.attentional_size();
        let (dtype, dev) = (enc.memory.dtype(), enc.memory.device().clone());
        // Dropout masks for all steps up front (constants: indexing them costs no backward).
        let layer_masks = match (train && self.cfg.dropout > 0.0 && layers > 1, rng.as_deref_mut()) {
            (false, _) => None,
            (true, Some(r)) => Some(r.dropout_mask((t, layers - 1, b, hdim), self.cfg.dropout, dtype, &dev)?),
            (true, None) => return Err(need_rng("decoder dropout")),
        };
        let out_masks = match (train && self.cfg.output_dropout > 0.0, rng) {
            (false, _) => None,
            (true, Some(r)) => Some(r.dropout_mask((t, b, ddim), self.cfg.output_dropout, dtype, &dev)?),
            (true, None) => return Err(need_rng("output dropout")),
        };
        let mut state = enc.initial.clone();
        let mut feeds = Vec::with_capacity(t);
        let mut attns = Vec::new();
        for (step, x) in x0.iter().enumerate() {
            let lm: Vec<Tensor> = match &layer_masks {
                Some(m) => (0..layers - 1).map(|l| m.get(step)?.get(l)).collect::<candle_core::Result<_>>()?,
                None => Vec::new(),
            };
            let om = out_masks.as_ref().map(|m| m.get(step)).transpose()?;
            let (next, attn) = self.step(&w, enc, x, &state, &lm, om.as_ref())?;
            feeds.push(next.feed.clone());
            if return_attention {
                attns.push(attn);
            }
            state = next;
        }
        let hidden = Tensor::stack(&feeds, 1)?; // (B, T, D)
        let attention = if return_attention { Some(Tensor::stack(&attns, 1)?) } else { None };
        Ok(Seq2SeqOutput { hidden, attention })
    }

    /// Encoder + teacher-forced decoder.
    pub fn forward(
        &self,
        src: &Tensor,
        src_lengths: &[usize],
        dec_input: &Tensor,
        train: bool,
        mut rng: Option<&mut SeededRng>,
        return_attention: bool,
    ) -> Result<Seq2SeqOutput> {
        let enc = self.encode(src, src_lengths, train, rng.as_deref_mut())?;
        self.decode(&enc, dec_input, train, rng, return_attention)
    }

    /// Vocabulary logits (…, V) of h̃ (…, D).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let dims = hidden.dims().to_vec();
        let d = *dims.last().ok_or_else(|| Error::Input("empty hidden".into()))?;
        let rows = hidden.elem_count() / d.max(1);
        let flat = hidden.reshape((rows, d))?.matmul(&self.generator_w.t()?)?.broadcast_add(&self.generator_b)?;
        let mut out = dims;
        *out.last_mut().unwrap() = self.cfg.tgt_vocab_size;
        Ok(flat.reshape(out)?)
    }

    /// Label-smoothed cross-entropy of the generator's logits for h̃ `hidden` (…, D), summed
    /// over the rows whose weight is non-zero: the value and gradients of
    /// `label_smoothed_cross_entropy(&self.logits(hidden)?.flatten_to(..)?, ..)`, as one op
    /// that keeps the (rows × vocabulary) logits in a single buffer turned into their gradient
    /// in place, instead of the five full-size tensors (logits, bias sum, their gradients and
    /// accumulations) candle's graph holds: ~0.8 GB on a 40-step Multi30k batch. CPU only,
    /// like the cross-entropy op.
    pub fn generator_loss(&self, hidden: &Tensor, targets: &[u32], weights: &[f32], eps: f64) -> Result<Tensor> {
        let d = *hidden.dims().last().ok_or_else(|| Error::Input("empty hidden".into()))?;
        let rows = hidden.elem_count() / d.max(1);
        let v = self.cfg.tgt_vocab_size;
        check_ce_inputs(rows, v, targets, weights, eps)?;
        let flat = hidden.reshape((rows, d))?.contiguous()?;
        let keep = flat.track_op() || self.generator_w.track_op() || self.generator_b.track_op();
        let op = GeneratorCe {
            ce: SmoothedCe { targets: targets.to_vec(), weights: weights.to_vec(), eps, lse: Default::default() },
            keep,
            logits: Default::default(),
        };
        Ok(flat.apply_op3(&self.generator_w.contiguous()?, &self.generator_b.contiguous()?, op)?)
    }

    fn dropout(&self, x: Tensor, p: f64, train: bool, rng: Option<&mut SeededRng>, what: &str) -> Result<Tensor> {
        if !train || p == 0.0 {
            return Ok(x);
        }
        let r = rng.ok_or_else(|| need_rng(what))?;
        let mask = r.dropout_mask(x.shape(), p, x.dtype(), x.device())?;
        Ok((x * mask)?)
    }

    /// Inference step from token ids (N,): new state, log-probabilities (N, V) as f32 rows,
    /// attention (N, S). Everything is detached so no graph builds up over steps.
    fn infer_step(
        &self,
        w: &StepWeights,
        enc: &Encoded,
        tokens: &[u32],
        state: &DecoderState,
    ) -> Result<(DecoderState, Tensor, Tensor)> {
        let dev = enc.memory.device();
        let ids = Tensor::from_slice(tokens, tokens.len(), dev)?;
        let y = self.tgt_embedding.index_select(&ids, 0)?; // (N, E)
        let x0 = y.matmul(&w.w_emb_t)?.broadcast_add(&w.bias[0])?;
        let (next, attn) = self.step(w, enc, &x0, state, &[], None)?;
        let logits = self.logits(&next.feed)?.detach();
        Ok((next.detach(), logits, attn.detach()))
    }

    /// Greedy decoding of a batch: the arg-max token at every step until EOS or the length
    /// limit. Returns ids without BOS/EOS.
    pub fn greedy(&self, src: &Tensor, src_lengths: &[usize], opts: &DecodeOptions) -> Result<Vec<Vec<u32>>> {
        let enc = self.encode(src, src_lengths, false, None)?;
        let w = self.step_weights()?;
        let b = src_lengths.len();
        let max_len: Vec<usize> = src_lengths.iter().map(|&l| opts.max_len(l)).collect();
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); b];
        // Rows still decoding; the state and memory are compacted to them after each step.
        let mut active: Vec<usize> = (0..b).collect();
        let mut enc = enc.select(&(0..b as u32).collect::<Vec<_>>())?;
        let mut state = enc.initial.clone();
        let mut tokens = vec![self.cfg.bos_id; b];
        let mut step = 0;
        while !active.is_empty() {
            let (next, logits, _) = self.infer_step(&w, &enc, &tokens, &state)?;
            let best = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            let mut keep = Vec::new();
            for (row, (&i, &tok)) in active.iter().zip(&best).enumerate() {
                if tok == self.cfg.eos_id {
                    continue;
                }
                out[i].push(tok);
                if step + 1 < max_len[i] {
                    keep.push(row as u32);
                }
            }
            step += 1;
            if keep.len() == active.len() {
                state = next;
            } else {
                let idx = Tensor::from_slice(&keep, keep.len(), enc.memory.device())?;
                state = next.select(&idx)?;
                enc = enc.select(&keep)?;
            }
            tokens = keep.iter().map(|&r| best[r as usize]).collect();
            active = keep.iter().map(|&r| active[r as usize]).collect();
        }
        Ok(out)
    }

    /// Batched beam search: `opts.beam` hypotheses per sentence, ranked by log-probability
    /// over the GNMT length penalty. A sentence stops when `beam` hypotheses have ended
    /// (with EOS among the top `beam` candidates of a step) or at its length limit, where
    /// the live hypotheses end as they are. Returns the best hypothesis of each sentence.
    pub fn beam_search(&self, src: &Tensor, src_lengths: &[usize], opts: &DecodeOptions) -> Result<Vec<Hypothesis>> {
        let k = opts.beam.max(1);
        let enc0 = self.encode(src, src_lengths, false, None)?;
        let w = self.step_weights()?;
        let b = src_lengths.len();
        let max_len: Vec<usize> = src_lengths.iter().map(|&l| opts.max_len(l)).collect();
        struct Live {
            sent: usize,
            tokens: Vec<u32>,
            log_prob: f64,
        }
        let mut live: Vec<Live> = (0..b).map(|s| Live { sent: s, tokens: Vec::new(), log_prob: 0.0 }).collect();
        let mut finished: Vec<Vec<Hypothesis>> = vec![Vec::new(); b];
        let mut enc = enc0.select(&(0..b as u32).collect::<Vec<_>>())?;
        let mut state = enc.initial.clone();
        let mut step = 0usize;
        let eos = self.cfg.eos_id;
        while !live.is_empty() {
            let tokens: Vec<u32> = live.iter().map(|l| *l.tokens.last().unwrap_or(&self.cfg.bos_id)).collect();
            let (next, logits, _) = self.infer_step(&w, &enc, &tokens, &state)?;
            let rows = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            let mut new_live = Vec::new();
            let mut parents: Vec<u32> = Vec::new();
            let mut r0 = 0;
            while r0 < live.len() {
                let sent = live[r0].sent;
                let mut r1 = r0;
                while r1 < live.len() && live[r1].sent == sent {
                    r1 += 1;
                }
                // Candidates: each row's best k + 1 tokens (k continuations plus EOS suffice).
                let mut cands: Vec<(f64, usize, u32)> = Vec::new();
                for r in r0..r1 {
                    let lp = log_softmax_row(&rows[r]);
                    for (tok, v) in top_k(&lp, k + 1) {
                        cands.push((live[r].log_prob + v, r, tok));
                    }
                }
                // Best first; ties by row then token so the order is deterministic.
                cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
                let last_step = step + 1 >= max_len[sent];
                let mut kept = 0;
                for (rank, &(lp, r, tok)) in cands.iter().enumerate() {
                    if kept == k || finished[sent].len() >= k {
                        break;
                    }
                    if tok == eos {
                        if rank < k {
                            let len = live[r].tokens.len() + 1;
                            let tokens = live[r].tokens.clone();
                            finished[sent].push(Hypothesis {
                                tokens,
                                log_prob: lp,
                                score: lp / length_penalty(len, opts.length_penalty),
                            });
                        }
                        continue;
                    }
                    let mut tokens = live[r].tokens.clone();
                    tokens.push(tok);
                    if last_step {
                        let len = tokens.len();
                        finished[sent].push(Hypothesis {
                            tokens,
                            log_prob: lp,
                            score: lp / length_penalty(len, opts.length_penalty),
                        });
                    } else {
                        new_live.push(Live { sent, tokens, log_prob: lp });
                        parents.push(r as u32);
                    }
                    kept += 1;
                }
                if finished[sent].len() >= k || last_step {
                    // Done: drop its live hypotheses from this step.
                    while new_live.last().is_some_and(|l| l.sent == sent) {
                        new_live.pop();
                        parents.pop();
                    }
                }
                r0 = r1;
            }
            step += 1;
            if new_live.is_empty() {
                break;
            }
            let idx = Tensor::from_slice(&parents, parents.len(), enc.memory.device())?;
            state = next.select(&idx)?;
            enc = enc.select(&parents)?;
            live = new_live;
        }
        Ok(finished
            .into_iter()
            .map(|hs| {
                hs.into_iter()
                    .reduce(|a, b| if b.score > a.score { b } else { a })
                    .expect("every sentence ends with at least one hypothesis")
            })
            .collect())
    }

    /// Decodes with `opts.beam` (1 = greedy) and returns the ids of each sentence.
    pub fn translate(&self, src: &Tensor, src_lengths: &[usize], opts: &DecodeOptions) -> Result<Vec<Vec<u32>>> {
        if opts.beam <= 1 {
            self.greedy(src, src_lengths, opts)
        } else {
            Ok(self.beam_search(src, src_lengths, opts)?.into_iter().map(|h| h.tokens).collect())
        }
    }
}

fn need_rng(what: &str) -> Error {
    Error::Input(format!("{what} is on in training mode but no dropout RNG was given"))
}

/// Rows of `table` (V, E) for `ids` of any shape: (…, E).
fn embed(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::Embedding::new(table.clone(), table.dim(1)?).forward(ids)?)
}

/// x (B, S, M) · Wᵀ with W (H, M): (B, S, H).
fn project(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (b, s, m) = x.dims3()?;
    Ok(x.reshape((b * s, m))?.matmul(&w.t()?)?.reshape((b, s, ()))?)
}

/// LSTM cell from pre-activations (N, 4H) in PyTorch's gate order i, f, g, o: on the CPU one
/// op (the fused kernel's SIMD gate math, its backward recomputed from the inputs) instead of
/// ~12 candle ops with scalar sigmoid/tanh per decoder step; elsewhere candle's ops.
fn lstm_cell(gates: &Tensor, c: &Tensor) -> Result<(Tensor, Tensor)> {
    if gates.device().is_cpu() && matches!(gates.dtype(), DType::F32 | DType::F64) {
        let out = gates.contiguous()?.apply_op2(&c.contiguous()?, CellOp)?; // (2, N, H): h, c
        return Ok((out.get(0)?, out.get(1)?));
    }
    lstm_cell_ops(gates, c)
}

/// `lstm_cell` from candle's ops (any device; the reference the CPU op is tested against).
fn lstm_cell_ops(gates: &Tensor, c: &Tensor) -> Result<(Tensor, Tensor)> {
    let hsz = c.dim(1)?;
    let input_gate = candle_nn::ops::sigmoid(&gates.narrow(1, 0, hsz)?)?;
    let forget_gate = candle_nn::ops::sigmoid(&gates.narrow(1, hsz, hsz)?)?;
    let cell_candidate = gates.narrow(1, 2 * hsz, hsz)?.tanh()?;
    let output_gate = candle_nn::ops::sigmoid(&gates.narrow(1, 3 * hsz, hsz)?)?;
    let cell = ((forget_gate * c)? + (input_gate * cell_candidate)?)?;
    let hidden = (output_gate * cell.tanh()?)?;
    Ok((hidden, cell))
}

/// `lstm_cell`'s CPU op over (gates (N, 4H), c_prev (N, H)) → (2, N, H): h, then c (each a
/// contiguous block, so that taking them apart makes no copy).
struct CellOp;

impl CellOp {
    fn fwd<T: crate::fused::kernel::Real>(gates: &[T], c_prev: &[T], nh: usize) -> Vec<T> {
        let (_, c, _, mut h) = crate::fused::kernel::cell_forward(gates, c_prev, nh);
        h.extend_from_slice(&c);
        h
    }

    fn bwd<T: crate::fused::kernel::Real>(gates: &[T], c_prev: &[T], grad: &[T], nh: usize) -> (Vec<T>, Vec<T>) {
        let (dh, dc) = grad.split_at(c_prev.len());
        crate::fused::kernel::cell_backward(gates, c_prev, dh, dc, nh)
    }
}

impl candle_core::CustomOp2 for CellOp {
    fn name(&self) -> &'static str {
        "lstm-cell"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, nh) = l2.shape().dims2()?;
        let out = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(Self::fwd(
                contiguous::<f32>(s1, l1, "lstm cell: gates")?,
                contiguous::<f32>(s2, l2, "lstm cell: c")?,
                nh,
            )),
            CpuStorage::F64(_) => CpuStorage::F64(Self::fwd(
                contiguous::<f64>(s1, l1, "lstm cell: gates")?,
                contiguous::<f64>(s2, l2, "lstm cell: c")?,
                nh,
            )),
            _ => candle_core::bail!("lstm cell: f32 or f64 expected"),
        };
        Ok((out, Shape::from((2, n, nh))))
    }

    fn bwd(
        &self,
        gates: &Tensor,
        c: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let nh = c.dim(1)?;
        let grad = grad.contiguous()?;
        let (gs, gl) = gates.storage_and_layout();
        let (cs, cl) = c.storage_and_layout();
        let (ds, dl) = grad.storage_and_layout();
        let (candle_core::Storage::Cpu(gs), candle_core::Storage::Cpu(cs), candle_core::Storage::Cpu(ds)) =
            (&*gs, &*cs, &*ds)
        else {
            candle_core::bail!("lstm cell: CPU tensors expected")
        };
        let (dg, dc) = match gs {
            CpuStorage::F32(_) => {
                let (a, b) = Self::bwd(
                    contiguous::<f32>(gs, gl, "lstm cell: gates")?,
                    contiguous::<f32>(cs, cl, "lstm cell: c")?,
                    contiguous::<f32>(ds, dl, "lstm cell: gradient")?,
                    nh,
                );
                (Tensor::from_vec(a, gates.shape(), gates.device())?, Tensor::from_vec(b, c.shape(), c.device())?)
            }
            CpuStorage::F64(_) => {
                let (a, b) = Self::bwd(
                    contiguous::<f64>(gs, gl, "lstm cell: gates")?,
                    contiguous::<f64>(cs, cl, "lstm cell: c")?,
                    contiguous::<f64>(ds, dl, "lstm cell: gradient")?,
                    nh,
                );
                (Tensor::from_vec(a, gates.shape(), gates.device())?, Tensor::from_vec(b, c.shape(), c.device())?)
            }
            _ => candle_core::bail!("lstm cell: f32 or f64 expected"),
        };
        Ok((Some(dg), Some(dc)))
    }
}

fn log_softmax_row(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
    row.iter().map(|&x| x as f64 - lse).collect()
}

/// The `k` largest entries as (index, value), largest first (ties: lower index first).
fn top_k(xs: &[f64], k: usize) -> Vec<(u32, f64)> {
    let mut best: Vec<(u32, f64)> = Vec::with_capacity(k + 1);
    for (i, &x) in xs.iter().enumerate() {
        if best.len() == k && x <= best[k - 1].1 {
            continue;
        }
        let pos = best.partition_point(|&(_, v)| v >= x);
        best.insert(pos, (i as u32, x));
        best.truncate(k);
    }
    best
}

/// Label-smoothed cross-entropy summed over the rows of `logits` (N, V) whose `weights` is
/// non-zero, as one fused op: per row, (1 − ε)·(−log p_target) + ε·mean_v(−log p_v),
/// times the row's weight (fairseq's formula with ε spread uniformly over the vocabulary).
/// The backward pass is g·w·(softmax − (1 − ε)·onehot − ε/V), computed from the logits in one
/// pass, instead of the ~6 full-size temporaries a composed log-softmax keeps for autograd.
/// Returns a scalar tensor (the sum); divide by the token count for a mean.
pub fn label_smoothed_cross_entropy(logits: &Tensor, targets: &[u32], weights: &[f32], eps: f64) -> Result<Tensor> {
    let (n, v) = logits.dims2()?;
    check_ce_inputs(n, v, targets, weights, eps)?;
    let op = SmoothedCe { targets: targets.to_vec(), weights: weights.to_vec(), eps, lse: Default::default() };
    Ok(logits.contiguous()?.apply_op1(op)?)
}

fn check_ce_inputs(n: usize, v: usize, targets: &[u32], weights: &[f32], eps: f64) -> Result<()> {
    if targets.len() != n || weights.len() != n {
        return Err(Error::Input(format!(
            "{} targets and {} weights for {n} logit rows",
            targets.len(),
            weights.len()
        )));
    }
    if v == 0 {
        return Err(Error::Input("cross-entropy over an empty vocabulary (logits with 0 columns)".into()));
    }
    if let Some(t) = targets.iter().zip(weights).find(|(t, w)| **w != 0.0 && **t as usize >= v) {
        return Err(Error::Input(format!("target id {} outside a vocabulary of {v}", t.0)));
    }
    if !(0.0..1.0).contains(&eps) {
        return Err(Error::Input(format!("label smoothing must be in [0, 1), got {eps}")));
    }
    Ok(())
}

struct SmoothedCe {
    targets: Vec<u32>,
    weights: Vec<f32>,
    eps: f64,
    /// Each row's log-sum-exp from the forward pass, for the backward pass.
    lse: std::sync::Mutex<Vec<f64>>,
}

impl SmoothedCe {
    /// Per row: (weighted loss, log-sum-exp).
    fn rows<T: CeElem>(&self, x: &[T], v: usize) -> Vec<(f64, f64)> {
        use rayon::prelude::*;
        let stats = ce_stats_fn::<T>();
        x.par_chunks(v)
            .zip(self.targets.par_iter().zip(self.weights.par_iter()))
            .map(|(row, (&t, &w))| {
                if w == 0.0 {
                    return (0.0, 0.0);
                }
                let mut st = [0f64; 3];
                stats(row, &mut st);
                let [max, se, sum] = st;
                let lse = max + se.ln();
                let nll = lse - row[t as usize].to_f64();
                let smooth = lse - sum / v as f64;
                (w as f64 * ((1.0 - self.eps) * nll + self.eps * smooth), lse)
            })
            .collect()
    }

    /// Turns the logits `x` (rows of `v`) into g·∂loss/∂logits in place.
    fn grad_in_place<T: CeElem>(&self, x: &mut [T], v: usize, g: f64) {
        use rayon::prelude::*;
        let lses = self.lse.lock().expect("lse lock");
        let uniform = self.eps / v as f64;
        let grad_row = ce_grad_fn::<T>();
        x.par_chunks_mut(v).enumerate().for_each(|(i, row)| {
            let w = self.weights[i] as f64;
            if w == 0.0 {
                row.fill(T::zero());
                return;
            }
            let scale = g * w;
            grad_row(row, lses[i], scale, scale * uniform);
            let t = self.targets[i] as usize;
            row[t] = T::from_f64(row[t].to_f64() - scale * (1.0 - self.eps));
        });
    }
}

/// Logit element: exp in the logits' own precision (f32 through the vectorisable
/// `fused::simd::exp_f32`, f64 through libm).
trait CeElem: crate::fused::kernel::Real {
    fn exp_lane<const FMA: bool>(x: Self) -> Self;
}

impl CeElem for f32 {
    #[inline(always)]
    fn exp_lane<const FMA: bool>(x: f32) -> f32 {
        crate::fused::simd::exp_f32::<FMA>(x)
    }
}

impl CeElem for f64 {
    #[inline(always)]
    fn exp_lane<const FMA: bool>(x: f64) -> f64 {
        x.exp()
    }
}

/// Lanes of the row loops: independent partial sums so that they vectorise (a single running
/// sum is a serial dependency chain LLVM may not reorder).
const LANES: usize = 16;
/// Elements per block whose lane sums are flushed into f64: each f32 lane adds at most 64
/// terms before it is widened.
const BLOCK: usize = 64 * LANES;

type CeStats<T> = fn(&[T], &mut [f64; 3]);

/// `out` = (max, Σ exp(x − max), Σ x) of one non-empty row.
#[inline(always)]
fn ce_stats<T: CeElem, const FMA: bool>(row: &[T], out: &mut [f64; 3]) {
    let mut mx = [row[0]; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for k in 0..LANES {
            mx[k] = if c[k] > mx[k] { c[k] } else { mx[k] };
        }
    }
    let max = mx.iter().chain(tail).fold(f64::NEG_INFINITY, |a, &b| a.max(b.to_f64()));
    let m = T::from_f64(max);
    let (mut se, mut sum) = (0f64, 0f64);
    for block in row.chunks(BLOCK) {
        let (mut e, mut s) = ([T::zero(); LANES], [T::zero(); LANES]);
        let chunks = block.chunks_exact(LANES);
        let tail = chunks.remainder();
        for c in chunks {
            for k in 0..LANES {
                e[k] += T::exp_lane::<FMA>(c[k] - m);
                s[k] += c[k];
            }
        }
        for &x in tail {
            se += T::exp_lane::<FMA>(x - m).to_f64();
            sum += x.to_f64();
        }
        se += e.iter().map(|x| x.to_f64()).sum::<f64>();
        sum += s.iter().map(|x| x.to_f64()).sum::<f64>();
    }
    *out = [max, se, sum];
}

multiversion!(fma ce_stats_fn, ce_stats, CeElem, CeStats<T>, (row: &[T], out: &mut [f64; 3]));

type CeGrad<T> = fn(&mut [T], f64, f64, f64);

/// x ← scale · exp(x − lse) − shift over one row.
#[inline(always)]
fn ce_grad<T: CeElem, const FMA: bool>(row: &mut [T], lse: f64, scale: f64, shift: f64) {
    let (l, sc, sh) = (T::from_f64(lse), T::from_f64(scale), T::from_f64(shift));
    for x in row.iter_mut() {
        *x = sc * T::exp_lane::<FMA>(*x - l) - sh;
    }
}

multiversion!(fma ce_grad_fn, ce_grad, CeElem, CeGrad<T>, (row: &mut [T], lse: f64, scale: f64, shift: f64));

impl candle_core::CustomOp1 for SmoothedCe {
    fn name(&self) -> &'static str {
        "label-smoothed-cross-entropy"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let v = layout.dims()[1];
        let rows = match storage {
            CpuStorage::F32(_) => self.rows(contiguous::<f32>(storage, layout, "logits")?, v),
            CpuStorage::F64(_) => self.rows(contiguous::<f64>(storage, layout, "logits")?, v),
            _ => candle_core::bail!("label-smoothed cross-entropy: f32 or f64 logits expected"),
        };
        let total: f64 = rows.iter().map(|r| r.0).sum();
        *self.lse.lock().expect("lse lock") = rows.iter().map(|r| r.1).collect();
        Ok(match storage {
            CpuStorage::F32(_) => (CpuStorage::F32(vec![total as f32]), Shape::from(())),
            _ => (CpuStorage::F64(vec![total]), Shape::from(())),
        })
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (n, v) = arg.dims2()?;
        let g = grad_res.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        // The logits are read in place (the forward made them contiguous).
        fn go<T: CeElem>(op: &SmoothedCe, x: &[T], v: usize, g: f64) -> Vec<T> {
            let mut out = x.to_vec();
            op.grad_in_place(&mut out, v, g);
            out
        }
        let grad = match arg.dtype() {
            DType::F32 => {
                Tensor::from_vec(cpu_slice::<f32, _>(arg, "logits", |x| go(self, x, v, g))?, (n, v), arg.device())?
            }
            DType::F64 => {
                Tensor::from_vec(cpu_slice::<f64, _>(arg, "logits", |x| go(self, x, v, g))?, (n, v), arg.device())?
            }
            _ => candle_core::bail!("label-smoothed cross-entropy: f32 or f64 logits expected"),
        };
        Ok(Some(grad))
    }
}

/// `generator_loss`'s op over (h̃ rows (R, D), generator weight (V, D), bias (V)).
struct GeneratorCe {
    ce: SmoothedCe,
    /// Keep the logits for the backward (false when no input is tracked: evaluation).
    keep: bool,
    logits: std::sync::Mutex<Option<CpuStorage>>,
}

impl GeneratorCe {
    /// Logits (R, V) = h Wᵀ + b.
    fn logits<T: CeElem>(h: &[T], w: &[T], b: &[T], d: usize) -> Vec<T> {
        let (r, v) = (h.len() / d.max(1), b.len());
        let mut out: Vec<T> = Vec::with_capacity(r * v);
        for _ in 0..r {
            out.extend_from_slice(b);
        }
        // SAFETY: out is (r, v) row-major; h (r, d) and w (v, d) are read within bounds.
        unsafe {
            crate::fused::kernel::matmul(
                r,
                v,
                d,
                out.as_mut_ptr(),
                v,
                true,
                h.as_ptr(),
                d,
                1,
                w.as_ptr(),
                1,
                d,
                crate::fused::kernel::pool_threads(),
            );
        }
        out
    }

    fn fwd<T: CeElem>(&self, h: &[T], w: &[T], b: &[T], d: usize) -> (f64, Vec<T>) {
        let logits = Self::logits(h, w, b, d);
        let rows = self.ce.rows(&logits, b.len());
        *self.ce.lse.lock().expect("lse lock") = rows.iter().map(|r| r.1).collect();
        (rows.iter().map(|r| r.0).sum(), logits)
    }

    /// (dh, dW, db) from the logits turned into their gradient.
    fn bwd<T: CeElem>(&self, mut dl: Vec<T>, h: &[T], w: &[T], d: usize, g: f64) -> (Vec<T>, Vec<T>, Vec<T>) {
        let (r, v) = (h.len() / d.max(1), w.len() / d.max(1));
        self.ce.grad_in_place(&mut dl, v, g);
        let threads = crate::fused::kernel::pool_threads();
        let (mut dh, mut dw) = (vec![T::zero(); r * d], vec![T::zero(); v * d]);
        // SAFETY: dl (r, v), w (v, d), h (r, d), dh (r, d), dw (v, d), all row-major.
        unsafe {
            crate::fused::kernel::matmul(
                r,
                d,
                v,
                dh.as_mut_ptr(),
                d,
                false,
                dl.as_ptr(),
                v,
                1,
                w.as_ptr(),
                d,
                1,
                threads,
            );
            crate::fused::kernel::matmul(
                v,
                d,
                r,
                dw.as_mut_ptr(),
                d,
                false,
                dl.as_ptr(),
                1,
                v,
                h.as_ptr(),
                d,
                1,
                threads,
            );
        }
        let mut db = vec![T::zero(); v];
        for row in dl.chunks_exact(v) {
            for (a, &x) in db.iter_mut().zip(row) {
                *a += x;
            }
        }
        (dh, dw, db)
    }
}

impl candle_core::CustomOp3 for GeneratorCe {
    fn name(&self) -> &'static str {
        "generator-label-smoothed-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = l1.dims()[1];
        let (total, keep) = match s1 {
            CpuStorage::F32(_) => {
                let (t, lg) = self.fwd::<f32>(
                    contiguous(s1, l1, "generator loss: h̃")?,
                    contiguous(s2, l2, "generator loss: weight")?,
                    contiguous(s3, l3, "generator loss: bias")?,
                    d,
                );
                (CpuStorage::F32(vec![t as f32]), CpuStorage::F32(lg))
            }
            CpuStorage::F64(_) => {
                let (t, lg) = self.fwd::<f64>(
                    contiguous(s1, l1, "generator loss: h̃")?,
                    contiguous(s2, l2, "generator loss: weight")?,
                    contiguous(s3, l3, "generator loss: bias")?,
                    d,
                );
                (CpuStorage::F64(vec![t]), CpuStorage::F64(lg))
            }
            _ => candle_core::bail!("generator loss: f32 or f64 expected"),
        };
        if self.keep {
            *self.logits.lock().expect("logits lock") = Some(keep);
        }
        Ok((total, Shape::from(())))
    }

    fn bwd(
        &self,
        h: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = grad_res.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let kept = self.logits.lock().expect("logits lock").take();
        let (hs, hl) = h.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let (bs, bl) = b.storage_and_layout();
        let (candle_core::Storage::Cpu(hs), candle_core::Storage::Cpu(ws), candle_core::Storage::Cpu(bs)) =
            (&*hs, &*ws, &*bs)
        else {
            candle_core::bail!("generator loss: CPU tensors expected")
        };
        fn grads<T: CeElem>(
            op: &GeneratorCe,
            kept: Option<Vec<T>>,
            (hv, wv, bv): (&[T], &[T], &[T]),
            (h, w, b): (&Tensor, &Tensor, &Tensor),
            g: f64,
        ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
            let d = h.dim(1)?;
            let dl = kept.unwrap_or_else(|| GeneratorCe::logits(hv, wv, bv, d));
            let (dh, dw, db) = op.bwd(dl, hv, wv, d, g);
            let dev = h.device();
            Ok((
                Some(Tensor::from_vec(dh, h.shape(), dev)?),
                Some(Tensor::from_vec(dw, w.shape(), dev)?),
                Some(Tensor::from_vec(db, b.shape(), dev)?),
            ))
        }
        match (hs, kept) {
            (CpuStorage::F32(_), kept) => {
                let kept = match kept {
                    Some(CpuStorage::F32(v)) => Some(v),
                    _ => None,
                };
                let sl = (
                    contiguous::<f32>(hs, hl, "generator loss: h̃")?,
                    contiguous::<f32>(ws, wl, "generator loss: weight")?,
                    contiguous::<f32>(bs, bl, "generator loss: bias")?,
                );
                grads(self, kept, sl, (h, w, b), g)
            }
            (CpuStorage::F64(_), kept) => {
                let kept = match kept {
                    Some(CpuStorage::F64(v)) => Some(v),
                    _ => None,
                };
                let sl = (
                    contiguous::<f64>(hs, hl, "generator loss: h̃")?,
                    contiguous::<f64>(ws, wl, "generator loss: weight")?,
                    contiguous::<f64>(bs, bl, "generator loss: bias")?,
                );
                grads(self, kept, sl, (h, w, b), g)
            }
            _ => candle_core::bail!("generator loss: f32 or f64 expected"),
        }
    }
}

#[cfg(test)]
#[path = "seq2seq_tests.rs"]
mod tests;
