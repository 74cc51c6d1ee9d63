//! End-to-end tests of `train prune` on a tiny SST-2-shaped corpus the tests write (the
//! corpus writer is copied from tests/train_cli.rs). Registered in crates/train/Cargo.toml.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_train");

const POS: [&str; 8] = ["good", "great", "fine", "superb", "lovely", "moving", "smart", "fun"];
const NEG: [&str; 8] = ["bad", "dull", "awful", "boring", "weak", "silly", "flat", "tired"];
const FILL: [&str; 6] = ["the", "film", "is", "a", "very", "story"];

/// Sentences whose label is carried by which word list dominates: learnable in a few epochs.
fn write_corpus(dir: &Path) {
    let mut state = 12345u64;
    let mut next = move |n: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % n
    };
    for (file, n) in [("train.jsonl", 96), ("dev.jsonl", 24), ("test.jsonl", 24)] {
        let mut lines = String::new();
        for i in 0..n {
            let label = i % 2;
            let len = 3 + next(6);
            let words: Vec<&str> = (0..len)
                .map(|j| {
                    if j % 2 == 0 {
                        if label == 1 { POS[next(8)] } else { NEG[next(8)] }
                    } else {
                        FILL[next(6)]
                    }
                })
                .collect();
            lines.push_str(&format!("{{\"text\": \"{}\", \"label\": {label}}}\n", words.join(" ")));
        }
        fs::write(dir.join(file), lines).unwrap();
    }
}

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let data = dir.join("corpus");
    fs::create_dir_all(&data).unwrap();
    write_corpus(&data);
    let cfg = format!(
        r#"
[run]
name = "tiny"
seed = 7
threads = 1

[data]
corpus = "sst2"
dir = "{}"

[tokenizer]
model = "word_level"
vocab_size = 100

[model]
embedding_dim = 8
hidden = 8
bidirectional = true
embedding_dropout = 0.1
head_dropout = 0.1

[train]
epochs = 3
batch_size = 8
lr = 0.02
checkpoint_every = 5
{extra}
"#,
        data.display()
    );
    let path = dir.join("tiny.toml");
    fs::write(&path, cfg).unwrap();
    path
}

fn train(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("SLUICE_TEST_NAN_AT_STEP").env_remove("SLUICE_TEST_KILL_AT_STEP");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running the train binary")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "train failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn run_dir(tmp: &Path, name: &str, cfg: &Path, extra: &[&str]) -> PathBuf {
    let dir = tmp.join(name);
    let mut args = vec!["--config", cfg.to_str().unwrap(), "--run-dir", dir.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(extra);
    ok(&train(&args, &[]));
    dir
}

fn read(p: PathBuf) -> Vec<u8> {
    fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn json(p: PathBuf) -> serde_json::Value {
    serde_json::from_slice(&read(p)).unwrap()
}

/// Zero entries of each recurrent matrix of a checkpoint.
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
    let zeros_of = |row: &serde_json::Value| row["params_total"].as_u64().unwrap() - row["params_nonzero"].as_u64().unwrap();
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
