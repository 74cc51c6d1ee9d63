//! Optimizers (Adam, AdamW, SGD with momentum) with the regularisers and clipping folded
//! into one pass over each parameter.
//!
//! Two L2 forms, deliberately different:
//! - `l2` is a penalty λ·Σw² on the loss. Its gradient 2λw is added to the data gradient
//!   *before* the adaptive scaling, so with Adam a weight with large gradient variance is
//!   barely regularised (Loshchilov & Hutter 2019).
//! - `weight_decay` is decoupled: after the adaptive step, w ← w − lr·wd·w, the same shrink
//!   for every weight whatever its gradient history (AdamW; for SGD the two coincide up to
//!   a factor of 2 and the order of momentum).
//!
//! `l1` is a penalty λ·Σ|w| whose subgradient λ·sign(w) joins the data gradient.
//! Penalties apply to weight matrices only: not biases, and not the embedding table unless
//! `l2_embeddings` asks for it. Their value is added to the reported loss.
//!
//! State lives in plain f32 vectors keyed by parameter name, so it saves to safetensors and
//! a resumed run continues bit for bit. Weights are updated in place in their own storage
//! (candle `InplaceOp2`), with no per-step allocation on CPU.

use crate::config::{OptimizerKind, TrainConfig};
use anyhow::{bail, Context, Result};
use candle_core::{
    backprop::GradStore, CpuStorage, DType, Device, InplaceOp1, InplaceOp2, Layout, Storage, Tensor, Var,
};
use model::ops::SparseRows;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// A trainable parameter as the optimizer sees it.
pub struct Param {
    /// The checkpoint's tensor name (keys the optimizer state).
    pub name: String,
    /// The variable updated in place.
    pub var: Var,
    /// Receives the l2 / l1 penalties.
    pub penalised: bool,
}

/// Adam, AdamW or SGD with momentum, with the L2/L1 penalties and gradient clipping of
/// `[train]`; its moments are part of the resume state.
pub struct Optimizer {
    kind: OptimizerKind,
    beta1: f64,
    beta2: f64,
    eps: f64,
    momentum: f64,
    l2: f64,
    l1: f64,
    weight_decay: f64,
    clip_norm: f64,
    /// Number of updates applied so far (Adam's bias correction uses it).
    pub step: u64,
    m: BTreeMap<String, Vec<f32>>,
    v: BTreeMap<String, Vec<f32>>,
}

/// What one update saw, for logging.
pub struct StepReport {
    /// Global gradient norm before clipping (data gradient plus penalty gradients).
    pub grad_norm: f64,
    /// λ₂·Σw² + λ₁·Σ|w| at the weights before the update.
    pub penalty: f64,
}

impl Optimizer {
    /// An optimizer with no state yet, from the `[train]` section.
    pub fn new(cfg: &TrainConfig) -> Self {
        Self {
            kind: cfg.optimizer,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            momentum: cfg.momentum,
            l2: cfg.l2,
            l1: cfg.l1,
            weight_decay: cfg.weight_decay,
            clip_norm: cfg.clip_norm,
            step: 0,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
        }
    }

    /// The penalty term for the reported loss, without touching gradients.
    pub fn penalty(&self, params: &[Param]) -> Result<f64> {
        if self.l2 == 0.0 && self.l1 == 0.0 {
            return Ok(0.0);
        }
        let mut total = 0.0;
        for p in params.iter().filter(|p| p.penalised) {
            total += with_f32(p.var.as_tensor(), |w| penalty_of(w, self.l2, self.l1))?;
        }
        Ok(total)
    }

    /// Applies one update with learning rate `lr`. Parameters without a gradient (unused in
    /// this batch's graph) are left alone, as PyTorch leaves a parameter whose grad is None.
    ///
    /// Two passes over each (weight, gradient) pair, reading them where they lie: the first
    /// sums the penalties and the squared norm of the penalised gradient, the second updates
    /// the weights and moments in place. On CPU f32 parameters nothing is allocated per step
    /// (the penalised, clipped gradient is recomputed element by element in the second pass,
    /// with the same f32 operations, so the result is the same bits as materialising it);
    /// other devices and dtypes go through host copies and `Var::set`.
    pub fn step(&mut self, params: &[Param], grads: &GradStore, lr: f64) -> Result<StepReport> {
        self.step_sparse(params, grads, &[], lr)
    }

