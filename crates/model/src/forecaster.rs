//! Sequence regression: an [`Lstm`] encoder over an input window, then either a direct
//! multi-horizon linear head (all `horizon` steps from the encoder's final state at once) or
//! a seq2seq decoder (an LSTM unrolled `horizon` steps, each step fed its previous output),
//! with optional reversible instance normalisation (RevIN, Kim et al. 2022).
//!
//! Used for ETT forecasting and, with `horizon = 1` and no RevIN, for the adding problem.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use model::config::LstmConfig;
//! use model::forecaster::{Decoder, Forecaster, ForecasterConfig};
//!
//! let cfg = ForecasterConfig::new(LstmConfig::new(1, 16), 1, 24);
//! let varmap = candle_nn::VarMap::new();
//! let vb = model::init::seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu);
//! let net = Forecaster::new(&cfg, vb)?;
//! let x = Tensor::zeros((4, 96, 1), DType::F32, &Device::Cpu)?; // (batch, input_len, in_features)
//! assert_eq!(net.forward(&x, false, None)?.dims(), &[4, 24, 1]); // (batch, horizon, out_features)
//! # Ok::<(), model::Error>(())
//! ```

use crate::config::LstmConfig;
use crate::rng::SeededRng;
use crate::{Error, Lstm, LstmInput, LstmState, Result};
use candle_core::{DType, Tensor};
use candle_nn::{Init, Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

/// RevIN's ε: added to the per-window variance (and to |γ| when undoing the affine map).
pub const REVIN_EPS: f64 = 1e-5;

/// How the horizon is produced from the encoded window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Decoder {
    /// One linear map from the encoder's final hidden state(s) to all horizon steps.
    #[default]
    Direct,
    /// An LSTM decoder started from the encoder's final states, fed the last observed target
    /// values and then its own previous outputs, with a linear read-out per step.
    Seq2seq,
}

/// Configuration of [`Forecaster`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecasterConfig {
    /// The encoder; `lstm.input_size` is the number of input features per step.
    pub lstm: LstmConfig,
    /// Target features per horizon step.
    pub out_features: usize,
    /// Steps predicted after the input window.
    pub horizon: usize,
    /// How the horizon is produced from the encoder.
    pub decoder: Decoder,
    /// Per-window instance normalisation of the value columns (RevIN).
    pub revin: bool,
    /// RevIN's learnable per-column affine map (γ, β).
    pub revin_affine: bool,
    /// Input columns 0..value_features are values (RevIN normalises them); the rest (calendar
    /// features) pass through unchanged.
    pub value_features: usize,
    /// For each output feature, the input column holding the same series: its window
    /// statistics undo RevIN on that output, and its last value starts the seq2seq decoder.
    pub target_columns: Vec<usize>,
    /// Dropout on the encoder state before the head / decoder, in [0, 1).
    pub head_dropout: f64,
}

impl ForecasterConfig {
    /// Univariate-shaped defaults: every input column is a value, output j is input column j,
    /// direct head, no RevIN.
    pub fn new(lstm: LstmConfig, out_features: usize, horizon: usize) -> Self {
        let value_features = lstm.input_size;
        Self {
            lstm,
            out_features,
            horizon,
            decoder: Decoder::Direct,
            revin: false,
            revin_affine: true,
            value_features,
            target_columns: (0..out_features).collect(),
            head_dropout: 0.0,
        }
    }

