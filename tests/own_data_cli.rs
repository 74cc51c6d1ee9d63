//! End-to-end: `corpus = "text"` through the binary on tiny files the tests write — a CSV
//! with four string classes (carved validation/test splits, balanced class weights), sentence
//! pairs from gzipped JSON Lines, a hub cache built in a temp dir, and bad input; your own
//! series; and `corpus = "audio"`: tones as classes, as a folder per class and as a manifest,
//! one class at another sample rate.

mod common;

use common::{ok, stderr, train, write_wav};
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

/// Three classes of tones; `whistle` recorded at 16 kHz, the others at 8 kHz.
const TONES: [(&str, f64, u32); 3] = [("beep", 1200.0, 8000), ("hum", 250.0, 8000), ("whistle", 2600.0, 16000)];

/// Clip `i` of a class: its tone (slightly detuned by `i`), 0.15–0.3 s, a little noise.
fn tone(hz: f64, rate: u32, i: usize) -> Vec<i16> {
    let mut state = 7 + i as u64;
    let n = rate as usize * (15 + i % 16) / 100;
    (0..n)
        .map(|t| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let noise = ((state >> 40) as f64 / (1u64 << 24) as f64) - 0.5;
            let x = (2.0 * std::f64::consts::PI * (hz + 7.0 * i as f64) * t as f64 / rate as f64).sin();
            (5000.0 * x + 400.0 * noise) as i16
        })
        .collect()
}

fn audio_config(tmp: &Path, data: &str) -> PathBuf {
    let cfg = tmp.join("clips.toml");
    fs::write(
        &cfg,
        format!(
            r#"task = "audio"
[run]
name = "clips"
seed = 5
threads = 1
[data]
corpus = "audio"
{data}
[audio]
sample_rate = 8000
[audio.mfcc]
delta_order = 1
[model]
hidden = 12
head_dropout = 0.1
[train]
epochs = 15
batch_size = 8
lr = 0.02
"#
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn audio_clips_in_class_folders_and_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // A folder per class: 20 clips each; validation and test carved from them.
    for (class, hz, rate) in TONES {
        for i in 0..20 {
            write_wav(&t.join(format!("clips/{class}/{i:02}.wav")), rate, 1, &tone(hz, rate, i));
        }
    }
    let cfg = audio_config(
        t,
        &format!("dir = {:?}\nvalidation_split = 0.2\ntest_split = 0.2", t.join("clips").display().to_string()),
    );
    let dir = t.join("run");
    run(&cfg, &dir, &[]);
    let s = common::json(dir.join("summary.json"));
    let test = &s["test"];
    assert!(test["accuracy"].as_f64().unwrap() >= 0.9, "{test}");
    assert_eq!(test["per_class"]["whistle"]["support"], 4, "{test}");
    assert!(test.get("speaker_accuracy").is_none(), "{test}");
    // predict prints the class names; a new 16 kHz whistle and a new stereo 8 kHz hum.
    let new_whistle = t.join("new_whistle.wav");
    write_wav(&new_whistle, 16000, 1, &tone(2600.0, 16000, 30));
    let out = train(&["predict", "--run", dir.to_str().unwrap(), new_whistle.to_str().unwrap()], &[]);
    ok(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("whistle\t") && text.trim_end().ends_with("new_whistle.wav"), "{text}");
    let out = train(&["predict", "--run", dir.to_str().unwrap(), "--json", new_whistle.to_str().unwrap()], &[]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["label"], "whistle", "{v}");
    let probs = v["probabilities"].as_object().unwrap();
    assert_eq!(probs.keys().collect::<Vec<_>>(), ["beep", "hum", "whistle"]);
    let hum = tone(250.0, 8000, 31);
    let stereo: Vec<i16> = hum.iter().flat_map(|&x| [x, x]).collect();
    let st = t.join("stereo_hum.wav");
    write_wav(&st, 8000, 2, &stereo);
    let out = train(&["predict", "--run", dir.to_str().unwrap(), st.to_str().unwrap()], &[]);
    let e = stderr(&out);
    assert!(!out.status.success() && e.contains("stereo_hum.wav") && e.contains("audio.stereo"), "{e}");
    // A clip shorter than one analysis frame (25 ms): an error, not a made-up class.
    let click = t.join("click.wav");
    write_wav(&click, 8000, 1, &tone(250.0, 8000, 0)[..100]);
    let out = train(&["predict", "--run", dir.to_str().unwrap(), click.to_str().unwrap()], &[]);
    let e = stderr(&out);
    assert!(!out.status.success() && e.contains("click.wav") && e.contains("shorter than one analysis frame"), "{e}");

    // A manifest per split, integer labels (sorted numerically), paths relative to it.
    let mut train_rows = String::from("path,class\n");
    let mut test_rows = String::from("path,class\n");
    for (k, (class, _, _)) in TONES.iter().enumerate() {
        let label = [10, 2, 7][k];
        for i in 0..20 {
            let rows = if i < 15 { &mut train_rows } else { &mut test_rows };
            rows.push_str(&format!("clips/{class}/{i:02}.wav,{label}\n"));
        }
    }
    fs::write(t.join("train.csv"), &train_rows).unwrap();
    fs::write(t.join("test.csv"), &test_rows).unwrap();
    let data = format!(
        "dir = {:?}\ntrain_file = \"train.csv\"\ntest_file = \"test.csv\"\nvalidation_split = 0.2\n\
         audio_column = \"path\"\nlabel_column = \"class\"",
        t.display().to_string()
    );
    let cfg = audio_config(t, &data);
    let dir = t.join("run_manifest");
    run(&cfg, &dir, &[]);
    let s = common::json(dir.join("summary.json"));
    assert!(s["test"]["accuracy"].as_f64().unwrap() >= 0.9, "{s}");
    for name in ["2", "7", "10"] {
        assert_eq!(s["test"]["per_class"][name]["support"], 5, "{s}");
    }
    // Integer labels in numeric order: the confusion matrix's rows are 2, 7, 10.
    let svg = fs::read_to_string(dir.join("confusion.svg")).unwrap();
    let row = |name: &str| svg.find(&format!("<title>true {name} / predicted")).unwrap();
    assert!(row("2") < row("7") && row("7") < row("10"), "{svg}");
    let out = train(&["predict", "--run", dir.to_str().unwrap(), new_whistle.to_str().unwrap()], &[]);
    ok(&out);
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("7\t"));

    // Bad input: a manifest naming a missing WAV stops before any run directory exists.
    fs::write(t.join("train.csv"), format!("{train_rows}clips/hum/gone.wav,2\n")).unwrap();
    let bad = t.join("run_bad");
    let out = train(&["--config", cfg.to_str().unwrap(), "--run-dir", bad.to_str().unwrap(), "--quiet"], &[]);
    let e = stderr(&out);
    assert!(!out.status.success() && !e.contains("panicked"), "{e}");
    assert!(e.contains("train.csv:47: column `path`") && e.contains("gone.wav"), "{e}");
    assert!(!bad.exists(), "a failed start leaves no run directory");
    // An unknown column lists the columns.
    fs::write(t.join("train.csv"), &train_rows).unwrap();
    let out = train(
        &["--config", cfg.to_str().unwrap(), "--set", "data.audio_column=\"file\"", "--run-dir", bad.to_str().unwrap()],
        &[],
    );
    let e = stderr(&out);
    assert!(e.contains("missing column `file`") && e.contains("path, class"), "{e}");
}
