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
    Config { key: String, msg: String },

    /// A file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file named by the config is not there.
    #[error("{}: file not found{}", path.display(), hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    MissingFile { path: PathBuf, hint: Option<String> },

    /// Offline (HF_HUB_OFFLINE) and the hub cache has no copy of the file.
    #[error(
        "hub dataset `{repo}` (revision `{revision}`), file `{file}`: not in the cache at {} and \
         HF_HUB_OFFLINE is set, so it cannot be downloaded. Unset HF_HUB_OFFLINE to download it, \
         point HF_HOME at a cache that holds it, or put the file in a folder and set `dir = \"<folder>\"` \
         (instead of `hub`) in the [data] section",
        cache.display()
    )]
    NotCached { repo: String, revision: String, file: String, cache: PathBuf },

    /// The hub client failed (network, missing file on the hub, ...).
    #[error(
        "hub repo `{repo}` (revision `{revision}`), file `{file}`: {msg}. To work without the network, \
         put the file in a folder and set `dir = \"<folder>\"` in the [data] section, or set \
         HF_HUB_OFFLINE=1 with HF_HOME pointing at a cache that holds it"
    )]
    Hub { repo: String, revision: String, file: String, msg: String },

    /// A line of a JSON Lines file is not valid JSON (or not an object).
    #[error("{}:{line}:{column}: malformed JSON line: {msg} (expected one JSON object per line)", path.display())]
    Json { path: PathBuf, line: usize, column: usize, msg: String },

    /// A required field of a JSON object is absent.
    #[error("{}:{line}: missing field `{field}` (expected {expected})", path.display())]
    MissingField { path: PathBuf, line: usize, field: String, expected: String },

    /// A field holds a value of the wrong kind or an unusable value.
    #[error("{}:{line}: field `{field}`: expected {expected}, found {found}", path.display())]
    BadField { path: PathBuf, line: usize, field: String, expected: String, found: String },

    /// A class label outside `0..num_classes`.
    #[error("{}:{line}: label {label} out of range (expected an integer in 0..{num_classes})", path.display())]
    LabelOutOfRange { path: PathBuf, line: usize, label: i64, num_classes: usize },

    /// A CSV header lacks a column the config asks for.
    #[error("{}:1: missing column `{column}` (header has: {header})", path.display())]
    MissingColumn { path: PathBuf, column: String, header: String },

    /// A CSV cell is not what was expected (not a number, wrong cell count, bad date).
    #[error("{}:{line}:{column}: expected {expected}, found `{found}`", path.display())]
    Csv {
        path: PathBuf,
        line: usize,
        /// 1-based column number, as editors and spreadsheets count.
        column: usize,
        expected: String,
        found: String,
    },

    /// A split with no examples (or too few rows to make one window).
    #[error("{}: split `{split}` is empty{}", path.display(), detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    EmptySplit { path: PathBuf, split: String, detail: Option<String> },

    /// A file has fewer rows than the configured splits need.
    #[error("{}: {rows} data rows, but the splits need {needed} ({detail})", path.display())]
    TooFewRows { path: PathBuf, rows: usize, needed: usize, detail: String },

    /// The tokenizers crate failed, or a tokenizer file is unusable.
    #[error("tokenizer{}: {msg}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Tokenizer { path: Option<PathBuf>, msg: String },
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
