//! The fused LSTM direction on raw slices: forward over the whole sequence, saving what the
//! backward needs, and backward through time.
//!
//! Layout. Sequences are sorted by length, longest first (like PyTorch's packed sequences), so
//! the rows still running at step `s` are a prefix `0..n[s]` of the sorted batch, and every
//! per-step buffer is "packed": step `s` occupies rows `off[s] .. off[s] + n[s]`. Padded steps
//! therefore cost nothing, and a reverse direction is just a different time index
//! `pos(r, s) = len[r] - 1 - s` when gathering inputs and scattering outputs.
//!
//! Gate columns are regrouped per block of hidden units: block `k` (units `j0..j1`, width `w`)
//! owns the contiguous columns `ng*j0 .. ng*j1`, laid out `[gate_0 (w) | gate_1 (w) | ..]`. One
//! thread owns one block: per step it does its slice of `h W_hh^T` (a GEMM against its quarter
//! of the weights, which stays in its core's cache) and that block's gate math, so each step is
//! a single fork/join. Backward mirrors it: thread `k` computes `dh[:, block k]` (a GEMM against
//! its columns of W_hh) and then the gate gradients of the same block, which need exactly that
//! `dh` slice, so each step is again one fork/join.

use super::micro::Packed;
use super::simd;
use gemm::Parallelism;
use rayon::prelude::*;

/// Which gates and activations the cell has (Greff et al. 2017 variants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellSpec {
    /// Input gate has parameters (otherwise 1, or 1 - f when `coupled`).
    pub input_gate: bool,
    /// cifg: i = 1 - f (implies `!input_gate`).
    pub coupled: bool,
    pub forget_gate: bool,
    pub output_gate: bool,
    /// g = tanh(z_g) (otherwise g = z_g).
    pub input_activation: bool,
    /// h = o * tanh(c) (otherwise h = o * c).
    pub output_activation: bool,
    /// i and f see c_{t-1}, o sees c_t, through diagonal weights.
    pub peephole: bool,
}

impl CellSpec {
    pub const VANILLA: CellSpec = CellSpec {
        input_gate: true,
        coupled: false,
        forget_gate: true,
        output_gate: true,
        input_activation: true,
        output_activation: true,
        peephole: false,
    };

    /// Gates with parameters, in PyTorch order (0 = i, 1 = f, 2 = g, 3 = o).
    pub fn gates(&self) -> Vec<usize> {
        let mut g = Vec::with_capacity(4);
        if self.input_gate {
            g.push(0);
        }
        if self.forget_gate {
            g.push(1);
        }
        g.push(2);
        if self.output_gate {
            g.push(3);
        }
        g
    }
}

/// Element type: f32 uses the SIMD approximations, f64 uses libm (the exact reference).
/// `FMA`: fused multiply-adds available (see `simd`); f64 ignores it.
pub trait Real: candle_core::WithDType + std::ops::Neg<Output = Self> + Default + Copy + Send + Sync {
    fn sigmoid_slice<const FMA: bool>(xs: &mut [Self]);
    fn tanh_slice<const FMA: bool>(xs: &mut [Self]);
    fn sigmoid<const FMA: bool>(x: Self) -> Self;
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

/// Problem sizes and the packing plan shared by forward and backward.
#[derive(Clone, Debug)]
pub struct Plan {
    pub batch: usize,
    pub time: usize,
    pub input: usize,
    pub hidden: usize,
    pub spec: CellSpec,
    pub reverse: bool,
    /// Gates with parameters (PyTorch order indices).
    pub gates: Vec<usize>,
    /// sorted row -> batch index.
    pub perm: Vec<usize>,
    /// Length of each sorted row.
    pub len: Vec<usize>,
    /// Rows active at each step (prefix of the sorted batch).
    pub n: Vec<usize>,
    /// Packed row offset of each step; `off[tmax]` is the packed row count.
    pub off: Vec<usize>,
    /// Hidden-unit blocks, one per task; a single block when the rows are split (`groups`).
    pub blocks: Vec<(usize, usize)>,
    /// Row groups: group g runs sorted rows g, g + groups, g + 2·groups, ... through every
    /// step on its own thread. 1 = the threads split the hidden units (`blocks`) instead.
    pub groups: usize,
    /// Internal gate column -> row of the caller's weight matrices.
    pub col_src: Vec<usize>,
}

impl Plan {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        batch: usize,
        time: usize,
        input: usize,
        hidden: usize,
        lengths: &[usize],
        reverse: bool,
        spec: CellSpec,
        threads: usize,
    ) -> Plan {
        let mut perm: Vec<usize> = (0..batch).collect();
        perm.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]));
        let len: Vec<usize> = perm.iter().map(|&b| lengths[b]).collect();
        let tmax = len.first().copied().unwrap_or(0);
        let n: Vec<usize> = (0..tmax).map(|s| len.iter().filter(|&&l| l > s).count()).collect();
        let mut off = vec![0; tmax + 1];
        for s in 0..tmax {
            off[s + 1] = off[s] + n[s];
        }
        // Sequences are independent, so with enough rows each thread takes every
        // `threads`-th row through the whole sequence and the threads never wait for each
        // other (interleaved so that rows sorted by length spread evenly). With few rows a
        // thread's share would be a fraction of a GEMM tile: the threads split the hidden
        // units instead and meet after every step.
        let active = len.iter().filter(|&&l| l > 0).count();
        let groups = if threads > 1 && active >= row_split_min() * threads { threads } else { 1 };
        // Blocks a multiple of 16 units wide (one AVX-512 register of f32) where possible.
        let tasks = if groups > 1 { 1 } else { threads.clamp(1, hidden.div_ceil(16).max(1)) };
        let w = hidden.div_ceil(tasks).div_ceil(16) * 16;
        let mut blocks = Vec::new();
        let mut j0 = 0;
        while j0 < hidden {
            let j1 = (j0 + w).min(hidden);
            blocks.push((j0, j1));
            j0 = j1;
        }
        let gates = spec.gates();
        let ng = gates.len();
        let mut col_src = Vec::with_capacity(ng * hidden);
        for &(j0, j1) in &blocks {
            for slot in 0..ng {
                for j in j0..j1 {
                    col_src.push(slot * hidden + j);
                }
            }
        }
        Plan { batch, time, input, hidden, spec, reverse, gates, perm, len, n, off, blocks, groups, col_src }
    }

    /// Rows of group g among the first n sorted rows.
    #[inline]
    pub fn group_rows(&self, g: usize, n: usize) -> usize {
        if n > g {
            (n - g).div_ceil(self.groups)
        } else {
            0
        }
    }

    pub fn tmax(&self) -> usize {
        self.n.len()
    }
    pub fn rows(&self) -> usize {
        self.off[self.tmax()]
    }
    pub fn ng(&self) -> usize {
        self.gates.len()
    }
    pub fn r(&self) -> usize {
        self.ng() * self.hidden
    }
    /// Time index of step `s` of sorted row `r`.
    #[inline]
    pub fn pos(&self, r: usize, s: usize) -> usize {
        if self.reverse {
            self.len[r] - 1 - s
        } else {
            s
        }
    }
    /// Length of the op's flat output: outputs (batch, time, hidden), then h_n and c_n
    /// (batch, hidden) each. Flat so that every part is a contiguous view.
    pub fn packed_len(&self) -> usize {
        (self.batch * self.time + 2 * self.batch) * self.hidden
    }
    #[inline]
    pub fn out_at(&self, b: usize, t: usize) -> usize {
        (b * self.time + t) * self.hidden
    }
    #[inline]
    pub fn hn_at(&self, b: usize) -> usize {
        (self.batch * self.time + b) * self.hidden
    }
    #[inline]
    pub fn cn_at(&self, b: usize) -> usize {
        (self.batch * self.time + self.batch + b) * self.hidden
    }
    /// Packed-weight width: [W_ih | W_hh | bias | peephole?].
    pub fn wcols(&self) -> usize {
        self.input + self.hidden + 1 + usize::from(self.spec.peephole)
    }
    fn slot(&self, gate: usize) -> Option<usize> {
        self.gates.iter().position(|&g| g == gate)
    }
}

