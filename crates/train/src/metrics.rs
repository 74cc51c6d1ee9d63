//! Classification metrics: accuracy, per-class and macro precision / recall / F1, and the
//! confusion matrix (rows = true class, columns = predicted class).

use serde_json::{json, Map, Value};

/// Counts of (true class, predicted class) pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct Confusion {
    /// `counts[truth][predicted]`.
    pub counts: Vec<Vec<u64>>,
}

impl Confusion {
    /// An empty matrix for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self { counts: vec![vec![0; num_classes]; num_classes] }
    }

    /// Counts one prediction.
    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth][predicted] += 1;
    }

    /// Predictions counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Share of predictions on the diagonal (0 for an empty matrix).
    pub fn accuracy(&self) -> f64 {
        let correct: u64 = (0..self.counts.len()).map(|i| self.counts[i][i]).sum();
        ratio(correct, self.total())
    }

    /// (precision, recall, f1) of one class; a class never predicted has precision 0, as
    /// scikit-learn reports it with `zero_division=0`.
    pub fn class_prf(&self, c: usize) -> (f64, f64, f64) {
        let tp = self.counts[c][c];
        let predicted: u64 = self.counts.iter().map(|row| row[c]).sum();
        let actual: u64 = self.counts[c].iter().sum();
        let p = ratio(tp, predicted);
        let r = ratio(tp, actual);
        let f = if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
        (p, r, f)
    }

    /// Metrics as a JSON object: `accuracy`, `macro_precision`, `macro_recall`, `macro_f1`,
    /// `precision_<class>`, `recall_<class>`, `f1_<class>` and `confusion`.
    pub fn to_json(&self, class_names: &[String]) -> Map<String, Value> {
        let n = self.counts.len();
        let mut m = Map::new();
        m.insert("accuracy".into(), json!(self.accuracy()));
        let (mut sp, mut sr, mut sf) = (0.0, 0.0, 0.0);
        for c in 0..n {
            let (p, r, f) = self.class_prf(c);
            let name = class_names.get(c).cloned().unwrap_or_else(|| c.to_string());
            m.insert(format!("precision_{name}"), json!(p));
            m.insert(format!("recall_{name}"), json!(r));
            m.insert(format!("f1_{name}"), json!(f));
            sp += p;
            sr += r;
            sf += f;
        }
        let k = n.max(1) as f64;
        m.insert("macro_precision".into(), json!(sp / k));
        m.insert("macro_recall".into(), json!(sr / k));
        m.insert("macro_f1".into(), json!(sf / k));
        m.insert("confusion".into(), json!(self.counts));
        m
    }
}

impl Confusion {
    /// Examples whose true class is `c` (scikit-learn's `support`).
    pub fn support(&self, c: usize) -> u64 {
        self.counts[c].iter().sum()
    }

    /// The full report for any number of classes, with scikit-learn's definitions
    /// (`classification_report`, `zero_division=0`): `accuracy`; `macro_*` (unweighted mean
    /// over classes), `weighted_*` (mean weighted by support) and `micro_*` (from the summed
    /// counts; for single-label data all three equal the accuracy) precision, recall and F1;
    /// `per_class.{name}.{precision,recall,f1,support}`; and `confusion` (rows = true class,
    /// columns = predicted class, in label order).
    pub fn report(&self, class_names: &[String]) -> Map<String, Value> {
        let n = self.counts.len();
        let total = self.total();
        let mut m = Map::new();
        m.insert("accuracy".into(), json!(self.accuracy()));
        let (mut macro_, mut weighted) = ([0.0f64; 3], [0.0f64; 3]);
        let mut per_class = Map::new();
        for c in 0..n {
            let (p, r, f) = self.class_prf(c);
            let support = self.support(c);
            for (i, v) in [p, r, f].into_iter().enumerate() {
                macro_[i] += v / n.max(1) as f64;
                weighted[i] += v * support as f64;
            }
            let name = class_names.get(c).cloned().unwrap_or_else(|| c.to_string());
            per_class.insert(name, json!({"precision": p, "recall": r, "f1": f, "support": support}));
        }
        let correct: u64 = (0..n).map(|i| self.counts[i][i]).sum();
        // Micro averages: every example is one prediction, so FP total = FN total = wrong ones.
        let micro = ratio(correct, total);
        for (i, what) in ["precision", "recall", "f1"].into_iter().enumerate() {
            m.insert(format!("macro_{what}"), json!(macro_[i]));
            m.insert(format!("micro_{what}"), json!(micro));
            m.insert(format!("weighted_{what}"), json!(if total == 0 { 0.0 } else { weighted[i] / total as f64 }));
        }
        m.insert("per_class".into(), Value::Object(per_class));
        m.insert("confusion".into(), json!(self.counts));
        m
    }
}

