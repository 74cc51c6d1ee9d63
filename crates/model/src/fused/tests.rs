//! The fused op on its own: against finite differences, the inference op against the
//! training op, the two-direction op against two one-direction ops, shapes and lengths. Its
//! equality with the op-by-op path (the layer's reference) is tested from the layer's side,
//! in `lstm/fused_tests.rs`, which reuses the helpers here.

use super::*;
use crate::config::Variant;
use candle_core::{backprop::GradStore, Var};

/// splitmix64: a seeded, dependency-free source for test data.
pub(crate) struct TestRng(pub(crate) u64);
impl TestRng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub(crate) fn tensor(&mut self, shape: &[usize], scale: f64, dtype: DType) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n).map(|_| (2.0 * self.uniform() - 1.0) * scale).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) variant: Variant,
    pub(crate) b: usize,
    pub(crate) t: usize,
    pub(crate) i: usize,
    pub(crate) h: usize,
    pub(crate) lengths: Vec<usize>,
    pub(crate) reverse: bool,
    pub(crate) with_state: bool,
}

impl Case {
    pub(crate) fn random(rng: &mut TestRng, variant: Variant) -> Case {
        let b = 1 + rng.below(5);
        let t = 1 + rng.below(7);
        let full = rng.below(3) == 0;
        let mut lengths: Vec<usize> = (0..b).map(|_| if full { t } else { rng.below(t + 1) }).collect();
        lengths[rng.below(b)] = t;
        Case {
            variant,
            b,
            t,
            i: 1 + rng.below(6),
            h: [1, 3, 8, 17, 20, 33][rng.below(6)],
            lengths,
            reverse: rng.below(2) == 1,
            with_state: rng.below(2) == 1,
        }
    }
}

/// The inputs of one case, as Vars so that both paths get gradients for all of them.
pub(crate) struct Inputs {
    pub(crate) x: Var,
    pub(crate) w_ih: Var,
    pub(crate) w_hh: Var,
    pub(crate) b_ih: Var,
    pub(crate) b_hh: Var,
    pub(crate) peep: Option<Var>,
    pub(crate) h0: Option<Var>,
    pub(crate) c0: Option<Var>,
    /// Loss weights for output, h_n, c_n.
    pub(crate) r: [Tensor; 3],
}

impl Inputs {
    pub(crate) fn new(c: &Case, rng: &mut TestRng, dtype: DType) -> Inputs {
        let g = c.variant.gates().len() * c.h;
        let v = |rng: &mut TestRng, shape: &[usize], scale: f64| {
            Var::from_tensor(&rng.tensor(shape, scale, dtype)).unwrap()
        };
        let ws = 1.0 / (c.h as f64).sqrt() + 0.3;
        Inputs {
            x: v(rng, &[c.b, c.t, c.i], 1.0),
            w_ih: v(rng, &[g, c.i], ws),
            w_hh: v(rng, &[g, c.h], ws),
            b_ih: v(rng, &[g], ws),
            b_hh: v(rng, &[g], ws),
            peep: (c.variant == Variant::Peephole).then(|| v(rng, &[3 * c.h], ws)),
            h0: c.with_state.then(|| v(rng, &[c.b, c.h], 1.0)),
            c0: c.with_state.then(|| v(rng, &[c.b, c.h], 1.0)),
            r: [
                rng.tensor(&[c.b, c.t, c.h], 1.0, dtype),
                rng.tensor(&[c.b, c.h], 1.0, dtype),
                rng.tensor(&[c.b, c.h], 1.0, dtype),
            ],
        }
    }

    /// The direction's weights: the Vars' own tensors, so gradients reach the Vars.
    pub(crate) fn weights(&self) -> DirectionWeights {
        DirectionWeights {
            w_ih: self.w_ih.as_tensor().clone(),
            w_hh: self.w_hh.as_tensor().clone(),
            b_ih: self.b_ih.as_tensor().clone(),
            b_hh: self.b_hh.as_tensor().clone(),
            peephole: self.peep.as_ref().map(|p| p.as_tensor().clone()),
        }
    }

