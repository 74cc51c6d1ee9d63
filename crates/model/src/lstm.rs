//! The recurrent layer: LSTM (eight Greff variants, the cell in [`crate::cell`]), GRU and
//! Elman RNN cells, stacked in layers and directions, with per-sequence lengths.
//!
//! The layer chooses how each LSTM direction runs ([`Lstm::forward`]): through the fused CPU
//! kernel (`crate::fused`, one candle op per direction, or per bidirectional layer) when
//! [`LstmConfig::fused`] is on and the kernel covers the case, else op by op
//! ([`run_direction`], the reference; also GRU, RNN and gate traces). Both give the same
//! numbers up to float rounding (f64: 1e-12), tested in `lstm/fused_tests.rs`.
//!
//! # Parameter names (PyTorch's, under the VarBuilder's prefix)
//!
//! For layer k and direction suffix s ("" forward, "_reverse" backward):
//! `weight_ih_l{k}{s}` (G·H, in), `weight_hh_l{k}{s}` (G·H, H), `bias_ih_l{k}{s}` (G·H),
//! `bias_hh_l{k}{s}` (G·H), where G is the number of gate blocks the variant uses
//! ([`Variant::gates`]: PyTorch's i, f, g, o with absent gates dropped), 3 for GRU (r, z, n),
//! 1 for RNN. The peephole variant adds `weight_ch_l{k}{s}` (3·H): the diagonal peephole
//! weights p_i, p_f, p_o, in that order. A vanilla LSTM, GRU or RNN checkpoint is a PyTorch
//! state_dict of `nn.LSTM` / `nn.GRU` / `nn.RNN` (batch_first irrelevant for weights).
//!
//! # As a candle-nn `Module`
//!
//! `xs.apply(&lstm)` runs full-length sequences from a zero state in evaluation mode and
//! returns the last layer's output; [`Lstm::forward`] takes lengths, initial states,
//! training mode and traces.
//!
//! ```
//! use candle_core::{DType, Device, Module, Tensor};
//! use model::{init::seeded_var_builder, Lstm, LstmConfig};
//!
//! let mut cfg = LstmConfig::new(8, 16);
//! cfg.bidirectional = true;
//! let varmap = candle_nn::VarMap::new();
//! let lstm = Lstm::new(&cfg, seeded_var_builder(&varmap, 42, DType::F32, &Device::Cpu))?;
//! let xs = Tensor::zeros((4, 10, 8), DType::F32, &Device::Cpu)?; // (batch, time, input)
//! let ys = xs.apply(&lstm)?;
//! assert_eq!(ys.dims(), &[4, 10, 32]); // (batch, time, 2 directions × 16)
//! # Ok::<(), model::Error>(())
//! ```

mod direction;

pub(crate) use crate::cell::per_use;
pub use crate::cell::DirectionWeights;
pub use direction::{reverse_index, reverse_sequences, run_direction, split_steps, DirectionOutput, StepMasks};

use crate::compress::layers::CompressedLstm;
use crate::config::{CellKind, Gate, LstmConfig, Variant};
use crate::rng::SeededRng;
use crate::{fused, Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use std::cell::RefCell;
use std::sync::{Arc, Once};

/// Hidden (and, for the LSTM, cell) state of one layer and direction, each (batch, hidden).
#[derive(Debug, Clone)]
pub struct LstmState {
    /// The hidden state h.
    pub h: Tensor,
    /// The cell state; `None` for GRU and RNN.
    pub c: Option<Tensor>,
}

/// Arguments of [`Lstm::forward`] besides the input. `Default` = full-length sequences, zero
/// initial state, evaluation mode, no trace.
#[derive(Debug, Default)]
pub struct LstmInput<'a> {
    /// Real length of each sequence (≤ time); steps past it are padding.
    pub lengths: Option<Vec<usize>>,
    /// Initial state per layer and direction (index layer·dirs + dir); zeros when `None`.
    pub initial: Option<Vec<LstmState>>,
    /// Training mode: enables dropout between layers.
    pub train: bool,
    /// Where dropout masks come from; required when `train` and `dropout > 0`. In a
    /// `RefCell` so that `forward` can take `&LstmInput`; [`LstmInput::train`] wraps it.
    pub dropout_rng: Option<RefCell<&'a mut SeededRng>>,
    /// Also return every step's gates ([`GateTrace`]).
    pub trace: bool,
}

