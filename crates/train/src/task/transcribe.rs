//! Speech to text (`task = "transcribe"`, AN4): JSON Lines manifests (`[transcribe]`) →
//! log-mel frames (`data::audio::logmel`) → normalisation → SpecAugment on training batches
//! (masks drawn from the trainer's seeded generator) → [`SpeechModel`] (frame stacking,
//! BiLSTM, characters + blank) → CTC loss (`model::ctc`); evaluation decodes greedily or by
//! prefix beam search (optionally with an n-gram language model of the training transcripts)
//! and scores WER, CER and CER without spaces (`crate::wer`).
//!
//! Files a run keeps besides its checkpoints: `speech_normalizer.json` (with
//! `normalization = "train_set"`) and `lm_transcripts.json` (the training transcripts the
//! language model is estimated from when `lm = "char" | "word"`; kept in every run, so the
//! model can be switched on after training). The character vocabulary
//! travels in the checkpoint's metadata.

use super::{Registration, SplitName, StepOutput, Task};
use crate::config::{Config, LmKind, SpeechNorm, TranscribeConfig};
use crate::rundir::RunDir;
use crate::wer::ErrorRates;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use data::audio::an4::{load_audio, read_manifest, CharVocab, Utterance};
use data::audio::logmel::{spec_augment, LogMel};
use data::audio::Normalizer;
use data::batch::{BatchOptions, BatchOrder};
use model::ctc::{ctc_loss, CtcOptions, Reduction};
use model::ctc_decode::{greedy, prefix_beam_search, BeamOptions, LmUnit, NgramLm};
use model::rng::SeededRng;
use model::speech::{SpeechModel, SpeechModelConfig};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The run directory's train-set normaliser (`normalization = "train_set"`).
pub const NORMALIZER_FILE: &str = "speech_normalizer.json";
/// The training transcripts the language model is estimated from (`lm` ≠ "none").
pub const TRANSCRIPTS_FILE: &str = "lm_transcripts.json";
/// Test utterances whose decoding `summary.json` shows beside the reference.
const SHOWN_EXAMPLES: usize = 8;

/// How the registry builds this task and predicts with its runs.
pub const REGISTRATION: Registration = Registration {
    build: |cfg, dir, existing_run| Ok(Box::new(TranscribeTask::new(cfg, dir, existing_run)?)),
    predict: |dir, cfg, args| {
        let files: Vec<PathBuf> = super::inputs_or_stdin(&args.inputs)?.into_iter().map(PathBuf::from).collect();
        print_transcripts(&transcribe(dir, cfg, &files, None)?, &files, args.json)
    },
};

/// One featurised utterance.
#[derive(Debug, Clone)]
pub struct SpeechExample {
    /// (frames × dim) normalised log-mel features.
    pub features: Vec<f32>,
    /// Frames.
    pub frames: usize,
    /// Transcript as class ids (characters outside the vocabulary left out).
    pub target: Vec<u32>,
    /// The manifest line.
    pub utterance: Utterance,
}

/// Reads `path` and computes its log-mel frames at the model's rate. Errors name the file:
/// too long (over `max_seconds`) or too short for one analysis window.
pub fn featurize(path: &Path, t: &TranscribeConfig, logmel: &LogMel) -> Result<data::audio::Features> {
    featurize_samples(load_audio(path, t.sample_rate, t.stereo)?, path, t, logmel)
}

/// [`featurize`] of samples already read at `t.sample_rate` (`path` names them in errors).
pub fn featurize_samples(
    samples: Vec<f32>,
    path: &Path,
    t: &TranscribeConfig,
    logmel: &LogMel,
) -> Result<data::audio::Features> {
    let seconds = samples.len() as f64 / t.sample_rate as f64;
    if seconds > t.max_seconds {
        bail!("{}: {seconds:.1} s long; transcribe.max_seconds is {}", path.display(), t.max_seconds);
    }
    let f = logmel.compute(&samples);
    if f.frames == 0 {
        bail!(
            "{}: {} samples at {} Hz, shorter than one {}-sample analysis frame",
            path.display(),
            samples.len(),
            t.sample_rate,
            logmel.min_samples()
        );
    }
    Ok(f)
}

/// Normalises each group of utterances (a speaker, or each utterance) by its own statistics.
fn normalize_groups(examples: &mut [SpeechExample], dim: usize, by_speaker: bool) -> Result<()> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, e) in examples.iter().enumerate() {
        let key = if by_speaker { e.utterance.speaker.clone() } else { format!("#{i}") };
        groups.entry(key).or_default().push(i);
    }
    for members in groups.values() {
        let n = Normalizer::fit(dim, members.iter().map(|&i| examples[i].features.as_slice()))?;
        for &i in members {
            n.apply(&mut examples[i].features)?;
        }
    }
    Ok(())
}

