//! JSON Lines (one object per line), or a JSON array of objects (what `.json` files from
//! pandas' `to_json(orient="records")` hold).

use super::{utf8, Cell, Format, Row, Table};
use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::Path;

pub(super) fn read(path: &Path, bytes: &[u8]) -> Result<Table> {
    let text = utf8(path, bytes).map_err(|e| match e {
        Error::Table { path, line, msg } => Error::Json { path, line: line.unwrap_or(1), column: 1, msg },
        other => other,
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let objects: Vec<(usize, Map<String, Value>)> = if text.trim_start().starts_with('[') {
        let v: Vec<Value> = serde_json::from_str(text).map_err(|e| Error::Json {
            path: path.into(),
            line: e.line(),
            column: e.column(),
            msg: format!("{e} (a .json file holds one object per line, or one array of objects)"),
        })?;
        v.into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Object(o) => Ok((i + 1, o)),
                other => Err(Error::Table {
                    path: path.into(),
                    line: None,
                    msg: format!("array item {}: expected a JSON object, found {}", i + 1, crate::jsonl::kind(&other)),
                }),
            })
            .collect::<Result<_>>()?
    } else {
        let mut out = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            if raw.trim().is_empty() {
                // A trailing blank line is common and harmless; blank lines inside are too.
                continue;
            }
            let v: Value = serde_json::from_str(raw).map_err(|e| Error::Json {
                path: path.into(),
                line: i + 1,
                column: e.column(),
                msg: e.to_string(),
            })?;
            match v {
                Value::Object(o) => out.push((i + 1, o)),
                other => {
                    return Err(Error::Json {
                        path: path.into(),
                        line: i + 1,
                        column: 1,
                        msg: format!("found {}", crate::jsonl::kind(&other)),
                    })
                }
            }
        }
        out
    };
    let mut columns: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (_, o) in &objects {
        for k in o.keys() {
            if !index.contains_key(k) {
                index.insert(k.clone(), columns.len());
                columns.push(k.clone());
            }
        }
    }
    let rows = objects
        .into_iter()
        .map(|(pos, o)| {
            let mut cells = vec![Cell::Null; columns.len()];
            for (k, v) in o {
                cells[index[&k]] = cell(v);
            }
            Row { pos, cells }
        })
        .collect();
    Ok(Table { path: path.into(), format: Format::Json, columns, column_types: Vec::new(), rows })
}

fn cell(v: Value) -> Cell {
    match v {
        Value::Null => Cell::Null,
        Value::Bool(b) => Cell::Bool(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cell::Int(i),
            None => Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cell::Str(s),
        Value::Array(a) => Cell::List(a.into_iter().map(cell).collect()),
        Value::Object(_) => Cell::Other("a JSON object".into()),
    }
}
