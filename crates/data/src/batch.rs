//! Deterministic batches: length bucketing, padding, lengths, masks and truncation.
//!
//! The order of an epoch is a pure function of (seed, epoch): shuffle the examples, sort
//! them by length within pools of `pool` batches (so each batch holds similar lengths and
//! little padding), cut the pools into batches, shuffle the batches. Resuming at (epoch,
//! batch index) is therefore just skipping into `plan(epoch)`. All randomness comes from
//! our ChaCha stream, never from thread scheduling.

use crate::error::{Error, Result};
use crate::ett::ForecastSplit;
use crate::rng::{DataRng, Purpose};
use crate::synthetic::{AddingSet, CopySet};
use std::cmp::Reverse;

/// How to cut an epoch into batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOptions {
    /// Examples per batch (the last batch may be smaller unless `drop_last`).
    pub batch_size: usize,
    /// Run seed; the batch order of epoch e is a function of (seed, e).
    pub seed: u64,
    /// Bucketing pool in batches (`data.bucket_pool`); 1 = no bucketing.
    pub pool: usize,
    /// Shuffle examples and batches (training) or keep file order within buckets (evaluation).
    pub shuffle: bool,
    /// Drop a final batch smaller than `batch_size`.
    pub drop_last: bool,
    /// Truncate token sequences to this many tokens (`data.max_len`).
    pub max_len: Option<usize>,
}

impl BatchOptions {
    /// Training defaults: shuffled, pool 50, no truncation.
    pub fn train(batch_size: usize, seed: u64) -> Self {
        Self { batch_size, seed, pool: 50, shuffle: true, drop_last: false, max_len: None }
    }
    /// Evaluation defaults: no shuffling, same bucketing.
    pub fn eval(batch_size: usize) -> Self {
        Self { shuffle: false, ..Self::train(batch_size, 0) }
    }
    fn check(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::config("train.batch_size", "must be at least 1"));
        }
        if self.pool == 0 {
            return Err(Error::config("data.bucket_pool", "must be at least 1"));
        }
        if self.max_len == Some(0) {
            return Err(Error::config("data.max_len", "must be at least 1"));
        }
        Ok(())
    }
}

/// The epoch plans over examples with sort keys (usually lengths).
#[derive(Debug, Clone)]
pub struct BatchOrder {
    keys: Vec<u64>,
    opts: BatchOptions,
}

impl BatchOrder {
    /// Examples sorted within pools by `keys` (longest first).
    ///
    /// Errors: [`Error::Config`] for `batch_size` 0 (`train.batch_size`), `pool` 0
    /// (`data.bucket_pool`) or `max_len` `Some(0)` (`data.max_len`).
    pub fn new(keys: Vec<u64>, opts: &BatchOptions) -> Result<Self> {
        opts.check()?;
        Ok(Self { keys, opts: opts.clone() })
    }

    /// `n` examples of equal length (windows, synthetic sequences).
    pub fn uniform(n: usize, opts: &BatchOptions) -> Result<Self> {
        Self::new(vec![0; n], opts)
    }