fn load_split(t: &TranscribeConfig, name: &str, logmel: &LogMel) -> Result<Vec<SpeechExample>> {
    use rayon::prelude::*;
    let path = t.dir.join(name);
    let utts = read_manifest(&path)
        .with_context(|| format!("reading the manifest {} (config key `transcribe`)", path.display()))?;
    if utts.is_empty() {
        bail!("{}: the manifest holds no utterances", path.display());
    }
    utts.into_par_iter()
        .map(|u| {
            let f =
                featurize(&u.audio, t, logmel).with_context(|| format!("{}: utterance {}", path.display(), u.id))?;
            Ok(SpeechExample { features: f.data, frames: f.frames, target: Vec::new(), utterance: u })
        })
        .collect()
}

/// One split and its batch order.
struct Split {
    examples: Vec<SpeechExample>,
    order: BatchOrder,
}

/// The speech-to-text task.
pub struct TranscribeTask {
    cfg: TranscribeConfig,
    model_config: SpeechModelConfig,
    net: SpeechModel,
    varmap: VarMap,
    device: Device,
    vocab: CharVocab,
    lm: Option<NgramLm>,
    train: Split,
    validation: Split,
    test: Split,
    epoch_batches: Vec<Vec<usize>>,
}

/// The model config from `[model]` and `[transcribe]`.
pub fn model_config(cfg: &Config, classes: usize) -> SpeechModelConfig {
    let t = &cfg.transcribe;
    let dim = t.features.num_mels;
    SpeechModelConfig {
        input_dim: dim,
        stack: t.stack,
        lstm: cfg.model.lstm(dim * t.stack),
        num_classes: classes,
        input_dropout: t.input_dropout,
        head_dropout: cfg.model.head_dropout,
    }
}

/// The n-gram model `[transcribe]` asks for, from transcripts.
fn build_lm(t: &TranscribeConfig, vocab: &CharVocab, texts: &[String]) -> Result<Option<NgramLm>> {
    let unit = match t.lm {
        LmKind::None => return Ok(None),
        LmKind::Char => LmUnit::Char,
        LmKind::Word => LmUnit::Word,
    };
    let space = vocab.space().ok_or_else(|| anyhow!("transcribe.lm = \"word\" needs spaces in the transcripts"));
    let space = if unit == LmUnit::Word { space? } else { space.unwrap_or(u32::MAX) };
    let sentences: Vec<Vec<u32>> = texts.iter().map(|s| s.chars().filter_map(|c| vocab.id(c)).collect()).collect();
    Ok(Some(NgramLm::train(&sentences, unit, t.lm_order, space)))
}

impl TranscribeTask {
    /// Reads and featurises the three manifests and builds the model (seeded by `run.seed`).
    pub fn new(cfg: &Config, dir: &RunDir, existing_run: bool) -> Result<Self> {
        let t = cfg.transcribe.clone();
        let device = cfg.run.device()?;
        if !device.is_cpu() {
            bail!("config key `run.device`: the CTC loss runs on the CPU only");
        }
        let logmel = LogMel::new(&t.features, t.sample_rate)?;
        let dim = logmel.dim();
        let mut train = load_split(&t, &t.train, &logmel)?;
        let mut validation = load_split(&t, &t.validation, &logmel)?;
        let mut test = load_split(&t, &t.test, &logmel)?;
        let vocab = CharVocab::from_texts(train.iter().map(|e| e.utterance.text.as_str()));
        match t.normalization {
            SpeechNorm::Utterance | SpeechNorm::Speaker => {
                let by_speaker = t.normalization == SpeechNorm::Speaker;
                for s in [&mut train, &mut validation, &mut test] {
                    normalize_groups(s, dim, by_speaker)?;
                }
            }
            SpeechNorm::TrainSet => {
                let path = dir.root.join(NORMALIZER_FILE);
                let n = if existing_run && path.exists() {
                    Normalizer::load(&path)?
                } else {
                    let n = Normalizer::fit(dim, train.iter().map(|e| e.features.as_slice()))?;
                    crate::atomic::write_json(&path, &n)?;
                    n
                };
                for e in train.iter_mut().chain(&mut validation).chain(&mut test) {
                    n.apply(&mut e.features)?;
                }
            }
            SpeechNorm::None => {}
        }
        let model_config = model_config(cfg, vocab.num_classes());
        let mut infeasible = 0;
        for (split, name) in [(&mut train, "train"), (&mut validation, "validation"), (&mut test, "test")] {
            for e in split.iter_mut() {
                e.target = e.utterance.text.chars().filter_map(|c| vocab.id(c)).collect();
                let steps = model_config.output_len(e.frames);
                if !model::ctc::feasible(&e.target, steps) {
                    infeasible += 1;
                    tracing::warn!(
                        "{name} utterance {} ({}): {} output steps cannot hold its {} labels; its CTC loss is {}",
                        e.utterance.id,
                        e.utterance.audio.display(),
                        steps,
                        model::ctc::min_frames(&e.target),
                        if t.zero_infinity { "zeroed (transcribe.zero_infinity)" } else { "infinite" }
                    );
                }
            }
        }
        let texts: Vec<String> = train.iter().map(|e| e.utterance.text.clone()).collect();
        // Kept whatever `lm` says, so that a language model can be switched on after training
        // (`eval`, `transcribe`) from the same transcripts.
        let p = dir.root.join(TRANSCRIPTS_FILE);
        if !(existing_run && p.exists()) {
            crate::atomic::write_json(&p, &texts)?;
        }
        let lm = build_lm(&t, &vocab, &texts)?;
        let varmap = VarMap::new();
        let vb = model::init::seeded_var_builder(&varmap, cfg.run.seed, DType::F32, &device);
        let net = SpeechModel::new(&model_config, vb).context("building the speech model")?;
        tracing::info!(
            train = train.len(),
            validation = validation.len(),
            test = test.len(),
            classes = vocab.num_classes(),
            infeasible,
            "speech corpus"
        );
        let split = |examples: Vec<SpeechExample>, shuffle: bool, batch_size: usize| -> Result<Split> {
            let opts = BatchOptions {
                batch_size,
                seed: cfg.run.seed,
                pool: cfg.data.bucket_pool,
                shuffle,
                drop_last: false,
                max_len: None,
            };
            let keys = examples.iter().map(|e| e.frames as u64).collect();
            Ok(Split { order: BatchOrder::new(keys, &opts)?, examples })
        };
        Ok(Self {
            model_config,
            net,
            varmap,
            device,
            vocab,
            lm,
            train: split(train, true, cfg.train.batch_size)?,
            validation: split(validation, false, t.eval_batch_size)?,
            test: split(test, false, t.eval_batch_size)?,
            epoch_batches: Vec::new(),
            cfg: t,
        })
    }

