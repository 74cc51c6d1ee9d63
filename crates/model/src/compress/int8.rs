//! int8 weights with per-output-channel symmetric scales, and the dynamic-quantisation product
//! `out += x · Wᵀ` where each row of `x` is quantised to int8 on the fly with its own scale
//! (PyTorch's `quantize_dynamic` quantises activations at run time the same way, per tensor;
//! per row is at least as accurate and keeps rows independent, which the threads rely on).
//!
//! Weights: `q[n][k] = round(w[n][k] / s[n])` (to nearest, ties to even), `s[n] = max_k |w[n][k]| / 127`, so
//! `|w − q·s| ≤ s/2` per entry. Activations: `a[m][k] = round(x[m][k] / t[m])`,
//! `t[m] = max_k |x[m][k]| / 127`. The product sums `a·q` exactly in i32 and scales once:
//! `out[m][n] += (Σ_k a[m][k] q[n][k]) · (t[m] · s[n])`.
//!
//! Kernel (AVX2): both operands are widened to i16 and multiplied with `vpmaddwd`, which adds
//! adjacent pairs of i16 products into i32 lanes. Each pair sum is at most 2 · 127 · 127 =
//! 32 258 in magnitude, so nothing saturates (unlike `vpmaddubsw`'s i16 result, which needs
//! 7-bit activations), and the i32 accumulator cannot overflow below K = 2³¹ / 127² ≈ 133 000
//! inputs ([`MAX_K`] refuses larger). The i32 sums are exact, and the epilogue does the same
//! f32 operations in the same order as the scalar fallback, so both give identical bits.
//! Weights are kept packed as i16 pairs in panels of 16 output channels (`packed`), the form
//! the kernel streams; the stored form (`q`, `scales`) is what checkpoints hold.
//! AVX-512 VNNI / AVX-VNNI (`vpdpbusd`) kernels are not written: the machine this was built
//! on has neither, so they could not be tested.

// Every unsafe operation sits in its own block, and every block says why it is sound.
#![deny(unsafe_op_in_unsafe_fn)]

/// Output channels per packed panel (two AVX2 registers of i32 lanes).
const NR: usize = 16;
/// Rows of `x` per micro-tile: 6 rows × 2 registers = 12 accumulators, plus two weight
/// registers and one broadcast, of AVX2's 16.
const MR: usize = 6;
/// Largest reduction length whose i32 sums cannot overflow (2³¹ / 127², rounded down).
pub const MAX_K: usize = 133_143;

/// Reused buffers of the quantised activations.
#[derive(Debug, Default)]
pub struct Scratch {
    xq: Vec<i32>,
    xs: Vec<f32>,
}

/// A quantised weight matrix (rows = output channels).
#[derive(Debug, Clone)]
pub struct QMatrix {
    rows: usize,
    cols: usize,
    q: Vec<i8>,
    scales: Vec<f32>,
    /// `[panel][k pair][16 lanes]` i32 = (lo: q[n][2p] as i16, hi: q[n][2p+1] as i16),
    /// zero-padded to whole panels and an even K.
    packed: Vec<i32>,
}

/// Per-channel symmetric quantisation of one row: (scale, values).
pub fn quantize_row(w: &[f32], out: &mut [i8]) -> f32 {
    let amax = w.iter().fold(0f32, |m, x| m.max(x.abs()));
    if amax == 0.0 || !amax.is_finite() {
        out.iter_mut().for_each(|q| *q = 0);
        return 0.0;
    }
    let scale = amax / 127.0;
    let inv = 127.0 / amax;
    for (q, &x) in out.iter_mut().zip(w) {
        *q = round127(x * inv) as i8;
    }
    scale
}

impl QMatrix {
    /// Quantises a row-major `rows × cols` f32 matrix.
    pub fn quantize(w: &[f32], rows: usize, cols: usize) -> Self {
        assert_eq!(w.len(), rows * cols, "QMatrix::quantize: {} values for {rows} × {cols}", w.len());
        let mut q = vec![0i8; rows * cols];
        let scales =
            (0..rows).map(|r| quantize_row(&w[r * cols..(r + 1) * cols], &mut q[r * cols..(r + 1) * cols])).collect();
        Self::from_parts(q, scales, rows, cols)
    }

    /// From stored int8 values and per-row scales (a checkpoint's).
    pub fn from_parts(q: Vec<i8>, scales: Vec<f32>, rows: usize, cols: usize) -> Self {
        assert_eq!(q.len(), rows * cols);
        assert_eq!(scales.len(), rows);
        let kp = cols.div_ceil(2);
        let panels = rows.div_ceil(NR);
        let mut packed = vec![0i32; panels * kp * NR];
        for n in 0..rows {
            let (panel, lane) = (n / NR, n % NR);
            for p in 0..kp {
                let lo = q[n * cols + 2 * p] as i16;
                let hi = if 2 * p + 1 < cols { q[n * cols + 2 * p + 1] as i16 } else { 0 };
                packed[(panel * kp + p) * NR + lane] = pair(lo, hi);
            }
        }
        Self { rows, cols, q, scales, packed }
    }

