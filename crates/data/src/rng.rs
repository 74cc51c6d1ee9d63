//! Seeded randomness: one ChaCha8 stream per purpose, derived from the run seed, so no
//! draw depends on another purpose's draws, on thread count or on candle's unseedable RNG.
//! Uniform integers and floats are computed here from raw 64-bit words, so the sequences
//! do not change if `rand`'s sampling algorithms do.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Purposes, each its own stream.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    /// Batch order of an epoch ([`crate::batch::BatchOrder::plan`]); the epoch is mixed in.
    Batches = 1,
    /// A synthetic task's training set, regenerated per epoch.
    SyntheticTrain = 2,
    /// A synthetic task's validation set (fixed: epoch 0).
    SyntheticValidation = 3,
    /// A synthetic task's test set (fixed: epoch 0).
    SyntheticTest = 4,
    /// Validation/test rows carved from a training file (`data.validation_split`, `test_split`).
    SplitCarve = 5,
}

/// SplitMix64's finaliser: spreads (seed, purpose, epoch) over the 64-bit seed space.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Our generator.
pub struct DataRng(ChaCha8Rng);

impl DataRng {
    /// The stream for `purpose` in `epoch` of a run seeded with `seed`.
    pub fn new(seed: u64, purpose: Purpose, epoch: u64) -> Self {
        let s = mix(mix(mix(seed) ^ purpose as u64) ^ epoch);
        DataRng(ChaCha8Rng::seed_from_u64(s))
    }

    /// The next raw 64-bit word of the ChaCha8 stream.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1) with 24 random bits (every f32 step in [0,1) equally likely).
    pub fn uniform_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform integer in `0..n` (n > 0), by Lemire's widening multiply with rejection.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = DataRng::new(7, Purpose::Batches, 0);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = DataRng::new(7, Purpose::Batches, 0);
                move |_| r.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..4)
            .map({
                let mut r = DataRng::new(7, Purpose::Batches, 1);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn below_is_uniform_enough() {
        let mut r = DataRng::new(1, Purpose::Batches, 0);
        let mut counts = [0usize; 6];
        for _ in 0..60_000 {
            counts[r.below(6) as usize] += 1;
        }
        // Each bin expects 10,000 with sd ~ 91; 5 sd is a loose bound.
        assert!(counts.iter().all(|&c| (c as i64 - 10_000).abs() < 460), "{counts:?}");
        let u: f32 = (0..10_000).map(|_| r.uniform_f32()).sum::<f32>() / 10_000.0;
        assert!((u - 0.5).abs() < 0.015);
    }
}
