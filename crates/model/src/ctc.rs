//! Connectionist Temporal Classification loss (Graves et al. 2006) as a candle op, with
//! PyTorch's semantics (`torch.nn.functional.ctc_loss`, blank = 0).
//!
//! The forward–backward recursions run in log space over the extended label sequence
//! l' = (blank, l₁, blank, l₂, …, blank) of length S = 2L + 1:
//!
//! - α_t(s) = y_t(l'_s) + logsumexp(α_{t−1}(s), α_{t−1}(s−1), α_{t−1}(s−2) if l'_s ≠ blank
//!   and l'_s ≠ l'_{s−2}), started from α_0(0) = y_0(blank), α_0(1) = y_0(l₁);
//! - β_t(s) likewise backwards from β_{T−1}(S−1) and β_{T−1}(S−2) (both include the emission
//!   at t, as in PyTorch's `LossCTC.cpp`);
//! - loss = −logsumexp(α_{T−1}(S−1), α_{T−1}(S−2)).
//!
//! The gradient is PyTorch's: ∂/∂y_t(c) = exp(y_t(c)) − exp(logsumexp_{s: l'_s = c}(α_t(s) +
//! β_t(s)) + loss − y_t(c)), i.e. the gradient with respect to the *logits* under a
//! log-softmax (Graves' eq. 16), which PyTorch returns for the log-probabilities too: composed
//! with a log-softmax it is exactly the true gradient, since each frame's posteriors sum to 1.
//! Frames past an utterance's input length get zero gradient.
//!
//! An infeasible pair (a target that needs more frames than the input has: its length plus
//! its adjacent repeats) has loss +∞ and NaN gradients, unless `zero_infinity`, which makes
//! both zero, as in PyTorch. Use [`feasible`] to name such utterances before training.
//!
//! The op runs in f64 inside for both f32 and f64 inputs and is checked against PyTorch
//! fixtures (`scripts/gen_ctc_fixtures.py`, `ctc_fixtures.json`) and by finite differences.
//!
//! ```
//! use candle_core::{DType, Device, Tensor, D};
//! use model::ctc::{ctc_loss, CtcOptions, Reduction};
//! // (batch, time, classes): 2 utterances, 6 frames, blank + 3 symbols.
//! let logits = Tensor::zeros((2, 6, 4), DType::F64, &Device::Cpu)?;
//! let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
//! let targets = vec![vec![1, 2, 2], vec![3]];
//! let loss = ctc_loss(&log_probs, &targets, &[6, 4], &CtcOptions::default())?;
//! assert!(loss.to_scalar::<f64>()? > 0.0);
//! # Ok::<(), model::Error>(())
//! ```

use crate::ops::{contiguous, cpu_slices, dispatch_bwd, dispatch_fwd, FloatBwd, FloatFwd};
use crate::{Error, Result};
use candle_core::{CpuStorage, DType, Layout, Shape, Tensor, WithDType};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// The blank symbol's class index.
pub const BLANK: u32 = 0;

/// How per-utterance losses are combined (PyTorch's `reduction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Reduction {
    /// Each loss divided by its target length (at least 1), then averaged over the batch.
    #[default]
    Mean,
    /// The sum of the losses.
    Sum,
    /// One loss per utterance, shape (batch,).
    None,
}

/// Options of [`ctc_loss`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CtcOptions {
    /// How the per-utterance losses are combined.
    pub reduction: Reduction,
    /// Infinite losses (infeasible alignments) and their gradients become zero.
    pub zero_infinity: bool,
}

/// Whether `target` can be aligned to `frames` frames: it needs one frame per label plus one
/// blank between each pair of equal adjacent labels.
pub fn feasible(target: &[u32], frames: usize) -> bool {
    min_frames(target) <= frames
}

/// The fewest frames a CTC alignment of `target` needs: its length plus its adjacent repeats.
pub fn min_frames(target: &[u32]) -> usize {
    target.len() + target.windows(2).filter(|w| w[0] == w[1]).count()
}

