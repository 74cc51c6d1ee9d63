//! The recurrent layer: LSTM (eight Greff variants), GRU and Elman RNN cells from candle ops,
//! stacked in layers and directions, with per-sequence lengths.
//!
//! # The LSTM cell (vanilla, gate order i, f, g, o as PyTorch)
//!
//! ```text
//! i_t = σ(W_i·x_t + U_i·h_{t-1} + b_i)          input gate
//! f_t = σ(W_f·x_t + U_f·h_{t-1} + b_f)          forget gate
//! g_t = tanh(W_g·x_t + U_g·h_{t-1} + b_g)       cell candidate
//! o_t = σ(W_o·x_t + U_o·h_{t-1} + b_o)          output gate
//! c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
//! h_t = o_t ⊙ tanh(c_t)
//! ```
//! with b = `bias_ih` + `bias_hh`. Variants change single terms: `peephole` adds
//! p_i⊙c_{t-1}, p_f⊙c_{t-1} to i, f and p_o⊙c_t to o; `cifg` sets i = 1 − f; `nog` o ≡ 1;
//! `noaf` h = o⊙c; `nig` i ≡ 1; `nfg` f ≡ 1; `niaf` g without tanh.
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
//! # Speed: how per-step inputs are cut out
//!
//! The input projection x·W_ihᵀ + b for all steps is one matmul before the time loop.
//! Its (T, B, G·H) result must then be cut into T per-step tensors, and candle's backward of
//! `narrow` pads each slice's gradient back to the parent's full size: T slices of one big
//! tensor cost O(T²) in the backward pass. [`split_steps`] instead halves the tensor
//! recursively, so each level of the tree pads to its parent's (halving) size: O(T log T).
//! Measured with the ignored test `bench_split` (batch 64, hidden 256, input 256, f32,
//! release, 2 shared cores, so ±30%): cutting the (T, 64, 1024) projection into steps,
//! forward+backward, takes 0.72 s with T `narrow`s vs 0.22 s with the halving tree at T = 64,
//! and 1.55 s vs 0.77 s at T = 128. The whole layer (forward+backward) takes 1.96 s at T = 64
//! and 4.3 s at T = 128, against 0.99 s and 6.0 s for candle-nn's LSTM (whose per-step
//! `narrow` of the input grows quadratically). The backward pass dominates (forward: 0.26 s
//! and 0.46 s); the fused CPU kernel (`crate::fused`) is the fast path, this one the reference.

use crate::config::{CellKind, Gate, LstmConfig, Variant};
use crate::rng::SeededRng;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use std::cell::RefCell;

/// Hidden (and, for the LSTM, cell) state of one layer and direction, each (batch, hidden).
#[derive(Debug, Clone)]
pub struct LstmState {
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
    pub fn new() -> Self {
        Self::default()
    }
    pub fn lengths(mut self, lengths: &[usize]) -> Self {
        self.lengths = Some(lengths.to_vec());
        self
    }
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
    pub output_gate: Option<Tensor>,
    pub input_gate: Option<Tensor>,
    pub forget_gate: Option<Tensor>,
    /// c_t (LSTM only).
    pub cell: Option<Tensor>,
    pub hidden: Tensor,
    /// GRU's r_t.
    pub reset_gate: Option<Tensor>,
    /// GRU's z_t.
    pub update_gate: Option<Tensor>,
}

/// Gate trace of the whole stack: `directions[layer * dirs + dir]`.
#[derive(Debug, Clone)]
pub struct GateTrace {
    pub directions: Vec<DirectionTrace>,
}

#[derive(Debug, Clone)]
pub struct LstmOutput {
    /// (batch, time, dirs·hidden): the last layer's h, zeros at padded steps.
    pub output: Tensor,
    /// Final state per layer and direction (index layer·dirs + dir): the state at each
    /// sequence's last real token (for the reverse direction: after reading its first token).
    pub final_states: Vec<LstmState>,
    pub trace: Option<GateTrace>,
}

