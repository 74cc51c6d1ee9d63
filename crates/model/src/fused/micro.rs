//! A small f32 GEMM for the recurrent step: `C (m x n) (+)= A (m x k) · B (k x n)` with B packed
//! once per sequence.
//!
//! Why not the `gemm` crate here: each recurrent step is a short, fat product (m = the batch
//! rows still running, 32–64; k and n in the hundreds) repeated once per time step against the
//! same weights. `gemm` re-packs B on every call, so a sequence of T steps packs the recurrent
//! weights T times; here they are packed once into 32-column panels (`Packed`) that the
//! per-step calls stream from cache. The big one-off products (input projection, weight
//! gradients) still go to `gemm`.
//!
//! Kernels: AVX-512 (tiles of 8 rows x 32 columns, 16 accumulators) and AVX2+FMA (3 x 32, 12
//! accumulators), chosen at run time; elsewhere `Packed::available` is false and the caller
//! uses `gemm`. Partial tiles (rows or columns short of a full tile) run through a zero-padded
//! stack copy of C, so the kernels themselves never mask.
//!
//! Sums are in k order within each k-block of `KC` and the blocks are added in order, so the
//! result depends only on the shapes, not on threads or timing (bit-reproducible).

/// Columns per packed panel.
const NR: usize = 32;
/// k-block: a 32-column panel slice of `KC` rows is 32 KiB, which stays in a 48 KiB L1.
const KC: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx2,
}

fn detect() -> Option<Isa> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return Some(Isa::Avx512);
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Some(Isa::Avx2);
        }
    }
    None
}

/// The recurrent-product strategy this CPU gets, for benchmark records and run summaries:
/// "avx512 8x32", "avx2+fma 3x32", or "gemm crate" (no micro-kernel, or `SLUICE_NO_MICRO=1`).
/// Chosen by instruction set only; the tile and KC sizes are the same on every CPU vendor.
pub fn strategy() -> &'static str {
    if super::gemm::micro_disabled() {
        return "gemm crate (SLUICE_NO_MICRO)";
    }
    match detect() {
        Some(Isa::Avx512) => "avx512 8x32, KC 256",
        Some(Isa::Avx2) => "avx2+fma 3x32, KC 256",
        None => "gemm crate",
    }
}

/// B (k x n) in panels of `NR` columns: element (kk, j) of panel p at `(p * k + kk) * NR + j`;
/// columns past `n` in the last panel are zero. The buffer starts on a 64-byte boundary.
pub struct Packed {
    buf: Vec<f32>,
    start: usize,
    k: usize,
    n: usize,
    isa: Isa,
}

impl Packed {
    /// Whether this CPU has a micro-kernel (x86-64 with AVX-512F, or AVX2 and FMA).
    pub fn available() -> bool {
        detect().is_some()
    }

    /// Packs B where element (kk, j) is `src[kk * rs + j * cs]`. None when `available()` is
    /// false. `parallel`: panels packed on rayon's pool (call it from a pool worker).
    ///
    /// # Safety
    /// `src` must be valid for reads at every `kk * rs + j * cs`, kk < k, j < n.
    pub unsafe fn pack(k: usize, n: usize, src: *const f32, rs: usize, cs: usize, parallel: bool) -> Option<Packed> {
        // SAFETY: column j starts at `src + j * cs` and `pack_with` reads k values from it at stride
        // rs: the elements the contract makes readable.
        unsafe {
            let src = src as usize;
            Self::pack_with(k, n, rs, move |j| (src as *const f32).add(j * cs), parallel)
        }
    }

    /// Packs B (k x n) given by columns: element (kk, j) is `*col(j).add(kk)` (a weight
    /// matrix's rows read as the columns of its transpose, in any row order). None when
    /// `available()` is false. `parallel` as in `pack`.
    ///
    /// # Safety
    /// Every `col(j)`, j < n, readable for k values.
    pub unsafe fn pack_cols(
        k: usize,
        n: usize,
        col: impl Fn(usize) -> *const f32 + Sync,
        parallel: bool,
    ) -> Option<Packed> {
        // SAFETY: `pack_with` reads k consecutive values from each `col(j)`, as the contract allows.
        unsafe { Self::pack_with(k, n, 1, col, parallel) }
    }

