//! End-to-end: `corpus = "text"` through the binary on tiny files the tests write — a CSV
//! with four string classes (carved validation/test splits, balanced class weights), sentence
//! pairs from gzipped JSON Lines, a hub cache built in a temp dir, and bad input.

mod common;

use common::{ok, stderr, train};
use std::fs;
use std::path::{Path, PathBuf};

const CLASSES: [(&str, [&str; 5]); 4] = [
    ("business", ["stock", "bank", "market", "profit", "trade"]),
    ("sci/tech", ["chip", "code", "cpu", "app", "data"]),
    ("sports", ["ball", "goal", "team", "match", "win"]),
    ("world", ["war", "king", "nation", "vote", "peace"]),
];

/// `n` rows, class by row index, words from the class' list (plus a comma and quotes, so the
/// CSV needs RFC 4180 quoting).
fn rows(n: usize) -> Vec<(String, &'static str)> {
    let mut state = 99u64;
    let mut next = move |k: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % k
    };
    (0..n)
        .map(|i| {
            let (label, words) = CLASSES[i % 4];
            let text: Vec<&str> = (0..5).map(|_| words[next(5)]).collect();
            (format!("{}, \"the\" {}", text[..2].join(" "), text[2..].join(" ")), label)
        })
        .collect()
}

fn write_csv(path: &Path, n: usize) {
    let mut s = String::from("id,headline,topic\n");
    for (i, (text, label)) in rows(n).iter().enumerate() {
        s.push_str(&format!("{i},\"{}\",{label}\n", text.replace('"', "\"\"")));
    }
    fs::write(path, s).unwrap();
}

fn config(tmp: &Path, data: &str) -> PathBuf {
    let cfg = tmp.join("own.toml");
    fs::write(
        &cfg,
        format!(
            r#"
task = "classify"
[run]
name = "own"
seed = 3
threads = 1
[data]
corpus = "text"
{data}
[tokenizer]
vocab_size = 100
[model]
embedding_dim = 8
hidden = 8
[train]
epochs = 4
batch_size = 8
lr = 0.05
class_weights = "balanced"
"#
        ),
    )
    .unwrap();
    cfg
}

fn run(cfg: &Path, dir: &Path, env: &[(&str, &str)]) {
    ok(&train(&["--config", cfg.to_str().unwrap(), "--run-dir", dir.to_str().unwrap(), "--quiet"], env));
}

