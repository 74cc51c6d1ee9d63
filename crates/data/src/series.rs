//! Your own time series (`corpus = "series"`): one CSV/TSV/JSON Lines/Parquet file (optionally
//! `.gz`, [`crate::table`]) with an optional time column and numeric value columns, forecast
//! the way ETT is ([`crate::ett`]): `target`, `features = "S" | "M" | "MS"`, z-scored with
//! training statistics, sliding windows of `input_len` and `horizon`. The rows are cut by
//! `split_rows` or `split_ratio` (default [0.7, 0.1, 0.2]). A missing value is an error naming
//! its row and column unless `fill = "forward"`.

use crate::config::{DataConfig, Fill};
use crate::error::{Error, Result};
use crate::ett::{assemble, Forecast, Parsed, SplitSpec, Stamp};
use crate::source::HubOptions;
use crate::table::Table;

/// Loads a `corpus = "series"` config.
///
/// Errors: reading ([`Table::read`]); [`Error::MissingColumn`] for an absent `target` or
/// `time_column`; [`Error::Cell`] for a non-number, a missing value (without `fill`) or a bad
/// time stamp; [`Error::EmptySplit`] / [`Error::TooFewRows`] when the splits cannot hold a window.
pub fn load(cfg: &DataConfig, hub: &HubOptions) -> Result<Forecast> {
    cfg.validate()?;
    let src = crate::source::source_of(cfg).expect("validated: series has a dir or a hub");
    let table = Table::read(&src.fetch(cfg.file.as_deref().expect("validated: series names its file"), hub)?)?;
    from_table(&table, cfg)
}

