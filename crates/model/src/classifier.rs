//! Sequence classifier: embedding → dropout → [`Lstm`] → pooling over real tokens →
//! dropout → linear. Logits out; the loss lives with the training loop.
//!
//! The rung above [`Lstm`] (cell step → layer → task model → `train::trainer::Trainer`):
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use model::classifier::{probabilities, Classifier, ClassifierConfig, Pooling};
//! use model::{config::LstmConfig, init::seeded_var_builder};
//!
//! let mut lstm = LstmConfig::new(8, 16); // embedding_dim, hidden_size
//! lstm.bidirectional = true;
//! let cfg = ClassifierConfig {
//!     vocab_size: 100,
//!     embedding_dim: 8,
//!     num_classes: 2,
//!     lstm,
//!     embedding_dropout: 0.0,
//!     head_dropout: 0.0,
//!     variational: false,
//!     pooling: Pooling::Last,
//! };
//! let varmap = candle_nn::VarMap::new();
//! let model = Classifier::new(&cfg, seeded_var_builder(&varmap, 42, DType::F32, &Device::Cpu))?;
//! // Two sequences padded to 5 tokens; the second has 3 real ones.
//! let ids = Tensor::new(&[[5u32, 9, 12, 7, 3], [4, 8, 2, 0, 0]], &Device::Cpu)?;
//! let out = model.forward(&ids, &[5, 3], false, None, false)?; // evaluation mode, no trace
//! assert_eq!(out.logits.dims(), &[2, 2]); // (batch, num_classes)
//! let p = probabilities(&out.logits)?.to_vec2::<f32>()?;
//! assert!((p[1][0] + p[1][1] - 1.0).abs() < 1e-6);
//! # Ok::<(), model::Error>(())
//! ```

use crate::compress::layers::CompressedLinear;
use crate::config::LstmConfig;
use crate::rng::SeededRng;
use crate::{GateTrace, Lstm, LstmInput, LstmOutput, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Embedding, Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

/// How the per-step outputs become one vector per sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The final state of each direction at the sequence's real ends: the forward direction
    /// after its last real token, the backward direction after the first.
    #[default]
    Last,
    /// Mean of the top layer's outputs over real tokens.
    Mean,
    /// Element-wise max of the top layer's outputs over real tokens.
    Max,
}

/// Configuration of [`Classifier`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Rows of the embedding table.
    pub vocab_size: usize,
    /// Width of each embedding (the LSTM's input size).
    pub embedding_dim: usize,
    /// Logits per sequence.
    pub num_classes: usize,
    /// The recurrent layer.
    pub lstm: LstmConfig,
    /// Dropout on the embeddings, in [0, 1).
    pub embedding_dropout: f64,
    /// Dropout on the pooled vector before the linear head, in [0, 1).
    pub head_dropout: f64,
    /// Embedding dropout with one mask per sequence shared over time.
    pub variational: bool,
    /// How the sequence is summarised for the head.
    pub pooling: Pooling,
}

/// Sequence classifier: embedding → dropout → [`Lstm`] → pooling → dropout → linear.
pub struct Classifier {
    embedding: Embedding,
    lstm: Lstm,
    head: Linear,
    cfg: ClassifierConfig,
    sparse_grad: Option<crate::ops::SparseGradSlot>,
    /// The head on compressed weights, used in evaluation mode ([`Classifier::attach_compressed`]).
    head_q: Option<CompressedLinear>,
}

/// What [`Classifier::forward`] returns.
pub struct ClassifierOutput {
    /// (batch, num_classes)
    pub logits: Tensor,
    /// The LSTM's gates at every step, when asked for.
    pub trace: Option<GateTrace>,
}

impl Classifier {
    /// Parameters: `embedding.weight`, `lstm.*` (PyTorch names), `head.weight`, `head.bias`.
    pub fn new(cfg: &ClassifierConfig, vb: VarBuilder) -> Result<Self> {
        let embedding = candle_nn::embedding(cfg.vocab_size, cfg.embedding_dim, vb.pp("embedding"))?;
        let lstm = Lstm::new(&cfg.lstm, vb.pp("lstm"))?;
        let head = candle_nn::linear(cfg.lstm.output_size(), cfg.num_classes, vb.pp("head"))?;
        Ok(Self { embedding, lstm, head, cfg: cfg.clone(), sparse_grad: None, head_q: None })
    }

