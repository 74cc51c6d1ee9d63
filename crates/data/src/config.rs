//! The `[data]` and `[tokenizer]` sections of a run config.
//!
//! Every field has a default (given in its doc comment), so an empty section is valid for
//! the default corpus (SST-2 from the hub). `validate()` checks ranges and combinations and
//! names the offending key as `data.<key>` / `tokenizer.<key>`.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which corpus to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CorpusKind {
    /// SST-2 sentence-level sentiment (binary), hub `SetFit/sst2`.
    #[default]
    Sst2,
    /// Multi30k EN–DE translation, hub `bentrevett/multi30k`.
    Multi30k,
    /// ETT transformer-temperature forecasting CSV, hub `pkr7098/etth1`.
    Ett,
    /// The adding problem (synthetic, no files).
    Adding,
    /// The copy task (synthetic, no files).
    Copy,
    /// Free Spoken Digit Dataset: a folder (`dir`) of `{digit}_{speaker}_{index}.wav` files,
    /// featurised by [`crate::audio::load_fsdd`].
    Fsdd,
    /// Your own labelled texts: CSV/TSV/JSON Lines/Parquet files (optionally `.gz`) with a
    /// text column (and an optional second text) and a label column ([`crate::text`]).
    Text,
    /// Your own text pairs for sequence-to-sequence tasks: source and target columns of a
    /// table, or two aligned plain-text files per split ([`crate::pairs`]).
    Pairs,
    /// Your own time series: a CSV/TSV/JSON Lines/Parquet file with an optional time column
    /// and numeric columns, forecast as ETT is ([`crate::series`]).
    Series,
    /// Your own labelled audio clips: a folder per class (`<dir>/<label>/*.wav`) or a manifest
    /// table with an audio-path column and a label column, featurised by
    /// [`crate::audio::load_clips`].
    Audio,
}

/// How missing values of a series are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fill {
    /// Carry the last value forward (a missing first value is still an error).
    Forward,
}

impl CorpusKind {
    /// The hub dataset used when neither `hub` nor `dir` is set.
    pub fn default_hub(self) -> Option<&'static str> {
        match self {
            CorpusKind::Sst2 => Some("SetFit/sst2"),
            CorpusKind::Multi30k => Some("bentrevett/multi30k"),
            CorpusKind::Ett => Some("pkr7098/etth1"),
            CorpusKind::Adding
            | CorpusKind::Copy
            | CorpusKind::Fsdd
            | CorpusKind::Text
            | CorpusKind::Pairs
            | CorpusKind::Series
            | CorpusKind::Audio => None,
        }
    }

    /// Default (train, validation, test) file names: the names the default hub repo serves.
    pub fn default_files(self) -> Option<[&'static str; 3]> {
        match self {
            CorpusKind::Sst2 => Some(["train.jsonl", "dev.jsonl", "test.jsonl"]),
            CorpusKind::Multi30k => Some(["train.jsonl", "val.jsonl", "test.jsonl"]),
            _ => None,
        }
    }

    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            CorpusKind::Sst2 => "sst2",
            CorpusKind::Multi30k => "multi30k",
            CorpusKind::Ett => "ett",
            CorpusKind::Adding => "adding",
            CorpusKind::Copy => "copy",
            CorpusKind::Fsdd => "fsdd",
            CorpusKind::Text => "text",
            CorpusKind::Pairs => "pairs",
            CorpusKind::Series => "series",
            CorpusKind::Audio => "audio",
        }
    }
}

/// Translation direction for Multi30k.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Direction {
    /// German source, English target.
    #[default]
    #[serde(rename = "de-en")]
    DeEn,
    /// English source, German target.
    #[serde(rename = "en-de")]
    EnDe,
}

/// ETT feature set, as in the Informer code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Features {
    /// Univariate: the target column in, the target column out.
    #[default]
    S,
    /// Multivariate: every value column in, every value column out.
    M,
    /// Every value column in, the target column out.
    MS,
}

/// ETT sampling interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Freq {
    /// Hourly (ETTh1/ETTh2): splits of 8,640 / 2,880 / 2,880 rows.
    #[serde(rename = "h")]
    Hourly,
    /// Every 15 minutes (ETTm1/ETTm2): 4× the hourly rows.
    #[serde(rename = "15min")]
    Min15,
}

