//! int8 weights with per-output-channel symmetric scales, and the dynamic-quantisation product
//! `out += x · Wᵀ` where each row of `x` is quantised to int8 on the fly with its own scale
//! (PyTorch's `quantize_dynamic` quantises activations at run time the same way, per tensor;
//! per row is at least as accurate and keeps rows independent, which the threads rely on).
//!
//! Weights: `q[n][k] = round(w[n][k] / s[n])` (to nearest, ties to even),
//! `s[n] = max_k |w[n][k]| / 127`, so `|w − q·s| ≤ s/2` per entry. Activations, 7 bits:
//! `a[m][k] = round(x[m][k] / t[m])` in [−63, 63], `t[m] = max_k |x[m][k]| / 63` (PyTorch's
//! x86 backend also quantises activations to 7 bits, `reduce_range`, for the same reason as
//! here). The product sums `a·q` exactly in i32 and scales once:
//! `out[m][n] += (Σ_k a[m][k] q[n][k]) · (t[m] · s[n])`.
//!
//! Kernel (AVX2): `vpmaddubsw` multiplies unsigned bytes by signed bytes and adds adjacent
//! pairs into i16 with saturation, so the activations go in shifted, `u = a + 64` in [1, 127]:
//! each pair sum is then at most 2 · 127 · 127 = 32 258 < 32 767 and never saturates (with
//! 8-bit activations it could). `vpmaddwd` against ones widens the pairs to i32 (4 products
//! per lane), and `Σ u·q − 64·Σ q` (row sums of q kept with the weights) gives `Σ a·q`. The
//! i32 accumulator cannot overflow below K = 2³¹ / 127² ≈ 133 000 inputs ([`MAX_K`] refuses
//! larger). The sums are exact, and the epilogue does the same f32 operations in the same
//! order as the scalar fallback, so both give identical bits. Weights are kept packed as
//! groups of 4 bytes in panels of 16 output channels (`packed`), the form the kernel streams;
//! the stored form (`q`, `scales`) is what checkpoints hold. AVX-512 VNNI / AVX-VNNI
//! (`vpdpbusd`, which fuses the three instructions) kernels are not written: the machine this
//! was built on has neither, so they could not be tested.

// Every unsafe operation sits in its own block, and every block says why it is sound.
#![deny(unsafe_op_in_unsafe_fn)]

/// Output channels per packed panel (two AVX2 registers of i32 lanes).
const NR: usize = 16;
/// Rows of `x` per micro-tile: 4 rows × 2 registers = 8 accumulators, plus two weight
/// registers, the broadcast, the ones and two products, of AVX2's 16.
const MR: usize = 4;
/// Inputs per i32 lane (4 bytes).
const KG: usize = 4;
/// The shift that makes activations unsigned for `vpmaddubsw`.
const SHIFT: i32 = 64;
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
    /// `[panel][k group][16 lanes]` i32 = the 4 bytes q[n][4g..4g+4], zero-padded to whole
    /// panels and a multiple of 4 inputs.
    packed: Vec<i32>,
    /// `Σ_k q[n][k]` per row, for the shift correction.
    sums: Vec<i32>,
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
        let kg = cols.div_ceil(KG);
        let panels = rows.div_ceil(NR);
        let mut packed = vec![0i32; panels * kg * NR];
        for n in 0..rows {
            let (panel, lane) = (n / NR, n % NR);
            for g in 0..kg {
                let b: [u8; 4] =
                    std::array::from_fn(|j| if KG * g + j < cols { q[n * cols + KG * g + j] as u8 } else { 0 });
                packed[(panel * kg + g) * NR + lane] = i32::from_le_bytes(b);
            }
        }
        let sums = (0..rows).map(|n| q[n * cols..(n + 1) * cols].iter().map(|&v| v as i32).sum()).collect();
        Self { rows, cols, q, scales, packed, sums }
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
        let kp = self.cols.div_ceil(KG);
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
        let kp = self.cols.div_ceil(KG);
        let mut xq = vec![0i32; rows * kp];
        let xs: Vec<f32> = (0..rows)
            .map(|m| quantize_activations(&x[m * ldx..m * ldx + self.cols], &mut xq[m * kp..(m + 1) * kp]))
            .collect();
        scalar_product(self, &xq, &xs, rows, out, ldo);
    }
}

