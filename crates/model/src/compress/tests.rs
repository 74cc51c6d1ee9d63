//! Products against f64 references with stated bounds, round trips, the sparse kernel against
//! the dense product, the compressed LSTM loop against the f32 layer, and the stored form.

use super::sparse::{self, Block};
use super::*;
use crate::rng::SeededRng;

fn randn(rng: &mut SeededRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| (rng.uniform01() as f32 * 2.0 - 1.0) * scale).collect()
}

/// f64 reference of x (m × k) · wᵀ (n × k).
fn reference(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut out = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|t| x[i * k + t] as f64 * w[j * k + t] as f64).sum();
        }
    }
    out
}

#[test]
fn int8_quantize_dequantize_round_trip() {
    let mut rng = SeededRng::new(1, "q");
    let (rows, cols) = (37, 53);
    let w = randn(&mut rng, rows * cols, 0.3);
    let q = int8::QMatrix::quantize(&w, rows, cols);
    let back = q.dequantize();
    for r in 0..rows {
        let s = q.scales()[r];
        let amax = w[r * cols..(r + 1) * cols].iter().fold(0f32, |a, x| a.max(x.abs()));
        assert!((s - amax / 127.0).abs() <= 1e-7 * amax);
        for c in 0..cols {
            // Rounding to the nearest step: at most half a step, plus f32 rounding of q·s.
            let err = (w[r * cols + c] - back[r * cols + c]).abs();
            assert!(err <= 0.5 * s * (1.0 + 1e-5), "row {r} col {c}: error {err} > s/2 = {}", s / 2.0);
        }
        // The largest entry maps to ±127 exactly.
        assert!(q.values()[r * cols..(r + 1) * cols].iter().any(|v| v.abs() == 127));
    }
    // A zero row stays zero with scale 0.
    let z = int8::QMatrix::quantize(&[0.0; 6], 2, 3);
    assert_eq!(z.scales(), &[0.0, 0.0]);
    assert!(z.dequantize().iter().all(|v| *v == 0.0));
}

#[test]
fn int8_product_within_quantisation_bound() {
    let mut rng = SeededRng::new(2, "p");
    for (m, n, k) in [(1, 1, 1), (5, 19, 33), (9, 64, 128), (4, 33, 7)] {
        let x = randn(&mut rng, m * k, 1.5);
        let w = randn(&mut rng, n * k, 0.2);
        let q = int8::QMatrix::quantize(&w, n, k);
        let mut out = vec![0f32; m * n];
        q.add_product(&x, k, m, &mut out, n, &mut int8::Scratch::default());
        let want = reference(&x, &w, m, n, k);
        for i in 0..m {
            let xr = &x[i * k..(i + 1) * k];
            let t = xr.iter().fold(0f32, |a, v| a.max(v.abs())) as f64 / 63.0; // 7-bit activations
            let x1: f64 = xr.iter().map(|v| v.abs() as f64).sum();
            for j in 0..n {
                let s = q.scales()[j] as f64;
                let w1: f64 = w[j * k..(j + 1) * k].iter().map(|v| v.abs() as f64).sum();
                // |x·w − (a t)·(q s)| ≤ Σ|x||w − qs| + Σ|x − at||qs| ≤ (s/2)‖x‖₁ + (t/2)(‖w‖₁ + k s/2),
                // plus f32 rounding of the scaled sum.
                let bound = 0.5 * s * x1 + 0.5 * t * (w1 + 0.5 * k as f64 * s) + 1e-6 * (x1 * w1).max(1.0);
                let err = (out[i * n + j] as f64 - want[i * n + j]).abs();
                assert!(err <= bound, "({m},{n},{k}) [{i},{j}]: error {err:e} > bound {bound:e}");
            }
        }
    }
}

