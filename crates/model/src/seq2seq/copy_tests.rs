//! The pointer-generator's copy distribution and loss, coverage, and summary beam search.

use super::*;
use crate::config::LstmConfig;
use crate::init::seeded_var_builder;
use crate::rng::SeededRng;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

const V: usize = 12;
const UNK: u32 = 1;

fn config(copy: bool, coverage: bool) -> Seq2SeqConfig {
    let mut encoder = LstmConfig::new(8, 6);
    encoder.bidirectional = true;
    Seq2SeqConfig {
        src_vocab_size: V,
        tgt_vocab_size: V,
        embedding_dim: 8,
        encoder,
        attention: AttentionKind::Bahdanau,
        input_feeding: true,
        tie_embeddings: false,
        embedding_dropout: 0.0,
        dropout: 0.0,
        output_dropout: 0.0,
        copy,
        coverage,
        pad_id: 0,
        bos_id: 2,
        eos_id: 3,
    }
}

fn build(cfg: &Seq2SeqConfig, dtype: DType, seed: u64) -> (VarMap, Seq2Seq) {
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, seed, dtype, &Device::Cpu);
    (varmap.clone(), Seq2Seq::new(cfg, vb).unwrap())
}

/// Rows padded with 0 into one (rows, longest) vector.
fn pad(rows: &[Vec<u32>]) -> (Vec<u32>, usize) {
    let s = rows.iter().map(Vec::len).max().unwrap();
    let mut v = vec![0u32; rows.len() * s];
    for (i, r) in rows.iter().enumerate() {
        v[i * s..i * s + r.len()].copy_from_slice(r);
    }
    (v, s)
}

fn in_vocab(ids: &[u32]) -> Vec<u32> {
    ids.iter().map(|&x| if (x as usize) < V { x } else { UNK }).collect()
}

/// A batch in the extended vocabulary: (src ids, lengths, src ext (B·S), dec input, targets, weights, T).
struct Batch {
    src: Tensor,
    lengths: Vec<usize>,
    src_ext: Vec<u32>,
    dec: Tensor,
    targets: Vec<u32>,
    weights: Vec<f32>,
    t: usize,
}

fn batch(pairs: &[(Vec<u32>, Vec<u32>)]) -> Batch {
    let dev = Device::Cpu;
    let srcs: Vec<Vec<u32>> = pairs.iter().map(|p| p.0.clone()).collect();
    let (src_ext, s) = pad(&srcs);
    let src = Tensor::from_vec(in_vocab(&src_ext), (pairs.len(), s), &dev).unwrap();
    let dec_in: Vec<Vec<u32>> = pairs.iter().map(|p| [vec![2], in_vocab(&p.1)].concat()).collect();
    let dec_out: Vec<Vec<u32>> = pairs.iter().map(|p| [p.1.clone(), vec![3]].concat()).collect();
    let (d, t) = pad(&dec_in);
    let (targets, _) = pad(&dec_out);
    let weights = targets.iter().map(|&x| if x == 0 { 0.0 } else { 1.0 }).collect();
    Batch {
        src,
        lengths: srcs.iter().map(Vec::len).collect(),
        src_ext,
        dec: Tensor::from_vec(d, (pairs.len(), t), &dev).unwrap(),
        targets,
        weights,
        t,
    }
}

fn fixture() -> Batch {
    // Ids ≥ 12 are source-only words: 12 and 13 in the first document, 12 in the second.
    batch(&[(vec![4, 12, 5, 13, 4], vec![12, 5, 13]), (vec![6, 7, 12], vec![7, 12, 8, 6])])
}

#[test]
fn copy_distribution_sums_to_one_and_gives_the_loss() {
    let (_vm, m) = build(&config(true, true), DType::F32, 3);
    let b = fixture();
    let enc = m.encode(&b.src, &b.lengths, false, None).unwrap();
    let parts = DecodeParts { attention: true, coverage: true };
    let out = m.decode_with(&enc, &b.dec, false, None, parts).unwrap();
    let loss = m.copy_loss(&out, &b.src_ext, &b.targets, &b.weights).unwrap().to_scalar::<f32>().unwrap() as f64;
    // The same loss from the full extended distribution, step by step.
    let logits = m.logits(&out.hidden).unwrap().to_vec3::<f32>().unwrap();
    let attn = out.attention.as_ref().unwrap().to_vec3::<f32>().unwrap();
    let p_gen = out.p_gen.as_ref().unwrap().to_vec2::<f32>().unwrap();
    let s = b.src_ext.len() / 2;
    let mut expect = 0.0;
    for r in 0..2 {
        let ext = &b.src_ext[r * s..r * s + b.lengths[r]];
        for j in 0..b.t {
            let i = r * b.t + j;
            let p = &p_gen[r][j];
            assert!(*p > 0.0 && *p < 1.0);
            let dist = Seq2Seq::output_distribution(&logits[r][j], &attn[r][j][..b.lengths[r]], ext, Some(*p), V + 2);
            let total: f64 = dist.iter().sum();
            assert!((total - 1.0).abs() < 1e-6, "row {r} step {j}: sums to {total}");
            if b.weights[i] != 0.0 {
                expect -= dist[b.targets[i] as usize].ln();
            }
        }
    }
    assert!((loss - expect).abs() < 1e-4 * expect.abs(), "copy loss {loss} vs composed {expect}");
    // Without a p_gen the distribution is the softmax.
    let plain = Seq2Seq::output_distribution(&[0.0, 1.0, 2.0], &[1.0], &[0], None, 3);
    let z: f64 = [0f64, 1.0, 2.0].iter().map(|x| x.exp()).sum();
    for (x, l) in plain.iter().zip([0f64, 1.0, 2.0]) {
        assert!((x - l.exp() / z).abs() < 1e-12);
    }
}

