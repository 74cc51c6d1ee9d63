//! Sequence classifier over real-valued frames (MFCCs, sensor readings): input dropout →
//! [`Lstm`] over each sequence's real frames → pooling → dropout → linear. The same tail as
//! [`crate::classifier::Classifier`], without the embedding table: frames go straight into
//! the LSTM, so `lstm.input_size` is the number of features per frame.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use model::{classifier::Pooling, config::LstmConfig, frames::{FrameClassifier, FrameClassifierConfig}};
//! let cfg = FrameClassifierConfig {
//!     num_classes: 10, lstm: LstmConfig::new(13, 32), input_dropout: 0.0,
//!     head_dropout: 0.0, variational: false, pooling: Pooling::Mean,
//! };
//! let varmap = candle_nn::VarMap::new();
//! let net = FrameClassifier::new(&cfg, model::init::seeded_var_builder(&varmap, 42, DType::F32, &Device::Cpu))?;
//! let x = Tensor::zeros((2, 50, 13), DType::F32, &Device::Cpu)?; // (batch, frames, features)
//! let out = net.forward(&x, &[50, 31], false, None, false)?;
//! assert_eq!(out.logits.dims(), &[2, 10]);
//! # Ok::<(), model::Error>(())
//! ```

use crate::classifier::{encode_and_classify, input_dropout, ClassifierOutput, Head, Pooling};
use crate::compress::layers::CompressedLinear;
use crate::config::LstmConfig;
use crate::rng::SeededRng;
use crate::{Error, Lstm, Result};
use candle_core::Tensor;
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

/// Configuration of [`FrameClassifier`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameClassifierConfig {
    /// Logits per sequence.
    pub num_classes: usize,
    /// `lstm.input_size` is the number of features per frame.
    pub lstm: LstmConfig,
    /// Dropout on the input features.
    pub input_dropout: f64,
    /// Dropout before the linear head.
    pub head_dropout: f64,
    /// Input dropout with one mask per sequence shared over time.
    pub variational: bool,
    /// How the sequence is summarised for the head.
    pub pooling: Pooling,
}

/// Classifier of frame sequences (e.g. audio features): [`Lstm`] → pooling → dropout → linear.
pub struct FrameClassifier {
    lstm: Lstm,
    head: Linear,
    /// The head on compressed weights for evaluation ([`FrameClassifier::attach_compressed`]).
    head_q: Option<CompressedLinear>,
    cfg: FrameClassifierConfig,
}

impl FrameClassifier {
    /// Runs evaluation-mode forwards on the compressed matrices of `c` (`lstm.*`,
    /// `head.weight`), as [`crate::classifier::Classifier::attach_compressed`] does; returns
    /// whether the LSTM has a compressed kernel.
    pub fn attach_compressed(&mut self, c: &crate::compress::Compressed) -> Result<bool> {
        if let Some(w) = c.matrices.get("head.weight") {
            let bias = match self.head.bias() {
                Some(b) => b.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?,
                None => vec![0.0; w.rows()],
            };
            self.head_q = Some(CompressedLinear { w: w.clone(), bias });
        }
        self.lstm.attach_compressed(c, "lstm")
    }

