//! End-to-end tests of `task = "summarize"` and `train summarize` on a tiny copy-heavy corpus
//! the test writes: each "document" is a few words, the "summary" is its capitalised-name
//! words (`zorg7`, `quux3`, …) in order. Those names are rare (most occur once), so the
//! vocabulary maps them to UNK and only the copy mechanism can output them.
//! Registered as a test of the `train` crate (see crates/train/Cargo.toml).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_train");
const FILLER: [&str; 8] = ["the", "said", "on", "monday", "officials", "in", "a", "report"];

fn write_corpus(dir: &Path) {
    let mut state = 7u64;
    let mut next = move |n: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % n
    };
    let mut name_id = 0;
    for (file, n) in [("train.jsonl", 240), ("val.jsonl", 16), ("test.jsonl", 16), ("extra.jsonl", 40)] {
        let mut lines = String::new();
        for _ in 0..n {
            let len = 4 + next(4);
            let (mut doc, mut sum) = (Vec::new(), Vec::new());
            for _ in 0..len {
                if next(3) == 0 {
                    name_id += 1;
                    let w = format!("name{name_id}");
                    doc.push(w.clone());
                    sum.push(w);
                } else {
                    doc.push(FILLER[next(FILLER.len())].to_string());
                }
            }
            if sum.is_empty() {
                name_id += 1;
                doc.push(format!("name{name_id}"));
                sum.push(format!("name{name_id}"));
            }
            lines.push_str(&format!("{}\n", serde_json::json!({"document": doc.join(" "), "summary": sum.join(" ")})));
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
task = "summarize"

[run]
name = "tiny_sum"
seed = 5
threads = 1

[data]
corpus = "pairs"
dir = "{}"
train_file = "train.jsonl"
extra_train_file = "extra.jsonl"
validation_file = "val.jsonl"
test_file = "test.jsonl"
source_column = "document"
target_column = "summary"

[tokenizer]
model = "word_level"
pre_tokenizer = "whitespace_split"
joint = true
vocab_size = 40
min_frequency = 2
nfkc = false

[model]
embedding_dim = 16
hidden = 24
bidirectional = true

[summarize]
beam = 2
max_source_len = 12
max_len = 10
{extra}

[train]
optimizer = "adam"
lr = 0.01
epochs = 12
batch_size = 16
clip_norm = 5.0
early_stopping_metric = "rouge1"
early_stopping_mode = "max"
checkpoint_every = 0
"#,
        data.display()
    );
    let path = dir.join("tiny.toml");
    fs::write(&path, cfg).unwrap();
    path
}

