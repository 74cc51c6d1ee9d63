//! End-to-end tests of the long-time-lag tasks (`task = "adding"`, `task = "copy"`) through
//! the shipped configs with small overrides: every cell kind, metrics, predict, bad input.
//! Registered as a test of the `train` crate (see crates/train/Cargo.toml).

mod common;

use common::{ok, train};
use std::path::{Path, PathBuf};

fn config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs").join(name)
}

const SMALL: [&str; 14] = [
    "--set",
    "run.threads=1",
    "--set",
    "data.train_size=200",
    "--set",
    "data.eval_size=50",
    "--set",
    "model.hidden=8",
    "--set",
    "train.epochs=2",
    "--set",
    "train.batch_size=25",
    "--set",
    "train.lr=0.01",
];

fn run(tmp: &Path, name: &str, cfg: &str, extra: &[&str]) -> (PathBuf, serde_json::Value) {
    let dir = tmp.join(name);
    let cfg = config(cfg);
    let mut args = vec!["--config", cfg.to_str().unwrap(), "--run-dir", dir.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(&SMALL);
    args.extend_from_slice(extra);
    ok(&train(&args, &[]));
    let summary = serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    (dir, summary)
}

#[test]
fn adding_runs_with_every_cell_and_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    for cell in ["lstm", "gru", "rnn"] {
        let set = format!("model.cell={cell}");
        let (dir, s) = run(tmp.path(), cell, "adding.toml", &["--set", "data.length=20", "--set", &set]);
        let t = &s["test"];
        let mse = t["mse"].as_f64().unwrap();
        let baseline = t["baseline_mse"].as_f64().unwrap();
        assert!(mse.is_finite() && t["mae"].as_f64().is_some(), "{cell}: {t}");
        // Always predicting 1 scores Var(U + U) = 1/6 up to sampling noise on 50 sequences.
        assert!((baseline - 1.0 / 6.0).abs() < 0.06, "{baseline}");
        let recorded = std::fs::read_to_string(dir.join("config.toml")).unwrap();
        assert!(recorded.contains(&format!("cell = \"{cell}\"")) && recorded.contains("length = 20"));
        if cell == "lstm" {
            let out = train(&["predict", "--run", dir.to_str().unwrap(), "--json"], &[]);
            ok(&out);
            let lines: Vec<serde_json::Value> =
                String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            assert_eq!(lines.len(), 10);
            assert_eq!(lines[0]["marked_steps"].as_array().unwrap().len(), 2);
            assert!(lines[0]["prediction"].as_f64().is_some());
        }
    }
}

#[test]
fn copy_reports_recall_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, s) = run(tmp.path(), "copy", "copy.toml", &["--set", "data.length=5"]);
    let t = &s["test"];
    let acc = t["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    // 10·ln 8 / (T + 20) with T = 5.
    assert!((t["baseline_loss"].as_f64().unwrap() - 10.0 * 8f64.ln() / 25.0).abs() < 1e-9);
    for key in ["loss", "sequence_accuracy", "recall_loss"] {
        assert!(t[key].as_f64().is_some(), "test.{key}: {t}");
    }
    let out = train(&["predict", "--run", dir.to_str().unwrap()], &[]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(text.lines().count(), 10);
    assert!(text.starts_with("test[0] symbols "), "{text}");
}

#[test]
fn bad_input_is_named() {
    let cfg = config("adding.toml");
    let out = train(&["--config", cfg.to_str().unwrap(), "--set", "data.length=1"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("data.length") && err.contains("at least 2"), "{err}");
    let out = train(&["--config", cfg.to_str().unwrap(), "--set", "model.cell=lsmt"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("lsmt"), "{err}");
    let out = train(&["--config", cfg.to_str().unwrap(), "--set", "data.corpus=copy"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("data.corpus") && err.contains("\"adding\""), "{err}");
}
