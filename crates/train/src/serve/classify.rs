//! A classification run loaded once for serving: tokenizer, model and class names, with the
//! same encoding and numbers as `train predict` and `train inspect`.

use crate::config::{Config, TaskKind};
use crate::inspect::{self, Gate, SentenceTrace};
use crate::rundir::RunDir;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use data::tokenizer::Tok;
use model::classifier::Classifier;

/// A finished classifier run in memory.
pub struct LoadedClassifier {
    /// The run's recorded config.
    pub cfg: Config,
    /// Its tokenizer.
    pub tokenizer: Tok,
    /// The model with the best checkpoint's weights.
    pub net: Classifier,
    /// Class names in label order.
    pub class_names: Vec<String>,
    /// Where it runs.
    pub device: Device,
    /// Trainable parameters.
    pub parameters: usize,
    _varmap: VarMap,
}

impl LoadedClassifier {
    /// Loads `dir`'s best checkpoint.
    pub fn load(dir: &RunDir, cfg: Config) -> Result<Self> {
        if cfg.task != TaskKind::Classify {
            bail!("{} is a {:?} run, not a classifier", dir.root.display(), cfg.task);
        }
        let best = dir.best();
        if !best.exists() {
            bail!("{} has no best checkpoint ({}): has the run finished an epoch?", dir.root.display(), best.display());
        }
        let device = cfg.run.device()?;
        let tok_path = dir.tokenizer();
        let tokenizer = Tok::load(&tok_path).with_context(|| format!("loading {}", tok_path.display()))?;
        let (meta, class_names) = crate::task::classify::read_model_config(&best)?;
        let varmap = VarMap::new();
        let vb = model::init::seeded_var_builder(&varmap, 0, DType::F32, &device);
        let mut net = Classifier::new(&meta, vb)?;
        let ckpt = model::checkpoint::load_into_varmap(&best, &varmap)?;
        if let Some(c) = &ckpt.compressed {
            // An exported run: int8/bf16/sparse kernels (rows stay independent of each other).
            let kernels = net.attach_compressed(c)?;
            crate::export::report_loaded(c, kernels);
        }
        let parameters = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
        Ok(Self { cfg, tokenizer, net, class_names, device, parameters, _varmap: varmap })
    }

    /// A text's ids exactly as `train predict` encodes them (truncated to `data.max_len` when
    /// the run sets it).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        inspect::encode_for_classifier(&self.tokenizer, self.cfg.data.max_len, text)
    }

    /// Every class's probability for each sequence, run as one padded batch. The model masks
    /// by `lengths`, so a row's numbers do not depend on the other rows (`tests/serve_api.rs`
    /// checks them bit for bit against `train predict`).
    pub fn probabilities(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let time = seqs.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
        let mut ids = vec![self.tokenizer.pad_id(); seqs.len() * time];
        for (i, s) in seqs.iter().enumerate() {
            ids[i * time..i * time + s.len()].copy_from_slice(s);
        }
        let lengths: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let ids = Tensor::from_vec(ids, (seqs.len(), time), &self.device)?; // (batch, time)
        let logits = self.net.forward(&ids, &lengths, false, None, false)?.logits;
        Ok(model::classifier::probabilities(&logits)?.to_dtype(DType::F32)?.to_vec2::<f32>()?)
    }

    /// Layers of the LSTM.
    pub fn layers(&self) -> usize {
        self.net.config().lstm.num_layers
    }

    /// Directions of the LSTM (1 or 2).
    pub fn directions(&self) -> usize {
        self.net.config().lstm.num_directions()
    }

    /// Hidden units per direction.
    pub fn hidden(&self) -> usize {
        self.net.config().lstm.hidden_size
    }

    /// `train inspect`'s trace of one text: the gate at `layer`, and every class's probability.
    pub fn trace(&self, text: &str, ids: Vec<u32>, gate: Gate, layer: usize) -> Result<(SentenceTrace, Vec<f32>)> {
        inspect::trace_sentence(&self.net, &self.device, &self.tokenizer, &self.class_names, text, ids, gate, layer)
    }
}
