//! ETT (Electricity Transformer Temperature) forecasting under the Informer protocol
//! (Zhou et al. 2021): one CSV cut by rows into train / validation / test (ETTh: 12, 4 and
//! 4 months of 30 days = 8,640 / 2,880 / 2,880 rows; ETTm: 4×), z-scored with statistics
//! of the training rows only, cut into sliding windows of `input_len` inputs and `horizon`
//! targets. The validation and test splits carry `input_len` rows of context before their
//! first row, so their first target is the split's first row.

use crate::config::{DataConfig, Features, Freq};
use crate::error::{Error, Result};
use crate::jsonl::read_text;
use std::path::Path;

/// One split: normalised rows (with leading context for validation/test) and window geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastSplit {
    /// Rows held, context included.
    pub rows: usize,
    /// File row index (0-based, header excluded) of `inputs` row 0.
    pub first_row: usize,
    /// (rows, in_features): normalised input columns, then calendar features.
    pub inputs: Vec<f32>,
    /// (rows, out_features): normalised target columns.
    pub targets: Vec<f32>,
    /// Values per input row: the input columns (1 for `features = "S"`), plus 4 calendar
    /// features (5 at 15-minute frequency) when `data.calendar` is on.
    pub in_features: usize,
    /// Values per target row: all value columns for `data.features = "M"`, else 1 (`data.target`).
    pub out_features: usize,
    /// Input steps per window (`data.input_len`).
    pub input_len: usize,
    /// Target steps per window, the rows right after the inputs (`data.horizon`).
    pub horizon: usize,
    /// The dates of the rows (for plots and CSV output); empty when the file has no date column.
    pub dates: Vec<String>,
}

impl ForecastSplit {
    /// Number of windows: every start whose `input_len + horizon` rows fit.
    pub fn num_windows(&self) -> usize {
        (self.rows + 1).saturating_sub(self.input_len + self.horizon)
    }

    /// Copies window `i` into `x` (input_len × in_features) and `y` (horizon × out_features).
    pub fn window_into(&self, i: usize, x: &mut [f32], y: &mut [f32]) {
        let (l, h) = (self.input_len, self.horizon);
        x.copy_from_slice(&self.inputs[i * self.in_features..(i + l) * self.in_features]);
        y.copy_from_slice(&self.targets[(i + l) * self.out_features..(i + l + h) * self.out_features]);
    }
}

/// A forecasting corpus: three splits plus the statistics needed to undo the z-score.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// The first `split_rows[0]` rows, no context.
    pub train: ForecastSplit,
    /// The next `split_rows[1]` rows, preceded by (up to) `input_len` rows of context from train.
    pub validation: ForecastSplit,
    /// The next `split_rows[2]` rows, preceded by (up to) `input_len` rows of context; rows of the file
    /// beyond the three splits are not used.
    pub test: ForecastSplit,
    /// Names of the input features (value columns, then calendar features).
    pub input_names: Vec<String>,
    /// Names of the target columns.
    pub target_names: Vec<String>,
    /// Training-row mean of each input value column (calendar features excluded, so it may
    /// be shorter than `input_names`).
    pub input_mean: Vec<f32>,
    /// Training-row standard deviation of each input value column (population, as sklearn's
    /// StandardScaler; 1 where a column is constant).
    pub input_std: Vec<f32>,
    /// `input_mean` and `input_std` as the z-score used them (f64), so a served forecaster
    /// (`train serve`) normalises a request's rows to the same f32 bits as the corpus's.
    pub input_stats: Vec<(f64, f64)>,
    /// Training-row mean of each target column: original = normalised * std + mean.
    pub target_mean: Vec<f32>,
    /// Training-row standard deviation of each target column (population; 1 where constant).
    pub target_std: Vec<f32>,
    /// Sampling interval: `data.freq`, or inferred from the first two dates (60 or 15 minutes).
    pub freq: Freq,
    /// Data rows in the file (header excluded).
    pub file_rows: usize,
    /// Rows of (train, validation, test) proper, context excluded.
    pub split_rows: [usize; 3],
}

