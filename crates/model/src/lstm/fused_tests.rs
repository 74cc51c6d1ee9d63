//! The fused kernel against the op-by-op path ([`run_direction`], the reference), for every
//! variant, random shapes, lengths, directions and initial states: one direction, and the
//! whole layer (`fused = true` against `fused = false`). Also that the layer takes the fused
//! path where it applies.

use super::*;
use crate::config::{CellKind, LstmConfig};
use crate::fused::plan::ROW_SPLIT_OVERRIDE;
use crate::fused::tests::{grads_of, rel_err, run_fused, Case, Inputs, TestRng};
use crate::fused::THREADS_OVERRIDE;
use crate::init::seeded_var_builder;
use candle_core::Var;

fn run_reference(c: &Case, inp: &Inputs) -> [Tensor; 3] {
    let mut cfg = LstmConfig::new(c.i, c.h);
    cfg.variant = c.variant;
    let x = inp.x.as_tensor();
    let masks = StepMasks::new(&c.lengths, c.t, x.dtype(), x.device()).unwrap();
    let initial = match (&inp.h0, &inp.c0) {
        (Some(h), Some(cc)) => Some(LstmState { h: h.as_tensor().clone(), c: Some(cc.as_tensor().clone()) }),
        _ => None,
    };
    let out = run_direction(&cfg, &inp.weights(), x, Some(&masks), c.reverse, initial.as_ref(), false).unwrap();
    [out.output, out.final_state.h, out.final_state.c.unwrap()]
}

/// Worst relative error over outputs and every gradient, fused vs reference.
fn compare(c: &Case, dtype: DType, rng: &mut TestRng) -> (f64, String) {
    let inp = Inputs::new(c, rng, dtype);
    let fo = run_fused(c, &inp);
    let ro = run_reference(c, &inp);
    let fg = grads_of(&inp, &inp.loss(&fo).backward().unwrap());
    let rg = grads_of(&inp, &inp.loss(&ro).backward().unwrap());
    let mut worst = (0f64, String::new());
    for (k, name) in ["output", "h_n", "c_n"].iter().enumerate() {
        let e = rel_err(&fo[k], &ro[k]);
        if e >= worst.0 {
            worst = (e, name.to_string());
        }
    }
    for ((n, a), (_, b)) in fg.iter().zip(&rg) {
        let e = rel_err(a, b);
        if e >= worst.0 {
            worst = (e, format!("grad {n}"));
        }
    }
    worst
}

fn check_against_reference(dtype: DType, tol: f64, cases_per_variant: usize, seed: u64) {
    let mut rng = TestRng(seed);
    let mut overall = 0f64;
    for variant in Variant::ALL {
        for _ in 0..cases_per_variant {
            let c = Case::random(&mut rng, variant);
            let (e, what) = compare(&c, dtype, &mut rng);
            overall = overall.max(e);
            assert!(e <= tol, "{dtype:?} {c:?}: {what} rel err {e:.3e} > {tol:e}");
        }
    }
    println!("{dtype:?}: worst relative error vs op-by-op over all variants {overall:.3e}");
}

#[test]
fn matches_op_by_op_f64() {
    // f64 uses libm activations on both paths: only summation order differs.
    check_against_reference(DType::F64, 1e-12, 6, 1);
}

#[test]
fn matches_op_by_op_f32() {
    // f32: the SIMD activations and a different GEMM order against candle's libm ops.
    check_against_reference(DType::F32, 1e-5, 6, 2);
}

#[test]
fn matches_op_by_op_with_more_threads_than_cores() {
    // Three blocks of hidden units (hidden 40 = 16 + 16 + 8) run as three rayon tasks.
    THREADS_OVERRIDE.with(|c| c.set(Some(3)));
    {
        let mut rng = TestRng(3);
        for variant in [Variant::Vanilla, Variant::Peephole, Variant::Cifg] {
            let mut c = Case::random(&mut rng, variant);
            c.h = 40;
            let (e, what) = compare(&c, DType::F64, &mut rng);
            assert!(e <= 1e-12, "{c:?}: {what} rel err {e:.3e}");
        }
    }
    THREADS_OVERRIDE.with(|c| c.set(None));
}

#[test]
fn matches_op_by_op_with_row_groups() {
    // Rows split over 2 and 3 threads (each runs every 2nd / 3rd sorted row through the whole
    // sequence), with batches below, at and above the thread count and ragged lengths; f64
    // on the gemm path, f32 on the micro-kernel where the CPU has one.
    ROW_SPLIT_OVERRIDE.with(|c| c.set(Some(1)));
    let mut rng = TestRng(5);
    for threads in [2, 3] {
        THREADS_OVERRIDE.with(|c| c.set(Some(threads)));
        for variant in Variant::ALL {
            for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
                let mut c = Case::random(&mut rng, variant);
                c.b = 1 + rng.below(9);
                c.lengths = (0..c.b).map(|_| rng.below(c.t + 1)).collect();
                c.lengths[rng.below(c.b)] = c.t;
                let (e, what) = compare(&c, dtype, &mut rng);
                assert!(e <= tol, "{threads} threads {dtype:?} {c:?}: {what} rel err {e:.3e}");
            }
        }
    }
    THREADS_OVERRIDE.with(|c| c.set(None));
    ROW_SPLIT_OVERRIDE.with(|c| c.set(None));
}

