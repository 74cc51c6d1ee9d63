//! Block-sparse weights: pruning by blocks, the compact stored form (kept block indices and
//! their values) and the product kernel, which skips zero blocks.
//!
//! Kernel layout: the output channels are cut into panels of 8 (one AVX2 register); each
//! panel keeps only the input columns k where any of its 8 weights is non-zero, with those 8
//! values. The product then does `out[m][panel] += x[m][k] · v` for the kept columns only, 8
//! rows of `x` at a time (8 independent accumulators keep the FMA pipes busy). Blocks of 8 (or
//! 16) output rows × 1 input column fill whole panel entries, so the work is exactly the
//! non-zeros; blocks along the input (1×8) or 4×4 blocks still skip every all-zero column of a
//! panel but carry some zeros.

#![deny(unsafe_op_in_unsafe_fn)]

use crate::{Error, Result};

/// Output channels per panel.
const NP: usize = 8;
/// Rows of `x` per tile.
const MR: usize = 8;

/// A block shape (rows × columns of the weight matrix, rows = output channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Output channels per block.
    pub rows: usize,
    /// Inputs per block.
    pub cols: usize,
}

impl Block {
    /// Parses "8x1", "1x16", "4x4" (also with `×`).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::Input(format!("block shape {s:?}: expected ROWSxCOLS such as 8x1, 1x16 or 4x4"));
        let (r, c) = s.split_once(['x', '×', 'X']).ok_or_else(bad)?;
        let (rows, cols) = (r.trim().parse().map_err(|_| bad())?, c.trim().parse().map_err(|_| bad())?);
        if rows == 0 || cols == 0 {
            return Err(bad());
        }
        Ok(Self { rows, cols })
    }
}

impl std::fmt::Display for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.rows, self.cols)
    }
}

/// The 0/1 mask zeroing the `sparsity` share of `block`s of a row-major `rows × cols` matrix
/// with the smallest L1 norm (ties: earlier block first). Partial blocks at the edges count as
/// blocks. `block` 1×1 is plain magnitude pruning.
pub fn block_mask(w: &[f32], rows: usize, cols: usize, block: Block, sparsity: f64) -> Vec<f32> {
    let (br, bc) = (rows.div_ceil(block.rows), cols.div_ceil(block.cols));
    let norms: Vec<f64> = (0..br * bc)
        .map(|b| {
            let (r0, c0) = ((b / bc) * block.rows, (b % bc) * block.cols);
            let mut s = 0.0;
            for r in r0..(r0 + block.rows).min(rows) {
                for c in c0..(c0 + block.cols).min(cols) {
                    s += w[r * cols + c].abs() as f64;
                }
            }
            s
        })
        .collect();
    let k = ((sparsity * norms.len() as f64).round() as usize).min(norms.len());
    let mut idx: Vec<usize> = (0..norms.len()).collect();
    idx.sort_by(|&a, &b| norms[a].total_cmp(&norms[b]).then(a.cmp(&b)));
    let mut mask = vec![1f32; w.len()];
    for &b in &idx[..k] {
        let (r0, c0) = ((b / bc) * block.rows, (b % bc) * block.cols);
        for r in r0..(r0 + block.rows).min(rows) {
            for c in c0..(c0 + block.cols).min(cols) {
                mask[r * cols + c] = 0.0;
            }
        }
    }
    mask
}

/// The compact stored form of a block-sparse matrix: the flat indices (row-major over the
/// block grid) of the blocks holding any non-zero, and their values block by block (row-major
/// inside each block; edge blocks padded with zeros).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Kept block indices, ascending.
    pub index: Vec<u32>,
    /// `index.len() × block.rows × block.cols` values.
    pub values: Vec<f32>,
}

