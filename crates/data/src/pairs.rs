//! Your own text pairs for sequence-to-sequence tasks (`corpus = "pairs"`): a source and a
//! target column of a CSV/TSV/JSON Lines/Parquet file ([`crate::table`]), or two aligned
//! plain-text files per split, one sentence per line (`<prefix>.<source_lang>` and
//! `<prefix>.<target_lang>`, as fairseq and OpenNMT lay them out).
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("train.de"), "Ein Hund.\nZwei Katzen.\n")?;
//! std::fs::write(dir.path().join("train.en"), "A dog.\nTwo cats.\n")?;
//! let pairs = data::pairs::read_parallel(&dir.path().join("train.de"), &dir.path().join("train.en"), "train")?;
//! assert_eq!((pairs[1].src.as_str(), pairs[1].tgt.as_str()), ("Zwei Katzen.", "Two cats."));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::config::DataConfig;
use crate::error::{Error, Result};
use crate::multi30k::{PairExample, Translation};
use crate::source::HubOptions;
use crate::table::{read_bytes, utf8, Cell, Format, Table};
use std::path::Path;

/// Loads a `corpus = "pairs"` config: three split files (tables with `source_column` and
/// `target_column`), or with `source_lang`/`target_lang` set, three file prefixes each naming
/// two aligned plain-text files; `extra_train_file`, laid out the same way, is appended to
/// the training split.
///
/// Errors: reading ([`Table::read`], [`Error::MissingFile`]), [`Error::MissingColumn`],
/// [`Error::Cell`] for an empty or non-string text, [`Error::Table`] for plain-text files of
/// different line counts or an empty line, [`Error::EmptySplit`].
pub fn load(cfg: &DataConfig, hub: &HubOptions) -> Result<Translation> {
    cfg.validate()?;
    let src = crate::source::source_of(cfg).expect("validated: pairs has a dir or a hub");
    let names = [&cfg.train_file, &cfg.validation_file, &cfg.test_file];
    let mut splits: [Vec<PairExample>; 3] = Default::default();
    for ((name, split), out) in names.iter().zip(["train", "validation", "test"]).zip(splits.iter_mut()) {
        let name = name.as_deref().expect("validated: pairs names every split file");
        *out = match (&cfg.source_lang, &cfg.target_lang) {
            (Some(s), Some(t)) => {
                let a = src.fetch(&format!("{name}.{s}"), hub)?;
                let b = src.fetch(&format!("{name}.{t}"), hub)?;
                read_parallel(&a, &b, split)?
            }
            _ => read_table(&Table::read(&src.fetch(name, hub)?)?, cfg, split)?,
        };
    }
    let [mut train, validation, test] = splits;
    if let Some(extra) = &cfg.extra_train_file {
        // Further training pairs in the same folder or repo and the same layout.
        let name = extra.to_string_lossy();
        train.extend(match (&cfg.source_lang, &cfg.target_lang) {
            (Some(s), Some(t)) => {
                let a = src.fetch(&format!("{name}.{s}"), hub)?;
                let b = src.fetch(&format!("{name}.{t}"), hub)?;
                read_parallel(&a, &b, "train (extra_train_file)")?
            }
            _ => read_table(&Table::read(&src.fetch(&name, hub)?)?, cfg, "train (extra_train_file)")?,
        });
    }
    let (src_lang, tgt_lang) = match (&cfg.source_lang, &cfg.target_lang) {
        (Some(s), Some(t)) => (s.clone(), t.clone()),
        _ => (cfg.source_column.clone(), cfg.target_column.clone()),
    };
    Ok(Translation { train, validation, test, src_lang, tgt_lang })
}

