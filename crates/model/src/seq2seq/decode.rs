//! Inference: greedy and beam-search decoding with the GNMT length penalty.

use super::model::Seq2Seq;
use crate::Result;
use candle_core::{DType, Tensor, D};

/// Decoding settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    /// 1 = greedy-equivalent beam search.
    pub beam: usize,
    /// GNMT's α in lp(Y) = ((5 + |Y|) / 6)^α; 0 = raw log-probability.
    pub length_penalty: f64,
    /// Hypotheses have at most ⌈ratio · source length⌉ + `max_len_extra` tokens (EOS included).
    pub max_len_ratio: f64,
    /// Tokens allowed beyond `max_len_ratio` · source length.
    pub max_len_extra: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self { beam: 5, length_penalty: 0.6, max_len_ratio: 1.5, max_len_extra: 5 }
    }
}

impl DecodeOptions {
    /// The most tokens (EOS included) a hypothesis for a source of `src_len` tokens may have.
    pub fn max_len(&self, src_len: usize) -> usize {
        ((self.max_len_ratio * src_len as f64).ceil() as usize + self.max_len_extra).max(1)
    }
}

/// GNMT length penalty (Wu et al. 2016, eq. 14): lp(Y) = (5 + |Y|)^α / (5 + 1)^α.
pub fn length_penalty(len: usize, alpha: f64) -> f64 {
    ((5.0 + len as f64) / 6.0).powf(alpha)
}

/// A decoded sentence: target ids without BOS/EOS, its log-probability and the score beam
/// search ranked it by (log-probability / length penalty).
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    /// Target ids, without BOS and EOS.
    pub tokens: Vec<u32>,
    /// Sum of the tokens' log-probabilities (EOS included when it ended the sentence).
    pub log_prob: f64,
    /// `log_prob` over the length penalty: what beam search ranks by.
    pub score: f64,
}

