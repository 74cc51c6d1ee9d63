//! Linear-chain conditional random field over per-token tag scores (Lafferty et al. 2001;
//! the output layer of Huang et al. 2015 and Lample et al. 2016).
//!
//! A path `y` through a sentence of `n` tokens scores
//! `start[y_0] + Σ_t emission[t, y_t] + Σ_{t≥1} transition[y_{t-1}, y_t] + end[y_{n-1}]`;
//! its probability is `exp(score) / Z` with `Z` the sum over every path. Training minimises
//! the negative log-likelihood `log Z − score(gold)`; decoding takes the best path (Viterbi).
//!
//! `log Z` comes from the forward algorithm in log space, composed from candle ops (each
//! log-sum-exp shifted by its detached maximum, so nothing overflows and autograd gives
//! the exact gradient: the tag marginals). Transition constraints (no `I-PER` after `O` in
//! IOB2) are a fixed penalty of [`FORBIDDEN`] added to the learned scores, in training and in
//! decoding alike, so a forbidden path has negligible probability and is never decoded.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use model::crf::{Crf, CrfConfig};
//!
//! let varmap = candle_nn::VarMap::new();
//! let vb = model::init::seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu);
//! let crf = Crf::new(&CrfConfig::new(3), vb)?;
//! let emissions = Tensor::zeros((2, 4, 3), DType::F32, &Device::Cpu)?; // (batch, time, tags)
//! let nll = crf.neg_log_likelihood(&emissions, &[0, 1, 2, 0, 1, 1, 0, 0], &[4, 2])?;
//! assert_eq!(nll.dims(), &[2]); // one value per sentence
//! // All scores zero: every path is equally likely, −log p = n · log 3.
//! let v = nll.to_vec1::<f32>()?;
//! assert!((v[0] - 4.0 * 3f32.ln()).abs() < 1e-5 && (v[1] - 2.0 * 3f32.ln()).abs() < 1e-5);
//! assert_eq!(crf.viterbi(&emissions, &[4, 2])?[1].len(), 2);
//! # Ok::<(), model::Error>(())
//! ```

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// The score added to a forbidden transition (AllenNLP's choice): large enough that such a
/// path carries no probability mass in f32, small enough that sums of it stay finite.
pub const FORBIDDEN: f64 = -10_000.0;

/// Which tags may start or end a sentence and which may follow which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// `start[j]`: tag `j` may open a sentence.
    pub start: Vec<bool>,
    /// `end[i]`: tag `i` may close a sentence.
    pub end: Vec<bool>,
    /// `transitions[i * tags + j]`: tag `j` may follow tag `i`.
    pub transitions: Vec<bool>,
}

impl Constraints {
    /// Everything allowed.
    pub fn none(tags: usize) -> Self {
        Self { start: vec![true; tags], end: vec![true; tags], transitions: vec![true; tags * tags] }
    }

    /// Whether the path obeys every constraint.
    pub fn allows(&self, path: &[usize]) -> bool {
        let tags = self.start.len();
        match (path.first(), path.last()) {
            (Some(&a), Some(&z)) => {
                self.start[a] && self.end[z] && path.windows(2).all(|w| self.transitions[w[0] * tags + w[1]])
            }
            _ => true,
        }
    }
}

/// Configuration of [`Crf`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrfConfig {
    /// Tags (the emission width).
    pub num_tags: usize,
    /// Forbidden starts, ends and transitions; `None` = all allowed.
    pub constraints: Option<Constraints>,
}

impl CrfConfig {
    /// `num_tags` tags, no constraints.
    pub fn new(num_tags: usize) -> Self {
        Self { num_tags, constraints: None }
    }

    /// Checks the sizes; the error names the key.
    pub fn validate(&self) -> Result<()> {
        let k = self.num_tags;
        if k == 0 {
            return Err(Error::Config { key: "crf.num_tags".into(), msg: "must be at least 1".into() });
        }
        if let Some(c) = &self.constraints {
            if c.start.len() != k || c.end.len() != k || c.transitions.len() != k * k {
                return Err(Error::Config {
                    key: "crf.constraints".into(),
                    msg: format!(
                        "expected {k} start, {k} end and {} transition flags, got {}, {} and {}",
                        k * k,
                        c.start.len(),
                        c.end.len(),
                        c.transitions.len()
                    ),
                });
            }
            if !c.start.iter().any(|&s| s) || !c.end.iter().any(|&e| e) {
                return Err(Error::Config {
                    key: "crf.constraints".into(),
                    msg: "no tag may start or no tag may end a sentence".into(),
                });
            }
        }
        Ok(())
    }
}

/// A linear-chain CRF: learned transition, start and end scores plus fixed constraints.
pub struct Crf {
    /// (tags, tags): score of tag j following tag i, at [i, j].
    transitions: Tensor,
    /// (tags,)
    start: Tensor,
    /// (tags,)
    end: Tensor,
    /// The constraint penalties (0 or [`FORBIDDEN`]) in the parameters' dtype: (tags, tags),
    /// (tags,), (tags,).
    penalty: Option<(Tensor, Tensor, Tensor)>,
    cfg: CrfConfig,
}

