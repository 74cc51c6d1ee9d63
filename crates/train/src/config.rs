//! The run configuration: one TOML file, sections `run`, `data`, `tokenizer`, `model`,
//! `train`. Every key and its default is documented once, in `configs/sst2.toml`.
//!
//! Loading is strict: unknown keys are refused with a "did you mean" hint, value ranges
//! are checked here (not deep inside training), and every error names the file, the line
//! when the key came from the file, and the key.

use crate::overrides::{self, Override};
use anyhow::{anyhow, bail, Context, Result};
use data::config::{DataConfig, TokenizerConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Sentence classification (SST-2).
    #[default]
    Classify,
    /// Spoken-digit recognition over MFCC frames (FSDD; `[audio]` section).
    Audio,
    /// Time-series forecasting (ETT; `[forecast]` section).
    Forecast,
    /// The adding problem: regression of the sum of two marked values (data.corpus = "adding").
    Adding,
    /// The copy task: recall 10 symbols after T blanks (data.corpus = "copy").
    Copy,
    /// Translation with an attention encoder–decoder (Multi30k; `[translate]` section).
    Translate,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub task: Task,
    #[serde(default)]
    pub run: RunConfig,
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default)]
    pub tokenizer: TokenizerConfig,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub train: TrainConfig,
    /// Left out of a resolved config when it is all defaults (every task but forecast).
    #[serde(default, skip_serializing_if = "ForecastConfig::is_default")]
    pub forecast: ForecastConfig,
    /// Left out of a resolved config when it is all defaults (every task but audio).
    #[serde(default, skip_serializing_if = "AudioConfig::is_default")]
    pub audio: AudioConfig,
    /// Left out of a resolved config when it is all defaults (every task but translate).
    #[serde(default, skip_serializing_if = "crate::task::translate::TranslateConfig::is_default")]
    pub translate: crate::task::translate::TranslateConfig,
    /// `train bench` only: steps, warm-up, sequence length, vocabulary (see configs/bench_a.toml).
    #[serde(default, skip_serializing_if = "crate::bench::BenchConfig::is_default")]
    pub bench: crate::bench::BenchConfig,
}

/// The `[audio]` section (`task = "audio"`): how the recordings in `data.dir` are split and
/// turned into feature frames. Documented in `configs/fsdd.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    /// `"official"` (index 0–4 test) or `{ speaker = "theo" }` (that speaker is the test set).
    pub split: data::audio::FsddSplit,
    /// Share of the training files held out for validation by a seeded draw.
    pub val_fraction: f64,
    /// `"train_set"` | `"utterance"` | `"none"`.
    pub normalization: data::audio::Normalization,
    /// The MFCC front end (`[audio.mfcc]`).
    pub mfcc: data::audio::MfccConfig,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            split: data::audio::FsddSplit::Official,
            val_fraction: 0.1,
            normalization: data::audio::Normalization::TrainSet,
            mfcc: data::audio::MfccConfig::default(),
        }
    }
}

