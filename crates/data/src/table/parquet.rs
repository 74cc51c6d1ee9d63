//! Apache Parquet through the `parquet` crate's record API (no arrow): every row group,
//! top-level columns only; nested lists become [`Cell::List`].

use super::{Cell, Format, Row, Table};
use crate::error::{Error, Result};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use std::path::Path;

pub(super) fn read(path: &Path, bytes: Vec<u8>) -> Result<Table> {
    let bad = |msg: String| Error::Table { path: path.into(), line: None, msg };
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes))
        .map_err(|e| bad(format!("not a readable Parquet file: {e}")))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let fields = schema.root_schema().get_fields().to_vec();
    let columns: Vec<String> = fields.iter().map(|f| f.name().to_string()).collect();
    let column_types: Vec<String> = fields
        .iter()
        .map(|f| {
            let info = f.get_basic_info();
            let logical = info.logical_type_ref().map(|l| format!(" ({l:?})")).unwrap_or_default();
            if f.is_primitive() {
                format!("{}{logical}", f.get_physical_type())
            } else {
                format!("group{logical}")
            }
        })
        .collect();
    let mut rows = Vec::new();
    let iter = reader.get_row_iter(None).map_err(|e| bad(e.to_string()))?;
    for (i, row) in iter.enumerate() {
        let row = row.map_err(|e| bad(format!("row {}: {e}", i + 1)))?;
        let mut cells = vec![Cell::Null; columns.len()];
        for (name, field) in row.get_column_iter() {
            if let Some(c) = columns.iter().position(|n| n == name) {
                cells[c] = cell(field);
            }
        }
        rows.push(Row { pos: i + 1, cells });
    }
    Ok(Table { path: path.into(), format: Format::Parquet, columns, column_types, rows })
}

fn cell(f: &Field) -> Cell {
    match f {
        Field::Null => Cell::Null,
        Field::Bool(b) => Cell::Bool(*b),
        Field::Byte(v) => Cell::Int(*v as i64),
        Field::Short(v) => Cell::Int(*v as i64),
        Field::Int(v) => Cell::Int(*v as i64),
        Field::Long(v) => Cell::Int(*v),
        Field::UByte(v) => Cell::Int(*v as i64),
        Field::UShort(v) => Cell::Int(*v as i64),
        Field::UInt(v) => Cell::Int(*v as i64),
        Field::ULong(v) => i64::try_from(*v).map(Cell::Int).unwrap_or(Cell::Float(*v as f64)),
        Field::Float16(v) => Cell::Float(f64::from(*v)),
        Field::Float(v) => Cell::Float(*v as f64),
        Field::Double(v) => Cell::Float(*v),
        Field::Decimal(d) => Cell::Other(format!("a decimal ({d:?})")),
        Field::Str(s) => Cell::Str(s.clone()),
        Field::Bytes(b) => match std::str::from_utf8(b.data()) {
            Ok(s) => Cell::Str(s.to_string()),
            Err(_) => Cell::Other("binary data that is not UTF-8 text".into()),
        },
        Field::Date(days) => Cell::Str(civil_date(*days as i64)),
        Field::TimestampMillis(ms) => Cell::Str(timestamp(ms.div_euclid(1000), ms.rem_euclid(1000) as u32 * 1000)),
        Field::TimestampMicros(us) => Cell::Str(timestamp(us.div_euclid(1_000_000), us.rem_euclid(1_000_000) as u32)),
        Field::TimeMillis(v) => Cell::Int(*v as i64),
        Field::TimeMicros(v) => Cell::Int(*v),
        Field::ListInternal(l) => Cell::List(l.elements().iter().map(cell).collect()),
        Field::Group(_) => Cell::Other("a Parquet struct".into()),
        Field::MapInternal(_) => Cell::Other("a Parquet map".into()),
    }
}

/// `YYYY-MM-DD` of a day count from 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC) of seconds since the epoch plus microseconds.
fn timestamp(secs: i64, micros: u32) -> String {
    let (days, s) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let frac = if micros == 0 { String::new() } else { format!(".{micros:06}") };
    format!("{} {:02}:{:02}:{:02}{frac}", civil_date(days), s / 3600, s % 3600 / 60, s % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::civil_date(0), "1970-01-01");
        assert_eq!(super::civil_date(16_983), "2016-07-01");
        assert_eq!(super::civil_date(-1), "1969-12-31");
        assert_eq!(super::timestamp(16_983 * 86_400 + 3600 + 61, 0), "2016-07-01 01:01:01");
    }
}
