//! Decoding CTC outputs: greedy (best path: the most probable class per frame, repeats merged,
//! blanks dropped) and prefix beam search (Hannun et al. 2014) over label prefixes, each with
//! its probability of ending in a blank and in a non-blank, optionally fused with an n-gram
//! language model (shallow fusion: score = log p_ctc + `lm_weight` · log p_lm + `word_bonus`
//! · words).
//!
//! Everything works on one utterance's (frames, classes) log-probabilities as plain `f64`
//! rows; the blank is class 0 ([`crate::ctc::BLANK`]). The model sees ids, never strings:
//! the word language model is told which id is the space.
//!
//! ```
//! use model::ctc_decode::{greedy, prefix_beam_search, BeamOptions};
//! // 3 frames over blank + 2 symbols: "1, 1, blank" → [1].
//! let lp: Vec<f64> = [0.1, 0.8, 0.1, 0.1, 0.8, 0.1, 0.8, 0.1, 0.1].iter().map(|p: &f64| p.ln()).collect();
//! assert_eq!(greedy(&lp, 3, 3).labels, vec![1]);
//! let best = prefix_beam_search(&lp, 3, 3, &BeamOptions { beam: 4, ..Default::default() }, None);
//! assert_eq!(best.labels, vec![1]);
//! ```

use crate::ctc::BLANK;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A decoded label sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    /// Label ids (no blanks).
    pub labels: Vec<u32>,
    /// The frame at which each label was first emitted (greedy only; empty otherwise).
    pub frames: Vec<usize>,
    /// The search score: log p_ctc (the best path's for greedy, the prefix's summed over its
    /// paths for beam search) plus the language model and word bonus terms.
    pub score: f64,
}

/// The best path: each frame's most probable class (the lowest id on ties), repeats merged,
/// blanks dropped. `lp` holds at least `frames` rows of `classes` log-probabilities.
pub fn greedy(lp: &[f64], classes: usize, frames: usize) -> Hypothesis {
    let mut labels = Vec::new();
    let mut at = Vec::new();
    let mut prev = BLANK;
    let mut score = 0.0;
    for t in 0..frames {
        let row = &lp[t * classes..(t + 1) * classes];
        let (best, &v) =
            row.iter().enumerate().fold((0, &row[0]), |acc, (c, v)| if *v > *acc.1 { (c, v) } else { acc });
        score += v;
        let best = best as u32;
        if best != BLANK && best != prev {
            labels.push(best);
            at.push(t);
        }
        prev = best;
    }
    Hypothesis { labels, frames: at, score }
}

/// Options of [`prefix_beam_search`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeamOptions {
    /// Prefixes kept after each frame.
    pub beam: usize,
    /// Weight of the language model's log-probability (0 = none).
    pub lm_weight: f64,
    /// Added per word (per space-separated word for a word model, per word boundary
    /// reached for a character model): counters the LM's bias towards short outputs.
    pub word_bonus: f64,
    /// Classes below this log-probability at a frame are not tried there (speed; −∞ = all).
    pub prune: f64,
}

impl Default for BeamOptions {
    fn default() -> Self {
        Self { beam: 8, lm_weight: 0.0, word_bonus: 0.0, prune: f64::NEG_INFINITY }
    }
}

#[inline]
fn lse(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + ((a - m).exp() + (b - m).exp()).ln()
}

#[derive(Clone)]
struct Beam {
    /// log p(prefix, ending in blank), log p(prefix, ending in a label).
    blank: f64,
    label: f64,
    /// Language model and word bonus terms accumulated along the prefix.
    lm: f64,
}

impl Beam {
    fn total(&self) -> f64 {
        lse(self.blank, self.label) + self.lm
    }
}

