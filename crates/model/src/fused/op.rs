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

pub struct FusedLstmOp {
    pub spec: CellSpec,
    pub lengths: Vec<usize>,
    pub reverse: bool,
    /// Whether the state input is the caller's (h0, c0) rather than zeros we made up; without
    /// it the state gradient is not returned.
    pub has_state: bool,
    pub threads: usize,
    /// Keep the activations for `bwd` (off for inference: no input tracks a gradient).
    pub save: bool,
    saved: Arc<Mutex<Option<AnySaved>>>,
}

impl FusedLstmOp {
    pub fn new(spec: CellSpec, lengths: Vec<usize>, reverse: bool, has_state: bool, threads: usize) -> Self {
        Self { spec, lengths, reverse, has_state, threads, save: true, saved: Arc::new(Mutex::new(None)) }
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
        candle_core::Storage::Cpu(s) => Ok(f(contiguous::<T>(s, layout, "gradient")?)),
        _ => candle_core::bail!("fused lstm: gradient must be on the CPU"),
    }
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
        let (out, saved) = kernel::forward(plan, x, w, st, self.threads, self.save);
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

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        state: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let guard = self.saved.lock().unwrap();
        let Some(saved) = guard.as_ref() else {
            candle_core::bail!("fused lstm: backward called before forward")
        };
        let grad = grad.contiguous()?;
        let need_dx = x.track_op();
        let dev = x.device();
        let (gx, gw, gs) = match saved {
            AnySaved::F32(s) => {
                let r = with_slice::<f32, _>(&grad, |g| kernel::backward(s, g, need_dx, self.threads))?;
                (
                    r.x.map(|v| Tensor::from_vec(v, x.shape(), dev)).transpose()?,
                    Tensor::from_vec(r.w, w.shape(), dev)?,
                    Tensor::from_vec(r.state, state.shape(), dev)?,
                )
            }
            AnySaved::F64(s) => {
                let r = with_slice::<f64, _>(&grad, |g| kernel::backward(s, g, need_dx, self.threads))?;
                (
                    r.x.map(|v| Tensor::from_vec(v, x.shape(), dev)).transpose()?,
                    Tensor::from_vec(r.w, w.shape(), dev)?,
                    Tensor::from_vec(r.state, state.shape(), dev)?,
                )
            }
        };
        let gs = (self.has_state && state.track_op()).then_some(gs);
        Ok((gx, Some(gw), gs))
    }
}
