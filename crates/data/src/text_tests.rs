//! `corpus = "text"` on files the tests write: every format, hub caches, label rules,
//! carved splits and every bad-input error.

use super::*;
use crate::config::CorpusKind;
use crate::table::tests::{write_gz, write_parquet, PqCol};
use crate::Corpus;
use std::path::Path;

fn cfg(dir: &Path, train: &str) -> DataConfig {
    DataConfig {
        corpus: CorpusKind::Text,
        dir: Some(dir.into()),
        train_file: Some(train.into()),
        validation_split: 0.25,
        test_split: 0.25,
        ..Default::default()
    }
}

fn opts(d: &Path) -> HubOptions {
    HubOptions::offline_at(d)
}

fn load_ok(c: &DataConfig, d: &Path) -> TextClassification {
    match crate::load_with(c, 7, &opts(d)).unwrap() {
        Corpus::TextClassification(t) => t,
        other => panic!("{other:?}"),
    }
}

/// 4 classes × 4 rows, string labels, as CSV text.
fn four_class_csv() -> String {
    let mut s = String::from("id,text,label\n");
    for (i, l) in ["world", "sports", "business", "sci/tech"].iter().cycle().take(16).enumerate() {
        s.push_str(&format!("{i},\"text {i}, about {l}\",{l}\n"));
    }
    s
}

#[test]
fn every_format_gives_the_same_corpus() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let csv = four_class_csv();
    std::fs::write(d.join("t.csv"), &csv).unwrap();
    write_gz(&d.join("t.csv.gz"), csv.as_bytes());
    std::fs::write(
        d.join("t.tsv"),
        csv.replace(",\"", "\t").replace("\",", "\t").replace("id,", "id\t").replace("text,", "text\t"),
    )
    .unwrap();
    let rows: Vec<(String, String)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let parts: Vec<&str> = l.splitn(2, ',').collect();
            let (text, label) = parts[1].rsplit_once(',').unwrap();
            (text.trim_matches('"').to_string(), label.to_string())
        })
        .collect();
    let jsonl: String = rows.iter().map(|(t, l)| format!("{}\n", serde_json::json!({"text": t, "label": l}))).collect();
    std::fs::write(d.join("t.jsonl"), &jsonl).unwrap();
    write_gz(&d.join("t.jsonl.gz"), jsonl.as_bytes());
    write_parquet(
        &d.join("t.parquet"),
        &[
            ("text", PqCol::Str(rows.iter().map(|r| Some(r.0.clone())).collect())),
            ("label", PqCol::Str(rows.iter().map(|r| Some(r.1.clone())).collect())),
        ],
    );
    let reference = load_ok(&cfg(d, "t.csv"), d);
    assert_eq!(reference.class_names, ["business", "sci/tech", "sports", "world"]);
    assert_eq!((reference.train.len(), reference.validation.len(), reference.test.len()), (8, 4, 4));
    // Stratified: one of each class in validation and in test.
    for split in [&reference.validation, &reference.test] {
        let mut labels: Vec<usize> = split.iter().map(|e| e.label).collect();
        labels.sort();
        assert_eq!(labels, [0, 1, 2, 3]);
    }
    for f in ["t.csv.gz", "t.tsv", "t.jsonl", "t.jsonl.gz", "t.parquet"] {
        assert_eq!(load_ok(&cfg(d, f), d), reference, "{f}");
    }
    // Seeded: another seed carves other rows; the same seed the same ones.
    let other = match crate::load_with(&cfg(d, "t.csv"), 8, &opts(d)).unwrap() {
        Corpus::TextClassification(t) => t,
        _ => unreachable!(),
    };
    assert_ne!(other.test, reference.test);
}

