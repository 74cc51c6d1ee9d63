//! MFCCs computed the way `python_speech_features` 0.6 computes them (with `winfunc=numpy.hamming`),
//! so that features, and models trained on them, carry over between the two.

use super::AudioError;
use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// MFCC settings. Every field has a default (shown); in a TOML config only the ones that differ
/// need to be written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MfccConfig {
    /// Analysis window length in seconds (0.025); in samples it is rounded half up.
    pub frame_length_s: f64,
    /// Step between frame starts in seconds (0.010).
    pub frame_step_s: f64,
    /// Pre-emphasis coefficient a in `y[n] = x[n] − a·x[n−1]` (0.97; 0 disables).
    pub preemphasis: f64,
    /// Triangular mel filters (40).
    pub num_filters: usize,
    /// Cepstral coefficients kept from the DCT (13).
    pub num_ceps: usize,
    /// Lower edge of the filterbank in Hz (0).
    pub low_freq_hz: f64,
    /// Upper edge in Hz (None = sample_rate / 2).
    pub high_freq_hz: Option<f64>,
    /// FFT size (None = next power of two ≥ the frame length: 256 at 8 kHz, 512 at 16 kHz).
    pub fft_size: Option<usize>,
    /// Cepstral lifter L: c_n · (1 + L/2 · sin(πn/L)) (0 = none).
    pub lifter: usize,
    /// Replace c0 by the log of the frame's total power-spectrum energy (false).
    pub log_energy_c0: bool,
    /// 0: MFCCs only; 1: + deltas; 2: + deltas and delta-deltas, stacked [c, Δc, ΔΔc] per frame (0).
    pub delta_order: usize,
    /// Deltas regress over ±N frames, edges repeated (2).
    pub delta_window: usize,
}

impl Default for MfccConfig {
    fn default() -> Self {
        Self {
            frame_length_s: 0.025,
            frame_step_s: 0.010,
            preemphasis: 0.97,
            num_filters: 40,
            num_ceps: 13,
            low_freq_hz: 0.0,
            high_freq_hz: None,
            fft_size: None,
            lifter: 0,
            log_energy_c0: false,
            delta_order: 0,
            delta_window: 2,
        }
    }
}

impl MfccConfig {
    /// Features per frame: `num_ceps · (1 + delta_order)`.
    pub fn dim(&self) -> usize {
        self.num_ceps * (1 + self.delta_order)
    }
}

/// A (frames × dim) feature matrix, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// `frames × dim` values, row-major; each row is `[c, Δc, ΔΔc]` as far as `delta_order` goes.
    pub data: Vec<f32>,
    /// Frames (rows), at least 1.
    pub frames: usize,
    /// Features per frame (columns): `num_ceps · (1 + delta_order)`.
    pub dim: usize,
}

impl Features {
    /// The features of frame `t`.
    pub fn row(&self, t: usize) -> &[f32] {
        &self.data[t * self.dim..(t + 1) * self.dim]
    }
}

