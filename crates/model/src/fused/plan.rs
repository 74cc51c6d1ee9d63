//! The kernel's row and column layout (`Plan`) and the caller's weights as it reads them
//! (`Weights`).
//!
//! Rows. Sequences are sorted by length, longest first (like PyTorch's packed sequences), so
//! the rows still running at step `s` are a prefix `0..n[s]` of the sorted batch, and every
//! per-step buffer is "packed": step `s` occupies rows `off[s] .. off[s] + n[s]`. Padded steps
//! therefore cost nothing, and a reverse direction is just a different time index
//! `pos(r, s) = len[r] - 1 - s` when gathering inputs and scattering outputs.
//!
//! Columns. Gate columns are regrouped per block of hidden units: block `k` (units `j0..j1`,
//! width `w`) owns the contiguous columns `ng*j0 .. ng*j1`, laid out
//! `[gate_0 (w) | gate_1 (w) | ..]`. One thread owns one block: per step it does its slice of
//! `h W_hh^T` (a GEMM against its quarter of the weights, which stays in its core's cache) and
//! that block's gate math, so each step is a single fork/join. Backward mirrors it: thread `k`
//! computes `dh[:, block k]` (a GEMM against its columns of W_hh) and then the gate gradients
//! of the same block, which need exactly that `dh` slice, so each step is again one fork/join.
//! With enough rows the threads split the rows instead (`Plan::groups`).

use crate::config::CellSpec;

/// Problem sizes and the packing plan shared by forward and backward.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Sequences in the batch.
    pub batch: usize,
    /// Padded time steps.
    pub time: usize,
    /// Features per input step.
    pub input: usize,
    /// Hidden units.
    pub hidden: usize,
    /// The cell's gates and activations.
    pub spec: CellSpec,
    /// Right to left over each sequence's real tokens.
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
    /// The plan for `lengths` (one per sequence, each ≤ `time`) on `threads` threads.
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

    /// Steps of the longest sequence.
    pub fn tmax(&self) -> usize {
        self.n.len()
    }
    /// Packed rows over all steps.
    pub fn rows(&self) -> usize {
        self.off[self.tmax()]
    }
    /// Gates with parameters.
    pub fn ng(&self) -> usize {
        self.gates.len()
    }
    /// Gate columns (and weight rows): ng · hidden.
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
    /// Offset of output (b, t) in the flat output.
    #[inline]
    pub fn out_at(&self, b: usize, t: usize) -> usize {
        (b * self.time + t) * self.hidden
    }
    /// Offset of h_n of sequence b in the flat output.
    #[inline]
    pub fn hn_at(&self, b: usize) -> usize {
        (self.batch * self.time + b) * self.hidden
    }
    /// Offset of c_n of sequence b in the flat output.
    #[inline]
    pub fn cn_at(&self, b: usize) -> usize {
        (self.batch * self.time + self.batch + b) * self.hidden
    }
    /// Packed-weight width: [W_ih | W_hh | bias | peephole?].
    pub fn wcols(&self) -> usize {
        self.input + self.hidden + 1 + usize::from(self.spec.peephole)
    }
    /// Position of `gate` (PyTorch order index) among the gates with parameters.
    pub(super) fn slot(&self, gate: usize) -> Option<usize> {
        self.gates.iter().position(|&g| g == gate)
    }
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

/// The caller's weights, rows in the caller's (PyTorch) gate order: row r of W_ih at
/// `ih[r * ih_rs..][..input]`, of W_hh at `hh[r * hh_rs..][..hidden]`, its bias (b_ih + b_hh)
/// at `bias[r * bias_rs]` and, for the peephole variant, its peephole weight at
/// `peep[r * peep_rs]` (0 for the g rows).
#[derive(Clone, Copy)]
pub struct Weights<'a, T> {
    /// W_ih, rows `ih_rs` apart.
    pub ih: &'a [T],
    /// Row stride of `ih`.
    pub ih_rs: usize,
    /// W_hh, rows `hh_rs` apart.
    pub hh: &'a [T],
    /// Row stride of `hh`.
    pub hh_rs: usize,
    /// b_ih + b_hh, one value every `bias_rs`.
    pub bias: &'a [T],
    /// Stride of `bias`.
    pub bias_rs: usize,
    /// The peephole column and its stride (peephole variant only).
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
    pub(super) fn ih_row(&self, r: usize, ni: usize) -> &'a [T] {
        &self.ih[r * self.ih_rs..][..ni]
    }

    #[inline]
    pub(super) fn hh_row(&self, r: usize, nh: usize) -> &'a [T] {
        &self.hh[r * self.hh_rs..][..nh]
    }
}
