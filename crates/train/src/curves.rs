//! Learning curves: `curves.svg` in every run directory, drawn from `metrics.jsonl` after each
//! evaluation. Two panels: the loss, and the run's main metric (its
//! `train.early_stopping_metric`), each train (dashed) against validation (solid) per epoch.
//!
//! Train figures are the running means over the epoch's batches (`train_loss`,
//! `train_<metric>` in the metrics lines, with dropout on); validation figures are computed
//! after the epoch. Lines marked `"final": true` (the best checkpoint's re-evaluation) are
//! not part of the curve.

use crate::plot::{hstack, LinePlot, Series};
use crate::rundir::RunDir;
use anyhow::{Context, Result};
use serde_json::Value;

/// File name of the learning-curve plot inside a run directory.
pub const FILE: &str = "curves.svg";

/// Per-epoch figures read from metrics lines.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Curves {
    /// 1-based epoch of each evaluation.
    pub epochs: Vec<f64>,
    /// Training loss of each epoch.
    pub train_loss: Vec<f64>,
    /// Validation loss of each evaluation.
    pub val_loss: Vec<f64>,
    /// Training value of the early-stopping metric (NaN where not recorded).
    pub train_metric: Vec<f64>,
    /// Validation value of the early-stopping metric.
    pub val_metric: Vec<f64>,
}

/// Reads the validation lines of `metrics.jsonl` text. Missing values become NaN (dropped
/// when drawn), so a task without a train-side metric still plots its validation curve.
pub fn parse(lines: &[String], metric: &str) -> Result<Curves> {
    let mut c = Curves::default();
    let train_key = format!("train_{metric}");
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).with_context(|| format!("metrics.jsonl line {}", i + 1))?;
        if v.get("final").and_then(Value::as_bool) == Some(true)
            || v.get("split").and_then(Value::as_str) != Some("validation")
        {
            continue;
        }
        let num = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        c.epochs.push(num("epoch") + 1.0);
        c.train_loss.push(num("train_loss"));
        c.val_loss.push(num("loss"));
        c.train_metric.push(num(&train_key));
        c.val_metric.push(num(metric));
    }
    Ok(c)
}

/// The two-panel SVG (loss; the main metric unless it is the loss itself).
pub fn render(c: &Curves, metric: &str, title: &str) -> String {
    let (w, h) = (520.0, 340.0);
    let panel = |name: &str, train: &[f64], val: &[f64]| {
        let pts = |v: &[f64]| c.epochs.iter().copied().zip(v.iter().copied()).collect::<Vec<_>>();
        LinePlot::new(format!("{title}: {name}"))
            .labels("epoch", name)
            .size(w, h)
            .series(Series::new("train", pts(train)).dashed())
            .series(Series::new("validation", pts(val)))
            .to_svg()
    };
    let mut parts = vec![(panel("loss", &c.train_loss, &c.val_loss), w, h)];
    if metric != "loss" {
        parts.push((panel(metric, &c.train_metric, &c.val_metric), w, h));
    }
    hstack(&parts)
}

/// Redraws `curves.svg` of a run from its `metrics.jsonl` (atomic replace).
pub fn write_for_run(dir: &RunDir, metric: &str) -> Result<()> {
    let lines = dir.metric_lines()?;
    let curves = parse(&lines, metric)?;
    let name = dir.root.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let svg = render(&curves, metric, &name);
    crate::atomic::write(&dir.root.join(FILE), svg.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_validation_lines_only() {
        let lines: Vec<String> = [
            r#"{"epoch":0,"step":3,"split":"validation","train_loss":0.9,"train_accuracy":0.5,"loss":0.8,"accuracy":0.6}"#,
            r#"{"epoch":1,"step":6,"split":"validation","train_loss":0.5,"loss":0.7,"accuracy":0.7}"#,
            r#"{"epoch":1,"step":6,"split":"test","final":true,"loss":0.7,"accuracy":0.7}"#,
            r#"{"epoch":1,"step":6,"split":"validation","final":true,"loss":0.7,"accuracy":0.7}"#,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let c = parse(&lines, "accuracy").unwrap();
        assert_eq!(c.epochs, vec![1.0, 2.0]);
        assert_eq!(c.val_metric, vec![0.6, 0.7]);
        assert_eq!(c.train_metric[0], 0.5);
        assert!(c.train_metric[1].is_nan());
        let svg = render(&c, "accuracy", "t");
        assert!(svg.contains("t: accuracy") && svg.contains("t: loss"));
        assert!(parse(&["{oops".to_string()], "accuracy").unwrap_err().to_string().contains("line 1"));
    }
}