impl AudioConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The data crate's corpus settings for the recordings in `dir`.
    pub fn fsdd(&self, dir: PathBuf) -> data::audio::FsddConfig {
        data::audio::FsddConfig {
            dir,
            split: self.split.clone(),
            val_fraction: self.val_fraction,
            mfcc: self.mfcc.clone(),
            normalization: self.normalization,
        }
    }

    fn validate(&self) -> std::result::Result<(), Invalid> {
        if !(0.0..1.0).contains(&self.val_fraction) {
            return Err(invalid("audio.val_fraction", format!("expected [0, 1), got {}", self.val_fraction)));
        }
        if let data::audio::FsddSplit::Speaker(name) = &self.split {
            if name.trim().is_empty() {
                return Err(invalid("audio.split", "the held-out speaker's name is empty"));
            }
        }
        // The rate-independent checks; the rest needs the corpus' sample rate and is checked
        // when the first file is read. 48 kHz: no common rate is higher.
        if let Err(e) = data::audio::Mfcc::new(&self.mfcc, 48_000) {
            return Err(match e {
                data::audio::AudioError::InvalidConfig { key, reason } => invalid(&format!("audio.mfcc.{key}"), reason),
                other => Invalid { key: None, message: other.to_string() },
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    pub name: String,
    pub seed: u64,
    /// "cpu", "cuda:N", "metal" or "auto".
    pub device: String,
    /// 0 = all cores.
    pub threads: usize,
    /// Parent of the default run directory `<out_dir>/<name>-<UTC timestamp>/`.
    pub out_dir: PathBuf,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self { name: "run".into(), seed: 42, device: "cpu".into(), threads: 0, out_dir: PathBuf::from("runs") }
    }
}

pub use model::classifier::Pooling;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub embedding_dim: usize,
    pub hidden: usize,
    pub layers: usize,
    pub bidirectional: bool,
    pub variant: model::config::Variant,
    pub cell: model::config::CellKind,
    pub embedding_dropout: f64,
    /// Between stacked LSTM layers.
    pub dropout: f64,
    /// Before the classifier's linear layer.
    pub head_dropout: f64,
    /// Word dropout (Iyyer et al. 2015): each real token of a training sentence becomes
    /// [UNK] with this probability.
    pub word_dropout: f64,
    /// One dropout mask per sequence shared over time (Gal & Ghahramani 2016).
    pub variational: bool,
    pub pooling: Pooling,
    pub orthogonal_init: bool,
    pub forget_bias: f64,
    pub fused: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            embedding_dim: 128,
            hidden: 128,
            layers: 1,
            bidirectional: true,
            variant: model::config::Variant::Vanilla,
            cell: model::config::CellKind::Lstm,
            embedding_dropout: 0.0,
            dropout: 0.0,
            head_dropout: 0.0,
            word_dropout: 0.0,
            variational: false,
            pooling: Pooling::Last,
            orthogonal_init: false,
            forget_bias: 0.0,
            fused: true,
        }
    }
}

impl ModelConfig {
    /// The recurrent layer this section describes, reading `input_size` features per step.
    /// `forget_bias` applies to LSTM cells only, so a config written for the LSTM still runs
    /// with `--set model.cell=gru|rnn` (those get PyTorch's initialisation).
    pub fn lstm(&self, input_size: usize) -> model::config::LstmConfig {
        model::config::LstmConfig {
            input_size,
            hidden_size: self.hidden,
            num_layers: self.layers,
            bidirectional: self.bidirectional,
            variant: self.variant,
            cell: self.cell,
            dropout: self.dropout,
            variational_dropout: self.variational,
            orthogonal_init: self.orthogonal_init,
            forget_bias: if self.cell == model::config::CellKind::Lstm { self.forget_bias } else { 0.0 },
            fused: self.fused,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    Adam,
    Adamw,
    Sgd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    /// Linear warm-up, then cosine decay to `min_lr` at the last step.
    Cosine,
    /// Linear warm-up, then multiply by `gamma` every `step_size` steps.
    Step,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricMode {
    Max,
    Min,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub optimizer: Optimizer,
    pub lr: f64,
    pub momentum: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub schedule: Schedule,
    pub warmup_steps: usize,
    pub min_lr: f64,
    pub step_size: usize,
    pub gamma: f64,
    pub epochs: usize,
    /// 0 = no limit; otherwise training stops after this many optimizer steps.
    pub max_steps: usize,
    pub batch_size: usize,
    /// 0 = off.
    pub clip_norm: f64,
    pub l2: f64,
    pub l2_embeddings: bool,
    pub weight_decay: f64,
    pub l1: f64,
    pub class_weights: Vec<f64>,
    pub early_stopping_metric: String,
    pub early_stopping_mode: MetricMode,
    /// 0 = no early stopping (the best checkpoint is still kept).
    pub patience: usize,
    /// Save the resume state every this many steps (and at every epoch end); 0 = epoch ends only.
    pub checkpoint_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            optimizer: Optimizer::Adam,
            lr: 1e-3,
            momentum: 0.9,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            schedule: Schedule::Constant,
            warmup_steps: 0,
            min_lr: 0.0,
            step_size: 1000,
            gamma: 0.5,
            epochs: 10,
            max_steps: 0,
            batch_size: 32,
            clip_norm: 0.0,
            l2: 0.0,
            l2_embeddings: false,
            weight_decay: 0.0,
            l1: 0.0,
            class_weights: Vec::new(),
            early_stopping_metric: "accuracy".into(),
            early_stopping_mode: MetricMode::Max,
            patience: 0,
            checkpoint_every: 200,
        }
    }
}

/// A config plus where it came from, for error messages.
pub struct Loaded {
    pub config: Config,
    pub source: PathBuf,
}

/// Reads, overrides, deserialises and validates a config file.
pub fn load(path: &Path, sets: &[Override]) -> Result<Loaded> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    let config = parse(&text, path, sets)?;
    Ok(Loaded { config, source: path.to_path_buf() })
}

