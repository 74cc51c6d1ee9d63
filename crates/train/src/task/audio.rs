//! Spoken-digit recognition (`task = "audio"`, FSDD): recordings in `data.dir` → MFCC frames
//! (`data::audio`, settings in `[audio]`) → train-set normalisation → length-bucketed padded
//! batches → [`FrameClassifier`] → cross-entropy; accuracy, P/R/F1, the confusion matrix and
//! accuracy per speaker; prediction on WAV files.
//!
//! The normaliser fitted on the training split is stored in the run directory as
//! `normalizer.json`; `eval`, `resume` and `predict` apply that stored one rather than fitting
//! again, so a run keeps scoring the features it was trained on.

use super::{Registration, SplitName, StepOutput, Task};
use crate::config::Config;
use crate::loss::{argmax, correct, cross_entropy};
use crate::metrics::Confusion;
use crate::rundir::RunDir;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarMap;
use data::audio::{AudioExample, FsddCorpus, Normalization, Normalizer};
use data::batch::{BatchOptions, BatchOrder};
use model::frames::{FrameClassifier, FrameClassifierConfig};
use model::rng::SeededRng;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The run directory's train-set normaliser (`{"mean": [...], "std": [...]}`).
pub const NORMALIZER_FILE: &str = "normalizer.json";

const NUM_CLASSES: usize = 10;

/// How the registry builds this task and predicts with its runs.
pub const REGISTRATION: Registration = Registration {
    build: |cfg, dir, existing_run| Ok(Box::new(AudioTask::new(cfg, dir, existing_run)?)),
    predict: predict_cli,
};

fn class_names() -> Vec<String> {
    (0..NUM_CLASSES).map(|d| d.to_string()).collect()
}

/// Where a run keeps its train-set normaliser.
pub fn normalizer_path(dir: &RunDir) -> PathBuf {
    dir.root.join(NORMALIZER_FILE)
}

/// A padded batch of feature frames.
pub struct FrameBatch {
    /// (batch, time, dim) row-major, zero after each example's `lengths[i]` frames.
    pub frames: Vec<f32>,
    /// Examples in the batch.
    pub batch: usize,
    /// Frames of the longest example.
    pub time: usize,
    /// Features per frame.
    pub dim: usize,
    /// Frames of each example.
    pub lengths: Vec<usize>,
    /// Digit of each example.
    pub labels: Vec<u32>,
    /// Indices into the split's examples, in batch order.
    pub examples: Vec<usize>,
}

impl FrameBatch {
    /// The examples at `indices` as one batch, zero-padded to the longest.
    pub fn gather(examples: &[AudioExample], dim: usize, indices: &[usize]) -> Self {
        let lengths: Vec<usize> = indices.iter().map(|&i| examples[i].frames).collect();
        let time = lengths.iter().copied().max().unwrap_or(0).max(1);
        let mut frames = vec![0f32; indices.len() * time * dim];
        for (row, &i) in indices.iter().enumerate() {
            let f = &examples[i].features;
            frames[row * time * dim..row * time * dim + f.len()].copy_from_slice(f);
        }
        FrameBatch {
            frames,
            batch: indices.len(),
            time,
            dim,
            lengths,
            labels: indices.iter().map(|&i| examples[i].label as u32).collect(),
            examples: indices.to_vec(),
        }
    }

    /// The frames as a (batch, time, dim) tensor.
    pub fn tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(&self.frames, (self.batch, self.time, self.dim), device)?)
    }
}

/// One split: its examples and their batch order (length buckets, seeded for training).
pub struct Split {
    /// The split's featurised recordings.
    pub examples: Vec<AudioExample>,
    order: BatchOrder,
}

impl Split {
    fn new(examples: Vec<AudioExample>, opts: &BatchOptions) -> Result<Self> {
        let keys = examples.iter().map(|e| e.frames as u64).collect();
        Ok(Self { order: BatchOrder::new(keys, opts)?, examples })
    }

    /// Batches of `epoch` (shuffled only for training).
    pub fn batches(&self, epoch: usize, dim: usize) -> Vec<FrameBatch> {
        self.order.plan(epoch as u64).iter().map(|ix| FrameBatch::gather(&self.examples, dim, ix)).collect()
    }
}

