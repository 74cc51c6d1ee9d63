//! Our own seeded random numbers. Candle's CPU generator cannot be seeded, so every draw in
//! sluice (initialisation, dropout masks, shuffling, synthetic data) comes from here.
//!
//! A [`SeededRng`] is ChaCha20 keyed by the run seed, on a ChaCha stream chosen by hashing a
//! purpose name ("init/lstm.weight_ih_l0", "dropout", "shuffle"), so each purpose gets an
//! independent sequence that does not shift when another purpose draws more or less.
//! The conversions from bits to floats are written out here (not taken from `rand`'s
//! distributions) so the numbers stay the same across dependency upgrades.

use candle_core::{DType, Device, Shape, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

/// FNV-1a: a stable 64-bit hash (std's hasher is not guaranteed stable across releases).
pub fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Everything needed to continue a [`SeededRng`] exactly where it stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeededRngState {
    /// The run seed.
    pub seed: u64,
    /// The purpose name the stream was derived from ("dropout", "init", ...).
    pub stream: String,
    /// ChaCha word position, as a decimal string because it is a u128 (TOML/JSON-safe).
    pub word_pos: String,
}

/// A ChaCha20 stream derived from (seed, purpose name): every random draw of a run comes
/// from one of these, so the same seed gives the same numbers on every machine.
#[derive(Clone)]
pub struct SeededRng {
    seed: u64,
    stream: String,
    rng: ChaCha20Rng,
}

impl std::fmt::Debug for SeededRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeededRng({:?})", self.state())
    }
}

impl SeededRng {
    /// An independent generator for `stream` (a purpose name) under the run seed `seed`.
    pub fn new(seed: u64, stream: &str) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        rng.set_stream(stable_hash(stream));
        Self { seed, stream: stream.to_string(), rng }
    }

    /// The position to save, so that [`SeededRng::from_state`] continues the same stream.
    pub fn state(&self) -> SeededRngState {
        SeededRngState { seed: self.seed, stream: self.stream.clone(), word_pos: self.rng.get_word_pos().to_string() }
    }

    /// Resumes a generator saved with [`SeededRng::state`].
    pub fn from_state(state: &SeededRngState) -> crate::Result<Self> {
        let pos: u128 = state.word_pos.parse().map_err(|_| crate::Error::Config {
            key: "word_pos".into(),
            msg: format!("`{}` is not a non-negative integer", state.word_pos),
        })?;
        let mut r = Self::new(state.seed, &state.stream);
        r.rng.set_word_pos(pos);
        Ok(r)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform01(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform01()
    }

    /// Normal(mean, std) by Box–Muller (one value per pair of uniforms, for a simple state).
    pub fn normal(&mut self, mean: f64, std: f64) -> f64 {
        let u1 = 1.0 - self.uniform01(); // (0, 1]: ln is finite
        let u2 = self.uniform01();
        mean + std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Unbiased integer in [0, n) (n > 0), by rejection.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.rng.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            xs.swap(i, j);
        }
    }

    /// `n` values uniform in [lo, hi).
    pub fn uniform_vec(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }

    /// `n` values from Normal(mean, std).
    pub fn normal_vec(&mut self, n: usize, mean: f64, std: f64) -> Vec<f64> {
        (0..n).map(|_| self.normal(mean, std)).collect()
    }

    /// A tensor of values uniform in [lo, hi), drawn in f64 on the CPU, then cast and moved.
    pub fn uniform_tensor<S: Into<Shape>>(
        &mut self,
        shape: S,
        lo: f64,
        hi: f64,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let shape = shape.into();
        let v = self.uniform_vec(shape.elem_count(), lo, hi);
        Tensor::from_vec(v, shape, &Device::Cpu)?.to_dtype(dtype)?.to_device(device)
    }

    /// A tensor of Normal(mean, std) values, drawn in f64 on the CPU, then cast and moved.
    pub fn normal_tensor<S: Into<Shape>>(
        &mut self,
        shape: S,
        mean: f64,
        std: f64,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let shape = shape.into();
        let v = self.normal_vec(shape.elem_count(), mean, std);
        Tensor::from_vec(v, shape, &Device::Cpu)?.to_dtype(dtype)?.to_device(device)
    }

    /// Inverted-dropout mask: each element is 0 with probability `p`, else 1/(1−p), so that
    /// `x * mask` keeps the expectation of x and evaluation needs no rescaling.
    pub fn dropout_mask<S: Into<Shape>>(
        &mut self,
        shape: S,
        p: f64,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        if !(0.0..1.0).contains(&p) {
            candle_core::bail!("dropout probability must be in [0, 1), got {p}");
        }
        let shape = shape.into();
        let scale = 1.0 / (1.0 - p);
        // One key from the ChaCha stream per mask, then SplitMix64 over (key, element index):
        // a counter-based stream that vectorises (the ChaCha draw per element cost more
        // than the LSTM's forward on short sentences). Element i is dropped when the
        // i-th 32-bit half is below p·2^32 (p exact to 2^-32).
        let key = self.rng.next_u64();
        let threshold = (p * 4_294_967_296.0).round() as u64;
        let n = shape.elem_count();
        let t = match dtype {
            DType::F64 => Tensor::from_vec(mask_values(key, n, threshold, scale), shape, &Device::Cpu)?,
            _ => {
                Tensor::from_vec(mask_values(key, n, threshold, scale as f32), shape, &Device::Cpu)?.to_dtype(dtype)?
            }
        };
        t.to_device(device)
    }
}

