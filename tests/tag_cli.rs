//! End-to-end tests of `task = "tag"` on tiny made-up corpora the tests write (a CoNLL
//! column file in IOB1 for entities, CoNLL-U for part of speech): training, `summary.json`
//! keys, byte-identical reruns, `train tag` / `predict`, and the errors (bad CoNLL line with
//! file:line, unknown tag column, a test tag outside the label set).
//! Registered as a test of the `train` crate (see crates/train/Cargo.toml).

mod common;

use common::{ok, train};
use std::fs;
use std::path::{Path, PathBuf};

const PEOPLE: [&str; 6] = ["Anna", "Boris", "Chen", "Dana", "Emil", "Farah"];
const PLACES: [&str; 5] = ["Oslo", "Lima", "Quito", "Turku", "Hanoi"];
const ORGS: [(&str, &str); 3] = [("Acme", "Corp"), ("Zeta", "Labs"), ("Nova", "Bank")];

/// A made-up sentence `k` as (word, POS, IOB1 entity tag) rows.
fn sentence(k: usize) -> Vec<(String, &'static str, String)> {
    let p = PEOPLE[k % PEOPLE.len()];
    let q = PEOPLE[(k / 2 + 1) % PEOPLE.len()];
    let l = PLACES[(k * 7 / 3) % PLACES.len()];
    let (o1, o2) = ORGS[k % ORGS.len()];
    let w = |s: &str, pos: &'static str, t: &str| (s.to_string(), pos, t.to_string());
    match k % 4 {
        0 => vec![
            w(p, "PROPN", "I-PER"),
            w("lives", "VERB", "O"),
            w("in", "ADP", "O"),
            w(l, "PROPN", "I-LOC"),
            w(".", "PUNCT", "O"),
        ],
        1 => vec![w(p, "PROPN", "I-PER"), w("joined", "VERB", "O"), w(o1, "PROPN", "I-ORG"), w(o2, "PROPN", "I-ORG")],
        // Two people side by side: IOB1's B- marks where the second starts.
        2 => vec![
            w(p, "PROPN", "I-PER"),
            w(q, "PROPN", "B-PER"),
            w("met", "VERB", "O"),
            w("in", "ADP", "O"),
            w(l, "PROPN", "I-LOC"),
        ],
        _ => vec![
            w("the", "DET", "O"),
            w("office", "NOUN", "O"),
            w("of", "ADP", "O"),
            w(o1, "PROPN", "I-ORG"),
            w(o2, "PROPN", "I-ORG"),
        ],
    }
}

fn write_conll(path: &Path, range: std::ops::Range<usize>) {
    let mut s = String::from("-DOCSTART- -X- O O\n\n");
    for k in range {
        for (word, pos, tag) in sentence(k) {
            s.push_str(&format!("{word} {pos} X {tag}\n"));
        }
        s.push('\n');
    }
    fs::write(path, s).unwrap();
}

fn write_conllu(path: &Path, range: std::ops::Range<usize>) {
    let mut s = String::new();
    for k in range {
        s.push_str(&format!("# sent_id = s{k}\n"));
        for (i, (word, pos, _)) in sentence(k).into_iter().enumerate() {
            s.push_str(&format!("{}\t{word}\t_\t{pos}\t_\t_\t0\tdep\t_\t_\n", i + 1));
        }
        s.push('\n');
    }
    fs::write(path, s).unwrap();
}

/// A NER (CoNLL columns) or POS (CoNLL-U) config over files the test writes.
fn config(dir: &Path, ner: bool, extra: &str) -> PathBuf {
    let data = dir.join("data");
    fs::create_dir_all(&data).unwrap();
    let (files, tag) = if ner {
        for (name, r) in [("train.txt", 0..64), ("dev.txt", 64..80), ("test.txt", 80..96)] {
            write_conll(&data.join(name), r);
        }
        (["train.txt", "dev.txt", "test.txt"], "format = \"conll\"\ntag_scheme = \"iob1\"\ntarget_scheme = \"bioes\"\n")
    } else {
        for (name, r) in [("train.conllu", 0..64), ("dev.conllu", 64..80), ("test.conllu", 80..96)] {
            write_conllu(&data.join(name), r);
        }
        (["train.conllu", "dev.conllu", "test.conllu"], "format = \"conllu\"\ncolumn = \"upos\"\n")
    };
    let metric = if ner { "f1" } else { "accuracy" };
    let cfg = format!(
        r#"
task = "tag"

[run]
name = "tiny_tag"
seed = 3
threads = 1

[data]
dir = "{}"
train_file = "{}"
validation_file = "{}"
test_file = "{}"

[model]
embedding_dim = 16
hidden = 16
embedding_dropout = 0.1
dropout = 0.1

[train]
lr = 0.01
epochs = 6
batch_size = 8
early_stopping_metric = "{metric}"

[tag]
{tag}char_dim = 8
char_hidden = 8
{extra}
"#,
        data.display(),
        files[0],
        files[1],
        files[2]
    );
    let path = dir.join(if ner { "ner.toml" } else { "pos.toml" });
    fs::write(&path, cfg).unwrap();
    path
}

fn run(tmp: &Path, name: &str, cfg: &Path, extra: &[&str]) -> PathBuf {
    common::run_dir(tmp, name, cfg, extra)
}