/// One log-sum-exp over `dim`, shifted by the detached maximum so that `exp` cannot overflow;
/// the shift is a constant, so the gradient is the softmax over `dim`, exactly.
fn log_sum_exp(x: &Tensor, dim: usize) -> Result<Tensor> {
    let m = x.max_keepdim(dim)?.detach();
    Ok(x.broadcast_sub(&m)?.exp()?.sum_keepdim(dim)?.log()?.add(&m)?.squeeze(dim)?)
}

fn penalties(c: &Constraints, dtype: DType, device: &Device) -> Result<(Tensor, Tensor, Tensor)> {
    let p = |v: &[bool]| -> Result<Tensor> {
        let x: Vec<f64> = v.iter().map(|&ok| if ok { 0.0 } else { FORBIDDEN }).collect();
        Ok(Tensor::from_vec(x, v.len(), device)?.to_dtype(dtype)?)
    };
    let k = c.start.len();
    Ok((p(&c.transitions)?.reshape((k, k))?, p(&c.start)?, p(&c.end)?))
}

impl Crf {
    /// Parameters `transitions` (tags, tags), `start`, `end` (tags), initialised to zero (no
    /// preference until the data says otherwise).
    pub fn new(cfg: &CrfConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let k = cfg.num_tags;
        let zero = Init::Const(0.0);
        let transitions = vb.get_with_hints((k, k), "transitions", zero)?;
        let start = vb.get_with_hints(k, "start", zero)?;
        let end = vb.get_with_hints(k, "end", zero)?;
        let penalty = match &cfg.constraints {
            Some(c) => Some(penalties(c, vb.dtype(), vb.device())?),
            None => None,
        };
        Ok(Self { transitions, start, end, penalty, cfg: cfg.clone() })
    }

    /// The configuration the layer was built from.
    pub fn config(&self) -> &CrfConfig {
        &self.cfg
    }

    /// Learned scores plus constraint penalties: (transitions, start, end).
    fn scores(&self) -> Result<(Tensor, Tensor, Tensor)> {
        Ok(match &self.penalty {
            Some((t, s, e)) => ((&self.transitions + t)?, (&self.start + s)?, (&self.end + e)?),
            None => (self.transitions.clone(), self.start.clone(), self.end.clone()),
        })
    }

    fn check(&self, emissions: &Tensor, lengths: &[usize]) -> Result<(usize, usize)> {
        let (b, t, k) = emissions.dims3()?;
        if k != self.cfg.num_tags {
            return Err(Error::Input(format!("crf: emissions have {k} tags, the layer {}", self.cfg.num_tags)));
        }
        if lengths.len() != b {
            return Err(Error::Input(format!("crf: {} lengths for a batch of {b}", lengths.len())));
        }
        if let Some(&bad) = lengths.iter().find(|&&l| l == 0 || l > t) {
            return Err(Error::Input(format!("crf: length {bad} outside 1..={t}")));
        }
        Ok((b, t))
    }

    /// `log Z` of each sentence by the forward algorithm in log space. `emissions`:
    /// (batch, time, tags), padded past each length. Returns (batch,).
    pub fn log_partition(&self, emissions: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let (b, t) = self.check(emissions, lengths)?;
        let (trans, start, end) = self.scores()?;
        let dtype = emissions.dtype();
        let device = emissions.device();
        let trans = trans.unsqueeze(0)?; // (1, from, to)
                                         // alpha[b, j]: log-sum of the scores of every prefix ending in tag j.
        let mut alpha = emissions.narrow(1, 0, 1)?.squeeze(1)?.broadcast_add(&start)?;
        for step in 1..t {
            let e = emissions.narrow(1, step, 1)?.squeeze(1)?; // (batch, tags)
            let next = log_sum_exp(&alpha.unsqueeze(2)?.broadcast_add(&trans)?, 1)?.add(&e)?;
            // Sentences already over keep their alpha.
            let live: Vec<f64> = lengths.iter().map(|&l| if step < l { 1.0 } else { 0.0 }).collect();
            if live.iter().all(|&x| x == 0.0) {
                break;
            }
            let live = Tensor::from_vec(live, (b, 1), device)?.to_dtype(dtype)?;
            alpha = (next.broadcast_mul(&live)? + alpha.broadcast_mul(&live.affine(-1.0, 1.0)?)?)?;
        }
        log_sum_exp(&alpha.broadcast_add(&end)?, 1)
    }

