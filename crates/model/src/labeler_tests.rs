use super::*;
use crate::init::seeded_var_builder;
use candle_nn::VarMap;

fn config(encoder: Option<CharEncoder>, crf: bool) -> LabelerConfig {
    let chars = encoder.map(|encoder| CharConfig { vocab_size: 12, dim: 4, encoder, hidden: 5, width: 3 });
    let mut lstm = LstmConfig::new(6 + chars.as_ref().map_or(0, CharConfig::output_size), 7);
    lstm.bidirectional = true;
    LabelerConfig {
        vocab_size: 20,
        embedding_dim: 6,
        chars,
        lstm,
        num_tags: 4,
        crf: crf.then(|| CrfConfig::new(4)),
        embedding_dropout: 0.2,
        dropout: 0.2,
    }
}

/// Words of two sentences (3 and 1 real words) and their characters.
fn batch(extra_pad: usize) -> (Tensor, Vec<usize>, CharBatch) {
    let t = 3 + extra_pad;
    let mut w = vec![0u32; 2 * t];
    w[..3].copy_from_slice(&[4, 9, 2]);
    w[t] = 7;
    let words = Tensor::from_vec(w, (2, t), &Device::Cpu).unwrap();
    let chars = CharBatch { ids: vec![3, 4, 0, 5, 6, 7, 8, 0, 0, 9, 10, 11], lengths: vec![2, 3, 1, 3], width: 3 };
    (words, vec![3, 1], chars)
}

#[test]
fn padding_does_not_change_the_real_scores() {
    for enc in [None, Some(CharEncoder::Lstm), Some(CharEncoder::Cnn)] {
        let vm = VarMap::new();
        let net =
            SequenceLabeler::new(&config(enc, true), seeded_var_builder(&vm, 5, DType::F32, &Device::Cpu)).unwrap();
        let (w1, l1, c1) = batch(0);
        let (w2, l2, c2) = batch(2);
        let a = net.forward(&w1, &l1, Some(&c1), false, None).unwrap();
        let b = net.forward(&w2, &l2, Some(&c2), false, None).unwrap().narrow(1, 0, 3).unwrap();
        let a0 = a.get(0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b0 = b.get(0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (x, y) in a0.iter().zip(&b0) {
            assert!((x - y).abs() < 1e-5, "{enc:?}: {x} vs {y}");
        }
        let la = net.loss(&a, &[1, 2, 3, 0, 0, 0], &l1).unwrap().to_scalar::<f32>().unwrap();
        let lb = net.loss(&b, &[1, 2, 3, 0, 3, 3], &l2).unwrap().to_scalar::<f32>().unwrap();
        assert!((la - lb).abs() < 1e-4, "{enc:?}: {la} vs {lb}");
    }
}

#[test]
fn every_parameter_gets_a_gradient_and_dropout_needs_the_rng() {
    for (enc, crf) in [(Some(CharEncoder::Lstm), true), (Some(CharEncoder::Cnn), false), (None, true)] {
        let vm = VarMap::new();
        let net =
            SequenceLabeler::new(&config(enc, crf), seeded_var_builder(&vm, 5, DType::F32, &Device::Cpu)).unwrap();
        let (w, l, c) = batch(1);
        let mut rng = SeededRng::new(1, "t");
        let scores = net.forward(&w, &l, Some(&c), true, Some(&mut rng)).unwrap();
        let loss = net.loss(&scores, &[1, 2, 3, 0, 2, 0, 0, 0], &l).unwrap();
        let grads = loss.backward().unwrap();
        for (name, var) in vm.data().lock().unwrap().iter() {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{enc:?}: no gradient for {name}"));
            let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(norm > 0.0 && norm.is_finite(), "{enc:?}: {name} gradient norm {norm}");
        }
        let e = net.forward(&w, &l, Some(&c), true, None).unwrap_err().to_string();
        assert!(e.contains("no dropout RNG"), "{e}");
    }
}

#[test]
fn inputs_and_config_are_checked() {
    let mut cfg = config(Some(CharEncoder::Lstm), true);
    cfg.lstm.input_size = 6;
    let vm = VarMap::new();
    let e = SequenceLabeler::new(&cfg, seeded_var_builder(&vm, 5, DType::F32, &Device::Cpu)).err().unwrap().to_string();
    assert!(e.contains("lstm.input_size") && e.contains("16"), "{e}");
    let net = SequenceLabeler::new(
        &config(Some(CharEncoder::Cnn), false),
        seeded_var_builder(&vm, 5, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let (w, l, _) = batch(0);
    assert!(net.forward(&w, &l, None, false, None).unwrap_err().to_string().contains("reads characters"));
    assert!(net.forward(&w, &[4, 1], None, false, None).unwrap_err().to_string().contains("lengths"));
    let short = CharBatch { ids: vec![1; 3], lengths: vec![1, 1, 1], width: 1 };
    assert!(net.forward(&w, &l, Some(&short), false, None).unwrap_err().to_string().contains("for 4 real words"));
}
