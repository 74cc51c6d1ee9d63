//! The acoustic model of speech-to-text (Graves et al. 2013, with the subsampling of
//! ESPnet's and deepspeech.pytorch's recipes): feature frames → time subsampling by frame
//! stacking (`stack` consecutive frames concatenated into one, so the recurrent stack runs
//! `stack` times fewer steps) → input dropout → stacked bidirectional [`Lstm`] (the fused
//! kernel) → dropout → linear → log-softmax over the characters and the CTC blank (class 0).
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use model::{config::LstmConfig, speech::{SpeechModel, SpeechModelConfig}};
//! let mut lstm = LstmConfig::new(4 * 40, 32);
//! lstm.bidirectional = true;
//! let cfg = SpeechModelConfig { input_dim: 40, stack: 4, lstm, num_classes: 28, input_dropout: 0.0, head_dropout: 0.0 };
//! let varmap = candle_nn::VarMap::new();
//! let net = SpeechModel::new(&cfg, model::init::seeded_var_builder(&varmap, 42, DType::F32, &Device::Cpu))?;
//! let x = Tensor::zeros((2, 50, 40), DType::F32, &Device::Cpu)?; // (batch, frames, features)
//! let (log_probs, lengths) = net.forward(&x, &[50, 21], false, None)?;
//! assert_eq!(log_probs.dims(), &[2, 13, 28]); // ⌈50 / 4⌉ steps
//! assert_eq!(lengths, vec![13, 6]);
//! # Ok::<(), model::Error>(())
//! ```

use crate::classifier::input_dropout;
use crate::config::LstmConfig;
use crate::rng::SeededRng;
use crate::{Error, Lstm, LstmInput, Result};
use candle_core::{Tensor, D};
use candle_nn::{Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

/// Configuration of [`SpeechModel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeechModelConfig {
    /// Features per input frame.
    pub input_dim: usize,
    /// Frames stacked into one recurrent step (1 = no subsampling).
    pub stack: usize,
    /// The recurrent stack; `lstm.input_size` must be `input_dim · stack`.
    pub lstm: LstmConfig,
    /// Output classes: the blank (0) and the characters.
    pub num_classes: usize,
    /// Dropout on the stacked input frames.
    pub input_dropout: f64,
    /// Dropout before the linear layer.
    pub head_dropout: f64,
}

impl SpeechModelConfig {
    /// Output steps of an utterance of `frames` frames.
    pub fn output_len(&self, frames: usize) -> usize {
        frames.div_ceil(self.stack.max(1))
    }
}

/// BiLSTM acoustic model with a CTC output layer.
pub struct SpeechModel {
    lstm: Lstm,
    head: Linear,
    cfg: SpeechModelConfig,
}

