//! `--set section.key=value` overrides applied to the parsed TOML tree before it is
//! deserialised, so the resolved config (and the run directory's `config.toml`) is what ran.

use anyhow::{bail, Context, Result};
use toml::{Table, Value};

/// One parsed `--set` argument.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The dotted key split at the dots.
    pub path: Vec<String>,
    /// The value, typed as TOML reads it.
    pub value: Value,
    /// The argument as given, for error messages.
    pub raw: String,
}

impl Override {
    /// Parses `section.key=value`. The value is read as a TOML value (`3`, `0.5`, `true`,
    /// `[1, 2]`, `"text"`); anything that is not valid TOML is taken as a bare string, so
    /// `--set model.variant=nog` works without quotes.
    pub fn parse(arg: &str) -> Result<Self> {
        let (key, value) = arg.split_once('=').with_context(|| format!("--set {arg:?}: expected section.key=value"))?;
        let key = key.trim();
        let path: Vec<String> = key.split('.').map(|s| s.trim().to_string()).collect();
        if path.iter().any(|p| p.is_empty()) {
            bail!("--set {arg:?}: key {key:?} has an empty part; expected section.key=value");
        }
        let value = parse_value(value.trim());
        Ok(Self { path, value, raw: arg.to_string() })
    }

    /// The dotted key (`section.key`).
    pub fn key(&self) -> String {
        self.path.join(".")
    }
}

fn parse_value(text: &str) -> Value {
    let doc = format!("v = {text}");
    match doc.parse::<Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| Value::String(text.to_string())),
        Err(_) => Value::String(text.to_string()),
    }
}

/// Applies overrides in order, creating sections as needed. A float given where the file
/// has an integer (or the reverse) is left to the typed deserialiser to judge.
pub fn apply(table: &mut Table, overrides: &[Override]) -> Result<()> {
    for o in overrides {
        let mut cur = &mut *table;
        for (i, part) in o.path.iter().enumerate() {
            if i + 1 == o.path.len() {
                cur.insert(part.clone(), coerce(cur.get(part), o.value.clone()));
            } else {
                let entry = cur.entry(part.clone()).or_insert_with(|| Value::Table(Table::new()));
                cur = match entry {
                    Value::Table(t) => t,
                    _ => bail!("--set {}: `{}` is a value, not a section", o.raw, o.path[..=i].join(".")),
                };
            }
        }
    }
    Ok(())
}

/// `--set train.lr=1` should mean 1.0 when the key holds a float: TOML would otherwise
/// reject an integer for an f64 field.
fn coerce(existing: Option<&Value>, new: Value) -> Value {
    match (existing, new) {
        (Some(Value::Float(_)), Value::Integer(i)) => Value::Float(i as f64),
        (_, v) => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_typed_values() {
        assert_eq!(Override::parse("train.epochs=3").unwrap().value, Value::Integer(3));
        assert_eq!(Override::parse("train.lr=1e-3").unwrap().value, Value::Float(1e-3));
        assert_eq!(Override::parse("model.bidirectional=true").unwrap().value, Value::Boolean(true));
        assert_eq!(Override::parse("model.variant=nog").unwrap().value, Value::String("nog".into()));
        assert_eq!(Override::parse("model.variant=\"nog\"").unwrap().value, Value::String("nog".into()));
        assert!(Override::parse("novalue").is_err());
        assert!(Override::parse("a..b=1").is_err());
    }

    #[test]
    fn applies_and_coerces() {
        let mut t: Table = "[train]\nlr = 0.1\n".parse().unwrap();
        apply(&mut t, &[Override::parse("train.lr=1").unwrap(), Override::parse("run.seed=7").unwrap()]).unwrap();
        assert_eq!(t["train"]["lr"], Value::Float(1.0));
        assert_eq!(t["run"]["seed"], Value::Integer(7));
        let err = apply(&mut t, &[Override::parse("train.lr.x=1").unwrap()]).unwrap_err();
        assert!(err.to_string().contains("not a section"), "{err}");
    }
}
