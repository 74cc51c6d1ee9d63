//! The crate's error type: every variant names the file (or config key) and, where it
//! applies, the line and column, plus what was expected.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while turning a config into batches.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config key holds a value that cannot work.
    #[error("config key `{key}`: {msg}")]
    Config {
        /// The dotted config key, e.g. `data.horizon` or `train.batch_size` (for a mismatch
        /// between a batcher's inputs: `labels` or `pairs`).
        key: String,
        /// What is wrong and what would work.
        msg: String,
    },

    /// A file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error (a file that is not found on reading is [`Error::MissingFile`] instead).
        #[source]
        source: std::io::Error,
    },

    /// A file named by the config is not there.
    #[error("{}: file not found{}", path.display(), hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    MissingFile {
        /// The path looked for.
        path: PathBuf,
        /// Where the name came from or how to fix it, e.g. "named by tokenizer.path".
        hint: Option<String>,
    },

    /// Offline (HF_HUB_OFFLINE) and the hub cache has no copy of the file.
    #[error(
        "hub dataset `{repo}` (revision `{revision}`), file `{file}`: not in the cache at {} and \
         HF_HUB_OFFLINE is set, so it cannot be downloaded. Unset HF_HUB_OFFLINE to download it, \
         point HF_HOME at a cache that holds it, or put the file in a folder and set `dir = \"<folder>\"` \
         (instead of `hub`) in the [data] section",
        cache.display()
    )]
    NotCached {
        /// The hub repo id, `owner/name`.
        repo: String,
        /// The revision asked for (`main` unless the config sets `revision`).
        revision: String,
        /// The file within the repo.
        file: String,
        /// The hub cache folder searched ([`crate::HubOptions::cache_dir`]).
        cache: PathBuf,
    },

    /// The hub client failed (network, missing file on the hub, ...).
    #[error(
        "hub repo `{repo}` (revision `{revision}`), file `{file}`: {msg}. To work without the network, \
         put the file in a folder and set `dir = \"<folder>\"` in the [data] section, or set \
         HF_HUB_OFFLINE=1 with HF_HOME pointing at a cache that holds it"
    )]
    Hub {
        /// The hub repo id, `owner/name`.
        repo: String,
        /// The revision asked for (`main` unless the config sets `revision`).
        revision: String,
        /// The file within the repo.
        file: String,
        /// The hub client's message.
        msg: String,
    },

    /// A line of a JSON Lines file is not valid JSON (or not an object).
    #[error("{}:{line}:{column}: malformed JSON line: {msg} (expected one JSON object per line)", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// 1-based column of the problem (1 when the whole line is at fault).
        column: usize,
        /// The parser's message, or "empty line", "invalid UTF-8", "found an array", ...
        msg: String,
    },

    /// A required field of a JSON object is absent.
    #[error("{}:{line}: missing field `{field}` (expected {expected})", path.display())]
    MissingField {
        /// The file.
        path: PathBuf,
        /// 1-based line number of the object.
        line: usize,
        /// The absent field, e.g. `label`.
        field: String,
        /// What the field should hold, e.g. "a non-empty string".
        expected: String,
    },

    /// A field holds a value of the wrong kind or an unusable value.
    #[error("{}:{line}: field `{field}`: expected {expected}, found {found}", path.display())]
    BadField {
        /// The file.
        path: PathBuf,
        /// 1-based line number of the object.
        line: usize,
        /// The field's name.
        field: String,
        /// What the field should hold: "a non-empty string" or "an integer class label in 0..N".
        expected: String,
        /// What it holds, e.g. "number 5", "a string" or "an empty string".
        found: String,
    },

    /// A class label outside `0..num_classes`.
    #[error("{}:{line}: label {label} out of range (expected an integer in 0..{num_classes})", path.display())]
    LabelOutOfRange {
        /// The file.
        path: PathBuf,
        /// 1-based line number of the object.
        line: usize,
        /// The label as written (may be negative).
        label: i64,
        /// The corpus' number of classes.
        num_classes: usize,
    },

    /// A CSV header lacks a column the config asks for.
    #[error("{}:1: missing column `{column}` (header has: {header})", path.display())]
    MissingColumn {
        /// The CSV file.
        path: PathBuf,
        /// The column asked for: `data.target`, or `date` when `data.calendar` is on.
        column: String,
        /// The header's column names, comma-separated.
        header: String,
    },

    /// A CSV cell is not what was expected (not a number, wrong cell count, bad date).
    #[error("{}:{line}:{column}: expected {expected}, found `{found}`", path.display())]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// 1-based line number (the header is line 1).
        line: usize,
        /// 1-based column number, as editors and spreadsheets count.
        column: usize,
        /// What the cell should hold, e.g. "a finite number in column `OT`".
        expected: String,
        /// The cell as written (trimmed), or the row's cell count.
        found: String,
    },

    /// A split with no examples (or too few rows to make one window).
    #[error("{}: split `{split}` is empty{}", path.display(), detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    EmptySplit {
        /// The file the split comes from.
        path: PathBuf,
        /// `train`, `validation` or `test`.
        split: String,
        /// Why it is empty, when more can be said than "no examples".
        detail: Option<String>,
    },

    /// A file has fewer rows than the configured splits need.
    #[error("{}: {rows} data rows, but the splits need {needed} ({detail})", path.display())]
    TooFewRows {
        /// The CSV file.
        path: PathBuf,
        /// Data rows in the file (header excluded).
        rows: usize,
        /// Rows the three splits take together (`data.split_rows` or the frequency's default).
        needed: usize,
        /// The split sizes and how to change them.
        detail: String,
    },

    /// A file as a whole cannot be read as a table: not gzip though named `.gz`, invalid
    /// UTF-8, a Parquet file the reader rejects, an unknown extension.
    #[error("{}{}: {msg}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Table {
        /// The file.
        path: PathBuf,
        /// 1-based line, where one applies.
        line: Option<usize>,
        /// What is wrong and what was expected.
        msg: String,
    },

    /// A cell of a table holds what its column cannot use (an empty text, a label of the
    /// wrong type or outside `data.labels`, a non-number in a series, ...).
    #[error("{}:{row}: column `{column}`: expected {expected}, found {found}", path.display())]
    Cell {
        /// The file.
        path: PathBuf,
        /// 1-based line (CSV/TSV/JSON Lines; the CSV header is line 1) or row (Parquet).
        row: usize,
        /// "line" or "row": how `row` counts.
        unit: &'static str,
        /// The column's name.
        column: String,
        /// What the cell should hold.
        expected: String,
        /// What it holds.
        found: String,
    },

    /// The tokenizers crate failed, or a tokenizer file is unusable.
    #[error("tokenizer{}: {msg}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Tokenizer {
        /// The tokenizer file, when one was being read or written.
        path: Option<PathBuf>,
        /// The tokenizers crate's message, or what makes the tokenizer unusable.
        msg: String,
    },
}

impl Error {
    pub(crate) fn config(key: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config { key: key.into(), msg: msg.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::MissingFile { path, hint: None }
        } else {
            Error::Io { path, source }
        }
    }
}