/// The `[data]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Which corpus: "sst2" | "text" | "pairs" | "series" | "audio" | "multi30k" | "ett" | "adding" |
    /// "copy" | "fsdd".
    /// Default "sst2".
    pub corpus: CorpusKind,
    /// Hugging Face hub dataset repo "owner/name". Default: the corpus' own repo
    /// (sst2: "SetFit/sst2", multi30k: "bentrevett/multi30k", ett: "pkr7098/etth1") when
    /// `dir` is not set. Cache first; honours HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, HF_ENDPOINT.
    pub hub: Option<String>,
    /// Hub revision (branch, tag or commit). Default "main".
    pub revision: Option<String>,
    /// Local folder holding the split files (instead of `hub`); for fsdd, the folder of
    /// recordings (required). Default: unset.
    pub dir: Option<PathBuf>,
    /// Training split file name inside the repo/folder. Default: sst2 "train.jsonl",
    /// multi30k "train.jsonl".
    pub train_file: Option<String>,
    /// Validation split file name. Default: sst2 "dev.jsonl", multi30k "val.jsonl".
    pub validation_file: Option<String>,
    /// Test split file name. Default: sst2 "test.jsonl", multi30k "test.jsonl".
    pub test_file: Option<String>,
    /// ETT only: the CSV holding all three splits (cut by rows). Default "ETTh1.csv".
    pub file: Option<String>,
    /// SST-2: a further JSON Lines training file (same fields), appended to the training
    /// split, e.g. the phrase-level set; a relative path is taken relative to `dir` when `dir`
    /// is set, else to the working directory. Pairs: a further training file (or plain-text
    /// prefix) in the same folder or hub repo, laid out like `train_file`. Default: unset.
    pub extra_train_file: Option<PathBuf>,
    /// Truncate token sequences to at most this many tokens. Default: unset (no truncation).
    pub max_len: Option<usize>,
    /// Pool size for length bucketing, in batches: examples are sorted by length within a
    /// pool of `bucket_pool` batches, then the batches are shuffled. 1 turns bucketing off.
    /// Default 50.
    pub bucket_pool: usize,
    /// Multi30k direction: "de-en" | "en-de". Default "de-en".
    pub direction: Direction,
    /// ETT: input window length in rows. Default 96.
    pub input_len: usize,
    /// ETT: forecast horizon in rows. Default 24.
    pub horizon: usize,
    /// ETT: "S" (target only) | "M" (all columns in and out) | "MS" (all in, target out).
    /// Default "S".
    pub features: Features,
    /// ETT: target column. Default "OT".
    pub target: String,
    /// ETT: append calendar features (hour, weekday, day of month, day of year, and minute
    /// for 15-minute data; each scaled to [-0.5, 0.5] as Informer's `timeenc=1`) to the inputs.
    /// Default false.
    pub calendar: bool,
    /// ETT: sampling interval "h" | "15min". Default: from the first two dates of the file.
    pub freq: Option<Freq>,
    /// ETT: rows in (train, validation, test). Default: Informer's [8640, 2880, 2880] for
    /// hourly data, 4× that for 15-minute data.
    pub split_rows: Option<[usize; 3]>,
    /// Synthetic tasks: T, the sequence length (adding) or the number of blanks between
    /// the symbols and their recall (copy). Default 100.
    pub length: usize,
    /// Synthetic tasks: fresh training samples generated per epoch. Default 10000.
    pub train_size: usize,
    /// Synthetic tasks: size of the fixed validation set and of the fixed test set. Default 1000.
    pub eval_size: usize,
    /// text: the column holding the text. Default "text".
    pub text_column: String,
    /// text: a second text column for sentence-pair tasks (both texts reach the model, joined
    /// by the `[EOS]` token). Default: unset.
    pub text_pair_column: Option<String>,
    /// text, audio (manifest): the column holding the label (an integer or a string). Default "label".
    pub label_column: String,
    /// audio (manifest): the column holding each clip's WAV file, relative to the manifest's
    /// folder. Default "audio".
    pub audio_column: String,
    /// text, audio: the class names in label order (integers written as strings or numbers); rows
    /// with other labels are errors. Default: the labels of the training split, sorted
    /// (integers numerically).
    #[serde(deserialize_with = "de_labels", default)]
    pub labels: Option<Vec<String>>,
    /// text, audio: fraction of the training file (or folder) carved out (seeded, stratified by label) as the
    /// validation split when `validation_file` is unset. Default 0.
    pub validation_split: f64,
    /// text, audio: fraction of the training file (or folder) carved out as the test split when `test_file` is
    /// unset. Default 0.
    pub test_split: f64,
    /// text: skip rows with an unusable cell (empty text, missing or unknown label, ...)
    /// instead of stopping at the first, and count them (`skipped_rows` in the metrics).
    /// Default false.
    pub skip_invalid: bool,
    /// pairs: the column holding the source text. Default "source".
    pub source_column: String,
    /// pairs: the column holding the target text. Default "target".
    pub target_column: String,
    /// pairs, plain-text form: each `*_file` is a prefix and the split's files are
    /// `<prefix>.<source_lang>` and `<prefix>.<target_lang>` (e.g. `train.de`, `train.en`),
    /// one sentence per line. Default: unset (the files are tables).
    pub source_lang: Option<String>,
    /// pairs, plain-text form: the target files' extension (with `source_lang`). Default: unset.
    pub target_lang: Option<String>,
    /// series: the time column, parsed as `YYYY-MM-DD[ HH:MM[:SS]]` (also `/` for `-`, ISO
    /// 8601's `T`, a trailing `Z`); every other column is a value column. Default: unset (no
    /// time column: every column is a value column, and `calendar` is unavailable).
    pub time_column: Option<String>,
    /// series: (train, validation, test) fractions of the rows, e.g. [0.7, 0.1, 0.2] (train =
    /// ⌊n·a⌋, test = ⌊n·c⌋, validation the rest). Default: unset; with neither this nor
    /// `split_rows` set, [0.7, 0.1, 0.2].
    pub split_ratio: Option<[f64; 3]>,
    /// series: "forward" carries the last value into a missing cell. Default: unset (a
    /// missing value is an error naming its row and column).
    pub fill: Option<Fill>,
}