    /// Examples in the split (one key each).
    pub fn num_examples(&self) -> usize {
        self.keys.len()
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        let (n, b) = (self.keys.len(), self.opts.batch_size);
        if self.opts.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Example indices of every batch of `epoch`, in order.
    pub fn plan(&self, epoch: u64) -> Vec<Vec<usize>> {
        let (n, b) = (self.keys.len(), self.opts.batch_size);
        let mut rng = DataRng::new(self.opts.seed, Purpose::Batches, epoch);
        let mut idx: Vec<usize> = (0..n).collect();
        if self.opts.shuffle {
            rng.shuffle(&mut idx);
        }
        // Stable sort keeps file (or shuffled) order among equal lengths.
        for pool in idx.chunks_mut(self.opts.pool * b) {
            pool.sort_by_key(|&i| Reverse(self.keys[i]));
        }
        let mut batches: Vec<Vec<usize>> = idx.chunks(b).map(<[usize]>::to_vec).collect();
        if self.opts.drop_last && batches.last().is_some_and(|l| l.len() < b) {
            batches.pop();
        }
        if self.opts.shuffle {
            rng.shuffle(&mut batches);
        }
        batches
    }
}

/// A padded batch of token sequences, row-major (batch, max_len).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    /// (batch, max_len) ids, padded with the pad id.
    pub ids: Vec<u32>,
    /// Real tokens per row (after truncation).
    pub lengths: Vec<usize>,
    /// (batch, max_len): 1.0 on real tokens, 0.0 on padding.
    pub mask: Vec<f32>,
    /// Rows in this batch: the options' `batch_size`, fewer for the one short batch of an epoch.
    pub batch_size: usize,
    /// The time dimension of this batch: its longest row.
    pub max_len: usize,
    /// One label per row (empty when the examples have none).
    pub labels: Vec<u32>,
    /// Which example each row is (index into the split).
    pub example_indices: Vec<usize>,
}

fn pad_rows<'a>(rows: impl Iterator<Item = &'a [u32]> + Clone, pad: u32) -> (Vec<u32>, Vec<usize>, Vec<f32>, usize) {
    let max_len = rows.clone().map(<[u32]>::len).max().unwrap_or(0);
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    let mut lengths = Vec::new();
    for r in rows {
        ids.extend_from_slice(r);
        ids.extend(std::iter::repeat_n(pad, max_len - r.len()));
        mask.extend(std::iter::repeat_n(1.0, r.len()));
        mask.extend(std::iter::repeat_n(0.0, max_len - r.len()));
        lengths.push(r.len());
    }
    (ids, lengths, mask, max_len)
}

/// Batches of encoded texts with optional labels (classification).
#[derive(Debug, Clone)]
pub struct Batcher {
    seqs: Vec<Vec<u32>>,
    labels: Vec<u32>,
    pad_id: u32,
    order: BatchOrder,
    truncated: usize,
}

impl Batcher {
    /// `labels` is empty or one per sequence. Sequences longer than `opts.max_len` are cut.
    ///
    /// Errors: [`Error::Config`] with key `labels` when the counts differ, and those of
    /// [`BatchOrder::new`].
    pub fn new(mut seqs: Vec<Vec<u32>>, labels: Vec<u32>, pad_id: u32, opts: &BatchOptions) -> Result<Self> {
        if !labels.is_empty() && labels.len() != seqs.len() {
            return Err(Error::config("labels", format!("{} labels for {} sequences", labels.len(), seqs.len())));
        }
        let truncated = truncate(seqs.iter_mut(), opts.max_len);
        let keys = seqs.iter().map(|s| s.len() as u64).collect();
        Ok(Self { order: BatchOrder::new(keys, opts)?, seqs, labels, pad_id, truncated })
    }

    /// How many sequences `max_len` cut.
    pub fn truncated(&self) -> usize {
        self.truncated
    }
    /// The epoch plans (sort keys: sequence lengths after truncation).
    pub fn order(&self) -> &BatchOrder {
        &self.order
    }
    /// Batches per epoch ([`BatchOrder::num_batches`]).
    pub fn num_batches(&self) -> usize {
        self.order.num_batches()
    }

    /// The batch made of `indices`, rows in that order.
    pub fn batch(&self, indices: &[usize]) -> TokenBatch {
        let (ids, lengths, mask, max_len) = pad_rows(indices.iter().map(|&i| self.seqs[i].as_slice()), self.pad_id);
        TokenBatch {
            ids,
            lengths,
            mask,
            batch_size: indices.len(),
            max_len,
            labels: if self.labels.is_empty() { Vec::new() } else { indices.iter().map(|&i| self.labels[i]).collect() },
            example_indices: indices.to_vec(),
        }
    }

    /// Every batch of `epoch`; resume at batch k with `.into_iter().skip(k)`.
    pub fn batches_for_epoch(&self, epoch: u64) -> Vec<TokenBatch> {
        self.order.plan(epoch).iter().map(|ix| self.batch(ix)).collect()
    }
}

