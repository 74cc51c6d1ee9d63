//! The fused LSTM direction on raw slices: the time loops. `forward` runs the whole sequence,
//! saving what the backward needs; `backward` runs back through time. The layout they share
//! is `plan`, the gate math of each step `cell`, the products `gemm` and `micro`.

// What the op (`op.rs`), the translation decoder's loss and the benchmarks use, at the paths
// they have always used.
pub(crate) use super::gemm::matmul;
pub use super::plan::{Plan, Weights};
pub use super::real::Real;
pub use super::threads::pool_threads;
pub use crate::config::CellSpec;

use super::cell::{bwd_gates_fn, fwd_gates_fn, fwd_vanilla_fn, BwdRow};
use super::gemm::pack_blocks;
use super::micro::Packed;
use super::threads::{for_blocks, Ptr};

/// What the backward needs, kept from the forward.
pub struct Saved<T> {
    /// The layout the forward ran with.
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
    // SAFETY: `pack_cols` reads k values at each column pointer: row `src(j)` of W_ih (`ni`
    // values) and of W_hh (`nh` values), slices of the caller's weights that `ih_row` /
    // `hh_row` bounds-check. T is f32 here (`pack_blocks` packs nothing otherwise).
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
        // SAFETY: gates (rows, R), xg (rows, ni) and w_ih (R, ni) are separate buffers of
        // exactly those sizes (all_gates is true without micro), read with these strides.
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

    let (pg, pc, ptc, ph, pout) =
        (Ptr::new(&mut gates), Ptr::new(&mut c), Ptr::new(&mut tc), Ptr::new(&mut h_prev), Ptr::new(&mut out));
    let w_hh_t = &w_hh_t;
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
        // SAFETY: the tasks of one step (row group g, block k of hidden units j0..j1) touch
        // disjoint parts of the shared buffers: each writes only its own rows (g, g + gs, ...)
        // and, of those, only its block's columns (ng·j0..ng·j1 of the gates, j0..j1 of c,
        // act(c), h_prev and the output), and reads besides only step s − 1's rows of c and
        // h_prev, which no task writes during step s (`for_blocks` joins between steps; row
        // groups only ever read their own rows). Every offset lies inside the buffer the plan
        // sized for it (`goff`/`soff` rows of R or hidden values, `out_at`/`hn_at`/`cn_at` of
        // the packed output); the micro-kernel's A rows are `ni` inputs of x and `nh` values
        // of h_prev, and T is f32 whenever `packed` is Some.
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
                    w_hh_t.as_ptr().add(ng * j0),
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
    let (pdh, pdc, pdz, pdp) = (Ptr::new(&mut dh), Ptr::new(&mut dc), Ptr::new(&mut dz), Ptr::new(&mut dpeep));
    // SAFETY: W_hh in internal order is (R, nh); the block's columns j0..j1 start at j0 and
    // are read R rows deep at stride nh, inside the buffer. T is f32 when anything is packed.
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
        // SAFETY: as in the forward, the tasks of one step own disjoint parts: rows g,
        // g + gs, ... of dh and dc, and of those (and of step s's rows of dz) only the block's
        // columns; their peephole sums are per group. They read besides only dz of step
        // s + 1, complete before this step (`for_blocks` joins between steps), and the saved
        // activations, which nothing writes. Offsets stay inside the buffers the plan sized
        // (dh, dc (batch, nh), dz (rows, R), dpeep (groups, 3, nh)).
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
                        saved.w_hh.as_ptr().add(j0),
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
        // SAFETY: dh (batch, nh) gets its first n[0] rows from dz's step-0 rows (n[0], R) and
        // W_hh (R, nh): separate buffers of at least those sizes.
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
    // SAFETY: dw_ih (R, ni) and dw_hh (R, nh) from dzᵀ (R, rows) read with strides (1, R), and
    // the saved x (rows, ni) and h_prev (rows, nh): separate buffers of exactly those sizes.
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
        // SAFETY: dxg (rows, ni) from dz (rows, R) and W_ih (R, ni): separate buffers of
        // exactly those sizes.
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