    /// `step` where some parameters' gradients come row-sparse (`sparse`, by parameter name:
    /// an embedding table's used rows, see `model::ops::embed`) instead of from `grads`. The
    /// result is the dense update with zero gradient in the other rows, bit for bit (the
    /// moments of unused rows still decay, as PyTorch's dense Adam does); only the
    /// vocabulary-sized gradient is never built (with penalties on the parameter it is).
    pub fn step_sparse(
        &mut self,
        params: &[Param],
        grads: &GradStore,
        sparse: &[(String, SparseRows)],
        lr: f64,
    ) -> Result<StepReport> {
        let mut work: Vec<(usize, Grad)> = Vec::with_capacity(params.len());
        let mut sq = 0.0f64;
        let mut penalty = 0.0f64;
        for (i, p) in params.iter().enumerate() {
            let rows = sparse.iter().find(|(name, _)| *name == p.name).map(|(_, r)| r);
            let fold = self.fold(p);
            let w = p.var.as_tensor();
            let g = match (grads.get(w), rows) {
                (Some(_), Some(_)) => bail!("{}: both a dense and a row-sparse gradient", p.name),
                (None, None) => continue,
                (Some(g), None) => g.clone(),
                (None, Some(r)) => {
                    let (vocab, dim) =
                        w.dims2().with_context(|| format!("{}: a row-sparse gradient needs a matrix", p.name))?;
                    if r.dim != dim
                        || r.rows.iter().any(|&k| k as usize >= vocab)
                        || r.values.len() != r.rows.len() * dim
                    {
                        bail!("{}: row-sparse gradient does not fit the ({vocab}, {dim}) parameter", p.name);
                    }
                    let cpu_f32 = w.device().is_cpu() && w.dtype() == DType::F32 && w.is_contiguous();
                    if fold.active || !cpu_f32 {
                        // Penalties make every row's gradient non-zero: build it densely.
                        Tensor::from_vec(r.to_dense(vocab), (vocab, dim), w.device())?.to_dtype(w.dtype())?
                    } else {
                        sq += sum_squares_rows(r);
                        work.push((i, Grad::Rows(r)));
                        continue;
                    }
                }
            };
            let g = if g.is_contiguous() { g } else { g.contiguous()? };
            let (ps, gs) = with_f32_pair(w, &g, |w, g| {
                let pen = if fold.active { penalty_of(w, self.l2, self.l1) } else { 0.0 };
                let s = if fold.active { sum_squares(g, |j, x| fold.grad(x, w[j])) } else { sum_squares(g, |_, x| x) };
                (pen, s)
            })
            .with_context(|| format!("gradient of {}", p.name))?;
            penalty += ps;
            sq += gs;
            work.push((i, Grad::Dense(g)));
        }
        let grad_norm = sq.sqrt();
        if !grad_norm.is_finite() {
            bail!("gradient norm is {grad_norm}");
        }
        let scale = if self.clip_norm > 0.0 && grad_norm > self.clip_norm {
            (self.clip_norm / (grad_norm + 1e-6)) as f32
        } else {
            1.0
        };
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        let rule = Rule {
            adam: matches!(self.kind, OptimizerKind::Adam | OptimizerKind::Adamw),
            b1: self.beta1 as f32,
            b2: self.beta2 as f32,
            lr: lr as f32,
            step_size: (lr / bc1) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            eps: self.eps as f32,
            decay: (self.weight_decay != 0.0).then_some((1.0 - lr * self.weight_decay) as f32),
            momentum: self.momentum as f32,
            scale,
        };
        for (i, g) in work {
            let p = &params[i];
            let n = p.var.elem_count();
            let fold = self.fold(p);
            let m = self.m.entry(p.name.clone()).or_insert_with(|| vec![0.0; n]);
            let v = if rule.adam {
                Some(self.v.entry(p.name.clone()).or_insert_with(|| vec![0.0; n]).as_mut_slice())
            } else {
                None
            };
            let w = p.var.as_tensor();
            if m.len() != n || v.as_ref().is_some_and(|v| v.len() != n) {
                bail!("optimizer state of {} has {} values, the parameter {n}", p.name, m.len());
            }
            let g = match g {
                Grad::Rows(r) => {
                    let op = InPlaceRows { rule: &rule, fold, rows: r, m: RefCell::new(m), v: RefCell::new(v) };
                    w.inplace_op1(&op).with_context(|| format!("updating {}", p.name))?;
                    continue;
                }
                Grad::Dense(g) => g,
            };
            if w.device().is_cpu() && w.dtype() == DType::F32 && g.dtype() == DType::F32 {
                let op = InPlace { rule: &rule, fold, m: RefCell::new(m), v: RefCell::new(v) };
                w.inplace_op2(&g, &op).with_context(|| format!("updating {}", p.name))?;
            } else {
                let mut wv = to_vec(w)?;
                let gv = to_vec(&g)?;
                rule.apply(fold, &mut wv, &gv, m, v);
                let new = Tensor::from_vec(wv, w.shape(), w.device())?.to_dtype(w.dtype())?;
                p.var.set(&new).with_context(|| format!("updating {}", p.name))?;
            }
        }
        Ok(StepReport { grad_norm, penalty })
    }

