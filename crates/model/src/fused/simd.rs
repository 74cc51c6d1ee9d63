//! Vectorisable f32 `exp`, `sigmoid` and `tanh` over slices.
//!
//! candle evaluates tanh and sigmoid with scalar libm calls; on the LSTM's gate tensors that is
//! ~40x slower than a SIMD evaluation. The functions here are branch-free over the slice so LLVM
//! turns each loop into packed instructions; `multiversion!` (in `kernel.rs`) compiles the gate
//! loops under AVX-512 / AVX2+FMA `target_feature`s and picks one at run time.
//!
//! Accuracy (measured by `tests::accuracy_against_f64`, over 2 million points in [-30, 30] and
//! the neighbourhood of 0, against f64 libm rounded to f32):
//! - `exp`: relative error 8.3e-8 on [-87, 87] (Cephes polynomial, Cody-Waite reduction);
//! - `sigmoid`: relative error 1.5e-7, absolute 8.9e-8 where the result is a normal f32;
//! - `tanh`: relative and absolute error 3.4e-7 with FMA, 4.1e-7 without (about 7 ulp of 1,
//!   worst near |x| = 5.9; Eigen's rational 13/6 approximation on [-7.9, 7.9], +-1 from 9).
//!
//! The exact bounds found by the test are printed with `--nocapture` and asserted with a margin.
//!
//! `FMA` (a const parameter) evaluates the polynomials with fused multiply-adds: shorter
//! dependency chains and fewer instructions, which is what bounds the gate loops (config A
//! inference ran 2.4% faster end to end). `multiversion!`'s `fma` form
//! sets it for the AVX-512 and AVX2+FMA builds and off x86-64 (aarch64 has FMA); baseline
//! x86-64 has no FMA instruction (`mul_add` would be a libm call), so there it is false.
//! The accuracy bounds hold for both.

// Coefficients are kept as published (Cephes, Eigen), digits beyond f32 included.
#![allow(clippy::excessive_precision)]

const LOG2E: f32 = std::f32::consts::LOG2_E;
// 1.5 * 2^23: adding it rounds an f32 of magnitude < 2^22 to the nearest integer and leaves that
// integer in the low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;
const ROUND_MAGIC_BITS: u32 = 0x4B40_0000;
// ln 2 split so that n * LN2_HI is exact for |n| < 2^9.
const LN2_HI: f32 = 0.693_359_375;
const LN2_LO: f32 = -2.121_944_4e-4;
// Keep 2^n inside the normal range: n in [-126, 127].
const EXP_LO: f32 = -87.336_55;
const EXP_HI: f32 = 88.376_26;

/// `a * b + c`, fused when `FMA`.
#[inline(always)]
pub fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// e^x for one lane; written without branches so that loops over it vectorise.
#[inline(always)]
pub fn exp_f32<const FMA: bool>(x: f32) -> f32 {
    let x = x.clamp(EXP_LO, EXP_HI);
    let shifted = madd::<FMA>(x, LOG2E, ROUND_MAGIC);
    let n_bits = shifted.to_bits().wrapping_sub(ROUND_MAGIC_BITS);
    let n = shifted - ROUND_MAGIC;
    let r = madd::<FMA>(-n, LN2_LO, madd::<FMA>(-n, LN2_HI, x));
    let mut p = 1.987_569_1e-4f32;
    p = madd::<FMA>(p, r, 1.398_199_9e-3);
    p = madd::<FMA>(p, r, 8.333_452e-3);
    p = madd::<FMA>(p, r, 4.166_579_6e-2);
    p = madd::<FMA>(p, r, 1.666_666_5e-1);
    p = madd::<FMA>(p, r, 5.000_000_1e-1);
    let y = madd::<FMA>(p, r * r, r) + 1.0;
    // 2^n built from its exponent bits; n_bits holds n as a two's complement integer.
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    y * scale
}

/// 1 / (1 + e^-x).
#[inline(always)]
pub fn sigmoid_f32<const FMA: bool>(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32::<FMA>(-x))
}

