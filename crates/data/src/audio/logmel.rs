//! Log-mel filterbank features, the front end of current speech recognisers (ESPnet, NeMo,
//! deepspeech.pytorch's spectrogram in mel form): samples scaled to [−1, 1) → optional
//! pre-emphasis → 25 ms frames every 10 ms (the last partial frame dropped: Kaldi's `snip-edges`) →
//! Hann window → power spectrum |rfft|² → `num_mels` triangular filters on the HTK mel scale,
//! area-normalised like librosa's `norm="slaney"` → ln(energy + 1e-10). The FFT is `realfft`'s,
//! as in the MFCC front end.
//!
//! Also a windowed-sinc resampler ([`resample`]) for recordings at another rate, and
//! SpecAugment's masks ([`spec_augment`]).

use super::{AudioError, Features};
use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Log-mel settings (`[transcribe.features]`), documented with their defaults in
/// `configs/an4.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogMelConfig {
    /// Mel bands (80).
    pub num_mels: usize,
    /// Window length in seconds (0.025).
    pub frame_length_s: f64,
    /// Step between frames in seconds (0.010).
    pub frame_step_s: f64,
    /// Pre-emphasis coefficient (0.97; 0 = off).
    pub preemphasis: f64,
    /// Lowest filter edge in Hz (20).
    pub low_freq_hz: f64,
    /// Highest filter edge in Hz (None = sample_rate / 2).
    pub high_freq_hz: Option<f64>,
}

impl Default for LogMelConfig {
    fn default() -> Self {
        Self {
            num_mels: 80,
            frame_length_s: 0.025,
            frame_step_s: 0.010,
            preemphasis: 0.97,
            low_freq_hz: 20.0,
            high_freq_hz: None,
        }
    }
}

/// A log-mel extractor for one sample rate (window, filters and FFT plan built once).
#[derive(Clone)]
pub struct LogMel {
    config: LogMelConfig,
    sample_rate: u32,
    frame_len: usize,
    frame_step: usize,
    nfft: usize,
    window: Vec<f64>,
    filters: Vec<(usize, Vec<f64>)>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl std::fmt::Debug for LogMel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMel").field("config", &self.config).field("sample_rate", &self.sample_rate).finish()
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> AudioError {
    AudioError::InvalidConfig { key, reason: reason.into() }
}

// The HTK mel scale, shared with the MFCC front end.
use super::mfcc::{hz_to_mel, mel_to_hz};

impl LogMel {
    /// Validates `config` for `sample_rate` and builds the tables. Errors name the key.
    pub fn new(config: &LogMelConfig, sample_rate: u32) -> Result<Self, AudioError> {
        let c = config;
        if sample_rate == 0 {
            return Err(invalid("sample_rate", "must be positive"));
        }
        let sr = sample_rate as f64;
        let frame_len = (c.frame_length_s * sr).round();
        let frame_step = (c.frame_step_s * sr).round();
        if !(2.0..=1e6).contains(&frame_len) {
            return Err(invalid(
                "frame_length_s",
                format!("{} s is {frame_len} samples; need 2..=1e6", c.frame_length_s),
            ));
        }
        if !(1.0..=1e6).contains(&frame_step) {
            return Err(invalid("frame_step_s", format!("{} s is {frame_step} samples; need 1..=1e6", c.frame_step_s)));
        }
        if !(0.0..=1.0).contains(&c.preemphasis) {
            return Err(invalid("preemphasis", format!("expected [0, 1], got {}", c.preemphasis)));
        }
        if c.num_mels == 0 || c.num_mels > 512 {
            return Err(invalid("num_mels", format!("expected 1..=512, got {}", c.num_mels)));
        }
        let high = c.high_freq_hz.unwrap_or(sr / 2.0);
        if !(high > 0.0 && high <= sr / 2.0) {
            return Err(invalid("high_freq_hz", format!("{high} Hz: expected (0, {}] (Nyquist)", sr / 2.0)));
        }
        if !(c.low_freq_hz >= 0.0 && c.low_freq_hz < high) {
            return Err(invalid("low_freq_hz", format!("{} Hz: expected [0, {high})", c.low_freq_hz)));
        }
        let (frame_len, frame_step) = (frame_len as usize, frame_step as usize);
        let nfft = frame_len.next_power_of_two();
        let bins = nfft / 2 + 1;
        // Periodic Hann (torch.hann_window's default).
        let window: Vec<f64> = (0..frame_len)
            .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / frame_len as f64).cos())
            .collect();
        let (lo, hi) = (hz_to_mel(c.low_freq_hz), hz_to_mel(high));
        let edges: Vec<f64> =
            (0..c.num_mels + 2).map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (c.num_mels + 1) as f64)).collect();
        let mut filters = Vec::with_capacity(c.num_mels);
        for m in 0..c.num_mels {
            let (left, centre, right) = (edges[m], edges[m + 1], edges[m + 2]);
            // Slaney normalisation: each triangle has unit area over frequency.
            let scale = 2.0 / (right - left);
            let mut first = None;
            let mut weights = Vec::new();
            for k in 0..bins {
                let f = k as f64 * sr / nfft as f64;
                let w = if f > left && f < right {
                    if f <= centre {
                        (f - left) / (centre - left)
                    } else {
                        (right - f) / (right - centre)
                    }
                } else {
                    0.0
                };
                if w > 0.0 {
                    first.get_or_insert(k);
                }
                if first.is_some() {
                    weights.push(w * scale);
                }
            }
            while weights.last() == Some(&0.0) {
                weights.pop();
            }
            filters.push((first.unwrap_or(0), weights));
        }
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(nfft);
        Ok(Self { config: c.clone(), sample_rate, frame_len, frame_step, nfft, window, filters, fft })
    }

    /// The sample rate the tables were built for.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Mel bands per frame.
    pub fn dim(&self) -> usize {
        self.config.num_mels
    }

    /// Samples a recording needs for one frame.
    pub fn min_samples(&self) -> usize {
        self.frame_len
    }

    /// Frames of a recording of `n` samples (0 when shorter than one window).
    pub fn num_frames(&self, n: usize) -> usize {
        if n < self.frame_len {
            0
        } else {
            1 + (n - self.frame_len) / self.frame_step
        }
    }

    /// Log-mel frames of `samples` (floats in [−1, 1)); `frames` is 0 for a recording shorter
    /// than one window.
    pub fn compute(&self, samples: &[f32]) -> Features {
        let frames = self.num_frames(samples.len());
        let dim = self.dim();
        let mut data = Vec::with_capacity(frames * dim);
        let mut buf = self.fft.make_input_vec();
        let mut spec = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0f64; self.nfft / 2 + 1];
        let a = self.config.preemphasis;
        for t in 0..frames {
            let start = t * self.frame_step;
            buf.iter_mut().for_each(|v| *v = 0.0);
            for (n, (b, w)) in buf.iter_mut().zip(&self.window).enumerate() {
                let i = start + n;
                let prev = if i > 0 { samples[i - 1] as f64 } else { 0.0 };
                *b = (samples[i] as f64 - a * prev) * w;
            }
            self.fft.process_with_scratch(&mut buf, &mut spec, &mut scratch).expect("FFT buffers sized by the plan");
            for (p, c) in power.iter_mut().zip(&spec) {
                *p = c.norm_sqr();
            }
            for (first, w) in &self.filters {
                let e: f64 = w.iter().zip(&power[*first..]).map(|(a, b)| a * b).sum();
                data.push((e + 1e-10).ln() as f32);
            }
        }
        Features { data, frames, dim }
    }
}