    /// The score of each given path. `tags`: (batch × time) row-major, entries past a
    /// sentence's length ignored (but must be < tags). Returns (batch,).
    pub fn path_score(&self, emissions: &Tensor, tags: &[u32], lengths: &[usize]) -> Result<Tensor> {
        let (b, t) = self.check(emissions, lengths)?;
        let k = self.cfg.num_tags;
        if tags.len() != b * t {
            return Err(Error::Input(format!("crf: {} tags for a ({b}, {t}) batch", tags.len())));
        }
        if let Some(&bad) = tags.iter().find(|&&y| y as usize >= k) {
            return Err(Error::Input(format!("crf: tag {bad} outside 0..{k}")));
        }
        let (trans, start, end) = self.scores()?;
        let dtype = emissions.dtype();
        let device = emissions.device();
        let mask: Vec<f64> = (0..b * t).map(|i| if i % t < lengths[i / t] { 1.0 } else { 0.0 }).collect();
        let mask = Tensor::from_vec(mask, (b, t), device)?.to_dtype(dtype)?;
        let ids = Tensor::from_slice(tags, (b, t, 1), device)?;
        let emitted = emissions.contiguous()?.gather(&ids, 2)?.squeeze(2)?.mul(&mask)?.sum(1)?;
        // Transition i → j read from the flattened matrix at i * tags + j, for steps 1..len.
        let mut pair = Vec::with_capacity(b * t);
        let mut pair_mask = Vec::with_capacity(b * t);
        for (row, &len) in tags.chunks(t.max(1)).zip(lengths) {
            for s in 1..t {
                pair.push(row[s - 1] * k as u32 + row[s]);
                pair_mask.push(if s < len { 1.0 } else { 0.0 });
            }
        }
        let mut score = (emitted + start.index_select(&first_tags(tags, t, device)?, 0)?)?;
        score = (score + end.index_select(&last_tags(tags, t, lengths, device)?, 0)?)?;
        if t > 1 {
            let pair = Tensor::from_vec(pair, b * (t - 1), device)?;
            let pair_mask = Tensor::from_vec(pair_mask, (b, t - 1), device)?.to_dtype(dtype)?;
            let moved = trans.flatten_all()?.index_select(&pair, 0)?.reshape((b, t - 1))?;
            score = (score + moved.mul(&pair_mask)?.sum(1)?)?;
        }
        Ok(score)
    }

    /// `log Z − score(gold)` per sentence (batch,): what training minimises (averaged or
    /// summed by the caller).
    pub fn neg_log_likelihood(&self, emissions: &Tensor, tags: &[u32], lengths: &[usize]) -> Result<Tensor> {
        Ok((self.log_partition(emissions, lengths)? - self.path_score(emissions, tags, lengths)?)?)
    }

    /// The best path of each sentence (its real tokens only), by Viterbi in f64 on the CPU.
    /// Ties go to the lower tag id, so decoding is deterministic.
    pub fn viterbi(&self, emissions: &Tensor, lengths: &[usize]) -> Result<Vec<Vec<usize>>> {
        let (b, t) = self.check(emissions, lengths)?;
        let k = self.cfg.num_tags;
        let (trans, start, end) = self.scores()?;
        let f = |x: &Tensor| -> Result<Vec<f64>> { Ok(x.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?) };
        let (trans, start, end) = (f(&trans)?, f(&start)?, f(&end)?);
        let em = f(emissions)?;
        let mut paths = Vec::with_capacity(b);
        let mut back = vec![0usize; t * k];
        for (row, &len) in lengths.iter().enumerate() {
            let e = &em[row * t * k..(row + 1) * t * k];
            let mut delta: Vec<f64> = (0..k).map(|j| start[j] + e[j]).collect();
            let mut next = vec![0.0; k];
            for s in 1..len {
                for j in 0..k {
                    let (mut best, mut arg) = (f64::NEG_INFINITY, 0);
                    for (i, d) in delta.iter().enumerate() {
                        let v = d + trans[i * k + j];
                        if v > best {
                            (best, arg) = (v, i);
                        }
                    }
                    next[j] = best + e[s * k + j];
                    back[s * k + j] = arg;
                }
                std::mem::swap(&mut delta, &mut next);
            }
            let (mut tag, mut best) = (0, f64::NEG_INFINITY);
            for j in 0..k {
                if delta[j] + end[j] > best {
                    (best, tag) = (delta[j] + end[j], j);
                }
            }
            let mut path = vec![0; len];
            path[len - 1] = tag;
            for s in (1..len).rev() {
                tag = back[s * k + tag];
                path[s - 1] = tag;
            }
            paths.push(path);
        }
        Ok(paths)
    }
}

fn first_tags(tags: &[u32], t: usize, device: &Device) -> Result<Tensor> {
    let v: Vec<u32> = tags.chunks(t.max(1)).map(|r| r[0]).collect();
    let n = v.len();
    Ok(Tensor::from_vec(v, n, device)?)
}

fn last_tags(tags: &[u32], t: usize, lengths: &[usize], device: &Device) -> Result<Tensor> {
    let v: Vec<u32> = tags.chunks(t.max(1)).zip(lengths).map(|(r, &l)| r[l - 1]).collect();
    let n = v.len();
    Ok(Tensor::from_vec(v, n, device)?)
}

/// Index of the largest score per token (the no-CRF decoder), restricted to real tokens.
pub fn argmax_tags(scores: &Tensor, lengths: &[usize]) -> Result<Vec<Vec<usize>>> {
    let idx: Vec<Vec<u32>> = scores.argmax(D::Minus1)?.to_vec2()?;
    Ok(idx.into_iter().zip(lengths).map(|(r, &l)| r[..l].iter().map(|&i| i as usize).collect()).collect())
}

#[cfg(test)]
#[path = "crf_tests.rs"]
mod tests;