    /// From now on the embedding table's gradient is left in the returned slot as the rows a
    /// batch used ([`crate::ops::embed`]) instead of in the gradient store; each training
    /// forward clears it. For an optimizer that reads the slot (`train`'s).
    pub fn sparse_embedding_grad(&mut self) -> crate::ops::SparseGradSlot {
        self.sparse_grad.get_or_insert_with(Default::default).clone()
    }

    /// Runs evaluation-mode forwards on the compressed matrices of `c` (`lstm.*`,
    /// `head.weight`; see [`Lstm::attach_compressed`]). The embedding table needs no kernel: the
    /// caller's variables hold its dequantised values, which a lookup copies. Returns whether
    /// the LSTM has a compressed kernel (false: it stays on the f32 path).
    pub fn attach_compressed(&mut self, c: &crate::compress::Compressed) -> Result<bool> {
        if let Some(w) = c.matrices.get("head.weight") {
            let bias = match self.head.bias() {
                Some(b) => b.to_dtype(DType::F32)?.to_vec1::<f32>()?,
                None => vec![0.0; w.rows()],
            };
            self.head_q = Some(CompressedLinear { w: w.clone(), bias });
        }
        self.lstm.attach_compressed(c, "lstm")
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &ClassifierConfig {
        &self.cfg
    }

    /// The recurrent layer.
    pub fn lstm(&self) -> &Lstm {
        &self.lstm
    }

    /// `ids`: (batch, time) u32, padded; `lengths`: real tokens per sequence (≥ 1).
    /// `rng` draws the dropout masks and must be given when `train` is true and any dropout
    /// is on.
    pub fn forward(
        &self,
        ids: &Tensor,
        lengths: &[usize],
        train: bool,
        mut rng: Option<&mut SeededRng>,
        trace: bool,
    ) -> Result<ClassifierOutput> {
        // (batch, time, emb), the dropout mask applied in the same pass.
        let table = self.embedding.embeddings();
        let c = &self.cfg;
        let mask = input_dropout_mask(
            ids,
            table,
            c.embedding_dropout,
            c.variational,
            rng.as_deref_mut(),
            train,
            "embedding dropout",
        )?;
        if train {
            if let Some(s) = &self.sparse_grad {
                s.clear();
            }
        }
        let x = crate::ops::embed(table, ids, mask.as_ref(), self.sparse_grad.as_ref())?;
        let c = &self.cfg;
        let head = Head { dense: &self.head, compressed: self.head_q.as_ref() };
        encode_and_classify(&self.lstm, head, &c.lstm, c.pooling, c.head_dropout, &x, lengths, train, rng, trace)
    }
}

/// A classifier head: the f32 layer, and its compressed form for evaluation when attached.
#[derive(Clone, Copy)]
pub(crate) struct Head<'a> {
    pub(crate) dense: &'a Linear,
    pub(crate) compressed: Option<&'a CompressedLinear>,
}

impl Head<'_> {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self.compressed {
            Some(q) if !train && x.device().is_cpu() && x.dtype() == DType::F32 => {
                let (rows, _) = x.dims2()?;
                let y = q.forward(&x.flatten_all()?.to_vec1::<f32>()?, rows);
                Ok(Tensor::from_vec(y, (rows, q.w.rows()), x.device())?)
            }
            _ => Ok(self.dense.forward(x)?),
        }
    }
}