/// `labels = ["neg", "pos"]` or `labels = [0, 1, 2]`: integers are kept as their decimal text.
fn de_labels<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Name {
        Int(i64),
        Str(String),
    }
    let v: Option<Vec<Name>> = Option::deserialize(d)?;
    Ok(v.map(|v| {
        v.into_iter()
            .map(|n| match n {
                Name::Int(i) => i.to_string(),
                Name::Str(s) => s,
            })
            .collect()
    }))
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            corpus: CorpusKind::Sst2,
            hub: None,
            revision: None,
            dir: None,
            train_file: None,
            validation_file: None,
            test_file: None,
            file: None,
            extra_train_file: None,
            max_len: None,
            bucket_pool: 50,
            direction: Direction::DeEn,
            input_len: 96,
            horizon: 24,
            features: Features::S,
            target: "OT".into(),
            calendar: false,
            freq: None,
            split_rows: None,
            length: 100,
            train_size: 10_000,
            eval_size: 1_000,
            text_column: "text".into(),
            text_pair_column: None,
            label_column: "label".into(),
            audio_column: "audio".into(),
            labels: None,
            validation_split: 0.0,
            test_split: 0.0,
            skip_invalid: false,
            source_column: "source".into(),
            target_column: "target".into(),
            source_lang: None,
            target_lang: None,
            time_column: None,
            split_ratio: None,
            fill: None,
        }
    }
}

