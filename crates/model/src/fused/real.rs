//! The element types the kernel runs on: f32 with the SIMD approximations of `simd`, f64 with
//! libm (the exact reference the f32 path and the op-by-op cell are tested against).

use super::simd;

/// Element type: f32 uses the SIMD approximations, f64 uses libm (the exact reference).
/// `FMA`: fused multiply-adds available (see `simd`); f64 ignores it.
pub trait Real: candle_core::WithDType + std::ops::Neg<Output = Self> + Default + Copy + Send + Sync {
    /// σ(x) in place over a slice.
    fn sigmoid_slice<const FMA: bool>(xs: &mut [Self]);
    /// tanh(x) in place over a slice.
    fn tanh_slice<const FMA: bool>(xs: &mut [Self]);
    /// σ(x) = 1 / (1 + e^−x).
    fn sigmoid<const FMA: bool>(x: Self) -> Self;
    /// tanh(x).
    fn tanh<const FMA: bool>(x: Self) -> Self;
    /// `a * b + c`, fused when `FMA`.
    fn madd<const FMA: bool>(a: Self, b: Self, c: Self) -> Self;
}

impl Real for f32 {
    #[inline(always)]
    fn sigmoid_slice<const FMA: bool>(xs: &mut [f32]) {
        simd::sigmoid_slice::<FMA>(xs)
    }
    #[inline(always)]
    fn tanh_slice<const FMA: bool>(xs: &mut [f32]) {
        simd::tanh_slice::<FMA>(xs)
    }
    #[inline(always)]
    fn sigmoid<const FMA: bool>(x: f32) -> f32 {
        simd::sigmoid_f32::<FMA>(x)
    }
    #[inline(always)]
    fn tanh<const FMA: bool>(x: f32) -> f32 {
        simd::tanh_f32::<FMA>(x)
    }
    #[inline(always)]
    fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
        simd::madd::<FMA>(a, b, c)
    }
}

impl Real for f64 {
    #[inline(always)]
    fn sigmoid_slice<const FMA: bool>(xs: &mut [f64]) {
        for x in xs.iter_mut() {
            *x = 1.0 / (1.0 + (-*x).exp());
        }
    }
    #[inline(always)]
    fn tanh_slice<const FMA: bool>(xs: &mut [f64]) {
        for x in xs.iter_mut() {
            *x = x.tanh();
        }
    }
    #[inline(always)]
    fn sigmoid<const FMA: bool>(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }
    #[inline(always)]
    fn tanh<const FMA: bool>(x: f64) -> f64 {
        x.tanh()
    }
    #[inline(always)]
    fn madd<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
        a * b + c
    }
}
