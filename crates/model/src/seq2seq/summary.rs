//! Beam search for summaries: the copy mechanism's extended vocabulary, coverage carried
//! across steps, a minimum and maximum length, the GNMT length penalty and n-gram repetition
//! blocking, for a batch of documents at once; every output word keeps its p_gen and
//! attention row so callers can show where it came from.

use super::decode::{length_penalty, log_softmax_row};
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
            let logits = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
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
                    let mut lp = match (&p_gen, copy) {
                        (Some(pg), Some(c)) => {
                            let c = &c[sent];
                            Seq2Seq::output_distribution(
                                &logits[r],
                                &attn[r][..len],
                                &c.ext_ids,
                                Some(pg[r]),
                                v + c.n_oov,
                            )
                            .into_iter()
                            .map(f64::ln)
                            .collect()
                        }
                        _ => log_softmax_row(&logits[r]),
                    };
                    let toks = &live[r].tokens;
                    // Padding and BOS are never words.
                    lp[cfg.pad_id as usize] = f64::NEG_INFINITY;
                    lp[cfg.bos_id as usize] = f64::NEG_INFINITY;
                    if toks.len() < opts.min_len {
                        lp[eos as usize] = f64::NEG_INFINITY;
                    }
                    if opts.no_repeat_ngram > 0 {
                        for (tok, x) in lp.iter_mut().enumerate() {
                            if *x > f64::NEG_INFINITY && repeats_ngram(toks, tok as u32, opts.no_repeat_ngram) {
                                *x = f64::NEG_INFINITY;
                            }
                        }
                    }
                    for (tok, x) in top_k_finite(&lp, k + 1) {
                        cands.push((live[r].log_prob + x, r, tok));
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

/// The `k` largest finite entries as (index, value), largest first (ties: lower index first).
fn top_k_finite(xs: &[f64], k: usize) -> Vec<(u32, f64)> {
    let mut best: Vec<(u32, f64)> = Vec::with_capacity(k + 1);
    for (i, &x) in xs.iter().enumerate() {
        if x == f64::NEG_INFINITY || x.is_nan() || (best.len() == k && x <= best[k - 1].1) {
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
        let xs = [0.0, f64::NEG_INFINITY, -1.0, -0.5];
        assert_eq!(top_k_finite(&xs, 3), vec![(0, 0.0), (3, -0.5), (2, -1.0)]);
        assert_eq!(top_k_finite(&[f64::NEG_INFINITY; 3], 2), vec![]);
    }
}
