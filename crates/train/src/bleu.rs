//! Corpus BLEU and chrF computed exactly as sacreBLEU 2.6.0 computes them by default.
//!
//! What is matched (read from sacreBLEU's source, checked against its numbers):
//!
//! - [`tokenize_13a`] is `sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a` (mteval-v13a): remove
//!   `<skipped>`, join `-\n`, turn `\n` into a space, unescape `&quot;` `&amp;` `&lt;` `&gt;` (in that
//!   order, once each), then the four regexes of `TokenizerRegexp` (split ASCII punctuation
//!   except `'` `,` `-` `.`; split `.`/`,` unless both neighbours are digits; split `-` after a
//!   digit) and Python's `' '.join(line.split())`, with Python's notion of whitespace.
//! - [`corpus_bleu`] is `BLEU()`: 13a, case-sensitive, n-grams up to 4, `smooth_method="exp"`
//!   (the NIST/mteval smoothing: the k-th order with no match gets precision
//!   `100 / (2^k · total)`), no effective order, every hypothesis `rstrip()`ed first, clipped
//!   counts against the per-n-gram maximum over a segment's references, and the reference
//!   length closest to the hypothesis length (ties to the shorter). [`sentence_bleu`] is
//!   `sacrebleu.sentence_bleu` (the same but with effective order on).
//! - [`corpus_chrf`] is `CHRF()`: character n-grams 1..=6 over the line with every whitespace
//!   character removed (no tokenization, case-sensitive), β = 2, no word n-grams, per segment
//!   the reference with the best chrF, and the corpus score from summed statistics with
//!   sacreBLEU ≥ 2's default "effective order" averaging (orders where hypothesis or reference
//!   has no n-gram are left out), not epsilon smoothing.
//!
//! References are given per segment (`refs[i]` are the references of hypothesis `i`), and a
//! segment may have fewer references than another, as sacreBLEU's `None` padding allows; the
//! signature then says `nrefs:var`. Signatures are sacreBLEU's long form:
//!
//! ```text
//! nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0      (BLEU)
//! nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0     (chrF)
//! ```
//!
//! `version:2.6.0` names the sacreBLEU release whose numbers the tests reproduce
//! (`tests/fixtures/bleu_sacrebleu.json`, made by `scripts/gen_bleu_fixtures.py`): counts,
//! totals and lengths equal, scores within 1e-9.
//!
//! ```
//! let hyps = ["The cat sat on a mat."];
//! let refs = [vec!["The cat sat on the mat."]];
//! let bleu = train::bleu::corpus_bleu(&hyps, &refs).unwrap();
//! assert_eq!(bleu.counts, [6, 4, 2, 1]);
//! assert_eq!(bleu.signature(), "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;

/// The sacreBLEU release this module reproduces; it ends every signature.
pub const SACREBLEU_VERSION: &str = "2.6.0";

/// BLEU's maximum n-gram order (sacreBLEU's `MAX_NGRAM_ORDER`).
pub const MAX_NGRAM_ORDER: usize = 4;
/// chrF's character n-gram order (`CHRF.CHAR_ORDER`).
pub const CHRF_CHAR_ORDER: usize = 6;
/// chrF's β (`CHRF.BETA`): recall weighs β² times precision.
pub const CHRF_BETA: u32 = 2;

/// Why a corpus cannot be scored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BleuError {
    /// The hypothesis and reference lists differ in length.
    #[error("{hyps} hypotheses but {refs} reference sets: each hypothesis needs its references")]
    LengthMismatch {
        /// Hypotheses given.
        hyps: usize,
        /// Reference sets given.
        refs: usize,
    },
    /// A segment without any reference.
    #[error("segment {segment} has no reference (sacreBLEU cannot score it either)")]
    NoReference {
        /// Its 0-based index.
        segment: usize,
    },
    /// Nothing to score.
    #[error("empty corpus: no hypotheses to score (sacreBLEU rejects it too)")]
    EmptyCorpus,
}

/// How many references each segment had, as the signature reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NRefs {
    /// Every segment had this many.
    Fixed(usize),
    /// Segments had different numbers (`nrefs:var`).
    Variable,
}