impl DataConfig {
    /// Checks ranges and combinations; errors name the key as `data.<key>`.
    pub fn validate(&self) -> Result<()> {
        let k = |key: &str| format!("data.{key}");
        let synthetic = matches!(self.corpus, CorpusKind::Adding | CorpusKind::Copy);
        if self.hub.is_some() && self.dir.is_some() {
            return Err(Error::config(k("dir"), "set either `hub` or `dir`, not both"));
        }
        if synthetic {
            for (key, set) in
                [("hub", self.hub.is_some()), ("dir", self.dir.is_some()), ("revision", self.revision.is_some())]
            {
                if set {
                    return Err(Error::config(
                        k(key),
                        format!("corpus `{}` is generated from the seed and reads no files", self.corpus.name()),
                    ));
                }
            }
        }
        if self.corpus == CorpusKind::Fsdd {
            if self.hub.is_some() || self.revision.is_some() {
                let key = if self.hub.is_some() { "hub" } else { "revision" };
                return Err(Error::config(k(key), "corpus `fsdd` reads a local folder: set `dir` instead"));
            }
            if self.dir.is_none() {
                return Err(Error::config(
                    k("dir"),
                    "corpus `fsdd` needs the folder of `{digit}_{speaker}_{index}.wav` recordings \
                     (the `recordings/` folder of a clone of Jakobovski/free-spoken-digit-dataset)",
                ));
            }
        }
        if self.revision.is_some() && self.dir.is_some() {
            return Err(Error::config(k("revision"), "a revision applies to `hub`, not to `dir`"));
        }
        if let Some(hub) = &self.hub {
            check_repo_id(hub).map_err(|m| Error::config(k("hub"), m))?;
        }
        if let Some(rev) = &self.revision {
            if rev.trim().is_empty() {
                return Err(Error::config(k("revision"), "must not be empty"));
            }
        }
        for (key, v) in [
            ("train_file", &self.train_file),
            ("validation_file", &self.validation_file),
            ("test_file", &self.test_file),
            ("file", &self.file),
        ] {
            if let Some(name) = v {
                if name.trim().is_empty() {
                    return Err(Error::config(k(key), "must not be empty"));
                }
                let split_files = key != "file";
                let applies = if split_files {
                    matches!(
                        self.corpus,
                        CorpusKind::Sst2
                            | CorpusKind::Multi30k
                            | CorpusKind::Text
                            | CorpusKind::Pairs
                            | CorpusKind::Audio
                    )
                } else {
                    matches!(self.corpus, CorpusKind::Ett | CorpusKind::Series)
                };
                if !applies {
                    let hint = if self.corpus == CorpusKind::Ett {
                        "; ETT reads one CSV (`file`) and cuts the splits by rows"
                    } else {
                        ""
                    };
                    return Err(Error::config(
                        k(key),
                        format!("does not apply to corpus `{}`{hint}", self.corpus.name()),
                    ));
                }
            }
        }
        if self.extra_train_file.is_some() && !matches!(self.corpus, CorpusKind::Sst2 | CorpusKind::Pairs) {
            return Err(Error::config(k("extra_train_file"), "applies to corpus `sst2` and `pairs` only"));
        }
        self.validate_text()?;
        self.validate_audio()?;
        self.validate_pairs()?;
        if self.max_len == Some(0) {
            return Err(Error::config(k("max_len"), "must be at least 1"));
        }
        if self.bucket_pool == 0 {
            return Err(Error::config(k("bucket_pool"), "must be at least 1 (1 = no bucketing)"));
        }
        self.validate_series()?;
        if matches!(self.corpus, CorpusKind::Ett | CorpusKind::Series) {
            if self.input_len == 0 {
                return Err(Error::config(k("input_len"), "must be at least 1"));
            }
            if self.horizon == 0 {
                return Err(Error::config(k("horizon"), "must be at least 1"));
            }
            if self.target.trim().is_empty() {
                return Err(Error::config(k("target"), "must name a column"));
            }
            if let Some(rows) = self.split_rows {
                if rows.contains(&0) {
                    return Err(Error::config(k("split_rows"), "every split needs at least one row"));
                }
                if rows[0] < self.input_len + self.horizon {
                    return Err(Error::config(
                        k("split_rows"),
                        format!(
                            "the training split ({} rows) is shorter than input_len + horizon = {}",
                            rows[0],
                            self.input_len + self.horizon
                        ),
                    ));
                }
            }
        }
        if synthetic {
            if self.length == 0 {
                return Err(Error::config(k("length"), "must be at least 1"));
            }
            if self.corpus == CorpusKind::Adding && self.length < 2 {
                return Err(Error::config(k("length"), "the adding problem needs at least 2 steps"));
            }
            if self.train_size == 0 {
                return Err(Error::config(k("train_size"), "must be at least 1"));
            }
            if self.eval_size == 0 {
                return Err(Error::config(k("eval_size"), "must be at least 1"));
            }
        }
        Ok(())
    }