impl<'a> LstmInput<'a> {
    /// Full-length sequences, zero initial state, evaluation mode, no trace.
    pub fn new() -> Self {
        Self::default()
    }
    /// The real length of each sequence.
    pub fn lengths(mut self, lengths: &[usize]) -> Self {
        self.lengths = Some(lengths.to_vec());
        self
    }
    /// The initial state of every layer and direction (index layer·dirs + dir).
    pub fn initial(mut self, initial: Vec<LstmState>) -> Self {
        self.initial = Some(initial);
        self
    }
    /// Training mode with dropout masks drawn from `rng`.
    pub fn train(mut self, rng: &'a mut SeededRng) -> Self {
        self.train = true;
        self.dropout_rng = Some(RefCell::new(rng));
        self
    }
    /// Also return every step's gates.
    pub fn trace(mut self, on: bool) -> Self {
        self.trace = on;
        self
    }
}

/// Every step's gate values for one layer and direction, each (batch, time, hidden), in the
/// input's time order (also for the reverse direction) and zero at padded steps.
/// A gate the cell does not have is `None`: LSTM `nog` has no output gate, `nig` no input
/// gate, `nfg` no forget gate (`cifg` reports i = 1 − f); GRU reports only `reset_gate`,
/// `update_gate` and `hidden`; RNN only `hidden`.
#[derive(Debug, Clone)]
pub struct DirectionTrace {
    /// o_t.
    pub output_gate: Option<Tensor>,
    /// i_t.
    pub input_gate: Option<Tensor>,
    /// f_t.
    pub forget_gate: Option<Tensor>,
    /// c_t (LSTM only).
    pub cell: Option<Tensor>,
    /// h_t.
    pub hidden: Tensor,
    /// GRU's r_t.
    pub reset_gate: Option<Tensor>,
    /// GRU's z_t.
    pub update_gate: Option<Tensor>,
}

/// Gate trace of the whole stack: `directions[layer * dirs + dir]`.
#[derive(Debug, Clone)]
pub struct GateTrace {
    /// One per layer and direction.
    pub directions: Vec<DirectionTrace>,
}

/// What [`Lstm::forward`] returns.
#[derive(Debug, Clone)]
pub struct LstmOutput {
    /// (batch, time, dirs·hidden): the last layer's h, zeros at padded steps.
    pub output: Tensor,
    /// Final state per layer and direction (index layer·dirs + dir): the state at each
    /// sequence's last real token (for the reverse direction: after reading its first token).
    pub final_states: Vec<LstmState>,
    /// Every step's gates, when [`LstmInput::trace`] asked for them.
    pub trace: Option<GateTrace>,
}

/// Names and shapes of every parameter of a layer built from `cfg`, without prefix, in
/// creation order. Used to validate checkpoints.
pub fn param_shapes(cfg: &LstmConfig) -> Vec<(String, Vec<usize>)> {
    let h = cfg.hidden_size;
    let gh = cfg.cell.blocks(cfg.variant) * h;
    let mut out = Vec::new();
    for layer in 0..cfg.num_layers {
        let in_size = if layer == 0 { cfg.input_size } else { cfg.output_size() };
        for dir in 0..cfg.num_directions() {
            let s = suffix(layer, dir);
            out.push((format!("weight_ih{s}"), vec![gh, in_size]));
            out.push((format!("weight_hh{s}"), vec![gh, h]));
            out.push((format!("bias_ih{s}"), vec![gh]));
            out.push((format!("bias_hh{s}"), vec![gh]));
            if cfg.cell == CellKind::Lstm && cfg.variant == Variant::Peephole {
                out.push((format!("weight_ch{s}"), vec![3 * h]));
            }
        }
    }
    out
}

