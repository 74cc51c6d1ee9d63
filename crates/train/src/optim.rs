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
//! `l1` is a penalty λ·Σ|w| whose subgradient λ·sign(w) joins the data gradient.
//! Penalties apply to weight matrices only: not biases, and not the embedding table unless
//! `l2_embeddings` asks for it. Their value is added to the reported loss.
//!
//! State lives in plain f32 vectors keyed by parameter name, so it saves to safetensors and
//! a resumed run continues bit for bit.

use crate::config::{Optimizer as Kind, TrainConfig};
use anyhow::{bail, Context, Result};
use candle_core::{backprop::GradStore, DType, Device, Tensor, Var};
use std::collections::BTreeMap;

pub struct Param {
    pub name: String,
    pub var: Var,
    /// Receives the l2 / l1 penalties.
    pub penalised: bool,
}

pub struct Optimizer {
    kind: Kind,
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
            let w = to_vec(p.var.as_tensor())?;
            total += penalty_of(&w, self.l2, self.l1);
        }
        Ok(total)
    }

    /// Applies one update with learning rate `lr`. Parameters without a gradient (unused in
    /// this batch's graph) are left alone, as PyTorch leaves a parameter whose grad is None.
    pub fn step(&mut self, params: &[Param], grads: &GradStore, lr: f64) -> Result<StepReport> {
        // Gather gradients with the penalties folded in, then clip by the global norm.
        let mut work: Vec<(usize, Vec<f32>, Vec<f32>)> = Vec::with_capacity(params.len());
        let mut sq = 0.0f64;
        let mut penalty = 0.0f64;
        for (i, p) in params.iter().enumerate() {
            let Some(g) = grads.get(p.var.as_tensor()) else { continue };
            let w = to_vec(p.var.as_tensor())?;
            let mut g = to_vec(g).with_context(|| format!("gradient of {}", p.name))?;
            if p.penalised && (self.l2 != 0.0 || self.l1 != 0.0) {
                penalty += penalty_of(&w, self.l2, self.l1);
                let (l2x2, l1) = (2.0 * self.l2 as f32, self.l1 as f32);
                for (gi, wi) in g.iter_mut().zip(&w) {
                    *gi += l2x2 * wi + l1 * sign(*wi);
                }
            }
            sq += g.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>();
            work.push((i, w, g));
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
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        let lr32 = lr as f32;
        let step_size = (lr / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let eps = self.eps as f32;
        let decay = (1.0 - lr * self.weight_decay) as f32;
        let mom = self.momentum as f32;
        for (i, mut w, g) in work {
            let p = &params[i];
            let n = w.len();
            match self.kind {
                Kind::Adam | Kind::Adamw => {
                    let m = self.m.entry(p.name.clone()).or_insert_with(|| vec![0.0; n]);
                    let v = self.v.entry(p.name.clone()).or_insert_with(|| vec![0.0; n]);
                    for j in 0..n {
                        let gj = g[j] * scale;
                        m[j] = b1 * m[j] + (1.0 - b1) * gj;
                        v[j] = b2 * v[j] + (1.0 - b2) * gj * gj;
                        if self.weight_decay != 0.0 {
                            w[j] *= decay;
                        }
                        w[j] -= step_size * m[j] / (v[j].sqrt() / bc2_sqrt + eps);
                    }
                }
                Kind::Sgd => {
                    let m = self.m.entry(p.name.clone()).or_insert_with(|| vec![0.0; n]);
                    for j in 0..n {
                        let gj = g[j] * scale;
                        m[j] = if mom != 0.0 { mom * m[j] + gj } else { gj };
                        if self.weight_decay != 0.0 {
                            w[j] *= decay;
                        }
                        w[j] -= lr32 * m[j];
                    }
                }
            }
            let t = p.var.as_tensor();
            let new = Tensor::from_vec(w, t.shape(), t.device())?.to_dtype(t.dtype())?;
            p.var.set(&new).with_context(|| format!("updating {}", p.name))?;
        }
        Ok(StepReport { grad_norm, penalty })
    }

    /// Optimizer state as named tensors (`m.<param>`, `v.<param>`) plus the step count.
    pub fn state_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (prefix, map) in [("m", &self.m), ("v", &self.v)] {
            for (name, data) in map {
                out.insert(
                    format!("{prefix}.{name}"),
                    Tensor::from_slice(data, data.len(), &Device::Cpu)?,
                );
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

    fn setup(kind: Kind, extra: impl Fn(&mut TrainConfig)) -> (Optimizer, Vec<Param>) {
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
        let (mut opt, p) = setup(Kind::Adam, |_| {});
        let g = grads(&p);
        opt.step(&p, &g, 0.1).unwrap();
        let w = values(&p);
        for (a, b) in w.iter().zip([0.9f32, -1.9, 2.9]) {
            assert!((a - b).abs() < 1e-6, "{w:?}");
        }
    }

    #[test]
    fn sgd_momentum_and_decoupled_decay() {
        let (mut opt, p) = setup(Kind::Sgd, |c| {
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
        let (mut opt, p) = setup(Kind::Sgd, |c| {
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
        let (mut opt, p) = setup(Kind::Sgd, |c| {
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
        let (mut opt, p) = setup(Kind::Adam, |_| {});
        let g = grads(&p);
        opt.step(&p, &g, 0.1).unwrap();
        let saved = opt.state_tensors().unwrap();
        let mut again = Optimizer::new(&TrainConfig::default());
        again.load_state(opt.step, &saved).unwrap();
        assert_eq!(again.m, opt.m);
        assert_eq!(again.v, opt.v);
    }
}
