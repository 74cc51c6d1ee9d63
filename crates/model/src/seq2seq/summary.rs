//! Beam search for summaries: the copy mechanism's extended vocabulary, coverage carried
//! across steps, a minimum and maximum length, the GNMT length penalty and n-gram repetition
//! blocking, for a batch of documents at once; every output word keeps its p_gen and
//! attention row so callers can show where it came from.

use super::decode::length_penalty;
use super::model::Seq2Seq;
use crate::{Error, Result};
use candle_core::{DType, Tensor};

/// Summary decoding settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SummaryOptions {
    /// Hypotheses per document (1 = greedy).
    pub beam: usize,
    /// Words before EOS is allowed.
    pub min_len: usize,
    /// Most words (EOS not counted); a hypothesis that reaches it ends there.
    pub max_len: usize,
    /// GNMT's α in lp(Y) = ((5 + |Y|) / 6)^α; 0 = raw log-probability.
    pub length_penalty: f64,
    /// No n-gram of this size twice in one output (0 = off).
    pub no_repeat_ngram: usize,
    /// The id fed back to the decoder after a copied source-only word.
    pub unk_id: u32,
    /// Carry coverage across steps (needs a model built with `coverage`).
    pub coverage: bool,
}

/// One document's source in the extended vocabulary (copying).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySource {
    /// Source ids with the document's source-only words numbered from the target vocabulary
    /// size on (one per real source token).
    pub ext_ids: Vec<u32>,
    /// How many source-only words the document has.
    pub n_oov: usize,
}

/// A decoded summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Ids in the extended vocabulary, without BOS/EOS.
    pub tokens: Vec<u32>,
    /// Sum of the chosen tokens' log-probabilities (EOS included when it ended the summary).
    pub log_prob: f64,
    /// `log_prob` over the length penalty: what beam search ranks by.
    pub score: f64,
    /// p_gen of every output word (copying only; empty otherwise).
    pub p_gen: Vec<f32>,
    /// The attention row (source positions) every output word was chosen with.
    pub attention: Vec<Vec<f32>>,
}

struct Live {
    sent: usize,
    tokens: Vec<u32>,
    log_prob: f64,
    p_gen: Vec<f32>,
    attention: Vec<Vec<f32>>,
}

/// Whether `tok` after `tokens` would repeat an n-gram of size `n` already in `tokens`.
pub fn repeats_ngram(tokens: &[u32], tok: u32, n: usize) -> bool {
    if n == 0 || tokens.len() + 1 < n {
        return false;
    }
    if n == 1 {
        return tokens.contains(&tok);
    }
    let prefix = &tokens[tokens.len() + 1 - n..];
    tokens.windows(n).any(|w| w[..n - 1] == *prefix && w[n - 1] == tok)
}