    /// Element (kk, j) at `col(j).add(kk * rs)`.
    ///
    /// # Safety
    /// Every `col(j).add(kk * rs)`, j < n, kk < k, readable.
    unsafe fn pack_with(
        k: usize,
        n: usize,
        rs: usize,
        col: impl Fn(usize) -> *const f32 + Sync,
        parallel: bool,
    ) -> Option<Packed> {
        // SAFETY: every read is of element (kk, j), kk < k, j < n, at `col(j) + kk * rs`: readable by
        // the contract.
        unsafe {
            use rayon::prelude::*;
            let isa = detect()?;
            let panels = n.div_ceil(NR);
            let len = panels * k * NR;
            let mut buf = vec![0f32; len + 16];
            let start = buf.as_ptr().align_offset(64).min(16);
            if len == 0 {
                return Some(Packed { buf, start, k, n, isa });
            }
            let panel = |(p, dst): (usize, &mut [f32])| {
                let cols = NR.min(n - p * NR);
                let mut srcs = [0usize; NR];
                for (jj, s) in srcs.iter_mut().enumerate().take(cols) {
                    *s = col(p * NR + jj) as usize;
                }
                // Rows of the panel written in order; the 32 source columns' lines stay in L1.
                for kk in 0..k {
                    let row = &mut dst[kk * NR..][..cols];
                    for (v, &s) in row.iter_mut().zip(&srcs) {
                        *v = *(s as *const f32).add(kk * rs);
                    }
                }
            };
            let dst = &mut buf[start..start + len];
            if parallel {
                dst.par_chunks_mut(k * NR).enumerate().for_each(panel);
            } else {
                dst.chunks_mut(k * NR).enumerate().for_each(panel);
            }
            Some(Packed { buf, start, k, n, isa })
        }
    }

    /// Rows of B (the inner dimension of the product).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of B.
    pub fn n(&self) -> usize {
        self.n
    }

    /// `C[i, j] (+)= Σ_kk A[i, kk] B[kk, j]` over i < m, j < n (all of B's columns). A row-major
    /// with row stride `lda`, C with row stride `ldc`; `accumulate = false` overwrites C.
    ///
    /// # Safety
    /// A must be readable over m rows of k values at stride lda; C writable over m rows of n
    /// values at stride ldc; A and C must not overlap.
    pub unsafe fn gemm(&self, m: usize, a: *const f32, lda: usize, c: *mut f32, ldc: usize, accumulate: bool) {
        // SAFETY: row i of A starts at `a + i * lda`, k values readable by the contract; C and the
        // no-overlap rule carry over.
        unsafe { self.gemm_rows(m, |i| a.add(i * lda), c, ldc, accumulate) }
    }

    /// `gemm` with row i of A at `a_row(i)` (k values each): the rows of a step gathered in
    /// place, without copying them into a matrix first.
    ///
    /// # Safety
    /// Every `a_row(i)`, i < m, readable for k values; C as in `gemm`; no overlap.
    pub unsafe fn gemm_rows(
        &self,
        m: usize,
        a_row: impl Fn(usize) -> *const f32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        // SAFETY: every tile reads k values (in k-blocks) from A rows i..i + rows < m (rows past
        // `rows` repeat row i) and panel rows of the packed buffer (`panels · k · NR` values from
        // `start`), and writes rows < m, columns < n of C: all valid by the contract; C is written
        // only through these calls (the k = 0 fill likewise).
        unsafe {
            let (k, n) = (self.k, self.n);
            if m == 0 || n == 0 {
                return;
            }
            if k == 0 {
                if !accumulate {
                    for i in 0..m {
                        std::slice::from_raw_parts_mut(c.add(i * ldc), n).fill(0.0);
                    }
                }
                return;
            }
            let b = self.buf.as_ptr().add(self.start);
            let mr = self.mr();
            let panels = n.div_ceil(NR);
            let mut kb = 0;
            while kb < k {
                let kc = KC.min(k - kb);
                let load = accumulate || kb > 0;
                for p in 0..panels {
                    let cols = NR.min(n - p * NR);
                    let bp = b.add((p * k + kb) * NR);
                    let mut i = 0;
                    while i < m {
                        let rows = mr.min(m - i);
                        let mut arows = [a_row(i).add(kb); 8];
                        for (r, slot) in arows.iter_mut().enumerate().take(rows).skip(1) {
                            *slot = a_row(i + r).add(kb);
                        }
                        self.tile_at(&[(arows, bp, kc)], rows, cols, c.add(i * ldc + p * NR), ldc, load);
                        i += rows;
                    }
                }
                kb += kc;
            }
        }
    }