fn stdout(args: &[&str]) -> String {
    let out = train(args, &[]);
    ok(&out);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn ner_trains_scores_entities_reruns_identically_and_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), true, "");
    let a = run(tmp.path(), "a", &cfg, &[]);
    let s = common::json(a.join("summary.json"));
    let t = &s["test"];
    for key in ["f1", "precision", "recall", "accuracy", "loss"] {
        assert!(t[key].as_f64().is_some_and(f64::is_finite), "test.{key} missing: {t}");
    }
    let per_type = t["per_type"].as_object().unwrap();
    assert_eq!(per_type.keys().collect::<Vec<_>>(), ["LOC", "ORG", "PER"]);
    assert_eq!(per_type["PER"]["support"], 16, "{t}"); // 4 + 4 sentences with one person, 4 with two
                                                       // The pattern is easy: the tagger must have learned most of it.
    assert!(t["f1"].as_f64().unwrap() > 0.6, "{t}");

    // Same config, seed and threads: the same bytes.
    let b = run(tmp.path(), "b", &cfg, &[]);
    assert_eq!(fs::read(a.join("metrics.jsonl")).unwrap(), fs::read(b.join("metrics.jsonl")).unwrap());
    assert_eq!(
        fs::read(a.join("checkpoints/best.safetensors")).unwrap(),
        fs::read(b.join("checkpoints/best.safetensors")).unwrap()
    );

    // Killed mid-epoch and resumed: the same bytes as the uninterrupted run.
    let killed = tmp.path().join("killed");
    let out = train(
        &["--config", cfg.to_str().unwrap(), "--run-dir", killed.to_str().unwrap(), "--quiet"],
        &[("SLUICE_TEST_KILL_AT_STEP", "13")],
    );
    assert!(!out.status.success(), "the run should have been killed");
    ok(&train(&["resume", "--run", killed.to_str().unwrap(), "--quiet"], &[]));
    for f in ["checkpoints/best.safetensors", "metrics.jsonl", "tag_vocab.json"] {
        assert!(fs::read(a.join(f)).unwrap() == fs::read(killed.join(f)).unwrap(), "{f} differs after kill + resume");
    }

    // `train tag`: word/TAG and the entities; `predict` says the same.
    let run_arg = a.to_str().unwrap();
    let text = "Anna lives in Oslo .";
    let tagged = stdout(&["tag", "--run", run_arg, text]);
    assert!(
        tagged.starts_with("Anna/B-PER lives/O in/O Oslo/B-LOC ./O\t[PER 0..1: Anna] [LOC 3..4: Oslo]"),
        "{tagged}"
    );
    assert_eq!(stdout(&["predict", "--run", run_arg, text]), tagged);
    let j: serde_json::Value = serde_json::from_str(stdout(&["tag", "--run", run_arg, "--json", text]).trim()).unwrap();
    assert_eq!(j["tokens"].as_array().unwrap().len(), 5);
    assert_eq!(j["entities"][0], serde_json::json!({"type": "PER", "start": 0, "end": 1, "text": "Anna"}));
}

#[test]
fn pos_from_conllu_with_char_cnn_and_softmax() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), false, "chars = \"cnn\"\ncrf = false\n");
    let a = run(tmp.path(), "a", &cfg, &[]);
    let t = &common::json(a.join("summary.json"))["test"];
    assert!(t["accuracy"].as_f64().unwrap() > 0.8, "{t}");
    assert!(t.get("f1").is_none(), "plain labels have no entity scores: {t}");
    let tagged = stdout(&["tag", "--run", a.to_str().unwrap(), "Emil lives in Lima ."]);
    assert_eq!(tagged.trim(), "Emil/PROPN lives/VERB in/ADP Lima/PROPN ./PUNCT");
    // Words only, CRF on, through the same task.
    let b =
        run(tmp.path(), "b", &cfg, &["--set", "tag.chars=none", "--set", "tag.crf=true", "--set", "train.epochs=1"]);
    assert!(common::json(b.join("summary.json"))["test"]["accuracy"].as_f64().is_some());
}

#[test]
fn bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), false, "");
    let cfg_s = cfg.to_str().unwrap();
    let fails = |extra: &[&str]| {
        let dir = tmp.path().join("bad");
        let mut args = vec!["--config", cfg_s, "--run-dir", dir.to_str().unwrap(), "--quiet"];
        args.extend_from_slice(extra);
        let out = train(&args, &[]);
        assert!(!out.status.success());
        let _ = fs::remove_dir_all(&dir);
        common::stderr(&out)
    };
    // An unknown tag column is refused at load time, naming the key.
    let err = fails(&["--set", "tag.column=ner"]);
    assert!(err.contains("tag.column") && err.contains("\"ner\"") && err.contains("upos"), "{err}");
    // A broken CoNLL-U line: file and line.
    let data = tmp.path().join("data");
    let dev = data.join("dev.conllu");
    let good = fs::read_to_string(&dev).unwrap();
    fs::write(&dev, good.replacen("2\tlives\t_\tVERB\t_\t_\t0\tdep\t_\t_", "2\tlives\tVERB", 1)).unwrap();
    let err = fails(&[]);
    assert!(err.contains(&format!("{}:3:1: expected 10 tab-separated CoNLL-U fields", dev.display())), "{err}");
    fs::write(&dev, &good).unwrap();
    // A test tag the training split never had: file, line and the label set.
    let test = data.join("test.conllu");
    let text = fs::read_to_string(&test).unwrap();
    fs::write(&test, text.replacen("\tDET\t", "\tSYM\t", 1)).unwrap();
    let err = fails(&[]);
    assert!(
        err.contains(&format!("{}:", test.display()))
            && err.contains("tag `SYM`")
            && err.contains("not in the label set"),
        "{err}"
    );
    fs::write(&test, &text).unwrap();
    // A CoNLL column that a line does not have.
    let ner = config(tmp.path(), true, "column = \"7\"\n");
    let out = train(
        &["--config", ner.to_str().unwrap(), "--run-dir", tmp.path().join("c").to_str().unwrap(), "--quiet"],
        &[],
    );
    let err = common::stderr(&out);
    assert!(!out.status.success() && err.contains("train.txt:3:4: expected a tag in column 7"), "{err}");
}