    /// Parameters: `lstm.*` (PyTorch names), `head.weight`, `head.bias`.
    pub fn new(cfg: &FrameClassifierConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.num_classes == 0 {
            return Err(Error::Input("a frame classifier needs at least one class".into()));
        }
        let lstm = Lstm::new(&cfg.lstm, vb.pp("lstm"))?;
        let head = candle_nn::linear(cfg.lstm.output_size(), cfg.num_classes, vb.pp("head"))?;
        Ok(Self { lstm, head, head_q: None, cfg: cfg.clone() })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &FrameClassifierConfig {
        &self.cfg
    }

    /// The recurrent layer.
    pub fn lstm(&self) -> &Lstm {
        &self.lstm
    }

    /// `frames`: (batch, time, features), padded after each sequence's `lengths[i]` real
    /// frames (≥ 1). `rng` draws the dropout masks and must be given when `train` is true and
    /// any dropout is on.
    pub fn forward(
        &self,
        frames: &Tensor,
        lengths: &[usize],
        train: bool,
        mut rng: Option<&mut SeededRng>,
        trace: bool,
    ) -> Result<ClassifierOutput> {
        let (batch, _, features) = frames.dims3()?;
        if features != self.cfg.lstm.input_size || batch != lengths.len() {
            return Err(Error::Input(format!(
                "frames of shape {:?} with {} lengths: expected (batch = lengths, time, {})",
                frames.dims(),
                lengths.len(),
                self.cfg.lstm.input_size
            )));
        }
        let c = &self.cfg;
        let x =
            input_dropout(frames.clone(), c.input_dropout, c.variational, rng.as_deref_mut(), train, "input dropout")?;
        encode_and_classify(
            &self.lstm,
            Head { dense: &self.head, compressed: self.head_q.as_ref() },
            &c.lstm,
            c.pooling,
            c.head_dropout,
            &x,
            lengths,
            train,
            rng,
            trace,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::{Classifier, ClassifierConfig};
    use crate::init::seeded_var_builder;
    use candle_core::{DType, Device, IndexOp};
    use candle_nn::{Module, VarMap};

    fn cfg(pooling: Pooling, input: usize) -> FrameClassifierConfig {
        let mut lstm = LstmConfig::new(input, 6);
        lstm.bidirectional = true;
        lstm.num_layers = 2;
        FrameClassifierConfig {
            num_classes: 3,
            lstm,
            input_dropout: 0.0,
            head_dropout: 0.0,
            variational: false,
            pooling,
        }
    }

    fn frames(batch: usize, time: usize, dim: usize) -> Tensor {
        let v: Vec<f32> = (0..batch * time * dim).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
        Tensor::from_vec(v, (batch, time, dim), &Device::Cpu).unwrap()
    }

    /// Padding must not change any sequence's logits: each row of a padded batch equals the
    /// same sequence run alone, unpadded, for every pooling.
    #[test]
    fn padding_is_ignored() {
        for pooling in [Pooling::Last, Pooling::Mean, Pooling::Max] {
            let varmap = VarMap::new();
            let net = FrameClassifier::new(&cfg(pooling, 4), seeded_var_builder(&varmap, 7, DType::F32, &Device::Cpu))
                .unwrap();
            let x = frames(3, 9, 4);
            let lengths = [9, 5, 1];
            // Garbage in the padding, to prove it is never read.
            let pad = Tensor::full(100f32, (3, 9, 4), &Device::Cpu).unwrap();
            let mask: Vec<f32> =
                lengths.iter().flat_map(|&l| (0..9).flat_map(move |t| [if t < l { 1.0 } else { 0.0 }; 4])).collect();
            let mask = Tensor::from_vec(mask, (3, 9, 4), &Device::Cpu).unwrap();
            let x_padded = mask.ne(0f32).unwrap().where_cond(&x, &pad).unwrap();
            let batch = net.forward(&x_padded, &lengths, false, None, false).unwrap().logits;
            for (i, &l) in lengths.iter().enumerate() {
                let alone = x.i((i..i + 1, ..l, ..)).unwrap().contiguous().unwrap();
                let one = net.forward(&alone, &[l], false, None, false).unwrap().logits;
                let diff = (batch.i(i..i + 1).unwrap() - one)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(diff < 1e-5, "{pooling:?} row {i}: {diff}");
            }
        }
    }

    /// A frame classifier fed a token classifier's embedded inputs, with the same LSTM and
    /// head weights, gives the token classifier's logits: the shared tail is one code path.
    #[test]
    fn matches_classifier_on_embedded_tokens() {
        let fc = cfg(Pooling::Max, 5);
        let tc = ClassifierConfig {
            vocab_size: 11,
            embedding_dim: 5,
            num_classes: 3,
            lstm: fc.lstm.clone(),
            embedding_dropout: 0.0,
            head_dropout: 0.0,
            variational: false,
            pooling: Pooling::Max,
        };
        let (vm_t, vm_f) = (VarMap::new(), VarMap::new());
        let tok = Classifier::new(&tc, seeded_var_builder(&vm_t, 3, DType::F32, &Device::Cpu)).unwrap();
        let net = FrameClassifier::new(&fc, seeded_var_builder(&vm_f, 3, DType::F32, &Device::Cpu)).unwrap();
        // Copy the shared weights by name.
        let src = vm_t.data().lock().unwrap();
        for (name, var) in vm_f.data().lock().unwrap().iter() {
            var.set(src[name].as_tensor()).unwrap();
        }
        let emb = candle_nn::Embedding::new(src["embedding.weight"].as_tensor().clone(), 5);
        drop(src);
        let ids = Tensor::from_vec(vec![1u32, 4, 9, 2, 3, 7, 0, 0], (2, 4), &Device::Cpu).unwrap();
        let lengths = [4, 2];
        let a = tok.forward(&ids, &lengths, false, None, false).unwrap().logits;
        let b = net.forward(&emb.forward(&ids).unwrap(), &lengths, false, None, false).unwrap().logits;
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0);
    }

    #[test]
    fn dropout_needs_rng_and_shape_is_checked() {
        let mut c = cfg(Pooling::Last, 4);
        c.input_dropout = 0.3;
        let varmap = VarMap::new();
        let net = FrameClassifier::new(&c, seeded_var_builder(&varmap, 1, DType::F32, &Device::Cpu)).unwrap();
        let x = frames(2, 3, 4);
        let err = |r: Result<ClassifierOutput>| r.err().expect("an error").to_string();
        assert!(err(net.forward(&x, &[3, 2], true, None, false)).contains("input dropout"));
        let mut rng = SeededRng::new(1, "dropout");
        net.forward(&x, &[3, 2], true, Some(&mut rng), false).unwrap();
        let e = err(net.forward(&frames(2, 3, 5), &[3, 2], false, None, false));
        assert!(e.contains("expected (batch = lengths, time, 4)"), "{e}");
    }
}
