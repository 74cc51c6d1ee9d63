use super::*;
use crate::init::seeded_var_builder;
use candle_nn::VarMap;
use std::collections::HashMap;

fn cpu() -> Device {
    Device::Cpu
}

fn vec_of(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

fn round4(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| (x * 1e4).round() / 1e4).collect()
}

/// candle-nn's tests/rnn.rs golden numbers (which embed the PyTorch snippet that produced them):
/// our cell, fed the same weights and the 7-step input, ends in the same (h, c).
#[test]
fn candle_nn_golden_lstm_and_gru() {
    let dev = cpu();
    let xs = [3f32, 1., 4., 1., 5., 9., 2.];
    let x: Vec<f32> = xs.iter().flat_map(|&v| [v, v * 0.5]).collect();
    let x = Tensor::from_vec(x, (1, 7, 2), &dev).unwrap();
    let bias = |n: usize| {
        let b = [-1f32, 1., -0.5, 2., -1., 1., -0.5, 2., -1., 1., -0.5, 2.];
        Tensor::new(&b[..n], &dev).unwrap()
    };
    let weights = |g: usize| -> HashMap<String, Tensor> {
        let w_ih = Tensor::arange(0f32, (g * 3 * 2) as f32, &dev).unwrap().reshape((g * 3, 2)).unwrap().cos().unwrap();
        let w_hh = Tensor::arange(0f32, (g * 3 * 3) as f32, &dev).unwrap().reshape((g * 3, 3)).unwrap().sin().unwrap();
        let b_ih = bias(g * 3);
        let b_hh = b_ih.cos().unwrap();
        [("weight_ih_l0", w_ih), ("weight_hh_l0", w_hh), ("bias_ih_l0", b_ih), ("bias_hh_l0", b_hh)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    };
    let cfg = LstmConfig::new(2, 3);
    let lstm = Lstm::new(&cfg, VarBuilder::from_tensors(weights(4), DType::F32, &dev)).unwrap();
    let out = lstm.forward(&x, &LstmInput::new()).unwrap();
    let s = &out.final_states[0];
    assert_eq!(round4(&vec_of(&s.h)), [0.9919, 0.1738, -0.1451]);
    assert_eq!(round4(&vec_of(s.c.as_ref().unwrap())), [5.725, 0.4458, -0.2908]);

    let mut cfg = LstmConfig::new(2, 3);
    cfg.cell = CellKind::Gru;
    let gru = Lstm::new(&cfg, VarBuilder::from_tensors(weights(3), DType::F32, &dev)).unwrap();
    let out = gru.forward(&x, &LstmInput::new()).unwrap();
    assert_eq!(round4(&vec_of(&out.final_states[0].h)), [0.0579, 0.8836, -0.9991]);
}

struct Setup {
    cfg: LstmConfig,
    varmap: VarMap,
    lstm: Lstm,
    x: Tensor,
    lengths: Vec<usize>,
    initial: Option<Vec<LstmState>>,
    w_out: Tensor,
    w_h: Tensor,
}

fn setup(cfg: LstmConfig, with_init: bool) -> Setup {
    let dev = cpu();
    let varmap = VarMap::new();
    let lstm = Lstm::new(&cfg, seeded_var_builder(&varmap, 5, DType::F64, &dev)).unwrap();
    // Give the peephole weights and biases a visible size so their gradients are not tiny.
    let mut r = SeededRng::new(11, "test-data");
    let (b, t) = (3, 4);
    let lengths = vec![4, 2, 3];
    let x = r.normal_tensor((b, t, cfg.input_size), 0.0, 1.0, DType::F64, &dev).unwrap();
    let n = cfg.num_layers * cfg.num_directions();
    let initial = with_init.then(|| {
        (0..n)
            .map(|_| LstmState {
                h: r.normal_tensor((b, cfg.hidden_size), 0.0, 0.5, DType::F64, &dev).unwrap(),
                c: (cfg.cell == CellKind::Lstm)
                    .then(|| r.normal_tensor((b, cfg.hidden_size), 0.0, 0.5, DType::F64, &dev).unwrap()),
            })
            .collect()
    });
    let w_out = r.normal_tensor((b, t, cfg.output_size()), 0.0, 1.0, DType::F64, &dev).unwrap();
    let w_h = r.normal_tensor((n, b, cfg.hidden_size), 0.0, 1.0, DType::F64, &dev).unwrap();
    Setup { cfg, varmap, lstm, x, lengths, initial, w_out, w_h }
}

impl Setup {
    /// L = Σ out⊙w_out + Σ_k (h_k + c_k)⊙w_h[k]; dropout masks from a fresh stream each call.
    fn loss(&self, x: &Tensor) -> Tensor {
        let mut rng = SeededRng::new(3, "dropout");
        let mut input = LstmInput::new().lengths(&self.lengths);
        input.initial = self.initial.clone();
        if self.cfg.dropout > 0.0 {
            input = input.train(&mut rng);
        }
        let out = self.lstm.forward(x, &input).unwrap();
        let mut l = (&out.output * &self.w_out).unwrap().sum_all().unwrap();
        for (k, s) in out.final_states.iter().enumerate() {
            let w = self.w_h.get(k).unwrap();
            l = (l + (&s.h * &w).unwrap().sum_all().unwrap()).unwrap();
            if let Some(c) = &s.c {
                l = (l + (c * &w).unwrap().sum_all().unwrap()).unwrap();
            }
        }
        l
    }
}

fn scalar(t: &Tensor) -> f64 {
    t.to_scalar::<f64>().unwrap()
}

/// Central differences in f64 against candle's backward, for every parameter element and
/// every input element; |fd − analytic| ≤ 1e-7 · max(1, |analytic|).
fn finite_difference_check(cfg: LstmConfig, with_init: bool) {
    let s = setup(cfg.clone(), with_init);
    let x = Var::from_tensor(&s.x).unwrap();
    let grads = s.loss(&x).backward().unwrap();
    let eps = 1e-6;
    let tol = 1e-7;
    let vars: Vec<(String, Var)> = {
        let d = s.varmap.data().lock().unwrap();
        let mut v: Vec<_> = d.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(vars.len(), param_shapes(&cfg).len());
    let mut worst = 0.0f64;
    let mut check = |what: &str, analytic: &[f64], f: &mut dyn FnMut(usize, f64) -> f64| {
        for (i, a) in analytic.iter().enumerate() {
            let fd = (f(i, eps) - f(i, -eps)) / (2.0 * eps);
            let err = (fd - a).abs() / a.abs().max(1.0);
            worst = worst.max(err);
            assert!(err <= tol, "{:?} {what}[{i}]: fd {fd} vs backward {a}", cfg.variant);
        }
    };
    for (name, var) in &vars {
        let g = vec_of(grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no grad for {name}")));
        let base = vec_of(var.as_tensor());
        let shape = var.shape().clone();
        check(name, &g, &mut |i, d| {
            let mut v = base.clone();
            v[i] += d;
            var.set(&Tensor::from_vec(v, shape.clone(), &cpu()).unwrap()).unwrap();
            let l = scalar(&s.loss(&x));
            var.set(&Tensor::from_vec(base.clone(), shape.clone(), &cpu()).unwrap()).unwrap();
            l
        });
    }
    let gx = vec_of(grads.get(&x).unwrap());
    let base = vec_of(&s.x);
    check("x", &gx, &mut |i, d| {
        let mut v = base.clone();
        v[i] += d;
        scalar(&s.loss(&Tensor::from_vec(v, s.x.shape().clone(), &cpu()).unwrap()))
    });
    eprintln!("fd {:?}/{:?}: worst {worst:.1e}", cfg.cell, cfg.variant);
}

fn small(variant: Variant, cell: CellKind) -> LstmConfig {
    let mut cfg = LstmConfig::new(3, 3);
    cfg.num_layers = 2;
    cfg.bidirectional = true;
    cfg.variant = variant;
    cfg.cell = cell;
    cfg
}

#[test]
fn finite_differences_every_variant_with_masks() {
    for v in Variant::ALL {
        finite_difference_check(small(v, CellKind::Lstm), v == Variant::Peephole || v == Variant::Vanilla);
    }
}

#[test]
fn finite_differences_gru_rnn_and_dropout() {
    finite_difference_check(small(Variant::Vanilla, CellKind::Gru), true);
    finite_difference_check(small(Variant::Vanilla, CellKind::Rnn), true);
    let mut cfg = small(Variant::Vanilla, CellKind::Lstm);
    cfg.dropout = 0.3;
    finite_difference_check(cfg.clone(), false);
    cfg.variational_dropout = true;
    finite_difference_check(cfg, false);
}

#[test]
fn variants_allocate_only_their_parameters() {
    for v in Variant::ALL {
        let mut cfg = LstmConfig::new(2, 5);
        cfg.variant = v;
        let varmap = VarMap::new();
        Lstm::new(&cfg, seeded_var_builder(&varmap, 0, DType::F32, &cpu())).unwrap();
        let d = varmap.data().lock().unwrap();
        let g = v.gates().len();
        assert_eq!(d["weight_ih_l0"].dims(), [g * 5, 2]);
        assert_eq!(d["weight_hh_l0"].dims(), [g * 5, 5]);
        assert_eq!(d.contains_key("weight_ch_l0"), v == Variant::Peephole);
        let n_params: usize = d.values().map(|v| v.elem_count()).sum();
        let expected: usize = param_shapes(&cfg).iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        assert_eq!(n_params, expected);
    }
    assert_eq!(Variant::Vanilla.gates().len(), 4);
    assert_eq!(Variant::Cifg.gates().len(), 3);
}

/// Padding: each sequence run alone at its real length gives the same outputs, final states
/// and gate traces as inside a padded batch; padded steps output exact zeros.
#[test]
fn padded_batch_equals_sequences_run_alone() {
    for cell in [CellKind::Lstm, CellKind::Gru, CellKind::Rnn] {
        let s = setup(small(Variant::Vanilla, cell), false);
        let out = s.lstm.forward(&s.x, &LstmInput::new().lengths(&s.lengths).trace(true)).unwrap();
        let dirs = 2;
        for (bi, &len) in s.lengths.iter().enumerate() {
            let xi = s.x.narrow(0, bi, 1).unwrap().narrow(1, 0, len).unwrap();
            let alone = s.lstm.forward(&xi, &LstmInput::new().trace(true)).unwrap();
            let got = out.output.narrow(0, bi, 1).unwrap();
            let real = got.narrow(1, 0, len).unwrap();
            let d: f64 = vec_of(&(real - &alone.output).unwrap()).iter().map(|v| v.abs()).fold(0.0, f64::max);
            assert!(d < 1e-12, "{cell:?} seq {bi}: {d}");
            let t = s.x.dim(1).unwrap();
            if len < t {
                assert!(vec_of(&got.narrow(1, len, t - len).unwrap()).iter().all(|&v| v == 0.0));
            }
            for k in 0..s.cfg.num_layers * dirs {
                let a = out.final_states[k].h.narrow(0, bi, 1).unwrap();
                let d: f64 =
                    vec_of(&(a - &alone.final_states[k].h).unwrap()).iter().map(|v| v.abs()).fold(0.0, f64::max);
                assert!(d < 1e-12, "{cell:?} final h {k} seq {bi}: {d}");
                if let (Some(c), Some(c2)) = (&out.final_states[k].c, &alone.final_states[k].c) {
                    let d: f64 = vec_of(&(c.narrow(0, bi, 1).unwrap() - c2).unwrap())
                        .iter()
                        .map(|v| v.abs())
                        .fold(0.0, f64::max);
                    assert!(d < 1e-12);
                }
                let tr = &out.trace.as_ref().unwrap().directions[k];
                let tr2 = &alone.trace.as_ref().unwrap().directions[k];
                let hid = tr.hidden.narrow(0, bi, 1).unwrap().narrow(1, 0, len).unwrap();
                let d: f64 = vec_of(&(hid - &tr2.hidden).unwrap()).iter().map(|v| v.abs()).fold(0.0, f64::max);
                assert!(d < 1e-12);
            }
        }
    }
}

/// The reverse direction reads right to left: its output at the first token equals its final
/// state, and the forward direction's output at the last real token equals its final state.
#[test]
fn directions_and_final_states_line_up() {
    let mut cfg = LstmConfig::new(3, 4);
    cfg.bidirectional = true;
    let s = setup(cfg, true);
    let out = s
        .lstm
        .forward(
            &s.x,
            &LstmInput { lengths: Some(s.lengths.clone()), initial: s.initial.clone(), ..Default::default() },
        )
        .unwrap();
    for (bi, &len) in s.lengths.iter().enumerate() {
        let o = out.output.get(bi).unwrap(); // (time, 8)
        let fwd_last = o.get(len - 1).unwrap().narrow(0, 0, 4).unwrap();
        let bwd_first = o.get(0).unwrap().narrow(0, 4, 4).unwrap();
        assert_eq!(vec_of(&fwd_last), vec_of(&out.final_states[0].h.get(bi).unwrap()));
        assert_eq!(vec_of(&bwd_first), vec_of(&out.final_states[1].h.get(bi).unwrap()));
    }
}

#[test]
fn gate_trace_is_consistent() {
    for v in Variant::ALL {
        let mut cfg = LstmConfig::new(3, 4);
        cfg.variant = v;
        let s = setup(cfg, false);
        let out = s.lstm.forward(&s.x, &LstmInput::new().lengths(&s.lengths).trace(true)).unwrap();
        let tr = &out.trace.unwrap().directions[0];
        assert_eq!(tr.output_gate.is_some(), v != Variant::Nog);
        assert_eq!(tr.input_gate.is_some(), v != Variant::Nig);
        assert_eq!(tr.forget_gate.is_some(), v != Variant::Nfg);
        assert_eq!(vec_of(&tr.hidden), vec_of(&out.output));
        let c = tr.cell.as_ref().unwrap();
        let act = if v == Variant::Noaf { c.clone() } else { c.tanh().unwrap() };
        let h = match &tr.output_gate {
            Some(o) => (o * act).unwrap(),
            None => act,
        };
        // h = o ⊙ act(c) at every step (padded steps are zero on both sides).
        let d: f64 = vec_of(&(h - &out.output).unwrap()).iter().map(|x| x.abs()).fold(0.0, f64::max);
        assert!(d < 1e-12, "{v:?}: {d}");
        if v == Variant::Cifg {
            let (i, f) = (tr.input_gate.as_ref().unwrap(), tr.forget_gate.as_ref().unwrap());
            let sum = vec_of(&(i + f).unwrap());
            let mask = vec_of(
                &tr.hidden
                    .ones_like()
                    .unwrap()
                    .broadcast_mul(&StepMasks::new(&s.lengths, 4, DType::F64, &cpu()).unwrap().full)
                    .unwrap(),
            );
            assert!(sum.iter().zip(&mask).all(|(s, m)| (s - m).abs() < 1e-12));
        }
    }
}

#[test]
fn seeded_init_is_reproducible_and_honours_options() {
    let dev = cpu();
    let mut cfg = LstmConfig::new(3, 4);
    cfg.num_layers = 2;
    cfg.bidirectional = true;
    let bits = |cfg: &LstmConfig, seed| {
        let vm = VarMap::new();
        Lstm::new(cfg, seeded_var_builder(&vm, seed, DType::F32, &dev).pp("lstm")).unwrap();
        let d = vm.data().lock().unwrap();
        let mut v: Vec<(String, Vec<u32>)> = d
            .iter()
            .map(|(k, v)| {
                (k.clone(), v.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect())
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(bits(&cfg, 9), bits(&cfg, 9));
    assert_ne!(bits(&cfg, 9), bits(&cfg, 10));
    // PyTorch's default range U(−1/√H, 1/√H).
    assert!(bits(&cfg, 9).iter().flat_map(|(_, v)| v.iter()).all(|&b| f32::from_bits(b).abs() <= 0.5));

    cfg.orthogonal_init = true;
    cfg.forget_bias = 1.0;
    let vm = VarMap::new();
    let lstm = Lstm::new(&cfg, seeded_var_builder(&vm, 9, DType::F64, &dev)).unwrap();
    let w = lstm.direction_weights(1, 1);
    let whh = vec_of(&w.w_hh);
    for g in 0..4 {
        let blk = &whh[g * 16..(g + 1) * 16];
        for i in 0..4 {
            for j in 0..4 {
                let d: f64 = (0..4).map(|k| blk[i * 4 + k] * blk[j * 4 + k]).sum();
                assert!((d - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
    }
    // The VarMap holds the same (orthogonalised) values the layer uses.
    assert_eq!(vec_of(vm.data().lock().unwrap()["weight_hh_l1_reverse"].as_tensor()), whh);
    let bi = vec_of(&w.b_ih);
    let bh = vec_of(&w.b_hh);
    assert!(bi[4..8].iter().all(|&v| v == 1.0) && bh[4..8].iter().all(|&v| v == 0.0));
    assert!(bi[0..4].iter().all(|&v| v != 1.0));
}

#[test]
fn bad_inputs_are_typed_errors() {
    let s = setup(small(Variant::Vanilla, CellKind::Lstm), false);
    let e = s.lstm.forward(&s.x, &LstmInput::new().lengths(&[1, 2])).unwrap_err();
    assert!(e.to_string().contains("2 lengths for a batch of 3"), "{e}");
    let e = s.lstm.forward(&s.x, &LstmInput::new().lengths(&[1, 9, 2])).unwrap_err();
    assert!(e.to_string().contains("lengths[1] = 9"), "{e}");
    let x2 = Tensor::zeros((3, 4, 5), DType::F64, &cpu()).unwrap();
    assert!(s.lstm.forward(&x2, &LstmInput::new()).unwrap_err().to_string().contains("input_size"));
    let mut cfg = s.cfg.clone();
    cfg.dropout = 0.5;
    let lstm = Lstm::new(&cfg, seeded_var_builder(&VarMap::new(), 0, DType::F64, &cpu())).unwrap();
    let input = LstmInput { train: true, ..Default::default() };
    assert!(lstm.forward(&s.x, &input).unwrap_err().to_string().contains("dropout_rng"));
}

#[test]
fn dropout_is_seeded_and_only_in_training() {
    let mut cfg = small(Variant::Vanilla, CellKind::Lstm);
    cfg.dropout = 0.5;
    let s = setup(cfg, false);
    let run = |seed| {
        let mut rng = SeededRng::new(seed, "dropout");
        vec_of(&s.lstm.forward(&s.x, &LstmInput::new().train(&mut rng)).unwrap().output)
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
    let eval = vec_of(&s.lstm.forward(&s.x, &LstmInput::new()).unwrap().output);
    assert_ne!(eval, run(1));
}

/// Timing evidence for `split_steps` (run by hand; not part of the suite):
/// `cargo test --release -p model --lib bench_split -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_split() {
    use std::time::Instant;
    let dev = cpu();
    let (b, h, i) = (64, 256, 256);
    for t in [64usize, 128] {
        // Cutting a (T, B, 4H) projection into steps, forward + backward only.
        let proj = Var::from_tensor(&Tensor::ones((t, b, 4 * h), DType::F32, &dev).unwrap()).unwrap();
        let time_split = |tree: bool| {
            let start = Instant::now();
            let steps = if tree { split_steps(&proj).unwrap() } else { (0..t).map(|s| proj.get(s).unwrap()).collect() };
            let mut loss = steps[0].sum_all().unwrap();
            for s in &steps[1..] {
                loss = (loss + s.sum_all().unwrap()).unwrap();
            }
            loss.backward().unwrap();
            start.elapsed().as_secs_f64()
        };
        let naive = time_split(false);
        let tree = time_split(true);
        // The whole layer, forward + backward.
        let mut cfg = LstmConfig::new(i, h);
        cfg.fused = false;
        let vm = VarMap::new();
        let lstm = Lstm::new(&cfg, seeded_var_builder(&vm, 0, DType::F32, &dev)).unwrap();
        let x = Var::from_tensor(&SeededRng::new(0, "x").normal_tensor((b, t, i), 0.0, 1.0, DType::F32, &dev).unwrap())
            .unwrap();
        let start = Instant::now();
        let out = lstm.forward(&x, &LstmInput::new()).unwrap();
        let fwd = start.elapsed().as_secs_f64();
        out.output.sum_all().unwrap().backward().unwrap();
        let ours = start.elapsed().as_secs_f64();
        // candle-nn's LSTM (per-step narrow of the input, no precomputed projection).
        let vm2 = VarMap::new();
        let cn = candle_nn::lstm(i, h, Default::default(), seeded_var_builder(&vm2, 0, DType::F32, &dev)).unwrap();
        let start = Instant::now();
        use candle_nn::RNN;
        let states = cn.seq(&x).unwrap();
        let y = cn.states_to_tensor(&states).unwrap();
        y.sum_all().unwrap().backward().unwrap();
        let theirs = start.elapsed().as_secs_f64();
        eprintln!(
            "T={t} B={b} H={h} I={i}: split fwd+bwd naive narrow {naive:.3}s, halving tree {tree:.3}s; \
             layer fwd {fwd:.3}s fwd+bwd {ours:.3}s; candle-nn LSTM fwd+bwd {theirs:.3}s"
        );
    }
}