    fn validate_series(&self) -> Result<()> {
        let k = |key: &str| format!("data.{key}");
        let series = self.corpus == CorpusKind::Series;
        let set = [
            ("time_column", self.time_column.is_some()),
            ("split_ratio", self.split_ratio.is_some()),
            ("fill", self.fill.is_some()),
        ];
        if !series {
            if let Some((key, _)) = set.iter().find(|(_, s)| *s) {
                return Err(Error::config(
                    k(key),
                    format!("applies to corpus \"series\" (your own time series), not to `{}`", self.corpus.name()),
                ));
            }
            return Ok(());
        }
        if self.dir.is_none() && self.hub.is_none() {
            return Err(Error::config(k("dir"), "corpus \"series\" reads your file: set `dir` or `hub`"));
        }
        if self.file.is_none() {
            return Err(Error::config(
                k("file"),
                "corpus \"series\" needs the file holding the whole series, e.g. \"load.csv\" (.csv, .tsv, \
                 .jsonl, .parquet, optionally .gz); the splits are cut by rows",
            ));
        }
        if self.split_ratio.is_some() && self.split_rows.is_some() {
            return Err(Error::config(k("split_ratio"), "set either `split_ratio` or `split_rows`, not both"));
        }
        if let Some(r) = self.split_ratio {
            if r.iter().any(|f| !(*f > 0.0 && *f < 1.0)) || (r.iter().sum::<f64>() - 1.0).abs() > 1e-9 {
                return Err(Error::config(
                    k("split_ratio"),
                    format!("expected three fractions in (0, 1) summing to 1, found {r:?}"),
                ));
            }
        }
        if self.calendar && self.time_column.is_none() {
            return Err(Error::config(k("calendar"), "calendar features need `time_column`"));
        }
        Ok(())
    }

    fn validate_pairs(&self) -> Result<()> {
        let k = |key: &str| format!("data.{key}");
        let d = DataConfig::default();
        let pairs = self.corpus == CorpusKind::Pairs;
        let set = [
            ("source_column", self.source_column != d.source_column),
            ("target_column", self.target_column != d.target_column),
            ("source_lang", self.source_lang.is_some()),
            ("target_lang", self.target_lang.is_some()),
        ];
        if !pairs {
            if let Some((key, _)) = set.iter().find(|(_, s)| *s) {
                return Err(Error::config(
                    k(key),
                    format!("applies to corpus \"pairs\" (your own text pairs), not to `{}`", self.corpus.name()),
                ));
            }
            return Ok(());
        }
        if self.dir.is_none() && self.hub.is_none() {
            return Err(Error::config(
                k("dir"),
                "corpus \"pairs\" reads your files: set `dir` (a folder) or `hub` (\"owner/name\")",
            ));
        }
        for key in ["train_file", "validation_file", "test_file"] {
            let v = match key {
                "train_file" => &self.train_file,
                "validation_file" => &self.validation_file,
                _ => &self.test_file,
            };
            if v.is_none() {
                return Err(Error::config(
                    k(key),
                    "corpus \"pairs\" needs a file per split: a table (\"train.csv\", .tsv, .jsonl, .parquet, \
                     optionally .gz), or with source_lang/target_lang a prefix (\"train\" for train.de + train.en)",
                ));
            }
        }
        match (&self.source_lang, &self.target_lang) {
            (Some(_), None) => return Err(Error::config(k("target_lang"), "set with `source_lang`")),
            (None, Some(_)) => return Err(Error::config(k("source_lang"), "set with `target_lang`")),
            (Some(a), Some(b)) if a.trim().is_empty() || b.trim().is_empty() || a == b => {
                return Err(Error::config(k("target_lang"), "source and target extensions must be two different names"))
            }
            _ => {}
        }
        Ok(())
    }

