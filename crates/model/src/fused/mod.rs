//! Fused CPU LSTM: one direction of one layer over the whole sequence as a single candle op
//! with its own backward.
//!
//! Forward: one GEMM projects every step's input; per step one GEMM `h W_hh^T` accumulates into
//! the gate buffer, followed by SIMD gate math (see `simd` for the accuracy of exp, sigmoid and
//! tanh). Backward through time: one GEMM per step for `dh`, then single large GEMMs for
//! `dW_ih`, `dW_hh` and `dx`. Sequences may have different lengths (padded steps keep the
//! state and output zeros; the final state is the one at each sequence's last real token);
//! `reverse` runs right to left over each sequence's real tokens.
//!
//! candle custom ops take at most three tensors and return one, so the entry point packs
//! `[W_ih | W_hh | b_ih + b_hh (| peephole)]` into one weight tensor and `(h0, c0)` into one
//! state tensor with differentiable `cat`/`stack`, and splits the op's packed
//! flat output (outputs, final h, final c) with `narrow`.
//!
//! Threads: one per thread of rayon's global pool (`kernel::pool_threads()`: RAYON_NUM_THREADS,
//! or the pool the caller built with `build_global`), the pool candle's own matmul uses. With
//! at least 16 sequences per thread each thread runs its own interleaved share of the rows
//! through the whole sequence (rows are independent: no per-step synchronisation); with fewer
//! the per-step work is split over hidden-unit blocks and the threads meet after each step; the big GEMMs use gemm's rayon
//! parallelism with the same count. rayon workers sleep when idle. (candle's separate
//! barrier pool for element-wise ops was tried: its waits spin without yielding, which stalls
//! every step by a scheduler slice when the cores are shared with other processes.)
//!
//! Modules: `cell` the gate math of one step (where the output gate lives), `kernel` the
//! forward and backward time loops, `plan` their row/column layout, `gemm` and `micro` the
//! matrix products, `threads` how a step's work is shared, `real` and `simd` the element
//! types and their activations, `op` the candle custom ops around the kernel.

// Every unsafe operation sits in its own block, and every block says why it is sound.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod cell;
pub mod gemm;
pub mod kernel;
pub mod micro;
pub mod op;
pub mod plan;
pub mod real;
pub mod simd;
pub mod threads;

#[cfg(test)]
pub(crate) mod tests;

use crate::cell::DirectionWeights;
pub use crate::config::CellSpec;
use crate::config::Variant;
use candle_core::{DType, Device, Result, Tensor};

