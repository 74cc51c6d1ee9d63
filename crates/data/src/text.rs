//! Your own labelled texts (`corpus = "text"`): a text column (and optionally a second text
//! for sentence-pair tasks) and a label column, from CSV/TSV/JSON Lines/Parquet files
//! ([`crate::table`]) in a folder or a hub repo.
//!
//! Labels are integers or strings. The class list is `data.labels` when set (which also fixes
//! the order), else the training split's labels sorted (integers numerically, when every
//! label is an integer). A validation or test split without its own file is carved from the
//! training file: `validation_split` / `test_split` of each class's rows, drawn with the run
//! seed. Every unusable row is an error naming file, line (or Parquet row) and column, unless
//! `skip_invalid` is set: then it is skipped and counted.

use crate::config::DataConfig;
use crate::error::{Error, Result};
use crate::labels::{carve_plan, class_list, Label};
use crate::source::HubOptions;
use crate::sst2::{TextClassification, TextExample};
use crate::table::{Cell, Row, Table};
use std::collections::BTreeMap;

/// One usable row before labels become indices.
struct Raw {
    text: String,
    pair: Option<String>,
    label: Label,
    /// (row position, label column) for messages about the label later on.
    pos: usize,
}

/// Which native type a label column holds (JSON/Parquet); a row of the other type is an error.
#[derive(Clone, Copy, PartialEq)]
enum Native {
    Int,
    Str,
}

struct Reader<'a> {
    cfg: &'a DataConfig,
    native: Option<(Native, usize, String)>,
}

impl Reader<'_> {
    /// The rows of `table`; row errors are returned, or skipped and counted with `skip_invalid`.
    fn rows(&mut self, table: &Table) -> Result<(Vec<Raw>, usize)> {
        let cfg = self.cfg;
        let text = table.column(&cfg.text_column, "data.text_column")?;
        let pair = cfg.text_pair_column.as_deref().map(|c| table.column(c, "data.text_pair_column")).transpose()?;
        let label = table.column(&cfg.label_column, "data.label_column")?;
        let (mut out, mut skipped) = (Vec::with_capacity(table.rows.len()), 0);
        for row in &table.rows {
            match self.row(table, row, text, pair, label) {
                Ok(r) => out.push(r),
                Err(_) if cfg.skip_invalid => skipped += 1,
                Err(e) => return Err(e),
            }
        }
        Ok((out, skipped))
    }

    fn row(&mut self, t: &Table, row: &Row, text: usize, pair: Option<usize>, label: usize) -> Result<Raw> {
        let text_of = |c: usize| -> Result<String> {
            match &row.cells[c] {
                Cell::Str(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                _ => Err(t.cell_error(row, c, "a non-empty text")),
            }
        };
        let text = text_of(text)?;
        let pair = pair.map(text_of).transpose()?;
        let (value, native) = match &row.cells[label] {
            Cell::Int(i) => (Label::Int(*i), Some(Native::Int)),
            Cell::Str(s) if !s.trim().is_empty() => {
                let s = s.trim();
                let native = (t.format != crate::table::Format::Csv && t.format != crate::table::Format::Tsv)
                    .then_some(Native::Str);
                (Label::parse(s), native)
            }
            Cell::List(_) => {
                return Err(t.cell_error(
                    row,
                    label,
                    "one label per row (multi-label rows, a list of labels, are not supported)",
                ))
            }
            _ => return Err(t.cell_error(row, label, "a label: an integer or a non-empty string")),
        };
        if let Some(n) = native {
            match &self.native {
                None => self.native = Some((n, row.pos, t.path.display().to_string())),
                Some((first, pos, file)) if *first != n => {
                    let kind = if *first == Native::Int { "an integer" } else { "a string" };
                    return Err(t.cell_error(
                        row,
                        label,
                        format!("{kind} label, like the first label of the column ({file}:{pos})"),
                    ));
                }
                _ => {}
            }
        }
        Ok(Raw { text, pair, label: value, pos: row.pos })
    }
}

