//! Per-step classification of a symbol sequence: one-hot symbols → [`Lstm`] → a linear
//! read-out at every step (the copy task's model). One-hot rather than a learned embedding,
//! as in Arjovsky et al. 2016, so the recurrent cell alone carries the memory.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use model::config::LstmConfig;
//! use model::tagger::{Tagger, TaggerConfig};
//!
//! let cfg = TaggerConfig { vocab_size: 10, num_classes: 10, lstm: LstmConfig::new(10, 32) };
//! let varmap = candle_nn::VarMap::new();
//! let vb = model::init::seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu);
//! let net = Tagger::new(&cfg, vb)?;
//! let ids = Tensor::zeros((2, 30), DType::U32, &Device::Cpu)?;
//! assert_eq!(net.forward(&ids, false, None)?.dims(), &[2, 30, 10]); // (batch, time, classes)
//! # Ok::<(), model::Error>(())
//! ```

use crate::config::LstmConfig;
use crate::rng::SeededRng;
use crate::{Error, Lstm, LstmInput, Result};
use candle_core::{DType, Tensor};
use candle_nn::{Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

/// Configuration of [`Tagger`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaggerConfig {
    /// Input symbols 0..vocab_size, fed one-hot; `lstm.input_size` must equal it.
    pub vocab_size: usize,
    /// Tags (logits per step).
    pub num_classes: usize,
    /// The recurrent layer.
    pub lstm: LstmConfig,
}

impl TaggerConfig {
    /// Checks ranges and that the LSTM reads one-hot symbols; the error names the key.
    pub fn validate(&self) -> Result<()> {
        self.lstm.validate()?;
        if self.lstm.input_size != self.vocab_size {
            return Err(Error::Config {
                key: "lstm.input_size".into(),
                msg: format!(
                    "must equal vocab_size {} (one-hot inputs), got {}",
                    self.vocab_size, self.lstm.input_size
                ),
            });
        }
        if self.num_classes == 0 {
            return Err(Error::Config { key: "num_classes".into(), msg: "must be at least 1".into() });
        }
        Ok(())
    }
}

/// Per-step classifier of symbol sequences: one-hot symbols → [`Lstm`] → linear per step.
pub struct Tagger {
    lstm: Lstm,
    head: Linear,
    eye: Tensor,
    cfg: TaggerConfig,
}

impl Tagger {
    /// Parameters: `lstm.*` (PyTorch names), `head.weight`, `head.bias`.
    pub fn new(cfg: &TaggerConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let lstm = Lstm::new(&cfg.lstm, vb.pp("lstm"))?;
        let head = candle_nn::linear(cfg.lstm.output_size(), cfg.num_classes, vb.pp("head"))?;
        let eye = Tensor::eye(cfg.vocab_size, vb.dtype(), vb.device())?;
        Ok(Self { lstm, head, eye, cfg: cfg.clone() })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &TaggerConfig {
        &self.cfg
    }

    /// `ids`: (batch, time) u32 symbols < vocab_size. Returns logits (batch, time, classes).
    pub fn forward(&self, ids: &Tensor, train: bool, rng: Option<&mut SeededRng>) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if ids.dtype() != DType::U32 {
            return Err(Error::Input(format!("tagger ids must be u32, got {:?}", ids.dtype())));
        }
        let max = ids.max_all()?.to_scalar::<u32>()? as usize;
        if b * t > 0 && max >= self.cfg.vocab_size {
            return Err(Error::Input(format!("symbol {max} is outside the vocabulary of {}", self.cfg.vocab_size)));
        }
        let x = self.eye.index_select(&ids.flatten_all()?, 0)?.reshape((b, t, self.cfg.vocab_size))?;
        let mut input = LstmInput::new();
        if train {
            input = match rng {
                Some(r) => input.train(r),
                None => LstmInput { train: true, ..input },
            };
        }
        let out = self.lstm.forward(&x, &input)?;
        Ok(self.head.forward(&out.output)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::seeded_var_builder;
    use candle_core::Device;

    #[test]
    fn one_hot_matches_a_dense_input() {
        let cfg = TaggerConfig { vocab_size: 4, num_classes: 3, lstm: LstmConfig::new(4, 5) };
        let vm = candle_nn::VarMap::new();
        let net = Tagger::new(&cfg, seeded_var_builder(&vm, 1, DType::F32, &Device::Cpu)).unwrap();
        let ids = Tensor::new(&[[0u32, 3, 1], [2, 2, 0]], &Device::Cpu).unwrap();
        let logits = net.forward(&ids, false, None).unwrap();
        assert_eq!(logits.dims(), &[2, 3, 3]);
        // The same through the layer with an explicit one-hot tensor.
        let mut dense = vec![0f32; 2 * 3 * 4];
        for (i, &s) in [0usize, 3, 1, 2, 2, 0].iter().enumerate() {
            dense[i * 4 + s] = 1.0;
        }
        let x = Tensor::from_vec(dense, (2, 3, 4), &Device::Cpu).unwrap();
        let want = net.head.forward(&net.lstm.forward(&x, &LstmInput::new()).unwrap().output).unwrap();
        let err = (logits - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(err, 0.0);
        let bad = Tensor::new(&[[4u32]], &Device::Cpu).unwrap();
        assert!(net.forward(&bad, false, None).unwrap_err().to_string().contains("outside the vocabulary"));
    }
}
