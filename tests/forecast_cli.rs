//! End-to-end tests of `task = "forecast"` on a tiny ETT-shaped CSV the tests write:
//! training, summary metrics, reproducibility, `predict --csv/--plot`, bad input.
//! Registered as a test of the `train` crate (see crates/train/Cargo.toml).

mod common;

use common::{ok, train};
use std::fs;
use std::path::{Path, PathBuf};

/// 300 hourly rows of two daily-periodic series with noise, in ETT's column layout.
fn write_csv(dir: &Path) {
    let mut state = 99u64;
    let mut noise = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) - 0.5
    };
    let mut s = String::from("date,HUFL,OT\n");
    for i in 0..300usize {
        let (day, hour) = (1 + i / 24, i % 24);
        let phase = i as f64 * std::f64::consts::TAU / 24.0;
        let hufl = 5.0 + 2.0 * phase.sin() + 0.1 * noise();
        let ot = 30.0 + 4.0 * (phase + 0.5).cos() + 0.02 * i as f64 + 0.2 * noise();
        s.push_str(&format!("2016-07-{day:02} {hour:02}:00:00,{hufl:.3},{ot:.3}\n"));
    }
    fs::write(dir.join("tiny.csv"), s).unwrap();
}

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let data = dir.join("data");
    fs::create_dir_all(&data).unwrap();
    write_csv(&data);
    let cfg = format!(
        r#"
task = "forecast"

[run]
name = "tiny_ett"
seed = 5
threads = 1

[data]
corpus = "ett"
dir = "{}"
file = "tiny.csv"
input_len = 24
horizon = 6
split_rows = [180, 60, 60]
features = "S"
calendar = true

[model]
hidden = 8
bidirectional = false
forget_bias = 1.0

[forecast]
revin = true

[train]
epochs = 3
batch_size = 16
lr = 0.01
clip_norm = 1.0
early_stopping_metric = "mse"
early_stopping_mode = "min"
checkpoint_every = 0
{extra}
"#,
        data.display()
    );
    let path = dir.join("tiny.toml");
    fs::write(&path, cfg).unwrap();
    path
}

fn run(tmp: &Path, name: &str, cfg: &Path, extra: &[&str]) -> PathBuf {
    let dir = tmp.join(name);
    let mut args = vec!["--config", cfg.to_str().unwrap(), "--run-dir", dir.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(extra);
    ok(&train(&args, &[]));
    dir
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn trains_reports_metrics_reproduces_and_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let a = run(tmp.path(), "a", &cfg, &[]);
    let s = summary(&a);
    let t = &s["test"];
    for key in ["mse", "mae", "mse_original", "mae_original", "loss"] {
        assert!(t[key].as_f64().is_some_and(f64::is_finite), "test.{key} missing: {t}");
    }
    assert_eq!(t["mse_by_step"].as_array().unwrap().len(), 6);
    assert_eq!(t["windows"], 60 - 6 + 1);
    assert_eq!(s["best_metric"]["mse"], s["validation"]["mse"]);
    // A clean periodic series is learnt well below the z-scored variance.
    assert!(t["mse"].as_f64().unwrap() < 0.5, "{t}");

    // Same seed ⇒ identical metrics and weights.
    let b = run(tmp.path(), "b", &cfg, &[]);
    assert_eq!(fs::read(a.join("metrics.jsonl")).unwrap(), fs::read(b.join("metrics.jsonl")).unwrap());
    assert_eq!(
        fs::read(a.join("checkpoints/best.safetensors")).unwrap(),
        fs::read(b.join("checkpoints/best.safetensors")).unwrap()
    );

    // predict: CSV of every test window (header + windows × horizon rows), SVG of one window.
    let csv = tmp.path().join("fc.csv");
    let svg = tmp.path().join("fc.svg");
    let out = train(
        &[
            "predict",
            "--run",
            a.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
            "--window",
            "3",
        ],
        &[],
    );
    ok(&out);
    let text = fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "window,step,date,OT_truth,OT_forecast");
    assert_eq!(lines.len(), 1 + 55 * 6);
    // The first test target is the test split's first row: file row 180 + 60 = 240 (day 11, 00:00).
    assert!(lines[1].starts_with("0,1,2016-07-11 00:00:00,"), "{}", lines[1]);
    // Truth on the original scale, as in the file (OT ≈ 30 ± 4 + drift).
    let truth: f64 = lines[1].split(',').nth(3).unwrap().parse().unwrap();
    assert!((25.0..45.0).contains(&truth), "{truth}");
    let svg_text = fs::read_to_string(&svg).unwrap();
    assert!(
        svg_text.starts_with("<svg")
            && svg_text.contains("test window 3")
            && svg_text.matches("<polyline").count() >= 3
    );
    // The printed test MSE is the summary's.
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let want = format!("test mse {:.6}", t["mse"].as_f64().unwrap());
    assert!(printed.contains(&want), "{printed} vs {want}");

    // A window past the end is refused with the valid range.
    let out = train(&["predict", "--run", a.to_str().unwrap(), "--plot", svg.to_str().unwrap(), "--window", "55"], &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--window 55: the test split has 55 windows"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn multivariate_seq2seq_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let a = run(
        tmp.path(),
        "m",
        &cfg,
        &["--set", "data.features=M", "--set", "forecast.decoder=seq2seq", "--set", "train.epochs=1"],
    );
    let t = &summary(&a)["test"];
    assert!(t["mse"].as_f64().is_some_and(f64::is_finite));
    let by_feature = t["mse_by_feature"].as_object().unwrap();
    assert_eq!(by_feature.keys().collect::<Vec<_>>(), vec!["HUFL", "OT"]);
}

#[test]
fn bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    // A forecasting task on a text corpus.
    let out = train(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            "data.corpus=sst2",
            "--run-dir",
            tmp.path().join("x").to_str().unwrap(),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("data.corpus") && err.contains("\"ett\""), "{err}");
    // The seq2seq decoder with a bidirectional encoder.
    let out = train(
        &["--config", cfg.to_str().unwrap(), "--set", "forecast.decoder=seq2seq", "--set", "model.bidirectional=true"],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("model.bidirectional"), "{err}");
    // A misspelt key of the [forecast] section.
    let out = train(&["--config", cfg.to_str().unwrap(), "--set", "forecast.rev_in=true"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("did you mean `revin`"), "{err}");
}