/// An MFCC extractor for one sample rate: the window, filterbank, DCT and FFT plan are built once.
#[derive(Clone)]
pub struct Mfcc {
    config: MfccConfig,
    sample_rate: u32,
    frame_len: usize,
    frame_step: usize,
    nfft: usize,
    window: Vec<f64>,
    /// Per filter: first FFT bin and the weights from there (the triangles are sparse).
    filters: Vec<(usize, Vec<f64>)>,
    /// (num_ceps × num_filters) orthonormal DCT-II rows, the lifter folded in.
    dct: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl std::fmt::Debug for Mfcc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mfcc")
            .field("config", &self.config)
            .field("sample_rate", &self.sample_rate)
            .field("frame_len", &self.frame_len)
            .field("frame_step", &self.frame_step)
            .field("nfft", &self.nfft)
            .finish_non_exhaustive()
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> AudioError {
    AudioError::InvalidConfig { key, reason: reason.into() }
}

pub(super) fn hz_to_mel(hz: f64) -> f64 {
    2595.0 * (1.0 + hz / 700.0).log10()
}

pub(super) fn mel_to_hz(mel: f64) -> f64 {
    700.0 * (10f64.powf(mel / 2595.0) - 1.0)
}

impl Mfcc {
    /// Validates `config` for `sample_rate` and precomputes the tables.
    ///
    /// Errors: [`AudioError::InvalidConfig`] naming the offending key: a zero `sample_rate`, a
    /// frame length or step under one sample, `fft_size` shorter than the frame, `preemphasis`
    /// outside [0, 1], `num_filters` 0, `num_ceps` outside 1..=`num_filters`, `high_freq_hz` above
    /// Nyquist, `low_freq_hz` outside [0, high), `delta_order` > 2, or `delta_window` 0 with deltas on.
    pub fn new(config: &MfccConfig, sample_rate: u32) -> Result<Self, AudioError> {
        let c = config;
        if sample_rate == 0 {
            return Err(invalid("sample_rate", "must be positive"));
        }
        let sr = sample_rate as f64;
        // Python's round_half_up of the exact binary value; f64::round rounds half away from
        // zero, the same thing for positive numbers.
        let frame_len = (c.frame_length_s * sr).round();
        let frame_step = (c.frame_step_s * sr).round();
        if frame_len.is_nan() || frame_len < 1.0 {
            return Err(invalid(
                "frame_length_s",
                format!("{} s is under one sample at {sample_rate} Hz", c.frame_length_s),
            ));
        }
        if frame_step.is_nan() || frame_step < 1.0 {
            return Err(invalid(
                "frame_step_s",
                format!("{} s is under one sample at {sample_rate} Hz", c.frame_step_s),
            ));
        }
        let (frame_len, frame_step) = (frame_len as usize, frame_step as usize);
        let nfft = c.fft_size.unwrap_or_else(|| frame_len.next_power_of_two());
        if nfft < frame_len {
            return Err(invalid("fft_size", format!("{nfft} is shorter than the frame ({frame_len} samples)")));
        }
        if !(0.0..=1.0).contains(&c.preemphasis) {
            return Err(invalid("preemphasis", format!("{} is outside [0, 1]", c.preemphasis)));
        }
        if c.num_filters == 0 {
            return Err(invalid("num_filters", "must be at least 1"));
        }
        if c.num_ceps == 0 || c.num_ceps > c.num_filters {
            return Err(invalid("num_ceps", format!("{} must be in 1..={} (num_filters)", c.num_ceps, c.num_filters)));
        }
        let high = c.high_freq_hz.unwrap_or(sr / 2.0);
        if high.is_nan() || high > sr / 2.0 {
            return Err(invalid("high_freq_hz", format!("{high} Hz is above the Nyquist frequency {} Hz", sr / 2.0)));
        }
        if !(c.low_freq_hz >= 0.0 && c.low_freq_hz < high) {
            return Err(invalid("low_freq_hz", format!("{} Hz must be in [0, high_freq_hz = {high})", c.low_freq_hz)));
        }
        if c.delta_order > 2 {
            return Err(invalid("delta_order", format!("{} must be 0, 1 or 2", c.delta_order)));
        }
        if c.delta_order > 0 && c.delta_window == 0 {
            return Err(invalid("delta_window", "must be at least 1 when deltas are on"));
        }

        // numpy.hamming: the symmetric window (divides by N − 1), 1.0 for N = 1.
        let window = if frame_len == 1 {
            vec![1.0]
        } else {
            (0..frame_len)
                .map(|n| 0.54 - 0.46 * (2.0 * std::f64::consts::PI * n as f64 / (frame_len - 1) as f64).cos())
                .collect()
        };

        // get_filterbanks: band edges evenly spaced in mel (numpy.linspace, last point exact),
        // snapped down to FFT bins with the (nfft + 1) factor of the reference.
        let (low_mel, high_mel) = (hz_to_mel(c.low_freq_hz), hz_to_mel(high));
        let points = c.num_filters + 2;
        let step = (high_mel - low_mel) / (points - 1) as f64;
        let bins: Vec<f64> = (0..points)
            .map(|i| {
                let mel = if i == points - 1 { high_mel } else { i as f64 * step + low_mel };
                ((nfft + 1) as f64 * mel_to_hz(mel) / sr).floor()
            })
            .collect();
        let filters = (0..c.num_filters)
            .map(|j| {
                let (lo, mid, hi) = (bins[j], bins[j + 1], bins[j + 2]);
                let start = lo as usize;
                let weights = (start..hi as usize)
                    .map(|i| {
                        let i = i as f64;
                        if i < mid {
                            (i - lo) / (mid - lo)
                        } else {
                            (hi - i) / (hi - mid)
                        }
                    })
                    .collect();
                (start, weights)
            })
            .collect();

        // scipy.fftpack.dct(type=2, norm='ortho'), lifter applied to each output row.
        let nf = c.num_filters as f64;
        let mut dct = Vec::with_capacity(c.num_ceps * c.num_filters);
        for k in 0..c.num_ceps {
            let scale = if k == 0 { (1.0 / nf).sqrt() } else { (2.0 / nf).sqrt() };
            let lift = if c.lifter > 0 {
                let l = c.lifter as f64;
                1.0 + l / 2.0 * (std::f64::consts::PI * k as f64 / l).sin()
            } else {
                1.0
            };
            for n in 0..c.num_filters {
                let angle = std::f64::consts::PI * k as f64 * (2 * n + 1) as f64 / (2.0 * nf);
                dct.push(scale * lift * angle.cos());
            }
        }

        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(nfft);
        Ok(Self { config: c.clone(), sample_rate, frame_len, frame_step, nfft, window, filters, dct, fft })
    }

