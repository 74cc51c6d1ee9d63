//! `load`: a `[data]` config to typed examples per split.

use crate::config::{CorpusKind, DataConfig};
use crate::error::{Error, Result};
use crate::ett::Forecast;
use crate::multi30k::Translation;
pub use crate::source::source_of;
use crate::source::HubOptions;
use crate::sst2::TextClassification;
use crate::synthetic::{AddingTask, CopyTask};
use std::path::PathBuf;

/// A loaded corpus, one variant per task kind.
// Loaded once per run; boxing the variants would only add noise to every match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Corpus {
    /// SST-2 or your own texts (`corpus = "text"`): texts with class labels.
    TextClassification(TextClassification),
    /// Multi30k or your own pairs (`corpus = "pairs"`): source/target texts.
    Translation(Translation),
    /// ETT or your own series (`corpus = "series"`): normalised series split by rows, cut
    /// into windows on demand.
    Forecast(Forecast),
    /// The adding problem.
    Adding(AddingTask),
    /// The copy task.
    Copy(CopyTask),
}

impl Corpus {
    /// (train, validation, test) example counts; synthetic training counts are per epoch,
    /// forecasting counts are windows.
    pub fn split_sizes(&self) -> [usize; 3] {
        match self {
            Corpus::TextClassification(c) => [c.train.len(), c.validation.len(), c.test.len()],
            Corpus::Translation(c) => [c.train.len(), c.validation.len(), c.test.len()],
            Corpus::Forecast(f) => [f.train.num_windows(), f.validation.num_windows(), f.test.num_windows()],
            Corpus::Adding(t) => [t.train_size, t.validation.len(), t.test.len()],
            Corpus::Copy(t) => [t.train_size, t.validation.len(), t.test.len()],
        }
    }
}

/// Loads the corpus `cfg` names, reading HF_HOME / HF_HUB_CACHE / HF_HUB_OFFLINE /
/// HF_ENDPOINT from the environment. `seed` drives the synthetic tasks.
pub fn load(cfg: &DataConfig, seed: u64) -> Result<Corpus> {
    load_with(cfg, seed, &HubOptions::from_env())
}

