//! End-to-end test of `train bench` on a tiny config: it runs every path for a few steps and
//! its `--json` output ends with one valid object of the documented shape.
//! Registered as a test of the `train` crate (see crates/train/Cargo.toml).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_train");

const TINY: &str = r#"
[run]
threads = 1
[model]
embedding_dim = 6
hidden = 5
layers = 1
bidirectional = false
[train]
optimizer = "adam"
batch_size = 3
[bench]
steps = 3
warmup = 1
slow_steps = 2
seq_len = 4
vocab = 20
"#;

fn bench(extra: &[&str], config: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["bench", "--config", path.to_str().unwrap()]).args(extra);
    cmd.output().unwrap()
}

#[test]
fn bench_prints_valid_json_for_every_path() {
    let out = bench(&["--json"], TINY);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
    for key in ["train_tokens_per_s", "infer_tokens_per_s"] {
        for path in ["fused", "ops", "candle_nn"] {
            let x = v[key][path].as_f64().unwrap_or_else(|| panic!("{key}.{path} in {last}"));
            assert!(x > 0.0 && x.is_finite(), "{key}.{path} = {x}");
        }
    }
    assert!(v["peak_rss_mb"].as_f64().unwrap() > 0.0);
    assert!(stdout.contains("2 steps"), "the slow paths say how many steps they ran:\n{stdout}");
}

#[test]
fn bench_paths_subset_and_errors() {
    let out = bench(&["--json", "--paths", "fused"], TINY);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(v["train_tokens_per_s"]["fused"].as_f64().is_some());
    assert!(v["train_tokens_per_s"]["ops"].is_null());

    let out = bench(&["--paths", "fused,torch"], TINY);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown path `torch`"));

    let out = bench(&[], &TINY.replace("steps = 3", "steps = 0"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bench.steps"), "{err}");

    let out = bench(&[], &TINY.replace("vocab = 20", "vocab = 20\nwarm_up = 2"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warm_up"), "{err}");
}

#[test]
fn bench_compressed_paths_time_inference_and_name_the_cpu() {
    let out = bench(&["--json", "--paths", "fused,int8,bf16,sparse50,sparse90"], TINY);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    for p in ["int8", "bf16", "sparse50", "sparse90"] {
        let x = v["infer_tokens_per_s"][p].as_f64().unwrap_or_else(|| panic!("infer {p}"));
        assert!(x > 0.0 && x.is_finite());
        assert!(v["train_tokens_per_s"][p].is_null(), "{p} times inference only");
    }
    assert!(v["cpu"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    assert!(stdout.contains("inference / fused: int8"), "{stdout}");
}
