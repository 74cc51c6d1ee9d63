//! ROUGE-1, ROUGE-2 and ROUGE-L computed exactly as Google's `rouge-score` 0.1.2 computes them
//! (`rouge_scorer.RougeScorer(['rouge1', 'rouge2', 'rougeL'], use_stemmer=...)`).
//!
//! What is matched (read from rouge-score's and NLTK's source, checked against their numbers):
//!
//! - [`tokenize`] is `rouge_score.tokenize.tokenize`: Python's `str.lower()` (Unicode-aware), every
//!   run of characters outside `[a-z0-9]` becomes a space, split on whitespace, tokens longer than
//!   three characters stemmed with NLTK's `PorterStemmer()` in its default `NLTK_EXTENSIONS`
//!   mode ([`porter::stem`], NLTK 3.10.4), then tokens not matching `^[a-z0-9]+$` dropped. So
//!   `UNK`, `<unk>` and `unk` are all the token `unk`, `#` (Gigaword's digit mask) vanishes, and
//!   non-Latin scripts leave no tokens at all.
//! - ROUGE-N counts n-grams with multiplicity; matches are `min` of the two counts. Precision is
//!   matches / max(hypothesis n-grams, 1), recall matches / max(reference n-grams, 1), F1 is
//!   `2·P·R / (P + R)` or 0 when `P + R = 0` (`scoring.fmeasure`), in the same f64 operations.
//! - ROUGE-L is the sentence-level `rougeL` (one LCS over the whole text; not `rougeLsum`,
//!   which splits on newlines): LCS / hypothesis length and LCS / reference length, all three
//!   0 when either side has no token.
//! - [`score_multi`] is `score_multi`: for each metric separately the reference with the highest
//!   F1 (the first on ties, as `np.argmax`).
//! - [`corpus`] is the mean of the per-example scores (P, R and F1 each averaged), the figure
//!   papers report; rouge-score's `BootstrapAggregator` reports a resampled estimate of it.
//!
//! Perl ROUGE-1.5.5 (`-m -n 2 -w 1.2 -a`, the NAMAS/Rush flags) tokenises and stems slightly
//! differently, so its corpus figures run about 0.1 point higher than these on Gigaword (see
//! the README's ROUGE subsection and `../shared/data/gigaword/rouge_golden/`).
//!
//! The tests compare every example of `tests/fixtures/rouge_score.json` (made by
//! `scripts/gen_rouge_fixtures.py`) within 1e-9 and every stem of its word list exactly.
//!
//! ```
//! use train::rouge::{score, RougeOptions};
//! let s = score("police kill the gunman", "police killed the gunman", &RougeOptions::default());
//! assert_eq!(s.rouge1.f1, 1.0); // "killed" and "kill" share the stem "kill"
//! assert!((s.rouge2.f1 - 1.0).abs() < 1e-12);
//! ```

pub mod porter;

use std::collections::HashMap;

/// The rouge-score release whose numbers this module reproduces.
pub const ROUGE_SCORE_VERSION: &str = "0.1.2";

/// Precision, recall and F1 of one ROUGE metric, each in 0..=1 (rouge-score's `Score`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RougeScore {
    /// Matches over the hypothesis's n-grams (or its length, for ROUGE-L).
    pub precision: f64,
    /// Matches over the reference's n-grams (or its length, for ROUGE-L).
    pub recall: f64,
    /// Harmonic mean of precision and recall (`fmeasure`).
    pub f1: f64,
}

impl RougeScore {
    /// rouge-score's `Score` from a match count and the two totals.
    fn from_counts(matches: usize, hyp_total: usize, ref_total: usize) -> Self {
        let precision = matches as f64 / hyp_total.max(1) as f64;
        let recall = matches as f64 / ref_total.max(1) as f64;
        RougeScore { precision, recall, f1: fmeasure(precision, recall) }
    }
}

