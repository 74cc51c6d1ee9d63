//! Long-time-lag tasks generated from the seed (seed §1.1: why LSTM exists).
//!
//! - Adding problem (Hochreiter & Schmidhuber 1997; the variant of Arjovsky et al. 2016):
//!   T steps of two channels, a value drawn from U[0, 1) and a marker that is 1 at exactly
//!   two steps, one in each half of the sequence; the target is the sum of the two marked
//!   values. Predicting 1 always scores MSE 1/6 ≈ 0.167.
//! - Copy task (Arjovsky et al. 2016): 10 symbols drawn from 1..=8, then T−1 blanks (0),
//!   a delimiter (9) and 10 more blanks; the target is T+10 blanks followed by the 10
//!   symbols. Sequence length T+20, vocabulary 10.
//!
//! Validation and test sets are fixed by the seed; training samples are fresh each epoch,
//! a function of (seed, epoch), so a resumed run sees the same samples.

use crate::rng::{DataRng, Purpose};

/// Number of symbols to memorise in the copy task.
pub const COPY_SYMBOLS: usize = 10;
/// Copy-task vocabulary: 0 blank, 1..=8 symbols, 9 delimiter.
pub const COPY_VOCAB: usize = 10;
/// The copy task's blank symbol: the filler of both input and target.
pub const COPY_BLANK: u32 = 0;
/// The copy task's delimiter, the input's signal to start recalling (at step 10 + T − 1).
pub const COPY_DELIMITER: u32 = 9;

/// A set of adding-problem sequences.
#[derive(Debug, Clone, PartialEq)]
pub struct AddingSet {
    /// T.
    pub length: usize,
    /// (n, T, 2): value, marker.
    pub x: Vec<f32>,
    /// (n): sum of the two marked values.
    pub y: Vec<f32>,
}

impl AddingSet {
    /// Number of sequences n.
    pub fn len(&self) -> usize {
        self.y.len()
    }
    /// True when the set holds no sequence.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Draws `n` sequences of length `t` from `rng`. `t` must be at least 2 (one marker per
    /// half); smaller values panic.
    pub fn generate(n: usize, t: usize, rng: &mut DataRng) -> Self {
        let mut x = vec![0f32; n * t * 2];
        let mut y = Vec::with_capacity(n);
        let half = t / 2;
        for s in 0..n {
            let seq = &mut x[s * t * 2..(s + 1) * t * 2];
            for step in 0..t {
                seq[step * 2] = rng.uniform_f32();
            }
            let a = rng.below(half as u64) as usize;
            let b = half + rng.below((t - half) as u64) as usize;
            seq[a * 2 + 1] = 1.0;
            seq[b * 2 + 1] = 1.0;
            y.push(seq[a * 2] + seq[b * 2]);
        }
        Self { length: t, x, y }
    }
}

/// A set of copy-task sequences.
#[derive(Debug, Clone, PartialEq)]
pub struct CopySet {
    /// T (blanks between the symbols and the delimiter, plus one).
    pub length: usize,
    /// (n, T+20) input symbols.
    pub input: Vec<u32>,
    /// (n, T+20) target symbols, one per step.
    pub target: Vec<u32>,
}

impl CopySet {
    /// Steps per sequence: T + 20.
    pub fn seq_len(&self) -> usize {
        self.length + 2 * COPY_SYMBOLS
    }
    /// Number of sequences n.
    pub fn len(&self) -> usize {
        self.input.len() / self.seq_len()
    }
    /// True when the set holds no sequence.
    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    /// Draws `n` sequences with T = `t` from `rng`; `t` must be at least 1 (T = 0 would put the
    /// delimiter over the last symbol).
    pub fn generate(n: usize, t: usize, rng: &mut DataRng) -> Self {
        let len = t + 2 * COPY_SYMBOLS;
        let mut input = vec![COPY_BLANK; n * len];
        let mut target = vec![COPY_BLANK; n * len];
        for s in 0..n {
            let (inp, tgt) = (&mut input[s * len..(s + 1) * len], &mut target[s * len..(s + 1) * len]);
            for k in 0..COPY_SYMBOLS {
                let sym = 1 + rng.below(8) as u32;
                inp[k] = sym;
                tgt[t + COPY_SYMBOLS + k] = sym;
            }
            inp[COPY_SYMBOLS + t - 1] = COPY_DELIMITER;
        }
        Self { length: t, input, target }
    }
}

/// The adding problem: fixed evaluation sets and a per-epoch training generator.
#[derive(Debug, Clone, PartialEq)]
pub struct AddingTask {
    /// T, the sequence length (`data.length`).
    pub length: usize,
    /// Training sequences generated per epoch (`data.train_size`).
    pub train_size: usize,
    /// The run seed every set is drawn from.
    pub seed: u64,
    /// `data.eval_size` sequences, fixed by the seed.
    pub validation: AddingSet,
    /// `data.eval_size` sequences, fixed by the seed, drawn from a stream of their own.
    pub test: AddingSet,
}

