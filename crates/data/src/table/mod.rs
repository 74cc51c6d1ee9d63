//! Tables from users' files: CSV, TSV, JSON Lines (or a JSON array of objects) and Parquet,
//! each optionally gzip-compressed (`.gz`), read into rows of named, typed cells.
//!
//! The format comes from the file name (`train.csv`, `train.tsv.gz`, `train.jsonl`,
//! `train.json`, `0000.parquet`, ...). CSV and TSV have a header row and RFC 4180 quoting (the
//! `csv` crate); their cells are strings. JSON and Parquet cells keep their types. Every row
//! remembers where it came from ([`Row::pos`]: the line of a text format, where the CSV
//! header is line 1, or the 1-based row of a Parquet file), so errors can say
//! `file:row: column `name`: expected ..., found ...` ([`crate::Error::Cell`]).
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("t.csv");
//! std::fs::write(&path, "text,label\n\"a, quoted\" text,pos\n")?;
//! let t = data::table::Table::read(&path)?;
//! let (text, label) = (t.column("text", "data.text_column")?, t.column("label", "data.label_column")?);
//! assert_eq!(t.rows[0].cells[text].as_str(), Some("a, quoted text"));
//! assert_eq!(t.rows[0].cells[label].as_str(), Some("pos"));
//! assert_eq!(t.rows[0].pos, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod delimited;
mod json;
mod parquet;

use crate::error::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest decompressed file read (refused before a gzip bomb fills the memory).
pub const MAX_FILE_BYTES: u64 = 8 << 30;

/// A file format, from the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
    /// One JSON object per line (`.jsonl`), or a JSON array of objects (`.json` may be either).
    Json,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// The format of `path` and whether it is gzip-compressed, from its extension(s).
    pub fn of(path: &Path) -> Result<(Format, bool)> {
        let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        let (stem, gz) = match name.strip_suffix(".gz") {
            Some(s) => (s.to_string(), true),
            None => (name.clone(), false),
        };
        let format = match stem.rsplit('.').next() {
            Some("csv") => Format::Csv,
            Some("tsv") | Some("tab") => Format::Tsv,
            Some("jsonl") | Some("ndjson") | Some("json") => Format::Json,
            Some("parquet") | Some("pq") => Format::Parquet,
            _ => {
                return Err(Error::Table {
                    path: path.into(),
                    line: None,
                    msg: "cannot tell the format from the file name: expected .csv, .tsv, .jsonl, .json or \
                          .parquet, each optionally followed by .gz"
                        .into(),
                })
            }
        };
        Ok((format, gz))
    }
}

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Absent (a JSON key missing or `null`, a Parquet null).
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string (every CSV/TSV cell; dates and timestamps of Parquet files as ISO 8601).
    Str(String),
    /// A list (JSON array, Parquet list).
    List(Vec<Cell>),
    /// Anything else (a JSON object, a Parquet struct or map), by its kind, for messages.
    Other(String),
}

impl Cell {
    /// The string, if the cell is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The cell as a number: integers, floats, and strings that parse as one (CSV cells).
    /// An empty string is `None` (a missing value).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Int(i) => Some(*i as f64),
            Cell::Float(f) => Some(*f),
            Cell::Str(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
    }

    /// Whether the cell holds no value: null or an empty/blank string.
    pub fn is_missing(&self) -> bool {
        match self {
            Cell::Null => true,
            Cell::Str(s) => s.trim().is_empty(),
            _ => false,
        }
    }

    /// A short description for error messages: `integer 5`, `the string "abc"`, `null`, ...
    pub fn describe(&self) -> String {
        match self {
            Cell::Null => "nothing (a missing value)".into(),
            Cell::Bool(b) => format!("boolean {b}"),
            Cell::Int(i) => format!("integer {i}"),
            Cell::Float(f) => format!("number {f}"),
            Cell::Str(s) if s.trim().is_empty() => "an empty string".into(),
            Cell::Str(s) => {
                let short: String = s.chars().take(40).collect();
                let more = if short.len() < s.len() { "..." } else { "" };
                format!("the string {short:?}{more}")
            }
            Cell::List(v) => format!("a list of {} items", v.len()),
            Cell::Other(kind) => kind.clone(),
        }
    }
}

/// One row: its position in the file and a cell per column.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based line of a CSV/TSV/JSON Lines file (the CSV header is line 1), or the 1-based
    /// row of a Parquet file or JSON array.
    pub pos: usize,
    /// One cell per [`Table::columns`] entry.
    pub cells: Vec<Cell>,
}

