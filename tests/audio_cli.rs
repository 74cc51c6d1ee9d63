//! End-to-end tests of `task = "audio"` on a tiny FSDD-shaped corpus the tests write: tones
//! whose pitch depends on the digit, named `{digit}_{speaker}_{index}.wav`.
//! Registered as a test of the `train` crate (see crates/train/Cargo.toml).

mod common;

use common::{ok, run_with_sets as run, train, write_wav};
use std::fs;
use std::path::{Path, PathBuf};

const RATE: u32 = 8000;

/// 2 speakers × 10 digits × 10 recordings: a tone at 300 + 250·digit Hz, a speaker-dependent
/// loudness, an index-dependent length (0.15–0.33 s) and a little noise.
fn write_corpus(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let mut state = 99u64;
    let mut noise = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 40) as f64 / (1u64 << 24) as f64) - 0.5
    };
    for (s, speaker) in ["ann", "bob"].iter().enumerate() {
        for digit in 0..10 {
            for index in 0..10 {
                let n = 1200 + 160 * index + 40 * s;
                let f = 300.0 + 250.0 * digit as f64;
                let amp = 6000.0 + 4000.0 * s as f64;
                let samples: Vec<i16> = (0..n)
                    .map(|t| {
                        let x = (2.0 * std::f64::consts::PI * f * t as f64 / RATE as f64).sin();
                        (amp * x + 300.0 * noise()) as i16
                    })
                    .collect();
                write_wav(&dir.join(format!("{digit}_{speaker}_{index}.wav")), RATE, 1, &samples);
            }
        }
    }
    // Not a recording: listed as ignored, not an error.
    fs::write(dir.join("README.md"), "tones").unwrap();
}

fn write_config(dir: &Path) -> PathBuf {
    let data = dir.join("recordings");
    write_corpus(&data);
    let cfg = format!(
        r#"task = "audio"

[run]
name = "tones"
seed = 3
threads = 1

[data]
corpus = "fsdd"
dir = "{}"

[audio]
split = "official"
val_fraction = 0.2

[audio.mfcc]
delta_order = 1

[model]
hidden = 12
pooling = "mean"
head_dropout = 0.1
embedding_dropout = 0.1

[train]
epochs = 6
batch_size = 8
lr = 0.02
checkpoint_every = 7
"#,
        data.display()
    );
    let path = dir.join("tones.toml");
    fs::write(&path, cfg).unwrap();
    path
}

#[test]
fn trains_reproducibly_stores_the_normaliser_and_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let summary = run(&cfg, &a, &[]);
    // 100 test files (index 0–4), 2 speakers; pure tones are easy.
    let test = &summary["test"];
    let acc = test["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.8, "test accuracy {acc}");
    assert_eq!(test["confusion"].as_array().unwrap().len(), 10);
    let speakers = test["speaker_accuracy"].as_object().unwrap();
    assert_eq!(speakers.keys().collect::<Vec<_>>(), ["ann", "bob"]);
    assert!(summary["validation"]["loss"].as_f64().unwrap().is_finite());
    let norm: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(a.join("normalizer.json")).unwrap()).unwrap();
    assert_eq!(norm["mean"].as_array().unwrap().len(), 26, "13 MFCCs + 13 deltas");

    // Same config and seed: identical metrics and checkpoint bytes.
    run(&cfg, &b, &[]);
    let strip = |p: &Path| -> String { fs::read_to_string(p.join("metrics.jsonl")).unwrap() };
    assert_eq!(strip(&a), strip(&b));
    assert_eq!(
        fs::read(a.join("checkpoints/best.safetensors")).unwrap(),
        fs::read(b.join("checkpoints/best.safetensors")).unwrap()
    );

    // predict: `digit<TAB>probability<TAB>file`, agreeing with the files' own digits.
    let rec = tmp.path().join("recordings");
    let files: Vec<String> = (0..10).map(|d| rec.join(format!("{d}_bob_1.wav")).display().to_string()).collect();
    let mut args = vec!["predict", "--run", a.to_str().unwrap()];
    args.extend(files.iter().map(String::as_str));
    let out = train(&args, &[]);
    ok(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 10, "{text}");
    let mut right = 0;
    for (d, line) in lines.iter().enumerate() {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 3, "{line}");
        let p: f64 = cols[1].parse().unwrap();
        assert!((0.1..=1.0).contains(&p), "{line}");
        assert_eq!(cols[2], files[d]);
        right += usize::from(cols[0] == d.to_string());
    }
    assert!(right >= 8, "{text}");

    // --json: one object per file with the digit, its probability and all ten.
    let out = train(&["predict", "--run", a.to_str().unwrap(), "--json", &files[3]], &[]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert_eq!(v["file"], files[3].as_str());
    let probs: Vec<f64> = v["probabilities"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(probs.len(), 10);
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-4);
    assert_eq!(probs[v["digit"].as_u64().unwrap() as usize], v["probability"].as_f64().unwrap());

    // `eval` from the stored normaliser reproduces the summary's test accuracy.
    let out = train(&["eval", "--run", a.to_str().unwrap(), "--split", "test"], &[]);
    ok(&out);
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["accuracy"], test["accuracy"]);

    // An int8 export runs on the int8 kernels and stays as accurate on these easy tones.
    ok(&train(&["export", "--run", a.to_str().unwrap(), "--format", "int8"], &[]));
    let q = a.join("export-int8");
    let out = train(&["eval", "--run", q.to_str().unwrap(), "--split", "test"], &[]);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run on int8 kernels"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(e["accuracy"].as_f64().unwrap() >= acc - 0.05, "{e} vs {acc}");
    ok(&train(&["predict", "--run", q.to_str().unwrap(), &files[3]], &[]));

    // A file that is not a WAV: the error names it.
    let bad = tmp.path().join("notes.wav");
    fs::write(&bad, "not audio").unwrap();
    let out = train(&["predict", "--run", a.to_str().unwrap(), bad.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("notes.wav") && err.contains("not a readable WAV"), "{err}");
}

#[test]
fn speaker_held_out_split_and_config_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path());
    let summary = run(&cfg, &tmp.path().join("s"), &["audio.split={speaker=\"bob\"}", "train.epochs=1"]);
    let speakers = summary["test"]["speaker_accuracy"].as_object().unwrap();
    assert_eq!(speakers.keys().collect::<Vec<_>>(), ["bob"]);
    assert_eq!(
        summary["test"]["confusion"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap())
            .map(|x| x.as_u64().unwrap())
            .sum::<u64>(),
        100
    );

    let c = cfg.to_str().unwrap();
    let out = train(
        &[
            "--config",
            c,
            "--set",
            "audio.split={speaker=\"carol\"}",
            "--run-dir",
            tmp.path().join("x").to_str().unwrap(),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("`carol`") && err.contains("ann, bob"), "{err}");

    let out = train(&["--config", c, "--set", "audio.mfcc.num_ceps=0"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("audio.mfcc.num_ceps"), "{err}");

    let text = fs::read_to_string(&cfg).unwrap().replace("val_fraction", "val_fracton");
    let typo = tmp.path().join("typo.toml");
    fs::write(&typo, text).unwrap();
    let out = train(&["--config", typo.to_str().unwrap()], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("typo.toml:14") && err.contains("did you mean `val_fraction`"), "{err}");

    let out = train(&["--config", c, "--set", "data.corpus=sst2"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("data.corpus") && err.contains("fsdd"), "{err}");
}
