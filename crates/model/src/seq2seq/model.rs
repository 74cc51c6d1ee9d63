//! The encoder–decoder itself: parameters, the encoder, one decoder step with its attention,
//! teacher-forced decoding and the generator.

use super::cell_op::lstm_cell;
use super::config::{AttentionKind, Seq2SeqConfig};
use super::loss::generator_cross_entropy;
use crate::config::{CellKind, LstmConfig, Variant};
use crate::lstm::{per_use, split_steps};
use crate::rng::SeededRng;
use crate::{Error, Lstm, LstmInput, Result};
use candle_core::{Tensor, D};
use candle_nn::{Init, Module, VarBuilder};

/// Decoder state: (h, c) per layer, each (N, H), and h̃ of the previous step (N, D).
#[derive(Debug, Clone)]
pub struct DecoderState {
    /// Hidden state per layer, (N, H).
    pub h: Vec<Tensor>,
    /// Cell state per layer, (N, H).
    pub c: Vec<Tensor>,
    /// h̃ of the previous step (N, D), fed back with the next embedding (input feeding).
    pub feed: Tensor,
    /// Coverage: the sum of the attention distributions of the steps so far (N, S), when
    /// coverage is on for this decoding.
    pub coverage: Option<Tensor>,
}

impl DecoderState {
    pub(super) fn select(&self, idx: &Tensor) -> Result<Self> {
        let sel = |t: &Tensor| -> Result<Tensor> { Ok(t.index_select(idx, 0)?.detach()) };
        Ok(Self {
            h: self.h.iter().map(sel).collect::<Result<_>>()?,
            c: self.c.iter().map(sel).collect::<Result<_>>()?,
            feed: sel(&self.feed)?,
            coverage: self.coverage.as_ref().map(sel).transpose()?,
        })
    }
    pub(super) fn detach(&self) -> Self {
        Self {
            h: self.h.iter().map(Tensor::detach).collect(),
            c: self.c.iter().map(Tensor::detach).collect(),
            feed: self.feed.detach(),
            coverage: self.coverage.as_ref().map(Tensor::detach),
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
    /// Real source length of each row.
    pub src_lengths: Vec<usize>,
    /// The decoder's first state: the encoder's final states, directions concatenated.
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
pub(super) struct StepWeights {
    /// Layer 0: (E, 4H) embedding columns of W_ih, transposed.
    w_emb_t: Tensor,
    /// Per layer: ([feed|input ; h] width, 4H), the rest of W_ih and W_hh side by side, transposed.
    w_rec_t: Vec<Tensor>,
    /// Per layer: b_ih + b_hh (4H).
    bias: Vec<Tensor>,
}

/// What teacher-forced decoding returns.
pub struct Seq2SeqOutput {
    /// (B, T, D): h̃ for every target step; project with [`Seq2Seq::logits`].
    pub hidden: Tensor,
    /// (B, T, S) attention weights, when asked for (always with copying).
    pub attention: Option<Tensor>,
    /// (B, T) the copy switch's p_gen (the generator's share of the mixture), with copying.
    pub p_gen: Option<Tensor>,
    /// (B, T) each step's coverage loss Σ_s min(a_t,s, coverage_t,s), with coverage.
    pub coverage_loss: Option<Tensor>,
}

/// What [`Seq2Seq::decode_with`] computes beside h̃.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeParts {
    /// Return the attention weights.
    pub attention: bool,
    /// Feed coverage to the attention and return the coverage loss (needs `coverage` in the
    /// config; off = a zero coverage vector, as before See et al. switch it on).
    pub coverage: bool,
}

/// One decoder step's results.
pub(super) struct StepOut {
    pub(super) state: DecoderState,
    /// (N, S) attention weights.
    pub(super) attn: Tensor,
    /// (N, M) context vector.
    pub(super) ctx: Tensor,
    /// (N, H) the top layer's h: the attention query.
    pub(super) query: Tensor,
}

/// The attention encoder–decoder (see the module docs for its diagram and parameter names).
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
    /// Copy switch: weight (1, M + H + E) over [context ; query ; input embedding], bias (1).
    pointer: Option<(Tensor, Tensor)>,
    /// Coverage feature weight (H), added to the additive score as w_c·coverage_s.
    coverage_w: Option<Tensor>,
}

impl Seq2Seq {
    /// Validates `cfg` and creates (or loads, through `vb`) every parameter.
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
        let pointer = if cfg.copy {
            let p = vb.pp("pointer");
            Some((p.get_with_hints((1, m + h + e), "weight", kaiming)?, p.get_with_hints(1, "bias", Init::Const(0.0))?))
        } else {
            None
        };
        let coverage_w = if cfg.coverage { Some(a.get_with_hints(h, "coverage.weight", u)?) } else { None };
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
            pointer,
            coverage_w,
        })
    }

    /// The configuration the model was built with.
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
            initial: DecoderState { h: hs, c: cs, feed, coverage: None },
        })
    }

    pub(super) fn step_weights(&self) -> Result<StepWeights> {
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
    ) -> Result<StepOut> {
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
        let query = hs.last().expect("≥ 1 layer").clone();
        let (ctx, attn) = self.attend(enc, &query, state.coverage.as_ref())?;
        let mut feed = Tensor::cat(&[&ctx, &query], 1)?.matmul(&per_use(&self.linear_out)?.t()?)?.tanh()?; // (N, D)
        if let Some(m) = out_mask {
            feed = (feed * m)?;
        }
        let coverage = state.coverage.as_ref().map(|c| c + &attn).transpose()?;
        Ok(StepOut { state: DecoderState { h: hs, c: cs, feed, coverage }, attn, ctx, query })
    }

    /// Context (N, M) and weights (N, S) for query (N, H), with the coverage term when
    /// `coverage` (N, S) is given.
    fn attend(&self, enc: &Encoded, query: &Tensor, coverage: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let (keys, memory) = (per_use(&enc.keys)?, per_use(&enc.memory)?);
        let (n, s, h) = keys.dims3()?;
        let scores = match self.cfg.attention {
            AttentionKind::Dot | AttentionKind::General => {
                let scores = keys.matmul(&query.unsqueeze(2)?)?.squeeze(2)?;
                match (coverage, &self.coverage_w) {
                    // (k_s + c_s·w_c)ᵀ q = k_sᵀ q + c_s·(w_cᵀ q): the coverage term added to
                    // each key, as the additive score adds it inside.
                    (Some(cov), Some(wc)) => {
                        let lam = query.matmul(&per_use(wc)?.unsqueeze(1)?)?; // (N, 1)
                        (scores + cov.broadcast_mul(&lam)?)?
                    }
                    _ => scores,
                }
            }
            AttentionKind::Bahdanau => {
                let (wq, bq) = self.linear_query.as_ref().expect("bahdanau");
                let q = query.matmul(&per_use(wq)?.t()?)?.broadcast_add(&per_use(bq)?)?; // (N, H)
                let mut pre = keys.broadcast_add(&q.unsqueeze(1)?)?; // (N, S, H)
                if let (Some(cov), Some(wc)) = (coverage, &self.coverage_w) {
                    let wc = per_use(wc)?.reshape((1, 1, h))?;
                    pre = (pre + cov.unsqueeze(2)?.broadcast_mul(&wc)?)?;
                }
                let e = pre.tanh()?;
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
        rng: Option<&mut SeededRng>,
        return_attention: bool,
    ) -> Result<Seq2SeqOutput> {
        self.decode_with(enc, dec_input, train, rng, DecodeParts { attention: return_attention, coverage: false })
    }

    /// [`Self::decode`] with coverage and the copy switch: the attention is returned when
    /// asked for or when the model copies (its loss needs it), p_gen when it copies, the
    /// coverage loss when `parts.coverage`.
    pub fn decode_with(
        &self,
        enc: &Encoded,
        dec_input: &Tensor,
        train: bool,
        mut rng: Option<&mut SeededRng>,
        parts: DecodeParts,
    ) -> Result<Seq2SeqOutput> {
        if parts.coverage && self.coverage_w.is_none() {
            return Err(Error::Input("coverage asked for, but the model was built without `coverage`".into()));
        }
        let copy = self.pointer.is_some();
        let return_attention = parts.attention || copy;
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
        if parts.coverage {
            state.coverage = Some(enc.mask_bias.zeros_like()?);
        }
        let mut feeds = Vec::with_capacity(t);
        let mut attns = Vec::new();
        let (mut ctxs, mut queries, mut cov_losses) = (Vec::new(), Vec::new(), Vec::new());
        for (step, x) in x0.iter().enumerate() {
            let lm: Vec<Tensor> = match &layer_masks {
                Some(m) => (0..layers - 1).map(|l| m.get(step)?.get(l)).collect::<candle_core::Result<_>>()?,
                None => Vec::new(),
            };
            let om = out_masks.as_ref().map(|m| m.get(step)).transpose()?;
            let out = self.step(&w, enc, x, &state, &lm, om.as_ref())?;
            feeds.push(out.state.feed.clone());
            if let Some(cov) = &state.coverage {
                cov_losses.push(out.attn.minimum(cov)?.sum(1)?); // (B,)
            }
            if copy {
                ctxs.push(out.ctx);
                queries.push(out.query);
            }
            if return_attention {
                attns.push(out.attn);
            }
            state = out.state;
        }
        let hidden = Tensor::stack(&feeds, 1)?; // (B, T, D)
        let attention = if return_attention { Some(Tensor::stack(&attns, 1)?) } else { None };
        let p_gen =
            if copy { Some(self.p_gen(&Tensor::stack(&ctxs, 1)?, &Tensor::stack(&queries, 1)?, &y)?) } else { None };
        let coverage_loss = if cov_losses.is_empty() { None } else { Some(Tensor::stack(&cov_losses, 1)?) };
        Ok(Seq2SeqOutput { hidden, attention, p_gen, coverage_loss })
    }

    /// The copy switch p_gen = σ(w·[context ; query ; input embedding] + b) for (…, M),
    /// (…, H), (…, E): (…).
    pub(super) fn p_gen(&self, ctx: &Tensor, query: &Tensor, emb: &Tensor) -> Result<Tensor> {
        let (w, b) =
            self.pointer.as_ref().ok_or_else(|| Error::Input("p_gen of a model built without `copy`".into()))?;
        let x = Tensor::cat(&[ctx, query, emb], D::Minus1)?;
        let dims = x.dims().to_vec();
        let width = *dims.last().expect("≥ 1 dim");
        let z = x.reshape((x.elem_count() / width, width))?.matmul(&per_use(w)?.t()?)?.broadcast_add(&per_use(b)?)?;
        Ok(candle_nn::ops::sigmoid(&z.reshape(&dims[..dims.len() - 1])?)?)
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
        generator_cross_entropy(
            &hidden.reshape((rows, d))?,
            &self.generator_w,
            &self.generator_b,
            targets,
            weights,
            eps,
        )
    }

    /// Pointer-generator NLL summed over the decoder steps whose `weights` is non-zero (See
    /// et al. 2017, eq. 9 and 6): per step, −w·log P(y) with
    /// P(y) = p_gen·P_vocab(y) + (1 − p_gen)·Σ_{s: src_s = y} a_s.
    /// `targets` (B·T) and `src_ext` (B·S, padding anything that is never a target) are ids in
    /// the extended vocabulary: the target vocabulary, then each example's source-only words
    /// from `tgt_vocab_size` on. `out` comes from [`Self::decode_with`] of a model with
    /// `copy`. P_vocab(y) comes from the fused projection ([`Self::generator_log_prob`]), so the
    /// (B·T, V) probabilities never enter the graph.
    pub fn copy_loss(&self, out: &Seq2SeqOutput, src_ext: &[u32], targets: &[u32], weights: &[f32]) -> Result<Tensor> {
        let (attn, p_gen) = match (&out.attention, &out.p_gen) {
            (Some(a), Some(p)) => (a, p),
            _ => return Err(Error::Input("copy loss of an output without attention and p_gen (copy off?)".into())),
        };
        let (b, t, s) = attn.dims3()?;
        if src_ext.len() != b * s || targets.len() != b * t || weights.len() != b * t {
            return Err(Error::Input(format!(
                "copy loss: {} source ids, {} targets and {} weights for {b} rows of {t} steps over {s} source positions",
                src_ext.len(),
                targets.len(),
                weights.len()
            )));
        }
        let v = self.cfg.tgt_vocab_size as u32;
        let (dtype, dev) = (attn.dtype(), attn.device());
        // The generator part: log P_vocab(y) where y is in the vocabulary (else weight 0, and
        // the in-vocabulary mask removes its term).
        let gen_targets: Vec<u32> = targets.iter().map(|&y| if y < v { y } else { 0 }).collect();
        let gen_weights: Vec<f32> =
            targets.iter().zip(weights).map(|(&y, &w)| if y < v && w != 0.0 { 1.0 } else { 0.0 }).collect();
        let lp = self.generator_log_prob(&out.hidden, &gen_targets, &gen_weights)?; // (B·T)
        let in_vocab = Tensor::from_slice(&gen_weights, b * t, dev)?.to_dtype(dtype)?;
        let p = p_gen.reshape(b * t)?;
        let gen = ((&p * lp.exp()?)? * &in_vocab)?;
        // The copy part: attention mass on the source positions holding y.
        let mut hits = vec![0f32; b * t * s];
        for r in 0..b {
            for j in 0..t {
                let y = targets[r * t + j];
                if weights[r * t + j] == 0.0 {
                    continue;
                }
                for k in 0..s {
                    if src_ext[r * s + k] == y {
                        hits[(r * t + j) * s + k] = 1.0;
                    }
                }
            }
        }
        let hits = Tensor::from_vec(hits, (b, t, s), dev)?.to_dtype(dtype)?;
        let copied = (attn * hits)?.sum(2)?.reshape(b * t)?;
        let mix = (gen + (p.affine(-1.0, 1.0)? * copied)?)?;
        // Steps that do not count get P = 1 (log 0 there would be NaN × 0); the floor keeps a
        // target whose attention underflowed finite, with no gradient through it.
        let counted: Vec<f32> = weights.iter().map(|&w| if w != 0.0 { 0.0 } else { 1.0 }).collect();
        let mix = (mix + Tensor::from_vec(counted, b * t, dev)?.to_dtype(dtype)?)?.maximum(1e-30)?;
        let w = Tensor::from_slice(weights, b * t, dev)?.to_dtype(dtype)?;
        Ok((mix.log()? * w)?.sum_all()?.neg()?)
    }

    /// Per row of h̃ `hidden` (…, D): w·log P_vocab(target) through the fused projection
    /// (rows of weight 0 give 0); differentiable for any upstream gradient. CPU only.
    pub fn generator_log_prob(&self, hidden: &Tensor, targets: &[u32], weights: &[f32]) -> Result<Tensor> {
        let d = *hidden.dims().last().ok_or_else(|| Error::Input("empty hidden".into()))?;
        let rows = hidden.elem_count() / d.max(1);
        super::loss::generator_log_prob(
            &hidden.reshape((rows, d))?,
            &self.generator_w,
            &self.generator_b,
            targets,
            weights,
        )
    }

    /// The output distribution over the extended vocabulary for one decoder step's logits
    /// (V), attention (S) and p_gen: p_gen·softmax(logits) on the first V entries, plus
    /// (1 − p_gen)·a_s added at `src_ext[s]`; `n_ext` entries in all (≥ V and > every id).
    /// Without a p_gen (no copying) it is the softmax. In f64, for beam search.
    pub fn output_distribution(
        logits: &[f32],
        attn: &[f32],
        src_ext: &[u32],
        p_gen: Option<f32>,
        n_ext: usize,
    ) -> Vec<f64> {
        let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let z: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
        let pg = p_gen.map_or(1.0, f64::from);
        let mut out: Vec<f64> = logits.iter().map(|&x| pg * (x as f64 - max).exp() / z).collect();
        out.resize(n_ext.max(logits.len()), 0.0);
        if p_gen.is_some() {
            for (&a, &id) in attn.iter().zip(src_ext) {
                if id as usize >= out.len() {
                    out.resize(id as usize + 1, 0.0);
                }
                out[id as usize] += (1.0 - pg) * a as f64;
            }
        }
        out
    }

    /// Inference step from token ids (N,): new state, logits (N, V), attention (N, S) and,
    /// with copying, p_gen (N). Everything is detached so no graph builds up over steps.
    pub(super) fn infer_step(
        &self,
        w: &StepWeights,
        enc: &Encoded,
        tokens: &[u32],
        state: &DecoderState,
    ) -> Result<(DecoderState, Tensor, Tensor, Option<Tensor>)> {
        let dev = enc.memory.device();
        let ids = Tensor::from_slice(tokens, tokens.len(), dev)?;
        let y = self.tgt_embedding.index_select(&ids, 0)?; // (N, E)
        let x0 = y.matmul(&w.w_emb_t)?.broadcast_add(&w.bias[0])?;
        let out = self.step(w, enc, &x0, state, &[], None)?;
        let logits = self.logits(&out.state.feed)?.detach();
        let p_gen = if self.pointer.is_some() { Some(self.p_gen(&out.ctx, &out.query, &y)?.detach()) } else { None };
        Ok((out.state.detach(), logits, out.attn.detach(), p_gen))
    }

    fn dropout(&self, x: Tensor, p: f64, train: bool, rng: Option<&mut SeededRng>, what: &str) -> Result<Tensor> {
        if !train || p == 0.0 {
            return Ok(x);
        }
        let r = rng.ok_or_else(|| need_rng(what))?;
        let mask = r.dropout_mask(x.shape(), p, x.dtype(), x.device())?;
        Ok((x * mask)?)
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