fn suffix(layer: usize, dir: usize) -> String {
    format!("_l{layer}{}", if dir == 1 { "_reverse" } else { "" })
}

/// Multi-layer, optionally bidirectional recurrent layer (LSTM, GRU or RNN), batch first.
#[derive(Debug, Clone)]
pub struct Lstm {
    cfg: LstmConfig,
    /// Index layer·dirs + dir.
    weights: Vec<DirectionWeights>,
    /// Compressed weights for inference ([`Lstm::attach_compressed`]).
    compressed: Option<Arc<CompressedLstm>>,
}

impl Lstm {
    /// Builds the layer, getting (or creating, with PyTorch's U(−1/√H, 1/√H) init) its
    /// parameters from `vb`. Use [`crate::init::seeded_var_builder`] for seeded creation.
    pub fn new(cfg: &LstmConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let h = cfg.hidden_size;
        let k = 1.0 / (h as f64).sqrt();
        let uniform = Init::Uniform { lo: -k, up: k };
        let gates = cfg.cell.blocks(cfg.variant);
        let forget_block =
            if cfg.cell == CellKind::Lstm { cfg.variant.gates().iter().position(|g| *g == Gate::Forget) } else { None };
        let mut weights = Vec::new();
        for layer in 0..cfg.num_layers {
            let in_size = if layer == 0 { cfg.input_size } else { cfg.output_size() };
            for dir in 0..cfg.num_directions() {
                let s = suffix(layer, dir);
                let w_ih = vb.get_with_hints((gates * h, in_size), &format!("weight_ih{s}"), uniform)?;
                let name_hh = format!("weight_hh{s}");
                let fresh_hh = !vb.contains_tensor(&name_hh);
                let w_hh = if cfg.orthogonal_init {
                    let w = vb.get_with_hints((gates * h, h), &name_hh, Init::Randn { mean: 0.0, stdev: 1.0 })?;
                    if fresh_hh {
                        let v = w.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
                        let o = crate::init::orthogonalize_blocks(&v, h);
                        set_in_place(&w, o)?;
                    }
                    w
                } else {
                    vb.get_with_hints((gates * h, h), &name_hh, uniform)?
                };
                let (name_bi, name_bh) = (format!("bias_ih{s}"), format!("bias_hh{s}"));
                let fresh_b = !vb.contains_tensor(&name_bi) && !vb.contains_tensor(&name_bh);
                let b_ih = vb.get_with_hints(gates * h, &name_bi, uniform)?;
                let b_hh = vb.get_with_hints(gates * h, &name_bh, uniform)?;
                if let (Some(fb), true, true) = (forget_block, fresh_b, cfg.forget_bias != 0.0) {
                    for (b, val) in [(&b_ih, cfg.forget_bias), (&b_hh, 0.0)] {
                        let mut v = b.to_dtype(DType::F64)?.to_vec1::<f64>()?;
                        v[fb * h..(fb + 1) * h].iter_mut().for_each(|x| *x = val);
                        set_in_place(b, v)?;
                    }
                }
                let peephole = if cfg.cell == CellKind::Lstm && cfg.variant == Variant::Peephole {
                    Some(vb.get_with_hints(3 * h, &format!("weight_ch{s}"), uniform)?)
                } else {
                    None
                };
                weights.push(DirectionWeights { w_ih, w_hh, b_ih, b_hh, peephole });
            }
        }
        Ok(Self { cfg: cfg.clone(), weights, compressed: None })
    }

    /// The configuration the layer was built from.
    pub fn config(&self) -> &LstmConfig {
        &self.cfg
    }