impl Seq2Seq {
    /// Greedy decoding of a batch: the arg-max token at every step until EOS or the length
    /// limit. Returns ids without BOS/EOS.
    pub fn greedy(&self, src: &Tensor, src_lengths: &[usize], opts: &DecodeOptions) -> Result<Vec<Vec<u32>>> {
        let enc = self.encode(src, src_lengths, false, None)?;
        let w = self.step_weights()?;
        let b = src_lengths.len();
        let max_len: Vec<usize> = src_lengths.iter().map(|&l| opts.max_len(l)).collect();
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); b];
        // Rows still decoding; the state and memory are compacted to them after each step.
        let mut active: Vec<usize> = (0..b).collect();
        let mut enc = enc.select(&(0..b as u32).collect::<Vec<_>>())?;
        let mut state = enc.initial.clone();
        let mut tokens = vec![self.config().bos_id; b];
        let mut step = 0;
        while !active.is_empty() {
            let (next, logits, _, _) = self.infer_step(&w, &enc, &tokens, &state)?;
            let best = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            let mut keep = Vec::new();
            for (row, (&i, &tok)) in active.iter().zip(&best).enumerate() {
                if tok == self.config().eos_id {
                    continue;
                }
                out[i].push(tok);
                if step + 1 < max_len[i] {
                    keep.push(row as u32);
                }
            }
            step += 1;
            if keep.len() == active.len() {
                state = next;
            } else {
                let idx = Tensor::from_slice(&keep, keep.len(), enc.memory.device())?;
                state = next.select(&idx)?;
                enc = enc.select(&keep)?;
            }
            tokens = keep.iter().map(|&r| best[r as usize]).collect();
            active = keep.iter().map(|&r| active[r as usize]).collect();
        }
        Ok(out)
    }

    /// Batched beam search: `opts.beam` hypotheses per sentence, ranked by log-probability
    /// over the GNMT length penalty. A sentence stops when `beam` hypotheses have ended
    /// (with EOS among the top `beam` candidates of a step) or at its length limit, where
    /// the live hypotheses end as they are. Returns the best hypothesis of each sentence.
    pub fn beam_search(&self, src: &Tensor, src_lengths: &[usize], opts: &DecodeOptions) -> Result<Vec<Hypothesis>> {
        let k = opts.beam.max(1);
        let enc0 = self.encode(src, src_lengths, false, None)?;
        let w = self.step_weights()?;
        let b = src_lengths.len();
        let max_len: Vec<usize> = src_lengths.iter().map(|&l| opts.max_len(l)).collect();
        struct Live {
            sent: usize,
            tokens: Vec<u32>,
            log_prob: f64,
        }
        let mut live: Vec<Live> = (0..b).map(|s| Live { sent: s, tokens: Vec::new(), log_prob: 0.0 }).collect();
        let mut finished: Vec<Vec<Hypothesis>> = vec![Vec::new(); b];
        let mut enc = enc0.select(&(0..b as u32).collect::<Vec<_>>())?;
        let mut state = enc.initial.clone();
        let mut step = 0usize;
        let eos = self.config().eos_id;
        while !live.is_empty() {
            let tokens: Vec<u32> = live.iter().map(|l| *l.tokens.last().unwrap_or(&self.config().bos_id)).collect();
            let (next, logits, _, _) = self.infer_step(&w, &enc, &tokens, &state)?;
            let rows = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            let mut new_live = Vec::new();
            let mut parents: Vec<u32> = Vec::new();
            let mut r0 = 0;
            while r0 < live.len() {
                let sent = live[r0].sent;
                let mut r1 = r0;
                while r1 < live.len() && live[r1].sent == sent {
                    r1 += 1;
                }
                // Candidates: each row's best k + 1 tokens (k continuations plus EOS suffice).
                let mut cands: Vec<(f64, usize, u32)> = Vec::new();
                for r in r0..r1 {
                    let lp = log_softmax_row(&rows[r]);
                    for (tok, v) in top_k(&lp, k + 1) {
                        cands.push((live[r].log_prob + v, r, tok));
                    }
                }
                // Best first; ties by row then token so the order is deterministic.
                cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
                let last_step = step + 1 >= max_len[sent];
                let mut kept = 0;
                for (rank, &(lp, r, tok)) in cands.iter().enumerate() {
                    if kept == k || finished[sent].len() >= k {
                        break;
                    }
                    if tok == eos {
                        if rank < k {
                            let len = live[r].tokens.len() + 1;
                            let tokens = live[r].tokens.clone();
                            finished[sent].push(Hypothesis {
                                tokens,
                                log_prob: lp,
                                score: lp / length_penalty(len, opts.length_penalty),
                            });
                        }
                        continue;
                    }
                    let mut tokens = live[r].tokens.clone();
                    tokens.push(tok);
                    if last_step {
                        let len = tokens.len();
                        finished[sent].push(Hypothesis {
                            tokens,
                            log_prob: lp,
                            score: lp / length_penalty(len, opts.length_penalty),
                        });
                    } else {
                        new_live.push(Live { sent, tokens, log_prob: lp });
                        parents.push(r as u32);
                    }
                    kept += 1;
                }
                if finished[sent].len() >= k || last_step {
                    // Done: drop its live hypotheses from this step.
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
        Ok(finished
            .into_iter()
            .map(|hs| {
                hs.into_iter()
                    .reduce(|a, b| if b.score > a.score { b } else { a })
                    .expect("every sentence ends with at least one hypothesis")
            })
            .collect())
    }

    /// Decodes with `opts.beam` (1 = greedy) and returns the ids of each sentence.
    pub fn translate(&self, src: &Tensor, src_lengths: &[usize], opts: &DecodeOptions) -> Result<Vec<Vec<u32>>> {
        if opts.beam <= 1 {
            self.greedy(src, src_lengths, opts)
        } else {
            Ok(self.beam_search(src, src_lengths, opts)?.into_iter().map(|h| h.tokens).collect())
        }
    }
}

/// Log-softmax of one row of f32 logits, in f64: what beam search adds up.
pub(super) fn log_softmax_row(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
    row.iter().map(|&x| x as f64 - lse).collect()
}

/// The `k` largest entries as (index, value), largest first (ties: lower index first).
fn top_k(xs: &[f64], k: usize) -> Vec<(u32, f64)> {
    let mut best: Vec<(u32, f64)> = Vec::with_capacity(k + 1);
    for (i, &x) in xs.iter().enumerate() {
        if best.len() == k && x <= best[k - 1].1 {
            continue;
        }
        let pos = best.partition_point(|&(_, v)| v >= x);
        best.insert(pos, (i as u32, x));
        best.truncate(k);
    }
    best
}
