//! Strict JSON Lines reading: one object per line, every problem an error naming the
//! file and line.

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Reads a whole file as UTF-8.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = upto.len() - upto.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
        Error::Json { path: path.into(), line, column, msg: "invalid UTF-8".into() }
    })
}

/// One parsed line: its 1-based number and object.
pub(crate) struct Line {
    pub line: usize,
    pub obj: Map<String, Value>,
}

/// Parses every line of `path` into a JSON object.
pub(crate) fn read_objects(path: &Path) -> Result<Vec<Line>> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            return Err(Error::Json { path: path.into(), line, column: 1, msg: "empty line".into() });
        }
        let value: Value = serde_json::from_str(raw).map_err(|e| Error::Json {
            path: path.into(),
            line,
            column: e.column(),
            msg: e.to_string(),
        })?;
        match value {
            Value::Object(obj) => out.push(Line { line, obj }),
            other => {
                return Err(Error::Json { path: path.into(), line, column: 1, msg: format!("found {}", kind(&other)) })
            }
        }
    }
    Ok(out)
}

pub(crate) fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.trim().is_empty() => "an empty string".into(),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Field accessors that turn absence or a wrong type into errors naming file and line.
pub(crate) struct Fields<'a> {
    pub path: &'a Path,
    pub line: usize,
    pub obj: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn path(&self) -> PathBuf {
        self.path.to_path_buf()
    }

    fn get(&self, field: &str, expected: &str) -> Result<&Value> {
        self.obj.get(field).ok_or_else(|| Error::MissingField {
            path: self.path(),
            line: self.line,
            field: field.into(),
            expected: expected.into(),
        })
    }

    /// A string that is not empty after trimming.
    pub fn text(&self, field: &str) -> Result<&str> {
        let expected = "a non-empty string";
        match self.get(field, expected)? {
            Value::String(s) if !s.trim().is_empty() => Ok(s),
            other => Err(Error::BadField {
                path: self.path(),
                line: self.line,
                field: field.into(),
                expected: expected.into(),
                found: kind(other),
            }),
        }
    }

    /// An integer class label in `0..num_classes`.
    pub fn label(&self, field: &str, num_classes: usize) -> Result<usize> {
        let expected = format!("an integer class label in 0..{num_classes}");
        let v = self.get(field, &expected)?;
        let n = v.as_i64().ok_or_else(|| Error::BadField {
            path: self.path(),
            line: self.line,
            field: field.into(),
            expected: expected.clone(),
            found: kind(v),
        })?;
        if n < 0 || n as usize >= num_classes {
            return Err(Error::LabelOutOfRange { path: self.path(), line: self.line, label: n, num_classes });
        }
        Ok(n as usize)
    }
}