#[test]
fn four_string_classes_from_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    write_csv(&t.join("news.csv"), 160);
    let cfg = config(
        t,
        &format!(
            "dir = {:?}\ntrain_file = \"news.csv\"\ntext_column = \"headline\"\nlabel_column = \"topic\"\n\
             validation_split = 0.125\ntest_split = 0.25",
            t.display().to_string()
        ),
    );
    let dir = t.join("run");
    run(&cfg, &dir, &[]);
    let s = common::json(dir.join("summary.json"));
    let test = &s["test"];
    let names: Vec<&str> = CLASSES.iter().map(|c| c.0).collect();
    for key in ["accuracy", "macro_f1", "micro_f1", "weighted_f1", "macro_precision", "weighted_recall"] {
        assert!(test[key].as_f64().is_some(), "test.{key} missing: {test}");
    }
    assert!(test["accuracy"].as_f64().unwrap() > 0.5, "{test}");
    let confusion: Vec<Vec<u64>> = serde_json::from_value(test["confusion"].clone()).unwrap();
    assert_eq!(confusion.len(), 4);
    for (row, name) in confusion.iter().zip(&names) {
        let pc = &test["per_class"][name];
        // Rows are the true class: a row sums to the class' support (10 of 40 test rows each).
        assert_eq!(row.iter().sum::<u64>(), pc["support"].as_u64().unwrap());
        assert_eq!(pc["support"], 10, "{test}");
        for k in ["precision", "recall", "f1"] {
            assert!(pc[k].as_f64().is_some(), "{name}.{k}");
        }
    }
    let svg = fs::read_to_string(dir.join("confusion.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("sci/tech"));
    // The label names travel with the run: its config and its checkpoint.
    let recorded = fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(recorded.contains("\"sci/tech\""), "{recorded}");
    let out = train(&["predict", "--run", dir.to_str().unwrap(), "--json", "goal team win ball match"], &[]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let probs = v["probabilities"].as_object().unwrap();
    assert_eq!(probs.keys().collect::<Vec<_>>(), ["business", "sci/tech", "sports", "world"]);
    let total: f64 = probs.values().map(|p| p.as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-4, "{v}");
    assert!(names.contains(&v["label"].as_str().unwrap()));
    let out = train(&["predict", "--run", dir.to_str().unwrap(), "chip code cpu"], &[]);
    ok(&out);
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(names.contains(&line.split('\t').next().unwrap()), "{line}");
    // `eval` of the finished run reports the same test figures.
    let out = train(&["eval", "--run", dir.to_str().unwrap(), "--split", "test"], &[]);
    ok(&out);
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["confusion"], test["confusion"]);
}

#[test]
fn sentence_pairs_from_gzipped_jsonl_through_a_hub_cache() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // Entailment-like toy: label "same" when both texts come from the same class' words.
    let r = rows(96);
    let mut lines = String::new();
    for (i, (a, la)) in r.iter().enumerate() {
        let (b, lb) = &r[(i * 7 + i / 4) % r.len()];
        let label = if la == lb { "same" } else { "different" };
        lines.push_str(&format!("{}\n", serde_json::json!({"premise": a, "hypothesis": b, "label": label})));
    }
    let repo = t.join("hf/hub/datasets--me--pairs");
    let hash = "0123456789abcdef0123456789abcdef01234567";
    fs::create_dir_all(repo.join("refs")).unwrap();
    fs::write(repo.join("refs/main"), hash).unwrap();
    let snap = repo.join("snapshots").join(hash);
    fs::create_dir_all(&snap).unwrap();
    let mut gz =
        flate2::write::GzEncoder::new(fs::File::create(snap.join("train.jsonl.gz")).unwrap(), Default::default());
    gz.write_all(lines.as_bytes()).unwrap();
    gz.finish().unwrap();
    let cfg = config(
        t,
        "hub = \"me/pairs\"\ntrain_file = \"train.jsonl.gz\"\ntext_column = \"premise\"\n\
         text_pair_column = \"hypothesis\"\nvalidation_split = 0.25\ntest_split = 0.25",
    );
    let dir = t.join("run");
    let hf = t.join("hf");
    let env = [("HF_HOME", hf.to_str().unwrap()), ("HF_HUB_OFFLINE", "1")];
    run(&cfg, &dir, &env);
    let s = common::json(dir.join("summary.json"));
    assert!(s["test"]["per_class"]["same"]["support"].as_u64().unwrap() > 0, "{s}");
    let out = train(&["predict", "--run", dir.to_str().unwrap(), "--json", "goal team\tball win"], &[]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["probabilities"].as_object().unwrap().len(), 2);
    // A pair run needs both texts.
    let out = train(&["predict", "--run", dir.to_str().unwrap(), "no tab here"], &[]);
    assert!(!out.status.success() && stderr(&out).contains("first<TAB>second"), "{}", stderr(&out));
}

#[test]
fn bad_input_names_file_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    write_csv(&t.join("news.csv"), 40);
    let mut body = fs::read_to_string(t.join("news.csv")).unwrap();
    body.push_str("40,\"goal\",weather\n");
    fs::write(t.join("news.csv"), body).unwrap();
    let data = format!(
        "dir = {:?}\ntrain_file = \"news.csv\"\ntext_column = \"headline\"\nlabel_column = \"topic\"\n\
         labels = [\"business\", \"sci/tech\", \"sports\", \"world\"]\nvalidation_split = 0.25\ntest_split = 0.25",
        t.display().to_string()
    );
    let cfg = config(t, &data);
    let out = train(&["--config", cfg.to_str().unwrap(), "--run-dir", t.join("r").to_str().unwrap()], &[]);
    let e = stderr(&out);
    assert!(!out.status.success() && !e.contains("panicked"), "{e}");
    assert!(e.contains("news.csv:42: column `topic`") && e.contains("found `weather`"), "{e}");
    assert!(!t.join("r").exists(), "a failed start leaves no run directory");
    // skip_invalid: the row is skipped and counted in the summary.
    let cfg = config(t, &format!("{data}\nskip_invalid = true"));
    run(&cfg, &t.join("r2"), &[]);
    let s = common::json(t.join("r2/summary.json"));
    assert_eq!(s["test"]["skipped_rows"]["train"], 1, "{s}");
    // An unknown column lists the file's columns.
    let cfg = config(t, &data.replace("\"headline\"", "\"title\""));
    let out = train(&["--config", cfg.to_str().unwrap(), "--run-dir", t.join("r3").to_str().unwrap()], &[]);
    let e = stderr(&out);
    assert!(e.contains("missing column `title`") && e.contains("id, headline, topic"), "{e}");
}

