//! Losses and predictions shared by the tasks and the subcommands (`bench`, `inspect`): the
//! classifiers' cross-entropy and the argmax over the last dimension.

use anyhow::{bail, Result};
use candle_core::{Tensor, D};

/// Mean cross-entropy of `logits` (batch, classes) against `labels`; with class weights,
/// PyTorch's weighted mean Σ wᵧ·lossᵢ / Σ wᵧ.
pub fn cross_entropy(logits: &Tensor, labels: &[u32], class_weights: &[f32]) -> Result<Tensor> {
    let device = logits.device();
    let targets = Tensor::from_slice(labels, labels.len(), device)?;
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?; // (batch,)
    if class_weights.is_empty() {
        return Ok(picked.mean_all()?.neg()?);
    }
    let w: Vec<f32> = labels.iter().map(|&l| class_weights[l as usize]).collect();
    let total: f32 = w.iter().sum();
    if total <= 0.0 {
        bail!("class weights of this batch sum to zero");
    }
    let w = Tensor::from_vec(w, labels.len(), device)?.to_dtype(logits.dtype())?;
    Ok(((picked * w)?.sum_all()? / total as f64)?.neg()?)
}

/// The index of the largest logit of each row.
pub fn argmax(logits: &Tensor) -> Result<Vec<usize>> {
    Ok(logits.argmax(D::Minus1)?.to_vec1::<u32>()?.into_iter().map(|x| x as usize).collect())
}

/// How many rows of `logits` have their largest logit at the row's label.
pub fn correct(logits: &Tensor, labels: &[u32]) -> Result<usize> {
    Ok(argmax(logits)?.iter().zip(labels).filter(|(p, l)| **p as u32 == **l).count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn cross_entropy_matches_the_hand_computed_value() {
        // Row 0: logits (0, ln 3) → p(1) = 3/4; row 1: (0, 0) → p(0) = 1/2.
        let logits = Tensor::new(&[[0f32, 3f32.ln()], [0., 0.]], &Device::Cpu).unwrap();
        let ce = cross_entropy(&logits, &[1, 0], &[]).unwrap().to_scalar::<f32>().unwrap();
        let want = -(0.75f32.ln() + 0.5f32.ln()) / 2.0;
        assert!((ce - want).abs() < 1e-6, "{ce} vs {want}");
        // Weights 1 and 3: (1·(−ln ¾) + 3·(−ln ½)) / 4.
        let w = cross_entropy(&logits, &[1, 0], &[3.0, 1.0]).unwrap().to_scalar::<f32>().unwrap();
        let want = -(0.75f32.ln() + 3.0 * 0.5f32.ln()) / 4.0;
        assert!((w - want).abs() < 1e-6, "{w} vs {want}");
        assert!(cross_entropy(&logits, &[1, 1], &[1.0, 0.0]).is_err());
        assert_eq!(argmax(&logits).unwrap(), vec![1, 0]);
        assert_eq!(correct(&logits, &[1, 1]).unwrap(), 1);
    }
}