    /// Output channels.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Inputs per channel.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The int8 values, row-major.
    pub fn values(&self) -> &[i8] {
        &self.q
    }
    /// One scale per output channel.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// The dequantised matrix `q · s`, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let c = self.cols;
        self.q.iter().enumerate().map(|(i, &q)| q as f32 * self.scales[i / c.max(1)]).collect()
    }

    /// `out[m][n] += Σ_k x[m][k] w[n][k]` for `m < rows`, with `x` quantised per row
    /// (strides `ldx`, `ldo`). `scratch` is reused between calls.
    pub fn add_product(&self, x: &[f32], ldx: usize, rows: usize, out: &mut [f32], ldo: usize, scratch: &mut Scratch) {
        let kp = self.cols.div_ceil(2);
        assert!(self.cols <= MAX_K, "int8 product: {} inputs exceed the overflow-free bound {MAX_K}", self.cols);
        assert!(rows == 0 || (x.len() >= (rows - 1) * ldx + self.cols && out.len() >= (rows - 1) * ldo + self.rows));
        let Scratch { xq, xs } = scratch;
        xq.clear();
        xq.resize(rows * kp, 0);
        xs.clear();
        for m in 0..rows {
            xs.push(quantize_activations(&x[m * ldx..m * ldx + self.cols], &mut xq[m * kp..(m + 1) * kp]));
        }
        let (xq, xs) = (&xq[..], &xs[..]);
        #[cfg(target_arch = "x86_64")]
        if simd_on() {
            // SAFETY: AVX2 was detected at run time (the only requirement of the
            // target-feature function); the slices' lengths were checked above.
            unsafe { avx2_product(self, xq, xs, rows, out, ldo) };
            return;
        }
        scalar_product(self, xq, xs, rows, out, ldo);
    }

    /// The scalar product alone (tests compare it with the SIMD one).
    #[doc(hidden)]
    pub fn add_product_scalar(&self, x: &[f32], ldx: usize, rows: usize, out: &mut [f32], ldo: usize) {
        let kp = self.cols.div_ceil(2);
        let mut xq = vec![0i32; rows * kp];
        let xs: Vec<f32> = (0..rows)
            .map(|m| quantize_activations(&x[m * ldx..m * ldx + self.cols], &mut xq[m * kp..(m + 1) * kp]))
            .collect();
        scalar_product(self, &xq, &xs, rows, out, ldo);
    }
}

#[inline(always)]
fn pair(lo: i16, hi: i16) -> i32 {
    ((hi as i32) << 16) | (lo as u16 as i32)
}

/// 1.5 · 2²³: adding and subtracting it rounds an f32 of magnitude < 2²² to the nearest
/// integer, ties to even (the rounding of PyTorch's `nearbyint`). Plain arithmetic, so it
/// vectorises on baseline x86-64, where `f32::round` is a libm call per element.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `v` rounded to the nearest integer (ties to even) and clamped to ±127, for |v| ≤ 2²².
#[inline(always)]
fn round127(v: f32) -> f32 {
    ((v.clamp(-127.0, 127.0) + ROUND_MAGIC) - ROUND_MAGIC).clamp(-127.0, 127.0)
}

/// Quantises one activation row into i16 pairs; returns its scale (0 for an all-zero row).
/// The same bits on every path: the AVX2 build only vectorises the same IEEE operations.
fn quantize_activations(x: &[f32], out: &mut [i32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if simd_on() {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(x: &[f32], out: &mut [i32]) -> f32 {
            quantize_activations_body(x, out)
        }
        // SAFETY: AVX2 was detected at run time, the function's only requirement.
        return unsafe { avx2(x, out) };
    }
    quantize_activations_body(x, out)
}

#[inline(always)]
fn quantize_activations_body(x: &[f32], out: &mut [i32]) -> f32 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    if amax == 0.0 || !amax.is_finite() {
        out.iter_mut().for_each(|v| *v = 0);
        return 0.0;
    }
    let inv = 127.0 / amax;
    let (pairs, rest) = x.split_at(x.len() & !1);
    for (o, p) in out.iter_mut().zip(pairs.chunks_exact(2)) {
        *o = pair(round127(p[0] * inv) as i16, round127(p[1] * inv) as i16);
    }
    if let (Some(&last), Some(o)) = (rest.first(), out.get_mut(pairs.len() / 2)) {
        *o = pair(round127(last * inv) as i16, 0);
    }
    amax / 127.0
}

