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

pub struct Param {
    pub name: String,
    pub var: Var,
    /// Receives the l2 / l1 penalties.
    pub penalised: bool,
}

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
mod tests {
    use super::*;

    /// A row-sparse gradient gives the same weights, moments and norm bits as the dense
    /// gradient with zeros elsewhere, for every optimizer, with clipping, over three steps
    /// whose rows differ (so unused rows' moments decay), and falls back to the dense path
    /// when penalties apply.
    #[test]
    fn sparse_rows_step_equals_dense() {
        let (vocab, dim) = (37, 5);
        let mut rng = model::rng::SeededRng::new(4, "test");
        for kind in [OptimizerKind::Adam, OptimizerKind::Adamw, OptimizerKind::Sgd] {
            for penalised in [false, true] {
                let cfg = TrainConfig {
                    optimizer: kind,
                    lr: 0.01,
                    clip_norm: 0.5,
                    weight_decay: 0.1,
                    momentum: 0.9,
                    l2: 0.01,
                    ..Default::default()
                };
                let init: Vec<f32> = rng.normal_vec(vocab * dim, 0.0, 1.0).into_iter().map(|x| x as f32).collect();
                let mk = || Param {
                    name: "emb".into(),
                    var: Var::from_slice(&init, (vocab, dim), &Device::Cpu).unwrap(),
                    penalised,
                };
                let (pd, ps) = (vec![mk()], vec![mk()]);
                let (mut od, mut os) = (Optimizer::new(&cfg), Optimizer::new(&cfg));
                for step in 0..3 {
                    let rows: Vec<u32> = match step {
                        0 => vec![0, 3, 4, 36],
                        1 => vec![5],
                        _ => vec![3, 20, 21],
                    };
                    let vals: Vec<f32> =
                        rng.normal_vec(rows.len() * dim, 0.0, 1.0).into_iter().map(|x| x as f32).collect();
                    let r = SparseRows { dim, rows, values: vals };
                    let dense = Tensor::from_vec(r.to_dense(vocab), (vocab, dim), &Device::Cpu).unwrap();
                    // A GradStore holding `dense` for the dense run: the gradient of Σ w·dense.
                    let g = (pd[0].var.as_tensor() * &dense).unwrap().sum_all().unwrap().backward().unwrap();
                    let a = od.step(&pd, &g, 0.01).unwrap();
                    let empty = Tensor::zeros((), DType::F32, &Device::Cpu).unwrap().backward().unwrap();
                    let b = os.step_sparse(&ps, &empty, &[("emb".to_string(), r)], 0.01).unwrap();
                    assert_eq!(a.grad_norm.to_bits(), b.grad_norm.to_bits(), "{kind:?} step {step}");
                    assert_eq!(a.penalty.to_bits(), b.penalty.to_bits());
                    let flat = |p: &[Param]| p[0].var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let (wd, ws) = (flat(&pd), flat(&ps));
                    assert!(
                        wd.iter().zip(&ws).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{kind:?} penalised {penalised} step {step}"
                    );
                    assert_eq!(od.m, os.m);
                    assert_eq!(od.v, os.v);
                }
            }
        }
    }

    fn setup(kind: OptimizerKind, extra: impl Fn(&mut TrainConfig)) -> (Optimizer, Vec<Param>) {
        let mut cfg = TrainConfig { optimizer: kind, lr: 0.1, ..Default::default() };
        extra(&mut cfg);
        let var = Var::from_slice(&[1.0f32, -2.0, 3.0], 3, &Device::Cpu).unwrap();
        (Optimizer::new(&cfg), vec![Param { name: "w".into(), var, penalised: true }])
    }

    /// loss = Σ w², gradient 2w.
    fn grads(params: &[Param]) -> GradStore {
        params[0].var.as_tensor().sqr().unwrap().sum_all().unwrap().backward().unwrap()
    }