    fn fold(&self, p: &Param) -> Fold {
        Fold {
            active: p.penalised && (self.l2 != 0.0 || self.l1 != 0.0),
            l2x2: 2.0 * self.l2 as f32,
            l1: self.l1 as f32,
        }
    }

    /// Optimizer state as named tensors (`m.<param>`, `v.<param>`) plus the step count.
    pub fn state_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (prefix, map) in [("m", &self.m), ("v", &self.v)] {
            for (name, data) in map {
                out.insert(format!("{prefix}.{name}"), Tensor::from_slice(data, data.len(), &Device::Cpu)?);
            }
        }
        Ok(out)
    }

    /// Restores the step count and the moments written by `state_tensors`.
    pub fn load_state(&mut self, step: u64, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
        self.step = step;
        self.m.clear();
        self.v.clear();
        for (key, t) in tensors {
            let data = t.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            if let Some(name) = key.strip_prefix("m.") {
                self.m.insert(name.to_string(), data);
            } else if let Some(name) = key.strip_prefix("v.") {
                self.v.insert(name.to_string(), data);
            } else {
                bail!("unexpected optimizer state tensor `{key}`");
            }
        }
        Ok(())
    }
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
}

/// Runs `f` on the tensor's values as an f32 slice: borrowed from the storage for a
/// contiguous CPU f32 tensor, a host copy otherwise.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    if t.device().is_cpu() && t.dtype() == DType::F32 {
        let (storage, layout) = t.storage_and_layout();
        if let (Some((a, b)), Storage::Cpu(CpuStorage::F32(data))) = (layout.contiguous_offsets(), &*storage) {
            return Ok(f(&data[a..b]));
        }
    }
    Ok(f(&to_vec(t)?))
}

fn with_f32_pair<R>(a: &Tensor, b: &Tensor, f: impl FnOnce(&[f32], &[f32]) -> R) -> Result<R> {
    with_f32(a, |a| with_f32(b, |b| f(a, b)))?
}

/// How the penalties join a parameter's gradient: g + (2λ₂w + λ₁·sign(w)) in f32, exactly
/// the expression the reported gradient norm is taken of.
#[derive(Clone, Copy)]
struct Fold {
    active: bool,
    l2x2: f32,
    l1: f32,
}

impl Fold {
    #[inline(always)]
    fn grad(self, g: f32, w: f32) -> f32 {
        if self.active {
            g + (self.l2x2 * w + self.l1 * sign(w))
        } else {
            g
        }
    }
}

/// One step's coefficients, shared by every parameter.
struct Rule {
    adam: bool,
    b1: f32,
    b2: f32,
    lr: f32,
    /// lr / (1 − β₁ᵗ)
    step_size: f32,
    /// √(1 − β₂ᵗ)
    bc2_sqrt: f32,
    eps: f32,
    /// 1 − lr·wd when decoupled decay is on.
    decay: Option<f32>,
    momentum: f32,
    /// Global-norm clipping factor (1 when not clipping).
    scale: f32,
}