/// Loads a `corpus = "text"` config: reads the split files, fixes the class list, maps labels
/// to indices and carves missing splits from train.
///
/// Errors: reading ([`Table::read`]), a missing column ([`Error::MissingColumn`]), an
/// unusable cell ([`Error::Cell`]: empty text, missing label, label of the wrong type or not
/// in `data.labels`, a validation/test class the training split lacks), fewer than two
/// classes or an empty split ([`Error::EmptySplit`]), [`Error::Config`] for impossible keys.
pub fn load(cfg: &DataConfig, hub: &HubOptions, seed: u64) -> Result<TextClassification> {
    cfg.validate()?;
    let src = crate::source::source_of(cfg).expect("validated: text has a dir or a hub");
    let read = |name: &str| -> Result<Table> { Table::read(&src.fetch(name, hub)?) };
    let train_file = cfg.train_file.as_deref().expect("validated: train_file is set");
    let train_table = read(train_file)?;
    let mut reader = Reader { cfg, native: None };
    let (mut train, skipped_train) = reader.rows(&train_table)?;
    if train.is_empty() {
        return Err(Error::EmptySplit { path: train_table.path.clone(), split: "train".into(), detail: None });
    }
    let mut split_rows = |file: &Option<String>, split: &str| -> Result<Option<(Table, Vec<Raw>, usize)>> {
        let Some(name) = file else { return Ok(None) };
        let table = read(name)?;
        let (rows, skipped) = reader.rows(&table)?;
        if rows.is_empty() {
            return Err(Error::EmptySplit { path: table.path.clone(), split: split.into(), detail: None });
        }
        Ok(Some((table, rows, skipped)))
    };
    let validation = split_rows(&cfg.validation_file, "validation")?;
    let test = split_rows(&cfg.test_file, "test")?;

    // The class list: configured, or the training split's, sorted.
    let class_names = class_list(cfg.labels.as_deref(), train.iter().map(|r| &r.label));
    let index: BTreeMap<&str, usize> = class_names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let mut skipped = [skipped_train, 0, 0];
    let to_examples = |table: &Table, rows: Vec<Raw>, skipped: &mut usize, known: Option<&[bool]>| {
        let col = table.column(&cfg.label_column, "data.label_column")?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let name = r.label.name();
            let row = Row { pos: r.pos, cells: vec![Cell::Str(name.clone()); table.columns.len()] };
            let err = match index.get(name.as_str()) {
                Some(&i) if known.is_none_or(|k| k[i]) => {
                    out.push(TextExample { text: r.text, pair: r.pair, label: i });
                    continue;
                }
                Some(_) => table.error_at(
                    &row,
                    col,
                    "a class that occurs in the training split (the model never learns the others)",
                    format!("`{name}`"),
                ),
                None if cfg.labels.is_some() => table.error_at(
                    &row,
                    col,
                    format!("one of data.labels = [{}]", class_names.join(", ")),
                    format!("`{name}`"),
                ),
                None => table.error_at(
                    &row,
                    col,
                    format!(
                        "a class that occurs in the training split ([{}]; the model never learns the others)",
                        class_names.join(", ")
                    ),
                    format!("`{name}`"),
                ),
            };
            if cfg.skip_invalid {
                *skipped += 1;
            } else {
                return Err(err);
            }
        }
        Ok::<_, Error>(out)
    };
    let train_rows = std::mem::take(&mut train);
    let mut train_ex = to_examples(&train_table, train_rows, &mut skipped[0], None)?;
    if class_names.len() < 2 {
        return Err(Error::EmptySplit {
            path: train_table.path.clone(),
            split: "train".into(),
            detail: Some(format!(
                "one class only (`{}`) in column `{}`: classification needs at least two",
                class_names.first().cloned().unwrap_or_default(),
                cfg.label_column
            )),
        });
    }
    let mut in_train = vec![false; class_names.len()];
    for e in &train_ex {
        in_train[e.label] = true;
    }
    let mut split_examples = |s: Option<(Table, Vec<Raw>, usize)>, k: usize| -> Result<Option<Vec<TextExample>>> {
        let Some((table, rows, sk)) = s else { return Ok(None) };
        skipped[k] += sk;
        let ex = to_examples(&table, rows, &mut skipped[k], Some(&in_train))?;
        if ex.is_empty() {
            return Err(Error::EmptySplit {
                path: table.path.clone(),
                split: ["", "validation", "test"][k].into(),
                detail: None,
            });
        }
        Ok(Some(ex))
    };
    let validation = split_examples(validation, 1)?;
    let test = split_examples(test, 2)?;
    let (validation, test) = carve(&mut train_ex, validation, test, cfg, seed, &train_table, class_names.len())?;
    Ok(TextClassification {
        train: train_ex,
        validation,
        test,
        extra_train: 0,
        num_classes: class_names.len(),
        class_names,
        skipped,
    })
}

/// Takes `test_split` and `validation_split` of each class's training rows (seeded), for the
/// splits that have no file; the training split keeps its file order.
fn carve(
    train: &mut Vec<TextExample>,
    validation: Option<Vec<TextExample>>,
    test: Option<Vec<TextExample>>,
    cfg: &DataConfig,
    seed: u64,
    table: &Table,
    num_classes: usize,
) -> Result<(Vec<TextExample>, Vec<TextExample>)> {
    let fv = if validation.is_none() { cfg.validation_split } else { 0.0 };
    let ft = if test.is_none() { cfg.test_split } else { 0.0 };
    if fv == 0.0 && ft == 0.0 {
        return Ok((validation.unwrap_or_default(), test.unwrap_or_default()));
    }
    let labels: Vec<usize> = train.iter().map(|e| e.label).collect();
    let dest = carve_plan(&labels, num_classes, fv, ft, seed);
    let mut parts: [Vec<TextExample>; 3] = Default::default();
    for (e, d) in std::mem::take(train).into_iter().zip(dest) {
        parts[d as usize].push(e);
    }
    let [tr, va, te] = parts;
    for (split, key, rows, f) in [("validation", "validation_split", &va, fv), ("test", "test_split", &te, ft)] {
        if f > 0.0 && rows.is_empty() {
            return Err(Error::EmptySplit {
                path: table.path.clone(),
                split: split.into(),
                detail: Some(format!("data.{key} = {f} of {} rows rounds to none in every class", tr.len())),
            });
        }
    }
    if tr.is_empty() {
        return Err(Error::EmptySplit {
            path: table.path.clone(),
            split: "train".into(),
            detail: Some("every row was carved out".into()),
        });
    }
    *train = tr;
    Ok((validation.unwrap_or(va), test.unwrap_or(te)))
}

#[cfg(test)]
#[path = "text_tests.rs"]
mod tests;