/// CTC loss of `log_probs` (batch, time, classes), log-probabilities over the classes with the
/// blank at index 0, against `targets` (one label sequence per utterance, ids in 1..classes),
/// reading the first `input_lengths[b]` frames of utterance b. Returns a scalar, or (batch,)
/// with [`Reduction::None`]. f32 or f64, on the CPU.
pub fn ctc_loss(
    log_probs: &Tensor,
    targets: &[Vec<u32>],
    input_lengths: &[usize],
    opts: &CtcOptions,
) -> Result<Tensor> {
    let (batch, time, classes) = log_probs.dims3().map_err(|_| {
        Error::Input(format!("ctc: expected log-probs (batch, time, classes), got {:?}", log_probs.dims()))
    })?;
    if targets.len() != batch || input_lengths.len() != batch {
        return Err(Error::Input(format!(
            "ctc: {} targets and {} input lengths for a batch of {batch}",
            targets.len(),
            input_lengths.len()
        )));
    }
    if classes < 2 {
        return Err(Error::Input(format!("ctc: {classes} classes; need the blank and at least one symbol")));
    }
    for (b, (t, &n)) in targets.iter().zip(input_lengths).enumerate() {
        if n == 0 || n > time {
            return Err(Error::Input(format!("ctc: input_lengths[{b}] = {n}, expected 1..={time}")));
        }
        if let Some(&id) = t.iter().find(|&&id| id == BLANK || id as usize >= classes) {
            return Err(Error::Input(format!(
                "ctc: targets[{b}] holds id {id}, expected 1..{classes} (0 is the blank)"
            )));
        }
    }
    if !log_probs.device().is_cpu() {
        return Err(Error::Input("ctc: the loss runs on the CPU only".into()));
    }
    let op = CtcOp {
        targets: targets.to_vec(),
        input_lengths: input_lengths.to_vec(),
        time,
        classes,
        zero_infinity: opts.zero_infinity,
        grads: Mutex::new(Vec::new()),
    };
    let losses = log_probs.contiguous()?.apply_op1(op)?;
    Ok(match opts.reduction {
        Reduction::None => losses,
        Reduction::Sum => losses.sum_all()?,
        Reduction::Mean => {
            let scale: Vec<f64> = targets.iter().map(|t| 1.0 / (t.len().max(1) * batch) as f64).collect();
            let scale = Tensor::from_vec(scale, batch, log_probs.device())?.to_dtype(log_probs.dtype())?;
            (losses * scale)?.sum_all()?
        }
    })
}

/// log(exp(a) + exp(b)) without overflow; −∞ when both are.
#[inline]
fn lse2(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + ((a - m).exp() + (b - m).exp()).ln()
}

#[inline]
fn lse3(a: f64, b: f64, c: f64) -> f64 {
    let m = a.max(b).max(c);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + ((a - m).exp() + (b - m).exp() + (c - m).exp()).ln()
}

/// One utterance's loss and gradient with respect to its (frames, classes) log-probs `lp`
/// (only the first `frames` rows are read). The gradient has `lp`'s shape, zero past `frames`.
pub fn ctc_single(lp: &[f64], classes: usize, frames: usize, target: &[u32], zero_infinity: bool) -> (f64, Vec<f64>) {
    let s_len = 2 * target.len() + 1;
    let label = |s: usize| if s.is_multiple_of(2) { BLANK as usize } else { target[s / 2] as usize };
    // Whether the skip transition s−2 → s is allowed.
    let skip = |s: usize| s >= 2 && s % 2 == 1 && label(s) != label(s - 2);
    let y = |t: usize, c: usize| lp[t * classes + c];
    let ninf = f64::NEG_INFINITY;
    let mut alpha = vec![ninf; frames * s_len];
    alpha[0] = y(0, label(0));
    if s_len > 1 {
        alpha[1] = y(0, label(1));
    }
    for t in 1..frames {
        let (prev, cur) = alpha.split_at_mut(t * s_len);
        let prev = &prev[(t - 1) * s_len..];
        for s in 0..s_len {
            let a = prev[s];
            let b = if s >= 1 { prev[s - 1] } else { ninf };
            let c = if skip(s) { prev[s - 2] } else { ninf };
            cur[s] = lse3(a, b, c) + y(t, label(s));
        }
    }
    let last = &alpha[(frames - 1) * s_len..];
    let ll = if s_len > 1 { lse2(last[s_len - 1], last[s_len - 2]) } else { last[0] };
    let nll = -ll;
    let mut grad = vec![0.0; lp.len()];
    if nll.is_infinite() && zero_infinity {
        return (0.0, grad);
    }
    let mut beta = vec![ninf; frames * s_len];
    let tl = frames - 1;
    beta[tl * s_len + s_len - 1] = y(tl, label(s_len - 1));
    if s_len > 1 {
        beta[tl * s_len + s_len - 2] = y(tl, label(s_len - 2));
    }
    for t in (0..tl).rev() {
        let (cur, next) = beta.split_at_mut((t + 1) * s_len);
        let cur = &mut cur[t * s_len..];
        for s in 0..s_len {
            let a = next[s];
            let b = if s + 1 < s_len { next[s + 1] } else { ninf };
            let c = if s + 2 < s_len && skip(s + 2) { next[s + 2] } else { ninf };
            cur[s] = lse3(a, b, c) + y(t, label(s));
        }
    }
    let mut acc = vec![ninf; classes];
    for t in 0..frames {
        acc.fill(ninf);
        for s in 0..s_len {
            let c = label(s);
            acc[c] = lse2(acc[c], alpha[t * s_len + s] + beta[t * s_len + s]);
        }
        for c in 0..classes {
            let lpc = y(t, c);
            grad[t * classes + c] = lpc.exp() - (acc[c] + nll - lpc).exp();
        }
    }
    (nll, grad)
}