    /// From now on evaluation-mode forwards on the CPU (no gate trace, zero initial state, f32)
    /// run on the compressed matrices of `c` named `{prefix}.weight_ih_l*` / `weight_hh_l*`
    /// ([`crate::compress::layers`]); matrices `c` lacks run in f32 from this layer's own
    /// variables. Only the vanilla LSTM cell has a compressed kernel: for other cells this
    /// returns false and the layer keeps its f32 path (whose variables the caller has set to
    /// the dequantised values, so the numbers are the file's either way).
    pub fn attach_compressed(&mut self, c: &crate::compress::Compressed, prefix: &str) -> Result<bool> {
        use crate::compress::{layers::Direction, Weights};
        let cfg = &self.cfg;
        if cfg.cell != CellKind::Lstm || cfg.variant != Variant::Vanilla {
            return Ok(false);
        }
        let f32_of = |t: &Tensor| -> Result<Arc<Weights>> {
            let (rows, cols) = t.dims2()?;
            let w = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            Ok(Arc::new(Weights::F32 { rows, cols, w }))
        };
        let dirs = cfg.num_directions();
        let mut weights = Vec::new();
        for layer in 0..cfg.num_layers {
            for dir in 0..dirs {
                let s = suffix(layer, dir);
                let dw = self.direction_weights(layer, dir);
                let get = |n: &str, t: &Tensor| match c.matrices.get(&format!("{prefix}.{n}{s}")) {
                    Some(w) => Ok(w.clone()),
                    None => f32_of(t),
                };
                let bias = (dw.b_ih.to_dtype(DType::F32)? + dw.b_hh.to_dtype(DType::F32)?)?.to_vec1::<f32>()?;
                weights.push(Direction { w_ih: get("weight_ih", &dw.w_ih)?, w_hh: get("weight_hh", &dw.w_hh)?, bias });
            }
        }
        self.compressed =
            Some(Arc::new(CompressedLstm { hidden: cfg.hidden_size, layers: cfg.num_layers, dirs, weights }));
        Ok(true)
    }

    /// Whether compressed weights are attached.
    pub fn is_compressed(&self) -> bool {
        self.compressed.is_some()
    }

