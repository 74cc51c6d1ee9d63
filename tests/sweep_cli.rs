//! End-to-end tests of `train sweep` on a tiny SST-2-shaped corpus the tests write corpus
//! writer is copied from tests/train_cli.rs). Registered in crates/train/Cargo.toml.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

fn write_sweep(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("s.sweep.toml");
    fs::write(&p, text).unwrap();
    p
}

const SWEEP: &str = r#"
name = "tiny"
metric = "validation.accuracy"
seeds = [1, 2]
[grid]
"model.variant" = ["vanilla", "nog"]
"#;

fn sweep(cfg: &Path, spec: &Path, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec![
        "sweep",
        "--config",
        cfg.to_str().unwrap(),
        "--sweep",
        spec.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    train(&args, env)
}

#[test]
fn grid_sweep_writes_results_skips_finished_and_resumes_interrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let spec = write_sweep(tmp.path(), SWEEP);
    let dir = tmp.path().join("sw");
    let out = sweep(&cfg, &spec, &dir, &["--jobs", "2"], &[]);
    ok(&out);
    let names = ["variant-vanilla_seed-1", "variant-vanilla_seed-2", "variant-nog_seed-1", "variant-nog_seed-2"];
    for n in names {
        assert!(dir.join(n).join("summary.json").exists(), "{n} did not finish");
        assert!(dir.join(n).join("curves.svg").exists(), "{n} has no curves.svg");
        let cfg_text = fs::read_to_string(dir.join(n).join("config.toml")).unwrap();
        assert!(cfg_text.contains(&format!("variant = \"{}\"", if n.contains("nog") { "nog" } else { "vanilla" })));
    }
    let csv = fs::read_to_string(dir.join("results.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "{csv}");
    let header: Vec<&str> = lines[0].split(',').collect();
    for col in ["run", "model.variant", "seed", "validation.accuracy", "test.accuracy", "test.loss", "wall_seconds"] {
        assert!(header.contains(&col), "results.csv lacks {col}: {}", lines[0]);
    }
    let md = fs::read_to_string(dir.join("results.md")).unwrap();
    assert!(md.contains("| rank | `model.variant` | seeds | validation.accuracy | test.accuracy |"), "{md}");
    assert!(md.contains("| 1 | ") && md.contains("| 2 | ") && md.contains(" ± "), "{md}");
    // The summary in results.csv is the run's own.
    let s = json(dir.join("variant-nog_seed-2/summary.json"));
    let row = lines.iter().find(|l| l.starts_with("variant-nog_seed-2,")).unwrap();
    let acc_col = header.iter().position(|c| *c == "validation.accuracy").unwrap();
    let v: f64 = row.split(',').nth(acc_col).unwrap().parse().unwrap();
    assert_eq!(v, s["validation"]["accuracy"].as_f64().unwrap());

    // A rerun skips every finished trial.
    let before = fs::metadata(dir.join("variant-nog_seed-1/summary.json")).unwrap().modified().unwrap();
    let out = sweep(&cfg, &spec, &dir, &[], &[]);
    ok(&out);
    assert_eq!(stderr(&out).matches("already finished").count(), 4, "{}", stderr(&out));
    assert_eq!(fs::metadata(dir.join("variant-nog_seed-1/summary.json")).unwrap().modified().unwrap(), before);

    // Interrupted trials (killed at step 15 of 36) make the sweep fail; a rerun resumes them
    // to the same weights as the uninterrupted sweep.
    let dir2 = tmp.path().join("sw2");
    let spec1 = write_sweep(tmp.path(), &SWEEP.replace("seeds = [1, 2]", "seeds = [1]"));
    let out = sweep(&cfg, &spec1, &dir2, &[], &[("SLUICE_TEST_KILL_AT_STEP", "15")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("2 of 2 trials failed") && err.contains("train.log"), "{err}");
    assert!(!dir2.join("variant-nog_seed-1/summary.json").exists());
    let out = sweep(&cfg, &spec1, &dir2, &[], &[]);
    ok(&out);
    for n in ["variant-vanilla_seed-1", "variant-nog_seed-1"] {
        assert!(
            read(dir.join(n).join("checkpoints/best.safetensors"))
                == read(dir2.join(n).join("checkpoints/best.safetensors")),
            "{n}: resumed trial differs from the uninterrupted one"
        );
    }
    assert_eq!(fs::read_to_string(dir2.join("results.csv")).unwrap().lines().count(), 3);
}

#[test]
fn random_search_draws_are_seeded_and_bad_sweeps_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let spec = write_sweep(
        tmp.path(),
        "seeds = 1\n[random]\ntrials = 3\nseed = 5\n\"train.lr\" = { log_uniform = [0.001, 0.1] }\nmodel.pooling = { choice = [\"last\", \"max\"] }\n",
    );
    let dir = tmp.path().join("rs");
    let a = sweep(&cfg, &spec, &dir, &["--dry-run"], &[]);
    ok(&a);
    let b = sweep(&cfg, &spec, &dir, &["--dry-run"], &[]);
    assert_eq!(a.stdout, b.stdout);
    let text = String::from_utf8_lossy(&a.stdout).to_string();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.lines().all(|l| l.contains("lr-0.0") && l.contains("pooling-") && l.contains("_seed-7\t")), "{text}");
    assert!(!dir.exists(), "--dry-run must not create the sweep directory");

    let cases = [
        ("sed = 3\n", "unknown key `sed`"),
        ("[grid]\n\"model.hiden\" = [4, 8]\n", "did you mean `hidden`"),
        ("[grid]\n\"model.hidden\" = 8\n", "[grid] key `model.hidden`"),
        ("[random]\ntrials = 2\n\"train.lr\" = { normal = [0, 1] }\n", "unknown distribution `normal`"),
    ];
    for (body, want) in cases {
        let spec = write_sweep(tmp.path(), body);
        let out = sweep(&cfg, &spec, &dir, &[], &[]);
        assert!(!out.status.success(), "{body}");
        let err = stderr(&out);
        assert!(err.contains(want) && err.starts_with("error: "), "{body}: expected {want:?} in {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!dir.exists(), "a bad sweep must fail before running anything");
}