fn truncate<'a>(seqs: impl Iterator<Item = &'a mut Vec<u32>>, max_len: Option<usize>) -> usize {
    let Some(m) = max_len else { return 0 };
    let mut n = 0;
    for s in seqs {
        if s.len() > m {
            s.truncate(m);
            n += 1;
        }
    }
    n
}

/// A translation batch: encoder input, decoder input (BOS + target) and decoder target
/// (target + EOS), each padded row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct PairBatch {
    /// (batch, src_len) source ids.
    pub src: Vec<u32>,
    /// Real source tokens per row (after truncation).
    pub src_lengths: Vec<usize>,
    /// (batch, src_len) 1.0 on real tokens.
    pub src_mask: Vec<f32>,
    /// The source time dimension: the longest source row.
    pub src_len: usize,
    /// (batch, tgt_len): BOS followed by the target.
    pub dec_input: Vec<u32>,
    /// (batch, tgt_len): the target followed by EOS.
    pub dec_target: Vec<u32>,
    /// Target length + 1 per row (the length of both decoder sequences).
    pub tgt_lengths: Vec<usize>,
    /// (batch, tgt_len) 1.0 on real decoder steps (where the loss counts).
    pub tgt_mask: Vec<f32>,
    /// The decoder time dimension: the longest target + 1.
    pub tgt_len: usize,
    /// Rows in this batch: the options' `batch_size`, fewer for the one short batch of an epoch.
    pub batch_size: usize,
    /// Which pair each row is (index into the split).
    pub example_indices: Vec<usize>,
}

/// Batches of (source, target) id sequences.
#[derive(Debug, Clone)]
pub struct PairBatcher {
    src: Vec<Vec<u32>>,
    tgt: Vec<Vec<u32>>,
    pad_id: u32,
    bos_id: u32,
    eos_id: u32,
    order: BatchOrder,
    truncated: usize,
}

impl PairBatcher {
    /// Sources are cut to `max_len` tokens, targets to `max_len - 1` so that the decoder
    /// sequences (with BOS or EOS) fit in `max_len` too. Buckets sort by source length, then
    /// target length.
    ///
    /// Errors: [`Error::Config`] with key `pairs` when the counts differ, and those of
    /// [`BatchOrder::new`].
    pub fn new(
        mut src: Vec<Vec<u32>>,
        mut tgt: Vec<Vec<u32>>,
        pad_id: u32,
        bos_id: u32,
        eos_id: u32,
        opts: &BatchOptions,
    ) -> Result<Self> {
        if src.len() != tgt.len() {
            return Err(Error::config("pairs", format!("{} sources for {} targets", src.len(), tgt.len())));
        }
        let truncated = truncate(src.iter_mut(), opts.max_len)
            + truncate(tgt.iter_mut(), opts.max_len.map(|m| m.saturating_sub(1).max(1)));
        let keys = src.iter().zip(&tgt).map(|(s, t)| ((s.len() as u64) << 32) | t.len() as u64).collect();
        Ok(Self { order: BatchOrder::new(keys, opts)?, src, tgt, pad_id, bos_id, eos_id, truncated })
    }

    /// How many sequences `max_len` cut, sources and targets counted separately (a pair cut on
    /// both sides counts twice).
    pub fn truncated(&self) -> usize {
        self.truncated
    }
    /// The epoch plans (sort keys: source length, then target length, after truncation).
    pub fn order(&self) -> &BatchOrder {
        &self.order
    }
    /// Batches per epoch ([`BatchOrder::num_batches`]).
    pub fn num_batches(&self) -> usize {
        self.order.num_batches()
    }