impl SpeechModel {
    /// Parameters: `lstm.*` (PyTorch names), `head.weight`, `head.bias`.
    pub fn new(cfg: &SpeechModelConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.stack == 0 || cfg.input_dim == 0 {
            return Err(Error::Input("speech model: stack and input_dim must be at least 1".into()));
        }
        if cfg.lstm.input_size != cfg.input_dim * cfg.stack {
            return Err(Error::Input(format!(
                "speech model: lstm.input_size {} ≠ input_dim {} × stack {}",
                cfg.lstm.input_size, cfg.input_dim, cfg.stack
            )));
        }
        if cfg.num_classes < 2 {
            return Err(Error::Input("speech model: need the blank and at least one character".into()));
        }
        let lstm = Lstm::new(&cfg.lstm, vb.pp("lstm"))?;
        let head = candle_nn::linear(cfg.lstm.output_size(), cfg.num_classes, vb.pp("head"))?;
        Ok(Self { lstm, head, cfg: cfg.clone() })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &SpeechModelConfig {
        &self.cfg
    }

    /// `frames` (batch, time, input_dim), padded after each utterance's `lengths[i]` (≥ 1)
    /// frames. Returns log-probabilities (batch, ⌈time / stack⌉, classes) and each utterance's
    /// output length ⌈lengths[i] / stack⌉. `rng` draws the dropout masks in training.
    pub fn forward(
        &self,
        frames: &Tensor,
        lengths: &[usize],
        train: bool,
        mut rng: Option<&mut SeededRng>,
    ) -> Result<(Tensor, Vec<usize>)> {
        let c = &self.cfg;
        let (batch, time, dim) = frames.dims3()?;
        if dim != c.input_dim || batch != lengths.len() || lengths.iter().any(|&l| l == 0 || l > time) {
            return Err(Error::Input(format!(
                "speech model: frames {:?} with lengths {lengths:?}: expected (batch = lengths, time ≥ each length ≥ 1, {})",
                frames.dims(),
                c.input_dim
            )));
        }
        // (batch, time, dim) → (batch, time / stack, stack · dim): zero frames pad the tail.
        let steps = time.div_ceil(c.stack);
        let x = if steps * c.stack != time {
            let pad = Tensor::zeros((batch, steps * c.stack - time, dim), frames.dtype(), frames.device())?;
            Tensor::cat(&[frames, &pad], 1)?
        } else {
            frames.clone()
        };
        let x = x.reshape((batch, steps, c.stack * dim))?;
        let out_lengths: Vec<usize> = lengths.iter().map(|&l| c.output_len(l)).collect();
        let x = input_dropout(x, c.input_dropout, false, rng.as_deref_mut(), train, "speech input dropout")?;
        let input = LstmInput::new().lengths(&out_lengths);
        let out = match (train, rng.as_deref_mut()) {
            (true, Some(r)) => {
                let input = input.train(r);
                self.lstm.forward(&x, &input)?
            }
            _ => self.lstm.forward(&x, &input)?,
        };
        let h = input_dropout(out.output, c.head_dropout, false, rng, train, "speech head dropout")?;
        let logits = self.head.forward(&h)?;
        Ok((candle_nn::ops::log_softmax(&logits, D::Minus1)?, out_lengths))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctc::{ctc_loss, CtcOptions};
    use crate::init::seeded_var_builder;
    use candle_core::{DType, Device, IndexOp};
    use candle_nn::VarMap;

    fn cfg() -> SpeechModelConfig {
        let mut lstm = LstmConfig::new(3 * 5, 8);
        lstm.bidirectional = true;
        lstm.num_layers = 2;
        SpeechModelConfig { input_dim: 5, stack: 3, lstm, num_classes: 4, input_dropout: 0.0, head_dropout: 0.0 }
    }

    /// Each row of a padded batch equals the same utterance run alone, and its frames' class
    /// probabilities sum to one.
    #[test]
    fn padding_is_ignored_and_rows_are_distributions() {
        let varmap = VarMap::new();
        let net = SpeechModel::new(&cfg(), seeded_var_builder(&varmap, 3, DType::F32, &Device::Cpu)).unwrap();
        let v: Vec<f32> = (0..2 * 10 * 5).map(|i| ((i * 29 % 97) as f32 / 48.0) - 1.0).collect();
        let x = Tensor::from_vec(v, (2, 10, 5), &Device::Cpu).unwrap();
        let (lp, lens) = net.forward(&x, &[10, 6], false, None).unwrap();
        assert_eq!(lp.dims(), &[2, 4, 4]);
        assert_eq!(lens, vec![4, 2]);
        let alone = net.forward(&x.i((1..2, ..6, ..)).unwrap().contiguous().unwrap(), &[6], false, None).unwrap().0;
        let diff = (lp.i((1..2, ..2, ..)).unwrap() - alone).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        let sums = lp.exp().unwrap().sum(D::Minus1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
    }

    /// A few Adam-free gradient steps on one utterance lower its CTC loss: the op's gradient
    /// reaches the LSTM's parameters.
    #[test]
    fn ctc_gradient_trains_the_model() {
        let varmap = VarMap::new();
        let net = SpeechModel::new(&cfg(), seeded_var_builder(&varmap, 5, DType::F32, &Device::Cpu)).unwrap();
        let v: Vec<f32> = (0..12 * 5).map(|i| ((i * 13 % 31) as f32 / 15.0) - 1.0).collect();
        let x = Tensor::from_vec(v, (1, 12, 5), &Device::Cpu).unwrap();
        let targets = vec![vec![1, 2, 3]];
        let loss_at = |net: &SpeechModel| {
            let (lp, lens) = net.forward(&x, &[12], false, None).unwrap();
            ctc_loss(&lp, &targets, &lens, &CtcOptions::default()).unwrap()
        };
        let first = loss_at(&net).to_scalar::<f32>().unwrap();
        let mut sgd = <candle_nn::SGD as candle_nn::Optimizer>::new(varmap.all_vars(), 0.5).unwrap();
        for _ in 0..30 {
            candle_nn::Optimizer::backward_step(&mut sgd, &loss_at(&net)).unwrap();
        }
        let last = loss_at(&net).to_scalar::<f32>().unwrap();
        assert!(last < 0.5 * first, "{first} → {last}");
    }
}