    fn validate_text(&self) -> Result<()> {
        let k = |key: &str| format!("data.{key}");
        let text = self.corpus == CorpusKind::Text;
        let d = DataConfig::default();
        if self.corpus == CorpusKind::Audio {
            // The label keys are shared with corpus "audio" (checked in `validate_audio`).
            let text_only = [
                ("text_column", self.text_column != d.text_column),
                ("text_pair_column", self.text_pair_column.is_some()),
                ("skip_invalid", self.skip_invalid),
            ];
            if let Some((key, _)) = text_only.iter().find(|(_, set)| *set) {
                return Err(Error::config(
                    k(key),
                    "applies to corpus \"text\" (your own texts), not to `audio` (audio clips)",
                ));
            }
            return Ok(());
        }
        let text_keys_set = [
            ("text_column", self.text_column != d.text_column),
            ("text_pair_column", self.text_pair_column.is_some()),
            ("label_column", self.label_column != d.label_column),
            ("labels", self.labels.is_some()),
            ("validation_split", self.validation_split != 0.0),
            ("test_split", self.test_split != 0.0),
            ("skip_invalid", self.skip_invalid),
        ];
        if !text {
            if let Some((key, _)) = text_keys_set.iter().find(|(_, set)| *set) {
                return Err(Error::config(
                    k(key),
                    format!("applies to corpus \"text\" (your own files), not to `{}`", self.corpus.name()),
                ));
            }
            return Ok(());
        }
        if self.dir.is_none() && self.hub.is_none() {
            return Err(Error::config(
                k("dir"),
                "corpus \"text\" reads your files: set `dir` (a folder) or `hub` (\"owner/name\")",
            ));
        }
        if self.train_file.is_none() {
            return Err(Error::config(
                k("train_file"),
                "corpus \"text\" needs the training file's name, e.g. \"train.csv\" (.csv, .tsv, .jsonl, \
                 .json or .parquet, optionally .gz)",
            ));
        }
        for (key, v) in [("text_column", &self.text_column), ("label_column", &self.label_column)] {
            if v.trim().is_empty() {
                return Err(Error::config(k(key), "must name a column"));
            }
        }
        if self.text_pair_column.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err(Error::config(k("text_pair_column"), "must name a column"));
        }
        self.validate_labels()
    }

    /// `validation_split` / `test_split` and `labels` of `corpus = "text"` and `"audio"`.
    fn validate_labels(&self) -> Result<()> {
        let k = |key: &str| format!("data.{key}");
        for (key, f, file) in [
            ("validation_split", self.validation_split, &self.validation_file),
            ("test_split", self.test_split, &self.test_file),
        ] {
            if !(0.0..1.0).contains(&f) {
                return Err(Error::config(k(key), format!("expected a fraction in [0, 1), found {f}")));
            }
            if f > 0.0 && file.is_some() {
                let which = if key == "test_split" { "test_file" } else { "validation_file" };
                return Err(Error::config(k(key), format!("set either `{which}` or `{key}`, not both")));
            }
        }
        if self.validation_split + self.test_split >= 1.0 {
            return Err(Error::config(k("test_split"), "validation_split + test_split must leave rows for training"));
        }
        if self.validation_file.is_none() && self.validation_split == 0.0 {
            return Err(Error::config(
                k("validation_split"),
                "no validation split: set `validation_file`, or `validation_split = 0.1` to carve one from train",
            ));
        }
        if self.test_file.is_none() && self.test_split == 0.0 {
            return Err(Error::config(
                k("test_split"),
                "no test split: set `test_file`, or `test_split = 0.1` to carve one from train",
            ));
        }
        if let Some(labels) = &self.labels {
            if labels.len() < 2 {
                return Err(Error::config(k("labels"), format!("expected at least 2 classes, found {}", labels.len())));
            }
            let mut seen = std::collections::HashSet::new();
            for l in labels {
                if l.trim().is_empty() {
                    return Err(Error::config(k("labels"), "a class name is empty"));
                }
                if !seen.insert(l) {
                    return Err(Error::config(k("labels"), format!("class `{l}` is listed twice")));
                }
            }
        }
        Ok(())
    }

    fn validate_audio(&self) -> Result<()> {
        let k = |key: &str| format!("data.{key}");
        if self.corpus != CorpusKind::Audio {
            if self.audio_column != DataConfig::default().audio_column {
                return Err(Error::config(
                    k("audio_column"),
                    format!("applies to corpus \"audio\" (your own audio clips), not to `{}`", self.corpus.name()),
                ));
            }
            return Ok(());
        }
        if self.hub.is_some() || self.revision.is_some() {
            let key = if self.hub.is_some() { "hub" } else { "revision" };
            return Err(Error::config(k(key), "corpus \"audio\" reads a local folder: set `dir` instead"));
        }
        if self.dir.is_none() {
            return Err(Error::config(
                k("dir"),
                "corpus \"audio\" needs the folder of your clips: a folder per class (`<dir>/<label>/*.wav`), \
                 or the folder of a manifest named by `train_file`",
            ));
        }
        for (key, v) in [("audio_column", &self.audio_column), ("label_column", &self.label_column)] {
            if v.trim().is_empty() {
                return Err(Error::config(k(key), "must name a column"));
            }
        }
        self.validate_labels()
    }

    /// The (train, validation, test) file names after defaults.
    pub fn split_files(&self) -> Option<[String; 3]> {
        let d = self.corpus.default_files()?;
        Some([
            self.train_file.clone().unwrap_or_else(|| d[0].into()),
            self.validation_file.clone().unwrap_or_else(|| d[1].into()),
            self.test_file.clone().unwrap_or_else(|| d[2].into()),
        ])
    }
}

