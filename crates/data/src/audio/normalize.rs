//! Mean/variance normalisation of feature matrices, per utterance or with train-set statistics.

use super::AudioError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Standard deviations below this are treated as 1 (a constant coefficient is only centred),
/// so that silence or a one-frame utterance never divides by zero.
const STD_FLOOR: f64 = 1e-8;

/// Which normalisation a corpus applies to its features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// Raw features.
    None,
    /// Each utterance to zero mean, unit variance per coefficient over its own frames (CMVN).
    Utterance,
    /// Mean and standard deviation per coefficient over all training frames, applied to every
    /// split (and to files given to `predict`, from the normaliser stored with the run).
    #[default]
    TrainSet,
}

/// Per-coefficient statistics fitted on training features; `(x − mean) / std` when applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalizer {
    /// Mean of each coefficient over the training frames (length: features per frame).
    pub mean: Vec<f32>,
    /// Population standard deviation of each coefficient, same length as `mean`; values under
    /// 1e-8 are stored as 1 so a constant coefficient is only centred.
    pub std: Vec<f32>,
}

fn stats<'a>(dim: usize, matrices: impl IntoIterator<Item = &'a [f32]>) -> (Vec<f64>, Vec<f64>, usize) {
    // Sums in f64: tens of thousands of frames of values in the hundreds lose digits in f32.
    let (mut sum, mut sq, mut n) = (vec![0.0f64; dim], vec![0.0f64; dim], 0usize);
    for m in matrices {
        for row in m.chunks_exact(dim) {
            for ((s, q), &v) in sum.iter_mut().zip(&mut sq).zip(row) {
                *s += v as f64;
                *q += v as f64 * v as f64;
            }
            n += 1;
        }
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / n.max(1) as f64).collect();
    let std = sq
        .iter()
        .zip(&mean)
        .map(|(q, m)| {
            let s = (q / n.max(1) as f64 - m * m).max(0.0).sqrt();
            if s < STD_FLOOR {
                1.0
            } else {
                s
            }
        })
        .collect();
    (mean, std, n)
}

/// Normalises one (frames × dim) row-major matrix in place by its own per-column mean and
/// population standard deviation.
pub fn normalize_utterance(features: &mut [f32], dim: usize) {
    if dim == 0 || features.is_empty() {
        return;
    }
    let (mean, std, _) = stats(dim, [&*features]);
    for row in features.chunks_exact_mut(dim) {
        for ((v, m), s) in row.iter_mut().zip(&mean).zip(&std) {
            *v = ((*v as f64 - m) / s) as f32;
        }
    }
}