/// A whole file as rows of named cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The file read.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// Column names: the header (CSV/TSV), the schema's top-level fields (Parquet), or the
    /// keys of the objects in order of first appearance, each object's keys alphabetically (JSON).
    pub columns: Vec<String>,
    /// Parquet: each column's declared type (for messages); empty for the other formats.
    pub column_types: Vec<String>,
    /// The data rows, in file order.
    pub rows: Vec<Row>,
}

impl Table {
    /// Reads `path`, its format from the file name ([`Format::of`]).
    ///
    /// Errors: [`Error::MissingFile`] / [`Error::Io`]; [`Error::Table`] for a `.gz` that is
    /// not gzip, a Parquet file the reader rejects, or an unknown extension; [`Error::Json`]
    /// for a malformed JSON line or non-UTF-8 text; [`Error::Csv`] for a CSV row with the
    /// wrong number of fields or non-UTF-8 text.
    pub fn read(path: &Path) -> Result<Table> {
        let (format, gz) = Format::of(path)?;
        let bytes = read_bytes(path, gz)?;
        match format {
            Format::Csv => delimited::read(path, &bytes, b',', Format::Csv),
            Format::Tsv => delimited::read(path, &bytes, b'\t', Format::Tsv),
            Format::Json => json::read(path, &bytes),
            Format::Parquet => parquet::read(path, bytes),
        }
    }

    /// The index of column `name`; `key` is the config key that named it (for the message).
    ///
    /// Errors: [`Error::MissingColumn`] listing the columns the file has.
    pub fn column(&self, name: &str, key: &str) -> Result<usize> {
        self.columns.iter().position(|c| c == name).ok_or_else(|| Error::MissingColumn {
            path: self.path.clone(),
            column: name.into(),
            header: if self.columns.is_empty() {
                format!("no columns; `{key}` names a column of the file")
            } else {
                format!("{}; set `{key}` to one of them", self.columns.join(", "))
            },
        })
    }

    /// An error about cell `col` of `row`: expected `expected`, found what the cell holds.
    pub fn cell_error(&self, row: &Row, col: usize, expected: impl Into<String>) -> Error {
        let mut found = row.cells[col].describe();
        if let Some(t) = self.column_types.get(col) {
            found = format!("{found} (Parquet column type {t})");
        }
        self.error_at(row, col, expected, found)
    }

    /// An error about cell `col` of `row` with an explicit `found`.
    pub fn error_at(&self, row: &Row, col: usize, expected: impl Into<String>, found: impl Into<String>) -> Error {
        Error::Cell {
            path: self.path.clone(),
            row: row.pos,
            unit: self.row_unit(),
            column: self.columns[col].clone(),
            expected: expected.into(),
            found: found.into(),
        }
    }

    /// "line" for the text formats, "row" for Parquet: how [`Row::pos`] counts.
    pub fn row_unit(&self) -> &'static str {
        match self.format {
            Format::Parquet => "row",
            _ => "line",
        }
    }
}

/// The file's bytes, decompressed when `gz`; a `.gz` without the gzip magic is an error.
pub fn read_bytes(path: &Path, gz: bool) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !gz && meta.len() > MAX_FILE_BYTES {
        return Err(too_big(path));
    }
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if !gz {
        return Ok(raw);
    }
    if raw.len() < 2 || raw[0..2] != [0x1f, 0x8b] {
        return Err(Error::Table {
            path: path.into(),
            line: None,
            msg: "named .gz but not gzip data (it does not start with the gzip magic bytes 1f 8b); \
                  compress it with gzip or drop the .gz from its name"
                .into(),
        });
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&raw[..])
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::Table { path: path.into(), line: None, msg: format!("corrupt gzip data: {e}") })?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(path));
    }
    Ok(out)
}

fn too_big(path: &Path) -> Error {
    Error::Table {
        path: path.into(),
        line: None,
        msg: format!("larger than {} GiB once decompressed; split it into smaller files", MAX_FILE_BYTES >> 30),
    }
}

/// `bytes` as UTF-8, or an error at the first bad byte's line and column.
pub(crate) fn utf8<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| {
        let upto = &bytes[..e.valid_up_to()];
        let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = upto.len() - upto.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
        Error::Table {
            path: path.into(),
            line: Some(line),
            msg: format!("column {column}: invalid UTF-8 (expected UTF-8 text; re-encode the file as UTF-8)"),
        }
    })
}

#[cfg(test)]
pub(crate) mod tests;