/// Packs a dense matrix's non-zero blocks.
pub fn store(w: &[f32], rows: usize, cols: usize, block: Block) -> Stored {
    let (br, bc) = (rows.div_ceil(block.rows), cols.div_ceil(block.cols));
    let (mut index, mut values) = (Vec::new(), Vec::new());
    for b in 0..br * bc {
        let (r0, c0) = ((b / bc) * block.rows, (b % bc) * block.cols);
        let mut vals = Vec::with_capacity(block.rows * block.cols);
        for r in r0..r0 + block.rows {
            for c in c0..c0 + block.cols {
                vals.push(if r < rows && c < cols { w[r * cols + c] } else { 0.0 });
            }
        }
        if vals.iter().any(|v| *v != 0.0) {
            index.push(b as u32);
            values.extend(vals);
        }
    }
    Stored { index, values }
}

/// The dense matrix of a stored block-sparse one; an index outside the grid or a value count
/// that does not match is an error (the message names what is wrong; callers add the file).
pub fn unstore(s: &Stored, rows: usize, cols: usize, block: Block) -> std::result::Result<Vec<f32>, String> {
    let (br, bc) = (rows.div_ceil(block.rows), cols.div_ceil(block.cols));
    let per = block.rows * block.cols;
    if s.values.len() != s.index.len() * per {
        return Err(format!(
            "{} values for {} blocks of {block} (expected {})",
            s.values.len(),
            s.index.len(),
            s.index.len() * per
        ));
    }
    let mut w = vec![0f32; rows * cols];
    for (i, &b) in s.index.iter().enumerate() {
        let b = b as usize;
        if b >= br * bc {
            return Err(format!("block index {b} outside the {br} × {bc} grid of {block} blocks"));
        }
        let (r0, c0) = ((b / bc) * block.rows, (b % bc) * block.cols);
        for dr in 0..block.rows {
            for dc in 0..block.cols {
                let (r, c) = (r0 + dr, c0 + dc);
                if r < rows && c < cols {
                    w[r * cols + c] = s.values[i * per + dr * block.cols + dc];
                }
            }
        }
    }
    Ok(w)
}

/// The kernel's form: per panel of 8 output channels, the kept input columns and their 8 values.
#[derive(Debug, Clone)]
pub struct SparseMatrix {
    rows: usize,
    cols: usize,
    /// Panel p's entries are `start[p]..start[p + 1]`.
    start: Vec<usize>,
    ks: Vec<u32>,
    vals: Vec<f32>,
    nonzero: usize,
}

impl SparseMatrix {
    /// From a dense row-major matrix (zeros are skipped).
    pub fn from_dense(w: &[f32], rows: usize, cols: usize) -> Self {
        assert_eq!(w.len(), rows * cols);
        let panels = rows.div_ceil(NP);
        let (mut start, mut ks, mut vals) = (vec![0], Vec::new(), Vec::new());
        for p in 0..panels {
            for k in 0..cols {
                let v: [f32; NP] =
                    std::array::from_fn(|j| if p * NP + j < rows { w[(p * NP + j) * cols + k] } else { 0.0 });
                if v.iter().any(|x| *x != 0.0) {
                    ks.push(k as u32);
                    vals.extend_from_slice(&v);
                }
            }
            start.push(ks.len());
        }
        let nonzero = w.iter().filter(|x| **x != 0.0).count();
        Self { rows, cols, start, ks, vals, nonzero }
    }

