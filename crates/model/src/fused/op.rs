//! The candle `CustomOp3` wrapping the kernel: inputs x, packed weights, packed initial state;
//! one packed output. Activations saved by `cpu_fwd` live in the op behind a mutex and are read
//! by `bwd` (candle keeps the op alive in the graph as long as the output tensor lives).

use super::kernel::{self, CellSpec, Plan, Real, Saved};
use crate::ops::{contiguous, cpu_slices, dispatch_bwd, dispatch_fwd, FloatBwd, FloatFwd};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use std::sync::{Arc, Mutex};

/// A forward's saved activations, of either element type.
enum AnySaved {
    F32(Saved<f32>),
    F64(Saved<f64>),
}

/// The element types whose saved activations have an [`AnySaved`] arm: what lets the ops'
/// generic forward keep them and the backward of the same type find them.
trait Keep: Real {
    fn keep(saved: Saved<Self>) -> AnySaved;
    fn kept(saved: &AnySaved) -> Option<&Saved<Self>>;
}

impl Keep for f32 {
    fn keep(saved: Saved<f32>) -> AnySaved {
        AnySaved::F32(saved)
    }
    fn kept(saved: &AnySaved) -> Option<&Saved<f32>> {
        match saved {
            AnySaved::F32(s) => Some(s),
            AnySaved::F64(_) => None,
        }
    }
}

impl Keep for f64 {
    fn keep(saved: Saved<f64>) -> AnySaved {
        AnySaved::F64(saved)
    }
    fn kept(saved: &AnySaved) -> Option<&Saved<f64>> {
        match saved {
            AnySaved::F64(s) => Some(s),
            AnySaved::F32(_) => None,
        }
    }
}

/// The training op (it always keeps the activations for `bwd`); inference, where no input
/// tracks a gradient, goes through `FusedLstmInferOp`.
pub struct FusedLstmOp {
    /// The gate set of the variant.
    pub spec: CellSpec,
    /// Real steps per sequence (empty: every sequence runs the whole time axis).
    pub lengths: Vec<usize>,
    /// Run right to left over each sequence's real steps.
    pub reverse: bool,
    /// Whether the state input is the caller's (h0, c0) rather than zeros we made up; without
    /// it the state gradient is not returned.
    pub has_state: bool,
    /// Threads the kernel splits its work over.
    pub threads: usize,
    saved: Arc<Mutex<Option<AnySaved>>>,
}

impl FusedLstmOp {
    /// A training op; the activations of its forward are kept for `bwd`.
    pub fn new(spec: CellSpec, lengths: Vec<usize>, reverse: bool, has_state: bool, threads: usize) -> Self {
        Self { spec, lengths, reverse, has_state, threads, saved: Arc::new(Mutex::new(None)) }
    }
}

/// Gradients of a custom op's three inputs.
type Grads3 = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

/// The op's three input gradients as tensors shaped like `inputs` (x, weights, state); the
/// state's only when the caller gave one (`has_state`) and it tracks a gradient.
fn grad_tensors<T: Real>(g: kernel::Grads<T>, inputs: [&Tensor; 3], has_state: bool) -> Result<[Option<Tensor>; 3]> {
    let [x, w, state] = inputs;
    let kernel::Grads { x: dx, w: dw, state: ds } = g;
    let dev = x.device();
    let gx = dx.map(|v| Tensor::from_vec(v, x.shape(), dev)).transpose()?;
    let gw = Tensor::from_vec(dw, w.shape(), dev)?;
    let gs = (has_state && state.track_op()).then(|| Tensor::from_vec(ds, state.shape(), dev)).transpose()?;
    Ok([gx, Some(gw), gs])
}

impl<T: Keep> FloatFwd<T, 3> for FusedLstmOp {
    fn forward(&self, [(s1, l1), (s2, l2), (s3, l3)]: [(&CpuStorage, &Layout); 3]) -> Result<(Vec<T>, Shape)> {
        let (b, t, i) = l1.shape().dims3()?;
        let (_, h) = (l3.shape().dims3()?.0, l3.shape().dims3()?.2);
        let plan = Plan::new(b, t, i, h, &self.lengths, self.reverse, self.spec, self.threads);
        let x = contiguous::<T>(s1, l1, "fused lstm: x")?;
        let w = contiguous::<T>(s2, l2, "fused lstm: weights")?;
        let st = contiguous::<T>(s3, l3, "fused lstm: state")?;
        let weights = kernel::Weights::packed(w, &plan);
        let (out, saved) = kernel::forward(plan, x, weights, st, self.threads, true);
        if let Some(saved) = saved {
            *self.saved.lock().unwrap() = Some(T::keep(saved));
        }
        Ok((out, Shape::from(b * t * h + 2 * b * h)))
    }
}

impl<T: Keep> FloatBwd<T, 3> for FusedLstmOp {
    fn backward(&self, inputs: [&Tensor; 3], grad: &Tensor) -> Result<[Option<Tensor>; 3]> {
        let guard = self.saved.lock().unwrap();
        let Some(saved) = guard.as_ref().and_then(T::kept) else {
            candle_core::bail!("fused lstm: backward called before forward")
        };
        let need_dx = inputs[0].track_op();
        let r = cpu_slices::<T, _, 1>([(grad, "fused lstm: gradient")], |[g]| {
            kernel::backward(saved, g, need_dx, self.threads)
        })?;
        grad_tensors(r, inputs, self.has_state)
    }
}