impl Forecast {
    /// Z-scores `value` of input value column `k` exactly as the corpus did its rows.
    pub fn normalize_input(&self, k: usize, value: f64) -> f32 {
        let (mean, std) = self.input_stats[k];
        ((value - mean) / std) as f32
    }

    /// Undoes the z-score of target values laid out (..., out_features).
    pub fn denormalize_targets(&self, values: &mut [f32]) {
        let k = self.target_names.len();
        for (i, v) in values.iter_mut().enumerate() {
            *v = *v * self.target_std[i % k] + self.target_mean[i % k];
        }
    }
}

/// A calendar time stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
}

impl Stamp {
    pub(crate) fn parse(s: &str) -> Option<Stamp> {
        let s = s.trim();
        let (date, time) = s.split_once([' ', 'T']).unwrap_or((s, "00:00:00"));
        // Common spellings beside ETT's own: `2016/07/01`, ISO 8601's `T` and a UTC `Z`.
        let time = time.trim_end_matches('Z');
        let mut d = date.split(['-', '/']);
        let year: i64 = d.next()?.parse().ok()?;
        let month: u32 = d.next()?.parse().ok()?;
        let day: u32 = d.next()?.parse().ok()?;
        if d.next().is_some() {
            return None;
        }
        let mut t = time.split(':');
        let hour: u32 = t.next()?.parse().ok()?;
        let minute: u32 = t.next().unwrap_or("0").parse().ok()?;
        let _second: f64 = t.next().unwrap_or("0").parse().ok()?;
        let valid =
            (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month) && hour < 24 && minute < 60;
        valid.then_some(Stamp { year, month, day, hour, minute })
    }

