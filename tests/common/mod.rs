//! The harness shared by the end-to-end tests of the `train` binary: a tiny SST-2-shaped
//! corpus whose labels are carried by word lists (learnable in a few epochs), a config for
//! it, and helpers to run the binary. Each test file includes it with `mod common;`.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_train");

pub const POS: [&str; 8] = ["good", "great", "fine", "superb", "lovely", "moving", "smart", "fun"];
pub const NEG: [&str; 8] = ["bad", "dull", "awful", "boring", "weak", "silly", "flat", "tired"];
pub const FILL: [&str; 6] = ["the", "film", "is", "a", "very", "story"];

/// Sentences whose label is carried by which word list dominates: learnable in a few epochs.
pub fn write_corpus(dir: &Path) {
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
                        if label == 1 {
                            POS[next(8)]
                        } else {
                            NEG[next(8)]
                        }
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

pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
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

pub fn train(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("SLUICE_TEST_NAN_AT_STEP").env_remove("SLUICE_TEST_KILL_AT_STEP");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running the train binary")
}

pub fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "train failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

pub fn run_dir(tmp: &Path, name: &str, cfg: &Path, extra: &[&str]) -> PathBuf {
    let dir = tmp.join(name);
    let mut args = vec!["--config", cfg.to_str().unwrap(), "--run-dir", dir.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(extra);
    ok(&train(&args, &[]));
    dir
}

/// Trains `cfg` into `dir` with each of `sets` as a `--set` override; the run's summary.json.
pub fn run_with_sets(cfg: &Path, dir: &Path, sets: &[&str]) -> serde_json::Value {
    let mut args = vec!["--config", cfg.to_str().unwrap(), "--run-dir", dir.to_str().unwrap(), "--quiet"];
    for s in sets {
        args.extend(["--set", s]);
    }
    ok(&train(&args, &[]));
    json(dir.join("summary.json"))
}

pub fn read(p: PathBuf) -> Vec<u8> {
    fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn json(p: PathBuf) -> serde_json::Value {
    serde_json::from_slice(&read(p)).unwrap()
}

/// The bytes of a 16-bit integer PCM WAV file (44-byte header) with `samples` interleaved over
/// `channels`, written by hand so the tests need no audio crate.
pub fn wav_bytes(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + data_len as usize);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2 * channels as u32).to_le_bytes()); // byte rate
    b.extend_from_slice(&(2 * channels).to_le_bytes()); // block align
    b.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    b
}

/// [`wav_bytes`] written to `path` (its folder created if missing).
pub fn write_wav(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, wav_bytes(rate, channels, samples)).unwrap();
}
