use super::cell_op::{lstm_cell, lstm_cell_ops};
use super::decode::log_softmax_row;
use super::*;
use crate::config::LstmConfig;
use crate::init::seeded_var_builder;
use crate::rng::SeededRng;
use crate::Result;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarMap;

fn config(attention: AttentionKind, layers: usize, tie: bool, vocab: usize) -> Seq2SeqConfig {
    let mut encoder = LstmConfig::new(8, 6);
    encoder.bidirectional = true;
    encoder.num_layers = layers;
    Seq2SeqConfig {
        src_vocab_size: vocab,
        tgt_vocab_size: vocab,
        embedding_dim: 8,
        encoder,
        attention,
        input_feeding: true,
        tie_embeddings: tie,
        embedding_dropout: 0.0,
        dropout: 0.0,
        output_dropout: 0.0,
        copy: false,
        coverage: false,
        pad_id: 0,
        bos_id: 2,
        eos_id: 3,
    }
}

fn build(cfg: &Seq2SeqConfig, dtype: DType, seed: u64) -> (VarMap, Seq2Seq) {
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, seed, dtype, &Device::Cpu);
    let m = Seq2Seq::new(cfg, vb).unwrap();
    (varmap, m)
}

/// (B, S) ids padded with 0.
fn ids(rows: &[Vec<u32>]) -> (Tensor, Vec<usize>) {
    let s = rows.iter().map(Vec::len).max().unwrap();
    let mut v = vec![0u32; rows.len() * s];
    for (i, r) in rows.iter().enumerate() {
        v[i * s..i * s + r.len()].copy_from_slice(r);
    }
    (Tensor::from_vec(v, (rows.len(), s), &Device::Cpu).unwrap(), rows.iter().map(Vec::len).collect())
}

const KINDS: [AttentionKind; 3] = [AttentionKind::Bahdanau, AttentionKind::Dot, AttentionKind::General];

#[test]
fn padding_gets_exactly_zero_attention_and_changes_nothing() {
    for kind in KINDS {
        let cfg = config(kind, 2, false, 20);
        let (_vm, m) = build(&cfg, DType::F32, 1);
        let src = vec![vec![5, 6, 7, 8, 9], vec![4, 5], vec![10, 11, 12]];
        let tgt = vec![vec![2, 5, 6, 7], vec![2, 9, 9, 9], vec![2, 4, 4, 4]];
        let (s, sl) = ids(&src);
        let (t, _) = ids(&tgt);
        let out = m.forward(&s, &sl, &t, false, None, true).unwrap();
        let a = out.attention.unwrap().to_vec3::<f32>().unwrap(); // (B, T, S)
        for (b, &len) in sl.iter().enumerate() {
            for row in &a[b] {
                assert!(row[len..].iter().all(|&w| w == 0.0), "{kind:?}: padding weight {row:?}");
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "{kind:?}: weights sum to {sum}");
            }
        }
        // Each sentence alone (no padding) gives the same h̃ as inside the padded batch.
        let hid = out.hidden.to_vec3::<f32>().unwrap();
        for b in 0..src.len() {
            let (s1, l1) = ids(&src[b..b + 1]);
            let (t1, _) = ids(&tgt[b..b + 1]);
            let alone = m.forward(&s1, &l1, &t1, false, None, false).unwrap().hidden.to_vec3::<f32>().unwrap();
            for (x, y) in alone[0].iter().flatten().zip(hid[b].iter().flatten()) {
                assert!((x - y).abs() < 1e-5, "{kind:?} row {b}: {x} vs {y}");
            }
        }
    }
}