    /// Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    fn days(&self) -> i64 {
        let y = if self.month <= 2 { self.year - 1 } else { self.year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = self.month as i64;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + self.day as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    fn minutes(&self) -> i64 {
        self.days() * 1440 + self.hour as i64 * 60 + self.minute as i64
    }

    /// Monday = 0, as pandas' `dayofweek`.
    fn weekday(&self) -> i64 {
        (self.days() + 3).rem_euclid(7)
    }

    fn day_of_year(&self) -> u32 {
        (1..self.month).map(|m| days_in_month(self.year, m)).sum::<u32>() + self.day
    }

    /// Informer's `time_features(timeenc=1)`: each feature scaled to [-0.5, 0.5].
    fn features(&self, freq: Freq, out: &mut Vec<f32>) {
        if freq == Freq::Min15 {
            out.push(self.minute as f32 / 59.0 - 0.5);
        }
        out.push(self.hour as f32 / 23.0 - 0.5);
        out.push(self.weekday() as f32 / 6.0 - 0.5);
        out.push((self.day - 1) as f32 / 30.0 - 0.5);
        out.push((self.day_of_year() - 1) as f32 / 365.0 - 0.5);
    }
}

/// The calendar features of one time stamp (`YYYY-MM-DD[ HH:MM[:SS]]`), as the corpus computes
/// them for its rows (Informer's `time_features(timeenc=1)`); None for an unreadable stamp.
/// For a served forecaster (`train serve`), whose requests carry their own dates.
pub fn calendar_features(date: &str, freq: Freq) -> Option<Vec<f32>> {
    let mut out = Vec::with_capacity(5);
    Stamp::parse(date)?.features(freq, &mut out);
    Some(out)
}

/// The input and target columns `features` picks among `value_cols` (S: the target alone, M:
/// every value column, MS: every value column in, the target out), and the columns needed as
/// numbers: their union, sorted.
pub(crate) fn feature_columns(
    features: Features,
    value_cols: &[usize],
    target_col: usize,
) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let (input_cols, target_cols) = match features {
        Features::S => (vec![target_col], vec![target_col]),
        Features::M => (value_cols.to_vec(), value_cols.to_vec()),
        Features::MS => (value_cols.to_vec(), vec![target_col]),
    };
    let mut used: Vec<usize> = input_cols.iter().chain(&target_cols).copied().collect();
    used.sort_unstable();
    used.dedup();
    (input_cols, target_cols, used)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

fn calendar_names(freq: Freq) -> Vec<String> {
    let mut v = Vec::new();
    if freq == Freq::Min15 {
        v.push("minute_of_hour");
    }
    v.extend(["hour_of_day", "day_of_week", "day_of_month", "day_of_year"]);
    v.into_iter().map(String::from).collect()
}

/// Loads `path` and cuts it by `cfg` (features, target, input_len, horizon, calendar, freq,
/// split_rows).
///
/// Errors: [`Error::MissingFile`] / [`Error::Io`] / [`Error::Json`] (not UTF-8) reading the
/// file; [`Error::EmptySplit`] for an empty file, a header without rows, or a split too short
/// for one window; [`Error::MissingColumn`] for an absent `target` (or `date` with `calendar`);
/// [`Error::Csv`] for a wrong cell count, a non-finite number or a bad date;
/// [`Error::Config`] (`data.freq`) when the interval is neither 60 nor 15 minutes or cannot be
/// inferred; [`Error::TooFewRows`] when the file is shorter than the three splits.
pub fn load(path: &Path, cfg: &DataConfig) -> Result<Forecast> {
    let text = read_text(path)?;
    let mut lines = text.lines().enumerate();
    let header_line = match lines.next() {
        Some((_, h)) if !h.trim().is_empty() => h,
        _ => {
            return Err(Error::EmptySplit {
                path: path.into(),
                split: "train".into(),
                detail: Some("the file is empty; expected a CSV header and rows".into()),
            })
        }
    };
    let header: Vec<&str> = header_line.split(',').map(str::trim).collect();
    let header_list = header.join(",");
    let find = |name: &str| -> Result<usize> {
        header.iter().position(|h| *h == name).ok_or_else(|| Error::MissingColumn {
            path: path.into(),
            column: name.into(),
            header: header_list.clone(),
        })
    };
    let date_col = header.iter().position(|h| *h == "date");
    if cfg.calendar && date_col.is_none() {
        find("date")?;
    }
    let value_cols: Vec<usize> = (0..header.len()).filter(|&i| Some(i) != date_col).collect();
    let target_col = find(&cfg.target)?;
    let (input_cols, target_cols, used) = feature_columns(cfg.features, &value_cols, target_col);

    let mut values: Vec<Vec<f64>> = vec![Vec::new(); header.len()];
    let mut stamps: Vec<Stamp> = Vec::new();
    let mut dates: Vec<String> = Vec::new();
    for (i, raw) in lines {
        let line = i + 1;
        let cells: Vec<&str> = raw.split(',').collect();
        if cells.len() != header.len() {
            return Err(Error::Csv {
                path: path.into(),
                line,
                column: cells.len().min(header.len()) + 1,
                expected: format!("{} comma-separated cells as in the header", header.len()),
                found: format!("{} cells", cells.len()),
            });
        }
        for &c in &used {
            let cell = cells[c].trim();
            match cell.parse::<f64>() {
                Ok(v) if v.is_finite() => values[c].push(v),
                _ => {
                    return Err(Error::Csv {
                        path: path.into(),
                        line,
                        column: c + 1,
                        expected: format!("a finite number in column `{}`", header[c]),
                        found: cell.into(),
                    })
                }
            }
        }
        if let Some(dc) = date_col {
            let cell = cells[dc].trim();
            let stamp = Stamp::parse(cell).ok_or_else(|| Error::Csv {
                path: path.into(),
                line,
                column: dc + 1,
                expected: "a date \"YYYY-MM-DD HH:MM:SS\"".into(),
                found: cell.into(),
            })?;
            stamps.push(stamp);
            dates.push(cell.to_string());
        }
    }
    let names: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let parsed = Parsed { header: names, values, used, input_cols, target_cols, target_col, stamps, dates };
    assemble(path, cfg, parsed, SplitSpec::Rows(cfg.split_rows), true)
}

/// How the rows are cut into train / validation / test.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SplitSpec {
    /// Row counts; `None` = Informer's for the frequency.
    Rows(Option<[usize; 3]>),
    /// Fractions: train = ⌊n·a⌋, test = ⌊n·c⌋, validation the rest (the long-horizon
    /// forecasting protocol of Autoformer and its successors).
    Ratio([f64; 3]),
}