/// ROUGE-1, ROUGE-2 and ROUGE-L of one hypothesis.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RougeScores {
    /// Unigram overlap.
    pub rouge1: RougeScore,
    /// Bigram overlap.
    pub rouge2: RougeScore,
    /// Longest common subsequence (sentence-level `rougeL`).
    pub rouge_l: RougeScore,
}

/// How texts are tokenised before scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RougeOptions {
    /// Porter-stem tokens longer than three characters (`use_stemmer=True`, Perl ROUGE's `-m`,
    /// what summarisation papers report). Default: on.
    pub stemmer: bool,
}

impl Default for RougeOptions {
    fn default() -> Self {
        RougeOptions { stemmer: true }
    }
}

/// Why a corpus cannot be scored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RougeError {
    /// The hypothesis and reference lists differ in length.
    #[error("{hyps} hypotheses but {refs} reference lists: each hypothesis needs its references")]
    LengthMismatch {
        /// Hypotheses given.
        hyps: usize,
        /// Reference lists given.
        refs: usize,
    },
    /// An example without any reference.
    #[error("example {example} has no reference")]
    NoReference {
        /// Its 0-based index.
        example: usize,
    },
    /// Nothing to score (a mean over no examples is undefined).
    #[error("empty corpus: no hypotheses to score")]
    EmptyCorpus,
}

/// Corpus ROUGE: per metric, the mean over examples of precision, recall and F1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CorpusRouge {
    /// Mean ROUGE-1.
    pub rouge1: RougeScore,
    /// Mean ROUGE-2.
    pub rouge2: RougeScore,
    /// Mean ROUGE-L.
    pub rouge_l: RougeScore,
    /// Examples averaged.
    pub n: usize,
}