    pub(crate) fn vars(&self) -> Vec<(&'static str, &Var)> {
        let mut v = vec![
            ("x", &self.x),
            ("w_ih", &self.w_ih),
            ("w_hh", &self.w_hh),
            ("b_ih", &self.b_ih),
            ("b_hh", &self.b_hh),
        ];
        if let Some(p) = &self.peep {
            v.push(("peephole", p));
        }
        if let (Some(h), Some(c)) = (&self.h0, &self.c0) {
            v.push(("h0", h));
            v.push(("c0", c));
        }
        v
    }

    pub(crate) fn loss(&self, outs: &[Tensor; 3]) -> Tensor {
        let mut l = Tensor::zeros((), outs[0].dtype(), &Device::Cpu).unwrap();
        for (o, r) in outs.iter().zip(&self.r) {
            l = (l + (o * r).unwrap().sum_all().unwrap()).unwrap();
        }
        l
    }
}

pub(crate) fn run_fused(c: &Case, inp: &Inputs) -> [Tensor; 3] {
    let (o, h, cc) = lstm_direction_variant(
        c.variant,
        &inp.weights(),
        inp.x.as_tensor(),
        inp.h0.as_ref().map(|v| v.as_tensor()),
        inp.c0.as_ref().map(|v| v.as_tensor()),
        &c.lengths,
        c.reverse,
    )
    .unwrap();
    [o, h, cc]
}

/// max |a - b| / max |b|: relative to the reference tensor's scale.
pub(crate) fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(&b).fold(0f64, |m, (x, y)| m.max((x - y).abs()));
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

pub(crate) fn grads_of(inp: &Inputs, g: &GradStore) -> Vec<(&'static str, Tensor)> {
    inp.vars()
        .into_iter()
        .map(|(n, v)| (n, g.get(v.as_tensor()).cloned().unwrap_or_else(|| v.as_tensor().zeros_like().unwrap())))
        .collect()
}

#[test]
fn row_groups_only_with_enough_rows() {
    let plan = |b: usize, threads: usize| plan::Plan::new(b, 4, 3, 32, &vec![4; b], false, CellSpec::VANILLA, threads);
    // Two tiles of rows per thread: rows split, one block of every hidden unit.
    let p = plan(64, 2);
    assert_eq!((p.groups, p.blocks.clone()), (2, vec![(0, 32)]));
    // Fewer: the threads split the hidden units.
    let p = plan(31, 2);
    assert_eq!((p.groups, p.blocks.clone()), (1, vec![(0, 16), (16, 32)]));
    assert_eq!(plan(64, 1).groups, 1);
    // Rows of group g among the first n: g, g + groups, ...
    let p = plan(64, 3);
    assert_eq!([p.group_rows(0, 7), p.group_rows(1, 7), p.group_rows(2, 7), p.group_rows(2, 2)], [3, 2, 2, 0]);
}

#[test]
fn finite_differences_f64() {
    let mut rng = TestRng(4);
    let eps = 1e-5;
    for variant in Variant::ALL {
        let mut c = Case::random(&mut rng, variant);
        c.with_state = true;
        let inp = Inputs::new(&c, &mut rng, DType::F64);
        let grads = grads_of(&inp, &inp.loss(&run_fused(&c, &inp)).backward().unwrap());
        for ((name, var), (_, g)) in inp.vars().into_iter().zip(&grads) {
            let base = var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            for _ in 0..4 {
                let k = rng.below(base.len());
                let eval = |delta: f64| {
                    let mut v = base.clone();
                    v[k] += delta;
                    var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap()).unwrap();
                    inp.loss(&run_fused(&c, &inp)).to_scalar::<f64>().unwrap()
                };
                let fd = (eval(eps) - eval(-eps)) / (2.0 * eps);
                var.set(&Tensor::from_vec(base.clone(), var.shape(), &Device::Cpu).unwrap()).unwrap();
                let err = (fd - g[k]).abs() / g[k].abs().max(1.0);
                assert!(err < 1e-7, "{c:?} d{name}[{k}]: fd {fd} analytic {} (err {err:.2e})", g[k]);
            }
        }
    }
}