fn train(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("running the train binary")
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

fn run(cfg: &Path, dir: &Path, sets: &[&str]) -> serde_json::Value {
    let mut args = vec!["--config", cfg.to_str().unwrap(), "--run-dir", dir.to_str().unwrap(), "--quiet"];
    for s in sets {
        args.extend(["--set", s]);
    }
    ok(&train(&args));
    serde_json::from_slice(&fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn copying_model_learns_the_names_and_the_cli_summarizes() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "copy = true\ncoverage = true\ncoverage_from_epoch = 8");
    let dir = tmp.path().join("run");
    let summary = run(&cfg, &dir, &[]);
    let test = &summary["test"];
    for key in ["rouge1", "rouge2", "rougeL", "rouge1_precision", "rougeL_recall", "copied_oov_rate", "coverage_loss"] {
        assert!(test[key].is_number(), "test.{key} missing: {test}");
    }
    let sig = test["rouge_signature"].as_str().unwrap();
    assert!(sig.contains("stem"), "{sig}");
    // The names are outside the 40-word vocabulary: only copying scores.
    let r1 = test["rouge1"].as_f64().unwrap();
    assert!(r1 > 60.0, "test ROUGE-1 {r1}: the copy task was not learnt ({test})");
    assert!(test["copied_oov_rate"].as_f64().unwrap() > 0.5, "{test}");

    // Arguments, stdin and JSON.
    let run_s = dir.to_str().unwrap();
    let doc = "officials said name90001 in a report on monday name90002";
    let out = ok(&train(&["summarize", "--run", run_s, "--beam", "3", doc]));
    assert!(out.trim().contains("name90001"), "copied name missing: {out}");
    let mut child = Command::new(BIN)
        .args(["summarize", "--run", run_s])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{doc}\nthe name77 said\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let lines = ok(&out);
    assert_eq!(lines.lines().count(), 2, "{lines}");
    let out = ok(&train(&["summarize", "--run", run_s, "--json", doc]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let words = v["words"].as_array().unwrap();
    assert_eq!(words.last().unwrap(), "[EOS]");
    assert_eq!(v["p_gen"].as_array().unwrap().len(), words.len(), "{v}");
    let attn = v["attention"].as_array().unwrap();
    assert_eq!(attn.len(), words.len());
    assert_eq!(attn[0].as_array().unwrap().len(), v["source_words"].as_array().unwrap().len());
    // eval re-scores the best checkpoint: the same test figures.
    let out = ok(&train(&["eval", "--run", run_s, "--split", "test"]));
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m["rouge1"], test["rouge1"], "{m}");
    // predict is the same summaries.
    let pred = ok(&train(&["predict", "--run", run_s, doc]));
    let plain = ok(&train(&["summarize", "--run", run_s, doc]));
    assert_eq!(pred, plain);

    // Scoring a file with several references per document (DUC's layout).
    let scored = tmp.path().join("duc.jsonl");
    let lines: Vec<String> = (0..3)
        .map(|i| {
            serde_json::json!({"document": format!("the name{} said name{}", 80000 + i, 81000 + i),
                "references": [format!("name{} name{}", 80000 + i, 81000 + i), "something else entirely"]})
            .to_string()
        })
        .collect();
    fs::write(&scored, lines.join("\n")).unwrap();
    let out = ok(&train(&["summarize", "--run", run_s, "--score", scored.to_str().unwrap()]));
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m["documents"], 3);
    assert!(m["rouge1"].as_f64().unwrap() > 50.0, "{m}");
    fs::write(&scored, "{\"document\": \"a\"}\n").unwrap();
    let out = train(&["summarize", "--run", run_s, "--score", scored.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("duc.jsonl:1"), "{}", String::from_utf8_lossy(&out.stderr));

    // A long document: cut with a warning by default ...
    let long: Vec<String> = (0..30).map(|i| format!("name{}", 95000 + i)).collect();
    let out = train(&["summarize", "--run", run_s, &long.join(" ")]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    ok(&out);
    assert!(err.contains("max_source_len = 12"), "{err}");
    // ... and refused when the run says so.
    let cfg_text = fs::read_to_string(dir.join("config.toml")).unwrap();
    let refused = cfg_text.replace("long_source = \"truncate\"", "long_source = \"refuse\"");
    assert_ne!(refused, cfg_text);
    fs::write(dir.join("config.toml"), refused).unwrap();
    let out = train(&["summarize", "--run", run_s, &long.join(" ")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("30 tokens") && err.contains("max_source_len = 12"), "{err}");
}

#[test]
fn reruns_are_byte_identical_and_copy_is_an_ablation() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let sets = ["train.epochs=2"];
    let a = run(&cfg, &tmp.path().join("a"), &sets);
    let b = run(&cfg, &tmp.path().join("b"), &sets);
    assert_eq!(a["test"], b["test"]);
    for f in ["checkpoints/best.safetensors", "checkpoints/last.safetensors", "tokenizer.json"] {
        let (x, y) = (fs::read(tmp.path().join("a").join(f)).unwrap(), fs::read(tmp.path().join("b").join(f)).unwrap());
        assert!(x == y, "{f} differs between identical runs");
    }
    // copy = false: no pointer parameters, no source-only words in the output.
    let c = run(&cfg, &tmp.path().join("c"), &["train.epochs=2", "summarize.copy=false"]);
    assert_eq!(c["test"]["copied_oov_rate"].as_f64(), Some(0.0));
    // Config errors name the key.
    let out = train(&[
        "--config",
        cfg.to_str().unwrap(),
        "--run-dir",
        tmp.path().join("d").to_str().unwrap(),
        "--set",
        "summarize.coverage=true",
        "--set",
        "summarize.coverage_from_epoch=0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("summarize.coverage_from_epoch"), "{err}");
    let out = train(&[
        "--config",
        cfg.to_str().unwrap(),
        "--run-dir",
        tmp.path().join("e").to_str().unwrap(),
        "--set",
        "tokenizer.joint=false",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokenizer.joint"));
}