/// tanh via Eigen's `generic_fast_tanh_float` rational approximation.
#[inline(always)]
pub fn tanh_f32<const FMA: bool>(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    let xc = x.clamp(-CLAMP, CLAMP);
    let x2 = xc * xc;
    let mut p = -2.760_768_5e-16f32;
    p = madd::<FMA>(p, x2, 2.000_187_9e-13);
    p = madd::<FMA>(p, x2, -8.604_671_5e-11);
    p = madd::<FMA>(p, x2, 5.122_297e-8);
    p = madd::<FMA>(p, x2, 1.485_722_4e-5);
    p = madd::<FMA>(p, x2, 6.372_619_3e-4);
    p = madd::<FMA>(p, x2, 4.893_524_6e-3);
    let p = p * xc;
    let mut q = 1.198_258_4e-6f32;
    q = madd::<FMA>(q, x2, 1.185_347_1e-4);
    q = madd::<FMA>(q, x2, 2.268_434_6e-3);
    q = madd::<FMA>(q, x2, 4.893_525_2e-3);
    let t = p / q;
    // Below 4e-4 tanh(x) == x to f32 precision; selecting keeps the relative error tight.
    // From 9 on tanh(x) rounds to +-1, which the clamped rational misses by 3 ulp when its
    // polynomials are evaluated with FMA.
    let ax = x.abs();
    if ax < 4e-4 {
        x
    } else if ax >= 9.0 {
        1f32.copysign(x)
    } else {
        t
    }
}

/// `sigmoid_f32` in place over a slice (vectorises).
#[inline(always)]
pub fn sigmoid_slice<const FMA: bool>(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = sigmoid_f32::<FMA>(*x);
    }
}

/// `tanh_f32` in place over a slice (vectorises).
#[inline(always)]
pub fn tanh_slice<const FMA: bool>(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = tanh_f32::<FMA>(*x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points() -> Vec<f32> {
        let mut v = Vec::new();
        let n = 2_000_000;
        for k in 0..=n {
            v.push(-30.0 + 60.0 * k as f32 / n as f32);
        }
        // Dense near zero, where tanh's relative error is hardest.
        for k in 0..20_000 {
            let m = 1e-8f32 * 1.001f32.powi(k);
            if m < 2.0 {
                v.push(m);
                v.push(-m);
            }
        }
        v
    }

    fn max_err(f: impl Fn(f32) -> f32, g: impl Fn(f64) -> f64, xs: &[f32]) -> (f64, f64) {
        let (mut abs, mut rel) = (0f64, 0f64);
        for &x in xs {
            let a = f(x) as f64;
            let e = g(x as f64);
            let d = (a - e).abs();
            abs = abs.max(d);
            if e.abs() > f32::MIN_POSITIVE as f64 {
                rel = rel.max(d / e.abs());
            }
        }
        (abs, rel)
    }

    /// Both builds: fused multiply-adds (AVX2/AVX-512, aarch64) and separate ones (baseline).
    #[test]
    fn accuracy_against_f64() {
        accuracy::<true>();
        accuracy::<false>();
    }

    fn accuracy<const FMA: bool>() {
        let xs = points();
        let exp_xs: Vec<f32> = xs.iter().map(|x| x * 2.9).collect();
        let (_, exp_rel) = max_err(exp_f32::<FMA>, f64::exp, &exp_xs);
        let (sig_abs, sig_rel) = max_err(sigmoid_f32::<FMA>, |x| 1.0 / (1.0 + (-x).exp()), &xs);
        let (tanh_abs, tanh_rel) = max_err(tanh_f32::<FMA>, f64::tanh, &xs);
        println!("fma {FMA}: exp rel {exp_rel:.3e}; sigmoid abs {sig_abs:.3e} rel {sig_rel:.3e}; tanh abs {tanh_abs:.3e} rel {tanh_rel:.3e}");
        assert!(exp_rel < 1.5e-7, "exp rel {exp_rel}");
        assert!(sig_rel < 2.5e-7 && sig_abs < 1.5e-7, "sigmoid {sig_abs} {sig_rel}");
        assert!(tanh_rel < 5e-7 && tanh_abs < 5e-7, "tanh {tanh_abs} {tanh_rel}");
        // Saturation and non-finite-free extremes.
        assert_eq!(sigmoid_f32::<FMA>(1e9), 1.0);
        assert!(sigmoid_f32::<FMA>(-1e9) >= 0.0 && sigmoid_f32::<FMA>(-1e9) < 1e-37);
        assert_eq!(tanh_f32::<FMA>(1e9), 1.0);
        assert_eq!(tanh_f32::<FMA>(-1e9), -1.0);
        assert_eq!(tanh_f32::<FMA>(9.0), 1.0);
        assert_eq!(tanh_f32::<FMA>(0.0), 0.0);
    }
}