/// The caller's weights, rows in the caller's (PyTorch) gate order: row r of W_ih at
/// `ih[r * ih_rs..][..input]`, of W_hh at `hh[r * hh_rs..][..hidden]`, its bias (b_ih + b_hh)
/// at `bias[r * bias_rs]` and, for the peephole variant, its peephole weight at
/// `peep[r * peep_rs]` (0 for the g rows).
#[derive(Clone, Copy)]
pub struct Weights<'a, T> {
    pub ih: &'a [T],
    pub ih_rs: usize,
    pub hh: &'a [T],
    pub hh_rs: usize,
    pub bias: &'a [T],
    pub bias_rs: usize,
    pub peep: Option<(&'a [T], usize)>,
}

impl<'a, T> Weights<'a, T> {
    /// The op's packed layout: (R, wcols) rows `[W_ih | W_hh | bias (| peephole)]`.
    pub fn packed(w: &'a [T], plan: &Plan) -> Self {
        let (ni, nh, wc) = (plan.input, plan.hidden, plan.wcols());
        Weights {
            ih: w,
            ih_rs: wc,
            hh: &w[ni..],
            hh_rs: wc,
            bias: &w[ni + nh..],
            bias_rs: wc,
            peep: plan.spec.peephole.then(|| (&w[wc - 1..], wc)),
        }
    }

    #[inline]
    fn ih_row(&self, r: usize, ni: usize) -> &'a [T] {
        &self.ih[r * self.ih_rs..][..ni]
    }

    #[inline]
    fn hh_row(&self, r: usize, nh: usize) -> &'a [T] {
        &self.hh[r * self.hh_rs..][..nh]
    }
}

/// What the backward needs, kept from the forward.
pub struct Saved<T> {
    pub plan: Plan,
    /// (rows, input) gathered inputs.
    x: Vec<T>,
    /// (R, input) and (R, hidden) weights in internal column order.
    w_ih: Vec<T>,
    w_hh: Vec<T>,
    /// (3, hidden): peephole weights for i, f, o (empty when not peephole).
    peep: Vec<T>,
    /// (rows, R) gate activations.
    gates: Vec<T>,
    /// (rows, hidden) cells, and their output activation.
    c: Vec<T>,
    tc: Vec<T>,
    /// (rows, hidden): the h each step's GEMM read (h_{s-1}).
    h_prev: Vec<T>,
    /// (batch, hidden) sorted initial cell.
    c0: Vec<T>,
}

#[derive(Clone, Copy)]
struct Ptr<T>(*mut T);
unsafe impl<T> Send for Ptr<T> {}
unsafe impl<T> Sync for Ptr<T> {}
impl<T> Ptr<T> {
    #[inline]
    unsafe fn at(self, i: usize) -> *mut T {
        self.0.add(i)
    }
    #[inline]
    unsafe fn slice<'a>(self, i: usize, len: usize) -> &'a mut [T] {
        std::slice::from_raw_parts_mut(self.0.add(i), len)
    }
}

/// Threads of rayon's global pool (RAYON_NUM_THREADS, or what the caller built with
/// `ThreadPoolBuilder::build_global`), the pool candle's matmul (gemm) also runs on.
pub fn pool_threads() -> usize {
    rayon::current_num_threads()
}

/// dst (m x n, row stride dst_rs) (+)= lhs (m x k) * rhs (k x n), arbitrary lhs/rhs strides.
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
                std::slice::from_raw_parts_mut(dst.add(i * dst_rs), n).fill(T::zero());
            }
        }
        return;
    }
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
    );
}

