//! End-to-end tests of the `train` binary on a tiny SST-2-shaped corpus the tests write.
//! Registered as a test of the `train` crate (see crates/train/Cargo.toml).

mod common;

use common::*;
use std::fs;

#[test]
fn same_seed_gives_byte_identical_runs_and_predict_works() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let a = run_dir(tmp.path(), "a", &cfg, &[]);
    let b = run_dir(tmp.path(), "b", &cfg, &[]);
    for f in [
        "checkpoints/best.safetensors",
        "checkpoints/last.safetensors",
        "checkpoints/resume.safetensors",
        "metrics.jsonl",
        "tokenizer.json",
        "config.toml",
    ] {
        assert!(read(a.join(f)) == read(b.join(f)), "{f} differs between two runs with one seed");
    }
    let summary: serde_json::Value = serde_json::from_slice(&read(a.join("summary.json"))).unwrap();
    let acc = summary["test"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.8, "tiny corpus should be learnt, test accuracy {acc}");
    for key in ["best_epoch", "wall_seconds", "train_tokens_per_s", "seed", "threads", "versions"] {
        assert!(summary.get(key).is_some(), "summary.json lacks {key}");
    }
    // A different seed changes the weights.
    let c = run_dir(tmp.path(), "c", &cfg, &["--set", "run.seed=8"]);
    assert!(read(a.join("checkpoints/last.safetensors")) != read(c.join("checkpoints/last.safetensors")));

    // predict from a fresh process, positional texts and --json.
    let out = train(
        &["predict", "--run", a.to_str().unwrap(), "--json", "good great fine film", "awful dull boring film"],
        &[],
    );
    ok(&out);
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["label"], "positive");
    assert_eq!(lines[1]["label"], "negative");
    assert!(lines[0]["probability"].as_f64().unwrap() > 0.5);

    // eval reproduces the summary's test accuracy.
    let out = train(&["eval", "--run", a.to_str().unwrap(), "--split", "test"], &[]);
    ok(&out);
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["accuracy"], summary["test"]["accuracy"]);
}

#[test]
fn killed_run_resumes_to_identical_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let full = run_dir(tmp.path(), "full", &cfg, &[]);
    // 96 examples / 8 = 12 steps per epoch: kill mid-epoch 2, after the step-15 save.
    let dir = tmp.path().join("killed");
    let out = train(
        &["--config", cfg.to_str().unwrap(), "--run-dir", dir.to_str().unwrap(), "--quiet"],
        &[("SLUICE_TEST_KILL_AT_STEP", "18")],
    );
    assert!(!out.status.success(), "the run should have been killed");
    assert!(!dir.join("summary.json").exists());
    ok(&train(&["resume", "--run", dir.to_str().unwrap(), "--quiet"], &[]));
    for f in ["checkpoints/best.safetensors", "checkpoints/last.safetensors", "metrics.jsonl"] {
        assert!(read(full.join(f)) == read(dir.join(f)), "{f} differs after kill + resume");
    }
    let s1: serde_json::Value = serde_json::from_slice(&read(full.join("summary.json"))).unwrap();
    let s2: serde_json::Value = serde_json::from_slice(&read(dir.join("summary.json"))).unwrap();
    assert_eq!(s1["test"], s2["test"]);
}

#[test]
fn nan_loss_stops_with_a_message_and_keeps_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let dir = tmp.path().join("nan");
    let out = train(
        &["--config", cfg.to_str().unwrap(), "--run-dir", dir.to_str().unwrap(), "--quiet"],
        &[("SLUICE_TEST_NAN_AT_STEP", "7")],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("loss is NaN at step 7"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // The last good state (step 5) is intact and resumable.
    assert!(dir.join("checkpoints/resume.safetensors").exists());
    ok(&train(&["resume", "--run", dir.to_str().unwrap(), "--quiet"], &[]));
    assert!(dir.join("summary.json").exists());
}

#[test]
fn config_errors_name_file_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let text = fs::read_to_string(&cfg).unwrap();
    let cases: Vec<(String, Vec<&str>, &str)> = vec![
        (text.replace("hidden = 8", "hiden = 8"), vec![], "did you mean `hidden`"),
        (text.replace("epochs = 3", "epochs = \"three\""), vec![], "tiny.toml:"),
        (text.replace("head_dropout = 0.1", "head_dropout = 1.5"), vec![], "key `model.head_dropout`"),
        (text.clone(), vec!["--set", "train.lrr=0.1"], "did you mean `lr`"),
        (text.clone(), vec!["--set", "model.variant=nope"], "unknown variant"),
        (text.replace("[run]", "[run\n"), vec![], "tiny.toml:"),
    ];
    for (i, (body, sets, want)) in cases.into_iter().enumerate() {
        let path = tmp.path().join("tiny.toml");
        fs::write(&path, body).unwrap();
        let dir = tmp.path().join(format!("bad{i}"));
        let mut args = vec!["--config", path.to_str().unwrap(), "--run-dir", dir.to_str().unwrap(), "--quiet"];
        args.extend(sets);
        let out = train(&args, &[]);
        let err = stderr(&out);
        assert!(!out.status.success(), "case {i} should fail");
        assert!(err.contains(want), "case {i}: expected {want:?} in:\n{err}");
        assert!(err.starts_with("error: "), "case {i}: one clear message, got:\n{err}");
        assert!(!err.contains("panicked"), "case {i}: {err}");
    }
    // A run that fails before its first step (here: a data folder that is not there)
    // leaves no half-made run directory.
    let body = text.replace("/corpus\"", "/missing\"");
    let path = tmp.path().join("tiny.toml");
    fs::write(&path, body).unwrap();
    let dir = tmp.path().join("nodata");
    let out = train(&["--config", path.to_str().unwrap(), "--run-dir", dir.to_str().unwrap(), "--quiet"], &[]);
    assert!(!out.status.success() && stderr(&out).contains("missing"), "{}", stderr(&out));
    assert!(!dir.exists(), "a failed start left {}", dir.display());
    let out = train(&["--config", "/nonexistent/x.toml"], &[]);
    assert!(stderr(&out).contains("/nonexistent/x.toml"));
    let out = train(&["predict", "--run", tmp.path().to_str().unwrap(), "x"], &[]);
    assert!(!out.status.success() && stderr(&out).contains("not a run directory"));
}