#[test]
fn int8_simd_and_scalar_agree_bitwise() {
    let mut rng = SeededRng::new(3, "s");
    for (m, n, k) in [(7, 37, 29), (4, 16, 2), (1, 5, 1), (13, 48, 64)] {
        let x = randn(&mut rng, m * k, 2.0);
        let w = randn(&mut rng, n * k, 0.5);
        let q = int8::QMatrix::quantize(&w, n, k);
        let init = randn(&mut rng, m * n, 1.0);
        let (mut a, mut b) = (init.clone(), init);
        q.add_product(&x, k, m, &mut a, n, &mut int8::Scratch::default());
        q.add_product_scalar(&x, k, m, &mut b, n);
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}

#[test]
fn bf16_product_within_rounding_bound() {
    let mut rng = SeededRng::new(4, "b");
    for (m, n, k) in [(3, 17, 31), (8, 64, 100), (1, 1, 1)] {
        let x = randn(&mut rng, m * k, 1.0);
        let w = randn(&mut rng, n * k, 0.3);
        let b = bf16::BMatrix::from_f32(&w, n, k);
        // Round trip: relative error of each weight ≤ 2⁻⁸ (7 stored mantissa bits, nearest even).
        for (a, c) in w.iter().zip(b.to_f32()) {
            assert!((a - c).abs() <= a.abs() * 2f32.powi(-8), "{a} -> {c}");
        }
        let mut out = vec![0f32; m * n];
        b.add_product(&x, k, m, &mut out, n);
        let want = reference(&x, &w, m, n, k);
        for i in 0..m {
            for j in 0..n {
                let xw: f64 = (0..k).map(|t| (x[i * k + t] * w[j * k + t]).abs() as f64).sum();
                // 2⁻⁸ from the weights, k·2⁻²⁴ (f32 accumulation) relative to Σ|x w|.
                let bound = xw * (2f64.powi(-8) + k as f64 * 2f64.powi(-24)) + 1e-30;
                let err = (out[i * n + j] as f64 - want[i * n + j]).abs();
                assert!(err <= bound, "({m},{n},{k}) [{i},{j}]: {err:e} > {bound:e}");
            }
        }
    }
}

#[test]
fn sparse_kernel_equals_dense_product_on_pruned_weights() {
    let mut rng = SeededRng::new(5, "sp");
    for block in ["8x1", "1x8", "4x4", "16x1", "1x1"] {
        let block = Block::parse(block).unwrap();
        let (m, n, k) = (11, 40, 37);
        let w = randn(&mut rng, n * k, 0.5);
        let mask = sparse::block_mask(&w, n, k, block, 0.9);
        let pruned: Vec<f32> = w.iter().zip(&mask).map(|(a, b)| a * b).collect();
        let x = randn(&mut rng, m * k, 1.0);
        let sp = sparse::SparseMatrix::from_dense(&pruned, n, k);
        assert_eq!(sp.to_dense(), pruned);
        let mut got = vec![0f32; m * n];
        sp.add_product(&x, k, m, &mut got, n);
        // The dense f32 product of the same pruned matrix, and the f64 reference.
        let dense = Weights::F32 { rows: n, cols: k, w: pruned.clone() };
        let mut want32 = vec![0f32; m * n];
        dense.add_product(&x, k, m, &mut want32, n, &mut Scratch::default());
        let want = reference(&x, &pruned, m, n, k);
        for i in 0..m * n {
            let xw: f64 = {
                let (r, c) = (i / n, i % n);
                (0..k).map(|t| (x[r * k + t] * pruned[c * k + t]).abs() as f64).sum()
            };
            let tol = xw * k as f64 * 2f64.powi(-24) + 1e-30;
            assert!((got[i] as f64 - want[i]).abs() <= tol, "{block} [{i}]: {} vs {}", got[i], want[i]);
            assert!((got[i] - want32[i]).abs() as f64 <= 2.0 * tol, "{block} [{i}] vs dense f32");
        }
        // Stored form: kept blocks only, and back to the same matrix.
        let st = sparse::store(&pruned, n, k, block);
        assert_eq!(sparse::unstore(&st, n, k, block).unwrap(), pruned);
        let blocks = n.div_ceil(block.rows) * k.div_ceil(block.cols);
        assert!(st.index.len() <= blocks - (0.9 * blocks as f64).round() as usize);
    }
}

#[test]
fn block_mask_zeroes_whole_blocks() {
    let mut rng = SeededRng::new(6, "m");
    let (n, k) = (16, 16);
    let w = randn(&mut rng, n * k, 1.0);
    let b = Block { rows: 4, cols: 4 };
    let mask = sparse::block_mask(&w, n, k, b, 0.5);
    assert_eq!(mask.iter().filter(|v| **v == 0.0).count(), 128);
    for br in 0..4 {
        for bc in 0..4 {
            let vals: Vec<f32> = (0..16).map(|i| mask[(br * 4 + i / 4) * k + bc * 4 + i % 4]).collect();
            assert!(vals.iter().all(|v| *v == vals[0]), "block ({br},{bc}) partly pruned");
        }
    }
    assert!(Block::parse("8x").is_err() && Block::parse("0x4").is_err());
    assert_eq!(Block::parse("1×16").unwrap(), Block { rows: 1, cols: 16 });
}

/// The compressed layer's loop (F32 weights from the layer's own tensors) gives the f32
/// layer's outputs: lengths, reverse direction, two layers.
#[test]
fn compressed_lstm_loop_matches_the_f32_layer() {
    use candle_core::{DType, Device, Tensor};
    let mut cfg = crate::LstmConfig::new(5, 12);
    cfg.num_layers = 2;
    cfg.bidirectional = true;
    let varmap = candle_nn::VarMap::new();
    let vb = crate::init::seeded_var_builder(&varmap, 7, DType::F32, &Device::Cpu);
    let lstm = crate::Lstm::new(&cfg, vb).unwrap();
    let mut c = lstm.clone();
    let empty = Compressed { format: Format::Int8, matrices: Default::default() };
    assert!(c.attach_compressed(&empty, "").unwrap());
    let mut rng = SeededRng::new(8, "x");
    let (b, t) = (6, 9);
    let x = Tensor::from_vec(randn(&mut rng, b * t * 5, 1.0), (b, t, 5), &Device::Cpu).unwrap();
    let lengths = [9, 3, 7, 1, 9, 5];
    let input = crate::LstmInput::new().lengths(&lengths);
    let (a, z) = (lstm.forward(&x, &input).unwrap(), c.forward(&x, &input).unwrap());
    let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let close = |p: Vec<f32>, q: Vec<f32>, what: &str| {
        let d = p.iter().zip(&q).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(d < 2e-5, "{what}: max difference {d}");
    };
    close(v(&a.output), v(&z.output), "output");
    for (s, (p, q)) in a.final_states.iter().zip(&z.final_states).enumerate() {
        close(v(&p.h), v(&q.h), &format!("h {s}"));
        close(v(p.c.as_ref().unwrap()), v(q.c.as_ref().unwrap()), &format!("c {s}"));
    }
}

#[test]
fn stored_form_round_trips_and_bad_files_name_file_and_key() {
    use candle_core::{DType, Device, Tensor};
    let dir = tempfile::tempdir().unwrap();
    let mut rng = SeededRng::new(9, "st");
    let w = randn(&mut rng, 24 * 6, 0.4);
    let mut pruned = w.clone();
    let mask = sparse::block_mask(&w, 24, 6, Block { rows: 8, cols: 1 }, 0.75);
    pruned.iter_mut().zip(&mask).for_each(|(a, b)| *a *= b);
    let bias = Tensor::from_vec(randn(&mut rng, 24, 1.0), 24, &Device::Cpu).unwrap();
    for format in [Format::Int8, Format::Bf16, Format::Sparse] {
        let src = if format == Format::Sparse { &pruned } else { &w };
        let t = Tensor::from_vec(src.clone(), (24, 6), &Device::Cpu).unwrap();
        let named = vec![("lstm.weight_hh_l0".to_string(), t), ("lstm.bias_hh_l0".to_string(), bias.clone())];
        let c = Compressed::from_tensors(format, [("lstm.weight_hh_l0", &src[..], &[24usize, 6][..])]);
        let p = dir.path().join(format!("{format}.safetensors"));
        crate::checkpoint::save_compressed(&p, &named, Some(&serde_json::json!({"k": 1})), &c).unwrap();
        let back = crate::checkpoint::read(&p, &Device::Cpu).unwrap();
        let bc = back.compressed.as_ref().unwrap();
        assert_eq!(bc.format, format);
        let (a, b) = (c.dequantized(), bc.dequantized());
        assert_eq!(a, b, "{format}");
        let dense = back.tensors["lstm.weight_hh_l0"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(dense, a["lstm.weight_hh_l0"]);
        assert_eq!(back.tensors.len(), 2, "{format}: {:?}", back.tensors.keys().collect::<Vec<_>>());
        if format == Format::Sparse {
            assert_eq!(dense, pruned);
            assert!(back.metadata["compressed_tensors"].contains("\"8x1\""), "{}", back.metadata["compressed_tensors"]);
        }
        // Truncated.
        let bytes = std::fs::read(&p).unwrap();
        let tp = dir.path().join(format!("{format}-cut.safetensors"));
        std::fs::write(&tp, &bytes[..bytes.len() - 7]).unwrap();
        let e = crate::checkpoint::read(&tp, &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains(&format!("{format}-cut.safetensors")) && e.contains("truncated"), "{e}");
    }
    // A wrong dtype: metadata says int8 but the matrix is F32.
    let write = |name: &str, meta: &[(&str, &str)], tensors: Vec<(&str, Tensor)>| {
        let meta: std::collections::HashMap<String, String> =
            meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let bytes = safetensors::tensor::serialize(tensors.iter().map(|(k, v)| (*k, v)), Some(meta)).unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        crate::checkpoint::read(&p, &Device::Cpu).unwrap_err().to_string()
    };
    let f = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
    let spec = r#"{"w": {"shape": [2, 3]}}"#;
    let e = write(
        "dtype.safetensors",
        &[("format", "sluice"), ("format_version", "1"), ("compression", "int8"), ("compressed_tensors", spec)],
        vec![("w", f.clone())],
    );
    assert!(e.contains("dtype.safetensors") && e.contains("tensor `w`") && e.contains("I8"), "{e}");
    let e = write(
        "format.safetensors",
        &[("format", "sluice"), ("format_version", "1"), ("compression", "int4"), ("compressed_tensors", spec)],
        vec![("w", f.clone())],
    );
    assert!(e.contains("format.safetensors") && e.contains("`int4`"), "{e}");
    let e = write(
        "missing.safetensors",
        &[("format", "sluice"), ("format_version", "1"), ("compression", "bf16"), ("compressed_tensors", spec)],
        vec![("x", f.clone())],
    );
    assert!(e.contains("missing.safetensors") && e.contains("tensor `w` is missing"), "{e}");
}
