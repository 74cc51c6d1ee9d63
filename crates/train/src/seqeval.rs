//! Sequence-labelling scores as `seqeval` (default mode) and `conlleval` compute them:
//! entity-level precision, recall and F1 per entity type and micro-averaged (an entity counts
//! when its type and its exact span match), and token accuracy.
//!
//! Checked against seqeval 1.2.2 on `tests/fixtures/seqeval.json`, made by
//! `scripts/gen_seqeval_fixtures.py` (IOB1, IOB2 and BIOES input, entities at sentence
//! boundaries, ill-formed sequences starting with `I-`).

use data::tag_scheme::{spans, Span};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Precision, recall and F1 of one entity type (or of all, micro-averaged).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Prf {
    /// Correct entities / predicted entities (0 when nothing was predicted).
    pub precision: f64,
    /// Correct entities / true entities (0 when there were none).
    pub recall: f64,
    /// Harmonic mean of the two (0 when both are 0).
    pub f1: f64,
    /// True entities of this type.
    pub support: usize,
}

impl Prf {
    /// From counts, dividing as seqeval (through scikit-learn's `_prf_divide`) does.
    pub fn from_counts(correct: usize, predicted: usize, truth: usize) -> Self {
        let div = |a: usize, b: usize| crate::metrics::ratio(a as u64, b as u64);
        let (precision, recall) = (div(correct, predicted), div(correct, truth));
        let denom = precision + recall;
        let f1 = if denom == 0.0 { 0.0 } else { 2.0 * precision * recall / denom };
        Prf { precision, recall, f1, support: truth }
    }
}

/// Entity-level scores of a whole split.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntityScores {
    /// Micro-averaged over every type.
    pub micro: Prf,
    /// By entity type, for every type that occurs in the truth or the predictions.
    pub per_type: BTreeMap<String, Prf>,
}

impl EntityScores {
    /// `precision`, `recall`, `f1` (fractions in [0, 1], as seqeval reports them) and
    /// `per_type` (`{type: {precision, recall, f1, support}}`), for `summary.json`.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("precision".into(), json!(self.micro.precision));
        m.insert("recall".into(), json!(self.micro.recall));
        m.insert("f1".into(), json!(self.micro.f1));
        let per: Map<String, Value> = self
            .per_type
            .iter()
            .map(|(k, p)| {
                (k.clone(), json!({"precision": p.precision, "recall": p.recall, "f1": p.f1, "support": p.support}))
            })
            .collect();
        m.insert("per_type".into(), Value::Object(per));
        m
    }
}

/// Scores predicted tag sequences against the true ones (sentence by sentence, equal
/// lengths), in any of the IOB1 / IOB2 / BIOES schemes.
pub fn entity_scores<S: AsRef<str>, P: AsRef<str>>(truth: &[Vec<S>], predicted: &[Vec<P>]) -> EntityScores {
    let collect = |sents: Vec<Vec<Span>>| -> BTreeSet<(String, usize, usize, usize)> {
        sents
            .into_iter()
            .enumerate()
            .flat_map(|(i, s)| s.into_iter().map(move |e| (e.kind, i, e.start, e.end)))
            .collect()
    };
    let t = collect(truth.iter().map(|s| spans(s)).collect());
    let p = collect(predicted.iter().map(|s| spans(s)).collect());
    let types: BTreeSet<&String> = t.iter().chain(&p).map(|e| &e.0).collect();
    let count = |set: &BTreeSet<(String, usize, usize, usize)>, k: &str| set.iter().filter(|e| e.0 == k).count();
    let per_type = types
        .into_iter()
        .map(|k| {
            let correct = t.intersection(&p).filter(|e| &e.0 == k).count();
            (k.clone(), Prf::from_counts(correct, count(&p, k), count(&t, k)))
        })
        .collect();
    EntityScores { micro: Prf::from_counts(t.intersection(&p).count(), p.len(), t.len()), per_type }
}

/// Fraction of tokens whose tag is right (seqeval's `accuracy_score`); 0 for no tokens.
pub fn token_accuracy<S: AsRef<str>, P: AsRef<str>>(truth: &[Vec<S>], predicted: &[Vec<P>]) -> f64 {
    let (mut right, mut all) = (0usize, 0usize);
    for (t, p) in truth.iter().zip(predicted) {
        all += t.len();
        right += t.iter().zip(p).filter(|(a, b)| a.as_ref() == b.as_ref()).count();
    }
    crate::metrics::ratio(right as u64, all as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_seqeval_on_the_fixtures() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seqeval.json");
        let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(cases.len() >= 30);
        let close = |a: f64, b: &Value, what: &str| {
            let b = b.as_f64().unwrap();
            assert!((a - b).abs() < 1e-12, "{what}: {a} vs seqeval {b}");
        };
        for c in &cases {
            let name = c["name"].as_str().unwrap();
            let sents = |k: &str| -> Vec<Vec<String>> { serde_json::from_value(c[k].clone()).unwrap() };
            let (t, p) = (sents("true"), sents("pred"));
            // The entity lists, in seqeval's flat offsets (sentences joined with one O).
            let mut offset = 0;
            let mut flat = Vec::new();
            for s in &t {
                flat.extend(spans(s).into_iter().map(|e| json!([e.kind, e.start + offset, e.end + offset])));
                offset += s.len() + 1;
            }
            assert_eq!(Value::Array(flat), c["true_entities"], "{name}: entities");
            let got = entity_scores(&t, &p);
            close(got.micro.precision, &c["precision"], name);
            close(got.micro.recall, &c["recall"], name);
            close(got.micro.f1, &c["f1"], name);
            let want = c["per_type"].as_object().unwrap();
            assert_eq!(got.per_type.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{name}");
            for (k, prf) in &got.per_type {
                close(prf.precision, &want[k]["precision"], name);
                close(prf.recall, &want[k]["recall"], name);
                close(prf.f1, &want[k]["f1"], name);
                assert_eq!(prf.support as u64, want[k]["support"].as_u64().unwrap(), "{name} {k}");
            }
            close(token_accuracy(&t, &p), &c["accuracy"], name);
        }
    }

    #[test]
    fn summary_keys() {
        let s = entity_scores(&[vec!["B-PER", "O"]], &[vec!["B-PER", "O"]]);
        let m = s.to_json();
        assert_eq!(m["f1"], json!(1.0));
        assert_eq!(m["per_type"]["PER"]["support"], json!(1));
        assert_eq!(token_accuracy::<&str, &str>(&[], &[]), 0.0);
    }
}
