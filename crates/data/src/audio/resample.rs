//! Sample-rate conversion of whole clips by `rubato`'s synchronous FFT resampler (a
//! well-kept, band-limited converter: anti-aliased, and lined up with the input because
//! `process_all` trims the filter's delay).

use super::AudioError;
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use std::path::Path;

/// `samples` (mono, at `from` Hz) at `to` Hz; returned unchanged when the rates agree.
///
/// Errors: [`AudioError::Resample`] naming `path` when `rubato` refuses the rates.
pub fn resample(path: &Path, samples: &[f64], from: u32, to: u32) -> Result<Vec<f64>, AudioError> {
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let fail = |reason: String| AudioError::Resample { path: path.into(), from, to, reason };
    // 1024-frame chunks: `process_all` feeds the clip through in pieces of this size.
    let mut fft =
        Fft::<f64>::new(from as usize, to as usize, 1024, 1, FixedSync::Both).map_err(|e| fail(e.to_string()))?;
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| fail(e.to_string()))?;
    let out = fft.process_all(&input, samples.len(), None).map_err(|e| fail(e.to_string()))?;
    Ok(out.take_data())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f64, n: usize) -> Vec<f64> {
        (0..n).map(|i| (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin()).collect()
    }

    #[test]
    fn a_tone_keeps_its_pitch_and_length() {
        let x = tone(16_000, 440.0, 16_000);
        let y = resample(Path::new("t.wav"), &x, 16_000, 8_000).unwrap();
        assert!((y.len() as i64 - 8_000).abs() <= 1, "{}", y.len());
        let want = tone(8_000, 440.0, y.len());
        // Away from the edges the converted tone is the tone sampled at the new rate.
        let err = y[500..7_500].iter().zip(&want[500..7_500]).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err < 1e-2, "max error {err}");
        assert_eq!(resample(Path::new("t.wav"), &x, 16_000, 16_000).unwrap(), x);
        let up = resample(Path::new("t.wav"), &x, 16_000, 22_050).unwrap();
        assert!((up.len() as i64 - 22_050).abs() <= 1, "{}", up.len());
    }
}