#[test]
fn integer_labels_sort_numerically_and_labels_fix_the_order() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let body: String = (0..12).map(|i| format!("t{i},{}\n", [2, 10, 1][i % 3])).collect();
    std::fs::write(d.join("train.csv"), format!("text,label\n{body}")).unwrap();
    std::fs::write(d.join("val.csv"), "text,label\nv,10\n").unwrap();
    let c = DataConfig { validation_file: Some("val.csv".into()), validation_split: 0.0, ..cfg(d, "train.csv") };
    let t = load_ok(&c, d);
    assert_eq!(t.class_names, ["1", "2", "10"]);
    assert_eq!(t.validation[0].label, 2);
    let c2 = DataConfig { labels: Some(vec!["10".into(), "2".into(), "1".into(), "7".into()]), ..c.clone() };
    let t = load_ok(&c2, d);
    assert_eq!(t.num_classes, 4);
    assert_eq!(t.validation[0].label, 0);
    // Sentence pairs.
    std::fs::write(
        d.join("p.jsonl"),
        (0..8).map(|i| format!("{{\"a\": \"x{i}\", \"b\": \"y{i}\", \"y\": {}}}\n", i % 2)).collect::<String>(),
    )
    .unwrap();
    let c = DataConfig {
        text_column: "a".into(),
        text_pair_column: Some("b".into()),
        label_column: "y".into(),
        ..cfg(d, "p.jsonl")
    };
    let t = load_ok(&c, d);
    assert!(t.train.iter().all(|e| e.pair.as_deref() == Some(&e.text.replace('x', "y"))));
    assert_eq!(t.train_texts().count(), 2 * t.train.len());
}

#[test]
fn hub_parquet_conversion_through_a_temp_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // The hub's Parquet conversion: revision `refs/convert/parquet`, files
    // `<config>/<split>/0000.parquet`, cached under `refs/refs/convert/parquet` as the Python client does.
    let repo = d.join("hub/datasets--me--news");
    let hash = "89abcdef0123456789abcdef0123456789abcdef";
    std::fs::create_dir_all(repo.join("refs/refs/convert")).unwrap();
    std::fs::write(repo.join("refs/refs/convert/parquet"), hash).unwrap();
    for (split, n) in [("train", 8), ("test", 4)] {
        let dir = repo.join("snapshots").join(hash).join("default").join(split);
        std::fs::create_dir_all(&dir).unwrap();
        write_parquet(
            &dir.join("0000.parquet"),
            &[
                ("text", PqCol::Str((0..n).map(|i| Some(format!("{split} {i}"))).collect())),
                ("label", PqCol::Int((0..n).map(|i| Some(i % 2)).collect())),
            ],
        );
    }
    let c = DataConfig {
        corpus: CorpusKind::Text,
        hub: Some("me/news".into()),
        revision: Some("refs/convert/parquet".into()),
        train_file: Some("default/train/0000.parquet".into()),
        test_file: Some("default/test/0000.parquet".into()),
        validation_split: 0.25,
        ..Default::default()
    };
    let t = load_ok(&c, d);
    assert_eq!((t.train.len(), t.validation.len(), t.test.len()), (6, 2, 4));
    assert_eq!(t.class_names, ["0", "1"]);
    // A repo that is Parquet on its main branch.
    crate::source::tests::make_cache(d, "me/plain", &[]);
    let snap = d.join("hub/datasets--me--plain/snapshots/0123456789abcdef0123456789abcdef01234567");
    std::fs::copy(repo.join("snapshots").join(hash).join("default/train/0000.parquet"), snap.join("train.parquet"))
        .unwrap();
    let c = DataConfig {
        hub: Some("me/plain".into()),
        revision: None,
        train_file: Some("train.parquet".into()),
        test_file: None,
        test_split: 0.25,
        ..c
    };
    assert_eq!(load_ok(&c, d).train.len(), 4);
    let c = DataConfig { train_file: Some("absent.parquet".into()), ..c };
    assert!(matches!(crate::load_with(&c, 7, &opts(d)).unwrap_err(), Error::NotCached { .. }));
}