    /// The settings this extractor was built from.
    pub fn config(&self) -> &MfccConfig {
        &self.config
    }

    /// The sample rate in Hz the tables were built for; signals at another rate must not be fed.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Frame length, frame step and FFT size in samples.
    pub fn frame_geometry(&self) -> (usize, usize, usize) {
        (self.frame_len, self.frame_step, self.nfft)
    }

    /// Features per frame.
    pub fn dim(&self) -> usize {
        self.config.dim()
    }

    /// Frames for a signal of `n` samples: at least one, the last one zero-padded.
    pub fn num_frames(&self, n: usize) -> usize {
        if n <= self.frame_len {
            1
        } else {
            1 + (n - self.frame_len).div_ceil(self.frame_step)
        }
    }

    /// Features of 16-bit samples (taken as their integer values, as `scipy.io.wavfile` gives them).
    pub fn compute(&self, samples: &[i16]) -> Features {
        let x: Vec<f64> = samples.iter().map(|&s| s as f64).collect();
        self.compute_f64(&x)
    }

    /// Features of a signal in any scale (the scale shifts only c0 / log energy).
    pub fn compute_f64(&self, samples: &[f64]) -> Features {
        let c = &self.config;
        let a = c.preemphasis;
        let emphasised: Vec<f64> =
            (0..samples.len()).map(|n| if n == 0 { samples[0] } else { samples[n] - a * samples[n - 1] }).collect();

        let frames = self.num_frames(samples.len());
        let ceps = c.num_ceps;
        let mut cep = vec![0.0f64; frames * ceps]; // (frames, num_ceps)
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0.0f64; spectrum.len()];
        let mut log_fbank = vec![0.0f64; c.num_filters];
        for t in 0..frames {
            let start = t * self.frame_step;
            input.iter_mut().for_each(|v| *v = 0.0);
            for (i, w) in self.window.iter().enumerate() {
                if let Some(&s) = emphasised.get(start + i) {
                    input[i] = s * w;
                }
            }
            self.fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .expect("buffers come from the plan, so their lengths match");
            let inv_n = 1.0 / self.nfft as f64;
            for (p, z) in power.iter_mut().zip(&spectrum) {
                *p = z.norm_sqr() * inv_n;
            }
            // Exact zeros (digital silence, empty filters) become f64::EPSILON before the log,
            // as numpy.finfo(float).eps in the reference.
            let floor = |v: f64| if v == 0.0 { f64::EPSILON } else { v };
            for (lf, (startbin, weights)) in log_fbank.iter_mut().zip(&self.filters) {
                let e: f64 = weights.iter().zip(&power[*startbin..]).map(|(w, p)| w * p).sum();
                *lf = floor(e).ln();
            }
            let row = &mut cep[t * ceps..(t + 1) * ceps];
            for (k, out) in row.iter_mut().enumerate() {
                let d = &self.dct[k * c.num_filters..(k + 1) * c.num_filters];
                *out = d.iter().zip(&log_fbank).map(|(a, b)| a * b).sum();
            }
            if c.log_energy_c0 {
                row[0] = floor(power.iter().sum()).ln();
            }
        }

        let dim = c.dim();
        let mut data = vec![0.0f32; frames * dim];
        let mut put = |block: usize, m: &[f64]| {
            for t in 0..frames {
                for k in 0..ceps {
                    data[t * dim + block * ceps + k] = m[t * ceps + k] as f32;
                }
            }
        };
        put(0, &cep);
        if c.delta_order >= 1 {
            let d = deltas(&cep, frames, ceps, c.delta_window);
            put(1, &d);
            if c.delta_order >= 2 {
                put(2, &deltas(&d, frames, ceps, c.delta_window));
            }
        }
        Features { data, frames, dim }
    }
}

