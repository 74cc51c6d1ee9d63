//! The run configuration: one TOML file, sections `run`, `data`, `tokenizer`, `model`,
//! `train`, plus one section per task that needs its own settings (`audio`, `forecast`,
//! `translate`) and `bench` for `train bench`. Every key and its default is documented once,
//! in the shipped files of `configs/` (`sst2.toml` for the common sections).
//!
//! This is the bottom of the train crate: it owns every section type and imports nothing from
//! the modules above it (tasks, trainer, subcommands), so they all read one definition.
//! Loading is strict ([`load`]): unknown keys are refused with a "did you mean" hint, value
//! ranges are checked at load time ([`Config::validate`]), and every error names the file,
//! the line when the key came from the file, and the key.

mod load;
mod sections;
mod validate;

#[cfg(test)]
mod tests;

pub use load::{load, load_recorded, locate, parse, Loaded};
pub use model::classifier::Pooling;
pub use sections::{AudioConfig, BenchConfig, ForecastConfig, LongSource, SummarizeConfig, TagConfig, TranslateConfig};
pub use sections::{LmKind, SpeechNorm, TranscribeConfig};
pub use validate::Invalid;

use anyhow::{Context, Result};
use candle_core::Device;
use data::config::{DataConfig, TokenizerConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The top-level `task` key: which task module trains and predicts (see `task::registration`).
/// The TOML values are the lowercase variant names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
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
    /// Sequence labelling with a BiLSTM(-CNN)-CRF (part of speech, named entities; `[tag]`).
    Tag,
    /// Speech to text: BiLSTM + CTC over log-mel frames (AN4; `[transcribe]` section).
    Transcribe,
    /// Summarisation: pointer-generator encoder–decoder with coverage (Gigaword; `[summarize]`).
    Summarize,
}

impl TaskKind {
    /// The TOML value of this kind (`task = "..."`).
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Classify => "classify",
            TaskKind::Audio => "audio",
            TaskKind::Forecast => "forecast",
            TaskKind::Adding => "adding",
            TaskKind::Copy => "copy",
            TaskKind::Translate => "translate",
            TaskKind::Tag => "tag",
            TaskKind::Transcribe => "transcribe",
            TaskKind::Summarize => "summarize",
        }
    }
}

/// A whole run configuration, as read from one TOML file plus `--set` overrides.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which task trains on the data (`task = "classify"` by default).
    #[serde(default)]
    pub task: TaskKind,
    /// `[run]`: name, seed, device, threads, output folder.
    #[serde(default)]
    pub run: RunConfig,
    /// `[data]`: the corpus and how it is read (the data crate's section).
    #[serde(default)]
    pub data: DataConfig,
    /// `[tokenizer]`: the tokenizer fitted on the training split (the data crate's section).
    #[serde(default)]
    pub tokenizer: TokenizerConfig,
    /// `[model]`: embedding and recurrent layer sizes, dropout, initialisation.
    #[serde(default)]
    pub model: ModelConfig,
    /// `[train]`: optimizer, schedule, epochs, batch size, penalties, early stopping.
    #[serde(default)]
    pub train: TrainConfig,
    /// Left out of a resolved config when it is all defaults (every task but forecast).
    #[serde(default, skip_serializing_if = "ForecastConfig::is_default")]
    pub forecast: ForecastConfig,
    /// Left out of a resolved config when it is all defaults (every task but audio).
    #[serde(default, skip_serializing_if = "AudioConfig::is_default")]
    pub audio: AudioConfig,
    /// Left out of a resolved config when it is all defaults (every task but translate).
    #[serde(default, skip_serializing_if = "TranslateConfig::is_default")]
    pub translate: TranslateConfig,
    /// Left out of a resolved config when it is all defaults (every task but summarize).
    #[serde(default, skip_serializing_if = "SummarizeConfig::is_default")]
    pub summarize: SummarizeConfig,
    /// Left out of a resolved config when it is all defaults (every task but transcribe).
    #[serde(default, skip_serializing_if = "TranscribeConfig::is_default")]
    pub transcribe: TranscribeConfig,
    /// `train bench` only: steps, warm-up, sequence length, vocabulary (see configs/bench_a.toml).
    #[serde(default, skip_serializing_if = "BenchConfig::is_default")]
    pub bench: BenchConfig,
    /// Left out of a resolved config when it is all defaults (every task but tag).
    #[serde(default, skip_serializing_if = "TagConfig::is_default")]
    pub tag: TagConfig,
}

impl Config {
    /// The resolved config as TOML: what a run directory's `config.toml` records.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("serialising the resolved config")
    }
}

/// The `[run]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// The run's name: the default run directory is `<out_dir>/<name>-<UTC timestamp>`.
    pub name: String,
    /// Seeds initialisation, batch order and dropout.
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

impl RunConfig {
    /// The candle device `run.device` names; the error names the key.
    pub fn device(&self) -> Result<Device> {
        model::device::parse_device(&self.device).context("config key `run.device`")
    }
}

