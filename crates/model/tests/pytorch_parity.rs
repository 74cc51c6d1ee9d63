//! Parity with PyTorch's nn.LSTM / nn.GRU / nn.RNN: outputs, final states and every gradient
//! (parameters, input, initial states). Fixtures: scripts/gen_lstm_fixtures.py (float64).
//!
//! Tolerance: every element satisfies |ours − torch| ≤ tol · max(1, |torch|), with
//! tol = 1e-5 when we run in f32 and 1e-10 when we run in f64.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use model::checkpoint;
use model::{CellKind, Lstm, LstmConfig, LstmInput, LstmState};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(format!("{name}.safetensors"))
}

/// Largest |a − b| / max(1, |b|) over all elements.
fn max_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    a.iter().zip(&b).map(|(x, y)| (x - y).abs() / y.abs().max(1.0)).fold(0.0, f64::max)
}

fn check(what: &str, a: &Tensor, b: &Tensor, tol: f64, worst: &mut f64) {
    let e = max_err(a, b);
    *worst = worst.max(e);
    assert!(e <= tol, "{what}: error {e:e} > {tol:e}");
}

fn parity(name: &str, dtype: DType, tol: f64) -> f64 {
    let dev = Device::Cpu;
    let ck = checkpoint::read(fixture(name), &dev).unwrap();
    let m = &ck.metadata;
    let t = |k: &str| ck.tensors[k].clone();
    let mut cfg = LstmConfig::new(m["input_size"].parse().unwrap(), m["hidden_size"].parse().unwrap());
    cfg.num_layers = m["num_layers"].parse().unwrap();
    cfg.bidirectional = m["bidirectional"] == "true";
    cfg.cell = match m["cell"].as_str() {
        "lstm" => CellKind::Lstm,
        "gru" => CellKind::Gru,
        _ => CellKind::Rnn,
    };
    let has_init = m["has_init"] == "true";
    let mut varmap = VarMap::new();
    let lstm = Lstm::new(&cfg, model::init::seeded_var_builder(&varmap, 0, dtype, &dev)).unwrap();
    let names: Vec<String> = model::lstm::param_shapes(&cfg).into_iter().map(|(n, _)| n).collect();
    for n in &names {
        varmap.set_one(n, t(&format!("param.{n}")).to_dtype(dtype).unwrap()).unwrap();
    }
    let x = Var::from_tensor(&t("x").to_dtype(dtype).unwrap()).unwrap();
    let lengths: Vec<usize> = t("lengths").to_vec1::<i64>().unwrap().iter().map(|&v| v as usize).collect();
    let is_lstm = cfg.cell == CellKind::Lstm;
    let (h0, c0) = if has_init {
        let h0 = Var::from_tensor(&t("h0").to_dtype(dtype).unwrap()).unwrap();
        let c0 = is_lstm.then(|| Var::from_tensor(&t("c0").to_dtype(dtype).unwrap()).unwrap());
        (Some(h0), c0)
    } else {
        (None, None)
    };
    let mut input = LstmInput::new().lengths(&lengths);
    if let Some(h0) = &h0 {
        let n = h0.dim(0).unwrap();
        input.initial = Some(
            (0..n).map(|i| LstmState { h: h0.get(i).unwrap(), c: c0.as_ref().map(|c| c.get(i).unwrap()) }).collect(),
        );
    }
    let out = lstm.forward(&x, &input).unwrap();
    let h_n = Tensor::stack(&out.final_states.iter().map(|s| s.h.clone()).collect::<Vec<_>>(), 0).unwrap();
    let w = |k: &str| t(k).to_dtype(dtype).unwrap();
    let mut loss = ((&out.output * w("w_out")).unwrap().sum_all().unwrap()
        + (&h_n * w("w_h")).unwrap().sum_all().unwrap())
    .unwrap();
    let mut worst = 0.0f64;
    check(&format!("{name} out"), &out.output, &t("out"), tol, &mut worst);
    check(&format!("{name} h_n"), &h_n, &t("h_n"), tol, &mut worst);
    if is_lstm {
        let c_n = Tensor::stack(&out.final_states.iter().map(|s| s.c.clone().unwrap()).collect::<Vec<_>>(), 0).unwrap();
        check(&format!("{name} c_n"), &c_n, &t("c_n"), tol, &mut worst);
        loss = (loss + (&c_n * w("w_c")).unwrap().sum_all().unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();
    let data = varmap.data().lock().unwrap();
    for n in &names {
        let g = grads.get(data[n].as_tensor()).unwrap_or_else(|| panic!("no gradient for {n}"));
        check(&format!("{name} grad {n}"), g, &t(&format!("grad.{n}")), tol, &mut worst);
    }
    check(&format!("{name} grad x"), grads.get(&x).unwrap(), &t("grad.x"), tol, &mut worst);
    if let Some(h0) = &h0 {
        check(&format!("{name} grad h0"), grads.get(h0).unwrap(), &t("grad.h0"), tol, &mut worst);
    }
    if let Some(c0) = &c0 {
        check(&format!("{name} grad c0"), grads.get(c0).unwrap(), &t("grad.c0"), tol, &mut worst);
    }
    drop(data);
    let _ = &mut varmap;
    worst
}

const CASES: [&str; 7] = [
    "lstm_1l_init",
    "lstm_2l_bi_packed",
    "lstm_2l_bi_packed_init",
    "gru_1l_init",
    "gru_2l_bi_packed",
    "gru_2l_bi_packed_init",
    "rnn_2l_bi_packed",
];

#[test]
fn pytorch_parity_f32() {
    for c in CASES {
        let e = parity(c, DType::F32, 1e-5);
        eprintln!("{c} f32: worst error {e:.2e}");
    }
}

#[test]
fn pytorch_parity_f64() {
    for c in CASES {
        let e = parity(c, DType::F64, 1e-10);
        eprintln!("{c} f64: worst error {e:.2e}");
    }
}

/// A state_dict written by `safetensors.torch.save_file(nn.LSTM(...).state_dict())` loads as
/// is (names and shapes checked) and gives PyTorch's outputs.
#[test]
fn pytorch_state_dict_loads_and_matches() {
    let dev = Device::Cpu;
    let mut cfg = LstmConfig::new(5, 6);
    cfg.num_layers = 2;
    cfg.bidirectional = true;
    let ck =
        checkpoint::load(fixture("lstm_state_dict"), &checkpoint::lstm_expected(&cfg, ""), DType::F32, &dev).unwrap();
    assert!(ck.config.is_none());
    let lstm = Lstm::new(&cfg, candle_nn::VarBuilder::from_tensors(ck.tensors, DType::F32, &dev)).unwrap();
    let exp = checkpoint::read(fixture("lstm_state_dict_expected"), &dev).unwrap().tensors;
    let out = lstm.forward(&exp["x"], &LstmInput::new()).unwrap();
    let h = Tensor::stack(&out.final_states.iter().map(|s| s.h.clone()).collect::<Vec<_>>(), 0).unwrap();
    let c = Tensor::stack(&out.final_states.iter().map(|s| s.c.clone().unwrap()).collect::<Vec<_>>(), 0).unwrap();
    let mut worst = 0.0;
    check("out", &out.output, &exp["out"], 1e-5, &mut worst);
    check("h_n", &h, &exp["h_n"], 1e-5, &mut worst);
    check("c_n", &c, &exp["c_n"], 1e-5, &mut worst);
    eprintln!("state_dict: worst error {worst:.2e}");

    // A config that does not match the file is refused, naming every offending tensor.
    let mut wrong = cfg.clone();
    wrong.hidden_size = 7;
    wrong.bidirectional = false;
    let e = checkpoint::load(fixture("lstm_state_dict"), &checkpoint::lstm_expected(&wrong, ""), DType::F32, &dev)
        .unwrap_err()
        .to_string();
    assert!(e.contains("lstm_state_dict.safetensors"), "{e}");
    assert!(e.contains("weight_hh_l0 (expected [28, 7], found [24, 6])"), "{e}");
    assert!(e.contains("unexpected tensors [bias_hh_l0_reverse"), "{e}");
}

/// Writes a checkpoint of ours (PyTorch names) for `scripts/gen_lstm_fixtures.py --check-ours`
/// to load into nn.LSTM with `load_state_dict(strict=True)`.
#[test]
fn write_checkpoint_for_pytorch() {
    let mut cfg = LstmConfig::new(5, 6);
    cfg.num_layers = 2;
    cfg.bidirectional = true;
    let varmap = VarMap::new();
    let lstm = Lstm::new(&cfg, model::init::seeded_var_builder(&varmap, 7, DType::F32, &Device::Cpu)).unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    checkpoint::save(
        dir.join("sluice_lstm_for_torch.safetensors"),
        &varmap,
        Some(&serde_json::to_value(&cfg).unwrap()),
    )
    .unwrap();
    let x = Tensor::from_vec((0..40).map(|v| (v as f32 * 0.37).sin()).collect::<Vec<_>>(), (2, 4, 5), &Device::Cpu)
        .unwrap();
    let out = lstm.forward(&x, &LstmInput::new()).unwrap();
    let t: Vec<(String, Tensor)> = vec![("x".into(), x), ("out".into(), out.output)];
    checkpoint::save(dir.join("sluice_lstm_for_torch_io.safetensors"), &t, None).unwrap();
}