/// Loads and featurises the corpus. A new run fits the normaliser on the training split and
/// writes it to the run directory; an existing run applies the one it stored.
pub fn load_corpus(cfg: &Config, dir: &RunDir, existing_run: bool) -> Result<FsddCorpus> {
    let folder = cfg
        .data
        .dir
        .clone()
        .ok_or_else(|| anyhow!("config key `data.dir`: corpus `fsdd` needs the folder of recordings"))?;
    let mut fsdd = cfg.audio.fsdd(folder.clone());
    let stored = normalizer_path(dir);
    let reuse = existing_run && cfg.audio.normalization == Normalization::TrainSet && stored.exists();
    if reuse {
        fsdd.normalization = Normalization::None;
    }
    let mut corpus = data::audio::load_fsdd(&fsdd, cfg.run.seed)
        .with_context(|| format!("loading the FSDD recordings in {} (config key `data.dir`)", folder.display()))?;
    if reuse {
        let n = Normalizer::load(&stored)?;
        if n.dim() != corpus.dim {
            bail!("{}: {} coefficients, but the features have {}", stored.display(), n.dim(), corpus.dim);
        }
        for e in corpus.train.iter_mut().chain(&mut corpus.validation).chain(&mut corpus.test) {
            n.apply(&mut e.features)?;
        }
        corpus.normalizer = Some(n);
    } else if let Some(n) = &corpus.normalizer {
        crate::atomic::write_json(&stored, n)?;
    }
    if !corpus.ignored.is_empty() {
        tracing::info!("{}: ignored {} entries that are not .wav files", folder.display(), corpus.ignored.len());
    }
    Ok(corpus)
}

/// The model config from `[model]` for features of width `dim`.
pub fn model_config(cfg: &Config, dim: usize) -> FrameClassifierConfig {
    let m = &cfg.model;
    FrameClassifierConfig {
        num_classes: NUM_CLASSES,
        lstm: m.lstm(dim),
        input_dropout: m.embedding_dropout,
        head_dropout: m.head_dropout,
        variational: m.variational,
        pooling: m.pooling,
    }
}

/// The spoken-digit task: featurised splits plus the model.
pub struct AudioTask {
    model_config: FrameClassifierConfig,
    net: FrameClassifier,
    varmap: VarMap,
    device: Device,
    dim: usize,
    sample_rate: u32,
    train: Split,
    validation: Split,
    test: Split,
    class_weights: Vec<f32>,
    epoch_batches: Vec<FrameBatch>,
}

impl AudioTask {
    /// Loads and featurises the corpus and builds the model (seeded by `run.seed`).
    pub fn new(cfg: &Config, dir: &RunDir, existing_run: bool) -> Result<Self> {
        let device = cfg.run.device()?;
        let corpus = load_corpus(cfg, dir, existing_run)?;
        if corpus.train.is_empty() {
            bail!("{}: the training split is empty", dir.root.display());
        }
        let mut counts = vec![0usize; NUM_CLASSES];
        for e in &corpus.train {
            counts[e.label.min(NUM_CLASSES - 1)] += 1;
        }
        let class_weights = cfg.train.class_weights.resolve(&counts);
        if !class_weights.is_empty() && class_weights.len() != NUM_CLASSES {
            bail!(
                "config key `train.class_weights`: expected {NUM_CLASSES} weights (one per digit), got {}",
                class_weights.len()
            );
        }
        let opts = |shuffle| BatchOptions {
            batch_size: cfg.train.batch_size,
            seed: cfg.run.seed,
            pool: cfg.data.bucket_pool,
            shuffle,
            drop_last: false,
            max_len: None,
        };
        let model_config = model_config(cfg, corpus.dim);
        let varmap = VarMap::new();
        let vb = model::init::seeded_var_builder(&varmap, cfg.run.seed, DType::F32, &device);
        let net = FrameClassifier::new(&model_config, vb).context("building the model")?;
        tracing::info!(
            train = corpus.train.len(),
            validation = corpus.validation.len(),
            test = corpus.test.len(),
            dim = corpus.dim,
            "FSDD corpus"
        );
        Ok(Self {
            model_config,
            net,
            varmap,
            device,
            dim: corpus.dim,
            sample_rate: corpus.sample_rate,
            train: Split::new(corpus.train, &opts(true))?,
            validation: Split::new(corpus.validation, &opts(false))?,
            test: Split::new(corpus.test, &opts(false))?,
            class_weights,
            epoch_batches: Vec::new(),
        })
    }

    fn split(&self, split: SplitName) -> &Split {
        match split {
            SplitName::Train => &self.train,
            SplitName::Validation => &self.validation,
            SplitName::Test => &self.test,
        }
    }
}

