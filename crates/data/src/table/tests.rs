//! Each format (and its `.gz`) on files the tests write; Parquet files written with the
//! `parquet` crate's own writer.

use super::*;
use ::parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use ::parquet::file::properties::WriterProperties;
use ::parquet::file::writer::SerializedFileWriter;
use std::sync::Arc;

/// A Parquet column for [`write_parquet`]: optional values of one type.
pub(crate) enum PqCol {
    /// UTF-8 strings.
    Str(Vec<Option<String>>),
    /// 64-bit integers.
    Int(Vec<Option<i64>>),
    /// Doubles.
    Double(Vec<Option<f64>>),
}

/// Writes `columns` (name, values) as one row group of optional columns.
pub(crate) fn write_parquet(path: &Path, columns: &[(&str, PqCol)]) {
    let fields: Vec<String> = columns
        .iter()
        .map(|(name, c)| match c {
            PqCol::Str(_) => format!("OPTIONAL BYTE_ARRAY {name} (UTF8);"),
            PqCol::Int(_) => format!("OPTIONAL INT64 {name};"),
            PqCol::Double(_) => format!("OPTIONAL DOUBLE {name};"),
        })
        .collect();
    let schema = Arc::new(
        ::parquet::schema::parser::parse_message_type(&format!("message t {{ {} }}", fields.join(" "))).unwrap(),
    );
    let file = std::fs::File::create(path).unwrap();
    let mut w = SerializedFileWriter::new(file, schema, Arc::new(WriterProperties::builder().build())).unwrap();
    let mut rg = w.next_row_group().unwrap();
    for (_, c) in columns {
        let mut col = rg.next_column().unwrap().unwrap();
        fn levels<T: Clone>(v: &[Option<T>]) -> (Vec<T>, Vec<i16>) {
            (v.iter().flatten().cloned().collect(), v.iter().map(|x| x.is_some() as i16).collect())
        }
        match c {
            PqCol::Str(v) => {
                let (vals, def) = levels(v);
                let vals: Vec<ByteArray> = vals.iter().map(|s| ByteArray::from(s.as_str())).collect();
                col.typed::<ByteArrayType>().write_batch(&vals, Some(&def), None).unwrap();
            }
            PqCol::Int(v) => {
                let (vals, def) = levels(v);
                col.typed::<Int64Type>().write_batch(&vals, Some(&def), None).unwrap();
            }
            PqCol::Double(v) => {
                let (vals, def) = levels(v);
                col.typed::<DoubleType>().write_batch(&vals, Some(&def), None).unwrap();
            }
        }
        col.close().unwrap();
    }
    rg.close().unwrap();
    w.close().unwrap();
}

/// Gzips `bytes` into `path`.
pub(crate) fn write_gz(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap();
}

fn s(v: &str) -> Cell {
    Cell::Str(v.into())
}

