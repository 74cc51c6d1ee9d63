//! Audio classification (`task = "audio"`): spoken digits (`corpus = "fsdd"`) or your own
//! labelled clips (`corpus = "audio"`, class names from the folders or the manifest's label
//! column) → MFCC frames (`data::audio`, settings in `[audio]`) → train-set normalisation →
//! length-bucketed padded batches → [`FrameClassifier`] → cross-entropy; accuracy, P/R/F1, the
//! confusion matrix (and, for FSDD, accuracy per speaker); prediction on WAV files.
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
use data::config::CorpusKind;
use model::frames::{FrameClassifier, FrameClassifierConfig};
use model::rng::SeededRng;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The run directory's train-set normaliser (`{"mean": [...], "std": [...]}`).
pub const NORMALIZER_FILE: &str = "normalizer.json";

/// FSDD's classes: the digits 0–9.
const NUM_DIGITS: usize = 10;

/// How the registry builds this task and predicts with its runs.
pub const REGISTRATION: Registration = Registration {
    build: |cfg, dir, existing_run| Ok(Box::new(AudioTask::new(cfg, dir, existing_run)?)),
    predict: predict_cli,
};

fn digit_names() -> Vec<String> {
    (0..NUM_DIGITS).map(|d| d.to_string()).collect()
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

/// Loads and featurises the corpus; returns it with its class names. A new run fits the
/// normaliser on the training split and writes it to the run directory; an existing run
/// applies the one it stored.
pub fn load_corpus(cfg: &Config, dir: &RunDir, existing_run: bool) -> Result<(FsddCorpus, Vec<String>)> {
    let folder = cfg.data.dir.clone().ok_or_else(|| {
        anyhow!("config key `data.dir`: corpus `{}` needs the folder of recordings", cfg.data.corpus.name())
    })?;
    let stored = normalizer_path(dir);
    let reuse = existing_run && cfg.audio.normalization == Normalization::TrainSet && stored.exists();
    let (mut corpus, class_names) = if cfg.data.corpus == CorpusKind::Audio {
        let mut front = cfg.audio.clips();
        if reuse {
            front.normalization = Normalization::None;
        }
        let clips = data::audio::load_clips(&cfg.data, &front, cfg.run.seed)
            .with_context(|| format!("loading your audio clips in {} (config key `data.dir`)", folder.display()))?;
        (clips.features, clips.class_names)
    } else {
        let mut fsdd = cfg.audio.fsdd(folder.clone());
        if reuse {
            fsdd.normalization = Normalization::None;
        }
        let corpus = data::audio::load_fsdd(&fsdd, cfg.run.seed)
            .with_context(|| format!("loading the FSDD recordings in {} (config key `data.dir`)", folder.display()))?;
        (corpus, digit_names())
    };
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
    Ok((corpus, class_names))
}

/// The model config from `[model]` for features of width `dim` and `num_classes` classes.
pub fn model_config(cfg: &Config, dim: usize, num_classes: usize) -> FrameClassifierConfig {
    let m = &cfg.model;
    FrameClassifierConfig {
        num_classes,
        lstm: m.lstm(dim),
        input_dropout: m.embedding_dropout,
        head_dropout: m.head_dropout,
        variational: m.variational,
        pooling: m.pooling,
    }
}

/// The audio classification task: featurised splits plus the model.
pub struct AudioTask {
    class_names: Vec<String>,
    /// FSDD: its recordings name their speakers, so evaluation reports accuracy per speaker.
    speakers: bool,
    /// Your own clips: the full report (`per_class`, micro/weighted F1) and the test split's
    /// `confusion.svg` at this path. FSDD keeps its original metrics.
    report_svg: Option<PathBuf>,
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
        let (corpus, class_names) = load_corpus(cfg, dir, existing_run)?;
        if corpus.train.is_empty() {
            bail!("{}: the training split is empty", dir.root.display());
        }
        let num_classes = class_names.len();
        let mut counts = vec![0usize; num_classes];
        for e in &corpus.train {
            counts[e.label.min(num_classes - 1)] += 1;
        }
        let class_weights = cfg.train.class_weights.resolve(&counts);
        if !class_weights.is_empty() && class_weights.len() != num_classes {
            bail!(
                "config key `train.class_weights`: expected {num_classes} weights (one per class: {}), got {}",
                class_names.join(", "),
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
        let model_config = model_config(cfg, corpus.dim, num_classes);
        let varmap = VarMap::new();
        let vb = model::init::seeded_var_builder(&varmap, cfg.run.seed, DType::F32, &device);
        let net = FrameClassifier::new(&model_config, vb).context("building the model")?;
        tracing::info!(
            train = corpus.train.len(),
            validation = corpus.validation.len(),
            test = corpus.test.len(),
            dim = corpus.dim,
            classes = num_classes,
            "{} corpus",
            if cfg.data.corpus == CorpusKind::Audio { "audio clip" } else { "FSDD" }
        );
        Ok(Self {
            class_names,
            speakers: cfg.data.corpus == CorpusKind::Fsdd,
            report_svg: (cfg.data.corpus == CorpusKind::Audio).then(|| dir.root.join(crate::confusion::FILE)),
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

    /// Loss, accuracy, precision/recall/F1 per class, the confusion matrix, and for FSDD
    /// `speaker_accuracy` (accuracy per speaker present in the split).
    fn evaluate(&self, split: SplitName) -> Result<Map<String, Value>> {
        let s = self.split(split);
        let mut confusion = Confusion::new(self.class_names.len());
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
        match &self.report_svg {
            Some(svg) => {
                m.extend(confusion.report(&self.class_names));
                if split == SplitName::Test {
                    let title =
                        format!("test split: {} clips, accuracy {:.4}", confusion.total(), confusion.accuracy());
                    crate::confusion::write(svg, &confusion.counts, &self.class_names, &title)?;
                }
            }
            None => m.extend(confusion.to_json(&self.class_names)),
        }
        if self.speakers {
            let speakers: Map<String, Value> =
                per_speaker.into_iter().map(|(k, (c, t))| (k.to_string(), json!(c as f64 / t as f64))).collect();
            m.insert("speaker_accuracy".into(), Value::Object(speakers));
        }
        Ok(m)
    }

    fn attach_compressed(&mut self, c: &model::compress::Compressed) -> Result<bool> {
        Ok(self.net.attach_compressed(c)?)
    }

    fn checkpoint_meta(&self) -> Value {
        json!({"kind": "frame_classifier", "model": &self.model_config, "class_names": &self.class_names,
               "sample_rate": self.sample_rate, "feature_dim": self.dim})
    }
}

/// One file's prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The most probable class (for FSDD, the digit).
    pub class: usize,
    /// Its name.
    pub label: String,
    /// Its probability.
    pub probability: f32,
    /// Probability of each class, in class order.
    pub probabilities: Vec<f32>,
}

/// What `predict` needs from a checkpoint's metadata.
struct Meta {
    model: FrameClassifierConfig,
    sample_rate: u32,
    class_names: Vec<String>,
}

fn read_meta(path: &Path) -> Result<Meta> {
    let ckpt = model::checkpoint::read(path, &Device::Cpu)?;
    let meta = ckpt
        .config
        .ok_or_else(|| anyhow!("{}: no model config in the metadata (not a sluice checkpoint)", path.display()))?;
    if meta["kind"] != "frame_classifier" {
        bail!("{}: a {} checkpoint, expected a frame_classifier", path.display(), meta["kind"]);
    }
    let model: FrameClassifierConfig = serde_json::from_value(meta["model"].clone())
        .with_context(|| format!("{}: model config in metadata", path.display()))?;
    let sample_rate = meta["sample_rate"]
        .as_u64()
        .and_then(|r| u32::try_from(r).ok())
        .ok_or_else(|| anyhow!("{}: no sample_rate in the metadata", path.display()))?;
    let class_names: Vec<String> = serde_json::from_value(meta["class_names"].clone())
        .with_context(|| format!("{}: class_names in the metadata", path.display()))?;
    if class_names.len() != model.num_classes {
        bail!("{}: {} class names for {} classes", path.display(), class_names.len(), model.num_classes);
    }
    Ok(Meta { model, sample_rate, class_names })
}

/// Class and probabilities for each WAV file, from a finished run's best checkpoint, with the
/// run's front end and stored normaliser. Your own clips (`corpus = "audio"`) are read as in
/// training: mono or downmixed per `audio.stereo`, resampled to the run's rate.
pub fn predict(dir: &RunDir, cfg: &Config, files: &[PathBuf]) -> Result<Vec<Prediction>> {
    LoadedAudio::load(dir, cfg)?.predict_files(files)
}

/// A finished audio classification run in memory: `train predict` loads one per call,
/// `train serve` once.
pub struct LoadedAudio {
    cfg: Config,
    meta: Meta,
    normalizer: Option<Normalizer>,
    /// The front end of your own clips (`corpus = "audio"`), at the run's rate; None for FSDD.
    clips: Option<data::audio::Mfcc>,
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
        let clips = (cfg.data.corpus == CorpusKind::Audio)
            .then(|| data::audio::Mfcc::new(&cfg.audio.mfcc, meta.sample_rate))
            .transpose()?;
        let varmap = VarMap::new();
        let mut net =
            FrameClassifier::new(&meta.model, model::init::seeded_var_builder(&varmap, 0, DType::F32, &device))?;
        let ckpt = model::checkpoint::load_into_varmap(dir.best(), &varmap)?;
        if let Some(c) = &ckpt.compressed {
            let kernels = net.attach_compressed(c)?;
            crate::export::report_loaded(c, kernels);
        }
        let parameters = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
        Ok(Self { cfg: cfg.clone(), meta, normalizer, clips, net, device, parameters, _varmap: varmap })
    }

    /// The class names, in class order (digits 0–9 for FSDD).
    pub fn class_names(&self) -> Vec<String> {
        self.meta.class_names.clone()
    }

    /// The model's geometry: (layers, directions, hidden units per direction).
    pub fn geometry(&self) -> (usize, usize, usize) {
        let l = &self.meta.model.lstm;
        (l.num_layers, l.num_directions(), l.hidden_size)
    }

    /// A WAV file's features as the run computes them.
    pub fn file_example(&self, path: &Path) -> Result<AudioExample> {
        match &self.clips {
            Some(mfcc) => {
                let c = &self.cfg.audio;
                let f = data::audio::clip_features(path, mfcc, c.stereo, c.normalization, self.normalizer.as_ref())?;
                self.to_example(f, path)
            }
            None => self.example(&data::audio::read_wav(path)?, path),
        }
    }

    /// A WAV file's bytes (a request body or part) as [`Self::file_example`] reads the file;
    /// `name` names it in errors.
    pub fn bytes_example(&self, bytes: &[u8], name: &Path) -> Result<AudioExample> {
        match &self.clips {
            Some(mfcc) => {
                let c = &self.cfg.audio;
                let samples = data::audio::parse_clip(bytes, name, mfcc.sample_rate(), c.stereo)?;
                let f =
                    data::audio::clip_sample_features(&samples, name, mfcc, c.normalization, self.normalizer.as_ref())?;
                self.to_example(f, name)
            }
            None => self.example(&data::audio::parse_wav(bytes, name)?, name),
        }
    }

    /// A decoded FSDD-style WAV's features as the run computes them; `path` (a file or a
    /// request part) names it in errors.
    pub fn example(&self, wav: &data::audio::Wav, path: &Path) -> Result<AudioExample> {
        let (cfg, meta) = (&self.cfg, &self.meta);
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
        self.to_example(f, path)
    }

    fn to_example(&self, f: data::audio::Features, path: &Path) -> Result<AudioExample> {
        let dim = self.meta.model.lstm.input_size;
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

    /// Predictions for WAV files, read as [`Self::file_example`] reads them.
    pub fn predict_files(&self, files: &[PathBuf]) -> Result<Vec<Prediction>> {
        let examples = files.iter().map(|p| self.file_example(p)).collect::<Result<Vec<_>>>()?;
        self.predict_examples(&examples)
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
                let class = d as usize;
                let label = meta.class_names[class].clone();
                out.push(Prediction { class, label, probability: row[class], probabilities: row });
            }
        }
        Ok(out)
    }
}

/// `train predict` for the audio task: `label<TAB>probability<TAB>file` per file (for FSDD the
/// label is the digit), or one JSON object per line with `--json`: FSDD `file`, `digit`,
/// `probability`, `probabilities` (a list, digit order); your own clips `file`, `label`,
/// `probability`, `probabilities` (an object: every class's probability by name).
pub fn predict_cli(dir: &RunDir, cfg: &Config, args: &super::PredictArgs) -> Result<()> {
    let files: Vec<PathBuf> = super::inputs_or_stdin(&args.inputs)?.into_iter().map(PathBuf::from).collect();
    let m = LoadedAudio::load(dir, cfg)?;
    let preds = m.predict_files(&files)?;
    let names = m.class_names();
    for (file, p) in files.iter().zip(preds) {
        if args.json && cfg.data.corpus == CorpusKind::Audio {
            let by_name: Map<String, Value> =
                names.iter().zip(&p.probabilities).map(|(n, q)| (n.clone(), json!(q))).collect();
            println!(
                "{}",
                json!({"file": file, "label": p.label, "probability": p.probability, "probabilities": by_name})
            );
        } else if args.json {
            println!(
                "{}",
                json!({"file": file, "digit": p.class, "probability": p.probability, "probabilities": p.probabilities})
            );
        } else {
            println!("{}\t{:.4}\t{}", p.label, p.probability, file.display());
        }
    }
    Ok(())
}
