//! The decoder's LSTM cell as one CPU op.

use crate::config::CellSpec;
use crate::fused::cell::{cell_backward, cell_forward};
use crate::fused::kernel::Real;
use crate::ops::{contiguous, cpu_slices, dispatch_bwd, dispatch_fwd, FloatBwd, FloatFwd};
use crate::Result;
use candle_core::{CpuStorage, DType, Layout, Shape, Tensor};

/// LSTM cell from pre-activations (N, 4H) in PyTorch's gate order i, f, g, o: on the CPU one
/// op (the fused kernel's SIMD gate math, its backward recomputed from the inputs) instead of
/// ~12 candle ops with scalar sigmoid/tanh per decoder step; elsewhere candle's ops.
pub(super) fn lstm_cell(gates: &Tensor, c: &Tensor) -> Result<(Tensor, Tensor)> {
    if gates.device().is_cpu() && matches!(gates.dtype(), DType::F32 | DType::F64) {
        let out = gates.contiguous()?.apply_op2(&c.contiguous()?, CellOp)?; // (2, N, H): h, c
        return Ok((out.get(0)?, out.get(1)?));
    }
    lstm_cell_ops(gates, c)
}

/// `lstm_cell` from candle's ops (any device; the reference the CPU op is tested against):
/// the layer's own op-by-op step, [`crate::cell::step`], for a vanilla cell.
pub(super) fn lstm_cell_ops(gates: &Tensor, c: &Tensor) -> Result<(Tensor, Tensor)> {
    let step = crate::cell::step(CellSpec::VANILLA, gates, c, None)?;
    Ok((step.hidden, step.cell))
}

/// `lstm_cell`'s CPU op over (gates (N, 4H), c_prev (N, H)) → (2, N, H): h, then c (each a
/// contiguous block, so that taking them apart makes no copy).
struct CellOp;

impl<T: Real> FloatFwd<T, 2> for CellOp {
    fn forward(&self, [(gates, lg), (c, lc)]: [(&CpuStorage, &Layout); 2]) -> candle_core::Result<(Vec<T>, Shape)> {
        let (n, nh) = lc.shape().dims2()?;
        let gates = contiguous::<T>(gates, lg, "lstm cell: gates")?;
        let c_prev = contiguous::<T>(c, lc, "lstm cell: c")?;
        let (_, c, _, mut h) = cell_forward(gates, c_prev, nh);
        h.extend_from_slice(&c);
        Ok((h, Shape::from((2, n, nh))))
    }
}

impl<T: Real> FloatBwd<T, 2> for CellOp {
    fn backward(&self, [gates, c]: [&Tensor; 2], grad: &Tensor) -> candle_core::Result<[Option<Tensor>; 2]> {
        let nh = c.dim(1)?;
        let (dg, dc) = cpu_slices::<T, _, 3>(
            [(gates, "lstm cell: gates"), (c, "lstm cell: c"), (grad, "lstm cell: gradient")],
            |[gates, c_prev, grad]| {
                let (dh, dc) = grad.split_at(c_prev.len());
                cell_backward(gates, c_prev, dh, dc, nh)
            },
        )?;
        Ok([
            Some(Tensor::from_vec(dg, gates.shape(), gates.device())?),
            Some(Tensor::from_vec(dc, c.shape(), c.device())?),
        ])
    }
}

impl candle_core::CustomOp2 for CellOp {
    fn name(&self) -> &'static str {
        "lstm-cell"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch_fwd(self, "lstm cell", [(s1, l1), (s2, l2)])
    }

    fn bwd(
        &self,
        gates: &Tensor,
        c: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let [dg, dc] = dispatch_bwd(self, "lstm cell", [gates, c], grad)?;
        Ok((dg, dc))
    }
}