/// python_speech_features.delta: d_t = Σₙ n·(c_{t+n} − c_{t−n}) / (2 Σₙ n²), n = 1..=N, with the
/// first and last frames repeated beyond the edges.
fn deltas(m: &[f64], frames: usize, dim: usize, n: usize) -> Vec<f64> {
    let denom = 2.0 * (1..=n).map(|i| (i * i) as f64).sum::<f64>();
    let mut out = vec![0.0; m.len()];
    for t in 0..frames {
        for i in 1..=n {
            let ahead = (t + i).min(frames - 1);
            let behind = t.saturating_sub(i);
            for k in 0..dim {
                out[t * dim + k] += i as f64 * (m[ahead * dim + k] - m[behind * dim + k]);
            }
        }
        for v in &mut out[t * dim..(t + 1) * dim] {
            *v /= denom;
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::audio::{normalize_utterance, read_wav};
    use serde::Deserialize;
    use std::path::{Path, PathBuf};

    /// |ours − reference| ≤ REL · max(|reference|, 1): relative for the usual O(1..100) values,
    /// absolute 1e-4 for coefficients near zero (e.g. the DCT of a constant log(eps) frame).
    const REL: f64 = 1e-4;

    #[derive(Deserialize)]
    struct Case {
        name: String,
        config: MfccConfig,
        frames: usize,
        dim: usize,
        mfcc: Vec<f64>,
        cmvn: Option<Vec<f64>>,
        wav: Option<String>,
        fsdd: Option<String>,
    }

    #[derive(Deserialize)]
    struct Reference {
        cases: Vec<Case>,
    }

    pub(crate) fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }

    pub(crate) fn fsdd_dir() -> Option<PathBuf> {
        let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/fsdd/recordings");
        d.is_dir().then_some(d)
    }

    fn max_err(ours: &[f32], reference: &[f64], what: &str) -> f64 {
        assert_eq!(ours.len(), reference.len(), "{what}: length");
        let mut worst = 0.0f64;
        for (i, (&a, &b)) in ours.iter().zip(reference).enumerate() {
            let err = (a as f64 - b).abs() / b.abs().max(1.0);
            assert!(err <= REL, "{what}[{i}]: ours {a}, reference {b}, scaled error {err:.2e}");
            worst = worst.max(err);
        }
        worst
    }

    #[test]
    fn matches_python_speech_features() {
        let text = std::fs::read_to_string(fixtures().join("mfcc_reference.json")).unwrap();
        let reference: Reference = serde_json::from_str(&text).unwrap();
        let fsdd = fsdd_dir();
        let mut checked = 0;
        for case in &reference.cases {
            let path = match (&case.wav, &case.fsdd, &fsdd) {
                (Some(w), _, _) => fixtures().join(w),
                (None, Some(f), Some(dir)) => dir.join(f),
                _ => {
                    eprintln!("{}: FSDD recordings not found, skipped", case.name);
                    continue;
                }
            };
            let wav = read_wav(&path).unwrap();
            let mfcc = Mfcc::new(&case.config, wav.sample_rate).unwrap();
            let feats = mfcc.compute(&wav.samples);
            assert_eq!((feats.frames, feats.dim), (case.frames, case.dim), "{}", case.name);
            let worst = max_err(&feats.data, &case.mfcc, &case.name);
            eprintln!("{}: {} frames x {}, max scaled error {worst:.1e}", case.name, feats.frames, feats.dim);
            if let Some(cmvn) = &case.cmvn {
                let mut normed = feats.data.clone();
                normalize_utterance(&mut normed, feats.dim);
                let worst = max_err(&normed, cmvn, &format!("{} cmvn", case.name));
                eprintln!("{} cmvn: max scaled error {worst:.1e}", case.name);
            }
            checked += 1;
        }
        assert!(checked >= 4);
    }

    #[test]
    fn geometry_and_defaults() {
        let m = Mfcc::new(&MfccConfig::default(), 8000).unwrap();
        assert_eq!(m.frame_geometry(), (200, 80, 256));
        assert_eq!(m.dim(), 13);
        assert_eq!(m.num_frames(0), 1);
        assert_eq!(m.num_frames(200), 1);
        assert_eq!(m.num_frames(201), 2);
        assert_eq!(m.num_frames(280), 2);
        assert_eq!(m.num_frames(281), 3);
        let m = Mfcc::new(&MfccConfig::default(), 16000).unwrap();
        assert_eq!(m.frame_geometry(), (400, 160, 512));
        let f = m.compute(&[0; 10]);
        assert_eq!((f.frames, f.dim), (1, 13));
        assert!(f.data.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn config_errors_name_the_key() {
        let bad = |c: MfccConfig, key: &str| {
            let err = Mfcc::new(&c, 8000).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        };
        let d = MfccConfig::default;
        bad(MfccConfig { num_ceps: 41, ..d() }, "num_ceps");
        bad(MfccConfig { num_filters: 0, ..d() }, "num_filters");
        bad(MfccConfig { fft_size: Some(128), ..d() }, "fft_size");
        bad(MfccConfig { high_freq_hz: Some(5000.0), ..d() }, "high_freq_hz");
        bad(MfccConfig { low_freq_hz: 4000.0, ..d() }, "low_freq_hz");
        bad(MfccConfig { delta_order: 3, ..d() }, "delta_order");
        bad(MfccConfig { frame_step_s: 0.0, ..d() }, "frame_step_s");
        bad(MfccConfig { preemphasis: 1.5, ..d() }, "preemphasis");
        let err = serde_json::from_str::<MfccConfig>(r#"{"num_cepz": 3}"#).unwrap_err();
        assert!(err.to_string().contains("num_cepz"), "{err}");
    }
}