/// A series file read into columns: what [`assemble`] cuts into splits.
pub(crate) struct Parsed {
    /// Column names, in file order.
    pub header: Vec<String>,
    /// Values of each used column (others empty).
    pub values: Vec<Vec<f64>>,
    /// Columns read as numbers (inputs and targets), sorted.
    pub used: Vec<usize>,
    /// Input columns.
    pub input_cols: Vec<usize>,
    /// Target columns.
    pub target_cols: Vec<usize>,
    /// The `data.target` column.
    pub target_col: usize,
    /// Parsed time stamps (empty without a time column).
    pub stamps: Vec<Stamp>,
    /// The time column as written (empty without one).
    pub dates: Vec<String>,
}

/// Normalises with training statistics and cuts the windows of each split. `need_freq`: the
/// sampling interval must be known (ETT: it picks the default split); otherwise a series
/// without stamps is taken as hourly, which only matters for calendar features (refused
/// without a time column).
pub(crate) fn assemble(path: &Path, cfg: &DataConfig, p: Parsed, spec: SplitSpec, need_freq: bool) -> Result<Forecast> {
    let Parsed { header, values, used, input_cols, target_cols, target_col, stamps, dates } = p;
    let n = values[target_col].len();
    if n == 0 {
        return Err(Error::EmptySplit {
            path: path.into(),
            split: "train".into(),
            detail: Some("the file has a header but no rows".into()),
        });
    }

    let freq = match (cfg.freq, stamps.len() >= 2) {
        (Some(f), _) => f,
        (None, true) => match stamps[1].minutes() - stamps[0].minutes() {
            60 => Freq::Hourly,
            15 => Freq::Min15,
            _ if !need_freq && !cfg.calendar => Freq::Hourly,
            d => {
                return Err(Error::config(
                    "data.freq",
                    format!(
                        "{}: the first two rows are {d} minutes apart; expected 60 (hourly) or 15, or set data.freq",
                        path.display()
                    ),
                ))
            }
        },
        (None, false) if !need_freq => Freq::Hourly,
        (None, false) => {
            return Err(Error::config(
                "data.freq",
                format!(
                    "{}: cannot infer the sampling interval (no date column or one row); set data.freq",
                    path.display()
                ),
            ))
        }
    };
    let split_rows = match spec {
        SplitSpec::Rows(Some(r)) => r,
        SplitSpec::Rows(None) => match freq {
            Freq::Hourly => [8640, 2880, 2880],
            Freq::Min15 => [4 * 8640, 4 * 2880, 4 * 2880],
        },
        SplitSpec::Ratio([a, _, c]) => {
            let (train, test) = ((n as f64 * a) as usize, (n as f64 * c) as usize);
            [train, n.saturating_sub(train + test), test]
        }
    };
    let needed: usize = split_rows.iter().sum();
    if n < needed {
        return Err(Error::TooFewRows {
            path: path.into(),
            rows: n,
            needed,
            detail: format!(
                "train/validation/test = {}/{}/{} rows; set data.split_rows for a shorter file",
                split_rows[0], split_rows[1], split_rows[2]
            ),
        });
    }

    // Statistics from the training rows only, so no validation/test information leaks in.
    let train_end = split_rows[0];
    let mut mean = vec![0f64; header.len()];
    let mut std = vec![1f64; header.len()];
    for &c in &used {
        let col = &values[c][..train_end];
        let m = col.iter().sum::<f64>() / train_end as f64;
        let var = col.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / train_end as f64;
        mean[c] = m;
        std[c] = if var > 0.0 { var.sqrt() } else { 1.0 };
    }
    let norm = |c: usize, r: usize| ((values[c][r] - mean[c]) / std[c]) as f32;

    let mut input_names: Vec<String> = input_cols.iter().map(|&c| header[c].to_string()).collect();
    if cfg.calendar {
        input_names.extend(calendar_names(freq));
    }
    let in_features = input_names.len();
    let out_features = target_cols.len();

    let l = cfg.input_len;
    let bounds = [
        (0, split_rows[0]),
        (split_rows[0] - l.min(split_rows[0]), split_rows[0] + split_rows[1]),
        (split_rows[0] + split_rows[1] - l.min(split_rows[0] + split_rows[1]), needed),
    ];
    let names = ["train", "validation", "test"];
    let mut splits = Vec::with_capacity(3);
    for (k, &(start, end)) in bounds.iter().enumerate() {
        let rows = end - start;
        let mut inputs = Vec::with_capacity(rows * in_features);
        let mut targets = Vec::with_capacity(rows * out_features);
        #[allow(clippy::needless_range_loop)] // r indexes several columns and the stamps
        for r in start..end {
            inputs.extend(input_cols.iter().map(|&c| norm(c, r)));
            if cfg.calendar {
                stamps[r].features(freq, &mut inputs);
            }
            targets.extend(target_cols.iter().map(|&c| norm(c, r)));
        }
        let split = ForecastSplit {
            rows,
            first_row: start,
            inputs,
            targets,
            in_features,
            out_features,
            input_len: l,
            horizon: cfg.horizon,
            dates: if dates.is_empty() { Vec::new() } else { dates[start..end].to_vec() },
        };
        if split.num_windows() == 0 {
            return Err(Error::EmptySplit {
                path: path.into(),
                split: names[k].into(),
                detail: Some(format!(
                    "{rows} rows (context included) cannot hold one window of input_len {} + horizon {}",
                    l, cfg.horizon
                )),
            });
        }
        splits.push(split);
    }
    let test = splits.pop().unwrap();
    let validation = splits.pop().unwrap();
    let train = splits.pop().unwrap();
    Ok(Forecast {
        train,
        validation,
        test,
        input_names,
        target_names: target_cols.iter().map(|&c| header[c].to_string()).collect(),
        input_mean: input_cols.iter().map(|&c| mean[c] as f32).collect(),
        input_std: input_cols.iter().map(|&c| std[c] as f32).collect(),
        input_stats: input_cols.iter().map(|&c| (mean[c], std[c])).collect(),
        target_mean: target_cols.iter().map(|&c| mean[c] as f32).collect(),
        target_std: target_cols.iter().map(|&c| std[c] as f32).collect(),
        freq,
        file_rows: n,
        split_rows,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::CorpusKind;

    /// An ETT-shaped CSV: `rows` rows every `step_min` minutes from 2016-07-01 00:00; column
    /// values are simple functions of the row index so windows can be checked exactly.
    pub(crate) fn write_csv(path: &Path, rows: usize, step_min: i64) {
        let mut s = String::from("date,HUFL,HULL,MUFL,MULL,LUFL,LULL,OT\n");
        let start = Stamp { year: 2016, month: 7, day: 1, hour: 0, minute: 0 }.minutes();
        for r in 0..rows {
            let m = start + r as i64 * step_min;
            let (days, mins) = (m.div_euclid(1440), m.rem_euclid(1440));
            let (y, mo, d) = civil(days);
            s.push_str(&format!("{y:04}-{mo:02}-{d:02} {:02}:{:02}:00", mins / 60, mins % 60));
            for c in 0..7 {
                s.push_str(&format!(",{}", r as f64 * (c + 1) as f64 + 0.5));
            }
            s.push('\n');
        }
        std::fs::write(path, s).unwrap();
    }

    fn civil(z: i64) -> (i64, u32, u32) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        (yoe + era * 400 + (m <= 2) as i64, m, d)
    }

    fn cfg(features: Features) -> DataConfig {
        DataConfig {
            corpus: CorpusKind::Ett,
            features,
            input_len: 4,
            horizon: 2,
            split_rows: Some([20, 8, 8]),
            ..Default::default()
        }
    }

    #[test]
    fn dates() {
        let s = Stamp::parse("2016-07-01 00:00:00").unwrap();
        assert_eq!(s.weekday(), 4); // a Friday
        assert_eq!(s.day_of_year(), 183); // leap year
        assert_eq!(civil(s.days()), (2016, 7, 1));
        assert!(Stamp::parse("2016-02-30 00:00:00").is_none());
        assert!(Stamp::parse("2016-13-01 00:00:00").is_none());
    }

    #[test]
    fn splits_windows_and_stats() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("ETTh1.csv");
        write_csv(&p, 40, 60);
        let f = load(&p, &cfg(Features::S)).unwrap();
        assert_eq!(f.freq, Freq::Hourly);
        assert_eq!(f.train.rows, 20);
        assert_eq!((f.validation.first_row, f.validation.rows), (16, 12));
        assert_eq!((f.test.first_row, f.test.rows), (24, 12));
        // OT = 7r + 0.5 over r = 0..20: mean 7*9.5+0.5, population std 7*sqrt((20^2-1)/12).
        assert!((f.target_mean[0] - 67.0).abs() < 1e-4);
        let sd = 7.0 * ((400.0f64 - 1.0) / 12.0).sqrt();
        assert!((f.target_std[0] as f64 - sd).abs() < 1e-4);
        assert_eq!(f.train.num_windows(), 20 - 4 - 2 + 1);
        assert_eq!(f.validation.num_windows(), 8 - 2 + 1);
        // The first validation target is file row 20 (the split's first row).
        let (mut x, mut y) = (vec![0.0; 4], vec![0.0; 2]);
        f.validation.window_into(0, &mut x, &mut y);
        let mut orig = y.clone();
        f.denormalize_targets(&mut orig);
        assert!((orig[0] - (7.0 * 20.0 + 0.5)).abs() < 1e-3, "{orig:?}");
        let mut xo = x.clone();
        f.denormalize_targets(&mut xo);
        assert!((xo[0] - (7.0 * 16.0 + 0.5)).abs() < 1e-3);
        // Last test window ends at file row 35.
        f.test.window_into(f.test.num_windows() - 1, &mut x, &mut y);
        f.denormalize_targets(&mut y);
        assert!((y[1] - (7.0 * 35.0 + 0.5)).abs() < 1e-3);
    }

    #[test]
    fn multivariate_calendar_and_ettm() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("ETTm1.csv");
        write_csv(&p, 40, 15);
        let mut c = cfg(Features::M);
        c.calendar = true;
        let f = load(&p, &c).unwrap();
        assert_eq!(f.freq, Freq::Min15);
        assert_eq!(f.train.in_features, 7 + 5);
        assert_eq!(f.train.out_features, 7);
        assert_eq!(f.input_names[7], "minute_of_hour");
        // Row 1 = 00:15 on Friday 2016-07-01.
        let row1 = &f.train.inputs[12..24];
        assert!((row1[7] - (15.0 / 59.0 - 0.5)).abs() < 1e-6);
        assert!((row1[8] - -0.5).abs() < 1e-6);
        assert!((row1[9] - (4.0 / 6.0 - 0.5)).abs() < 1e-6);
        let c = DataConfig { features: Features::MS, ..cfg(Features::MS) };
        let f = load(&p, &c).unwrap();
        assert_eq!((f.train.in_features, f.train.out_features), (7, 1));
        // The default split of 15-minute data is 4x Informer's hourly one.
        let e = load(&p, &DataConfig { split_rows: None, ..cfg(Features::S) }).unwrap_err();
        assert!(matches!(e, Error::TooFewRows { needed: 57_600, .. }), "{e}");
    }

    #[test]
    fn informer_default_split() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("ETTh1.csv");
        write_csv(&p, 17_420, 60);
        let c = DataConfig { corpus: CorpusKind::Ett, ..Default::default() };
        let f = load(&p, &c).unwrap();
        assert_eq!(f.split_rows, [8640, 2880, 2880]);
        assert_eq!(f.file_rows, 17_420);
        assert_eq!(f.train.num_windows(), 8640 - 96 - 24 + 1);
        assert_eq!(f.validation.first_row, 8640 - 96);
        assert_eq!(f.test.num_windows(), 2880 - 24 + 1);
    }
}