/// The parameters of one layer and direction.
#[derive(Debug, Clone)]
pub struct DirectionWeights {
    /// (G·H, in)
    pub w_ih: Tensor,
    /// (G·H, H)
    pub w_hh: Tensor,
    /// (G·H)
    pub b_ih: Tensor,
    /// (G·H)
    pub b_hh: Tensor,
    /// Peephole diagonals p_i, p_f, p_o stacked: (3·H).
    pub peephole: Option<Tensor>,
}

/// What kind of cell a direction runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellSpec {
    pub cell: CellKind,
    pub variant: Variant,
    pub hidden_size: usize,
}

/// Result of running one direction over the batch.
#[derive(Debug, Clone)]
pub struct DirectionOutput {
    /// (batch, time, hidden), zeros at padded steps, in the input's time order.
    pub output: Tensor,
    pub final_state: LstmState,
    pub trace: Option<DirectionTrace>,
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
        Ok(Self { cfg: cfg.clone(), weights })
    }

    pub fn config(&self) -> &LstmConfig {
        &self.cfg
    }

    /// Weights of `layer`, direction `dir` (0 forward, 1 reverse).
    pub fn direction_weights(&self, layer: usize, dir: usize) -> &DirectionWeights {
        &self.weights[layer * self.cfg.num_directions() + dir]
    }

    pub fn cell_spec(&self) -> CellSpec {
        CellSpec { cell: self.cfg.cell, variant: self.cfg.variant, hidden_size: self.cfg.hidden_size }
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
        let spec = self.cell_spec();
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
            if dirs == 2 {
                let init = input
                    .initial
                    .as_ref()
                    .map(|v| [Some(&v[layer * 2]), Some(&v[layer * 2 + 1])])
                    .unwrap_or([None, None]);
                let w = [self.direction_weights(layer, 0), self.direction_weights(layer, 1)];
                if let Some((out, [s0, s1])) =
                    crate::fused::hook::try_run_bidirectional(cfg, w, &layer_input, lengths, init, input.trace)?
                {
                    final_states.push(s0);
                    final_states.push(s1);
                    layer_input = out;
                    continue;
                }
            }
            let mut outs = Vec::new();
            for dir in 0..dirs {
                let init = input.initial.as_ref().map(|v| &v[layer * dirs + dir]);
                let w = self.direction_weights(layer, dir);
                // The fused CPU kernel when `cfg.fused` and it covers the case, else op by op.
                let fused =
                    crate::fused::hook::try_run_direction(cfg, w, &layer_input, lengths, dir == 1, init, input.trace)?;
                let r = match fused {
                    Some(r) => r,
                    None => run_direction(&spec, w, &layer_input, masks()?, dir == 1, init, input.trace)?,
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

/// Overwrites a variable tensor (as returned by a VarMap-backed VarBuilder) in place.
fn set_in_place(t: &Tensor, values: Vec<f64>) -> Result<()> {
    if !t.is_variable() {
        return Ok(()); // a loaded, read-only tensor: its stored values win
    }
    let v = Tensor::from_vec(values, t.shape(), &Device::Cpu)?.to_dtype(t.dtype())?.to_device(t.device())?;
    Var::from_tensor(t)?.set(&v)?;
    Ok(())
}

/// Per-sequence length information in the forms the time loop needs.
#[derive(Debug, Clone)]
pub struct StepMasks {
    /// Per step, (batch, 1): 1 where the step is a real token, else 0.
    keep: Vec<Tensor>,
    /// Per step, 1 − keep.
    hold: Vec<Tensor>,
    /// (batch, time, 1) mask for zeroing traces.
    full: Tensor,
    /// (batch, time) u32: position t ↦ len−1−t inside each sequence, identity on padding.
    /// Reversing is its own inverse, so the same index maps back.
    reverse_index: Tensor,
}

impl StepMasks {
    pub fn new(lengths: &[usize], time: usize, dtype: DType, device: &Device) -> Result<Self> {
        let b = lengths.len();
        let mut keep = Vec::with_capacity(time);
        let mut hold = Vec::with_capacity(time);
        for step in 0..time {
            let k: Vec<f64> = lengths.iter().map(|&n| if step < n { 1.0 } else { 0.0 }).collect();
            let h: Vec<f64> = k.iter().map(|v| 1.0 - v).collect();
            keep.push(Tensor::from_vec(k, (b, 1), &Device::Cpu)?.to_dtype(dtype)?.to_device(device)?);
            hold.push(Tensor::from_vec(h, (b, 1), &Device::Cpu)?.to_dtype(dtype)?.to_device(device)?);
        }
        let full: Vec<f64> =
            lengths.iter().flat_map(|&n| (0..time).map(move |s| if s < n { 1.0 } else { 0.0 })).collect();
        let full = Tensor::from_vec(full, (b, time, 1), &Device::Cpu)?.to_dtype(dtype)?.to_device(device)?;
        Ok(Self { keep, hold, full, reverse_index: reverse_index(lengths, time, device)? })
    }
}

/// (batch, time) u32 index reversing each sequence's first `len` steps.
pub fn reverse_index(lengths: &[usize], time: usize, device: &Device) -> Result<Tensor> {
    let idx: Vec<u32> = lengths
        .iter()
        .flat_map(|&n| (0..time).map(move |s| if s < n { (n - 1 - s) as u32 } else { s as u32 }))
        .collect();
    Ok(Tensor::from_vec(idx, (lengths.len(), time), device)?)
}

/// Reverses each sequence of `x` (batch, time, F) along time with one gather.
pub fn reverse_sequences(x: &Tensor, index: &Tensor) -> Result<Tensor> {
    let (b, t, f) = x.dims3()?;
    let idx = index.unsqueeze(2)?.broadcast_as((b, t, f))?.contiguous()?;
    Ok(x.gather(&idx, 1)?)
}

/// Cuts `x` (T, …) into T tensors (…) by recursive halving, so the backward pass costs
/// O(T log T) instead of the O(T²) of T direct `narrow`s (see the module docs).
/// `x` as a fresh graph node (a zero-copy reshape of a contiguous tensor to its own shape),
/// for a tensor that every time step reads. candle's backward adds each use's gradient into
/// its store without detaching it (candle issue #1241), so a tensor read at every step
/// accumulates a chain of additions that keeps every step's contribution alive to the end of
/// the backward (2.6 GB for one 40-step Multi30k batch through the decoder's attention
/// memory alone). Through a node per step, each contribution is freed once that node is
/// processed: its gradient reaches `x` detached. A non-contiguous `x` is returned as is
/// (its reshape would be a copy per step).
pub(crate) fn per_use(x: &Tensor) -> Result<Tensor> {
    if !x.is_contiguous() {
        return Ok(x.clone());
    }
    Ok(x.reshape(x.shape())?)
}

pub fn split_steps(x: &Tensor) -> Result<Vec<Tensor>> {
    fn go(x: &Tensor, out: &mut Vec<Tensor>) -> candle_core::Result<()> {
        let t = x.dim(0)?;
        if t == 1 {
            out.push(x.squeeze(0)?);
            return Ok(());
        }
        let mid = t / 2;
        go(&x.narrow(0, 0, mid)?, out)?;
        go(&x.narrow(0, mid, t - mid)?, out)
    }
    let mut out = Vec::with_capacity(x.dim(0)?);
    if x.dim(0)? > 0 {
        go(x, &mut out)?;
    }
    Ok(out)
}

fn sigmoid(x: &Tensor) -> candle_core::Result<Tensor> {
    candle_nn::ops::sigmoid(x)
}

/// Gate activations of one step, kept for the trace.
#[derive(Default)]
struct StepGates {
    i: Option<Tensor>,
    f: Option<Tensor>,
    o: Option<Tensor>,
    c: Option<Tensor>,
    r: Option<Tensor>,
    z: Option<Tensor>,
}

/// Runs one direction of one layer over `x` (batch, time, F): the unit the fused kernel can
/// replace. `reverse` reads each sequence right to left over its real tokens; `masks` is
/// `None` when every sequence fills the time dimension.
pub fn run_direction(
    spec: &CellSpec,
    w: &DirectionWeights,
    x: &Tensor,
    masks: Option<&StepMasks>,
    reverse: bool,
    initial: Option<&LstmState>,
    trace: bool,
) -> Result<DirectionOutput> {
    let (b, t, f) = x.dims3()?;
    let hsz = spec.hidden_size;
    let gh = w.w_hh.dim(0)?;
    // Without lengths every sequence has length t, and reversal is a flip of the time axis.
    let full_rev;
    let rev_idx = match masks {
        Some(m) => Some(&m.reverse_index),
        None if reverse => {
            full_rev = reverse_index(&vec![t; b], t, x.device())?;
            Some(&full_rev)
        }
        None => None,
    };
    let x = if reverse { reverse_sequences(x, rev_idx.unwrap())? } else { x.clone() };
    // The LSTM and RNN add both biases before the loop; GRU's bias_hh sits inside r ⊙ (…).
    let bias = match spec.cell {
        CellKind::Gru => w.b_ih.clone(),
        _ => (&w.b_ih + &w.b_hh)?,
    };
    // (T·B, F) · (F, G·H) → (T, B, G·H): time-major so each step's slice is contiguous.
    let proj = x
        .transpose(0, 1)?
        .contiguous()?
        .reshape((t * b, f))?
        .matmul(&w.w_ih.t()?)?
        .broadcast_add(&bias)?
        .reshape((t, b, gh))?;
    let steps = split_steps(&proj)?;
    let zeros = || Tensor::zeros((b, hsz), x.dtype(), x.device());
    let mut h = match initial {
        Some(s) => s.h.clone(),
        None => zeros()?,
    };
    let mut c = match (spec.cell, initial) {
        (CellKind::Lstm, Some(s)) => s.c.clone(),
        (CellKind::Lstm, None) => Some(zeros()?),
        _ => None,
    };
    let peep = match &w.peephole {
        Some(p) => Some((p.narrow(0, 0, hsz)?, p.narrow(0, hsz, hsz)?, p.narrow(0, 2 * hsz, hsz)?)),
        None => None,
    };
    let mut outs = Vec::with_capacity(t);
    let mut gate_log: Vec<StepGates> = Vec::new();
    let mut hidden_log = Vec::new();
    for (step, xw) in steps.iter().enumerate() {
        let (h_new, c_new, gates) = match spec.cell {
            CellKind::Lstm => {
                let c_prev = c.as_ref().expect("LSTM has a cell state");
                // (B, G·H): all gate pre-activations of this step.
                let z = (xw + h.matmul(&per_use(&w.w_hh)?.t()?)?)?;
                let mut blocks = [None, None, None, None];
                for (k, g) in spec.variant.gates().iter().enumerate() {
                    blocks[*g as usize] = Some(z.narrow(1, k * hsz, hsz)?);
                }
                let [zi, zf, zg, zo] = blocks;
                let add_peep = |pre: Tensor, p: Option<&Tensor>, cc: &Tensor| -> candle_core::Result<Tensor> {
                    match p {
                        // A per-step view, as `per_use` (p is a contiguous slice).
                        Some(p) => pre + cc.broadcast_mul(&p.reshape(p.shape())?)?,
                        None => Ok(pre),
                    }
                };
                let f_gate = match zf {
                    Some(zf) => Some(sigmoid(&add_peep(zf, peep.as_ref().map(|p| &p.1), c_prev)?)?),
                    None => None, // nfg: f ≡ 1
                };
                let i_gate = match (zi, spec.variant) {
                    (Some(zi), _) => Some(sigmoid(&add_peep(zi, peep.as_ref().map(|p| &p.0), c_prev)?)?),
                    (None, Variant::Cifg) => Some(f_gate.as_ref().unwrap().affine(-1.0, 1.0)?), // i = 1 − f
                    (None, _) => None,                                                          // nig: i ≡ 1
                };
                let zg = zg.expect("every variant has a cell candidate");
                let g = if spec.variant == Variant::Niaf { zg } else { zg.tanh()? };
                // c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
                let kept = match &f_gate {
                    Some(fg) => (fg * c_prev)?,
                    None => c_prev.clone(),
                };
                let written = match &i_gate {
                    Some(ig) => (ig * &g)?,
                    None => g,
                };
                let c_t = (kept + written)?;
                // Output gate: o_t = σ(W_o·x_t + U_o·h_{t-1} + b_o [+ p_o ⊙ c_t for peephole]);
                // it decides how much of the squashed cell reaches h_t = o_t ⊙ tanh(c_t).
                let o_gate = match zo {
                    Some(zo) => Some(sigmoid(&add_peep(zo, peep.as_ref().map(|p| &p.2), &c_t)?)?),
                    None => None, // nog: o ≡ 1
                };
                let act = if spec.variant == Variant::Noaf { c_t.clone() } else { c_t.tanh()? };
                let h_t = match &o_gate {
                    Some(o) => (o * act)?,
                    None => act,
                };
                let gates = StepGates { i: i_gate, f: f_gate, o: o_gate, c: Some(c_t.clone()), r: None, z: None };
                (h_t, Some(c_t), gates)
            }
            CellKind::Gru => {
                // PyTorch's GRU: r = σ(x_r + h_r), z = σ(x_z + h_z), n = tanh(x_n + r ⊙ h_n),
                // h' = (1 − z) ⊙ n + z ⊙ h, where h_· include bias_hh.
                let hw = h.matmul(&per_use(&w.w_hh)?.t()?)?.broadcast_add(&per_use(&w.b_hh)?)?;
                let r = sigmoid(&(xw.narrow(1, 0, hsz)? + hw.narrow(1, 0, hsz)?)?)?;
                let z = sigmoid(&(xw.narrow(1, hsz, hsz)? + hw.narrow(1, hsz, hsz)?)?)?;
                let n = (xw.narrow(1, 2 * hsz, hsz)? + (&r * hw.narrow(1, 2 * hsz, hsz)?)?)?.tanh()?;
                let h_t = (&n + (&z * (&h - &n)?)?)?;
                (h_t, None, StepGates { r: Some(r), z: Some(z), ..Default::default() })
            }
            CellKind::Rnn => {
                let h_t = (xw + h.matmul(&per_use(&w.w_hh)?.t()?)?)?.tanh()?;
                (h_t, None, StepGates::default())
            }
        };
        match masks {
            Some(m) => {
                // Padded steps output zeros and carry the state through unchanged.
                let (keep, hold) = (&m.keep[step], &m.hold[step]);
                outs.push(h_new.broadcast_mul(keep)?);
                h = (h_new.broadcast_mul(keep)? + h.broadcast_mul(hold)?)?;
                if let (Some(cn), Some(cp)) = (&c_new, &c) {
                    c = Some((cn.broadcast_mul(keep)? + cp.broadcast_mul(hold)?)?);
                }
            }
            None => {
                outs.push(h_new.clone());
                h = h_new.clone();
                if c_new.is_some() {
                    c = c_new;
                }
            }
        }
        if trace {
            gate_log.push(gates);
            hidden_log.push(h_new);
        }
    }
    // (B, T, H) in the order the direction read the input, then back to input order.
    let finish = |steps: Vec<Tensor>| -> Result<Tensor> {
        let mut y = Tensor::stack(&steps, 1)?;
        if let Some(m) = masks {
            y = y.broadcast_mul(&m.full)?;
        }
        if reverse {
            y = reverse_sequences(&y, rev_idx.unwrap())?;
        }
        Ok(y)
    };
    let output = if t == 0 { Tensor::zeros((b, 0, hsz), x.dtype(), x.device())? } else { finish(outs)? };
    let trace = if trace && t > 0 {
        let pick = |sel: fn(&StepGates) -> Option<Tensor>| -> Result<Option<Tensor>> {
            let v: Option<Vec<Tensor>> = gate_log.iter().map(sel).collect();
            v.map(&finish).transpose()
        };
        Some(DirectionTrace {
            output_gate: pick(|g| g.o.clone())?,
            input_gate: pick(|g| g.i.clone())?,
            forget_gate: pick(|g| g.f.clone())?,
            cell: pick(|g| g.c.clone())?,
            reset_gate: pick(|g| g.r.clone())?,
            update_gate: pick(|g| g.z.clone())?,
            hidden: finish(hidden_log)?,
        })
    } else {
        None
    };
    Ok(DirectionOutput { output, final_state: LstmState { h, c }, trace })
}

#[cfg(test)]
#[path = "lstm_tests.rs"]
mod tests;