impl Normalizer {
    /// Fits mean and population standard deviation per coefficient over every frame of `matrices`
    /// (each row-major with `dim` columns; a trailing partial row is ignored).
    ///
    /// Errors: [`AudioError::Normalizer`] when `dim` is 0 or there is no frame.
    pub fn fit<'a>(dim: usize, matrices: impl IntoIterator<Item = &'a [f32]>) -> Result<Self, AudioError> {
        if dim == 0 {
            return Err(AudioError::Normalizer { reason: "feature dimension 0".into() });
        }
        let (mean, std, n) = stats(dim, matrices);
        if n == 0 {
            return Err(AudioError::Normalizer { reason: "no frames to fit on (empty training split?)".into() });
        }
        Ok(Self {
            mean: mean.into_iter().map(|v| v as f32).collect(),
            std: std.into_iter().map(|v| v as f32).collect(),
        })
    }

    /// Coefficients per frame the normaliser was fitted on (`mean.len()`).
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Normalises a row-major matrix in place; its length must be a multiple of `dim()`.
    ///
    /// Errors: [`AudioError::Normalizer`] when it is not (or `std` and `mean` differ in length).
    pub fn apply(&self, features: &mut [f32]) -> Result<(), AudioError> {
        let dim = self.dim();
        if dim == 0 || self.std.len() != dim || !features.len().is_multiple_of(dim) {
            return Err(AudioError::Normalizer {
                reason: format!(
                    "{} values are not whole frames of the normaliser's {} coefficients (std has {})",
                    features.len(),
                    dim,
                    self.std.len()
                ),
            });
        }
        for row in features.chunks_exact_mut(dim) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = (*v - m) / s;
            }
        }
        Ok(())
    }

    /// Writes the normaliser as JSON (`{"mean": [...], "std": [...]}`), e.g. into a run directory.
    ///
    /// Errors: [`AudioError::NormalizerJson`] or [`AudioError::Io`], naming `path`.
    pub fn save(&self, path: &Path) -> Result<(), AudioError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|source| AudioError::NormalizerJson { path: path.to_path_buf(), source })?;
        std::fs::write(path, text).map_err(|source| AudioError::Io { path: path.to_path_buf(), source })
    }

    /// Reads a normaliser written by [`Normalizer::save`].
    ///
    /// Errors: [`AudioError::Io`], [`AudioError::NormalizerJson`] (unknown keys included), and
    /// [`AudioError::Normalizer`] when `mean` is empty or differs in length from `std`.
    pub fn load(path: &Path) -> Result<Self, AudioError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| AudioError::Io { path: path.to_path_buf(), source })?;
        let n: Self = serde_json::from_str(&text)
            .map_err(|source| AudioError::NormalizerJson { path: path.to_path_buf(), source })?;
        if n.mean.len() != n.std.len() || n.mean.is_empty() {
            return Err(AudioError::Normalizer {
                reason: format!("{}: mean has {} values, std has {}", path.display(), n.mean.len(), n.std.len()),
            });
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_matches_direct_statistics_and_round_trips() {
        // Two "utterances" of dim 2; the second column is constant → std floored to 1.
        let a = [1.0f32, 5.0, 3.0, 5.0];
        let b = [5.0f32, 5.0];
        let n = Normalizer::fit(2, [&a[..], &b[..]]).unwrap();
        assert_eq!(n.mean, vec![3.0, 5.0]);
        let expected_std = (8.0f64 / 3.0).sqrt() as f32; // values 1, 3, 5 about 3
        assert!((n.std[0] - expected_std).abs() < 1e-6);
        assert_eq!(n.std[1], 1.0);
        let mut x = a;
        n.apply(&mut x).unwrap();
        assert!((x[0] + 2.0 / expected_std).abs() < 1e-6 && x[1] == 0.0);

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("normalizer.json");
        n.save(&p).unwrap();
        assert_eq!(Normalizer::load(&p).unwrap(), n);
        std::fs::write(&p, r#"{"mean": [1.0], "std": []}"#).unwrap();
        assert!(Normalizer::load(&p).unwrap_err().to_string().contains("normalizer.json"));
        std::fs::write(&p, r#"{"mean": [1.0], "sd": [1.0]}"#).unwrap();
        assert!(Normalizer::load(&p).unwrap_err().to_string().contains("normalizer.json"));
    }

    #[test]
    fn bad_shapes_are_errors() {
        let n = Normalizer::fit(3, [&[1.0f32, 2.0, 3.0][..]]).unwrap();
        assert!(n.apply(&mut [0.0; 4]).is_err());
        assert!(Normalizer::fit(3, std::iter::empty::<&[f32]>()).is_err());
    }

    #[test]
    fn utterance_normalisation_gives_zero_mean_unit_variance() {
        let mut x: Vec<f32> = (0..40).map(|i| (i * i % 17) as f32 * 3.0 + 100.0).collect();
        normalize_utterance(&mut x, 4);
        let (mean, std, _) = stats(4, [&x[..]]);
        for k in 0..4 {
            assert!(mean[k].abs() < 1e-5 && (std[k] - 1.0).abs() < 1e-5, "{mean:?} {std:?}");
        }
    }
}