/// One packed recurrent-weight panel set per block (`micro`), when T is f32 and the CPU has a
/// micro-kernel; None means "use `gemm`". `pack(j0, j1)` packs block `j0..j1`.
fn pack_blocks<T: Real, P: Send>(plan: &Plan, pack: impl Fn(usize, usize) -> Option<P> + Sync) -> Option<Vec<P>> {
    if T::DTYPE != candle_core::DType::F32 || !Packed::available() || micro_disabled() {
        return None;
    }
    if plan.blocks.len() == 1 {
        // No parallel iterator: from outside the pool it would park this thread.
        return plan.blocks.iter().map(|&(j0, j1)| pack(j0, j1)).collect();
    }
    plan.blocks.par_iter().map(|&(j0, j1)| pack(j0, j1)).collect()
}

/// Rows per thread from which the threads split the rows rather than the hidden units: two
/// AVX-512 tiles of 8 rows. `SLUICE_ROW_SPLIT_MIN` overrides it (benchmarks: a huge value
/// forces the hidden-unit split).
fn row_split_min() -> usize {
    #[cfg(test)]
    if let Some(m) = ROW_SPLIT_OVERRIDE.with(|c| c.get()) {
        return m;
    }
    static MIN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MIN.get_or_init(|| std::env::var("SLUICE_ROW_SPLIT_MIN").ok().and_then(|v| v.parse().ok()).unwrap_or(16))
}

#[cfg(test)]
thread_local! {
    /// Tests pick the split regardless of the batch size.
    pub(crate) static ROW_SPLIT_OVERRIDE: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// `SLUICE_NO_MICRO=1` sends the recurrent products to `gemm` (for comparing the two).
fn micro_disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var_os("SLUICE_NO_MICRO").is_some_and(|v| v != "0"))
}

/// Runs `f(k)` for every block, returning when all are done: the per-step barrier. Called on
/// a rayon worker (see `forward`), a join is a push on the local deque that an idle worker
/// steals, or that this thread runs itself when every other core is busy (work stealing never
/// waits on a descheduled thread that has not started its part, unlike a fixed barrier).
fn for_blocks(nb: usize, f: impl Fn(usize) + Sync + Send) {
    match nb {
        1 => f(0),
        2 => {
            rayon::join(|| f(0), || f(1));
        }
        _ => (0..nb).into_par_iter().for_each(f),
    }
}

/// Forward. `x` (batch, time, input), `w` (R, wcols), `state` (2, batch, hidden), all
/// contiguous. Returns the flat packed output (`Plan::packed_len`) and, with `save`, what the
/// backward needs (without it, inference, only two steps of state are kept).
pub fn forward<T: Real>(
    plan: Plan,
    x: &[T],
    w: Weights<'_, T>,
    state: &[T],
    threads: usize,
    save: bool,
) -> (Vec<T>, Option<Saved<T>>) {
    // The whole time loop runs on a pool worker so that each step's join is cheap; with one
    // thread there is no join, and the caller's thread does it all.
    if threads <= 1 && plan.blocks.len() == 1 {
        return forward_impl(plan, x, w, state, threads, save);
    }
    rayon::scope(|_| forward_impl(plan, x, w, state, threads, save))
}