/// Two aligned plain-text files per split (`train.de` + `train.en`, ...) through `task = "translate"`.
#[test]
fn translation_from_parallel_text_files() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let words = [("hund", "dog"), ("katze", "cat"), ("haus", "house"), ("baum", "tree"), ("auto", "car")];
    for (split, n) in [("train", 60), ("valid", 10), ("test", 10)] {
        let (mut de, mut en) = (String::new(), String::new());
        for i in 0..n {
            let (a, b) = (words[i % 5], words[(i / 5) % 5]);
            de.push_str(&format!("ein {} und ein {}\n", a.0, b.0));
            en.push_str(&format!("a {} and a {}\n", a.1, b.1));
        }
        fs::write(t.join(format!("{split}.de")), de).unwrap();
        fs::write(t.join(format!("{split}.en")), en).unwrap();
    }
    let cfg = t.join("mt.toml");
    fs::write(
        &cfg,
        format!(
            r#"
task = "translate"
[run]
name = "mt"
seed = 3
threads = 1
[data]
corpus = "pairs"
dir = {:?}
train_file = "train"
validation_file = "valid"
test_file = "test"
source_lang = "de"
target_lang = "en"
[tokenizer]
vocab_size = 100
[model]
embedding_dim = 16
hidden = 16
[translate]
beam = 2
[train]
epochs = 2
batch_size = 16
lr = 0.01
early_stopping_metric = "bleu"
early_stopping_mode = "max"
"#,
            t.display().to_string()
        ),
    )
    .unwrap();
    let dir = t.join("run");
    run(&cfg, &dir, &[]);
    let s = common::json(dir.join("summary.json"));
    assert!(s["test"]["bleu"].as_f64().is_some(), "{s}");
    // A misaligned split names both files and their line counts.
    fs::write(t.join("test.en"), "a dog\n").unwrap();
    let out = train(&["--config", cfg.to_str().unwrap(), "--run-dir", t.join("r2").to_str().unwrap()], &[]);
    let e = stderr(&out);
    assert!(!out.status.success() && e.contains("test.en") && e.contains("test.de"), "{e}");
}

/// Your own CSV series (a time column in another spelling, a missing value filled forward)
/// through `task = "forecast"`, split by ratio.
#[test]
fn forecasting_your_own_csv_series() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let mut s = String::from("when,temperature,demand\n");
    for i in 0..240usize {
        let phase = i as f64 * std::f64::consts::TAU / 24.0;
        let demand = if i == 50 { String::new() } else { format!("{:.3}", 100.0 + 20.0 * phase.sin()) };
        s.push_str(&format!("2024/03/{:02}T{:02}:00Z,{:.2},{demand}\n", 1 + i / 24, i % 24, 10.0 + phase.cos()));
    }
    fs::write(t.join("demand.csv"), s).unwrap();
    let cfg = t.join("series.toml");
    fs::write(
        &cfg,
        format!(
            r#"
task = "forecast"
[run]
name = "demand"
seed = 5
threads = 1
[data]
corpus = "series"
dir = {:?}
file = "demand.csv"
time_column = "when"
target = "demand"
features = "MS"
split_ratio = [0.6, 0.2, 0.2]
fill = "forward"
input_len = 24
horizon = 6
calendar = true
[model]
hidden = 8
bidirectional = false
[train]
epochs = 2
batch_size = 16
lr = 0.01
early_stopping_metric = "mse"
early_stopping_mode = "min"
"#,
            t.display().to_string()
        ),
    )
    .unwrap();
    let dir = t.join("run");
    run(&cfg, &dir, &[]);
    let s = common::json(dir.join("summary.json"));
    assert!(s["test"]["mse"].as_f64().is_some() && s["test"]["mae"].as_f64().is_some(), "{s}");
    // Without fill the missing value is an error at its line and column.
    let text = fs::read_to_string(&cfg).unwrap().replace("fill = \"forward\"\n", "");
    fs::write(&cfg, text).unwrap();
    let out = train(&["--config", cfg.to_str().unwrap(), "--run-dir", t.join("r2").to_str().unwrap()], &[]);
    let e = stderr(&out);
    assert!(e.contains("demand.csv:52: column `demand`") && e.contains("fill"), "{e}");
}