impl AddingTask {
    /// Draws the validation and test sets (`eval_size` each) from `seed`; training sets come
    /// from [`AddingTask::train_epoch`]. `length` must be at least 2.
    pub fn new(length: usize, train_size: usize, eval_size: usize, seed: u64) -> Self {
        Self {
            length,
            train_size,
            seed,
            validation: AddingSet::generate(
                eval_size,
                length,
                &mut DataRng::new(seed, Purpose::SyntheticValidation, 0),
            ),
            test: AddingSet::generate(eval_size, length, &mut DataRng::new(seed, Purpose::SyntheticTest, 0)),
        }
    }

    /// The fresh training samples of `epoch` (a function of seed and epoch only).
    pub fn train_epoch(&self, epoch: u64) -> AddingSet {
        AddingSet::generate(self.train_size, self.length, &mut DataRng::new(self.seed, Purpose::SyntheticTrain, epoch))
    }
}

/// The copy task: fixed evaluation sets and a per-epoch training generator.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyTask {
    /// T, the blanks between the symbols and the recall, plus one (`data.length`).
    pub length: usize,
    /// Training sequences generated per epoch (`data.train_size`).
    pub train_size: usize,
    /// The run seed every set is drawn from.
    pub seed: u64,
    /// `data.eval_size` sequences, fixed by the seed.
    pub validation: CopySet,
    /// `data.eval_size` sequences, fixed by the seed, drawn from a stream of their own.
    pub test: CopySet,
}

impl CopyTask {
    /// Draws the validation and test sets (`eval_size` each) from `seed`; training sets come
    /// from [`CopyTask::train_epoch`]. `length` must be at least 1.
    pub fn new(length: usize, train_size: usize, eval_size: usize, seed: u64) -> Self {
        Self {
            length,
            train_size,
            seed,
            validation: CopySet::generate(eval_size, length, &mut DataRng::new(seed, Purpose::SyntheticValidation, 0)),
            test: CopySet::generate(eval_size, length, &mut DataRng::new(seed, Purpose::SyntheticTest, 0)),
        }
    }

    /// The fresh training samples of `epoch`.
    pub fn train_epoch(&self, epoch: u64) -> CopySet {
        CopySet::generate(self.train_size, self.length, &mut DataRng::new(self.seed, Purpose::SyntheticTrain, epoch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_structure_and_baseline() {
        let task = AddingTask::new(50, 2000, 300, 3);
        let s = task.train_epoch(0);
        assert_eq!(s.x.len(), 2000 * 50 * 2);
        for i in 0..s.len() {
            let seq = &s.x[i * 100..(i + 1) * 100];
            let marks: Vec<usize> = (0..50).filter(|&t| seq[t * 2 + 1] == 1.0).collect();
            assert_eq!(marks.len(), 2);
            assert!(marks[0] < 25 && marks[1] >= 25);
            assert_eq!(s.y[i], seq[marks[0] * 2] + seq[marks[1] * 2]);
        }
        // Always predicting 1 gives MSE ≈ Var(U+U) = 1/6.
        let mse = s.y.iter().map(|y| (y - 1.0) * (y - 1.0)).sum::<f32>() / s.len() as f32;
        assert!((mse - 1.0 / 6.0).abs() < 0.015, "{mse}");
        // Fixed eval sets, fresh training samples.
        assert_eq!(AddingTask::new(50, 2000, 300, 3).validation, task.validation);
        assert_ne!(task.validation, task.test);
        assert_ne!(task.train_epoch(0), task.train_epoch(1));
        assert_eq!(task.train_epoch(1), task.train_epoch(1));
    }

    #[test]
    fn copy_structure() {
        let task = CopyTask::new(5, 10, 4, 9);
        let s = task.train_epoch(0);
        assert_eq!(s.seq_len(), 25);
        assert_eq!(s.len(), 10);
        let (inp, tgt) = (&s.input[..25], &s.target[..25]);
        assert!(inp[..10].iter().all(|&v| (1..=8).contains(&v)));
        assert!(inp[10..14].iter().all(|&v| v == COPY_BLANK));
        assert_eq!(inp[14], COPY_DELIMITER);
        assert!(inp[15..].iter().all(|&v| v == COPY_BLANK));
        assert!(tgt[..15].iter().all(|&v| v == COPY_BLANK));
        assert_eq!(&tgt[15..], &inp[..10]);
        assert_ne!(task.validation, task.test);
    }
}
