//! The candle `CustomOp3` wrapping the kernel: inputs x, packed weights, packed initial state;
//! one packed output. Activations saved by `cpu_fwd` live in the op behind a mutex and are read
//! by `bwd` (candle keeps the op alive in the graph as long as the output tensor lives).

use super::kernel::{self, CellSpec, Plan, Real, Saved};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use std::sync::{Arc, Mutex};

enum AnySaved {
    F32(Saved<f32>),
    F64(Saved<f64>),
}

/// The training op (it always keeps the activations for `bwd`); inference, where no input
/// tracks a gradient, goes through `FusedLstmInferOp`.
pub struct FusedLstmOp {
    pub spec: CellSpec,
    pub lengths: Vec<usize>,
    pub reverse: bool,
    /// Whether the state input is the caller's (h0, c0) rather than zeros we made up; without
    /// it the state gradient is not returned.
    pub has_state: bool,
    pub threads: usize,
    saved: Arc<Mutex<Option<AnySaved>>>,
}

impl FusedLstmOp {
    pub fn new(spec: CellSpec, lengths: Vec<usize>, reverse: bool, has_state: bool, threads: usize) -> Self {
        Self { spec, lengths, reverse, has_state, threads, saved: Arc::new(Mutex::new(None)) }
    }
}

fn contiguous<'a, T: Real>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [T]> {
    let data = T::cpu_storage_as_slice(s)?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("fused lstm: {what} must be contiguous"),
    }
}

/// Runs `f` on a contiguous CPU tensor's values where they lie (no host copy).
fn with_slice<T: Real, R>(t: &Tensor, f: impl FnOnce(&[T]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(s) => Ok(f(contiguous::<T>(s, layout, "every tensor")?)),
        _ => candle_core::bail!("fused lstm: every tensor must be on the CPU"),
    }
}

/// Gradients of a custom op's three inputs.
type Grads3 = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

/// The op's three input gradients as tensors shaped like `inputs` (x, weights, state); the
/// state's only when the caller gave one (`has_state`) and it tracks a gradient.
fn grad_tensors<T: Real>(g: kernel::Grads<T>, inputs: [&Tensor; 3], has_state: bool) -> Result<Grads3> {
    let [x, w, state] = inputs;
    let kernel::Grads { x: dx, w: dw, state: ds } = g;
    let dev = x.device();
    let gx = dx.map(|v| Tensor::from_vec(v, x.shape(), dev)).transpose()?;
    let gw = Tensor::from_vec(dw, w.shape(), dev)?;
    let gs = (has_state && state.track_op()).then(|| Tensor::from_vec(ds, state.shape(), dev)).transpose()?;
    Ok((gx, Some(gw), gs))
}

impl FusedLstmOp {
    #[allow(clippy::too_many_arguments)]
    fn fwd_typed<T: Real>(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
        wrap: fn(Saved<T>) -> AnySaved,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, t, i) = l1.shape().dims3()?;
        let (_, h) = (l3.shape().dims3()?.0, l3.shape().dims3()?.2);
        let plan = Plan::new(b, t, i, h, &self.lengths, self.reverse, self.spec, self.threads);
        let x = contiguous::<T>(s1, l1, "x")?;
        let w = contiguous::<T>(s2, l2, "weights")?;
        let st = contiguous::<T>(s3, l3, "state")?;
        let weights = kernel::Weights::packed(w, &plan);
        let (out, saved) = kernel::forward(plan, x, weights, st, self.threads, true);
        if let Some(saved) = saved {
            *self.saved.lock().unwrap() = Some(wrap(saved));
        }
        Ok((T::to_cpu_storage_owned(out), Shape::from(b * t * h + 2 * b * h)))
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
        match s1.dtype() {
            DType::F32 => self.fwd_typed::<f32>(s1, l1, s2, l2, s3, l3, AnySaved::F32),
            DType::F64 => self.fwd_typed::<f64>(s1, l1, s2, l2, s3, l3, AnySaved::F64),
            dt => candle_core::bail!("fused lstm: dtype {dt:?} not supported (f32, f64)"),
        }
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, state: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Grads3> {
        let guard = self.saved.lock().unwrap();
        let Some(saved) = guard.as_ref() else { candle_core::bail!("fused lstm: backward called before forward") };
        let grad = grad.contiguous()?;
        let need_dx = x.track_op();
        let inputs = [x, w, state];
        match saved {
            AnySaved::F32(s) => {
                let r = with_slice::<f32, _>(&grad, |g| kernel::backward(s, g, need_dx, self.threads))?;
                grad_tensors(r, inputs, self.has_state)
            }
            AnySaved::F64(s) => {
                let r = with_slice::<f64, _>(&grad, |g| kernel::backward(s, g, need_dx, self.threads))?;
                grad_tensors(r, inputs, self.has_state)
            }
        }
    }
}

/// Inference (no gradient anywhere): the op reads W_ih and W_hh where they lie, so the
/// packed weight tensor the training op needs is never built. Inputs x, W_ih, W_hh; the
/// summed bias (G*H), the peephole column (G*H, peephole variant) and the initial state
/// (2, batch, hidden) ride along as tensors. Same flat output as `FusedLstmOp`.
pub struct FusedLstmInferOp {
    pub spec: CellSpec,
    pub lengths: Vec<usize>,
    pub reverse: bool,
    pub threads: usize,
    pub bias: Tensor,
    pub peep: Option<Tensor>,
    pub state: Tensor,
}