/// `scoring.fmeasure`: `2 * precision * recall / (precision + recall)`, 0 when both are 0.
fn fmeasure(precision: f64, recall: f64) -> f64 {
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

/// `rouge_score.tokenize.tokenize(text, stemmer)`: lowercase, keep the runs of `[a-z0-9]`,
/// Porter-stem those longer than three characters when `stemmer` is on.
pub fn tokenize(text: &str, stemmer: bool) -> Vec<String> {
    // After Python's `lower()` and `[^a-z0-9]+` → " ", splitting on whitespace leaves exactly
    // the maximal runs of [a-z0-9] (plus empty strings, which the final filter drops).
    let lower = text.to_lowercase();
    lower
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(|t| if stemmer && t.len() > 3 { porter::stem(t) } else { t.to_string() })
        // The stemmer maps [a-z0-9]+ to [a-z0-9]* ; rouge-score re-checks, and so do we.
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        .collect()
}

/// n-gram counts (`_create_ngrams`).
fn ngrams(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    for gram in tokens.windows(n) {
        *counts.entry(gram).or_insert(0) += 1;
    }
    counts
}

/// `_score_ngrams`: clipped matches over the two totals.
fn score_ngrams(hyp: &[String], reference: &[String], n: usize) -> RougeScore {
    let hyp_grams = ngrams(hyp, n);
    let ref_grams = ngrams(reference, n);
    let matches = ref_grams.iter().map(|(g, &c)| c.min(hyp_grams.get(g).copied().unwrap_or(0))).sum();
    RougeScore::from_counts(matches, hyp.len().saturating_sub(n - 1), reference.len().saturating_sub(n - 1))
}

/// Length of the longest common subsequence, in O(min) memory.
fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { prev[j + 1].max(cur[j]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// `_score_lcs`: all zero when either side is empty.
fn score_lcs(hyp: &[String], reference: &[String]) -> RougeScore {
    if hyp.is_empty() || reference.is_empty() {
        return RougeScore::default();
    }
    RougeScore::from_counts(lcs_len(reference, hyp), hyp.len(), reference.len())
}

fn score_tokens(hyp: &[String], reference: &[String]) -> RougeScores {
    RougeScores {
        rouge1: score_ngrams(hyp, reference, 1),
        rouge2: score_ngrams(hyp, reference, 2),
        rouge_l: score_lcs(hyp, reference),
    }
}

/// ROUGE-1/2/L of `hypothesis` against one `reference` (rouge-score's
/// `scorer.score(target=reference, prediction=hypothesis)`).
pub fn score(hypothesis: &str, reference: &str, opts: &RougeOptions) -> RougeScores {
    score_tokens(&tokenize(hypothesis, opts.stemmer), &tokenize(reference, opts.stemmer))
}

/// rouge-score's `score_multi`: for each metric separately, the score against the reference
/// with the highest F1 (the first such reference on ties). No reference scores all zeros
/// (rouge-score raises instead; [`corpus`] reports it as an error).
pub fn score_multi(hypothesis: &str, references: &[&str], opts: &RougeOptions) -> RougeScores {
    let hyp = tokenize(hypothesis, opts.stemmer);
    let all: Vec<RougeScores> = references.iter().map(|r| score_tokens(&hyp, &tokenize(r, opts.stemmer))).collect();
    // np.argmax: the first index of the maximum.
    let best = |pick: fn(&RougeScores) -> RougeScore| {
        all.iter().map(pick).fold(None, |best: Option<RougeScore>, s| match best {
            Some(b) if b.f1 >= s.f1 => Some(b),
            _ => Some(s),
        })
    };
    RougeScores {
        rouge1: best(|s| s.rouge1).unwrap_or_default(),
        rouge2: best(|s| s.rouge2).unwrap_or_default(),
        rouge_l: best(|s| s.rouge_l).unwrap_or_default(),
    }
}

/// Corpus ROUGE: [`score_multi`] for each example (`refs[i]` are the references of `hyps[i]`),
/// then per metric the mean of precision, recall and F1 over examples.
pub fn corpus(hyps: &[String], refs: &[Vec<String>], opts: &RougeOptions) -> Result<CorpusRouge, RougeError> {
    if hyps.len() != refs.len() {
        return Err(RougeError::LengthMismatch { hyps: hyps.len(), refs: refs.len() });
    }
    if hyps.is_empty() {
        return Err(RougeError::EmptyCorpus);
    }
    if let Some(example) = refs.iter().position(Vec::is_empty) {
        return Err(RougeError::NoReference { example });
    }
    let mut sums = [[0.0f64; 3]; 3];
    for (hyp, example_refs) in hyps.iter().zip(refs) {
        let example_refs: Vec<&str> = example_refs.iter().map(String::as_str).collect();
        let s = score_multi(hyp, &example_refs, opts);
        for (acc, m) in sums.iter_mut().zip([s.rouge1, s.rouge2, s.rouge_l]) {
            acc[0] += m.precision;
            acc[1] += m.recall;
            acc[2] += m.f1;
        }
    }
    let n = hyps.len();
    let mean = |[p, r, f]: [f64; 3]| RougeScore { precision: p / n as f64, recall: r / n as f64, f1: f / n as f64 };
    Ok(CorpusRouge { rouge1: mean(sums[0]), rouge2: mean(sums[1]), rouge_l: mean(sums[2]), n })
}

/// Names the implementation and its options for `summary.json` (`test.rouge_signature`), e.g.
/// `sluice-rouge|rouge-score 0.1.2 compatible|stem:porter(nltk)|tok:lowercase,[^a-z0-9]|agg:mean|multi:max-f1`.
pub fn signature(opts: &RougeOptions) -> String {
    format!(
        "sluice-rouge|rouge-score {ROUGE_SCORE_VERSION} compatible|stem:{}|tok:lowercase,[^a-z0-9]|agg:mean|multi:max-f1",
        if opts.stemmer { "porter(nltk)" } else { "none" }
    )
}

#[cfg(test)]
mod tests;