/// [`load`] with explicit hub options (tests, or callers that resolve the environment themselves).
pub fn load_with(cfg: &DataConfig, seed: u64, hub: &HubOptions) -> Result<Corpus> {
    cfg.validate()?;
    let fetch_splits = || -> Result<[PathBuf; 3]> {
        let src = source_of(cfg).expect("file corpora always have a source");
        let [a, b, c] = cfg.split_files().expect("file corpora have split files");
        Ok([src.fetch(&a, hub)?, src.fetch(&b, hub)?, src.fetch(&c, hub)?])
    };
    Ok(match cfg.corpus {
        CorpusKind::Sst2 => {
            let p = fetch_splits()?;
            let extra = cfg.extra_train_file.as_ref().map(|e| match &cfg.dir {
                Some(d) if e.is_relative() => d.join(e),
                _ => e.clone(),
            });
            if let Some(e) = &extra {
                if !e.is_file() {
                    return Err(Error::MissingFile {
                        path: e.clone(),
                        hint: Some("named by data.extra_train_file".into()),
                    });
                }
            }
            Corpus::TextClassification(crate::sst2::load([&p[0], &p[1], &p[2]], extra.as_deref())?)
        }
        CorpusKind::Text => Corpus::TextClassification(crate::text::load(cfg, hub, seed)?),
        CorpusKind::Pairs => Corpus::Translation(crate::pairs::load(cfg, hub)?),
        CorpusKind::Series => Corpus::Forecast(crate::series::load(cfg, hub)?),
        CorpusKind::Multi30k => {
            let p = fetch_splits()?;
            Corpus::Translation(crate::multi30k::load([&p[0], &p[1], &p[2]], cfg.direction)?)
        }
        CorpusKind::Ett => {
            let src = source_of(cfg).expect("ett has a source");
            let path = src.fetch(cfg.file.as_deref().unwrap_or("ETTh1.csv"), hub)?;
            Corpus::Forecast(crate::ett::load(&path, cfg)?)
        }
        CorpusKind::Adding => Corpus::Adding(AddingTask::new(cfg.length, cfg.train_size, cfg.eval_size, seed)),
        CorpusKind::Copy => Corpus::Copy(CopyTask::new(cfg.length, cfg.train_size, cfg.eval_size, seed)),
        // Its front-end settings (MFCCs, split, normalisation) are not `[data]` keys.
        CorpusKind::Fsdd => {
            return Err(Error::config(
                "data.corpus",
                "corpus `fsdd` is loaded by `data::audio::load_fsdd` with an `audio::FsddConfig`, not by `data::load`",
            ))
        }
        CorpusKind::Audio => return Err(Error::config(
            "data.corpus",
            "corpus `audio` is loaded by `data::audio::load_clips` with an `audio::ClipFrontEnd`, not by `data::load`",
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Direction, Features};
    use crate::source::tests::make_cache;
    use std::path::Path;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    const SST: &str = "{\"text\": \"a -lrb- fine -rrb- film\", \"label\": 1}\n{\"text\": \"dull\", \"label\": 0}\n";
    const M30K: &str = "{\"en\": \"A dog.\", \"de\": \"Ein Hund.\"}\n";

    fn sst_dir(dir: &Path) -> DataConfig {
        for f in ["train.jsonl", "dev.jsonl", "test.jsonl"] {
            write(dir, f, SST);
        }
        DataConfig { dir: Some(dir.into()), ..Default::default() }
    }

    fn offline(dir: &Path) -> HubOptions {
        HubOptions::offline_at(dir)
    }

    #[test]
    fn every_corpus_from_a_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let cfg = sst_dir(d);
        let Corpus::TextClassification(c) = load_with(&cfg, 0, &offline(d)).unwrap() else { panic!() };
        assert_eq!(c.train[0].text, "a ( fine ) film");
        write(d, "phr.jsonl", "{\"text\": \"fine\", \"label\": 1}\n");
        let cfg2 = DataConfig { extra_train_file: Some("phr.jsonl".into()), ..cfg.clone() };
        let Corpus::TextClassification(c) = load_with(&cfg2, 0, &offline(d)).unwrap() else { panic!() };
        assert_eq!((c.train.len(), c.extra_train), (3, 1));

        std::fs::create_dir_all(d.join("m")).unwrap();
        for f in ["train.jsonl", "val.jsonl", "test.jsonl"] {
            write(&d.join("m"), f, M30K);
        }
        let cfg = DataConfig {
            corpus: CorpusKind::Multi30k,
            dir: Some(d.join("m")),
            direction: Direction::EnDe,
            ..Default::default()
        };
        let corpus = load_with(&cfg, 0, &offline(d)).unwrap();
        assert_eq!(corpus.split_sizes(), [1, 1, 1]);
        let Corpus::Translation(t) = corpus else { panic!() };
        assert_eq!((t.train[0].src.as_str(), t.train[0].tgt.as_str()), ("A dog.", "Ein Hund."));

        crate::ett::tests::write_csv(&d.join("ETTh2.csv"), 40, 60);
        let cfg = DataConfig {
            corpus: CorpusKind::Ett,
            dir: Some(d.into()),
            file: Some("ETTh2.csv".into()),
            features: Features::M,
            input_len: 4,
            horizon: 2,
            split_rows: Some([20, 8, 8]),
            ..Default::default()
        };
        assert_eq!(load_with(&cfg, 0, &offline(d)).unwrap().split_sizes(), [15, 7, 7]);

        for corpus in [CorpusKind::Adding, CorpusKind::Copy] {
            let cfg = DataConfig { corpus, length: 10, train_size: 7, eval_size: 3, ..Default::default() };
            let a = load_with(&cfg, 5, &offline(d)).unwrap();
            assert_eq!(a.split_sizes(), [7, 3, 3]);
            assert_eq!(a, load_with(&cfg, 5, &offline(d)).unwrap());
            assert_ne!(a, load_with(&cfg, 6, &offline(d)).unwrap());
        }
    }

    #[test]
    fn hub_path_through_a_temp_cache() {
        let tmp = tempfile::tempdir().unwrap();
        make_cache(tmp.path(), "SetFit/sst2", &[("train.jsonl", SST), ("dev.jsonl", SST), ("test.jsonl", SST)]);
        make_cache(tmp.path(), "me/m30k", &[("train.jsonl", M30K), ("val.jsonl", M30K), ("test.jsonl", M30K)]);
        // Default hub repo of the corpus, offline.
        let corpus = load_with(&DataConfig::default(), 0, &offline(tmp.path())).unwrap();
        assert_eq!(corpus.split_sizes(), [2, 2, 2]);
        let cfg = DataConfig { corpus: CorpusKind::Multi30k, hub: Some("me/m30k".into()), ..Default::default() };
        assert_eq!(load_with(&cfg, 0, &offline(tmp.path())).unwrap().split_sizes(), [1, 1, 1]);
        // Not cached: the error names the repo and the file and points at `dir`.
        let cfg = DataConfig { corpus: CorpusKind::Ett, ..Default::default() };
        let e = load_with(&cfg, 0, &offline(tmp.path())).unwrap_err().to_string();
        assert!(e.contains("pkr7098/etth1") && e.contains("ETTh1.csv") && e.contains("dir = "), "{e}");
    }

    /// Every bad-input case: the error names the file, the line (or column) and what was expected.
    #[test]
    fn bad_inputs_are_typed_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let cfg = sst_dir(d);
        let case = |train: &str| {
            write(d, "train.jsonl", train);
            load_with(&cfg, 0, &offline(d)).unwrap_err()
        };
        let e = case("{\"text\": \"ok\", \"label\": 1}\n{\"text\": \"broken\", \"label\": 1\n");
        assert!(matches!(e, Error::Json { line: 2, .. }), "{e:?}");
        assert!(e.to_string().contains("train.jsonl:2:"), "{e}");
        let e = case("{\"text\": \"ok\", \"label\": 1}\n\n");
        assert!(matches!(e, Error::Json { line: 2, .. }), "{e:?}");
        let e = case("[1, 2]\n");
        assert!(matches!(e, Error::Json { line: 1, .. }), "{e:?}");
        let e = case("{\"text\": \"ok\"}\n");
        assert!(matches!(&e, Error::MissingField { line: 1, field, .. } if field == "label"), "{e:?}");
        assert!(e.to_string().contains("train.jsonl:1: missing field `label`"), "{e}");
        let e = case("{\"label\": 0}\n");
        assert!(matches!(&e, Error::MissingField { field, .. } if field == "text"), "{e:?}");
        let e = case("{\"text\": \"ok\", \"label\": 1}\n{\"text\": \"x\", \"label\": 2}\n");
        assert!(matches!(e, Error::LabelOutOfRange { line: 2, label: 2, num_classes: 2, .. }), "{e:?}");
        let e = case("{\"text\": \"x\", \"label\": -1}\n");
        assert!(matches!(e, Error::LabelOutOfRange { label: -1, .. }), "{e:?}");
        let e = case("{\"text\": \"x\", \"label\": \"1\"}\n");
        assert!(
            matches!(e, Error::BadField { .. }) && e.to_string().contains("expected an integer class label"),
            "{e}"
        );
        let e = case("{\"text\": 5, \"label\": 1}\n");
        assert!(matches!(e, Error::BadField { .. }), "{e:?}");
        let e = case("{\"text\": \"  \", \"label\": 1}\n");
        assert!(e.to_string().contains("an empty string"), "{e}");
        let e = case("");
        assert!(matches!(&e, Error::EmptySplit { split, .. } if split == "train"), "{e:?}");
        std::fs::write(d.join("train.jsonl"), b"{\"text\": \"ok\", \"label\": 1}\n{\"text\": \"\xff\"}\n").unwrap();
        let e = load_with(&cfg, 0, &offline(d)).unwrap_err();
        assert!(matches!(e, Error::Json { line: 2, .. }) && e.to_string().contains("UTF-8"), "{e}");

        // Missing files: a split, the extra file, the folder.
        write(d, "train.jsonl", SST);
        std::fs::remove_file(d.join("test.jsonl")).unwrap();
        let e = load_with(&cfg, 0, &offline(d)).unwrap_err();
        assert!(matches!(e, Error::MissingFile { .. }) && e.to_string().contains("test.jsonl"), "{e}");
        write(d, "test.jsonl", SST);
        let c = DataConfig { extra_train_file: Some("nope.jsonl".into()), ..cfg.clone() };
        assert!(load_with(&c, 0, &offline(d)).unwrap_err().to_string().contains("nope.jsonl"));
        let c = DataConfig { dir: Some(d.join("absent")), ..cfg.clone() };
        assert!(load_with(&c, 0, &offline(d)).unwrap_err().to_string().contains("does not exist"));

        // CSV: missing column, non-number, wrong cell count, bad date, empty, too short.
        let ett = DataConfig {
            corpus: CorpusKind::Ett,
            dir: Some(d.into()),
            input_len: 2,
            horizon: 1,
            split_rows: Some([3, 2, 2]),
            ..Default::default()
        };
        let rows = |body: &str| {
            write(d, "ETTh1.csv", body);
            load_with(&ett, 0, &offline(d)).unwrap_err()
        };
        let good_rows: String = (0..7).map(|h| format!("2016-07-01 0{h}:00:00,1,{h}\n")).collect();
        let e = rows(&format!("date,HUFL,OTX\n{good_rows}"));
        assert!(matches!(&e, Error::MissingColumn { column, .. } if column == "OT"), "{e:?}");
        assert!(e.to_string().contains("missing column `OT`"), "{e}");
        let e = rows("date,HUFL,OT\n2016-07-01 00:00:00,1,2\n2016-07-01 01:00:00,1,abc\n");
        assert!(matches!(e, Error::Csv { line: 3, column: 3, .. }), "{e:?}");
        assert!(e.to_string().contains("ETTh1.csv:3:3: expected a finite number in column `OT`, found `abc`"), "{e}");
        let e = rows("date,HUFL,OT\n2016-07-01 00:00:00,1\n");
        assert!(matches!(e, Error::Csv { line: 2, .. }), "{e:?}");
        let e = rows("date,HUFL,OT\n2016-07-41 00:00:00,1,2\n");
        assert!(matches!(e, Error::Csv { line: 2, column: 1, .. }), "{e:?}");
        let e = rows("date,HUFL,OT\n2016-07-01 00:00:00,1,NaN\n");
        assert!(matches!(e, Error::Csv { line: 2, column: 3, .. }), "{e:?}");
        assert!(matches!(rows(""), Error::EmptySplit { .. }));
        assert!(matches!(rows("date,HUFL,OT\n"), Error::EmptySplit { .. }));
        let e =
            rows(&format!("date,HUFL,OT\n{}", good_rows.lines().take(4).map(|l| format!("{l}\n")).collect::<String>()));
        assert!(matches!(e, Error::TooFewRows { needed: 7, .. }), "{e:?}");
        // A split too short for one window.
        write(d, "ETTh1.csv", &format!("date,HUFL,OT\n{good_rows}"));
        let c = DataConfig { horizon: 2, input_len: 1, split_rows: Some([4, 1, 2]), ..ett.clone() };
        let e = load_with(&c, 0, &offline(d)).unwrap_err();
        assert!(matches!(&e, Error::EmptySplit { split, .. } if split == "validation"), "{e:?}");
        assert!(load_with(&ett, 0, &offline(d)).is_ok());
        // Calendar features need a date column.
        write(d, "ETTh1.csv", "HUFL,OT\n1,2\n");
        let c = DataConfig { calendar: true, ..ett.clone() };
        assert!(matches!(load_with(&c, 0, &offline(d)).unwrap_err(), Error::MissingColumn { .. }));
        let e = load_with(&ett, 0, &offline(d)).unwrap_err();
        assert!(e.to_string().contains("data.freq"), "{e}");
    }
}