/// a / b, or 0 when b is 0 (scikit-learn's `zero_division=0`).
pub(crate) fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_values() {
        // truth/pred pairs: 3 TP for class 1, 1 FP (0 -> 1), 1 FN (1 -> 0), 2 TN.
        let mut c = Confusion::new(2);
        for (t, p) in [(1, 1), (1, 1), (1, 1), (0, 1), (1, 0), (0, 0), (0, 0)] {
            c.add(t, p);
        }
        assert!((c.accuracy() - 5.0 / 7.0).abs() < 1e-12);
        let (p, r, f) = c.class_prf(1);
        assert!((p - 0.75).abs() < 1e-12 && (r - 0.75).abs() < 1e-12 && (f - 0.75).abs() < 1e-12);
        let (p0, r0, _) = c.class_prf(0);
        assert!((p0 - 2.0 / 3.0).abs() < 1e-12 && (r0 - 2.0 / 3.0).abs() < 1e-12);
        let j = c.to_json(&["negative".into(), "positive".into()]);
        assert_eq!(j["confusion"], json!([[2, 1], [1, 3]]));
        assert!(j.contains_key("f1_positive"));
    }

    /// The report against scikit-learn on committed fixtures
    /// (`scripts/gen_classification_fixtures.py`, `tests/fixtures/classification_report.json`).
    #[test]
    fn report_matches_scikit_learn() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/classification_report.json");
        let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(cases.len() >= 3);
        for case in cases {
            let names: Vec<String> = serde_json::from_value(case["labels"].clone()).unwrap();
            let truth: Vec<usize> = serde_json::from_value(case["y_true"].clone()).unwrap();
            let pred: Vec<usize> = serde_json::from_value(case["y_pred"].clone()).unwrap();
            let mut c = Confusion::new(names.len());
            for (t, p) in truth.iter().zip(&pred) {
                c.add(*t, *p);
            }
            let r = c.report(&names);
            let close = |a: &Value, b: &Value, what: &str| {
                let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
                assert!((a - b).abs() < 1e-12, "{}: {what}: ours {a}, scikit-learn {b}", case["name"]);
            };
            assert_eq!(r["confusion"], case["confusion"], "{}", case["name"]);
            close(&r["accuracy"], &case["accuracy"], "accuracy");
            for avg in ["macro", "micro", "weighted"] {
                for what in ["precision", "recall", "f1"] {
                    close(&r[&format!("{avg}_{what}")], &case[avg][what], &format!("{avg}_{what}"));
                }
            }
            for name in &names {
                for what in ["precision", "recall", "f1", "support"] {
                    close(&r["per_class"][name][what], &case["per_class"][name][what], &format!("{name}.{what}"));
                }
            }
        }
    }

    #[test]
    fn never_predicted_class_has_zero_precision() {
        let mut c = Confusion::new(2);
        c.add(0, 1);
        c.add(1, 1);
        assert_eq!(c.class_prf(0), (0.0, 0.0, 0.0));
    }
}