#[test]
fn coverage_is_the_running_sum_of_attention() {
    let (_vm, m) = build(&config(true, true), DType::F64, 4);
    let b = fixture();
    let enc = m.encode(&b.src, &b.lengths, false, None).unwrap();
    let out = m.decode_with(&enc, &b.dec, false, None, DecodeParts { attention: true, coverage: true }).unwrap();
    let attn = out.attention.unwrap().to_vec3::<f64>().unwrap();
    let cl = out.coverage_loss.unwrap().to_vec2::<f64>().unwrap();
    for r in 0..2 {
        let mut cov = vec![0.0; attn[r][0].len()];
        for (j, a) in attn[r].iter().enumerate() {
            let want: f64 = a.iter().zip(&cov).map(|(x, c)| x.min(*c)).sum();
            assert!((cl[r][j] - want).abs() < 1e-12, "row {r} step {j}: {} vs {want}", cl[r][j]);
            for (c, x) in cov.iter_mut().zip(a) {
                *c += x;
            }
        }
        assert_eq!(cl[r][0], 0.0, "nothing is covered before the first step");
    }
    // Coverage off: no loss, and a model without coverage refuses it.
    let off = m.decode_with(&enc, &b.dec, false, None, DecodeParts::default()).unwrap();
    assert!(off.coverage_loss.is_none() && off.p_gen.is_some());
    let (_vm2, plain) = build(&config(true, false), DType::F64, 4);
    let enc2 = plain.encode(&b.src, &b.lengths, false, None).unwrap();
    assert!(plain.decode_with(&enc2, &b.dec, false, None, DecodeParts { attention: false, coverage: true }).is_err());
}

#[test]
fn copy_and_coverage_gradients_match_finite_differences() {
    for kind in [AttentionKind::Bahdanau, AttentionKind::General] {
        finite_differences(Seq2SeqConfig { attention: kind, ..config(true, true) });
    }
}

fn finite_differences(cfg: Seq2SeqConfig) {
    let (vm, m) = build(&cfg, DType::F64, 5);
    let b = fixture();
    let loss = || {
        let enc = m.encode(&b.src, &b.lengths, false, None).unwrap();
        let out = m.decode_with(&enc, &b.dec, false, None, DecodeParts { attention: false, coverage: true }).unwrap();
        let nll = m.copy_loss(&out, &b.src_ext, &b.targets, &b.weights).unwrap();
        let w = Tensor::from_slice(&b.weights, b.weights.len(), &Device::Cpu).unwrap().to_dtype(DType::F64).unwrap();
        let cov = (out.coverage_loss.unwrap().flatten_all().unwrap() * w).unwrap().sum_all().unwrap();
        (nll + (cov * 0.7).unwrap()).unwrap()
    };
    let grads = loss().backward().unwrap();
    let data = vm.data().lock().unwrap().clone();
    let mut names: Vec<_> = data.keys().cloned().collect();
    names.sort();
    assert!(names.iter().any(|n| n == "pointer.weight") && names.iter().any(|n| n == "attention.coverage.weight"));
    for name in names {
        let var = &data[&name];
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
        let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let base = var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let mut idx = vec![0, base.len() / 2, base.len() - 1];
        idx.dedup();
        for i in idx {
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
                "{:?} {name}[{i}]: fd {fd} vs autograd {}",
                cfg.attention,
                g[i]
            );
        }
    }
}

