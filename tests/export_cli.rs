//! End-to-end tests of `train export`: int8, bf16 and sparse exports of a tiny SST-2-shaped
//! run are smaller, readable by eval and predict, and predict exactly what the in-memory
//! compressed model predicts; bad exports are refused naming file and key.
//! Registered in crates/train/Cargo.toml.

mod common;

use common::*;

fn st_dtype(path: std::path::PathBuf, name: &str) -> String {
    let bytes = read(path);
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    format!("{:?}", st.tensor(name).unwrap().dtype())
}

#[test]
fn exports_are_smaller_readable_and_match_the_in_memory_model() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let run = run_dir(tmp.path(), "r", &cfg, &["--set", "train.epochs=2"]);
    let r = run.to_str().unwrap();
    let texts: Vec<String> =
        ["good great fine film", "bad awful dull", "a film", "great"].iter().map(|s| s.to_string()).collect();
    for (format, dtype) in [("int8", "I8"), ("bf16", "BF16")] {
        let out = train(&["export", "--run", r, "--format", format], &[]);
        ok(&out);
        let d = run.join(format!("export-{format}"));
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(stdout.contains("bytes") && stdout.contains(format), "{stdout}");
        assert_eq!(st_dtype(d.join("checkpoints/best.safetensors"), "lstm.weight_hh_l0"), dtype);
        assert_eq!(st_dtype(d.join("checkpoints/best.safetensors"), "embedding.weight"), dtype);
        let summary = json(d.join("summary.json"));
        let (b, s) =
            (summary["export"]["bytes"].as_u64().unwrap(), summary["export"]["source_bytes"].as_u64().unwrap());
        assert!(b < s, "{format}: {b} >= {s}");
        // eval and predict read it.
        let e = train(&["eval", "--run", d.to_str().unwrap(), "--split", "test"], &[]);
        ok(&e);
        assert!(stderr(&e).contains(&format!("{format} checkpoint")), "{}", stderr(&e));
        let m: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
        assert!(m["accuracy"].as_f64().is_some());
        let mut args = vec!["predict", "--run", d.to_str().unwrap(), "--json"];
        args.extend(texts.iter().map(String::as_str));
        ok(&train(&args, &[]));
        // Same probabilities as the source run compressed in memory, to the bit.
        let fmt = model::compress::Format::parse(format).unwrap();
        let src = train::rundir::RunDir::open(&run).unwrap();
        let scfg = src.load_config().unwrap();
        let (_, mem) = train::task::classify::predict_probabilities_with(&src, &scfg, &texts, Some(fmt)).unwrap();
        let dst = train::rundir::RunDir::open(&d).unwrap();
        let dcfg = dst.load_config().unwrap();
        let (_, exp) = train::task::classify::predict_probabilities(&dst, &dcfg, &texts).unwrap();
        assert_eq!(mem, exp, "{format}");
        // And close to the f32 run.
        let (_, f32p) = train::task::classify::predict_probabilities(&src, &scfg, &texts).unwrap();
        for (a, b) in f32p.iter().flatten().zip(exp.iter().flatten()) {
            assert!((a - b).abs() < 0.05, "{format}: {a} vs {b}");
        }
        // Exporting again into the same place is refused; so is an export of an export.
        let again = train(&["export", "--run", r, "--format", format], &[]);
        assert!(!again.status.success() && stderr(&again).contains("already holds a run"));
        let twice = train(&["export", "--run", d.to_str().unwrap(), "--format", "int8"], &[]);
        assert!(!twice.status.success() && stderr(&twice).contains("already a"), "{}", stderr(&twice));
    }
    // sparse: a dense run is refused; a run pruned by 8×1 blocks exports its kept blocks.
    let dense = train(&["export", "--run", r, "--format", "sparse"], &[]);
    assert!(!dense.status.success() && stderr(&dense).contains("prune the run first"), "{}", stderr(&dense));
    ok(&train(&["prune", "--run", r, "--sparsity", "0.75", "--block", "8x1", "--quiet"], &[]));
    let pruned = run.join("pruned-0.75-8x1");
    let out = train(&["export", "--run", pruned.to_str().unwrap(), "--format", "sparse"], &[]);
    ok(&out);
    let d = pruned.join("export-sparse");
    let bytes = read(d.join("checkpoints/best.safetensors"));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    // Hidden 8, embedding 8: 32×8 matrices, 4×8 = 32 blocks of 8×1 each, a quarter kept.
    assert_eq!(st.tensor("lstm.weight_hh_l0.sp_index").unwrap().shape(), &[8]);
    assert_eq!(st.tensor("lstm.weight_hh_l0.sp_values").unwrap().shape(), &[8, 8]);
    let e0 = train(&["eval", "--run", pruned.to_str().unwrap(), "--split", "test"], &[]);
    let e1 = train(&["eval", "--run", d.to_str().unwrap(), "--split", "test"], &[]);
    ok(&e0);
    ok(&e1);
    let (a, b): (serde_json::Value, serde_json::Value) =
        (serde_json::from_slice(&e0.stdout).unwrap(), serde_json::from_slice(&e1.stdout).unwrap());
    assert_eq!(a["accuracy"], b["accuracy"]);

    // Bad exports: truncated, unsupported format; names the file (and key).
    let best = run.join("export-int8/checkpoints/best.safetensors");
    let bytes = read(best.clone());
    std::fs::write(&best, &bytes[..bytes.len() / 2]).unwrap();
    let e = train(&["eval", "--run", run.join("export-int8").to_str().unwrap()], &[]);
    assert!(
        !e.status.success() && stderr(&e).contains("best.safetensors") && stderr(&e).contains("truncated"),
        "{}",
        stderr(&e)
    );
    let e = train(&["export", "--run", r, "--format", "int4", "--out", tmp.path().join("x").to_str().unwrap()], &[]);
    assert!(!e.status.success() && stderr(&e).contains("`int4`"), "{}", stderr(&e));
}

#[test]
fn structured_pruning_shrinks_every_matrix() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let run = run_dir(tmp.path(), "r", &cfg, &["--set", "train.epochs=1"]);
    let r = run.to_str().unwrap();
    ok(&train(&["prune", "--run", r, "--sparsity", "0.5", "--structured", "--finetune-epochs", "1", "--quiet"], &[]));
    let d = run.join("pruned-units-0.5");
    let bytes = read(d.join("checkpoints/best.safetensors"));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    // Hidden 8 → 4: W_hh 16×4, W_ih 16×8 (embedding 8), head 2×8 (two directions of 4).
    assert_eq!(st.tensor("lstm.weight_hh_l0").unwrap().shape(), &[16, 4]);
    assert_eq!(st.tensor("lstm.weight_ih_l0_reverse").unwrap().shape(), &[16, 8]);
    assert_eq!(st.tensor("head.weight").unwrap().shape(), &[2, 8]);
    let summary = json(d.join("summary.json"));
    assert_eq!(summary["structured"]["hidden"], 4);
    ok(&train(&["eval", "--run", d.to_str().unwrap(), "--split", "test"], &[]));
    ok(&train(&["predict", "--run", d.to_str().unwrap(), "good film"], &[]));
}