#[test]
fn every_format_and_its_gz() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let csv = "text,label\n\"a, b\",pos\n\"say \"\"hi\"\"\nthere\",neg\n";
    let tsv = "text\tlabel\na, b\tpos\nx\tneg\n";
    let jsonl = "{\"text\": \"a, b\", \"label\": 1}\n\n{\"label\": 0, \"text\": \"x\", \"extra\": [1]}\n";
    let json = "[{\"text\": \"a, b\", \"label\": 1}, {\"text\": \"x\", \"label\": 0}]";
    for (name, body) in [("t.csv", csv), ("t.tsv", tsv), ("t.jsonl", jsonl), ("t.json", json)] {
        std::fs::write(d.join(name), body).unwrap();
        write_gz(&d.join(format!("{name}.gz")), body.as_bytes());
        for file in [name.to_string(), format!("{name}.gz")] {
            let t = Table::read(&d.join(&file)).unwrap();
            let (tc, lc) = (t.column("text", "k").unwrap(), t.column("label", "k").unwrap());
            assert_eq!(t.rows.len(), 2, "{file}");
            assert_eq!(t.rows[0].cells[tc], s("a, b"), "{file}");
            assert!(matches!(t.rows[1].cells[lc], Cell::Str(_) | Cell::Int(0)), "{file}");
        }
    }
    let t = Table::read(&d.join("t.csv")).unwrap();
    assert_eq!(t.rows[1].cells[0], s("say \"hi\"\nthere"));
    assert_eq!((t.rows[0].pos, t.rows[1].pos), (2, 3));
    let t = Table::read(&d.join("t.jsonl")).unwrap();
    // Keys in order of first appearance; within one object alphabetically (serde_json's map).
    assert_eq!(t.columns, ["label", "text", "extra"]);
    assert_eq!((t.rows[0].pos, t.rows[1].pos), (1, 3));
    assert_eq!(t.rows[0].cells[2], Cell::Null);
    assert_eq!(t.rows[1].cells[2], Cell::List(vec![Cell::Int(1)]));
    assert_eq!(t.rows[1].cells[1], s("x"));

    write_parquet(
        &d.join("t.parquet"),
        &[
            ("text", PqCol::Str(vec![Some("a, b".into()), None])),
            ("label", PqCol::Int(vec![Some(1), Some(0)])),
            ("x", PqCol::Double(vec![Some(0.5), None])),
        ],
    );
    let bytes = std::fs::read(d.join("t.parquet")).unwrap();
    write_gz(&d.join("t.parquet.gz"), &bytes);
    for f in ["t.parquet", "t.parquet.gz"] {
        let t = Table::read(&d.join(f)).unwrap();
        assert_eq!(t.columns, ["text", "label", "x"]);
        assert_eq!(t.rows[0].cells, vec![s("a, b"), Cell::Int(1), Cell::Float(0.5)]);
        assert_eq!(t.rows[1].cells, vec![Cell::Null, Cell::Int(0), Cell::Null]);
        assert_eq!(t.rows[1].pos, 2);
        assert!(t.column_types[1].contains("INT64"), "{:?}", t.column_types);
    }
}

#[test]
fn bad_files_name_file_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let w = |name: &str, body: &[u8]| {
        std::fs::write(d.join(name), body).unwrap();
        Table::read(&d.join(name)).unwrap_err()
    };
    let e = w("a.csv", b"text,label\nok,1\ntoo,many,fields\n");
    assert!(matches!(e, Error::Csv { line: 3, .. }), "{e:?}");
    assert!(e.to_string().contains("a.csv:3:") && e.to_string().contains("2 fields"), "{e}");
    let e = w("b.csv.gz", b"text,label\nok,1\n");
    assert!(e.to_string().contains("b.csv.gz") && e.to_string().contains("not gzip"), "{e}");
    let e = w("c.csv", b"text,label\nok,1\nbad \xff byte,0\n");
    assert!(e.to_string().contains("c.csv:3:") && e.to_string().contains("UTF-8"), "{e}");
    let e = w("c.jsonl", b"{\"text\": \"ok\"}\n{\"text\": \"\xff\"}\n");
    assert!(matches!(e, Error::Json { line: 2, .. }) && e.to_string().contains("UTF-8"), "{e}");
    let e = w("d.jsonl", b"{\"text\": \"ok\"}\n{\"text\": \"broken\"\n");
    assert!(matches!(e, Error::Json { line: 2, .. }), "{e:?}");
    let e = w("e.parquet", b"PAR1 not really");
    assert!(e.to_string().contains("e.parquet") && e.to_string().contains("Parquet"), "{e}");
    let e = w("f.txt", b"x");
    assert!(e.to_string().contains(".csv, .tsv"), "{e}");
    std::fs::write(d.join("g.csv"), "text,label\nx,1\n").unwrap();
    let t = Table::read(&d.join("g.csv")).unwrap();
    let e = t.column("review", "data.text_column").unwrap_err().to_string();
    assert!(
        e.contains("g.csv") && e.contains("`review`") && e.contains("text, label") && e.contains("data.text_column"),
        "{e}"
    );
    let e = t.cell_error(&t.rows[0], 1, "a string label").to_string();
    assert!(e.contains("g.csv:2: column `label`: expected a string label, found the string \"1\""), "{e}");
}