    /// The batch made of pairs `indices`, rows in that order; source and decoder sides are each
    /// padded to their own longest row.
    pub fn batch(&self, indices: &[usize]) -> PairBatch {
        let (src, src_lengths, src_mask, src_len) =
            pad_rows(indices.iter().map(|&i| self.src[i].as_slice()), self.pad_id);
        let dec_in: Vec<Vec<u32>> = indices
            .iter()
            .map(|&i| std::iter::once(self.bos_id).chain(self.tgt[i].iter().copied()).collect())
            .collect();
        let dec_out: Vec<Vec<u32>> = indices
            .iter()
            .map(|&i| self.tgt[i].iter().copied().chain(std::iter::once(self.eos_id)).collect())
            .collect();
        let (dec_input, tgt_lengths, tgt_mask, tgt_len) = pad_rows(dec_in.iter().map(Vec::as_slice), self.pad_id);
        let (dec_target, ..) = pad_rows(dec_out.iter().map(Vec::as_slice), self.pad_id);
        PairBatch {
            src,
            src_lengths,
            src_mask,
            src_len,
            dec_input,
            dec_target,
            tgt_lengths,
            tgt_mask,
            tgt_len,
            batch_size: indices.len(),
            example_indices: indices.to_vec(),
        }
    }

    /// Every batch of `epoch`; resume at batch k with `.into_iter().skip(k)`.
    pub fn batches_for_epoch(&self, epoch: u64) -> Vec<PairBatch> {
        self.order.plan(epoch).iter().map(|ix| self.batch(ix)).collect()
    }
}

/// Fixed-length real-valued examples: forecasting windows, adding-problem sequences.
pub trait FloatSource {
    /// Examples in the set (windows of a forecast split, sequences of an adding set).
    fn num_examples(&self) -> usize;
    /// Input steps per example.
    fn time(&self) -> usize;
    /// Values per input step (2 for the adding problem: value and marker).
    fn in_features(&self) -> usize;
    /// Target steps per example.
    fn horizon(&self) -> usize;
    /// Values per target step.
    fn out_features(&self) -> usize;
    /// Writes example `i` into `x` (time × in_features) and `y` (horizon × out_features).
    fn fill(&self, i: usize, x: &mut [f32], y: &mut [f32]);
}

impl FloatSource for ForecastSplit {
    fn num_examples(&self) -> usize {
        self.num_windows()
    }
    fn time(&self) -> usize {
        self.input_len
    }
    fn in_features(&self) -> usize {
        self.in_features
    }
    fn horizon(&self) -> usize {
        self.horizon
    }
    fn out_features(&self) -> usize {
        self.out_features
    }
    fn fill(&self, i: usize, x: &mut [f32], y: &mut [f32]) {
        self.window_into(i, x, y)
    }
}

impl FloatSource for AddingSet {
    fn num_examples(&self) -> usize {
        self.len()
    }
    fn time(&self) -> usize {
        self.length
    }
    fn in_features(&self) -> usize {
        2
    }
    fn horizon(&self) -> usize {
        1
    }
    fn out_features(&self) -> usize {
        1
    }
    fn fill(&self, i: usize, x: &mut [f32], y: &mut [f32]) {
        let n = self.length * 2;
        x.copy_from_slice(&self.x[i * n..(i + 1) * n]);
        y[0] = self.y[i];
    }
}

/// A batch of real-valued sequences.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatBatch {
    /// (batch, time, in_features).
    pub x: Vec<f32>,
    /// (batch, horizon, out_features).
    pub y: Vec<f32>,
    /// Rows in this batch.
    pub batch_size: usize,
    /// Input steps per row ([`FloatSource::time`]).
    pub time: usize,
    /// Values per input step.
    pub in_features: usize,
    /// Target steps per row.
    pub horizon: usize,
    /// Values per target step.
    pub out_features: usize,
    /// Which example each row is (index into the set).
    pub example_indices: Vec<usize>,
}