/// The embedding-dropout mask for `ids` (batch, time) in training mode: (batch, time, dim),
/// or (batch, 1, dim) with `variational`; None when off.
pub(crate) fn input_dropout_mask(
    ids: &Tensor,
    table: &Tensor,
    p: f64,
    variational: bool,
    rng: Option<&mut SeededRng>,
    train: bool,
    what: &str,
) -> Result<Option<Tensor>> {
    if !train || p <= 0.0 {
        return Ok(None);
    }
    let (batch, time) = ids.dims2()?;
    let dim = table.dim(1)?;
    let r = rng.ok_or_else(|| need_rng(what))?;
    let shape = if variational { (batch, 1, dim) } else { (batch, time, dim) };
    Ok(Some(r.dropout_mask(shape, p, table.dtype(), table.device())?))
}

/// Dropout on a (batch, time, features) input in training mode; with `variational`, one mask
/// per sequence shared over time.
pub(crate) fn input_dropout(
    x: Tensor,
    p: f64,
    variational: bool,
    rng: Option<&mut SeededRng>,
    train: bool,
    what: &str,
) -> Result<Tensor> {
    if !train || p <= 0.0 {
        return Ok(x);
    }
    let (batch, time, features) = x.dims3()?;
    let r = rng.ok_or_else(|| need_rng(what))?;
    let shape = if variational { (batch, 1, features) } else { (batch, time, features) };
    let mask = r.dropout_mask(shape, p, x.dtype(), x.device())?;
    Ok(x.broadcast_mul(&mask)?)
}

/// The tail every sequence classifier shares: LSTM over the real steps → [`pool`] → head
/// dropout → linear head. `x`: (batch, time, features), padded.
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_and_classify(
    lstm: &Lstm,
    head: Head<'_>,
    lstm_cfg: &LstmConfig,
    pooling: Pooling,
    head_dropout: f64,
    x: &Tensor,
    lengths: &[usize],
    train: bool,
    mut rng: Option<&mut SeededRng>,
    trace: bool,
) -> Result<ClassifierOutput> {
    let mut input = LstmInput::new().lengths(lengths).trace(trace);
    if train {
        input = match rng.as_deref_mut() {
            Some(r) => input.train(r),
            None => LstmInput { train: true, ..input },
        };
    }
    let out = lstm.forward(x, &input)?;
    drop(input);
    let mut feats = pool(&out, lstm_cfg, pooling, lengths)?; // (batch, dirs*hidden)
    if train && head_dropout > 0.0 {
        let r = rng.ok_or_else(|| need_rng("head dropout"))?;
        let mask = r.dropout_mask(feats.shape(), head_dropout, feats.dtype(), feats.device())?;
        feats = (feats * mask)?;
    }
    let logits = head.forward(&feats, train)?;
    Ok(ClassifierOutput { logits, trace: out.trace })
}

/// Pools the LSTM's outputs over each sequence's real steps into one vector per sequence,
/// (batch, directions × hidden). Shared by every classifier head (tokens or feature frames).
pub fn pool(out: &LstmOutput, lstm: &LstmConfig, pooling: Pooling, lengths: &[usize]) -> Result<Tensor> {
    Ok(match pooling {
        Pooling::Last => {
            let dirs = lstm.num_directions();
            let top = (lstm.num_layers - 1) * dirs;
            let hs: Vec<Tensor> = out.final_states[top..top + dirs].iter().map(|s| s.h.clone()).collect();
            Tensor::cat(&hs, 1)?
        }
        Pooling::Mean => {
            // Padded outputs are zero, so the plain sum over time is the sum over real tokens.
            let len = lengths_tensor(lengths, out.output.dtype(), out.output.device())?;
            out.output.sum(1)?.broadcast_div(&len)?
        }
        Pooling::Max => crate::ops::masked_max_pool(&out.output, lengths)?,
    })
}

pub(crate) fn need_rng(what: &str) -> crate::Error {
    crate::Error::Input(format!("{what} is on in training mode but no dropout RNG was given"))
}

/// (batch, 1) lengths as floats.
fn lengths_tensor(lengths: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
    let v: Vec<f32> = lengths.iter().map(|&l| l.max(1) as f32).collect();
    Ok(Tensor::from_vec(v, (lengths.len(), 1), device)?.to_dtype(dtype)?)
}

/// Softmax probabilities from logits, for prediction.
pub fn probabilities(logits: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::softmax(logits, D::Minus1)?)
}