/// CTC prefix beam search over `frames` rows of `lp` (frames, classes). With `lm` and
/// `opts.lm_weight` ≠ 0 the language model's score of each extension is added as the prefix
/// grows, and its end-of-sentence score at the end. Deterministic: ties are broken by the
/// label sequence.
pub fn prefix_beam_search(
    lp: &[f64],
    classes: usize,
    frames: usize,
    opts: &BeamOptions,
    lm: Option<&NgramLm>,
) -> Hypothesis {
    let width = opts.beam.max(1);
    let lm = lm.filter(|_| opts.lm_weight != 0.0 || opts.word_bonus != 0.0);
    let mut beams: Vec<(Vec<u32>, Beam)> = vec![(Vec::new(), Beam { blank: 0.0, label: f64::NEG_INFINITY, lm: 0.0 })];
    let mut next: HashMap<Vec<u32>, Beam> = HashMap::new();
    for t in 0..frames {
        let row = &lp[t * classes..(t + 1) * classes];
        next.clear();
        for (prefix, b) in &beams {
            let p_all = lse(b.blank, b.label);
            // Blank: the prefix stays, now ending in a blank.
            let e = next.entry(prefix.clone()).or_insert(Beam {
                blank: f64::NEG_INFINITY,
                label: f64::NEG_INFINITY,
                lm: b.lm,
            });
            e.blank = lse(e.blank, p_all + row[BLANK as usize]);
            let last = prefix.last().copied();
            for (c, &p) in row.iter().enumerate().skip(1) {
                if p < opts.prune {
                    continue;
                }
                let c = c as u32;
                if Some(c) == last {
                    // A repeat without a blank between merges into the same prefix...
                    let e = next.get_mut(prefix).expect("inserted above");
                    e.label = lse(e.label, b.label + p);
                    // ...and after a blank it extends the prefix.
                    if b.blank == f64::NEG_INFINITY {
                        continue;
                    }
                }
                let mut ext = prefix.clone();
                ext.push(c);
                let from = if Some(c) == last { b.blank } else { p_all };
                match next.get_mut(&ext) {
                    Some(e) => e.label = lse(e.label, from + p),
                    None => {
                        let extra = lm.map_or(0.0, |m| m.extend_score(prefix, c, opts));
                        next.insert(ext, Beam { blank: f64::NEG_INFINITY, label: from + p, lm: b.lm + extra });
                    }
                }
            }
        }
        beams = next.drain().collect();
        sort_beams(&mut beams, |b| b.total());
        beams.truncate(width);
    }
    if let Some(m) = lm {
        for (prefix, b) in beams.iter_mut() {
            b.lm += m.end_score(prefix, opts);
        }
        sort_beams(&mut beams, |b| b.total());
    }
    let (labels, b) = beams.swap_remove(0);
    Hypothesis { labels, frames: Vec::new(), score: b.total() }
}

fn sort_beams(beams: &mut [(Vec<u32>, Beam)], key: impl Fn(&Beam) -> f64) {
    beams.sort_by(|a, b| key(&b.1).total_cmp(&key(&a.1)).then_with(|| a.0.cmp(&b.0)));
}

/// What an [`NgramLm`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LmUnit {
    /// Characters (label ids, the space included).
    #[default]
    Char,
    /// Words: the label runs between spaces.
    Word,
}

/// An n-gram language model over label ids (characters) or words, estimated from training
/// transcripts with interpolated Witten–Bell smoothing (Witten & Bell 1991; the estimator
/// SRILM calls `-wbdiscount -interpolate`) down to a uniform distribution over the known
/// symbols plus one unknown, so every sequence has a finite score.
#[derive(Debug, Clone)]
pub struct NgramLm {
    unit: LmUnit,
    order: usize,
    space: u32,
    /// Per context (the preceding symbols, at most order − 1), counts of the next symbol.
    counts: HashMap<Vec<u32>, HashMap<u32, u32>>,
    /// Words' ids (word models; id 0 is the unknown word).
    words: HashMap<Vec<u32>, u32>,
    /// Symbols known, the end marker and the unknown included.
    vocab: usize,
}

/// The sentence-start context symbol and end-of-sentence symbol inside the counts.
const BOS: u32 = u32::MAX;
const EOS: u32 = u32::MAX - 1;
const UNK_WORD: u32 = 0;

impl NgramLm {
    /// Estimates the model from `sentences` (label ids without blanks), where `space` is the
    /// word separator's id. `order` ≥ 1.
    pub fn train(sentences: &[Vec<u32>], unit: LmUnit, order: usize, space: u32) -> Self {
        let order = order.max(1);
        let mut lm = NgramLm { unit, order, space, counts: HashMap::new(), words: HashMap::new(), vocab: 0 };
        let mut symbols = std::collections::BTreeSet::new();
        for s in sentences {
            let units = lm.units(s, true);
            for (i, &u) in units.iter().enumerate() {
                symbols.insert(u);
                let hist = lm.history(&units[..i]);
                for k in 0..=hist.len() {
                    *lm.counts.entry(hist[hist.len() - k..].to_vec()).or_default().entry(u).or_default() += 1;
                }
            }
        }
        // The known symbols, the end marker (counted above) and one unknown.
        lm.vocab = symbols.len() + 1;
        lm
    }

    /// The model's order.
    pub fn order(&self) -> usize {
        self.order
    }

    /// What the model counts.
    pub fn unit(&self) -> LmUnit {
        self.unit
    }