impl Rule {
    /// The update of one parameter, in place on its weights and moments. The arithmetic is
    /// the same f32 expression per element whatever the instruction set (Rust never fuses
    /// a·b + c into an FMA on its own, and vector sqrt/div round like scalar ones), so the
    /// AVX-512 / AVX2 builds give the same bits as the portable one.
    fn apply(&self, fold: Fold, w: &mut [f32], g: &[f32], m: &mut [f32], v: Option<&mut [f32]>) {
        let n = w.len();
        assert!(g.len() == n && m.len() == n, "optimizer: mismatched buffer lengths");
        if let Some(v) = &v {
            assert_eq!(v.len(), n);
        }
        assert!(!self.adam || v.is_some(), "Adam keeps second moments");
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the features the function is compiled for.
                return unsafe { apply_avx512(self, fold, w, g, m, v) };
            }
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: as above: avx2 was detected at run time.
                return unsafe { apply_avx2(self, fold, w, g, m, v) };
            }
        }
        apply_body(self, fold, w, g, m, v)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn apply_avx512(r: &Rule, fold: Fold, w: &mut [f32], g: &[f32], m: &mut [f32], v: Option<&mut [f32]>) {
    apply_body(r, fold, w, g, m, v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn apply_avx2(r: &Rule, fold: Fold, w: &mut [f32], g: &[f32], m: &mut [f32], v: Option<&mut [f32]>) {
    apply_body(r, fold, w, g, m, v)
}

#[inline(always)]
fn apply_body(r: &Rule, fold: Fold, w: &mut [f32], g: &[f32], m: &mut [f32], v: Option<&mut [f32]>) {
    // Branch-free loops the compiler vectorises: the penalty fold is chosen outside the loop
    // and "no decay" multiplies by exactly 1 (w·1 = w bit for bit).
    let decay = r.decay.unwrap_or(1.0);
    let scale = r.scale;
    macro_rules! run {
        ($grad:expr) => {{
            let grad = $grad;
            match v {
                Some(v) if r.adam => {
                    let (b1, b2, c1, c2) = (r.b1, r.b2, 1.0 - r.b1, 1.0 - r.b2);
                    let (step_size, bc2_sqrt, eps) = (r.step_size, r.bc2_sqrt, r.eps);
                    for (((wj, &gj), mj), vj) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                        let gj = grad(gj, *wj) * scale;
                        let mn = b1 * *mj + c1 * gj;
                        let vn = b2 * *vj + c2 * gj * gj;
                        *mj = mn;
                        *vj = vn;
                        *wj = *wj * decay - step_size * mn / (vn.sqrt() / bc2_sqrt + eps);
                    }
                }
                _ => {
                    let (mom, lr) = (r.momentum, r.lr);
                    if mom != 0.0 {
                        for ((wj, &gj), mj) in w.iter_mut().zip(g).zip(m.iter_mut()) {
                            let gj = grad(gj, *wj) * scale;
                            let mn = mom * *mj + gj;
                            *mj = mn;
                            *wj = *wj * decay - lr * mn;
                        }
                    } else {
                        for ((wj, &gj), mj) in w.iter_mut().zip(g).zip(m.iter_mut()) {
                            let gj = grad(gj, *wj) * scale;
                            *mj = gj;
                            *wj = *wj * decay - lr * gj;
                        }
                    }
                }
            }
        }};
    }
    if fold.active {
        let (l2x2, l1) = (fold.l2x2, fold.l1);
        run!(move |g: f32, w: f32| g + (l2x2 * w + l1 * sign(w)))
    } else {
        run!(|g: f32, _w: f32| g)
    }
}

/// Σ f(j, g[j])² in f64 over eight interleaved partial sums (element j goes to sum j mod 8),
/// combined pairwise: a fixed order, so the same bits on every run and thread count, and
/// eight independent additions per step instead of one long dependency chain.
#[inline(always)]
fn sum_squares(g: &[f32], f: impl Fn(usize, f32) -> f32) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = g.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        for k in 0..8 {
            let x = f(base + k, c[k]) as f64;
            acc[k] += x * x;
        }
        base += 8;
    }
    for (k, &x) in chunks.remainder().iter().enumerate() {
        let x = f(base + k, x) as f64;
        acc[k] += x * x;
    }
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