struct CtcOp {
    targets: Vec<Vec<u32>>,
    input_lengths: Vec<usize>,
    time: usize,
    classes: usize,
    zero_infinity: bool,
    /// Per-utterance gradients of the losses, (batch, time, classes), from the forward pass.
    grads: Mutex<Vec<f64>>,
}

impl<T: WithDType> FloatFwd<T, 1> for CtcOp {
    fn forward(&self, [(s, l)]: [(&CpuStorage, &Layout); 1]) -> candle_core::Result<(Vec<T>, Shape)> {
        use rayon::prelude::*;
        let x = contiguous::<T>(s, l, "ctc log-probs")?;
        let per = self.time * self.classes;
        let results: Vec<(f64, Vec<f64>)> = x
            .par_chunks(per)
            .zip(self.targets.par_iter().zip(self.input_lengths.par_iter()))
            .map(|(rows, (target, &n))| {
                let lp: Vec<f64> = rows.iter().map(|v| v.to_f64()).collect();
                ctc_single(&lp, self.classes, n, target, self.zero_infinity)
            })
            .collect();
        let mut grads = self.grads.lock().expect("ctc gradient lock");
        grads.clear();
        grads.reserve(results.len() * per);
        let mut losses = Vec::with_capacity(results.len());
        for (loss, g) in results {
            losses.push(T::from_f64(loss));
            grads.extend(g);
        }
        Ok((losses, Shape::from(self.targets.len())))
    }
}

impl<T: WithDType> FloatBwd<T, 1> for CtcOp {
    fn backward(&self, [x]: [&Tensor; 1], grad: &Tensor) -> candle_core::Result<[Option<Tensor>; 1]> {
        let per = self.time * self.classes;
        let stored = self.grads.lock().expect("ctc gradient lock");
        let out = cpu_slices::<T, _, 1>([(grad, "ctc output gradient")], |[g]| {
            stored
                .chunks(per.max(1))
                .zip(g)
                .flat_map(|(rows, &gb)| {
                    let gb = gb.to_f64();
                    rows.iter().map(move |&v| T::from_f64(v * gb))
                })
                .collect::<Vec<T>>()
        })?;
        Ok([Some(Tensor::from_vec(out, x.shape(), x.device())?)])
    }
}

impl candle_core::CustomOp1 for CtcOp {
    fn name(&self) -> &'static str {
        "sluice-ctc-loss"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch_fwd(self, "ctc loss", [(storage, layout)])
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        if !matches!(arg.dtype(), DType::F32 | DType::F64) {
            candle_core::bail!("ctc loss: dtype {:?} not supported (f32, f64)", arg.dtype());
        }
        let [dx] = dispatch_bwd(self, "ctc loss", [arg], grad_res)?;
        Ok(dx)
    }
}

/// The most probable alignment (Viterbi) of `target` to the first `frames` rows of `lp`
/// (frames, classes): for each label, the frames it occupies as `(first, last)` (inclusive).
/// `None` when the target cannot be aligned in that many frames.
pub fn align(lp: &[f64], classes: usize, frames: usize, target: &[u32]) -> Option<Vec<(usize, usize)>> {
    if frames == 0 || !feasible(target, frames) {
        return None;
    }
    let s_len = 2 * target.len() + 1;
    let label = |s: usize| if s.is_multiple_of(2) { BLANK as usize } else { target[s / 2] as usize };
    let skip = |s: usize| s >= 2 && s % 2 == 1 && label(s) != label(s - 2);
    let ninf = f64::NEG_INFINITY;
    let mut score = vec![ninf; frames * s_len];
    let mut back = vec![0u8; frames * s_len];
    score[0] = lp[label(0)];
    if s_len > 1 {
        score[1] = lp[label(1)];
    }
    for t in 1..frames {
        for s in 0..s_len {
            let p = (t - 1) * s_len;
            let mut best = (score[p + s], 0u8);
            if s >= 1 && score[p + s - 1] > best.0 {
                best = (score[p + s - 1], 1);
            }
            if skip(s) && score[p + s - 2] > best.0 {
                best = (score[p + s - 2], 2);
            }
            score[t * s_len + s] = best.0 + lp[t * classes + label(s)];
            back[t * s_len + s] = best.1;
        }
    }
    let tl = frames - 1;
    let mut s =
        if s_len > 1 && score[tl * s_len + s_len - 2] > score[tl * s_len + s_len - 1] { s_len - 2 } else { s_len - 1 };
    if score[tl * s_len + s] == ninf {
        return None;
    }
    let mut spans = vec![(usize::MAX, 0usize); target.len()];
    for t in (0..frames).rev() {
        if s % 2 == 1 {
            let k = s / 2;
            spans[k] = if spans[k].0 == usize::MAX { (t, t) } else { (t, spans[k].1) };
        }
        s -= back[t * s_len + s] as usize;
    }
    Some(spans)
}

#[cfg(test)]
#[path = "ctc_tests.rs"]
mod tests;