    /// Output channels.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Inputs per channel.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Share of panel entries the kernel skips (1 − kept columns / all columns, over panels).
    pub fn skipped(&self) -> f64 {
        1.0 - self.ks.len() as f64 / (self.rows.div_ceil(NP) * self.cols).max(1) as f64
    }
    /// The dense matrix, row-major.
    pub fn to_dense(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.rows * self.cols];
        for p in 0..self.start.len() - 1 {
            for e in self.start[p]..self.start[p + 1] {
                for j in 0..NP.min(self.rows - p * NP) {
                    w[(p * NP + j) * self.cols + self.ks[e] as usize] = self.vals[e * NP + j];
                }
            }
        }
        w
    }

    /// Non-zero weights.
    pub fn nonzero(&self) -> usize {
        self.nonzero
    }

    /// `out[m][n] += Σ_k x[m][k] w[n][k]` (strides `ldx`, `ldo`), zero blocks skipped.
    pub fn add_product(&self, x: &[f32], ldx: usize, rows: usize, out: &mut [f32], ldo: usize) {
        assert!(rows == 0 || (x.len() >= (rows - 1) * ldx + self.cols && out.len() >= (rows - 1) * ldo + self.rows));
        #[cfg(target_arch = "x86_64")]
        if super::int8::simd_on() && std::is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA were detected at run time; lengths checked above, and every
            // stored k is < cols by construction.
            unsafe { avx2_product(self, x, ldx, rows, out, ldo) };
            return;
        }
        for m in 0..rows {
            for p in 0..self.start.len() - 1 {
                let mut acc = [0f32; NP];
                for e in self.start[p]..self.start[p + 1] {
                    let xv = x[m * ldx + self.ks[e] as usize];
                    for (a, v) in acc.iter_mut().zip(&self.vals[e * NP..(e + 1) * NP]) {
                        *a = xv.mul_add(*v, *a);
                    }
                }
                for j in 0..NP.min(self.rows - p * NP) {
                    out[m * ldo + p * NP + j] += acc[j];
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_product(w: &SparseMatrix, x: &[f32], ldx: usize, rows: usize, out: &mut [f32], ldo: usize) {
    for p in 0..w.start.len() - 1 {
        let (e0, e1) = (w.start[p], w.start[p + 1]);
        let nw = NP.min(w.rows - p * NP);
        let mut m = 0;
        while m < rows {
            let mr = (rows - m).min(MR);
            let mut acc = [[0f32; NP]; MR];
            let xs = &x[m * ldx..];
            // SAFETY: AVX2+FMA enabled here; `tile` reads `mr` rows at stride `ldx` from `xs`
            // at columns ks[e] < cols (inside `x`, checked by the caller) and 8 values per entry.
            unsafe {
                match mr {
                    8 => tile::<8>(w, e0, e1, xs, ldx, &mut acc),
                    7 => tile::<7>(w, e0, e1, xs, ldx, &mut acc),
                    6 => tile::<6>(w, e0, e1, xs, ldx, &mut acc),
                    5 => tile::<5>(w, e0, e1, xs, ldx, &mut acc),
                    4 => tile::<4>(w, e0, e1, xs, ldx, &mut acc),
                    3 => tile::<3>(w, e0, e1, xs, ldx, &mut acc),
                    2 => tile::<2>(w, e0, e1, xs, ldx, &mut acc),
                    _ => tile::<1>(w, e0, e1, xs, ldx, &mut acc),
                }
            }
            for (r, a) in acc.iter().enumerate().take(mr) {
                let o = &mut out[(m + r) * ldo + p * NP..(m + r) * ldo + p * NP + nw];
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
unsafe fn tile<const R: usize>(
    w: &SparseMatrix,
    e0: usize,
    e1: usize,
    x: &[f32],
    ldx: usize,
    acc: &mut [[f32; NP]; MR],
) {
    use std::arch::x86_64::*;
    let mut a = [_mm256_setzero_ps(); R];
    let (xp, vp) = (x.as_ptr(), w.vals.as_ptr());
    for e in e0..e1 {
        let k = w.ks[e] as usize;
        // SAFETY: e < vals.len() / 8, so the 8 values at e·8 are inside `vals`; k < cols and
        // r < R rows of stride `ldx` are inside `x` (checked by the caller).
        unsafe {
            let v = _mm256_loadu_ps(vp.add(e * NP));
            for (r, ar) in a.iter_mut().enumerate() {
                *ar = _mm256_fmadd_ps(_mm256_set1_ps(*xp.add(r * ldx + k)), v, *ar);
            }
        }
    }
    for (r, ar) in a.iter().enumerate() {
        // SAFETY: acc[r] holds 8 f32: one unaligned 32-byte store.
        unsafe { _mm256_storeu_ps(acc[r].as_mut_ptr(), *ar) };
    }
}