pub fn parse(text: &str, path: &Path, sets: &[Override]) -> Result<Config> {
    let file = path.display();
    // First pass on the text itself, so syntax and unknown-key errors carry line numbers.
    if let Err(e) = toml::from_str::<Config>(text) {
        return Err(anyhow!("{file}:{}", describe(&e, text)));
    }
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| anyhow!("{file}:{}", describe(&e, text)))?;
    overrides::apply(&mut table, sets)?;
    let config: Config = table.clone().try_into().map_err(|e: toml::de::Error| {
        let keys: Vec<String> = sets.iter().map(|s| s.raw.clone()).collect();
        anyhow!("{file} with --set {}: {}", keys.join(" --set "), describe(&e, ""))
    })?;
    config.validate().map_err(|e| {
        let line =
            e.key.as_deref().and_then(|k| if sets.iter().any(|s| s.key() == k) { None } else { locate(text, k) });
        let from_set = e.key.as_deref().is_some_and(|k| sets.iter().any(|s| s.key() == k));
        match (line, &e.key) {
            (Some(l), Some(k)) => anyhow!("{file}:{l}: key `{k}`: {}", e.message),
            (None, Some(k)) if from_set => anyhow!("--set {k}: {}", e.message),
            (None, Some(k)) => anyhow!("{file}: key `{k}`: {}", e.message),
            _ => anyhow!("{file}: {}", e.message),
        }
    })?;
    Ok(config)
}

/// A validation failure: the dotted key and what was expected.
#[derive(Debug)]
pub struct Invalid {
    pub key: Option<String>,
    pub message: String,
}

fn invalid(key: &str, message: impl Into<String>) -> Invalid {
    Invalid { key: Some(key.to_string()), message: message.into() }
}