fn forward_impl<T: Real>(
    plan: Plan,
    x: &[T],
    w: Weights<'_, T>,
    state: &[T],
    threads: usize,
    save: bool,
) -> (Vec<T>, Option<Saved<T>>) {
    let (bsz, tlen, ni, nh) = (plan.batch, plan.time, plan.input, plan.hidden);
    let (ng, r_all, rows, tmax) = (plan.ng(), plan.r(), plan.rows(), plan.tmax());
    let n0 = plan.n.first().copied().unwrap_or(0);

    let bias: Vec<T> = plan.col_src.iter().map(|&src| w.bias[src * w.bias_rs]).collect();
    let mut peep = Vec::new();
    if let Some((pw, prs)) = w.peep {
        // The peephole column holds p_i, p_f, p_o at the rows of gates i, f, o.
        peep = vec![T::zero(); 3 * nh];
        for (q, gate) in [0usize, 1, 3].iter().enumerate() {
            let slot = plan.slot(*gate).expect("peephole needs i, f, o");
            for j in 0..nh {
                peep[q * nh + j] = pw[(slot * nh + j) * prs];
            }
        }
    }

    // f32 on x86-64: each block's columns of W_ih^T and W_hh^T packed once for the whole
    // sequence, straight from the caller's rows, and each step projects its own inputs (read
    // in place) and its h in the same pass over the gate rows. Otherwise one `gemm` projects
    // every step's gathered inputs up front and a `gemm` per step adds h W_hh^T.
    let packed = pack_blocks::<T, _>(&plan, |j0, j1| unsafe {
        let cols = ng * (j1 - j0);
        let src = |j: usize| plan.col_src[ng * j0 + j];
        // One block shared by row groups: its panels are packed by all the threads.
        let par = plan.groups > 1;
        let ih = Packed::pack_cols(ni, cols, |j| w.ih_row(src(j), ni).as_ptr() as *const f32, par)?;
        let hh = Packed::pack_cols(nh, cols, |j| w.hh_row(src(j), nh).as_ptr() as *const f32, par)?;
        Some((ih, hh))
    });
    let micro = packed.is_some();
    // Weights in internal column order: what the backward reads, and the `gemm` path.
    let (mut w_ih, mut w_hh) = (Vec::new(), Vec::new());
    if save || !micro {
        w_ih = vec![T::zero(); r_all * ni];
        w_hh = vec![T::zero(); r_all * nh];
        for (c, &src) in plan.col_src.iter().enumerate() {
            w_ih[c * ni..(c + 1) * ni].copy_from_slice(w.ih_row(src, ni));
            w_hh[c * nh..(c + 1) * nh].copy_from_slice(w.hh_row(src, nh));
        }
    }
    let mut w_hh_t = Vec::new();
    if !micro {
        w_hh_t = vec![T::zero(); nh * r_all];
        for (c, row) in w_hh.chunks_exact(nh).enumerate() {
            for (k, &v) in row.iter().enumerate() {
                w_hh_t[k * r_all + c] = v;
            }
        }
    }

    // Gate rows for every step (training, or the up-front projection), else one step's.
    let all_gates = save || !micro;
    let mut xg = Vec::new();
    if all_gates {
        xg = vec![T::zero(); rows * ni];
        for s in 0..tmax {
            for r in 0..plan.n[s] {
                let src = (plan.perm[r] * tlen + plan.pos(r, s)) * ni;
                xg[(plan.off[s] + r) * ni..(plan.off[s] + r + 1) * ni].copy_from_slice(&x[src..src + ni]);
            }
        }
    }
    // The bias is added row by row in the step loop, where the row is in L1 anyway.
    let mut gates = vec![T::zero(); if all_gates { rows * r_all } else { n0 * r_all }];
    if !micro {
        unsafe {
            matmul(
                rows,
                r_all,
                ni,
                gates.as_mut_ptr(),
                r_all,
                false,
                xg.as_ptr(),
                ni,
                1,
                w_ih.as_ptr(),
                1,
                ni,
                threads,
            );
        }
    }
    // Row offsets of step s: in the gate buffer, and in the c / act(c) / h_prev buffers
    // (every step when saving, else two alternating steps).
    let goff = |s: usize| if all_gates { plan.off[s] } else { 0 };
    let soff = |s: usize| if save { plan.off[s] } else { (s % 2) * n0 };
    let state_rows = if save { rows } else { 2 * n0 };

    let mut out = vec![T::zero(); plan.packed_len()];
    let mut c0 = vec![T::zero(); bsz * nh];
    let mut h_prev = vec![T::zero(); state_rows * nh];
    for r in 0..bsz {
        let b = plan.perm[r];
        let h0 = &state[b * nh..(b + 1) * nh];
        let c0b = &state[(bsz + b) * nh..(bsz + b + 1) * nh];
        c0[r * nh..(r + 1) * nh].copy_from_slice(c0b);
        // Final state defaults to the initial one (length-0 sequences).
        out[plan.hn_at(b)..][..nh].copy_from_slice(h0);
        out[plan.cn_at(b)..][..nh].copy_from_slice(c0b);
        if r < n0 {
            h_prev[r * nh..(r + 1) * nh].copy_from_slice(h0);
        }
    }
    let mut c = vec![T::zero(); state_rows * nh];
    let mut tc = vec![T::zero(); state_rows * nh];

    let (pg, pc, ptc, ph, pout) = (
        Ptr(gates.as_mut_ptr()),
        Ptr(c.as_mut_ptr()),
        Ptr(tc.as_mut_ptr()),
        Ptr(h_prev.as_mut_ptr()),
        Ptr(out.as_mut_ptr()),
    );
    let whht = Ptr(w_hh_t.as_ptr() as *mut T);
    let plan_ref = &plan;
    let (c0_ref, peep_ref, bias_ref) = (&c0, &peep, &bias);
    let gate_fn = fwd_gates_fn::<T>();
    let vanilla_fn = fwd_vanilla_fn::<T>();
    let vanilla = plan.spec == CellSpec::VANILLA;
    let gs = plan.groups;
    let h0_zero = state[..bsz * nh].iter().all(|&v| v == T::zero());
    // Step s of row group g (rows g, g + gs, ...), hidden-unit block k.
    let step = |g: usize, k: usize, s: usize| {
        let (j0, j1) = plan_ref.blocks[k];
        let w = j1 - j0;
        let n = plan_ref.n[s];
        let m = plan_ref.group_rows(g, n);
        let (g0, s0) = (goff(s), soff(s));
        unsafe {
            let dst = pg.at((g0 + g) * r_all + ng * j0);
            // A zero initial state (the usual case) contributes nothing to step 0.
            let skip_h = s == 0 && h0_zero;
            if let Some(p) = &packed {
                let (ih, hh) = &p[k];
                let xrow = |i: usize| {
                    let r = g + i * gs;
                    x.as_ptr().add((plan_ref.perm[r] * tlen + plan_ref.pos(r, s)) * ni) as *const f32
                };
                let hrow = |i: usize| ph.at((s0 + g + i * gs) * nh) as *const f32;
                if skip_h {
                    ih.gemm_rows(m, xrow, dst as *mut f32, gs * r_all, false);
                } else {
                    ih.gemm_pair(m, xrow, hh, hrow, dst as *mut f32, gs * r_all);
                }
            } else if !skip_h {
                matmul(
                    m,
                    ng * w,
                    nh,
                    dst,
                    gs * r_all,
                    true,
                    ph.at((s0 + g) * nh),
                    gs * nh,
                    1,
                    whht.at(ng * j0),
                    r_all,
                    1,
                    1,
                );
            }
            let mut scratch = vec![T::zero(); 4 * w];
            for r in (g..n).step_by(gs) {
                let pre = pg.slice((g0 + r) * r_all + ng * j0, ng * w);
                let bias_k = &bias_ref[ng * j0..ng * j1];
                let cp: &[T] =
                    if s == 0 { &c0_ref[r * nh + j0..r * nh + j1] } else { pc.slice((soff(s - 1) + r) * nh + j0, w) };
                let cc = pc.slice((s0 + r) * nh + j0, w);
                let tcc = ptc.slice((s0 + r) * nh + j0, w);
                let b = plan_ref.perm[r];
                let hout = pout.slice(plan_ref.out_at(b, plan_ref.pos(r, s)) + j0, w);
                if vanilla {
                    vanilla_fn(w, pre, bias_k, cp, cc, tcc, hout);
                } else {
                    for (z, &bv) in pre.iter_mut().zip(bias_k) {
                        *z += bv;
                    }
                    let pp: [&[T]; 3] = if plan_ref.spec.peephole {
                        [&peep_ref[j0..j1], &peep_ref[nh + j0..nh + j1], &peep_ref[2 * nh + j0..2 * nh + j1]]
                    } else {
                        [&[], &[], &[]]
                    };
                    gate_fn(&plan_ref.spec, w, pre, cp, cc, tcc, hout, pp, &mut scratch);
                }
                if s + 1 < tmax && r < plan_ref.n[s + 1] {
                    ph.slice((soff(s + 1) + r) * nh + j0, w).copy_from_slice(hout);
                }
                if plan_ref.len[r] == s + 1 {
                    pout.slice(plan_ref.hn_at(b) + j0, w).copy_from_slice(hout);
                    pout.slice(plan_ref.cn_at(b) + j0, w).copy_from_slice(cc);
                }
            }
        }
    };
    if gs > 1 {
        for_blocks(gs, |g| (0..tmax).for_each(|s| step(g, 0, s)));
    } else {
        for s in 0..tmax {
            for_blocks(plan.blocks.len(), |k| step(0, k, s));
        }
    }
    let saved = save.then_some(Saved { plan, x: xg, w_ih, w_hh, peep, gates, c, tc, h_prev, c0 });
    (out, saved)
}