impl CustomOp3 for FusedLstmOp {
    fn name(&self) -> &'static str {
        "fused-lstm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch_fwd(self, "fused lstm", [(s1, l1), (s2, l2), (s3, l3)])
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, state: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Grads3> {
        let [dx, dw, ds] = dispatch_bwd(self, "fused lstm", [x, w, state], grad)?;
        Ok((dx, dw, ds))
    }
}

/// Inference (no gradient anywhere): the op reads W_ih and W_hh where they lie, so the
/// packed weight tensor the training op needs is never built. Inputs x, W_ih, W_hh; the
/// summed bias (G*H), the peephole column (G*H, peephole variant) and the initial state
/// (2, batch, hidden) ride along as tensors. Same flat output as `FusedLstmOp`.
pub struct FusedLstmInferOp {
    /// The gate set of the variant.
    pub spec: CellSpec,
    /// Real steps per sequence (empty: every sequence runs the whole time axis).
    pub lengths: Vec<usize>,
    /// Run right to left over each sequence's real steps.
    pub reverse: bool,
    /// Threads the kernel splits its work over.
    pub threads: usize,
    /// b_ih + b_hh (G·H).
    pub bias: Tensor,
    /// The peephole weights (3·H), peephole variant only.
    pub peep: Option<Tensor>,
    /// (h0, c0) stacked: (2, batch, hidden).
    pub state: Tensor,
}

impl<T: Real> FloatFwd<T, 3> for FusedLstmInferOp {
    fn forward(&self, [(s1, l1), (s2, l2), (s3, l3)]: [(&CpuStorage, &Layout); 3]) -> Result<(Vec<T>, Shape)> {
        let (b, t, i) = l1.shape().dims3()?;
        let h = l3.shape().dims2()?.1;
        let plan = Plan::new(b, t, i, h, &self.lengths, self.reverse, self.spec, self.threads);
        let x = contiguous::<T>(s1, l1, "fused lstm: x")?;
        let ih = contiguous::<T>(s2, l2, "fused lstm: w_ih")?;
        let hh = contiguous::<T>(s3, l3, "fused lstm: w_hh")?;
        let out = cpu_slices::<T, _, 2>(
            [(&self.bias, "fused lstm: bias"), (&self.state, "fused lstm: state")],
            |[bias, st]| {
                let run = |peep: Option<&[T]>| {
                    let w =
                        kernel::Weights { ih, ih_rs: i, hh, hh_rs: h, bias, bias_rs: 1, peep: peep.map(|p| (p, 1)) };
                    kernel::forward(plan.clone(), x, w, st, self.threads, false).0
                };
                match &self.peep {
                    Some(p) => cpu_slices::<T, _, 1>([(p, "fused lstm: peephole")], |[p]| run(Some(p))),
                    None => Ok(run(None)),
                }
            },
        )??;
        Ok((out, Shape::from(b * t * h + 2 * b * h)))
    }
}

impl CustomOp3 for FusedLstmInferOp {
    fn name(&self) -> &'static str {
        "fused-lstm-inference"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch_fwd(self, "fused lstm", [(s1, l1), (s2, l2), (s3, l3)])
    }
}

/// Both directions of a bidirectional layer as one op: the two directions run at the same
/// time, each on half of the threads (one each on two cores), so a short sequence pays no
/// per-step fork/join at all; the output comes out already concatenated.
///
/// Inputs: x (batch, time, input); weights (2, R, wcols), forward then backward direction;
/// state (2, 2, batch, hidden). Flat output: (batch, time, 2·hidden) outputs, then h_n and c_n
/// of the forward direction, then of the backward one, each (batch, hidden).
pub struct FusedBiLstmOp {
    /// The gate set of the variant.
    pub spec: CellSpec,
    /// Real steps per sequence (empty: every sequence runs the whole time axis).
    pub lengths: Vec<usize>,
    /// Whether the state input is the caller's; without it no state gradient is returned.
    pub has_state: bool,
    /// Threads for each direction.
    pub threads: usize,
    /// Run the two directions at the same time (the op was given at least two threads).
    pub parallel: bool,
    /// Keep the activations for `bwd` (training).
    pub save: bool,
    saved: Arc<Mutex<Option<[AnySaved; 2]>>>,
}

impl FusedBiLstmOp {
    /// `threads`: the whole op's; each direction gets half. With one thread the directions
    /// run one after the other on the caller's thread.
    pub fn new(spec: CellSpec, lengths: Vec<usize>, has_state: bool, threads: usize) -> Self {
        let (parallel, threads) = (threads >= 2, (threads / 2).max(1));
        Self { spec, lengths, has_state, threads, parallel, save: true, saved: Arc::new(Mutex::new(None)) }
    }