    fn values(p: &[Param]) -> Vec<f32> {
        p[0].var.as_tensor().to_vec1().unwrap()
    }

    #[test]
    fn adam_matches_reference_first_steps() {
        // PyTorch Adam(lr=0.1): each first step moves every weight by lr against its
        // gradient's sign (m̂/√v̂ = ±1).
        let (mut opt, p) = setup(OptimizerKind::Adam, |_| {});
        let g = grads(&p);
        opt.step(&p, &g, 0.1).unwrap();
        let w = values(&p);
        for (a, b) in w.iter().zip([0.9f32, -1.9, 2.9]) {
            assert!((a - b).abs() < 1e-6, "{w:?}");
        }
    }

    #[test]
    fn sgd_momentum_and_decoupled_decay() {
        let (mut opt, p) = setup(OptimizerKind::Sgd, |c| {
            c.momentum = 0.5;
            c.weight_decay = 0.1;
        });
        let g = grads(&p);
        opt.step(&p, &g, 0.1).unwrap();
        // w ← w·(1 − 0.1·0.1) − 0.1·2w
        assert!((values(&p)[0] - (0.99 - 0.2)).abs() < 1e-6);
        let g = grads(&p);
        opt.step(&p, &g, 0.1).unwrap();
        let w1 = 0.79f32;
        let m = 0.5 * 2.0 + 2.0 * w1;
        assert!((values(&p)[0] - (w1 * 0.99 - 0.1 * m)).abs() < 1e-6);
    }

    #[test]
    fn l2_penalty_adds_gradient_and_reports_value() {
        let (mut opt, p) = setup(OptimizerKind::Sgd, |c| {
            c.momentum = 0.0;
            c.l2 = 0.5;
        });
        assert!((opt.penalty(&p).unwrap() - 0.5 * 14.0).abs() < 1e-9);
        let g = grads(&p);
        let r = opt.step(&p, &g, 0.1).unwrap();
        assert!((r.penalty - 7.0).abs() < 1e-9);
        // gradient 2w + 2·0.5·w = 3w
        assert!((values(&p)[0] - (1.0 - 0.3)).abs() < 1e-6);
    }

    #[test]
    fn clipping_scales_to_the_global_norm() {
        let (mut opt, p) = setup(OptimizerKind::Sgd, |c| {
            c.momentum = 0.0;
            c.clip_norm = 1.0;
        });
        let g = grads(&p);
        let r = opt.step(&p, &g, 1.0).unwrap();
        let norm = (4.0f64 + 16.0 + 36.0).sqrt();
        assert!((r.grad_norm - norm).abs() < 1e-6);
        let w = values(&p);
        assert!((w[0] as f64 - (1.0 - 2.0 / norm)).abs() < 1e-5, "{w:?}");
    }

    #[test]
    fn state_round_trips() {
        let (mut opt, p) = setup(OptimizerKind::Adam, |_| {});
        let g = grads(&p);
        opt.step(&p, &g, 0.1).unwrap();
        let saved = opt.state_tensors().unwrap();
        let mut again = Optimizer::new(&TrainConfig::default());
        again.load_state(opt.step, &saved).unwrap();
        assert_eq!(again.m, opt.m);
        assert_eq!(again.v, opt.v);
    }

