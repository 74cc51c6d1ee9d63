//! End-to-end tests of `train inspect` on a tiny SST-2-shaped corpus the tests write (the
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

#[test]
fn inspect_draws_prints_and_dumps_the_gates() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let run = run_dir(tmp.path(), "r", &cfg, &["--set", "train.epochs=2"]);
    let r = run.to_str().unwrap();
    let svg = tmp.path().join("o.svg");
    let out = train(&["inspect", "--run", r, "--out", svg.to_str().unwrap(), "good great film", "the awful boring story"], &[]);
    ok(&out);
    let text = fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    for w in ["output gate o_t", "awful", "selectivity", "fw0", "bw7"] {
        assert!(text.contains(w), "SVG lacks {w:?}");
    }
    // 7 tokens × (16 units + strip) cells at least.
    assert!(text.matches("<rect").count() >= 7 * 17);

    let out = train(&["inspect", "--run", r, "--json", "good great film", "the awful boring story"], &[]);
    ok(&out);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["gate"], "o");
    assert_eq!(j["units"].as_array().unwrap().len(), 16);
    let s0 = &j["sentences"][0];
    assert_eq!(s0["tokens"], serde_json::json!(["good", "great", "film"]));
    let values = s0["values"].as_array().unwrap();
    assert_eq!(values.len(), 3);
    let all: Vec<f64> = j["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap())))
        .collect();
    assert_eq!(all.len(), 7 * 16);
    assert!(all.iter().all(|v| (0.0..=1.0).contains(v)), "an output gate left [0, 1]");
    // Selectivity is the population variance of each unit over the 7 tokens; order sorts it.
    let sel: Vec<f64> = j["selectivity"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    for u in 0..16 {
        let col: Vec<f64> = (0..7).map(|t| all[t * 16 + u]).collect();
        let m = col.iter().sum::<f64>() / 7.0;
        let var = col.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 7.0;
        assert!((var - sel[u]).abs() < 1e-6, "unit {u}: {var} vs {}", sel[u]);
    }
    let order: Vec<usize> = j["order"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    assert!(order.windows(2).all(|w| sel[w[0]] >= sel[w[1]]));
    // The token strip is the mean over units.
    let mean0: f64 = values[0].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).sum::<f64>() / 16.0;
    assert!((mean0 - s0["token_mean"][0].as_f64().unwrap()).abs() < 1e-6);
    // The prediction agrees with `train predict`.
    let p = train(&["predict", "--run", r, "--json", "good great film"], &[]);
    ok(&p);
    let p: serde_json::Value = serde_json::from_slice(&p.stdout).unwrap();
    assert_eq!(p["label"], s0["label"]);

    // Terminal view, other gates, stdin input.
    let out = train(&["inspect", "--run", r, "--gate", "c", "--top", "5", "good film"], &[]);
    ok(&out);
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(t.contains("cell state c_t") && t.contains("good") && t.contains("film"), "{t}");
    for g in ["i", "f", "h"] {
        ok(&train(&["inspect", "--run", r, "--gate", g, "--json", "fun"], &[]));
    }
}

#[test]
fn inspect_refuses_bad_requests_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let run = run_dir(tmp.path(), "nog", &cfg, &["--set", "train.epochs=1", "--set", "model.variant=nog"]);
    let r = run.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["good"], "has no output gate o_t"),
        (vec!["--gate", "z", "good"], "--gate \"z\""),
        (vec!["--layer", "3", "good"], "--layer 3"),
        (vec!["--out", "/tmp/x.gif", "good"], "expected a .svg or .png file"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["inspect", "--run", r];
        args.extend(extra.iter());
        let out = train(&args, &[]);
        let err = stderr(&out);
        assert!(!out.status.success() && err.contains(want) && !err.contains("panicked"), "{extra:?}: {err}");
    }
    // nog still has the other traces.
    ok(&train(&["inspect", "--run", r, "--gate", "h", "good"], &[]));
    let out = train(&["inspect", "--run", tmp.path().to_str().unwrap(), "x"], &[]);
    assert!(stderr(&out).contains("not a run directory"));
}