/// A copy-heavy task: the target is the source with its first token dropped, and half the
/// tokens are source-only words (ids ≥ 12, read as UNK) that the generator cannot produce.
/// The pointer-generator learns to output them by copying.
#[test]
fn tiny_copy_task_outputs_source_only_words() {
    use candle_nn::{AdamW, Optimizer, ParamsAdamW};
    let mut cfg = config(true, false);
    cfg.embedding_dim = 16;
    cfg.encoder = LstmConfig { bidirectional: true, ..LstmConfig::new(16, 24) };
    let (vm, m) = build(&cfg, DType::F32, 8);
    let mut rng = SeededRng::new(9, "data");
    let mut sample = |n: usize| -> Vec<(Vec<u32>, Vec<u32>)> {
        (0..n)
            .map(|_| {
                let len = 3 + rng.below(4) as usize;
                let src: Vec<u32> = (0..len)
                    .map(|_| if rng.below(2) == 0 { 4 + rng.below(8) as u32 } else { 12 + rng.below(6) as u32 })
                    .collect();
                (src.clone(), src[1..].to_vec())
            })
            .collect()
    };
    let test = sample(60);
    let mut opt = AdamW::new(vm.all_vars(), ParamsAdamW { lr: 0.01, weight_decay: 0.0, ..Default::default() }).unwrap();
    for _ in 0..300 {
        let b = batch(&sample(32));
        let enc = m.encode(&b.src, &b.lengths, false, None).unwrap();
        let out = m.decode_with(&enc, &b.dec, true, None, DecodeParts::default()).unwrap();
        let n = b.weights.iter().sum::<f32>() as f64;
        let loss = (m.copy_loss(&out, &b.src_ext, &b.targets, &b.weights).unwrap() / n).unwrap();
        opt.backward_step(&loss).unwrap();
    }
    let b = batch(&test);
    let copy: Vec<CopySource> = test.iter().map(|p| CopySource { ext_ids: p.0.clone(), n_oov: 6 }).collect();
    for beam in [1, 3] {
        let opts = SummaryOptions {
            beam,
            min_len: 0,
            max_len: 10,
            length_penalty: 0.0,
            no_repeat_ngram: 0,
            unk_id: UNK,
            coverage: false,
        };
        let out = m.summarize(&b.src, &b.lengths, Some(&copy), &opts).unwrap();
        let exact = out.iter().zip(&test).filter(|(h, p)| h.tokens == p.1).count();
        let oov_out = out.iter().flat_map(|h| &h.tokens).filter(|&&t| t as usize >= V).count();
        assert!(exact >= 50, "beam {beam}: only {exact}/60 exact");
        assert!(oov_out >= 40, "beam {beam}: only {oov_out} source-only words output");
        for h in &out {
            assert_eq!(h.p_gen.len(), h.tokens.len() + 1, "one p_gen per word and for EOS");
            assert_eq!(h.attention.len(), h.p_gen.len());
        }
    }
    // Without copy information a copying model refuses to decode.
    let opts = SummaryOptions {
        beam: 2,
        min_len: 0,
        max_len: 10,
        length_penalty: 0.0,
        no_repeat_ngram: 0,
        unk_id: UNK,
        coverage: false,
    };
    assert!(m.summarize(&b.src, &b.lengths, None, &opts).is_err());
}

#[test]
fn summary_beam_respects_lengths_and_ngram_blocking() {
    let (_vm, m) = build(&config(false, true), DType::F32, 11);
    let b = fixture();
    for (min_len, max_len, ngram) in [(0, 1, 0), (4, 6, 0), (2, 8, 1), (0, 12, 2)] {
        let opts = SummaryOptions {
            beam: 3,
            min_len,
            max_len,
            length_penalty: 0.6,
            no_repeat_ngram: ngram,
            unk_id: UNK,
            coverage: true,
        };
        let out = m.summarize(&b.src, &b.lengths, None, &opts).unwrap();
        for h in &out {
            assert!(h.tokens.len() >= min_len && h.tokens.len() <= max_len, "{:?} ({min_len}..={max_len})", h.tokens);
            assert!(h.tokens.iter().all(|&t| (t as usize) < V && ![0, 2, 3].contains(&t)), "{:?}", h.tokens);
            for i in 0..h.tokens.len() {
                assert!(!repeats_ngram(&h.tokens[..i], h.tokens[i], ngram), "{:?} repeats a {ngram}-gram", h.tokens);
            }
            assert!(h.p_gen.is_empty());
        }
        // Decoding one document alone gives the same summary as in the batch.
        let (s1, _) = pad(&[in_vocab(&b.src_ext[..5])]);
        let one = m.summarize(&Tensor::from_vec(s1, (1, 5), &Device::Cpu).unwrap(), &[5], None, &opts).unwrap();
        assert_eq!(one[0].tokens, out[0].tokens);
    }
    let bad = SummaryOptions {
        beam: 1,
        min_len: 3,
        max_len: 2,
        length_penalty: 0.0,
        no_repeat_ngram: 0,
        unk_id: UNK,
        coverage: false,
    };
    assert!(m.summarize(&b.src, &b.lengths, None, &bad).is_err());
}