impl FusedLstmInferOp {
    #[allow(clippy::too_many_arguments)]
    fn fwd_typed<T: Real>(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, t, i) = l1.shape().dims3()?;
        let h = l3.shape().dims2()?.1;
        let plan = Plan::new(b, t, i, h, &self.lengths, self.reverse, self.spec, self.threads);
        let x = contiguous::<T>(s1, l1, "x")?;
        let ih = contiguous::<T>(s2, l2, "w_ih")?;
        let hh = contiguous::<T>(s3, l3, "w_hh")?;
        let out = with_slice::<T, _>(&self.bias, |bias| {
            with_slice::<T, _>(&self.state, |st| {
                let run = |peep: Option<&[T]>| {
                    let w =
                        kernel::Weights { ih, ih_rs: i, hh, hh_rs: h, bias, bias_rs: 1, peep: peep.map(|p| (p, 1)) };
                    kernel::forward(plan.clone(), x, w, st, self.threads, false).0
                };
                match &self.peep {
                    Some(p) => with_slice::<T, _>(p, |p| run(Some(p))),
                    None => Ok(run(None)),
                }
            })
        })???;
        Ok((T::to_cpu_storage_owned(out), Shape::from(b * t * h + 2 * b * h)))
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
        match s1.dtype() {
            DType::F32 => self.fwd_typed::<f32>(s1, l1, s2, l2, s3, l3),
            DType::F64 => self.fwd_typed::<f64>(s1, l1, s2, l2, s3, l3),
            dt => candle_core::bail!("fused lstm: dtype {dt:?} not supported (f32, f64)"),
        }
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
    pub spec: CellSpec,
    pub lengths: Vec<usize>,
    pub has_state: bool,
    /// Threads for each direction.
    pub threads: usize,
    /// Run the two directions at the same time (the op was given at least two threads).
    pub parallel: bool,
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

    #[allow(clippy::too_many_arguments)]
    fn fwd_typed<T: Real>(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
        wrap: fn(Saved<T>) -> AnySaved,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, t, i) = l1.shape().dims3()?;
        let h = l3.shape().dims4()?.3;
        let x = contiguous::<T>(s1, l1, "x")?;
        let w = contiguous::<T>(s2, l2, "weights")?;
        let st = contiguous::<T>(s3, l3, "state")?;
        let (wl, sl) = (w.len() / 2, st.len() / 2);
        let (p0, p1) = (self.plan(b, t, i, h, 0), self.plan(b, t, i, h, 1));
        let (w0, w1) = (kernel::Weights::packed(&w[..wl], &p0), kernel::Weights::packed(&w[wl..], &p1));
        let ((o0, s0), (o1, s1)) = both_or_serial(
            self.parallel,
            || kernel::forward(p0, x, w0, &st[..sl], self.threads, self.save),
            || kernel::forward(p1, x, w1, &st[sl..], self.threads, self.save),
        );
        if let (Some(a), Some(c)) = (s0, s1) {
            *self.saved.lock().unwrap() = Some([wrap(a), wrap(c)]);
        }
        let (bt, bh) = (b * t, b * h);
        let mut out = Vec::with_capacity(bt * 2 * h + 4 * bh);
        for r in 0..bt {
            out.extend_from_slice(&o0[r * h..(r + 1) * h]);
            out.extend_from_slice(&o1[r * h..(r + 1) * h]);
        }
        out.extend_from_slice(&o0[bt * h..]);
        out.extend_from_slice(&o1[bt * h..]);
        Ok((T::to_cpu_storage_owned(out), Shape::from(bt * 2 * h + 4 * bh)))
    }

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
        match s1.dtype() {
            DType::F32 => self.fwd_typed::<f32>(s1, l1, s2, l2, s3, l3, AnySaved::F32),
            DType::F64 => self.fwd_typed::<f64>(s1, l1, s2, l2, s3, l3, AnySaved::F64),
            dt => candle_core::bail!("fused lstm: dtype {dt:?} not supported (f32, f64)"),
        }
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, state: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Grads3> {
        let guard = self.saved.lock().unwrap();
        let Some(saved) = guard.as_ref() else { candle_core::bail!("fused lstm: backward called before forward") };
        let grad = grad.contiguous()?;
        let need_dx = x.track_op();
        let inputs = [x, w, state];
        match saved {
            [AnySaved::F32(a), AnySaved::F32(c)] => {
                let r = with_slice::<f32, _>(&grad, |g| self.bwd_typed([a, c], g, need_dx))?;
                grad_tensors(r, inputs, self.has_state)
            }
            [AnySaved::F64(a), AnySaved::F64(c)] => {
                let r = with_slice::<f64, _>(&grad, |g| self.bwd_typed([a, c], g, need_dx))?;
                grad_tensors(r, inputs, self.has_state)
            }
            _ => candle_core::bail!("fused lstm: mixed dtypes in saved state"),
        }
    }
}