impl std::fmt::Display for NRefs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NRefs::Fixed(n) => write!(f, "{n}"),
            NRefs::Variable => f.write_str("var"),
        }
    }
}

/// A BLEU score with sacreBLEU's sufficient statistics (`BLEUScore`).
#[derive(Debug, Clone, PartialEq)]
pub struct Bleu {
    /// BLEU in percent, 0..=100.
    pub score: f64,
    /// Clipped n-gram matches, n = 1..=4.
    pub counts: [u64; MAX_NGRAM_ORDER],
    /// Hypothesis n-grams, n = 1..=4.
    pub totals: [u64; MAX_NGRAM_ORDER],
    /// n-gram precisions in percent (smoothed where a count is 0, as sacreBLEU reports them).
    pub precisions: [f64; MAX_NGRAM_ORDER],
    /// Brevity penalty.
    pub bp: f64,
    /// Hypothesis tokens.
    pub sys_len: u64,
    /// Closest-reference tokens.
    pub ref_len: u64,
    /// How many references each hypothesis had (the signature's `nrefs`).
    pub nrefs: NRefs,
    /// Whether orders with no hypothesis n-grams were left out (sentence BLEU only).
    pub effective_order: bool,
}

impl Bleu {
    /// sacreBLEU's signature, e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`.
    pub fn signature(&self) -> String {
        format!(
            "nrefs:{}|case:mixed|eff:{}|tok:13a|smooth:exp|version:{SACREBLEU_VERSION}",
            self.nrefs,
            if self.effective_order { "yes" } else { "no" }
        )
    }

    /// Hypothesis length over reference length (0 when there is no reference token).
    pub fn ratio(&self) -> f64 {
        if self.ref_len == 0 {
            0.0
        } else {
            self.sys_len as f64 / self.ref_len as f64
        }
    }

    /// The line sacreBLEU prints, e.g.
    /// `BLEU|nrefs:1|…|version:2.6.0 = 30.18 100.0/66.7/50.0/50.0 (BP = 0.472 ratio = 0.571 hyp_len = 4 ref_len = 7)`.
    pub fn format(&self) -> String {
        let mut s = format!("BLEU|{} = {:.2} ", self.signature(), self.score);
        for (i, p) in self.precisions.iter().enumerate() {
            let _ = write!(s, "{}{p:.1}", if i > 0 { "/" } else { "" });
        }
        let _ = write!(
            s,
            " (BP = {:.3} ratio = {:.3} hyp_len = {} ref_len = {})",
            self.bp,
            self.ratio(),
            self.sys_len,
            self.ref_len
        );
        s
    }
}

/// A chrF score (`CHRFScore`) with the summed statistics it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Chrf {
    /// chrF2 in percent, 0..=100.
    pub score: f64,
    /// Per character order n = 1..=6: [hypothesis n-grams, reference n-grams, matches].
    pub stats: [[u64; 3]; CHRF_CHAR_ORDER],
    /// How many references each hypothesis had (the signature's `nrefs`).
    pub nrefs: NRefs,
}

impl Chrf {
    /// sacreBLEU's signature, e.g. `nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0`.
    pub fn signature(&self) -> String {
        format!(
            "nrefs:{}|case:mixed|eff:yes|nc:{CHRF_CHAR_ORDER}|nw:0|space:no|version:{SACREBLEU_VERSION}",
            self.nrefs
        )
    }

    /// The line sacreBLEU prints, e.g. `chrF2|nrefs:1|…|version:2.6.0 = 49.26`.
    pub fn format(&self) -> String {
        format!("chrF{CHRF_BETA}|{} = {:.2}", self.signature(), self.score)
    }
}

/// Python's `str.isspace()` (what `str.split()` and `str.rstrip()` use). It is Rust's
/// `char::is_whitespace` plus the ASCII information separators U+001C..U+001F, which Python
/// counts as whitespace (bidi class B/S) and Unicode's White_Space property does not.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `' '.join(line.split())` with Python's whitespace.
fn py_split(line: &str) -> impl Iterator<Item = &str> {
    line.split(is_py_space).filter(|w| !w.is_empty())
}