#[test]
fn step_by_step_inference_matches_teacher_forcing() {
    for kind in KINDS {
        let cfg = config(kind, 2, true, 15);
        let (_vm, m) = build(&cfg, DType::F64, 2);
        let (s, sl) = ids(&[vec![5, 6, 7], vec![8, 9]]);
        let dec = [vec![2u32, 5, 6, 7], vec![2, 9, 4, 4]];
        let (t, _) = ids(&dec);
        let tf = m.logits(&m.forward(&s, &sl, &t, false, None, false).unwrap().hidden).unwrap();
        let tf = tf.to_vec3::<f64>().unwrap();
        let enc = m.encode(&s, &sl, false, None).unwrap();
        let w = m.step_weights().unwrap();
        let mut state = enc.initial.clone();
        for step in 0..4 {
            let toks: Vec<u32> = dec.iter().map(|d| d[step]).collect();
            let (next, logits, _, _) = m.infer_step(&w, &enc, &toks, &state).unwrap();
            let l = logits.to_vec2::<f64>().unwrap();
            for b in 0..2 {
                for (x, y) in l[b].iter().zip(&tf[b][step]) {
                    assert!((x - y).abs() < 1e-12, "{kind:?} step {step}: {x} vs {y}");
                }
            }
            state = next;
        }
    }
}

#[test]
fn length_penalty_is_gnmt() {
    // lp(Y) = (5 + |Y|)^α / 6^α.
    assert_eq!(length_penalty(1, 0.6), 1.0);
    assert!((length_penalty(7, 1.0) - 2.0).abs() < 1e-15);
    assert!((length_penalty(10, 0.6) - (15f64 / 6.0).powf(0.6)).abs() < 1e-15);
    assert!((length_penalty(10, 0.6) - 15f64.powf(0.6) / 6f64.powf(0.6)).abs() < 1e-12);
    assert_eq!(length_penalty(123, 0.0), 1.0);
    let o = DecodeOptions { beam: 1, length_penalty: 0.0, max_len_ratio: 1.5, max_len_extra: 2 };
    assert_eq!(o.max_len(4), 8);
    assert_eq!(o.max_len(3), 7); // ⌈4.5⌉ + 2
}

#[test]
fn beam_one_equals_greedy() {
    for kind in KINDS {
        let cfg = config(kind, 1, false, 12);
        let (_vm, m) = build(&cfg, DType::F32, 3);
        let rows: Vec<Vec<u32>> =
            (0..9).map(|i| (0..(1 + i % 5)).map(|j| 4 + ((i * 3 + j) % 8) as u32).collect()).collect();
        let (s, sl) = ids(&rows);
        let opts = DecodeOptions { beam: 1, length_penalty: 0.6, max_len_ratio: 2.0, max_len_extra: 3 };
        let greedy = m.greedy(&s, &sl, &opts).unwrap();
        let beam: Vec<Vec<u32>> = m.beam_search(&s, &sl, &opts).unwrap().into_iter().map(|h| h.tokens).collect();
        assert_eq!(greedy, beam, "{kind:?}");
        for (g, &l) in greedy.iter().zip(&sl) {
            assert!(g.len() <= opts.max_len(l));
        }
    }
}

/// With a beam wider than the number of prefixes nothing is pruned, so beam search must
/// find the exact best of all sequences under the length-penalised score.
#[test]
fn wide_beam_is_exhaustive_search() {
    let v = 5usize; // ids 0..3 special, 4 one real token; EOS = 3
    let cfg = config(AttentionKind::General, 1, false, v);
    let (_vm, m) = build(&cfg, DType::F64, 4);
    let (s, sl) = ids(&[vec![4, 4]]);
    let alpha = 0.8;
    let opts = DecodeOptions { beam: 200, length_penalty: alpha, max_len_ratio: 0.0, max_len_extra: 3 };
    let best = m.beam_search(&s, &sl, &opts).unwrap().remove(0);
    // Enumerate: sequences of non-EOS tokens of length 0..=2 followed by EOS, or of length 3.
    let non_eos: Vec<u32> = (0..v as u32).filter(|&t| t != 3).collect();
    let mut seqs: Vec<Vec<u32>> = vec![vec![]];
    let mut all = Vec::new();
    for len in 0..=3 {
        if len > 0 {
            seqs = seqs.iter().flat_map(|p| non_eos.iter().map(move |&t| [p.clone(), vec![t]].concat())).collect();
        }
        for p in &seqs {
            all.push((p.clone(), len < 3));
        }
    }
    let mut best_score = f64::NEG_INFINITY;
    let mut best_seq = Vec::new();
    for (seq, with_eos) in all {
        let mut dec = vec![2u32];
        dec.extend(&seq);
        let (t, _) = ids(&[dec.clone()]);
        let logits = m.logits(&m.forward(&s, &sl, &t, false, None, false).unwrap().hidden).unwrap();
        let rows = logits.to_vec3::<f64>().unwrap().remove(0);
        let mut lp = 0.0;
        let mut next: Vec<u32> = seq.clone();
        if with_eos {
            next.push(3);
        }
        for (i, &tok) in next.iter().enumerate() {
            let r: Vec<f32> = rows[i].iter().map(|&x| x as f32).collect();
            lp += log_softmax_row(&r)[tok as usize];
        }
        let score = lp / length_penalty(next.len(), alpha);
        if score > best_score {
            best_score = score;
            best_seq = seq;
        }
    }
    assert_eq!(best.tokens, best_seq);
    assert!((best.score - best_score).abs() < 1e-6, "{} vs {best_score}", best.score);
}

