//! The fused kernel's LSTM cell: the gate math of one step, forward and backward, for every
//! variant, on raw slices of one row of one block of hidden units. **This is where the output
//! gate lives** in the fused path (`h[j] = o[j] * tanh(c[j])`: once in `fwd_gates`, once in
//! `fwd_vanilla`, and its gradient in `bwd_core`); the op-by-op cell is `crate::cell`.
//!
//! `fwd_gates` covers every variant ([`CellSpec`]); `fwd_vanilla` is the vanilla cell fused
//! into two passes (the common case, 15% faster); `bwd_core` is the backward with the
//! variant's switches as constants. Each is compiled for AVX-512 and AVX2+FMA and picked at
//! run time (`multiversion!`). `cell_forward` / `cell_backward` run the vanilla cell over
//! whole rows for the translation decoder, which steps one token at a time.

use super::real::Real;
use crate::config::CellSpec;

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
    // Forget gate f_t (first: cifg's input gate is 1 − f).
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
    // Input gate i_t.
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
    // Cell candidate g_t, then the cell c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t.
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
    // Output gate o_t, and the hidden state h_t = o_t ⊙ tanh(c_t).
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

multiversion!(pub(super) fma fwd_gates_fn, fwd_gates, Real, FwdGates<T>,
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
    // Input gate, forget gate, cell candidate and cell.
    for j in 0..w {
        let i = T::sigmoid::<FMA>(zi[j] + bi[j]);
        let f = T::sigmoid::<FMA>(zf[j] + bf[j]);
        let g = T::tanh::<FMA>(zg[j] + bg[j]);
        zi[j] = i;
        zf[j] = f;
        zg[j] = g;
        c[j] = T::madd::<FMA>(i, g, f * cp[j]);
    }
    // Output gate, and the hidden state h_t = o_t ⊙ tanh(c_t).
    for j in 0..w {
        let o = T::sigmoid::<FMA>(zo[j] + bo[j]);
        let t = T::tanh::<FMA>(c[j]);
        zo[j] = o;
        tc[j] = t;
        h[j] = o * t;
    }
}

multiversion!(pub(crate) fma fwd_vanilla_fn, fwd_vanilla, Real, FwdVanilla<T>,
    (w: usize, pre: &mut [T], bias: &[T], cp: &[T], c: &mut [T], tc: &mut [T], h: &mut [T]));

type BwdGates<T> = fn(&CellSpec, usize, BwdRow<'_, T>);

/// One row of one block for the backward gate math.
pub(super) struct BwdRow<'a, T> {
    /// Gradient reaching h_t (recurrent + output), consumed.
    pub(super) dh: &'a [T],
    /// Running gradient of the cell: in dc_t, out dc_{t-1}.
    pub(super) dc: &'a mut [T],
    /// The present gates' activations, as `fwd_gates` left them.
    pub(super) act: &'a [T],
    /// c_t.
    pub(super) c: &'a [T],
    /// act(c_t): tanh(c_t), or c_t without output activation.
    pub(super) tc: &'a [T],
    /// c_{t-1}.
    pub(super) cp: &'a [T],
    /// Peephole weights p_i, p_f, p_o (empty unless peephole).
    pub(super) peep: [&'a [T]; 3],
    /// Their gradients, accumulated (empty unless peephole).
    pub(super) dpeep: [&'a mut [T]; 3],
    /// Pre-activation gradients of the present gates, written.
    pub(super) dz: &'a mut [T],
    /// 7 * w of working space.
    pub(super) scratch: &'a mut [T],
}

/// The backward gate math of one row, dispatched to `bwd_core` with the variant's switches
/// as constants.
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
        // The output gate's backward: h = o ⊙ act(c) gives d act(c) = dh ⊙ o and
        // dz_o = dh ⊙ act(c) ⊙ o(1 − o).
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

multiversion!(pub(super) bwd_gates_fn, bwd_gates, Real, BwdGates<T>, (spec: &CellSpec, w: usize, row: BwdRow<'_, T>));

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Variant;
    use candle_core::{Device, Tensor};

    fn values(seed: u64, n: usize) -> Vec<f64> {
        let mut st = seed;
        (0..n)
            .map(|_| {
                st = st.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((st >> 11) as f64 / (1u64 << 53) as f64) * 3.0 - 1.5
            })
            .collect()
    }

    /// One step of every variant in f64: the fused gate math (`fwd_gates`, and `fwd_vanilla`
    /// for the vanilla cell) against the op-by-op cell, `crate::cell::step`.
    #[test]
    fn one_step_matches_the_op_by_op_cell() {
        let (rows, w) = (3, 7);
        for (k, v) in Variant::ALL.into_iter().enumerate() {
            let spec = v.spec();
            let ng = spec.gates().len();
            let z = values(10 + k as u64, rows * ng * w);
            let cp = values(20 + k as u64, rows * w);
            let peep = values(30 + k as u64, 3 * w);
            let dev = Device::Cpu;
            let zt = Tensor::from_vec(z.clone(), (rows, ng * w), &dev).unwrap();
            let ct = Tensor::from_vec(cp.clone(), (rows, w), &dev).unwrap();
            let pt = Tensor::from_vec(peep.clone(), 3 * w, &dev).unwrap();
            let peepholes = spec.peephole.then(|| crate::cell::Peepholes::split(&pt, w).unwrap());
            let want = crate::cell::step(spec, &zt, &ct, peepholes.as_ref()).unwrap();
            let (want_h, want_c) = (want.hidden.to_vec2::<f64>().unwrap(), want.cell.to_vec2::<f64>().unwrap());
            let pp: [&[f64]; 3] =
                if spec.peephole { [&peep[..w], &peep[w..2 * w], &peep[2 * w..]] } else { [&[], &[], &[]] };
            let gates = fwd_gates_fn::<f64>();
            let vanilla = fwd_vanilla_fn::<f64>();
            for r in 0..rows {
                let (mut c, mut tc, mut h, mut scratch) = (vec![0.0; w], vec![0.0; w], vec![0.0; w], vec![0.0; 4 * w]);
                let mut pre = z[r * ng * w..(r + 1) * ng * w].to_vec();
                let cpr = &cp[r * w..(r + 1) * w];
                gates(&spec, w, &mut pre, cpr, &mut c, &mut tc, &mut h, pp, &mut scratch);
                for j in 0..w {
                    assert!((h[j] - want_h[r][j]).abs() < 1e-14, "{v:?} h[{r}][{j}]: {} vs {}", h[j], want_h[r][j]);
                    assert!((c[j] - want_c[r][j]).abs() < 1e-14, "{v:?} c[{r}][{j}]");
                }
                if v == Variant::Vanilla {
                    let (mut c2, mut tc2, mut h2) = (vec![0.0; w], vec![0.0; w], vec![0.0; w]);
                    let mut pre2 = z[r * ng * w..(r + 1) * ng * w].to_vec();
                    vanilla(w, &mut pre2, &vec![0.0; 4 * w], cpr, &mut c2, &mut tc2, &mut h2);
                    assert_eq!((&pre2, &c2, &tc2, &h2), (&pre, &c, &tc, &h), "fwd_vanilla vs fwd_gates");
                }
            }
        }
    }
}