impl Task for AudioTask {
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn penalised(&self, name: &str) -> bool {
        !name.contains("bias")
    }

    fn start_epoch(&mut self, epoch: usize) -> Result<usize> {
        self.epoch_batches = self.train.batches(epoch, self.dim);
        Ok(self.epoch_batches.len())
    }

    fn train_step(&self, index: usize, rng: &mut SeededRng) -> Result<StepOutput> {
        let b = &self.epoch_batches[index];
        let out = self.net.forward(&b.tensor(&self.device)?, &b.lengths, true, Some(rng), false)?;
        let loss = cross_entropy(&out.logits, &b.labels, &self.class_weights)?;
        let correct = correct(&out.logits, &b.labels)?;
        Ok(StepOutput { loss, examples: b.batch, tokens: b.lengths.iter().sum(), correct: Some(correct) })
    }

    /// Loss, accuracy, precision/recall/F1 per digit, the confusion matrix, and
    /// `speaker_accuracy` (accuracy per speaker present in the split).
    fn evaluate(&self, split: SplitName) -> Result<Map<String, Value>> {
        let s = self.split(split);
        let mut confusion = Confusion::new(NUM_CLASSES);
        let mut per_speaker: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let (mut loss_sum, mut n) = (0.0f64, 0usize);
        for b in s.batches(0, self.dim) {
            let out = self.net.forward(&b.tensor(&self.device)?, &b.lengths, false, None, false)?;
            let loss = cross_entropy(&out.logits, &b.labels, &[])?;
            loss_sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * b.batch as f64;
            n += b.batch;
            for ((p, l), &i) in argmax(&out.logits)?.iter().zip(&b.labels).zip(&b.examples) {
                confusion.add(*l as usize, *p);
                let e = per_speaker.entry(s.examples[i].speaker.as_str()).or_default();
                e.0 += usize::from(*p as u32 == *l);
                e.1 += 1;
            }
        }
        let mut m = Map::new();
        m.insert("loss".into(), json!(loss_sum / n.max(1) as f64));
        m.extend(confusion.to_json(&class_names()));
        let speakers: Map<String, Value> =
            per_speaker.into_iter().map(|(k, (c, t))| (k.to_string(), json!(c as f64 / t as f64))).collect();
        m.insert("speaker_accuracy".into(), Value::Object(speakers));
        Ok(m)
    }

    fn checkpoint_meta(&self) -> Value {
        json!({"kind": "frame_classifier", "model": &self.model_config, "class_names": class_names(),
               "sample_rate": self.sample_rate, "feature_dim": self.dim})
    }
}

/// One file's prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The most probable digit.
    pub digit: usize,
    /// Its probability.
    pub probability: f32,
    /// Probability of each digit 0–9.
    pub probabilities: Vec<f32>,
}

/// What `predict` needs from a checkpoint's metadata.
struct Meta {
    model: FrameClassifierConfig,
    sample_rate: u32,
}

fn read_meta(path: &Path) -> Result<Meta> {
    let ckpt = model::checkpoint::read(path, &Device::Cpu)?;
    let meta = ckpt
        .config
        .ok_or_else(|| anyhow!("{}: no model config in the metadata (not a sluice checkpoint)", path.display()))?;
    if meta["kind"] != "frame_classifier" {
        bail!("{}: a {} checkpoint, expected a frame_classifier", path.display(), meta["kind"]);
    }
    let model = serde_json::from_value(meta["model"].clone())
        .with_context(|| format!("{}: model config in metadata", path.display()))?;
    let sample_rate = meta["sample_rate"]
        .as_u64()
        .and_then(|r| u32::try_from(r).ok())
        .ok_or_else(|| anyhow!("{}: no sample_rate in the metadata", path.display()))?;
    Ok(Meta { model, sample_rate })
}

/// Digit and probabilities for each WAV file, from a finished run's best checkpoint, with the
/// run's front end and stored normaliser.
pub fn predict(dir: &RunDir, cfg: &Config, files: &[PathBuf]) -> Result<Vec<Prediction>> {
    let m = LoadedAudio::load(dir, cfg)?;
    let examples = files.iter().map(|p| m.example(&data::audio::read_wav(p)?, p)).collect::<Result<Vec<_>>>()?;
    m.predict_examples(&examples)
}

/// A finished audio classification run in memory: `train predict` loads one per call,
/// `train serve` once.
pub struct LoadedAudio {
    cfg: Config,
    meta: Meta,
    normalizer: Option<Normalizer>,
    net: FrameClassifier,
    device: Device,
    /// Trainable parameters.
    pub parameters: usize,
    _varmap: VarMap,
}

