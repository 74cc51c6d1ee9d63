//! End-to-end tests of `task = "translate"` and `train translate` on a tiny Multi30k-shaped
//! corpus the test writes (word-for-word "German" of a small English vocabulary).
//! Registered as a test of the `train` crate (see crates/train/Cargo.toml).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_train");

const WORDS: [(&str, &str); 12] = [
    ("a", "ein"),
    ("dog", "Hund"),
    ("man", "Mann"),
    ("runs", "läuft"),
    ("sits", "sitzt"),
    ("in", "im"),
    ("the", "dem"),
    ("snow", "Schnee"),
    ("park", "Park"),
    ("red", "rote"),
    ("big", "große"),
    ("water", "Wasser"),
];

fn write_corpus(dir: &Path) {
    let mut state = 99u64;
    let mut next = move |n: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % n
    };
    for (file, n) in [("train.jsonl", 160), ("val.jsonl", 16), ("test.jsonl", 16)] {
        let mut lines = String::new();
        for _ in 0..n {
            let len = 2 + next(4);
            let idx: Vec<usize> = (0..len).map(|_| next(WORDS.len())).collect();
            let en: Vec<&str> = idx.iter().map(|&i| WORDS[i].0).collect();
            let de: Vec<&str> = idx.iter().map(|&i| WORDS[i].1).collect();
            lines.push_str(&format!("{{\"en\": \"{}\", \"de\": \"{}\"}}\n", en.join(" "), de.join(" ")));
        }
        fs::write(dir.join(file), lines).unwrap();
    }
}

fn write_config(dir: &Path, extra_model: &str, extra_translate: &str, joint: bool) -> PathBuf {
    let data = dir.join("corpus");
    fs::create_dir_all(&data).unwrap();
    write_corpus(&data);
    let cfg = format!(
        r#"
task = "translate"

[run]
name = "tiny_mt"
seed = 3
threads = 1

[data]
corpus = "multi30k"
dir = "{}"
direction = "de-en"

[tokenizer]
model = "word_level"
vocab_size = 100
joint = {joint}

[model]
embedding_dim = 16
hidden = 16
bidirectional = true
embedding_dropout = 0.1
{extra_model}

[translate]
beam = 2
output_dropout = 0.1
{extra_translate}

[train]
epochs = 3
batch_size = 16
lr = 0.01
early_stopping_metric = "bleu"
early_stopping_mode = "max"
"#,
        data.display()
    );
    let path = dir.join("tiny_mt.toml");
    fs::write(&path, cfg).unwrap();
    path
}

fn train(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("running the train binary");
    {
        let mut pipe = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            pipe.write_all(s.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "train failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn trains_scores_and_translates() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "", "", false);
    let run = tmp.path().join("run");
    let r = run.to_str().unwrap();
    ok(&train(&["--config", cfg.to_str().unwrap(), "--run-dir", r, "--quiet"], None));
    for f in ["tokenizer_src.json", "tokenizer_tgt.json", "checkpoints/best.safetensors", "metrics.jsonl"] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let s = summary(&run);
    for key in ["bleu", "chrf", "loss", "perplexity"] {
        let v = s["test"][key].as_f64().unwrap_or_else(|| panic!("summary.json lacks test.{key}: {s}"));
        assert!(v.is_finite() && v >= 0.0, "test.{key} = {v}");
    }
    assert!(s["validation"]["bleu"].as_f64().is_some());
    assert_eq!(s["test"]["beam"], 2);
    assert!(s["test"]["bleu_signature"].as_str().unwrap().contains("tok:13a|smooth:exp"));
    // Perplexity falls below the uniform guess over the target vocabulary.
    assert!(s["test"]["perplexity"].as_f64().unwrap() < 16.0, "{s}");

    // Positional texts, one output line each; stdin when none; the attention map.
    let svg = tmp.path().join("attn.svg");
    let out = ok(&train(
        &["translate", "--run", r, "--beam", "3", "--attention", svg.to_str().unwrap(), "ein Hund läuft", "dem Mann"],
        None,
    ));
    assert_eq!(out.lines().count(), 2, "{out}");
    let svg = fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("Hund") && svg.contains("[EOS]"), "{svg}");
    let out = ok(&train(&["translate", "--run", r], Some("ein Hund\n\nrote Wasser\n")));
    assert_eq!(out.lines().count(), 3, "{out}");
    let out = ok(&train(&["predict", "--run", r, "--json", "ein Mann sitzt"], None));
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["source"], "ein Mann sitzt");
    assert!(v["translation"].is_string());

    // Bad input: beam 0, a missing run, a classification-style config.
    let e = train(&["translate", "--run", r, "--beam", "0", "x"], None);
    assert!(!e.status.success() && String::from_utf8_lossy(&e.stderr).contains("--beam"));
    let e = train(&["translate", "--run", tmp.path().join("nope").to_str().unwrap(), "x"], None);
    assert!(String::from_utf8_lossy(&e.stderr).contains("not a run directory"));
    let bad = tmp.path().join("bad.toml");
    fs::write(&bad, fs::read_to_string(&cfg).unwrap().replace("corpus = \"multi30k\"", "corpus = \"sst2\"")).unwrap();
    let e = train(&["--config", bad.to_str().unwrap(), "--run-dir", tmp.path().join("bad").to_str().unwrap()], None);
    let msg = String::from_utf8_lossy(&e.stderr).to_string();
    assert!(!e.status.success() && msg.contains("data.corpus") && msg.contains("translate"), "{msg}");
}

#[test]
fn joint_tokenizer_bahdanau_tied_and_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "", "attention = \"bahdanau\"\ntie_embeddings = true\n", true);
    let mut dirs = Vec::new();
    for name in ["a", "b"] {
        let run = tmp.path().join(name);
        ok(&train(
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--run-dir",
                run.to_str().unwrap(),
                "--quiet",
                "--set",
                "train.epochs=1",
            ],
            None,
        ));
        dirs.push(run);
    }
    assert!(dirs[0].join("tokenizer.json").exists() && !dirs[0].join("tokenizer_src.json").exists());
    for f in ["checkpoints/best.safetensors", "metrics.jsonl"] {
        assert!(
            fs::read(dirs[0].join(f)).unwrap() == fs::read(dirs[1].join(f)).unwrap(),
            "{f} differs between identical runs"
        );
    }
    let out = ok(&train(&["translate", "--run", dirs[0].to_str().unwrap(), "--beam", "1", "ein Hund"], None));
    assert_eq!(out.lines().count(), 1);
}