/// `samples` at `from` Hz resampled to `to` Hz by windowed-sinc interpolation (a Hann-windowed
/// sinc of 16 zero crossings each side, cut off at the lower Nyquist frequency, so
/// downsampling does not alias).
pub fn resample(samples: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || samples.is_empty() {
        return samples.to_vec();
    }
    let ratio = to as f64 / from as f64;
    let out_len = ((samples.len() as f64) * ratio).round().max(1.0) as usize;
    let cutoff = ratio.min(1.0);
    let half = 16.0 / cutoff;
    (0..out_len)
        .map(|j| {
            let centre = j as f64 / ratio;
            let lo = (centre - half).ceil().max(0.0) as usize;
            let hi = ((centre + half).floor() as usize).min(samples.len() - 1);
            let mut acc = 0.0;
            for (i, &s) in samples.iter().enumerate().take(hi + 1).skip(lo) {
                let x = i as f64 - centre;
                let arg = std::f64::consts::PI * x * cutoff;
                let sinc = if arg.abs() < 1e-12 { 1.0 } else { arg.sin() / arg };
                let w = 0.5 + 0.5 * (std::f64::consts::PI * x / half).cos();
                acc += s as f64 * sinc * cutoff * w;
            }
            acc as f32
        })
        .collect()
}

/// SpecAugment's masks (Park et al. 2019), without time warping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpecAugment {
    /// Frequency masks per utterance (2).
    pub freq_masks: usize,
    /// Widest frequency mask in bands, F (27 for 80 bands, LibriSpeech's "LD" policy).
    pub freq_width: usize,
    /// Time masks per utterance (2).
    pub time_masks: usize,
    /// Widest time mask in frames, T (40).
    pub time_width: usize,
    /// A time mask covers at most this share of the utterance, p (0.2).
    pub time_max_fraction: f64,
}