impl LoadedAudio {
    /// Loads the run's best checkpoint and, for `normalization = "train_set"`, its normaliser.
    pub fn load(dir: &RunDir, cfg: &Config) -> Result<Self> {
        let device = cfg.run.device()?;
        let meta = read_meta(&dir.best())?;
        let normalizer = match cfg.audio.normalization {
            Normalization::TrainSet => {
                let p = normalizer_path(dir);
                if !p.exists() {
                    bail!(
                        "{}: missing; the run was trained with audio.normalization = \"train_set\" and needs it",
                        p.display()
                    );
                }
                Some(Normalizer::load(&p)?)
            }
            _ => None,
        };
        let varmap = VarMap::new();
        let net = FrameClassifier::new(&meta.model, model::init::seeded_var_builder(&varmap, 0, DType::F32, &device))?;
        model::checkpoint::load_into_varmap(dir.best(), &varmap)?;
        let parameters = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
        Ok(Self { cfg: cfg.clone(), meta, normalizer, net, device, parameters, _varmap: varmap })
    }

    /// The class names (digits 0–9).
    pub fn class_names(&self) -> Vec<String> {
        class_names()
    }

    /// The model's geometry: (layers, directions, hidden units per direction).
    pub fn geometry(&self) -> (usize, usize, usize) {
        let l = &self.meta.model.lstm;
        (l.num_layers, l.num_directions(), l.hidden_size)
    }

    /// A decoded WAV's features as the run computes them; `path` (a file or a request part)
    /// names it in errors.
    pub fn example(&self, wav: &data::audio::Wav, path: &Path) -> Result<AudioExample> {
        let (cfg, meta) = (&self.cfg, &self.meta);
        let dim = meta.model.lstm.input_size;
        // The front end follows the file's own rate; a model trained at another rate would see
        // frames of a different length and band layout, so refuse rather than guess.
        if wav.sample_rate != meta.sample_rate {
            bail!(
                "{}: sample rate {} Hz, but the model was trained on {} Hz recordings",
                path.display(),
                wav.sample_rate,
                meta.sample_rate
            );
        }
        let f =
            data::audio::wav_features(wav, path, &cfg.audio.mfcc, cfg.audio.normalization, self.normalizer.as_ref())?;
        if f.dim != dim {
            bail!("{}: {} features per frame, the model expects {dim}", path.display(), f.dim);
        }
        Ok(AudioExample {
            features: f.data,
            frames: f.frames,
            label: 0,
            speaker: String::new(),
            path: path.to_path_buf(),
        })
    }

    /// Predictions for examples from [`Self::example`], 64 recordings per padded batch.
    pub fn predict_examples(&self, examples: &[AudioExample]) -> Result<Vec<Prediction>> {
        let (meta, device) = (&self.meta, &self.device);
        let dim = meta.model.lstm.input_size;
        let mut out = Vec::with_capacity(examples.len());
        let indices: Vec<usize> = (0..examples.len()).collect();
        for chunk in indices.chunks(64) {
            let b = FrameBatch::gather(examples, dim, chunk);
            let logits = self.net.forward(&b.tensor(device)?, &b.lengths, false, None, false)?.logits;
            let probs = model::classifier::probabilities(&logits)?.to_dtype(DType::F32)?;
            let best = probs.argmax(D::Minus1)?.to_vec1::<u32>()?;
            for (row, d) in probs.to_vec2::<f32>()?.into_iter().zip(best) {
                out.push(Prediction { digit: d as usize, probability: row[d as usize], probabilities: row });
            }
        }
        Ok(out)
    }
}

/// `train predict` for the audio task: `digit<TAB>probability<TAB>file` per file, or one JSON
/// object per line with `--json` (`file`, `digit`, `probability`, `probabilities`).
pub fn predict_cli(dir: &RunDir, cfg: &Config, args: &super::PredictArgs) -> Result<()> {
    let files: Vec<PathBuf> = super::inputs_or_stdin(&args.inputs)?.into_iter().map(PathBuf::from).collect();
    let preds = predict(dir, cfg, &files)?;
    for (file, p) in files.iter().zip(preds) {
        if args.json {
            println!(
                "{}",
                json!({"file": file, "digit": p.digit, "probability": p.probability, "probabilities": p.probabilities})
            );
        } else {
            println!("{}\t{:.4}\t{}", p.digit, p.probability, file.display());
        }
    }
    Ok(())
}
