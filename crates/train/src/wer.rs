//! Word and character error rates by Levenshtein alignment, at corpus level: total edits
//! (substitutions + deletions + insertions) over total reference words or characters, in
//! percent, as `jiwer` computes them (checked against `jiwer` on `wer_fixtures.json`, made by
//! `scripts/gen_wer_fixtures.py`).
//!
//! Three rates, because recipes differ in what a character is: `cer` counts the spaces
//! between words as characters (ESPnet, jiwer's `cer`), `cer_no_space` removes them first
//! (deepspeech.pytorch). As in jiwer's default transforms, words are the whitespace-separated
//! runs, and characters are counted after trimming the ends (inner runs of spaces are kept).

use serde_json::{json, Map, Value};

/// Edit counts of one alignment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Edits {
    /// Reference units replaced.
    pub substitutions: usize,
    /// Reference units missing from the hypothesis.
    pub deletions: usize,
    /// Hypothesis units not in the reference.
    pub insertions: usize,
    /// Reference units matched.
    pub hits: usize,
}

impl Edits {
    /// Substitutions + deletions + insertions.
    pub fn errors(&self) -> usize {
        self.substitutions + self.deletions + self.insertions
    }

    /// Units in the reference.
    pub fn reference_len(&self) -> usize {
        self.substitutions + self.deletions + self.hits
    }

    fn add(&mut self, o: Edits) {
        self.substitutions += o.substitutions;
        self.deletions += o.deletions;
        self.insertions += o.insertions;
        self.hits += o.hits;
    }
}

/// A minimum-cost alignment of `hyp` to `reference` (unit costs), with its edit counts. Of
/// equally cheap alignments, the one taken prefers hits, then substitutions, then deletions.
pub fn align<T: PartialEq>(reference: &[T], hyp: &[T]) -> Edits {
    let (n, m) = (reference.len(), hyp.len());
    // cost[i][j]: edits to turn reference[..i] into hyp[..j].
    let mut cost = vec![0usize; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in 0..=n {
        cost[at(i, 0)] = i;
    }
    for j in 0..=m {
        cost[at(0, j)] = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let diag = cost[at(i - 1, j - 1)] + usize::from(reference[i - 1] != hyp[j - 1]);
            cost[at(i, j)] = diag.min(cost[at(i - 1, j)] + 1).min(cost[at(i, j - 1)] + 1);
        }
    }
    let mut e = Edits::default();
    let (mut i, mut j) = (n, m);
    while i > 0 || j > 0 {
        let here = cost[at(i, j)];
        if i > 0 && j > 0 && here == cost[at(i - 1, j - 1)] + usize::from(reference[i - 1] != hyp[j - 1]) {
            if reference[i - 1] == hyp[j - 1] {
                e.hits += 1;
            } else {
                e.substitutions += 1;
            }
            i -= 1;
            j -= 1;
        } else if i > 0 && here == cost[at(i - 1, j)] + 1 {
            e.deletions += 1;
            i -= 1;
        } else {
            e.insertions += 1;
            j -= 1;
        }
    }
    e
}

/// Trims and collapses whitespace runs into single spaces.
pub fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Corpus-level error counts, added one utterance at a time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorRates {
    /// Word edits.
    pub words: Edits,
    /// Character edits, spaces counted.
    pub chars: Edits,
    /// Character edits with the spaces removed.
    pub chars_no_space: Edits,
    /// Utterances added.
    pub utterances: usize,
}

fn rate(e: &Edits) -> f64 {
    if e.reference_len() == 0 {
        return if e.errors() == 0 { 0.0 } else { f64::INFINITY };
    }
    100.0 * e.errors() as f64 / e.reference_len() as f64
}

impl ErrorRates {
    /// Adds one utterance's reference and hypothesis.
    pub fn add(&mut self, reference: &str, hypothesis: &str) {
        let (r, h) = (reference.trim(), hypothesis.trim());
        fn words(s: &str) -> Vec<&str> {
            s.split_whitespace().collect()
        }
        self.words.add(align(&words(r), &words(h)));
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        self.chars.add(align(&chars(r), &chars(h)));
        let bare = |s: &str| s.chars().filter(|c| *c != ' ').collect::<Vec<_>>();
        self.chars_no_space.add(align(&bare(r), &bare(h)));
        self.utterances += 1;
    }

    /// Word error rate in percent.
    pub fn wer(&self) -> f64 {
        rate(&self.words)
    }

    /// Character error rate in percent, spaces counted as characters (ESPnet's convention).
    pub fn cer(&self) -> f64 {
        rate(&self.chars)
    }

    /// Character error rate in percent with the spaces removed (deepspeech.pytorch's).
    pub fn cer_no_space(&self) -> f64 {
        rate(&self.chars_no_space)
    }

    /// `wer`, `cer`, `cer_no_space` (percent) and the word edit counts, for `metrics.jsonl`.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("wer".into(), json!(self.wer()));
        m.insert("cer".into(), json!(self.cer()));
        m.insert("cer_no_space".into(), json!(self.cer_no_space()));
        m.insert(
            "word_edits".into(),
            json!({"substitutions": self.words.substitutions, "deletions": self.words.deletions,
                   "insertions": self.words.insertions, "reference_words": self.words.reference_len()}),
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Corpus WER, CER and CER without spaces equal jiwer's on every fixture, and so do the
    /// total word edits and reference length.
    #[test]
    fn matches_jiwer() {
        let f: Value = serde_json::from_str(include_str!("wer_fixtures.json")).unwrap();
        for c in f["cases"].as_array().unwrap() {
            let mut r = ErrorRates::default();
            let refs = c["references"].as_array().unwrap();
            for (a, b) in refs.iter().zip(c["hypotheses"].as_array().unwrap()) {
                r.add(a.as_str().unwrap(), b.as_str().unwrap());
            }
            let name = &c["name"];
            for (got, key) in [(r.wer(), "wer"), (r.cer(), "cer"), (r.cer_no_space(), "cer_no_space")] {
                let want = 100.0 * c[key].as_f64().unwrap();
                assert!((got - want).abs() < 1e-9, "{name} {key}: {got} vs jiwer {want}");
            }
            let n = |k: &str| c[k].as_u64().unwrap() as usize;
            assert_eq!(r.words.errors(), n("substitutions") + n("deletions") + n("insertions"), "{name}");
            assert_eq!(r.words.reference_len(), n("substitutions") + n("deletions") + n("hits"), "{name}");
        }
    }

    #[test]
    fn alignment_counts() {
        assert_eq!(align(&["A", "B", "C", "D"], &["A", "X", "D", "E"]).errors(), 3);
        assert_eq!(align(&["A", "B", "C"], &["A", "C"]), Edits { deletions: 1, hits: 2, ..Default::default() });
        assert_eq!(align(&["A", "C"], &["B", "A", "C"]), Edits { insertions: 1, hits: 2, ..Default::default() });
        assert_eq!(align::<char>(&[], &['a']).insertions, 1);
        let mut r = ErrorRates::default();
        r.add("", "");
        assert_eq!(r.wer(), 0.0);
        r.add("", "X");
        assert!(r.wer().is_infinite());
    }
}