impl Seq2Seq {
    /// Beam search over a batch of documents `src` (B, S) with real lengths `src_lengths`;
    /// `copy` holds each document's extended ids when the model copies (required then).
    /// Coverage is carried across steps when `opts.coverage`. Returns the best summary of
    /// each document.
    pub fn summarize(
        &self,
        src: &Tensor,
        src_lengths: &[usize],
        copy: Option<&[CopySource]>,
        opts: &SummaryOptions,
    ) -> Result<Vec<Summary>> {
        let cfg = self.config();
        let b = src_lengths.len();
        if cfg.copy {
            let c = copy.ok_or_else(|| Error::Input("a copying model needs each document's extended ids".into()))?;
            if c.len() != b || c.iter().zip(src_lengths).any(|(c, &l)| c.ext_ids.len() != l) {
                return Err(Error::Input(format!(
                    "extended ids for {} documents do not match the batch's {b} lengths {src_lengths:?}",
                    c.len()
                )));
            }
        }
        if opts.coverage && !cfg.coverage {
            return Err(Error::Input("coverage asked for, but the model was built without `coverage`".into()));
        }
        if opts.max_len == 0 || opts.min_len > opts.max_len {
            return Err(Error::Input(format!(
                "summary lengths: expected 0 ≤ min_len ≤ max_len and max_len ≥ 1, got min {} max {}",
                opts.min_len, opts.max_len
            )));
        }
        let k = opts.beam.max(1);
        let v = cfg.tgt_vocab_size;
        let enc0 = self.encode(src, src_lengths, false, None)?;
        let w = self.step_weights()?;
        let mut live: Vec<Live> = (0..b)
            .map(|s| Live { sent: s, tokens: Vec::new(), log_prob: 0.0, p_gen: Vec::new(), attention: Vec::new() })
            .collect();
        let mut finished: Vec<Vec<Summary>> = vec![Vec::new(); b];
        let mut enc = enc0.select(&(0..b as u32).collect::<Vec<_>>())?;
        let mut state = enc.initial.clone();
        if opts.coverage {
            state.coverage = Some(enc.mask_bias.zeros_like()?);
        }
        let eos = cfg.eos_id;
        let mut step = 0usize;
        while !live.is_empty() {
            let tokens: Vec<u32> = live
                .iter()
                .map(|l| match l.tokens.last() {
                    None => cfg.bos_id,
                    Some(&t) if (t as usize) < v => t,
                    Some(_) => opts.unk_id,
                })
                .collect();
            let (next, logits, attn, p_gen) = self.infer_step(&w, &enc, &tokens, &state)?;
            // The softmax as one vectorised op over the batch; per row only the copy
            // additions, the blocked tokens and a top-k scan remain (the log only of those).
            let probs = candle_nn::ops::softmax_last_dim(&logits)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            let attn = attn.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            let p_gen = p_gen.map(|p| p.to_dtype(DType::F32)?.to_vec1::<f32>()).transpose()?;
            let mut new_live = Vec::new();
            let mut parents: Vec<u32> = Vec::new();
            let mut r0 = 0;
            while r0 < live.len() {
                let sent = live[r0].sent;
                let mut r1 = r0;
                while r1 < live.len() && live[r1].sent == sent {
                    r1 += 1;
                }
                let len = src_lengths[sent];
                let mut cands: Vec<(f64, usize, u32)> = Vec::new();
                for r in r0..r1 {
                    let mut p = probs[r].clone();
                    if let (Some(pg), Some(c)) = (&p_gen, copy) {
                        let c = &c[sent];
                        mix_copy(&mut p, &attn[r][..len], &c.ext_ids, pg[r], v + c.n_oov);
                    }
                    let toks = &live[r].tokens;
                    // Padding and BOS are never words; blocked entries get −1 (never chosen).
                    p[cfg.pad_id as usize] = -1.0;
                    p[cfg.bos_id as usize] = -1.0;
                    if toks.len() < opts.min_len {
                        p[eos as usize] = -1.0;
                    }
                    for t in banned_next(toks, opts.no_repeat_ngram) {
                        p[t as usize] = -1.0;
                    }
                    for (tok, x) in top_k_positive(&p, k + 1) {
                        cands.push((live[r].log_prob + (x as f64).ln(), r, tok));
                    }
                }
                cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
                let last_step = step + 1 >= opts.max_len;
                let mut kept = 0;
                for (rank, &(lp, r, tok)) in cands.iter().enumerate() {
                    if kept == k || finished[sent].len() >= k {
                        break;
                    }
                    let mut pg = live[r].p_gen.clone();
                    let mut at = live[r].attention.clone();
                    if let Some(p) = &p_gen {
                        pg.push(p[r]);
                    }
                    at.push(attn[r][..len].to_vec());
                    if tok == eos {
                        if rank < k {
                            let n = live[r].tokens.len() + 1;
                            finished[sent].push(Summary {
                                tokens: live[r].tokens.clone(),
                                log_prob: lp,
                                score: lp / length_penalty(n, opts.length_penalty),
                                p_gen: pg,
                                attention: at,
                            });
                        }
                        continue;
                    }
                    let mut tokens = live[r].tokens.clone();
                    tokens.push(tok);
                    if last_step {
                        let n = tokens.len();
                        finished[sent].push(Summary {
                            tokens,
                            log_prob: lp,
                            score: lp / length_penalty(n, opts.length_penalty),
                            p_gen: pg,
                            attention: at,
                        });
                    } else {
                        new_live.push(Live { sent, tokens, log_prob: lp, p_gen: pg, attention: at });
                        parents.push(r as u32);
                    }
                    kept += 1;
                }
                if finished[sent].len() >= k || last_step {
                    while new_live.last().is_some_and(|l| l.sent == sent) {
                        new_live.pop();
                        parents.pop();
                    }
                }
                r0 = r1;
            }
            step += 1;
            if new_live.is_empty() {
                break;
            }
            let idx = Tensor::from_slice(&parents, parents.len(), enc.memory.device())?;
            state = next.select(&idx)?;
            enc = enc.select(&parents)?;
            live = new_live;
        }
        finished
            .into_iter()
            .enumerate()
            .map(|(i, hs)| {
                hs.into_iter().reduce(|a, b| if b.score > a.score { b } else { a }).ok_or_else(|| {
                    Error::Input(format!("document {i}: every continuation was blocked (min_len / no_repeat_ngram)"))
                })
            })
            .collect()
    }
}