fn check_repo_id(id: &str) -> std::result::Result<(), String> {
    let parts: Vec<&str> = id.split('/').collect();
    let ok = parts.len() == 2
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
    if ok {
        Ok(())
    } else {
        Err(format!("expected a hub repo id \"owner/name\", found \"{id}\""))
    }
}

/// Which tokenizer model to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerModel {
    /// One id per word; words below `min_frequency` or beyond `vocab_size` map to `[UNK]`.
    #[default]
    WordLevel,
    /// WordPiece subwords ("##" continuation prefix).
    Wordpiece,
    /// Byte-pair-encoding subwords.
    Bpe,
}

/// How text is split into words before the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreTokenizer {
    /// Runs of word characters, and runs of punctuation (`\w+|[^\w\s]+`).
    Whitespace,
    /// Split on whitespace only (keeps PTB tokens such as "n't" whole).
    WhitespaceSplit,
    /// BERT's: whitespace, and every punctuation character on its own.
    Bert,
    /// SentencePiece-style: spaces become "▁", so decoding restores the text exactly.
    Metaspace,
}

/// The `[tokenizer]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerConfig {
    /// "word_level" | "wordpiece" | "bpe". Default "word_level".
    pub model: TokenizerModel,
    /// Largest vocabulary, special tokens included. Default 30000.
    pub vocab_size: usize,
    /// Drop words (word_level) or merges (wordpiece/bpe) seen fewer times than this in the
    /// training split. Default 1.
    pub min_frequency: u64,
    /// Lowercase before anything else. Default false.
    pub lowercase: bool,
    /// Unicode NFKC normalisation. Default true.
    pub nfkc: bool,
    /// "whitespace" | "whitespace_split" | "bert" | "metaspace". Default: word_level
    /// "whitespace", wordpiece "bert", bpe "metaspace".
    pub pre_tokenizer: Option<PreTokenizer>,
    /// Translation: one tokenizer trained on both languages instead of one per language.
    /// Default false.
    pub joint: bool,
    /// A pretrained tokenizer from a hub model repo "owner/name" instead of training one.
    /// Default: unset.
    pub hub: Option<String>,
    /// Revision for `hub`. Default "main".
    pub revision: Option<String>,
    /// A local tokenizer.json (or a folder holding `file`) instead of training one. Default: unset.
    pub path: Option<PathBuf>,
    /// File name of a pretrained tokenizer in the hub repo or folder. Default "tokenizer.json".
    pub file: String,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self {
            model: TokenizerModel::WordLevel,
            vocab_size: 30_000,
            min_frequency: 1,
            lowercase: false,
            nfkc: true,
            pre_tokenizer: None,
            joint: false,
            hub: None,
            revision: None,
            path: None,
            file: "tokenizer.json".into(),
        }
    }
}

impl TokenizerConfig {
    /// Checks ranges and combinations; errors name the key as `tokenizer.<key>`.
    pub fn validate(&self) -> Result<()> {
        let k = |key: &str| format!("tokenizer.{key}");
        if self.vocab_size < 5 {
            return Err(Error::config(
                k("vocab_size"),
                format!("must be at least 5 (4 special tokens + 1), found {}", self.vocab_size),
            ));
        }
        if self.hub.is_some() && self.path.is_some() {
            return Err(Error::config(k("path"), "set either `hub` or `path`, not both"));
        }
        if let Some(hub) = &self.hub {
            check_repo_id(hub).map_err(|m| Error::config(k("hub"), m))?;
        }
        if self.revision.is_some() && self.hub.is_none() {
            return Err(Error::config(k("revision"), "applies only with `hub`"));
        }
        if self.file.trim().is_empty() {
            return Err(Error::config(k("file"), "must not be empty"));
        }
        Ok(())
    }

