//! The training losses as fused CPU ops: label-smoothed cross-entropy over logits, and the
//! generator's projection and cross-entropy in one op.

use crate::ops::{contiguous, cpu_slices, dispatch_bwd, dispatch_fwd, FloatBwd, FloatFwd};
use crate::{Error, Result};
use candle_core::{CpuStorage, DType, Layout, Shape, Tensor};

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
        self.grad_rows(x, v, |i| g * self.weights[i] as f64);
    }

    /// Turns the logits `x` (rows of `v`) into scale_i·∂loss_i/∂logits in place, row i's
    /// scale given by `scale` (rows of weight 0 get a zero gradient).
    fn grad_rows<T: CeElem>(&self, x: &mut [T], v: usize, scale: impl Fn(usize) -> f64 + Sync) {
        use rayon::prelude::*;
        let lses = self.lse.lock().expect("lse lock");
        let uniform = self.eps / v as f64;
        let grad_row = ce_grad_fn::<T>();
        x.par_chunks_mut(v).enumerate().for_each(|(i, row)| {
            if self.weights[i] == 0.0 {
                row.fill(T::zero());
                return;
            }
            let scale = scale(i);
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

impl<T: CeElem> FloatFwd<T, 1> for SmoothedCe {
    fn forward(&self, [(logits, layout)]: [(&CpuStorage, &Layout); 1]) -> candle_core::Result<(Vec<T>, Shape)> {
        let rows = self.rows(contiguous::<T>(logits, layout, "logits")?, layout.dims()[1]);
        let total: f64 = rows.iter().map(|r| r.0).sum();
        *self.lse.lock().expect("lse lock") = rows.iter().map(|r| r.1).collect();
        Ok((vec![T::from_f64(total)], Shape::from(())))
    }
}

impl<T: CeElem> FloatBwd<T, 1> for SmoothedCe {
    fn backward(&self, [logits]: [&Tensor; 1], grad: &Tensor) -> candle_core::Result<[Option<Tensor>; 1]> {
        let (n, v) = logits.dims2()?;
        let g = grad.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        // The logits are read in place (the forward made them contiguous).
        let dx = cpu_slices::<T, _, 1>([(logits, "logits")], |[x]| {
            let mut out = x.to_vec();
            self.grad_in_place(&mut out, v, g);
            out
        })?;
        Ok([Some(Tensor::from_vec(dx, (n, v), logits.device())?)])
    }
}

impl candle_core::CustomOp1 for SmoothedCe {
    fn name(&self) -> &'static str {
        "label-smoothed-cross-entropy"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch_fwd(self, "label-smoothed cross-entropy", [(storage, layout)])
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let [dx] = dispatch_bwd(self, "label-smoothed cross-entropy", [arg], grad_res)?;
        Ok(dx)
    }
}

/// `generator_loss`'s op over (h̃ rows (R, D), generator weight (V, D), bias (V)).
struct GeneratorCe {
    ce: SmoothedCe,
    /// Output each row's weighted log-probability of its target, −w·nll (R), instead of the
    /// summed loss (a scalar): what the pointer-generator's mixture reads.
    per_row: bool,
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
        // SAFETY: `out` holds r·v initialised values (r copies of b), written at row stride v;
        // `h` holds r·d values read as (r, d) with strides (d, 1) and `w` v·d values read as
        // Wᵀ (d, v) with strides (1, d), so every access is in bounds; `out` is a fresh
        // allocation, so it aliases neither input.
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

    /// The op's output values (the summed loss, or −loss per row) and the logits.
    fn fwd<T: CeElem>(&self, h: &[T], w: &[T], b: &[T], d: usize) -> (Vec<T>, Vec<T>) {
        let logits = Self::logits(h, w, b, d);
        let rows = self.ce.rows(&logits, b.len());
        *self.ce.lse.lock().expect("lse lock") = rows.iter().map(|r| r.1).collect();
        let out = if self.per_row {
            rows.iter().map(|r| T::from_f64(-r.0)).collect()
        } else {
            vec![T::from_f64(rows.iter().map(|r| r.0).sum())]
        };
        (out, logits)
    }

    /// (dh, dW, db) from the logits turned into their gradient; `g` is the output's gradient
    /// (one value, or one per row).
    fn bwd<T: CeElem>(&self, mut dl: Vec<T>, h: &[T], w: &[T], d: usize, g: &[f64]) -> (Vec<T>, Vec<T>, Vec<T>) {
        let (r, v) = (h.len() / d.max(1), w.len() / d.max(1));
        if self.per_row {
            // out_i = −w_i·nll_i, so the row's scale is −g_i·w_i.
            let wts = &self.ce.weights;
            self.ce.grad_rows(&mut dl, v, |i| -g[i] * wts[i] as f64);
        } else {
            self.ce.grad_in_place(&mut dl, v, g[0]);
        }
        let threads = crate::fused::kernel::pool_threads();
        let (mut dh, mut dw) = (vec![T::zero(); r * d], vec![T::zero(); v * d]);
        // SAFETY: `dl` holds r·v values (the logits), `w` v·d and `h` r·d (r = h.len() / d,
        // v = w.len() / d), read with the strides of those row-major shapes (or of their
        // transposes), so every access is in bounds; `dh` (r·d) and `dw` (v·d) are fresh
        // zeroed allocations, written at row stride d, aliasing no input.
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

impl<T: CeElem> FloatFwd<T, 3> for GeneratorCe {
    fn forward(
        &self,
        [(h, lh), (w, lw), (b, lb)]: [(&CpuStorage, &Layout); 3],
    ) -> candle_core::Result<(Vec<T>, Shape)> {
        let (out, logits) = self.fwd::<T>(
            contiguous(h, lh, "generator loss: h̃")?,
            contiguous(w, lw, "generator loss: weight")?,
            contiguous(b, lb, "generator loss: bias")?,
            lh.dims()[1],
        );
        if self.keep {
            *self.logits.lock().expect("logits lock") = Some(T::to_cpu_storage_owned(logits));
        }
        let shape = if self.per_row { Shape::from(out.len()) } else { Shape::from(()) };
        Ok((out, shape))
    }
}

impl<T: CeElem> FloatBwd<T, 3> for GeneratorCe {
    fn backward(&self, [h, w, b]: [&Tensor; 3], grad: &Tensor) -> candle_core::Result<[Option<Tensor>; 3]> {
        let g = if self.per_row {
            grad.to_dtype(DType::F64)?.to_vec1::<f64>()?
        } else {
            vec![grad.to_dtype(DType::F64)?.to_scalar::<f64>()?]
        };
        // The forward's logits when it kept them (training), else recomputed.
        let kept = self.logits.lock().expect("logits lock").take().and_then(|s| T::cpu_storage_data(s).ok());
        let d = h.dim(1)?;
        let (dh, dw, db) = cpu_slices::<T, _, 3>(
            [(h, "generator loss: h̃"), (w, "generator loss: weight"), (b, "generator loss: bias")],
            |[hv, wv, bv]| {
                let dl = kept.unwrap_or_else(|| GeneratorCe::logits(hv, wv, bv, d));
                self.bwd(dl, hv, wv, d, &g)
            },
        )?;
        let dev = h.device();
        Ok([
            Some(Tensor::from_vec(dh, h.shape(), dev)?),
            Some(Tensor::from_vec(dw, w.shape(), dev)?),
            Some(Tensor::from_vec(db, b.shape(), dev)?),
        ])
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
        dispatch_fwd(self, "generator loss", [(s1, l1), (s2, l2), (s3, l3)])
    }

    fn bwd(
        &self,
        h: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let [dh, dw, db] = dispatch_bwd(self, "generator loss", [h, w, b], grad_res)?;
        Ok((dh, dw, db))
    }
}

/// [`super::Seq2Seq::generator_loss`] of h̃ rows `hidden` (R, D) through the generator's
/// weight `w` (V, D) and bias `b` (V).
pub(super) fn generator_cross_entropy(
    hidden: &Tensor,
    w: &Tensor,
    b: &Tensor,
    targets: &[u32],
    weights: &[f32],
    eps: f64,
) -> Result<Tensor> {
    check_ce_inputs(hidden.dim(0)?, w.dim(0)?, targets, weights, eps)?;
    let flat = hidden.contiguous()?;
    let keep = flat.track_op() || w.track_op() || b.track_op();
    let op = GeneratorCe {
        ce: SmoothedCe { targets: targets.to_vec(), weights: weights.to_vec(), eps, lse: Default::default() },
        per_row: false,
        keep,
        logits: Default::default(),
    };
    Ok(flat.apply_op3(&w.contiguous()?, &b.contiguous()?, op)?)
}

/// [`super::Seq2Seq::generator_log_prob`]: per row of h̃ `hidden` (R, D), the weighted
/// log-probability w·log softmax(h̃ Wᵀ + b)[target] (R), through the same fused projection as
/// the loss, with gradients for any per-row upstream gradient. Rows of weight 0 give 0.
pub(super) fn generator_log_prob(
    hidden: &Tensor,
    w: &Tensor,
    b: &Tensor,
    targets: &[u32],
    weights: &[f32],
) -> Result<Tensor> {
    check_ce_inputs(hidden.dim(0)?, w.dim(0)?, targets, weights, 0.0)?;
    let flat = hidden.contiguous()?;
    let keep = flat.track_op() || w.track_op() || b.track_op();
    let op = GeneratorCe {
        ce: SmoothedCe { targets: targets.to_vec(), weights: weights.to_vec(), eps: 0.0, lse: Default::default() },
        per_row: true,
        keep,
        logits: Default::default(),
    };
    Ok(flat.apply_op3(&w.contiguous()?, &b.contiguous()?, op)?)
}