    /// A sentence as the model's symbols, ending with the end marker when `end`; words are
    /// numbered in first-seen order while training (`train` holds `&mut self` only there).
    fn units(&mut self, s: &[u32], end: bool) -> Vec<u32> {
        let mut out = match self.unit {
            LmUnit::Char => s.to_vec(),
            LmUnit::Word => {
                let mut ids = Vec::new();
                for w in s.split(|&c| c == self.space).filter(|w| !w.is_empty()) {
                    let next = self.words.len() as u32 + 1;
                    ids.push(*self.words.entry(w.to_vec()).or_insert(next));
                }
                ids
            }
        };
        if end {
            out.push(EOS);
        }
        out
    }

    fn word_id(&self, w: &[u32]) -> u32 {
        self.words.get(w).copied().unwrap_or(UNK_WORD)
    }

    /// The last order − 1 symbols before position `i`, padded with sentence starts.
    fn history(&self, before: &[u32]) -> Vec<u32> {
        let n = self.order - 1;
        let mut h = vec![BOS; n.saturating_sub(before.len())];
        h.extend_from_slice(&before[before.len().saturating_sub(n)..]);
        h
    }

    /// log P(next | history) with interpolated Witten–Bell smoothing.
    pub fn log_prob(&self, history: &[u32], next: u32) -> f64 {
        let mut p = 1.0 / self.vocab as f64;
        let n = (self.order - 1).min(history.len());
        for k in 0..=n {
            let ctx = &history[history.len() - k..];
            if let Some(c) = self.counts.get(ctx) {
                let total: u32 = c.values().sum();
                let types = c.len() as f64;
                let seen = c.get(&next).copied().unwrap_or(0) as f64;
                p = (seen + types * p) / (total as f64 + types);
            }
        }
        p.ln()
    }

    /// log P of a whole sentence (label ids), the end marker included.
    pub fn sentence_log_prob(&self, s: &[u32]) -> f64 {
        let units: Vec<u32> = match self.unit {
            LmUnit::Char => s.iter().copied().chain([EOS]).collect(),
            LmUnit::Word => {
                s.split(|&c| c == self.space).filter(|w| !w.is_empty()).map(|w| self.word_id(w)).chain([EOS]).collect()
            }
        };
        units.iter().enumerate().map(|(i, &u)| self.log_prob(&self.history(&units[..i]), u)).sum()
    }

    /// The words of `prefix` as the model's ids (the last, unfinished one left out).
    fn finished_words<'a>(&self, prefix: &'a [u32]) -> (Vec<u32>, &'a [u32]) {
        let mut words: Vec<&[u32]> = prefix.split(|&c| c == self.space).collect();
        let last = words.pop().unwrap_or(&[]);
        (words.into_iter().filter(|w| !w.is_empty()).map(|w| self.word_id(w)).collect(), last)
    }

    /// Shallow-fusion score of appending label `c` to `prefix`.
    fn extend_score(&self, prefix: &[u32], c: u32, opts: &BeamOptions) -> f64 {
        match self.unit {
            LmUnit::Char => {
                let boundary = c == self.space && prefix.last().is_some_and(|&p| p != self.space);
                opts.lm_weight * self.log_prob(&self.history(prefix), c) + if boundary { opts.word_bonus } else { 0.0 }
            }
            LmUnit::Word => {
                if c != self.space {
                    return 0.0;
                }
                let (done, last) = self.finished_words(prefix);
                if last.is_empty() {
                    return 0.0;
                }
                opts.lm_weight * self.log_prob(&self.history(&done), self.word_id(last)) + opts.word_bonus
            }
        }
    }

    /// Shallow-fusion score of ending the sentence after `prefix`.
    fn end_score(&self, prefix: &[u32], opts: &BeamOptions) -> f64 {
        match self.unit {
            LmUnit::Char => {
                let boundary = prefix.last().is_some_and(|&p| p != self.space);
                opts.lm_weight * self.log_prob(&self.history(prefix), EOS)
                    + if boundary { opts.word_bonus } else { 0.0 }
            }
            LmUnit::Word => {
                let (mut done, last) = self.finished_words(prefix);
                let mut s = 0.0;
                if !last.is_empty() {
                    let id = self.word_id(last);
                    s += opts.lm_weight * self.log_prob(&self.history(&done), id) + opts.word_bonus;
                    done.push(id);
                }
                s + opts.lm_weight * self.log_prob(&self.history(&done), EOS)
            }
        }
    }
}

#[cfg(test)]
#[path = "ctc_decode_tests.rs"]
mod tests;