    fn split(&self, split: SplitName) -> &Split {
        match split {
            SplitName::Train => &self.train,
            SplitName::Validation => &self.validation,
            SplitName::Test => &self.test,
        }
    }

    fn ctc_options(&self) -> CtcOptions {
        CtcOptions { reduction: self.cfg.reduction, zero_infinity: self.cfg.zero_infinity }
    }
}

/// The examples at `indices` as a zero-padded (batch, time, dim) tensor and their lengths;
/// `augment` edits each utterance's copy (SpecAugment) before it is padded.
fn gather(
    examples: &[SpeechExample],
    dim: usize,
    indices: &[usize],
    device: &Device,
    mut augment: impl FnMut(&mut [f32], usize),
) -> Result<(Tensor, Vec<usize>)> {
    let lengths: Vec<usize> = indices.iter().map(|&i| examples[i].frames).collect();
    let time = lengths.iter().copied().max().unwrap_or(1);
    let mut x = vec![0f32; indices.len() * time * dim];
    for (row, &i) in indices.iter().enumerate() {
        let e = &examples[i];
        let dst = &mut x[row * time * dim..row * time * dim + e.features.len()];
        dst.copy_from_slice(&e.features);
        augment(dst, e.frames);
    }
    Ok((Tensor::from_vec(x, (indices.len(), time, dim), device)?, lengths))
}

/// Decodes one utterance's log-probs (time, classes) with beam width `beam` (1 = greedy).
fn decode(
    lp: &[f64],
    classes: usize,
    steps: usize,
    beam: usize,
    t: &TranscribeConfig,
    lm: Option<&NgramLm>,
) -> Vec<u32> {
    if beam <= 1 {
        return greedy(lp, classes, steps).labels;
    }
    let opts = BeamOptions { beam, lm_weight: t.lm_weight, word_bonus: t.word_bonus, prune: (1e-4f64).ln() };
    prefix_beam_search(lp, classes, steps, &opts, lm).labels
}