/// The whole layer (2 layers, bidirectional, lengths, initial states): `fused = true` against
/// `fused = false`, outputs, final states and the gradient of every parameter and the input.
fn layer_case(variant: Variant, dtype: DType, seed: u64) -> f64 {
    let dev = Device::Cpu;
    let mut rng = TestRng(seed);
    let (b, t, i, h) = (4, 6, 5, 20);
    let lengths = vec![6, 3, 0, 5];
    let x = Var::from_tensor(&rng.tensor(&[b, t, i], 1.0, dtype)).unwrap();
    let initial: Vec<LstmState> = (0..4)
        .map(|_| LstmState { h: rng.tensor(&[b, h], 0.5, dtype), c: Some(rng.tensor(&[b, h], 0.5, dtype)) })
        .collect();
    let w_out = rng.tensor(&[b, t, 2 * h], 1.0, dtype);
    let w_fin = rng.tensor(&[b, h], 1.0, dtype);
    let mut worst = 0f64;
    let mut results = Vec::new();
    for fused in [true, false] {
        let mut cfg = LstmConfig::new(i, h);
        cfg.num_layers = 2;
        cfg.bidirectional = true;
        cfg.variant = variant;
        cfg.fused = fused;
        let varmap = candle_nn::VarMap::new();
        let lstm = Lstm::new(&cfg, seeded_var_builder(&varmap, 7, dtype, &dev)).unwrap();
        let out = lstm.forward(x.as_tensor(), &LstmInput::new().lengths(&lengths).initial(initial.clone())).unwrap();
        let mut loss = (&out.output * &w_out).unwrap().sum_all().unwrap();
        let mut tensors = vec![out.output.clone()];
        for s in &out.final_states {
            let c = s.c.as_ref().unwrap();
            loss = (loss + (&s.h * &w_fin).unwrap().sum_all().unwrap() + (c * &w_fin).unwrap().sum_all().unwrap())
                .unwrap();
            tensors.push(s.h.clone());
            tensors.push(c.clone());
        }
        let grads = loss.backward().unwrap();
        tensors.push(grads.get(x.as_tensor()).unwrap().clone());
        let data = varmap.data().lock().unwrap();
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for n in names {
            tensors.push(grads.get(data[n].as_tensor()).unwrap().clone());
        }
        results.push(tensors);
    }
    for (a, b) in results[0].iter().zip(&results[1]) {
        worst = worst.max(rel_err(a, b));
    }
    worst
}

#[test]
fn layer_fused_matches_op_by_op() {
    for (k, variant) in Variant::ALL.into_iter().enumerate() {
        let e64 = layer_case(variant, DType::F64, 10 + k as u64);
        let e32 = layer_case(variant, DType::F32, 20 + k as u64);
        assert!(e64 < 1e-12 && e32 < 1e-5, "{variant:?}: f64 {e64:.2e}, f32 {e32:.2e}");
    }
}

/// The fused paths are taken where they apply, so the speed does not silently fall back to
/// the op-by-op cell (the equality tests above would still pass if it did): an LSTM without a
/// trace runs fused (a bidirectional layer through the two-direction op); a gate trace,
/// `fused = false`, GRU cells and dtypes the kernel lacks take the op-by-op path.
#[test]
fn fused_paths_are_taken_where_they_apply() {
    let dev = Device::Cpu;
    let path = |f: &dyn Fn(&mut LstmConfig), dtype: DType, trace: bool| {
        let mut cfg = LstmConfig::new(4, 8);
        cfg.bidirectional = true;
        f(&mut cfg);
        let varmap = candle_nn::VarMap::new();
        let lstm = Lstm::new(&cfg, seeded_var_builder(&varmap, 1, dtype, &dev)).unwrap();
        lstm.path(&Tensor::zeros((2, 3, 4), dtype, &dev).unwrap(), trace)
    };
    assert_eq!(path(&|_| {}, DType::F32, false), Path::Fused);
    assert_eq!(path(&|_| {}, DType::F64, false), Path::Fused);
    assert_eq!(path(&|c| c.variant = Variant::Peephole, DType::F32, false), Path::Fused);
    assert_eq!(path(&|_| {}, DType::F32, true), Path::OpByOp);
    assert_eq!(path(&|c| c.fused = false, DType::F32, false), Path::OpByOp);
    assert_eq!(path(&|c| c.cell = CellKind::Gru, DType::F32, false), Path::OpByOp);
    assert_eq!(path(&|_| {}, DType::BF16, false), Path::OpByOp);
}