    fn plan(&self, b: usize, t: usize, i: usize, h: usize, dir: usize) -> Plan {
        Plan::new(b, t, i, h, &self.lengths, dir == 1, self.spec, self.threads)
    }
}

impl<T: Keep> FloatFwd<T, 3> for FusedBiLstmOp {
    fn forward(&self, [(s1, l1), (s2, l2), (s3, l3)]: [(&CpuStorage, &Layout); 3]) -> Result<(Vec<T>, Shape)> {
        let (b, t, i) = l1.shape().dims3()?;
        let h = l3.shape().dims4()?.3;
        let x = contiguous::<T>(s1, l1, "fused lstm: x")?;
        let w = contiguous::<T>(s2, l2, "fused lstm: weights")?;
        let st = contiguous::<T>(s3, l3, "fused lstm: state")?;
        let (wl, sl) = (w.len() / 2, st.len() / 2);
        let (p0, p1) = (self.plan(b, t, i, h, 0), self.plan(b, t, i, h, 1));
        let (w0, w1) = (kernel::Weights::packed(&w[..wl], &p0), kernel::Weights::packed(&w[wl..], &p1));
        let ((o0, s0), (o1, s1)) = both_or_serial(
            self.parallel,
            || kernel::forward(p0, x, w0, &st[..sl], self.threads, self.save),
            || kernel::forward(p1, x, w1, &st[sl..], self.threads, self.save),
        );
        if let (Some(a), Some(c)) = (s0, s1) {
            *self.saved.lock().unwrap() = Some([T::keep(a), T::keep(c)]);
        }
        let (bt, bh) = (b * t, b * h);
        let mut out = Vec::with_capacity(bt * 2 * h + 4 * bh);
        for r in 0..bt {
            out.extend_from_slice(&o0[r * h..(r + 1) * h]);
            out.extend_from_slice(&o1[r * h..(r + 1) * h]);
        }
        out.extend_from_slice(&o0[bt * h..]);
        out.extend_from_slice(&o1[bt * h..]);
        Ok((out, Shape::from(bt * 2 * h + 4 * bh)))
    }
}

impl<T: Keep> FloatBwd<T, 3> for FusedBiLstmOp {
    fn backward(&self, inputs: [&Tensor; 3], grad: &Tensor) -> Result<[Option<Tensor>; 3]> {
        let guard = self.saved.lock().unwrap();
        let Some([a, c]) = guard.as_ref() else { candle_core::bail!("fused lstm: backward called before forward") };
        let (Some(a), Some(c)) = (T::kept(a), T::kept(c)) else {
            candle_core::bail!("fused lstm: saved state of another dtype")
        };
        let need_dx = inputs[0].track_op();
        let r = cpu_slices::<T, _, 1>([(grad, "fused lstm: gradient")], |[g]| self.bwd_typed([a, c], g, need_dx))?;
        grad_tensors(r, inputs, self.has_state)
    }
}

impl FusedBiLstmOp {
    fn bwd_typed<T: Real>(&self, s: [&Saved<T>; 2], g: &[T], need_dx: bool) -> kernel::Grads<T> {
        let plan = &s[0].plan;
        let (bt, bh, h) = (plan.batch * plan.time, plan.batch * plan.hidden, plan.hidden);
        // Un-interleave the output gradient into each direction's flat layout.
        let split = |d: usize| {
            let mut v = Vec::with_capacity(bt * h + 2 * bh);
            for r in 0..bt {
                v.extend_from_slice(&g[(2 * r + d) * h..(2 * r + d + 1) * h]);
            }
            v.extend_from_slice(&g[2 * bt * h + d * 2 * bh..][..2 * bh]);
            v
        };
        let (g0, g1) = (split(0), split(1));
        let (r0, r1) = both_or_serial(
            self.parallel,
            || kernel::backward(s[0], &g0, need_dx, self.threads),
            || kernel::backward(s[1], &g1, need_dx, self.threads),
        );
        let dx = match (r0.x, r1.x) {
            (Some(mut a), Some(c)) => {
                for (u, v) in a.iter_mut().zip(c) {
                    *u += v;
                }
                Some(a)
            }
            _ => None,
        };
        let mut dw = r0.w;
        dw.extend(r1.w);
        let mut ds = r0.state;
        ds.extend(r1.state);
        kernel::Grads { x: dx, w: dw, state: ds }
    }
}

/// Both at once (`crate::par::both`) or, with a one-thread budget, one after the other.
fn both_or_serial<A: Send, B: Send>(
    parallel: bool,
    fa: impl FnOnce() -> A + Send,
    fb: impl FnOnce() -> B + Send,
) -> (A, B) {
    if parallel {
        crate::par::both(fa, fb)
    } else {
        (fa(), fb())
    }
}

impl CustomOp3 for FusedBiLstmOp {
    fn name(&self) -> &'static str {
        "fused-bilstm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch_fwd(self, "fused bilstm", [(s1, l1), (s2, l2), (s3, l3)])
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, state: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Grads3> {
        let [dx, dw, ds] = dispatch_bwd(self, "fused bilstm", [x, w, state], grad)?;
        Ok((dx, dw, ds))
    }
}