#[test]
fn rejects_bad_shapes_and_lengths() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 3, 4), DType::F32, &dev).unwrap();
    let w_ih = Tensor::zeros((8, 4), DType::F32, &dev).unwrap();
    let w_hh = Tensor::zeros((8, 2), DType::F32, &dev).unwrap();
    assert!(lstm_direction(&x, &w_ih, &w_hh, None, None, None, None, &[3, 3], false).is_ok());
    assert!(lstm_direction(&x, &w_ih, &w_hh, None, None, None, None, &[3, 4], false).is_err());
    assert!(lstm_direction(&x, &w_ih, &w_hh, None, None, None, None, &[3], false).is_err());
    let bad = Tensor::zeros((8, 3), DType::F32, &dev).unwrap();
    assert!(lstm_direction(&x, &bad, &w_hh, None, None, None, None, &[], false).is_err());
    assert!(supports(&dev, DType::F32));
    assert!(!supports(&dev, DType::BF16));
}

#[test]
fn inference_without_graph_matches_training_forward() {
    // The inference op reads W_ih / W_hh in place and takes bias, peephole and state on the
    // side: bit-equal to the training op's forward for every variant, with and without state,
    // in f32 (micro-kernel) and f64 (gemm), forward and reverse.
    let mut rng = TestRng(30);
    for variant in Variant::ALL {
        for dtype in [DType::F32, DType::F64] {
            for (reverse, with_state) in [(true, true), (false, false)] {
                let c = Case { variant, b: 3, t: 5, i: 4, h: 17, lengths: vec![5, 2, 4], reverse, with_state };
                let inp = Inputs::new(&c, &mut rng, dtype);
                let tracked = run_fused(&c, &inp);
                let d = |v: &Var| v.as_tensor().detach();
                let params = DirectionWeights {
                    w_ih: d(&inp.w_ih),
                    w_hh: d(&inp.w_hh),
                    b_ih: d(&inp.b_ih),
                    b_hh: d(&inp.b_hh),
                    peephole: inp.peep.as_ref().map(d),
                };
                let (h0, c0) = (inp.h0.as_ref().map(d), inp.c0.as_ref().map(d));
                let plain = lstm_direction_variant(
                    variant,
                    &params,
                    &d(&inp.x),
                    h0.as_ref(),
                    c0.as_ref(),
                    &c.lengths,
                    c.reverse,
                )
                .unwrap();
                for (a, b) in tracked.iter().zip([plain.0, plain.1, plain.2].iter()) {
                    assert_eq!(rel_err(a, b), 0.0, "{variant:?} {dtype:?} reverse {reverse}");
                    assert!(!b.track_op());
                }
            }
        }
    }
}

#[test]
fn degenerate_shapes() {
    let dev = Device::Cpu;
    let mut rng = TestRng(40);
    let (i, h) = (3, 5);
    let w_ih = Var::from_tensor(&rng.tensor(&[4 * h, i], 0.5, DType::F64)).unwrap();
    let w_hh = Var::from_tensor(&rng.tensor(&[4 * h, h], 0.5, DType::F64)).unwrap();
    let h0 = rng.tensor(&[2, h], 1.0, DType::F64);
    let c0 = rng.tensor(&[2, h], 1.0, DType::F64);
    // Every sequence empty: outputs zero, final state = initial state, gradients flow to it.
    let x = Var::from_tensor(&rng.tensor(&[2, 4, i], 1.0, DType::F64)).unwrap();
    let (o, hn, cn) =
        lstm_direction(x.as_tensor(), &w_ih, &w_hh, None, None, Some(&h0), Some(&c0), &[0, 0], true).unwrap();
    assert_eq!(o.abs().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap(), 0.0);
    assert_eq!(rel_err(&hn, &h0), 0.0);
    assert_eq!(rel_err(&cn, &c0), 0.0);
    let g = (hn.sum_all().unwrap() + o.sum_all().unwrap()).unwrap().backward().unwrap();
    assert_eq!(g.get(&w_hh).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap(), 0.0);
    // Zero time steps and an empty batch.
    let x0 = Tensor::zeros((2, 0, i), DType::F64, &dev).unwrap();
    let (o, hn, _) = lstm_direction(&x0, &w_ih, &w_hh, None, None, None, None, &[], false).unwrap();
    assert_eq!((o.dims(), hn.dims()), (&[2, 0, h][..], &[2, h][..]));
    let xb = Tensor::zeros((0, 3, i), DType::F64, &dev).unwrap();
    let (o, hn, _) = lstm_direction(&xb, &w_ih, &w_hh, None, None, None, None, &[], false).unwrap();
    assert_eq!((o.dims(), hn.dims()), (&[0, 3, h][..], &[0, h][..]));
    // Mixed dtypes are an error, not a panic.
    let x32 = Tensor::zeros((2, 3, i), DType::F32, &dev).unwrap();
    assert!(lstm_direction(&x32, &w_ih, &w_hh, None, None, None, None, &[], false).is_err());
}