/// Every bad input of the list: file, line/row and column named, and what was expected.
#[test]
fn bad_rows_are_errors_or_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let good: String = (0..8).map(|i| format!("t{i},{}\n", ["a", "b"][i % 2])).collect();
    let case = |body: &str, c: &DataConfig| {
        std::fs::write(d.join("train.csv"), format!("text,label\n{good}{body}")).unwrap();
        crate::load_with(c, 7, &opts(d)).unwrap_err().to_string()
    };
    let base = cfg(d, "train.csv");
    let e = case("   ,a\n", &base);
    assert!(e.contains("train.csv:10: column `text`: expected a non-empty text, found an empty string"), "{e}");
    let e = case("x,\n", &base);
    assert!(e.contains("train.csv:10: column `label`: expected a label"), "{e}");
    let with_labels = DataConfig { labels: Some(vec!["a".into(), "b".into()]), ..base.clone() };
    let e = case("x,c\n", &with_labels);
    assert!(e.contains("train.csv:10: column `label`: expected one of data.labels = [a, b], found `c`"), "{e}");
    let e = case("x,a,extra\n", &base);
    assert!(e.contains("train.csv:10:") && e.contains("fields"), "{e}");
    let e = case("", &DataConfig { text_column: "review".into(), ..base.clone() });
    assert!(e.contains("missing column `review`") && e.contains("text, label"), "{e}");
    // A class in validation/test that the training split lacks.
    std::fs::write(d.join("train.csv"), format!("text,label\n{good}")).unwrap();
    std::fs::write(d.join("test.jsonl"), "{\"text\": \"x\", \"label\": \"a\"}\n{\"text\": \"y\", \"label\": \"z\"}\n")
        .unwrap();
    let c = DataConfig { test_file: Some("test.jsonl".into()), test_split: 0.0, ..base.clone() };
    let e = crate::load_with(&c, 7, &opts(d)).unwrap_err().to_string();
    assert!(e.contains("test.jsonl:2: column `label`") && e.contains("training split"), "{e}");
    // skip_invalid: the bad row is skipped and counted.
    let t = load_ok(&DataConfig { skip_invalid: true, ..c.clone() }, d);
    assert_eq!((t.test.len(), t.skipped), (1, [0, 0, 1]));
    // A label of the wrong type: a float, and a string among integers (JSON keeps types).
    std::fs::write(d.join("test.jsonl"), "{\"text\": \"x\", \"label\": 1.5}\n").unwrap();
    let e = crate::load_with(&c, 7, &opts(d)).unwrap_err().to_string();
    assert!(
        e.contains(
            "test.jsonl:1: column `label`: expected a label: an integer or a non-empty string, found number 1.5"
        ),
        "{e}"
    );
    std::fs::write(d.join("j.jsonl"), "{\"text\": \"x\", \"label\": 1}\n{\"text\": \"y\", \"label\": \"b\"}\n")
        .unwrap();
    let e = crate::load_with(&cfg(d, "j.jsonl"), 7, &opts(d)).unwrap_err().to_string();
    assert!(e.contains("j.jsonl:2: column `label`: expected an integer label"), "{e}");
    // A Parquet column of the wrong type.
    write_parquet(
        &d.join("w.parquet"),
        &[("text", PqCol::Int(vec![Some(5)])), ("label", PqCol::Str(vec![Some("a".into())]))],
    );
    let e = crate::load_with(&cfg(d, "w.parquet"), 7, &opts(d)).unwrap_err().to_string();
    assert!(
        e.contains(
            "w.parquet:1: column `text`: expected a non-empty text, found integer 5 (Parquet column type INT64)"
        ),
        "{e}"
    );
    // One class only.
    std::fs::write(d.join("one.csv"), "text,label\nx,a\ny,a\n").unwrap();
    let e = crate::load_with(&cfg(d, "one.csv"), 7, &opts(d)).unwrap_err().to_string();
    assert!(e.contains("at least two"), "{e}");
    // Config keys: no validation source; a split fraction out of range; text keys on sst2.
    for (c, key) in [
        (DataConfig { validation_split: 0.0, ..base.clone() }, "data.validation_split"),
        (DataConfig { test_split: 1.5, ..base.clone() }, "data.test_split"),
        (DataConfig { train_file: None, ..base.clone() }, "data.train_file"),
        (DataConfig { dir: None, ..base.clone() }, "data.dir"),
        (DataConfig { labels: Some(vec!["a".into()]), ..base.clone() }, "data.labels"),
        (DataConfig { skip_invalid: true, ..DataConfig::default() }, "data.skip_invalid"),
    ] {
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(&format!("`{key}`")), "{e} should name {key}");
    }
}