/// 1.5 · 2²³: adding and subtracting it rounds an f32 of magnitude < 2²² to the nearest
/// integer, ties to even (the rounding of PyTorch's `nearbyint`). Plain arithmetic, so it
/// vectorises on baseline x86-64, where `f32::round` is a libm call per element.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `v` rounded to the nearest integer (ties to even) and clamped to ±127.
#[inline(always)]
fn round127(v: f32) -> f32 {
    (v.clamp(-127.0, 127.0) + ROUND_MAGIC) - ROUND_MAGIC
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
        // Shifted zeros: u = 64 everywhere (the correction takes them off again).
        let z = i32::from_le_bytes([SHIFT as u8; 4]);
        out.iter_mut().for_each(|v| *v = z);
        return 0.0;
    }
    let inv = 63.0 / amax;
    // u = round(x / t) + 64 in [1, 127]; inputs past the row (padding) get 0, which the zero
    // weights there ignore.
    let u = |v: f32| ((v * inv).clamp(-63.0, 63.0) + ROUND_MAGIC - ROUND_MAGIC + SHIFT as f32) as u8;
    let (groups, rest) = x.split_at(x.len() - x.len() % KG);
    for (o, g) in out.iter_mut().zip(groups.chunks_exact(KG)) {
        *o = i32::from_le_bytes([u(g[0]), u(g[1]), u(g[2]), u(g[3])]);
    }
    if !rest.is_empty() {
        let b: [u8; 4] = std::array::from_fn(|j| rest.get(j).map_or(0, |&v| u(v)));
        out[groups.len() / KG] = i32::from_le_bytes(b);
    }
    amax / 63.0
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
    let kg = w.cols.div_ceil(KG);
    for m in 0..rows {
        for n in 0..w.rows {
            let (panel, lane) = (n / NR, n % NR);
            let mut acc = 0i32;
            for g in 0..kg {
                let (a, b) = (xq[m * kg + g].to_le_bytes(), w.packed[(panel * kg + g) * NR + lane].to_le_bytes());
                for j in 0..KG {
                    acc += a[j] as i32 * b[j] as i8 as i32;
                }
            }
            let o = &mut out[m * ldo + n];
            *o += (acc - SHIFT * w.sums[n]) as f32 * (xs[m] * w.scales[n]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2_product(w: &QMatrix, xq: &[i32], xs: &[f32], rows: usize, out: &mut [f32], ldo: usize) {
    let kp = w.cols.div_ceil(KG);
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
                let (s, sums) = (&w.scales[n0..n0 + nw], &w.sums[n0..n0 + nw]);
                // Same operations in the same order as `scalar_product`: identical bits.
                for j in 0..nw {
                    o[j] += (a[j] - SHIFT * sums[j]) as f32 * (xs[m + r] * s[j]);
                }
            }
            m += mr;
        }
    }
}

/// `acc[r][lane] = Σ_g Σ_j u[r][4g+j] · q[lane][4g+j]` for R rows and one panel of 16 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile<const R: usize>(x: &[i32], w: &[i32], kg: usize, acc: &mut [[i32; NR]; MR]) {
    use std::arch::x86_64::*;
    debug_assert!(x.len() >= R * kg && w.len() >= kg * NR);
    let mut a = [[_mm256_setzero_si256(); 2]; R];
    let ones = _mm256_set1_epi16(1);
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    for g in 0..kg {
        // SAFETY: g < kg, so `wp + g·16 .. + 16` lies inside `w` (kg·16 values, checked by the
        // caller) and `xp + r·kg + g` inside `x` (R·kg values); unaligned loads. The bytes of
        // `x` are in [0, 127] and those of `w` in [−127, 127], so `maddubs` never saturates.
        unsafe {
            let w0 = _mm256_loadu_si256(wp.add(g * NR) as *const __m256i);
            let w1 = _mm256_loadu_si256(wp.add(g * NR + 8) as *const __m256i);
            for (r, ar) in a.iter_mut().enumerate() {
                let b = _mm256_set1_epi32(*xp.add(r * kg + g));
                ar[0] = _mm256_add_epi32(ar[0], _mm256_madd_epi16(_mm256_maddubs_epi16(b, w0), ones));
                ar[1] = _mm256_add_epi32(ar[1], _mm256_madd_epi16(_mm256_maddubs_epi16(b, w1), ones));
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