    /// The optimizer as it was before the in-place rewrite (host copies, materialised
    /// gradient), kept as the bit-exact reference.
    #[allow(clippy::too_many_arguments)]
    fn reference_step(
        cfg: &TrainConfig,
        step: u64,
        ws: &mut [Vec<f32>],
        gs: &[Vec<f32>],
        penalised: &[bool],
        ms: &mut [Vec<f32>],
        vs: &mut [Vec<f32>],
        lr: f64,
    ) -> f64 {
        let mut sq = 0.0f64;
        let mut gg = Vec::new();
        for (k, (w, g)) in ws.iter().zip(gs).enumerate() {
            let mut g = g.clone();
            if penalised[k] && (cfg.l2 != 0.0 || cfg.l1 != 0.0) {
                let (l2x2, l1) = (2.0 * cfg.l2 as f32, cfg.l1 as f32);
                for (gi, wi) in g.iter_mut().zip(w) {
                    *gi += l2x2 * wi + l1 * sign(*wi);
                }
            }
            // The summation order is the one change of arithmetic: 8 interleaved partial sums.
            sq += sum_squares(&g, |_, x| x);
            gg.push(g);
        }
        let grad_norm = sq.sqrt();
        let scale = if cfg.clip_norm > 0.0 && grad_norm > cfg.clip_norm {
            (cfg.clip_norm / (grad_norm + 1e-6)) as f32
        } else {
            1.0
        };
        let t = step as i32;
        let (b1, b2) = (cfg.beta1 as f32, cfg.beta2 as f32);
        let bc1 = 1.0 - cfg.beta1.powi(t);
        let bc2 = 1.0 - cfg.beta2.powi(t);
        let step_size = (lr / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let eps = cfg.eps as f32;
        let decay = (1.0 - lr * cfg.weight_decay) as f32;
        let mom = cfg.momentum as f32;
        for (k, g) in gg.iter().enumerate() {
            let (w, m, v) = (&mut ws[k], &mut ms[k], &mut vs[k]);
            for j in 0..w.len() {
                let gj = g[j] * scale;
                match cfg.optimizer {
                    OptimizerKind::Adam | OptimizerKind::Adamw => {
                        m[j] = b1 * m[j] + (1.0 - b1) * gj;
                        v[j] = b2 * v[j] + (1.0 - b2) * gj * gj;
                        if cfg.weight_decay != 0.0 {
                            w[j] *= decay;
                        }
                        w[j] -= step_size * m[j] / (v[j].sqrt() / bc2_sqrt + eps);
                    }
                    OptimizerKind::Sgd => {
                        m[j] = if mom != 0.0 { mom * m[j] + gj } else { gj };
                        if cfg.weight_decay != 0.0 {
                            w[j] *= decay;
                        }
                        w[j] -= lr as f32 * m[j];
                    }
                }
            }
        }
        grad_norm
    }

    #[test]
    fn in_place_update_is_bit_identical_to_the_reference() {
        let mut rng = model::rng::SeededRng::new(7, "optim-test");
        let shapes = [(5usize, 3usize), (7, 1), (1, 11)];
        type Variant = (&'static str, Box<dyn Fn(&mut TrainConfig)>);
        let variants: Vec<Variant> = vec![
            ("adam", Box::new(|c: &mut TrainConfig| c.optimizer = OptimizerKind::Adam)),
            (
                "adam+l2+l1+clip",
                Box::new(|c: &mut TrainConfig| {
                    c.optimizer = OptimizerKind::Adam;
                    c.l2 = 0.01;
                    c.l1 = 0.001;
                    c.clip_norm = 0.5;
                }),
            ),
            (
                "adamw",
                Box::new(|c: &mut TrainConfig| {
                    c.optimizer = OptimizerKind::Adamw;
                    c.weight_decay = 0.1;
                }),
            ),
            (
                "sgd momentum decay clip",
                Box::new(|c: &mut TrainConfig| {
                    c.optimizer = OptimizerKind::Sgd;
                    c.momentum = 0.9;
                    c.weight_decay = 0.05;
                    c.clip_norm = 0.3;
                }),
            ),
            (
                "sgd plain l2",
                Box::new(|c: &mut TrainConfig| {
                    c.optimizer = OptimizerKind::Sgd;
                    c.momentum = 0.0;
                    c.l2 = 0.02;
                }),
            ),
        ];
        for (name, set) in variants {
            let mut cfg = TrainConfig { lr: 0.05, ..Default::default() };
            set(&mut cfg);
            let mut opt = Optimizer::new(&cfg);
            let penalised = [true, false, true];
            let params: Vec<Param> = shapes
                .iter()
                .enumerate()
                .map(|(k, &(r, c))| {
                    let v: Vec<f32> = rng.normal_vec(r * c, 0.0, 1.0).into_iter().map(|x| x as f32).collect();
                    Param {
                        name: format!("p{k}"),
                        var: Var::from_vec(v, (r, c), &Device::Cpu).unwrap(),
                        penalised: penalised[k],
                    }
                })
                .collect();
            let mut ws: Vec<Vec<f32>> = params.iter().map(|p| to_vec(p.var.as_tensor()).unwrap()).collect();
            let mut ms: Vec<Vec<f32>> = ws.iter().map(|w| vec![0.0; w.len()]).collect();
            let mut vs = ms.clone();
            for step in 1..=4u64 {
                // loss = Σ_k Σ r_k ⊙ w_k³: gradients 3 r w², different per element.
                let rs: Vec<Tensor> = shapes
                    .iter()
                    .map(|&(r, c)| rng.normal_tensor((r, c), 0.0, 1.0, DType::F32, &Device::Cpu).unwrap())
                    .collect();
                let mut loss = Tensor::zeros((), DType::F32, &Device::Cpu).unwrap();
                for (p, r) in params.iter().zip(&rs) {
                    loss = (loss + (p.var.as_tensor().powf(3.0).unwrap() * r).unwrap().sum_all().unwrap()).unwrap();
                }
                let grads = loss.backward().unwrap();
                let gs: Vec<Vec<f32>> =
                    params.iter().map(|p| to_vec(grads.get(p.var.as_tensor()).unwrap()).unwrap()).collect();
                let report = opt.step(&params, &grads, 0.05).unwrap();
                let norm = reference_step(&cfg, step, &mut ws, &gs, &penalised, &mut ms, &mut vs, 0.05);
                assert_eq!(report.grad_norm.to_bits(), norm.to_bits(), "{name} step {step}");
                for (k, p) in params.iter().enumerate() {
                    let got = to_vec(p.var.as_tensor()).unwrap();
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&ws[k]), "{name} step {step} weights p{k}");
                    assert_eq!(bits(&opt.m[&p.name]), bits(&ms[k]), "{name} step {step} m p{k}");
                    if matches!(cfg.optimizer, OptimizerKind::Adam | OptimizerKind::Adamw) {
                        assert_eq!(bits(&opt.v[&p.name]), bits(&vs[k]), "{name} step {step} v p{k}");
                    }
                }
            }
        }
    }

