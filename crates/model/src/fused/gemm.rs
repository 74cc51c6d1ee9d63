//! The matrix products of the kernel: `matmul` (the `gemm` crate, for the big one-off
//! products and where no micro-kernel applies) and the per-block packing of the recurrent
//! weights for `micro`.

use super::micro::Packed;
use super::plan::Plan;
use super::real::Real;
use gemm::Parallelism;
use rayon::prelude::*;

/// dst (m x n, row stride dst_rs) (+)= lhs (m x k) * rhs (k x n), arbitrary lhs/rhs strides
/// (`accumulate = false` overwrites dst). Sums in an order fixed by the shapes and `threads`.
///
/// # Safety
/// `lhs` readable at every `i * lhs_rs + kk * lhs_cs` and `rhs` at every `kk * rhs_rs +
/// j * rhs_cs` (i < m, kk < k, j < n); `dst` writable at every `i * dst_rs + j`, and no other
/// access to those elements of dst (nor overlap with lhs or rhs) while the call runs.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const T,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const T,
    rhs_rs: usize,
    rhs_cs: usize,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                // SAFETY: row i of dst, n elements, writable and unaliased by the contract.
                unsafe { std::slice::from_raw_parts_mut(dst.add(i * dst_rs), n) }.fill(T::zero());
            }
        }
        return;
    }
    // SAFETY: the strides and extents passed are those the contract makes valid (gemm's
    // column stride is our 1 / column step, its row stride our row step).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None },
        )
    };
}

/// One packed recurrent-weight panel set per block (`micro`), when T is f32 and the CPU has a
/// micro-kernel; None means "use `gemm`". `pack(j0, j1)` packs block `j0..j1`.
pub(super) fn pack_blocks<T: Real, P: Send>(
    plan: &Plan,
    pack: impl Fn(usize, usize) -> Option<P> + Sync,
) -> Option<Vec<P>> {
    if T::DTYPE != candle_core::DType::F32 || !Packed::available() || micro_disabled() {
        return None;
    }
    if plan.blocks.len() == 1 {
        // No parallel iterator: from outside the pool it would park this thread.
        return plan.blocks.iter().map(|&(j0, j1)| pack(j0, j1)).collect();
    }
    plan.blocks.par_iter().map(|&(j0, j1)| pack(j0, j1)).collect()
}

/// `SLUICE_NO_MICRO=1` sends the recurrent products to `gemm` (for comparing the two).
pub(crate) fn micro_disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var_os("SLUICE_NO_MICRO").is_some_and(|v| v != "0"))
}