type FwdGates<T> = fn(&CellSpec, usize, &mut [T], &[T], &mut [T], &mut [T], &mut [T], [&[T]; 3], &mut [T]);

/// Gate math of one row of one block. `pre` holds the present gates' pre-activations and is
/// overwritten with their activations; writes c, act(c) and h.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fwd_gates<T: Real, const FMA: bool>(
    spec: &CellSpec,
    w: usize,
    pre: &mut [T],
    cp: &[T],
    c: &mut [T],
    tc: &mut [T],
    h: &mut [T],
    peep: [&[T]; 3],
    scratch: &mut [T],
) {
    let mut slots = pre.chunks_exact_mut(w);
    let zi = if spec.input_gate { Some(slots.next().unwrap()) } else { None };
    let zf = if spec.forget_gate { Some(slots.next().unwrap()) } else { None };
    let zg = slots.next().unwrap();
    let zo = if spec.output_gate { Some(slots.next().unwrap()) } else { None };
    let (ones, rest) = scratch.split_at_mut(w);
    let (ibuf, _) = rest.split_at_mut(w);
    ones.fill(T::one());
    let cp = &cp[..w];
    let f: &[T] = match zf {
        Some(zf) => {
            if spec.peephole {
                for ((z, &p), &cv) in zf.iter_mut().zip(peep[1]).zip(cp) {
                    *z += p * cv;
                }
            }
            T::sigmoid_slice::<FMA>(zf);
            zf
        }
        None => ones,
    };
    let i: &[T] = match zi {
        Some(zi) => {
            if spec.peephole {
                for ((z, &p), &cv) in zi.iter_mut().zip(peep[0]).zip(cp) {
                    *z += p * cv;
                }
            }
            T::sigmoid_slice::<FMA>(zi);
            zi
        }
        None if spec.coupled => {
            for (iv, &fv) in ibuf.iter_mut().zip(f) {
                *iv = T::one() - fv;
            }
            ibuf
        }
        None => ones,
    };
    if spec.input_activation {
        T::tanh_slice::<FMA>(zg);
    }
    let (c, tc, h) = (&mut c[..w], &mut tc[..w], &mut h[..w]);
    for j in 0..w {
        c[j] = T::madd::<FMA>(i[j], zg[j], f[j] * cp[j]);
    }
    tc.copy_from_slice(c);
    if spec.output_activation {
        T::tanh_slice::<FMA>(tc);
    }
    match zo {
        Some(zo) => {
            if spec.peephole {
                for ((z, &p), &cv) in zo.iter_mut().zip(peep[2]).zip(c.iter()) {
                    *z += p * cv;
                }
            }
            T::sigmoid_slice::<FMA>(zo);
            for j in 0..w {
                h[j] = zo[j] * tc[j];
            }
        }
        None => h.copy_from_slice(tc),
    }
}

multiversion!(fma fwd_gates_fn, fwd_gates, Real, FwdGates<T>,
    (spec: &CellSpec, w: usize, pre: &mut [T], cp: &[T], c: &mut [T], tc: &mut [T], h: &mut [T], peep: [&[T]; 3], scratch: &mut [T]));

type FwdVanilla<T> = fn(usize, &mut [T], &[T], &[T], &mut [T], &mut [T], &mut [T]);

/// The vanilla cell's gate math for one row of one block (the common case; `fwd_gates` covers
/// every variant): adds the bias to the pre-activations `[i | f | g | o]`, overwrites them
/// with the activations, writes c, tanh(c) and h. Two passes, (i, f, g, c) then
/// (o, tanh c, h): the loop is bound by the latency of each lane's exp/division chain, and
/// two shorter chains per pass overlap across iterations where one long one did not (15%
/// faster than a single pass).
#[inline(always)]
fn fwd_vanilla<T: Real, const FMA: bool>(
    w: usize,
    pre: &mut [T],
    bias: &[T],
    cp: &[T],
    c: &mut [T],
    tc: &mut [T],
    h: &mut [T],
) {
    let (zi, rest) = pre.split_at_mut(w);
    let (zf, rest) = rest.split_at_mut(w);
    let (zg, zo) = rest.split_at_mut(w);
    let (zo, bias) = (&mut zo[..w], &bias[..4 * w]);
    let (bi, bf, bg, bo) = (&bias[..w], &bias[w..2 * w], &bias[2 * w..3 * w], &bias[3 * w..]);
    let (cp, c, tc, h) = (&cp[..w], &mut c[..w], &mut tc[..w], &mut h[..w]);
    for j in 0..w {
        let i = T::sigmoid::<FMA>(zi[j] + bi[j]);
        let f = T::sigmoid::<FMA>(zf[j] + bf[j]);
        let g = T::tanh::<FMA>(zg[j] + bg[j]);
        zi[j] = i;
        zf[j] = f;
        zg[j] = g;
        c[j] = T::madd::<FMA>(i, g, f * cp[j]);
    }
    for j in 0..w {
        let o = T::sigmoid::<FMA>(zo[j] + bo[j]);
        let t = T::tanh::<FMA>(c[j]);
        zo[j] = o;
        tc[j] = t;
        h[j] = o * t;
    }
}