#[test]
fn smoothed_cross_entropy_matches_composed_ops() {
    let (n, v) = (7, 11);
    let mut rng = SeededRng::new(5, "t");
    let x = rng.normal_tensor((n, v), 0.0, 2.0, DType::F64, &Device::Cpu).unwrap();
    let targets: Vec<u32> = (0..n as u32).map(|i| (i * 5) % v as u32).collect();
    let weights: Vec<f32> = vec![1.0, 1.0, 0.0, 1.0, 0.5, 1.0, 0.0];
    for eps in [0.0, 0.1, 0.3] {
        let var = candle_core::Var::from_tensor(&x).unwrap();
        let fused = label_smoothed_cross_entropy(var.as_tensor(), &targets, &weights, eps).unwrap();
        let g_fused = fused.backward().unwrap().get(var.as_tensor()).unwrap().clone();
        // Reference: log-softmax from candle ops, picked and averaged.
        let var2 = candle_core::Var::from_tensor(&x).unwrap();
        let logp = candle_nn::ops::log_softmax(var2.as_tensor(), D::Minus1).unwrap();
        let t = Tensor::from_slice(&targets, (n, 1), &Device::Cpu).unwrap();
        let nll = logp.gather(&t, 1).unwrap().squeeze(1).unwrap().neg().unwrap();
        let smooth = logp.mean(1).unwrap().neg().unwrap();
        let per = ((nll * (1.0 - eps)).unwrap() + (smooth * eps).unwrap()).unwrap();
        let w = Tensor::from_vec(weights.iter().map(|&w| w as f64).collect::<Vec<_>>(), n, &Device::Cpu).unwrap();
        let reference = (per * w).unwrap().sum_all().unwrap();
        let g_ref = reference.backward().unwrap().get(var2.as_tensor()).unwrap().clone();
        let (a, b) = (fused.to_scalar::<f64>().unwrap(), reference.to_scalar::<f64>().unwrap());
        assert!((a - b).abs() < 1e-12, "eps {eps}: {a} vs {b}");
        let diff = (g_fused - g_ref).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
        assert!(diff < 1e-12, "eps {eps}: gradient differs by {diff}");
    }
    // The f32 path (f32 exponentials, f64 sums) against the f64 one.
    let x32 = x.to_dtype(DType::F32).unwrap();
    let var = candle_core::Var::from_tensor(&x32).unwrap();
    let l32 = label_smoothed_cross_entropy(var.as_tensor(), &targets, &weights, 0.1).unwrap();
    let g32 = l32.backward().unwrap().get(var.as_tensor()).unwrap().to_dtype(DType::F64).unwrap();
    let var = candle_core::Var::from_tensor(&x32.to_dtype(DType::F64).unwrap()).unwrap();
    let l64 = label_smoothed_cross_entropy(var.as_tensor(), &targets, &weights, 0.1).unwrap();
    let g64 = l64.backward().unwrap().get(var.as_tensor()).unwrap().clone();
    let (a, b) = (l32.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap(), l64.to_scalar::<f64>().unwrap());
    assert!((a - b).abs() < 1e-5 * b.abs(), "f32 {a} vs f64 {b}");
    let diff = (g32 - g64).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
    assert!(diff < 1e-6, "f32 gradient differs by {diff}");
    let e = label_smoothed_cross_entropy(&x, &targets[..3], &weights, 0.1).unwrap_err();
    assert!(e.to_string().contains("3 targets"), "{e}");
}