impl FloatBatch {
    /// Gathers examples `indices` of `src`.
    pub fn gather(src: &impl FloatSource, indices: &[usize]) -> Self {
        let (t, fi, h, fo) = (src.time(), src.in_features(), src.horizon(), src.out_features());
        let mut x = vec![0f32; indices.len() * t * fi];
        let mut y = vec![0f32; indices.len() * h * fo];
        for (r, &i) in indices.iter().enumerate() {
            src.fill(i, &mut x[r * t * fi..(r + 1) * t * fi], &mut y[r * h * fo..(r + 1) * h * fo]);
        }
        Self {
            x,
            y,
            batch_size: indices.len(),
            time: t,
            in_features: fi,
            horizon: h,
            out_features: fo,
            example_indices: indices.to_vec(),
        }
    }
}

/// A batch of copy-task sequences: one target symbol per input step.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyBatch {
    /// (batch, time) input symbols.
    pub input: Vec<u32>,
    /// (batch, time) target symbols.
    pub target: Vec<u32>,
    /// Rows in this batch.
    pub batch_size: usize,
    /// Steps per row: the set's `seq_len()`.
    pub time: usize,
    /// Which sequence each row is (index into the set).
    pub example_indices: Vec<usize>,
}

impl CopyBatch {
    /// Gathers sequences `indices` of `set`, rows in that order.
    pub fn gather(set: &CopySet, indices: &[usize]) -> Self {
        let l = set.seq_len();
        let mut input = Vec::with_capacity(indices.len() * l);
        let mut target = Vec::with_capacity(indices.len() * l);
        for &i in indices {
            input.extend_from_slice(&set.input[i * l..(i + 1) * l]);
            target.extend_from_slice(&set.target[i * l..(i + 1) * l]);
        }
        Self { input, target, batch_size: indices.len(), time: l, example_indices: indices.to_vec() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(n: usize) -> Vec<Vec<u32>> {
        // Lengths 1..=13 cycling, ids = 10*len + position + 1 so padding (0) is distinguishable.
        (0..n).map(|i| (0..(i % 13 + 1)).map(|p| (10 * (i % 13 + 1) + p + 1) as u32).collect()).collect()
    }

    #[test]
    fn padding_lengths_masks_labels() {
        let b = Batcher::new(vec![vec![5, 6, 7], vec![8]], vec![1, 0], 0, &BatchOptions::eval(4)).unwrap();
        let batch = &b.batches_for_epoch(0)[0];
        assert_eq!(batch.ids, vec![5, 6, 7, 8, 0, 0]);
        assert_eq!(batch.lengths, vec![3, 1]);
        assert_eq!(batch.mask, vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        assert_eq!((batch.batch_size, batch.max_len), (2, 3));
        assert_eq!(batch.labels, vec![1, 0]);
        assert_eq!(batch.example_indices, vec![0, 1]);
    }

    #[test]
    fn epoch_covers_every_example_once_and_is_reproducible() {
        let opts = BatchOptions { pool: 4, ..BatchOptions::train(8, 42) };
        let b = Batcher::new(seqs(203), vec![], 0, &opts).unwrap();
        let p0 = b.order().plan(0);
        assert_eq!(p0.len(), b.num_batches());
        assert_eq!(p0.len(), 26);
        let mut all: Vec<usize> = p0.concat();
        all.sort_unstable();
        assert_eq!(all, (0..203).collect::<Vec<_>>());
        assert_eq!(p0, Batcher::new(seqs(203), vec![], 0, &opts).unwrap().order().plan(0));
        assert_ne!(p0, b.order().plan(1));
        let other_seed = BatchOptions { seed: 43, ..opts.clone() };
        assert_ne!(p0, BatchOrder::new(vec![1; 203], &other_seed).unwrap().plan(0));
        // Resume = skip: batch k of a fresh batcher equals batch k of the full epoch.
        let full = b.batches_for_epoch(3);
        let resumed: Vec<TokenBatch> = b.batches_for_epoch(3).into_iter().skip(11).collect();
        assert_eq!(&full[11..], &resumed[..]);
    }

    #[test]
    fn bucketing_reduces_padding() {
        let n = 2000;
        let pad = |pool: usize| {
            let opts = BatchOptions { pool, ..BatchOptions::train(16, 1) };
            let b = Batcher::new(seqs(n), vec![], 0, &opts).unwrap();
            b.batches_for_epoch(0).iter().map(|x| x.mask.iter().filter(|&&m| m == 0.0).count()).sum::<usize>()
        };
        let (none, bucketed) = (pad(1), pad(50));
        assert!(bucketed * 5 < none, "padding {bucketed} vs {none}");
        // Within a pool, rows run longest first.
        let b = Batcher::new(seqs(64), vec![], 0, &BatchOptions { pool: 4, ..BatchOptions::train(16, 1) }).unwrap();
        for batch in b.batches_for_epoch(0) {
            assert!(batch.lengths.windows(2).all(|w| w[0] >= w[1]));
        }
    }

    #[test]
    fn eval_order_is_stable_and_drop_last() {
        let opts = BatchOptions { pool: 1, ..BatchOptions::eval(4) };
        let b = BatchOrder::uniform(10, &opts).unwrap();
        assert_eq!(b.plan(0), vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
        assert_eq!(b.plan(0), b.plan(5));
        let b = BatchOrder::uniform(10, &BatchOptions { drop_last: true, ..opts }).unwrap();
        assert_eq!(b.plan(0).len(), 2);
        assert_eq!(b.num_batches(), 2);
        assert!(BatchOrder::uniform(3, &BatchOptions::eval(0)).is_err());
    }

    #[test]
    fn truncation() {
        let opts = BatchOptions { max_len: Some(2), ..BatchOptions::eval(8) };
        let b = Batcher::new(vec![vec![1, 2, 3, 4], vec![5]], vec![], 0, &opts).unwrap();
        assert_eq!(b.truncated(), 1);
        let batch = &b.batches_for_epoch(0)[0];
        assert_eq!((batch.max_len, batch.lengths.clone()), (2, vec![2, 1]));
    }

    #[test]
    fn translation_batches() {
        let (pad, bos, eos) = (0, 2, 3);
        let src = vec![vec![10, 11, 12], vec![13]];
        let tgt = vec![vec![20], vec![21, 22, 23, 24]];
        let opts = BatchOptions { max_len: Some(4), ..BatchOptions::eval(2) };
        let b = PairBatcher::new(src, tgt, pad, bos, eos, &opts).unwrap();
        assert_eq!(b.truncated(), 1);
        let x = &b.batches_for_epoch(0)[0];
        assert_eq!(x.example_indices, vec![0, 1]);
        assert_eq!(x.src, vec![10, 11, 12, 13, 0, 0]);
        assert_eq!(x.src_lengths, vec![3, 1]);
        // Target 1 cut to 3 tokens so BOS/EOS + target fit in max_len 4.
        assert_eq!(x.dec_input, vec![2, 20, 0, 0, 2, 21, 22, 23]);
        assert_eq!(x.dec_target, vec![20, 3, 0, 0, 21, 22, 23, 3]);
        assert_eq!(x.tgt_lengths, vec![2, 4]);
        assert_eq!(x.tgt_mask, vec![1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(x.tgt_len, 4);
    }

    #[test]
    fn float_and_copy_batches() {
        let task = crate::synthetic::AddingTask::new(6, 5, 3, 1);
        let set = task.train_epoch(0);
        let b = FloatBatch::gather(&set, &[4, 1]);
        assert_eq!((b.batch_size, b.time, b.in_features, b.horizon, b.out_features), (2, 6, 2, 1, 1));
        assert_eq!(&b.x[..12], &set.x[4 * 12..5 * 12]);
        assert_eq!(b.y, vec![set.y[4], set.y[1]]);
        let c = crate::synthetic::CopyTask::new(3, 4, 2, 1);
        let s = c.train_epoch(0);
        let cb = CopyBatch::gather(&s, &[2]);
        assert_eq!(cb.time, 23);
        assert_eq!(cb.input, s.input[46..69].to_vec());
        assert_eq!(cb.target, s.target[46..69].to_vec());
    }
}