/// The decoded text with whitespace runs collapsed (a CTC output may emit two spaces).
fn clean(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Task for TranscribeTask {
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn penalised(&self, name: &str) -> bool {
        !name.contains("bias")
    }

    fn start_epoch(&mut self, epoch: usize) -> Result<usize> {
        self.epoch_batches = self.train.order.plan(epoch as u64);
        Ok(self.epoch_batches.len())
    }

    fn train_step(&self, index: usize, rng: &mut SeededRng) -> Result<StepOutput> {
        let ix = &self.epoch_batches[index];
        let ex = &self.train.examples;
        let dim = self.model_config.input_dim;
        let (x, lengths) = gather(ex, dim, ix, &self.device, |f, frames| {
            if self.cfg.spec_augment && self.cfg.augment.is_active() {
                spec_augment(f, frames, dim, &self.cfg.augment, 0.0, &mut |n| rng.below(n));
            }
        })?;
        let (lp, steps) = self.net.forward(&x, &lengths, true, Some(rng))?;
        let targets: Vec<Vec<u32>> = ix.iter().map(|&i| ex[i].target.clone()).collect();
        let loss = ctc_loss(&lp, &targets, &steps, &self.ctc_options())?;
        Ok(StepOutput { loss, examples: ix.len(), tokens: lengths.iter().sum(), correct: None })
    }

    /// `loss` (CTC, the configured reduction's per-utterance mean), `wer`, `cer`,
    /// `cer_no_space` (percent), `word_edits`, and for the test split `examples` (the first
    /// few utterances' references and hypotheses).
    fn evaluate(&self, split: SplitName) -> Result<Map<String, Value>> {
        let s = self.split(split);
        let beam = if split == SplitName::Validation { self.cfg.valid_beam } else { self.cfg.beam };
        let classes = self.model_config.num_classes;
        let mut rates = ErrorRates::default();
        let mut hyps: Vec<(usize, String)> = Vec::new();
        let (mut loss_sum, mut n) = (0.0f64, 0usize);
        let opts = CtcOptions { reduction: Reduction::None, zero_infinity: true };
        for ix in s.order.plan(0) {
            let (x, lengths) = gather(&s.examples, self.model_config.input_dim, &ix, &self.device, |_, _| {})?;
            let (lp, steps) = self.net.forward(&x, &lengths, false, None)?;
            let targets: Vec<Vec<u32>> = ix.iter().map(|&i| s.examples[i].target.clone()).collect();
            let losses: Vec<f32> = ctc_loss(&lp, &targets, &steps, &opts)?.to_vec1()?;
            for (l, t) in losses.iter().zip(&targets) {
                loss_sum += match self.cfg.reduction {
                    Reduction::Sum => *l as f64,
                    _ => *l as f64 / t.len().max(1) as f64,
                };
            }
            n += ix.len();
            let time = lp.dim(1)?;
            let all: Vec<f64> = lp.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
            let rows: Vec<Vec<u32>> = {
                use rayon::prelude::*;
                (0..ix.len())
                    .into_par_iter()
                    .map(|r| {
                        let lp = &all[r * time * classes..(r + 1) * time * classes];
                        decode(lp, classes, steps[r], beam, &self.cfg, self.lm.as_ref())
                    })
                    .collect()
            };
            for (&i, labels) in ix.iter().zip(rows) {
                let hyp = clean(&self.vocab.decode(&labels));
                rates.add(&s.examples[i].utterance.text, &hyp);
                hyps.push((i, hyp));
            }
        }
        let mut m = Map::new();
        m.insert("loss".into(), json!(loss_sum / n.max(1) as f64));
        m.extend(rates.to_json());
        m.insert("beam".into(), json!(beam));
        if split == SplitName::Test {
            hyps.sort_by_key(|h| h.0);
            let shown: Vec<Value> = hyps
                .iter()
                .take(SHOWN_EXAMPLES)
                .map(|(i, h)| {
                    let u = &s.examples[*i].utterance;
                    json!({"id": u.id, "reference": u.text, "hypothesis": h})
                })
                .collect();
            m.insert("examples".into(), Value::Array(shown));
        }
        Ok(m)
    }

    fn checkpoint_meta(&self) -> Value {
        json!({"kind": "speech_ctc", "model": &self.model_config,
               "vocab": self.vocab.chars.iter().collect::<String>(),
               "sample_rate": self.cfg.sample_rate, "features": &self.cfg.features})
    }
}

#[path = "transcribe_cli.rs"]
mod cli;
pub use cli::{cli, print_transcripts, transcribe, CharTime, LoadedTranscriber, TranscribeArgs, Transcript};

#[cfg(test)]
mod tests {
    use super::*;

    /// The run directory's check asks for the files this task writes, by the same names.
    #[test]
    fn run_check_names_the_task_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::create(tmp.path().join("r")).unwrap();
        let mut cfg = Config { task: crate::config::TaskKind::Transcribe, ..Default::default() };
        assert!(dir.trained_files(&cfg).is_empty());
        cfg.transcribe.normalization = SpeechNorm::TrainSet;
        cfg.transcribe.lm = LmKind::Word;
        let files: Vec<PathBuf> = dir.trained_files(&cfg).into_iter().map(|f| f.0).collect();
        assert_eq!(files, vec![dir.root.join(NORMALIZER_FILE), dir.root.join(TRANSCRIPTS_FILE)]);
    }

    #[test]
    fn decoded_text_is_collapsed() {
        assert_eq!(clean("  A  B C "), "A B C");
    }
}