    /// Checks ranges; the error names the offending key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, msg: String| Err(Error::Config { key: key.to_string(), msg });
        self.lstm.validate()?;
        if self.out_features == 0 {
            return bad("out_features", "must be at least 1".into());
        }
        if self.horizon == 0 {
            return bad("horizon", "must be at least 1".into());
        }
        if self.value_features > self.lstm.input_size {
            return bad(
                "value_features",
                format!("{} value columns but only {} input features", self.value_features, self.lstm.input_size),
            );
        }
        if self.target_columns.len() != self.out_features {
            return bad(
                "target_columns",
                format!("{} entries for {} output features", self.target_columns.len(), self.out_features),
            );
        }
        if let Some(c) = self.target_columns.iter().find(|&&c| c >= self.value_features) {
            return bad("target_columns", format!("column {c} is not a value column (< {})", self.value_features));
        }
        if self.decoder == Decoder::Seq2seq && self.lstm.bidirectional {
            return bad(
                "bidirectional",
                "the seq2seq decoder needs a unidirectional encoder (its states start the decoder)".into(),
            );
        }
        if !(0.0..1.0).contains(&self.head_dropout) {
            return bad("head_dropout", format!("must be in [0, 1), got {}", self.head_dropout));
        }
        Ok(())
    }
}

/// Per-window statistics of the value columns, each (batch, 1, value_features).
#[derive(Debug, Clone)]
pub struct WindowStats {
    /// Mean over the window's steps.
    pub mean: Tensor,
    /// Standard deviation over the window's steps.
    pub std: Tensor,
}

/// Sequence regression: an [`Lstm`] encoder over an input window, then a direct linear head
/// or a step-by-step LSTM decoder over the horizon.
pub struct Forecaster {
    encoder: Lstm,
    head: Option<Linear>,
    decoder: Option<(Lstm, Linear)>,
    /// RevIN's γ and β, each (value_features,).
    revin_affine: Option<(Tensor, Tensor)>,
    target_index: Tensor,
    cfg: ForecasterConfig,
}