impl Config {
    pub fn validate(&self) -> std::result::Result<(), Invalid> {
        self.validate_task_corpus()?;
        let m = &self.model;
        let t = &self.train;
        let prob = |key: &str, p: f64| {
            if (0.0..1.0).contains(&p) {
                Ok(())
            } else {
                Err(invalid(key, format!("expected a probability in [0, 1), got {p}")))
            }
        };
        let positive = |key: &str, v: usize| {
            if v > 0 {
                Ok(())
            } else {
                Err(invalid(key, "expected a positive integer, got 0"))
            }
        };
        positive("model.embedding_dim", m.embedding_dim)?;
        positive("model.hidden", m.hidden)?;
        positive("model.layers", m.layers)?;
        prob("model.embedding_dropout", m.embedding_dropout)?;
        prob("model.dropout", m.dropout)?;
        prob("model.head_dropout", m.head_dropout)?;
        prob("model.word_dropout", m.word_dropout)?;
        positive("train.batch_size", t.batch_size)?;
        if t.epochs == 0 && t.max_steps == 0 {
            return Err(invalid("train.epochs", "expected epochs > 0 or max_steps > 0"));
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return Err(invalid("train.lr", format!("expected a positive learning rate, got {}", t.lr)));
        }
        if !(0.0..1.0).contains(&t.momentum) {
            return Err(invalid("train.momentum", format!("expected [0, 1), got {}", t.momentum)));
        }
        if !(0.0..1.0).contains(&t.beta1) {
            return Err(invalid("train.beta1", format!("expected [0, 1), got {}", t.beta1)));
        }
        if !(0.0..1.0).contains(&t.beta2) {
            return Err(invalid("train.beta2", format!("expected [0, 1), got {}", t.beta2)));
        }
        if !(t.eps > 0.0) {
            return Err(invalid("train.eps", format!("expected > 0, got {}", t.eps)));
        }
        for (key, v) in [
            ("train.clip_norm", t.clip_norm),
            ("train.l2", t.l2),
            ("train.weight_decay", t.weight_decay),
            ("train.l1", t.l1),
            ("train.min_lr", t.min_lr),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(invalid(key, format!("expected a non-negative number, got {v}")));
            }
        }
        if t.weight_decay > 0.0 && t.optimizer != Optimizer::Adamw && t.optimizer != Optimizer::Sgd {
            return Err(invalid(
                "train.weight_decay",
                "decoupled weight decay needs optimizer = \"adamw\" or \"sgd\"; for Adam use the L2 penalty `train.l2`",
            ));
        }
        if t.schedule == Schedule::Step {
            positive("train.step_size", t.step_size)?;
            if !(t.gamma > 0.0 && t.gamma <= 1.0) {
                return Err(invalid("train.gamma", format!("expected (0, 1], got {}", t.gamma)));
            }
        }
        if t.class_weights.iter().any(|w| !(*w >= 0.0 && w.is_finite())) {
            return Err(invalid("train.class_weights", "expected non-negative finite weights"));
        }
        if self.run.name.is_empty() || self.run.name.contains(['/', '\\']) {
            return Err(invalid("run.name", "expected a non-empty name without path separators"));
        }
        model::device::parse_device(&self.run.device).map_err(|e| invalid("run.device", e.to_string()))?;
        let located = |e: data::Error| match e {
            data::Error::Config { key, msg } => Invalid { key: Some(key), message: msg },
            other => Invalid { key: None, message: other.to_string() },
        };
        self.data.validate().map_err(located)?;
        let fsdd = self.data.corpus == data::config::CorpusKind::Fsdd;
        if self.task == Task::Audio {
            if !fsdd {
                return Err(invalid("data.corpus", "task \"audio\" reads corpus \"fsdd\""));
            }
            if self.data.max_len.is_some() {
                return Err(invalid("data.max_len", "applies to token sequences, not to audio frames"));
            }
            self.audio.validate()?;
        } else {
            if fsdd {
                return Err(invalid("task", "corpus \"fsdd\" is read by task = \"audio\""));
            }
            if self.audio != AudioConfig::default() {
                return Err(invalid("audio", "the [audio] section applies to task = \"audio\" only"));
            }
        }
        self.tokenizer.validate().map_err(located)?;
        if self.task == Task::Translate {
            crate::task::translate::validate_config(self)?;
        } else if !self.translate.is_default() {
            return Err(invalid("translate", "the [translate] section applies to task = \"translate\" only"));
        }
        Ok(())
    }

    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("serialising the resolved config")
    }
}

/// Turns a toml error into "LINE: message (did you mean ...)". `text` may be empty when the
/// error came from an in-memory table.
fn describe(e: &toml::de::Error, text: &str) -> String {
    let mut msg = e.message().trim().to_string();
    if let Some(hint) = did_you_mean(&msg) {
        msg.push_str(&format!(" (did you mean `{hint}`?)"));
    }
    match e.span() {
        Some(span) if !text.is_empty() => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("{line}: {msg}")
        }
        _ => format!(" {msg}"),
    }
}