    /// The pre-tokenizer after defaults.
    pub fn pre_tokenizer(&self) -> PreTokenizer {
        self.pre_tokenizer.unwrap_or(match self.model {
            TokenizerModel::WordLevel => PreTokenizer::Whitespace,
            TokenizerModel::Wordpiece => PreTokenizer::Bert,
            TokenizerModel::Bpe => PreTokenizer::Metaspace,
        })
    }

    /// Whether the tokenizer is loaded (hub or path) rather than trained.
    pub fn is_pretrained(&self) -> bool {
        self.hub.is_some() || self.path.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        DataConfig::default().validate().unwrap();
        TokenizerConfig::default().validate().unwrap();
        for corpus in [CorpusKind::Multi30k, CorpusKind::Ett, CorpusKind::Adding, CorpusKind::Copy] {
            DataConfig { corpus, ..Default::default() }.validate().unwrap();
        }
        DataConfig { corpus: CorpusKind::Fsdd, dir: Some("rec".into()), ..Default::default() }.validate().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let cases: Vec<(DataConfig, &str)> = vec![
            (DataConfig { hub: Some("a/b".into()), dir: Some("x".into()), ..Default::default() }, "data.dir"),
            (DataConfig { hub: Some("nope".into()), ..Default::default() }, "data.hub"),
            (DataConfig { corpus: CorpusKind::Adding, dir: Some("x".into()), ..Default::default() }, "data.dir"),
            (
                DataConfig { corpus: CorpusKind::Ett, train_file: Some("x".into()), ..Default::default() },
                "data.train_file",
            ),
            (DataConfig { file: Some("x.csv".into()), ..Default::default() }, "data.file"),
            (DataConfig { max_len: Some(0), ..Default::default() }, "data.max_len"),
            (DataConfig { corpus: CorpusKind::Ett, horizon: 0, ..Default::default() }, "data.horizon"),
            (DataConfig { corpus: CorpusKind::Adding, length: 1, ..Default::default() }, "data.length"),
            (
                DataConfig { corpus: CorpusKind::Multi30k, extra_train_file: Some("x".into()), ..Default::default() },
                "data.extra_train_file",
            ),
            (DataConfig { corpus: CorpusKind::Fsdd, ..Default::default() }, "data.dir"),
            (DataConfig { corpus: CorpusKind::Fsdd, hub: Some("a/b".into()), ..Default::default() }, "data.hub"),
        ];
        for (cfg, key) in cases {
            let e = cfg.validate().unwrap_err();
            assert!(e.to_string().contains(&format!("`{key}`")), "{e} should name {key}");
        }
        let e = TokenizerConfig { vocab_size: 2, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("tokenizer.vocab_size"));
    }

    #[test]
    fn serde_names_and_unknown_keys() {
        let cfg: DataConfig = serde_json::from_str(
            r#"{"corpus":"ett","features":"M","freq":"15min","split_rows":[10,5,5],"direction":"en-de"}"#,
        )
        .unwrap();
        assert_eq!(cfg.corpus, CorpusKind::Ett);
        assert_eq!(cfg.features, Features::M);
        assert_eq!(cfg.freq, Some(Freq::Min15));
        assert_eq!(cfg.direction, Direction::EnDe);
        assert_eq!(cfg.input_len, 96);
        let e = serde_json::from_str::<DataConfig>(r#"{"corpuss":"ett"}"#).unwrap_err();
        assert!(e.to_string().contains("corpuss"));
        let t: TokenizerConfig = serde_json::from_str(r#"{"model":"bpe","pre_tokenizer":"whitespace_split"}"#).unwrap();
        assert_eq!(t.model, TokenizerModel::Bpe);
        assert!(serde_json::from_str::<TokenizerConfig>(r#"{"vocab":1}"#).is_err());
    }
}
