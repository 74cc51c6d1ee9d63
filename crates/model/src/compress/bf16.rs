//! bf16 weights (the top 16 bits of an f32, rounded to nearest even) with f32 products:
//! each weight is widened back to f32 (a shift) and multiplied with fused multiply-adds, so
//! only the weights lose precision (relative error ≤ 2⁻⁸ per entry: 7 stored mantissa bits), the sums are f32.
//!
//! The AVX2 kernel streams panels of 16 output channels (`[panel][k][16]` u16) and widens
//! them with `vpmovzxwd` + `vpslld`; it halves the bytes read per weight but not the FLOPs,
//! so it is faster than f32 only where the f32 product was bound by memory, not by FMAs.
//! `vdpbf16ps` (AVX512_BF16) would also halve the FMA count; it is not written, because the
//! machine this was built on lacks AVX512_BF16 and it could not be tested.

#![deny(unsafe_op_in_unsafe_fn)]

const NR: usize = 16;
const MR: usize = 4;

/// f32 → bf16 bits, rounded to nearest even (weights are finite).
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

/// bf16 bits → f32 (exact).
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// A bf16 weight matrix (rows = output channels).
#[derive(Debug, Clone)]
pub struct BMatrix {
    rows: usize,
    cols: usize,
    bits: Vec<u16>,
    packed: Vec<u16>,
}

impl BMatrix {
    /// Rounds a row-major `rows × cols` f32 matrix to bf16.
    pub fn from_f32(w: &[f32], rows: usize, cols: usize) -> Self {
        Self::from_bits(w.iter().map(|&x| to_bf16(x)).collect(), rows, cols)
    }

    /// From stored bf16 bits (a checkpoint's).
    pub fn from_bits(bits: Vec<u16>, rows: usize, cols: usize) -> Self {
        assert_eq!(bits.len(), rows * cols);
        let panels = rows.div_ceil(NR);
        let mut packed = vec![0u16; panels * cols * NR];
        for n in 0..rows {
            for k in 0..cols {
                packed[((n / NR) * cols + k) * NR + n % NR] = bits[n * cols + k];
            }
        }
        Self { rows, cols, bits, packed }
    }

    /// Output channels.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Inputs per channel.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The stored bits, row-major.
    pub fn bits(&self) -> &[u16] {
        &self.bits
    }
    /// The weights as f32, row-major.
    pub fn to_f32(&self) -> Vec<f32> {
        self.bits.iter().map(|&h| from_bf16(h)).collect()
    }

    /// `out[m][n] += Σ_k x[m][k] w[n][k]` (strides `ldx`, `ldo`).
    pub fn add_product(&self, x: &[f32], ldx: usize, rows: usize, out: &mut [f32], ldo: usize) {
        assert!(rows == 0 || (x.len() >= (rows - 1) * ldx + self.cols && out.len() >= (rows - 1) * ldo + self.rows));
        #[cfg(target_arch = "x86_64")]
        if super::int8::simd_on() && std::is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA were detected at run time; lengths checked above.
            unsafe { avx2_product(self, x, ldx, rows, out, ldo) };
            return;
        }
        for m in 0..rows {
            for n in 0..self.rows {
                let w = &self.bits[n * self.cols..(n + 1) * self.cols];
                let s: f32 = x[m * ldx..m * ldx + self.cols].iter().zip(w).map(|(a, &b)| a * from_bf16(b)).sum();
                out[m * ldo + n] += s;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_product(w: &BMatrix, x: &[f32], ldx: usize, rows: usize, out: &mut [f32], ldo: usize) {
    let k = w.cols;
    for panel in 0..w.rows.div_ceil(NR) {
        let wp = &w.packed[panel * k * NR..(panel + 1) * k * NR];
        let n0 = panel * NR;
        let nw = (w.rows - n0).min(NR);
        let mut m = 0;
        while m < rows {
            let mr = (rows - m).min(MR);
            let mut acc = [[0f32; NR]; MR];
            let xs = &x[m * ldx..];
            // SAFETY: AVX2+FMA enabled here; `tile` reads `mr` rows of `k` values at stride
            // `ldx` from `xs` (inside `x`, checked by the caller) and `k·16` values of `wp`.
            unsafe {
                match mr {
                    4 => tile::<4>(xs, ldx, wp, k, &mut acc),
                    3 => tile::<3>(xs, ldx, wp, k, &mut acc),
                    2 => tile::<2>(xs, ldx, wp, k, &mut acc),
                    _ => tile::<1>(xs, ldx, wp, k, &mut acc),
                }
            }
            for (r, a) in acc.iter().enumerate().take(mr) {
                let o = &mut out[(m + r) * ldo + n0..(m + r) * ldo + n0 + nw];
                for j in 0..nw {
                    o[j] += a[j];
                }
            }
            m += mr;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile<const R: usize>(x: &[f32], ldx: usize, w: &[u16], k: usize, acc: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    debug_assert!(x.len() >= (R - 1) * ldx + k && w.len() >= k * NR);
    let mut a = [[_mm256_setzero_ps(); 2]; R];
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    for kk in 0..k {
        // SAFETY: kk < k: `wp + kk·16 .. +16` u16 (32 bytes) is inside `w`, and
        // `xp + r·ldx + kk` inside `x` for r < R (checked by the caller).
        unsafe {
            let h = _mm256_loadu_si256(wp.add(kk * NR) as *const __m256i);
            let w0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(h)), 16));
            let w1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1)), 16));
            for (r, ar) in a.iter_mut().enumerate() {
                let b = _mm256_set1_ps(*xp.add(r * ldx + kk));
                ar[0] = _mm256_fmadd_ps(b, w0, ar[0]);
                ar[1] = _mm256_fmadd_ps(b, w1, ar[1]);
            }
        }
    }
    for (r, ar) in a.iter().enumerate() {
        // SAFETY: acc[r] holds 16 f32: two unaligned 32-byte stores.
        unsafe {
            _mm256_storeu_ps(acc[r].as_mut_ptr(), ar[0]);
            _mm256_storeu_ps(acc[r].as_mut_ptr().add(8), ar[1]);
        }
    }
}