/// Whether the AVX2 kernels of this module and `bf16` run: AVX2 detected and
/// `SLUICE_NO_COMPRESS_SIMD` unset (the scalar fallback, for comparison).
#[cfg(target_arch = "x86_64")]
pub(crate) fn simd_on() -> bool {
    use std::sync::OnceLock;
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::is_x86_feature_detected!("avx2") && std::env::var_os("SLUICE_NO_COMPRESS_SIMD").is_none())
}

fn scalar_product(w: &QMatrix, xq: &[i32], xs: &[f32], rows: usize, out: &mut [f32], ldo: usize) {
    let kp = w.cols.div_ceil(2);
    for m in 0..rows {
        for n in 0..w.rows {
            let (panel, lane) = (n / NR, n % NR);
            let mut acc = 0i32;
            for p in 0..kp {
                let (a, b) = (xq[m * kp + p], w.packed[(panel * kp + p) * NR + lane]);
                acc += (a as i16 as i32) * (b as i16 as i32) + (a >> 16) * (b >> 16);
            }
            let o = &mut out[m * ldo + n];
            *o += acc as f32 * (xs[m] * w.scales[n]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2_product(w: &QMatrix, xq: &[i32], xs: &[f32], rows: usize, out: &mut [f32], ldo: usize) {
    let kp = w.cols.div_ceil(2);
    let panels = w.rows.div_ceil(NR);
    for panel in 0..panels {
        let wp = &w.packed[panel * kp * NR..(panel + 1) * kp * NR];
        let mut m = 0;
        while m < rows {
            let mr = (rows - m).min(MR);
            let x = &xq[m * kp..(m + mr) * kp];
            let mut acc = [[0i32; NR]; MR];
            // SAFETY: AVX2 is enabled for this function (its caller detected it); `x` holds
            // `mr` rows of `kp` pairs and `wp` `kp` rows of NR lanes, which is all `tile` reads.
            unsafe {
                match mr {
                    6 => tile::<6>(x, wp, kp, &mut acc),
                    5 => tile::<5>(x, wp, kp, &mut acc),
                    4 => tile::<4>(x, wp, kp, &mut acc),
                    3 => tile::<3>(x, wp, kp, &mut acc),
                    2 => tile::<2>(x, wp, kp, &mut acc),
                    _ => tile::<1>(x, wp, kp, &mut acc),
                }
            }
            let n0 = panel * NR;
            let nw = (w.rows - n0).min(NR);
            for (r, a) in acc.iter().enumerate().take(mr) {
                let o = &mut out[(m + r) * ldo + n0..(m + r) * ldo + n0 + nw];
                let s = &w.scales[n0..n0 + nw];
                // Same operations in the same order as `scalar_product`: identical bits.
                for j in 0..nw {
                    o[j] += a[j] as f32 * (xs[m + r] * s[j]);
                }
            }
            m += mr;
        }
    }
}

/// `acc[r][lane] = Σ_p madd(x[r][p], w[p][lane])` for R rows and one panel of 16 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile<const R: usize>(x: &[i32], w: &[i32], kp: usize, acc: &mut [[i32; NR]; MR]) {
    use std::arch::x86_64::*;
    debug_assert!(x.len() >= R * kp && w.len() >= kp * NR);
    let mut a = [[_mm256_setzero_si256(); 2]; R];
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    for p in 0..kp {
        // SAFETY: p < kp, so `wp + p·16 .. + 16` lies inside `w` (kp·16 values, checked by the
        // caller) and `xp + r·kp + p` inside `x` (R·kp values); unaligned loads.
        unsafe {
            let w0 = _mm256_loadu_si256(wp.add(p * NR) as *const __m256i);
            let w1 = _mm256_loadu_si256(wp.add(p * NR + 8) as *const __m256i);
            for (r, ar) in a.iter_mut().enumerate() {
                let b = _mm256_set1_epi32(*xp.add(r * kp + p));
                ar[0] = _mm256_add_epi32(ar[0], _mm256_madd_epi16(b, w0));
                ar[1] = _mm256_add_epi32(ar[1], _mm256_madd_epi16(b, w1));
            }
        }
    }
    for (r, ar) in a.iter().enumerate() {
        // SAFETY: acc[r] is 16 i32 = two 32-byte stores; unaligned stores.
        unsafe {
            _mm256_storeu_si256(acc[r].as_mut_ptr() as *mut __m256i, ar[0]);
            _mm256_storeu_si256(acc[r].as_mut_ptr().add(8) as *mut __m256i, ar[1]);
        }
    }
}