/// The two-direction op against two single-direction ops on the same inputs: outputs, final
/// states and the gradients of x, both directions' weights and initial states, for random
/// shapes, lengths (including 0) and variants: one thread (directions in turn), and one and two
/// threads per direction side by side.
#[test]
fn bidirectional_op_matches_two_directions() {
    let mut rng = TestRng(77);
    for threads in [1, 2, 4] {
        THREADS_OVERRIDE.with(|t| t.set(Some(threads)));
        for variant in Variant::ALL {
            for dtype in [DType::F64, DType::F32] {
                let mut c = Case::random(&mut rng, variant);
                c.with_state = true;
                let fw = Inputs::new(&c, &mut rng, dtype);
                let bw = Inputs { x: fw.x.clone(), ..Inputs::new(&c, &mut rng, dtype) };
                let fv = variant;
                let (pf, pb) = (fw.weights(), bw.weights());
                fn st(inp: &Inputs) -> (Option<&Tensor>, Option<&Tensor>) {
                    (inp.h0.as_ref().map(|v| v.as_tensor()), inp.c0.as_ref().map(|v| v.as_tensor()))
                }
                let x = fw.x.as_tensor();
                let r_out = rng.tensor(&[c.b, c.t, 2 * c.h], 1.0, dtype);
                let weigh = |out: &Tensor, fin: [&Tensor; 4]| {
                    let mut l = (out * &r_out).unwrap().sum_all().unwrap();
                    for (k, f) in fin.into_iter().enumerate() {
                        l = (l + (f * &fw.r[1 + k % 2]).unwrap().sum_all().unwrap()).unwrap();
                    }
                    l
                };
                let (out, [(h0, c0), (h1, c1)]) =
                    lstm_bidirectional_variant(fv, [&pf, &pb], x, [st(&fw), st(&bw)], &c.lengths).unwrap();
                let g_bi = weigh(&out, [&h0, &c0, &h1, &c1]).backward().unwrap();
                let (o0, rh0, rc0) =
                    lstm_direction_variant(fv, &pf, x, st(&fw).0, st(&fw).1, &c.lengths, false).unwrap();
                let (o1, rh1, rc1) =
                    lstm_direction_variant(fv, &pb, x, st(&bw).0, st(&bw).1, &c.lengths, true).unwrap();
                let rout = Tensor::cat(&[o0, o1], 2).unwrap();
                let g_ref = weigh(&rout, [&rh0, &rc0, &rh1, &rc1]).backward().unwrap();
                let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
                let mut worst = 0f64;
                for (a, b) in [(&out, &rout), (&h0, &rh0), (&c0, &rc0), (&h1, &rh1), (&c1, &rc1)] {
                    worst = worst.max(rel_err(a, b));
                }
                for inp in [&fw, &bw] {
                    for (name, v) in inp.vars() {
                        let (a, b) = (g_bi.get(v.as_tensor()), g_ref.get(v.as_tensor()));
                        let (Some(a), Some(b)) = (a, b) else { panic!("{variant:?}: no gradient for {name}") };
                        worst = worst.max(rel_err(a, b));
                    }
                }
                assert!(worst < tol, "{variant:?} {dtype:?} threads {threads} {c:?}: {worst:.2e}");
            }
        }
    }
    THREADS_OVERRIDE.with(|t| t.set(None));
}
