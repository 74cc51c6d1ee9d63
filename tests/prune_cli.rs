//! End-to-end tests of `train prune` on a tiny SST-2-shaped corpus the tests write.
//! Registered in crates/train/Cargo.toml.

mod common;

use common::*;
use std::fs;
use std::path::PathBuf;

fn zeros(path: PathBuf) -> Vec<(String, usize, usize)> {
    let bytes = read(path);
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, usize, usize)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n.contains("weight_ih_l") || n.contains("weight_hh_l"))
        .map(|(n, t)| {
            let v: Vec<f32> = t.data().chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            (n.to_string(), v.iter().filter(|x| **x == 0.0).count(), v.len())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn prune_keeps_masks_through_finetuning_and_runs_stay_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let run = run_dir(tmp.path(), "r", &cfg, &[]);
    let r = run.to_str().unwrap();
    let out = train(&["prune", "--run", r, "--sparsity", "0.5,0.9", "--finetune-epochs", "2", "--quiet"], &[]);
    ok(&out);
    // Bidirectional, hidden 8, embedding 8: four 32×8 matrices of 256 entries.
    for (s, k) in [(0.5, 128usize), (0.9, 230)] {
        let d = run.join(format!("pruned-{s}"));
        for f in ["checkpoints/best.safetensors", "checkpoints/last.safetensors"] {
            let z = zeros(d.join(f));
            assert_eq!(z.len(), 4);
            for (name, zero, n) in z {
                assert_eq!(n, 256);
                assert_eq!(zero, k, "{s} {f} {name}: {zero} zeros, expected exactly {k}");
            }
        }
        let summary = json(d.join("summary.json"));
        assert_eq!(summary["recurrent_nonzero"], 4 * (256 - k));
        assert!(summary["test"]["accuracy"].as_f64().is_some());
        assert!(d.join("curves.svg").exists());
        // The pruned run reads like any run.
        let p = train(&["predict", "--run", d.to_str().unwrap(), "--json", "good great fine film"], &[]);
        ok(&p);
        let e = train(&["eval", "--run", d.to_str().unwrap(), "--split", "test"], &[]);
        ok(&e);
        let m: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
        assert_eq!(m["accuracy"], summary["test"]["accuracy"]);
        // It has no resume state: resume refuses rather than retraining over it.
        let best = std::fs::read(d.join("checkpoints/best.safetensors")).unwrap();
        let r = train(&["resume", "--run", d.to_str().unwrap(), "--quiet"], &[]);
        assert!(!r.status.success());
        assert!(String::from_utf8_lossy(&r.stderr).contains("nothing to resume"));
        assert_eq!(std::fs::read(d.join("checkpoints/best.safetensors")).unwrap(), best);
    }
    let table = json(run.join("prune_results.json"));
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["sparsity"], 0.0);
    assert_eq!(rows[0]["recurrent_nonzero"], 1024);
    assert_eq!(rows[2]["recurrent_nonzero"], 4 * 26);
    let zeros_of =
        |row: &serde_json::Value| row["params_total"].as_u64().unwrap() - row["params_nonzero"].as_u64().unwrap();
    assert_eq!(zeros_of(&rows[2]), zeros_of(&rows[0]) + 4 * 230, "only the recurrent matrices are pruned");
    let md = fs::read_to_string(run.join("prune_results.md")).unwrap();
    assert!(md.contains("| 0.9 | 104 / 1024 |"), "{md}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), md);

    // Prune-only (no fine-tuning) gives the same masks: the smallest magnitudes of the best weights.
    let out = train(&["prune", "--run", r, "--sparsity", "0.8", "--quiet"], &[]);
    ok(&out);
    for (_, zero, _) in zeros(run.join("pruned-0.8/checkpoints/best.safetensors")) {
        assert_eq!(zero, 205);
    }
    // The table gathers every pruned run of the source, earlier invocations included.
    let rows = json(run.join("prune_results.json"))["rows"].as_array().unwrap().clone();
    let s: Vec<f64> = rows.iter().map(|r| r["sparsity"].as_f64().unwrap()).collect();
    assert_eq!(s, vec![0.0, 0.5, 0.8, 0.9]);
    assert_eq!(rows[2]["finetune_epochs"], 0);
}

#[test]
fn prune_refuses_bad_requests_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let run = run_dir(tmp.path(), "r", &cfg, &["--set", "train.epochs=1"]);
    let r = run.to_str().unwrap();
    ok(&train(&["prune", "--run", r, "--sparsity", "0.5", "--quiet"], &[]));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--sparsity", "1.5"], "outside [0, 1)"),
        (vec!["--sparsity", "half"], "\"half\" is not a number"),
        (vec!["--sparsity", "0.5"], "already exists"),
        (vec!["--sparsity", "0.3", "--set", "train.lrr=1"], "did you mean `lr`"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["prune", "--run", r, "--quiet"];
        args.extend(extra.iter());
        let out = train(&args, &[]);
        let err = stderr(&out);
        assert!(!out.status.success() && err.contains(want) && !err.contains("panicked"), "{extra:?}: {err}");
    }
    let out = train(&["prune", "--run", tmp.path().to_str().unwrap()], &[]);
    assert!(stderr(&out).contains("not a run directory"));
}
