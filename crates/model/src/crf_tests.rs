use super::*;
use crate::init::seeded_var_builder;
use crate::rng::SeededRng;
use candle_nn::VarMap;

/// A CRF with random (seeded) scores in `dtype`, and random emissions (batch, time, tags).
fn setup(k: usize, b: usize, t: usize, constraints: Option<Constraints>, dtype: DType) -> (VarMap, Crf, Tensor) {
    let vm = VarMap::new();
    let crf =
        Crf::new(&CrfConfig { num_tags: k, constraints }, seeded_var_builder(&vm, 3, dtype, &Device::Cpu)).unwrap();
    let mut rng = SeededRng::new(7, "crf-test");
    // By name: a VarMap is a HashMap, and the f32 and f64 set-ups must draw the same values.
    let mut vars: Vec<(String, candle_core::Var)> =
        vm.data().lock().unwrap().iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, var) in vars {
        let v = rng.normal_tensor(var.shape().clone(), 0.0, 1.0, dtype, &Device::Cpu).unwrap();
        var.set(&v).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let em = rng.normal_tensor((b, t, k), 0.0, 1.5, dtype, &Device::Cpu).unwrap();
    (vm, crf, em)
}

fn values(x: &Tensor) -> Vec<f64> {
    x.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

/// Every path of length `n` over `k` tags.
fn all_paths(k: usize, n: usize) -> Vec<Vec<usize>> {
    (0..k.pow(n as u32))
        .map(|mut code| {
            (0..n)
                .map(|_| {
                    let d = code % k;
                    code /= k;
                    d
                })
                .collect()
        })
        .collect()
}

/// The path's score from the parameters directly, by the definition in the module doc.
fn score_by_hand(crf: &Crf, em: &[f64], t: usize, row: usize, path: &[usize]) -> f64 {
    let k = crf.cfg.num_tags;
    let (tr, st, en) = crf.scores().unwrap();
    let (tr, st, en) = (values(&tr), values(&st), values(&en));
    let e = |s: usize, j: usize| em[(row * t + s) * k + j];
    let mut score = st[path[0]] + en[*path.last().unwrap()];
    for (s, &y) in path.iter().enumerate() {
        score += e(s, y);
        if s > 0 {
            score += tr[path[s - 1] * k + y];
        }
    }
    score
}

fn iob2_constraints() -> Constraints {
    // Tags: 0 = O, 1 = B-X, 2 = I-X. I-X only after B-X or I-X, never first.
    let mut c = Constraints::none(3);
    c.start[2] = false;
    c.transitions[2] = false; // O → I-X
    c
}

#[test]
fn log_partition_equals_brute_force_enumeration() {
    for constraints in [None, Some(iob2_constraints())] {
        let (k, t) = (3, 5);
        let lengths = [5, 3, 1];
        let (_vm, crf, em) = setup(k, lengths.len(), t, constraints.clone(), DType::F64);
        let log_z = values(&crf.log_partition(&em, &lengths).unwrap());
        let emv = values(&em);
        for (row, &len) in lengths.iter().enumerate() {
            let scores: Vec<f64> = all_paths(k, len).iter().map(|p| score_by_hand(&crf, &emv, t, row, p)).collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let want = m + scores.iter().map(|s| (s - m).exp()).sum::<f64>().ln();
            assert!((log_z[row] - want).abs() < 1e-9, "row {row}: {} vs {want}", log_z[row]);
        }
    }
}

#[test]
fn path_score_matches_the_definition_and_padding_is_ignored() {
    let (k, t) = (4, 6);
    let lengths = [6, 2];
    let (_vm, crf, em) = setup(k, 2, t, None, DType::F64);
    let paths = [vec![0usize, 3, 2, 2, 1, 0], vec![3, 1]];
    let mut tags = vec![0u32; 2 * t];
    for (row, p) in paths.iter().enumerate() {
        for (s, &y) in p.iter().enumerate() {
            tags[row * t + s] = y as u32;
        }
    }
    // Garbage past the second sentence's end must not count.
    tags[t + 4] = 3;
    let got = values(&crf.path_score(&em, &tags, &lengths).unwrap());
    let emv = values(&em);
    for (row, p) in paths.iter().enumerate() {
        assert!((got[row] - score_by_hand(&crf, &emv, t, row, p)).abs() < 1e-12);
    }
    assert!(crf.log_partition(&em, &[3]).unwrap_err().to_string().contains("lengths for a batch"));
    assert!(crf.log_partition(&em, &[7, 1]).unwrap_err().to_string().contains("outside 1..=6"));
    assert!(crf.path_score(&em, &[9; 12], &lengths).unwrap_err().to_string().contains("tag 9"));
}

#[test]
fn viterbi_equals_exhaustive_argmax() {
    for constraints in [None, Some(iob2_constraints())] {
        let (k, t) = (3, 6);
        let lengths = [6, 4, 1, 2];
        let (_vm, crf, em) = setup(k, lengths.len(), t, constraints.clone(), DType::F64);
        let emv = values(&em);
        let got = crf.viterbi(&em, &lengths).unwrap();
        for (row, &len) in lengths.iter().enumerate() {
            let best = all_paths(k, len)
                .into_iter()
                .map(|p| (score_by_hand(&crf, &emv, t, row, &p), p))
                .fold((f64::NEG_INFINITY, vec![]), |a, b| if b.0 > a.0 { b } else { a });
            assert_eq!(got[row], best.1, "row {row}");
            if let Some(c) = &constraints {
                assert!(c.allows(&got[row]));
            }
        }
    }
}

#[test]
fn constraints_are_respected_even_against_the_emissions() {
    // Emissions that shout "I-X" at the first token and after an O: the decoder must not obey.
    let vm = VarMap::new();
    let cfg = CrfConfig { num_tags: 3, constraints: Some(iob2_constraints()) };
    let crf = Crf::new(&cfg, seeded_var_builder(&vm, 0, DType::F32, &Device::Cpu)).unwrap();
    let em = Tensor::new(&[[[0f32, 0.0, 9.0], [12.0, 0.0, 0.0], [0.0, 0.0, 9.0]]], &Device::Cpu).unwrap();
    let path = crf.viterbi(&em, &[3]).unwrap().remove(0);
    assert!(cfg.constraints.as_ref().unwrap().allows(&path), "{path:?}");
    // Paths keeping the strong O in the middle (12) beat those keeping the last I-X (9);
    // ties go to the lower tag id.
    assert_eq!(path, vec![0, 0, 0]);
    // A forbidden gold path has (almost) no probability: its NLL is huge.
    let nll = values(&crf.neg_log_likelihood(&em, &[0, 0, 2], &[3]).unwrap())[0];
    assert!(nll > 1000.0, "{nll}");
    let nll_ok = values(&crf.neg_log_likelihood(&em, &[1, 0, 1], &[3]).unwrap())[0];
    assert!(nll_ok < 30.0, "{nll_ok}");
    // The sizes of the flags are checked.
    let bad = CrfConfig { num_tags: 2, constraints: Some(Constraints::none(3)) };
    assert!(bad.validate().unwrap_err().to_string().contains("crf.constraints"));
}

#[test]
fn gradient_matches_finite_differences_in_f64() {
    let (k, t) = (3, 4);
    let lengths = [4, 2];
    let (vm, crf, em) = setup(k, 2, t, Some(iob2_constraints()), DType::F64);
    let tags = [1u32, 2, 0, 1, 0, 1, 2, 2];
    let em = candle_core::Var::from_tensor(&em).unwrap();
    let loss = |crf: &Crf, em: &Tensor| crf.neg_log_likelihood(em, &tags, &lengths).unwrap().sum_all().unwrap();
    let grads = loss(&crf, em.as_tensor()).backward().unwrap();
    let h = 1e-6;
    // Emissions.
    let g = values(grads.get(em.as_tensor()).unwrap());
    let base = values(em.as_tensor());
    for i in 0..base.len() {
        let at = |d: f64| {
            let mut v = base.clone();
            v[i] += d;
            let x = Tensor::from_vec(v, (2, t, k), &Device::Cpu).unwrap();
            values(&loss(&crf, &x))[0]
        };
        let fd = (at(h) - at(-h)) / (2.0 * h);
        assert!((fd - g[i]).abs() < 1e-6, "emission {i}: autograd {} vs fd {fd}", g[i]);
    }
    // The CRF's own parameters.
    let vars: Vec<(String, candle_core::Var)> =
        vm.data().lock().unwrap().iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    for (name, var) in vars {
        let g = values(grads.get(var.as_tensor()).unwrap());
        let base = values(var.as_tensor());
        for i in 0..base.len() {
            let at = |d: f64| {
                let mut v = base.clone();
                v[i] += d;
                var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap()).unwrap();
                values(&loss(&crf, em.as_tensor()))[0]
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            at(0.0);
            assert!((fd - g[i]).abs() < 1e-6, "{name}[{i}]: autograd {} vs fd {fd}", g[i]);
        }
    }
}

#[test]
fn f32_agrees_with_f64_and_argmax_decoder_cuts_padding() {
    let (_vm, crf64, em64) = setup(5, 3, 7, None, DType::F64);
    let (_vm, crf32, em32) = setup(5, 3, 7, None, DType::F32);
    let lengths = [7, 5, 2];
    let a = values(&crf64.log_partition(&em64, &lengths).unwrap());
    let b = values(&crf32.log_partition(&em32, &lengths).unwrap());
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-3 * x.abs().max(1.0), "{x} vs {y}");
    }
    let tags = argmax_tags(&em32, &lengths).unwrap();
    assert_eq!(tags.iter().map(Vec::len).collect::<Vec<_>>(), vec![7, 5, 2]);
}