    #[test]
    fn updates_in_place_without_replacing_the_storage() {
        // A detached view shares the parameter's storage: an in-place update shows through it.
        let (mut opt, p) = setup(OptimizerKind::Adam, |_| {});
        let view = p[0].var.as_tensor().detach();
        let g = grads(&p);
        opt.step(&p, &g, 0.1).unwrap();
        assert_eq!(view.to_vec1::<f32>().unwrap(), values(&p));
    }

    #[test]
    fn non_f32_parameters_take_the_generic_path() {
        let cfg = TrainConfig { optimizer: OptimizerKind::Sgd, momentum: 0.0, lr: 0.1, ..Default::default() };
        let var = Var::from_slice(&[1.0f64, -2.0, 3.0], 3, &Device::Cpu).unwrap();
        let p = vec![Param { name: "w".into(), var, penalised: true }];
        let mut opt = Optimizer::new(&cfg);
        let g = p[0].var.as_tensor().sqr().unwrap().sum_all().unwrap().backward().unwrap();
        opt.step(&p, &g, 0.1).unwrap();
        // The generic path computes in f32, as before the rewrite.
        let want: Vec<f64> = [0.8f32, -1.6, 2.4].iter().map(|&x| x as f64).collect();
        assert_eq!(p[0].var.as_tensor().to_vec1::<f64>().unwrap(), want);
    }
}