/// serde's unknown-field message is "unknown field `x`, expected one of `a`, `b`" (or
/// "expected `a`"); pick the closest candidate by edit distance.
fn did_you_mean(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `").or_else(|| msg.strip_prefix("unknown variant `"))?;
    let (name, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    candidates
        .into_iter()
        .map(|c| (levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 3))
        .min()
        .map(|(_, c)| c.to_string())
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Finds the 1-based line where `section.key` is set in a TOML text.
pub fn locate(text: &str, dotted: &str) -> Option<usize> {
    let (section, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(h) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            current = h.trim().to_string();
            continue;
        }
        if current == section {
            if let Some((k, _)) = l.split_once('=') {
                if k.trim() == key {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

/// Errors used by the binary when a run directory's recorded config cannot be read.
pub fn load_recorded(run_dir: &Path) -> Result<Config> {
    let path = run_dir.join("config.toml");
    if !path.exists() {
        bail!("{} is not a run directory: it has no config.toml", run_dir.display());
    }
    Ok(load(&path, &[])?.config)
}

/// The `[forecast]` section (`task = "forecast"`), documented in `configs/etth1_uni.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForecastConfig {
    /// "direct" (a linear head maps the encoder state to every horizon step) | "seq2seq".
    pub decoder: model::forecaster::Decoder,
    /// Per-window instance normalisation of the value columns (RevIN, Kim et al. 2022).
    pub revin: bool,
    /// RevIN's learnable per-column scale and shift.
    pub revin_affine: bool,
    /// Windows per evaluation / prediction batch.
    pub eval_batch_size: usize,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self { decoder: model::forecaster::Decoder::Direct, revin: false, revin_affine: true, eval_batch_size: 256 }
    }
}

impl ForecastConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Config {
    /// Each of the forecasting and long-time-lag tasks reads one corpus kind.
    fn validate_task_corpus(&self) -> std::result::Result<(), Invalid> {
        use data::config::CorpusKind;
        let need = match self.task {
            Task::Forecast => Some(CorpusKind::Ett),
            Task::Adding => Some(CorpusKind::Adding),
            Task::Copy => Some(CorpusKind::Copy),
            _ => None,
        };
        if let Some(kind) = need {
            if self.data.corpus != kind {
                return Err(invalid(
                    "data.corpus",
                    format!(
                        "task {:?} reads corpus \"{}\", got \"{}\"",
                        format!("{:?}", self.task).to_lowercase(),
                        kind.name(),
                        self.data.corpus.name()
                    ),
                ));
            }
        }
        if !self.forecast.is_default() && self.task != Task::Forecast {
            return Err(invalid("forecast.decoder", "the [forecast] section applies to task = \"forecast\" only"));
        }
        if self.task == Task::Forecast {
            if self.forecast.eval_batch_size == 0 {
                return Err(invalid("forecast.eval_batch_size", "expected a positive integer, got 0"));
            }
            if self.forecast.decoder == model::forecaster::Decoder::Seq2seq && self.model.bidirectional {
                return Err(invalid(
                    "model.bidirectional",
                    "the seq2seq decoder starts from the encoder's states: set bidirectional = false",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str, sets: &[&str]) -> String {
        let sets: Vec<Override> = sets.iter().map(|s| Override::parse(s).unwrap()).collect();
        format!("{:#}", parse(text, Path::new("c.toml"), &sets).unwrap_err())
    }

    #[test]
    fn defaults_parse_and_validate() {
        let c = parse("", Path::new("c.toml"), &[]).unwrap();
        assert_eq!(c.train.batch_size, 32);
    }

    #[test]
    fn unknown_key_names_file_line_and_hint() {
        let e = err("[model]\nhidden = 3\nhiden = 4\n", &[]);
        assert!(e.starts_with("c.toml:3:"), "{e}");
        assert!(e.contains("did you mean `hidden`"), "{e}");
    }

    #[test]
    fn unknown_section_is_refused() {
        let e = err("[modle]\nhidden = 3\n", &[]);
        assert!(e.contains("did you mean `model`"), "{e}");
    }

    #[test]
    fn wrong_type_names_line() {
        let e = err("[train]\nepochs = \"ten\"\n", &[]);
        assert!(e.starts_with("c.toml:2:"), "{e}");
    }

    #[test]
    fn range_error_names_line_and_key() {
        let e = err("[model]\n\ndropout = 1.5\n", &[]);
        assert!(e.starts_with("c.toml:3: key `model.dropout`"), "{e}");
    }

    #[test]
    fn range_error_from_set_names_the_flag() {
        let e = err("", &["train.lr=-1"]);
        assert!(e.starts_with("--set train.lr"), "{e}");
    }

    #[test]
    fn set_overrides_and_unknown_set_key() {
        let sets = vec![Override::parse("train.epochs=3").unwrap(), Override::parse("model.variant=nog").unwrap()];
        let c = parse("[train]\nepochs = 9\n", Path::new("c.toml"), &sets).unwrap();
        assert_eq!(c.train.epochs, 3);
        assert_eq!(c.model.variant, model::config::Variant::Nog);
        let e = err("", &["model.hiden=3"]);
        assert!(e.contains("did you mean `hidden`"), "{e}");
    }

    #[test]
    fn data_section_errors_are_located() {
        let e = err("[data]\ncorpus = \"ett\"\n\nhorizon = 0\n", &[]);
        assert!(e.starts_with("c.toml:4: key `data.horizon`"), "{e}");
        let e = err("[tokenizer]\nvocab_size = 2\n", &[]);
        assert!(e.starts_with("c.toml:2: key `tokenizer.vocab_size`"), "{e}");
    }

    #[test]
    fn weight_decay_needs_decoupled_optimizer() {
        let e = err("[train]\noptimizer = \"adam\"\nweight_decay = 0.01\n", &[]);
        assert!(e.contains("train.weight_decay"), "{e}");
    }

    #[test]
    fn resolved_config_round_trips() {
        let c = parse("[train]\nepochs = 2\n", Path::new("c.toml"), &[]).unwrap();
        let again = parse(&c.to_toml().unwrap(), Path::new("r.toml"), &[]).unwrap();
        assert_eq!(again.to_toml().unwrap(), c.to_toml().unwrap());
    }
}

#[cfg(test)]
mod audio_tests {
    use super::*;

    fn parse_audio(extra: &str) -> Result<Config> {
        let text = format!("task = \"audio\"\n[data]\ncorpus = \"fsdd\"\ndir = \"rec\"\n{extra}");
        parse(&text, Path::new("a.toml"), &[])
    }

    #[test]
    fn speaker_split_round_trips_through_the_resolved_config() {
        let c = parse_audio("[audio]\nsplit = { speaker = \"theo\" }\n[audio.mfcc]\ndelta_order = 2\n").unwrap();
        assert_eq!(c.audio.split, data::audio::FsddSplit::Speaker("theo".into()));
        let again = parse(&c.to_toml().unwrap(), Path::new("r.toml"), &[]).unwrap();
        assert_eq!(again.audio, c.audio);
        let sets = [Override::parse("audio.split={speaker=\"lucas\"}").unwrap()];
        let c =
            parse("task = \"audio\"\n[data]\ncorpus = \"fsdd\"\ndir = \"rec\"\n", Path::new("a.toml"), &sets).unwrap();
        assert_eq!(c.audio.split, data::audio::FsddSplit::Speaker("lucas".into()));
        // Other tasks leave the section out of their resolved config.
        assert!(!Config::default().to_toml().unwrap().contains("[audio"));
    }

    #[test]
    fn audio_errors_name_the_key() {
        let e = format!("{:#}", parse_audio("[audio]\nval_fraction = 1.0\n").unwrap_err());
        assert!(e.starts_with("a.toml:6: key `audio.val_fraction`"), "{e}");
        let e = format!("{:#}", parse_audio("[audio.mfcc]\nnum_filters = 10\nnum_ceps = 13\n").unwrap_err());
        assert!(e.starts_with("a.toml:7: key `audio.mfcc.num_ceps`"), "{e}");
        let e = format!("{:#}", parse_audio("[data]\n").unwrap_err());
        assert!(e.contains("duplicate") || e.contains("data"), "{e}");
        let e = format!("{:#}", parse("task = \"audio\"\n", Path::new("a.toml"), &[]).unwrap_err());
        assert!(e.contains("key `data.corpus`"), "{e}");
        let e =
            format!("{:#}", parse("[data]\ncorpus = \"fsdd\"\ndir = \"rec\"\n", Path::new("a.toml"), &[]).unwrap_err());
        assert!(e.starts_with("a.toml:1: key `task`") || e.contains("key `task`"), "{e}");
        let e = format!("{:#}", parse("[audio]\nval_fraction = 0.2\n", Path::new("a.toml"), &[]).unwrap_err());
        assert!(e.contains("key `audio`"), "{e}");
        let e = format!("{:#}", parse_audio("[audio]\nsplit = \"speakers\"\n").unwrap_err());
        assert!(e.starts_with("a.toml:6:"), "{e}");
    }
}