/// [`load`] on a table already read.
pub fn from_table(table: &Table, cfg: &DataConfig) -> Result<Forecast> {
    let time_col = cfg.time_column.as_deref().map(|c| table.column(c, "data.time_column")).transpose()?;
    let target_col = table.column(&cfg.target, "data.target")?;
    let value_cols: Vec<usize> = (0..table.columns.len()).filter(|&i| Some(i) != time_col).collect();
    let (input_cols, target_cols, used) = crate::ett::feature_columns(cfg.features, &value_cols, target_col);
    let mut values: Vec<Vec<f64>> = vec![Vec::with_capacity(table.rows.len()); table.columns.len()];
    let (mut stamps, mut dates) = (Vec::new(), Vec::new());
    for row in &table.rows {
        for &c in &used {
            let cell = &row.cells[c];
            let v = if cell.is_missing() {
                match (cfg.fill, values[c].last()) {
                    (Some(Fill::Forward), Some(&last)) => last,
                    (Some(Fill::Forward), None) => {
                        return Err(table.cell_error(row, c, "a number (the first row has nothing to carry forward)"))
                    }
                    (None, _) => {
                        return Err(table.cell_error(
                            row,
                            c,
                            "a number (a missing value; set data.fill = \"forward\" to carry the last one forward)",
                        ))
                    }
                }
            } else {
                match cell.as_f64() {
                    Some(v) if v.is_finite() => v,
                    _ => return Err(table.cell_error(row, c, "a finite number")),
                }
            };
            values[c].push(v);
        }
        if let Some(tc) = time_col {
            let text = match &row.cells[tc] {
                crate::table::Cell::Str(s) => s.trim().to_string(),
                _ => String::new(),
            };
            let stamp = Stamp::parse(&text).ok_or_else(|| {
                table.cell_error(
                    row,
                    tc,
                    "a time stamp such as \"2016-07-01 00:00:00\", \"2016-07-01\" or \"2016-07-01T00:00Z\"",
                )
            })?;
            stamps.push(stamp);
            dates.push(text);
        }
    }
    let spec = match (cfg.split_rows, cfg.split_ratio) {
        (Some(r), _) => SplitSpec::Rows(Some(r)),
        (None, Some(r)) => SplitSpec::Ratio(r),
        (None, None) => SplitSpec::Ratio([0.7, 0.1, 0.2]),
    };
    let parsed =
        Parsed { header: table.columns.clone(), values, used, input_cols, target_cols, target_col, stamps, dates };
    let f = assemble(&table.path, cfg, parsed, spec, false)?;
    if f.train.rows == 0 {
        return Err(Error::EmptySplit { path: table.path.clone(), split: "train".into(), detail: None });
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CorpusKind, Features};
    use crate::table::tests::{write_parquet, PqCol};
    use std::path::Path;

    fn cfg(d: &Path, file: &str) -> DataConfig {
        DataConfig {
            corpus: CorpusKind::Series,
            dir: Some(d.into()),
            file: Some(file.into()),
            target: "load".into(),
            input_len: 4,
            horizon: 2,
            ..Default::default()
        }
    }

    fn csv(n: usize, hole: Option<usize>) -> String {
        let mut s = String::from("day,temp,load\n");
        for i in 0..n {
            let load = if Some(i) == hole { String::new() } else { format!("{}", (i as f64 * 0.3).sin() * 10.0) };
            s.push_str(&format!("2024-01-{:02},{},{load}\n", i % 28 + 1, i as f64 * 0.5));
        }
        s
    }

    #[test]
    fn formats_splits_and_features() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("s.csv"), csv(50, None)).unwrap();
        let load = |c: &DataConfig| super::load(c, &HubOptions::offline_at(d));
        // Ratio (the default): 35 / 5 / 10 rows.
        let f = load(&DataConfig { time_column: Some("day".into()), ..cfg(d, "s.csv") }).unwrap();
        assert_eq!(f.split_rows, [35, 5, 10]);
        assert_eq!((f.train.num_windows(), f.target_names.clone()), (30, vec!["load".to_string()]));
        assert_eq!(f.test.dates[0], "2024-01-09"); // row 40 - input_len 4 = 36 → day 36 % 28 + 1
                                                   // Without a time column every column is a value column: M takes both.
        let f = load(&DataConfig { features: Features::M, split_rows: Some([30, 10, 10]), ..cfg(d, "s.csv") });
        assert!(f.is_err(), "day is not a number without time_column");
        let f = load(&DataConfig {
            features: Features::M,
            time_column: Some("day".into()),
            split_ratio: Some([0.6, 0.2, 0.2]),
            ..cfg(d, "s.csv")
        })
        .unwrap();
        assert_eq!((f.input_names.len(), f.split_rows), (2, [30, 10, 10]));
        // The same series from Parquet (no time column).
        let vals: Vec<f64> = (0..50).map(|i| (i as f64 * 0.3).sin() * 10.0).collect();
        write_parquet(&d.join("s.parquet"), &[("load", PqCol::Double(vals.iter().map(|v| Some(*v)).collect()))]);
        let p = load(&cfg(d, "s.parquet")).unwrap();
        let c = load(&DataConfig { time_column: Some("day".into()), ..cfg(d, "s.csv") }).unwrap();
        assert_eq!((p.train.targets.clone(), p.test.targets.clone()), (c.train.targets, c.test.targets));
    }

    #[test]
    fn missing_values_error_or_fill_forward() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("s.csv"), csv(50, Some(7))).unwrap();
        let c = DataConfig { time_column: Some("day".into()), ..cfg(d, "s.csv") };
        let e = super::load(&c, &HubOptions::offline_at(d)).unwrap_err().to_string();
        assert!(e.contains("s.csv:9: column `load`: expected a number (a missing value"), "{e}");
        let f =
            super::load(&DataConfig { fill: Some(Fill::Forward), ..c.clone() }, &HubOptions::offline_at(d)).unwrap();
        // Row 7 repeats row 6 (normalised values equal).
        assert_eq!(f.train.targets[7], f.train.targets[6]);
        std::fs::write(d.join("b.csv"), csv(50, None).replace("2024-01-03", "03.01.2024")).unwrap();
        let e = super::load(&DataConfig { file: Some("b.csv".into()), ..c.clone() }, &HubOptions::offline_at(d))
            .unwrap_err()
            .to_string();
        assert!(e.contains("b.csv:4: column `day`: expected a time stamp"), "{e}");
        let e = DataConfig { split_ratio: Some([0.5, 0.1, 0.1]), ..c }.validate().unwrap_err().to_string();
        assert!(e.contains("data.split_ratio"), "{e}");
    }
}
