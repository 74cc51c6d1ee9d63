//! CSV and TSV: a header row, then one record per row, RFC 4180 quoting (the `csv` crate).

use super::{utf8, Cell, Format, Row, Table};
use crate::error::{Error, Result};
use std::path::Path;

/// Reads a delimited file already in memory (decompressed).
pub(super) fn read(path: &Path, bytes: &[u8], delimiter: u8, format: Format) -> Result<Table> {
    // Checked up front so the position of a bad byte is exact (the csv crate only says which
    // record holds it).
    let text = utf8(path, bytes)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).has_headers(true).from_reader(text.as_bytes());
    let columns: Vec<String> =
        reader.headers().map_err(|e| csv_error(path, e))?.iter().map(|h| h.trim().to_string()).collect();
    if columns.is_empty() || columns.iter().all(|c| c.is_empty()) {
        return Ok(Table {
            path: path.into(),
            format,
            columns: Vec::new(),
            column_types: Vec::new(),
            rows: Vec::new(),
        });
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(path, e))?;
        let pos = record.position().map_or(0, |p| p.line() as usize);
        rows.push(Row { pos, cells: record.iter().map(|c| Cell::Str(c.to_string())).collect() });
    }
    Ok(Table { path: path.into(), format, columns, column_types: Vec::new(), rows })
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    let line = e.position().map_or(0, |p| p.line() as usize);
    match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => Error::Csv {
            path: path.into(),
            line,
            column: (*len as usize).min(*expected_len as usize) + 1,
            expected: format!("{expected_len} fields, as many as the header has (quote fields holding the delimiter)"),
            found: format!("{len} fields"),
        },
        _ => Error::Table { path: path.into(), line: (line > 0).then_some(line), msg: e.to_string() },
    }
}
