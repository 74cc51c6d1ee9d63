//! The lines of `metrics.jsonl` and the run's `summary.json`.
//!
//! A line's keys come out in alphabetical order (serde_json's `Map` is a `BTreeMap`): each
//! line goes through a `serde_json::Value`, so its bytes are those of every run written
//! before these structs existed, whatever the field order below.

use serde::Serialize;
use serde_json::{Map, Value};

/// One evaluation during training (`split` is "validation").
#[derive(Serialize)]
pub struct EvalLine<'a> {
    /// The epoch evaluated (0-based).
    pub epoch: usize,
    /// Optimizer steps taken so far.
    pub step: u64,
    /// The split evaluated.
    pub split: &'static str,
    /// Mean training loss of the epoch so far (absent before its first step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f64>,
    /// Training accuracy of the epoch so far (tasks with an accuracy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_accuracy: Option<f64>,
    /// The task's metrics.
    #[serde(flatten)]
    pub metrics: &'a Map<String, Value>,
}

/// One evaluation of the best checkpoint after training (`"final": true`).
#[derive(Serialize)]
pub struct FinalLine<'a> {
    /// The best epoch (whose weights were evaluated); null if no epoch was evaluated.
    pub epoch: Option<usize>,
    /// Optimizer steps of the whole run.
    pub step: u64,
    /// The split evaluated.
    pub split: &'static str,
    /// Always true: tells final lines from those written during training.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The task's metrics.
    #[serde(flatten)]
    pub metrics: &'a Map<String, Value>,
}

/// One `metrics.jsonl` line (without its newline).
pub fn to_line<T: Serialize>(line: &T) -> serde_json::Result<String> {
    Ok(serde_json::to_value(line)?.to_string())
}

/// A short line of the main metrics for the console.
pub fn headline(m: &Map<String, Value>) -> String {
    ["loss", "accuracy", "macro_f1", "mse", "mae", "bleu", "perplexity"]
        .iter()
        .filter_map(|k| m.get(*k).and_then(Value::as_f64).map(|v| format!("{k} {v:.4}")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The bytes a hand-filled `Map` gave before these structs: the contract of
    /// `metrics.jsonl` for runs and scripts that compare them.
    #[test]
    fn lines_keep_the_bytes_of_a_hand_filled_map() {
        let metrics: Map<String, Value> =
            json!({"loss": 0.5, "accuracy": 0.75, "per_class": {"b": 1, "a": 2}}).as_object().unwrap().clone();
        let mut old = Map::new();
        old.insert("epoch".into(), json!(2));
        old.insert("step".into(), json!(40));
        old.insert("split".into(), json!("validation"));
        old.insert("train_loss".into(), json!(0.25));
        old.insert("train_accuracy".into(), json!(0.5));
        old.extend(metrics.clone());
        let line = EvalLine {
            epoch: 2,
            step: 40,
            split: "validation",
            train_loss: Some(0.25),
            train_accuracy: Some(0.5),
            metrics: &metrics,
        };
        assert_eq!(to_line(&line).unwrap(), serde_json::to_string(&old).unwrap());

        let no_train = EvalLine { train_loss: None, train_accuracy: None, ..line };
        old.remove("train_loss");
        old.remove("train_accuracy");
        assert_eq!(to_line(&no_train).unwrap(), serde_json::to_string(&old).unwrap());

        let mut old = Map::new();
        old.insert("epoch".into(), json!(None::<usize>));
        old.insert("step".into(), json!(40));
        old.insert("split".into(), json!("test"));
        old.insert("final".into(), json!(true));
        old.extend(metrics.clone());
        let line = FinalLine { epoch: None, step: 40, split: "test", is_final: true, metrics: &metrics };
        assert_eq!(to_line(&line).unwrap(), serde_json::to_string(&old).unwrap());
    }
}
