use super::*;
use candle_core::{Device, Var, D};
use serde_json::Value;

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => match s.as_str() {
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            _ => f64::NAN,
        },
        v => v.as_f64().expect("a number"),
    }
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().expect("an array").iter().map(num).collect()
}

/// Equal within `tol` (relative to max(1, |b|)), both NaN, or both the same infinity.
fn close(a: f64, b: f64, tol: f64) -> bool {
    if b.is_nan() {
        return a.is_nan();
    }
    if b.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= tol * b.abs().max(1.0)
}

/// Every PyTorch case (`scripts/gen_ctc_fixtures.py`): ragged input and target lengths,
/// repeated labels, an empty target, a target exactly as long as feasible, an infeasible one
/// with and without `zero_infinity`, each reduction, f64 and f32: the loss and the gradient.
#[test]
fn matches_pytorch_fixtures() {
    let fixtures: Value = serde_json::from_str(include_str!("ctc_fixtures.json")).unwrap();
    let cases = fixtures["cases"].as_array().unwrap();
    assert!(cases.len() >= 18);
    for c in cases {
        let name = format!("{} {} {}", c["name"], c["dtype"], c["reduction"]);
        let (b, t, k) = (c["batch"].as_u64().unwrap() as usize, c["time"].as_u64().unwrap() as usize, {
            c["classes"].as_u64().unwrap() as usize
        });
        let dtype = if c["dtype"] == "f64" { DType::F64 } else { DType::F32 };
        let tol = if dtype == DType::F64 { 1e-10 } else { 2e-5 };
        let lp = Tensor::from_vec(nums(&c["log_probs"]), (b, t, k), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
        let lp = Var::from_tensor(&lp).unwrap();
        let targets: Vec<Vec<u32>> = serde_json::from_value(c["targets"].clone()).unwrap();
        let lengths: Vec<usize> = serde_json::from_value(c["input_lengths"].clone()).unwrap();
        let reduction: Reduction = serde_json::from_value(c["reduction"].clone()).unwrap();
        let opts = CtcOptions { reduction, zero_infinity: c["zero_infinity"].as_bool().unwrap() };
        let loss = ctc_loss(lp.as_tensor(), &targets, &lengths, &opts).unwrap();
        let got: Vec<f64> = loss.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap();
        let want = nums(&c["loss"]);
        assert_eq!(got.len(), want.len(), "{name}");
        for (g, w) in got.iter().zip(&want) {
            assert!(close(*g, *w, tol), "{name}: loss {g} vs PyTorch {w}");
        }
        let grads = loss.sum_all().unwrap().backward().unwrap();
        let g = grads.get(lp.as_tensor()).unwrap();
        let g: Vec<f64> = g.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap();
        for (i, (a, w)) in g.iter().zip(nums(&c["grad"])).enumerate() {
            assert!(close(*a, w, tol), "{name}: grad[{i}] {a} vs PyTorch {w}");
        }
    }
}

fn logits(b: usize, t: usize, k: usize, seed: u64) -> Vec<f64> {
    crate::rng::SeededRng::new(seed, "ctc test").normal_vec(b * t * k, 0.0, 1.5)
}

/// The loss through a log-softmax, as training uses it.
fn loss_of(x: &Tensor, targets: &[Vec<u32>], lengths: &[usize], reduction: Reduction) -> Tensor {
    let lp = candle_nn::ops::log_softmax(x, D::Minus1).unwrap();
    ctc_loss(&lp, targets, lengths, &CtcOptions { reduction, zero_infinity: false }).unwrap()
}

/// Central finite differences in f64 of the loss with respect to the logits (before the
/// log-softmax) equal the op's analytic gradient, for each reduction.
#[test]
fn gradient_matches_finite_differences() {
    let (b, t, k) = (3, 7, 4);
    let targets = vec![vec![1, 1, 2], vec![3], vec![2, 3, 2, 1]];
    let lengths = [7, 5, 6];
    let x0 = logits(b, t, k, 3);
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        let var = Var::from_vec(x0.clone(), (b, t, k), &Device::Cpu).unwrap();
        let loss = loss_of(var.as_tensor(), &targets, &lengths, reduction).sum_all().unwrap();
        let g: Vec<f64> =
            loss.backward().unwrap().get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let eval = |x: Vec<f64>| {
            let x = Tensor::from_vec(x, (b, t, k), &Device::Cpu).unwrap();
            loss_of(&x, &targets, &lengths, reduction).sum_all().unwrap().to_scalar::<f64>().unwrap()
        };
        let h = 1e-6;
        for i in 0..x0.len() {
            let (mut up, mut down) = (x0.clone(), x0.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (eval(up) - eval(down)) / (2.0 * h);
            assert!((fd - g[i]).abs() < 1e-7, "{reduction:?} [{i}]: finite difference {fd} vs analytic {}", g[i]);
        }
    }
}

/// Collapses a frame path: merge repeats, drop blanks.
fn collapse(path: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut prev = None;
    for &c in path {
        if Some(c) != prev && c != BLANK {
            out.push(c);
        }
        prev = Some(c);
    }
    out
}

/// On tiny cases the loss is −log of the summed probability of every frame path that
/// collapses to the target, enumerated exhaustively.
#[test]
fn loss_equals_sum_over_all_paths() {
    let (t, k) = (5, 3);
    let lp: Vec<f64> = {
        let x = Tensor::from_vec(logits(1, t, k, 9), (t, k), &Device::Cpu).unwrap();
        candle_nn::ops::log_softmax(&x, D::Minus1).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    };
    for target in [vec![], vec![1], vec![1, 1], vec![1, 2, 1], vec![2, 2, 2]] {
        let mut total = 0.0;
        for code in 0..k.pow(t as u32) {
            let path: Vec<u32> = (0..t).map(|i| ((code / k.pow(i as u32)) % k) as u32).collect();
            if collapse(&path) == target {
                total += path.iter().enumerate().map(|(i, &c)| lp[i * k + c as usize]).sum::<f64>().exp();
            }
        }
        let (loss, _) = ctc_single(&lp, k, t, &target, false);
        assert!((loss - -total.ln()).abs() < 1e-12, "{target:?}: {loss} vs {}", -total.ln());
        assert_eq!(loss.is_finite(), feasible(&target, t));
    }
}

#[test]
fn feasibility_counts_repeats() {
    assert_eq!(min_frames(&[1, 1, 2, 2, 3]), 7);
    assert!(feasible(&[1, 2, 3], 3));
    assert!(!feasible(&[1, 1], 2));
    assert!(feasible(&[], 1));
}

/// The Viterbi alignment places each label on frames where it is the most probable class.
#[test]
fn alignment_follows_peaks() {
    let k = 4;
    // Frames: blank, 1, 1, blank, 2, blank, 2, 3
    let peaks = [0usize, 1, 1, 0, 2, 0, 2, 3];
    let mut lp = vec![(0.02f64).ln(); peaks.len() * k];
    for (t, &c) in peaks.iter().enumerate() {
        lp[t * k + c] = (0.94f64).ln();
    }
    let spans = align(&lp, k, peaks.len(), &[1, 2, 2, 3]).unwrap();
    assert_eq!(spans, vec![(1, 2), (4, 4), (6, 6), (7, 7)]);
    assert!(align(&lp, k, 2, &[1, 2, 2]).is_none());
}

#[test]
fn bad_inputs_are_refused() {
    let lp = Tensor::zeros((2, 4, 3), DType::F32, &Device::Cpu).unwrap();
    let opts = CtcOptions::default();
    let err = |t: &[Vec<u32>], l: &[usize]| ctc_loss(&lp, t, l, &opts).unwrap_err().to_string();
    assert!(err(&[vec![1]], &[4, 4]).contains("1 targets and 2 input lengths"));
    assert!(err(&[vec![1], vec![0]], &[4, 4]).contains("id 0"));
    assert!(err(&[vec![1], vec![3]], &[4, 4]).contains("id 3"));
    assert!(err(&[vec![1], vec![2]], &[4, 5]).contains("input_lengths[1] = 5"));
    assert!(err(&[vec![1], vec![2]], &[0, 4]).contains("input_lengths[0] = 0"));
}