/// p_gen·p (the vocabulary softmax, in place) extended to `n_ext` entries, plus
/// (1 − p_gen)·a_s at `src_ext[s]`: [`Seq2Seq::output_distribution`] in f32 from the softmax.
fn mix_copy(p: &mut Vec<f32>, attn: &[f32], src_ext: &[u32], p_gen: f32, n_ext: usize) {
    for x in p.iter_mut() {
        *x *= p_gen;
    }
    p.resize(n_ext.max(p.len()), 0.0);
    for (&a, &id) in attn.iter().zip(src_ext) {
        if id as usize >= p.len() {
            p.resize(id as usize + 1, 0.0);
        }
        p[id as usize] += (1.0 - p_gen) * a;
    }
}

/// The tokens that would repeat an n-gram of size `n` after `tokens` (0 = none): the last
/// word of every earlier n-gram whose first n − 1 words are the current suffix.
pub fn banned_next(tokens: &[u32], n: usize) -> Vec<u32> {
    if n == 0 || tokens.len() + 1 < n {
        return Vec::new();
    }
    let prefix = &tokens[tokens.len() + 1 - n..];
    tokens.windows(n).filter(|w| w[..n - 1] == *prefix).map(|w| w[n - 1]).collect()
}

/// The `k` largest positive entries as (index, value), largest first (ties: lower index first).
fn top_k_positive(xs: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &x) in xs.iter().enumerate() {
        if x <= 0.0 || x.is_nan() || (best.len() == k && x <= best[k - 1].1) {
            continue;
        }
        let pos = best.partition_point(|&(_, v)| v >= x);
        best.insert(pos, (i as u32, x));
        best.truncate(k);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ngram_blocking() {
        assert!(repeats_ngram(&[1, 2, 3, 1], 2, 2));
        assert!(!repeats_ngram(&[1, 2, 3, 1], 3, 2));
        assert!(repeats_ngram(&[5, 6, 7, 5, 6], 7, 3));
        assert!(!repeats_ngram(&[5, 6, 7, 5, 6], 8, 3));
        assert!(repeats_ngram(&[4], 4, 1));
        assert!(!repeats_ngram(&[], 4, 1));
        assert!(!repeats_ngram(&[1, 2], 1, 0));
        assert!(!repeats_ngram(&[1], 1, 3));
    }

    #[test]
    fn top_k_skips_blocked() {
        let xs = [0.5, -1.0, 0.1, 0.2, 0.0];
        assert_eq!(top_k_positive(&xs, 3), vec![(0, 0.5), (3, 0.2), (2, 0.1)]);
        assert_eq!(top_k_positive(&[-1.0; 3], 2), vec![]);
    }

    #[test]
    fn banned_tokens_are_exactly_the_repeating_ones() {
        let toks = [5, 6, 7, 5, 6, 9, 5];
        for n in 0..5 {
            let banned = banned_next(&toks, n);
            for t in 0..12 {
                assert_eq!(banned.contains(&t), repeats_ngram(&toks, t, n), "n {n} token {t}");
            }
        }
    }

    #[test]
    fn mixed_copy_distribution_matches_the_f64_one() {
        let logits = [0.5f32, -1.0, 2.0, 0.0];
        let z: f32 = logits.iter().map(|x| x.exp()).sum();
        let mut p: Vec<f32> = logits.iter().map(|x| x.exp() / z).collect();
        let (attn, ext) = ([0.7f32, 0.2, 0.1], [2u32, 5, 2]);
        mix_copy(&mut p, &attn, &ext, 0.6, 6);
        let want = Seq2Seq::output_distribution(&logits, &attn, &ext, Some(0.6), 6);
        assert_eq!(p.len(), want.len());
        for (a, b) in p.iter().zip(&want) {
            assert!((*a as f64 - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