    /// The compressed path of [`Lstm::forward`] (evaluation, zero initial state, CPU, f32).
    fn forward_compressed(&self, cl: &CompressedLstm, x: &Tensor, lengths: Option<&[usize]>) -> Result<LstmOutput> {
        let (b, t, _) = x.dims3()?;
        let full = vec![t; b];
        let lengths = lengths.unwrap_or(&full);
        if let Some((i, _)) = lengths.iter().enumerate().find(|(_, &n)| n == 0) {
            return Err(Error::Input(format!("lengths[{i}] = 0: every sequence needs at least one step")));
        }
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let out = cl.forward(&xs, b, t, lengths, fused::threads::pool_threads());
        let dev = x.device();
        let h = cl.hidden;
        let final_states = out
            .h
            .into_iter()
            .zip(out.c)
            .map(|(hv, cv)| {
                Ok(LstmState { h: Tensor::from_vec(hv, (b, h), dev)?, c: Some(Tensor::from_vec(cv, (b, h), dev)?) })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LstmOutput { output: Tensor::from_vec(out.output, (b, t, cl.dirs * h), dev)?, final_states, trace: None })
    }

    /// Weights of `layer`, direction `dir` (0 forward, 1 reverse).
    pub fn direction_weights(&self, layer: usize, dir: usize) -> &DirectionWeights {
        &self.weights[layer * self.cfg.num_directions() + dir]
    }

    /// How the LSTM directions of `x` run: the fused CPU kernel when `cfg.fused` is on and
    /// the kernel covers the case, else op by op. A gate trace (per-step gate tensors) and
    /// GRU/RNN cells always take the op-by-op path; a device/dtype the kernel does not cover
    /// is reported once on stderr.
    pub(crate) fn path(&self, x: &Tensor, trace: bool) -> Path {
        static FALLBACK_LOGGED: Once = Once::new();
        if !self.cfg.fused || trace || self.cfg.cell != CellKind::Lstm {
            return Path::OpByOp;
        }
        if !fused::supports(x.device(), x.dtype()) {
            FALLBACK_LOGGED.call_once(|| {
                eprintln!(
                    "sluice: fused LSTM kernel not available for {:?} / {:?}; using the op-by-op path",
                    x.device(),
                    x.dtype()
                )
            });
            return Path::OpByOp;
        }
        Path::Fused
    }

    /// Runs the stack over `x` (batch, time, input_size), f32 or f64 like the weights.
    pub fn forward(&self, x: &Tensor, input: &LstmInput) -> Result<LstmOutput> {
        let cfg = &self.cfg;
        let (b, t, f) = x
            .dims3()
            .map_err(|_| Error::Input(format!("expected input (batch, time, features), got shape {:?}", x.dims())))?;
        if f != cfg.input_size {
            return Err(Error::Input(format!("input has {f} features, config input_size is {}", cfg.input_size)));
        }
        let dirs = cfg.num_directions();
        if let Some(l) = &input.lengths {
            if l.len() != b {
                return Err(Error::Input(format!("{} lengths for a batch of {b}", l.len())));
            }
            if let Some((i, &n)) = l.iter().enumerate().find(|(_, &n)| n > t) {
                return Err(Error::Input(format!("lengths[{i}] = {n} exceeds the time dimension {t}")));
            }
        }
        if let Some(init) = &input.initial {
            if init.len() != cfg.num_layers * dirs {
                return Err(Error::Input(format!(
                    "{} initial states, expected num_layers × directions = {}",
                    init.len(),
                    cfg.num_layers * dirs
                )));
            }
            for (i, s) in init.iter().enumerate() {
                let want = [b, cfg.hidden_size];
                let c_ok = match (&s.c, cfg.cell) {
                    (Some(c), CellKind::Lstm) => c.dims() == want,
                    (None, CellKind::Lstm) => false,
                    (c, _) => c.is_none(),
                };
                if s.h.dims() != want || !c_ok {
                    return Err(Error::Input(format!(
                        "initial state {i}: expected h{} of shape {want:?}, got h {:?}, c {:?}",
                        if cfg.cell == CellKind::Lstm { " and c" } else { " only" },
                        s.h.dims(),
                        s.c.as_ref().map(|c| c.dims().to_vec())
                    )));
                }
            }
        }
        if let Some(cl) = &self.compressed {
            if !input.train && !input.trace && input.initial.is_none() && x.device().is_cpu() && x.dtype() == DType::F32
            {
                return self.forward_compressed(cl, x, input.lengths.as_deref());
            }
        }
        let dropout_on = input.train && cfg.dropout > 0.0 && cfg.num_layers > 1;
        if dropout_on && input.dropout_rng.is_none() {
            return Err(Error::Input("training with dropout > 0 needs `dropout_rng`".into()));
        }
        let lengths = input.lengths.as_deref().filter(|l| l.iter().any(|&n| n != t));
        // Built on first use: the fused kernel takes the lengths directly.
        let masks_cell = std::cell::OnceCell::new();
        let masks = || -> Result<Option<&StepMasks>> {
            match lengths {
                None => Ok(None),
                Some(l) => {
                    if masks_cell.get().is_none() {
                        let _ = masks_cell.set(StepMasks::new(l, t, x.dtype(), x.device())?);
                    }
                    Ok(masks_cell.get())
                }
            }
        };
        let path = self.path(x, input.trace);
        let mut layer_input = x.clone();
        let mut final_states = Vec::new();
        let mut traces = Vec::new();
        for layer in 0..cfg.num_layers {
            if layer > 0 && dropout_on {
                let mut rng = input.dropout_rng.as_ref().expect("checked above").borrow_mut();
                let width = layer_input.dim(2)?;
                let mask = if cfg.variational_dropout {
                    rng.dropout_mask((b, 1, width), cfg.dropout, x.dtype(), x.device())?
                } else {
                    rng.dropout_mask((b, t, width), cfg.dropout, x.dtype(), x.device())?
                };
                layer_input = layer_input.broadcast_mul(&mask)?;
            }
            let initial = |dir: usize| input.initial.as_ref().map(|v| &v[layer * dirs + dir]);
            if path == Path::Fused && dirs == 2 {
                // Both directions in one op, side by side on half the threads each.
                let w = [self.direction_weights(layer, 0), self.direction_weights(layer, 1)];
                let init = [initial(0), initial(1)].map(|s| (s.map(|s| &s.h), s.and_then(|s| s.c.as_ref())));
                let (out, [(h0, c0), (h1, c1)]) =
                    fused::lstm_bidirectional_variant(cfg.variant, w, &layer_input, init, lengths.unwrap_or(&[]))?;
                final_states.push(LstmState { h: h0, c: Some(c0) });
                final_states.push(LstmState { h: h1, c: Some(c1) });
                layer_input = out;
                continue;
            }
            let mut outs = Vec::new();
            for dir in 0..dirs {
                let (w, init, reverse) = (self.direction_weights(layer, dir), initial(dir), dir == 1);
                let r = match path {
                    Path::Fused => {
                        let (h0, c0) = (init.map(|s| &s.h), init.and_then(|s| s.c.as_ref()));
                        let l = lengths.unwrap_or(&[]);
                        let (output, h, c) =
                            fused::lstm_direction_variant(cfg.variant, w, &layer_input, h0, c0, l, reverse)?;
                        DirectionOutput { output, final_state: LstmState { h, c: Some(c) }, trace: None }
                    }
                    Path::OpByOp => run_direction(cfg, w, &layer_input, masks()?, reverse, init, input.trace)?,
                };
                outs.push(r.output);
                final_states.push(r.final_state);
                if let Some(tr) = r.trace {
                    traces.push(tr);
                }
            }
            layer_input = if dirs == 1 { outs.pop().unwrap() } else { Tensor::cat(&outs, 2)? };
        }
        Ok(LstmOutput {
            output: layer_input,
            final_states,
            trace: input.trace.then_some(GateTrace { directions: traces }),
        })
    }
}

/// How [`Lstm::forward`] runs its LSTM directions ([`Lstm::path`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    /// The fused CPU kernel: one op per direction, or per layer when bidirectional.
    Fused,
    /// [`run_direction`]: the cell's candle ops, step by step.
    OpByOp,
}

/// `xs.apply(&lstm)`: `xs` (batch, time, input_size) as full-length sequences from a zero
/// state, in evaluation mode (no dropout); returns the last layer's output (batch, time,
/// directions·hidden). See the module docs for an example.
impl candle_nn::Module for Lstm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match Lstm::forward(self, xs, &LstmInput::new()) {
            Ok(out) => Ok(out.output),
            Err(Error::Candle(e)) => Err(e),
            Err(e) => Err(candle_core::Error::wrap(e)),
        }
    }
}

/// Overwrites a variable tensor (as returned by a VarMap-backed VarBuilder) in place.
fn set_in_place(t: &Tensor, values: Vec<f64>) -> Result<()> {
    if !t.is_variable() {
        return Ok(()); // a loaded, read-only tensor: its stored values win
    }
    let v = Tensor::from_vec(values, t.shape(), &Device::Cpu)?.to_dtype(t.dtype())?.to_device(t.device())?;
    Var::from_tensor(t)?.set(&v)?;
    Ok(())
}

#[cfg(test)]
#[path = "lstm_tests.rs"]
mod tests;

#[cfg(test)]
mod fused_tests;