/// The `source_column` / `target_column` pairs of a table; every text trimmed and non-empty.
pub fn read_table(table: &Table, cfg: &DataConfig, split: &str) -> Result<Vec<PairExample>> {
    let s = table.column(&cfg.source_column, "data.source_column")?;
    let t = table.column(&cfg.target_column, "data.target_column")?;
    let text = |row: &crate::table::Row, c: usize| match &row.cells[c] {
        Cell::Str(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(table.cell_error(row, c, "a non-empty text")),
    };
    let out = table
        .rows
        .iter()
        .map(|r| Ok(PairExample { src: text(r, s)?, tgt: text(r, t)? }))
        .collect::<Result<Vec<_>>>()?;
    if out.is_empty() {
        return Err(Error::EmptySplit { path: table.path.clone(), split: split.into(), detail: None });
    }
    Ok(out)
}

/// Two aligned plain-text files (optionally `.gz`), one sentence per line: line i of
/// `source` is translated by line i of `target`.
pub fn read_parallel(source: &Path, target: &Path, split: &str) -> Result<Vec<PairExample>> {
    let lines = |p: &Path| -> Result<Vec<String>> {
        let gz = p.extension().is_some_and(|e| e == "gz");
        let bytes = read_bytes(p, gz)?;
        let text = utf8(p, &bytes)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        text.lines()
            .enumerate()
            .map(|(i, l)| {
                if l.trim().is_empty() {
                    Err(Error::Table {
                        path: p.into(),
                        line: Some(i + 1),
                        msg: "empty line (expected one sentence per line, aligned with the other file)".into(),
                    })
                } else {
                    Ok(l.trim().to_string())
                }
            })
            .collect()
    };
    let (a, b) = (lines(source)?, lines(target)?);
    if a.len() != b.len() {
        return Err(Error::Table {
            path: target.into(),
            line: None,
            msg: format!(
                "{} lines, but its source side {} has {}: aligned files need one line per sentence on both sides",
                b.len(),
                source.display(),
                a.len()
            ),
        });
    }
    if a.is_empty() {
        return Err(Error::EmptySplit { path: source.into(), split: split.into(), detail: None });
    }
    Ok(a.into_iter().zip(b).map(|(src, tgt)| PairExample { src, tgt }).collect())
}

/// Whether `name` is a table file (by extension) rather than a plain-text prefix.
pub fn is_table(name: &str) -> bool {
    Format::of(Path::new(name)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CorpusKind;
    use crate::table::tests::{write_gz, write_parquet, PqCol};
    use crate::Corpus;

    fn base(d: &Path) -> DataConfig {
        DataConfig {
            corpus: CorpusKind::Pairs,
            dir: Some(d.into()),
            train_file: Some("train".into()),
            validation_file: Some("val".into()),
            test_file: Some("test".into()),
            ..Default::default()
        }
    }

    fn load_ok(c: &DataConfig, d: &Path) -> Translation {
        match crate::load_with(c, 0, &HubOptions::offline_at(d)).unwrap() {
            Corpus::Translation(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_format_and_parallel_files() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let pairs = [("Ein Hund.", "A dog."), ("Zwei, Katzen.", "Two, cats.")];
        for split in ["train", "val", "test"] {
            std::fs::write(d.join(format!("{split}.de")), "Ein Hund.\nZwei, Katzen.\n").unwrap();
            write_gz(&d.join(format!("{split}.en.gz")), b"A dog.\nTwo, cats.\n");
            let csv: String = std::iter::once("de,en\n".to_string())
                .chain(pairs.iter().map(|(a, b)| format!("\"{a}\",\"{b}\"\n")))
                .collect();
            std::fs::write(d.join(format!("{split}.csv")), &csv).unwrap();
            let jsonl: String =
                pairs.iter().map(|(a, b)| format!("{}\n", serde_json::json!({"de": a, "en": b}))).collect();
            write_gz(&d.join(format!("{split}.jsonl.gz")), jsonl.as_bytes());
            write_parquet(
                &d.join(format!("{split}.parquet")),
                &[
                    ("de", PqCol::Str(pairs.iter().map(|p| Some(p.0.into())).collect())),
                    ("en", PqCol::Str(pairs.iter().map(|p| Some(p.1.into())).collect())),
                ],
            );
        }
        let c = DataConfig { source_lang: Some("de".into()), target_lang: Some("en.gz".into()), ..base(d) };
        let reference = load_ok(&c, d);
        assert_eq!(reference.train[1], PairExample { src: "Zwei, Katzen.".into(), tgt: "Two, cats.".into() });
        for ext in ["csv", "jsonl.gz", "parquet"] {
            let c = DataConfig {
                train_file: Some(format!("train.{ext}")),
                validation_file: Some(format!("val.{ext}")),
                test_file: Some(format!("test.{ext}")),
                source_column: "de".into(),
                target_column: "en".into(),
                ..base(d)
            };
            let t = load_ok(&c, d);
            assert_eq!((&t.train, &t.test, t.src_lang.as_str()), (&reference.train, &reference.test, "de"), "{ext}");
        }
    }

    #[test]
    fn extra_train_file_is_appended_to_train() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let row = |a: &str, b: &str| format!("{}\n", serde_json::json!({"document": a, "summary": b}));
        for split in ["train", "val", "test"] {
            std::fs::write(d.join(format!("{split}.jsonl")), row("a b c", "a")).unwrap();
        }
        std::fs::write(d.join("more.jsonl"), row("d e f", "d") + &row("g h", "h")).unwrap();
        let c = DataConfig {
            train_file: Some("train.jsonl".into()),
            validation_file: Some("val.jsonl".into()),
            test_file: Some("test.jsonl".into()),
            extra_train_file: Some("more.jsonl".into()),
            source_column: "document".into(),
            target_column: "summary".into(),
            ..base(d)
        };
        let t = load_ok(&c, d);
        let srcs: Vec<&str> = t.train.iter().map(|e| e.src.as_str()).collect();
        assert_eq!((srcs, t.validation.len(), t.test.len()), (vec!["a b c", "d e f", "g h"], 1, 1));
        let missing = DataConfig { extra_train_file: Some("nope.jsonl".into()), ..c };
        let e = crate::load_with(&missing, 0, &HubOptions::offline_at(d)).unwrap_err().to_string();
        assert!(e.contains("nope.jsonl"), "{e}");
    }

    #[test]
    fn misaligned_and_empty_lines_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("a.de"), "x\ny\n").unwrap();
        std::fs::write(d.join("a.en"), "x\n").unwrap();
        let e = read_parallel(&d.join("a.de"), &d.join("a.en"), "train").unwrap_err().to_string();
        assert!(e.contains("a.en") && e.contains("1 lines") && e.contains("has 2"), "{e}");
        std::fs::write(d.join("a.en"), "x\n \n").unwrap();
        let e = read_parallel(&d.join("a.de"), &d.join("a.en"), "train").unwrap_err().to_string();
        assert!(e.contains("a.en:2: empty line"), "{e}");
        std::fs::write(d.join("t.csv"), "src,tgt\nx,\n").unwrap();
        let c = DataConfig { source_column: "src".into(), target_column: "tgt".into(), ..base(d) };
        let e = read_table(&Table::read(&d.join("t.csv")).unwrap(), &c, "train").unwrap_err().to_string();
        assert!(e.contains("t.csv:2: column `tgt`: expected a non-empty text"), "{e}");
        let e = read_table(&Table::read(&d.join("t.csv")).unwrap(), &base(d), "train").unwrap_err().to_string();
        assert!(e.contains("missing column `source`") && e.contains("src, tgt"), "{e}");
        let e = DataConfig { test_file: None, ..base(d) }.validate().unwrap_err().to_string();
        assert!(e.contains("data.test_file"), "{e}");
    }
}