/// f64 central differences of the full model's loss for a few entries of every parameter.
#[test]
fn gradients_match_finite_differences() {
    for (kind, tie) in [(AttentionKind::Bahdanau, false), (AttentionKind::Dot, true), (AttentionKind::General, false)] {
        let cfg = config(kind, 2, tie, 9);
        let (vm, m) = build(&cfg, DType::F64, 6);
        let (s, sl) = ids(&[vec![4, 5, 6], vec![7, 8]]);
        let (t, _) = ids(&[vec![2, 4, 5], vec![2, 6, 7]]);
        let targets = [4u32, 5, 3, 6, 7, 3];
        let weights = [1f32, 1.0, 1.0, 1.0, 1.0, 0.0];
        let loss = || {
            let h = m.forward(&s, &sl, &t, false, None, false).unwrap().hidden;
            let l = m.logits(&h).unwrap().reshape((6, 9)).unwrap();
            label_smoothed_cross_entropy(&l, &targets, &weights, 0.1).unwrap()
        };
        let grads = loss().backward().unwrap();
        let data = vm.data().lock().unwrap().clone();
        let mut names: Vec<_> = data.keys().cloned().collect();
        names.sort();
        for name in names {
            let var = &data[&name];
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{kind:?}: no gradient for {name}"));
            let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let base = var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
            for &i in &[0, base.len() / 2, base.len() - 1] {
                let h = 1e-6;
                let mut p = base.clone();
                p[i] += h;
                var.set(&Tensor::from_vec(p.clone(), var.shape(), &Device::Cpu).unwrap()).unwrap();
                let up = loss().to_scalar::<f64>().unwrap();
                p[i] -= 2.0 * h;
                var.set(&Tensor::from_vec(p, var.shape(), &Device::Cpu).unwrap()).unwrap();
                let down = loss().to_scalar::<f64>().unwrap();
                var.set(&Tensor::from_vec(base.clone(), var.shape(), &Device::Cpu).unwrap()).unwrap();
                let fd = (up - down) / (2.0 * h);
                assert!(
                    (fd - g[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "{kind:?} {name}[{i}]: fd {fd} vs autograd {}",
                    g[i]
                );
            }
        }
        assert_eq!(vm.data().lock().unwrap().contains_key("generator.weight"), !tie);
    }
}

#[test]
fn dropout_needs_rng_and_is_reproducible() {
    let mut cfg = config(AttentionKind::General, 2, false, 12);
    cfg.embedding_dropout = 0.2;
    cfg.dropout = 0.3;
    cfg.output_dropout = 0.3;
    let (_vm, m) = build(&cfg, DType::F32, 7);
    let (s, sl) = ids(&[vec![4, 5, 6], vec![7, 8]]);
    let (t, _) = ids(&[vec![2, 4, 5], vec![2, 6, 7]]);
    assert!(m.forward(&s, &sl, &t, true, None, false).is_err());
    let run = |seed| {
        let mut r = SeededRng::new(seed, "dropout");
        m.forward(&s, &sl, &t, true, Some(&mut r), false)
            .unwrap()
            .hidden
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

/// A tiny copy-like translation task: the target is the source with every token shifted
/// by one id. A small model learns it to near-perfect greedy exact match.
#[test]
fn tiny_translation_task_learns() {
    use candle_nn::{AdamW, Optimizer, ParamsAdamW};
    let vocab = 14u32;
    let mut cfg = config(AttentionKind::General, 1, false, vocab as usize);
    cfg.embedding_dim = 16;
    cfg.encoder = LstmConfig { bidirectional: true, ..LstmConfig::new(16, 24) };
    let (vm, m) = build(&cfg, DType::F32, 8);
    let mut rng = SeededRng::new(9, "data");
    let mut sample = |n: usize| -> Vec<(Vec<u32>, Vec<u32>)> {
        (0..n)
            .map(|_| {
                let len = 2 + rng.below(5) as usize;
                let src: Vec<u32> = (0..len).map(|_| 4 + rng.below(9) as u32).collect();
                let tgt = src.iter().map(|&x| x + 1).collect();
                (src, tgt)
            })
            .collect()
    };
    let test = sample(60);
    let mut opt = AdamW::new(vm.all_vars(), ParamsAdamW { lr: 0.01, weight_decay: 0.0, ..Default::default() }).unwrap();
    for _ in 0..250 {
        let batch = sample(32);
        let (s, sl) = ids(&batch.iter().map(|p| p.0.clone()).collect::<Vec<_>>());
        let dec_in: Vec<Vec<u32>> = batch.iter().map(|p| [vec![2], p.1.clone()].concat()).collect();
        let dec_out: Vec<Vec<u32>> = batch.iter().map(|p| [p.1.clone(), vec![3]].concat()).collect();
        let (t, _) = ids(&dec_in);
        let (y, _) = ids(&dec_out);
        let y = y.flatten_all().unwrap().to_vec1::<u32>().unwrap();
        let w: Vec<f32> = y.iter().map(|&x| if x == 0 { 0.0 } else { 1.0 }).collect();
        let h = m.forward(&s, &sl, &t, true, None, false).unwrap().hidden;
        let logits = m.logits(&h).unwrap().flatten_to(1).unwrap();
        let loss =
            (label_smoothed_cross_entropy(&logits, &y, &w, 0.0).unwrap() / w.iter().sum::<f32>() as f64).unwrap();
        opt.backward_step(&loss).unwrap();
    }
    let (s, sl) = ids(&test.iter().map(|p| p.0.clone()).collect::<Vec<_>>());
    let opts = DecodeOptions { beam: 3, ..Default::default() };
    for hyps in [m.greedy(&s, &sl, &opts).unwrap(), m.translate(&s, &sl, &opts).unwrap()] {
        let exact = hyps.iter().zip(&test).filter(|(h, p)| **h == p.1).count();
        assert!(exact >= 54, "only {exact}/60 exact");
    }
}

/// Where a training step's time goes at Multi30k-like sizes (batch 64, source 14, target
/// 16 steps, embedding 256, 256 units per encoder direction, vocabulary 8000, tied; the
/// training path: `generator_loss`):
/// `cargo test --release -p model profile_step -- --ignored --nocapture`.
#[test]
#[ignore]
fn profile_step() {
    use std::time::Instant;
    let (b, s, t, v) = (64usize, 14usize, 16usize, 8000usize);
    let mut cfg = config(AttentionKind::General, 1, true, v);
    cfg.embedding_dim = 256;
    cfg.encoder = LstmConfig { bidirectional: true, ..LstmConfig::new(256, 256) };
    cfg.output_dropout = 0.3;
    cfg.embedding_dropout = 0.2;
    let (_vm, m) = build(&cfg, DType::F32, 1);
    let mut rng = SeededRng::new(1, "p");
    let src: Vec<Vec<u32>> = (0..b).map(|_| (0..s).map(|_| 4 + rng.below(v as u64 - 4) as u32).collect()).collect();
    let dec: Vec<Vec<u32>> = (0..b).map(|_| (0..t).map(|_| 4 + rng.below(v as u64 - 4) as u32).collect()).collect();
    let (st, sl) = ids(&src);
    let (dt, _) = ids(&dec);
    let targets = dt.flatten_all().unwrap().to_vec1::<u32>().unwrap();
    let weights = vec![1f32; b * t];
    for round in 0..3 {
        let t0 = Instant::now();
        let enc = m.encode(&st, &sl, true, Some(&mut rng)).unwrap();
        let t1 = Instant::now();
        let out = m.decode(&enc, &dt, true, Some(&mut rng), false).unwrap();
        let t2 = Instant::now();
        let loss = (m.generator_loss(&out.hidden, &targets, &weights, 0.1).unwrap() / (b * t) as f64).unwrap();
        let _ = loss.to_scalar::<f32>().unwrap();
        let t3 = Instant::now();
        let _g = loss.backward().unwrap();
        let t4 = Instant::now();
        // Backward of the output part alone (h̃ detached).
        let h = candle_core::Var::from_tensor(&out.hidden.detach()).unwrap();
        let l2 = m.generator_loss(h.as_tensor(), &targets, &weights, 0.1).unwrap();
        let t5 = Instant::now();
        let _g2 = l2.backward().unwrap();
        let t6 = Instant::now();
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
        println!(
            "round {round}: encoder fwd {:.0} ms, decoder loop fwd {:.0} ms, vocab projection + CE fwd {:.0} ms, full backward {:.0} ms (of which vocab projection + CE {:.0} ms; its fwd alone {:.0} ms), total {:.0} ms",
            ms(t0, t1), ms(t1, t2), ms(t2, t3), ms(t3, t4), ms(t5, t6), ms(t4, t5), ms(t0, t4)
        );
    }
}

/// The fused label-smoothed cross-entropy against the same loss from candle ops, forward +
/// backward on (2048, 8000) logits:
/// `cargo test --release -p model bench_cross_entropy -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_cross_entropy() {
    use std::time::Instant;
    let (n, v, eps) = (2048usize, 8000usize, 0.1);
    let mut rng = SeededRng::new(1, "b");
    let x = rng.normal_tensor((n, v), 0.0, 1.0, DType::F32, &Device::Cpu).unwrap();
    let targets: Vec<u32> = (0..n as u32).map(|i| (i * 7) % v as u32).collect();
    let weights = vec![1f32; n];
    for round in 0..3 {
        let var = candle_core::Var::from_tensor(&x).unwrap();
        let t0 = Instant::now();
        let l = label_smoothed_cross_entropy(var.as_tensor(), &targets, &weights, eps).unwrap();
        let _ = l.backward().unwrap();
        let t1 = Instant::now();
        let logp = candle_nn::ops::log_softmax(var.as_tensor(), D::Minus1).unwrap();
        let t = Tensor::from_slice(&targets, (n, 1), &Device::Cpu).unwrap();
        let nll = logp.gather(&t, 1).unwrap().squeeze(1).unwrap().neg().unwrap();
        let smooth = logp.mean(1).unwrap().neg().unwrap();
        let l2 = ((nll * (1.0 - eps)).unwrap() + (smooth * eps).unwrap()).unwrap().sum_all().unwrap();
        let _ = l2.backward().unwrap();
        let t2 = Instant::now();
        println!(
            "round {round}: fused {:.0} ms, composed candle ops {:.0} ms (forward + backward)",
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3
        );
    }
}

/// `generator_loss` against the generator's logits through `label_smoothed_cross_entropy`:
/// value and every parameter's gradient, tied and untied, f64 (to rounding) and f32; in
/// evaluation (nothing tracked) it keeps no logits and gives the same value.
#[test]
fn generator_loss_matches_logits_and_cross_entropy() {
    for (tie, dtype, tol) in
        [(false, DType::F64, 1e-12), (true, DType::F64, 1e-12), (false, DType::F32, 2e-5), (true, DType::F32, 2e-5)]
    {
        let cfg = config(AttentionKind::General, 1, tie, 11);
        let (vm, m) = build(&cfg, dtype, 9);
        let (s, sl) = ids(&[vec![4, 5, 6], vec![7, 8]]);
        let (t, _) = ids(&[vec![2, 4, 5, 9], vec![2, 6, 7, 10]]);
        let targets = [4u32, 5, 3, 1, 6, 7, 3, 0];
        let weights = [1f32, 1.0, 0.5, 1.0, 1.0, 0.0, 1.0, 1.0];
        let h = m.forward(&s, &sl, &t, false, None, false).unwrap().hidden;
        let fused = m.generator_loss(&h, &targets, &weights, 0.1).unwrap();
        let reference =
            label_smoothed_cross_entropy(&m.logits(&h).unwrap().flatten_to(1).unwrap(), &targets, &weights, 0.1)
                .unwrap();
        let (a, b) = (
            fused.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap(),
            reference.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap(),
        );
        assert!((a - b).abs() <= tol * b.abs(), "tie {tie} {dtype:?}: loss {a} vs {b}");
        let (gf, gr) = (fused.backward().unwrap(), reference.backward().unwrap());
        for (name, var) in vm.data().lock().unwrap().iter() {
            let (x, y) = (gf.get(var.as_tensor()), gr.get(var.as_tensor()));
            let (x, y) = match (x, y) {
                (Some(x), Some(y)) => (x.to_dtype(DType::F64).unwrap(), y.to_dtype(DType::F64).unwrap()),
                (x, y) => panic!("{name}: gradient present {} vs {}", x.is_some(), y.is_some()),
            };
            let scale = y.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap().max(1e-3);
            let diff = (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
            assert!(
                diff <= tol * 10.0 * scale,
                "tie {tie} {dtype:?} {name}: gradients differ by {diff} (scale {scale})"
            );
        }
        let frozen = m.generator_loss(&h.detach(), &targets, &weights, 0.1).unwrap();
        assert_eq!(frozen.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap(), a);
    }
    let cfg = config(AttentionKind::Dot, 1, true, 11);
    let (_vm, m) = build(&cfg, DType::F32, 9);
    let h = Tensor::zeros((2, 3, 8), DType::F32, &Device::Cpu).unwrap();
    let e = m.generator_loss(&h, &[1, 2], &[1.0, 1.0], 0.1).unwrap_err();
    assert!(e.to_string().contains("2 targets"), "{e}");
    let e = m.generator_loss(&h, &[1, 2, 3, 4, 5, 11], &[1.0; 6], 0.1).unwrap_err();
    assert!(e.to_string().contains("target id 11"), "{e}");
}

/// The decoder's fused CPU cell against the same cell from candle's ops: h, c and the
/// gradients of gates and c_prev, f64 to rounding and f32 (SIMD activations) to 1e-5.
#[test]
fn lstm_cell_op_matches_candle_ops() {
    let mut rng = SeededRng::new(3, "cell");
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
        for (n, h) in [(1, 1), (3, 5), (7, 33)] {
            let gates = rng.normal_tensor((n, 4 * h), 0.0, 2.0, dtype, &Device::Cpu).unwrap();
            let c = rng.normal_tensor((n, h), 0.0, 1.0, dtype, &Device::Cpu).unwrap();
            let r = rng.normal_tensor((2, n, h), 0.0, 1.0, dtype, &Device::Cpu).unwrap();
            let run = |f: fn(&Tensor, &Tensor) -> Result<(Tensor, Tensor)>| {
                let (g, cv) =
                    (candle_core::Var::from_tensor(&gates).unwrap(), candle_core::Var::from_tensor(&c).unwrap());
                let (ho, co) = f(g.as_tensor(), cv.as_tensor()).unwrap();
                let loss = ((&ho * r.get(0).unwrap()).unwrap().sum_all().unwrap()
                    + (&co * r.get(1).unwrap()).unwrap().sum_all().unwrap())
                .unwrap();
                let grads = loss.backward().unwrap();
                let vec = |t: &Tensor| t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
                [vec(&ho), vec(&co), vec(grads.get(g.as_tensor()).unwrap()), vec(grads.get(cv.as_tensor()).unwrap())]
            };
            let (fused, reference) = (run(lstm_cell), run(lstm_cell_ops));
            for (k, (a, b)) in fused.iter().zip(&reference).enumerate() {
                for (x, y) in a.iter().zip(b) {
                    assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{dtype:?} n{n} h{h} output {k}: {x} vs {y}");
                }
            }
        }
    }
}