impl Forecaster {
    /// Parameters: `encoder.*` (PyTorch LSTM names); `head.weight`, `head.bias` (direct) or
    /// `decoder.*`, `projection.weight`, `projection.bias` (seq2seq); `revin.weight`,
    /// `revin.bias` with an affine RevIN.
    pub fn new(cfg: &ForecasterConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let encoder = Lstm::new(&cfg.lstm, vb.pp("encoder"))?;
        let (head, decoder) = match cfg.decoder {
            Decoder::Direct => {
                let head = candle_nn::linear(cfg.lstm.output_size(), cfg.horizon * cfg.out_features, vb.pp("head"))?;
                (Some(head), None)
            }
            Decoder::Seq2seq => {
                let mut dcfg = cfg.lstm.clone();
                dcfg.input_size = cfg.out_features;
                let dec = Lstm::new(&dcfg, vb.pp("decoder"))?;
                let proj = candle_nn::linear(cfg.lstm.hidden_size, cfg.out_features, vb.pp("projection"))?;
                (None, Some((dec, proj)))
            }
        };
        let revin_affine = if cfg.revin && cfg.revin_affine {
            let w = vb.get_with_hints(cfg.value_features, "revin.weight", Init::Const(1.0))?;
            let b = vb.get_with_hints(cfg.value_features, "revin.bias", Init::Const(0.0))?;
            Some((w, b))
        } else {
            None
        };
        let idx: Vec<u32> = cfg.target_columns.iter().map(|&c| c as u32).collect();
        let target_index = Tensor::from_vec(idx, cfg.out_features, vb.device())?;
        Ok(Self { encoder, head, decoder, revin_affine, target_index, cfg: cfg.clone() })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &ForecasterConfig {
        &self.cfg
    }

    /// The encoder layer.
    pub fn encoder(&self) -> &Lstm {
        &self.encoder
    }

    /// RevIN's first half: per-window mean and standard deviation over time of the value
    /// columns (held constant for the gradient, as in the reference code), and the
    /// normalised (and, when affine, scaled and shifted) input.
    pub fn revin_normalize(&self, x: &Tensor) -> Result<(Tensor, WindowStats)> {
        let v = self.cfg.value_features;
        let values = x.narrow(2, 0, v)?; // (batch, time, v)
        let mean = values.mean_keepdim(1)?.detach(); // (batch, 1, v)
        let centred = values.broadcast_sub(&mean)?;
        let std = (centred.sqr()?.mean_keepdim(1)? + REVIN_EPS)?.sqrt()?.detach();
        let mut normed = centred.broadcast_div(&std)?;
        if let Some((w, b)) = &self.revin_affine {
            normed = normed.broadcast_mul(w)?.broadcast_add(b)?;
        }
        let normed = if v < x.dim(2)? { Tensor::cat(&[&normed, &x.narrow(2, v, x.dim(2)? - v)?], 2)? } else { normed };
        Ok((normed, WindowStats { mean, std }))
    }

    /// RevIN's second half on a (batch, horizon, out_features) prediction: each output
    /// column is mapped back with the statistics of its input column.
    pub fn revin_denormalize(&self, y: &Tensor, stats: &WindowStats) -> Result<Tensor> {
        let mut y = y.clone();
        if let Some((w, b)) = &self.revin_affine {
            let w = w.index_select(&self.target_index, 0)?;
            let b = b.index_select(&self.target_index, 0)?;
            y = y.broadcast_sub(&b)?.broadcast_div(&(w + REVIN_EPS * REVIN_EPS)?)?;
        }
        let std = stats.std.index_select(&self.target_index, 2)?;
        let mean = stats.mean.index_select(&self.target_index, 2)?;
        Ok(y.broadcast_mul(&std)?.broadcast_add(&mean)?)
    }

    /// `x`: (batch, input_len, in_features). Returns (batch, horizon, out_features) on the
    /// scale of `x`'s value columns. `rng` draws dropout masks and must be given when
    /// `train` and any dropout is on.
    pub fn forward(&self, x: &Tensor, train: bool, mut rng: Option<&mut SeededRng>) -> Result<Tensor> {
        let (batch, time, _) = x.dims3()?;
        let (x, stats) = if self.cfg.revin {
            let (n, s) = self.revin_normalize(x)?;
            (n, Some(s))
        } else {
            (x.clone(), None)
        };
        let enc = {
            let mut input = LstmInput::new();
            if train {
                input = match rng.as_deref_mut() {
                    Some(r) => input.train(r),
                    None => LstmInput { train: true, ..input },
                };
            }
            self.encoder.forward(&x, &input)?
        };
        let p = self.cfg.head_dropout;
        let drop = |t: Tensor, rng: &mut Option<&mut SeededRng>| -> Result<Tensor> {
            if train && p > 0.0 {
                let r = rng.as_deref_mut().ok_or_else(|| {
                    Error::Input("head dropout is on in training mode but no dropout RNG was given".into())
                })?;
                let mask = r.dropout_mask(t.shape(), p, t.dtype(), t.device())?;
                Ok((t * mask)?)
            } else {
                Ok(t)
            }
        };
        let (h, o) = (self.cfg.horizon, self.cfg.out_features);
        let y = match (&self.head, &self.decoder) {
            (Some(head), _) => {
                let dirs = self.cfg.lstm.num_directions();
                let top = (self.cfg.lstm.num_layers - 1) * dirs;
                let hs: Vec<Tensor> = enc.final_states[top..top + dirs].iter().map(|s| s.h.clone()).collect();
                let feats = drop(Tensor::cat(&hs, 1)?, &mut rng)?; // (batch, dirs*hidden)
                head.forward(&feats)?.reshape((batch, h, o))?
            }
            (None, Some((dec, proj))) => {
                // Last observed value of each target series starts the decoder.
                let mut prev = x.narrow(1, time - 1, 1)?.contiguous()?.index_select(&self.target_index, 2)?; // (batch, 1, o)
                let mut states: Vec<LstmState> = enc.final_states;
                let mut outs = Vec::with_capacity(h);
                for _ in 0..h {
                    let step = dec.forward(&prev, &LstmInput::new().initial(states))?;
                    states = step.final_states;
                    let top = states.last().expect("at least one layer").h.clone();
                    let y = proj.forward(&drop(top, &mut rng)?)?.unsqueeze(1)?; // (batch, 1, o)
                    outs.push(y.clone());
                    prev = y;
                }
                Tensor::cat(&outs, 1)?
            }
            _ => unreachable!("built with exactly one of head and decoder"),
        };
        match &stats {
            Some(s) => self.revin_denormalize(&y, s),
            None => Ok(y),
        }
    }
}

/// Mean squared error over every element, as a scalar tensor.
pub fn mse_loss(prediction: &Tensor, target: &Tensor) -> Result<Tensor> {
    Ok((prediction - target)?.sqr()?.mean_all()?)
}

/// Element-wise squared and absolute errors summed over the batch, per (step, feature):
/// two (horizon·out_features) vectors in f64, for metrics accumulated over many batches.
pub fn error_sums(prediction: &Tensor, target: &Tensor) -> Result<(Vec<f64>, Vec<f64>)> {
    let d = (prediction - target)?.to_dtype(DType::F64)?;
    let sq = d.sqr()?.sum(0)?.flatten_all()?.to_vec1::<f64>()?;
    let ab = d.abs()?.sum(0)?.flatten_all()?.to_vec1::<f64>()?;
    Ok((sq, ab))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::seeded_var_builder;
    use candle_core::{Device, Var};
    use candle_nn::VarMap;

    fn lstm(input: usize, hidden: usize) -> LstmConfig {
        let mut c = LstmConfig::new(input, hidden);
        c.fused = false;
        c
    }

    fn build(cfg: &ForecasterConfig, dtype: DType) -> (VarMap, Forecaster) {
        let vm = VarMap::new();
        let vb = seeded_var_builder(&vm, 3, dtype, &Device::Cpu);
        let net = Forecaster::new(cfg, vb).unwrap();
        (vm, net)
    }

    fn input(b: usize, t: usize, f: usize, dtype: DType) -> Tensor {
        let mut rng = SeededRng::new(1, "x");
        let v = rng.normal_vec(b * t * f, 0.5, 2.0);
        Tensor::from_vec(v, (b, t, f), &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
    }

    #[test]
    fn shapes_direct_and_seq2seq() {
        for decoder in [Decoder::Direct, Decoder::Seq2seq] {
            let mut cfg = ForecasterConfig::new(lstm(3, 5), 2, 7);
            cfg.decoder = decoder;
            cfg.revin = true;
            cfg.lstm.num_layers = 2;
            let (_, net) = build(&cfg, DType::F32);
            assert_eq!(net.forward(&input(4, 6, 3, DType::F32), false, None).unwrap().dims(), &[4, 7, 2]);
        }
    }

    #[test]
    fn revin_round_trip_is_identity() {
        let mut cfg = ForecasterConfig::new(lstm(3, 4), 3, 5);
        cfg.revin = true;
        let (vm, net) = build(&cfg, DType::F64);
        // A non-trivial affine map, so the round trip exercises γ and β too.
        for (name, v) in [("revin.weight", vec![0.5, 2.0, -1.5]), ("revin.bias", vec![0.1, -0.3, 0.7])] {
            let var = vm.data().lock().unwrap()[name].clone();
            var.set(&Tensor::new(v, &Device::Cpu).unwrap()).unwrap();
        }
        let x = input(2, 9, 3, DType::F64);
        let (n, stats) = net.revin_normalize(&x).unwrap();
        let back = net.revin_denormalize(&n, &stats).unwrap();
        let err = (back - &x).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
        assert!(err < 1e-9, "{err}");
        // Without affine, each normalised column has mean 0 and variance 1 (up to ε).
        let plain = ForecasterConfig { revin_affine: false, ..cfg };
        let (_, net) = build(&plain, DType::F64);
        let (n, _) = net.revin_normalize(&x).unwrap();
        let m = n.mean_keepdim(1).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
        let v = n.sqr().unwrap().mean_keepdim(1).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert!(m < 1e-12, "{m}");
        assert!(v.iter().all(|v| (v - 1.0).abs() < 1e-4), "{v:?}");
    }

    /// With RevIN the forecast moves with the window: f(a·x + c) = a·f(x) + c for a > 0.
    #[test]
    fn revin_makes_forecasts_shift_and_scale_equivariant() {
        for decoder in [Decoder::Direct, Decoder::Seq2seq] {
            let mut cfg = ForecasterConfig::new(lstm(2, 6), 2, 4);
            cfg.revin = true;
            cfg.decoder = decoder;
            let (_, net) = build(&cfg, DType::F64);
            let x = input(3, 8, 2, DType::F64);
            let y = net.forward(&x, false, None).unwrap();
            let y2 = net.forward(&((&x * 3.0).unwrap() + 10.0).unwrap(), false, None).unwrap();
            let want = ((y * 3.0).unwrap() + 10.0).unwrap();
            let err = (y2 - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
            // ε in the variance breaks exact equivariance at the 1e-6 level.
            assert!(err < 1e-4, "{decoder:?}: {err}");
        }
    }

    /// Autograd gradients of the MSE loss against central differences, in f64, for every
    /// parameter of a small model (both decoders, RevIN with a calendar column).
    #[test]
    fn gradients_match_finite_differences() {
        for decoder in [Decoder::Direct, Decoder::Seq2seq] {
            let mut cfg = ForecasterConfig::new(lstm(3, 3), 1, 3);
            cfg.decoder = decoder;
            cfg.revin = true;
            cfg.value_features = 2;
            cfg.target_columns = vec![1];
            let (vm, net) = build(&cfg, DType::F64);
            let x = input(2, 5, 3, DType::F64);
            let y = input(2, 3, 1, DType::F64);
            let loss = |net: &Forecaster| mse_loss(&net.forward(&x, false, None).unwrap(), &y).unwrap();
            let grads = loss(&net).backward().unwrap();
            let vars: Vec<(String, Var)> =
                vm.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            for (name, var) in vars {
                let g = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
                let base = var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
                for i in 0..base.len() {
                    let eps = 1e-6;
                    let at = |d: f64| {
                        let mut v = base.clone();
                        v[i] += d;
                        var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap()).unwrap();
                        loss(&net).to_scalar::<f64>().unwrap()
                    };
                    let fd = (at(eps) - at(-eps)) / (2.0 * eps);
                    var.set(&Tensor::from_vec(base.clone(), var.shape(), &Device::Cpu).unwrap()).unwrap();
                    assert!(
                        (fd - g[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                        "{decoder:?} {name}[{i}]: fd {fd} autograd {}",
                        g[i]
                    );
                }
            }
        }
    }

    #[test]
    fn bad_configs_are_named() {
        let mut cfg = ForecasterConfig::new(lstm(2, 3), 1, 4);
        cfg.target_columns = vec![5];
        assert!(cfg.validate().unwrap_err().to_string().contains("target_columns"));
        let mut cfg = ForecasterConfig::new(lstm(2, 3), 1, 4);
        cfg.decoder = Decoder::Seq2seq;
        cfg.lstm.bidirectional = true;
        assert!(cfg.validate().unwrap_err().to_string().contains("bidirectional"));
    }

    #[test]
    fn error_sums_per_step_and_feature() {
        let p = Tensor::new(&[[[1f32, 2.], [3., 4.]], [[0., 0.], [1., 1.]]], &Device::Cpu).unwrap();
        let t = Tensor::zeros((2, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let (sq, ab) = error_sums(&p, &t).unwrap();
        assert_eq!(sq, vec![1.0, 4.0, 10.0, 17.0]);
        assert_eq!(ab, vec![1.0, 2.0, 4.0, 5.0]);
    }
}