multiversion!(fma fwd_vanilla_fn, fwd_vanilla, Real, FwdVanilla<T>,
    (w: usize, pre: &mut [T], bias: &[T], cp: &[T], c: &mut [T], tc: &mut [T], h: &mut [T]));

type BwdGates<T> = fn(&CellSpec, usize, BwdRow<'_, T>);

/// One row of one block for the backward gate math.
pub struct BwdRow<'a, T> {
    /// Gradient reaching h_t (recurrent + output), consumed.
    dh: &'a [T],
    /// Running gradient of the cell: in dc_t, out dc_{t-1}.
    dc: &'a mut [T],
    act: &'a [T],
    c: &'a [T],
    tc: &'a [T],
    cp: &'a [T],
    peep: [&'a [T]; 3],
    dpeep: [&'a mut [T]; 3],
    /// Pre-activation gradients of the present gates, written.
    dz: &'a mut [T],
    /// 7 * w of working space.
    scratch: &'a mut [T],
}

#[inline(always)]
fn bwd_gates<T: Real>(spec: &CellSpec, w: usize, row: BwdRow<'_, T>) {
    let (oa, ia, pp, cpl) = (spec.output_activation, spec.input_activation, spec.peephole, spec.coupled);
    macro_rules! go {
        ($($oa:literal $ia:literal $pp:literal $cpl:literal),*) => {
            match (oa, ia, pp, cpl) {
                $(($oa, $ia, $pp, $cpl) => bwd_core::<T, $oa, $ia, $pp, $cpl>(spec, w, row),)*
            }
        };
    }
    go!(true true false false, true true true false, true true false true, true true true true,
        true false false false, true false true false, true false false true, true false true true,
        false true false false, false true true false, false true false true, false true true true,
        false false false false, false false true false, false false false true, false false true true)
}

/// Backward gate math with the activation/peephole/coupling choices as constants so that the
/// loop is branch-free and vectorises. Absent gates read as 1, which makes their derivative
/// terms vanish; their pre-activation gradients go to a scratch row.
#[inline(always)]
fn bwd_core<T: Real, const OA: bool, const IA: bool, const PEEP: bool, const CPL: bool>(
    spec: &CellSpec,
    w: usize,
    row: BwdRow<'_, T>,
) {
    let BwdRow { dh, dc, act, c, tc, cp, peep, dpeep, dz, scratch } = row;
    let one = T::one();
    let (ones, rest) = scratch.split_at_mut(w);
    let (dummy_i, rest) = rest.split_at_mut(w);
    let (dummy_f, rest) = rest.split_at_mut(w);
    let (dummy_o, rest) = rest.split_at_mut(w);
    let (dummy_p, _) = rest.split_at_mut(3 * w);
    ones.fill(one);
    let ones: &[T] = ones;
    let mut acts = act.chunks_exact(w);
    let mut dzs = dz.chunks_exact_mut(w);
    let (i_s, dzi) = if spec.input_gate { (acts.next().unwrap(), dzs.next().unwrap()) } else { (ones, dummy_i) };
    let (f_s, dzf) = if spec.forget_gate { (acts.next().unwrap(), dzs.next().unwrap()) } else { (ones, dummy_f) };
    let (g_s, dzg) = (acts.next().unwrap(), dzs.next().unwrap());
    let (o_s, dzo) = if spec.output_gate { (acts.next().unwrap(), dzs.next().unwrap()) } else { (ones, dummy_o) };
    let (pi, pf, po, dpi, dpf, dpo) = if PEEP {
        let [a, b, c] = peep;
        let [d, e, f] = dpeep;
        (a, b, c, d, e, f)
    } else {
        let (d, rest) = dummy_p.split_at_mut(w);
        let (e, f) = rest.split_at_mut(w);
        (ones, ones, ones, d, e, f)
    };
    let (i_s, f_s, g_s, o_s) = (&i_s[..w], &f_s[..w], &g_s[..w], &o_s[..w]);
    let (dzi, dzf, dzg, dzo) = (&mut dzi[..w], &mut dzf[..w], &mut dzg[..w], &mut dzo[..w]);
    let (pi, pf, po) = (&pi[..w], &pf[..w], &po[..w]);
    let (dpi, dpf, dpo) = (&mut dpi[..w], &mut dpf[..w], &mut dpo[..w]);
    let (dh, dc, c, tc, cp) = (&dh[..w], &mut dc[..w], &c[..w], &tc[..w], &cp[..w]);
    for j in 0..w {
        let f = f_s[j];
        let i = if CPL { one - f } else { i_s[j] };
        let (g, o) = (g_s[j], o_s[j]);
        let dtc = dh[j] * o;
        let mut dcj = dc[j] + if OA { dtc * (one - tc[j] * tc[j]) } else { dtc };
        let dzo_j = dh[j] * tc[j] * o * (one - o);
        if PEEP {
            dcj += dzo_j * po[j];
            dpo[j] += dzo_j * c[j];
        }
        let di = dcj * g;
        let dg = dcj * i;
        let df = if CPL { dcj * cp[j] - di } else { dcj * cp[j] };
        let mut dcp = dcj * f;
        let dzi_j = di * i * (one - i);
        let dzf_j = df * f * (one - f);
        if PEEP {
            dcp += dzi_j * pi[j] + dzf_j * pf[j];
            dpi[j] += dzi_j * cp[j];
            dpf[j] += dzf_j * cp[j];
        }
        dzo[j] = dzo_j;
        dzi[j] = dzi_j;
        dzf[j] = dzf_j;
        dzg[j] = if IA { dg * (one - g * g) } else { dg };
        dc[j] = dcp;
    }
}

multiversion!(bwd_gates_fn, bwd_gates, Real, BwdGates<T>, (spec: &CellSpec, w: usize, row: BwdRow<'_, T>));

/// Gradients of the op's three inputs.
pub struct Grads<T> {
    /// (batch, time, input)
    pub x: Option<Vec<T>>,
    /// (R, wcols), rows in the caller's order.
    pub w: Vec<T>,
    /// (2, batch, hidden)
    pub state: Vec<T>,
}

/// Backward through time. `grad` is the gradient of the flat packed output.
pub fn backward<T: Real>(saved: &Saved<T>, grad: &[T], need_dx: bool, threads: usize) -> Grads<T> {
    if threads <= 1 && saved.plan.blocks.len() == 1 {
        return backward_impl(saved, grad, need_dx, threads);
    }
    rayon::scope(|_| backward_impl(saved, grad, need_dx, threads))
}

fn backward_impl<T: Real>(saved: &Saved<T>, grad: &[T], need_dx: bool, threads: usize) -> Grads<T> {
    let plan = &saved.plan;
    let (bsz, tlen, ni, nh) = (plan.batch, plan.time, plan.input, plan.hidden);
    let (r_all, rows, tmax) = (plan.r(), plan.rows(), plan.tmax());
    let wc = plan.wcols();

    let mut dh = vec![T::zero(); bsz * nh];
    let mut dc = vec![T::zero(); bsz * nh];
    for r in 0..bsz {
        let b = plan.perm[r];
        dh[r * nh..(r + 1) * nh].copy_from_slice(&grad[plan.hn_at(b)..][..nh]);
        dc[r * nh..(r + 1) * nh].copy_from_slice(&grad[plan.cn_at(b)..][..nh]);
    }
    let mut dz = vec![T::zero(); rows * r_all];
    // Peephole gradients: one (3, hidden) sum per row group, added in group order at the end.
    let gs = plan.groups;
    let mut dpeep = vec![T::zero(); if plan.spec.peephole { gs * 3 * nh } else { 0 }];
    let (pdh, pdc, pdz, pdp) =
        (Ptr(dh.as_mut_ptr()), Ptr(dc.as_mut_ptr()), Ptr(dz.as_mut_ptr()), Ptr(dpeep.as_mut_ptr()));
    let whh = Ptr(saved.w_hh.as_ptr() as *mut T);
    let packed = pack_blocks::<T, _>(plan, |j0, j1| unsafe {
        Packed::pack(r_all, j1 - j0, saved.w_hh.as_ptr().add(j0) as *const f32, nh, 1, plan.groups > 1)
    });
    let gate_fn = bwd_gates_fn::<T>();
    let ng = plan.ng();
    // Step s of row group g, hidden-unit block k.
    let step = |g: usize, k: usize, s: usize| {
        let (j0, j1) = plan.blocks[k];
        let w = j1 - j0;
        let n = plan.n[s];
        let off = plan.off[s];
        unsafe {
            if s + 1 < tmax {
                // dh_s[:, block] = dz_{s+1} W_hh[:, block] for the group's rows still running.
                let m = plan.group_rows(g, plan.n[s + 1]);
                let off1 = plan.off[s + 1] + g;
                if let Some(p) = &packed {
                    p[k].gemm(
                        m,
                        pdz.at(off1 * r_all) as *const f32,
                        gs * r_all,
                        pdh.at(g * nh + j0) as *mut f32,
                        gs * nh,
                        false,
                    );
                } else {
                    matmul(
                        m,
                        w,
                        r_all,
                        pdh.at(g * nh + j0),
                        gs * nh,
                        false,
                        pdz.at(off1 * r_all),
                        gs * r_all,
                        1,
                        whh.at(j0),
                        nh,
                        1,
                        1,
                    );
                }
            }
            let mut dh_row = vec![T::zero(); w];
            let mut scratch = vec![T::zero(); 7 * w];
            let pd = g * 3 * nh;
            for r in (g..n).step_by(gs) {
                let row = off + r;
                let b = plan.perm[r];
                let dy = &grad[plan.out_at(b, plan.pos(r, s)) + j0..][..w];
                for ((d, &a), &y) in dh_row.iter_mut().zip(pdh.slice(r * nh + j0, w).iter()).zip(dy) {
                    *d = a + y;
                }
                let cp: &[T] = if s == 0 {
                    &saved.c0[r * nh + j0..r * nh + j1]
                } else {
                    &saved.c[(plan.off[s - 1] + r) * nh + j0..][..w]
                };
                let (peep, dpeep): ([&[T]; 3], [&mut [T]; 3]) = if plan.spec.peephole {
                    (
                        [&saved.peep[j0..j1], &saved.peep[nh + j0..nh + j1], &saved.peep[2 * nh + j0..2 * nh + j1]],
                        [pdp.slice(pd + j0, w), pdp.slice(pd + nh + j0, w), pdp.slice(pd + 2 * nh + j0, w)],
                    )
                } else {
                    ([&[], &[], &[]], [&mut [], &mut [], &mut []])
                };
                gate_fn(
                    &plan.spec,
                    w,
                    BwdRow {
                        dh: &dh_row,
                        dc: pdc.slice(r * nh + j0, w),
                        act: &saved.gates[row * r_all + ng * j0..][..ng * w],
                        c: &saved.c[row * nh + j0..][..w],
                        tc: &saved.tc[row * nh + j0..][..w],
                        cp,
                        peep,
                        dpeep,
                        dz: pdz.slice(row * r_all + ng * j0, ng * w),
                        scratch: &mut scratch,
                    },
                );
            }
        }
    };
    if gs > 1 {
        for_blocks(gs, |g| (0..tmax).rev().for_each(|s| step(g, 0, s)));
    } else {
        for s in (0..tmax).rev() {
            for_blocks(plan.blocks.len(), |k| step(0, k, s));
        }
    }
    for g in (1..gs).filter(|_| plan.spec.peephole) {
        let (head, tail) = dpeep.split_at_mut(g * 3 * nh);
        for (a, &b) in head[..3 * nh].iter_mut().zip(&tail[..3 * nh]) {
            *a += b;
        }
    }
    // Gradient reaching h0 (rows that ran at step 0; length-0 rows keep dh_n).
    if tmax > 0 {
        unsafe {
            matmul(
                plan.n[0],
                nh,
                r_all,
                dh.as_mut_ptr(),
                nh,
                false,
                dz.as_ptr(),
                r_all,
                1,
                saved.w_hh.as_ptr(),
                nh,
                1,
                threads,
            );
        }
    }
    let mut state = vec![T::zero(); 2 * bsz * nh];
    for r in 0..bsz {
        let b = plan.perm[r];
        state[b * nh..(b + 1) * nh].copy_from_slice(&dh[r * nh..(r + 1) * nh]);
        state[(bsz + b) * nh..(bsz + b + 1) * nh].copy_from_slice(&dc[r * nh..(r + 1) * nh]);
    }

    // Weight gradients: one GEMM each over all packed rows.
    let mut dw_ih = vec![T::zero(); r_all * ni];
    let mut dw_hh = vec![T::zero(); r_all * nh];
    unsafe {
        matmul(r_all, ni, rows, dw_ih.as_mut_ptr(), ni, false, dz.as_ptr(), 1, r_all, saved.x.as_ptr(), ni, 1, threads);
        matmul(
            r_all,
            nh,
            rows,
            dw_hh.as_mut_ptr(),
            nh,
            false,
            dz.as_ptr(),
            1,
            r_all,
            saved.h_prev.as_ptr(),
            nh,
            1,
            threads,
        );
    }
    let mut db = vec![T::zero(); r_all];
    for row in dz.chunks_exact(r_all) {
        for (a, &g) in db.iter_mut().zip(row) {
            *a += g;
        }
    }
    let mut dw = vec![T::zero(); r_all * wc];
    for (c, &src) in plan.col_src.iter().enumerate() {
        let row = &mut dw[src * wc..(src + 1) * wc];
        row[..ni].copy_from_slice(&dw_ih[c * ni..(c + 1) * ni]);
        row[ni..ni + nh].copy_from_slice(&dw_hh[c * nh..(c + 1) * nh]);
        row[ni + nh] = db[c];
    }
    if plan.spec.peephole {
        for (q, gate) in [0usize, 1, 3].iter().enumerate() {
            let slot = plan.slot(*gate).unwrap();
            for j in 0..nh {
                dw[(slot * nh + j) * wc + wc - 1] = dpeep[q * nh + j];
            }
        }
    }

    let x = need_dx.then(|| {
        let mut dxg = vec![T::zero(); rows * ni];
        unsafe {
            matmul(
                rows,
                ni,
                r_all,
                dxg.as_mut_ptr(),
                ni,
                false,
                dz.as_ptr(),
                r_all,
                1,
                saved.w_ih.as_ptr(),
                ni,
                1,
                threads,
            );
        }
        let mut dx = vec![T::zero(); bsz * tlen * ni];
        for s in 0..tmax {
            for r in 0..plan.n[s] {
                let dst = (plan.perm[r] * tlen + plan.pos(r, s)) * ni;
                dx[dst..dst + ni].copy_from_slice(&dxg[(plan.off[s] + r) * ni..][..ni]);
            }
        }
        dx
    });
    Grads { x, w: dw, state }
}

/// One vanilla LSTM step's gate math over `n` rows (the translation decoder's cell, which runs
/// step by step): `gates` (n, 4h) pre-activations in PyTorch's order i, f, g, o with the bias
/// already added, `c_prev` (n, h). Returns the activations (n, 4h), c (n, h), tanh(c) (n, h)
/// and h (n, h).
pub fn cell_forward<T: Real>(gates: &[T], c_prev: &[T], nh: usize) -> (Vec<T>, Vec<T>, Vec<T>, Vec<T>) {
    let n = c_prev.len() / nh.max(1);
    assert_eq!(gates.len(), 4 * n * nh, "cell_forward: gates must be (n, 4h)");
    let vanilla = fwd_vanilla_fn::<T>();
    let zero_bias = vec![T::zero(); 4 * nh];
    let mut act = gates.to_vec();
    let (mut c, mut tc, mut h) = (vec![T::zero(); n * nh], vec![T::zero(); n * nh], vec![T::zero(); n * nh]);
    for r in 0..n {
        let s = r * nh..(r + 1) * nh;
        vanilla(
            nh,
            &mut act[4 * r * nh..4 * (r + 1) * nh],
            &zero_bias,
            &c_prev[s.clone()],
            &mut c[s.clone()],
            &mut tc[s.clone()],
            &mut h[s],
        );
    }
    (act, c, tc, h)
}

/// The backward of `cell_forward`: from the gradients reaching its h and c (n, h) each,
/// returns those of its gates (n, 4h) and of c_prev (n, h).
pub fn cell_backward<T: Real>(gates: &[T], c_prev: &[T], dh: &[T], dc: &[T], nh: usize) -> (Vec<T>, Vec<T>) {
    let (act, c, tc, _) = cell_forward(gates, c_prev, nh);
    let n = c_prev.len() / nh.max(1);
    let bwd = bwd_gates_fn::<T>();
    let mut dz = vec![T::zero(); 4 * n * nh];
    let mut dcp = dc.to_vec();
    let mut scratch = vec![T::zero(); 7 * nh];
    for r in 0..n {
        let s = r * nh..(r + 1) * nh;
        let g = 4 * r * nh..4 * (r + 1) * nh;
        bwd(
            &CellSpec::VANILLA,
            nh,
            BwdRow {
                dh: &dh[s.clone()],
                dc: &mut dcp[s.clone()],
                act: &act[g.clone()],
                c: &c[s.clone()],
                tc: &tc[s.clone()],
                cp: &c_prev[s],
                peep: [&[], &[], &[]],
                dpeep: [&mut [], &mut [], &mut []],
                dz: &mut dz[g],
                scratch: &mut scratch,
            },
        );
    }
    (dz, dcp)
}