/// SplitMix64's output function (Steele, Lea & Flood 2014).
#[inline(always)]
fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` inverted-dropout values: 0 where the element's draw is below `threshold`, else
/// `scale`. Element 2k and 2k+1 take the low and high halves of SplitMix64 at counter k.
fn mask_values<T: candle_core::WithDType>(key: u64, n: usize, threshold: u64, scale: T) -> Vec<T> {
    let mut v = vec![T::zero(); n];
    mask_fill_fn::<T>()(key, threshold, scale, &mut v);
    v
}

#[inline(always)]
fn mask_fill<T: candle_core::WithDType>(key: u64, threshold: u64, scale: T, out: &mut [T]) {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut pairs = out.chunks_exact_mut(2);
    let mut k = 0u64;
    for pair in &mut pairs {
        let r = splitmix64(key.wrapping_add((k + 1).wrapping_mul(GOLDEN)));
        pair[0] = if (r & 0xFFFF_FFFF) < threshold { T::zero() } else { scale };
        pair[1] = if (r >> 32) < threshold { T::zero() } else { scale };
        k += 1;
    }
    if let [last] = pairs.into_remainder() {
        let r = splitmix64(key.wrapping_add((k + 1).wrapping_mul(GOLDEN)));
        *last = if (r & 0xFFFF_FFFF) < threshold { T::zero() } else { scale };
    }
}

type MaskFill<T> = fn(u64, u64, T, &mut [T]);
multiversion!(mask_fill_fn, mask_fill, candle_core::WithDType, MaskFill<T>, (key: u64, threshold: u64, scale: T, out: &mut [T]));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers_streams_independent() {
        let mut a = SeededRng::new(7, "init");
        let mut b = SeededRng::new(7, "init");
        let mut c = SeededRng::new(7, "dropout");
        let va: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let vb: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let vc: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
        assert_ne!(va, (0..8).map(|_| SeededRng::new(8, "init").next_u64()).collect::<Vec<_>>());
    }

    #[test]
    fn state_round_trip_resumes_exactly() {
        let mut a = SeededRng::new(3, "shuffle");
        for _ in 0..13 {
            a.normal(0.0, 1.0);
        }
        let json = serde_json::to_string(&a.state()).unwrap();
        let mut b = SeededRng::from_state(&serde_json::from_str(&json).unwrap()).unwrap();
        for _ in 0..50 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn moments_and_dropout_scale() {
        let mut r = SeededRng::new(1, "t");
        let n = 200_000;
        let u = r.uniform_vec(n, -1.0, 3.0);
        let mean_u = u.iter().sum::<f64>() / n as f64;
        assert!((mean_u - 1.0).abs() < 0.02, "{mean_u}");
        assert!(u.iter().all(|&x| (-1.0..3.0).contains(&x)));
        let z = r.normal_vec(n, 2.0, 0.5);
        let m = z.iter().sum::<f64>() / n as f64;
        let v = z.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n as f64;
        assert!((m - 2.0).abs() < 0.01 && (v.sqrt() - 0.5).abs() < 0.01, "{m} {v}");
        let mask = r.dropout_mask((1000, 100), 0.25, DType::F32, &Device::Cpu).unwrap();
        let vals = mask.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let kept = vals.iter().filter(|&&x| x != 0.0).count() as f64 / vals.len() as f64;
        assert!((kept - 0.75).abs() < 0.01, "{kept}");
        assert!(vals.iter().all(|&x| x == 0.0 || (x - 1.0 / 0.75).abs() < 1e-6));
        // Odd and even elements (the two halves of one SplitMix64 output) and neighbouring
        // masks are independent: joint keep rates match the product.
        let both = vals.chunks_exact(2).filter(|p| p[0] != 0.0 && p[1] != 0.0).count() as f64 / (vals.len() / 2) as f64;
        assert!((both - 0.5625).abs() < 0.01, "{both}");
        let next = r.dropout_mask((1000, 100), 0.25, DType::F64, &Device::Cpu).unwrap();
        let next = next.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let same =
            vals.iter().zip(&next).filter(|(a, b)| (**a != 0.0) == (**b != 0.0)).count() as f64 / vals.len() as f64;
        assert!((same - 0.625).abs() < 0.01, "{same}");
        // p is honoured to 2^-32, not to the 2^-8 or 2^-16 of a short draw.
        let m = r.dropout_mask(2_000_000, 0.001, DType::F32, &Device::Cpu).unwrap().to_vec1::<f32>().unwrap();
        let dropped = m.iter().filter(|&&x| x == 0.0).count() as f64 / m.len() as f64;
        assert!((dropped - 0.001).abs() < 1e-4, "{dropped}");
        let mut xs: Vec<usize> = (0..10).collect();
        r.shuffle(&mut xs);
        let mut s = xs.clone();
        s.sort();
        assert_eq!(s, (0..10).collect::<Vec<_>>());
    }
}