/// The `[model]` section: the embedding and the recurrent layer every task builds on (the
/// heads take the sizes they need from here and from their task section).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Width of the token embedding (classify, translate).
    pub embedding_dim: usize,
    /// Hidden units per direction and layer.
    pub hidden: usize,
    /// Stacked recurrent layers.
    pub layers: usize,
    /// Run a second direction over the reversed sequence.
    pub bidirectional: bool,
    /// The LSTM variant (vanilla, peephole, the ablations).
    pub variant: model::config::Variant,
    /// The recurrent cell: "lstm", "gru" or "rnn".
    pub cell: model::config::CellKind,
    /// Dropout on the embedded input.
    pub embedding_dropout: f64,
    /// Between stacked LSTM layers.
    pub dropout: f64,
    /// Before the classifier's linear layer.
    pub head_dropout: f64,
    /// Word dropout (Iyyer et al. 2015): each real token of a training sentence becomes
    /// `[UNK]` with this probability.
    pub word_dropout: f64,
    /// One dropout mask per sequence shared over time (Gal & Ghahramani 2016).
    pub variational: bool,
    /// How the classifier reads the sequence: the last state, or max/mean over time.
    pub pooling: Pooling,
    /// Orthogonal initialisation of the recurrent matrices.
    pub orthogonal_init: bool,
    /// Initial forget-gate bias (LSTM cells only).
    pub forget_bias: f64,
    /// Use the fused LSTM kernel where it applies (false: the op-by-op cell).
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

/// `train.optimizer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam; `train.l2` adds a coupled L2 penalty.
    Adam,
    /// Adam with decoupled weight decay (`train.weight_decay`).
    Adamw,
    /// SGD with momentum (`train.momentum`).
    Sgd,
}

/// `train.schedule`: the learning rate over the steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// `train.lr` throughout.
    Constant,
    /// Linear warm-up, then cosine decay to `min_lr` at the last step.
    Cosine,
    /// Linear warm-up, then multiply by `gamma` every `step_size` steps.
    Step,
}

/// `train.early_stopping_mode`: whether a larger metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricMode {
    /// Higher is better (accuracy, BLEU).
    Max,
    /// Lower is better (loss, MSE, perplexity).
    Min,
}

/// The `[train]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// "adam", "adamw" or "sgd".
    pub optimizer: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Adam's β₁.
    pub beta1: f64,
    /// Adam's β₂.
    pub beta2: f64,
    /// Adam's ε.
    pub eps: f64,
    /// "constant", "cosine" or "step".
    pub schedule: Schedule,
    /// Linear warm-up steps of the cosine and step schedules.
    pub warmup_steps: usize,
    /// The cosine schedule's final learning rate.
    pub min_lr: f64,
    /// The step schedule's period in steps.
    pub step_size: usize,
    /// The step schedule's factor.
    pub gamma: f64,
    /// Passes over the training split.
    pub epochs: usize,
    /// 0 = no limit; otherwise training stops after this many optimizer steps.
    pub max_steps: usize,
    /// Examples per training batch.
    pub batch_size: usize,
    /// 0 = off.
    pub clip_norm: f64,
    /// Coupled L2 penalty on the weight matrices.
    pub l2: f64,
    /// Whether the embedding table receives the L2 penalty too.
    pub l2_embeddings: bool,
    /// Decoupled weight decay (adamw, sgd).
    pub weight_decay: f64,
    /// L1 penalty on the weight matrices.
    pub l1: f64,
    /// Per-class loss weights: a list (empty = unweighted) or "balanced".
    pub class_weights: ClassWeights,
    /// The validation metric that picks the best checkpoint and drives early stopping.
    pub early_stopping_metric: String,
    /// Whether that metric is better high ("max") or low ("min").
    pub early_stopping_mode: MetricMode,
    /// 0 = no early stopping (the best checkpoint is still kept).
    pub patience: usize,
    /// Save the resume state every this many steps (and at every epoch end); 0 = epoch ends only.
    pub checkpoint_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            optimizer: OptimizerKind::Adam,
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
            class_weights: ClassWeights::default(),
            early_stopping_metric: "accuracy".into(),
            early_stopping_mode: MetricMode::Max,
            patience: 0,
            checkpoint_every: 200,
        }
    }
}

/// `train.class_weights`: explicit per-class weights (`[]` = unweighted), or `"balanced"`:
/// n_samples / (n_classes × count of the class) over the training split, as scikit-learn's
/// `class_weight="balanced"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassWeights {
    /// One weight per class, in label order; empty = every class weighs 1.
    Explicit(Vec<f64>),
    /// `"balanced"`: weights from the training split's class counts.
    Balanced(BalancedWord),
}

/// The word `"balanced"` (any other string is refused when the config is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BalancedWord {
    /// `"balanced"`.
    #[serde(rename = "balanced")]
    Balanced,
}

impl Default for ClassWeights {
    fn default() -> Self {
        ClassWeights::Explicit(Vec::new())
    }
}

impl ClassWeights {
    /// The explicit weights (empty for none and for `"balanced"`).
    pub fn explicit(&self) -> &[f64] {
        match self {
            ClassWeights::Explicit(w) => w,
            ClassWeights::Balanced(_) => &[],
        }
    }

    /// Whether the weights come from the training split's class counts.
    pub fn is_balanced(&self) -> bool {
        matches!(self, ClassWeights::Balanced(_))
    }

    /// The weights for a training split with `counts[c]` examples of class c: explicit ones
    /// as f32, balanced ones computed (n / (k c) over the k classes present; a class without
    /// examples gets 0), or none.
    pub fn resolve(&self, counts: &[usize]) -> Vec<f32> {
        match self {
            ClassWeights::Explicit(w) => w.iter().map(|&w| w as f32).collect(),
            ClassWeights::Balanced(_) => {
                let n: usize = counts.iter().sum();
                // Classes present in training only, as scikit-learn counts `np.unique(y)`: a
                // class fixed by `labels` but never seen weighs nothing and must not shrink the rest.
                let k = counts.iter().filter(|&&c| c > 0).count() as f64;
                counts.iter().map(|&c| if c == 0 { 0.0 } else { (n as f64 / (k * c as f64)) as f32 }).collect()
            }
        }
    }
}