    /// One tile over up to two k-segments, each (row pointers of A, panel slice of B, k).
    ///
    /// # Safety
    /// Each segment's first `mr()` A rows readable for its k values and its B panel for k
    /// rows of `NR`; C writable over `mr()` rows of `NR` values at stride ldc.
    #[inline]
    unsafe fn tile_segs(&self, segs: &[([*const f32; 8], *const f32, usize)], c: *mut f32, ldc: usize, load: bool) {
        // SAFETY: `isa` names a kernel only where `detect` found its features (AVX-512F; AVX2 and
        // FMA), and the AVX2 kernel gets the first `mr()` = 3 row pointers; the pointers are valid
        // by this function's contract.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            match self.isa {
                Isa::Avx512 => x86::tile_avx512(segs, c, ldc, load),
                Isa::Avx2 => {
                    let mut s3 = [([std::ptr::null(); 3], std::ptr::null(), 0); 2];
                    for (d, &(a, b, kc)) in s3.iter_mut().zip(segs) {
                        *d = ([a[0], a[1], a[2]], b, kc);
                    }
                    x86::tile_avx2(&s3[..segs.len()], c, ldc, load)
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                let _ = (segs, c, ldc, load);
                unreachable!("no micro-kernel is detected off x86-64")
            }
        }
    }

    /// Rows per tile.
    fn mr(&self) -> usize {
        match self.isa {
            Isa::Avx512 => 8,
            Isa::Avx2 => 3,
        }
    }

    /// Runs one tile at rows i.., panel p, full or through a zero-padded copy of C at the
    /// edges (rows past `rows` read row i of A again, valid memory; their results are dropped).
    ///
    /// # Safety
    /// As `tile_segs`, except that C need only be writable over `rows` rows of `cols` values.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_at(
        &self,
        segs: &[([*const f32; 8], *const f32, usize)],
        rows: usize,
        cols: usize,
        c: *mut f32,
        ldc: usize,
        load: bool,
    ) {
        // SAFETY: a full tile writes C directly (valid by the contract); a partial one goes through
        // `tmp` (8 rows of NR ≥ mr() × cols), copying only `rows` rows of `cols` values of C in
        // and out.
        unsafe {
            if rows == self.mr() && cols == NR {
                return self.tile_segs(segs, c, ldc, load);
            }
            let mut tmp = [0f32; 8 * NR];
            if load {
                for r in 0..rows {
                    std::ptr::copy_nonoverlapping(c.add(r * ldc), tmp.as_mut_ptr().add(r * NR), cols);
                }
            }
            self.tile_segs(segs, tmp.as_mut_ptr(), NR, load);
            for r in 0..rows {
                std::ptr::copy_nonoverlapping(tmp.as_ptr().add(r * NR), c.add(r * ldc), cols);
            }
        }
    }

    /// `C = A1 · B1 + A2 · B2` (overwriting C) for two packings with the same n: an LSTM
    /// step's input and recurrent products in one pass, the sum kept in registers (no
    /// store and reload of C between the two, no k-blocking).
    ///
    /// # Safety
    /// As `gemm_rows` for each pair; `other` has the same n and ISA.
    pub unsafe fn gemm_pair(
        &self,
        m: usize,
        a1_row: impl Fn(usize) -> *const f32,
        other: &Packed,
        a2_row: impl Fn(usize) -> *const f32,
        c: *mut f32,
        ldc: usize,
    ) {
        // SAFETY: each tile reads the k values of A rows i..i + rows < m of each side (rows past
        // `rows` repeat row i) and panel p of each packing, and writes rows < m, columns < n of C:
        // valid by the contract; both packings have the same n and ISA (asserted).
        unsafe {
            assert!(other.n == self.n && other.isa == self.isa, "gemm_pair: packings differ");
            let n = self.n;
            if m == 0 || n == 0 {
                return;
            }
            let (b1, b2) = (self.buf.as_ptr().add(self.start), other.buf.as_ptr().add(other.start));
            let mr = self.mr();
            for p in 0..n.div_ceil(NR) {
                let cols = NR.min(n - p * NR);
                let mut i = 0;
                while i < m {
                    let rows = mr.min(m - i);
                    let (mut r1, mut r2) = ([a1_row(i); 8], [a2_row(i); 8]);
                    for r in 1..rows {
                        r1[r] = a1_row(i + r);
                        r2[r] = a2_row(i + r);
                    }
                    let segs = [(r1, b1.add(p * self.k * NR), self.k), (r2, b2.add(p * other.k * NR), other.k)];
                    self.tile_at(&segs, rows, cols, c.add(i * ldc + p * NR), ldc, false);
                    i += rows;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::NR;
    use std::arch::x86_64::*;

    /// 8 rows x 32 columns: C[r, 0..32] (+)= Σ over the segments Σ_kk a[r][kk] · B[kk, 0..32],
    /// the sums kept in registers from one segment to the next.
    ///
    /// # Safety
    /// The CPU has AVX-512F; each segment's 8 A rows readable for its k values and its B
    /// panel (64-byte aligned) for k rows of 32; C writable over 8 rows of 32 at stride ldc.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile_avx512(segs: &[([*const f32; 8], *const f32, usize)], c: *mut f32, ldc: usize, load: bool) {
        // SAFETY: the CPU has AVX-512F (the contract); loads and stores stay in the extents the
        // contract makes valid, and the aligned loads read B panels, which `pack_with` starts on
        // 64-byte boundaries.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 2]; 8];
            if load {
                for (r, row) in acc.iter_mut().enumerate() {
                    row[0] = _mm512_loadu_ps(c.add(r * ldc));
                    row[1] = _mm512_loadu_ps(c.add(r * ldc + 16));
                }
            }
            for &(a, b, kc) in segs {
                for kk in 0..kc {
                    let b0 = _mm512_load_ps(b.add(kk * NR));
                    let b1 = _mm512_load_ps(b.add(kk * NR + 16));
                    for (r, row) in acc.iter_mut().enumerate() {
                        let av = _mm512_set1_ps(*a[r].add(kk));
                        row[0] = _mm512_fmadd_ps(av, b0, row[0]);
                        row[1] = _mm512_fmadd_ps(av, b1, row[1]);
                    }
                }
            }
            for (r, row) in acc.iter().enumerate() {
                _mm512_storeu_ps(c.add(r * ldc), row[0]);
                _mm512_storeu_ps(c.add(r * ldc + 16), row[1]);
            }
        }
    }

    /// 3 rows x 32 columns with 256-bit registers.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; as `tile_avx512` otherwise, with 3 rows.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile_avx2(segs: &[([*const f32; 3], *const f32, usize)], c: *mut f32, ldc: usize, load: bool) {
        // SAFETY: the CPU has AVX2 and FMA (the contract); loads and stores stay in the extents the
        // contract makes valid, and the aligned loads read B panels, which `pack_with` starts on
        // 64-byte boundaries.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); 4]; 3];
            if load {
                for (r, row) in acc.iter_mut().enumerate() {
                    for (q, v) in row.iter_mut().enumerate() {
                        *v = _mm256_loadu_ps(c.add(r * ldc + 8 * q));
                    }
                }
            }
            for &(a, b, kc) in segs {
                for kk in 0..kc {
                    let bs = [
                        _mm256_load_ps(b.add(kk * NR)),
                        _mm256_load_ps(b.add(kk * NR + 8)),
                        _mm256_load_ps(b.add(kk * NR + 16)),
                        _mm256_load_ps(b.add(kk * NR + 24)),
                    ];
                    for (r, row) in acc.iter_mut().enumerate() {
                        let av = _mm256_set1_ps(*a[r].add(kk));
                        for (v, bv) in row.iter_mut().zip(bs) {
                            *v = _mm256_fmadd_ps(av, bv, *v);
                        }
                    }
                }
            }
            for (r, row) in acc.iter().enumerate() {
                for (q, v) in row.iter().enumerate() {
                    _mm256_storeu_ps(c.add(r * ldc + 8 * q), *v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(state: &mut u64) -> f32 {
        *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Every shape class: full and partial tiles in m and n, k below, at and across `KC`,
    /// B read transposed, accumulate and overwrite; against an f64 triple loop.
    /// `gemm_pair` against two f64 products, full and edge tiles, different k per side.
    #[test]
    fn pair_matches_naive_products() {
        if !Packed::available() {
            return;
        }
        let mut st = 11u64;
        for &(m, n, k1, k2) in &[(8, 32, 16, 8), (19, 70, 300, 129), (1, 5, 1, 3), (64, 512, 128, 256)] {
            let a1: Vec<f32> = (0..m * k1).map(|_| lcg(&mut st)).collect();
            let a2: Vec<f32> = (0..m * k2).map(|_| lcg(&mut st)).collect();
            let b1: Vec<f32> = (0..k1 * n).map(|_| lcg(&mut st)).collect();
            let b2: Vec<f32> = (0..k2 * n).map(|_| lcg(&mut st)).collect();
            // SAFETY: b1 (k1 × n) and b2 (k2 × n) row-major, read in bounds.
            let p1 = unsafe { Packed::pack(k1, n, b1.as_ptr(), n, 1, false) }.unwrap();
            // SAFETY: as above.
            let p2 = unsafe { Packed::pack(k2, n, b2.as_ptr(), n, 1, false) }.unwrap();
            let ldc = n + 2;
            let mut c = vec![7f32; m * ldc];
            // SAFETY: a1 (m × k1), a2 (m × k2) and c (m × ldc ≥ n) are separate buffers.
            unsafe {
                p1.gemm_pair(m, |i| a1.as_ptr().add(i * k1), &p2, |i| a2.as_ptr().add(i * k2), c.as_mut_ptr(), ldc)
            };
            for i in 0..m {
                for j in 0..ldc {
                    if j >= n {
                        assert_eq!(c[i * ldc + j], 7.0);
                        continue;
                    }
                    let mut want = 0f64;
                    for kk in 0..k1 {
                        want += a1[i * k1 + kk] as f64 * b1[kk * n + j] as f64;
                    }
                    for kk in 0..k2 {
                        want += a2[i * k2 + kk] as f64 * b2[kk * n + j] as f64;
                    }
                    let got = c[i * ldc + j] as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * ((k1 + k2) as f64).sqrt(),
                        "m{m} n{n} ({i},{j}): {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn matches_naive_product() {
        if !Packed::available() {
            eprintln!("no micro-kernel on this CPU; skipped");
            return;
        }
        let mut st = 7u64;
        for &(m, n, k) in
            &[(1, 1, 1), (8, 32, 16), (3, 32, 5), (64, 512, 256), (7, 45, 300), (17, 100, 513), (9, 16, 1), (5, 33, 0)]
        {
            for transposed in [false, true] {
                for accumulate in [false, true] {
                    let a: Vec<f32> = (0..m * k).map(|_| lcg(&mut st)).collect();
                    let bsrc: Vec<f32> = (0..k * n).map(|_| lcg(&mut st)).collect();
                    let ldc = n + 3;
                    let c0: Vec<f32> = (0..m * ldc).map(|_| lcg(&mut st)).collect();
                    let (rs, cs) = if transposed { (1, k) } else { (n, 1) };
                    // SAFETY: bsrc holds k × n values, read at kk·rs + j·cs in bounds.
                    let packed = unsafe { Packed::pack(k, n, bsrc.as_ptr(), rs, cs, false) }.unwrap();
                    let len = n.div_ceil(NR) * k * NR;
                    // SAFETY: as above.
                    let par = unsafe { Packed::pack(k, n, bsrc.as_ptr(), rs, cs, true) }.unwrap();
                    assert_eq!(par.buf[par.start..][..len], packed.buf[packed.start..][..len]);
                    if transposed {
                        let base = bsrc.as_ptr() as usize;
                        // SAFETY: column j of the transposed source is k values from j·k.
                        let by_cols =
                            unsafe { Packed::pack_cols(k, n, |j| (base as *const f32).add(j * k), false) }.unwrap();
                        assert_eq!(by_cols.buf[by_cols.start..][..len], packed.buf[packed.start..][..len]);
                    }
                    let mut c = c0.clone();
                    // SAFETY: a (m × k) and c (m × ldc ≥ n) are separate buffers.
                    unsafe { packed.gemm(m, a.as_ptr(), k, c.as_mut_ptr(), ldc, accumulate) };
                    for i in 0..m {
                        for j in 0..ldc {
                            let got = c[i * ldc + j] as f64;
                            if j >= n {
                                assert_eq!(got, c0[i * ldc + j] as f64, "column past n written");
                                continue;
                            }
                            let mut want = if accumulate { c0[i * ldc + j] as f64 } else { 0.0 };
                            for kk in 0..k {
                                want += a[i * k + kk] as f64 * bsrc[kk * rs + j * cs] as f64;
                            }
                            let tol = 1e-5 * (k as f64).sqrt().max(1.0);
                            assert!(
                                (got - want).abs() <= tol,
                                "m{m} n{n} k{k} t{transposed} acc{accumulate} ({i},{j}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