impl Default for SpecAugment {
    fn default() -> Self {
        Self { freq_masks: 2, freq_width: 27, time_masks: 2, time_width: 40, time_max_fraction: 0.2 }
    }
}

impl SpecAugment {
    /// Whether any mask is drawn.
    pub fn is_active(&self) -> bool {
        (self.freq_masks > 0 && self.freq_width > 0) || (self.time_masks > 0 && self.time_width > 0)
    }
}

/// Sets SpecAugment's frequency and time masks of `x` (frames × dim, row-major) to `fill`
/// (the mean after normalisation: 0). `below(n)` draws uniformly from 0..n (the caller's
/// seeded generator).
pub fn spec_augment(
    x: &mut [f32],
    frames: usize,
    dim: usize,
    cfg: &SpecAugment,
    fill: f32,
    below: &mut dyn FnMut(u64) -> u64,
) {
    for _ in 0..cfg.freq_masks {
        let f = below(cfg.freq_width.min(dim) as u64 + 1) as usize;
        let f0 = below((dim - f) as u64 + 1) as usize;
        for t in 0..frames {
            x[t * dim + f0..t * dim + f0 + f].fill(fill);
        }
    }
    let cap = ((frames as f64 * cfg.time_max_fraction).floor() as usize).min(cfg.time_width);
    for _ in 0..cfg.time_masks {
        let w = below(cap as u64 + 1) as usize;
        let t0 = below((frames - w) as u64 + 1) as usize;
        x[t0 * dim..(t0 + w) * dim].fill(fill);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, n: usize) -> Vec<f32> {
        (0..n).map(|i| (0.5 * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin()) as f32).collect()
    }

    /// A pure tone puts its energy in the band around its frequency; frame count as Kaldi's
    /// snip-edges.
    #[test]
    fn tone_peaks_in_its_band() {
        let lm = LogMel::new(&LogMelConfig { preemphasis: 0.0, ..Default::default() }, 16_000).unwrap();
        let f = lm.compute(&tone(1000.0, 16_000, 16_000));
        assert_eq!((f.frames, f.dim), (98, 80));
        let row = f.row(50);
        let peak = (0..80).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        let centre =
            |m: usize| mel_to_hz(hz_to_mel(20.0) + (hz_to_mel(8000.0) - hz_to_mel(20.0)) * (m + 1) as f64 / 81.0);
        assert!((centre(peak) - 1000.0).abs() < 100.0, "peak band {peak} centred at {}", centre(peak));
        assert_eq!(lm.num_frames(399), 0);
        assert_eq!(lm.compute(&[0.0; 399]).frames, 0);
        assert_eq!(lm.num_frames(400), 1);
    }

    #[test]
    fn bad_settings_name_the_key() {
        let bad = |c: LogMelConfig| match LogMel::new(&c, 16_000).unwrap_err() {
            AudioError::InvalidConfig { key, .. } => key,
            e => panic!("{e}"),
        };
        assert_eq!(bad(LogMelConfig { num_mels: 0, ..Default::default() }), "num_mels");
        assert_eq!(bad(LogMelConfig { high_freq_hz: Some(9000.0), ..Default::default() }), "high_freq_hz");
        assert_eq!(bad(LogMelConfig { frame_step_s: 0.0, ..Default::default() }), "frame_step_s");
    }

    /// Resampling keeps a tone's frequency and amplitude (away from the edges).
    #[test]
    fn resampling_keeps_a_tone() {
        for (from, to) in [(8_000, 16_000), (44_100, 16_000), (16_000, 16_000)] {
            let y = resample(&tone(440.0, from, from as usize), from, to);
            assert_eq!(y.len(), to as usize);
            let want = tone(440.0, to, to as usize);
            let err = y[200..y.len() - 200].iter().zip(&want[200..]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(err < 0.01, "{from} → {to}: {err}");
        }
    }

    #[test]
    fn spec_augment_masks_within_bounds() {
        let (frames, dim) = (50, 10);
        let mut x = vec![1f32; frames * dim];
        let mut state = 12345u64;
        let mut below = |n: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        let cfg = SpecAugment { freq_masks: 1, freq_width: 3, time_masks: 1, time_width: 100, time_max_fraction: 0.2 };
        spec_augment(&mut x, frames, dim, &cfg, 0.0, &mut below);
        let zero_frames = (0..frames).filter(|&t| x[t * dim..(t + 1) * dim].iter().all(|&v| v == 0.0)).count();
        assert!(zero_frames <= 10, "{zero_frames}");
        let zero_bands = (0..dim).filter(|&d| (0..frames).all(|t| x[t * dim + d] == 0.0)).count();
        assert!(zero_bands <= 3 + usize::from(zero_frames == frames));
    }
}