#[cfg(test)]
thread_local! {
    /// Tests force more blocks than cores to exercise the block split.
    pub(crate) static THREADS_OVERRIDE: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

fn op_threads() -> usize {
    #[cfg(test)]
    if let Some(t) = THREADS_OVERRIDE.with(|c| c.get()) {
        return t;
    }
    threads::pool_threads()
}

/// Whether the fused op runs for this device and dtype (CPU, f32/f64; every variant).
/// Elsewhere the layer uses the op-by-op path.
pub fn supports(device: &Device, dtype: DType) -> bool {
    device.is_cpu() && matches!(dtype, DType::F32 | DType::F64)
}

/// Vanilla (PyTorch `nn.LSTM`) direction. `x` (batch, time, input); `lengths` one per batch
/// row (each <= time; empty = all full); absent biases are zeros; returns (output (batch,
/// time, hidden), h_n (batch, hidden), c_n (batch, hidden)).
#[allow(clippy::too_many_arguments)]
pub fn lstm_direction(
    x: &Tensor,
    w_ih: &Tensor,
    w_hh: &Tensor,
    b_ih: Option<&Tensor>,
    b_hh: Option<&Tensor>,
    h0: Option<&Tensor>,
    c0: Option<&Tensor>,
    lengths: &[usize],
    reverse: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let zeros = || Tensor::zeros(w_ih.dim(0)?, x.dtype(), x.device());
    let w = DirectionWeights {
        w_ih: w_ih.clone(),
        w_hh: w_hh.clone(),
        b_ih: b_ih.cloned().map_or_else(zeros, Ok)?,
        b_hh: b_hh.cloned().map_or_else(zeros, Ok)?,
        peephole: None,
    };
    lstm_direction_variant(Variant::Vanilla, &w, x, h0, c0, lengths, reverse)
}

/// Checks shapes and packs one direction's weights as the op takes them:
/// `[W_ih | W_hh | b_ih + b_hh (| peephole)]`, (G*H, wcols), with differentiable ops.
fn pack_weights(variant: Variant, p: &DirectionWeights, x: &Tensor) -> Result<Tensor> {
    let (bias, peep) = check_and_columns(variant, p, x)?;
    let mut cols = vec![p.w_ih.clone(), p.w_hh.clone(), bias.unsqueeze(1)?];
    if let Some(col) = peep {
        cols.push(col.unsqueeze(1)?);
    }
    Tensor::cat(&cols, 1)?.contiguous()
}

/// Checks the shapes; returns the summed bias (G*H) and, for the peephole variant, the
/// peephole weights as a column over the gate rows (0 for g), both as differentiable tensors.
fn check_and_columns(variant: Variant, p: &DirectionWeights, x: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
    let spec = variant.spec();
    let (_, _, i) = x.dims3()?;
    let (rows, wi) = p.w_ih.dims2()?;
    let hidden = p.w_hh.dim(1)?;
    let ng = spec.gates().len();
    if !supports(x.device(), x.dtype()) {
        candle_core::bail!("fused lstm: unsupported device {:?} / dtype {:?}", x.device(), x.dtype());
    }
    if wi != i || rows != ng * hidden || p.w_hh.dims() != [ng * hidden, hidden] {
        candle_core::bail!(
            "fused lstm ({}): expected w_ih ({}, {i}) and w_hh ({}, {hidden}) for input {i}, hidden {hidden}; got {:?} and {:?}",
            variant.name(),
            ng * hidden,
            ng * hidden,
            p.w_ih.dims(),
            p.w_hh.dims()
        );
    }
    let dtype = x.dtype();
    let dev = x.device();
    let bias = p.b_ih.add(&p.b_hh)?.reshape(rows)?;
    let peep = match (spec.peephole, &p.peephole) {
        (true, Some(pp)) => {
            if pp.dims() != [3 * hidden] {
                candle_core::bail!(
                    "fused lstm (peephole): expected peephole weights ({}), got {:?}",
                    3 * hidden,
                    pp.dims()
                );
            }
            let zeros = Tensor::zeros(hidden, dtype, dev)?;
            // Rows follow the gates: i, f, g (no peephole), o.
            Some(Tensor::cat(&[pp.narrow(0, 0, 2 * hidden)?, zeros, pp.narrow(0, 2 * hidden, hidden)?], 0)?)
        }
        (true, None) => candle_core::bail!("fused lstm (peephole): missing peephole weights"),
        (false, Some(_)) => candle_core::bail!("fused lstm ({}): unexpected peephole weights", variant.name()),
        (false, None) => None,
    };
    Ok((bias, peep))
}

/// `(h0, c0)` stacked (2, batch, hidden), zeros where absent; the flag says whether the
/// caller gave any state (its gradient is returned only then).
fn pack_state(h0: Option<&Tensor>, c0: Option<&Tensor>, x: &Tensor, hidden: usize) -> Result<(Tensor, bool)> {
    let b = x.dim(0)?;
    let (dtype, dev) = (x.dtype(), x.device());
    if h0.is_none() && c0.is_none() {
        return Ok((Tensor::zeros((2, b, hidden), dtype, dev)?, false));
    }
    let zeros = || Tensor::zeros((b, hidden), dtype, dev);
    let h0 = match h0 {
        Some(h) => h.clone(),
        None => zeros()?,
    };
    let c0 = match c0 {
        Some(c) => c.clone(),
        None => zeros()?,
    };
    Ok((Tensor::stack(&[h0, c0], 0)?.contiguous()?, true))
}

fn check_lengths(lengths: &[usize], b: usize, t: usize) -> Result<Vec<usize>> {
    let lengths: Vec<usize> = if lengths.is_empty() { vec![t; b] } else { lengths.to_vec() };
    if lengths.len() != b || lengths.iter().any(|&l| l > t) {
        candle_core::bail!(
            "fused lstm: lengths {lengths:?} must have one entry per batch row ({b}), each <= time ({t})"
        );
    }
    Ok(lengths)
}

/// One direction of any variant over its weights `p`. See `lstm_direction` for shapes.
pub fn lstm_direction_variant(
    variant: Variant,
    p: &DirectionWeights,
    x: &Tensor,
    h0: Option<&Tensor>,
    c0: Option<&Tensor>,
    lengths: &[usize],
    reverse: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, t, _) = x.dims3()?;
    let hidden = p.w_hh.dim(1)?;
    let lengths = check_lengths(lengths, b, t)?;
    let (state, has_state) = pack_state(h0, c0, x, hidden)?;
    let threads = op_threads();
    let x = x.contiguous()?;
    let tracked =
        [Some(&x), Some(&p.w_ih), Some(&p.w_hh), Some(&p.b_ih), Some(&p.b_hh), p.peephole.as_ref(), Some(&state)];
    let needs_grad = tracked.into_iter().flatten().any(|t| t.track_op());
    // Flat: (batch, time, hidden) outputs, then h_n and c_n (batch, hidden); each part is a
    // contiguous view, so later ops never take candle's slow strided paths.
    let packed = if needs_grad {
        let w = pack_weights(variant, p, &x)?;
        let op = op::FusedLstmOp::new(variant.spec(), lengths, reverse, has_state, threads);
        x.apply_op3(&w, &state, op)?
    } else {
        // Inference: no graph node, the weights read where they lie, and the activations
        // freed at once.
        let (bias, peep) = check_and_columns(variant, p, &x)?;
        let op = op::FusedLstmInferOp {
            spec: variant.spec(),
            lengths,
            reverse,
            threads,
            bias: bias.contiguous()?,
            peep: peep.map(|p| p.contiguous()).transpose()?,
            state,
        };
        x.apply_op3_no_bwd(&p.w_ih.contiguous()?, &p.w_hh.contiguous()?, &op)?
    };
    let (bth, bh) = (b * t * hidden, b * hidden);
    let out = packed.narrow(0, 0, bth)?.reshape((b, t, hidden))?;
    let h_n = packed.narrow(0, bth, bh)?.reshape((b, hidden))?;
    let c_n = packed.narrow(0, bth + bh, bh)?.reshape((b, hidden))?;
    Ok((out, h_n, c_n))
}