/// The first regex of `TokenizerRegexp`: `[\{-\~\[-\` -\&\(-\+\:-\@\/]`, i.e. ASCII
/// punctuation except `'` `,` `-` `.` (those get their own rules), plus the space.
fn is_13a_punct(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

/// One `re.sub` of a two-character pattern `(A)(B)` → `pre \1 mid \2 post` over `chars`.
/// `re.sub` takes leftmost, non-overlapping matches, and a match consumes both characters,
/// so the second character of a match is never the first of the next: scanning pairs
/// left to right and skipping past each match is the same thing.
fn sub_pairs(
    chars: &[char],
    first: impl Fn(char) -> bool,
    second: impl Fn(char) -> bool,
    [pre, mid, post]: [&str; 3],
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + chars.len() / 4);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && first(chars[i]) && second(chars[i + 1]) {
            out.extend(pre.chars());
            out.push(chars[i]);
            out.extend(mid.chars());
            out.push(chars[i + 1]);
            out.extend(post.chars());
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// sacreBLEU's `13a` tokenizer (`Tokenizer13a()(line)`), character for character.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
    if line.contains('&') {
        line = line.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
    }
    // f' {line} ', then the regexes of TokenizerRegexp in order.
    let mut chars: Vec<char> = Vec::with_capacity(line.len() + 2);
    chars.push(' ');
    for c in line.chars() {
        if is_13a_punct(c) {
            chars.extend([' ', c, ' ']);
        } else {
            chars.push(c);
        }
    }
    chars.push(' ');
    // `[0-9]` in a Python str pattern is the ASCII range only (not `\d`).
    let digit = |c: char| c.is_ascii_digit();
    let dot_comma = |c: char| c == '.' || c == ',';
    // ([^0-9])([\.,]) -> \1 \2 ; ([\.,])([^0-9]) -> ' \1 \2' ; ([0-9])(-) -> \1 \2
    let chars = sub_pairs(&chars, |c| !digit(c), dot_comma, ["", " ", " "]);
    let chars = sub_pairs(&chars, dot_comma, |c| !digit(c), [" ", " ", ""]);
    let chars = sub_pairs(&chars, digit, |c| c == '-', ["", " ", " "]);
    let s: String = chars.into_iter().collect();
    py_split(&s).collect::<Vec<_>>().join(" ")
}

/// `BLEU._preprocess_segment`: `tokenizer(sent.rstrip())`, as tokens.
fn bleu_tokens(sent: &str) -> Vec<String> {
    let tokenized = tokenize_13a(sent.trim_end_matches(is_py_space));
    // The tokenizer already joined on single spaces and tokens hold no whitespace.
    py_split(&tokenized).map(str::to_owned).collect()
}

type NgramCounts<'a> = HashMap<&'a [String], u64>;

/// `extract_all_word_ngrams(line, 1, 4)`: every n-gram (as a token slice) with its count.
fn word_ngrams(tokens: &[String]) -> NgramCounts<'_> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_NGRAM_ORDER {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

/// `BLEU._get_closest_ref_len`: the nearest reference length, ties to the shorter one.
fn closest_ref_len(hyp_len: usize, ref_lens: &[usize]) -> usize {
    let mut best: Option<(usize, usize)> = None; // (diff, len)
    for &len in ref_lens {
        let diff = hyp_len.abs_diff(len);
        best = match best {
            Some((d, l)) if diff > d || (diff == d && len >= l) => Some((d, l)),
            _ => Some((diff, len)),
        };
    }
    best.map_or(0, |(_, l)| l)
}

/// Per-segment statistics: [hyp_len, ref_len, correct[4], total[4]].
struct BleuStats {
    sys_len: u64,
    ref_len: u64,
    correct: [u64; MAX_NGRAM_ORDER],
    total: [u64; MAX_NGRAM_ORDER],
}

fn segment_bleu_stats<R: AsRef<str>>(hyp: &str, refs: &[R]) -> BleuStats {
    let ref_tokens: Vec<Vec<String>> = refs.iter().map(|r| bleu_tokens(r.as_ref())).collect();
    // The reference n-gram counts merged by maximum over the references (clipping bound).
    let mut ref_ngrams: NgramCounts = HashMap::new();
    for toks in &ref_tokens {
        for (gram, count) in word_ngrams(toks) {
            let slot = ref_ngrams.entry(gram).or_insert(0);
            *slot = (*slot).max(count);
        }
    }
    let ref_lens: Vec<usize> = ref_tokens.iter().map(Vec::len).collect();
    let hyp_tokens = bleu_tokens(hyp);
    let mut stats = BleuStats {
        sys_len: hyp_tokens.len() as u64,
        ref_len: closest_ref_len(hyp_tokens.len(), &ref_lens) as u64,
        correct: [0; MAX_NGRAM_ORDER],
        total: [0; MAX_NGRAM_ORDER],
    };
    for (gram, count) in word_ngrams(&hyp_tokens) {
        let n = gram.len() - 1;
        stats.total[n] += count;
        if let Some(&r) = ref_ngrams.get(gram) {
            stats.correct[n] += count.min(r);
        }
    }
    stats
}

/// sacreBLEU's `my_log`: log with log(0) floored to -9999999999 (so the score becomes 0).
fn my_log(x: f64) -> f64 {
    if x == 0.0 {
        -9_999_999_999.0
    } else {
        x.ln()
    }
}

/// `BLEU.compute_bleu` with `smooth_method="exp"`, step for step in the same f64 operations.
fn compute_bleu(
    correct: [u64; MAX_NGRAM_ORDER],
    total: [u64; MAX_NGRAM_ORDER],
    sys_len: u64,
    ref_len: u64,
    effective_order: bool,
    nrefs: NRefs,
) -> Bleu {
    let mut bp = 1.0;
    if sys_len < ref_len {
        bp = if sys_len > 0 { (1.0 - ref_len as f64 / sys_len as f64).exp() } else { 0.0 };
    }
    let mut precisions = [0.0; MAX_NGRAM_ORDER];
    let mut out =
        Bleu { score: 0.0, counts: correct, totals: total, precisions, bp, sys_len, ref_len, nrefs, effective_order };
    // sacreBLEU returns 0 without any smoothing when nothing matches (its issue #141).
    if correct.iter().all(|&c| c == 0) {
        return out;
    }
    let mut smooth_mteval = 1.0;
    let mut eff_order = MAX_NGRAM_ORDER;
    for n in 0..MAX_NGRAM_ORDER {
        if total[n] == 0 {
            break;
        }
        if effective_order {
            eff_order = n + 1;
        }
        precisions[n] = if correct[n] == 0 {
            smooth_mteval *= 2.0;
            100.0 / (smooth_mteval * total[n] as f64)
        } else {
            100.0 * correct[n] as f64 / total[n] as f64
        };
    }
    // Python's sum() starts at 0 and adds left to right (3.11; 3.12+ compensates, a ≤1-ulp change).
    let log_sum = precisions[..eff_order].iter().fold(0.0, |acc, &p| acc + my_log(p));
    out.score = bp * (log_sum / eff_order as f64).exp();
    out.precisions = precisions;
    out
}

fn nrefs_of<RS: AsRef<[R]>, R>(refs: &[RS]) -> NRefs {
    let mut counts = refs.iter().map(|r| r.as_ref().len());
    match counts.next() {
        Some(first) if counts.all(|c| c == first) => NRefs::Fixed(first),
        _ => NRefs::Variable,
    }
}

fn check_corpus<H, RS: AsRef<[R]>, R>(hyps: &[H], refs: &[RS]) -> Result<NRefs, BleuError> {
    if hyps.len() != refs.len() {
        return Err(BleuError::LengthMismatch { hyps: hyps.len(), refs: refs.len() });
    }
    if hyps.is_empty() {
        return Err(BleuError::EmptyCorpus);
    }
    if let Some(segment) = refs.iter().position(|r| r.as_ref().is_empty()) {
        return Err(BleuError::NoReference { segment });
    }
    Ok(nrefs_of(refs))
}

/// Corpus BLEU as sacreBLEU's default `BLEU().corpus_score(hyps, refs)`.
///
/// `refs[i]` holds the references of `hyps[i]` (one or more; the count may vary by segment).
/// Statistics are summed over segments and the score computed once from the sums.
pub fn corpus_bleu<H, RS, R>(hyps: &[H], refs: &[RS]) -> Result<Bleu, BleuError>
where
    H: AsRef<str>,
    RS: AsRef<[R]>,
    R: AsRef<str>,
{
    let nrefs = check_corpus(hyps, refs)?;
    let (mut sys_len, mut ref_len) = (0, 0);
    let mut correct = [0; MAX_NGRAM_ORDER];
    let mut total = [0; MAX_NGRAM_ORDER];
    for (hyp, seg_refs) in hyps.iter().zip(refs) {
        let s = segment_bleu_stats(hyp.as_ref(), seg_refs.as_ref());
        sys_len += s.sys_len;
        ref_len += s.ref_len;
        for n in 0..MAX_NGRAM_ORDER {
            correct[n] += s.correct[n];
            total[n] += s.total[n];
        }
    }
    Ok(compute_bleu(correct, total, sys_len, ref_len, false, nrefs))
}

/// [`corpus_bleu`] with exactly one reference per hypothesis.
pub fn corpus_bleu_single<H: AsRef<str>, R: AsRef<str>>(hyps: &[H], refs: &[R]) -> Result<Bleu, BleuError> {
    let refs: Vec<[&str; 1]> = refs.iter().map(|r| [r.as_ref()]).collect();
    corpus_bleu(hyps, &refs)
}

/// Sentence BLEU as `sacrebleu.sentence_bleu(hyp, refs)`: effective order on (orders the
/// hypothesis is too short for are left out), exp smoothing. An empty `refs` scores 0.
pub fn sentence_bleu<R: AsRef<str>>(hyp: &str, refs: &[R]) -> Bleu {
    let s = segment_bleu_stats(hyp, refs);
    compute_bleu(s.correct, s.total, s.sys_len, s.ref_len, true, NRefs::Fixed(refs.len()))
}

/// `extract_all_char_ngrams(line, 6, include_whitespace=False)`: code-point n-grams of the
/// line with all (Python) whitespace removed, orders 1..=6.
fn char_ngrams(chars: &[char]) -> Vec<HashMap<&[char], u64>> {
    (1..=CHRF_CHAR_ORDER)
        .map(|n| {
            let mut counts = HashMap::new();
            for gram in chars.windows(n) {
                *counts.entry(gram).or_insert(0) += 1;
            }
            counts
        })
        .collect()
}

fn chrf_chars(line: &str) -> Vec<char> {
    line.chars().filter(|&c| !is_py_space(c)).collect()
}

/// `CHRF._compute_f_score` with `eps_smoothing=False`, in the same f64 operations (the
/// per-segment choice of reference compares these values, so they must be bit-identical).
fn chrf_f_score(stats: &[[u64; 3]; CHRF_CHAR_ORDER]) -> f64 {
    let factor = f64::from(CHRF_BETA * CHRF_BETA);
    let (mut avg_prec, mut avg_rec, mut effective_order) = (0.0, 0.0, 0u32);
    for &[n_hyp, n_ref, n_match] in stats {
        if n_hyp > 0 && n_ref > 0 {
            avg_prec += n_match as f64 / n_hyp as f64;
            avg_rec += n_match as f64 / n_ref as f64;
            effective_order += 1;
        }
    }
    if effective_order == 0 {
        return 0.0;
    }
    avg_prec /= f64::from(effective_order);
    avg_rec /= f64::from(effective_order);
    if avg_prec + avg_rec != 0.0 {
        let mut score = (1.0 + factor) * avg_prec * avg_rec;
        score /= factor * avg_prec + avg_rec;
        100.0 * score
    } else {
        0.0
    }
}

fn segment_chrf_stats<R: AsRef<str>>(hyp: &str, refs: &[R]) -> [[u64; 3]; CHRF_CHAR_ORDER] {
    let hyp_chars = chrf_chars(hyp);
    let hyp_ngrams = char_ngrams(&hyp_chars);
    let mut best = [[0; 3]; CHRF_CHAR_ORDER];
    let mut best_f = -1.0;
    for r in refs {
        let ref_chars = chrf_chars(r.as_ref());
        let ref_ngrams = char_ngrams(&ref_chars);
        let mut stats = [[0; 3]; CHRF_CHAR_ORDER];
        for (n, (h, r)) in hyp_ngrams.iter().zip(&ref_ngrams).enumerate() {
            let hyp_count: u64 = h.values().sum();
            let matches: u64 = h.iter().map(|(g, &c)| r.get(g).map_or(0, |&rc| c.min(rc))).sum();
            // sacreBLEU does not count hypothesis n-grams of an order the reference lacks.
            stats[n] = [if r.is_empty() { 0 } else { hyp_count }, r.values().sum(), matches];
        }
        let f = chrf_f_score(&stats);
        if f > best_f {
            best_f = f;
            best = stats;
        }
    }
    best
}

/// Corpus chrF as sacreBLEU's default `CHRF().corpus_score(hyps, refs)` (chrF2, character
/// order 6, no word n-grams, whitespace ignored). `refs[i]` holds the references of `hyps[i]`.
pub fn corpus_chrf<H, RS, R>(hyps: &[H], refs: &[RS]) -> Result<Chrf, BleuError>
where
    H: AsRef<str>,
    RS: AsRef<[R]>,
    R: AsRef<str>,
{
    let nrefs = check_corpus(hyps, refs)?;
    let mut stats = [[0u64; 3]; CHRF_CHAR_ORDER];
    for (hyp, seg_refs) in hyps.iter().zip(refs) {
        let seg = segment_chrf_stats(hyp.as_ref(), seg_refs.as_ref());
        for (acc, s) in stats.iter_mut().zip(&seg) {
            for k in 0..3 {
                acc[k] += s[k];
            }
        }
    }
    Ok(Chrf { score: chrf_f_score(&stats), stats, nrefs })
}

/// [`corpus_chrf`] with exactly one reference per hypothesis.
pub fn corpus_chrf_single<H: AsRef<str>, R: AsRef<str>>(hyps: &[H], refs: &[R]) -> Result<Chrf, BleuError> {
    let refs: Vec<[&str; 1]> = refs.iter().map(|r| [r.as_ref()]).collect();
    corpus_chrf(hyps, &refs)
}

/// Sentence chrF (`CHRF().sentence_score(hyp, refs)`); an empty `refs` scores 0.
pub fn sentence_chrf<R: AsRef<str>>(hyp: &str, refs: &[R]) -> Chrf {
    let stats = segment_chrf_stats(hyp, refs);
    Chrf { score: chrf_f_score(&stats), stats, nrefs: NRefs::Fixed(refs.len()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Fixture {
        sacrebleu_version: String,
        pool: Vec<Item>,
        cases: Vec<Case>,
        tokenize_13a: Vec<(String, String)>,
    }

    #[derive(Deserialize)]
    struct Item {
        hyp: String,
        refs: Vec<String>,
        src: String,
        sentence_bleu: BleuRef,
        sentence_chrf: f64,
    }

    #[derive(Deserialize)]
    struct BleuRef {
        score: f64,
        counts: [u64; 4],
        totals: [u64; 4],
        precisions: [f64; 4],
        bp: f64,
        sys_len: u64,
        ref_len: u64,
    }

    #[derive(Deserialize)]
    struct Case {
        name: String,
        indices: Vec<usize>,
        bleu: BleuRef,
        bleu_signature: String,
        bleu_format: String,
        chrf: f64,
        chrf_signature: String,
    }

    /// Scores are percentages; sacreBLEU's own f64 operations are mirrored, so agreement is
    /// far tighter than the 4 decimals asked for (libm's exp/ln may differ in the last ulp).
    const TOL: f64 = 1e-9;

    fn fixture() -> Fixture {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bleu_sacrebleu.json");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn check_bleu(what: &str, got: &Bleu, want: &BleuRef) {
        assert_eq!(got.counts, want.counts, "{what}: counts");
        assert_eq!(got.totals, want.totals, "{what}: totals");
        assert_eq!((got.sys_len, got.ref_len), (want.sys_len, want.ref_len), "{what}: lengths");
        assert!((got.score - want.score).abs() <= TOL, "{what}: score {} vs {}", got.score, want.score);
        assert!((got.bp - want.bp).abs() <= TOL, "{what}: bp {} vs {}", got.bp, want.bp);
        for (g, w) in got.precisions.iter().zip(&want.precisions) {
            assert!((g - w).abs() <= TOL, "{what}: precisions {:?} vs {:?}", got.precisions, want.precisions);
        }
    }

    #[test]
    fn fixture_is_for_this_version() {
        assert_eq!(fixture().sacrebleu_version, SACREBLEU_VERSION);
    }

    #[test]
    fn tokenize_13a_matches_sacrebleu() {
        let fx = fixture();
        assert!(fx.tokenize_13a.len() > 300);
        for (line, want) in &fx.tokenize_13a {
            assert_eq!(&tokenize_13a(line), want, "line {line:?}");
        }
    }

    #[test]
    fn corpus_scores_match_sacrebleu() {
        let fx = fixture();
        let (mut max_bleu, mut max_chrf) = (0.0f64, 0.0f64);
        for case in &fx.cases {
            let hyps: Vec<&str> = case.indices.iter().map(|&i| fx.pool[i].hyp.as_str()).collect();
            let refs: Vec<&[String]> = case.indices.iter().map(|&i| fx.pool[i].refs.as_slice()).collect();
            let bleu = corpus_bleu(&hyps, &refs).unwrap();
            check_bleu(&case.name, &bleu, &case.bleu);
            assert_eq!(bleu.signature(), case.bleu_signature, "{}", case.name);
            assert_eq!(bleu.format(), case.bleu_format, "{}", case.name);
            let chrf = corpus_chrf(&hyps, &refs).unwrap();
            assert!((chrf.score - case.chrf).abs() <= TOL, "{}: chrF {} vs {}", case.name, chrf.score, case.chrf);
            assert_eq!(chrf.signature(), case.chrf_signature, "{}", case.name);
            max_bleu = max_bleu.max((bleu.score - case.bleu.score).abs());
            max_chrf = max_chrf.max((chrf.score - case.chrf).abs());
        }
        eprintln!("{} cases: max |ΔBLEU| = {max_bleu:e}, max |ΔchrF| = {max_chrf:e}", fx.cases.len());
    }

    #[test]
    fn sentence_scores_match_sacrebleu() {
        let fx = fixture();
        for (i, item) in fx.pool.iter().enumerate() {
            let what = format!("pool[{i}] ({}) {:?}", item.src, item.hyp);
            check_bleu(&what, &sentence_bleu(&item.hyp, &item.refs), &item.sentence_bleu);
            let chrf = sentence_chrf(&item.hyp, &item.refs);
            assert!(
                (chrf.score - item.sentence_chrf).abs() <= TOL,
                "{what}: chrF {} vs {}",
                chrf.score,
                item.sentence_chrf
            );
        }
    }

    #[test]
    fn single_reference_helpers_agree() {
        let hyps = ["A man is running.", "Two dogs play."];
        let refs = ["A man runs.", "Two dogs are playing."];
        let nested: Vec<[&str; 1]> = refs.iter().map(|r| [*r]).collect();
        assert_eq!(corpus_bleu_single(&hyps, &refs).unwrap(), corpus_bleu(&hyps, &nested).unwrap());
        assert_eq!(corpus_chrf_single(&hyps, &refs).unwrap(), corpus_chrf(&hyps, &nested).unwrap());
    }

    #[test]
    fn bad_corpora_are_typed_errors() {
        let none: [&str; 0] = [];
        assert_eq!(corpus_bleu_single(&["a"], &none), Err(BleuError::LengthMismatch { hyps: 1, refs: 0 }));
        assert_eq!(corpus_bleu_single(&none, &none), Err(BleuError::EmptyCorpus));
        let refs: Vec<Vec<&str>> = vec![vec!["a"], vec![]];
        assert_eq!(corpus_chrf(&["a", "b"], &refs), Err(BleuError::NoReference { segment: 1 }));
    }

    #[test]
    fn closest_ref_len_prefers_shorter_on_ties() {
        assert_eq!(closest_ref_len(5, &[7, 3]), 3);
        assert_eq!(closest_ref_len(5, &[3, 7]), 3);
        assert_eq!(closest_ref_len(5, &[9, 6, 4]), 4);
        assert_eq!(closest_ref_len(0, &[2, 1]), 1);
    }
}
