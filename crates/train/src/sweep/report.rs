//! A sweep's results: `results.csv` (one row per finished run) and `results.md` (settings
//! ranked by the sweep's metric, mean ± sample std over seeds).

use super::spec::{show, SweepSpec, Trial};
use crate::config::MetricMode;
use anyhow::{anyhow, Context, Result};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::Path;

/// A finished run's `summary.json`.
pub fn read_summary(run_dir: &Path) -> Result<Json> {
    let p = run_dir.join("summary.json");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

/// `split.metric` (or a top-level number such as `wall_seconds`) from a summary.
pub fn metric_of(summary: &Json, key: &str) -> Option<f64> {
    match key.split_once('.') {
        Some((split, m)) => summary.get(split)?.get(m)?.as_f64(),
        None => summary.get(key)?.as_f64(),
    }
}

/// A finished trial's numbers.
#[derive(Debug, Clone)]
pub struct Row {
    /// The trial this run was.
    pub trial: Trial,
    /// `split.metric` → value, for every scalar metric of every split in summary.json.
    pub metrics: BTreeMap<String, f64>,
    /// The run's `wall_seconds`.
    pub wall_seconds: f64,
}

/// Rows of every trial whose run has finished, in trial order.
pub fn collect(dir: &Path, trials: &[Trial]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for t in trials {
        let run_dir = dir.join(&t.name);
        if !run_dir.join("summary.json").exists() {
            continue;
        }
        let s = read_summary(&run_dir)?;
        let mut metrics = BTreeMap::new();
        for split in ["validation", "test"] {
            if let Some(obj) = s.get(split).and_then(Json::as_object) {
                for (k, v) in obj {
                    if let Some(x) = v.as_f64() {
                        metrics.insert(format!("{split}.{k}"), x);
                    }
                }
            }
        }
        for k in ["best_epoch", "epochs", "parameters"] {
            if let Some(x) = s.get(k).and_then(Json::as_f64) {
                metrics.insert(k.to_string(), x);
            }
        }
        let wall_seconds = s.get("wall_seconds").and_then(Json::as_f64).unwrap_or(f64::NAN);
        rows.push(Row { trial: t.clone(), metrics, wall_seconds });
    }
    Ok(rows)
}

/// Mean and sample standard deviation (n − 1; 0 for a single value).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Writes `results.csv` and `results.md` for the finished trials.
pub fn write_results(dir: &Path, spec: &SweepSpec, trials: &[Trial]) -> Result<()> {
    let rows = collect(dir, trials)?;
    let keys: Vec<String> = spec
        .grid
        .iter()
        .map(|(k, _)| k.clone())
        .chain(spec.random.iter().flat_map(|r| r.keys.iter().map(|(k, _)| k.clone())))
        .collect();
    let mut metric_names: Vec<String> = rows.iter().flat_map(|r| r.metrics.keys().cloned()).collect();
    metric_names.sort();
    metric_names.dedup();

    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["run".to_string()];
    header.extend(keys.iter().cloned());
    header.push("seed".into());
    header.extend(metric_names.iter().cloned());
    header.push("wall_seconds".into());
    out.write_record(&header).context("writing results.csv")?;
    for r in &rows {
        let mut f = vec![r.trial.name.clone()];
        for k in &keys {
            f.push(r.trial.overrides.iter().find(|(o, _)| o == k).map(|(_, v)| show(v)).unwrap_or_default());
        }
        f.push(r.trial.seed.to_string());
        for m in &metric_names {
            f.push(r.metrics.get(m).map(|v| format!("{v}")).unwrap_or_default());
        }
        f.push(format!("{:.1}", r.wall_seconds));
        out.write_record(&f).context("writing results.csv")?;
    }
    let csv = out.into_inner().map_err(|e| anyhow!("writing results.csv: {}", e.error()))?;
    crate::atomic::write(&dir.join("results.csv"), &csv)?;
    crate::atomic::write(&dir.join("results.md"), markdown(spec, &keys, &rows, trials.len()).as_bytes())
}

/// "mean ± std" with 4 decimals (whole numbers for counts and large values); the mean alone
/// for a single run or a value that does not vary.
fn mean_cell(m: f64, s: f64, n: usize) -> String {
    if m.is_nan() || n == 0 {
        return "–".into();
    }
    let big = m.abs() >= 100.0;
    let v = if big { format!("{m:.0}") } else { format!("{m:.4}") };
    if n < 2 || (big && s < 0.5) {
        v
    } else if big {
        format!("{v} ± {s:.0}")
    } else {
        format!("{v} ± {s:.4}")
    }
}

/// The ranked per-setting table.
pub fn markdown(spec: &SweepSpec, keys: &[String], rows: &[Row], total_trials: usize) -> String {
    let mut columns = vec![spec.metric.clone()];
    let report = if spec.report.is_empty() {
        spec.metric.strip_prefix("validation.").map(|m| vec![format!("test.{m}")]).unwrap_or_default()
    } else {
        spec.report.clone()
    };
    for r in report {
        if !columns.contains(&r) {
            columns.push(r);
        }
    }
    // Settings in first-seen order.
    let mut groups: Vec<(String, Vec<&Row>)> = Vec::new();
    for r in rows {
        let s = r.trial.setting();
        match groups.iter_mut().find(|(g, _)| *g == s) {
            Some((_, v)) => v.push(r),
            None => groups.push((s, vec![r])),
        }
    }
    struct Line<'a> {
        rows: Vec<&'a Row>,
        stats: Vec<(f64, f64)>,
        wall: f64,
    }
    let mut lines: Vec<Line> = groups
        .into_iter()
        .map(|(_, rows)| {
            let stats = columns
                .iter()
                .map(|c| {
                    let xs: Vec<f64> = rows.iter().filter_map(|r| r.metrics.get(c).copied()).collect();
                    mean_std(&xs)
                })
                .collect();
            let wall = rows.iter().map(|r| r.wall_seconds).sum::<f64>() / rows.len() as f64;
            Line { rows, stats, wall }
        })
        .collect();
    let better = |a: f64, b: f64| match spec.mode {
        MetricMode::Max => b.partial_cmp(&a),
        MetricMode::Min => a.partial_cmp(&b),
    };
    // NaN (metric missing) sorts last; ties keep the sweep file's order.
    lines.sort_by(|a, b| {
        let (x, y) = (a.stats[0].0, b.stats[0].0);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => better(x, y).unwrap_or(std::cmp::Ordering::Equal),
        }
    });
    let mut md = format!(
        "# Sweep `{}`\n\n{} finished runs of {} trials; settings ranked by {} ({}), mean ± sample std over seeds.\n\n",
        spec.name,
        rows.len(),
        total_trials,
        spec.metric,
        if spec.mode == MetricMode::Max { "higher is better" } else { "lower is better" }
    );
    let mut head = vec!["rank".to_string()];
    head.extend(keys.iter().map(|k| format!("`{k}`")));
    head.push("seeds".into());
    head.extend(columns.iter().cloned());
    head.push("wall s / run".into());
    md.push_str(&format!("| {} |\n", head.join(" | ")));
    md.push_str(&format!("|{}\n", head.iter().map(|_| "---|").collect::<String>()));
    for (i, l) in lines.iter().enumerate() {
        let t = &l.rows[0].trial;
        let mut f = vec![(i + 1).to_string()];
        for k in keys {
            f.push(t.overrides.iter().find(|(o, _)| o == k).map(|(_, v)| show(v)).unwrap_or_default());
        }
        f.push(l.rows.len().to_string());
        for (c, (m, s)) in columns.iter().zip(&l.stats) {
            let n = l.rows.iter().filter(|r| r.metrics.contains_key(c)).count();
            f.push(mean_cell(*m, *s, n));
        }
        f.push(format!("{:.0}", l.wall));
        md.push_str(&format!("| {} |\n", f.join(" | ")));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::spec::{parse_spec, trials};

    #[test]
    fn stats_and_ranking() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0]);
        assert_eq!(m, 2.0);
        assert!((s - 1.0).abs() < 1e-12);
        assert_eq!(mean_std(&[5.0]), (5.0, 0.0));
        let spec = parse_spec("seeds = [1, 2]\n[grid]\n\"model.variant\" = [\"a\", \"b\"]\n", "s.toml", "s").unwrap();
        let ts = trials(&spec, 0);
        let rows: Vec<Row> = ts
            .iter()
            .zip([0.6, 0.7, 0.9, 0.8])
            .map(|(t, acc)| Row {
                trial: t.clone(),
                metrics: [("validation.accuracy".to_string(), acc), ("test.accuracy".to_string(), acc - 0.1)]
                    .into_iter()
                    .collect(),
                wall_seconds: 10.0,
            })
            .collect();
        let md = markdown(&spec, &["model.variant".to_string()], &rows, 4);
        let lines: Vec<&str> = md.lines().filter(|l| l.starts_with("| 1") || l.starts_with("| 2")).collect();
        assert!(lines[0].starts_with("| 1 | b | 2 | 0.8500 ± 0.0707 | 0.7500 ± 0.0707 |"), "{md}");
        assert!(lines[1].starts_with("| 2 | a | 2 | 0.6500 ± 0.0707"), "{md}");
        assert_eq!(mean_cell(0.75, 0.0, 1), "0.7500");
        assert_eq!(mean_cell(1940098.0, 0.0, 2), "1940098");
        assert_eq!(mean_cell(f64::NAN, 0.0, 0), "–");
    }

    #[test]
    fn results_csv_quotes_only_what_needs_it() {
        let spec = parse_spec("[grid]\n\"model.pooling\" = [\"last\", \"a,b\"]\n", "s.toml", "s").unwrap();
        let ts = trials(&spec, 7);
        let dir = tempfile::tempdir().unwrap();
        for (t, acc) in ts.iter().zip([0.5, 0.25]) {
            std::fs::create_dir_all(dir.path().join(&t.name)).unwrap();
            let summary = serde_json::json!({"validation": {"accuracy": acc}, "epochs": 2, "wall_seconds": 1.26});
            std::fs::write(dir.path().join(&t.name).join("summary.json"), summary.to_string()).unwrap();
        }
        write_results(dir.path(), &spec, &ts).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("results.csv")).unwrap();
        assert_eq!(
            csv,
            "run,model.pooling,seed,epochs,validation.accuracy,wall_seconds\n\
             pooling-last_seed-7,last,7,2,0.5,1.3\n\
             pooling-a_b_seed-7,\"a,b\",7,2,0.25,1.3\n"
        );
    }
}
