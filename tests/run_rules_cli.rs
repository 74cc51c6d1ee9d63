//! End-to-end tests of the rules every run subcommand follows when it loads a run (a missing
//! run file or a `[model]` section that no longer matches the checkpoint is refused, by
//! `eval` and `predict` alike) and of the memory estimate that refuses impossible sizes
//! before anything is allocated.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A copy of a finished run, to spoil without touching the original.
fn copy_run(from: &Path, to: &Path) -> PathBuf {
    fs::create_dir_all(to.join("checkpoints")).unwrap();
    for sub in ["", "checkpoints"] {
        for entry in fs::read_dir(from.join(sub)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                fs::copy(entry.path(), to.join(sub).join(entry.file_name())).unwrap();
            }
        }
    }
    to.to_path_buf()
}

/// `eval` and `predict` on `run`: both must fail, and each message must contain every `want`.
fn both_refuse(run: &Path, want: &[&str]) {
    let run = run.to_str().unwrap();
    for args in [vec!["eval", "--run", run], vec!["predict", "--run", run, "good film"]] {
        let out = train(&args, &[]);
        let err = stderr(&out);
        assert!(!out.status.success(), "`train {}` should refuse; stderr:\n{err}", args[0]);
        for w in want {
            assert!(err.contains(w), "`train {}`: expected {w:?} in:\n{err}", args[0]);
        }
        assert!(err.starts_with("error: ") && !err.contains("panicked"), "{err}");
    }
}

#[test]
fn eval_and_predict_refuse_a_run_that_does_not_match_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let run = run_dir(tmp.path(), "run", &cfg, &["--set", "train.epochs=1"]);
    ok(&train(&["eval", "--run", run.to_str().unwrap()], &[]));

    // A missing tokenizer is not rebuilt behind the user's back.
    let no_tok = copy_run(&run, &tmp.path().join("no_tokenizer"));
    fs::remove_file(no_tok.join("tokenizer.json")).unwrap();
    both_refuse(&no_tok, &["tokenizer.json", "missing"]);
    assert!(!no_tok.join("tokenizer.json").exists(), "eval rebuilt the tokenizer");

    // A config whose [model] section no longer matches the checkpoint.
    let edited = copy_run(&run, &tmp.path().join("edited"));
    let text = fs::read_to_string(edited.join("config.toml")).unwrap();
    assert!(text.contains("\nhidden = 8\n"), "{text}");
    fs::write(edited.join("config.toml"), text.replace("\nhidden = 8\n", "\nhidden = 16\n")).unwrap();
    both_refuse(&edited, &["config.toml", "model.hidden", "16", "8", "best.safetensors"]);

    // `resume` follows the same rule.
    let out = train(&["resume", "--run", edited.to_str().unwrap(), "--quiet"], &[]);
    assert!(!out.status.success() && stderr(&out).contains("model.hidden"), "{}", stderr(&out));
}

#[test]
fn a_model_that_cannot_fit_is_refused_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let dir = tmp.path().join("huge");
    let start = Instant::now();
    let out = train(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            "model.hidden=4000000000",
            "--run-dir",
            dir.to_str().unwrap(),
            "--quiet",
        ],
        &[],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "expected a clean refusal, got {:?}:\n{err}", out.status);
    assert!(err.contains("model.hidden") && err.contains("available"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(60), "took {:?}", start.elapsed());
    assert!(!dir.exists(), "a refused run left {}", dir.display());
}