/// `sum_squares` of the dense gradient `r` stands for, from its rows alone: element j still
/// goes to partial sum j mod 8 in ascending order, and the absent zeros add nothing, so the
/// result has the same bits.
fn sum_squares_rows(r: &SparseRows) -> f64 {
    let mut acc = [0.0f64; 8];
    for (k, &row) in r.rows.iter().enumerate() {
        let base = row as usize * r.dim;
        for (c, &x) in r.values[k * r.dim..][..r.dim].iter().enumerate() {
            let x = x as f64;
            acc[(base + c) % 8] += x * x;
        }
    }
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

/// The update as a candle in-place op on the parameter's own storage, the gradient as the
/// second operand (candle refuses it if the two share storage).
struct InPlace<'a> {
    rule: &'a Rule,
    fold: Fold,
    m: RefCell<&'a mut Vec<f32>>,
    v: RefCell<Option<&'a mut [f32]>>,
}

impl InplaceOp2 for InPlace<'_> {
    fn name(&self) -> &'static str {
        "optimizer-step"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        let (Some((a1, b1)), Some((a2, b2))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            candle_core::bail!("optimizer: parameter and gradient must be contiguous")
        };
        let (CpuStorage::F32(w), CpuStorage::F32(g)) = (s1, s2) else {
            candle_core::bail!("optimizer: in-place update needs f32 parameter and gradient")
        };
        let mut m = self.m.borrow_mut();
        let mut v = self.v.borrow_mut();
        self.rule.apply(self.fold, &mut w[a1..b1], &g[a2..b2], m.as_mut_slice(), v.as_deref_mut());
        Ok(())
    }
}

/// A parameter's gradient for the update pass.
enum Grad<'a> {
    Dense(Tensor),
    Rows(&'a SparseRows),
}

/// The update of a parameter whose gradient is row-sparse: the used rows with their
/// gradient, every other row with a zero gradient, through the same `Rule::apply` as the
/// dense path (so the same bits as a dense zero-filled gradient).
struct InPlaceRows<'a> {
    rule: &'a Rule,
    fold: Fold,
    rows: &'a SparseRows,
    m: RefCell<&'a mut Vec<f32>>,
    v: RefCell<Option<&'a mut [f32]>>,
}

impl InplaceOp1 for InPlaceRows<'_> {
    fn name(&self) -> &'static str {
        "optimizer-step-rows"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout) -> candle_core::Result<()> {
        let Some((a1, b1)) = l1.contiguous_offsets() else {
            candle_core::bail!("optimizer: parameter must be contiguous")
        };
        let CpuStorage::F32(w) = s1 else { candle_core::bail!("optimizer: in-place update needs an f32 parameter") };
        let w = &mut w[a1..b1];
        let n = w.len();
        let mut m = self.m.borrow_mut();
        let mut v = self.v.borrow_mut();
        let (m, mut v) = (m.as_mut_slice(), v.as_deref_mut());
        const CHUNK: usize = 4096;
        let zeros = [0f32; CHUNK];
        let d = self.rows.dim;
        let mut update = |lo: usize, hi: usize, g: Option<&[f32]>| {
            let mut a = lo;
            while a < hi {
                let b = match g {
                    Some(_) => hi,
                    None => hi.min(a + CHUNK),
                };
                let gs = match g {
                    Some(g) => g,
                    None => &zeros[..b - a],
                };
                self.rule.apply(self.fold, &mut w[a..b], gs, &mut m[a..b], v.as_deref_mut().map(|v| &mut v[a..b]));
                a = b;
            }
        };
        let mut at = 0;
        for (k, &r) in self.rows.rows.iter().enumerate() {
            let start = r as usize * d;
            update(at, start, None);
            update(start, start + d, Some(&self.rows.values[k * d..][..d]));
            at = start + d;
        }
        update(at, n, None);
        Ok(())
    }
}

fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

fn penalty_of(w: &[f32], l2: f64, l1: f64) -> f64 {
    let (mut s2, mut s1) = (0.0f64, 0.0f64);
    for &x in w {
        s2 += (x as f64) * (x as f64);
        s1 += (x as f64).abs();
    }
    l2 * s2 + l1 * s1
}

#[cfg(test)]
#[path = "optim_tests.rs"]
mod tests;