/// Both directions of a bidirectional layer in one op (`op::FusedBiLstmOp`): the forward
/// direction over `p[0]`, the reverse one over `p[1]`, at the same time on half the threads
/// each. Returns the concatenated output (batch, time, 2·hidden) and each direction's
/// (h_n, c_n). `init[d]` is direction d's optional (h0, c0).
pub fn lstm_bidirectional_variant(
    variant: Variant,
    p: [&DirectionWeights; 2],
    x: &Tensor,
    init: [(Option<&Tensor>, Option<&Tensor>); 2],
    lengths: &[usize],
) -> Result<(Tensor, [(Tensor, Tensor); 2])> {
    let (b, t, _) = x.dims3()?;
    let hidden = p[0].w_hh.dim(1)?;
    if p[1].w_hh.dim(1)? != hidden {
        candle_core::bail!("fused lstm: the two directions have different hidden sizes");
    }
    let w = Tensor::stack(&[pack_weights(variant, p[0], x)?, pack_weights(variant, p[1], x)?], 0)?;
    let lengths = check_lengths(lengths, b, t)?;
    let (s0, h0) = pack_state(init[0].0, init[0].1, x, hidden)?;
    let (s1, h1) = pack_state(init[1].0, init[1].1, x, hidden)?;
    let state = Tensor::stack(&[s0, s1], 0)?;
    let mut op = op::FusedBiLstmOp::new(variant.spec(), lengths, h0 || h1, op_threads());
    let x = x.contiguous()?;
    let needs_grad = x.track_op() || w.track_op() || state.track_op();
    let packed = if needs_grad {
        x.apply_op3(&w, &state, op)?
    } else {
        op.save = false;
        x.apply_op3_no_bwd(&w, &state, &op)?
    };
    let (bt2h, bh) = (b * t * 2 * hidden, b * hidden);
    let out = packed.narrow(0, 0, bt2h)?.reshape((b, t, 2 * hidden))?;
    let part = |k: usize| -> Result<Tensor> { packed.narrow(0, bt2h + k * bh, bh)?.reshape((b, hidden)) };
    Ok((out, [(part(0)?, part(1)?), (part(2)?, part(3)?)]))
}
